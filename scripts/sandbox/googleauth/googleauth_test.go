package googleauth_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/gmailwatch/gmailwatch/scripts/sandbox/googleauth"
)

func TestAuthorizationCodeFlow(t *testing.T) {
	styles := []struct {
		name  string
		style oauth2.AuthStyle
	}{
		{"client_secret_basic", oauth2.AuthStyleInHeader},
		{"client_secret_post", oauth2.AuthStyleInParams},
		{"autodetect", oauth2.AuthStyleAutoDetect},
	}
	for _, st := range styles {
		t.Run(st.name, func(t *testing.T) {
			sb := newSandbox(t)
			cfg := sb.config(st.style, "openid", "email", gmailScope)
			verifier := oauth2.GenerateVerifier()
			state := "s/+é ü=&x"
			authURL := cfg.AuthCodeURL(state, oauth2.AccessTypeOffline, oauth2.ApprovalForce, oauth2.S256ChallengeOption(verifier),
				oauth2.SetAuthURLParam("login_hint", "Alice@Example.com"), oauth2.SetAuthURLParam("nonce", "n-0S6"),
				oauth2.SetAuthURLParam("include_granted_scopes", "true"))

			id, html := sb.page(t, authURL)
			for _, want := range []string{`id="allow"`, `id="deny"`, `value="Alice@Example.com"`, `value="` + gmailScope + `" checked`, clientID} {
				if !strings.Contains(html, want) {
					t.Errorf("consent page lacks %s", want)
				}
			}
			status, q, body := sb.submit(t, url.Values{"request": {id}, "account": {"Alice@Example.com"}, "scope": {gmailScope}, "action": {"allow"}})
			if status != http.StatusSeeOther {
				t.Fatalf("allow: %d\n%s", status, body)
			}
			wantScope := gmailScope + " " + emailScope + " openid"
			if q.Get("state") != state || q.Get("scope") != wantScope || !strings.HasPrefix(q.Get("code"), "4/0A") {
				t.Fatalf("callback query %v, want state %q, scope %q, code 4/…", q, state, wantScope)
			}

			tok, err := cfg.Exchange(ctx(), q.Get("code"), oauth2.VerifierOption(verifier))
			if err != nil {
				t.Fatalf("Exchange: %v", err)
			}
			if !strings.HasPrefix(tok.AccessToken, "ya29.") || !strings.HasPrefix(tok.RefreshToken, "1//") || tok.TokenType != "Bearer" || tok.Extra("scope") != wantScope {
				t.Errorf("token = %q %q %q scope %v", tok.AccessToken, tok.RefreshToken, tok.TokenType, tok.Extra("scope"))
			}
			if left := time.Until(tok.Expiry); left < 59*time.Minute || left > time.Hour {
				t.Errorf("token expires in %v, want 1h", left)
			}
			claims := sb.verifyIDToken(t, tok.Extra("id_token").(string))
			for k, want := range map[string]any{"iss": "https://accounts.google.com", "aud": clientID, "email": alice, "email_verified": true, "nonce": "n-0S6"} {
				if claims[k] != want {
					t.Errorf("id_token %s = %v, want %v", k, claims[k], want)
				}
			}
			if sub, _ := claims["sub"].(string); !regexp.MustCompile(`^1[0-9]{20}$`).MatchString(sub) {
				t.Errorf("id_token sub = %q, want 21 digits", sub)
			}
			if exp, iat := claims["exp"].(float64), claims["iat"].(float64); iat != float64(sb.clock.Now().Unix()) || exp != iat+3600 {
				t.Errorf("id_token iat %v exp %v", iat, exp)
			}

			email, scopes, err := sb.srv.Check(tok.AccessToken)
			if err != nil || email != alice || strings.Join(scopes, " ") != wantScope {
				t.Errorf("Check = %q %v %v, want %s %s", email, scopes, err, alice, wantScope)
			}

			// An hour later the access token is dead and the refresh token makes another.
			sb.clock.Advance(time.Hour)
			if _, _, err := sb.srv.Check(tok.AccessToken); !errors.Is(err, googleauth.ErrInvalidToken) {
				t.Errorf("Check after expiry: %v, want ErrInvalidToken", err)
			}
			tok.Expiry = time.Now().Add(-time.Second)
			fresh, err := cfg.TokenSource(ctx(), tok).Token()
			if err != nil || fresh.AccessToken == tok.AccessToken || fresh.Extra("scope") != wantScope {
				t.Fatalf("refresh = %v, %v", fresh, err)
			}
			if email, _, err := sb.srv.Check(fresh.AccessToken); err != nil || email != alice {
				t.Errorf("Check refreshed = %q, %v", email, err)
			}
			code, raw := sb.postToken(t, "/token", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {tok.RefreshToken}, "client_id": {clientID}, "client_secret": {clientSecret}})
			if _, has := raw["refresh_token"]; code != http.StatusOK || has || raw["id_token"] == nil || raw["expires_in"] != 3600.0 {
				t.Errorf("raw refresh = %d %v, want 200 with id_token and no refresh_token", code, raw)
			}
		})
	}
}

