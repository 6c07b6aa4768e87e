package renew

import (
	"context"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// quotaLimiter paces Gmail calls in quota units. Its token bucket holds one
// second of quota (at least one watch) and refills at the rest of the
// per-minute quota, so no minute, however it is aligned, spends more than
// the quota. It adapts: a 429 halves the rate, down to a floor, at most once
// per cutInterval (the 429s of calls already in flight count once), and each
// success wins back a small step of the ceiling.
type quotaLimiter struct {
	lim     *rate.Limiter
	ceiling rate.Limit
	floor   rate.Limit
	step    rate.Limit

	mu    sync.Mutex
	cutAt time.Time
}

const (
	cutInterval   = time.Second
	floorFraction = 16  // the rate never drops below ceiling/16
	recoverySteps = 100 // successes that win back the whole ceiling
)

// newQuotaLimiter paces to unitsPerMinute; its bucket holds at least one
// call of the dearest cost, largest.
func newQuotaLimiter(unitsPerMinute, largest int) *quotaLimiter {
	burst := max(unitsPerMinute/60, largest)
	ceiling := rate.Limit(float64(max(unitsPerMinute-burst, unitsPerMinute/2)) / 60)
	return &quotaLimiter{
		lim:     rate.NewLimiter(ceiling, burst),
		ceiling: ceiling,
		floor:   ceiling / floorFraction,
		step:    ceiling / recoverySteps,
	}
}

// wait blocks until units may be spent. It fails at once, spending nothing,
// when they could not be had before ctx's deadline.
func (q *quotaLimiter) wait(ctx context.Context, units int) error {
	for units > 0 {
		n := min(units, q.lim.Burst())
		if err := q.lim.WaitN(ctx, n); err != nil {
			return err
		}
		units -= n
	}
	return nil
}

// debit records units already spent beyond what was waited for; later
// callers wait the longer for them.
func (q *quotaLimiter) debit(units int) {
	for units > 0 {
		n := min(units, q.lim.Burst())
		q.lim.ReserveN(time.Now(), n)
		units -= n
	}
}

// slowDown halves the rate after Gmail answered 429.
func (q *quotaLimiter) slowDown() {
	q.mu.Lock()
	defer q.mu.Unlock()
	if time.Since(q.cutAt) < cutInterval {
		return
	}
	q.cutAt = time.Now()
	q.lim.SetLimit(max(q.lim.Limit()/2, q.floor))
}

// speedUp wins back a step of the rate after a call Gmail accepted.
func (q *quotaLimiter) speedUp() {
	q.mu.Lock()
	defer q.mu.Unlock()
	if r := q.lim.Limit(); r < q.ceiling {
		q.lim.SetLimit(min(r+q.step, q.ceiling))
	}
}

// rate returns the current rate in units per second.
func (q *quotaLimiter) rate() float64 { return float64(q.lim.Limit()) }
