package consent_test

import (
	"context"
	"encoding/base64"
	"errors"
	"html"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/gmailwatch/gmailwatch/functions/consent"
	"github.com/gmailwatch/gmailwatch/functions/renew"
	"github.com/gmailwatch/gmailwatch/scripts/sandbox/gmailapi"
	"github.com/gmailwatch/gmailwatch/scripts/sandbox/googleauth"
	"github.com/gmailwatch/gmailwatch/scripts/sandbox/secrets"
	"github.com/gmailwatch/gmailwatch/scripts/testenv"
	"github.com/gmailwatch/gmailwatch/shared/config"
	"github.com/gmailwatch/gmailwatch/shared/disconnect"
	"github.com/gmailwatch/gmailwatch/shared/events"
	"github.com/gmailwatch/gmailwatch/shared/gmailclient"
	"github.com/gmailwatch/gmailwatch/shared/gmailsync"
	"github.com/gmailwatch/gmailwatch/shared/lifecycle"
	"github.com/gmailwatch/gmailwatch/shared/store"
)

func TestConnectStoresTokenWatchesAndRecordsUser(t *testing.T) {
	s := newStack(t)
	s.auth.SetBehavior(googleauth.Behavior{AutoApprove: true})
	cookie, cb := s.begin(t, "/connect?login_hint="+alice)
	status, body := s.finish(t, cb, cookie)
	if status != http.StatusOK || !strings.Contains(body, `id="connected"`) || !strings.Contains(body, alice) {
		t.Fatalf("callback: status %d, want 200 and the connected page naming %s:\n%s", status, alice, body)
	}
	ctx := context.Background()
	key := s.key(alice)

	watch, err := s.gmail.Watch(alice)
	if err != nil {
		t.Fatal(err)
	}
	if !watch.Active || watch.TopicName != s.cfg.Watch.Topic || !slices.Equal(watch.LabelIDs, []string{"INBOX"}) || watch.LabelFilterBehavior != "INCLUDE" {
		t.Errorf("sandbox watch = %+v, want active on %s for INBOX, INCLUDE", watch, s.cfg.Watch.Topic)
	}

	u, err := s.users.Get(ctx, key)
	if err != nil {
		t.Fatalf("user record: %v", err)
	}
	if u.Status != store.Active || u.Email != alice || u.Cursor != int64(watch.HistoryID) ||
		!slices.Equal(u.Labels, []string{"INBOX"}) || u.LabelFilter != "include" ||
		!u.WatchExpiration.Equal(watch.Expiration.Truncate(time.Millisecond)) || u.RenewAt.IsZero() {
		t.Errorf("user = %+v, want active %s with cursor %d, INBOX include, expiration %v", u, alice, watch.HistoryID, watch.Expiration)
	}
	// The safety net's first sync of a new connection is due RECONCILE_AFTER
	// after it, as after any sync: a user whose first notifications Gmail
	// drops waits no longer than that.
	if due := u.SyncDueAt.Sub(u.ConnectedAt); due < s.cfg.Watch.ReconcileAfter-time.Minute || due > s.cfg.Watch.ReconcileAfter+time.Minute {
		t.Errorf("first safety-net sync due %v after connecting, want RECONCILE_AFTER (%v)", due, s.cfg.Watch.ReconcileAfter)
	}

	versions := s.tokenVersions(alice)
	if len(versions) != 1 || versions[0].State != "ENABLED" || !strings.HasPrefix(string(versions[0].Data), "1//") {
		t.Fatalf("refresh token secret versions = %d, want one enabled refresh token", len(versions))
	}
	s.seen.add(string(versions[0].Data))

	got := s.awaitEvents(t, 1)
	want := events.Event{Version: events.Version, Type: events.UserConnected, User: key, EmailAddress: alice, HistoryID: watch.HistoryID}
	if e := got[0]; e.Type != want.Type || e.User != want.User || e.EmailAddress != want.EmailAddress || e.HistoryID != want.HistoryID || e.ID == "" {
		t.Errorf("event = %+v, want %+v", e, want)
	}

	// The same answer again is a replay: refused, and nothing changes.
	before := s.snapshot(t)
	if status, _ := s.finish(t, cb, cookie); status != http.StatusBadRequest {
		t.Errorf("replayed callback: status %d, want 400", status)
	}
	s.unchanged(t, before)
}

