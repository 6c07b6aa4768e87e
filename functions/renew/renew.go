// Package renew is the Renew function. Cloud Scheduler POSTs to it (hourly,
// with an OIDC token that Cloud Run's IAM checks) and each run works through
// the users that are due: it publishes the gmail.user.connected events still
// owed after a failed publish, renews Gmail watches before they expire, and
// reconciles mailboxes whose pushes were dropped or whose sync stalled, with
// the same sync (and lease) as the notify function; it also withdraws the
// connections whose result code the application did not redeem in time. The
// users are split into shards (store.ShardOf): deployed, the scheduled run
// hands ranges of them out through a Pub/Sub topic and each range runs in
// its own invocation (fanout.go). A run pages through its shards' due
// users with bounded concurrency, paces Gmail calls to a project-wide quota
// rate that backs off on 429, and stops taking work before its time budget
// ends, leaving the rest for the next run. The run's counts go to one log
// line and to the JSON response.
package renew

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"os"
	"time"

	"github.com/GoogleCloudPlatform/functions-framework-go/functions"
	"golang.org/x/oauth2"

	"github.com/gmailwatch/gmailwatch/shared/config"
	"github.com/gmailwatch/gmailwatch/shared/directory"
	"github.com/gmailwatch/gmailwatch/shared/disconnect"
	"github.com/gmailwatch/gmailwatch/shared/events"
	"github.com/gmailwatch/gmailwatch/shared/gmailclient"
	"github.com/gmailwatch/gmailwatch/shared/gmailsync"
	"github.com/gmailwatch/gmailwatch/shared/lifecycle"
	"github.com/gmailwatch/gmailwatch/shared/logging"
	"github.com/gmailwatch/gmailwatch/shared/mailbody"
	"github.com/gmailwatch/gmailwatch/shared/platform"
	"github.com/gmailwatch/gmailwatch/shared/store"
	"github.com/gmailwatch/gmailwatch/shared/vault"
)

func init() { functions.HTTP("Renew", platform.HTTP(production, refuse)) }

// Config is the function's settings.
type Config struct {
	Platform    platform.Settings
	Gmail       gmailclient.Settings
	Sync        gmailsync.Settings
	Run         Settings
	Delegation  *gmailclient.Delegation // CONNECT_MODE delegation or both; nil in consent mode
	Directory   directory.Settings      // which mailboxes, with Delegation
	UserKeyName string                  // USER_KEY_SECRET_NAME, with Delegation: the hash that keys delegated users
}

// Cloud returns the settings every function shares.
func (c Config) Cloud() platform.Settings { return c.Platform }

// ReadConfig reads the settings, reporting every problem in one error.
func ReadConfig(lookup platform.Lookup) (Config, error) {
	r := config.NewReader(lookup)
	c := Config{Platform: platform.ReadSettings(r), Gmail: gmailclient.ReadSettings(r), Sync: gmailsync.ReadSettings(r), Run: ReadSettings(r)}
	c.Delegation = gmailclient.ReadDelegation(r)
	c.Directory = directory.ReadSettings(r, c.Delegation != nil)
	c.UserKeyName = r.String("USER_KEY_SECRET_NAME", "user-key-secret")
	c.Run.ProjectID = c.Platform.ProjectID
	c.Sync.Labels, c.Sync.LabelFilter, c.Sync.Types = c.Run.Watch.Labels, c.Run.Watch.LabelFilter, c.Run.Watch.Types
	c.Sync.Content = mailbody.ReadSettings(r, c.Gmail.Scope)
	return c, r.Err()
}

// Settings tune a run.
type Settings struct {
	ProjectID       string                    // PROJECT_ID, for the trace of a run
	Watch           gmailclient.WatchSettings // topic, labels, RENEW_BEFORE, RENEW_EVERY
	UnitsPerMinute  int                       // QUOTA_UNITS_PER_MINUTE: the project's Gmail quota
	QuotaShare      float64                   // RENEW_QUOTA_SHARE: the part of it renew's runs may spend; notify has the rest
	RunBudget       time.Duration             // RUN_BUDGET: no user is started after it; in-flight work gets 30 s more
	ReauthStopAfter time.Duration             // REAUTH_STOP_AFTER: then a reauth_required user's watch is stopped
	Concurrency     int                       // RENEW_CONCURRENCY: users worked on at once
	PageSize        int                       // users read per query
	FanoutTopic     string                    // RENEW_FANOUT_TOPIC: "" runs every shard in the scheduled invocation
	Fanout          int                       // RENEW_FANOUT: with a topic, how many ranges of shards the scheduled run hands out
}

// ReadSettings reads the run's own settings from r. The function's timeout
// is 9 minutes; the default budget of 8, plus 30 s for work in flight,
// leaves time for the report.
func ReadSettings(r *config.Reader) Settings {
	return Settings{
		Watch:           gmailclient.ReadWatchSettings(r),
		UnitsPerMinute:  r.Int("QUOTA_UNITS_PER_MINUTE", 1_200_000, 100, 100_000_000),
		QuotaShare:      r.Float("RENEW_QUOTA_SHARE", 0.25, 0.01, 1),
		RunBudget:       r.Duration("RUN_BUDGET", 8*time.Minute),
		ReauthStopAfter: r.Duration("REAUTH_STOP_AFTER", 24*time.Hour),
		Concurrency:     r.Int("RENEW_CONCURRENCY", 32, 1, 1000),
		PageSize:        r.Int("RENEW_PAGE_SIZE", 300, 1, 1000),
		FanoutTopic:     r.String("RENEW_FANOUT_TOPIC", ""),
		Fanout:          r.Int("RENEW_FANOUT", store.ShardCount, 1, store.ShardCount),
	}
}

