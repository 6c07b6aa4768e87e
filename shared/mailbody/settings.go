package mailbody

import (
	"google.golang.org/api/gmail/v1"

	"github.com/gmailwatch/gmailwatch/shared/config"
)

// Content modes of MESSAGE_CONTENT.
const (
	None = "none" // metadata and snippet only
	Text = "text" // and the plain-text body
	Full = "full" // and the HTML body and the attachments' metadata
)

// MaxBytesLimit bounds MESSAGE_CONTENT_MAX_BYTES so an event stays under
// Pub/Sub's 10 MB message limit whatever the mail: text and HTML at most
// this each, at most six JSON bytes per byte (\u003c), is 6 MiB, plus
// MaxAttachments bounded entries.
const MaxBytesLimit = 512 << 10

// Settings say what of a message's content its event carries.
type Settings struct {
	Mode     string
	MaxBytes int // of the text and of the HTML, each
}

// ReadSettings reads MESSAGE_CONTENT and MESSAGE_CONTENT_MAX_BYTES; scope is
// GMAIL_SCOPE's value, and content needs one that may read bodies.
func ReadSettings(r *config.Reader, scope string) Settings {
	s := Settings{
		Mode:     r.OneOf("MESSAGE_CONTENT", None, None, Text, Full),
		MaxBytes: r.Int("MESSAGE_CONTENT_MAX_BYTES", 64<<10, 1024, MaxBytesLimit),
	}
	if s.Mode != None && scope == gmail.GmailMetadataScope {
		r.Problem("MESSAGE_CONTENT", "%s needs GMAIL_SCOPE %s: Gmail answers format=full with 403 under %s, which never shows a message body", s.Mode, gmail.GmailReadonlyScope, scope)
	}
	return s
}

// Format is the users.messages.get format that gives what s needs.
func (s Settings) Format() string {
	if s.Mode == Text || s.Mode == Full {
		return "full"
	}
	return "metadata"
}