func TestStartRedirectsOnlyToTheAuthorizationEndpoint(t *testing.T) {
	s := newStack(t)
	callback := s.url + consent.CallbackPath
	tests := []struct {
		path      string
		wantScope string
		wantQuery map[string]string // beyond client_id, redirect_uri, response_type, state and the S256 challenge
	}{
		{"/connect", gmailclient.ScopeMetadata + " openid email",
			map[string]string{"access_type": "offline", "prompt": "consent", "include_granted_scopes": ""}},
		{"/connect?login_hint=" + alice, gmailclient.ScopeMetadata + " openid email",
			map[string]string{"access_type": "offline", "prompt": "consent", "login_hint": alice}},
		{"/connect?next=https://evil.example/&redirect_uri=https://evil.example/cb&scope=https://mail.google.com/", gmailclient.ScopeMetadata + " openid email",
			map[string]string{"access_type": "offline"}},
		{"/disconnect", "openid email", map[string]string{"prompt": "select_account", "access_type": ""}},
		{"/disconnect?next=https://evil.example/&login_hint=" + alice, "openid email", map[string]string{"login_hint": alice, "access_type": ""}},
	}
	for _, tc := range tests {
		t.Run(tc.path, func(t *testing.T) {
			resp := s.get(t, s.url+tc.path, nil)
			loc, err := url.Parse(resp.Header.Get("Location"))
			if resp.StatusCode != http.StatusFound || err != nil {
				t.Fatalf("status %d, Location %q: want 302 to the authorization endpoint", resp.StatusCode, resp.Header.Get("Location"))
			}
			if got := loc.Scheme + "://" + loc.Host + loc.Path; got != s.cfg.OAuth.AuthURL || strings.Contains(loc.String(), "evil") {
				t.Errorf("redirect to %s, want only %s", loc, s.cfg.OAuth.AuthURL)
			}
			q := loc.Query()
			want := map[string]string{"client_id": clientID, "redirect_uri": callback, "response_type": "code",
				"scope": tc.wantScope, "code_challenge_method": "S256", "code_verifier": ""}
			for k, v := range tc.wantQuery {
				want[k] = v
			}
			for k, v := range want {
				if q.Get(k) != v {
					t.Errorf("%s = %q, want %q", k, q.Get(k), v)
				}
			}
			if len(q.Get("state")) < 43 || len(q.Get("code_challenge")) != 43 {
				t.Errorf("state %q or code_challenge %q missing or short", q.Get("state"), q.Get("code_challenge"))
			}
			cookies := resp.Cookies()
			if len(cookies) != 1 {
				t.Fatalf("cookies = %v, want the state cookie", cookies)
			}
			c := cookies[0]
			if !c.HttpOnly || c.SameSite != http.SameSiteLaxMode || c.Path != consent.CallbackPath || c.MaxAge != 600 || c.Secure {
				t.Errorf("cookie %s: HttpOnly %v SameSite %v Path %q MaxAge %d Secure %v; want HttpOnly, Lax, %s, 600, not Secure on loopback http",
					c.Name, c.HttpOnly, c.SameSite, c.Path, c.MaxAge, c.Secure, consent.CallbackPath)
			}
			if strings.Contains(loc.String(), c.Value) || strings.Contains(c.Value, q.Get("code_challenge")) {
				t.Error("the cookie value travels in the URL, or the cookie carries the challenge instead of the verifier")
			}
		})
	}
}

