package gmailapi_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"testing"
	"time"

	"cloud.google.com/go/pubsub/v2"
	"golang.org/x/oauth2"
	gmail "google.golang.org/api/gmail/v1"
	"google.golang.org/api/googleapi"
	"google.golang.org/api/option"

	"github.com/gmailwatch/gmailwatch/scripts/sandbox/gmailapi"
	"github.com/gmailwatch/gmailwatch/scripts/sandbox/googleauth"
	"github.com/gmailwatch/gmailwatch/scripts/testenv"
)

const (
	clientID     = "sandbox-client.apps.googleusercontent.com"
	clientSecret = "GOCSPX-sandbox-secret"
)

// env is one Gmail fake with its OAuth provider behind a loopback HTTP
// server, publishing to a Pub/Sub emulator project of its own.
type env struct {
	url    string
	gmail  *gmailapi.Server
	auth   *googleauth.Server
	pubsub *pubsub.Client
}

func newEnv(t *testing.T, opts gmailapi.Options) *env {
	t.Helper()
	ps := testenv.PubSub(t, testenv.Project(t))
	auth := googleauth.New(googleauth.Options{Clients: map[string]googleauth.Client{
		clientID: {Secret: clientSecret, RedirectURIs: []string{"http://127.0.0.1/cb"}},
	}})
	opts.Auth, opts.PubSub = auth, ps
	g := gmailapi.New(opts)
	mux := http.NewServeMux()
	auth.Register(mux)
	g.Register(mux)
	srv := httptest.NewServer(mux)
	t.Cleanup(func() { g.Close() })
	t.Cleanup(srv.Close)
	return &env{url: srv.URL, gmail: g, auth: auth, pubsub: ps}
}

// mailbox creates email's mailbox and OAuth account and returns a Gmail
// client holding a refresh token for scopes (gmail.metadata by default),
// built the way the functions build theirs.
func (e *env) mailbox(t *testing.T, email string, scopes ...string) *gmail.Service {
	t.Helper()
	if err := e.gmail.AddMailbox(email); err != nil {
		t.Fatalf("AddMailbox(%s): %v", email, err)
	}
	e.auth.AddAccount(email)
	return e.client(t, email, scopes...)
}

func (e *env) client(t *testing.T, email string, scopes ...string) *gmail.Service {
	t.Helper()
	if len(scopes) == 0 {
		scopes = []string{gmailapi.ScopeMetadata}
	}
	cfg := oauth2.Config{ClientID: clientID, ClientSecret: clientSecret, Scopes: scopes,
		Endpoint: oauth2.Endpoint{AuthURL: e.url + "/o/oauth2/v2/auth", TokenURL: e.url + "/token"}}
	rt := e.auth.IssueRefreshToken(clientID, email, scopes)
	ctx := context.Background()
	svc, err := gmail.NewService(ctx, option.WithEndpoint(e.url+"/"), option.WithTokenSource(cfg.TokenSource(ctx, &oauth2.Token{RefreshToken: rt})))
	if err != nil {
		t.Fatalf("gmail.NewService: %v", err)
	}
	return svc
}

func (e *env) deliver(t *testing.T, d gmailapi.Delivery) gmailapi.Delivered {
	t.Helper()
	got, err := e.gmail.Deliver(d)
	if err != nil {
		t.Fatalf("Deliver(%+v): %v", d, err)
	}
	return got
}

// topic creates a topic with a pull subscription and returns its name and
// a channel of the notifications arriving on it.
func (e *env) topic(t *testing.T, id string) (string, <-chan gmailapi.Notification) {
	t.Helper()
	name := testenv.Topic(t, e.pubsub, id)
	sub := testenv.Subscription(t, e.pubsub, name, id+"-sub")
	ch := make(chan gmailapi.Notification, 100)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		s := e.pubsub.Subscriber(sub)
		// One message at a time, so the channel sees them in the order Pub/Sub hands them out.
		s.ReceiveSettings.MaxOutstandingMessages = 1
		err := s.Receive(ctx, func(_ context.Context, m *pubsub.Message) {
			m.Ack()
			var n gmailapi.Notification
			if err := json.Unmarshal(m.Data, &n); err != nil {
				t.Errorf("notification %q is not JSON: %v", m.Data, err)
			}
			ch <- n
		})
		if err != nil && ctx.Err() == nil {
			t.Errorf("receive %s: %v", sub, err)
		}
	}()
	t.Cleanup(func() { cancel(); wg.Wait() })
	return name, ch
}

// receive collects notifications for d, failing if fewer than want arrive.
func receive(t *testing.T, ch <-chan gmailapi.Notification, want int, d time.Duration) []gmailapi.Notification {
	t.Helper()
	var got []gmailapi.Notification
	deadline := time.After(d)
	for {
		select {
		case n := <-ch:
			got = append(got, n)
		case <-deadline:
			if len(got) < want {
				t.Fatalf("got %d notifications %+v within %v, want at least %d", len(got), got, d, want)
			}
			return got
		}
	}
}

// apiError returns err's Google API error, failing when it is something else.
func apiError(t *testing.T, err error) *googleapi.Error {
	t.Helper()
	var ge *googleapi.Error
	if !errors.As(err, &ge) {
		t.Fatalf("error %v (%T) is not a *googleapi.Error", err, err)
	}
	return ge
}

func wantAPIError(t *testing.T, what string, err error, code int, reason string) {
	t.Helper()
	if err == nil {
		t.Fatalf("%s: got no error, want %d %s", what, code, reason)
	}
	ge := apiError(t, err)
	if ge.Code != code || len(ge.Errors) == 0 || ge.Errors[0].Reason != reason {
		t.Fatalf("%s: got %d %+v (%s), want %d %s", what, ge.Code, ge.Errors, ge.Message, code, reason)
	}
}

// clock is a settable time source whose timers (AfterFunc) fire when
// Advance reaches them.
type clock struct {
	mu     sync.Mutex
	t      time.Time
	timers []*clockTimer
}

type clockTimer struct {
	at time.Time
	f  func()
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

// AfterFunc is gmailapi.Options.AfterFunc on this clock.
func (c *clock) AfterFunc(d time.Duration, f func()) func() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if d <= 0 {
		go f()
		return func() bool { return false }
	}
	tm := &clockTimer{at: c.t.Add(d), f: f}
	c.timers = append(c.timers, tm)
	return func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		i := slices.Index(c.timers, tm)
		if i >= 0 {
			c.timers = slices.Delete(c.timers, i, i+1)
		}
		return i >= 0
	}
}

// Advance moves the clock on by d and runs the timers now due, in order,
// outside the clock's lock.
func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	var due []*clockTimer
	c.timers = slices.DeleteFunc(c.timers, func(tm *clockTimer) bool {
		if tm.at.After(c.t) {
			return false
		}
		due = append(due, tm)
		return true
	})
	c.mu.Unlock()
	slices.SortStableFunc(due, func(a, b *clockTimer) int { return a.at.Compare(b.at) })
	for _, tm := range due {
		tm.f()
	}
}
