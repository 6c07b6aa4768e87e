// Package gmailclient builds Gmail API clients that act for one connected
// user: the user's refresh token comes from Secret Manager and becomes access
// tokens through golang.org/x/oauth2, cached per user inside the instance
// (never on disk or in Firestore). It is the one Gmail call policy: a call
// answered 401 is tried once more with a fresh token source (Factory.Do),
// and it says which Gmail errors are worth retrying, which are rate limits,
// which mean the user must consent again, and what each call costs in quota
// units.
package gmailclient

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/oauth2"
	"golang.org/x/sync/singleflight"
	"google.golang.org/api/gmail/v1"
	"google.golang.org/api/googleapi"
	"google.golang.org/api/option"

	"github.com/gmailwatch/gmailwatch/shared/config"
	"github.com/gmailwatch/gmailwatch/shared/store"
	"github.com/gmailwatch/gmailwatch/shared/vault"
)

// Google's production endpoints; local runs point these at the sandbox.
const (
	GoogleAuthURL   = "https://accounts.google.com/o/oauth2/v2/auth"
	GoogleTokenURL  = "https://oauth2.googleapis.com/token"
	GoogleRevokeURL = "https://oauth2.googleapis.com/revoke"
)

// Scopes the system may ask for: metadata is the least-privilege default.
const (
	ScopeMetadata = gmail.GmailMetadataScope
	ScopeReadonly = gmail.GmailReadonlyScope
)

// Settings are the OAuth client and endpoints, read from the environment.
type Settings struct {
	ClientID         string
	ClientSecretName string // Secret Manager id of the OAuth client secret
	Scope            string
	AuthURL          string
	TokenURL         string
	RevokeURL        string
	GmailEndpoint    string       // "" for Google's
	Quota            QuotaProfile // the project's Gmail quota: limits and each method's cost
}

// ReadSettings reads the OAuth and Gmail settings from r.
func ReadSettings(r *config.Reader) Settings {
	return Settings{
		ClientID:         r.String("OAUTH_CLIENT_ID", config.Required),
		ClientSecretName: r.String("OAUTH_CLIENT_SECRET_NAME", "oauth-client-secret"),
		Scope:            r.OneOf("GMAIL_SCOPE", ScopeMetadata, ScopeMetadata, ScopeReadonly),
		AuthURL:          r.URL("OAUTH_AUTH_URL", GoogleAuthURL),
		TokenURL:         r.URL("OAUTH_TOKEN_URL", GoogleTokenURL),
		RevokeURL:        r.URL("OAUTH_REVOKE_URL", GoogleRevokeURL),
		GmailEndpoint:    r.URL("GMAIL_ENDPOINT", ""),
		Quota:            ReadQuotaProfile(r),
	}
}

// OAuthConfig returns the x/oauth2 configuration for the client.
func (s Settings) OAuthConfig(clientSecret, redirectURL string, scopes ...string) *oauth2.Config {
	return &oauth2.Config{
		ClientID:     s.ClientID,
		ClientSecret: clientSecret,
		Endpoint:     oauth2.Endpoint{AuthURL: s.AuthURL, TokenURL: s.TokenURL, AuthStyle: oauth2.AuthStyleInParams},
		RedirectURL:  redirectURL,
		Scopes:       scopes,
	}
}

// gmailTransport carries every user's Gmail calls of the process: one
// connection pool, sized for an instance serving many requests at once
// (http.DefaultTransport keeps only 2 idle connections per host, so 80
// syncs in flight over HTTP/1.1 would keep dialling).
var gmailTransport = func() *http.Transport {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConnsPerHost = 100
	return t
}()

// Service returns a Gmail client using ts, at the configured endpoint.
func (s Settings) Service(ctx context.Context, ts oauth2.TokenSource) (*gmail.Service, error) {
	client := &http.Client{Transport: &oauth2.Transport{Source: ts, Base: gmailTransport}}
	if _, ok := ctx.Value(oauth2.HTTPClient).(*http.Client); ok {
		client = oauth2.NewClient(ctx, ts) // the caller's own client, as x/oauth2 lets it choose
	}
	opts := []option.ClientOption{option.WithHTTPClient(client)}
	if s.GmailEndpoint != "" {
		opts = append(opts, option.WithEndpoint(s.GmailEndpoint))
	}
	svc, err := gmail.NewService(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("gmail client: %w", err)
	}
	return svc, nil
}

// Factory hands out per-user Gmail clients, caching each user's token source
// so access tokens are refreshed only when they expire. It is safe for
// concurrent use, as one instance serving many requests at once uses it:
// concurrent misses for one user share one Secret Manager read (making),
// the client secret is read once, and neither read holds the lock cache
// hits take.
type Factory struct {
	settings Settings
	secrets  *vault.Vault

	oauth  func(context.Context) (*oauth2.Config, error)
	making singleflight.Group // by user key: one source made at a time

	mu         sync.Mutex
	sources    map[string]source // by user key
	delegation *Delegation       // nil: consent only
}