func TestAuthorizeErrors(t *testing.T) {
	sb := newSandbox(t)
	valid := url.Values{
		"client_id": {clientID}, "redirect_uri": {callback}, "response_type": {"code"},
		"scope": {gmailScope}, "state": {"st"}, "access_type": {"offline"}, "prompt": {"consent"},
		"code_challenge": {oauth2.S256ChallengeFromVerifier(oauth2.GenerateVerifier())}, "code_challenge_method": {"S256"},
	}
	cases := []struct {
		name       string
		change     func(q url.Values)
		wantStatus int
		wantCode   string
	}{
		{"no client_id", func(q url.Values) { q.Del("client_id") }, 400, "invalid_request"},
		{"unknown client", func(q url.Values) { q.Set("client_id", "nobody.apps.googleusercontent.com") }, 401, "invalid_client"},
		{"no redirect_uri", func(q url.Values) { q.Del("redirect_uri") }, 400, "invalid_request"},
		{"foreign redirect_uri", func(q url.Values) { q.Set("redirect_uri", "https://attacker.example/cb") }, 400, "redirect_uri_mismatch"},
		{"redirect_uri with trailing slash", func(q url.Values) { q.Set("redirect_uri", callback+"/") }, 400, "redirect_uri_mismatch"},
		{"redirect_uri with extra query", func(q url.Values) { q.Set("redirect_uri", callback+"?next=x") }, 400, "redirect_uri_mismatch"},
		{"two redirect_uris", func(q url.Values) { q.Add("redirect_uri", "https://attacker.example/cb") }, 400, "invalid_request"},
		{"no response_type", func(q url.Values) { q.Del("response_type") }, 400, "invalid_request"},
		{"implicit flow", func(q url.Values) { q.Set("response_type", "token") }, 400, "unsupported_response_type"},
		{"no scope", func(q url.Values) { q.Del("scope") }, 400, "invalid_request"},
		{"unknown scope", func(q url.Values) { q.Set("scope", "openid admin") }, 400, "invalid_scope"},
		{"unknown challenge method", func(q url.Values) { q.Set("code_challenge_method", "S512") }, 400, "invalid_request"},
		{"short challenge", func(q url.Values) { q.Set("code_challenge", "abc") }, 400, "invalid_request"},
		{"method without challenge", func(q url.Values) { q.Del("code_challenge") }, 400, "invalid_request"},
		{"bad access_type", func(q url.Values) { q.Set("access_type", "forever") }, 400, "invalid_request"},
		{"bad prompt", func(q url.Values) { q.Set("prompt", "none consent") }, 400, "invalid_request"},
		{"bad include_granted_scopes", func(q url.Values) { q.Set("include_granted_scopes", "yes") }, 400, "invalid_request"},
	}
	for _, behavior := range []googleauth.Behavior{{}, {AutoApprove: true}} {
		sb.srv.SetBehavior(behavior)
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				q := url.Values{}
				for k, v := range valid {
					q[k] = slices.Clone(v)
				}
				tc.change(q)
				resp, body := sb.do(t, "GET", sb.url+"/o/oauth2/v2/auth?"+q.Encode(), nil)
				if resp.StatusCode != tc.wantStatus || !strings.Contains(body, "Error "+resp.Status[:3]+": "+tc.wantCode) {
					t.Errorf("auto-approve %v: got %d, want %d %s\n%s", behavior.AutoApprove, resp.StatusCode, tc.wantStatus, tc.wantCode, body)
				}
				if loc := resp.Header.Get("Location"); loc != "" {
					t.Errorf("redirected to %s, want an error page", loc)
				}
			})
		}
	}
	// The valid request itself is served, under both paths Google uses.
	sb.srv.SetBehavior(googleauth.Behavior{})
	sb.page(t, sb.url+"/o/oauth2/v2/auth?"+valid.Encode())
	sb.page(t, sb.url+"/o/oauth2/auth?"+valid.Encode())
}

