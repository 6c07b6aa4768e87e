package accounts_test

import (
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gmailwatch/gmailwatch/functions/accounts"
	"github.com/gmailwatch/gmailwatch/scripts/sandbox"
	"github.com/gmailwatch/gmailwatch/scripts/sandbox/googleauth"
	"github.com/gmailwatch/gmailwatch/scripts/testenv"
	"github.com/gmailwatch/gmailwatch/shared/config"
)

// TestCallerIdentityIsChecked sends the API ID tokens that Cloud Run's IAM
// check could let through by mistake (a public service, an Editor) and ones
// an attacker might make: each is refused before any route runs, so nothing
// is stored; the listed backend's own token works.
func TestCallerIdentityIsChecked(t *testing.T) {
	var behind atomic.Int64 // how far the sandbox's clock is behind
	clock := func() time.Time { return time.Now().Add(-time.Duration(behind.Load())) }
	w := testenv.NewWorld(t, testenv.Options{Sandbox: sandbox.Options{Now: clock}})
	cfg, err := accounts.ReadConfig(config.FromMap(w.Env(map[string]string{"CONSENT_URL": consentURL, "RETURN_ORIGINS": appOrigin,
		"ACCOUNTS_URL": accountsURL + "/", "ACCOUNTS_INVOKERS": "Other@app-project.iam.gserviceaccount.com, " + backend})))
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(accounts.New(cfg, accounts.Deps{Users: w.Store, Vault: w.Vault, Events: w.Publisher}, w.Log))
	t.Cleanup(srv.Close)

	good := w.Sandbox.Auth.IDToken(backend, accountsURL)
	behind.Store(int64(2 * time.Hour))
	expired := w.Sandbox.Auth.IDToken(backend, accountsURL) // issued two hours ago, for one hour
	behind.Store(0)
	elsewhere := googleauth.New(googleauth.Options{}).IDToken(backend, accountsURL) // signed, but not with Google's key
	header, payload, sig := split(t, w.Sandbox.Auth.IDToken("editor@app-project.iam.gserviceaccount.com", accountsURL))
	_, backendPayload, _ := split(t, good)
	tampered := header + "." + backendPayload + "." + sig // the editor's signature over the backend's claims

	for _, tc := range []struct {
		name, authorization string
		status              int
	}{
		{"no token", "", http.StatusUnauthorized},
		{"not a bearer token", "Basic " + base64.StdEncoding.EncodeToString([]byte("backend:pw")), http.StatusUnauthorized},
		{"garbage", "Bearer not-a-jwt", http.StatusForbidden},
		{"forged: signed by another key", "Bearer " + elsewhere, http.StatusForbidden},
		{"forged: claims swapped under a signature", "Bearer " + tampered, http.StatusForbidden},
		{"forged: unsigned", "Bearer " + header + "." + backendPayload + ".", http.StatusForbidden},
		{"expired", "Bearer " + expired, http.StatusForbidden},
		{"for another audience", "Bearer " + w.Sandbox.Auth.IDToken(backend, "https://other.example.com"), http.StatusForbidden},
		{"an Editor, not listed", "Bearer " + header + "." + payload + "." + sig, http.StatusForbidden},
		{"a Google user access token", "Bearer ya29.a0AfH6SMB", http.StatusForbidden},
		// What reaches the function of a token Cloud Run's IAM check consumed:
		// claims anyone could write, so it is never taken for the caller.
		{"signature removed by Cloud Run", "Bearer " + header + "." + backendPayload + ".SIGNATURE_REMOVED_BY_GOOGLE", http.StatusUnauthorized},
	} {
		status, body := post(t, srv.URL+"/connect-links", tc.authorization, `{"appRef":"attacker"}`)
		var e struct{ Error struct{ Code int } }
		json.Unmarshal([]byte(body), &e)
		if status != tc.status || e.Error.Code != tc.status {
			t.Errorf("%s: %d %s, want %d", tc.name, status, body, tc.status)
		}
		if tok := strings.TrimPrefix(tc.authorization, "Bearer "); len(tok) > 20 && strings.Contains(body, tok[len(tok)-20:]) {
			t.Errorf("%s: the answer repeats the token: %s", tc.name, body)
		}
	}
	docs, err := w.Firestore.Collection("connectLinks").Documents(t.Context()).GetAll()
	if err != nil || len(docs) != 0 {
		t.Fatalf("%d links stored by refused callers (%v), want none", len(docs), err)
	}
	if strings.Contains(w.Logs.String(), sig) {
		t.Error("a refused token reached the log")
	}

	// As deployed: Cloud Run checks X-Serverless-Authorization and removes its
	// signature; Authorization, the same token, reaches the function intact.
	req, _ := http.NewRequest("POST", srv.URL+"/connect-links", strings.NewReader(`{"appRef":"app-user","successUrl":"`+appOrigin+`/ok","errorUrl":"`+appOrigin+`/err"}`))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+good)
	req.Header.Set("X-Serverless-Authorization", "Bearer "+header+"."+backendPayload+".SIGNATURE_REMOVED_BY_GOOGLE")
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != http.StatusCreated {
		t.Errorf("both headers, as Cloud Run passes them: %v %v, want 201", resp.StatusCode, err)
	}

	// The listed backend, and the other listed caller (matched without case).
	for _, tok := range []string{good, w.Sandbox.Auth.IDToken("other@app-project.iam.gserviceaccount.com", accountsURL)} {
		if status, body := post(t, srv.URL+"/connect-links", "Bearer "+tok, `{"appRef":"app-user","successUrl":"`+appOrigin+`/ok","errorUrl":"`+appOrigin+`/err"}`); status != http.StatusCreated {
			t.Errorf("listed caller: %d %s, want 201", status, body)
		}
	}
}

// TestCallerSettings refuses a list entry that is not an address, and
// requires the API's URL.
func TestCallerSettings(t *testing.T) {
	_, err := accounts.ReadConfig(config.FromMap(map[string]string{"PROJECT_ID": "p", "EVENTS_TOPIC": "e", "OAUTH_CLIENT_ID": "c",
		"CONSENT_URL": consentURL, "ACCOUNTS_INVOKERS": "serviceAccount:backend@x.iam.gserviceaccount.com"}))
	if err == nil || !strings.Contains(err.Error(), "ACCOUNTS_INVOKERS") || !strings.Contains(err.Error(), "ACCOUNTS_URL") {
		t.Errorf("ReadConfig = %v, want ACCOUNTS_INVOKERS and ACCOUNTS_URL refused", err)
	}
}

func split(t *testing.T, jwt string) (header, payload, sig string) {
	t.Helper()
	parts := strings.Split(jwt, ".")
	if len(parts) != 3 {
		t.Fatalf("not a JWT: %d parts", len(parts))
	}
	return parts[0], parts[1], parts[2]
}

func post(t *testing.T, url, authorization, body string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest("POST", url, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	if authorization != "" {
		req.Header.Set("Authorization", authorization)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(raw)
}