// source is a user's cached token source and whom it acts as: a delegated
// user's is good only for the address it was made for.
type source struct {
	ts        oauth2.TokenSource
	delegated bool
	email     string // a delegated user's address, lower-cased
}

// NewFactory returns a Factory reading the client secret and refresh tokens
// from secrets.
func NewFactory(s Settings, secrets *vault.Vault) *Factory {
	f := &Factory{settings: s, secrets: secrets, sources: map[string]source{}}
	f.oauth = onceOK(func(ctx context.Context) (*oauth2.Config, error) {
		secret, err := f.secrets.Access(ctx, f.settings.ClientSecretName)
		if err != nil {
			return nil, fmt.Errorf("oauth client secret: %w", err)
		}
		return f.settings.OAuthConfig(strings.TrimSpace(string(secret)), ""), nil
	})
	return f
}

// onceOK returns build's first successful result to every later call, and
// runs one build at a time until one succeeds.
func onceOK[T any](build func(context.Context) (T, error)) func(context.Context) (T, error) {
	var mu sync.Mutex
	var done bool
	var v T
	return func(ctx context.Context) (T, error) {
		mu.Lock()
		defer mu.Unlock()
		if done {
			return v, nil
		}
		got, err := build(ctx)
		if err != nil {
			return got, err
		}
		v, done = got, true
		return v, nil
	}
}

// Settings returns the factory's settings.
func (f *Factory) Settings() Settings { return f.settings }

// OAuth returns the OAuth configuration, reading the client secret once.
func (f *Factory) OAuth(ctx context.Context) (*oauth2.Config, error) { return f.oauth(ctx) }

// ForUser returns a Gmail client acting for the user u records: through
// domain-wide delegation as u.Email for a delegated user, else with the
// refresh token its consent left in Secret Manager. The token source
// outlives ctx: it is cached for later calls in this instance (source).
func (f *Factory) ForUser(ctx context.Context, u store.User) (*gmail.Service, error) {
	ts, err := f.source(ctx, u)
	if err != nil {
		return nil, err
	}
	return f.settings.Service(ctx, ts)
}

// MinTokenLife is the least life left in an access token this package hands
// out: a cached token closer to its expiry is refreshed first, so a caller
// given one (Token) can use it for minutes.
const MinTokenLife = 5 * time.Minute

// Token returns a live access token acting for the user u records, from
// the same cached source the Gmail clients use: the refresh token is
// exchanged only when the cached access token has less than MinTokenLife
// left.
func (f *Factory) Token(ctx context.Context, u store.User) (*oauth2.Token, error) {
	ts, err := f.source(ctx, u)
	if err != nil {
		return nil, err
	}
	tok, err := ts.Token()
	if err != nil {
		return nil, fmt.Errorf("access token of %s: %w", u.Key, err)
	}
	return tok, nil
}

// source returns the user's cached token source, making it on a miss. It
// is cached per user and, for a delegated user, per address, so a record
// whose address changed gets a source acting as the new one and the old
// one is dropped.
func (f *Factory) source(ctx context.Context, u store.User) (oauth2.TokenSource, error) {
	want := source{delegated: u.Delegated}
	if u.Delegated {
		want.email = strings.ToLower(strings.TrimSpace(u.Email))
	}
	if ts := f.cached(u.Key, want); ts != nil {
		return ts, nil
	}
	// Concurrent misses for one user (pushes of one mailbox on one
	// instance) wait for the first one's source rather than each reading
	// Secret Manager and refreshing a token of its own.
	ts, err, _ := f.making.Do(u.Key+"\x00"+want.email, func() (any, error) {
		if ts := f.cached(u.Key, want); ts != nil {
			return ts, nil
		}
		ts, err := f.newSource(ctx, u.Key, want)
		if err != nil {
			return nil, err
		}
		want.ts = ts
		f.mu.Lock()
		f.sources[u.Key] = want
		f.mu.Unlock()
		return ts, nil
	})
	if err != nil {
		return nil, err
	}
	return ts.(oauth2.TokenSource), nil
}

// cached returns the user's cached source if it acts as want says, else nil.
func (f *Factory) cached(userKey string, want source) oauth2.TokenSource {
	f.mu.Lock()
	defer f.mu.Unlock()
	if c := f.sources[userKey]; c.ts != nil && c.delegated == want.delegated && c.email == want.email {
		return c.ts
	}
	return nil
}

