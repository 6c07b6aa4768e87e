package store_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/gmailwatch/gmailwatch/scripts/testenv"
	"github.com/gmailwatch/gmailwatch/shared/store"
)

func held(email, appRef, code string, move bool, lapse time.Time) store.Connection {
	return store.Connection{Email: email, Sub: "sub-" + email, AppRef: appRef, Move: move, HistoryID: 100,
		Result: store.ResultID(code), ResultExpires: lapse}
}

// Many backends redeeming one code at once: exactly one gets the account,
// every other is told it was redeemed; the record is confirmed once.
func TestResultRedeemsOnceUnderRacingRedeems(t *testing.T) {
	ctx := context.Background()
	s := store.New(testenv.Firestore(t, testenv.Project(t)), nil)
	u, _, err := s.Connect(ctx, held("race@example.com", "app-1", "code-race", false, time.Now().Add(time.Minute)))
	if err != nil || u.Status != store.Pending || u.AppRef != "" || u.Notice != nil {
		t.Fatalf("held connection = %+v, %v; want pending, under no reference, owing nothing", u, err)
	}
	var wg sync.WaitGroup
	errs := make([]error, 8)
	for i := range errs {
		wg.Go(func() { _, _, errs[i] = s.Redeem(ctx, store.ResultID("code-race")) })
	}
	wg.Wait()
	won := 0
	for _, err := range errs {
		switch {
		case err == nil:
			won++
		case !errors.Is(err, store.ErrResultRedeemed):
			t.Errorf("racing redeem: %v, want ErrResultRedeemed", err)
		}
	}
	if won != 1 {
		t.Errorf("%d redeems succeeded, want 1", won)
	}
	got, err := s.Get(ctx, u.Key)
	if err != nil || got.Status != store.Active || got.AppRef != "app-1" || got.Notice == nil || got.PendingResult != "" || !got.PendingUntil.IsZero() {
		t.Errorf("after the redeem: %+v, %v; want active under app-1 owing its connected event", got, err)
	}
}

// A result confirms only the consent it came from: a later consent of the
// same mailbox supersedes it; a lapsed one is refused; neither changes the
// record.
func TestResultIsSupersededOrExpires(t *testing.T) {
	ctx := context.Background()
	now := time.Now()
	s := store.New(testenv.Firestore(t, testenv.Project(t)), func() time.Time { return now })
	if _, _, err := s.Connect(ctx, held("twice@example.com", "first", "code-1", false, now.Add(time.Minute))); err != nil {
		t.Fatal(err)
	}
	second, _, err := s.Connect(ctx, held("twice@example.com", "second", "code-2", false, now.Add(time.Minute)))
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Redeem(ctx, store.ResultID("code-1")); !errors.Is(err, store.ErrResultSuperseded) {
		t.Errorf("redeem of a superseded result: %v, want ErrResultSuperseded", err)
	}
	if _, _, err := s.Redeem(ctx, store.ResultID("no-such-code")); !errors.Is(err, store.ErrResultNotFound) {
		t.Errorf("redeem of an unknown result: %v, want ErrResultNotFound", err)
	}
	now = now.Add(time.Minute)
	if _, _, err := s.Redeem(ctx, store.ResultID("code-2")); !errors.Is(err, store.ErrResultExpired) {
		t.Errorf("redeem of a lapsed result: %v, want ErrResultExpired", err)
	}
	if got, _ := s.Get(ctx, second.Key); got.Status != store.Pending || got.AppRef != "" || got.PendingResult != store.ResultID("code-2") {
		t.Errorf("after refused redeems: %+v, want still pending for the second consent", got)
	}
	lapsed, err := s.Lapsed(ctx, second.Shard, now, store.Position{}, 10)
	if err != nil || len(lapsed) != 1 || lapsed[0].Key != second.Key {
		t.Errorf("Lapsed = %+v, %v; want the second consent", lapsed, err)
	}
}
