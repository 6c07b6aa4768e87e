package lifecycle_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/gmailwatch/gmailwatch/scripts/testenv"
	"github.com/gmailwatch/gmailwatch/shared/events"
	"github.com/gmailwatch/gmailwatch/shared/lifecycle"
	"github.com/gmailwatch/gmailwatch/shared/store"
)

// switched publishes to the world's events topic unless down.
type switched struct {
	pub  *events.Publisher
	down bool
}

var errDown = errors.New("events topic unavailable")

func (s *switched) Publish(ctx context.Context, evs ...events.Event) error {
	if s.down {
		return errDown
	}
	return s.pub.Publish(ctx, evs...)
}

type env struct {
	*testenv.World
	pub  *switched
	life *lifecycle.Lifecycle
}

func newEnv(t *testing.T) *env {
	t.Helper()
	t.Parallel()
	w := testenv.NewWorld(t, testenv.Options{})
	pub := &switched{pub: w.Publisher}
	return &env{World: w, pub: pub, life: lifecycle.New(w.Store, pub, nil)}
}

// connect records email connected under appRef, owing its connected event.
func (e *env) connect(t *testing.T, email, appRef string, c store.Connection) store.User {
	t.Helper()
	c.Email, c.AppRef, c.HistoryID, c.Labels = email, appRef, 100, []string{"INBOX"}
	c.WatchExpiration = time.Now().Add(7 * 24 * time.Hour)
	u, _, err := e.Store.Connect(context.Background(), c)
	if err != nil {
		t.Fatalf("connect %s: %v", email, err)
	}
	return u
}

func (e *env) get(t *testing.T, key string) store.User {
	t.Helper()
	u, err := e.Store.Get(context.Background(), key)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

func disconnected(u *store.User) error {
	if u.Status == store.Disconnected {
		return store.ErrNoChange
	}
	u.Status = store.Disconnected
	return nil
}

// A disconnect writes the status and the owed event first; a failed publish
// leaves it owed, and the retry publishes the same events, connected first,
// each under the user's AppRef.
func TestDisconnectOwesItsEventUntilPublished(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	u := e.connect(t, "ann@example.com", "app-7", store.Connection{})

	v, err := e.life.Disconnect(ctx, u.Key, disconnected)
	if err != nil {
		t.Fatal(err)
	}
	if got := e.get(t, u.Key); got.Status != store.Disconnected || got.Farewell.IsZero() || got.Notice == nil {
		t.Fatalf("after Disconnect: %+v, want disconnected, owing its connected and disconnected events", got)
	}
	e.pub.down = true
	if _, err := e.life.Farewell(ctx, v); !errors.Is(err, errDown) {
		t.Fatalf("Farewell with the topic down: %v, want %v", err, errDown)
	}
	if got := e.get(t, u.Key); !got.Farewell.Equal(v.Farewell) || got.Notice == nil {
		t.Fatalf("after the failed publish: %+v, want both events still owed", got)
	}
	e.pub.down = false
	again, err := e.life.Disconnect(ctx, u.Key, disconnected) // a repeat changes nothing and finds the event owed
	if err != nil {
		t.Fatal(err)
	}
	id, err := e.life.Farewell(ctx, again)
	if err != nil {
		t.Fatal(err)
	}
	want := lifecycle.Disconnected(v, v.Farewell)
	evs := e.Events.Await(2)
	if len(evs) != 2 || evs[0].ID != lifecycle.Connected(u).ID || evs[1].ID != want.ID || id != want.ID ||
		evs[1].Time != want.Time || evs[0].AppRef != "app-7" || evs[1].AppRef != "app-7" || evs[1].Type != events.UserDisconnect {
		t.Fatalf("published %+v (id %s); want the connected event %s, then %+v", evs, id, lifecycle.Connected(u).ID, want)
	}
	if got := e.get(t, u.Key); !got.Farewell.IsZero() || got.Notice != nil {
		t.Errorf("after the publish: %+v, want nothing owed", got)
	}
	if id, err := e.life.Farewell(ctx, e.get(t, u.Key)); id != "" || err != nil {
		t.Errorf("Farewell with nothing owed = %q, %v; want nothing", id, err)
	}
	// A caller that repeats a finished disconnect hears the same event again.
	again, err = e.life.Disconnect(ctx, u.Key, disconnected)
	if err != nil || again.Farewell.IsZero() {
		t.Fatalf("repeated Disconnect = %+v, %v; want the event owed again", again, err)
	}
	if id, err := e.life.Farewell(ctx, again); id != want.ID || err != nil {
		t.Errorf("Farewell of the repeat = %q, %v; want %s", id, err, want.ID)
	}
}

// A pending record was never announced: its disconnect owes nothing.
func TestPendingDisconnectOwesNothing(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	u := e.connect(t, "pat@example.com", "", store.Connection{Result: store.ResultID("code"), ResultExpires: time.Now().Add(time.Hour)})
	if u.Status != store.Pending {
		t.Fatalf("connect with a result: %s, want pending", u.Status)
	}
	v, err := e.life.Disconnect(ctx, u.Key, disconnected)
	if err != nil || v.Status != store.Disconnected || !v.Farewell.IsZero() {
		t.Fatalf("Disconnect = %+v, %v; want disconnected owing nothing", v, err)
	}
	if id, err := e.life.Farewell(ctx, v); id != "" || err != nil {
		t.Fatalf("Farewell = %q, %v; want nothing published", id, err)
	}
	if evs := e.Events.Quiet(testenv.Settle); len(evs) != 0 {
		t.Errorf("published %+v, want nothing", evs)
	}
}

// Bad inputs change nothing: an unknown user, a mark that declines, a mark
// that fails.
func TestDisconnectRefusals(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	if _, err := e.life.Disconnect(ctx, "nobody", disconnected); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Disconnect of an unknown user: %v, want store.ErrNotFound", err)
	}
	if _, _, err := e.life.MarkReauth(ctx, "nobody"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("MarkReauth of an unknown user: %v, want store.ErrNotFound", err)
	}
	u := e.connect(t, "bo@example.com", "app-1", store.Connection{})
	u = e.get(t, u.Key)
	boom := errors.New("boom")
	if _, err := e.life.Disconnect(ctx, u.Key, func(*store.User) error { return boom }); !errors.Is(err, boom) {
		t.Errorf("Disconnect with a failing mark: %v, want %v", err, boom)
	}
	if _, err := e.life.Disconnect(ctx, u.Key, func(*store.User) error { return store.ErrNoChange }); err != nil {
		t.Errorf("Disconnect with a declining mark: %v", err)
	}
	if got := e.get(t, u.Key); got.Status != store.Active || !got.Farewell.IsZero() || !got.Version.Equal(u.Version) {
		t.Errorf("after the refused disconnects: %+v, want the record unchanged", got)
	}
}

