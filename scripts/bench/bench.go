package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"cloud.google.com/go/firestore"
	"cloud.google.com/go/pubsub/v2"
	"cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"
	"cloud.google.com/go/secretmanager/apiv1/secretmanagerpb"
	"golang.org/x/oauth2"
	"golang.org/x/sync/errgroup"
	"google.golang.org/api/gmail/v1"
	"google.golang.org/api/option"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/gmailwatch/gmailwatch/scripts/sandbox"
	"github.com/gmailwatch/gmailwatch/scripts/sandbox/gmailapi"
	"github.com/gmailwatch/gmailwatch/scripts/stack"
	"github.com/gmailwatch/gmailwatch/shared/gmailclient"
	"github.com/gmailwatch/gmailwatch/shared/store"
	"github.com/gmailwatch/gmailwatch/shared/vault"
)

// Sections, in the order they run.
// capacity computes from the quota, throughput and renewal figures, so
// asking for it runs those too.
var Sections = []string{"quota", "latency", "throughput", "coldstart", "renewal", "capacity"}

// Config sizes a run. Defaults returns the one the README's figures come from.
type Config struct {
	Sections      []string
	GmailLatency  time.Duration // added by the sandbox to every Gmail call
	Mailboxes     int           // workload users per mode
	Singles       int           // single messages per workload user
	Bursts        int           // bursts per workload user
	BurstSize     int
	DuplicateRate float64 // share of pushes published more than once
	Concurrency   int     // throughput: requests in flight at the notify instance
	Duration      time.Duration
	RenewUsers    int
	RenewQuota    int                      // Gmail project units per minute during the renewal section
	RenewShards   int                      // renewal: 1, the scheduled run over every shard; more, that many shard ranges run at once, as the fan-out pushes them
	Quota         gmailclient.QuotaProfile // Gmail's quota profile, in the sandbox and the functions
	SeedBudget    time.Duration
	ColdRuns      int
	Push          string // how Gmail pushes reach the handlers: relay or emulator
	Dir           string
	Progress      io.Writer
}

// Defaults returns the standard configuration.
func Defaults() Config {
	return Config{
		Sections: Sections, GmailLatency: 50 * time.Millisecond,
		Mailboxes: 20, Singles: 5, Bursts: 3, BurstSize: 10, DuplicateRate: 0.3,
		Concurrency: 80, Duration: 20 * time.Second,
		RenewUsers: 10_000, RenewQuota: 300_000, RenewShards: 1, SeedBudget: 10 * time.Minute,
		ColdRuns: 5, Push: pushRelay, Dir: filepath.Join(".local", "bench"), Quota: gmailclient.QuotaStandard2026,
	}
}

func (c Config) validate() error {
	var errs []error
	check := func(ok bool, format string, args ...any) {
		if !ok {
			errs = append(errs, fmt.Errorf(format, args...))
		}
	}
	check(len(c.Sections) > 0, "-only: no section chosen")
	check(c.GmailLatency >= 0 && c.GmailLatency <= 10*time.Second, "-latency %v: want 0..10s", c.GmailLatency)
	check(c.Mailboxes >= 1 && c.Mailboxes <= 500, "-mailboxes %d: want 1..500", c.Mailboxes)
	check(c.Singles >= 1 && c.Singles <= 100, "-singles %d: want 1..100", c.Singles)
	check(c.Bursts >= 1 && c.Bursts <= 100, "-bursts %d: want 1..100", c.Bursts)
	check(c.BurstSize >= 2 && c.BurstSize <= 100, "-burst-size %d: want 2..100", c.BurstSize)
	check(!math.IsNaN(c.DuplicateRate) && c.DuplicateRate >= 0 && c.DuplicateRate <= 1, "-duplicates %v: want 0..1", c.DuplicateRate)
	check(c.Concurrency >= 1 && c.Concurrency <= 1000, "-concurrency %d: want 1..1000", c.Concurrency)
	check(c.Duration >= time.Second && c.Duration <= time.Hour, "-duration %v: want 1s..1h", c.Duration)
	check(c.RenewUsers >= 1 && c.RenewUsers <= 100_000, "-users %d: want 1..100000", c.RenewUsers)
	check(c.RenewQuota >= 6000 && c.RenewQuota <= 100_000_000, "-renew-quota %d: want 6000..100000000 units per minute", c.RenewQuota)
	check(c.RenewShards >= 1 && c.RenewShards <= store.ShardCount, "-renew-shards %d: want 1..%d", c.RenewShards, store.ShardCount)
	check(c.SeedBudget >= 10*time.Second && c.SeedBudget <= 2*time.Hour, "-seed-budget %v: want 10s..2h", c.SeedBudget)
	check(c.ColdRuns >= 1 && c.ColdRuns <= 100, "-cold-runs %d: want 1..100", c.ColdRuns)
	check(c.Push == pushRelay || c.Push == pushEmulator, "-push %q: want %s or %s", c.Push, pushRelay, pushEmulator)
	check(c.Dir != "", "-dir: want a directory")
	check(c.Quota == gmailclient.QuotaStandard2026 || c.Quota == gmailclient.QuotaLegacy, "-quota %q: want %s or %s", c.Quota, gmailclient.QuotaStandard2026, gmailclient.QuotaLegacy)
	return errors.Join(errs...)
}

