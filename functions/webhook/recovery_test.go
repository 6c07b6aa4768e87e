package webhook

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"cloud.google.com/go/pubsub/v2"

	"github.com/gmailwatch/gmailwatch/scripts/testenv"
	"github.com/gmailwatch/gmailwatch/shared/events"
	"github.com/gmailwatch/gmailwatch/shared/webhooksig"
)

// TestNoEventLostWhileReceiverRecovers publishes events to a topic of the
// Pub/Sub emulator and drives the handler from a subscription the way the
// platform does: an error from Handle nacks, so Pub/Sub redelivers. The
// receiver is down at first (connection refused), then comes up and fails
// each event's first request with 503. Every event must arrive, and its
// repeat must carry the same webhook-id and body.
func TestNoEventLostWhileReceiverRecovers(t *testing.T) {
	const n = 5
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close() // down: nothing listens on addr yet

	hs := newHarness(t, "http://"+addr+"/hook", staticSecrets{testSecretName: testSecret}, func(c *Config) { c.CallBudget = 400 * time.Millisecond })
	ps := hs.PubSub
	topic := testenv.Topic(t, ps, "gmail-events")
	testenv.Subscription(t, ps, topic, "webhook-trigger")
	keys, _ := webhooksig.Parse(testSecret)
	var mu sync.Mutex
	seen := map[string][]request{} // by webhook-id
	delivered := map[string]bool{}
	up := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		id := r.Header.Get(webhooksig.HeaderID)
		mu.Lock()
		defer mu.Unlock()
		seen[id] = append(seen[id], request{id: id, body: string(body), verified: keys.Verify(body, r.Header)})
		if len(seen[id]) == 1 {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		delivered[id] = true
		w.WriteHeader(http.StatusOK)
	}))
	defer up.Close()

	pub := events.NewPublisher(ps, "gmail-events")
	defer pub.Stop()
	var want []events.Event
	for i := range n {
		ev, _ := testEvent(100 + i)
		want = append(want, ev)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := pub.Publish(ctx, want...); err != nil {
		t.Fatal(err)
	}

	var failures sync.WaitGroup
	failures.Add(n) // one failed call per event while the receiver is down
	var failed sync.Map
	go func() {
		failures.Wait()
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			t.Errorf("receiver cannot come back on %s: %v", addr, err)
			cancel()
			return
		}
		up.Listener = ln
		up.Start()
	}()
	allDelivered := func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(delivered) == n
	}
	sub := ps.Subscriber("webhook-trigger")
	sub.ReceiveSettings.MaxOutstandingMessages = n
	err = sub.Receive(ctx, func(ctx context.Context, m *pubsub.Message) {
		if err := hs.h.Handle(ctx, pushEvent(t, m.Data, m.Attributes, m.PublishTime)); err != nil {
			if _, again := failed.LoadOrStore(m.Attributes["id"], true); !again {
				failures.Done()
			}
			m.Nack()
			return
		}
		m.Ack()
		if allDelivered() {
			cancel()
		}
	})
	if err != nil {
		t.Fatalf("receive: %v", err)
	}

	mu.Lock()
	defer mu.Unlock()
	for _, ev := range want {
		reqs := seen[ev.ID]
		if !delivered[ev.ID] || len(reqs) < 2 {
			t.Errorf("event %s: delivered %v after %d requests, want delivered after a repeat", ev.ID, delivered[ev.ID], len(reqs))
			continue
		}
		for i, r := range reqs {
			if r.verified != nil || r.body != reqs[0].body {
				t.Errorf("event %s request %d: verify %v, body changed %v", ev.ID, i, r.verified, r.body != reqs[0].body)
			}
		}
	}
	if len(seen) != n {
		t.Errorf("receiver saw %d distinct webhook-ids, want %d", len(seen), n)
	}
	if dead := hs.deadLetters(t, 0, time.Second); len(dead) != 0 {
		t.Errorf("dead letters = %d, want 0", len(dead))
	}
}

// TestSigningSecretFromSecretManager reads the key through shared/vault from
// the sandbox's Secret Manager and picks up a rotation once the cached keys
// are older than the cache TTL.
func TestSigningSecretFromSecretManager(t *testing.T) {
	ctx := context.Background()
	w := testenv.NewWorld(t, testenv.Options{})
	addVersion := func(value string) { w.PutSecret(testSecretName, value) }
	addVersion(testSecret)

	v := w.Vault
	rv := newReceiver(t, status(http.StatusOK))
	hs := newHarness(t, rv.URL, v, nil)

	const newKey = "whsec_c2Vjb25kLXNlY3JldC1rZXktZm9yLXJvdGF0aW9u"
	steps := []struct {
		name     string
		rotate   string
		expire   bool // the cached keys reach the cache TTL
		wantSigs int
	}{
		{"first key", "", false, 1},
		{"rotation not yet read", newKey + " " + testSecret, false, 1},
		{"rotation read after the cache TTL", "", true, 2},
	}
	for i, st := range steps {
		if st.rotate != "" {
			addVersion(st.rotate)
		}
		if st.expire {
			hs.h.keysAt = hs.h.keysAt.Add(-secretCacheTTL)
		}
		ev, body := testEvent(200 + i)
		if err := hs.h.Handle(ctx, pushEvent(t, body, ev.Attributes(), time.Now())); err != nil {
			t.Fatalf("%s: Handle = %v", st.name, err)
		}
		reqs := rv.got()
		last := reqs[len(reqs)-1]
		if got := len(strings.Fields(last.header.Get(webhooksig.HeaderSignature))); got != st.wantSigs || last.verified != nil {
			t.Errorf("%s: %d signatures, verify %v; want %d valid", st.name, got, last.verified, st.wantSigs)
		}
	}
}
