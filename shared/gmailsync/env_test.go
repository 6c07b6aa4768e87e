package gmailsync_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"cloud.google.com/go/pubsub/v2"

	"github.com/gmailwatch/gmailwatch/scripts/sandbox"
	"github.com/gmailwatch/gmailwatch/scripts/sandbox/gmailapi"
	"github.com/gmailwatch/gmailwatch/scripts/testenv"
	"github.com/gmailwatch/gmailwatch/shared/events"
	"github.com/gmailwatch/gmailwatch/shared/gmailclient"
	"github.com/gmailwatch/gmailwatch/shared/gmailsync"
	"github.com/gmailwatch/gmailwatch/shared/store"
	"github.com/gmailwatch/gmailwatch/shared/vault"
)

const (
	clientID     = "sync-test.apps.googleusercontent.com"
	clientSecret = "GOCSPX-sync-test-secret"
)

// env is one test's world: its own emulator project, a sandbox, a store, an
// output topic read through a pull subscription, and a Syncer over them.
type env struct {
	t       *testing.T
	sb      *sandbox.Sandbox
	store   *store.Store
	vault   *vault.Vault
	factory *gmailclient.Factory
	syncer  *gmailsync.Syncer
	logs    *testenv.LogBuffer

	mu       sync.Mutex
	received []events.Event
}

// fast are settings that keep the tests quick.
var fast = gmailsync.Settings{
	BackoffBase: 5 * time.Millisecond, BackoffMax: 40 * time.Millisecond,
	RecheckDelay: 200 * time.Millisecond, LeaseTTL: 30 * time.Second,
}

func newEnv(t *testing.T, set gmailsync.Settings) *env {
	t.Helper()
	testenv.Need(t, "FIRESTORE_EMULATOR_HOST", "PUBSUB_EMULATOR_HOST")
	ctx := context.Background()
	project := testenv.Project(t)
	ps := testenv.PubSub(t, project)
	sb, err := sandbox.Start(ctx, sandbox.Options{
		ClientID: clientID, ClientSecret: clientSecret, RedirectURIs: []string{"http://127.0.0.1/cb"},
		PubSubEmulatorHost: os.Getenv("PUBSUB_EMULATOR_HOST"),
	})
	if err != nil {
		t.Fatalf("sandbox: %v", err)
	}
	t.Cleanup(func() { sb.Close() })
	if err := sb.PutSecret(ctx, project, "oauth-client-secret", []byte(clientSecret)); err != nil {
		t.Fatalf("client secret: %v", err)
	}
	v, err := vault.New(ctx, project, sb.SecretManagerAddr)
	if err != nil {
		t.Fatalf("vault: %v", err)
	}
	t.Cleanup(func() { v.Close() })

	topic := testenv.Topic(t, ps, "events")
	sub := testenv.Subscription(t, ps, topic, "events-pull")
	pub := events.NewPublisher(ps, "events")
	t.Cleanup(pub.Stop)

	logger, logs := testenv.Logger(t)
	e := &env{t: t, sb: sb, store: store.New(testenv.Firestore(t, project), nil), vault: v, logs: logs}
	e.factory = gmailclient.NewFactory(gmailclient.Settings{
		ClientID: clientID, ClientSecretName: "oauth-client-secret", Scope: gmailclient.ScopeMetadata,
		AuthURL: sb.URL + "/o/oauth2/v2/auth", TokenURL: sb.URL + "/token", RevokeURL: sb.URL + "/revoke",
		GmailEndpoint: sb.URL + "/",
	}, v)
	e.syncer = gmailsync.New(gmailsync.Deps{Users: e.store, Gmail: e.factory, Events: pub, Logger: logger}, set)

	rctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		err := ps.Subscriber(sub).Receive(rctx, func(_ context.Context, m *pubsub.Message) {
			m.Ack()
			ev, err := events.Decode(m.Data)
			if err != nil {
				t.Errorf("output message %q is not an event: %v", m.Data, err)
				return
			}
			if m.Attributes["type"] != ev.Type || m.Attributes["id"] != ev.ID || m.Attributes["user"] != ev.User {
				t.Errorf("attributes %v do not match event %s %s %s", m.Attributes, ev.Type, ev.ID, ev.User)
			}
			e.mu.Lock()
			e.received = append(e.received, ev)
			e.mu.Unlock()
		})
		if err != nil && rctx.Err() == nil {
			t.Errorf("receive events: %v", err)
		}
	}()
	t.Cleanup(func() { cancel(); <-done })
	return e
}

