// Package logging writes log/slog records as the JSON lines Cloud Logging
// understands (severity, message, trace) and keeps secrets out of them: values
// under sensitive keys and token-shaped strings anywhere are replaced before a
// line is written.
package logging

import (
	"context"
	"io"
	"log/slog"
	"regexp"
	"strings"
)

// Redacted replaces a value that must never be logged.
const Redacted = "[REDACTED]"

// New returns a logger writing Cloud Logging JSON lines to w at level and above.
func New(w io.Writer, level slog.Leveler) *slog.Logger {
	h := slog.NewJSONHandler(w, &slog.HandlerOptions{Level: level, ReplaceAttr: replace})
	return slog.New(&traceHandler{Handler: h})
}

// replace renames slog's keys to Cloud Logging's and redacts secrets.
func replace(groups []string, a slog.Attr) slog.Attr {
	if len(groups) == 0 {
		switch a.Key {
		case slog.LevelKey:
			return slog.String("severity", severity(a.Value.Any().(slog.Level)))
		case slog.MessageKey:
			return slog.String("message", Scrub(a.Value.String()))
		case slog.TimeKey:
			return slog.Attr{Key: "time", Value: a.Value}
		}
	}
	if sensitiveKey(a.Key) {
		return slog.String(a.Key, Redacted)
	}
	switch a.Value.Kind() {
	case slog.KindString:
		return slog.String(a.Key, Scrub(a.Value.String()))
	case slog.KindAny:
		if err, ok := a.Value.Any().(error); ok {
			return slog.String(a.Key, Scrub(err.Error()))
		}
		if s, ok := a.Value.Any().(interface{ String() string }); ok {
			return slog.String(a.Key, Scrub(s.String()))
		}
	}
	return a
}

func severity(l slog.Level) string {
	switch {
	case l >= slog.LevelError:
		return "ERROR"
	case l >= slog.LevelWarn:
		return "WARNING"
	case l >= slog.LevelInfo:
		return "INFO"
	}
	return "DEBUG"
}

var sensitiveWords = []string{"token", "secret", "password", "cookie", "authorization", "verifier", "credential", "apikey", "api_key", "signature"}

func sensitiveKey(k string) bool {
	k = strings.ToLower(k)
	switch k {
	case "code", "authcode", "auth_code", "state":
		return true
	}
	for _, w := range sensitiveWords {
		if strings.Contains(k, w) {
			return true
		}
	}
	return false
}

// tokenShapes match credentials wherever they appear in text: Google access
// tokens, refresh tokens and authorization codes, bearer headers, JWTs,
// webhook secrets, and query parameters that carry secrets (connect links
// and their result codes included).
var tokenShapes = regexp.MustCompile(
	`ya29\.[\w.\-]+` +
		`|1//[\w.\-]+` +
		`|4/[\w.\-]{10,}` +
		`|(?i:bearer)\s+[\w.\-~+/=]+` +
		`|eyJ[\w\-]+\.[\w\-]+\.[\w\-]*` +
		`|whsec_[\w+/=]+` +
		`|(?i:(code|state|token|refresh_token|access_token|code_verifier|client_secret|link|result)=)[^&\s"]+`)

// Scrub returns s with every token-shaped substring replaced by Redacted.
func Scrub(s string) string {
	return tokenShapes.ReplaceAllStringFunc(s, func(m string) string {
		if i := strings.IndexByte(m, '='); i > 0 && i < len(m)-1 && !strings.HasPrefix(m, "eyJ") && !strings.HasPrefix(m, "whsec_") {
			return m[:i+1] + Redacted
		}
		return Redacted
	})
}

type traceKey struct{}

// WithTrace returns ctx carrying the Cloud Trace resource name for the
// request's trace header ("X-Cloud-Trace-Context: TRACE/SPAN;o=1" or a W3C
// "traceparent"), so every line logged with ctx joins the request in Cloud Logging.
func WithTrace(ctx context.Context, projectID, header string) context.Context {
	id := header
	if strings.HasPrefix(id, "00-") { // traceparent: 00-TRACE-SPAN-FLAGS
		if parts := strings.Split(id, "-"); len(parts) == 4 {
			id = parts[1]
		}
	} else if i := strings.IndexByte(id, '/'); i >= 0 {
		id = id[:i]
	}
	if id == "" || projectID == "" || !isHex(id) {
		return ctx
	}
	return context.WithValue(ctx, traceKey{}, "projects/"+projectID+"/traces/"+id)
}

func isHex(s string) bool {
	for _, c := range s {
		if !strings.ContainsRune("0123456789abcdefABCDEF", c) {
			return false
		}
	}
	return len(s) <= 64
}

type traceHandler struct{ slog.Handler }

func (h *traceHandler) Handle(ctx context.Context, r slog.Record) error {
	if t, ok := ctx.Value(traceKey{}).(string); ok {
		r.AddAttrs(slog.String("logging.googleapis.com/trace", t))
	}
	return h.Handler.Handle(ctx, r)
}

func (h *traceHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return &traceHandler{h.Handler.WithAttrs(as)}
}

func (h *traceHandler) WithGroup(name string) slog.Handler {
	return &traceHandler{h.Handler.WithGroup(name)}
}
