package gmailsync

import (
	"slices"

	"google.golang.org/api/gmail/v1"

	"github.com/gmailwatch/gmailwatch/shared/events"
)

// window is one listing of history, read once into the typed changes the
// sync announces, in history order.
//
// Gmail's records show a message's labels as they are when history is read,
// not as they were when the record was written, and the records of a
// message deleted since show no labels at all. So a message's labels at any
// record are worked out backwards: from the labels its newest record shows,
// undo each labelAdded and labelRemoved that followed in the window. A
// message archived, moved or trashed before the sync read history is
// announced as received all the same; one deleted for good is not (its
// labels are gone, as is the message: there is nothing to announce it with,
// and a replaced draft revision looks just the same). Its deletion is.
type window struct {
	records []record            // what the window shows, in history order
	msgs    map[string]*message // by message id
}

// record is one message's part of one history record.
type record struct {
	historyID int64
	msg       *message
	kind      int // arrived, labelsAdded, labelsRemoved or deleted
	labels    []string
}

const (
	arrived = iota
	labelsAdded
	labelsRemoved
	deleted
)

// message is what the window shows about one message.
type message struct {
	id, threadID string
	labels       []string // as its newest record shows them
	known        bool     // labels were shown (or read with messages.get): a record may show none
	deleted      bool     // deleted for good within the window
	arrivedAt    int64    // its messageAdded record, 0 if before the window
}

func newWindow() *window { return &window{msgs: map[string]*message{}} }

// add reads one history record.
func (w *window) add(h *gmail.History) {
	for _, a := range h.MessagesAdded {
		if m := w.message(a.Message); m != nil {
			if m.arrivedAt == 0 {
				m.arrivedAt = int64(h.Id)
				w.records = append(w.records, record{historyID: int64(h.Id), msg: m, kind: arrived})
			}
			m.show(a.Message)
		}
	}
	for _, a := range h.LabelsAdded {
		if m := w.message(a.Message); m != nil {
			m.show(a.Message)
			w.records = append(w.records, record{historyID: int64(h.Id), msg: m, kind: labelsAdded, labels: a.LabelIds})
		}
	}
	for _, r := range h.LabelsRemoved {
		if m := w.message(r.Message); m != nil {
			m.show(r.Message)
			w.records = append(w.records, record{historyID: int64(h.Id), msg: m, kind: labelsRemoved, labels: r.LabelIds})
		}
	}
	for _, d := range h.MessagesDeleted {
		if m := w.message(d.Message); m != nil && !m.deleted {
			m.deleted, m.labels = true, nil
			w.records = append(w.records, record{historyID: int64(h.Id), msg: m, kind: deleted})
		}
	}
}

// show takes the labels a record shows for m. Gmail may leave labelIds out
// of a record, and JSON drops an empty list alike: either way the labels
// are unknown until messages.get reads them (relabel).
func (m *message) show(g *gmail.Message) {
	m.labels, m.known = g.LabelIds, g.LabelIds != nil
}

// unlabelled returns the messages that arrived within the window, are not
// deleted, and whose labels no record showed.
func (w *window) unlabelled() []string {
	var ids []string
	for _, r := range w.records {
		if m := r.msg; r.kind == arrived && !m.deleted && !m.known {
			ids = append(ids, m.id)
		}
	}
	return ids
}

// relabel sets the labels of message id as messages.get read them, after
// every record the window shows.
func (w *window) relabel(id string, labels []string) {
	if m := w.msgs[id]; m != nil {
		m.labels, m.known = labels, true
	}
}

func (w *window) message(g *gmail.Message) *message {
	if g == nil || g.Id == "" {
		return nil
	}
	m := w.msgs[g.Id]
	if m == nil {
		m = &message{id: g.Id, threadID: g.ThreadId}
		w.msgs[g.Id] = m
	}
	return m
}

