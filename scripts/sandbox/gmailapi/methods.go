package gmailapi

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	gmail "google.golang.org/api/gmail/v1"
)

// watchLifetime is how long a users.watch lasts, as with Gmail.
const watchLifetime = 7 * 24 * time.Hour

func (s *Server) getProfile(c *call) (any, *Error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	mb := s.mailboxes[c.email]
	threads := map[string]bool{}
	for _, m := range mb.order {
		threads[m.threadID] = true
	}
	return &gmail.Profile{
		EmailAddress:    mb.email,
		HistoryId:       mb.historyID,
		MessagesTotal:   int64(len(mb.order)),
		ThreadsTotal:    int64(len(threads)),
		ForceSendFields: []string{"MessagesTotal", "ThreadsTotal"},
	}, nil
}

var topicName = regexp.MustCompile(`^projects/([a-z][a-z0-9.:-]{0,99})/topics/([A-Za-z][\w.~+%-]{2,254})$`)

func (s *Server) watch(c *call) (any, *Error) {
	var req gmail.WatchRequest
	if e := decodeBody(c.body, &req); e != nil {
		return nil, e
	}
	parts := topicName.FindStringSubmatch(req.TopicName)
	if parts == nil {
		return nil, invalidArgument("Invalid topicName does not match projects/SOME-ID/topics/SOME-ID")
	}
	behavior := req.LabelFilterBehavior
	field := "label_filter_behavior"
	if behavior == "" {
		behavior, field = req.LabelFilterAction, "label_filter_action"
	}
	behavior = strings.ToLower(behavior)
	switch behavior {
	case "":
		behavior = "include"
	case "include", "exclude":
	default:
		return nil, invalidValue(field, "type.googleapis.com/google.apps.gmail.v1.WatchRequest.LabelFilterBehavior", behavior)
	}
	if e := checkLabels(req.LabelIds); e != nil {
		return nil, e
	}
	exists, err := s.pushes.topicExists(c.ctx, req.TopicName)
	switch {
	case errors.Is(err, errNoPubSub):
		return nil, &Error{http.StatusBadRequest, "FAILED_PRECONDITION", "failedPrecondition", "the sandbox has no Pub/Sub emulator to publish to", ""}
	case err != nil:
		s.opts.Logger.Warn("topic lookup", "topic", req.TopicName, "error", err)
		return nil, statusError(503, "")
	case !exists:
		return nil, notFound("Error sending test message to Cloud PubSub %s : Resource not found (resource=%s).", req.TopicName, parts[2])
	}
	now := s.opts.Now()
	s.mu.Lock()
	mb := s.mailboxes[c.email]
	mb.watch = &watch{
		topic:      req.TopicName,
		labels:     uniq(req.LabelIds),
		behavior:   behavior,
		historyID:  mb.historyID,
		created:    now,
		expiration: now.Add(watchLifetime),
	}
	resp := &gmail.WatchResponse{HistoryId: mb.historyID, Expiration: mb.watch.expiration.UnixMilli()}
	s.mu.Unlock()
	return resp, nil
}

func (s *Server) stop(c *call) (any, *Error) {
	s.mu.Lock()
	s.mailboxes[c.email].watch = nil
	s.mu.Unlock()
	s.pushes.cancel(c.email)
	return nil, nil
}

var historyTypes = map[string]string{
	"messageadded": MessageAdded, "messagedeleted": MessageDeleted, "labeladded": LabelAdded, "labelremoved": LabelRemoved,
}