func TestRefusedCallbacksStoreNothing(t *testing.T) {
	approve := googleauth.Behavior{AutoApprove: true}
	tests := []struct {
		name     string
		behavior googleauth.Behavior
		faults   *gmailapi.Faults
		// prepare returns the callback URL and cookie to present.
		prepare    func(t *testing.T, s *stack) (*url.URL, *http.Cookie)
		wantStatus int
		wantPage   string
	}{
		{"missing state", approve, nil, func(t *testing.T, s *stack) (*url.URL, *http.Cookie) {
			c, cb := s.begin(t, "/connect")
			return withQuery(cb, "state", ""), c
		}, 400, "error"},
		{"missing cookie", approve, nil, func(t *testing.T, s *stack) (*url.URL, *http.Cookie) {
			_, cb := s.begin(t, "/connect")
			return cb, nil
		}, 400, "error"},
		{"state mismatch", approve, nil, func(t *testing.T, s *stack) (*url.URL, *http.Cookie) {
			_, cb := s.begin(t, "/connect")
			other, _ := s.begin(t, "/connect")
			return cb, other
		}, 400, "error"},
		{"tampered signature", approve, nil, func(t *testing.T, s *stack) (*url.URL, *http.Cookie) {
			c, cb := s.begin(t, "/connect")
			payload, sig, _ := strings.Cut(c.Value, ".")
			c.Value = payload + "." + flip(sig)
			return cb, c
		}, 400, "error"},
		{"tampered payload", approve, nil, func(t *testing.T, s *stack) (*url.URL, *http.Cookie) {
			c, cb := s.begin(t, "/connect")
			payload, sig, _ := strings.Cut(c.Value, ".")
			body, _ := base64.RawURLEncoding.DecodeString(payload)
			body = []byte(strings.Replace(string(body), `"f":"connect"`, `"f":"disconnect"`, 1))
			c.Value = base64.RawURLEncoding.EncodeToString(body) + "." + sig
			return cb, c
		}, 400, "error"},
		{"expired state", approve, nil, func(t *testing.T, s *stack) (*url.URL, *http.Cookie) {
			c, cb := s.begin(t, "/connect")
			s.clock.Advance(10*time.Minute + time.Second)
			return cb, c
		}, 400, "error"},
		{"replayed state", approve, nil, func(t *testing.T, s *stack) (*url.URL, *http.Cookie) {
			c, cb := s.begin(t, "/connect")
			if status, _ := s.finish(t, cb, c); status != http.StatusOK {
				t.Fatalf("first callback: status %d, want 200", status)
			}
			return cb, c
		}, 400, "error"},
		// A denial exchanges no code, so its state is not recorded: shown
		// again, it is denied again, and still nothing is stored.
		{"replayed denial", googleauth.Behavior{AutoApprove: true, Deny: true}, nil, func(t *testing.T, s *stack) (*url.URL, *http.Cookie) {
			c, cb := s.begin(t, "/connect")
			if status, _ := s.finish(t, cb, c); status != http.StatusForbidden {
				t.Fatalf("first callback: status %d, want 403", status)
			}
			return cb, c
		}, 403, "denied"},
		{"replayed code", approve, nil, func(t *testing.T, s *stack) (*url.URL, *http.Cookie) {
			// A used code, presented again with a fresh state and verifier as
			// an attacker holding it would: the token endpoint refuses.
			c1, cb1 := s.begin(t, "/connect")
			if status, _ := s.finish(t, cb1, c1); status != http.StatusOK {
				t.Fatalf("connect: status %d", status)
			}
			c2, cb2 := s.begin(t, "/connect")
			return withQuery(cb2, "code", cb1.Query().Get("code")), c2
		}, 400, "error"},
		{"PKCE mismatch", approve, nil, func(t *testing.T, s *stack) (*url.URL, *http.Cookie) {
			_, cb1 := s.begin(t, "/connect")
			c2, cb2 := s.begin(t, "/connect")
			return withQuery(cb2, "code", cb1.Query().Get("code")), c2
		}, 400, "error"},
		{"access denied", googleauth.Behavior{AutoApprove: true, Deny: true}, nil, begin("/connect"), 403, "denied"},
		{"scope not granted", googleauth.Behavior{AutoApprove: true, GrantScopes: []string{}}, nil, begin("/connect"), 403, "denied"},
		{"no refresh token", googleauth.Behavior{AutoApprove: true, OmitRefreshToken: true}, nil, begin("/connect"), 502, "error"},
		{"other authorization error", approve, nil, func(t *testing.T, s *stack) (*url.URL, *http.Cookie) {
			c, cb := s.begin(t, "/connect")
			return withQuery(withQuery(cb, "code", ""), "error", "server_error"), c
		}, 400, "error"},
		{"no code", approve, nil, func(t *testing.T, s *stack) (*url.URL, *http.Cookie) {
			c, cb := s.begin(t, "/connect")
			return withQuery(cb, "code", ""), c
		}, 400, "error"},
		{"foreign redirect target", googleauth.Behavior{AutoApprove: true, Deny: true}, nil, func(t *testing.T, s *stack) (*url.URL, *http.Cookie) {
			c, cb := s.begin(t, "/connect?next=https://evil.example/")
			return withQuery(cb, "next", "https://evil.example/"), c
		}, 403, "denied"},
		{"getProfile fails", approve, &gmailapi.Faults{ErrorRate: 1, ErrorCodes: []int{500}, ErrorMethods: []string{gmailapi.GetProfile}},
			begin("/connect"), 500, "error"},
		{"watch fails on first connect", approve, &gmailapi.Faults{ErrorRate: 1, ErrorCodes: []int{503}, ErrorMethods: []string{gmailapi.WatchMethod}},
			begin("/connect"), 500, "error"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := newStack(t)
			s.auth.SetBehavior(tc.behavior)
			cb, cookie := tc.prepare(t, s)
			if tc.faults != nil {
				if err := s.gmail.SetFaults(alice, *tc.faults); err != nil {
					t.Fatal(err)
				}
			}
			before := s.snapshot(t)
			status, body := s.finish(t, cb, cookie)
			if status != tc.wantStatus || !strings.Contains(body, `id="`+tc.wantPage+`"`) {
				t.Errorf("status %d, want %d with the %s page:\n%s", status, tc.wantStatus, tc.wantPage, body)
			}
			s.unchanged(t, before)
			if !s.logs.Contains("callback") {
				t.Error("the refusal was not logged")
			}
		})
	}
}

