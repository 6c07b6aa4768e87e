package mailbody

import (
	"encoding/base64"
	"strings"
	"testing"
	"unicode/utf8"

	"google.golang.org/api/gmail/v1"
)

// FuzzDecode feeds arbitrary bodies, charsets and MIME types, alone and
// nested, and checks Decode never panics, keeps to the limit and returns
// valid UTF-8.
func FuzzDecode(f *testing.F) {
	f.Add([]byte("hello"), "text/plain", "utf-8", 10)
	f.Add([]byte("<p>x</p><script>y"), "text/html", "windows-1252", 3)
	f.Add([]byte("\x82\xb1\x82"), "text/plain", "shift_jis", 2)
	f.Add([]byte("\xc4\xe3\xba"), "text/plain", "gb2312", 1)
	f.Add([]byte("\xff\xfe"), "image/png", "", 0)
	f.Fuzz(func(t *testing.T, body []byte, mt, cs string, max int) {
		if max < 0 || max > 1<<20 {
			return
		}
		leaf := &gmail.MessagePart{MimeType: mt, Filename: string(body[:len(body)%7]),
			Headers: []*gmail.MessagePartHeader{{Name: "Content-Type", Value: mt + "; charset=" + cs}},
			Body:    &gmail.MessagePartBody{Data: base64.URLEncoding.EncodeToString(body), Size: int64(len(body))}}
		raw := &gmail.MessagePart{MimeType: mt, Body: &gmail.MessagePartBody{Data: string(body)}}
		for _, p := range []*gmail.MessagePart{leaf, raw, {MimeType: "multipart/mixed", Parts: []*gmail.MessagePart{raw, leaf, {MimeType: "multipart/alternative", Parts: []*gmail.MessagePart{leaf}}}}} {
			for _, full := range []bool{false, true} {
				c := Decode(p, full, max)
				if len(c.Text) > max || len(c.HTML) > max {
					t.Fatalf("over the limit %d: text %d html %d", max, len(c.Text), len(c.HTML))
				}
				if !utf8.ValidString(c.Text) || !utf8.ValidString(c.HTML) || !utf8.ValidString(c.Problem) {
					t.Fatalf("invalid UTF-8 out: %q %q %q", c.Text, c.HTML, c.Problem)
				}
				if !full && (c.HTML != "" || len(c.Attachments) > 0) {
					t.Fatal("text mode carried HTML or attachments")
				}
				if len(c.Attachments) > MaxAttachments || strings.Contains(c.Text, "\x00script") {
					t.Fatal("attachments over the bound")
				}
			}
		}
	})
}
