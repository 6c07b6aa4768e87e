// Package renew is the Renew function. Cloud Scheduler POSTs to it (hourly,
// with an OIDC token that Cloud Run's IAM checks) and each run works through
// the users that are due: it renews Gmail watches before they expire, and
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
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"sync"
	"time"

	"cloud.google.com/go/firestore"
	"cloud.google.com/go/pubsub/v2"
	"github.com/GoogleCloudPlatform/functions-framework-go/functions"
	"google.golang.org/api/gmail/v1"

	"github.com/gmailwatch/gmailwatch/shared/config"
	"github.com/gmailwatch/gmailwatch/shared/events"
	"github.com/gmailwatch/gmailwatch/shared/gmailclient"
	"github.com/gmailwatch/gmailwatch/shared/gmailsync"
	"github.com/gmailwatch/gmailwatch/shared/logging"
	"github.com/gmailwatch/gmailwatch/shared/store"
	"github.com/gmailwatch/gmailwatch/shared/vault"
)

func init() { functions.HTTP("Renew", serve) }

// Settings tune a run.
type Settings struct {
	ProjectID       string
	Watch           gmailclient.WatchSettings // topic, labels, RENEW_BEFORE, RENEW_EVERY
	UnitsPerMinute  int                       // QUOTA_UNITS_PER_MINUTE: Gmail quota a run may spend
	RunBudget       time.Duration             // RUN_BUDGET: no user is started after it; in-flight work gets 30 s more
	ReauthStopAfter time.Duration             // REAUTH_STOP_AFTER: then a reauth_required user's watch is stopped
	Concurrency     int                       // RENEW_CONCURRENCY: users worked on at once
	PageSize        int                       // users read per query
}

// ReadSettings reads the settings from r. The function's timeout is 9
// minutes; the default budget of 8, plus 30 s for work in flight, leaves
// time for the report.
func ReadSettings(r *config.Reader) Settings {
	return Settings{
		ProjectID:       r.String("PROJECT_ID", config.Required),
		Watch:           gmailclient.ReadWatchSettings(r),
		UnitsPerMinute:  r.Int("QUOTA_UNITS_PER_MINUTE", 1_200_000, 100, 100_000_000),
		RunBudget:       r.Duration("RUN_BUDGET", 8*time.Minute),
		ReauthStopAfter: r.Duration("REAUTH_STOP_AFTER", 24*time.Hour),
		Concurrency:     r.Int("RENEW_CONCURRENCY", 32, 1, 1000),
		PageSize:        r.Int("RENEW_PAGE_SIZE", 300, 1, 1000),
	}
}

// Users is the part of the store a run needs; *store.Store is one.
type Users interface {
	Due(ctx context.Context, field string, t time.Time, from store.Position, limit int) ([]store.User, error)
	CountDue(ctx context.Context, field string, t time.Time) (int64, error)
	ReauthWatches(ctx context.Context, now time.Time, from store.Position, limit int) ([]store.User, error)
	Update(ctx context.Context, key string, fn func(u *store.User) error) (store.User, error)
}

// Mailboxes hands out Gmail clients acting for one user; *gmailclient.Factory is one.
type Mailboxes interface {
	ForUser(ctx context.Context, userKey string) (*gmail.Service, error)
	Forget(userKey string)
}

// Syncer is the shared sync; *gmailsync.Syncer is one.
type Syncer interface {
	Sync(ctx context.Context, userKey string) (gmailsync.Result, error)
	MarkReauth(ctx context.Context, userKey string) (bool, error)
}

// Deps are what a Handler works with.
type Deps struct {
	Users  Users
	Gmail  Mailboxes
	Syncer Syncer
	Logger *slog.Logger
	Now    func() time.Time // the clock due times are compared with; nil: time.Now
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
var production = sync.OnceValues(func() (*Handler, error) { return fromEnv(context.Background(), os.LookupEnv) })

func serve(w http.ResponseWriter, r *http.Request) {
	h, err := production()
	if err != nil {
		logging.New(os.Stdout, slog.LevelInfo).ErrorContext(r.Context(), "renew not started", "error", err)
		writeJSON(w, http.StatusInternalServerError, map[string]string{"error": err.Error()})
		return
	}
	h.ServeHTTP(w, r)
}

// fromEnv builds the production handler from the environment.
func fromEnv(ctx context.Context, lookup func(string) (string, bool)) (*Handler, error) {
	r := config.NewReader(lookup)
	set := ReadSettings(r)
	eventsTopic := r.String("EVENTS_TOPIC", config.Required)
	secretsEndpoint := r.String("SECRETMANAGER_ENDPOINT", "")
	gmailSettings := gmailclient.ReadSettings(r)
	syncSettings := gmailsync.ReadSettings(r)
	if err := r.Err(); err != nil {
		return nil, err
	}
	fs, err := firestore.NewClient(ctx, set.ProjectID)
	if err != nil {
		return nil, fmt.Errorf("firestore client: %w", err)
	}
	secrets, err := vault.New(ctx, set.ProjectID, secretsEndpoint)
	if err != nil {
		return nil, err
	}
	ps, err := pubsub.NewClient(ctx, set.ProjectID)
	if err != nil {
		return nil, fmt.Errorf("pubsub client: %w", err)
	}
	log := logging.New(os.Stdout, slog.LevelInfo)
	users := store.New(fs, nil)
	mailboxes := gmailclient.NewFactory(gmailSettings, secrets)
	syncer := gmailsync.New(gmailsync.Deps{
		Users: users, Gmail: mailboxes, Events: events.NewPublisher(ps, eventsTopic), Logger: log,
	}, syncSettings)
	return New(Deps{Users: users, Gmail: mailboxes, Syncer: syncer, Logger: log}, set), nil
}

// ServeHTTP runs once per POST, whatever the body, and answers the report.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		writeJSON(w, http.StatusMethodNotAllowed, map[string]string{"error": "use POST to start a run"})
		return
	}
	trace := r.Header.Get("traceparent")
	if trace == "" {
		trace = r.Header.Get("X-Cloud-Trace-Context")
	}
	rep := h.Run(logging.WithTrace(r.Context(), h.set.ProjectID, trace))
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
