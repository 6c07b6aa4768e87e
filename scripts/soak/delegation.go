package main

import (
	"context"
	"fmt"
	"time"

	"github.com/gmailwatch/gmailwatch/shared/directory"
	"github.com/gmailwatch/gmailwatch/shared/gmailclient"
	"github.com/gmailwatch/gmailwatch/shared/store"
)

// In delegation mode the soak's users are the org unit /Soak of a
// Workspace domain; the admin the listing acts as sits outside it.
const (
	soakDomain  = "example.com"
	soakAdmin   = "soak.admin@example.com"
	soakOrgUnit = "/Soak"
)

var delegationEnv = map[string]string{
	"CONNECT_MODE": "delegation", "DELEGATION_ADMIN": soakAdmin, "DELEGATION_DOMAIN": soakDomain, "DELEGATION_ORG_UNIT": soakOrgUnit,
}

// delegateAll puts the users in the directory, grants the functions'
// service account domain-wide delegation, as an admin would, and runs renew
// until every user is watched (each run joins what its budget allows).
func (s *soak) delegateAll(ctx context.Context, users *store.Store) error {
	sb := s.st.Sandbox
	if err := sb.AddDirectoryUser(soakAdmin, "/", true); err != nil {
		return err
	}
	for i := range s.cfg.Users {
		email := fmt.Sprintf("soak.user%03d@%s", i, soakDomain)
		if err := sb.AddDirectoryUser(email, soakOrgUnit, false); err != nil {
			return fmt.Errorf("directory user %s: %w", email, err)
		}
		s.emails = append(s.emails, email)
	}
	if err := sb.GrantDelegation(gmailclient.ScopeMetadata, directory.ScopeUsers); err != nil {
		return err
	}
	s.progress("granted domain-wide delegation; renew watches the %d users of %s", s.cfg.Users, soakOrgUnit)
	s.keys = make([]string, len(s.emails))
	for try := 1; ; try++ {
		if _, err := s.st.Renew(ctx); err != nil {
			return err
		}
		waiting := 0
		// Keys derive from Google's account id, not the address: learnt
		// from the store once renew has connected each user.
		for i, email := range s.emails {
			if u, err := users.ByEmail(ctx, email); err != nil || u.Status != store.Active || !u.Delegated {
				waiting++
			} else {
				s.keys[i] = u.Key
			}
		}
		if waiting == 0 {
			return nil
		}
		if try == 10 {
			return fmt.Errorf("%d of %d users not watched after %d renew runs", waiting, s.cfg.Users, try)
		}
		sleep(ctx, time.Second)
	}
}