func (s *Server) listHistory(c *call) (any, *Error) {
	q := c.query
	raw := q.Get("startHistoryId")
	if raw == "" {
		return nil, invalidArgument("startHistoryId is required")
	}
	start, err := strconv.ParseUint(raw, 10, 64)
	if err != nil {
		return nil, invalidValue("start_history_id", "TYPE_UINT64", raw)
	}
	types := map[string]bool{}
	for _, t := range q["historyTypes"] {
		kind, ok := historyTypes[strings.ToLower(strings.ReplaceAll(t, "_", ""))]
		if !ok {
			return nil, invalidValue("history_types", "type.googleapis.com/google.apps.gmail.v1.HistoryType", t)
		}
		types[kind] = true
	}
	label := q.Get("labelId")
	limit, e := maxResults(q)
	if e != nil {
		return nil, e
	}
	after, servedEmpty := start, false
	if tok := q.Get("pageToken"); tok != "" {
		v, ok := decodePageToken(tok, "h")
		v, servedEmpty = strings.CutSuffix(v, "!")
		id, err := strconv.ParseUint(v, 10, 64)
		if !ok || err != nil || id < start {
			return nil, invalidArgument("Invalid pageToken")
		}
		after = id
	}
	now := s.opts.Now()
	delay := s.faults.historyDelay(c.email)
	expiredBelow := s.faults.expiredBelow(c.email)
	reading := s.faults.reading(c.email)

	s.mu.Lock()
	defer s.mu.Unlock()
	mb := s.mailboxes[c.email]
	mb.prune(now, s.opts.HistoryRetention)
	if start < mb.floor || start < expiredBelow {
		return nil, errEntityNotFound
	}
	visible := func(r record) bool { return delay <= 0 || !r.at.Add(delay).After(now) }
	strict := s.opts.Profile != Kind
	// labelsOf is what a record shows: strict, the message's labels now (none
	// once it is deleted), as Gmail reads them when it answers; kind, the
	// labels when the record was written.
	labelsOf := func(r record) []string {
		if !strict {
			return r.labels
		}
		if m := mb.messages[r.msgID]; m != nil {
			return m.labels
		}
		return nil
	}
	matches := func(r record) bool {
		if len(types) > 0 && !types[r.kind] {
			return false
		}
		switch {
		case label == "":
			return true
		case strict:
			return slices.Contains(labelsOf(r), label)
		}
		return slices.Contains(r.labels, label) || slices.Contains(r.changed, label)
	}
	resp := &gmail.ListHistoryResponse{}
	newest, scanned := mb.floor, 0
	for _, r := range mb.history {
		if !visible(r) {
			break
		}
		newest = r.id
		if r.id <= after || (!strict && !matches(r)) {
			continue
		}
		// Strict: a page covers at most limit records of the mailbox's
		// history and returns those that match, so a filtered page may be
		// empty and still carry a nextPageToken. Kind: a page holds limit
		// matching records.
		full := len(resp.History) == limit
		if strict {
			full = scanned == limit
		}
		if full {
			if resp.NextPageToken == "" {
				last := r.id - 1
				resp.NextPageToken = encodePageToken("h", strconv.FormatUint(last, 10))
			}
			continue
		}
		scanned++
		if matches(r) {
			labels := labelsOf(r)
			if reading.omit(r.id) {
				labels = nil
			}
			resp.History = append(resp.History, historyJSON(r, labels))
		}
	}
	// Strict: the current history id, whether or not the records up to it
	// are visible yet: the reference gives historyId as "The ID of the
	// mailbox's current history record"
	// (developers.google.com/workspace/gmail/api/reference/rest/v1/users.history/list).
	// Kind, or the indexedHistoryId fault: the newest record indexed, which
	// is what clients observe when history.list answers only with the
	// pushed id and no records (googleworkspace/python-samples#200).
	resp.HistoryId = mb.historyID
	if !strict || reading.indexed {
		resp.HistoryId = newest
	}
	// The emptyPages fault: a page that would hold records answers none and
	// a nextPageToken leading on to them, unfiltered too. Nothing in the
	// reference promises a page holds any record ("nextPageToken: Page token
	// to retrieve the next page of results in the list"), and Gmail does
	// answer so (gauteh/lieer#22, #24: "no 'history' record returned, even
	// though several pages were indicated").
	if reading.emptyPage && !servedEmpty && len(resp.History) > 0 {
		resp.History = nil
		resp.NextPageToken = encodePageToken("h", strconv.FormatUint(after, 10)+"!")
	}
	return resp, nil
}

func historyJSON(r record, labels []string) *gmail.History {
	ref := &gmail.Message{Id: r.msgID, ThreadId: r.thread}
	full := &gmail.Message{Id: r.msgID, ThreadId: r.thread, LabelIds: slices.Clone(labels)}
	h := &gmail.History{Id: r.id, Messages: []*gmail.Message{ref}}
	switch r.kind {
	case MessageAdded:
		h.MessagesAdded = []*gmail.HistoryMessageAdded{{Message: full}}
	case MessageDeleted:
		h.MessagesDeleted = []*gmail.HistoryMessageDeleted{{Message: full}}
	case LabelAdded:
		h.LabelsAdded = []*gmail.HistoryLabelAdded{{Message: full, LabelIds: slices.Clone(r.changed)}}
	case LabelRemoved:
		h.LabelsRemoved = []*gmail.HistoryLabelRemoved{{Message: full, LabelIds: slices.Clone(r.changed)}}
	}
	return h
}

