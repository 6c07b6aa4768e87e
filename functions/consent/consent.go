// Package consent is the Consent function, the system's only public entry
// point. GET /connect sends the user to Google's consent page (authorization
// code flow with PKCE S256 and a signed, single-use state cookie); GET
// /oauth2/callback checks the answer, keeps the refresh token in Secret
// Manager, starts users.watch and records the user in Firestore. GET
// /disconnect makes the user sign in again (openid email only) and then
// stops the watch, revokes and deletes the token and marks the user
// disconnected. Every refusal renders a small page with its own status code
// and stores nothing; no token, code, state or cookie value reaches a page or
// a log line.
package consent

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	"cloud.google.com/go/firestore"
	"cloud.google.com/go/pubsub/v2"
	"github.com/GoogleCloudPlatform/functions-framework-go/functions"

	"github.com/gmailwatch/gmailwatch/shared/config"
	"github.com/gmailwatch/gmailwatch/shared/events"
	"github.com/gmailwatch/gmailwatch/shared/gmailclient"
	"github.com/gmailwatch/gmailwatch/shared/logging"
	"github.com/gmailwatch/gmailwatch/shared/store"
	"github.com/gmailwatch/gmailwatch/shared/vault"
)

func init() { functions.HTTP("Consent", serve) }

// CallbackPath is the redirect URI's path below PUBLIC_URL, for both flows.
const CallbackPath = "/oauth2/callback"

// Config is the function's settings.
type Config struct {
	ProjectID      string
	PublicURL      string // PUBLIC_URL, without a trailing slash
	StateKeyName   string // STATE_KEY_SECRET_NAME: HMAC key of the state cookie, >= 32 bytes
	EventsTopic    string // EVENTS_TOPIC: topic id
	SecretEndpoint string // SECRETMANAGER_ENDPOINT: loopback, local runs only
	OAuth          gmailclient.Settings
	Watch          gmailclient.WatchSettings
}

// ReadConfig reads the settings, reporting every problem in one error.
func ReadConfig(lookup func(string) (string, bool)) (Config, error) {
	r := config.NewReader(lookup)
	c := Config{
		ProjectID:      r.String("PROJECT_ID", config.Required),
		PublicURL:      strings.TrimRight(r.URL("PUBLIC_URL", config.Required), "/"),
		StateKeyName:   r.String("STATE_KEY_SECRET_NAME", "consent-state-key"),
		EventsTopic:    r.String("EVENTS_TOPIC", config.Required),
		SecretEndpoint: r.String("SECRETMANAGER_ENDPOINT", ""),
		OAuth:          gmailclient.ReadSettings(r),
		Watch:          gmailclient.ReadWatchSettings(r),
	}
	if u, err := url.Parse(c.PublicURL); err == nil && (u.RawQuery != "" || u.Fragment != "") {
		r.Problem("PUBLIC_URL", "%q must not have a query or fragment", c.PublicURL)
	}
	return c, r.Err()
}

// Deps are the clients a Handler works with.
type Deps struct {
	Firestore *firestore.Client
	Vault     *vault.Vault
	Events    *events.Publisher
	HTTP      *http.Client     // for Google's token, revoke and Gmail endpoints; nil: a client with a timeout
	Now       func() time.Time // nil: time.Now
}

// Handler serves the function's routes.
type Handler struct {
	cfg        Config
	users      userStore
	tokens     tokenStore
	clients    *gmailclient.Factory
	states     usedStates
	events     publisher
	disconnect *Disconnecter
	http       *http.Client
	log        *slog.Logger
	now        func() time.Time
	routes     map[string]http.HandlerFunc
	basePath   string // PUBLIC_URL's path, which a proxy may or may not strip
	cookie     http.Cookie

	keyMu    sync.Mutex
	stateKey []byte
}

// userStore is what the handler needs of *store.Store.
type userStore interface {
	Connect(ctx context.Context, c store.Connection) (store.User, bool, error)
	Get(ctx context.Context, key string) (store.User, error)
}

// tokenStore is what the handler needs of *vault.Vault.
type tokenStore interface {
	Access(ctx context.Context, id string) ([]byte, error)
	PutRefreshToken(ctx context.Context, userKey, token string) error
	DeleteRefreshToken(ctx context.Context, userKey string) error
}

// publisher is what the handler needs of *events.Publisher.
type publisher interface {
	Publish(ctx context.Context, evs ...events.Event) error
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
	u, _ := url.Parse(cfg.PublicURL)
	h := &Handler{
		cfg:        cfg,
		users:      users,
		tokens:     d.Vault,
		clients:    clients,
		states:     usedStates{d.Firestore.Collection("oauthStates")},
		events:     d.Events,
		disconnect: NewDisconnecter(users, d.Vault, clients, d.Events, d.HTTP, log),
		http:       d.HTTP,
		log:        log,
		now:        d.Now,
		basePath:   strings.TrimRight(u.Path, "/"),
	}
	// Browsers refuse Secure cookies from plain http, which config allows
	// only for loopback development; every deployed PUBLIC_URL is https.
	secure := u.Scheme == "https"
	h.cookie = http.Cookie{Name: "consent-state", Path: h.basePath + CallbackPath,
		HttpOnly: true, Secure: secure, SameSite: http.SameSiteLaxMode}
	if secure {
		h.cookie.Name = "__Secure-consent-state"
	}
	h.routes = map[string]http.HandlerFunc{
		"/connect": h.connect, "/disconnect": h.startDisconnect, CallbackPath: h.callback,
	}
	return h
}

// ServeHTTP routes a request, with or without PUBLIC_URL's path in front.
// It never redirects except to the authorization endpoint.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	path := r.URL.Path
	if p, ok := strings.CutPrefix(path, h.basePath); ok && strings.HasPrefix(p, "/") {
		path = p
	}
	r = r.WithContext(logging.WithTrace(r.Context(), h.cfg.ProjectID, traceHeader(r)))
	route := h.routes[path]
	switch {
	case route == nil:
		h.render(w, pageError, http.StatusNotFound, pageData{Message: "There is no such page."})
	case r.Method != http.MethodGet: // not even HEAD: the callback has effects
		w.Header().Set("Allow", "GET")
		h.render(w, pageError, http.StatusMethodNotAllowed, pageData{Message: "Only GET is served here."})
	default:
		route(w, r)
	}
}

func traceHeader(r *http.Request) string {
	if t := r.Header.Get("X-Cloud-Trace-Context"); t != "" {
		return t
	}
	return r.Header.Get("traceparent")
}

var (
	prodLog = logging.New(os.Stdout, slog.LevelInfo)
	// prodHandler is the deployed handler, built from the environment at the first request.
	prodHandler = sync.OnceValues(func() (*Handler, error) { return production(context.Background(), prodLog) })
)

func serve(w http.ResponseWriter, r *http.Request) {
	h, err := prodHandler()
	if err != nil {
		prodLog.ErrorContext(r.Context(), "consent function unavailable", "error", err)
		writePage(w, pageError, http.StatusInternalServerError, pageData{Message: "The service is not configured. Please try again later."})
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
