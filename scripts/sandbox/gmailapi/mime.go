package gmailapi

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"mime/quotedprintable"
	"net/mail"
	"net/textproto"
	"slices"
	"strings"

	"google.golang.org/api/gmail/v1"
)

// maxRaw bounds a message given as RFC 822 text. It is the sandbox's own
// bound, far above what tests send; Gmail's own limit is stated on each
// upload method's reference page ("Uploading attachments",
// developers.google.com/gmail/api/guides/uploads), not relied on here.
const maxRaw = 36 << 20

// DeliverRaw puts a message given as RFC 822 text into a mailbox as
// users.messages.insert does, with labels (default INBOX, UNREAD). Its
// format=full payload is then the MIME tree, as Gmail builds it.
func (s *Server) DeliverRaw(to string, raw []byte, labels []string) (Delivered, error) {
	if len(raw) == 0 || len(raw) > maxRaw {
		return Delivered{}, invalidArgument("raw message must be 1 to %d bytes", maxRaw)
	}
	msg, err := mail.ReadMessage(bytes.NewReader(raw))
	if err != nil {
		return Delivered{}, invalidArgument("Invalid RFC 822 message: %v", err)
	}
	if labels == nil {
		labels = []string{"INBOX", "UNREAD"}
	}
	if e := checkLabels(labels); e != nil {
		return Delivered{}, e
	}
	now := s.opts.Now()
	s.mu.Lock()
	mb, e := s.lookup(to)
	if e != nil {
		s.mu.Unlock()
		return Delivered{}, e
	}
	dec := new(mime.WordDecoder)
	hdr := func(k string) string {
		v, err := dec.DecodeHeader(msg.Header.Get(k))
		if err != nil {
			return msg.Header.Get(k)
		}
		return v
	}
	m := s.newMessage(mb, hdr("From"), hdr("To"), hdr("Subject"), "", labels, "", now)
	m.mime = slices.Clone(raw)
	if part := mimePayload(m.mime, m.id); part != nil {
		m.body = snippetText(part)
	}
	rec := record{id: m.historyID, at: now, kind: MessageAdded, msgID: m.id, thread: m.threadID, labels: slices.Clone(m.labels)}
	s.commit(mb, rec) // unlocks
	return Delivered{ID: m.id, ThreadID: m.threadID, HistoryID: m.historyID}, nil
}

// mimePayload is the format=full payload of an RFC 822 message as Gmail
// gives it: one part per MIME entity, multipart children in Parts, the
// transfer encoding (base64, quoted-printable) undone and the bytes
// base64url-encoded in body.data, but in the part's own charset; a part
// with a filename or not text carries only an attachmentId and its size
// ("REST Resource: users.messages", MessagePart and MessagePartBody,
// developers.google.com/gmail/api/reference/rest/v1/users.messages).
// A body that does not parse as its headers say is kept as it came.
func mimePayload(raw []byte, msgID string) *gmail.MessagePart {
	msg, err := mail.ReadMessage(bytes.NewReader(raw))
	if err != nil {
		return nil
	}
	body, _ := io.ReadAll(msg.Body)
	return entity(textproto.MIMEHeader(msg.Header), body, "", msgID, 0)
}

func entity(h textproto.MIMEHeader, body []byte, partID, msgID string, depth int) *gmail.MessagePart {
	p := &gmail.MessagePart{PartId: partID, ForceSendFields: []string{"PartId", "Filename"}}
	for k, vs := range h {
		for _, v := range vs {
			p.Headers = append(p.Headers, &gmail.MessagePartHeader{Name: k, Value: v})
		}
	}
	slices.SortFunc(p.Headers, func(a, b *gmail.MessagePartHeader) int { return strings.Compare(a.Name, b.Name) })
	mt, params, err := mime.ParseMediaType(h.Get("Content-Type"))
	if err != nil {
		mt = "text/plain"
	}
	p.MimeType = mt
	_, dparams, _ := mime.ParseMediaType(h.Get("Content-Disposition"))
	p.Filename = dparams["filename"]
	if p.Filename == "" {
		p.Filename = params["name"]
	}
	p.Body = &gmail.MessagePartBody{ForceSendFields: []string{"Size"}}
	if strings.HasPrefix(mt, "multipart/") && params["boundary"] != "" && depth < 64 {
		r := multipart.NewReader(bytes.NewReader(body), params["boundary"])
		for i := 0; ; i++ {
			part, err := r.NextRawPart()
			if err != nil {
				break
			}
			b, err := io.ReadAll(part)
			if err != nil {
				break
			}
			id := fmt.Sprint(i)
			if partID != "" {
				id = partID + "." + id
			}
			p.Parts = append(p.Parts, entity(part.Header, b, id, msgID, depth+1))
		}
		return p
	}
	data := body
	switch strings.ToLower(strings.TrimSpace(h.Get("Content-Transfer-Encoding"))) {
	case "base64":
		if d, err := io.ReadAll(base64.NewDecoder(base64.StdEncoding, bytes.NewReader(stripSpace(body)))); err == nil {
			data = d
		}
	case "quoted-printable":
		if d, err := io.ReadAll(quotedprintable.NewReader(bytes.NewReader(body))); err == nil {
			data = d
		}
	}
	p.Body.Size = int64(len(data))
	if p.Filename != "" || !strings.HasPrefix(mt, "text/") {
		p.Body.AttachmentId = "ANGjdJ" + base64.RawURLEncoding.EncodeToString([]byte(msgID+"/"+partID))
		return p
	}
	p.Body.Data = base64.URLEncoding.EncodeToString(data)
	return p
}

func stripSpace(b []byte) []byte {
	return bytes.Map(func(r rune) rune {
		if r == ' ' || r == '\t' || r == '\r' || r == '\n' {
			return -1
		}
		return r
	}, b)
}

// snippetText is what the snippet is made from: the first text/plain part's
// bytes, when they are UTF-8.
func snippetText(p *gmail.MessagePart) string {
	if p.MimeType == "text/plain" && p.Body != nil && p.Body.Data != "" {
		b, _ := base64.URLEncoding.DecodeString(p.Body.Data)
		return strings.ToValidUTF8(string(b), "")
	}
	for _, c := range p.Parts {
		if s := snippetText(c); s != "" {
			return s
		}
	}
	return ""
}
