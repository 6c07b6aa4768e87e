// Package accounts is the Accounts function: the application's backend API,
// private (deployed so that only the callers Terraform names, with a Google
// identity token, get past Cloud Run's IAM check, and checked again here:
// callers.go). It answers JSON:
//
//	POST /connect-links                    a single-use connect link for one of the app's users
//	POST /connect-results                  redeem the result code a link's flow brought back: the account, once
//	GET  /accounts/{user}                  one account: status and health
//	GET  /accounts?appRef=R                the accounts connected under the app's reference
//	GET  /accounts?status=S&pageToken=T    all accounts, a page at a time, by status
//	POST /accounts/{user}/reconnect-link   a link that reconnects a reauth_required account
//	POST /accounts/{user}/disconnect       stop, revoke, delete, mark disconnected
//	POST /accounts/{user}/resync           read the account's history now
//	POST /accounts/{user}/access-token     a live Gmail access token, for the app to act on the mail
//	GET  /endpoints[/{name}]               webhook endpoints' health (endpoints.go)
//	POST /endpoints/{name}/enable          resume a webhook endpoint disabled after failing
//
// Bad input gets 400 with every problem named, and changes nothing. In
// delegation-only mode (CONNECT_MODE=delegation) no account connects by
// consent, so the two link routes answer 409 with reason delegation_only.
package accounts

import (
	"log/slog"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/GoogleCloudPlatform/functions-framework-go/functions"

	"github.com/gmailwatch/gmailwatch/shared/config"
	"github.com/gmailwatch/gmailwatch/shared/connectlink"
	"github.com/gmailwatch/gmailwatch/shared/disconnect"
	"github.com/gmailwatch/gmailwatch/shared/endpointhealth"
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

func init() { functions.HTTP("Accounts", platform.HTTP(production, unavailable)) }

// Config is the function's settings.
type Config struct {
	Platform   platform.Settings
	ConsentURL string // CONSENT_URL: the consent function's PUBLIC_URL, where links point
	LinkTTL    time.Duration
	Links      connectlink.Policy
	Delegation *gmailclient.Delegation // CONNECT_MODE delegation or both; nil in consent mode
	OAuth      gmailclient.Settings
	Sync       gmailsync.Settings
	Callers    Callers // who may call (callers.go)
}

// Cloud returns the settings every function shares.
func (c Config) Cloud() platform.Settings { return c.Platform }

// ReadConfig reads the settings, reporting every problem in one error.
func ReadConfig(lookup platform.Lookup) (Config, error) {
	r := config.NewReader(lookup)
	c := Config{
		Platform:   platform.ReadSettings(r),
		ConsentURL: strings.TrimRight(r.URL("CONSENT_URL", config.Required), "/"),
		Delegation: gmailclient.ReadDelegation(r),
		LinkTTL:    r.Duration("CONNECT_LINK_TTL", connectlink.DefaultTTL),
		Links:      connectlink.ReadPolicy(r),
		OAuth:      gmailclient.ReadSettings(r),
		Sync:       gmailsync.ReadSettings(r),
		Callers:    ReadCallers(r),
	}
	c.Sync.Labels, c.Sync.LabelFilter = gmailclient.ReadLabels(r)
	c.Sync.Types = events.ReadTypes(r) // a resync announces what notify does
	c.Sync.Content = mailbody.ReadSettings(r, c.OAuth.Scope)
	if c.LinkTTL > connectlink.MaxTTL {
		r.Problem("CONNECT_LINK_TTL", "%v is over the longest link life, %v", c.LinkTTL, connectlink.MaxTTL)
	}
	return c, r.Err()
}

// Handler serves the API.
type Handler struct {
	cfg        Config
	users      *store.Store
	clients    *gmailclient.Factory
	disconnect *disconnect.Disconnecter
	life       *lifecycle.Lifecycle
	syncer     *gmailsync.Syncer
	log        *slog.Logger
	now        func() time.Time
	mux        *http.ServeMux
	guard      *guard
	endpoints  *endpointhealth.Book // nil: no webhook endpoints
}

// Deps are what a Handler works with.
type Deps struct {
	Users  *store.Store // its clock is the handler's
	Vault  *vault.Vault
	Events *events.Publisher
	HTTP   *http.Client // for Google's token, revoke and Gmail endpoints; nil: a client with a timeout
	// Endpoints is the webhook endpoints' health; nil answers 404 on /endpoints.
	Endpoints *endpointhealth.Book
}

// New returns a Handler; cfg must come from ReadConfig (or be as valid).
func New(cfg Config, d Deps, log *slog.Logger) *Handler {
	if d.HTTP == nil {
		d.HTTP = &http.Client{Timeout: 20 * time.Second}
	}
	clients := gmailclient.NewFactory(cfg.OAuth, d.Vault)
	if cfg.Delegation != nil {
		clients.Delegate(cfg.Delegation)
	}
	h := &Handler{
		cfg:        cfg,
		users:      d.Users,
		clients:    clients,
		disconnect: disconnect.New(d.Users, d.Vault, clients, d.Events, d.HTTP, log),
		life:       lifecycle.New(d.Users, d.Events, nil),
		syncer:     gmailsync.New(gmailsync.Deps{Users: d.Users, Gmail: clients, Events: d.Events, Logger: log, Now: d.Users.Now}, cfg.Sync),
		log:        log,
		now:        d.Users.Now,
		mux:        http.NewServeMux(),
		guard:      newGuard(cfg.Callers, log),
		endpoints:  d.Endpoints,
	}
	h.mux.HandleFunc("POST /connect-links", h.createLink)
	h.mux.HandleFunc("POST /connect-results", h.redeem)
	h.mux.HandleFunc("GET /accounts", h.list)
	h.mux.HandleFunc("GET /accounts/{user}", h.get)
	h.mux.HandleFunc("POST /accounts/{user}/reconnect-link", h.reconnectLink)
	h.mux.HandleFunc("POST /accounts/{user}/disconnect", h.disconnectUser)
	h.mux.HandleFunc("POST /accounts/{user}/resync", h.resync)
	h.mux.HandleFunc("POST /accounts/{user}/access-token", h.issueToken)
	h.mux.HandleFunc("GET /endpoints", h.listEndpoints)
	h.mux.HandleFunc("GET /endpoints/{name}", h.getEndpoint)
	h.mux.HandleFunc("POST /endpoints/{name}/enable", h.enableEndpoint)
	h.mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		fail(w, http.StatusNotFound, "no such route: see the accounts API in README.md")
	})
	return h
}

// ServeHTTP serves the API.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	r = r.WithContext(platform.TraceRequest(r.Context(), h.cfg.Platform.ProjectID, r))
	if r, ok := h.guard.allows(w, r); ok {
		h.mux.ServeHTTP(w, r)
	}
}

// production is the deployed handler, built from the environment at the first request.
var production = platform.Production("accounts", ReadConfig, wire)

// unavailable answers a request when the function cannot start; the error
// is logged, never shown.
func unavailable(w http.ResponseWriter, _ error) {
	fail(w, http.StatusInternalServerError, "the service is not configured")
}

// wire builds the handler over the deployed clients.
func wire(cfg Config, c *platform.Clients) *Handler {
	return New(cfg, Deps{Users: store.New(c.Firestore(), nil), Vault: c.Vault(), Events: c.Events(), Endpoints: endpointhealth.New(c.Firestore(), nil)},
		logging.New(os.Stdout, slog.LevelInfo))
}
