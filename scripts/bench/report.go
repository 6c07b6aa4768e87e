package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/gmailwatch/gmailwatch/shared/gmailclient"
)

// Report is everything a run measured; the JSON file holds it whole.
type Report struct {
	Command     string      `json:"command"`
	Started     time.Time   `json:"started"`
	Environment Environment `json:"environment"`
	Workload    *Workload   `json:"workload,omitempty"` // quota and latency
	Throughput  *Throughput `json:"throughput,omitempty"`
	ColdStart   *ColdStart  `json:"coldStart,omitempty"`
	Renewal     *Renewal    `json:"renewal,omitempty"`
	Capacity    *Capacity   `json:"capacity,omitempty"`
	Targets     []Target    `json:"targets"`
	// Load is the machine's one-minute load average as each section began:
	// the figures are only as quiet as the machine was.
	Load []LoadSample `json:"load"`
}

// Environment is what the figures depend on.
type Environment struct {
	CPUs           int      `json:"cpus"`
	Go             string   `json:"go"`
	Commit         string   `json:"commit"`
	Sections       []string `json:"sections"`
	GmailLatencyMS float64  `json:"gmailLatencyMs"` // injected by the sandbox
	GmailRoundTrip Dist     `json:"gmailRoundTrip"` // measured through the real client
	// FirestoreTransaction is a read-then-write transaction on the
	// emulator, alone: what each lease or cursor move costs at best.
	FirestoreTransaction Dist `json:"firestoreTransaction"`
	// FirestoreContended is the same transaction, two at once on one
	// document: the emulator makes one wait for a lock timeout.
	FirestoreContended Dist    `json:"firestoreTransactionContended"`
	Mailboxes          int     `json:"workloadUsersPerMode"`
	Singles            int     `json:"singlesPerUser"`
	Bursts             int     `json:"burstsPerUser"`
	BurstSize          int     `json:"burstSize"`
	DuplicateRate      float64 `json:"duplicatePushRate"`
	Push               string  `json:"push"` // relay or emulator
	QuotaProfile       string  `json:"quotaProfile"`
	UserUnitsPerMinute int     `json:"userUnitsPerMinute"` // the profile's per-user limit
}

// LoadSample is the load average when a section began.
type LoadSample struct {
	Section string  `json:"section"`
	Load1   float64 `json:"load1"`
}

func (r *Report) load(section string) {
	b, _ := os.ReadFile("/proc/loadavg")
	var l float64
	fmt.Sscan(string(b), &l)
	r.Load = append(r.Load, LoadSample{section, l})
}

// commit names the code measured: HEAD, and whether the tree had changes.
func commit() string {
	head, err := exec.Command("git", "rev-parse", "--short", "HEAD").Output()
	if err != nil {
		return "unknown"
	}
	c := strings.TrimSpace(string(head))
	if st, _ := exec.Command("git", "status", "--porcelain", "--untracked-files=no").Output(); len(st) > 0 {
		c += " with uncommitted changes"
	}
	return c
}

// Target is one of the targets and whether the run met it.
type Target struct {
	Name string `json:"name"`
	Want string `json:"want"`
	Got  string `json:"got"`
	Met  bool   `json:"met"`
}

func newReport(c Config) *Report {
	return &Report{Started: time.Now().UTC(), Environment: Environment{
		CPUs: runtime.NumCPU(), Go: runtime.Version() + " " + runtime.GOOS + "/" + runtime.GOARCH, Commit: commit(), Sections: c.Sections,
		GmailLatencyMS: ms(c.GmailLatency), Mailboxes: c.Mailboxes, Singles: c.Singles, Bursts: c.Bursts,
		BurstSize: c.BurstSize, DuplicateRate: c.DuplicateRate, Push: c.Push,
		QuotaProfile: c.Quota.Name(), UserUnitsPerMinute: c.Quota.UserPerMinute(),
	}}
}

// AllMet reports whether every target checked was met.
func (r *Report) AllMet() bool {
	for _, t := range r.Targets {
		if !t.Met {
			return false
		}
	}
	return true
}

