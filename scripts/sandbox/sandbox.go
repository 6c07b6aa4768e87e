// Package sandbox starts, in one process, faithful stand-ins for the Google
// services that have no emulator: the Gmail API (gmailapi), Google OAuth 2.0
// (googleauth) and Secret Manager (secrets). One loopback HTTP server serves
// Gmail under /gmail/v1/, OAuth at /o/oauth2/v2/auth, /token and /revoke, and
// the admin API under /admin/; Secret Manager listens for plaintext gRPC on
// a port of its own. Gmail notifications go to the Pub/Sub emulator. Tests
// start it with Start; the local stack runs cmd/sandbox.
package sandbox

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"reflect"
	"slices"
	"strings"
	"time"

	"cloud.google.com/go/pubsub/v2"
	"cloud.google.com/go/secretmanager/apiv1/secretmanagerpb"
	"google.golang.org/api/option"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/gmailwatch/gmailwatch/scripts/sandbox/directory"
	"github.com/gmailwatch/gmailwatch/scripts/sandbox/gmailapi"
	"github.com/gmailwatch/gmailwatch/scripts/sandbox/googleauth"
	"github.com/gmailwatch/gmailwatch/scripts/sandbox/iamcredentials"
	"github.com/gmailwatch/gmailwatch/scripts/sandbox/secrets"
	"github.com/gmailwatch/gmailwatch/shared/config"
)

// Options configure a Sandbox. Every field is optional.
type Options struct {
	ProjectID              string // project for Secret Manager conveniences; Gmail pushes go to the project named in the watch's topic
	ClientID, ClientSecret string // the registered OAuth client
	RedirectURIs           []string
	AutoApprove            bool                  // consent approves at once instead of showing the page
	PubSubEmulatorHost     string                // default: env PUBSUB_EMULATOR_HOST; none means users.watch is refused
	HTTPAddr, GRPCAddr     string                // loopback only; default 127.0.0.1:0
	Domain                 string                // Google Workspace primary domain; "" serves no Directory, IAM Credentials or delegation
	ServiceAccount         string                // with a Domain: the service account delegated to; default gmailwatch-mailboxes@PROJECT.iam.gserviceaccount.com
	GmailQuota             gmailapi.QuotaProfile // gmailapi.Standard2026 (the default) or gmailapi.Legacy
	UserUnitsPerMinute     int                   // Gmail quota per user; default the profile's (6,000 in standard-2026)
	ProjectUnitsPerMinute  int                   // Gmail quota per project; default the profile's (1,200,000)
	GmailProfile           gmailapi.Profile      // gmailapi.Strict (the default) or gmailapi.Kind
	Now                    func() time.Time
	AfterFunc              func(d time.Duration, f func()) (stop func() bool) // timers of Now's clock; see gmailapi.Options
	Logger                 *slog.Logger
}

// Sandbox is a running set of fakes. URL is the HTTP base (no trailing
// slash); SecretManagerAddr is host:port of the plaintext gRPC server.
type Sandbox struct {
	URL, SecretManagerAddr string
	Auth                   *googleauth.Server
	Secrets                *secrets.Server
	Gmail                  *gmailapi.Server
	IAM                    *iamcredentials.Server // nil without a Workspace domain
	Directory              *directory.Server      // nil without a Workspace domain

	opts      Options
	delegated string // the service account delegated to, with a Workspace domain
	http      *http.Server
	grpc      *grpc.Server
	pubsub    *pubsub.Client
}