func TestConsentPageDecisions(t *testing.T) {
	sb := newSandbox(t)
	cfg := sb.config(oauth2.AuthStyleInHeader, "openid", "email", gmailScope)
	authURL := cfg.AuthCodeURL("st-1", oauth2.AccessTypeOffline)

	t.Run("deny", func(t *testing.T) {
		id, _ := sb.page(t, authURL)
		status, q, _ := sb.submit(t, url.Values{"request": {id}, "action": {"deny"}})
		if status != http.StatusSeeOther || q.Get("error") != "access_denied" || q.Get("state") != "st-1" || q.Has("code") {
			t.Errorf("deny = %d %v, want 303 error=access_denied state=st-1", status, q)
		}
		if status, q, _ := sb.submit(t, url.Values{"request": {id}, "account": {alice}, "action": {"allow"}}); status != 400 || q != nil {
			t.Errorf("allow after deny = %d %v, want 400 page", status, q)
		}
	})
	t.Run("unknown account keeps the request open", func(t *testing.T) {
		id, _ := sb.page(t, authURL)
		status, q, body := sb.submit(t, url.Values{"request": {id}, "account": {"carol@example.com"}, "scope": {gmailScope}, "action": {"allow"}})
		if status != 400 || q != nil || !strings.Contains(body, `id="problem"`) || !strings.Contains(body, `id="allow"`) {
			t.Errorf("unknown account = %d %v, want 400 consent page with a problem\n%s", status, q, body)
		}
		status, q, _ = sb.submit(t, url.Values{"request": {id}, "account": {bob}, "scope": {gmailScope}, "action": {"allow"}})
		if status != http.StatusSeeOther || q.Get("code") == "" {
			t.Errorf("retry with a known account = %d %v", status, q)
		}
	})
	t.Run("answered twice", func(t *testing.T) {
		id, _ := sb.page(t, authURL)
		sb.submit(t, url.Values{"request": {id}, "account": {alice}, "action": {"allow"}})
		if status, q, _ := sb.submit(t, url.Values{"request": {id}, "account": {alice}, "action": {"allow"}}); status != 400 || q != nil {
			t.Errorf("second answer = %d %v, want 400 page", status, q)
		}
	})
	t.Run("granular consent without gmail", func(t *testing.T) {
		q := sb.approve(t, authURL, alice) // gmail box unchecked
		if q.Get("scope") != emailScope+" openid" {
			t.Errorf("scope = %q, want only sign-in scopes", q.Get("scope"))
		}
		tok, err := cfg.Exchange(ctx(), q.Get("code"))
		if err != nil {
			t.Fatal(err)
		}
		if _, scopes, _ := sb.srv.Check(tok.AccessToken); slices.Contains(scopes, gmailScope) {
			t.Errorf("Check scopes %v include the unchecked gmail scope", scopes)
		}
	})
	t.Run("unrequested scope in form is ignored", func(t *testing.T) {
		q := sb.approve(t, authURL, alice, gmailScope, "https://mail.google.com/")
		if q.Get("scope") != gmailScope+" "+emailScope+" openid" {
			t.Errorf("scope = %q", q.Get("scope"))
		}
	})
	t.Run("GrantScopes unchecks the page's boxes", func(t *testing.T) {
		sb.srv.SetBehavior(googleauth.Behavior{GrantScopes: []string{"openid"}})
		defer sb.srv.SetBehavior(googleauth.Behavior{})
		_, html := sb.page(t, authURL)
		if strings.Contains(html, `value="`+gmailScope+`" checked`) || !strings.Contains(html, `value="`+gmailScope+`"`) {
			t.Errorf("gmail checkbox should be shown unchecked\n%s", html)
		}
	})
}