func TestReconnectKeepsOneRecordOneSecretAndTheCursor(t *testing.T) {
	s := newStack(t)
	ctx := context.Background()
	key := s.key(alice)
	s.connect(t)
	first := s.tokenVersions(alice)[0].Data
	// Notify has announced far beyond the watch's history id meanwhile.
	u, err := s.users.Update(ctx, key, func(u *store.User) error { u.Cursor += 1_000_000; return nil })
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.gmail.Deliver(gmailapi.Delivery{To: alice, Subject: "meanwhile"}); err != nil {
		t.Fatal(err)
	}
	s.connect(t)

	users, err := s.users.List(ctx, "", 10)
	if err != nil {
		t.Fatal(err)
	}
	watch, _ := s.gmail.Watch(alice)
	if len(users) != 1 || users[0].Cursor != u.Cursor || users[0].PendingHistoryID != int64(watch.HistoryID) || users[0].Status != store.Active {
		t.Errorf("users = %+v, want one active record with cursor %d kept and pending %d", users, u.Cursor, watch.HistoryID)
	}
	versions := s.tokenVersions(alice)
	if len(versions) != 2 || versions[0].State != "DESTROYED" || versions[1].State != "ENABLED" || string(versions[1].Data) == string(first) {
		t.Errorf("secret versions = %+v, want the old one destroyed and a new token enabled", versionStates(versions))
	}
	got := s.awaitEvents(t, 2)
	if got[0].Type != events.UserConnected || got[1].Type != events.UserConnected || got[0].ID == got[1].ID {
		t.Errorf("events = %+v, want two connected events with distinct ids", got)
	}
}

func TestDisconnect(t *testing.T) {
	s := newStack(t)
	ctx := context.Background()
	key := s.key(alice)
	s.connect(t)
	refresh := string(s.tokenVersions(alice)[0].Data)
	if err := s.users.MarkAnnounced(ctx, key, map[string]store.Marker{"m1": {EventID: "e1", ExpireAt: time.Now().Add(time.Hour)}}); err != nil {
		t.Fatal(err)
	}

	status, body := s.disconnectAs(t, alice)
	if status != http.StatusOK || !strings.Contains(body, `id="disconnected"`) || !strings.Contains(body, alice) || strings.Contains(body, "nothing to disconnect") {
		t.Fatalf("disconnect: status %d, want 200 and the disconnected page:\n%s", status, body)
	}
	u, err := s.users.Get(ctx, key)
	if err != nil || u.Status != store.Disconnected {
		t.Errorf("user = %+v, %v; want status disconnected", u, err)
	}
	if done, _ := s.users.Announced(ctx, key, []string{"m1"}); done["m1"] {
		t.Error("announced markers were not deleted")
	}
	if v := s.tokenVersions(alice); v != nil {
		t.Errorf("refresh token secret still exists: %v", versionStates(v))
	}
	if w, _ := s.gmail.Watch(alice); w.Active {
		t.Error("the Gmail watch is still active: users.stop was not called")
	}
	if _, err := s.oauthConfig().TokenSource(ctx, &oauth2.Token{RefreshToken: refresh}).Token(); !gmailclient.IsInvalidGrant(err) {
		t.Errorf("refreshing the old token: %v, want invalid_grant (revoked)", err)
	}
	far := time.Now().Add(365 * 24 * time.Hour)
	for _, field := range []string{store.RenewDue, store.SyncDue} {
		if n, err := s.users.CountDue(ctx, store.AllShards(), field, far); err != nil || n != 0 {
			t.Errorf("CountDue(%s) = %d users, %v; a disconnected user must never be due", field, n, err)
		}
	}
	got := s.awaitEvents(t, 2)
	if e := got[1]; e.Type != events.UserDisconnect || e.User != key || e.EmailAddress != alice {
		t.Errorf("event = %+v, want %s for %s", e, events.UserDisconnect, alice)
	}

	// Connecting again starts afresh from the new watch's history id.
	s.connect(t)
	u, _ = s.users.Get(ctx, key)
	watch, _ := s.gmail.Watch(alice)
	if u.Status != store.Active || u.Cursor != int64(watch.HistoryID) || u.PendingHistoryID != 0 {
		t.Errorf("reconnected user = %+v, want active with cursor %d", u, watch.HistoryID)
	}
}

func TestDisconnectUnknownUserIsHarmless(t *testing.T) {
	s := newStack(t)
	s.auth.AddAccount(bob)
	s.auth.SetBehavior(googleauth.Behavior{AutoApprove: true})
	before := s.snapshot(t)
	status, body := s.disconnectAs(t, bob)
	if status != http.StatusOK || !strings.Contains(body, "nothing to disconnect") {
		t.Errorf("status %d, want 200 saying there was nothing to disconnect:\n%s", status, body)
	}
	s.unchanged(t, before)
}

func TestDisconnectDeniedChangesNothing(t *testing.T) {
	s := newStack(t)
	s.connect(t)
	s.auth.SetBehavior(googleauth.Behavior{AutoApprove: true, Deny: true})
	cookie, cb := s.begin(t, "/disconnect")
	before := s.snapshot(t)
	if status, body := s.finish(t, cb, cookie); status != http.StatusForbidden || !strings.Contains(body, `id="denied"`) {
		t.Errorf("status %d, want 403 and the denied page", status)
	}
	s.unchanged(t, before)
}

