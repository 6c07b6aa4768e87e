package logging_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"strings"
	"testing"

	"github.com/gmailwatch/gmailwatch/shared/logging"
)

func lines(t *testing.T, buf *bytes.Buffer) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
		m := map[string]any{}
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("not JSON: %q: %v", l, err)
		}
		out = append(out, m)
	}
	return out
}

func TestCloudLoggingShape(t *testing.T) {
	var buf bytes.Buffer
	log := logging.New(&buf, slog.LevelDebug)
	ctx := logging.WithTrace(context.Background(), "demo", "105445aa7843bc8bf206b12000100000/1;o=1")
	log.DebugContext(ctx, "d")
	log.InfoContext(ctx, "i", "user", "abc")
	log.WarnContext(ctx, "w")
	log.ErrorContext(context.Background(), "e")
	got := lines(t, &buf)
	want := []string{"DEBUG", "INFO", "WARNING", "ERROR"}
	for i, l := range got {
		if l["severity"] != want[i] {
			t.Errorf("line %d severity = %v, want %s", i, l["severity"], want[i])
		}
		if _, ok := l["level"]; ok {
			t.Errorf("line %d still has slog's level key: %v", i, l)
		}
	}
	if got[1]["message"] != "i" || got[1]["user"] != "abc" {
		t.Errorf("line 1 = %v, want message i and user abc", got[1])
	}
	if tr := got[0]["logging.googleapis.com/trace"]; tr != "projects/demo/traces/105445aa7843bc8bf206b12000100000" {
		t.Errorf("trace = %v", tr)
	}
	if _, ok := got[3]["logging.googleapis.com/trace"]; ok {
		t.Errorf("line without trace context has a trace: %v", got[3])
	}
}

func TestTraceparentHeader(t *testing.T) {
	var buf bytes.Buffer
	ctx := logging.WithTrace(context.Background(), "p", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
	logging.New(&buf, slog.LevelInfo).InfoContext(ctx, "x")
	if tr := lines(t, &buf)[0]["logging.googleapis.com/trace"]; tr != "projects/p/traces/4bf92f3577b34da6a3ce929d0e0e4736" {
		t.Errorf("trace = %v", tr)
	}
}

func TestSecretsNeverReachALine(t *testing.T) {
	secrets := []string{
		"ya29.a0AfH6SMBx-secret-access",
		"1//0gLx-secret-refresh",
		"4/0AX4XfWh-secret-authcode",
		"eyJhbGciOiJSUzI1NiJ9.eyJlbWFpbCI6ImFAYi5jIn0.c2lnbmF0dXJl",
		"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
		"nonce-value-123",
	}
	var buf bytes.Buffer
	log := logging.New(&buf, slog.LevelDebug)
	log.Info("exchange failed: Post \"https://oauth2.googleapis.com/token?code="+secrets[2]+"&x=1\": oops",
		"err", errors.New("oauth2: bearer "+secrets[0]+" rejected"),
		"refresh_token", secrets[1],
		"cookie", "s="+secrets[5],
		"state", secrets[5],
		"detail", "id token "+secrets[3],
		"webhook", secrets[4],
		"user", "0123456789abcdef0123456789abcdef",
	)
	out := buf.String()
	for _, s := range secrets {
		if strings.Contains(out, s) {
			t.Errorf("log line contains secret %q: %s", s, out)
		}
	}
	if !strings.Contains(out, "0123456789abcdef0123456789abcdef") || !strings.Contains(out, "exchange failed") {
		t.Errorf("redaction removed harmless text: %s", out)
	}
}

func TestScrubKeepsOrdinaryText(t *testing.T) {
	for _, s := range []string{"history.list user abc: 404", "synced 3 messages from 100 to 105", "status code 429"} {
		if got := logging.Scrub(s); got != s {
			t.Errorf("Scrub(%q) = %q", s, got)
		}
	}
}

// A connect link and its result code are bearer values in a URL: whatever
// line carries such a URL keeps the parameter's name and loses its value.
func TestConnectLinksAndResultsAreScrubbed(t *testing.T) {
	const link, result = "eyJhcHBSZWYiOiJjcm0ifQ.c2lnbmVk-link", "Y-T6zRHMwGKRKhq4Tn2QeWZygR5hCC1Ztl2JHHEU4cY"
	var buf bytes.Buffer
	logging.New(&buf, slog.LevelDebug).Info("GET /connect?link="+link+"&login_hint=a@b.c",
		"url", "https://app.example.com/done?outcome=connected&result="+result, "err", errors.New(`Get "https://fn/connect?LINK=`+link+`": eof`))
	out := buf.String()
	if strings.Contains(out, link) || strings.Contains(out, result) {
		t.Errorf("log line carries a link or result: %s", out)
	}
	if !strings.Contains(out, "link=[REDACTED]") || !strings.Contains(out, "result=[REDACTED]") || !strings.Contains(out, "outcome=connected") {
		t.Errorf("scrub lost the parameters' names or harmless ones: %s", out)
	}
}
