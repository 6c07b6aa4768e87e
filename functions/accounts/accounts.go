// Package accounts is the Accounts function: the application's backend API,
// private (deployed so that only the callers Terraform names, with a Google
// identity token, get past Cloud Run's IAM check). It answers JSON:
//
//	POST /connect-links                    a single-use connect link for one of the app's users
//	GET  /accounts/{user}                  one account: status and health
//	GET  /accounts?appRef=R                the accounts connected under the app's reference
//	GET  /accounts?status=S&pageToken=T    all accounts, a page at a time, by status
//	POST /accounts/{user}/reconnect-link   a link that reconnects a reauth_required account
//	POST /accounts/{user}/disconnect       stop, revoke, delete, mark disconnected
//	POST /accounts/{user}/resync           read the account's history now
//
// Bad input gets 400 with every problem named, and changes nothing.
package accounts

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"cloud.google.com/go/firestore"
	"cloud.google.com/go/pubsub/v2"
	"github.com/GoogleCloudPlatform/functions-framework-go/functions"

	"github.com/gmailwatch/gmailwatch/shared/config"
	"github.com/gmailwatch/gmailwatch/shared/connectlink"
	"github.com/gmailwatch/gmailwatch/shared/disconnect"
	"github.com/gmailwatch/gmailwatch/shared/events"
	"github.com/gmailwatch/gmailwatch/shared/gmailclient"
	"github.com/gmailwatch/gmailwatch/shared/gmailsync"
	"github.com/gmailwatch/gmailwatch/shared/logging"
	"github.com/gmailwatch/gmailwatch/shared/store"
	"github.com/gmailwatch/gmailwatch/shared/vault"
)

func init() { functions.HTTP("Accounts", serve) }

// Config is the function's settings.
type Config struct {
	ProjectID      string
	ConsentURL     string // CONSENT_URL: the consent function's PUBLIC_URL, where links point
	EventsTopic    string // EVENTS_TOPIC
	SecretEndpoint string // SECRETMANAGER_ENDPOINT: loopback, local runs only
	LinkTTL        time.Duration
	Links          connectlink.Policy
	OAuth          gmailclient.Settings
	Sync           gmailsync.Settings
}

// ReadConfig reads the settings, reporting every problem in one error.
func ReadConfig(lookup func(string) (string, bool)) (Config, error) {
	r := config.NewReader(lookup)
	c := Config{
		ProjectID:      r.String("PROJECT_ID", config.Required),
		ConsentURL:     strings.TrimRight(r.URL("CONSENT_URL", config.Required), "/"),
		EventsTopic:    r.String("EVENTS_TOPIC", config.Required),
		SecretEndpoint: r.String("SECRETMANAGER_ENDPOINT", ""),
		LinkTTL:        r.Duration("CONNECT_LINK_TTL", connectlink.DefaultTTL),
		Links:          connectlink.ReadPolicy(r),
		OAuth:          gmailclient.ReadSettings(r),
		Sync:           gmailsync.ReadSettings(r),
	}
	if c.LinkTTL > connectlink.MaxTTL {
		r.Problem("CONNECT_LINK_TTL", "%v is over the longest link life, %v", c.LinkTTL, connectlink.MaxTTL)
	}
	return c, r.Err()
}

// Handler serves the API.
type Handler struct {
	cfg        Config
	users      *store.Store
	disconnect *disconnect.Disconnecter
	syncer     *gmailsync.Syncer
	log        *slog.Logger
	now        func() time.Time
	mux        *http.ServeMux
}

// Deps are the clients a Handler works with.
type Deps struct {
	Firestore *firestore.Client
	Vault     *vault.Vault
	Events    *events.Publisher
	HTTP      *http.Client     // for Google's token, revoke and Gmail endpoints; nil: a client with a timeout
	Now       func() time.Time // nil: time.Now
}

// New returns a Handler; cfg must come from ReadConfig (or be as valid).
func New(cfg Config, d Deps, log *slog.Logger) *Handler {
	if d.Now == nil {
		d.Now = time.Now
	}
	if d.HTTP == nil {
		d.HTTP = &http.Client{Timeout: 20 * time.Second}
	}
	users := store.New(d.Firestore, d.Now)
	clients := gmailclient.NewFactory(cfg.OAuth, d.Vault)
	h := &Handler{
		cfg:        cfg,
		users:      users,
		disconnect: disconnect.New(users, d.Vault, clients, d.Events, d.HTTP, log),
		syncer:     gmailsync.New(gmailsync.Deps{Users: users, Gmail: clients, Events: d.Events, Logger: log, Now: d.Now}, cfg.Sync),
		log:        log,
		now:        d.Now,
		mux:        http.NewServeMux(),
	}
	h.mux.HandleFunc("POST /connect-links", h.createLink)
	h.mux.HandleFunc("GET /accounts", h.list)
	h.mux.HandleFunc("GET /accounts/{user}", h.get)
	h.mux.HandleFunc("POST /accounts/{user}/reconnect-link", h.reconnectLink)
	h.mux.HandleFunc("POST /accounts/{user}/disconnect", h.disconnectUser)
	h.mux.HandleFunc("POST /accounts/{user}/resync", h.resync)
	h.mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		fail(w, http.StatusNotFound, "no such route: see the accounts API in README.md")
	})
	return h
}

// ServeHTTP serves the API.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	r = r.WithContext(logging.WithTrace(r.Context(), h.cfg.ProjectID, r.Header.Get("X-Cloud-Trace-Context")))
	h.mux.ServeHTTP(w, r)
}

var (
	prodLog = logging.New(os.Stdout, slog.LevelInfo)
	// prodHandler is the deployed handler, built from the environment at the first request.
	prodHandler = sync.OnceValues(func() (*Handler, error) { return production(context.Background(), prodLog) })
)

func serve(w http.ResponseWriter, r *http.Request) {
	h, err := prodHandler()
	if err != nil {
		prodLog.ErrorContext(r.Context(), "accounts function unavailable", "error", err)
		fail(w, http.StatusInternalServerError, "the service is not configured")
		return
	}
	h.ServeHTTP(w, r)
}

// production builds the deployed Handler from the environment.
func production(ctx context.Context, log *slog.Logger) (*Handler, error) {
	cfg, err := ReadConfig(os.LookupEnv)
	if err != nil {
		return nil, err
	}
	fs, err := firestore.NewClient(ctx, cfg.ProjectID)
	if err != nil {
		return nil, fmt.Errorf("firestore client: %w", err)
	}
	v, err := vault.New(ctx, cfg.ProjectID, cfg.SecretEndpoint)
	if err != nil {
		return nil, err
	}
	ps, err := pubsub.NewClient(ctx, cfg.ProjectID)
	if err != nil {
		return nil, fmt.Errorf("pubsub client: %w", err)
	}
	return New(cfg, Deps{Firestore: fs, Vault: v, Events: events.NewPublisher(ps, cfg.EventsTopic)}, log), nil
}
