package main

import (
	"context"
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"

	"github.com/gmailwatch/gmailwatch/shared/vault"
)

// The deployment the capacity section sizes: Terraform's defaults
// (terraform/variables.tf) and the mail each user gets.
const (
	messagesPerUserDay = 50.0 // the assumption
	peakFactor         = 3.0  // daytime peak over the day's average
	notifyInstances    = 20   // function_settings.notify.max_instances
	renewRunsPerDay    = 24   // renew_schedule hourly
	renewBudgetSeconds = 480  // run_budget 8m
	renewalsPerUserDay = 1.0  // renew_every 24h
	watchUnits         = 100  // users.watch, either quota table
)

// Published limits, read on 2026-12-08 from Google's pages.
const (
	// https://developers.google.com/workspace/gmail/api/reference/quota
	gmailProjectPerMinute = 1_200_000
	gmailDailyThreshold   = 80_000_000 // units a day before charges apply
	// https://cloud.google.com/secret-manager/quotas
	secretAccessesPerMinute = 90_000
	secretWritesPerMinute   = 600
	// https://cloud.google.com/firestore/docs/best-practices ("500 writes
	// per second" to a collection whose documents hold a sequential
	// indexed field; sharding timestamps lifts it)
	firestoreSequentialWrites = 500.0
)

// Capacity is, for each limit a deployment meets, the mailboxes at which it
// is reached, from figures this run measured and the published limits.
type Capacity struct {
	Assumptions string     `json:"assumptions"`
	Limits      []Limit    `json:"limits"` // fewest mailboxes first
	First       string     `json:"first"`  // the resource reached first
	Inputs      []Measured `json:"inputs"`
}

// Limit is one resource's ceiling.
type Limit struct {
	Resource  string  `json:"resource"`
	Mailboxes float64 `json:"mailboxes"` // 0: not a function of mailboxes (How says what is limited)
	How       string  `json:"how"`
	Source    string  `json:"source"`
}

// Measured is one figure of this run the limits use.
type Measured struct {
	Name  string  `json:"name"`
	Value float64 `json:"value"`
	From  string  `json:"from"`
}

