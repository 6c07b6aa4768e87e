package testenv

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"testing"
	"time"

	"cloud.google.com/go/firestore"
	"cloud.google.com/go/pubsub/v2"

	"github.com/gmailwatch/gmailwatch/scripts/sandbox"
	"github.com/gmailwatch/gmailwatch/shared/config"
	"github.com/gmailwatch/gmailwatch/shared/events"
	"github.com/gmailwatch/gmailwatch/shared/gmailclient"
	"github.com/gmailwatch/gmailwatch/shared/store"
	"github.com/gmailwatch/gmailwatch/shared/vault"
)

// The OAuth client every world registers in its sandbox.
const (
	ClientID     = "gmailwatch-test.apps.googleusercontent.com"
	ClientSecret = "GOCSPX-gmailwatch-test-client-secret"
)

// Topic ids every world creates. The events topic has a pull subscription
// whose messages the world's Events sink collects.
const (
	GmailTopicID  = "gmail"
	EventsTopicID = "events"
)

// Options shape a World; the zero value is the usual one.
type Options struct {
	Sandbox sandbox.Options  // ProjectID, ClientID and ClientSecret are filled in
	Now     func() time.Time // the store's clock; nil: time.Now
	Scope   string           // the Gmail scope Connect grants; "": gmail.metadata
}

// World is one test's copy of everything the functions talk to: a project
// of its own in the Firestore and Pub/Sub emulators (with the Gmail and
// events topics), the sandbox for Gmail, OAuth and Secret Manager (holding
// the OAuth client secret), and clients of each, as the functions use them.
type World struct {
	t          testing.TB
	scope      string
	Project    string
	Firestore  *firestore.Client
	PubSub     *pubsub.Client
	Sandbox    *sandbox.Sandbox
	Vault      *vault.Vault
	Store      *store.Store
	Publisher  *events.Publisher // to EventsTopicID
	GmailTopic string            // the full name of GmailTopicID
	Events     *Sink             // what reached the events topic
	Log        *slog.Logger      // a debug-level production logger writing to Logs
	Logs       *LogBuffer
}

// NewWorld builds a World, or skips the test (fails it under CI) outside
// scripts/test.sh. Everything is closed when the test ends.
func NewWorld(t testing.TB, o Options) *World {
	t.Helper()
	Need(t, "FIRESTORE_EMULATOR_HOST", "PUBSUB_EMULATOR_HOST")
	ctx := context.Background()
	w := &World{t: t, scope: cmp.Or(o.Scope, gmailclient.ScopeMetadata), Project: Project(t)}
	w.Firestore = Firestore(t, w.Project)
	w.PubSub = PubSub(t, w.Project)
	w.Store = store.New(w.Firestore, o.Now)
	w.GmailTopic = Topic(t, w.PubSub, GmailTopicID)
	w.Events = newSink(t, w.PubSub, Subscription(t, w.PubSub, Topic(t, w.PubSub, EventsTopicID), "events-sink"))
	w.Publisher = events.NewPublisher(w.PubSub, EventsTopicID)
	t.Cleanup(w.Publisher.Stop)

	so := o.Sandbox
	so.ProjectID, so.ClientID, so.ClientSecret = w.Project, ClientID, ClientSecret
	sb, err := sandbox.Start(ctx, so)
	if err != nil {
		t.Fatalf("sandbox: %v", err)
	}
	t.Cleanup(func() { sb.Close() })
	w.Sandbox = sb
	w.PutSecret("oauth-client-secret", ClientSecret)
	if w.Vault, err = vault.New(ctx, w.Project, sb.SecretManagerAddr); err != nil {
		t.Fatalf("vault: %v", err)
	}
	t.Cleanup(func() { w.Vault.Close() })
	w.Log, w.Logs = Logger(t)
	return w
}

// Env is the functions' environment in this world, as Terraform sets it
// when deployed, with the sandbox's endpoints, then extra on top.
func (w *World) Env(extra map[string]string) map[string]string {
	env := w.Sandbox.Env()
	env["PROJECT_ID"] = w.Project
	env["GMAIL_TOPIC"] = w.GmailTopic
	env["EVENTS_TOPIC"] = EventsTopicID
	if w.scope != gmailclient.ScopeMetadata {
		env["GMAIL_SCOPE"] = w.scope
	}
	maps.Copy(env, extra)
	return env
}

// Reader is a settings reader over Env(extra).
func (w *World) Reader(extra map[string]string) *config.Reader {
	return config.NewReader(config.FromMap(w.Env(extra)))
}

// Gmail returns the OAuth and Gmail settings of this world, read from Env.
func (w *World) Gmail() gmailclient.Settings {
	w.t.Helper()
	r := w.Reader(nil)
	s := gmailclient.ReadSettings(r)
	if err := r.Err(); err != nil {
		w.t.Fatal(err)
	}
	return s
}