func TestAutoApprove(t *testing.T) {
	cases := []struct {
		name      string
		behavior  googleauth.Behavior
		hint      string
		wantQuery url.Values // nil: a 400 page
	}{
		{"approve", googleauth.Behavior{AutoApprove: true}, alice, url.Values{"scope": {gmailScope + " " + emailScope + " openid"}, "state": {"st"}}},
		{"hint in other case", googleauth.Behavior{AutoApprove: true}, "ALICE@example.com", url.Values{"scope": {gmailScope + " " + emailScope + " openid"}, "state": {"st"}}},
		{"deny", googleauth.Behavior{AutoApprove: true, Deny: true}, alice, url.Values{"error": {"access_denied"}, "state": {"st"}}},
		{"partial grant", googleauth.Behavior{AutoApprove: true, GrantScopes: []string{"email"}}, alice, url.Values{"scope": {emailScope + " openid"}, "state": {"st"}}},
		{"no hint, two accounts", googleauth.Behavior{AutoApprove: true}, "", nil},
		{"unknown account", googleauth.Behavior{AutoApprove: true}, "carol@example.com", nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			sb := newSandbox(t)
			sb.srv.SetBehavior(tc.behavior)
			cfg := sb.config(oauth2.AuthStyleInHeader, "openid", "email", gmailScope)
			resp, body := sb.do(t, "GET", cfg.AuthCodeURL("st", oauth2.SetAuthURLParam("login_hint", tc.hint)), nil)
			q := callbackQuery(t, resp)
			if tc.wantQuery == nil {
				if resp.StatusCode != 400 || q != nil {
					t.Errorf("got %d %v, want a 400 page\n%s", resp.StatusCode, q, body)
				}
				return
			}
			code := q.Get("code")
			q.Del("code")
			if q.Encode() != tc.wantQuery.Encode() {
				t.Errorf("callback query %v, want %v", q, tc.wantQuery)
			}
			if tc.behavior.Deny == (code != "") {
				t.Errorf("code %q with Deny=%v", code, tc.behavior.Deny)
			}
		})
	}
}

