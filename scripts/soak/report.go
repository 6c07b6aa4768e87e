package main

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"math"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/gmailwatch/gmailwatch/scripts/sandbox/gmailapi"
	"github.com/gmailwatch/gmailwatch/shared/events"
	"github.com/gmailwatch/gmailwatch/shared/store"
)

// Report is the soak's result, printed as a summary and written as JSON.
type Report struct {
	Pass     bool     `json:"pass"`
	Problems []string `json:"problems,omitempty"`
	Command  string   `json:"command"`
	Config   struct {
		Users      int     `json:"users"`
		Messages   int     `json:"messages"`
		FaultRate  float64 `json:"faultRate"`
		Seed       uint64  `json:"seed"`
		Kills      int     `json:"kills"`
		Revoke     int     `json:"revoke"`
		Duration   string  `json:"duration"`
		Drain      string  `json:"drain"`
		RenewEvery string  `json:"renewEvery"`
		AllTypes   bool    `json:"allTypes,omitempty"`
	} `json:"config"`
	Injected Injected `json:"injected"`
	Sent     struct {
		Watched     int `json:"watched"`     // to INBOX
		Unwatched   int `json:"unwatched"`   // to a label no watch covers
		Required    int `json:"required"`    // watched, to users whose tokens were not revoked yet
		AfterRevoke int `json:"afterRevoke"` // watched, after the user's tokens were revoked: not required
		Excused     int `json:"excused"`     // unannounced when the user was revoked after waiting revokeWait
		Deleted     int `json:"deleted"`     // watched, deleted for good right after: not required
		Errors      int `json:"errors"`
	} `json:"sent"`
	Topic   PathResult             `json:"outputTopic"`
	Webhook PathResult             `json:"webhook"`
	Types   map[string]*TypeResult `json:"types,omitempty"` // with -all-types
	Order   Order                  `json:"order"`
	Cursor  struct {
		Polls       int          `json:"polls"`
		Regressions []regression `json:"regressions"`
	} `json:"cursor"`
	Reauth struct {
		Revoked    int      `json:"revoked"`
		Marked     int      `json:"marked"`               // reauth_required in Firestore at the end
		Announced  int      `json:"announced"`            // gmail.user.reauth_required events
		Unexpected []string `json:"unexpected,omitempty"` // users not revoked that are not active
	} `json:"reauth"`
	Quota struct {
		Units             int64            `json:"units"`
		Calls             map[string]int64 `json:"calls"`
		RateLimited       int64            `json:"rateLimited"`
		InjectedErrors    int64            `json:"injectedErrors"`
		UnitsPerAnnounced float64          `json:"unitsPerAnnouncedMessage"`
	} `json:"gmailQuota"`
	DrainMs int64  `json:"drainMs"` // -1: did not finish within -drain
	Elapsed string `json:"elapsed"`
}

// Injected is what the run actually did to the system.
type Injected struct {
	Episodes      map[string]int     `json:"episodes"` // Gmail fault episodes by kind
	Baseline      gmailapi.Faults    `json:"baseline"`
	Pushes        gmailapi.PushStats `json:"pushes"` // summed over every mailbox
	Outages       map[string]int     `json:"receiverOutages"`
	OutageRefused int                `json:"requestsRefusedByOutages"`
	Kills         map[string]int     `json:"kills"`
	KillLog       []killed           `json:"killLog"`
	RenewRuns     int                `json:"renewRuns"`
	RenewErrors   int                `json:"renewErrors"`
}

// PathResult is what arrived on one delivery path for the required messages.
type PathResult struct {
	Delivered             int            `json:"delivered"`
	Lost                  []missing      `json:"lost"`
	Duplicates            int            `json:"duplicates"`
	DuplicatesExplained   int            `json:"duplicatesExplainedByKill"`
	DuplicatesUnexplained []string       `json:"duplicatesUnexplained"` // event ids
	Unexpected            []string       `json:"unexpected,omitempty"`  // announced but never sent to a watched label
	Statuses              map[string]int `json:"statuses,omitempty"`    // the receiver's answers
	DeadLettered          int            `json:"deadLettered,omitempty"`
	Latency               Latency        `json:"latency"`
	Slowest               []slow         `json:"slowest"`
}

