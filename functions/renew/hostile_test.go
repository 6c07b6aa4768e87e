package renew

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gmailwatch/gmailwatch/scripts/sandbox/gmailapi"
	"github.com/gmailwatch/gmailwatch/scripts/sandbox/secrets"
	"github.com/gmailwatch/gmailwatch/scripts/testenv"
	"github.com/gmailwatch/gmailwatch/shared/store"
	"github.com/gmailwatch/gmailwatch/shared/vault"
)

// hugeBody streams n zero bytes and counts how many were taken from it.
type hugeBody struct{ n, taken atomic.Int64 }

func newHugeBody(n int64) *hugeBody {
	b := &hugeBody{}
	b.n.Store(n)
	return b
}

func (b *hugeBody) Read(p []byte) (int, error) {
	left := b.n.Load() - b.taken.Load()
	if left <= 0 {
		return 0, io.EOF
	}
	k := int(min(int64(len(p)), left))
	clear(p[:k])
	b.taken.Add(int64(k))
	return k, nil
}

// renewState is what a refused request must leave as it was.
type renewState struct {
	Users  []store.User
	Token  []secrets.Version
	Watch  gmailapi.WatchState
	Usage  gmailapi.Usage
	Events int // published since the last snapshot
}

func (e *env) snapshot(t *testing.T, email string) renewState {
	t.Helper()
	users, err := e.users.List(context.Background(), "", 100)
	if err != nil {
		t.Fatal(err)
	}
	w, err := e.sb.Gmail.Watch(email)
	if err != nil {
		t.Fatal(err)
	}
	token, _ := e.sb.Secrets.Secret("projects/" + e.h.set.ProjectID + "/secrets/" + vault.RefreshPrefix + store.Key(email))
	return renewState{Users: users, Token: token, Watch: w, Usage: e.sb.Gmail.Usage(""), Events: len(e.pull(t, 300*time.Millisecond))}
}

// TestHostileRequestsStartNoRun sends requests other than Cloud Scheduler's
// POST to the function served as deployed, while a user's watch is due for
// renewal, so any run would call Gmail. Each is refused with no Gmail call
// and no change (Firestore users, the token in Secret Manager, the Gmail
// watch and quota, the output topic), and no body, however large, is read: the answer comes
// before the client has sent a third of 100 MiB. A POST with such a body
// then runs (the body is ignored by design), still without reading it.
func TestHostileRequestsStartNoRun(t *testing.T) {
	e := newEnv(t, envOptions{alone: true}) // t.Setenv: not in parallel
	const email = "due@example.com"
	e.connect(t, email, func(u *store.User) { u.RenewAt = time.Now().Add(-time.Minute) })
	var read atomic.Int64
	url := testenv.ServeHTTP(t, func(w http.ResponseWriter, r *http.Request) {
		r.Body = countedBody{r.Body, &read}
		e.h.ServeHTTP(w, r)
	})
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	do := func(t *testing.T, method, path string, body io.Reader, n int64) (*http.Response, string) {
		req, err := http.NewRequest(method, url+path, body)
		if err != nil {
			t.Fatal(err)
		}
		req.ContentLength = n
		req.Header.Set("Content-Type", "application/octet-stream")
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("%s %.60s: %v", method, path, err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return resp, string(b)
	}
	before := e.snapshot(t, email)

	tests := []struct {
		method, path string
		size         int64 // bytes of body
		want         int
	}{
		{"GET", "/", 0, 405},
		{"GET", "/", 100 << 20, 405},
		{"PUT", "/", 100 << 20, 405},
		{"DELETE", "/", 100 << 20, 405},
		{"PATCH", "/", 100 << 20, 405},
		{"OPTIONS", "/", 0, 405},
		{"HEAD", "/", 0, 405},
		{"POST", "//", 0, 307},                                        // the framework's path cleaning redirects, without a run
		{"POST", "/run/../", 100 << 20, 307},                          // likewise, without reading the body
		{"POST", "/?pad=" + strings.Repeat("a", 1<<20+8<<10), 0, 431}, // over the server's header limit
	}
	for _, tc := range tests {
		t.Run(fmt.Sprintf("%s %.12s with %d MiB", tc.method, tc.path, tc.size>>20), func(t *testing.T) {
			read.Store(0)
			var body io.Reader
			hb := newHugeBody(tc.size)
			if tc.size > 0 {
				body = hb
			}
			resp, text := do(t, tc.method, tc.path, body, tc.size)
			if resp.StatusCode != tc.want {
				t.Errorf("status %d, want %d: %.200s", resp.StatusCode, tc.want, text)
			}
			if tc.want == http.StatusMethodNotAllowed && resp.Header.Get("Allow") != http.MethodPost {
				t.Errorf("Allow %q, want POST", resp.Header.Get("Allow"))
			}
			if n, sent := read.Load(), hb.taken.Load(); n != 0 || sent > tc.size/3 {
				t.Errorf("the function read %d bytes of the body and the client sent %d MiB of %d before the answer; want 0 and under a third",
					n, sent>>20, tc.size>>20)
			}
		})
	}
	if after := e.snapshot(t, email); !reflect.DeepEqual(after, before) {
		t.Errorf("refused requests changed the state:\n got %+v\nwant %+v", after, before)
	}
	if n := strings.Count(e.logs.String(), `"message":"renew run"`); n != 0 {
		t.Errorf("%d runs logged, want none", n)
	}

	read.Store(0)
	hb := newHugeBody(100 << 20)
	resp, text := do(t, "POST", "/", hb, hb.n.Load())
	var rep Report
	if err := json.Unmarshal([]byte(text), &rep); err != nil || resp.StatusCode != http.StatusOK || rep.Renewed != 1 {
		t.Errorf("POST with 100 MiB: status %d, report %s; want 200 and the due watch renewed", resp.StatusCode, text)
	}
	if n, sent := read.Load(), hb.taken.Load(); n != 0 || sent > hb.n.Load()/3 {
		t.Errorf("POST with 100 MiB: the function read %d bytes and the client sent %d MiB before the answer; want 0 and under a third", n, sent>>20)
	}
}

// countedBody counts what the function reads of a request body.
type countedBody struct {
	io.ReadCloser
	n *atomic.Int64
}

func (c countedBody) Read(p []byte) (int, error) {
	k, err := c.ReadCloser.Read(p)
	c.n.Add(int64(k))
	return k, err
}