// capacity measures what a connect writes to Secret Manager, then computes
// every limit from this run's quota, throughput and renewal figures.
func (b *bench) capacity(ctx context.Context) error {
	r := b.rep
	w, t, n := r.Workload, r.Throughput, r.Renewal
	if w == nil || w.System.Quota == nil || w.System.Quota.Single.Cost == nil || t == nil || n == nil || n.Seconds <= 0 {
		return fmt.Errorf("capacity needs the quota, throughput and renewal figures of the same run")
	}
	first, again, err := b.connectWrites(ctx, 5)
	if err != nil {
		return err
	}
	single := w.System.Quota.Single
	units := single.UnitsPerMessage
	writes := float64(single.Cost.FirestoreWrites) / float64(max(single.Announced, 1))
	renewRate := float64(n.Renewed) / n.Seconds
	accessPerMsg := float64(t.SecretAccesses) / float64(max(t.Messages, 1))
	c := &Capacity{
		Assumptions: fmt.Sprintf("%.0f messages per user a day, each alone (no burst), 30%% of pushes duplicated, a daytime peak of %.0fx the average; "+
			"Terraform's defaults: notify max_instances %d, renew hourly with an %d s budget, a watch renewal per user a day",
			messagesPerUserDay, peakFactor, notifyInstances, renewBudgetSeconds),
		Inputs: []Measured{
			{"Gmail units per message", units, "quota section, singles with duplicated pushes"},
			{"Firestore writes per message", round2(writes), "quota section, notify's counted writes (records and markers)"},
			{"messages/s of one notify instance", t.MessagesPerSecond, fmt.Sprintf("throughput section, %d requests at once", t.Concurrency)},
			{"Secret Manager accesses per message, warm instance", round2(accessPerMsg), "throughput section, after each user's first push"},
			{"Secret Manager accesses per user's first push on an instance", float64(t.WarmUpSecretAccesses) / float64(max(t.Concurrency, 1)), "throughput section, warm-up"},
			{"watches renewed/s by one renew run", round2(renewRate), fmt.Sprintf("renewal section, %d users, quota %d units/min", n.Renewed, n.QuotaPerMinute)},
			{"Secret Manager writes per first connect", first, "vault.PutRefreshToken against the sandbox"},
			{"Secret Manager writes per reconnect", again, "vault.PutRefreshToken again"},
		},
	}
	perDay := func(ratePerSecondAtPeak float64) float64 { // peak messages/s -> mailboxes
		return ratePerSecondAtPeak * 86400 / peakFactor / messagesPerUserDay
	}
	userUnitsPerMinuteAtPeak := units*messagesPerUserDay*peakFactor/1440 + watchUnits*renewalsPerUserDay/1440
	c.Limits = []Limit{
		{"notify instances", perDay(notifyInstances * t.MessagesPerSecond),
			fmt.Sprintf("%d instances x %.1f messages/s at the peak", notifyInstances, t.MessagesPerSecond), "function_settings.notify.max_instances (terraform/variables.tf)"},
		{"renew run", renewRate * renewBudgetSeconds * renewRunsPerDay / renewalsPerUserDay,
			fmt.Sprintf("%.1f renewals/s x %d s x %d runs a day, one renewal per user a day (reconciles not counted)", renewRate, renewBudgetSeconds, renewRunsPerDay), "run_budget, renew_schedule (terraform/variables.tf)"},
		{"Firestore index writes (a sequentially indexed field)", perDay(firestoreSequentialWrites / writes),
			fmt.Sprintf("500 writes/s / %.2f writes per message; holds only while a field every sync writes is indexed unsharded", writes),
			"https://cloud.google.com/firestore/docs/best-practices"},
		{"Secret Manager accesses (every push a miss)", perDay(secretAccessesPerMinute / 60.0),
			fmt.Sprintf("90,000 a minute, at the worst one per message (measured %.2f a message on a warm instance, 1 per user per instance start)", accessPerMsg),
			"https://cloud.google.com/secret-manager/quotas"},
		{"Secret Manager writes", 0,
			fmt.Sprintf("not a size limit: %.0f first connects a minute (600 / %.0f writes each)", secretWritesPerMinute/first, first),
			"https://cloud.google.com/secret-manager/quotas"},
		{"Gmail per-user rate", 0,
			fmt.Sprintf("not a size limit: %.0f messages a minute into one mailbox (%d units / %.2f)", float64(r.Environment.UserUnitsPerMinute)/units, r.Environment.UserUnitsPerMinute, units),
			"https://developers.google.com/workspace/gmail/api/reference/quota"},
		{"Gmail per-project rate", gmailProjectPerMinute / userUnitsPerMinuteAtPeak,
			fmt.Sprintf("1,200,000 units/min / %.3f units/min per user at the peak (messages and watch renewals)", userUnitsPerMinuteAtPeak),
			"https://developers.google.com/workspace/gmail/api/reference/quota"},
		{"Gmail daily billing threshold", gmailDailyThreshold / (units*messagesPerUserDay + watchUnits*renewalsPerUserDay),
			fmt.Sprintf("80,000,000 units a day / %.0f units per user a day; charges apply above it, nothing is refused", units*messagesPerUserDay+watchUnits*renewalsPerUserDay),
			"https://developers.google.com/workspace/gmail/api/reference/quota"},
	}
	slices.SortStableFunc(c.Limits, func(a, b Limit) int {
		if (a.Mailboxes == 0) != (b.Mailboxes == 0) {
			return cmpFloat(b.Mailboxes, a.Mailboxes) // size limits first
		}
		return cmpFloat(a.Mailboxes, b.Mailboxes)
	})
	c.First = c.Limits[0].Resource
	r.Capacity = c
	return nil
}

func cmpFloat(a, b float64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// connectWrites stores refresh tokens for n new users as a connect does,
// then again as a reconnect, and returns the project's Secret Manager
// write requests per connect of each kind.
func (b *bench) connectWrites(ctx context.Context, n int) (first, again float64, err error) {
	v, err := vault.New(ctx, b.st.Project, b.sb.SecretManagerAddr)
	if err != nil {
		return 0, 0, err
	}
	defer v.Close()
	project := b.st.Project
	for round, out := range []*float64{&first, &again} {
		before := b.sb.Secrets.Writes(project)
		for i := range n {
			if err := v.PutRefreshToken(ctx, "capacity-"+strconv.Itoa(i), "token-"+strconv.Itoa(round)); err != nil {
				return 0, 0, fmt.Errorf("connect writes: %w", err)
			}
		}
		*out = float64(b.sb.Secrets.Writes(project)-before) / float64(n)
	}
	return first, again, nil
}

// printCapacity prints the capacity table.
func printCapacity(out io.Writer, row func(...any), flush func(), c *Capacity) {
	fmt.Fprintf(out, "\n6. Capacity: mailboxes per deployment at which each limit is reached (%s)\n", c.Assumptions)
	row("  resource", "mailboxes", "how", "source")
	for _, l := range c.Limits {
		m := "-"
		if l.Mailboxes > 0 {
			m = strconv.FormatFloat(math.Round(l.Mailboxes), 'f', 0, 64)
		}
		row("  "+l.Resource, m, l.How, l.Source)
	}
	flush()
	fmt.Fprintf(out, "  first reached: %s\n  measured in this run:\n", c.First)
	for _, in := range c.Inputs {
		row("    "+in.Name, strconv.FormatFloat(in.Value, 'f', -1, 64), in.From)
	}
	flush()
}