// missing is a required message that never arrived, with what finding its
// user's syncs in the logs needs: a sync whose fromHistoryId..toHistoryId
// spans HistoryID moved the cursor past it.
type missing struct {
	MessageID string    `json:"messageId"`
	User      string    `json:"user"`
	HistoryID int64     `json:"historyId"`
	SentAt    time.Time `json:"sentAt"`
}

// slow is one of the slowest arrivals, for looking into the logs.
type slow struct {
	MessageID string    `json:"messageId"`
	User      string    `json:"user"`
	SentAt    time.Time `json:"sentAt"`
	Ms        int64     `json:"ms"`
}

// Latency is time from delivery into the mailbox to arrival, in milliseconds.
type Latency struct {
	P50 int64 `json:"p50Ms"`
	P99 int64 `json:"p99Ms"`
	Max int64 `json:"maxMs"`
}

func (s *soak) missing(m *sentMessage) missing {
	return missing{MessageID: m.ID, User: s.keys[m.User], HistoryID: m.HistoryID, SentAt: m.At}
}

// killSlack widens a kill's window: a copy arrives a moment after it was published.
const killSlack = 5 * time.Second

func (s *soak) report(drained time.Duration) *Report {
	c := s.cfg
	r := &Report{Elapsed: time.Since(s.began).Round(time.Second).String(), Command: fmt.Sprintf(
		"go run ./scripts/soak -users %d -messages %d -fault-rate %v -seed %d -kills %d -revoke %d -duration %v -drain %v -renew-every %v",
		c.Users, c.Messages, c.FaultRate, c.Seed, c.Kills, c.Revoke, c.Duration, c.Drain, c.RenewEvery)}
	if c.Delegation {
		r.Command += " -delegation"
	}
	if c.AllTypes {
		r.Command += " -all-types"
	}
	r.Config.AllTypes = c.AllTypes
	r.Config.Users, r.Config.Messages, r.Config.Kills, r.Config.Revoke = c.Users, c.Messages, c.Kills, c.Revoke
	r.Config.FaultRate, r.Config.Seed = c.FaultRate, c.Seed
	r.Config.Duration, r.Config.Drain, r.Config.RenewEvery = c.Duration.String(), c.Drain.String(), c.RenewEvery.String()
	r.DrainMs = drained.Milliseconds()
	if drained < 0 {
		r.DrainMs = -1
	}
	s.injected(r)

	topic, dead := s.topic.snapshot(), s.dead.snapshot()
	s.gate.mu.Lock()
	hook := maps.Clone(s.gate.accepted)
	statuses := map[string]int{}
	for code, n := range s.gate.statuses {
		statuses[fmt.Sprint(code)] = n
	}
	s.gate.mu.Unlock()
	r.Webhook.Statuses, r.Webhook.DeadLettered = statuses, len(dead)

	s.mu.Lock()
	expected := map[string]*sentMessage{} // event id -> message, for every watched message
	var topicLat, hookLat []slow
	for _, m := range s.sent {
		switch {
		case !m.Watched:
			r.Sent.Unwatched++
			continue
		case m.AfterRevoke:
			r.Sent.AfterRevoke++
		case m.Excused:
			r.Sent.Excused++
		case m.Deleted:
			r.Sent.Deleted++
		default:
			r.Sent.Required++
		}
		r.Sent.Watched++
		id := s.eventID(m)
		expected[id] = m
		if !s.required(m) {
			continue
		}
		if p, ok := topic[id]; ok {
			r.Topic.Delivered++
			topicLat = append(topicLat, slow{m.ID, s.keys[m.User], m.At, p.arrived[0].Sub(m.At).Milliseconds()})
		} else {
			r.Topic.Lost = append(r.Topic.Lost, s.missing(m))
		}
		if t := hook[id]; len(t) > 0 {
			r.Webhook.Delivered++
			hookLat = append(hookLat, slow{m.ID, s.keys[m.User], m.At, t[0].Sub(m.At).Milliseconds()})
		} else {
			r.Webhook.Lost = append(r.Webhook.Lost, s.missing(m))
		}
	}
	r.Sent.Errors = s.sendErrs
	revoked := maps.Clone(s.revokedAt)
	s.mu.Unlock()
	r.Topic.Latency, r.Topic.Slowest = latency(topicLat)
	r.Webhook.Latency, r.Webhook.Slowest = latency(hookLat)

	// Duplicates: a second publish of an event is explained by a kill of a
	// process that syncs (notify, renew) between the first copy and the
	// second; a second webhook delivery by a second publish or a kill of the
	// webhook function in between.
	announced := 0
	for id, p := range topic {
		if p.event.Type == events.UserReauth {
			r.Reauth.Announced++
		}
		if p.event.Type != events.MessageReceived {
			continue
		}
		announced++
		if _, ok := expected[id]; !ok {
			r.Topic.Unexpected = append(r.Topic.Unexpected, id)
		}
		if n := len(p.arrived); n > 1 {
			r.Topic.Duplicates += n - 1
			if s.killedBetween(p.arrived[0].Add(-killSlack), p.arrived[n-1], "notify", "renew") {
				r.Topic.DuplicatesExplained += n - 1
			} else {
				r.Topic.DuplicatesUnexplained = append(r.Topic.DuplicatesUnexplained, id)
			}
		}
	}
	for id, t := range hook {
		if _, ok := expected[id]; !ok {
			if p, ok := topic[id]; !ok || p.event.Type == events.MessageReceived {
				r.Webhook.Unexpected = append(r.Webhook.Unexpected, id)
			}
		}
		extra := len(t) - 1
		if extra <= 0 {
			continue
		}
		r.Webhook.Duplicates += extra
		published := len(topic[id].arrived)
		switch {
		case extra <= published-1:
			r.Webhook.DuplicatesExplained += extra // repeats of a repeated publish, judged on the topic
		case s.killedBetween(t[0].Add(-killSlack), t[len(t)-1], "webhook"):
			r.Webhook.DuplicatesExplained += extra
		default:
			r.Webhook.DuplicatesUnexplained = append(r.Webhook.DuplicatesUnexplained, id)
		}
	}

	s.cursors.mu.Lock()
	r.Cursor.Polls, r.Cursor.Regressions = s.cursors.polls, s.cursors.regressions
	for i, key := range s.keys {
		status := s.cursors.users[key].Status
		if _, ok := revoked[i]; ok {
			r.Reauth.Revoked++
			if status == store.ReauthRequired {
				r.Reauth.Marked++
			}
		} else if status != store.Active {
			r.Reauth.Unexpected = append(r.Reauth.Unexpected, fmt.Sprintf("%s is %q", key, status))
		}
	}
	s.cursors.mu.Unlock()

	usage := s.st.Sandbox.Gmail.Usage("")
	r.Quota.Units, r.Quota.Calls, r.Quota.RateLimited, r.Quota.InjectedErrors = usage.Units, usage.Calls, usage.RateLimited, usage.InjectedErrors
	if announced > 0 {
		r.Quota.UnitsPerAnnounced = float64(usage.Units) / float64(announced)
	}
	s.typeReport(r, topic, hook)
	r.judge()
	return r
}