// evaluate checks the targets against what was measured.
func (r *Report) evaluate() {
	add := func(name, want, got string, met bool) { r.Targets = append(r.Targets, Target{name, want, got, met}) }
	if w := r.Workload; w != nil {
		s, bl := w.System, w.Baseline
		if q, bq := s.Quota, bl.Quota; q != nil && bq != nil {
			for _, p := range []struct {
				kind string
				ph   Phase
			}{{"singles", q.Single}, {"bursts", q.Burst}} {
				add("(1) "+p.kind+": units per message within 10% of the floor",
					fmt.Sprintf("<= %.2f (1.1 x %.2f)", 1.1*p.ph.FloorPerMessage, p.ph.FloorPerMessage),
					fmt.Sprintf("%.2f", p.ph.UnitsPerMessage), p.ph.UnitsPerMessage <= 1.1*p.ph.FloorPerMessage)
			}
			add("(1) bursts: at least 2x fewer units than the baseline", fmt.Sprintf(">= 2.00x (baseline %.2f)", bq.Burst.UnitsPerMessage),
				fmt.Sprintf("%.2fx", ratio(bq.Burst.UnitsPerMessage, q.Burst.UnitsPerMessage)), bq.Burst.UnitsPerMessage >= 2*q.Burst.UnitsPerMessage)
		}
		if p := s.Probe; p != nil {
			add("(1) duplicated and stale pushes cost 0 Gmail calls", fmt.Sprintf("0 calls for %d pushes", p.Duplicate+p.Stale),
				fmt.Sprintf("%d calls", p.Calls), p.Calls == 0 && p.Duplicate > 0)
		}
		lost, twice := 0, 0
		for _, k := range []*Kinds{s.Latency, s.Quota} {
			if k != nil {
				lost += k.Single.Missing + k.Burst.Missing
				twice += k.Single.DuplicateEvents + k.Burst.DuplicateEvents
			}
		}
		if d := w.Dropped; d != nil {
			lost += d.Missing
			twice += d.DuplicateEvents
		}
		add("every message announced once (system)", "0 missing, 0 twice", fmt.Sprintf("%d missing, %d twice", lost, twice), lost == 0 && twice == 0)
		if l := s.Latency; l != nil {
			floor := w.floor(r.Environment)
			add("(2) single-message p50 within 1.5x of the floor", fmt.Sprintf("<= %.1f ms (1.5 x %.1f)", 1.5*floor, floor),
				fmt.Sprintf("%.1f ms", l.Single.Latency.P50), l.Single.Latency.P50 <= 1.5*floor)
			add("(2) burst-of-10 p50 within 2x of a single", fmt.Sprintf("<= %.1f ms (2 x %.1f)", 2*l.Single.Latency.P50, l.Single.Latency.P50),
				fmt.Sprintf("%.1f ms", l.Burst.Latency.P50), l.Burst.Latency.P50 <= 2*l.Single.Latency.P50)
		}
		if l, q := s.Latency, s.Quota; l != nil && q != nil {
			for _, p := range []struct {
				kind      string
				once, dup Dist
			}{{"singles", l.Single.Latency, q.Single.Latency}, {"bursts", l.Burst.Latency, q.Burst.Latency}} {
				add("(2) "+p.kind+": p99 with duplicated pushes within 2x of the p99 without", fmt.Sprintf("<= %.1f ms (2 x %.1f)", 2*p.once.P99, p.once.P99),
					fmt.Sprintf("%.1f ms", p.dup.P99), p.dup.P99 <= 2*p.once.P99)
			}
		}
	}
	if n := r.Renewal; n != nil {
		add("(4) renewal rate at least 0.9 of the quota-allowed rate", fmt.Sprintf(">= 0.90 (of %.1f watches/s)", n.AllowedPerSecond),
			fmt.Sprintf("%.2f (%.1f/s)", n.Ratio, n.PerSecond), n.Ratio >= 0.9)
		add("(4) zero 429s during renewal", "0", fmt.Sprint(n.RateLimited), n.RateLimited == 0)
		add("(4) a complete pass: every seeded user renewed, nothing left due", fmt.Sprintf("%d renewed, 0 left", n.Users),
			fmt.Sprintf("%d renewed, %d left", n.Renewed, n.Remaining), n.Renewed == n.Users && n.Remaining == 0)
	}
	if c := r.ColdStart; c != nil {
		calls, checked := 0, len(c.Isolation) > 0
		for _, i := range c.Isolation {
			calls += i.CallsBefore
		}
		got := fmt.Sprintf("%d calls in %d isolated starts", calls, len(c.Isolation))
		if !checked {
			got = c.IsolationError
		}
		add("(5) no network call before the first request", "0", got, checked && calls == 0)
		for _, f := range c.Functions {
			add("(5) "+f.Name+": under 100 ms to ready (port accepting, p50)", "< 100 ms",
				fmt.Sprintf("%.1f ms (max %.1f)", f.Listen.P50, f.Listen.Max), f.Listen.P50 < 100)
		}
	}
}

