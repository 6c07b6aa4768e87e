package main

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/gmailwatch/gmailwatch/scripts/sandbox/gmailapi"
	"github.com/gmailwatch/gmailwatch/shared/events"
)

// With -all-types every mailbox event type is on, and the soak changes the
// mailbox beyond arrivals: after a delivery, the user reads the message,
// stars and unstars it (a change that cancels out), trashes it or deletes
// it for good; some sends are drafts the user sends. Each change is an
// expected event whose id the soak derives from the history id the sandbox
// returned, as the sync does.

// Follow-up kinds, drawn per send.
const (
	readIt   = "read"
	starIt   = "star-unstar"
	trashIt  = "trash"
	deleteIt = "delete"
	sendIt   = "sent" // the send is a draft the user sends, not a delivery
)

// followUps draws one kind (or none) per send from its own generator, so
// the rest of the plan is the same with and without -all-types.
func followUps(c Config, sends int) []string {
	if !c.AllTypes {
		return nil
	}
	rng := rand.New(rand.NewPCG(c.Seed^0xa11, c.Seed^0x7e5))
	out := make([]string, sends)
	for i := range out {
		switch x := rng.Float64(); {
		case x < 0.10:
			out[i] = sendIt
		case x < 0.35:
			out[i] = readIt
		case x < 0.50:
			out[i] = starIt
		case x < 0.60:
			out[i] = trashIt
		case x < 0.70:
			out[i] = deleteIt
		}
	}
	return out
}

// expectation is one event the soak caused, beside received mail.
type expectation struct {
	Type      string
	User      int
	MessageID string
	HistoryID uint64 // its place in history, for the order check
	At        time.Time
	Optional  bool // may or may not come: a received message deleted for good before a sync saw it
	Excused   string
	ByMessage bool // its history id is unknown (a draft revision's deletion): matched by message id
}

// expect records an event the mailbox change at history id h causes.
// Callers hold s.mu.
func (s *soak) expect(typ string, u int, msgID string, h uint64, optional bool) {
	id := events.ID(typ, s.keys[u], msgID, fmt.Sprint(h))
	if typ == events.MessageReceived || typ == events.MessageSent {
		id = events.ID(typ, s.keys[u], msgID)
	}
	e := &expectation{Type: typ, User: u, MessageID: msgID, HistoryID: h, At: time.Now(), Optional: optional}
	if _, revoked := s.revokedAt[u]; revoked {
		e.Excused = "revoked"
	}
	s.expected[id] = e
}

// sendDraft is send i as mail the user writes and sends: a draft, then its
// sending, which deletes the draft's revision and adds the SENT message.
// Callers hold s.mu.
func (s *soak) sendDraft(i int) {
	m := s.plan.Sends[i]
	gmail := s.st.Sandbox.Gmail
	d, err := gmail.SaveDraft(gmailapi.Draft{User: s.emails[m.User], To: "someone@example.net", Subject: fmt.Sprintf("Soak draft %d", i), Body: "draft"})
	if err != nil {
		s.sendErrs++
		return
	}
	sent, err := gmail.SendDraft(s.emails[m.User], d.ID)
	if err != nil {
		s.sendErrs++
		return
	}
	s.expect(events.MessageSent, m.User, sent.ID, sent.HistoryID, false)
	// Sending deletes the draft's revision just before it adds the sent
	// message; the sandbox does not say that record's id, so the event is
	// matched by message id, and placed just before the sent one.
	e := &expectation{Type: events.MessageDeleted, User: m.User, MessageID: d.MessageID, HistoryID: sent.HistoryID - 1, At: time.Now(), ByMessage: true}
	if _, revoked := s.revokedAt[m.User]; revoked {
		e.Excused = "revoked"
	}
	s.expected[draftKey(d.MessageID)] = e
}

func draftKey(msgID string) string { return "draft-revision:" + msgID }

// resolve returns the event id an expectation stands for: its key, or for
// one matched by message id, the id of the event of that message on the
// topic (its key while none arrived). Callers hold s.mu.
func (s *soak) resolve(key string, e *expectation) string {
	if !e.ByMessage {
		return key
	}
	if id, ok := s.topic.find(e.Type, s.keys[e.User], e.MessageID); ok {
		return id
	}
	return key
}

// followUp changes delivered message id of send i after a short delay,
// which sometimes falls inside the same history window as its arrival.
func (s *soak) followUp(i int, id string) {
	kind := s.plan.Follow[i]
	u := s.plan.Sends[i].User
	email := s.emails[u]
	gmail := s.st.Sandbox.Gmail
	time.Sleep(time.Duration(100+(i*7919)%2900) * time.Millisecond)
	s.mu.Lock()
	defer s.mu.Unlock()
	modify := func(add, remove []string) (uint64, bool) {
		h, err := gmail.ModifyLabels(email, id, add, remove)
		if err != nil {
			s.sendErrs++
			return 0, false
		}
		return h, true
	}
	switch kind {
	case readIt:
		if h, ok := modify(nil, []string{"UNREAD"}); ok {
			s.expect(events.MessageLabelsChanged, u, id, h, false)
		}
	case starIt:
		if h, ok := modify([]string{"STARRED"}, nil); ok {
			s.expect(events.MessageLabelsChanged, u, id, h, false)
		}
		if h, ok := modify(nil, []string{"STARRED"}); ok {
			s.expect(events.MessageLabelsChanged, u, id, h, false)
		}
	case trashIt:
		if h, ok := modify([]string{"TRASH"}, nil); ok {
			s.expect(events.MessageLabelsChanged, u, id, h, false)
			s.expect(events.MessageDeleted, u, id, h, false)
		}
	case deleteIt:
		h, err := gmail.DeleteMessage(email, id)
		if err != nil {
			s.sendErrs++
			return
		}
		s.expect(events.MessageDeleted, u, id, h, false)
		if m := s.sent[id]; m != nil {
			m.Deleted = true // its arrival may be gone from history's view before a sync reads it
		}
		if e := s.expected[events.ID(events.MessageReceived, s.keys[u], id)]; e != nil {
			e.Optional = true
		}
	}
}