// The status is written before anything that can fail, so a user whose
// disconnect broke off halfway already receives nothing; repeating the
// disconnect finishes it and publishes the same event id.
func TestDisconnectWritesStatusFirstAndCanBeRepeated(t *testing.T) {
	s := newStack(t)
	ctx := context.Background()
	key := s.key(alice)
	s.connect(t)
	broken := s.cfg.OAuth
	broken.RevokeURL = "http://127.0.0.1:1/revoke" // nothing listens: revocation fails
	d := disconnect.New(s.users, s.vault, gmailclient.NewFactory(broken, s.vault), s.publisher, s.httpClient, s.log)
	if _, err := d.Disconnect(ctx, key); err == nil {
		t.Fatal("Disconnect with the revoke endpoint down: no error")
	}
	if u, _ := s.users.Get(ctx, key); u.Status != store.Disconnected {
		t.Errorf("status after a failed disconnect = %q, want disconnected", u.Status)
	}
	if v := s.tokenVersions(alice); len(v) != 1 {
		t.Errorf("the token was deleted before it was revoked: %v", versionStates(v))
	}

	d = disconnect.New(s.users, s.vault, gmailclient.NewFactory(s.cfg.OAuth, s.vault), s.publisher, s.httpClient, s.log)
	for i := range 2 {
		found, err := d.Disconnect(ctx, key)
		if !found || err != nil {
			t.Fatalf("Disconnect #%d = %v, %v; want found, nil", i+1, found, err)
		}
	}
	if v := s.tokenVersions(alice); v != nil {
		t.Errorf("token secret left: %v", versionStates(v))
	}
	got := s.awaitEvents(t, 3)
	if got[1].Type != events.UserDisconnect || got[2].ID != got[1].ID {
		t.Errorf("events = %+v, want two disconnected events with one id", got)
	}
}

func TestRoutesAndBadInput(t *testing.T) {
	s := newStack(t)
	tests := []struct {
		method, path string
		wantStatus   int
	}{
		{"GET", "/connect?login_hint=" + url.QueryEscape("<script>alert(1)</script>"), 400},
		{"GET", "/connect?login_hint=" + url.QueryEscape("Alice <alice@example.com>"), 400},
		{"GET", "/disconnect?login_hint=nobody", 400},
		{"POST", "/connect", 405},
		{"POST", consent.CallbackPath, 405},
		{"HEAD", consent.CallbackPath, 405},
		{"GET", "/", 404},
		{"GET", "/connect/../admin", 404},
	}
	for _, tc := range tests {
		t.Run(tc.method+" "+tc.path, func(t *testing.T) {
			req, _ := http.NewRequest(tc.method, s.url+tc.path, nil)
			resp, err := s.browser.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tc.wantStatus || len(resp.Cookies()) != 0 || resp.Header.Get("Location") != "" {
				t.Errorf("status %d, cookies %v, Location %q; want %d, no cookie, no redirect",
					resp.StatusCode, resp.Cookies(), resp.Header.Get("Location"), tc.wantStatus)
			}
		})
	}
}

func TestPublicURLWithPath(t *testing.T) {
	s := newStack(t)
	cfg := s.cfg
	cfg.PublicURL = s.url + "/consent"
	h := consent.New(cfg, consent.Deps{Users: s.users, Vault: s.vault, Events: s.publisher, HTTP: s.httpClient}, s.log)
	for _, path := range []string{"/consent/connect", "/connect"} { // a proxy may or may not strip the prefix
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
		loc, _ := url.Parse(rec.Header().Get("Location"))
		cookie, _ := http.ParseSetCookie(rec.Header().Get("Set-Cookie"))
		if rec.Code != http.StatusFound || loc.Query().Get("redirect_uri") != cfg.PublicURL+consent.CallbackPath || cookie == nil || cookie.Path != "/consent"+consent.CallbackPath {
			t.Errorf("GET %s: status %d, redirect_uri %q, cookie %v; want 302 to %s with the cookie on /consent%s",
				path, rec.Code, loc.Query().Get("redirect_uri"), cookie, cfg.PublicURL+consent.CallbackPath, consent.CallbackPath)
		}
	}
}

func TestStateKeyTooShortRefusesToStart(t *testing.T) {
	s := newStack(t)
	s.putVersion(t, "consent-state-key", "short")
	resp := s.get(t, s.url+"/connect", nil)
	if resp.StatusCode != http.StatusInternalServerError || len(resp.Cookies()) != 0 {
		t.Errorf("status %d, cookies %v; want 500 and no cookie", resp.StatusCode, resp.Cookies())
	}
	if !s.logs.Contains("shorter than 32 bytes") {
		t.Errorf("the cause was not logged:\n%s", s.logs)
	}
}