// Mailboxes returns a Gmail client factory over this world's sandbox and vault.
func (w *World) Mailboxes() *gmailclient.Factory { return gmailclient.NewFactory(w.Gmail(), w.Vault) }

// PutSecret adds value as the latest version of secret id.
func (w *World) PutSecret(id, value string) {
	w.t.Helper()
	if err := w.Sandbox.PutSecret(context.Background(), w.Project, id, []byte(value)); err != nil {
		w.t.Fatalf("secret %s: %v", id, err)
	}
}

// Connect leaves email as the consent function does, without the browser:
// a mailbox (created if missing) that granted the metadata scope, its
// refresh token in Secret Manager, and an active user watching INBOX
// (include) whose cursor is the mailbox's history id, watch expiring in 7
// days and due for renewal in a day, its connected event already published
// (no event is).
func (w *World) Connect(email string) store.User {
	w.t.Helper()
	u, err := w.TryConnect(email, time.Now().Add(24*time.Hour))
	if err != nil {
		w.t.Fatal(err)
	}
	return u
}

// TryConnect is Connect for any goroutine, with the renewal due at renewAt.
func (w *World) TryConnect(email string, renewAt time.Time) (store.User, error) {
	ctx := context.Background()
	rt, err := w.Sandbox.Connect(email, w.scope)
	if err != nil {
		return store.User{}, fmt.Errorf("connect %s in the sandbox: %w", email, err)
	}
	if err := w.Vault.PutRefreshToken(ctx, store.Key(email), rt); err != nil {
		return store.User{}, err
	}
	h, err := w.Sandbox.Gmail.HistoryID(email)
	if err != nil {
		return store.User{}, err
	}
	u, _, err := w.Store.Connect(ctx, store.Connection{
		Email: email, Labels: []string{"INBOX"}, LabelFilter: "include", HistoryID: int64(h),
		WatchExpiration: time.Now().Add(7 * 24 * time.Hour), RenewAt: renewAt, SyncDueAt: time.Now().Add(time.Hour),
	})
	if err != nil {
		return store.User{}, fmt.Errorf("connect %s: %w", email, err)
	}
	// The consent function publishes the connected event; the world's
	// users were announced before the test began.
	if err := w.Store.ClearNotice(ctx, u.Key, u.Notice.At); err != nil {
		return store.User{}, fmt.Errorf("connect %s: %w", email, err)
	}
	return w.Store.Get(ctx, u.Key)
}

// Sink collects every event published to a topic, through a pull
// subscription, checking that each message is an event whose attributes
// match it.
type Sink struct {
	t  testing.TB
	mu sync.Mutex
	ev []events.Event
}

func newSink(t testing.TB, ps *pubsub.Client, sub string) *Sink {
	s := &Sink{t: t}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		err := ps.Subscriber(sub).Receive(ctx, func(_ context.Context, m *pubsub.Message) {
			m.Ack()
			ev, err := events.Decode(m.Data)
			if err != nil {
				t.Errorf("published %q is not an event: %v", m.Data, err)
				return
			}
			if m.Attributes["type"] != ev.Type || m.Attributes["id"] != ev.ID || m.Attributes["user"] != ev.User || m.Attributes["appRef"] != ev.AppRef {
				t.Errorf("attributes %v do not match event %s %s %s %q", m.Attributes, ev.Type, ev.ID, ev.User, ev.AppRef)
			}
			s.mu.Lock()
			s.ev = append(s.ev, ev)
			s.mu.Unlock()
		})
		if err != nil && ctx.Err() == nil {
			t.Errorf("receive events: %v", err)
		}
	}()
	t.Cleanup(func() { cancel(); <-done })
	return s
}

// All returns the events received so far.
func (s *Sink) All() []events.Event {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.ev)
}

// Settle is how long Await waits for the stream to go quiet once the
// count it waits for is reached, so that a duplicate or an extra event shows.
const Settle = 500 * time.Millisecond

// Await polls until at least n events arrived (for at most 20 s) and then
// until none arrived for Settle, and returns every event received.
func (s *Sink) Await(n int) []events.Event {
	for deadline := time.Now().Add(20 * time.Second); len(s.All()) < n && time.Now().Before(deadline); {
		time.Sleep(20 * time.Millisecond)
	}
	return s.Quiet(Settle)
}

// Quiet polls until no event arrived for idle (for at most 30 s), and
// returns every event received.
func (s *Sink) Quiet(idle time.Duration) []events.Event {
	deadline := time.Now().Add(30 * time.Second)
	count, since := len(s.All()), time.Now()
	for time.Since(since) < idle && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
		if c := len(s.All()); c != count {
			count, since = c, time.Now()
		}
	}
	return s.All()
}