func (s *soak) injected(r *Report) {
	in := Injected{Episodes: map[string]int{}, Outages: map[string]int{}, Kills: map[string]int{}, Baseline: s.plan.Baseline}
	for _, e := range s.plan.Episodes {
		in.Episodes[e.Kind]++
	}
	for _, o := range s.plan.Outages {
		in.Outages[o.Mode]++
	}
	for _, email := range s.emails {
		w, err := s.st.Sandbox.Gmail.Watch(email)
		if err != nil {
			continue
		}
		n := w.Notifications
		in.Pushes.Published += n.Published
		in.Pushes.Coalesced += n.Coalesced
		in.Pushes.RateDropped += n.RateDropped
		in.Pushes.Dropped += n.Dropped
		in.Pushes.Duplicated += n.Duplicated
		in.Pushes.Reordered += n.Reordered
		in.Pushes.Failed += n.Failed
	}
	s.gate.mu.Lock()
	in.OutageRefused = s.gate.refused
	s.gate.mu.Unlock()
	s.tallyMu.Lock()
	in.KillLog = slices.Clone(s.kills)
	for _, k := range s.kills {
		in.Kills[k.Function]++
	}
	in.RenewRuns, in.RenewErrors = s.renewRun, s.renewErr
	s.tallyMu.Unlock()
	r.Injected = in
}