func TestTokenErrorsChangeNothing(t *testing.T) {
	type attempt struct {
		cfg  *oauth2.Config
		code string
		opts []oauth2.AuthCodeOption
		raw  url.Values // posted as is instead of cfg.Exchange
	}
	cases := []struct {
		name       string
		raw        bool // post the form directly instead of cfg.Exchange
		change     func(a *attempt)
		wantStatus int
		wantCode   string
	}{
		{"wrong secret", false, func(a *attempt) { a.cfg.ClientSecret = "guess" }, 401, "invalid_client"},
		{"unknown client", false, func(a *attempt) { a.cfg.ClientID = "nobody" }, 401, "invalid_client"},
		{"other client", false, func(a *attempt) { a.cfg.ClientID, a.cfg.ClientSecret = otherClient, "other-secret" }, 400, "invalid_grant"},
		{"no secret", false, func(a *attempt) { a.cfg.ClientSecret = ""; a.cfg.Endpoint.AuthStyle = oauth2.AuthStyleInParams }, 400, "invalid_request"},
		{"missing verifier", false, func(a *attempt) { a.opts = nil }, 400, "invalid_grant"},
		{"wrong verifier", false, func(a *attempt) { a.opts = []oauth2.AuthCodeOption{oauth2.VerifierOption(oauth2.GenerateVerifier())} }, 400, "invalid_grant"},
		{"malformed verifier", false, func(a *attempt) { a.opts = []oauth2.AuthCodeOption{oauth2.VerifierOption("short")} }, 400, "invalid_grant"},
		{"redirect_uri differs", false, func(a *attempt) { a.cfg.RedirectURL = "http://127.0.0.1:9/other" }, 400, "invalid_grant"},
		{"unknown code", false, func(a *attempt) { a.code = "4/0Aunknown-code-value" }, 400, "invalid_grant"},
		{"no code", false, func(a *attempt) { a.code = "" }, 400, "invalid_request"},
		{"no grant_type", true, func(a *attempt) { a.raw.Del("grant_type") }, 400, "invalid_request"},
		{"password grant", true, func(a *attempt) { a.raw.Set("grant_type", "password") }, 400, "unsupported_grant_type"},
		{"repeated parameter", true, func(a *attempt) { a.raw.Add("code_verifier", "x") }, 400, "invalid_request"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			sb := newSandbox(t)
			verifier := oauth2.GenerateVerifier()
			good := sb.config(oauth2.AuthStyleInHeader, gmailScope)
			code := sb.autoCode(t, good, oauth2.AccessTypeOffline, oauth2.S256ChallengeOption(verifier))
			cfg := *good
			a := &attempt{cfg: &cfg, code: code, opts: []oauth2.AuthCodeOption{oauth2.VerifierOption(verifier)}}
			if tc.raw {
				a.raw = url.Values{"grant_type": {"authorization_code"}, "code": {code}, "redirect_uri": {callback},
					"code_verifier": {verifier}, "client_id": {clientID}, "client_secret": {clientSecret}}
			}
			tc.change(a)
			var status int
			var errCode string
			if a.raw != nil {
				var out map[string]any
				status, out = sb.postToken(t, "/token", a.raw)
				errCode, _ = out["error"].(string)
			} else {
				_, err := a.cfg.Exchange(ctx(), a.code, a.opts...)
				status, errCode = retrieveError(err)
			}
			if status != tc.wantStatus || errCode != tc.wantCode {
				t.Errorf("got %d %q, want %d %q", status, errCode, tc.wantStatus, tc.wantCode)
			}
			// The failed attempt spent nothing: the rightful exchange still works.
			tok, err := good.Exchange(ctx(), code, oauth2.VerifierOption(verifier))
			if err != nil || tok.RefreshToken == "" {
				t.Fatalf("rightful exchange after %s: %v, %v", tc.name, tok, err)
			}
		})
	}
}

func TestCodeIsSingleUseAndShortLived(t *testing.T) {
	sb := newSandbox(t)
	cfg := sb.config(oauth2.AuthStyleInHeader, gmailScope)
	verifier := oauth2.GenerateVerifier()

	code := sb.autoCode(t, cfg, oauth2.AccessTypeOffline, oauth2.S256ChallengeOption(verifier))
	tok, err := cfg.Exchange(ctx(), code, oauth2.VerifierOption(verifier))
	if err != nil {
		t.Fatal(err)
	}
	_, err = cfg.Exchange(ctx(), code, oauth2.VerifierOption(verifier))
	if status, errCode := retrieveError(err); status != 400 || errCode != "invalid_grant" {
		t.Errorf("reused code: %d %q, want 400 invalid_grant", status, errCode)
	}
	if _, _, err := sb.srv.Check(tok.AccessToken); !errors.Is(err, googleauth.ErrInvalidToken) {
		t.Errorf("access token issued for a replayed code still live: %v", err)
	}
	tok.Expiry = time.Now().Add(-time.Second)
	_, err = cfg.TokenSource(ctx(), tok).Token()
	if status, errCode := retrieveError(err); status != 400 || errCode != "invalid_grant" {
		t.Errorf("refresh token issued for a replayed code: %d %q, want 400 invalid_grant", status, errCode)
	}

	code = sb.autoCode(t, cfg, oauth2.S256ChallengeOption(verifier))
	sb.clock.Advance(10 * time.Minute)
	_, err = cfg.Exchange(ctx(), code, oauth2.VerifierOption(verifier))
	if status, errCode := retrieveError(err); status != 400 || errCode != "invalid_grant" {
		t.Errorf("code after 10 minutes: %d %q, want 400 invalid_grant", status, errCode)
	}

	code = sb.autoCode(t, cfg, oauth2.S256ChallengeOption(verifier))
	sb.clock.Advance(10*time.Minute - time.Second)
	if _, err = cfg.Exchange(ctx(), code, oauth2.VerifierOption(verifier)); err != nil {
		t.Errorf("code just before 10 minutes: %v", err)
	}
}

