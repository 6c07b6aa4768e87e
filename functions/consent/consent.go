// Package consent is the Consent function, the system's only public entry
// point. GET /connect sends the user to Google's consent page (authorization
// code flow with PKCE S256 and a signed, single-use state cookie), with a
// connect link from the application (?link=) or, without one, for accounts
// the allowlists admit; GET /oauth2/callback checks the answer and who
// signed in (the verified ID token: sub, email, hd), keeps the refresh token
// in Secret Manager, starts users.watch, records the user in Firestore under
// the link's reference, and sends the browser back to the application (303)
// or shows a page. GET /disconnect makes the user sign in again (openid email
// only) and shows a confirmation whose POST stops the watch, revokes and
// deletes the token and marks the user disconnected. Every refusal stores
// nothing; no token, code, state or cookie value reaches a page, a URL or a
// log line.
package consent

import (
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/GoogleCloudPlatform/functions-framework-go/functions"

	"github.com/gmailwatch/gmailwatch/shared/config"
	"github.com/gmailwatch/gmailwatch/shared/connectlink"
	"github.com/gmailwatch/gmailwatch/shared/disconnect"
	"github.com/gmailwatch/gmailwatch/shared/events"
	"github.com/gmailwatch/gmailwatch/shared/gmailclient"
	"github.com/gmailwatch/gmailwatch/shared/lifecycle"
	"github.com/gmailwatch/gmailwatch/shared/logging"
	"github.com/gmailwatch/gmailwatch/shared/platform"
	"github.com/gmailwatch/gmailwatch/shared/store"
	"github.com/gmailwatch/gmailwatch/shared/vault"
)

func init() { functions.HTTP("Consent", platform.HTTP(production, unavailable)) }

// CallbackPath is the redirect URI's path below PUBLIC_URL, for both flows.
const CallbackPath = "/oauth2/callback"

// Config is the function's settings.
type Config struct {
	ProjectID      string
	PublicURL      string // PUBLIC_URL, without a trailing slash
	StateKeyName   string // STATE_KEY_SECRET_NAME: HMAC key of the state cookie, >= 32 bytes
	EventsTopic    string // EVENTS_TOPIC: topic id
	SecretEndpoint string // SECRETMANAGER_ENDPOINT: loopback, local runs only
	LinkKeyName    string // CONNECT_LINK_KEY_SECRET_NAME: HMAC key of signed connect links
	UserKeyName    string // USER_KEY_SECRET_NAME: key of the hash that turns Google's account id into a user key
	DomainOnly     bool   // CONNECT_MODE delegation: the deployment watches a Workspace domain, and no one connects here
	Admit          Admission
	Links          connectlink.Policy
	ResultTTL      time.Duration // CONNECT_RESULT_TTL: how long a link's result code waits for the backend's redeem
	OAuth          gmailclient.Settings
	Watch          gmailclient.WatchSettings
}

// Cloud returns the settings every function shares.
func (c Config) Cloud() platform.Settings {
	return platform.Settings{ProjectID: c.ProjectID, EventsTopic: c.EventsTopic, SecretEndpoint: c.SecretEndpoint}
}

// Admission is who may connect without a link.
type Admission struct {
	Addresses []string // ALLOWED_ADDRESSES
	Domains   []string // ALLOWED_DOMAINS: Workspace domains, matched on the ID token's hd
	Open      bool     // OPEN_ENROLLMENT: any Google account
}

// ReadConfig reads the settings, reporting every problem in one error.
func ReadConfig(lookup platform.Lookup) (Config, error) {
	r := config.NewReader(lookup)
	p := platform.ReadSettings(r)
	c := Config{
		ProjectID:      p.ProjectID,
		PublicURL:      strings.TrimRight(r.URL("PUBLIC_URL", config.Required), "/"),
		StateKeyName:   r.String("STATE_KEY_SECRET_NAME", "consent-state-key"),
		EventsTopic:    p.EventsTopic,
		SecretEndpoint: p.SecretEndpoint,
		LinkKeyName:    r.String("CONNECT_LINK_KEY_SECRET_NAME", "connect-link-key"),
		UserKeyName:    r.String("USER_KEY_SECRET_NAME", "user-key-secret"),
		DomainOnly:     gmailclient.ReadMode(r) == gmailclient.ModeDelegation,
		Admit: Admission{
			Addresses: lower(r.List("ALLOWED_ADDRESSES", nil)),
			Domains:   lower(r.List("ALLOWED_DOMAINS", nil)),
			Open:      r.Bool("OPEN_ENROLLMENT", false),
		},
		Links:     connectlink.ReadPolicy(r),
		ResultTTL: r.Duration("CONNECT_RESULT_TTL", 10*time.Minute),
		OAuth:     gmailclient.ReadSettings(r),
		Watch:     gmailclient.ReadWatchSettings(r),
	}
	if c.ResultTTL < time.Minute || c.ResultTTL > time.Hour {
		r.Problem("CONNECT_RESULT_TTL", "%v is not between 1m and 1h", c.ResultTTL)
	}
	if u, err := url.Parse(c.PublicURL); err == nil && (u.RawQuery != "" || u.Fragment != "") {
		r.Problem("PUBLIC_URL", "%q must not have a query or fragment", c.PublicURL)
	}
	return c, r.Err()
}

func lower(list []string) []string {
	for i, v := range list {
		list[i] = strings.ToLower(v)
	}
	return list
}

// Deps are what a Handler works with.
type Deps struct {
	Users  *store.Store // its clock is the handler's
	Vault  *vault.Vault
	Events *events.Publisher
	HTTP   *http.Client // for Google's token, revoke and Gmail endpoints; nil: a client with a timeout
}