// excuseExpired excuses the label changes and deletions of user u that an
// expired history may have lost: not yet read by a sync when the expiry
// began (above the cursor then) and made before the mailbox's history id is
// now below (the catch-up skips to a history id read during the expiry).
// Catch-up finds received and sent mail again; nothing can find these.
// Callers hold s.mu.
func (s *soak) excuseExpired(u int, below uint64, cursor int64) {
	for _, e := range s.expected {
		if e.User == u && e.Excused == "" && e.HistoryID < below && int64(e.HistoryID) > cursor &&
			(e.Type == events.MessageLabelsChanged || e.Type == events.MessageDeleted) {
			e.Excused = "expired"
		}
	}
}

// TypeResult is what arrived of the events of one type.
type TypeResult struct {
	Expected              int      `json:"expected"`
	Required              int      `json:"required"`
	Optional              int      `json:"optional,omitempty"`
	ExcusedRevoked        int      `json:"excusedRevoked,omitempty"`
	ExcusedExpired        int      `json:"excusedExpiredHistory,omitempty"`
	Topic                 int      `json:"outputTopic"`
	Webhook               int      `json:"webhook"`
	LostTopic             []string `json:"lostTopic"`
	LostWebhook           []string `json:"lostWebhook"`
	Duplicates            int      `json:"duplicates"`
	DuplicatesUnexplained []string `json:"duplicatesUnexplained"`
	Unexpected            []string `json:"unexpected,omitempty"`
}

// Order is the per-user order check: each user's events, as they first
// arrived, must follow history.
type Order struct {
	Checked         int      `json:"checked"`
	TopicOutOfOrder []string `json:"topicOutOfOrder"`
	HookOutOfOrder  []string `json:"webhookOutOfOrder"`
}

// typeReport fills r.Types and r.Order from what arrived.
func (s *soak) typeReport(r *Report, topic map[string]published, hook map[string][]time.Time) {
	if !s.cfg.AllTypes {
		return
	}
	r.Types = map[string]*TypeResult{}
	for _, t := range events.MessageTypes {
		r.Types[t] = &TypeResult{}
	}
	s.mu.Lock()
	expected := map[string]expectation{}
	for key, e := range s.expected {
		expected[s.resolve(key, e)] = *e
	}
	s.mu.Unlock()
	for id, e := range expected {
		t := r.Types[e.Type]
		t.Expected++
		p, onTopic := topic[id]
		if onTopic {
			t.Topic++
		}
		if len(hook[id]) > 0 {
			t.Webhook++
		}
		switch {
		case e.Excused == "revoked":
			t.ExcusedRevoked++
		case e.Excused == "expired":
			t.ExcusedExpired++
		case e.Optional:
			t.Optional++
		default:
			t.Required++
			what := fmt.Sprintf("%s user %d message %s history %d", id, e.User, e.MessageID, e.HistoryID)
			if !onTopic {
				t.LostTopic = append(t.LostTopic, what)
			}
			if len(hook[id]) == 0 {
				t.LostWebhook = append(t.LostWebhook, what)
			}
		}
		if n := len(p.arrived); n > 1 {
			t.Duplicates += n - 1
			if !s.killedBetween(p.arrived[0].Add(-killSlack), p.arrived[n-1], "notify", "renew") {
				t.DuplicatesUnexplained = append(t.DuplicatesUnexplained, id)
			}
		}
	}
	for id, p := range topic {
		if _, ok := expected[id]; !ok && p.event.Type != events.MessageReceived && slices.Contains(events.MessageTypes, p.event.Type) {
			r.Types[p.event.Type].Unexpected = append(r.Types[p.event.Type].Unexpected, id)
		}
	}
	r.Order.TopicOutOfOrder = outOfOrder(expected, func(id string) (time.Time, bool) {
		p, ok := topic[id]
		if !ok {
			return time.Time{}, false
		}
		return p.arrived[0], true
	}, &r.Order.Checked)
	r.Order.HookOutOfOrder = outOfOrder(expected, func(id string) (time.Time, bool) {
		if t := hook[id]; len(t) > 0 {
			return t[0], true
		}
		return time.Time{}, false
	}, nil)
}

// outOfOrder returns the events that first arrived after an event of the
// same user that is later in history.
func outOfOrder(expected map[string]expectation, first func(id string) (time.Time, bool), checked *int) []string {
	type arrival struct {
		id string
		at time.Time
		h  uint64
	}
	byUser := map[int][]arrival{}
	for id, e := range expected {
		if at, ok := first(id); ok {
			byUser[e.User] = append(byUser[e.User], arrival{id, at, e.HistoryID})
		}
	}
	var bad []string
	for _, as := range byUser {
		slices.SortFunc(as, func(a, b arrival) int { return a.at.Compare(b.at) })
		var high uint64
		for _, a := range as {
			if checked != nil {
				*checked++
			}
			if a.h < high {
				bad = append(bad, a.id)
			}
			high = max(high, a.h)
		}
	}
	return bad
}
