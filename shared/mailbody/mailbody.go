// Package mailbody turns the MIME tree Gmail's users.messages.get returns
// with format=full into what an event carries: the plain-text body (from
// text/plain, else the text of text/html), the HTML body and the
// attachments' metadata, decoded to UTF-8 and bounded in size. It calls no
// API and never fails: a part it cannot decode is named in Content.Problem.
package mailbody

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"io"
	"mime"
	"strings"
	"unicode/utf8"

	"golang.org/x/net/html"
	"golang.org/x/text/encoding/htmlindex"
	"google.golang.org/api/gmail/v1"
)

// Limits on what one message may put into an event, whatever the mail.
const (
	MaxAttachments = 100 // attachments listed; the rest only counted
	maxName        = 255 // bytes of a filename, MIME type or content id kept
	maxDepth       = 32  // nesting of multiparts walked
	maxParts       = 1000
)

// Content is the decoded content of one message.
type Content struct {
	Text               string       `json:"text,omitempty"`
	HTML               string       `json:"html,omitempty"`
	Truncated          bool         `json:"truncated,omitempty"` // Text or HTML was cut to the limit
	Attachments        []Attachment `json:"attachments,omitempty"`
	AttachmentsOmitted int          `json:"attachmentsOmitted,omitempty"` // beyond MaxAttachments
	Problem            string       `json:"problem,omitempty"`            // why a part could not be decoded
}

// Attachment is one attachment's or inline part's metadata, never its bytes;
// the application fetches them with users.messages.attachments.get.
type Attachment struct {
	Filename     string `json:"filename,omitempty"`
	MimeType     string `json:"mimeType"`
	Size         int64  `json:"size"`
	AttachmentID string `json:"attachmentId,omitempty"`
	ContentID    string `json:"contentId,omitempty"`
	Inline       bool   `json:"inline,omitempty"`
}

// Decode extracts the content of payload. With full false only Text is
// filled; with full true HTML and Attachments too. Text and HTML are each
// cut to at most max bytes on a UTF-8 boundary.
func Decode(payload *gmail.MessagePart, full bool, max int) Content {
	w := walker{full: full}
	if payload == nil {
		return Content{Problem: "message has no payload"}
	}
	w.walk(payload, 0)
	c := Content{Attachments: w.atts, AttachmentsOmitted: w.omitted}
	var problems []string
	if w.problem != "" {
		problems = append(problems, w.problem)
	}
	text, ok, p := w.decode(w.plain)
	if p != "" {
		problems = append(problems, p)
	}
	if !ok {
		var h string
		h, ok, p = w.decode(w.html)
		if p != "" && w.plain == nil {
			problems = append(problems, p)
		}
		if ok {
			text = htmlText(h)
		}
	}
	c.Text, c.Truncated = cut(text, max)
	if full {
		h, _, p := w.decode(w.html)
		if p != "" && w.plain != nil {
			problems = append(problems, p)
		}
		var t bool
		c.HTML, t = cut(h, max)
		c.Truncated = c.Truncated || t
	}
	c.Problem = strings.Join(problems, "; ")
	return c
}

type walker struct {
	full        bool
	plain, html *gmail.MessagePart
	atts        []Attachment
	omitted     int
	parts       int
	problem     string
}

