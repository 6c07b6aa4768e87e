package renew

import (
	"context"
	"math"
	"testing"
	"time"
)

// watch is the dearest call renew makes, in units.
const watch = 100

func TestQuotaLimiterNeverSpendsMoreThanAMinutesQuota(t *testing.T) {
	for _, tc := range []struct {
		unitsPerMinute int
		wantBurst      int
		wantRate       float64 // units per second
	}{
		{1_200_000, 20_000, 1_180_000.0 / 60},
		{60_000, 1_000, 59_000.0 / 60},
		{6_000, 100, 5_900.0 / 60},
		{100, 100, 50.0 / 60}, // below two watches a minute: half the quota refills
	} {
		q := newQuotaLimiter(tc.unitsPerMinute, watch)
		if got := q.lim.Burst(); got != tc.wantBurst {
			t.Errorf("quota %d: burst = %d, want %d", tc.unitsPerMinute, got, tc.wantBurst)
		}
		if got := q.rate(); math.Abs(got-tc.wantRate) > 1e-9 {
			t.Errorf("quota %d: rate = %v units/s, want %v", tc.unitsPerMinute, got, tc.wantRate)
		}
		// The most any 60 s can spend: a full bucket plus a minute of refill.
		if most := float64(q.lim.Burst()) + 60*q.rate(); tc.unitsPerMinute >= 2*watch && most > float64(tc.unitsPerMinute)+1e-6 {
			t.Errorf("quota %d: a minute may spend %v units", tc.unitsPerMinute, most)
		}
	}
}

func TestQuotaLimiterHalvesOn429AndRecoversSlowly(t *testing.T) {
	q := newQuotaLimiter(60_000, watch)
	ceiling := q.rate()
	steps := []struct {
		name string
		do   func()
		want float64
	}{
		{"429 halves", q.slowDown, ceiling / 2},
		{"429s of the same burst count once", q.slowDown, ceiling / 2},
		{"a later 429 halves again", func() { q.cutAt = time.Time{}; q.slowDown() }, ceiling / 4},
		{"a success wins back one step", q.speedUp, ceiling/4 + ceiling/recoverySteps},
		{"many 429s stop at the floor", func() {
			for range 10 {
				q.cutAt = time.Time{}
				q.slowDown()
			}
		}, ceiling / floorFraction},
		{"enough successes reach the ceiling, not beyond", func() {
			for range recoverySteps + 10 {
				q.speedUp()
			}
		}, ceiling},
	}
	for _, s := range steps {
		s.do()
		if got := q.rate(); math.Abs(got-s.want) > 1e-9 {
			t.Fatalf("%s: rate = %v, want %v", s.name, got, s.want)
		}
	}
}

func TestQuotaLimiterWait(t *testing.T) {
	q := newQuotaLimiter(6_000, watch) // bucket of 100 units, ~98 units/s
	ctx := context.Background()
	if err := q.wait(ctx, 100); err != nil {
		t.Fatalf("wait for a full bucket: %v", err)
	}
	// The bucket is empty: 100 more units take about a second, which a
	// 100 ms deadline cannot give, so wait fails at once and spends nothing.
	short, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel()
	if err := q.wait(short, 100); err == nil {
		t.Fatal("wait beyond the deadline succeeded")
	}
	if got := q.lim.TokensAt(time.Now()); got < -1 {
		t.Fatalf("a failed wait spent units: %v tokens left", got)
	}
	// A debit beyond the bucket puts it in debt, so later callers wait longer.
	q.debit(250)
	if got := q.lim.TokensAt(time.Now()); got > -200 {
		t.Fatalf("after a debit of 250 units: %v tokens, want about -250", got)
	}
}
