package main

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/gmailwatch/gmailwatch/shared/gmailclient"
	"github.com/gmailwatch/gmailwatch/shared/store"
)

// Renewal is one renew run over users whose watches are all due, with the
// Gmail project quota set low enough to be the bottleneck.
type Renewal struct {
	UsersWanted      int             `json:"usersWanted"`
	Users            int             `json:"users"` // seeded in the seed budget
	SeedSeconds      float64         `json:"seedSeconds"`
	SeedPerSecond    float64         `json:"seedPerSecond"`
	QuotaPerMinute   int             `json:"quotaUnitsPerMinute"`
	AllowedPerSecond float64         `json:"allowedWatchesPerSecond"` // quota / 60 / 100 units per watch
	Renewed          int             `json:"renewed"`
	Seconds          float64         `json:"seconds"` // the run's own duration
	PerSecond        float64         `json:"watchesPerSecond"`
	Ratio            float64         `json:"achievedOverAllowed"`
	WatchCalls       int64           `json:"watchCalls"`
	RateLimited      int64           `json:"rateLimited"`      // Gmail's 429s during the run
	Run              json.RawMessage `json:"run"`              // the function's report (one shard range's, the slowest, when fanned out)
	ShardRuns        int             `json:"shardRuns"`        // shard ranges run at once (1: the scheduled run)
	Remaining        int64           `json:"remaining"`        // renewals and reconciles still due when the runs ended
	Errors           []string        `json:"errors,omitempty"` // runs that answered an error; their reports still count
}

// renewal seeds the users (sandbox mailbox and token, secret, Firestore
// record due for renewal), sets the quota, and runs the renew function once.
func (b *bench) renewal(ctx context.Context) error {
	r := &Renewal{UsersWanted: b.cfg.RenewUsers, QuotaPerMinute: b.cfg.RenewQuota}
	b.progress("renewal: seeding %d users (budget %v)", b.cfg.RenewUsers, b.cfg.SeedBudget)
	seedCtx, cancel := context.WithTimeout(ctx, b.cfg.SeedBudget)
	defer cancel()
	due := time.Now().Add(-time.Minute)
	var seeded atomic.Int64
	start := time.Now()
	g, gctx := errgroup.WithContext(seedCtx)
	g.SetLimit(32)
	for _, e := range emails("renew-%05d@bench.test", b.cfg.RenewUsers) {
		if gctx.Err() != nil {
			break
		}
		g.Go(func() error {
			if _, _, err := b.connect(gctx, e, modeSystem, false, due); err != nil {
				if gctx.Err() != nil {
					return nil // the budget ended mid-seed
				}
				return err
			}
			if n := seeded.Add(1); n%1000 == 0 {
				b.progress("renewal: %d users seeded", n)
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return fmt.Errorf("seed: %w", err)
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	r.Users, r.SeedSeconds = int(seeded.Load()), round2(time.Since(start).Seconds())
	r.SeedPerSecond = round2(float64(r.Users) / r.SeedSeconds)
	r.AllowedPerSecond = round2(float64(b.cfg.RenewQuota) / 60 / float64(b.cfg.Quota.Units(gmailclient.MethodWatch)))

	if err := b.sb.Gmail.SetQuota("", 0, b.cfg.RenewQuota); err != nil {
		return err
	}
	defer b.sb.Gmail.SetQuota("", 0, b.cfg.Quota.ProjectPerMinute())
	b.sb.Gmail.ResetUsage()
	b.progress("renewal: renew over %d users in %d shard run(s) at once, at %d units/min (%.1f watches/s allowed)", r.Users, b.cfg.RenewShards, r.QuotaPerMinute, r.AllowedPerSecond)
	ranges := store.Split(b.cfg.RenewShards)
	outs := make([]string, len(ranges))
	began := time.Now()
	errs := make([]error, len(ranges))
	var runs sync.WaitGroup
	for i, s := range ranges {
		runs.Go(func() {
			if len(ranges) == 1 {
				outs[i], errs[i] = b.st.Renew(ctx)
			} else {
				outs[i], errs[i] = b.st.RenewShards(ctx, s.From, s.To)
			}
		})
	}
	runs.Wait()
	wall := time.Since(began)
	var slowest int64
	for i, out := range outs {
		var rep struct {
			Renewed    int   `json:"renewed"`
			Remaining  int64 `json:"remaining"`
			DurationMS int64 `json:"duration_ms"`
		}
		if err := json.Unmarshal([]byte(out), &rep); err != nil {
			return fmt.Errorf("renew run over shards %v: %w; report %q: %w", ranges[i], errs[i], out, err)
		}
		if errs[i] != nil { // a report with an error: what it did still counts
			r.Errors = append(r.Errors, fmt.Sprintf("shards %d..%d: %v", ranges[i].From, ranges[i].To, errs[i]))
		}
		r.Renewed += rep.Renewed
		r.Remaining += rep.Remaining
		if rep.DurationMS >= slowest {
			slowest, r.Run = rep.DurationMS, json.RawMessage(out)
		}
	}
	usage := b.sb.Gmail.Usage("")
	r.ShardRuns = len(ranges)
	// The runs' own durations, or for runs at once the wall time they took together.
	r.Seconds = round2(float64(slowest) / 1000)
	if len(ranges) > 1 {
		r.Seconds = round2(wall.Seconds())
	}
	r.WatchCalls, r.RateLimited = usage.Calls[gmailclient.MethodWatch], usage.RateLimited
	if r.Seconds > 0 {
		r.PerSecond = round2(float64(r.Renewed) / r.Seconds)
		r.Ratio = round2(r.PerSecond / r.AllowedPerSecond)
	}
	b.rep.Renewal = r
	return nil
}