func (w *walker) walk(p *gmail.MessagePart, depth int) {
	if p == nil {
		return
	}
	w.parts++
	if w.parts > maxParts || depth > maxDepth {
		if w.problem == "" {
			w.problem = fmt.Sprintf("MIME tree deeper than %d or larger than %d parts: the rest left out", maxDepth, maxParts)
		}
		return
	}
	mt := strings.ToLower(p.MimeType)
	if strings.HasPrefix(mt, "multipart/") {
		if len(p.Parts) == 0 && w.problem == "" {
			w.problem = mt + " has no parts"
		}
		for _, c := range p.Parts {
			w.walk(c, depth+1)
		}
		return
	}
	disp, _, _ := mime.ParseMediaType(header(p, "Content-Disposition"))
	attached := p.Filename != "" || disp == "attachment"
	switch {
	case !attached && mt == "text/plain" && w.plain == nil:
		w.plain = p
	case !attached && mt == "text/html" && w.html == nil:
		w.html = p
	case w.full && (attached || !strings.HasPrefix(mt, "text/")):
		if len(w.atts) >= MaxAttachments {
			w.omitted++
			return
		}
		a := Attachment{
			Filename:  clip(p.Filename),
			MimeType:  clip(p.MimeType),
			ContentID: clip(strings.Trim(header(p, "Content-ID"), "<> ")),
			Inline:    disp == "inline",
		}
		if p.Body != nil {
			a.Size, a.AttachmentID = p.Body.Size, p.Body.AttachmentId
		}
		w.atts = append(w.atts, a)
	}
}

// decode returns the UTF-8 text of a text part: ok false when there is no
// part or it cannot be decoded, with the reason.
func (w *walker) decode(p *gmail.MessagePart) (string, bool, string) {
	if p == nil {
		return "", false, ""
	}
	if p.Body == nil || p.Body.Data == "" {
		if p.Body != nil && p.Body.AttachmentId != "" {
			return "", false, p.MimeType + " body is stored as an attachment"
		}
		return "", true, ""
	}
	raw, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(p.Body.Data, "="))
	if err != nil {
		return "", false, p.MimeType + " body is not base64url"
	}
	s, err := toUTF8(raw, header(p, "Content-Type"))
	if err != nil {
		return "", false, p.MimeType + ": " + err.Error()
	}
	return s, true, ""
}

// toUTF8 decodes raw by the charset of contentType (UTF-8 when none is
// named), replacing bytes that are invalid in it.
func toUTF8(raw []byte, contentType string) (string, error) {
	_, params, _ := mime.ParseMediaType(contentType)
	cs := strings.ToLower(strings.TrimSpace(params["charset"]))
	switch cs {
	case "", "utf-8", "utf8", "us-ascii", "ascii":
		return strings.ToValidUTF8(string(raw), "\uFFFD"), nil
	}
	enc, err := htmlindex.Get(cs)
	if err != nil {
		return "", fmt.Errorf("unknown charset %q", clip(cs))
	}
	out, err := io.ReadAll(enc.NewDecoder().Reader(bytes.NewReader(raw)))
	if err != nil {
		return "", fmt.Errorf("charset %q: %v", clip(cs), err)
	}
	return strings.ToValidUTF8(string(out), "\uFFFD"), nil
}

// htmlText is the readable text of an HTML body: text nodes outside script
// and style, a line break for each block element.
func htmlText(s string) string {
	var b strings.Builder
	z := html.NewTokenizer(strings.NewReader(s))
	skip := 0
	for {
		tt := z.Next()
		switch tt {
		case html.ErrorToken:
			return strings.TrimSpace(b.String())
		case html.TextToken:
			if skip == 0 {
				b.Write(z.Text())
			}
		case html.StartTagToken, html.SelfClosingTagToken, html.EndTagToken:
			name, _ := z.TagName()
			switch string(name) {
			case "script", "style", "head", "title":
				if tt == html.StartTagToken {
					skip++
				} else if tt == html.EndTagToken && skip > 0 {
					skip--
				}
			case "br", "p", "div", "tr", "li", "h1", "h2", "h3", "h4", "h5", "h6", "table", "blockquote":
				b.WriteByte('\n')
			}
		}
	}
}

// cut shortens s to at most max bytes without splitting a UTF-8 sequence.
func cut(s string, max int) (string, bool) {
	if len(s) <= max {
		return s, false
	}
	i := max
	for i > 0 && !utf8.RuneStart(s[i]) {
		i--
	}
	return s[:i], true
}

func clip(s string) string { c, _ := cut(s, maxName); return c }

func header(p *gmail.MessagePart, name string) string {
	for _, h := range p.Headers {
		if strings.EqualFold(h.Name, name) {
			return h.Value
		}
	}
	return ""
}
