package sandbox

import (
	"errors"
	"net/http"
	"strings"

	"github.com/gmailwatch/gmailwatch/scripts/sandbox/directory"
	"github.com/gmailwatch/gmailwatch/scripts/sandbox/gmailapi"
	"github.com/gmailwatch/gmailwatch/scripts/sandbox/googleauth"
	"github.com/gmailwatch/gmailwatch/scripts/sandbox/iamcredentials"
)

// startWorkspace sets up the Google Workspace tenant of opts.Domain, the
// service account a Workspace admin delegates to (its client id is what the
// admin enters), the functions' runtime identity that the metadata server
// hands tokens for, with roles/iam.serviceAccountTokenCreator on the
// delegated account as Terraform grants it, and the JWT-bearer grant that
// joins them. Without a domain there is none of it.
func (s *Sandbox) startWorkspace(mux *http.ServeMux) {
	if s.opts.Domain == "" {
		return
	}
	project := s.opts.ProjectID
	if project == "" {
		project = "sandbox"
	}
	s.delegated = s.opts.ServiceAccount
	if s.delegated == "" {
		s.delegated = "gmailwatch-mailboxes@" + project + ".iam.gserviceaccount.com"
	}
	s.delegated = strings.ToLower(s.delegated)
	runtime := "gmailwatch-functions@" + project + ".iam.gserviceaccount.com"
	s.IAM = iamcredentials.New(s.opts.Now)
	s.IAM.AddServiceAccount(s.delegated)
	s.IAM.SetRuntime(runtime)
	_ = s.IAM.SetTokenCreator(s.delegated, runtime, true)
	s.Directory = directory.New(s.opts.Domain, s.Auth, s.opts.Now)
	s.Auth.SetDelegation(googleauth.Delegation{
		Verify: func(jwt string) (string, string, []byte, error) {
			v, err := s.IAM.Verify(jwt)
			return v.ServiceAccount, v.ClientID, v.Payload, err
		},
		Authorize: s.Directory.Authorize,
	})
	s.IAM.Register(mux)
	s.Directory.Register(mux)
}

// errNoWorkspace answers workspace calls of a sandbox started without a domain.
var errNoWorkspace = badRequest("the sandbox was started without a Workspace domain (Options.Domain, -domain)")

// ServiceAccount returns the delegated service account and its client id
// (the unique id an admin enters for domain-wide delegation).
func (s *Sandbox) ServiceAccount() (email, clientID string) {
	if s.IAM == nil {
		return "", ""
	}
	return s.delegated, s.IAM.AddServiceAccount(s.delegated)
}

// Runtime returns the functions' runtime identity, whose tokens the
// metadata server hands out.
func (s *Sandbox) Runtime() string {
	if s.IAM == nil {
		return ""
	}
	return s.IAM.Runtime()
}

// AddDirectoryUser adds a user of the domain in orgUnit ("" for the root)
// with a Gmail mailbox.
func (s *Sandbox) AddDirectoryUser(email, orgUnit string, isAdmin bool) error {
	if s.Directory == nil {
		return errNoWorkspace
	}
	if err := s.Directory.AddUser(email, orgUnit, isAdmin); err != nil {
		return err
	}
	if err := s.AddMailbox(email); err != nil {
		var ge *gmailapi.Error
		if !errors.As(err, &ge) || ge.Code != http.StatusConflict {
			return err
		}
	}
	return nil
}

// SuspendUser suspends (or restores) a directory user. Suspension ends the
// user's live tokens and refuses new ones.
func (s *Sandbox) SuspendUser(email string, suspended bool) error {
	if s.Directory == nil {
		return errNoWorkspace
	}
	if err := s.Directory.SetSuspended(email, suspended); err != nil {
		return err
	}
	if suspended {
		s.Auth.RevokeAccount(email)
	}
	return nil
}

// DeleteDirectoryUser deletes a directory user and ends the user's tokens;
// the mailbox stays, as Gmail data outlives the account for a while.
func (s *Sandbox) DeleteDirectoryUser(email string) error {
	if s.Directory == nil {
		return errNoWorkspace
	}
	if err := s.Directory.DeleteUser(email); err != nil {
		return err
	}
	s.Auth.RevokeAccount(email)
	return nil
}

// GrantDelegation grants the delegated service account domain-wide
// delegation of scopes, as an admin does in the Admin console.
func (s *Sandbox) GrantDelegation(scopes ...string) error {
	if s.Directory == nil {
		return errNoWorkspace
	}
	_, id := s.ServiceAccount()
	return s.Directory.GrantDelegation(id, scopes)
}

// WithdrawDelegation deletes the service account's domain-wide delegation.
// Google lets tokens already issued run to their expiry (up to an hour);
// endTokens ends them at once instead.
func (s *Sandbox) WithdrawDelegation(endTokens bool) error {
	if s.Directory == nil {
		return errNoWorkspace
	}
	_, id := s.ServiceAccount()
	if err := s.Directory.WithdrawDelegation(id); err != nil {
		return err
	}
	if endTokens {
		s.Auth.RevokeClient(id)
	}
	return nil
}

