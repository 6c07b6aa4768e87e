package gmailsync

import (
	"slices"

	"google.golang.org/api/gmail/v1"
)

// window is one listing of history, read into what happened to each message
// that arrived in it.
//
// Gmail's records show a message's labels as they are when history is read,
// not as they were when the record was written, and the records of a
// message deleted since show no labels at all. So a message's labels on
// arrival are worked out backwards: from the labels its newest record shows,
// undo each labelAdded and labelRemoved that followed its messageAdded in
// the window. A message archived, moved or trashed before the sync read
// history is announced all the same; one deleted for good is not (its labels
// are gone, as is the message: there is nothing to announce it with, and a
// replaced draft revision looks just the same).
type window struct {
	order []string // messages in the order they arrived
	msgs  map[string]*fate
}

// fate is what the window shows about one message.
type fate struct {
	arrived bool
	addedAt int64 // the id of its messageAdded record
	deleted bool
	labels  []string // as the message's newest record shows them
	changes []labelChange
}

// labelChange is one labelAdded or labelRemoved record after the arrival.
type labelChange struct {
	labels []string
	added  bool
}

func newWindow() *window { return &window{msgs: map[string]*fate{}} }

func (w *window) fate(m *gmail.Message) *fate {
	f := w.msgs[m.Id]
	if f == nil {
		f = &fate{}
		w.msgs[m.Id] = f
	}
	return f
}

// add reads one history record.
func (w *window) add(h *gmail.History) {
	for _, a := range h.MessagesAdded {
		if a.Message == nil {
			continue
		}
		f := w.fate(a.Message)
		if !f.arrived {
			f.arrived, f.addedAt = true, int64(h.Id)
			w.order = append(w.order, a.Message.Id)
		}
		f.labels = a.Message.LabelIds
	}
	for _, a := range h.LabelsAdded {
		if a.Message != nil {
			w.change(a.Message, a.LabelIds, true)
		}
	}
	for _, r := range h.LabelsRemoved {
		if r.Message != nil {
			w.change(r.Message, r.LabelIds, false)
		}
	}
	for _, d := range h.MessagesDeleted {
		if d.Message != nil {
			w.fate(d.Message).deleted = true
		}
	}
}

func (w *window) change(m *gmail.Message, labels []string, added bool) {
	f := w.fate(m)
	f.labels = m.LabelIds
	if f.arrived {
		f.changes = append(f.changes, labelChange{labels: labels, added: added})
	}
}

// arrivals returns the messages that arrived with labels f announces, in
// the order they arrived, and the id of the first messageAdded record of a
// message it did not announce (0 if none). That decision rests on the labels
// the message shows now, which a change still hidden from history may have
// made: until a read shows every record, the cursor stays before it.
func (w *window) arrivals(f filter) (ids []string, firstRefused int64) {
	for _, id := range w.order {
		m := w.msgs[id]
		switch {
		case m.deleted:
		case f.matches(m.onArrival()):
			ids = append(ids, id)
		case firstRefused == 0:
			firstRefused = m.addedAt
		}
	}
	return ids, firstRefused
}

// onArrival undoes the label changes after the arrival, newest first.
func (f *fate) onArrival() []string {
	labels := slices.Clone(f.labels)
	for _, c := range slices.Backward(f.changes) {
		for _, l := range c.labels {
			if c.added {
				labels = slices.DeleteFunc(labels, func(x string) bool { return x == l })
			} else if !slices.Contains(labels, l) {
				labels = append(labels, l)
			}
		}
	}
	return labels
}