func TestPKCEPlainAndNone(t *testing.T) {
	sb := newSandbox(t)
	cfg := sb.config(oauth2.AuthStyleInHeader, gmailScope)
	verifier := oauth2.GenerateVerifier()
	code := sb.autoCode(t, cfg, oauth2.SetAuthURLParam("code_challenge", verifier), oauth2.SetAuthURLParam("code_challenge_method", "plain"))
	if _, err := cfg.Exchange(ctx(), code, oauth2.VerifierOption(verifier)); err != nil {
		t.Errorf("plain PKCE: %v", err)
	}
	code = sb.autoCode(t, cfg)
	_, err := cfg.Exchange(ctx(), code, oauth2.VerifierOption(verifier))
	if status, errCode := retrieveError(err); status != 400 || errCode != "invalid_grant" {
		t.Errorf("verifier without challenge: %d %q, want 400 invalid_grant", status, errCode)
	}
	if _, err := cfg.Exchange(ctx(), code); err != nil {
		t.Errorf("no PKCE at all: %v", err)
	}
}

func TestRefreshTokenIssuance(t *testing.T) {
	cases := []struct {
		name         string
		priorOffline bool
		omit         bool
		opts         []oauth2.AuthCodeOption
		want         bool
	}{
		{"online", false, false, nil, false},
		{"offline, first consent", false, false, []oauth2.AuthCodeOption{oauth2.AccessTypeOffline}, true},
		{"offline, repeat consent", true, false, []oauth2.AuthCodeOption{oauth2.AccessTypeOffline}, false},
		{"offline, repeat with prompt=consent", true, false, []oauth2.AuthCodeOption{oauth2.AccessTypeOffline, oauth2.ApprovalForce}, true},
		{"OmitRefreshToken", false, true, []oauth2.AuthCodeOption{oauth2.AccessTypeOffline, oauth2.ApprovalForce}, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			sb := newSandbox(t)
			cfg := sb.config(oauth2.AuthStyleInHeader, gmailScope)
			if tc.priorOffline {
				sb.srv.IssueRefreshToken(clientID, alice, []string{gmailScope})
			}
			code := sb.autoCode(t, cfg, tc.opts...)
			sb.srv.SetBehavior(googleauth.Behavior{OmitRefreshToken: tc.omit})
			tok, err := cfg.Exchange(ctx(), code)
			if err != nil {
				t.Fatal(err)
			}
			if got := tok.RefreshToken != ""; got != tc.want {
				t.Errorf("refresh token returned = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestIncludeGrantedScopes(t *testing.T) {
	for _, include := range []bool{false, true} {
		sb := newSandbox(t)
		sb.srv.IssueRefreshToken(clientID, alice, []string{gmailScope})
		cfg := sb.config(oauth2.AuthStyleInHeader, "openid", "email")
		tok, err := cfg.Exchange(ctx(), sb.autoCode(t, cfg, oauth2.SetAuthURLParam("include_granted_scopes", map[bool]string{true: "true", false: "false"}[include])))
		if err != nil {
			t.Fatal(err)
		}
		want := emailScope + " openid"
		if include {
			want = gmailScope + " " + want
		}
		if tok.Extra("scope") != want {
			t.Errorf("include_granted_scopes=%v: scope %v, want %s", include, tok.Extra("scope"), want)
		}
	}
}

func TestRefreshErrors(t *testing.T) {
	sb := newSandbox(t)
	rt := sb.srv.IssueRefreshToken(clientID, alice, []string{gmailScope, "openid"})
	base := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}, "client_id": {clientID}, "client_secret": {clientSecret}}
	cases := []struct {
		name       string
		change     func(f url.Values)
		wantStatus int
		wantCode   string
	}{
		{"unknown token", func(f url.Values) { f.Set("refresh_token", "1//0unknown") }, 400, "invalid_grant"},
		{"no token", func(f url.Values) { f.Del("refresh_token") }, 400, "invalid_request"},
		{"other client", func(f url.Values) { f.Set("client_id", otherClient); f.Set("client_secret", "other-secret") }, 400, "unauthorized_client"},
		{"wider scope", func(f url.Values) { f.Set("scope", "https://www.googleapis.com/auth/gmail.readonly") }, 400, "invalid_scope"},
		{"narrower scope", func(f url.Values) { f.Set("scope", gmailScope) }, 200, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := url.Values{}
			for k, v := range base {
				f[k] = v
			}
			tc.change(f)
			status, out := sb.postToken(t, "/token", f)
			if errCode, _ := out["error"].(string); status != tc.wantStatus || errCode != tc.wantCode {
				t.Errorf("got %d %v, want %d %q", status, out, tc.wantStatus, tc.wantCode)
			}
		})
	}
	// None of that hurt the token.
	cfg := sb.config(oauth2.AuthStyleInHeader)
	tok, err := cfg.TokenSource(ctx(), &oauth2.Token{RefreshToken: rt}).Token()
	if err != nil {
		t.Fatal(err)
	}
	if email, scopes, err := sb.srv.Check(tok.AccessToken); err != nil || email != alice || strings.Join(scopes, " ") != gmailScope+" openid" {
		t.Errorf("Check = %q %v %v", email, scopes, err)
	}
}

func TestRevoke(t *testing.T) {
	cases := []struct {
		name   string
		revoke func(tok *oauth2.Token) url.Values
		query  bool
	}{
		{"refresh token", func(tok *oauth2.Token) url.Values { return url.Values{"token": {tok.RefreshToken}} }, false},
		{"access token", func(tok *oauth2.Token) url.Values { return url.Values{"token": {tok.AccessToken}} }, false},
		{"token in query", func(tok *oauth2.Token) url.Values { return url.Values{"token": {tok.RefreshToken}} }, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			sb := newSandbox(t)
			cfg := sb.config(oauth2.AuthStyleInHeader, gmailScope)
			tok, err := cfg.TokenSource(ctx(), &oauth2.Token{RefreshToken: sb.srv.IssueRefreshToken(clientID, alice, []string{gmailScope})}).Token()
			if err != nil {
				t.Fatal(err)
			}
			bobTok, _ := cfg.TokenSource(ctx(), &oauth2.Token{RefreshToken: sb.srv.IssueRefreshToken(clientID, bob, []string{gmailScope})}).Token()

			form := tc.revoke(tok)
			path := "/revoke"
			if tc.query {
				path, form = path+"?"+form.Encode(), url.Values{}
			}
			if status, out := sb.postToken(t, path, form); status != 200 {
				t.Fatalf("revoke = %d %v", status, out)
			}
			if _, _, err := sb.srv.Check(tok.AccessToken); !errors.Is(err, googleauth.ErrInvalidToken) {
				t.Errorf("access token live after revoke: %v", err)
			}
			tok.Expiry = time.Now().Add(-time.Second)
			_, err = cfg.TokenSource(ctx(), tok).Token()
			if status, errCode := retrieveError(err); status != 400 || errCode != "invalid_grant" {
				t.Errorf("refresh after revoke: %d %q, want 400 invalid_grant", status, errCode)
			}
			if status, out := sb.postToken(t, path, form); status != 400 || out["error"] != "invalid_token" {
				t.Errorf("second revoke = %d %v, want 400 invalid_token", status, out)
			}
			if _, _, err := sb.srv.Check(bobTok.AccessToken); err != nil {
				t.Errorf("another account's token died: %v", err)
			}
		})
	}

	sb := newSandbox(t)
	for _, tc := range []struct {
		name     string
		form     url.Values
		wantCode string
	}{
		{"unknown token", url.Values{"token": {"ya29.a0unknown"}}, "invalid_token"},
		{"no token", url.Values{}, "invalid_request"},
	} {
		if status, out := sb.postToken(t, "/revoke", tc.form); status != 400 || out["error"] != tc.wantCode {
			t.Errorf("%s: revoke = %d %v, want 400 %s", tc.name, status, out, tc.wantCode)
		}
	}
}