func TestReadConfig(t *testing.T) {
	valid := map[string]string{
		"PROJECT_ID": "p", "PUBLIC_URL": "https://example.com/consent/", "OAUTH_CLIENT_ID": "c",
		"GMAIL_TOPIC": "projects/p/topics/gmail", "EVENTS_TOPIC": "events",
	}
	with := func(k, v string) map[string]string {
		m := map[string]string{}
		for a, b := range valid {
			m[a] = b
		}
		m[k] = v
		return m
	}
	tests := []struct {
		name    string
		env     map[string]string
		wantErr []string
	}{
		{"valid", valid, nil},
		{"empty", map[string]string{}, []string{"PROJECT_ID", "PUBLIC_URL", "OAUTH_CLIENT_ID", "GMAIL_TOPIC", "EVENTS_TOPIC"}},
		{"plain http off loopback", with("PUBLIC_URL", "http://example.com"), []string{"PUBLIC_URL"}},
		{"query in public url", with("PUBLIC_URL", "https://example.com/?next=x"), []string{"PUBLIC_URL"}},
		{"unknown scope", with("GMAIL_SCOPE", "https://mail.google.com/"), []string{"GMAIL_SCOPE"}},
		{"foreign auth url", with("OAUTH_AUTH_URL", "http://evil.example/auth"), []string{"OAUTH_AUTH_URL"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := consent.ReadConfig(config.FromMap(tc.env))
			if tc.wantErr == nil {
				if err != nil || cfg.PublicURL != "https://example.com/consent" || cfg.StateKeyName != "consent-state-key" || cfg.OAuth.Scope != gmailclient.ScopeMetadata {
					t.Errorf("ReadConfig = %+v, %v; want defaults and no error", cfg, err)
				}
				return
			}
			for _, name := range tc.wantErr {
				if err == nil || !strings.Contains(err.Error(), name) {
					t.Errorf("error %v does not name %s", err, name)
				}
			}
		})
	}
}

// TestLogsCarryNoSecrets runs every path on one function and checks the log
// for every token, code, state, verifier and cookie value that went by.
func TestLogsCarryNoSecrets(t *testing.T) {
	s := newStack(t)
	ctx := context.Background()
	s.connect(t)
	c1, cb1 := s.begin(t, "/connect")
	s.finish(t, cb1, c1) // reconnect
	s.finish(t, cb1, c1) // replayed state
	c2, cb2 := s.begin(t, "/connect")
	s.finish(t, withQuery(cb2, "code", cb1.Query().Get("code")), c2) // replayed code
	_, cb3 := s.begin(t, "/connect")
	c4, cb4 := s.begin(t, "/connect")
	s.finish(t, withQuery(cb4, "code", cb3.Query().Get("code")), c4) // PKCE mismatch
	c5, cb5 := s.begin(t, "/connect")
	s.finish(t, cb5, &http.Cookie{Name: c5.Name, Value: flip(c5.Value)}) // tampered
	c6, cb6 := s.begin(t, "/connect")
	s.clock.Advance(11 * time.Minute)
	s.finish(t, cb6, c6) // expired
	for _, b := range []googleauth.Behavior{{AutoApprove: true, Deny: true}, {AutoApprove: true, GrantScopes: []string{}}, {AutoApprove: true, OmitRefreshToken: true}} {
		s.auth.SetBehavior(b)
		c, cb := s.begin(t, "/connect")
		s.finish(t, cb, c)
	}
	s.auth.SetBehavior(googleauth.Behavior{AutoApprove: true})
	s.gmail.SetFaults(alice, gmailapi.Faults{ErrorRate: 1, ErrorCodes: []int{500}, ErrorMethods: []string{gmailapi.WatchMethod}})
	c7, cb7 := s.begin(t, "/connect")
	s.finish(t, cb7, c7) // internal failure after the token was stored
	s.gmail.ClearFaults(alice)
	broken := s.cfg.OAuth
	broken.RevokeURL = "http://127.0.0.1:1/revoke"
	disconnect.New(s.users, s.vault, gmailclient.NewFactory(broken, s.vault), s.publisher, s.httpClient, s.log).Disconnect(ctx, s.key(alice))
	s.disconnectAs(t, alice)
	link := s.storedLink(t, s.request("ref"), time.Minute)
	c9, cb9, _ := s.followLink(t, link, alice)
	s.back(t, cb9, c9)           // connect by link
	s.followLink(t, link, alice) // used link
	s.addPeople(t)
	s.followLink(t, s.signedLink(s.request("ref"), time.Minute, linkKey), carol)

	logs := s.logs.String()
	for _, want := range []string{"user connected", "callback refused", "callback failed", "user disconnected"} {
		if !strings.Contains(logs, want) {
			t.Errorf("no %q line: the paths did not all run", want)
		}
	}
	if n := s.seen.count(); n < 20 {
		t.Errorf("only %d secret values were observed; the check would prove little", n)
	}
	if leak := s.seen.foundIn(logs); leak != "" {
		t.Errorf("the logs contain a secret (%s)", leak)
	}
}

func withQuery(u *url.URL, k, v string) *url.URL {
	out := *u
	q := out.Query()
	if v == "" {
		q.Del(k)
	} else {
		q.Set(k, v)
	}
	out.RawQuery = q.Encode()
	return &out
}

