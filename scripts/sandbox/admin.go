package sandbox

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/gmailwatch/gmailwatch/scripts/sandbox/gmailapi"
	"github.com/gmailwatch/gmailwatch/scripts/sandbox/googleauth"
)

// adminRoutes lists the admin API: path -> method -> handler. GET /admin/
// answers with this list.
func (s *Sandbox) adminRoutes() map[string]map[string]func(*http.Request) (int, any, error) {
	return map[string]map[string]func(*http.Request) (int, any, error){
		"/admin/mailboxes":     {"GET": s.listMailboxes, "POST": s.addMailbox},
		"/admin/messages":      {"POST": s.deliver, "DELETE": s.deleteMessage},
		"/admin/labels":        {"POST": s.modifyLabels},
		"/admin/drafts":        {"POST": s.saveDraft},
		"/admin/drafts/send":   {"POST": s.sendDraft},
		"/admin/quota":         {"GET": s.quota, "POST": s.setQuota, "DELETE": s.resetQuota},
		"/admin/quota/profile": {"GET": s.quotaProfile},
		"/admin/faults":        {"GET": s.faults, "POST": s.setFaults, "DELETE": s.clearFaults},
		"/admin/revoke":        {"POST": s.revoke},
		"/admin/rename":        {"POST": s.renameMailbox},
		"/admin/oauth":         {"POST": s.oauthBehavior},
		"/admin/id-token":      {"POST": s.idToken},
		"/admin/watch":         {"GET": s.watch},
	}
}

func (s *Sandbox) registerAdmin(mux *http.ServeMux) {
	routes := s.adminRoutes()
	for path, methods := range s.workspaceRoutes() {
		routes[path] = methods
	}
	mux.HandleFunc("/admin/", func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			if v := recover(); v != nil {
				s.opts.Logger.Error("admin handler panic", "path", r.URL.Path, "panic", v)
				adminError(http.StatusInternalServerError, "INTERNAL", "internal error").Respond(w)
			}
		}()
		path := strings.TrimSuffix(r.URL.Path, "/")
		if path == "/admin" && r.Method == http.MethodGet {
			index := map[string][]string{}
			for p, ms := range routes {
				for m := range ms {
					index[p] = append(index[p], m)
				}
			}
			writeJSON(w, http.StatusOK, map[string]any{"routes": index})
			return
		}
		methods, ok := routes[path]
		if !ok {
			adminError(http.StatusNotFound, "NOT_FOUND", "no admin endpoint "+r.URL.Path).Respond(w)
			return
		}
		h, ok := methods[r.Method]
		if !ok {
			adminError(http.StatusMethodNotAllowed, "INVALID_ARGUMENT", r.Method+" is not allowed on "+path).Respond(w)
			return
		}
		code, resp, err := h(r)
		if err != nil {
			var ge *gmailapi.Error
			if !errors.As(err, &ge) {
				ge = adminError(http.StatusInternalServerError, "INTERNAL", err.Error())
			}
			ge.Respond(w)
			return
		}
		writeJSON(w, code, resp)
	})
}

func adminError(code int, status, message string) *gmailapi.Error {
	reason := map[int]string{400: "invalidArgument", 404: "notFound", 405: "methodNotAllowed"}[code]
	if reason == "" {
		reason = "backendError"
	}
	return &gmailapi.Error{Code: code, Status: status, Reason: reason, Message: message}
}

