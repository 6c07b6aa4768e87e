package gmailclient_test

import (
	"context"
	"sync"
	"testing"

	"google.golang.org/api/gmail/v1"

	"github.com/gmailwatch/gmailwatch/scripts/sandbox"
	"github.com/gmailwatch/gmailwatch/shared/config"
	"github.com/gmailwatch/gmailwatch/shared/gmailclient"
	"github.com/gmailwatch/gmailwatch/shared/store"
	"github.com/gmailwatch/gmailwatch/shared/vault"
)

// A delegated user's token source is cached per user and address: once the
// record carries a new address the client acts as it, and the source made
// for the old address is gone, so a record still naming the old address
// gets a fresh one, which Google refuses (the old address is only an
// alias now).
func TestDelegatedSourceIsKeyedByAddress(t *testing.T) {
	sb, f := delegationSandbox(t)
	ctx := context.Background()
	if err := sb.GrantDelegation(gmailclient.ScopeMetadata); err != nil {
		t.Fatal(err)
	}
	old := store.User{Key: "k-ann", Email: "ann@example.com", Delegated: true}
	profile := func(u store.User) (addr string, err error) {
		err = f.Do(ctx, u, func(svc *gmail.Service) error {
			p, err := svc.Users.GetProfile("me").Context(ctx).Do()
			if err == nil {
				addr = p.EmailAddress
			}
			return err
		})
		return addr, err
	}
	if got, err := profile(old); err != nil || got != "ann@example.com" {
		t.Fatalf("profile before the rename: %q, %v", got, err)
	}
	if err := sb.RenameMailbox("ann@example.com", "ann.lee@example.com"); err != nil {
		t.Fatal(err)
	}
	renamed := old
	renamed.Email = "ann.lee@example.com"
	if got, err := profile(renamed); err != nil || got != "ann.lee@example.com" {
		t.Fatalf("profile with the new address: %q, %v", got, err)
	}
	if got, err := profile(old); !gmailclient.IsInvalidGrant(err) {
		t.Fatalf("profile with the old address after the new one was used: %q, %v; want a fresh source, refused with invalid_grant", got, err)
	}
}

// Syncs of one user on one instance, many at once and one after another,
// share the user's token source: Secret Manager is read once for the
// refresh token (and once for the client secret), and the refresh token is
// exchanged once, as the access token lives an hour.
func TestTokenSourceSharedAcrossSyncs(t *testing.T) {
	ctx := context.Background()
	sb, err := sandbox.Start(ctx, sandbox.Options{ProjectID: "p", ClientID: "cid", ClientSecret: "csecret"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sb.Close() })
	const email = "cy@example.com"
	if err := sb.AddMailbox(email); err != nil {
		t.Fatal(err)
	}
	rt, err := sb.Connect(email, gmailclient.ScopeMetadata)
	if err != nil {
		t.Fatal(err)
	}
	u := store.User{Key: "k-cy", Email: email}
	for id, v := range map[string]string{"oauth-client-secret": "csecret", vault.RefreshPrefix + u.Key: rt} {
		if err := sb.PutSecret(ctx, "p", id, []byte(v)); err != nil {
			t.Fatal(err)
		}
	}
	v, err := vault.New(ctx, "p", sb.SecretManagerAddr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { v.Close() })
	r := config.NewReader(config.FromMap(sb.Env()))
	settings := gmailclient.ReadSettings(r)
	if err := r.Err(); err != nil {
		t.Fatal(err)
	}
	f := gmailclient.NewFactory(settings, v)
	syncs := func(n int) {
		var wg sync.WaitGroup
		errs := make(chan error, n)
		for range n {
			wg.Go(func() {
				errs <- f.Do(ctx, u, func(svc *gmail.Service) error {
					_, err := svc.Users.GetProfile("me").Context(ctx).Do()
					return err
				})
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Fatal(err)
			}
		}
	}
	syncs(20) // at once, on a cold instance
	syncs(1)
	syncs(5)
	if got := sb.Secrets.Accesses("projects/p/secrets/" + vault.RefreshPrefix + u.Key); got != 1 {
		t.Errorf("refresh token read %d times for 26 syncs, want 1", got)
	}
	if got := sb.Secrets.Accesses("projects/p/secrets/oauth-client-secret"); got != 1 {
		t.Errorf("client secret read %d times, want 1", got)
	}
	if got := sb.Auth.Refreshes(email); got != 1 {
		t.Errorf("refresh token exchanged %d times for 26 syncs, want 1", got)
	}
	f.Forget(u.Key) // after a reauth: the next sync reads the new token
	syncs(3)
	if got := sb.Secrets.Accesses("projects/p/secrets/" + vault.RefreshPrefix + u.Key); got != 2 {
		t.Errorf("refresh token read %d times after Forget, want 2", got)
	}
}