// flip changes the last character of s.
func flip(s string) string {
	last := s[len(s)-1]
	if last == 'A' {
		return s[:len(s)-1] + "B"
	}
	return s[:len(s)-1] + "A"
}

func begin(path string) func(t *testing.T, s *stack) (*url.URL, *http.Cookie) {
	return func(t *testing.T, s *stack) (*url.URL, *http.Cookie) {
		c, cb := s.begin(t, path)
		return cb, c
	}
}

func versionStates(vs []secrets.Version) []string {
	var out []string
	for _, v := range vs {
		out = append(out, v.State)
	}
	return out
}

// TestRegisteredFunctionFromTheEnvironment serves the function that init
// registered, as deployed: its production handler is built from the
// process environment, reads its keys from Secret Manager and sends a
// browser to the authorization endpoint with the configured client.
func TestRegisteredFunctionFromTheEnvironment(t *testing.T) {
	s := newStack(t)
	for k, v := range s.env() {
		t.Setenv(k, v)
	}
	base := testenv.ServeRegistered(t, "Consent")
	resp := s.get(t, base+"/connect", nil)
	loc, err := url.Parse(resp.Header.Get("Location"))
	if resp.StatusCode != http.StatusFound || err != nil || loc.Scheme+"://"+loc.Host+loc.Path != s.cfg.OAuth.AuthURL ||
		loc.Query().Get("client_id") != clientID || loc.Query().Get("redirect_uri") != s.url+consent.CallbackPath {
		t.Errorf("GET /connect: status %d, Location %q; want 302 to %s for %s", resp.StatusCode, loc, s.cfg.OAuth.AuthURL, clientID)
	}
	if len(resp.Cookies()) != 1 {
		t.Errorf("GET /connect set %d cookies, want the state cookie", len(resp.Cookies()))
	}
}

// TestDelegationModeConnectsNoOne: with CONNECT_MODE=delegation every route
// answers 403 with the same page, before any cookie, secret or Google call,
// even for a flow started (and approved at Google) before the mode changed;
// nothing is stored.
func TestDelegationModeConnectsNoOne(t *testing.T) {
	s := newStack(t)
	s.auth.SetBehavior(googleauth.Behavior{AutoApprove: true})
	cookie, cb := s.begin(t, "/connect?login_hint="+alice)
	before := s.snapshot(t)
	s.handler = consent.New(s.withEnv(t, map[string]string{"CONNECT_MODE": "delegation"}), s.deps(), s.log)
	for _, path := range []string{"/connect", "/connect?login_hint=" + alice, "/disconnect", consent.CallbackPath + "?" + cb.RawQuery} {
		resp := s.get(t, s.url+path, cookie)
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusForbidden || !strings.Contains(string(body), html.EscapeString(consent.DomainOnlyMessage)) ||
			resp.Header.Get("Location") != "" || len(resp.Cookies()) != 0 || strings.Contains(string(body), "/connect") {
			t.Errorf("GET %s: status %d, location %q, cookies %v; want 403 with the delegation page and no retry link:\n%s",
				path, resp.StatusCode, resp.Header.Get("Location"), resp.Cookies(), body)
		}
	}
	s.unchanged(t, before)
	if _, err := s.users.ByEmail(context.Background(), alice); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("alice's record: %v, want none", err)
	}
	if v := s.tokenVersions(alice); len(v) != 0 || s.revokes() != 0 {
		t.Errorf("%d refresh token versions, %d revokes; want none", len(v), s.revokes())
	}
	if w, _ := s.gmail.Watch(alice); w.Active {
		t.Error("alice's mailbox is watched")
	}
	if evs := s.published(500 * time.Millisecond); len(evs) != 0 {
		t.Errorf("events %+v, want none", evs)
	}
}

// connectWithEventsDown connects alice while every publish of the
// connected event fails (the events topic is gone).
func (s *stack) connectWithEventsDown(t *testing.T) {
	t.Helper()
	down := events.NewPublisher(s.PubSub, "no-such-topic")
	t.Cleanup(down.Stop)
	d := s.deps()
	d.Events = down
	s.handler = consent.New(s.cfg, d, s.log)
	s.connect(t)
}