func (c Config) runs(section string) bool { return slices.Contains(c.Sections, section) }

// bench is one run in progress.
type bench struct {
	cfg    Config
	st     *stack.Stack
	sb     *sandbox.Sandbox
	fs     *firestore.Client
	users  *store.Store
	oauth  *oauth2.Config
	client *http.Client // pooled, for pushes and the bench's own Gmail calls
	rep    *Report
	pushes atomic.Int64   // message ids of direct pushes
	relays []*stack.Relay // with -push relay: notify's and the baseline's

	sysEvents, baseEvents *eventLog
	hops                  *hopLog
	base                  *baseline
}

// Topics and subscriptions the bench adds to the stack's.
const (
	benchEvents    = "bench-events"          // pull, on the output topic
	baselineEvents = "bench-baseline-events" // topic and pull subscription of the baseline's events
	baselinePush   = "bench-baseline-push"   // Gmail topic -> baseline endpoint
)

// Run starts the stack, runs the chosen sections and returns the report. An
// error means the benchmark itself could not run.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if cfg.Progress == nil {
		cfg.Progress = io.Discard
	}
	if cfg.runs("capacity") {
		for _, need := range []string{"quota", "throughput", "renewal"} {
			if !cfg.runs(need) {
				cfg.Sections = append(cfg.Sections, need)
			}
		}
	}
	dir, err := filepath.Abs(cfg.Dir)
	if err != nil {
		return nil, err
	}
	cfg.Dir = dir
	b := &bench{cfg: cfg, rep: newReport(cfg), sysEvents: newEventLog(), baseEvents: newEventLog(), hops: newHopLog()}
	b.progress("starting the stack in %s", dir)
	b.st, err = stack.Start(ctx, stack.Options{Dir: dir, NoWebhook: true, EmulatorPush: cfg.Push == pushEmulator,
		Sandbox: sandbox.Options{GmailQuota: gmailapi.QuotaProfile(cfg.Quota)},
		Env: map[string]string{
			"QUOTA_UNITS_PER_MINUTE": strconv.Itoa(cfg.RenewQuota),
			// The renewal section measures renew's pacing against the whole
			// quota it is given; deployed, it is given RENEW_QUOTA_SHARE of it.
			"RENEW_QUOTA_SHARE": "1",
		}})
	if err != nil {
		return nil, fmt.Errorf("start stack: %w", err)
	}
	defer b.st.Stop()
	b.sb = b.st.Sandbox
	observe, stopObserving := context.WithCancel(ctx)
	defer stopObserving()
	var observers errgroup.Group
	defer observers.Wait()
	defer stopObserving()
	if err := b.setUp(ctx, observe, &observers); err != nil {
		return nil, err
	}
	defer b.base.close()

	steps := []struct {
		section string
		run     func(context.Context) error
	}{
		{"quota", b.workload}, // quota and latency come from one workload
		{"throughput", b.throughput},
		{"coldstart", b.coldStart},
		{"renewal", b.renewal},
		{"capacity", b.capacity},
	}
	for _, s := range steps {
		if !cfg.runs(s.section) && (s.section != "quota" || !cfg.runs("latency")) {
			continue
		}
		b.rep.load(s.section)
		if err := s.run(ctx); err != nil {
			return nil, fmt.Errorf("%s: %w", s.section, err)
		}
	}
	b.rep.load("end")
	b.rep.evaluate()
	return b.rep, nil
}

