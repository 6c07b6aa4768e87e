package gmailsync_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/gmailwatch/gmailwatch/scripts/sandbox"
	"github.com/gmailwatch/gmailwatch/scripts/sandbox/gmailapi"
	"github.com/gmailwatch/gmailwatch/scripts/testenv"
	"github.com/gmailwatch/gmailwatch/shared/events"
	"github.com/gmailwatch/gmailwatch/shared/gmailsync"
	"github.com/gmailwatch/gmailwatch/shared/store"
)

// env is one test's world (testenv.World) and a Syncer over it.
type env struct {
	*testenv.World
	t      testing.TB
	sb     *sandbox.Sandbox
	store  *store.Store
	syncer *gmailsync.Syncer
	logs   *testenv.LogBuffer
}

// fast are settings that keep the tests quick.
var fast = gmailsync.Settings{
	BackoffBase: 5 * time.Millisecond, BackoffMax: 40 * time.Millisecond,
	RecheckDelay: 200 * time.Millisecond, LeaseTTL: 30 * time.Second, TrailDelay: 300 * time.Millisecond,
}

func newEnv(t testing.TB, set gmailsync.Settings) *env {
	t.Helper()
	w := testenv.NewWorld(t, testenv.Options{})
	e := &env{World: w, t: t, sb: w.Sandbox, store: w.Store, logs: w.Logs}
	e.syncer = gmailsync.New(gmailsync.Deps{Users: w.Store, Gmail: w.Mailboxes(), Events: w.Publisher, Logger: w.Log}, set)
	return e
}

// connect connects email as the consent function does, with the watched
// labels and filter recorded on the user (none: the Syncer's settings).
func (e *env) connect(email string, labels []string, filter string) store.User {
	e.t.Helper()
	e.Connect(email)
	u, err := e.store.Update(context.Background(), store.Key(email), func(u *store.User) error {
		u.Labels, u.LabelFilter = labels, filter
		return nil
	})
	if err != nil {
		e.t.Fatalf("labels of %s: %v", email, err)
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

// events waits until at least want events arrived, and the stream is
// quiet, so that a duplicate would show, and returns them all.
func (e *env) events(want int) []events.Event { return e.Events.Await(want) }

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