func TestRevokeAccount(t *testing.T) {
	sb := newSandbox(t)
	cfg := sb.config(oauth2.AuthStyleInHeader, gmailScope)
	aliceRT := sb.srv.IssueRefreshToken(clientID, "Alice@Example.com", []string{gmailScope})
	aliceTok, _ := cfg.TokenSource(ctx(), &oauth2.Token{RefreshToken: aliceRT}).Token()
	bobTok, _ := cfg.TokenSource(ctx(), &oauth2.Token{RefreshToken: sb.srv.IssueRefreshToken(clientID, bob, []string{gmailScope})}).Token()
	code := sb.autoCode(t, cfg)

	sb.srv.RevokeAccount("ALICE@example.com")

	if _, _, err := sb.srv.Check(aliceTok.AccessToken); !errors.Is(err, googleauth.ErrInvalidToken) {
		t.Errorf("alice's access token: %v, want ErrInvalidToken", err)
	}
	_, err := cfg.TokenSource(ctx(), &oauth2.Token{RefreshToken: aliceRT}).Token()
	if status, errCode := retrieveError(err); status != 400 || errCode != "invalid_grant" {
		t.Errorf("alice's refresh: %d %q, want 400 invalid_grant", status, errCode)
	}
	_, err = cfg.Exchange(ctx(), code)
	if status, errCode := retrieveError(err); status != 400 || errCode != "invalid_grant" {
		t.Errorf("alice's outstanding code: %d %q, want 400 invalid_grant", status, errCode)
	}
	if email, _, err := sb.srv.Check(bobTok.AccessToken); err != nil || email != bob {
		t.Errorf("bob's token: %q %v", email, err)
	}
}