func (b *bench) progress(format string, args ...any) {
	fmt.Fprintf(b.cfg.Progress, "bench %s "+format+"\n", append([]any{time.Now().Format("15:04:05")}, args...)...)
}

// setUp prepares what every section uses: a store, OAuth client, the Gmail
// latency fault, the event subscriptions, the baseline and its push
// subscription, and a measure of the Gmail round trip.
func (b *bench) setUp(ctx, observe context.Context, observers *errgroup.Group) error {
	fs, err := firestore.NewClient(ctx, b.st.Project)
	if err != nil {
		return fmt.Errorf("firestore client: %w", err)
	}
	b.fs, b.users = fs, store.New(fs, nil)
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = 1024
	b.client = &http.Client{Transport: tr, Timeout: 2 * time.Minute}
	secret, err := b.sb.Secrets.AccessSecretVersion(ctx, &secretmanagerpb.AccessSecretVersionRequest{
		Name: "projects/" + b.st.Project + "/secrets/oauth-client-secret/versions/latest"})
	if err != nil {
		return fmt.Errorf("oauth client secret: %w", err)
	}
	b.oauth = &oauth2.Config{ClientID: b.st.ClientID, ClientSecret: string(secret.GetPayload().GetData()),
		Endpoint: oauth2.Endpoint{TokenURL: b.st.SandboxURL + "/token", AuthStyle: oauth2.AuthStyleInParams}}
	if err := b.sb.Gmail.SetFaults("", gmailapi.Faults{Latency: gmailapi.Duration(b.cfg.GmailLatency)}); err != nil {
		return err
	}

	ps := b.st.PubSub()
	name := func(kind, id string) string { return "projects/" + b.st.Project + "/" + kind + "/" + id }
	if _, err := ps.TopicAdminClient.CreateTopic(ctx, &pubsubpb.Topic{Name: name("topics", baselineEvents)}); err != nil {
		return fmt.Errorf("create topic %s: %w", baselineEvents, err)
	}
	if b.base, err = startBaseline(b, ps.Publisher(baselineEvents)); err != nil {
		return err
	}
	basePush := &pubsubpb.PushConfig{PushEndpoint: b.base.url}
	if b.cfg.Push == pushRelay {
		basePush = nil
	}
	for _, s := range []*pubsubpb.Subscription{
		{Name: name("subscriptions", benchEvents), Topic: name("topics", stack.EventsTopic), AckDeadlineSeconds: 60},
		{Name: name("subscriptions", baselineEvents), Topic: name("topics", baselineEvents), AckDeadlineSeconds: 60},
		{Name: name("subscriptions", baselinePush), Topic: name("topics", stack.GmailTopic), AckDeadlineSeconds: 60, PushConfig: basePush},
	} {
		if _, err := ps.SubscriptionAdminClient.CreateSubscription(ctx, s); err != nil {
			return fmt.Errorf("create subscription %s: %w", s.Name, err)
		}
	}
	observers.Go(func() error { return b.sysEvents.receive(observe, ps.Subscriber(benchEvents)) })
	observers.Go(func() error { return b.baseEvents.receive(observe, ps.Subscriber(baselineEvents)) })
	if b.cfg.Push == pushRelay {
		b.relays = []*stack.Relay{b.st.NotifyRelay, b.st.Relay(observe, baselinePush, b.base.url)}
	}
	if _, err := b.firestoreProbe(ctx, "latency", 5); err != nil { // the emulator's first transactions are slow
		return err
	}
	tx, err := b.firestoreProbe(ctx, "latency", 20)
	if err != nil {
		return err
	}
	b.rep.Environment.FirestoreTransaction = distOf(tx)
	var contended []time.Duration
	var mu sync.Mutex
	g, gctx := errgroup.WithContext(ctx)
	for range 2 { // two at once on the same document, as two pushes of one user are
		g.Go(func() error {
			d, err := b.firestoreProbe(gctx, "latency", 4)
			mu.Lock()
			contended = append(contended, d...)
			mu.Unlock()
			return err
		})
	}
	if err := g.Wait(); err != nil {
		return err
	}
	b.rep.Environment.FirestoreContended = distOf(contended)
	return b.measureRoundTrip(ctx)
}

