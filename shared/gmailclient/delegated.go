package gmailclient

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"sync"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/google"
	"google.golang.org/api/gmail/v1"
	"google.golang.org/api/impersonate"
	"google.golang.org/api/option"

	"github.com/gmailwatch/gmailwatch/shared/config"
)

// ErrDelegationRefused means Google's token endpoint refused to act for a
// user of the domain (unauthorized_client): the Workspace admin withdrew the
// service account's domain-wide delegation, or never granted one of the
// scopes. Nothing the system retries can change that; IsInvalidGrant is
// true for it, so a delegated user is marked like a user who revoked access.
var ErrDelegationRefused = errors.New("domain-wide delegation refused")

// Delegation gets access tokens for users of a Google Workspace domain that
// granted domain-wide delegation to a service account, with no key: IAM
// Credentials signJwt signs the assertion with the account's Google-managed
// key (the function's own identity holds roles/iam.serviceAccountTokenCreator
// on it), and Google's token endpoint exchanges it (RFC 7523), both through
// google.golang.org/api/impersonate. No refresh token exists.
type Delegation struct {
	Only           bool   // CONNECT_MODE delegation: no one connects by consent
	ServiceAccount string // DELEGATION_SERVICE_ACCOUNT: the account delegated to
	// IAMEndpoint and TokenURL point local runs at the sandbox. The impersonate
	// package calls Google's hosts by fixed names, with no option to change
	// them, so when IAMEndpoint is set the HTTP client it is given sends the
	// two hosts there, refuses any other, and takes the caller's token from
	// the metadata server at GCE_METADATA_HOST.
	IAMEndpoint string // IAMCREDENTIALS_ENDPOINT; "" for Google's
	TokenURL    string // OAUTH_TOKEN_URL

	once sync.Once
	base *http.Client
	err  error
}

// Connection modes (CONNECT_MODE): users connect by consent, the domain's
// mailboxes are watched through delegation, or both.
const (
	ModeConsent    = "consent"
	ModeDelegation = "delegation"
	ModeBoth       = "both"
)

// ReadMode reads CONNECT_MODE.
func ReadMode(r *config.Reader) string {
	return r.OneOf("CONNECT_MODE", ModeConsent, ModeConsent, ModeDelegation, ModeBoth)
}

// ReadDelegation reads CONNECT_MODE and, in delegation or both, the
// delegation settings; it returns nil in consent mode. The settings are
// looked up in every mode, so a reader records them all.
func ReadDelegation(r *config.Reader) *Delegation {
	mode := ReadMode(r)
	d := &Delegation{
		Only:           mode == ModeDelegation,
		ServiceAccount: r.String("DELEGATION_SERVICE_ACCOUNT", ""),
		IAMEndpoint:    r.URL("IAMCREDENTIALS_ENDPOINT", ""),
		TokenURL:       r.URL("OAUTH_TOKEN_URL", GoogleTokenURL),
	}
	metadataHost := r.String("GCE_METADATA_HOST", "")
	if mode == ModeConsent {
		return nil
	}
	if d.ServiceAccount == "" {
		r.Problem("DELEGATION_SERVICE_ACCOUNT", "missing")
	}
	if d.IAMEndpoint != "" {
		// Without it, the metadata client would dial 169.254.169.254.
		h, _, err := splitHost(metadataHost)
		switch {
		case metadataHost == "":
			r.Problem("GCE_METADATA_HOST", "missing")
		case err != nil || !config.IsLoopback(h):
			r.Problem("GCE_METADATA_HOST", "%q must be a loopback host:port when IAMCREDENTIALS_ENDPOINT is set", metadataHost)
		}
	}
	return d
}

func splitHost(hostport string) (string, string, error) {
	u, err := url.Parse("http://" + hostport)
	if err != nil || u.Port() == "" {
		return "", "", fmt.Errorf("%q is not host:port", hostport)
	}
	return u.Hostname(), u.Port(), nil
}