// budget is the units a minute renew's runs may spend: its share of the
// project's quota. The rest is notify's. Notify's syncs are what users wait
// for and come in bursts; renew's watches and reconciles can wait, so the
// default share is a quarter: 300,000 units a minute at Gmail's 1,200,000,
// 3,000 watches a minute, so that 100,000 users renew in about half an hour
// of the day while notify keeps three quarters for arrivals.
//
// Fanned out, the runs of one pass work at once on separate instances, each
// with its own limiter: each gets its range's part of the share.
func (s Settings) budget() int {
	share := float64(s.UnitsPerMinute) * s.QuotaShare
	if s.FanoutTopic != "" {
		share /= float64(len(store.Split(s.Fanout)))
	}
	return max(int(share), 1)
}

// Deps are what a Handler works with.
type Deps struct {
	Users   *store.Store
	Gmail   *gmailclient.Factory
	Syncer  *gmailsync.Syncer
	Events  *events.Publisher // lifecycle events: owed connected events, and the domain's joins and leaves
	Logger  *slog.Logger
	Now     func() time.Time // the clock due times are compared with; nil: time.Now
	Domain  *Domain          // delegation mode: keeps the watched users in step with the directory; nil in consent mode
	Pending Abandoner        // withdraws connections whose result lapsed unredeemed; nil: none are
	Fanout  Fanout           // with Settings.FanoutTopic: where the scheduled run hands out shards
}

// Abandoner withdraws a connection its application never confirmed
// (disconnect.Disconnecter).
type Abandoner interface {
	Abandon(ctx context.Context, u store.User) error
}

// Handler runs renewals. Its quota limiter is shared by every run in the
// instance.
type Handler struct {
	d       Deps
	set     Settings
	quota   gmailclient.QuotaProfile // what each call costs
	limiter *quotaLimiter
}

// life publishes users' lifecycle events through the handler's store and publisher.
func (h *Handler) life() *lifecycle.Lifecycle { return lifecycle.New(h.d.Users, h.d.Events, h.d.Now) }

// New returns a Handler.
func New(d Deps, s Settings) *Handler {
	if d.Now == nil {
		d.Now = time.Now
	}
	if d.Logger == nil {
		d.Logger = slog.New(slog.DiscardHandler)
	}
	q := d.Gmail.Settings().Quota
	return &Handler{d: d, set: s, quota: q, limiter: newQuotaLimiter(s.budget(), q.Units(gmailclient.MethodWatch))}
}

// production is the deployed handler, built from the environment at the first run.
var production = platform.Production("renew", ReadConfig, wire)

// refuse answers a run that cannot start; Cloud Scheduler retries it.
func refuse(w http.ResponseWriter, err error) {
	writeJSON(w, http.StatusInternalServerError, map[string]string{"error": err.Error()})
}

// wire builds the handler over the deployed clients.
func wire(cfg Config, c *platform.Clients) *Handler {
	log := logging.New(os.Stdout, slog.LevelInfo)
	users := store.New(c.Firestore(), nil)
	mailboxes := gmailclient.NewFactory(cfg.Gmail, c.Vault())
	syncer := gmailsync.New(gmailsync.Deps{Users: users, Gmail: mailboxes, Events: c.Events(), Logger: log}, cfg.Sync)
	d := Deps{Users: users, Gmail: mailboxes, Syncer: syncer, Events: c.Events(), Logger: log,
		Pending: disconnect.New(users, c.Vault(), mailboxes, c.Events(), &http.Client{Timeout: 20 * time.Second}, log)}
	if cfg.Run.FanoutTopic != "" {
		d.Fanout = PublishFanout(c.Publisher(cfg.Run.FanoutTopic))
	}
	if dl := cfg.Delegation; dl != nil {
		mailboxes.Delegate(dl)
		userKeys := vault.NewKeys(c.Vault(), cfg.UserKeyName, store.MinUserKeyBytes, nil)
		d.Domain = &Domain{Directory: directory.New(cfg.Directory, func(ctx context.Context) (oauth2.TokenSource, error) {
			return dl.TokenSource(ctx, cfg.Directory.Admin, cfg.Directory.Scope())
		}), Keys: func(ctx context.Context) (store.Keyer, error) {
			keys, err := userKeys.Get(ctx)
			if err != nil {
				return store.Keyer{}, err
			}
			return store.NewKeyer(keys...)
		}}
	}
	return New(d, cfg.Run)
}

// ServeHTTP answers a POST: a Pub/Sub push of a fan-out message runs over
// its shards; any other (the scheduler's) fans out, or, without a fan-out
// topic, runs over every shard. It answers the report.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		writeJSON(w, http.StatusMethodNotAllowed, map[string]string{"error": "use POST to start a run"})
		return
	}
	ctx := platform.TraceRequest(r.Context(), h.set.ProjectID, r)
	shards, pushed := store.AllShards(), r.URL.Path == ShardsPath
	if pushed {
		var err error
		if shards, err = shardsOf(r); err != nil { // nothing run; Pub/Sub retries it until it lapses
			h.d.Logger.ErrorContext(ctx, "renew request refused", "error", err)
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": err.Error()})
			return
		}
	}
	if !pushed && h.d.Fanout != nil {
		rep := h.fanOut(ctx)
		status := http.StatusOK
		if rep.Error != "" {
			status = http.StatusInternalServerError
		}
		writeJSON(w, status, rep)
		return
	}
	rep := h.RunShards(ctx, shards)
	status := http.StatusOK
	if rep.Error != "" {
		status = http.StatusInternalServerError // Cloud Scheduler retries
	}
	writeJSON(w, status, rep)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