// firestoreProbe times n transactions, one after another, that read and
// write one document: the emulator's share of every lease and cursor move.
func (b *bench) firestoreProbe(ctx context.Context, doc string, n int) ([]time.Duration, error) {
	ref := b.fs.Collection("bench-probe").Doc(doc)
	var out []time.Duration
	for i := range n {
		start := time.Now()
		err := b.fs.RunTransaction(ctx, func(ctx context.Context, tx *firestore.Transaction) error {
			if _, err := tx.Get(ref); err != nil && status.Code(err) != codes.NotFound {
				return err
			}
			return tx.Set(ref, map[string]any{"n": i})
		})
		if err != nil {
			return out, fmt.Errorf("firestore probe: %w", err)
		}
		out = append(out, time.Since(start))
	}
	return out, nil
}

// measureRoundTrip times Gmail calls through the real client, as the
// functions make them: the floor's unit of delay.
func (b *bench) measureRoundTrip(ctx context.Context) error {
	const email = "round-trip@bench.test"
	svc, hid, err := b.connect(ctx, email, modeBaseline, false, time.Time{})
	if err != nil {
		return err
	}
	var rtts []time.Duration
	for i := range 23 {
		start := time.Now()
		if _, err := svc.Users.History.List("me").StartHistoryId(uint64(hid)).Context(ctx).Do(); err != nil {
			return fmt.Errorf("round trip: %w", err)
		}
		if i >= 3 { // the first calls include the token exchange and connecting
			rtts = append(rtts, time.Since(start))
		}
	}
	b.rep.Environment.GmailRoundTrip = distOf(rtts)
	return nil
}

// Workload modes.
const (
	modeSystem   = "system"
	modeBaseline = "baseline"
)

// connect makes email a connected user without the browser: a sandbox
// mailbox and refresh token, then, for the system, the token in Secret
// Manager and the Firestore record consent would write (renewal due at
// renewAt); for the baseline, only a Gmail client with gmail.readonly. With
// watch, users.watch is called as consent calls it, so Gmail pushes.
func (b *bench) connect(ctx context.Context, email, mode string, watch bool, renewAt time.Time) (*gmail.Service, int64, error) {
	scope := gmailapi.ScopeMetadata
	if mode == modeBaseline {
		scope = gmailapi.ScopeReadonly
	}
	refresh, err := b.sb.Connect(email, scope)
	if err != nil {
		return nil, 0, fmt.Errorf("sandbox connect: %w", err)
	}
	var svc *gmail.Service
	if watch || mode == modeBaseline {
		if svc, err = b.gmailFor(ctx, refresh); err != nil {
			return nil, 0, err
		}
	}
	expires := time.Now().Add(7 * 24 * time.Hour)
	var historyID uint64
	if watch {
		resp, err := svc.Users.Watch("me", &gmail.WatchRequest{
			TopicName: "projects/" + b.st.Project + "/topics/" + stack.GmailTopic, LabelIds: []string{"INBOX"}, LabelFilterBehavior: "INCLUDE",
		}).Context(ctx).Do()
		if err != nil {
			return nil, 0, fmt.Errorf("users.watch: %w", err)
		}
		historyID, expires = resp.HistoryId, time.UnixMilli(resp.Expiration)
	} else if historyID, err = b.sb.Gmail.HistoryID(email); err != nil {
		return nil, 0, err
	}
	if mode == modeBaseline {
		return svc, int64(historyID), nil
	}
	key := store.Key(email)
	if err := b.sb.PutSecret(ctx, b.st.Project, vault.RefreshPrefix+key, []byte(refresh)); err != nil {
		return nil, 0, err
	}
	if renewAt.IsZero() {
		renewAt = time.Now().Add(24 * time.Hour)
	}
	_, _, err = b.users.Connect(ctx, store.Connection{
		Email: email, Labels: []string{"INBOX"}, LabelFilter: "include",
		HistoryID: int64(historyID), WatchExpiration: expires, RenewAt: renewAt, SyncDueAt: time.Now().Add(time.Hour),
	})
	if err != nil {
		return nil, 0, fmt.Errorf("store connect: %w", err)
	}
	return svc, int64(historyID), nil
}