// Handler serves the function's routes.
type Handler struct {
	cfg        Config
	users      *store.Store
	tokens     *vault.Vault
	clients    *gmailclient.Factory
	life       *lifecycle.Lifecycle
	disconnect *disconnect.Disconnecter
	http       *http.Client
	log        *slog.Logger
	now        func() time.Time
	routes     map[string]http.HandlerFunc
	basePath   string // PUBLIC_URL's path, which a proxy may or may not strip
	origin     string // PUBLIC_URL's scheme://host
	cookie     http.Cookie
	stateKeys  *vault.Keys // sign the state cookie and the disconnect confirmation
	linkKeys   *vault.Keys // verify signed connect links
	userKeys   *vault.Keys // key users by Google's account id
	browser    http.Cookie // binds a link to the first browser that opens it
}

// New returns a Handler; cfg must come from ReadConfig (or be as valid).
func New(cfg Config, d Deps, log *slog.Logger) *Handler {
	if d.HTTP == nil {
		d.HTTP = &http.Client{Timeout: 20 * time.Second}
	}
	clients := gmailclient.NewFactory(cfg.OAuth, d.Vault)
	u, _ := url.Parse(cfg.PublicURL)
	h := &Handler{
		cfg:        cfg,
		users:      d.Users,
		tokens:     d.Vault,
		clients:    clients,
		life:       lifecycle.New(d.Users, d.Events, nil),
		disconnect: disconnect.New(d.Users, d.Vault, clients, d.Events, d.HTTP, log),
		http:       d.HTTP,
		log:        log,
		now:        d.Users.Now,
		basePath:   strings.TrimRight(u.Path, "/"),
		origin:     originOf(cfg.PublicURL),
		stateKeys:  vault.NewKeys(d.Vault, cfg.StateKeyName, minKeyBytes, d.Users.Now),
		linkKeys:   vault.NewKeys(d.Vault, cfg.LinkKeyName, connectlink.MinKeyBytes, d.Users.Now),
		userKeys:   vault.NewKeys(d.Vault, cfg.UserKeyName, store.MinUserKeyBytes, d.Users.Now),
	}
	// Browsers refuse Secure cookies from plain http, which config allows
	// only for loopback development; every deployed PUBLIC_URL is https.
	// __Host- (no Domain, Path=/) pins the cookie to this origin, so a
	// sibling domain cannot plant one; it needs the function to own the
	// origin's root, as it does on its own run.app or cloudfunctions.net URL.
	// Behind a proxy under a path, __Secure- scoped to the callback it is.
	secure := u.Scheme == "https"
	h.cookie = http.Cookie{Name: "consent-state", Path: h.basePath + CallbackPath,
		HttpOnly: true, Secure: secure, SameSite: http.SameSiteLaxMode}
	switch {
	case secure && h.basePath == "":
		h.cookie.Name, h.cookie.Path = "__Host-consent-state", "/"
	case secure:
		h.cookie.Name = "__Secure-consent-state"
	}
	h.browser = http.Cookie{Name: "consent-browser", Path: h.basePath + "/connect",
		HttpOnly: true, Secure: secure, SameSite: http.SameSiteLaxMode}
	switch {
	case secure && h.basePath == "":
		h.browser.Name, h.browser.Path = "__Host-consent-browser", "/"
	case secure:
		h.browser.Name = "__Secure-consent-browser"
	}
	h.routes = map[string]http.HandlerFunc{
		"/connect": h.connect, "/disconnect": h.startDisconnect, CallbackPath: h.callback, ConfirmPath: h.confirm,
	}
	return h
}

// DomainOnlyMessage is the page every route shows in delegation mode.
const DomainOnlyMessage = "Accounts are not connected here: this service watches the mailboxes of its Google Workspace domain, as set up by the domain's administrator."

// ServeHTTP routes a request, with or without PUBLIC_URL's path in front.
// It never redirects except to the authorization endpoint and to return
// URLs checked when their link was made. Only the confirmation is a POST.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	path := r.URL.Path
	if p, ok := strings.CutPrefix(path, h.basePath); ok && strings.HasPrefix(p, "/") {
		path = p
	}
	r = r.WithContext(platform.TraceRequest(r.Context(), h.cfg.ProjectID, r))
	route, method := h.routes[path], http.MethodGet
	if path == ConfirmPath {
		method = http.MethodPost
	}
	switch {
	case route == nil:
		h.render(w, pageError, http.StatusNotFound, pageData{Message: "There is no such page."})
	case h.cfg.DomainOnly: // before any cookie, secret or Google call
		writePage(w, pageError, http.StatusForbidden, pageData{Message: DomainOnlyMessage}) // no retry link: there is nothing to retry
	case r.Method != method: // not even HEAD: the callback has effects
		w.Header().Set("Allow", method)
		h.render(w, pageError, http.StatusMethodNotAllowed, pageData{Message: "Only " + method + " is served here."})
	default:
		route(w, r)
	}
}

// production is the deployed handler, built from the environment at the first request.
var production = platform.Production("consent", ReadConfig, wire)

// unavailable answers a request when the function cannot start; the error
// is logged, never shown.
func unavailable(w http.ResponseWriter, _ error) {
	writePage(w, pageError, http.StatusInternalServerError, pageData{Message: "The service is not configured. Please try again later."})
}

// wire builds the handler over the deployed clients.
func wire(cfg Config, c *platform.Clients) *Handler {
	return New(cfg, Deps{Users: store.New(c.Firestore(), nil), Vault: c.Vault(), Events: c.Events()}, logging.New(os.Stdout, slog.LevelInfo))
}
