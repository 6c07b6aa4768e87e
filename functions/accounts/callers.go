package accounts

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/mail"
	"slices"
	"strings"
	"sync"
	"time"

	"google.golang.org/api/idtoken"
	"google.golang.org/api/option"

	"github.com/gmailwatch/gmailwatch/shared/config"
)

// GoogleCertsURL is where Google publishes the keys that sign its ID tokens.
const GoogleCertsURL = "https://www.googleapis.com/oauth2/v3/certs"

// Callers is who may call the API. Cloud Run's IAM check lets through the
// members Terraform grants run.invoker, but also project Owners and Editors,
// and everyone if the service is ever made public by mistake; the API checks
// the caller's Google ID token again itself: signed by Google, unexpired,
// for this API's URL, naming a verified address on the list.
type Callers struct {
	Audience string   // ACCOUNTS_URL: the API's own URL, the audience its callers ask their ID token for
	Emails   []string // ACCOUNTS_INVOKERS: the service accounts and users that may call; empty: nobody
	CertsURL string   // OAUTH_CERTS_URL: Google's signing keys (a loopback sandbox locally)
}

// ReadCallers reads the callers' settings, reporting bad ones to r.
func ReadCallers(r *config.Reader) Callers {
	c := Callers{
		Audience: strings.TrimRight(r.URL("ACCOUNTS_URL", config.Required), "/"),
		CertsURL: r.URL("OAUTH_CERTS_URL", GoogleCertsURL),
	}
	for _, e := range r.List("ACCOUNTS_INVOKERS", nil) {
		e = strings.ToLower(e)
		if a, err := mail.ParseAddress(e); err != nil || a.Address != e {
			r.Problem("ACCOUNTS_INVOKERS", "%q is not an address like backend@my-app.iam.gserviceaccount.com", e)
			continue
		}
		c.Emails = append(c.Emails, e)
	}
	return c
}

// guard refuses every request but those of a listed caller: 401 without an
// ID token, 403 with one that is forged, expired, for another audience or
// of someone not listed. The token itself never reaches a log line.
type guard struct {
	callers Callers
	log     *slog.Logger

	once      sync.Once
	validator *idtoken.Validator
	err       error
}

func newGuard(c Callers, log *slog.Logger) *guard { return &guard{callers: c, log: log} }

// signatureRemoved is what Cloud Run leaves of the signature of the token
// its IAM check consumed, in the header that carried it (Cloud Run's
// service-to-service authentication page, "Cloud Run removes the token
// signature before passing the token to the user container"). A caller
// that sends its ID token in X-Serverless-Authorization too has Cloud Run
// check that one and gets Authorization through intact.
const signatureRemoved = "SIGNATURE_REMOVED_BY_GOOGLE"

type callerKey struct{}

// allows reports whether r comes from a listed caller, having answered it
// when not; the request's context then names the caller (caller).
func (g *guard) allows(w http.ResponseWriter, r *http.Request) (*http.Request, bool) {
	token, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	token = strings.TrimSpace(token)
	if !ok || token == "" {
		w.Header().Set("WWW-Authenticate", `Bearer realm="accounts"`)
		fail(w, http.StatusUnauthorized, "send a Google ID token for this API's URL in both X-Serverless-Authorization and Authorization: Bearer <token>")
		return r, false
	}
	if strings.HasSuffix(token, "."+signatureRemoved) {
		w.Header().Set("WWW-Authenticate", `Bearer realm="accounts"`)
		fail(w, http.StatusUnauthorized, "Cloud Run checked the Authorization token and removed its signature: send the same ID token in X-Serverless-Authorization too, so Cloud Run checks that one and Authorization reaches the API intact")
		return r, false
	}
	email, err := g.check(r.Context(), token)
	if err != nil {
		g.log.WarnContext(r.Context(), "accounts caller refused", "reason", err.Error())
		fail(w, http.StatusForbidden, "the caller's ID token is not accepted: it must be Google's, unexpired, for this API's URL, and name a caller in ACCOUNTS_INVOKERS")
		return r, false
	}
	g.log.DebugContext(r.Context(), "accounts caller", "caller", email)
	return r.WithContext(context.WithValue(r.Context(), callerKey{}, email)), true
}

// caller is the address of the request's verified caller, for the log.
func caller(r *http.Request) string {
	email, _ := r.Context().Value(callerKey{}).(string)
	return email
}

// check validates an ID token and returns the caller's address.
func (g *guard) check(ctx context.Context, token string) (string, error) {
	v, err := g.validatorOnce(ctx)
	if err != nil {
		return "", err
	}
	p, err := v.Validate(ctx, token, g.callers.Audience)
	if err != nil {
		return "", fmt.Errorf("id token: %s", clip(err.Error()))
	}
	// Google documents both forms of its issuer
	// (https://developers.google.com/identity/openid-connect/openid-connect#validatinganidtoken).
	if p.Issuer != "https://accounts.google.com" && p.Issuer != "accounts.google.com" {
		return "", fmt.Errorf("id token issuer %q is not Google", clip(p.Issuer))
	}
	email, _ := p.Claims["email"].(string)
	verified, _ := p.Claims["email_verified"].(bool)
	email = strings.ToLower(email)
	if email == "" || !verified {
		return "", fmt.Errorf("id token names no verified address")
	}
	if !slices.Contains(g.callers.Emails, email) {
		return "", fmt.Errorf("caller %s is not in ACCOUNTS_INVOKERS", email)
	}
	return email, nil
}

// validatorOnce builds the validator, whose keys come from CertsURL only.
func (g *guard) validatorOnce(ctx context.Context) (*idtoken.Validator, error) {
	g.once.Do(func() {
		hc := &http.Client{Timeout: 10 * time.Second, Transport: certsOnly{g.callers.CertsURL}}
		g.validator, g.err = idtoken.NewValidator(context.WithoutCancel(ctx), option.WithHTTPClient(hc))
	})
	return g.validator, g.err
}

// certsOnly sends the validator's request for Google's RS256 keys to the
// configured URL and refuses any other (the ES256 keys are IAP's, whose
// tokens are not callers of this API).
type certsOnly struct{ url string }

func (c certsOnly) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.URL.String() != GoogleCertsURL {
		return nil, fmt.Errorf("id token keys: %s is not fetched", r.URL.Host)
	}
	out, err := http.NewRequestWithContext(r.Context(), http.MethodGet, c.url, nil)
	if err != nil {
		return nil, err
	}
	return http.DefaultTransport.RoundTrip(out)
}