var messageID = regexp.MustCompile(`^[0-9a-f]{1,32}$`)

func (s *Server) getMessage(c *call) (any, *Error) {
	format := strings.ToLower(c.query.Get("format"))
	switch format {
	case "":
		format = "full"
	case "minimal", "metadata", "full", "raw":
	default:
		return nil, invalidValue("format", "type.googleapis.com/google.apps.gmail.v1.Format", c.query.Get("format"))
	}
	// "Choose Gmail API scopes" (developers.google.com/gmail/api/auth/scopes):
	// gmail.metadata is "View your email message metadata such as labels and
	// headers, but not the email body"; Gmail answers format FULL or RAW under
	// it with 403.
	if c.metadata && (format == "full" || format == "raw") {
		return nil, forbidden("insufficientPermissions", "Metadata scope doesn't allow format %s", strings.ToUpper(format))
	}
	if !messageID.MatchString(c.id) {
		return nil, invalidArgument("Invalid id value")
	}
	delay := s.faults.messageDelay(c.email)
	now := s.opts.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	m := s.mailboxes[c.email].messages[c.id]
	// The messageDelay fault: a message history and its push already show
	// is not found for a while, as Gmail answers "Requested entity was not
	// found." to a messages.get right after the push (byeokim/gmailpush#10,
	// gone "adding a ~3 second delay").
	if m == nil || (delay > 0 && now.Before(m.added.Add(delay))) {
		return nil, errEntityNotFound
	}
	raw := m.raw()
	if m.mime != nil {
		raw = m.mime
	}
	out := &gmail.Message{
		Id: m.id, ThreadId: m.threadID, LabelIds: slices.Clone(m.labels), Snippet: m.snippet(),
		SizeEstimate: int64(len(raw)), HistoryId: m.historyID, InternalDate: m.internalDate,
	}
	switch format {
	case "metadata":
		want := c.query["metadataHeaders"]
		out.Payload = &gmail.MessagePart{MimeType: "text/plain"}
		for _, h := range m.headers {
			if len(want) == 0 || slices.ContainsFunc(want, func(w string) bool { return strings.EqualFold(w, h.name) }) {
				out.Payload.Headers = append(out.Payload.Headers, &gmail.MessagePartHeader{Name: h.name, Value: h.value})
			}
		}
	case "full":
		out.Payload = &gmail.MessagePart{
			MimeType: "text/plain",
			Body: &gmail.MessagePartBody{
				Size: int64(len(m.body)), Data: base64.URLEncoding.EncodeToString([]byte(m.body)),
				ForceSendFields: []string{"Size"},
			},
			ForceSendFields: []string{"PartId", "Filename"},
		}
		for _, h := range m.headers {
			out.Payload.Headers = append(out.Payload.Headers, &gmail.MessagePartHeader{Name: h.name, Value: h.value})
		}
		out.Payload.Headers = append(out.Payload.Headers,
			&gmail.MessagePartHeader{Name: "MIME-Version", Value: "1.0"},
			&gmail.MessagePartHeader{Name: "Content-Type", Value: `text/plain; charset="UTF-8"`})
		if m.mime != nil {
			out.Payload = mimePayload(m.mime, m.id)
		}
	case "raw":
		out.Raw = base64.URLEncoding.EncodeToString(raw)
	}
	return out, nil
}

