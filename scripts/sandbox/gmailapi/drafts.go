package gmailapi

import (
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode/utf8"
)

// Draft is a draft the mailbox's owner saves: a new one without ID, a new
// revision of draft ID with it.
type Draft struct {
	User    string `json:"user"` // the mailbox
	ID      string `json:"id"`   // the draft's id; "" saves a new draft
	To      string `json:"to"`
	Subject string `json:"subject"`
	Body    string `json:"body"`
}

// SavedDraft identifies a draft and the message holding its current revision.
type SavedDraft struct {
	ID        string `json:"id"`
	MessageID string `json:"messageId"`
	ThreadID  string `json:"threadId"`
	HistoryID uint64 `json:"historyId"`
}

// SaveDraft saves a draft as Gmail records it: each revision is a new
// message with the DRAFT label (a messageAdded record), and the revision it
// replaces is deleted (a messageDeleted record).
func (s *Server) SaveDraft(d Draft) (SavedDraft, error) {
	for name, v := range map[string]string{"to": d.To, "subject": d.Subject} {
		if e := checkHeaderValue(name, v); e != nil {
			return SavedDraft{}, e
		}
	}
	if len(d.Body) > maxBody || !utf8.ValidString(d.Body) {
		return SavedDraft{}, invalidArgument("body must be valid UTF-8 of at most %d bytes", maxBody)
	}
	now := s.opts.Now()
	s.mu.Lock()
	mb, e := s.lookup(d.User)
	if e != nil {
		s.mu.Unlock()
		return SavedDraft{}, e
	}
	var old *message
	thread := ""
	if d.ID != "" {
		if old = mb.messages[mb.drafts[d.ID]]; old == nil {
			s.mu.Unlock()
			return SavedDraft{}, notFound("Requested entity was not found.")
		}
		thread = old.threadID
	} else {
		d.ID = fmt.Sprintf("r%d", 1_000_000_000+s.rng.Uint64N(9_000_000_000))
	}
	m := s.newMessage(mb, mb.email, d.To, d.Subject, d.Body, []string{"DRAFT"}, thread, now)
	mb.drafts[d.ID] = m.id
	recs := []record{{id: m.historyID, at: now, kind: MessageAdded, msgID: m.id, thread: m.threadID, labels: slices.Clone(m.labels)}}
	if old != nil {
		recs = append(recs, s.removeMessage(mb, old, now))
	}
	saved := SavedDraft{ID: d.ID, MessageID: m.id, ThreadID: m.threadID, HistoryID: mb.historyID}
	s.commit(mb, recs...) // unlocks
	return saved, nil
}

// SendDraft sends draft id as Gmail records it: the draft's message is
// deleted and the sent message added with the SENT label (and INBOX and
// UNREAD too when the owner wrote to themselves).
func (s *Server) SendDraft(user, id string) (Delivered, error) {
	now := s.opts.Now()
	s.mu.Lock()
	mb, e := s.lookup(user)
	if e != nil {
		s.mu.Unlock()
		return Delivered{}, e
	}
	draft := mb.messages[mb.drafts[id]]
	if draft == nil {
		s.mu.Unlock()
		return Delivered{}, notFound("Requested entity was not found.")
	}
	delete(mb.drafts, id)
	del := s.removeMessage(mb, draft, now)
	labels := []string{"SENT"}
	if strings.EqualFold(draft.header("To"), mb.email) {
		labels = append(labels, "INBOX", "UNREAD")
	}
	m := s.newMessage(mb, mb.email, draft.header("To"), draft.header("Subject"), draft.body, labels, draft.threadID, now)
	sent := Delivered{ID: m.id, ThreadID: m.threadID, HistoryID: m.historyID}
	s.commit(mb, del, record{id: m.historyID, at: now, kind: MessageAdded, msgID: m.id, thread: m.threadID, labels: slices.Clone(m.labels)})
	return sent, nil
}

// newMessage adds a message to mb with the next history id; thread "" starts
// a new one. Callers hold s.mu and write its messageAdded record.
func (s *Server) newMessage(mb *mailbox, from, to, subject, body string, labels []string, thread string, now time.Time) *message {
	m := &message{id: s.nextMessageID(), labels: uniq(labels), body: body, internalDate: now.UnixMilli(), added: now}
	m.threadID = m.id
	if thread != "" {
		m.threadID = thread
	}
	m.headers = []header{
		{"From", from}, {"To", to}, {"Subject", subject},
		{"Date", now.Format(time.RFC1123Z)},
		{"Message-ID", "<" + m.id + "." + m.threadID + "@mail.sandbox.test>"},
	}
	m.historyID = s.nextHistoryID(mb)
	mb.messages[m.id] = m
	mb.order = append(mb.order, m)
	return m
}

// removeMessage deletes m from mb for good and returns its messageDeleted
// record. Callers hold s.mu.
func (s *Server) removeMessage(mb *mailbox, m *message, now time.Time) record {
	delete(mb.messages, m.id)
	mb.order = slices.DeleteFunc(mb.order, func(o *message) bool { return o == m })
	return record{id: s.nextHistoryID(mb), at: now, kind: MessageDeleted, msgID: m.id, thread: m.threadID, labels: slices.Clone(m.labels)}
}
