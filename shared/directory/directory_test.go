package directory_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"

	"golang.org/x/oauth2"

	"github.com/gmailwatch/gmailwatch/scripts/sandbox"
	"github.com/gmailwatch/gmailwatch/shared/config"
	"github.com/gmailwatch/gmailwatch/shared/directory"
	"github.com/gmailwatch/gmailwatch/shared/gmailclient"
)

// TestMailboxes lists a domain of 520 users (more than one page of 500),
// an org unit and a group of 210 members (more than one page of 200) from
// the sandbox's Directory API through delegation, as the renew run does.
func TestMailboxes(t *testing.T) {
	ctx := context.Background()
	sb, err := sandbox.Start(ctx, sandbox.Options{ProjectID: "p", Domain: "example.com"})
	if err != nil {
		t.Fatal(err)
	}
	defer sb.Close()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(sb.AddDirectoryUser("admin@example.com", "/", true))
	must(sb.AddDirectoryUser("plain@example.com", "/", false))
	must(sb.Directory.AddGroup("support@example.com"))
	for i := range 518 {
		ou := "/Sales"
		switch {
		case i < 3:
			ou = "/Support"
		case i < 5:
			ou = "/Support/Tier2"
		case i < 6:
			ou = "/SupportX"
		}
		email := fmt.Sprintf("u%03d@example.com", i)
		must(sb.AddDirectoryUser(email, ou, false))
		if i < 209 {
			must(sb.Directory.SetMember("support@example.com", email, true))
		}
	}
	must(sb.Directory.SetMember("support@example.com", "friend@example.org", true)) // an outsider
	must(sb.SuspendUser("u001@example.com", true))
	must(sb.DeleteDirectoryUser("u002@example.com")) // leaves the group too
	must(sb.GrantDelegation(gmailclient.ScopeMetadata, directory.ScopeUsers, directory.ScopeMembers))

	env := sb.Env()
	t.Setenv("GCE_METADATA_HOST", env["GCE_METADATA_HOST"])
	list := func(extra map[string]string) ([]directory.Member, error) {
		m := map[string]string{"CONNECT_MODE": "delegation", "DELEGATION_ADMIN": "admin@example.com", "DELEGATION_DOMAIN": "example.com"}
		for k, v := range env {
			m[k] = v
		}
		for k, v := range extra {
			m[k] = v
		}
		r := config.NewReader(config.FromMap(m))
		set := directory.ReadSettings(r, true)
		d := gmailclient.ReadDelegation(r)
		must(r.Err())
		l := directory.New(set, func(ctx context.Context) (oauth2.TokenSource, error) {
			return d.TokenSource(ctx, set.Admin, set.Scope())
		})
		return l.Mailboxes(ctx)
	}
	emails := func(ms []directory.Member) (all, suspended []string) {
		for _, m := range ms {
			all = append(all, m.Email)
			if m.Suspended {
				suspended = append(suspended, m.Email)
			}
			if m.ID == "" {
				t.Errorf("%s has no id", m.Email)
			}
		}
		return all, suspended
	}

	domain, err := list(nil)
	must(err)
	all, suspended := emails(domain)
	if len(all) != 519 || slices.Contains(all, "u002@example.com") || !slices.Equal(suspended, []string{"u001@example.com"}) {
		t.Errorf("domain: %d users, suspended %v; want 519 without the deleted one, u001 suspended", len(all), suspended)
	}

	ou, err := list(map[string]string{"DELEGATION_ORG_UNIT": "/Support"})
	must(err)
	if all, _ := emails(ou); !slices.Equal(all, []string{"u000@example.com", "u001@example.com", "u003@example.com", "u004@example.com"}) {
		t.Errorf("org unit /Support: %v, want u000, u001, u003, u004 (Tier2 included, /SupportX not)", all)
	}

	group, err := list(map[string]string{"DELEGATION_GROUP": "support@example.com"})
	must(err)
	all, suspended = emails(group)
	if len(all) != 208 || slices.Contains(all, "friend@example.org") || slices.Contains(all, "u002@example.com") || !slices.Equal(suspended, []string{"u001@example.com"}) {
		t.Errorf("group: %d members, suspended %v; want 208 without the outsider or the deleted user, u001 suspended", len(all), suspended)
	}

	// Refusals: a non-admin subject, and a scope the admin did not delegate.
	if _, err := list(map[string]string{"DELEGATION_ADMIN": "plain@example.com"}); err == nil || !strings.Contains(err.Error(), "Not Authorized") {
		t.Errorf("non-admin subject: %v, want 403 Not Authorized", err)
	}
	must(sb.GrantDelegation(gmailclient.ScopeMetadata))
	if _, err := list(nil); !gmailclient.IsInvalidGrant(err) {
		t.Errorf("directory scope not delegated: %v, want a refused delegation", err)
	}
}

// TestSettings rejects an org unit with a group, a relative org unit and
// addresses outside the domain, naming each.
func TestSettings(t *testing.T) {
	tests := []struct {
		env  map[string]string
		want []string
	}{
		{map[string]string{"DELEGATION_ADMIN": "a@example.com", "DELEGATION_DOMAIN": "example.com", "DELEGATION_ORG_UNIT": "/S", "DELEGATION_GROUP": "g@example.com"}, []string{"not both"}},
		{map[string]string{"DELEGATION_ADMIN": "a@example.com", "DELEGATION_DOMAIN": "example.com", "DELEGATION_ORG_UNIT": "Support"}, []string{"DELEGATION_ORG_UNIT"}},
		{map[string]string{"DELEGATION_ADMIN": "a@example.org", "DELEGATION_DOMAIN": "example.com", "DELEGATION_GROUP": "g@example.net"}, []string{"DELEGATION_ADMIN", "DELEGATION_GROUP"}},
		{map[string]string{}, []string{"DELEGATION_ADMIN: missing", "DELEGATION_DOMAIN: missing"}},
	}
	for _, tc := range tests {
		r := config.NewReader(config.FromMap(tc.env))
		directory.ReadSettings(r, true)
		err := r.Err()
		for _, w := range tc.want {
			if err == nil || !strings.Contains(err.Error(), w) {
				t.Errorf("%v: err = %v, want it to name %q", tc.env, err, w)
			}
		}
	}
}
