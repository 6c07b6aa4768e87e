package mailbody_test

import (
	"context"
	"encoding/base64"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"golang.org/x/oauth2"
	gmail "google.golang.org/api/gmail/v1"
	"google.golang.org/api/option"

	"github.com/gmailwatch/gmailwatch/scripts/sandbox/gmailapi"
	"github.com/gmailwatch/gmailwatch/scripts/sandbox/googleauth"
	"github.com/gmailwatch/gmailwatch/shared/mailbody"
)

const (
	clientID = "sandbox-client.apps.googleusercontent.com"
	secret   = "GOCSPX-sandbox-secret"
	alice    = "alice@example.com"
)

// sandbox inserts raw into a sandbox mailbox and returns what
// users.messages.get with format=full answers for it, read with scope.
func sandbox(t *testing.T) (func(raw string) *gmail.Message, *gmailapi.Server, func(scope string) *gmail.Service) {
	t.Helper()
	auth := googleauth.New(googleauth.Options{Clients: map[string]googleauth.Client{clientID: {Secret: secret, RedirectURIs: []string{"http://127.0.0.1/cb"}}}})
	g := gmailapi.New(gmailapi.Options{Auth: auth})
	mux := http.NewServeMux()
	auth.Register(mux)
	g.Register(mux)
	srv := httptest.NewServer(mux)
	t.Cleanup(func() { g.Close() })
	t.Cleanup(srv.Close)
	if err := g.AddMailbox(alice); err != nil {
		t.Fatal(err)
	}
	auth.AddAccount(alice)
	client := func(scope string) *gmail.Service {
		cfg := oauth2.Config{ClientID: clientID, ClientSecret: secret, Scopes: []string{scope},
			Endpoint: oauth2.Endpoint{TokenURL: srv.URL + "/token"}}
		rt := auth.IssueRefreshToken(clientID, alice, []string{scope})
		svc, err := gmail.NewService(context.Background(), option.WithEndpoint(srv.URL+"/"), option.WithTokenSource(cfg.TokenSource(context.Background(), &oauth2.Token{RefreshToken: rt})))
		if err != nil {
			t.Fatal(err)
		}
		return svc
	}
	svc := client(gmailapi.ScopeReadonly)
	return func(raw string) *gmail.Message {
		t.Helper()
		d, err := g.DeliverRaw(alice, []byte(strings.ReplaceAll(raw, "\n", "\r\n")), nil)
		if err != nil {
			t.Fatalf("DeliverRaw: %v", err)
		}
		m, err := svc.Users.Messages.Get("me", d.ID).Format("full").Do()
		if err != nil {
			t.Fatalf("messages.get: %v", err)
		}
		return m
	}, g, client
}

const head = "From: Bo <bo@example.com>\nTo: alice@example.com\nSubject: Hi\nMIME-Version: 1.0\n"

func TestDecodeSandboxMessages(t *testing.T) {
	get, _, _ := sandbox(t)
	b64 := func(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }
	cases := []struct {
		name, raw  string
		full       bool
		text, html string
		atts       []mailbody.Attachment
		problem    string
	}{
		{name: "plain utf-8", raw: head + "Content-Type: text/plain; charset=utf-8\n\nHej då ☃\n", text: "Hej då ☃\r\n"},
		{name: "alternative", full: true, raw: head + `Content-Type: multipart/alternative; boundary="b1"

--b1
Content-Type: text/plain; charset=utf-8

plain part
--b1
Content-Type: text/html; charset=utf-8

<p>html <b>part</b></p>
--b1--
`, text: "plain part", html: "<p>html <b>part</b></p>"},
		{name: "html only gives text", raw: head + "Content-Type: text/html; charset=utf-8\n\n<html><head><style>p{}</style></head><body><p>Hello</p><script>x()</script><p>World</p></body></html>\n", text: "Hello\n\nWorld"},
		{name: "nested with attachment and inline image", full: true, raw: head + `Content-Type: multipart/mixed; boundary="m"

--m
Content-Type: multipart/related; boundary="r"

--r
Content-Type: multipart/alternative; boundary="a"

--a
Content-Type: text/plain; charset=us-ascii

nested text
--a
Content-Type: text/html; charset=us-ascii

<img src="cid:logo@x">
--a--
--r
Content-Type: image/png
Content-Disposition: inline
Content-ID: <logo@x>
Content-Transfer-Encoding: base64

` + b64("\x89PNG....") + `
--r--
--m
Content-Type: application/pdf; name="r.pdf"
Content-Disposition: attachment; filename="r.pdf"
Content-Transfer-Encoding: base64

` + b64("%PDF-1.4 ten") + `
--m--
`, text: "nested text", html: `<img src="cid:logo@x">`, atts: []mailbody.Attachment{
			{MimeType: "image/png", Size: 8, ContentID: "logo@x", Inline: true},
			{Filename: "r.pdf", MimeType: "application/pdf", Size: 12},
		}},
		{name: "iso-8859-1 quoted-printable", raw: head + "Content-Type: text/plain; charset=ISO-8859-1\nContent-Transfer-Encoding: quoted-printable\n\nCaf=E9 cr=E8me=\n br=FBl=E9e\n", text: "Café crème brûlée\r\n"},
		{name: "windows-1252 8bit", raw: head + "Content-Type: text/plain; charset=windows-1252\n\n\x93quoted\x94 \x80 5\n", text: "“quoted” € 5\r\n"},
		{name: "shift_jis base64", raw: head + "Content-Type: text/plain; charset=Shift_JIS\nContent-Transfer-Encoding: base64\n\n" + b64("\x82\xb1\x82\xf1\x82\xc9\x82\xbf\x82\xcd") + "\n", text: "こんにちは"},
		{name: "gb2312 base64", raw: head + "Content-Type: text/plain; charset=gb2312\nContent-Transfer-Encoding: base64\n\n" + b64("\xc4\xe3\xba\xc3") + "\n", text: "你好"},
		{name: "unknown charset", raw: head + "Content-Type: text/plain; charset=x-klingon\n\nqapla\n", problem: `text/plain: unknown charset "x-klingon"`},
		{name: "malformed multipart", raw: head + "Content-Type: multipart/mixed; boundary=\"zz\"\n\nno boundary ever appears\n", problem: "multipart/mixed has no parts"},
		{name: "bad content type", raw: head + "Content-Type: ;;;\n\nstill text\n", text: "still text\r\n"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			m := get(c.raw)
			got := mailbody.Decode(m.Payload, c.full, 64<<10)
			if got.Text != c.text || got.HTML != c.html || got.Problem != c.problem || got.Truncated {
				t.Errorf("Decode = text %q html %q problem %q truncated %v; want %q %q %q", got.Text, got.HTML, got.Problem, got.Truncated, c.text, c.html, c.problem)
			}
			if len(got.Attachments) != len(c.atts) {
				t.Fatalf("attachments = %+v, want %+v", got.Attachments, c.atts)
			}
			for i, a := range got.Attachments {
				if a.AttachmentID == "" {
					t.Errorf("attachment %d has no attachment id", i)
				}
				a.AttachmentID = ""
				if a != c.atts[i] {
					t.Errorf("attachment %d = %+v, want %+v", i, a, c.atts[i])
				}
			}
			if !c.full && got.HTML != "" {
				t.Error("text mode carried HTML")
			}
		})
	}
}