// killedBetween reports whether one of functions was killed within [from, to].
func (s *soak) killedBetween(from, to time.Time, functions ...string) bool {
	s.tallyMu.Lock()
	defer s.tallyMu.Unlock()
	return slices.ContainsFunc(s.kills, func(k killed) bool {
		return slices.Contains(functions, k.Function) && !k.At.Before(from) && !k.At.After(to)
	})
}

// judge fails the run on any lost message, unexplained duplicate, message
// announced that was never sent to a watched label, cursor regression or
// revoked user left unmarked.
func (r *Report) judge() {
	add := func(bad bool, format string, args ...any) {
		if bad {
			r.Problems = append(r.Problems, fmt.Sprintf(format, args...))
		}
	}
	for _, p := range []struct {
		name string
		res  *PathResult
	}{{"output topic", &r.Topic}, {"webhook", &r.Webhook}} {
		add(len(p.res.Lost) > 0, "%s: %d of %d required messages lost", p.name, len(p.res.Lost), r.Sent.Required)
		add(len(p.res.DuplicatesUnexplained) > 0, "%s: %d events repeated with no kill to explain it", p.name, len(p.res.DuplicatesUnexplained))
		add(len(p.res.Unexpected) > 0, "%s: %d events for messages never sent to a watched label", p.name, len(p.res.Unexpected))
	}
	for _, typ := range slices.Sorted(maps.Keys(r.Types)) {
		t := r.Types[typ]
		add(len(t.LostTopic) > 0, "%s: %d of %d required events lost on the output topic", typ, len(t.LostTopic), t.Required)
		add(len(t.LostWebhook) > 0, "%s: %d of %d required events lost at the webhook", typ, len(t.LostWebhook), t.Required)
		add(len(t.DuplicatesUnexplained) > 0, "%s: %d events repeated with no kill to explain it", typ, len(t.DuplicatesUnexplained))
		add(len(t.Unexpected) > 0, "%s: %d events for changes the soak never made", typ, len(t.Unexpected))
	}
	add(len(r.Order.TopicOutOfOrder) > 0, "output topic: %d events arrived after a later change of their user", len(r.Order.TopicOutOfOrder))
	add(len(r.Order.HookOutOfOrder) > 0, "webhook: %d events delivered after a later change of their user", len(r.Order.HookOutOfOrder))
	add(r.Webhook.DeadLettered > 0, "webhook: %d events dead-lettered", r.Webhook.DeadLettered)
	add(len(r.Cursor.Regressions) > 0, "%d cursor regressions", len(r.Cursor.Regressions))
	add(r.Reauth.Marked < r.Reauth.Revoked, "%d of %d revoked users not marked reauth_required", r.Reauth.Revoked-r.Reauth.Marked, r.Reauth.Revoked)
	add(len(r.Reauth.Unexpected) > 0, "users not revoked but not active: %v", r.Reauth.Unexpected)
	add(r.Sent.Errors > 0, "%d messages could not be delivered to the sandbox", r.Sent.Errors)
	r.Pass = len(r.Problems) == 0
}

// latency returns the nearest-rank p50 and p99 and the maximum of
// samples, and the five slowest.
func latency(samples []slow) (Latency, []slow) {
	if len(samples) == 0 {
		return Latency{}, nil
	}
	slices.SortFunc(samples, func(a, b slow) int { return int(a.Ms - b.Ms) })
	rank := func(q float64) int64 {
		i := int(math.Ceil(float64(len(samples))*q)) - 1
		return samples[min(max(i, 0), len(samples)-1)].Ms
	}
	n := len(samples)
	slowest := slices.Clone(samples[max(n-5, 0):])
	slices.Reverse(slowest)
	return Latency{P50: rank(0.50), P99: rank(0.99), Max: samples[n-1].Ms}, slowest
}