// Start listens on opts' addresses and serves until Close.
func Start(ctx context.Context, opts Options) (*Sandbox, error) {
	if opts.HTTPAddr == "" {
		opts.HTTPAddr = "127.0.0.1:0"
	}
	if opts.GRPCAddr == "" {
		opts.GRPCAddr = "127.0.0.1:0"
	}
	if opts.PubSubEmulatorHost == "" {
		opts.PubSubEmulatorHost = os.Getenv("PUBSUB_EMULATOR_HOST")
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	for name, addr := range map[string]string{"HTTP address": opts.HTTPAddr, "gRPC address": opts.GRPCAddr, "Pub/Sub emulator host": opts.PubSubEmulatorHost} {
		if err := checkLoopback(addr); addr != "" && err != nil {
			return nil, fmt.Errorf("sandbox %s: %w", name, err)
		}
	}
	if q := opts.GmailQuota; q != "" && !slices.Contains(gmailapi.QuotaProfiles, q) {
		return nil, fmt.Errorf("sandbox: unknown Gmail quota profile %q (want one of %v)", q, gmailapi.QuotaProfiles)
	}
	if opts.UserUnitsPerMinute < 0 || opts.ProjectUnitsPerMinute < 0 {
		return nil, errors.New("sandbox: Gmail quota limits must not be negative")
	}
	s := &Sandbox{opts: opts}
	if h := opts.PubSubEmulatorHost; h != "" {
		project := opts.ProjectID
		if project == "" {
			project = "sandbox"
		}
		ps, err := pubsub.NewClient(ctx, project, option.WithEndpoint(h), option.WithoutAuthentication(),
			option.WithGRPCDialOption(grpc.WithTransportCredentials(insecure.NewCredentials())))
		if err != nil {
			return nil, fmt.Errorf("sandbox pubsub client: %w", err)
		}
		s.pubsub = ps
	}
	clients := map[string]googleauth.Client{}
	if opts.ClientID != "" {
		clients[opts.ClientID] = googleauth.Client{Secret: opts.ClientSecret, RedirectURIs: opts.RedirectURIs}
	}
	s.Auth = googleauth.New(googleauth.Options{Clients: clients, Now: opts.Now})
	s.Auth.SetBehavior(googleauth.Behavior{AutoApprove: opts.AutoApprove})
	s.Gmail = gmailapi.New(gmailapi.Options{
		Auth: s.Auth, PubSub: s.pubsub, Now: opts.Now, AfterFunc: opts.AfterFunc, Logger: opts.Logger,
		Quota: opts.GmailQuota, UserUnitsPerMinute: opts.UserUnitsPerMinute, ProjectUnitsPerMinute: opts.ProjectUnitsPerMinute,
		Profile: opts.GmailProfile,
	})
	s.Secrets = secrets.New()
	if opts.Now != nil {
		s.Secrets.SetClock(opts.Now)
	}

	var lc net.ListenConfig
	hl, err := lc.Listen(ctx, "tcp", opts.HTTPAddr)
	if err != nil {
		s.Close()
		return nil, fmt.Errorf("sandbox listen %s: %w", opts.HTTPAddr, err)
	}
	gl, err := lc.Listen(ctx, "tcp", opts.GRPCAddr)
	if err != nil {
		hl.Close()
		s.Close()
		return nil, fmt.Errorf("sandbox listen %s: %w", opts.GRPCAddr, err)
	}
	s.URL = "http://" + hl.Addr().String()
	s.SecretManagerAddr = gl.Addr().String()

	mux := http.NewServeMux()
	s.Auth.Register(mux)
	s.Gmail.Register(mux)
	s.startWorkspace(mux)
	s.registerAdmin(mux)
	s.http = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	s.grpc = grpc.NewServer()
	s.Secrets.Register(s.grpc)
	go func() {
		if err := s.http.Serve(hl); err != nil && !errors.Is(err, http.ErrServerClosed) {
			opts.Logger.Error("sandbox http server", "error", err)
		}
	}()
	go func() {
		if err := s.grpc.Serve(gl); err != nil {
			opts.Logger.Error("sandbox grpc server", "error", err)
		}
	}()
	return s, nil
}

// checkLoopback accepts host:port on 127.0.0.0/8, ::1 or localhost only.
func checkLoopback(addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("%q is not host:port", addr)
	}
	if !config.IsLoopback(host) {
		return fmt.Errorf("%q is not a loopback address", addr)
	}
	return nil
}

// Close stops the servers and pending notifications.
func (s *Sandbox) Close() error {
	var errs []error
	if s.http != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := s.http.Shutdown(ctx); err != nil {
			errs = append(errs, s.http.Close())
		}
	}
	if s.grpc != nil {
		s.grpc.Stop()
	}
	if s.Gmail != nil {
		errs = append(errs, s.Gmail.Close())
	}
	if s.pubsub != nil {
		errs = append(errs, s.pubsub.Close())
	}
	return errors.Join(errs...)
}

// AddMailbox creates email's Gmail mailbox and lets it sign in to OAuth.
func (s *Sandbox) AddMailbox(email string) error {
	if err := s.Gmail.AddMailbox(email); err != nil {
		return err
	}
	s.Auth.AddAccount(email)
	return nil
}