// newSource returns the user's token source: delegated, or from the
// refresh token the user's consent left in Secret Manager.
func (f *Factory) newSource(ctx context.Context, userKey string, want source) (oauth2.TokenSource, error) {
	if want.delegated {
		if f.delegation == nil {
			return nil, fmt.Errorf("delegated user %s: delegation mode is off", userKey)
		}
		ts, err := f.delegation.TokenSource(ctx, want.email, f.settings.Scope)
		if err != nil {
			return nil, fmt.Errorf("delegated user %s: %w", userKey, err)
		}
		return ts, nil
	}
	conf, err := f.OAuth(ctx)
	if err != nil {
		return nil, err
	}
	refresh, err := f.secrets.RefreshToken(ctx, userKey)
	if errors.Is(err, vault.ErrNotFound) {
		return nil, fmt.Errorf("refresh token of %s: %w: %w", userKey, ErrNoRefreshToken, err)
	}
	if err != nil {
		return nil, fmt.Errorf("refresh token of %s: %w", userKey, err)
	}
	return oauth2.ReuseTokenSourceWithExpiry(nil, conf.TokenSource(context.Background(), &oauth2.Token{RefreshToken: refresh}), MinTokenLife), nil
}

// Forget drops the cached token source of a user (after reauth or disconnect).
func (f *Factory) Forget(userKey string) {
	f.mu.Lock()
	delete(f.sources, userKey)
	f.mu.Unlock()
}

// Do runs fn with a Gmail client acting for the user u records (ForUser).
// A 401 means the cached access token was revoked: the token source is
// dropped and fn tried once more with a fresh one, so a dead refresh token
// shows as invalid_grant.
func (f *Factory) Do(ctx context.Context, u store.User, fn func(*gmail.Service) error) error {
	userKey := u.Key
	for try := 0; ; try++ {
		svc, err := f.ForUser(ctx, u)
		if err != nil {
			return fmt.Errorf("gmail client of %s: %w", userKey, err)
		}
		err = fn(svc)
		var ge *googleapi.Error
		if try > 0 || !errors.As(err, &ge) || ge.Code != http.StatusUnauthorized {
			return err
		}
		f.Forget(userKey)
	}
}

// Stop ends the mailbox's watch (users.stop).
func Stop(ctx context.Context, svc *gmail.Service) error {
	if err := svc.Users.Stop("me").Context(ctx).Do(); err != nil {
		return fmt.Errorf("users.stop: %w", err)
	}
	return nil
}

// ErrNoRefreshToken means Secret Manager holds no refresh token for the
// user: no call can succeed until the user connects again.
var ErrNoRefreshToken = errors.New("no refresh token")

// IsInvalidGrant reports whether err means the refresh token no longer works
// (revoked, expired, or the user removed access): the user must consent again.
// A delegated user whose delegation was withdrawn counts too
// (ErrDelegationRefused): the admin must grant it again.
func IsInvalidGrant(err error) bool {
	var re *oauth2.RetrieveError
	return errors.Is(err, ErrDelegationRefused) || errors.As(err, &re) && re.ErrorCode == "invalid_grant"
}

// IsRetryable reports whether err is worth trying again: Gmail's rate limits,
// server errors, and failures to reach it.
func IsRetryable(err error) bool {
	if err == nil || IsInvalidGrant(err) || errors.Is(err, context.Canceled) {
		return false
	}
	var ge *googleapi.Error
	if errors.As(err, &ge) {
		return ge.Code >= 500 || IsRateLimited(err)
	}
	var re *oauth2.RetrieveError
	if errors.As(err, &re) {
		return re.Response == nil || re.Response.StatusCode >= 500
	}
	return true // transport errors: connection refused, reset, deadline
}

// IsRateLimited reports whether err is one of Gmail's quota or concurrency
// refusals, in any shape its "Resolve errors" guide documents: any 429 (the
// per-user rate limit, "Too many concurrent requests for user", bandwidth),
// and 403 with reason userRateLimitExceeded or rateLimitExceeded, or in the
// usageLimits domain. dailyLimitExceeded is a quota too, but lifts only the
// next day: it is not worth a retry, so it does not count here.
func IsRateLimited(err error) bool {
	var ge *googleapi.Error
	if !errors.As(err, &ge) {
		return false
	}
	if ge.Code == http.StatusTooManyRequests {
		return true
	}
	if ge.Code != http.StatusForbidden {
		return false
	}
	for _, e := range ge.Errors {
		switch e.Reason {
		case "dailyLimitExceeded":
			return false
		case "rateLimitExceeded", "userRateLimitExceeded":
			return true
		}
	}
	// The client keeps errors[].domain only in the raw body.
	var body struct {
		Error struct {
			Errors []struct{ Domain, Reason string }
		}
	}
	if json.Unmarshal([]byte(ge.Body), &body) != nil {
		return false
	}
	return slices.ContainsFunc(body.Error.Errors, func(e struct{ Domain, Reason string }) bool {
		return e.Domain == "usageLimits" && e.Reason != "dailyLimitExceeded"
	})
}

// IsNotFound reports whether Gmail answered 404.
func IsNotFound(err error) bool {
	var ge *googleapi.Error
	return errors.As(err, &ge) && ge.Code == http.StatusNotFound
}
