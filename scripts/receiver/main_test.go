package main

import (
	"bytes"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gmailwatch/gmailwatch/shared/logging"
	"github.com/gmailwatch/gmailwatch/shared/webhooksig"
)

const (
	secretValue = "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	secret      = "whsec_" + secretValue
	otherSecret = "whsec_c2Vjb25kLXNlY3JldC1rZXktZm9yLXJvdGF0aW9u"
)

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}
func (s *syncBuffer) String() string { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

func TestReceiver(t *testing.T) {
	keys, err := webhooksig.Parse(secret)
	if err != nil {
		t.Fatal(err)
	}
	var out, logs syncBuffer
	srv := httptest.NewServer(newReceiver(keys, &out, logging.New(&logs, slog.LevelInfo)))
	defer srv.Close()

	event := `{"specversion":"1","type":"gmail.message.received","id":"e1", "subject":"hi"}`
	send := func(method, signWith, id, body, sent string, ts time.Time) int {
		t.Helper()
		k, err := webhooksig.Parse(signWith)
		if err != nil {
			t.Fatal(err)
		}
		h, err := k.Header(id, ts, []byte(body))
		if err != nil {
			t.Fatal(err)
		}
		req, _ := http.NewRequest(method, srv.URL+"/hook", strings.NewReader(sent))
		for k, v := range h {
			req.Header[k] = v
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	now := time.Now()
	big := `{"x":"` + strings.Repeat("a", maxBody) + `"}`
	tests := []struct {
		name                  string
		method, key, id, body string
		sent                  string // what is actually sent, if not body
		ts                    time.Time
		want                  int
	}{
		{"new event", "POST", secret, "e1", event, "", now, http.StatusNoContent},
		{"repeat with the same webhook-id", "POST", secret, "e1", event, "", now.Add(time.Second), http.StatusOK},
		{"signed during rotation", "POST", otherSecret + " " + secret, "e2", `{"id":"e2"}`, "", now, http.StatusNoContent},
		{"altered body", "POST", secret, "e3", `{"id":"e3"}`, `{"id":"e4"}`, now, http.StatusUnauthorized},
		{"wrong secret", "POST", otherSecret, "e5", `{"id":"e5"}`, "", now, http.StatusUnauthorized},
		{"old timestamp", "POST", secret, "e6", `{"id":"e6"}`, "", now.Add(-10 * time.Minute), http.StatusUnauthorized},
		{"not JSON", "POST", secret, "e7", "hello", "", now, http.StatusBadRequest},
		{"GET", "GET", secret, "e8", "", "", now, http.StatusMethodNotAllowed},
		{"too large", "POST", secret, "e9", big, "", now, http.StatusRequestEntityTooLarge},
	}
	for _, tc := range tests {
		sent := tc.sent
		if sent == "" {
			sent = tc.body
		}
		if got := send(tc.method, tc.key, tc.id, tc.body, sent, tc.ts); got != tc.want {
			t.Errorf("%s: status %d, want %d", tc.name, got, tc.want)
		}
	}
	wantOut := `{"specversion":"1","type":"gmail.message.received","id":"e1","subject":"hi"}` + "\n" + `{"id":"e2"}` + "\n"
	if got := out.String(); got != wantOut {
		t.Errorf("printed:\n%s\nwant:\n%s", got, wantOut)
	}
	if strings.Contains(logs.String(), secretValue) {
		t.Errorf("logs contain the secret: %s", logs.String())
	}
}

func TestRunRejectsBadSetup(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good")
	bad := filepath.Join(dir, "bad")
	os.WriteFile(good, []byte(secret+"\n"), 0o600)
	os.WriteFile(bad, []byte(secretValue+"\n"), 0o600)
	tests := []struct {
		name    string
		args    []string
		wantErr string
	}{
		{"no secret file", []string{"-addr", "127.0.0.1:0"}, "-secret-file is required"},
		{"not loopback", []string{"-addr", "0.0.0.0:8089", "-secret-file", good}, "must be a loopback host:port"},
		{"missing file", []string{"-addr", "127.0.0.1:0", "-secret-file", filepath.Join(dir, "none")}, "read secret file"},
		{"key without prefix", []string{"-addr", "127.0.0.1:0", "-secret-file", bad}, "missing whsec_ prefix"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var stderr bytes.Buffer
			err := run(tc.args, io.Discard, &stderr)
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("run = %v, want error containing %q", err, tc.wantErr)
			}
			if strings.Contains(err.Error(), secretValue) {
				t.Errorf("error reveals the secret: %v", err)
			}
		})
	}
}
