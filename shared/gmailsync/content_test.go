package gmailsync_test

import (
	"encoding/base64"
	"encoding/json"
	"strings"
	"testing"

	"github.com/gmailwatch/gmailwatch/scripts/testenv"
	"github.com/gmailwatch/gmailwatch/shared/events"
	"github.com/gmailwatch/gmailwatch/shared/gmailclient"
	"github.com/gmailwatch/gmailwatch/shared/gmailsync"
	"github.com/gmailwatch/gmailwatch/shared/mailbody"
	"github.com/gmailwatch/gmailwatch/shared/store"
)

// TestEventsCarryContent syncs mail of every awkward shape with
// MESSAGE_CONTENT=full: each is announced once, in its event the decoded
// text, HTML and attachment metadata, a 5 MiB body cut and flagged, and a
// message that cannot be decoded announced with its metadata and the reason;
// no event nears Pub/Sub's 10 MB limit and the sync never fails.
func TestEventsCarryContent(t *testing.T) {
	w := testenv.NewWorld(t, testenv.Options{Scope: gmailclient.ScopeReadonly})
	set := fast
	set.Content = mailbody.Settings{Mode: mailbody.Full, MaxBytes: 64 << 10}
	syncer := gmailsync.New(gmailsync.Deps{Users: w.Store, Gmail: w.Mailboxes(), Events: w.Publisher, Logger: w.Log}, set)
	const alice = "content@example.com"
	w.Connect(alice)

	b64 := func(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }
	head := "From: Bo <bo@example.com>\nTo: " + alice + "\nMIME-Version: 1.0\n"
	big := strings.Repeat("é", 5<<20/2) // 5 MiB
	type want struct {
		text, html, problem string
		truncated           bool
		attachments         int
	}
	mails := map[string]struct {
		raw string
		want
	}{
		"alternative": {"Content-Type: multipart/alternative; boundary=\"b\"\n\n--b\nContent-Type: text/plain; charset=utf-8\n\nplain part\n--b\nContent-Type: text/html; charset=utf-8\n\n<p>html part</p>\n--b--\n",
			want{text: "plain part", html: "<p>html part</p>"}},
		"nested": {"Content-Type: multipart/mixed; boundary=\"m\"\n\n--m\nContent-Type: multipart/related; boundary=\"r\"\n\n--r\nContent-Type: text/html; charset=us-ascii\n\n<img src=\"cid:logo@x\"> hi\n--r\nContent-Type: image/png\nContent-Disposition: inline\nContent-ID: <logo@x>\nContent-Transfer-Encoding: base64\n\n" + b64("\x89PNG....") + "\n--r--\n--m\nContent-Type: application/pdf; name=\"r.pdf\"\nContent-Disposition: attachment; filename=\"r.pdf\"\nContent-Transfer-Encoding: base64\n\n" + b64("%PDF-1.4 ten") + "\n--m--\n",
			want{text: "hi", html: "<img src=\"cid:logo@x\"> hi", attachments: 2}},
		"latin-1":   {"Content-Type: text/plain; charset=ISO-8859-1\nContent-Transfer-Encoding: quoted-printable\n\nCaf=E9 cr=E8me\n", want{text: "Café crème\r\n"}},
		"shift_jis": {"Content-Type: text/plain; charset=Shift_JIS\nContent-Transfer-Encoding: base64\n\n" + b64("\x82\xb1\x82\xf1\x82\xc9\x82\xbf\x82\xcd") + "\n", want{text: "こんにちは"}},
		"5 MiB":     {"Content-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: base64\n\n" + b64(big) + "\n", want{text: big[:64<<10], truncated: true}},
		"malformed": {"Content-Type: multipart/mixed; boundary=\"zz\"\n\nno boundary ever appears\n", want{problem: "multipart/mixed has no parts"}},
	}
	ids := map[string]string{} // message id -> case
	var last uint64
	for name, m := range mails {
		raw := head + "Subject: " + name + "\n" + m.raw
		d, err := w.Sandbox.Gmail.DeliverRaw(alice, []byte(strings.ReplaceAll(raw, "\n", "\r\n")), nil)
		if err != nil {
			t.Fatalf("%s: DeliverRaw: %v", name, err)
		}
		ids[d.ID], last = name, d.HistoryID
	}
	var res gmailsync.Result
	var err error
	for range 8 { // as Pub/Sub redelivers after a retryable error
		if res, err = syncer.OnPush(t.Context(), alice, int64(last)); err == nil {
			break
		}
	}
	if err != nil || res.Announced != len(mails) {
		t.Fatalf("sync: %+v, %v; want %d announced and no error", res, err, len(mails))
	}
	got := map[string]int{}
	for _, ev := range w.Events.Await(len(mails)) {
		if ev.Type != events.MessageReceived {
			continue
		}
		name, ok := ids[ev.MessageID]
		if !ok {
			t.Errorf("event for unknown message %s", ev.MessageID)
			continue
		}
		got[name]++
		if raw, _ := json.Marshal(ev); len(raw) > 1<<20 {
			t.Errorf("%s: event of %d bytes", name, len(raw))
		}
		wt := mails[name].want
		c := ev.Content
		if c == nil || ev.Subject != name || ev.From == "" {
			t.Errorf("%s: event %+v, want its metadata and content", name, ev)
			continue
		}
		if c.Text != wt.text || c.HTML != wt.html || c.Problem != wt.problem || c.Truncated != wt.truncated || len(c.Attachments) != wt.attachments {
			t.Errorf("%s: content text %.40q html %q problem %q truncated %v attachments %d; want %.40q %q %q %v %d",
				name, c.Text, c.HTML, c.Problem, c.Truncated, len(c.Attachments), wt.text, wt.html, wt.problem, wt.truncated, wt.attachments)
		}
	}
	for name := range mails {
		if got[name] != 1 {
			t.Errorf("%s announced %d times, want once", name, got[name])
		}
	}
	if u, _ := w.Store.Get(t.Context(), store.Key(alice)); u.Cursor < int64(last) {
		t.Errorf("cursor %d, want at least %d", u.Cursor, last)
	}
}