func TestTokenInfo(t *testing.T) {
	s := googleauth.New(googleauth.Options{Clients: map[string]googleauth.Client{"c": {Secret: "s"}}})
	s.AddAccount("ti@example.com")
	mux := http.NewServeMux()
	s.Register(mux)
	srv := httptest.NewServer(mux)
	defer srv.Close()
	rt := s.IssueRefreshToken("c", "ti@example.com", []string{"https://www.googleapis.com/auth/gmail.metadata"})
	conf := oauth2.Config{ClientID: "c", ClientSecret: "s", Endpoint: oauth2.Endpoint{TokenURL: srv.URL + "/token"}}
	tok, err := conf.TokenSource(context.Background(), &oauth2.Token{RefreshToken: rt}).Token()
	if err != nil {
		t.Fatal(err)
	}
	get := func() (int, map[string]any) {
		resp, err := http.Get(srv.URL + "/tokeninfo?access_token=" + url.QueryEscape(tok.AccessToken))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var body map[string]any
		json.NewDecoder(resp.Body).Decode(&body)
		return resp.StatusCode, body
	}
	code, body := get()
	if code != 200 || body["sub"] != googleauth.Subject("ti@example.com") || body["aud"] != "c" || body["email"] != nil {
		t.Errorf("tokeninfo = %d %v, want the sub, the client and no email without the email scope", code, body)
	}
	s.RevokeAccount("ti@example.com")
	if code, body := get(); code != 400 || body["error"] != "invalid_token" {
		t.Errorf("tokeninfo of a revoked token = %d %v, want 400 invalid_token", code, body)
	}
}
