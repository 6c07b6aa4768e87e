package gmailclient_test

import (
	"context"
	"testing"

	"google.golang.org/api/gmail/v1"

	"github.com/gmailwatch/gmailwatch/shared/gmailclient"
	"github.com/gmailwatch/gmailwatch/shared/store"
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
