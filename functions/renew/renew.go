// Package renew is the Renew function. Cloud Scheduler POSTs to it (hourly,
// with an OIDC token that Cloud Run's IAM checks) and each run works through
// the users that are due: it publishes the gmail.user.connected events still
// owed after a failed publish, renews Gmail watches before they expire, and
// reconciles mailboxes whose pushes were dropped or whose sync stalled, with
// the same sync (and lease) as the notify function. It pages through due
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
	"strings"
	"time"

	"github.com/GoogleCloudPlatform/functions-framework-go/functions"
	"golang.org/x/oauth2"

	"github.com/gmailwatch/gmailwatch/shared/config"
	"github.com/gmailwatch/gmailwatch/shared/directory"
	"github.com/gmailwatch/gmailwatch/shared/events"
	"github.com/gmailwatch/gmailwatch/shared/gmailclient"
	"github.com/gmailwatch/gmailwatch/shared/gmailsync"
	"github.com/gmailwatch/gmailwatch/shared/logging"
	"github.com/gmailwatch/gmailwatch/shared/mailbody"
	"github.com/gmailwatch/gmailwatch/shared/platform"
	"github.com/gmailwatch/gmailwatch/shared/store"
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
	UnitsPerMinute  int                       // QUOTA_UNITS_PER_MINUTE: Gmail quota a run may spend
	RunBudget       time.Duration             // RUN_BUDGET: no user is started after it; in-flight work gets 30 s more
	ReauthStopAfter time.Duration             // REAUTH_STOP_AFTER: then a reauth_required user's watch is stopped
	Concurrency     int                       // RENEW_CONCURRENCY: users worked on at once
	PageSize        int                       // users read per query
}

// ReadSettings reads the run's own settings from r. The function's timeout
// is 9 minutes; the default budget of 8, plus 30 s for work in flight,
// leaves time for the report.
func ReadSettings(r *config.Reader) Settings {
	return Settings{
		Watch:           gmailclient.ReadWatchSettings(r),
		UnitsPerMinute:  r.Int("QUOTA_UNITS_PER_MINUTE", 1_200_000, 100, 100_000_000),
		RunBudget:       r.Duration("RUN_BUDGET", 8*time.Minute),
		ReauthStopAfter: r.Duration("REAUTH_STOP_AFTER", 24*time.Hour),
		Concurrency:     r.Int("RENEW_CONCURRENCY", 32, 1, 1000),
		PageSize:        r.Int("RENEW_PAGE_SIZE", 300, 1, 1000),
	}
}

// Deps are what a Handler works with.
type Deps struct {
	Users  *store.Store
	Gmail  *gmailclient.Factory
	Syncer *gmailsync.Syncer
	Events *events.Publisher // lifecycle events: owed connected events, and the domain's joins and leaves
	Logger *slog.Logger
	Now    func() time.Time // the clock due times are compared with; nil: time.Now
	Domain *Domain          // delegation mode: keeps the watched users in step with the directory; nil in consent mode
}

// Handler runs renewals. Its quota limiter is shared by every run in the
// instance (the function runs on one instance at most).
type Handler struct {
	d       Deps
	set     Settings
	limiter *quotaLimiter
}

// New returns a Handler.
func New(d Deps, s Settings) *Handler {
	if d.Now == nil {
		d.Now = time.Now
	}
	if d.Logger == nil {
		d.Logger = slog.New(slog.DiscardHandler)
	}
	return &Handler{d: d, set: s, limiter: newQuotaLimiter(s.UnitsPerMinute)}
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
	d := Deps{Users: users, Gmail: mailboxes, Syncer: syncer, Events: c.Events(), Logger: log}
	if dl := cfg.Delegation; dl != nil {
		mailboxes.Delegate(dl)
		d.Domain = &Domain{Directory: directory.New(cfg.Directory, func(ctx context.Context) (oauth2.TokenSource, error) {
			return dl.TokenSource(ctx, cfg.Directory.Admin, cfg.Directory.Scope())
		}), Keys: func(ctx context.Context) (store.Keyer, error) {
			b, err := c.Vault().Access(ctx, cfg.UserKeyName)
			if err != nil {
				return store.Keyer{}, err
			}
			return store.NewKeyer([]byte(strings.TrimSpace(string(b))))
		}}
	}
	return New(d, cfg.Run)
}

// ServeHTTP runs once per POST, whatever the body, and answers the report.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		writeJSON(w, http.StatusMethodNotAllowed, map[string]string{"error": "use POST to start a run"})
		return
	}
	rep := h.Run(platform.TraceRequest(r.Context(), h.set.ProjectID, r))
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