func TestDecodeTruncatesLargeBody(t *testing.T) {
	get, _, _ := sandbox(t)
	body := strings.Repeat("é", 5<<20/2) // 5 MiB of two-byte runes
	m := get(head + "Content-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: base64\n\n" + base64.StdEncoding.EncodeToString([]byte(body)) + "\n")
	got := mailbody.Decode(m.Payload, true, 64<<10+1)
	if !got.Truncated || len(got.Text) != 64<<10 || !strings.HasPrefix(body, got.Text) {
		t.Fatalf("Decode of 5 MiB = %d bytes, truncated %v; want 65536 bytes cut on a rune boundary, truncated", len(got.Text), got.Truncated)
	}
}

func TestDecodeBoundsAttachments(t *testing.T) {
	get, _, _ := sandbox(t)
	var b strings.Builder
	b.WriteString(head + "Content-Type: multipart/mixed; boundary=\"m\"\n\n--m\nContent-Type: text/plain\n\nsee files\n")
	for range mailbody.MaxAttachments + 5 {
		b.WriteString("--m\nContent-Type: text/csv\nContent-Disposition: attachment; filename=\"" + strings.Repeat("n", 400) + ".csv\"\n\na,b\n")
	}
	b.WriteString("--m--\n")
	got := mailbody.Decode(get(b.String()).Payload, true, 1024)
	if len(got.Attachments) != mailbody.MaxAttachments || got.AttachmentsOmitted != 5 || len(got.Attachments[0].Filename) != 255 {
		t.Fatalf("attachments %d, omitted %d, filename %d bytes; want %d, 5, 255", len(got.Attachments), got.AttachmentsOmitted, len(got.Attachments[0].Filename), mailbody.MaxAttachments)
	}
}

func TestDecodeMalformedPayload(t *testing.T) {
	for name, c := range map[string]struct {
		p    *gmail.MessagePart
		want string
	}{
		"no payload":         {nil, "message has no payload"},
		"bad base64":         {&gmail.MessagePart{MimeType: "text/plain", Body: &gmail.MessagePartBody{Data: "!!!"}}, "text/plain body is not base64url"},
		"body as attachment": {&gmail.MessagePart{MimeType: "text/plain", Body: &gmail.MessagePartBody{AttachmentId: "A"}}, "text/plain body is stored as an attachment"},
	} {
		got := mailbody.Decode(c.p, false, 100)
		if got.Problem != c.want || got.Text != "" {
			t.Errorf("%s: Decode = %+v, want problem %q and no text", name, got, c.want)
		}
	}
}

func TestSandboxRefusesFullUnderMetadata(t *testing.T) {
	_, g, client := sandbox(t)
	d, err := g.DeliverRaw(alice, []byte(head+"\r\nhi\r\n"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := client(gmailapi.ScopeMetadata).Users.Messages.Get("me", d.ID).Format("full").Do(); err == nil || !strings.Contains(err.Error(), "403") {
		t.Fatalf("format=full under gmail.metadata = %v, want 403", err)
	}
	if _, err := g.DeliverRaw(alice, nil, nil); err == nil {
		t.Fatal("DeliverRaw of nothing succeeded")
	}
}