// TokenSource returns a cached token source acting as subject with scopes.
func (d *Delegation) TokenSource(ctx context.Context, subject string, scopes ...string) (oauth2.TokenSource, error) {
	base, err := d.client(ctx)
	if err != nil {
		return nil, err
	}
	ts, err := impersonate.CredentialsTokenSource(ctx, impersonate.CredentialsConfig{
		TargetPrincipal: d.ServiceAccount, Scopes: scopes, Subject: subject,
	}, option.WithHTTPClient(base))
	if err != nil {
		return nil, fmt.Errorf("delegated token source: %w", err)
	}
	return delegatedSource{ts}, nil
}

// client is the HTTP client carrying the calls to IAM Credentials and the
// token endpoint, authenticated as the function's own identity, made once.
func (d *Delegation) client(ctx context.Context) (*http.Client, error) {
	d.once.Do(func() {
		if d.IAMEndpoint == "" {
			d.base, d.err = google.DefaultClient(context.WithoutCancel(ctx), "https://www.googleapis.com/auth/cloud-platform")
			if d.err != nil {
				d.err = fmt.Errorf("service account credentials: %w", d.err)
			}
			return
		}
		iam, err1 := url.Parse(d.IAMEndpoint)
		tok, err2 := url.Parse(d.TokenURL)
		if d.err = errors.Join(err1, err2); d.err != nil {
			return
		}
		d.base = &http.Client{Transport: &oauth2.Transport{
			Source: google.ComputeTokenSource(""),
			Base:   reroute{"iamcredentials.googleapis.com": iam, "oauth2.googleapis.com": tok},
		}}
	})
	return d.base, d.err
}

// reroute sends requests for Google's hosts to the configured endpoints
// (a URL with a path replaces the request's path) and refuses any other.
type reroute map[string]*url.URL

func (m reroute) RoundTrip(r *http.Request) (*http.Response, error) {
	to, ok := m[r.URL.Host]
	if !ok {
		return nil, fmt.Errorf("delegation: no endpoint configured for %s", r.URL.Host)
	}
	r = r.Clone(r.Context())
	r.URL.Scheme, r.URL.Host, r.Host = to.Scheme, to.Host, to.Host
	if to.Path != "" && to.Path != "/" {
		r.URL.Path = to.Path
	}
	return http.DefaultTransport.RoundTrip(r)
}

// delegatedSource turns the impersonate package's errors, which carry the
// answer only as text ("impersonate: status code N: BODY"), into
// *oauth2.RetrieveError, so the classification here (IsRetryable,
// IsInvalidGrant) treats them as it treats the refresh-token flow's.
type delegatedSource struct{ ts oauth2.TokenSource }

var statusText = regexp.MustCompile(`(?s)status code (\d{3}): (.*)$`)

func (d delegatedSource) Token() (*oauth2.Token, error) {
	tok, err := d.ts.Token()
	if err == nil {
		return tok, nil
	}
	m := statusText.FindStringSubmatch(err.Error())
	if m == nil {
		return nil, err // transport errors: retryable
	}
	code, _ := strconv.Atoi(m[1])
	re := &oauth2.RetrieveError{Response: &http.Response{StatusCode: code}, Body: []byte(m[2])}
	var oauthErr struct {
		Error       any    `json:"error"` // a code from the token endpoint, an object from IAM
		Description string `json:"error_description"`
	}
	if json.Unmarshal(re.Body, &oauthErr) == nil {
		if c, ok := oauthErr.Error.(string); ok {
			re.ErrorCode, re.ErrorDescription = c, oauthErr.Description
		}
	}
	if re.ErrorCode == "unauthorized_client" {
		return nil, fmt.Errorf("%w: %w", ErrDelegationRefused, re)
	}
	return nil, re
}

// Delegate makes the factory act for delegated users through d.
func (f *Factory) Delegate(d *Delegation) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.delegation = d
}

// ForAddress returns a Gmail client acting, through delegation, for email,
// a user not yet recorded: the renew run watches new users of the domain
// with it.
func (f *Factory) ForAddress(ctx context.Context, email string) (*gmail.Service, error) {
	if f.delegation == nil {
		return nil, errors.New("gmail client: delegation mode is off")
	}
	ts, err := f.delegation.TokenSource(ctx, email, f.settings.Scope)
	if err != nil {
		return nil, err
	}
	return f.settings.Service(ctx, ts)
}