// gmailFor returns a Gmail client acting with a refresh token.
func (b *bench) gmailFor(ctx context.Context, refresh string) (*gmail.Service, error) {
	tctx := context.WithValue(context.Background(), oauth2.HTTPClient, b.client)
	ts := b.oauth.TokenSource(tctx, &oauth2.Token{RefreshToken: refresh})
	hc := &http.Client{Transport: &oauth2.Transport{Source: ts, Base: b.client.Transport}}
	svc, err := gmail.NewService(ctx, option.WithHTTPClient(hc), option.WithEndpoint(b.st.SandboxURL+"/"))
	if err != nil {
		return nil, fmt.Errorf("gmail client: %w", err)
	}
	return svc, nil
}

// connectAll connects emails with up to workers at once.
func (b *bench) connectAll(ctx context.Context, emails []string, workers int, fn func(context.Context, string) error) error {
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(workers)
	for _, e := range emails {
		g.Go(func() error { return fn(gctx, e) })
	}
	return g.Wait()
}

func emails(format string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf(format, i)
	}
	return out
}

// push POSTs one Gmail notification to url in Pub/Sub's push format, as the
// subscription delivers it, and fails unless it is acknowledged (2xx).
func (b *bench) push(ctx context.Context, url, email string, historyID int64) error {
	return stack.Push(ctx, b.client, url, pushBody(b.st.Project, email, historyID, b.pushes.Add(1)))
}

func pushBody(project, email string, historyID, n int64) []byte {
	data, _ := json.Marshal(gmailapi.Notification{EmailAddress: email, HistoryID: uint64(historyID)})
	return stack.PushBody(project, "bench-direct", &pubsub.Message{Data: data, ID: strconv.FormatInt(n, 10), PublishTime: time.Now()})
}

// Ways Gmail pushes reach the handlers.
const (
	// pushRelay: a stack.Relay pulls each subscription and POSTs its
	// messages in the push format, as Pub/Sub push delivers in the cloud.
	pushRelay = "relay"
	// pushEmulator: the Pub/Sub emulator's own push delivery, which keeps
	// about two requests in flight per subscription, so a handler slower
	// than the push rate builds a queue the cloud would not.
	pushEmulator = "emulator"
)

// retried counts relayed pushes answered with an error and tried again.
func (b *bench) retried() int64 {
	var n int64
	for _, r := range b.relays {
		n += r.Retried()
	}
	return n
}

// Dist summarises durations in milliseconds.
type Dist struct {
	N   int     `json:"n"`
	P50 float64 `json:"p50Ms"`
	P99 float64 `json:"p99Ms"`
	Max float64 `json:"maxMs"`
}

func distOf(ds []time.Duration) Dist {
	if len(ds) == 0 {
		return Dist{}
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	rank := func(p float64) float64 { // nearest rank
		i := int(math.Ceil(p*float64(len(s)))) - 1
		return ms(s[max(i, 0)])
	}
	return Dist{N: len(s), P50: rank(0.50), P99: rank(0.99), Max: ms(s[len(s)-1])}
}

func ms(d time.Duration) float64 { return math.Round(float64(d)/float64(time.Microsecond)) / 1000 }
