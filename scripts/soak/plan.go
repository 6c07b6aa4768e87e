package main

import (
	"math/rand/v2"
	"slices"
	"time"

	"github.com/gmailwatch/gmailwatch/scripts/sandbox/gmailapi"
)

// plan is a run's schedule, drawn up front from the seed so that the same
// flags replay the same sends, faults, outages, kills and revocations (the
// processes' own timing still varies from run to run). Offsets count from the
// start of the send phase.
type plan struct {
	Sends    []send
	Baseline gmailapi.Faults // global Gmail faults for the whole send phase
	Episodes []episode
	Outages  []outage
	Kills    []kill
	Revokes  []revoke
	Follow   []string // with -all-types: per send, the change that follows it (mailbox.go)
}

type send struct {
	At      time.Duration
	User    int
	Watched bool // to INBOX; otherwise to a label no watch covers, which must not be announced
}

// episode is a burst of one kind of Gmail fault on one user's mailbox, on
// top of the baseline.
type episode struct {
	At     time.Duration
	For    time.Duration
	User   int
	Kind   string
	Faults gmailapi.Faults
}

// outage makes the webhook receiver unreachable: "503" answers Service
// Unavailable, "reset" closes the connection without an answer.
type outage struct {
	At   time.Duration
	For  time.Duration
	Mode string
}

type kill struct {
	At       time.Duration
	Function string
}

type revoke struct {
	At   time.Duration
	User int
}

// Episode kinds.
var kinds = []string{"errors", "latency", "drop", "duplicate", "reorder", "early", "expire"}

// unwatchedShare of messages go to a label the watch does not cover.
const unwatchedShare = 0.05

func newPlan(c Config) plan {
	rng := rand.New(rand.NewPCG(c.Seed, c.Seed^0x5eed5eed5eed5eed))
	between := func(lo, hi time.Duration) time.Duration { return lo + time.Duration(rng.Int64N(int64(hi-lo)+1)) }
	d := c.Duration
	var p plan
	for range c.Messages {
		p.Sends = append(p.Sends, send{At: between(0, d), User: rng.IntN(c.Users), Watched: rng.Float64() >= unwatchedShare})
	}
	slices.SortFunc(p.Sends, func(a, b send) int { return int(a.At - b.At) })

	if r := c.FaultRate; r > 0 {
		p.Baseline = gmailapi.Faults{
			Seed: rng.Uint64(), ErrorRate: r, DropNotifications: r / 3,
			DuplicateNotifications: r, DuplicateCopies: 4, ReorderNotifications: r,
		}
		// Each user spends about FaultRate of the send phase in an episode
		// lasting 1-8 s (4.5 s on average).
		gap := time.Duration(float64(4500*time.Millisecond) * (1 - r) / r)
		for u := range c.Users {
			for t := between(0, gap); t < d; {
				e := episode{At: t, For: between(time.Second, 8*time.Second), User: u, Kind: kinds[rng.IntN(len(kinds))]}
				e.Faults = episodeFaults(e.Kind, rng)
				p.Episodes = append(p.Episodes, e)
				t += e.For + between(gap/2, gap*3/2)
			}
		}
		// Receiver outages of 2-8 s, one every 4/FaultRate seconds on average.
		ogap := time.Duration(float64(4*time.Second) / r)
		for t := between(0, ogap); t < d; t += between(ogap/2, ogap*3/2) {
			o := outage{At: t, For: between(2*time.Second, 8*time.Second), Mode: []string{"503", "reset"}[rng.IntN(2)]}
			p.Outages = append(p.Outages, o)
			t += o.For
		}
	}
	// Kills come 150-600 ms after a send, while its push is likely mid-sync.
	for range c.Kills {
		k := kill{At: p.Sends[rng.IntN(len(p.Sends))].At + between(150*time.Millisecond, 600*time.Millisecond), Function: "notify"}
		switch x := rng.Float64(); {
		case x < 0.2:
			k.Function = "webhook"
		case x < 0.3:
			k.Function = "renew"
		}
		p.Kills = append(p.Kills, k)
	}
	slices.SortFunc(p.Kills, func(a, b kill) int { return int(a.At - b.At) })
	for _, u := range rng.Perm(c.Users)[:c.Revoke] {
		p.Revokes = append(p.Revokes, revoke{At: between(d*3/10, d*7/10), User: u})
	}
	p.Follow = followUps(c, len(p.Sends))
	return p
}

func episodeFaults(kind string, rng *rand.Rand) gmailapi.Faults {
	f := gmailapi.Faults{Seed: rng.Uint64()}
	switch kind {
	case "errors": // 429, 500 and 503 on every method
		f.ErrorRate = 0.5 + 0.4*rng.Float64()
	case "latency":
		f.Latency = gmailapi.Duration(100*time.Millisecond + time.Duration(rng.Int64N(int64(1400*time.Millisecond))))
	case "drop":
		f.DropNotifications = 0.5 + 0.5*rng.Float64()
	case "duplicate": // up to 5 copies of a push
		f.DuplicateNotifications, f.DuplicateCopies = 0.5+0.5*rng.Float64(), 4
	case "reorder":
		f.ReorderNotifications = 0.5 + 0.5*rng.Float64()
	case "early": // the push arrives before history shows the change
		f.HistoryDelay = gmailapi.Duration(500*time.Millisecond + time.Duration(rng.Int64N(int64(2500*time.Millisecond))))
	case "expire": // the cursor is older than Gmail keeps history: 404
		f.ExpireHistory = true
	}
	return f
}

// merge returns the faults of base with every episode's on top: the
// harsher of each rate and delay, expiry if any asks for it.
func merge(base gmailapi.Faults, eps []*episode) gmailapi.Faults {
	f := base
	for _, e := range eps {
		g := e.Faults
		f.Seed ^= g.Seed
		f.ErrorRate = max(f.ErrorRate, g.ErrorRate)
		f.Latency = max(f.Latency, g.Latency)
		f.DropNotifications = max(f.DropNotifications, g.DropNotifications)
		f.DuplicateNotifications = max(f.DuplicateNotifications, g.DuplicateNotifications)
		f.DuplicateCopies = max(f.DuplicateCopies, g.DuplicateCopies)
		f.ReorderNotifications = max(f.ReorderNotifications, g.ReorderNotifications)
		f.HistoryDelay = max(f.HistoryDelay, g.HistoryDelay)
		f.ExpireHistory = f.ExpireHistory || g.ExpireHistory
	}
	return f
}
