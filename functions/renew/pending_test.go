package renew

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/gmailwatch/gmailwatch/scripts/sandbox/googleauth"
	"github.com/gmailwatch/gmailwatch/shared/gmailclient"
	"github.com/gmailwatch/gmailwatch/shared/store"
	"github.com/gmailwatch/gmailwatch/shared/vault"
)

// hold leaves email as consent does for a link whose result the backend
// must redeem: its token stored, watched, pending (or, for a mailbox
// connected already, keeping its reference), the result lapsing at lapse.
func (e *env) hold(t *testing.T, email string, lapse time.Time) (store.User, string) {
	t.Helper()
	ctx := context.Background()
	rt, err := e.sb.Connect(email, gmailclient.ScopeMetadata)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Vault.PutRefreshToken(ctx, store.Key(email), rt); err != nil {
		t.Fatal(err)
	}
	h, _ := e.sb.Gmail.HistoryID(email)
	u, _, err := e.users.Connect(ctx, store.Connection{Email: email, AppRef: "someone", HistoryID: int64(h), Labels: []string{"INBOX"},
		WatchExpiration: time.Now().Add(7 * 24 * time.Hour), RenewAt: time.Now().Add(24 * time.Hour),
		Move: true, Result: store.ResultID("code-of-" + email), ResultExpires: lapse})
	if err != nil {
		t.Fatal(err)
	}
	return u, rt
}

// A connection whose result lapsed unredeemed is withdrawn by the run, a
// page at a time: revoked at Google, token deleted, record gone, and no
// event ever published; one still in time, and a connected mailbox whose
// unconfirmed move lapsed, keep what they had.
func TestLapsedResultsAreWithdrawnWithoutATrace(t *testing.T) {
	e := newEnv(t, envOptions{settings: func(s *Settings) { s.PageSize = 2 }})
	ctx := context.Background()
	var lapsed []store.User
	tokens := map[string]string{}
	for i := range 5 {
		u, rt := e.hold(t, fmt.Sprintf("lapsed%d@example.com", i), time.Now().Add(-time.Minute))
		lapsed, tokens[u.Key] = append(lapsed, u), rt
	}
	fresh, _ := e.hold(t, "fresh@example.com", time.Now().Add(10*time.Minute))
	kept := e.connect(t, "kept@example.com", func(u *store.User) { u.AppRef = "owner" })
	moved, _ := e.hold(t, "kept@example.com", time.Now().Add(-time.Minute)) // a move to "someone" never redeemed
	if moved.Status != store.Active || moved.PendingResult == "" {
		t.Fatalf("held move = %+v, want active with a result", moved)
	}

	conf, err := e.gmail.OAuth(ctx)
	if err != nil {
		t.Fatal(err)
	}
	rep := e.post(t)
	if rep.Withdrawn != 6 || rep.Failed != 0 {
		t.Errorf("report = %+v, want 6 withdrawn, none failed", rep)
	}
	for _, u := range lapsed {
		if _, err := e.users.Get(ctx, u.Key); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("%s: record left after its result lapsed (%v)", u.Email, err)
		}
		if _, err := e.Vault.RefreshToken(ctx, u.Key); !errors.Is(err, vault.ErrNotFound) {
			t.Errorf("%s: token left after its result lapsed (%v)", u.Email, err)
		}
		if _, err := conf.TokenSource(ctx, &oauth2.Token{RefreshToken: tokens[u.Key]}).Token(); err == nil {
			t.Errorf("%s: the grant is still live at Google, want it revoked", u.Email)
		}
	}
	if u := e.user(t, fresh.Key); u.Status != store.Pending || u.PendingResult == "" {
		t.Errorf("result still in time: %+v, want pending", u)
	}
	if u := e.user(t, kept.Key); u.Status != store.Active || u.AppRef != kept.AppRef || u.PendingResult != "" || !u.PendingUntil.IsZero() {
		t.Errorf("unconfirmed move: %+v, want active under %q with the result forgotten", u, kept.AppRef)
	}
	if _, err := e.Vault.RefreshToken(ctx, kept.Key); err != nil {
		t.Errorf("the connected mailbox lost its token: %v", err)
	}
	if got := e.pull(t, 2*time.Second); len(got) != 0 {
		t.Errorf("events published for unconfirmed connections: %+v", got)
	}
	if rep := e.post(t); rep.Withdrawn != 0 {
		t.Errorf("second run withdrew %d, want nothing left to do", rep.Withdrawn)
	}
}

// TestLapsedResultOfALegacyAccountKeepsItsConnection: the account of a
// legacy record (keyed by its address, not moved by scripts/migrate-keys
// yet) consents through a link its application never redeems. Withdrawing
// that consent deletes its token and record, but neither revokes the grant
// nor stops the mailbox's watch: both are the legacy connection's too.
func TestLapsedResultOfALegacyAccountKeepsItsConnection(t *testing.T) {
	e := newEnv(t, envOptions{})
	ctx := context.Background()
	const lee = "lee@example.com"
	legacy := e.connect(t, lee, nil) // keyed by the address, no account id
	if legacy.Sub != "" {
		t.Fatalf("legacy record = %+v, want no account id", legacy)
	}
	svc, err := e.gmail.ForUser(ctx, legacy)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := e.h.set.Watch.Watch(ctx, svc); err != nil {
		t.Fatal(err)
	}

	rt, err := e.sb.Connect(lee, gmailclient.ScopeMetadata)
	if err != nil {
		t.Fatal(err)
	}
	keys, _ := store.NewKeyer([]byte("user-key-secret-for-legacy-tests-0123456789"))
	sub := googleauth.Subject(lee)
	pending := keys.Key(sub)
	if err := e.Vault.PutRefreshToken(ctx, pending, rt); err != nil {
		t.Fatal(err)
	}
	h, _ := e.sb.Gmail.HistoryID(lee)
	if _, _, err := e.users.Connect(ctx, store.Connection{Key: pending, Sub: sub, Email: lee, AppRef: "someone", HistoryID: int64(h),
		Labels: []string{"INBOX"}, Result: store.ResultID("code-of-" + lee), ResultExpires: time.Now().Add(-time.Minute)}); err != nil {
		t.Fatal(err)
	}
	if rep := e.post(t); rep.Withdrawn != 1 || rep.Failed != 0 {
		t.Fatalf("report = %+v, want the lapsed consent withdrawn", rep)
	}
	if _, err := e.users.Get(ctx, pending); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("the lapsed consent's record is left (%v)", err)
	}
	if _, err := e.Vault.RefreshToken(ctx, pending); !errors.Is(err, vault.ErrNotFound) {
		t.Errorf("the lapsed consent's token is left (%v)", err)
	}
	if w, _ := e.sb.Gmail.Watch(lee); !w.Active {
		t.Error("the mailbox's watch was stopped: the legacy connection gets no more pushes")
	}
	conf, err := e.gmail.OAuth(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conf.TokenSource(ctx, &oauth2.Token{RefreshToken: rt}).Token(); err != nil {
		t.Errorf("the grant was revoked, and with it the legacy connection's: %v", err)
	}
	if u := e.user(t, legacy.Key); u.Status != store.Active {
		t.Errorf("legacy record = %+v, want still active", u)
	}
}
