package gmailsync_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/gmailwatch/gmailwatch/scripts/sandbox/gmailapi"
	"github.com/gmailwatch/gmailwatch/shared/gmailsync"
)

// TestLargeBacklogAfterExpiredHistory: 2,000 messages wait behind a history
// 404. The catch-up runs in invocations that each end before it is done, as
// a function's timeout ends them; every one continues the checkpoint the
// last one stored. All 2,000 are announced once, and none of the mail from
// before the connection or already announced by the last sync.
func TestLargeBacklogAfterExpiredHistory(t *testing.T) {
	if testing.Short() {
		t.Skip("minutes at the per-user rate")
	}
	t.Parallel()
	const backlog = 2000
	e := newEnv(t, fast)
	const email = "backlog@example.com"
	if err := e.sb.Gmail.AddMailbox(email); err != nil {
		t.Fatal(err)
	}
	for i := range 40 {
		e.deliver(email, fmt.Sprint("before connecting ", i))
	}
	e.connect(email, nil, "")
	seen := e.deliver(email, "seen")
	e.push(email, seen.HistoryID)
	want := []gmailapi.Delivered{seen}
	for i := range backlog { // their pushes were lost, and history aged out
		want = append(want, e.deliver(email, fmt.Sprint("missed ", i)))
	}
	if err := e.sb.Gmail.SetFaults(email, gmailapi.Faults{ExpireHistory: true}); err != nil {
		t.Fatal(err)
	}
	now, _ := e.sb.Gmail.HistoryID(email)
	e.sb.Gmail.ResetUsage()

	start, invocations := time.Now(), 0
	for {
		invocations++
		ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
		res, err := e.syncer.OnPush(ctx, email, int64(now))
		cancel()
		if err == nil {
			if !res.CaughtUp || res.ToHistoryID != int64(now) {
				t.Fatalf("last invocation: got %+v, want caught up to %d", res, now)
			}
			break
		}
		if !errors.Is(err, gmailsync.ErrCatchingUp) || invocations > 60 {
			t.Fatalf("invocation %d: %v", invocations, err)
		}
		if u := e.user(email); u.CatchUp == nil || u.Cursor >= int64(now) {
			t.Fatalf("invocation %d ended without a checkpoint: cursor %d, catch-up %+v", invocations, u.Cursor, u.CatchUp)
		}
	}
	took := time.Since(start)
	wantExactlyOnce(t, e.events(len(want)), want...)
	if u := e.user(email); u.CatchUp != nil || u.Cursor != int64(now) {
		t.Errorf("after the catch-up: cursor %d, checkpoint %+v; want %d, none", u.Cursor, u.CatchUp, now)
	}
	use := e.sb.Gmail.Usage(email)
	// Each invocation continues the listing: a restart would list the
	// pages already done again.
	if pages := int64(backlog/100 + 2); use.Calls["messages.list"] > pages+int64(invocations) {
		t.Errorf("messages.list calls: got %d for %d pages in %d invocations: the catch-up started over", use.Calls["messages.list"], pages, invocations)
	}
	// The floor: the units over the per-user rate (standard-2026, the
	// sandbox's default: 6,000 a minute).
	rate := e.sb.Gmail.Quota().UserUnitsPerMinute
	if rate != 6000 {
		t.Fatalf("the sandbox's per-user rate is %d, want standard-2026's 6,000", rate)
	}
	floor := time.Duration(float64(use.Units) / float64(rate) * float64(time.Minute))
	t.Logf("%d messages caught up in %v over %d invocations; %d units, %d refused for the rate; floor %v at %d units/min",
		backlog, took.Round(time.Millisecond), invocations, use.Units, use.RateLimited, floor.Round(time.Millisecond), rate)
}