// MarkReauth publishes while the record is still active: a failed publish
// changes nothing, the retry publishes the same id, and once marked a
// repeat publishes nothing.
func TestMarkReauthPublishesBeforeTheStatus(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	u := e.connect(t, "cy@example.com", "app-2", store.Connection{})
	e.pub.down = true
	if changed, _, err := e.life.MarkReauth(ctx, u.Key); changed || !errors.Is(err, errDown) {
		t.Fatalf("MarkReauth with the topic down = %v, %v; want false, %v", changed, err, errDown)
	}
	if got := e.get(t, u.Key); got.Status != store.Active || got.Notice == nil {
		t.Fatalf("after the failed publish: %+v, want active, still owing its connected event", got)
	}
	e.pub.down = false
	changed, ev, err := e.life.MarkReauth(ctx, u.Key)
	if !changed || err != nil || ev.ID != lifecycle.Reauth(u, time.Now()).ID || ev.Reconnect != events.ReconnectPath(u.Key) {
		t.Fatalf("MarkReauth = %v, %+v, %v; want the change and the reauth event", changed, ev, err)
	}
	if changed, _, err := e.life.MarkReauth(ctx, u.Key); changed || err != nil {
		t.Errorf("MarkReauth again = %v, %v; want false, nil", changed, err)
	}
	evs := e.Events.Await(2)
	if len(evs) != 2 || evs[0].ID != lifecycle.Connected(u).ID || evs[1].ID != ev.ID || evs[1].AppRef != "app-2" {
		t.Fatalf("published %+v; want the connected event, then %s", evs, ev.ID)
	}
	if got := e.get(t, u.Key); got.Status != store.ReauthRequired || got.Notice != nil {
		t.Errorf("after MarkReauth: %+v, want reauth_required owing nothing", got)
	}
}

// Moved tells the old reference of the end before the record moves.
func TestMovedPublishesUnderTheOldRef(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	u := e.connect(t, "di@example.com", "old-ref", store.Connection{})
	e.pub.down = true
	if err := e.life.Moved(ctx, u); !errors.Is(err, errDown) {
		t.Fatalf("Moved with the topic down: %v, want %v", err, errDown)
	}
	e.pub.down = false
	if err := e.life.Moved(ctx, u); err != nil {
		t.Fatal(err)
	}
	evs := e.Events.Await(2)
	if len(evs) != 2 || evs[0].Type != events.UserConnected || evs[1].Type != events.UserDisconnect ||
		evs[1].ID != lifecycle.Disconnected(u, time.Now()).ID || evs[1].AppRef != "old-ref" {
		t.Fatalf("published %+v; want the connected event, then the disconnected one under old-ref", evs)
	}
}