// TestConnectedEventOwedAfterAFailedPublish: the events topic is gone when
// alice connects. She is connected all the same (the page says so; the
// watch and her record exist), the failure is logged, and her record owes
// the event; the next renew run publishes it once, with the id first tried.
func TestConnectedEventOwedAfterAFailedPublish(t *testing.T) {
	s := newStack(t)
	ctx := context.Background()
	s.connectWithEventsDown(t)
	u, err := s.users.Get(ctx, s.key(alice))
	if err != nil || u.Status != store.Active || u.Notice == nil {
		t.Fatalf("alice after the failed publish: %+v, %v; want active, owing her connected event", u, err)
	}
	if w, _ := s.gmail.Watch(alice); !w.Active {
		t.Error("alice's mailbox is not watched")
	}
	want := lifecycle.Connected(u)
	if !s.logs.Contains(`"message":"connected event not published"`) || !s.logs.Contains(want.ID) {
		t.Errorf("the failed publish of %s is not logged:\n%s", want.ID, s.logs)
	}
	if evs := s.published(time.Second); len(evs) != 0 {
		t.Fatalf("published with the topic gone: %+v", evs)
	}

	cfg, err := renew.ReadConfig(config.FromMap(s.Env(nil)))
	if err != nil {
		t.Fatal(err)
	}
	mailboxes := gmailclient.NewFactory(cfg.Gmail, s.vault)
	syncer := gmailsync.New(gmailsync.Deps{Users: s.users, Gmail: mailboxes, Events: s.publisher, Logger: s.log}, cfg.Sync)
	run := renew.New(renew.Deps{Users: s.users, Gmail: mailboxes, Syncer: syncer, Events: s.publisher, Logger: s.log, Now: s.clock.Now}, cfg.Run)
	s.clock.Advance(10 * time.Minute) // the next hourly run
	if rep := run.Run(ctx); rep.Announced != 1 || rep.Error != "" {
		t.Errorf("renew run: %+v, want alice's connected event announced", rep)
	}
	got := s.awaitEvents(t, 1)
	want.Version = events.Version
	if !reflect.DeepEqual(got[0], want) || got[0].HistoryID == 0 {
		t.Errorf("published %+v\nwant %+v, the event the connect tried", got[0], want)
	}
	if rep := run.Run(ctx); rep.Announced != 0 {
		t.Errorf("second renew run: %+v, want nothing announced", rep)
	}
	if evs := s.published(time.Second); len(evs) != 1 {
		t.Errorf("events after a second run: %+v, want the one", evs)
	}
	if u, _ := s.users.Get(ctx, s.key(alice)); u.Notice != nil {
		t.Errorf("alice still owes %+v", u.Notice)
	}
}

// TestDisconnectPublishesTheOwedConnectedEventFirst: a user who disconnects
// before her connected event could be published is announced connected,
// then disconnected, in that order, and owes nothing after.
func TestDisconnectPublishesTheOwedConnectedEventFirst(t *testing.T) {
	s := newStack(t)
	ctx := context.Background()
	s.connectWithEventsDown(t)
	u, _ := s.users.Get(ctx, s.key(alice))
	if u.Notice == nil {
		t.Fatal("alice owes no connected event after the failed publish")
	}
	s.handler = consent.New(s.cfg, s.deps(), s.log) // the topic is back
	if status, body := s.disconnectAs(t, alice); status != http.StatusOK || !strings.Contains(body, `id="disconnected"`) {
		t.Fatalf("disconnect: status %d:\n%s", status, body)
	}
	got := s.awaitEvents(t, 2)
	if got[0].Type != events.UserConnected || got[0].ID != lifecycle.Connected(u).ID || got[1].Type != events.UserDisconnect || got[1].User != u.Key {
		t.Errorf("events = %+v, want alice's owed connected event %s, then her disconnected one", got, lifecycle.Connected(u).ID)
	}
	if after, _ := s.users.Get(ctx, u.Key); after.Notice != nil || after.Status != store.Disconnected {
		t.Errorf("alice after disconnecting: %+v, want disconnected, owing nothing", after)
	}
}

// TestConsentGrantsExactlyTheConfiguredScope: a user who granted this OAuth
// client a wider Gmail scope before (an earlier deployment's setting, or the
// application's own sign-in on a shared client) connects, and the stored
// grant's access tokens carry the configured scope and the sign-in scopes,
// nothing wider.
func TestConsentGrantsExactlyTheConfiguredScope(t *testing.T) {
	s := newStack(t)
	s.auth.SetBehavior(googleauth.Behavior{AutoApprove: true})
	s.auth.IssueRefreshToken(clientID, alice, []string{gmailclient.ScopeReadonly})
	cookie, cb := s.begin(t, "/connect?login_hint="+alice)
	if status, body := s.finish(t, cb, cookie); status != http.StatusOK {
		t.Fatalf("callback: status %d:\n%s", status, body)
	}
	versions := s.tokenVersions(alice)
	if len(versions) != 1 {
		t.Fatalf("%d refresh token versions, want 1", len(versions))
	}
	s.seen.add(string(versions[0].Data))
	tok, err := s.oauthConfig().TokenSource(context.Background(), &oauth2.Token{RefreshToken: string(versions[0].Data)}).Token()
	if err != nil {
		t.Fatal(err)
	}
	_, scopes, err := s.auth.Check(tok.AccessToken)
	slices.Sort(scopes)
	want := []string{"https://www.googleapis.com/auth/userinfo.email", gmailclient.ScopeMetadata, "openid"}
	slices.Sort(want)
	if err != nil || !slices.Equal(scopes, want) {
		t.Errorf("the stored grant's token has scopes %v (%v), want exactly %v", scopes, err, want)
	}
}