// Connect grants scopes of email's mailbox (created if missing) to the
// registered OAuth client without the browser flow, and returns the refresh
// token, as if the user had completed consent.
func (s *Sandbox) Connect(email string, scopes ...string) (string, error) {
	if s.opts.ClientID == "" {
		return "", errors.New("sandbox connect: no OAuth client registered")
	}
	if err := s.AddMailbox(email); err != nil {
		var ge *gmailapi.Error
		if !errors.As(err, &ge) || ge.Code != http.StatusConflict {
			return "", err
		}
	}
	if len(scopes) == 0 {
		scopes = []string{gmailapi.ScopeMetadata}
	}
	return s.Auth.IssueRefreshToken(s.opts.ClientID, email, scopes), nil
}

// Deliver delivers a message to d.To's mailbox.
func (s *Sandbox) Deliver(d gmailapi.Delivery) (gmailapi.Delivered, error) { return s.Gmail.Deliver(d) }

// Revoke revokes every OAuth token of email, as when the user removes the
// app's access: its refresh token then fails with invalid_grant.
func (s *Sandbox) Revoke(email string) { s.Auth.RevokeAccount(email) }

// FaultSpec is the fault request of the admin API: Gmail faults for one
// user (or all when User is empty), and optionally revoking that user's
// (or every user's) refresh tokens.
type FaultSpec struct {
	User               string `json:"user,omitempty"`
	RevokeRefreshToken bool   `json:"revokeRefreshToken,omitempty"`
	gmailapi.Faults
}

// SetFaults puts f in force. A spec that only revokes leaves the Gmail
// faults as they are.
func (s *Sandbox) SetFaults(f FaultSpec) error {
	if !f.RevokeRefreshToken || !reflect.ValueOf(f.Faults).IsZero() {
		if err := s.Gmail.SetFaults(f.User, f.Faults); err != nil {
			return err
		}
	} else if f.User != "" {
		if _, err := s.Gmail.HistoryID(f.User); err != nil {
			return err
		}
	}
	if f.RevokeRefreshToken {
		users := []string{f.User}
		if f.User == "" {
			users = s.Gmail.Mailboxes()
		}
		for _, u := range users {
			s.Auth.RevokeAccount(u)
		}
	}
	return nil
}

// ClearFaults removes one user's Gmail faults, or all when user is "".
// Revoked tokens stay revoked: the user connects again.
func (s *Sandbox) ClearFaults(user string) { s.Gmail.ClearFaults(user) }

// Env returns the endpoint overrides that point the functions at this sandbox.
func (s *Sandbox) Env() map[string]string {
	env := map[string]string{
		"GMAIL_ENDPOINT":         s.URL + "/",
		"OAUTH_AUTH_URL":         s.URL + "/o/oauth2/v2/auth",
		"OAUTH_TOKEN_URL":        s.URL + "/token",
		"OAUTH_REVOKE_URL":       s.URL + "/revoke",
		"OAUTH_CERTS_URL":        s.URL + "/oauth2/v3/certs",
		"SECRETMANAGER_ENDPOINT": s.SecretManagerAddr,
		"GMAIL_QUOTA_PROFILE":    string(s.Gmail.Quota().Profile),
	}
	if s.opts.ClientID != "" {
		env["OAUTH_CLIENT_ID"] = s.opts.ClientID
	}
	s.workspaceEnv(env)
	return env
}

// PutSecret stores value as a new version of secret id in project, creating
// the secret if needed, outside the project's write quota.
func (s *Sandbox) PutSecret(ctx context.Context, project, id string, value []byte) error {
	ctx = secrets.Unmetered(ctx) // seeding, not the system's own writes
	parent := "projects/" + project
	_, err := s.Secrets.CreateSecret(ctx, &secretmanagerpb.CreateSecretRequest{
		Parent: parent, SecretId: id,
		Secret: &secretmanagerpb.Secret{Replication: &secretmanagerpb.Replication{
			Replication: &secretmanagerpb.Replication_Automatic_{Automatic: &secretmanagerpb.Replication_Automatic{}}}},
	})
	if err != nil && status.Code(err) != codes.AlreadyExists {
		return fmt.Errorf("create secret %s: %w", id, err)
	}
	_, err = s.Secrets.AddSecretVersion(ctx, &secretmanagerpb.AddSecretVersionRequest{
		Parent: parent + "/secrets/" + id, Payload: &secretmanagerpb.SecretPayload{Data: value},
	})
	if err != nil {
		return fmt.Errorf("add secret version %s: %w", id, err)
	}
	return nil
}

// lowerTrim normalises an address from a query string.
func lowerTrim(s string) string { return strings.ToLower(strings.TrimSpace(s)) }
