package gmailapi

import (
	"fmt"
	"html"
	"mime"
	"net/mail"
	"slices"
	"strings"
	"time"
	"unicode/utf8"
)

// SystemLabels are the labels every mailbox has, in labels.list order.
var SystemLabels = []string{
	"CHAT", "SENT", "INBOX", "IMPORTANT", "TRASH", "DRAFT", "SPAM",
	"CATEGORY_FORUMS", "CATEGORY_UPDATES", "CATEGORY_PERSONAL", "CATEGORY_PROMOTIONS", "CATEGORY_SOCIAL",
	"STARRED", "UNREAD",
}

// History record types, as history.list names them.
const (
	MessageAdded   = "messageAdded"
	MessageDeleted = "messageDeleted"
	LabelAdded     = "labelAdded"
	LabelRemoved   = "labelRemoved"
)

// Delivery is a message arriving in a mailbox.
type Delivery struct {
	To       string   `json:"to"` // the mailbox's address
	From     string   `json:"from"`
	Subject  string   `json:"subject"`
	Body     string   `json:"body"`
	LabelIDs []string `json:"labelIds"` // default INBOX, UNREAD
	ThreadID string   `json:"threadId"` // optional: reply in this thread
}

// Delivered identifies a delivered message and the history record it wrote.
type Delivered struct {
	ID        string `json:"id"`
	ThreadID  string `json:"threadId"`
	HistoryID uint64 `json:"historyId"`
}

const maxBody = 1 << 20

type header struct{ name, value string }

type message struct {
	id, threadID string
	labels       []string
	headers      []header
	body         string
	mime         []byte    // as given to DeliverRaw; nil for a Delivery
	internalDate int64     // ms since the epoch
	added        time.Time // when it reached the mailbox
	historyID    uint64
}

// record is one history record: a single change to a single message.
type record struct {
	id      uint64
	at      time.Time
	kind    string
	msgID   string
	thread  string
	labels  []string // the message's labels after the change (before it, for a deletion)
	changed []string // labels added or removed
}

type watch struct {
	topic      string
	labels     []string
	behavior   string // include or exclude
	historyID  uint64
	created    time.Time
	expiration time.Time
}

type mailbox struct {
	email     string
	historyID uint64
	floor     uint64 // history at or below floor is no longer retained
	messages  map[string]*message
	drafts    map[string]string // draft id -> message id of its current revision
	order     []*message        // oldest first
	history   []record          // ascending ids
	watch     *watch
}

func knownLabel(id string) bool { return slices.Contains(SystemLabels, id) }

func checkLabels(ids []string) *Error {
	for _, id := range ids {
		if !knownLabel(id) {
			return invalidArgument("Invalid label: %s", id)
		}
	}
	return nil
}

// normalizeEmail lower-cases an address and rejects anything that is not a
// bare addr-spec.
func normalizeEmail(email string) (string, *Error) {
	a, err := mail.ParseAddress(email)
	if err != nil || a.Address != strings.TrimSpace(email) || a.Name != "" {
		return "", invalidArgument("invalid email address %q", email)
	}
	return strings.ToLower(a.Address), nil
}

func checkHeaderValue(name, v string) *Error {
	if strings.ContainsAny(v, "\r\n\x00") {
		return invalidArgument("%s must be a single line", name)
	}
	if !utf8.ValidString(v) {
		return invalidArgument("%s is not valid UTF-8", name)
	}
	return nil
}

// nextHistoryID advances the mailbox's history id by a small random step, as
// Gmail's ids grow with gaps.
func (s *Server) nextHistoryID(mb *mailbox) uint64 {
	mb.historyID += 1 + s.rng.Uint64N(8)
	return mb.historyID
}

func (s *Server) nextMessageID() string {
	s.lastMessageID += 1 + s.rng.Uint64N(4096)
	return fmt.Sprintf("%016x", s.lastMessageID)
}

func (mb *mailbox) add(rec record) {
	mb.history = append(mb.history, rec)
}

// prune drops history older than the retention window.
func (mb *mailbox) prune(now time.Time, retention time.Duration) {
	cut := 0
	for cut < len(mb.history) && now.Sub(mb.history[cut].at) > retention {
		mb.floor = mb.history[cut].id
		cut++
	}
	if cut > 0 {
		mb.history = slices.Delete(mb.history, 0, cut)
	}
}

func (m *message) header(name string) string {
	for _, h := range m.headers {
		if strings.EqualFold(h.name, name) {
			return h.value
		}
	}
	return ""
}

// raw renders the message as RFC 5322 text.
func (m *message) raw() []byte {
	var b strings.Builder
	for _, h := range m.headers {
		v := h.value
		if h.name == "Subject" || h.name == "From" || h.name == "To" {
			v = mime.QEncoding.Encode("utf-8", v)
		}
		b.WriteString(h.name + ": " + v + "\r\n")
	}
	b.WriteString("MIME-Version: 1.0\r\nContent-Type: text/plain; charset=\"UTF-8\"\r\n\r\n")
	b.WriteString(strings.ReplaceAll(m.body, "\n", "\r\n"))
	return []byte(b.String())
}

// snippet is Gmail's short, HTML-escaped preview of the body.
func (m *message) snippet() string {
	s := strings.Join(strings.Fields(m.body), " ")
	if r := []rune(s); len(r) > 200 {
		s = string(r[:200])
	}
	return html.EscapeString(s)
}

func (m *message) hasLabel(id string) bool { return slices.Contains(m.labels, id) }

// matches reports whether a change touching labels passes the watch's label
// filter: include needs one of the watched labels, exclude none of them.
func (w *watch) matches(labels []string) bool {
	if len(w.labels) == 0 {
		return true
	}
	hit := slices.ContainsFunc(labels, func(l string) bool { return slices.Contains(w.labels, l) })
	if w.behavior == "exclude" {
		return !hit
	}
	return hit
}