// workspaceRoutes are the admin API's Workspace and IAM requests.
func (s *Sandbox) workspaceRoutes() map[string]map[string]func(*http.Request) (int, any, error) {
	return map[string]map[string]func(*http.Request) (int, any, error){
		"/admin/directory/users":   {"POST": s.addDirectoryUser, "DELETE": s.deleteDirectoryUser},
		"/admin/directory/suspend": {"POST": s.suspendUser},
		"/admin/directory/groups":  {"POST": s.addGroup},
		"/admin/directory/members": {"POST": s.setMember},
		"/admin/delegation":        {"GET": s.delegation, "POST": s.grantDelegation, "DELETE": s.withdrawDelegation},
		"/admin/iam/token-creator": {"POST": s.tokenCreator},
	}
}

func (s *Sandbox) addDirectoryUser(r *http.Request) (int, any, error) {
	var req struct {
		Email       string `json:"email"`
		OrgUnitPath string `json:"orgUnitPath"`
		Admin       bool   `json:"admin"`
	}
	if err := decode(r, &req); err != nil {
		return 0, nil, err
	}
	if err := s.AddDirectoryUser(req.Email, req.OrgUnitPath, req.Admin); err != nil {
		return 0, nil, err
	}
	return http.StatusCreated, map[string]any{"email": lowerTrim(req.Email), "id": directory.ID(req.Email)}, nil
}

func (s *Sandbox) deleteDirectoryUser(r *http.Request) (int, any, error) {
	email := lowerTrim(r.URL.Query().Get("email"))
	if email == "" {
		return 0, nil, badRequest("the email query parameter is required")
	}
	return http.StatusOK, map[string]string{"deleted": email}, s.DeleteDirectoryUser(email)
}

func (s *Sandbox) suspendUser(r *http.Request) (int, any, error) {
	var req struct {
		Email     string `json:"email"`
		Suspended bool   `json:"suspended"`
	}
	if err := decode(r, &req); err != nil {
		return 0, nil, err
	}
	return http.StatusOK, req, s.SuspendUser(req.Email, req.Suspended)
}

func (s *Sandbox) addGroup(r *http.Request) (int, any, error) {
	var req struct {
		Email string `json:"email"`
	}
	if err := decode(r, &req); err != nil {
		return 0, nil, err
	}
	if s.Directory == nil {
		return 0, nil, errNoWorkspace
	}
	return http.StatusCreated, req, s.Directory.AddGroup(req.Email)
}

func (s *Sandbox) setMember(r *http.Request) (int, any, error) {
	var req struct {
		Group  string `json:"group"`
		Email  string `json:"email"`
		Remove bool   `json:"remove"`
	}
	if err := decode(r, &req); err != nil {
		return 0, nil, err
	}
	if s.Directory == nil {
		return 0, nil, errNoWorkspace
	}
	return http.StatusOK, req, s.Directory.SetMember(req.Group, req.Email, !req.Remove)
}

func (s *Sandbox) delegation(*http.Request) (int, any, error) {
	if s.Directory == nil {
		return 0, nil, errNoWorkspace
	}
	email, id := s.ServiceAccount()
	return http.StatusOK, map[string]any{
		"serviceAccount": email, "clientId": id, "domain": s.Directory.Domain(), "delegations": s.Directory.Delegations(),
	}, nil
}

func (s *Sandbox) grantDelegation(r *http.Request) (int, any, error) {
	var req struct {
		Scopes []string `json:"scopes"`
	}
	if err := decode(r, &req); err != nil {
		return 0, nil, err
	}
	if err := s.GrantDelegation(req.Scopes...); err != nil {
		return 0, nil, err
	}
	return s.delegation(r)
}

func (s *Sandbox) withdrawDelegation(r *http.Request) (int, any, error) {
	end := r.URL.Query().Get("endTokens")
	if end != "" && end != "true" && end != "false" {
		return 0, nil, badRequest("endTokens must be true or false")
	}
	if err := s.WithdrawDelegation(end == "true"); err != nil {
		return 0, nil, err
	}
	return s.delegation(r)
}

func (s *Sandbox) tokenCreator(r *http.Request) (int, any, error) {
	var req struct {
		ServiceAccount string `json:"serviceAccount"`
		Member         string `json:"member"`
		Grant          bool   `json:"grant"`
	}
	if err := decode(r, &req); err != nil {
		return 0, nil, err
	}
	if s.IAM == nil {
		return 0, nil, errNoWorkspace
	}
	if err := s.IAM.SetTokenCreator(req.ServiceAccount, req.Member, req.Grant); err != nil {
		return 0, nil, badRequest("%v", err)
	}
	return http.StatusOK, req, nil
}

// workspaceEnv adds the endpoints and the service account that delegation
// mode reads, when the sandbox serves a Workspace domain.
func (s *Sandbox) workspaceEnv(env map[string]string) {
	if s.IAM == nil {
		return
	}
	email, _ := s.ServiceAccount()
	env["IAMCREDENTIALS_ENDPOINT"] = s.URL
	env["DIRECTORY_ENDPOINT"] = s.URL + "/"
	env["GCE_METADATA_HOST"] = strings.TrimPrefix(s.URL, "http://")
	env["DELEGATION_SERVICE_ACCOUNT"] = email
}