// below returns the id of the newest record before id the window shows,
// or floor if none: a cursor stored there is an id Gmail issued.
func (w *window) below(id, floor int64) int64 {
	for i := len(w.records) - 1; i >= 0; i-- {
		if h := w.records[i].historyID; h < id {
			return max(h, floor)
		}
	}
	return floor
}

// labelsAfter returns the labels of the message of records[i] once that
// record applied: its newest labels with every later change undone, newest
// first. It is nil for a message deleted for good (Gmail shows its labels
// no more) or whose labels are unknown.
func (w *window) labelsAfter(i int) []string {
	m := w.records[i].msg
	if m.deleted || !m.known {
		return nil
	}
	labels := slices.Clone(m.labels)
	for j := len(w.records) - 1; j > i; j-- {
		r := w.records[j]
		if r.msg != m {
			continue
		}
		for _, l := range r.labels {
			switch {
			case r.kind == labelsAdded:
				labels = slices.DeleteFunc(labels, func(x string) bool { return x == l })
			case r.kind == labelsRemoved && !slices.Contains(labels, l):
				labels = append(labels, l)
			}
		}
	}
	if labels == nil {
		labels = []string{}
	}
	return labels
}

// change is one thing to announce, in history order. Received and sent
// changes need the message's metadata (messages.get); the others carry
// what history shows.
type change struct {
	typ       string
	historyID int64 // the record that showed it; 0 when catch-up listed the message
	msgID     string
	threadID  string
	added     []string // labels_changed
	removed   []string // labels_changed
	labels    []string // labels_changed: the resulting set, nil if unknown
	deletion  string   // deleted: events.Trash or events.Permanent
}

// needsMessage reports whether the change's event is built from the message.
func (c change) needsMessage() bool {
	return c.typ == events.MessageReceived || c.typ == events.MessageSent
}

// changes returns what the window shows for the types in on, in history
// order, and the id of the first messageAdded record of a message it did
// not announce as received (0 if none). That decision rests on the labels
// the message shows now, which a change still hidden from history may have
// made: until a read shows every record, the cursor stays before it.
func (w *window) changes(f filter, on []string) (out []change, firstRefused int64) {
	for i, r := range w.records {
		m := r.msg
		c := change{historyID: r.historyID, msgID: m.id, threadID: m.threadID}
		switch r.kind {
		case arrived:
			if m.deleted {
				continue
			}
			if !m.known {
				// messages.get could not read it (see relabel): announce
				// stops before it as not yet readable.
				if slices.Contains(on, events.MessageReceived) {
					c.typ = events.MessageReceived
					out = append(out, c)
				}
				continue
			}
			labels := w.labelsAfter(i)
			if slices.Contains(on, events.MessageReceived) {
				if f.matches(labels) {
					c.typ = events.MessageReceived
					out = append(out, c)
				} else if firstRefused == 0 {
					firstRefused = r.historyID
				}
			}
			if slices.Contains(on, events.MessageSent) && isSent(labels) {
				c.typ = events.MessageSent
				out = append(out, c)
			}
		case labelsAdded, labelsRemoved:
			if slices.Contains(on, events.MessageLabelsChanged) {
				c.typ, c.labels = events.MessageLabelsChanged, w.labelsAfter(i)
				if r.kind == labelsAdded {
					c.added = r.labels
				} else {
					c.removed = r.labels
				}
				out = append(out, c)
			}
			if r.kind == labelsAdded && slices.Contains(r.labels, "TRASH") && slices.Contains(on, events.MessageDeleted) {
				out = append(out, change{typ: events.MessageDeleted, historyID: r.historyID, msgID: m.id, threadID: m.threadID, deletion: events.Trash})
			}
		case deleted:
			if slices.Contains(on, events.MessageDeleted) {
				c.typ, c.deletion = events.MessageDeleted, events.Permanent
				out = append(out, c)
			}
		}
	}
	return out, firstRefused
}

// isSent reports whether a message with labels is mail the user sent: SENT,
// and no longer a draft.
func isSent(labels []string) bool {
	return slices.Contains(labels, "SENT") && !slices.Contains(labels, "DRAFT")
}