// connect creates a mailbox, its OAuth grant and refresh token, and the
// user's record with the cursor at the mailbox's current history id, as the
// consent function leaves them.
func (e *env) connect(email string, labels []string, filter string) store.User {
	e.t.Helper()
	rt, err := e.sb.Connect(email)
	if err != nil {
		e.t.Fatalf("sandbox Connect: %v", err)
	}
	if err := e.vault.PutRefreshToken(context.Background(), store.Key(email), rt); err != nil {
		e.t.Fatalf("PutRefreshToken: %v", err)
	}
	h, err := e.sb.Gmail.HistoryID(email)
	if err != nil {
		e.t.Fatalf("HistoryID: %v", err)
	}
	u, _, err := e.store.Connect(context.Background(), store.Connection{
		Email: email, Labels: labels, LabelFilter: filter, HistoryID: int64(h),
		WatchExpiration: time.Now().Add(7 * 24 * time.Hour), RenewAt: time.Now().Add(24 * time.Hour),
	})
	if err != nil {
		e.t.Fatalf("Connect: %v", err)
	}
	return u
}

func (e *env) deliver(to, subject string, labels ...string) gmailapi.Delivered {
	e.t.Helper()
	d, err := e.sb.Gmail.Deliver(gmailapi.Delivery{To: to, From: "Ann Sender <ann@example.net>", Subject: subject, Body: "body of " + subject, LabelIDs: labels})
	if err != nil {
		e.t.Fatalf("Deliver: %v", err)
	}
	return d
}

// push calls OnPush as Pub/Sub delivers a push: again after an error, as
// redelivery does, up to a few times.
func (e *env) push(email string, historyID uint64) gmailsync.Result {
	e.t.Helper()
	var last error
	for range 8 {
		res, err := e.syncer.OnPush(context.Background(), email, int64(historyID))
		if err == nil {
			return res
		}
		last = err
	}
	e.t.Fatalf("OnPush(%d) kept failing: %v", historyID, last)
	return gmailsync.Result{}
}

func (e *env) user(email string) store.User {
	e.t.Helper()
	u, err := e.store.Get(context.Background(), store.Key(email))
	if err != nil {
		e.t.Fatalf("Get user: %v", err)
	}
	return u
}

func (e *env) calls(email string) int64 {
	var n int64
	for _, c := range e.sb.Gmail.Usage(email).Calls {
		n += c
	}
	return n
}

// events waits until at least want events arrived, then a little longer so
// that a duplicate would show, and returns them all.
func (e *env) events(want int) []events.Event {
	e.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		e.mu.Lock()
		n := len(e.received)
		e.mu.Unlock()
		if n >= want || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(500 * time.Millisecond)
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]events.Event(nil), e.received...)
}

// messageCounts counts received message events by Gmail message id.
func messageCounts(evs []events.Event) map[string]int {
	got := map[string]int{}
	for _, ev := range evs {
		if ev.Type == events.MessageReceived {
			got[ev.MessageID]++
		}
	}
	return got
}

// wantExactlyOnce checks that the events announce exactly the delivered
// messages, each once.
func wantExactlyOnce(t *testing.T, evs []events.Event, delivered ...gmailapi.Delivered) {
	t.Helper()
	want := map[string]int{}
	for _, d := range delivered {
		want[d.ID] = 1
	}
	got := messageCounts(evs)
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("message events by id: got %v, want %v", got, want)
	}
}

func jsonLines(t *testing.T, s string) []map[string]any {
	t.Helper()
	var out []map[string]any
	dec := json.NewDecoder(strings.NewReader(s))
	for {
		var m map[string]any
		if err := dec.Decode(&m); err != nil {
			if !errors.Is(err, io.EOF) {
				t.Fatalf("log is not JSON lines: %v", err)
			}
			return out
		}
		out = append(out, m)
	}
}
