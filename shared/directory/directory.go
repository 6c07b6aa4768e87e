// Package directory lists the mailboxes a delegation-mode deployment
// watches: every user of a Google Workspace domain, the users of one org
// unit (and the units under it), or the members of one Google group, read
// with the Admin SDK Directory API through domain-wide delegation, acting
// as an admin of the domain with a read-only scope. A listing is complete
// or an error: the renew run stops watching users missing from it, so a
// page that failed must never look like users who left.
package directory

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"

	"golang.org/x/oauth2"
	admin "google.golang.org/api/admin/directory/v1"
	"google.golang.org/api/googleapi"
	"google.golang.org/api/option"

	"github.com/gmailwatch/gmailwatch/shared/config"
)

// Read-only scopes the listing asks for, and an admin grants.
const (
	ScopeUsers   = admin.AdminDirectoryUserReadonlyScope
	ScopeMembers = admin.AdminDirectoryGroupMemberReadonlyScope
)

// Settings say which mailboxes, and whom to ask.
type Settings struct {
	Admin    string // DELEGATION_ADMIN: an admin of the domain the listing acts as
	Domain   string // DELEGATION_DOMAIN: the Workspace domain
	OrgUnit  string // DELEGATION_ORG_UNIT: only this org unit and those under it, e.g. /Support
	Group    string // DELEGATION_GROUP: only the members of this group
	Endpoint string // DIRECTORY_ENDPOINT: "" for Google's
}

// ReadSettings reads the listing settings from r; with on (delegation
// mode) the admin and the domain are required. They are looked up either
// way, so a reader records them all.
func ReadSettings(r *config.Reader, on bool) Settings {
	s := Settings{
		Admin:    strings.ToLower(r.String("DELEGATION_ADMIN", "")),
		Domain:   strings.ToLower(r.String("DELEGATION_DOMAIN", "")),
		OrgUnit:  r.String("DELEGATION_ORG_UNIT", ""),
		Group:    strings.ToLower(r.String("DELEGATION_GROUP", "")),
		Endpoint: r.URL("DIRECTORY_ENDPOINT", ""),
	}
	if !on {
		return Settings{}
	}
	for name, v := range map[string]string{"DELEGATION_ADMIN": s.Admin, "DELEGATION_DOMAIN": s.Domain} {
		if v == "" {
			r.Problem(name, "missing")
		}
	}
	switch {
	case s.OrgUnit != "" && s.Group != "":
		r.Problem("DELEGATION_GROUP", "set an org unit or a group, not both")
	case s.OrgUnit != "" && (!strings.HasPrefix(s.OrgUnit, "/") || strings.ContainsAny(s.OrgUnit, `'"`)):
		r.Problem("DELEGATION_ORG_UNIT", "%q is not an org unit path like /Support", s.OrgUnit)
	}
	for name, addr := range map[string]string{"DELEGATION_ADMIN": s.Admin, "DELEGATION_GROUP": s.Group} {
		if addr != "" && !s.InDomain(addr) {
			r.Problem(name, "%q is not an address of DELEGATION_DOMAIN %q", addr, s.Domain)
		}
	}
	return s
}

// InDomain reports whether email is an address of the domain.
func (s Settings) InDomain(email string) bool {
	_, d, ok := strings.Cut(strings.ToLower(email), "@")
	return ok && s.Domain != "" && d == s.Domain
}

// Scope is the one read-only scope the listing needs.
func (s Settings) Scope() string {
	if s.Group != "" {
		return ScopeMembers
	}
	return ScopeUsers
}

// Member is one mailbox the listing found.
type Member struct {
	Email     string // lower case
	ID        string // Google's account id (the sub of its ID tokens); "" for members of an unknown status
	Suspended bool   // suspended or archived: no longer to be watched
}

// Lister lists the configured mailboxes.
type Lister struct {
	set    Settings
	tokens func(ctx context.Context) (oauth2.TokenSource, error)

	mu  sync.Mutex
	svc *admin.Service
}

// New returns a Lister calling the Directory API with token sources from
// tokens, acting as the admin with Scope. A token source is kept until the
// API answers 401 (a token ended early, as when delegation is withdrawn),
// then replaced once.
func New(set Settings, tokens func(ctx context.Context) (oauth2.TokenSource, error)) *Lister {
	return &Lister{set: set, tokens: tokens}
}

func (l *Lister) service(ctx context.Context, fresh bool) (*admin.Service, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.svc != nil && !fresh {
		return l.svc, nil
	}
	ts, err := l.tokens(ctx)
	if err != nil {
		return nil, err
	}
	// Through an oauth2 client, not option.WithTokenSource, which would hide
	// the token endpoint's answer that gmailclient classifies.
	opts := []option.ClientOption{option.WithHTTPClient(oauth2.NewClient(context.WithoutCancel(ctx), ts))}
	if l.set.Endpoint != "" {
		opts = append(opts, option.WithEndpoint(l.set.Endpoint))
	}
	if l.svc, err = admin.NewService(ctx, opts...); err != nil {
		return nil, fmt.Errorf("directory client: %w", err)
	}
	return l.svc, nil
}

// Mailboxes returns every mailbox of the domain, org unit or group, reading
// all pages. Group members outside the domain are left out: delegation
// cannot act for them.
func (l *Lister) Mailboxes(ctx context.Context) ([]Member, error) {
	for try := 0; ; try++ {
		svc, err := l.service(ctx, try > 0)
		if err != nil {
			return nil, err
		}
		out, err := l.list(ctx, svc)
		var ge *googleapi.Error
		if try > 0 || !errors.As(err, &ge) || ge.Code != http.StatusUnauthorized {
			return out, err
		}
	}
}

func (l *Lister) list(ctx context.Context, svc *admin.Service) ([]Member, error) {
	var out []Member
	if l.set.Group != "" {
		err := svc.Members.List(l.set.Group).IncludeDerivedMembership(true).MaxResults(200).Pages(ctx, func(p *admin.Members) error {
			for _, m := range p.Members {
				if m.Type == "USER" && l.set.InDomain(m.Email) {
					out = append(out, Member{Email: strings.ToLower(m.Email), ID: m.Id, Suspended: m.Status != "ACTIVE"})
				}
			}
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("members.list of %s: %w", l.set.Group, err)
		}
		return out, nil
	}
	// The org unit is matched here rather than with query=orgUnitPath=…:
	// Google's search results may lag changes by up to 36 hours, while the
	// listing without a query shows each user's current org unit and status.
	unit := strings.TrimSuffix(l.set.OrgUnit, "/")
	err := svc.Users.List().Domain(l.set.Domain).MaxResults(500).Pages(ctx, func(p *admin.Users) error {
		for _, u := range p.Users {
			if unit == "" || u.OrgUnitPath == unit || strings.HasPrefix(u.OrgUnitPath, unit+"/") {
				out = append(out, Member{Email: strings.ToLower(u.PrimaryEmail), ID: u.Id, Suspended: u.Suspended || u.Archived})
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("users.list of %s: %w", l.set.Domain, err)
	}
	return out, nil
}