func (s *Server) listMessages(c *call) (any, *Error) {
	q := c.query
	if q.Get("q") != "" {
		if c.metadata {
			return nil, forbidden("insufficientPermissions", "Metadata scope does not support 'q' parameter")
		}
		return nil, invalidArgument("the sandbox does not support the q parameter")
	}
	labels := q["labelIds"]
	if e := checkLabels(labels); e != nil {
		return nil, e
	}
	spamTrash := false
	if v := q.Get("includeSpamTrash"); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return nil, invalidValue("include_spam_trash", "TYPE_BOOL", v)
		}
		spamTrash = b
	}
	limit, e := maxResults(q)
	if e != nil {
		return nil, e
	}
	before := ""
	if tok := q.Get("pageToken"); tok != "" {
		v, ok := decodePageToken(tok, "m")
		if !ok || !messageID.MatchString(v) {
			return nil, invalidArgument("Invalid pageToken")
		}
		before = v
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	mb := s.mailboxes[c.email]
	resp := &gmail.ListMessagesResponse{ForceSendFields: []string{"ResultSizeEstimate"}}
	for _, m := range slices.Backward(mb.order) {
		if !slices.ContainsFunc(labels, func(l string) bool { return !m.hasLabel(l) }) &&
			(spamTrash || !hidden(m, labels)) {
			resp.ResultSizeEstimate++
			if before != "" && m.id >= before {
				continue
			}
			if len(resp.Messages) == limit {
				resp.NextPageToken = encodePageToken("m", resp.Messages[limit-1].Id)
				continue
			}
			resp.Messages = append(resp.Messages, &gmail.Message{Id: m.id, ThreadId: m.threadID})
		}
	}
	return resp, nil
}

// hidden reports whether a message is in SPAM or TRASH without the caller
// asking for that label.
func hidden(m *message, asked []string) bool {
	for _, l := range []string{"SPAM", "TRASH"} {
		if m.hasLabel(l) && !slices.Contains(asked, l) {
			return true
		}
	}
	return false
}

func (s *Server) listLabels(*call) (any, *Error) {
	resp := &gmail.ListLabelsResponse{}
	for _, id := range SystemLabels {
		resp.Labels = append(resp.Labels, &gmail.Label{Id: id, Name: id, Type: "system"})
	}
	return resp, nil
}

// maxResults reads the maxResults parameter: default 100, at most 500.
func maxResults(q map[string][]string) (int, *Error) {
	raw := ""
	if v := q["maxResults"]; len(v) > 0 {
		raw = v[0]
	}
	if raw == "" {
		return 100, nil
	}
	n, err := strconv.ParseUint(raw, 10, 32)
	if err != nil {
		return 0, invalidValue("max_results", "TYPE_UINT32", raw)
	}
	switch {
	case n == 0:
		return 100, nil
	case n > 500:
		return 500, nil
	}
	return int(n), nil
}

func encodePageToken(kind, v string) string {
	return base64.RawURLEncoding.EncodeToString([]byte(kind + ":" + v))
}

func decodePageToken(tok, kind string) (string, bool) {
	b, err := base64.RawURLEncoding.DecodeString(tok)
	if err != nil {
		return "", false
	}
	return strings.CutPrefix(string(b), kind+":")
}

// decodeBody parses a JSON request body the way Google's front end does:
// unknown fields and malformed JSON are 400 invalidArgument.
func decodeBody(body io.Reader, v any) *Error {
	data, err := io.ReadAll(io.LimitReader(body, 1<<20+1))
	if err != nil {
		return invalidArgument("Invalid JSON payload received. %v", err)
	}
	if len(data) > 1<<20 {
		return &Error{http.StatusRequestEntityTooLarge, "INVALID_ARGUMENT", "invalidArgument", "Request payload size exceeds the limit.", ""}
	}
	if len(strings.TrimSpace(string(data))) == 0 {
		return nil
	}
	dec := json.NewDecoder(strings.NewReader(string(data)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var syntax *json.SyntaxError
		var typ *json.UnmarshalTypeError
		switch {
		case errors.As(err, &syntax), errors.Is(err, io.ErrUnexpectedEOF):
			return invalidArgument("Invalid JSON payload received. Unexpected token.")
		case errors.As(err, &typ):
			return invalidArgument("Invalid JSON payload received. Invalid value at '%s' (%s).", typ.Field, typ.Value)
		case strings.HasPrefix(err.Error(), "json: unknown field "):
			return invalidArgument("Invalid JSON payload received. Unknown name %s: Cannot find field.", strings.TrimPrefix(err.Error(), "json: unknown field "))
		}
		return invalidArgument("Invalid JSON payload received. %v", err)
	}
	if dec.More() {
		return invalidArgument("Invalid JSON payload received. Unexpected token.")
	}
	return nil
}