// floor is the least a push can take to become an event: the push hop and
// two Gmail round trips (history.list, then messages.get).
func (w *Workload) floor(e Environment) float64 { return w.PushHop.P50 + 2*e.GmailRoundTrip.P50 }

func ratio(a, b float64) float64 {
	if b == 0 {
		return 0
	}
	return a / b
}

// Write stores the report as indented JSON.
func (r *Report) Write(path string) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}

// Print writes the tables.
func (r *Report) Print(out io.Writer) {
	e := r.Environment
	fmt.Fprintf(out, "gmailwatch benchmarks, %s\n", r.Started.Format(time.RFC3339))
	fmt.Fprintf(out, "command: %s\n", r.Command)
	fmt.Fprintf(out, "machine: %d CPUs, %s; Firestore and Pub/Sub emulators, Google sandbox, every function its own process, loopback only\n", e.CPUs, e.Go)
	fmt.Fprintf(out, "code:    %s\n", e.Commit)
	var loads []string
	for _, l := range r.Load {
		loads = append(loads, fmt.Sprintf("%s %.1f", l.Section, l.Load1))
	}
	fmt.Fprintf(out, "load:    1-min load average at each section's start: %s\n", strings.Join(loads, ", "))
	fmt.Fprintf(out, "Firestore emulator: a read-then-write transaction alone p50 %.1f ms, p99 %.1f ms (n=%d); two at once on one document p50 %.1f ms, max %.1f ms (n=%d)\n",
		e.FirestoreTransaction.P50, e.FirestoreTransaction.P99, e.FirestoreTransaction.N, e.FirestoreContended.P50, e.FirestoreContended.Max, e.FirestoreContended.N)
	fmt.Fprintf(out, "Gmail:   %.0f ms added to every call by the sandbox; round trip through the client p50 %.1f ms, p99 %.1f ms (n=%d)\n",
		e.GmailLatencyMS, e.GmailRoundTrip.P50, e.GmailRoundTrip.P99, e.GmailRoundTrip.N)
	q := gmailclient.QuotaProfile(e.QuotaProfile)
	fmt.Fprintf(out, "quota:   %s: %d units per user a minute, messages.get %d, history.list %d, getProfile %d\n", q.Name(), q.UserPerMinute(),
		q.Units(gmailclient.MethodMessagesGet), q.Units(gmailclient.MethodHistoryList), q.Units(gmailclient.MethodGetProfile))
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	row := func(cells ...any) {
		for i, c := range cells {
			if i > 0 {
				fmt.Fprint(tw, "\t")
			}
			fmt.Fprint(tw, c)
		}
		fmt.Fprintln(tw)
	}
	if w := r.Workload; w != nil && w.System.Quota != nil && w.Baseline.Quota != nil {
		fmt.Fprintf(out, "\n1. Quota: Gmail units per delivered message (%d users per mode, %d singles and %d bursts of %d each; run with %.0f%% of pushes published two or three times, and with every push once)\n",
			e.Mailboxes, e.Singles, e.Bursts, e.BurstSize, 100*e.DuplicateRate)
		row("", "messages", "system", "floor", "baseline", "pushes (copies)", "history.list sys/base", "messages.get sys/base", "events twice sys/base", "pushes retried sys/base")
		for _, set := range []struct {
			label string
			s, b  *Kinds
		}{{"pushes duplicated", w.System.Quota, w.Baseline.Quota}, {"every push once", w.System.Latency, w.Baseline.Latency}} {
			if set.s == nil || set.b == nil {
				continue
			}
			for _, p := range []struct {
				name string
				s, b Phase
			}{{"singles", set.s.Single, set.b.Single}, {fmt.Sprintf("bursts of %d", e.BurstSize), set.s.Burst, set.b.Burst}} {
				row("  "+p.name+", "+set.label, p.s.Messages, f2(p.s.UnitsPerMessage), f2(p.s.FloorPerMessage), f2(p.b.UnitsPerMessage),
					fmt.Sprintf("%d (%d)", p.s.Pushes, p.s.DuplicatePushes),
					fmt.Sprintf("%d / %d", p.s.Calls["history.list"], p.b.Calls["history.list"]),
					fmt.Sprintf("%d / %d", p.s.Calls["messages.get"], p.b.Calls["messages.get"]),
					fmt.Sprintf("%d / %d", p.s.DuplicateEvents, p.b.DuplicateEvents),
					fmt.Sprintf("%d / %d", p.s.Retried, p.b.Retried))
			}
		}
		tw.Flush()
		if s, b := w.System.Probe, w.Baseline.Probe; s != nil && b != nil {
			fmt.Fprintf(out, "  duplicate and stale pushes sent straight to the handler (%d + %d): system %d Gmail calls (%d units), baseline %d calls (%d units)\n",
				s.Duplicate, s.Stale, s.Calls, s.Units, b.Calls, b.Units)
		}
		fmt.Fprintf(out, "  floor: %d units per message (messages.get) + %d per episode (one history.list for its push, one getProfile after the push's second: Gmail drops pushes above one a second)\n",
			q.Units(gmailclient.MethodMessagesGet), q.Units(gmailclient.MethodHistoryList)+q.Units(gmailclient.MethodGetProfile))
		if b := w.System.Quota.Burst; b.FloorPerMessage > 0 {
			fmt.Fprintf(out, "  per-user rate: %d units a minute, so at the bursts' floor (%.2f units) a user's mail is read at most %.0f messages a minute (units / per-user rate: %.1f ms a message)\n",
				q.UserPerMinute(), b.FloorPerMessage, float64(q.UserPerMinute())/b.FloorPerMessage, 60_000*b.FloorPerMessage/float64(q.UserPerMinute()))
		}
	}
	if w := r.Workload; w != nil && w.System.Latency != nil && w.Baseline.Latency != nil {
		fmt.Fprintf(out, "\n2. Latency: sandbox accepting a message -> its event on the output topic (Pub/Sub publish time), ms; every push once\n")
		row("", "n", "p50", "p99", "max")
		row("  push hop (sandbox -> push endpoint)", w.PushHop.N, f1(w.PushHop.P50), f1(w.PushHop.P99), f1(w.PushHop.Max))
		row("  floor: push hop + 2 Gmail round trips", "", f1(w.floor(e)), "", "")
		for _, l := range []struct {
			name string
			d    Dist
		}{
			{"  system, single", w.System.Latency.Single.Latency}, {fmt.Sprintf("  system, burst of %d", e.BurstSize), w.System.Latency.Burst.Latency},
			{"  baseline, single", w.Baseline.Latency.Single.Latency}, {fmt.Sprintf("  baseline, burst of %d", e.BurstSize), w.Baseline.Latency.Burst.Latency},
		} {
			row(l.name, l.d.N, f1(l.d.P50), f1(l.d.P99), f1(l.d.Max))
		}
		if d := w.Dropped; d != nil {
			row("  system, message after a dropped notification", d.Latency.N, f1(d.Latency.P50), f1(d.Latency.P99), f1(d.Latency.Max))
			rtt := 2 * e.GmailRoundTrip.P50
			row("  floor: rest of the push's second + 2 Gmail round trips", d.Wait.N, f1(d.Wait.P50+rtt), f1(d.Wait.P99+rtt), f1(d.Wait.Max+rtt))
		}
		if q := w.System.Quota; q != nil {
			row("  system, single, pushes duplicated", q.Single.Latency.N, f1(q.Single.Latency.P50), f1(q.Single.Latency.P99), f1(q.Single.Latency.Max))
			row(fmt.Sprintf("  system, burst of %d, pushes duplicated", e.BurstSize), q.Burst.Latency.N, f1(q.Burst.Latency.P50), f1(q.Burst.Latency.P99), f1(q.Burst.Latency.Max))
		}
		tw.Flush()
		fmt.Fprintln(out, "  Gmail (and the sandbox) pushes at most once per user per second and drops the rest: a change within the second after a push is found by the sync's look after that second.")
		fmt.Fprintf(out, "\n2b. Cost per announced message, counted (notify's store, notify's invocations and CPU, events on the output topic)\n")
		row("", "messages", "invocations", "Firestore reads", "writes", "transactions", "ops/message", "events", "event bytes", "notify CPU s", "notify busy s")
		for _, k := range []struct {
			name string
			ks   *Kinds
		}{{"every push once", w.System.Latency}, {"pushes duplicated", w.System.Quota}} {
			if k.ks == nil {
				continue
			}
			for _, p := range []struct {
				kind string
				ph   Phase
			}{{"single", k.ks.Single}, {fmt.Sprintf("burst of %d", e.BurstSize), k.ks.Burst}} {
				if c := p.ph.Cost; c != nil {
					row("  "+p.kind+", "+k.name, p.ph.Announced, c.Invocations, c.FirestoreReads, c.FirestoreWrites, c.FirestoreTransactions,
						f2(c.FirestorePerMessage), c.Published, c.PublishedBytes, f2(c.CPUSeconds), f2(c.BusySeconds))
				}
			}
		}
		tw.Flush()
		if e.Push == pushRelay {
			fmt.Fprintln(out, "  Pushes: pulled from the Gmail topic and POSTed to each handler in parallel, as Pub/Sub push delivers (-push relay).")
		} else {
			fmt.Fprintln(out, "  Pushes: the Pub/Sub emulator's own push delivery, about two requests in flight per subscription (-push emulator).")
		}
	}
	if t := r.Throughput; t != nil {
		fmt.Fprintf(out, "\n3. Throughput: one notify instance, %d concurrent pushes (one new message each, each worker its own user), %.0f s\n", t.Concurrency, t.Seconds)
		row("  messages/s", "messages", "failed", "announced", "push p50 ms", "push p99 ms", "peak RSS MiB", "notify CPU s", "Firestore tx p50 ms")
		row("  "+f1(t.MessagesPerSecond), t.Messages, t.Failed, t.Announced, f1(t.Request.P50), f1(t.Request.P99), f1(t.PeakRSSMiB), f1(t.CPUSeconds),
			f1(t.FirestoreUnderLoad.P50))
		tw.Flush()
		fmt.Fprintf(out, "  Firestore emulator alone, %d transactions in flight on their own documents: %.0f/s (notify makes 2 transactions, a read and a batch write per message)\n",
			t.Concurrency, t.FirestoreCapacity)
		if t.FirstError != "" {
			fmt.Fprintf(out, "  first error: %s\n", t.FirstError)
		}
	}
	if c := r.ColdStart; c != nil {
		fmt.Fprintf(out, "\n5. Cold start: one binary per function (its package + the framework), started with the stack's settings, ms\n")
		row("", "size MiB", "stripped MiB", "listening p50", "max", "first request p50", "max", "first request")
		for _, f := range c.Functions {
			row("  "+f.Name, f1(f.SizeMiB), f1(f.StrippedMiB), f1(f.Listen.P50), f1(f.Listen.Max), f1(f.FirstRequest.P50), f1(f.FirstRequest.Max),
				fmt.Sprintf("%s -> %d", f.FirstRequestIs, f.FirstStatus))
		}
		tw.Flush()
		if c.IsolationError != "" {
			fmt.Fprintf(out, "  isolation: %s\n", c.IsolationError)
		} else {
			fmt.Fprintln(out, "  isolated (unshare -rn: loopback only; strace of connect/sendto/sendmsg/sendmmsg; request sent 300 ms after the port is bound):")
			row("", "settings", "listening ms", "network calls before 1st request", "after", "first answer")
			for _, i := range c.Isolation {
				set, ans := "none", fmt.Sprint(i.FirstStatus)
				if i.Configured {
					set = "stack's (unreachable here)"
				}
				if i.FirstError != "" {
					ans = i.FirstError
				}
				row("  "+i.Function, set, f1(i.ListenMS), i.CallsBefore, i.CallsAfter, ans)
			}
			tw.Flush()
		}
	}
	if n := r.Renewal; n != nil {
		fmt.Fprintf(out, "\n4. Renewal: %d renew run(s) at once over the 16 shards, every watch due, Gmail project quota %d units/min (renew told the same)\n", max(n.ShardRuns, 1), n.QuotaPerMinute)
		row("  users", "seeded in s", "renewed", "left", "run s", "watches/s", "allowed/s", "achieved/allowed", "watch calls", "429s")
		row(fmt.Sprintf("  %d of %d", n.Users, n.UsersWanted), f1(n.SeedSeconds), n.Renewed, n.Remaining, f1(n.Seconds), f2(n.PerSecond), f2(n.AllowedPerSecond), f2(n.Ratio), n.WatchCalls, n.RateLimited)
		tw.Flush()
		for _, e := range n.Errors {
			fmt.Fprintf(out, "  run error: %s\n", e)
		}
	}
	if c := r.Capacity; c != nil {
		printCapacity(out, row, func() { tw.Flush() }, c)
	}
	fmt.Fprintln(out, "\nTargets")
	for _, t := range r.Targets {
		met := "MISSED"
		if t.Met {
			met = "met"
		}
		row("  "+t.Name, t.Want, t.Got, met)
	}
	tw.Flush()
}

func f1(f float64) string { return fmt.Sprintf("%.1f", f) }
func f2(f float64) string { return fmt.Sprintf("%.2f", f) }
