package gmailapi_test

import (
	"context"
	"encoding/base64"
	"slices"
	"strings"
	"testing"
	"time"

	gmail "google.golang.org/api/gmail/v1"

	"github.com/gmailwatch/gmailwatch/scripts/sandbox/gmailapi"
)

func TestProfileLabelsAndMessages(t *testing.T) {
	t.Parallel()
	e := newEnv(t, gmailapi.Options{})
	svc := e.mailbox(t, "Alice@Example.com", gmailapi.ScopeReadonly)
	ctx := context.Background()

	p, err := svc.Users.GetProfile("me").Do()
	if err != nil {
		t.Fatal(err)
	}
	if p.EmailAddress != "alice@example.com" || p.HistoryId < 1_000_000 || p.MessagesTotal != 0 {
		t.Fatalf("profile = %+v, want alice@example.com, a large history id, no messages", p)
	}

	labels, err := svc.Users.Labels.List("alice@example.com").Do()
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, l := range labels.Labels {
		ids = append(ids, l.Id)
	}
	for _, want := range []string{"INBOX", "SPAM", "TRASH", "UNREAD", "STARRED", "IMPORTANT", "SENT", "DRAFT", "CATEGORY_PERSONAL"} {
		if !slices.Contains(ids, want) {
			t.Errorf("labels.list = %v, missing %s", ids, want)
		}
	}

	var sent []gmailapi.Delivered
	for i, d := range []gmailapi.Delivery{
		{To: "alice@example.com", From: "Bob <bob@example.com>", Subject: "one", Body: "first body"},
		{To: "alice@example.com", From: "carol@example.com", Subject: "two", Body: "second", LabelIDs: []string{"SPAM"}},
		{To: "ALICE@example.com", From: "dave@example.com", Subject: "Grüße <3", Body: "third\nline"},
		{To: "alice@example.com", From: "erin@example.com", Subject: "four", Body: "fourth", LabelIDs: []string{"INBOX", "STARRED"}},
	} {
		got := e.deliver(t, d)
		if len(got.ID) != 16 || got.ThreadID != got.ID {
			t.Fatalf("delivery %d = %+v, want a 16-hex id starting its own thread", i, got)
		}
		if i > 0 && (got.HistoryID <= sent[i-1].HistoryID || got.ID <= sent[i-1].ID) {
			t.Fatalf("delivery %d = %+v after %+v: ids must increase", i, got, sent[i-1])
		}
		sent = append(sent, got)
	}
	reply := e.deliver(t, gmailapi.Delivery{To: "alice@example.com", Subject: "Re: one", ThreadID: sent[0].ThreadID})
	if reply.ThreadID != sent[0].ThreadID {
		t.Fatalf("reply thread = %s, want %s", reply.ThreadID, sent[0].ThreadID)
	}

	p, _ = svc.Users.GetProfile("me").Do()
	if p.MessagesTotal != 5 || p.ThreadsTotal != 4 || p.HistoryId != reply.HistoryID {
		t.Fatalf("profile = %+v, want 5 messages, 4 threads, history %d", p, reply.HistoryID)
	}

	// messages.list: newest first, SPAM hidden unless asked, pages of 2.
	var listed []string
	call := svc.Users.Messages.List("me").MaxResults(2)
	pages := 0
	err = call.Pages(ctx, func(r *gmail.ListMessagesResponse) error {
		pages++
		if r.ResultSizeEstimate != 4 {
			t.Errorf("resultSizeEstimate = %d, want 4", r.ResultSizeEstimate)
		}
		for _, m := range r.Messages {
			listed = append(listed, m.Id)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{reply.ID, sent[3].ID, sent[2].ID, sent[0].ID}
	if !slices.Equal(listed, want) || pages != 2 {
		t.Fatalf("messages.list = %v in %d pages, want %v in 2", listed, pages, want)
	}
	for _, tc := range []struct {
		name  string
		call  *gmail.UsersMessagesListCall
		want  []string
		total int64
	}{
		{"label INBOX+STARRED", svc.Users.Messages.List("me").LabelIds("INBOX", "STARRED"), []string{sent[3].ID}, 1},
		{"SPAM asked for", svc.Users.Messages.List("me").LabelIds("SPAM"), []string{sent[1].ID}, 1},
		{"includeSpamTrash", svc.Users.Messages.List("me").IncludeSpamTrash(true), []string{reply.ID, sent[3].ID, sent[2].ID, sent[1].ID, sent[0].ID}, 5},
		{"no match", svc.Users.Messages.List("me").LabelIds("DRAFT"), nil, 0},
	} {
		r, err := tc.call.Do()
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		var got []string
		for _, m := range r.Messages {
			got = append(got, m.Id)
		}
		if !slices.Equal(got, tc.want) || r.ResultSizeEstimate != tc.total {
			t.Errorf("%s: got %v (estimate %d), want %v (%d)", tc.name, got, r.ResultSizeEstimate, tc.want, tc.total)
		}
	}

	// messages.get in every format.
	id := sent[2].ID
	for _, tc := range []struct {
		format      string
		headers     []string
		wantHeaders []string
		wantRaw     bool
		wantBody    string
	}{
		{format: "minimal"},
		{format: "metadata", wantHeaders: []string{"From", "To", "Subject", "Date", "Message-ID"}},
		{format: "metadata", headers: []string{"subject", "From"}, wantHeaders: []string{"From", "Subject"}},
		{format: "full", wantHeaders: []string{"From", "To", "Subject", "Date", "Message-ID", "MIME-Version", "Content-Type"}, wantBody: "third\nline"},
		{format: "raw", wantRaw: true},
	} {
		c := svc.Users.Messages.Get("me", id).Format(tc.format)
		if tc.headers != nil {
			c = c.MetadataHeaders(tc.headers...)
		}
		m, err := c.Do()
		if err != nil {
			t.Fatalf("get format=%s: %v", tc.format, err)
		}
		if m.Id != id || m.ThreadId != id || !slices.Equal(m.LabelIds, []string{"INBOX", "UNREAD"}) ||
			m.HistoryId != sent[2].HistoryID || m.InternalDate <= 0 || m.SizeEstimate <= 0 || m.Snippet != "third line" {
			t.Fatalf("get format=%s = %+v", tc.format, m)
		}
		var names []string
		if m.Payload != nil {
			for _, h := range m.Payload.Headers {
				names = append(names, h.Name)
			}
			if tc.wantHeaders != nil && header(m, "Subject") != "Grüße <3" && slices.Contains(tc.wantHeaders, "Subject") {
				t.Errorf("format=%s Subject = %q", tc.format, header(m, "Subject"))
			}
		}
		if !slices.Equal(names, tc.wantHeaders) {
			t.Errorf("format=%s headers = %v, want %v", tc.format, names, tc.wantHeaders)
		}
		if tc.wantBody != "" {
			b, _ := base64.URLEncoding.DecodeString(m.Payload.Body.Data)
			if string(b) != tc.wantBody {
				t.Errorf("full body = %q, want %q", b, tc.wantBody)
			}
		}
		if tc.wantRaw {
			b, err := base64.URLEncoding.DecodeString(m.Raw)
			if err != nil || !strings.Contains(string(b), "Subject: =?utf-8?q?Gr=C3=BC=C3=9Fe_<3?=\r\n") || !strings.HasSuffix(string(b), "\r\n\r\nthird\r\nline") {
				t.Errorf("raw = %q (%v)", b, err)
			}
		} else if m.Raw != "" {
			t.Errorf("format=%s has raw", tc.format)
		}
	}
}

func header(m *gmail.Message, name string) string {
	for _, h := range m.Payload.Headers {
		if h.Name == name {
			return h.Value
		}
	}
	return ""
}

func TestHistory(t *testing.T) {
	t.Parallel()
	// The kind profile: records show the labels they were written with (strict_test.go has the strict reading).
	e := newEnv(t, gmailapi.Options{Profile: gmailapi.Kind})
	svc := e.mailbox(t, "hist@example.com")
	ctx := context.Background()
	start, err := e.gmail.HistoryID("hist@example.com")
	if err != nil {
		t.Fatal(err)
	}
	a := e.deliver(t, gmailapi.Delivery{To: "hist@example.com", Subject: "a"})
	b := e.deliver(t, gmailapi.Delivery{To: "hist@example.com", Subject: "b", LabelIDs: []string{"SPAM"}})
	hLabels, err := e.gmail.ModifyLabels("hist@example.com", a.ID, []string{"STARRED"}, []string{"UNREAD"})
	if err != nil {
		t.Fatal(err)
	}
	hDel, err := e.gmail.DeleteMessage("hist@example.com", b.ID)
	if err != nil {
		t.Fatal(err)
	}
	c := e.deliver(t, gmailapi.Delivery{To: "hist@example.com", Subject: "c"})

	type rec struct {
		kind, msg string
		labels    []string
	}
	kind := func(h *gmail.History) rec {
		switch {
		case len(h.MessagesAdded) == 1:
			return rec{gmailapi.MessageAdded, h.MessagesAdded[0].Message.Id, h.MessagesAdded[0].Message.LabelIds}
		case len(h.MessagesDeleted) == 1:
			return rec{gmailapi.MessageDeleted, h.MessagesDeleted[0].Message.Id, nil}
		case len(h.LabelsAdded) == 1:
			return rec{gmailapi.LabelAdded, h.LabelsAdded[0].Message.Id, h.LabelsAdded[0].LabelIds}
		case len(h.LabelsRemoved) == 1:
			return rec{gmailapi.LabelRemoved, h.LabelsRemoved[0].Message.Id, h.LabelsRemoved[0].LabelIds}
		}
		t.Fatalf("history record %+v has no single change", h)
		return rec{}
	}
	for _, tc := range []struct {
		name     string
		call     func() *gmail.UsersHistoryListCall
		want     []rec
		wantPage int
	}{
		{"all", func() *gmail.UsersHistoryListCall { return svc.Users.History.List("me").StartHistoryId(start) },
			[]rec{{gmailapi.MessageAdded, a.ID, []string{"INBOX", "UNREAD"}}, {gmailapi.MessageAdded, b.ID, []string{"SPAM"}},
				{gmailapi.LabelAdded, a.ID, []string{"STARRED"}}, {gmailapi.LabelRemoved, a.ID, []string{"UNREAD"}},
				{gmailapi.MessageDeleted, b.ID, nil}, {gmailapi.MessageAdded, c.ID, []string{"INBOX", "UNREAD"}}}, 1},
		{"after a", func() *gmail.UsersHistoryListCall {
			return svc.Users.History.List("me").StartHistoryId(a.HistoryID).HistoryTypes("messageAdded")
		}, []rec{{gmailapi.MessageAdded, b.ID, []string{"SPAM"}}, {gmailapi.MessageAdded, c.ID, []string{"INBOX", "UNREAD"}}}, 1},
		{"INBOX messageAdded in pages of 1", func() *gmail.UsersHistoryListCall {
			return svc.Users.History.List("me").StartHistoryId(start).HistoryTypes("messageAdded").LabelId("INBOX").MaxResults(1)
		}, []rec{{gmailapi.MessageAdded, a.ID, []string{"INBOX", "UNREAD"}}, {gmailapi.MessageAdded, c.ID, []string{"INBOX", "UNREAD"}}}, 2},
		{"label changes", func() *gmail.UsersHistoryListCall {
			return svc.Users.History.List("me").StartHistoryId(start).HistoryTypes("labelAdded", "labelRemoved").MaxResults(1)
		}, []rec{{gmailapi.LabelAdded, a.ID, []string{"STARRED"}}, {gmailapi.LabelRemoved, a.ID, []string{"UNREAD"}}}, 2},
		{"at the head", func() *gmail.UsersHistoryListCall { return svc.Users.History.List("me").StartHistoryId(c.HistoryID) }, nil, 1},
	} {
		var got []rec
		var last uint64
		pages := 0
		err := tc.call().Pages(ctx, func(r *gmail.ListHistoryResponse) error {
			pages++
			if r.HistoryId != c.HistoryID {
				t.Errorf("%s: response historyId = %d, want the latest %d", tc.name, r.HistoryId, c.HistoryID)
			}
			for _, h := range r.History {
				if h.Id <= last || len(h.Messages) != 1 {
					t.Errorf("%s: record %d after %d (messages %v): want increasing ids, one message each", tc.name, h.Id, last, h.Messages)
				}
				last = h.Id
				got = append(got, kind(h))
			}
			return nil
		})
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if pages != tc.wantPage || len(got) != len(tc.want) {
			t.Fatalf("%s: got %d records %+v in %d pages, want %+v in %d", tc.name, len(got), got, pages, tc.want, tc.wantPage)
		}
		for i := range got {
			if got[i].kind != tc.want[i].kind || got[i].msg != tc.want[i].msg || !slices.Equal(got[i].labels, tc.want[i].labels) {
				t.Errorf("%s: record %d = %+v, want %+v", tc.name, i, got[i], tc.want[i])
			}
		}
	}
	if hLabels <= a.HistoryID || hDel <= hLabels {
		t.Fatalf("history ids %d, %d after %d must increase", hLabels, hDel, a.HistoryID)
	}
	_, err = svc.Users.Messages.Get("me", b.ID).Format("metadata").Do()
	wantAPIError(t, "get deleted message", err, 404, "notFound")
	m, err := svc.Users.Messages.Get("me", a.ID).Format("minimal").Do()
	if err != nil || !slices.Equal(m.LabelIds, []string{"INBOX", "STARRED"}) || m.HistoryId != hLabels {
		t.Fatalf("get relabelled = %+v, %v; want INBOX+STARRED at history %d", m, err, hLabels)
	}
}

func TestHistoryRetentionWindow(t *testing.T) {
	t.Parallel()
	clk := &clock{t: time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)}
	e := newEnv(t, gmailapi.Options{Now: clk.Now, HistoryRetention: 7 * 24 * time.Hour})
	svc := e.mailbox(t, "old@example.com")
	start, _ := e.gmail.HistoryID("old@example.com")
	first := e.deliver(t, gmailapi.Delivery{To: "old@example.com", Subject: "old"})
	clk.Advance(6 * 24 * time.Hour)
	second := e.deliver(t, gmailapi.Delivery{To: "old@example.com", Subject: "newer"})

	for _, tc := range []struct {
		name    string
		advance time.Duration
		start   uint64
		want    int // records, or -1 for 404
	}{
		{"within the window", 0, start, 2},
		{"below the first id ever", 0, start - 1, -1},
		{"first record aged out", 2 * 24 * time.Hour, start, -1},
		{"from the aged-out record", 0, first.HistoryID, 1},
		{"everything aged out", 7 * 24 * time.Hour, first.HistoryID, -1},
		{"from the head", 0, second.HistoryID, 0},
	} {
		clk.Advance(tc.advance)
		r, err := svc.Users.History.List("me").StartHistoryId(tc.start).Do()
		if tc.want < 0 {
			wantAPIError(t, tc.name, err, 404, "notFound")
			continue
		}
		if err != nil || len(r.History) != tc.want || r.HistoryId != second.HistoryID {
			t.Fatalf("%s: got %+v, %v; want %d records at %d", tc.name, r, err, tc.want, second.HistoryID)
		}
	}
}

func TestMailboxChangesRejectBadInput(t *testing.T) {
	t.Parallel()
	e := newEnv(t, gmailapi.Options{})
	e.mailbox(t, "in@example.com")
	m := e.deliver(t, gmailapi.Delivery{To: "in@example.com", Subject: "keep"})
	before, _ := e.gmail.HistoryID("in@example.com")
	for _, tc := range []struct {
		name string
		do   func() error
		code int
	}{
		{"deliver to unknown mailbox", func() error { _, err := e.gmail.Deliver(gmailapi.Delivery{To: "nobody@example.com"}); return err }, 400},
		{"deliver unknown label", func() error {
			_, err := e.gmail.Deliver(gmailapi.Delivery{To: "in@example.com", LabelIDs: []string{"Label_9"}})
			return err
		}, 400},
		{"deliver header injection", func() error {
			_, err := e.gmail.Deliver(gmailapi.Delivery{To: "in@example.com", Subject: "x\r\nBcc: evil@example.com"})
			return err
		}, 400},
		{"deliver unknown thread", func() error {
			_, err := e.gmail.Deliver(gmailapi.Delivery{To: "in@example.com", ThreadID: "00000000000000ff"})
			return err
		}, 400},
		{"delete unknown message", func() error { _, err := e.gmail.DeleteMessage("in@example.com", "00000000000000ff"); return err }, 404},
		{"delete in unknown mailbox", func() error { _, err := e.gmail.DeleteMessage("x@example.com", m.ID); return err }, 400},
		{"relabel with unknown label", func() error {
			_, err := e.gmail.ModifyLabels("in@example.com", m.ID, []string{"NOPE"}, nil)
			return err
		}, 400},
		{"duplicate mailbox", func() error { return e.gmail.AddMailbox("IN@example.com") }, 409},
		{"mailbox with a name", func() error { return e.gmail.AddMailbox("Bob <bob@example.com>") }, 400},
		{"bad faults", func() error { return e.gmail.SetFaults("", gmailapi.Faults{ErrorRate: 1.5}) }, 400},
		{"faults for unknown mailbox", func() error { return e.gmail.SetFaults("x@example.com", gmailapi.Faults{}) }, 400},
	} {
		err := tc.do()
		ge, ok := err.(*gmailapi.Error)
		if !ok || ge.Code != tc.code || ge.Message == "" {
			t.Errorf("%s: got %v, want a %d *gmailapi.Error", tc.name, err, tc.code)
		}
	}
	if after, _ := e.gmail.HistoryID("in@example.com"); after != before {
		t.Fatalf("history id moved from %d to %d on rejected changes", before, after)
	}
	if got := e.gmail.Mailboxes(); !slices.Equal(got, []string{"in@example.com"}) {
		t.Fatalf("mailboxes = %v", got)
	}
	if f := e.gmail.Faults(); len(f) != 0 {
		t.Fatalf("faults = %v after rejected ones", f)
	}
}
