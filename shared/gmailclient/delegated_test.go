package gmailclient_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/gmailwatch/gmailwatch/scripts/sandbox"
	"github.com/gmailwatch/gmailwatch/shared/config"
	"github.com/gmailwatch/gmailwatch/shared/gmailclient"
)

// delegationSandbox starts a sandbox serving example.com with two users and
// returns it with a factory in delegation mode pointed at it.
func delegationSandbox(t *testing.T) (*sandbox.Sandbox, *gmailclient.Factory) {
	t.Helper()
	sb, err := sandbox.Start(context.Background(), sandbox.Options{ProjectID: "p", Domain: "example.com"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sb.Close() })
	for _, u := range []string{"ann@example.com", "bo@example.com"} {
		if err := sb.AddDirectoryUser(u, "/", false); err != nil {
			t.Fatal(err)
		}
	}
	env := sb.Env()
	env["OAUTH_CLIENT_ID"] = "unused-in-delegation-mode"
	env["CONNECT_MODE"] = "delegation"
	t.Setenv("GCE_METADATA_HOST", env["GCE_METADATA_HOST"])
	r := config.NewReader(config.FromMap(env))
	settings := gmailclient.ReadSettings(r)
	d := gmailclient.ReadDelegation(r)
	if err := r.Err(); err != nil {
		t.Fatal(err)
	}
	f := gmailclient.NewFactory(settings, nil)
	f.Delegate(d)
	return sb, f
}

// TestDelegatedToken gets a token for a domain user without a key or a
// refresh token (signJwt, then the JWT-bearer grant), and reads the
// mailbox with it; then each refusal Google answers with is classified.
func TestDelegatedToken(t *testing.T) {
	sb, f := delegationSandbox(t)
	ctx := context.Background()
	profile := func(email string) error {
		svc, err := f.ForAddress(ctx, email)
		if err != nil {
			return err
		}
		p, err := svc.Users.GetProfile("me").Context(ctx).Do()
		if err == nil && p.EmailAddress != email {
			t.Errorf("profile of %s is %s's", email, p.EmailAddress)
		}
		return err
	}
	if err := profile("ann@example.com"); err == nil || !errors.Is(err, gmailclient.ErrDelegationRefused) {
		t.Fatalf("before delegation is granted: %v, want ErrDelegationRefused", err)
	}
	if err := sb.GrantDelegation(gmailclient.ScopeMetadata); err != nil {
		t.Fatal(err)
	}
	if err := profile("ann@example.com"); err != nil {
		t.Fatalf("delegated getProfile: %v", err)
	}

	_ = sb.DeleteDirectoryUser("bo@example.com")
	sa, _ := sb.ServiceAccount()
	tests := []struct {
		name       string
		setup      func()
		email      string
		refused    bool // unauthorized_client
		grant      bool // IsInvalidGrant
		retry      bool
		errContain string
	}{
		{"outside the domain", nil, "eve@example.org", true, true, false, "unauthorized_client"},
		{"deleted user", nil, "bo@example.com", false, true, false, "Invalid email or User ID"},
		{"no token creator role", func() { _ = sb.IAM.SetTokenCreator(sa, sb.Runtime(), false) }, "ann@example.com", false, false, false, "iam.serviceAccounts.signJwt"},
		{"token creator back", func() { _ = sb.IAM.SetTokenCreator(sa, sb.Runtime(), true) }, "ann@example.com", false, false, false, ""},
		{"delegation withdrawn", func() { _ = sb.WithdrawDelegation(true) }, "ann@example.com", true, true, false, "unauthorized_client"},
	}
	for _, tc := range tests {
		if tc.setup != nil {
			tc.setup()
		}
		err := profile(tc.email)
		if tc.errContain == "" {
			if err != nil {
				t.Errorf("%s: %v, want success", tc.name, err)
			}
			continue
		}
		switch {
		case err == nil:
			t.Errorf("%s: no error, want %q", tc.name, tc.errContain)
		case errors.Is(err, gmailclient.ErrDelegationRefused) != tc.refused,
			gmailclient.IsInvalidGrant(err) != tc.grant,
			gmailclient.IsRetryable(err) != tc.retry,
			!strings.Contains(err.Error(), tc.errContain):
			t.Errorf("%s: %v: refused %v grant %v retry %v, want %v %v %v and %q", tc.name, err,
				errors.Is(err, gmailclient.ErrDelegationRefused), gmailclient.IsInvalidGrant(err), gmailclient.IsRetryable(err),
				tc.refused, tc.grant, tc.retry, tc.errContain)
		}
	}
}

// TestDelegationSettings checks that delegation mode refuses a metadata
// host off loopback and a missing service account, naming both.
func TestDelegationSettings(t *testing.T) {
	r := config.NewReader(config.FromMap(map[string]string{
		"CONNECT_MODE": "both", "IAMCREDENTIALS_ENDPOINT": "http://127.0.0.1:1", "GCE_METADATA_HOST": "169.254.169.254:80",
	}))
	if gmailclient.ReadDelegation(r) == nil {
		t.Fatal("no delegation in delegation mode")
	}
	err := r.Err()
	if err == nil || !strings.Contains(err.Error(), "GCE_METADATA_HOST") || !strings.Contains(err.Error(), "DELEGATION_SERVICE_ACCOUNT") {
		t.Fatalf("err = %v, want both settings named", err)
	}
	if gmailclient.ReadDelegation(config.NewReader(config.FromMap(nil))) != nil {
		t.Fatal("delegation without delegation mode")
	}
}