func badRequest(format string, args ...any) *gmailapi.Error {
	return adminError(http.StatusBadRequest, "INVALID_ARGUMENT", fmt.Sprintf(format, args...))
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=UTF-8")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

// decode reads one JSON object with only known fields from r's body.
func decode(r *http.Request, v any) error {
	data, err := io.ReadAll(io.LimitReader(r.Body, 2<<20+1))
	if err != nil {
		return badRequest("reading body: %v", err)
	}
	if len(data) > 2<<20 {
		return badRequest("body larger than 2 MiB")
	}
	dec := json.NewDecoder(strings.NewReader(string(data)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		if errors.Is(err, io.EOF) {
			return badRequest("empty body: want a JSON object")
		}
		return badRequest("malformed JSON body: %v", err)
	}
	if dec.More() {
		return badRequest("malformed JSON body: more than one value")
	}
	return nil
}

// user reads the required user query parameter of a known mailbox.
func (s *Sandbox) user(r *http.Request) (string, error) {
	u := lowerTrim(r.URL.Query().Get("user"))
	if u == "" {
		return "", badRequest("the user query parameter is required")
	}
	if _, err := s.Gmail.HistoryID(u); err != nil {
		return "", err
	}
	return u, nil
}

type mailboxInfo struct {
	Email     string `json:"email"`
	HistoryID uint64 `json:"historyId"`
}

func (s *Sandbox) listMailboxes(*http.Request) (int, any, error) {
	out := []mailboxInfo{}
	for _, e := range s.Gmail.Mailboxes() {
		h, _ := s.Gmail.HistoryID(e)
		out = append(out, mailboxInfo{e, h})
	}
	return http.StatusOK, map[string]any{"mailboxes": out}, nil
}

func (s *Sandbox) addMailbox(r *http.Request) (int, any, error) {
	var req struct {
		Email string `json:"email"`
	}
	if err := decode(r, &req); err != nil {
		return 0, nil, err
	}
	if err := s.AddMailbox(req.Email); err != nil {
		return 0, nil, err
	}
	h, _ := s.Gmail.HistoryID(req.Email)
	return http.StatusCreated, mailboxInfo{lowerTrim(req.Email), h}, nil
}

func (s *Sandbox) deliver(r *http.Request) (int, any, error) {
	var d gmailapi.Delivery
	if err := decode(r, &d); err != nil {
		return 0, nil, err
	}
	got, err := s.Gmail.Deliver(d)
	return http.StatusOK, got, err
}

func (s *Sandbox) deleteMessage(r *http.Request) (int, any, error) {
	u, err := s.user(r)
	if err != nil {
		return 0, nil, err
	}
	id := r.URL.Query().Get("id")
	if id == "" {
		return 0, nil, badRequest("the id query parameter is required")
	}
	h, err := s.Gmail.DeleteMessage(u, id)
	return http.StatusOK, map[string]uint64{"historyId": h}, err
}

func (s *Sandbox) modifyLabels(r *http.Request) (int, any, error) {
	var req struct {
		User           string   `json:"user"`
		ID             string   `json:"id"`
		AddLabelIDs    []string `json:"addLabelIds"`
		RemoveLabelIDs []string `json:"removeLabelIds"`
	}
	if err := decode(r, &req); err != nil {
		return 0, nil, err
	}
	h, err := s.Gmail.ModifyLabels(req.User, req.ID, req.AddLabelIDs, req.RemoveLabelIDs)
	return http.StatusOK, map[string]uint64{"historyId": h}, err
}

func (s *Sandbox) saveDraft(r *http.Request) (int, any, error) {
	var d gmailapi.Draft
	if err := decode(r, &d); err != nil {
		return 0, nil, err
	}
	saved, err := s.Gmail.SaveDraft(d)
	return http.StatusOK, saved, err
}

func (s *Sandbox) sendDraft(r *http.Request) (int, any, error) {
	var req struct {
		User string `json:"user"`
		ID   string `json:"id"`
	}
	if err := decode(r, &req); err != nil {
		return 0, nil, err
	}
	if req.ID == "" {
		return 0, nil, badRequest("the id field is required")
	}
	sent, err := s.Gmail.SendDraft(req.User, req.ID)
	return http.StatusOK, sent, err
}

func (s *Sandbox) quota(r *http.Request) (int, any, error) {
	u := ""
	if r.URL.Query().Has("user") {
		var err error
		if u, err = s.user(r); err != nil {
			return 0, nil, err
		}
	}
	return http.StatusOK, s.Gmail.Usage(u), nil
}

func (s *Sandbox) setQuota(r *http.Request) (int, any, error) {
	var req struct {
		Profile               gmailapi.QuotaProfile `json:"profile"`
		UserUnitsPerMinute    int                   `json:"userUnitsPerMinute"`
		ProjectUnitsPerMinute int                   `json:"projectUnitsPerMinute"`
	}
	if err := decode(r, &req); err != nil {
		return 0, nil, err
	}
	if err := s.Gmail.SetQuota(req.Profile, req.UserUnitsPerMinute, req.ProjectUnitsPerMinute); err != nil {
		return 0, nil, err
	}
	return http.StatusOK, s.Gmail.Quota(), nil
}

func (s *Sandbox) quotaProfile(*http.Request) (int, any, error) {
	return http.StatusOK, s.Gmail.Quota(), nil
}

func (s *Sandbox) resetQuota(*http.Request) (int, any, error) {
	s.Gmail.ResetUsage()
	return http.StatusOK, map[string]any{}, nil
}

func (s *Sandbox) faults(*http.Request) (int, any, error) {
	all := s.Gmail.Faults()
	resp := struct {
		Global *gmailapi.Faults           `json:"global"`
		Users  map[string]gmailapi.Faults `json:"users"`
	}{Users: map[string]gmailapi.Faults{}}
	for u, f := range all {
		if u == "" {
			resp.Global = &f
		} else {
			resp.Users[u] = f
		}
	}
	return http.StatusOK, resp, nil
}

func (s *Sandbox) setFaults(r *http.Request) (int, any, error) {
	var f FaultSpec
	if err := decode(r, &f); err != nil {
		return 0, nil, err
	}
	if err := s.SetFaults(f); err != nil {
		return 0, nil, err
	}
	return s.faults(r)
}

func (s *Sandbox) clearFaults(r *http.Request) (int, any, error) {
	u := ""
	if r.URL.Query().Has("user") {
		var err error
		if u, err = s.user(r); err != nil {
			return 0, nil, err
		}
	}
	s.ClearFaults(u)
	return s.faults(r)
}

func (s *Sandbox) revoke(r *http.Request) (int, any, error) {
	var req struct {
		Email string `json:"email"`
	}
	if err := decode(r, &req); err != nil {
		return 0, nil, err
	}
	if _, err := s.Gmail.HistoryID(req.Email); err != nil {
		return 0, nil, err
	}
	s.Revoke(req.Email)
	return http.StatusOK, map[string]string{"revoked": lowerTrim(req.Email)}, nil
}

func (s *Sandbox) oauthBehavior(r *http.Request) (int, any, error) {
	var req struct {
		AutoApprove      bool     `json:"autoApprove"`
		Deny             bool     `json:"deny"`
		GrantScopes      []string `json:"grantScopes"`
		OmitRefreshToken bool     `json:"omitRefreshToken"`
	}
	if err := decode(r, &req); err != nil {
		return 0, nil, err
	}
	if req.Deny && !req.AutoApprove {
		return 0, nil, badRequest("deny needs autoApprove: without it the consent page asks the person")
	}
	s.Auth.SetBehavior(googleauth.Behavior{AutoApprove: req.AutoApprove, Deny: req.Deny, GrantScopes: req.GrantScopes, OmitRefreshToken: req.OmitRefreshToken})
	return http.StatusOK, req, nil
}

// idToken stands in for `gcloud auth print-identity-token` and the metadata
// server's identity endpoint: a signed ID token naming email, for audience.
func (s *Sandbox) idToken(r *http.Request) (int, any, error) {
	var req struct {
		Email    string `json:"email"`
		Audience string `json:"audience"`
	}
	if err := decode(r, &req); err != nil {
		return 0, nil, err
	}
	if !strings.Contains(req.Email, "@") || req.Audience == "" {
		return 0, nil, badRequest("give the caller's email and the audience (the URL it calls)")
	}
	return http.StatusOK, map[string]string{"idToken": s.Auth.IDToken(req.Email, req.Audience)}, nil
}

func (s *Sandbox) watch(r *http.Request) (int, any, error) {
	u, err := s.user(r)
	if err != nil {
		return 0, nil, err
	}
	st, err := s.Gmail.Watch(u)
	return http.StatusOK, st, err
}