// Print writes the human summary.
func (r *Report) Print(w io.Writer) {
	c := r.Config
	fmt.Fprintf(w, "\nSoak: %d users, %d messages over %s, fault rate %.2f, seed %d, %d kills, %d revoked (%s elapsed)\n",
		c.Users, c.Messages, c.Duration, c.FaultRate, c.Seed, c.Kills, c.Revoke, r.Elapsed)
	in := r.Injected
	fmt.Fprintf(w, "  injected   episodes %v; pushes dropped %d (and %d above Gmail's rate), duplicated %d, reordered %d; Gmail errors %d; receiver outages %v (%d requests refused); kills %v; renew runs %d (%d failed)\n",
		in.Episodes, in.Pushes.Dropped, in.Pushes.RateDropped, in.Pushes.Duplicated, in.Pushes.Reordered, r.Quota.InjectedErrors, in.Outages, in.OutageRefused, in.Kills, in.RenewRuns, in.RenewErrors)
	fmt.Fprintf(w, "  sent       %d watched (%d required, %d after revocation, %d excused), %d to unwatched labels\n",
		r.Sent.Watched, r.Sent.Required, r.Sent.AfterRevoke, r.Sent.Excused, r.Sent.Unwatched)
	for _, p := range []struct {
		name string
		res  PathResult
	}{{"topic", r.Topic}, {"webhook", r.Webhook}} {
		fmt.Fprintf(w, "  %-10s delivered %d, lost %d, duplicates %d (%d explained by kills, %d unexplained), latency p50 %dms p99 %dms max %dms\n",
			p.name, p.res.Delivered, len(p.res.Lost), p.res.Duplicates, p.res.DuplicatesExplained, len(p.res.DuplicatesUnexplained),
			p.res.Latency.P50, p.res.Latency.P99, p.res.Latency.Max)
	}
	for _, typ := range slices.Sorted(maps.Keys(r.Types)) {
		t := r.Types[typ]
		fmt.Fprintf(w, "  %-29s expected %d (required %d, optional %d, excused %d revoked %d expired history); topic %d, webhook %d; lost %d/%d; duplicates %d (%d unexplained)\n",
			typ, t.Expected, t.Required, t.Optional, t.ExcusedRevoked, t.ExcusedExpired, t.Topic, t.Webhook,
			len(t.LostTopic), len(t.LostWebhook), t.Duplicates, len(t.DuplicatesUnexplained))
	}
	if r.Types != nil {
		fmt.Fprintf(w, "  order      %d events checked; out of order: %d on the topic, %d at the webhook\n",
			r.Order.Checked, len(r.Order.TopicOutOfOrder), len(r.Order.HookOutOfOrder))
	}
	fmt.Fprintf(w, "  cursor     %d regressions in %d polls\n", len(r.Cursor.Regressions), r.Cursor.Polls)
	fmt.Fprintf(w, "  reauth     %d of %d revoked users marked, %d events\n", r.Reauth.Marked, r.Reauth.Revoked, r.Reauth.Announced)
	fmt.Fprintf(w, "  quota      %d units, %.1f per announced message, %d rate-limited; calls %v\n",
		r.Quota.Units, r.Quota.UnitsPerAnnounced, r.Quota.RateLimited, r.Quota.Calls)
	drain := "did not finish"
	if r.DrainMs >= 0 {
		drain = (time.Duration(r.DrainMs) * time.Millisecond).String()
	}
	fmt.Fprintf(w, "  drain      %s\n", drain)
	if r.Pass {
		fmt.Fprintln(w, "PASS: nothing lost, nothing repeated without a kill")
		return
	}
	for _, p := range r.Problems {
		fmt.Fprintln(w, "FAIL:", p)
	}
}

// Write stores the report as indented JSON at path.
func (r *Report) Write(path string) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}
