package sandbox

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

// call sends one request and returns the status and the decoded JSON body.
func call(t *testing.T, method, u, token, contentType, body string, header map[string]string) (int, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest(method, u, strings.NewReader(body))
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var out map[string]any
	_ = json.Unmarshal(raw, &out)
	return resp.StatusCode, out
}

// TestWorkspaceShapes checks the Google answer shapes of signJwt, the
// metadata token, the JWT-bearer grant and the Directory API, including
// every refusal, on raw HTTP.
func TestWorkspaceShapes(t *testing.T) {
	sb, err := Start(context.Background(), Options{ProjectID: "p", Domain: "example.com"})
	if err != nil {
		t.Fatal(err)
	}
	defer sb.Close()
	for _, u := range []struct {
		email string
		admin bool
	}{{"admin@example.com", true}, {"ann@example.com", false}} {
		if err := sb.AddDirectoryUser(u.email, "/", u.admin); err != nil {
			t.Fatal(err)
		}
	}
	if err := sb.GrantDelegation("https://www.googleapis.com/auth/gmail.metadata", "https://www.googleapis.com/auth/admin.directory.user.readonly"); err != nil {
		t.Fatal(err)
	}
	sa, clientID := sb.ServiceAccount()
	if len(clientID) != 21 {
		t.Errorf("client id %q, want Google's 21 digits", clientID)
	}

	// The runtime identity's token, from the metadata server.
	if code, _ := call(t, "GET", sb.URL+"/computeMetadata/v1/instance/service-accounts/default/token", "", "", "", nil); code != 403 {
		t.Errorf("metadata token without Metadata-Flavor: %d, want 403", code)
	}
	code, tok := call(t, "GET", sb.URL+"/computeMetadata/v1/instance/service-accounts/default/token", "", "", "", map[string]string{"Metadata-Flavor": "Google"})
	caller, _ := tok["access_token"].(string)
	if code != 200 || caller == "" || tok["token_type"] != "Bearer" {
		t.Fatalf("metadata token: %d %v", code, tok)
	}

	now := time.Now().Unix()
	claims := func(sub, aud string, life int64) string {
		b, _ := json.Marshal(map[string]any{"iss": sa, "sub": sub, "aud": aud, "scope": "https://www.googleapis.com/auth/gmail.metadata", "iat": now, "exp": now + life})
		return string(b)
	}
	signURL := sb.URL + "/v1/projects/-/serviceAccounts/" + sa + ":signJwt"
	sign := func(payload string) string {
		body, _ := json.Marshal(map[string]string{"payload": payload})
		code, out := call(t, "POST", signURL, caller, "application/json", string(body), nil)
		jwt, _ := out["signedJwt"].(string)
		if code != 200 || jwt == "" || out["keyId"] == "" {
			t.Fatalf("signJwt: %d %v", code, out)
		}
		return jwt
	}
	good := claims("ann@example.com", "https://oauth2.googleapis.com/token", 3600)
	signTests := []struct {
		name, url, token, body string
		code                   int
		status                 string
	}{
		{"no token", signURL, "", `{"payload":"{}"}`, 401, "UNAUTHENTICATED"},
		{"unknown token", signURL, "ya29.forged", `{"payload":"{}"}`, 401, "UNAUTHENTICATED"},
		{"project instead of -", strings.Replace(signURL, "/-/", "/p/", 1), caller, `{"payload":"{}"}`, 400, "INVALID_ARGUMENT"},
		{"other method", strings.Replace(signURL, ":signJwt", ":signBlob", 1), caller, `{}`, 404, "NOT_FOUND"},
		{"unknown account", strings.Replace(signURL, sa, "nobody@p.iam.gserviceaccount.com", 1), caller, `{"payload":"{}"}`, 403, "PERMISSION_DENIED"},
		{"payload not JSON", signURL, caller, `{"payload":"nope"}`, 400, "INVALID_ARGUMENT"},
		{"exp beyond 12 h", signURL, caller, fmt.Sprintf(`{"payload":"{\"exp\":%d}"}`, now+13*3600), 400, "INVALID_ARGUMENT"},
		{"unknown field", signURL, caller, `{"payload":"{}","extra":1}`, 400, "INVALID_ARGUMENT"},
	}
	for _, tc := range signTests {
		code, out := call(t, "POST", tc.url, tc.token, "application/json", tc.body, nil)
		e, _ := out["error"].(map[string]any)
		if code != tc.code || e["status"] != tc.status || e["code"] != float64(tc.code) {
			t.Errorf("signJwt %s: %d %v, want %d %s", tc.name, code, out, tc.code, tc.status)
		}
	}
	if err := sb.IAM.SetTokenCreator(sa, sb.Runtime(), false); err != nil {
		t.Fatal(err)
	}
	body, _ := json.Marshal(map[string]string{"payload": good})
	code, out := call(t, "POST", signURL, caller, "application/json", string(body), nil)
	if e, _ := out["error"].(map[string]any); code != 403 || !strings.Contains(fmt.Sprint(e["details"]), "iam.serviceAccounts.signJwt") {
		t.Errorf("signJwt without the token creator role: %d %v, want 403 naming the permission", code, out)
	}
	_ = sb.IAM.SetTokenCreator(sa, sb.Runtime(), true)

	exchange := func(jwt string) (int, map[string]any) {
		form := url.Values{"grant_type": {"urn:ietf:params:oauth:grant-type:jwt-bearer"}, "assertion": {jwt}}
		return call(t, "POST", sb.URL+"/token", "", "application/x-www-form-urlencoded", form.Encode(), nil)
	}
	forged := sign(good)
	forged = forged[:len(forged)-4] + "AAAA"
	grantTests := []struct {
		name, jwt, code string
		status          int
	}{
		{"delegated user", sign(good), "", 200},
		{"outside the domain", sign(claims("eve@example.org", "https://oauth2.googleapis.com/token", 3600)), "unauthorized_client", 401},
		{"no such user", sign(claims("gone@example.com", "https://oauth2.googleapis.com/token", 3600)), "invalid_grant", 400},
		{"wrong audience", sign(claims("ann@example.com", "https://example.com/token", 3600)), "invalid_grant", 400},
		{"over an hour", sign(claims("ann@example.com", "https://oauth2.googleapis.com/token", 7200)), "invalid_grant", 400},
		{"bad signature", forged, "invalid_grant", 400},
		{"not a JWT", "abc", "invalid_grant", 400},
	}
	for _, tc := range grantTests {
		code, out := exchange(tc.jwt)
		if code != tc.status || (tc.code != "" && out["error"] != tc.code) || (tc.code == "" && out["access_token"] == nil) {
			t.Errorf("JWT-bearer grant %s: %d %v, want %d %q", tc.name, code, out, tc.status, tc.code)
		}
	}
	code, out = exchange(sign(claims("eve@example.org", "https://oauth2.googleapis.com/token", 3600)))
	if out["error_description"] != "Client is unauthorized to retrieve access tokens using this method, or client not authorized for any of the scopes requested." {
		t.Errorf("unauthorized_client description %q is not Google's", out["error_description"])
	}

	// Directory API: an admin's delegated token, then each refusal.
	adminClaims, _ := json.Marshal(map[string]any{"iss": sa, "sub": "admin@example.com", "aud": "https://oauth2.googleapis.com/token",
		"scope": "https://www.googleapis.com/auth/admin.directory.user.readonly", "iat": now, "exp": now + 600})
	_, out = exchange(sign(string(adminClaims)))
	adminToken, _ := out["access_token"].(string)
	_, out = exchange(sign(good))
	annToken, _ := out["access_token"].(string)
	users := sb.URL + "/admin/directory/v1/users"
	dirTests := []struct {
		name, url, token string
		code             int
		reason           string
	}{
		{"listing", users + "?customer=my_customer", adminToken, 200, ""},
		{"no token", users + "?customer=my_customer", "", 401, "required"},
		{"not an admin, no directory scope", users + "?customer=my_customer", annToken, 403, "insufficientPermissions"},
		{"neither customer nor domain", users, adminToken, 400, "invalid"},
		{"another domain", users + "?domain=example.org", adminToken, 403, "forbidden"},
		{"maxResults 501", users + "?customer=my_customer&maxResults=501", adminToken, 400, "invalid"},
		{"unknown query field", users + "?customer=my_customer&query=" + url.QueryEscape("shoeSize=9"), adminToken, 400, "invalid"},
		{"bad page token", users + "?customer=my_customer&pageToken=zz", adminToken, 400, "invalid"},
		{"members.list without a group scope", sb.URL + "/admin/directory/v1/groups/nope@example.com/members", adminToken, 403, "insufficientPermissions"},
	}
	for _, tc := range dirTests {
		code, out := call(t, "GET", tc.url, tc.token, "", "", nil)
		e, _ := out["error"].(map[string]any)
		reason := ""
		if errs, _ := e["errors"].([]any); len(errs) > 0 {
			reason, _ = errs[0].(map[string]any)["reason"].(string)
		}
		if code != tc.code || reason != tc.reason {
			t.Errorf("directory %s: %d %v, want %d %q", tc.name, code, out, tc.code, tc.reason)
		}
	}
	// Searches lag changes (an hour by default); the plain listing does not.
	search := users + "?domain=example.com&query=" + url.QueryEscape("orgUnitPath='/' isAdmin=false")
	count := func(u string) int {
		code, out := call(t, "GET", u, adminToken, "", "", nil)
		list, _ := out["users"].([]any)
		if code != 200 || out["kind"] != "admin#directory#users" {
			t.Fatalf("GET %s: %d %v", u, code, out)
		}
		return len(list)
	}
	if n := count(search); n != 0 {
		t.Errorf("search right after the users were added: %d users, want 0 (not indexed yet)", n)
	}
	if n := count(users + "?domain=example.com"); n != 2 {
		t.Errorf("plain listing: %d users, want both", n)
	}
	sb.Directory.SetSearchLag(0)
	if n := count(search); n != 1 {
		t.Errorf("search once indexed: %d users, want ann alone", n)
	}
}

// TestWorkspaceAdminRefusesBadInput checks that the admin API's Workspace
// requests refuse bad input with Google's error shape and change nothing.
func TestWorkspaceAdminRefusesBadInput(t *testing.T) {
	sb, err := Start(context.Background(), Options{ProjectID: "p", Domain: "example.com"})
	if err != nil {
		t.Fatal(err)
	}
	defer sb.Close()
	plain, err := Start(context.Background(), Options{ProjectID: "p"})
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	tests := []struct {
		name, base, method, path, body string
		code                           int
	}{
		{"user outside the domain", sb.URL, "POST", "/admin/directory/users", `{"email":"eve@example.org"}`, 400},
		{"relative org unit", sb.URL, "POST", "/admin/directory/users", `{"email":"a@example.com","orgUnitPath":"Sales"}`, 400},
		{"unknown field", sb.URL, "POST", "/admin/directory/users", `{"email":"a@example.com","role":"x"}`, 400},
		{"suspend unknown user", sb.URL, "POST", "/admin/directory/suspend", `{"email":"nobody@example.com","suspended":true}`, 404},
		{"delete without email", sb.URL, "DELETE", "/admin/directory/users", ``, 400},
		{"member of unknown group", sb.URL, "POST", "/admin/directory/members", `{"group":"g@example.com","email":"a@example.com"}`, 404},
		{"grant without scopes", sb.URL, "POST", "/admin/delegation", `{"scopes":[]}`, 400},
		{"withdraw what was never granted", sb.URL, "DELETE", "/admin/delegation", ``, 404},
		{"withdraw with a bad flag", sb.URL, "DELETE", "/admin/delegation?endTokens=maybe", ``, 400},
		{"no Workspace domain", plain.URL, "POST", "/admin/directory/users", `{"email":"a@example.com"}`, 400},
	}
	for _, tc := range tests {
		code, out := call(t, tc.method, tc.base+tc.path, "", "application/json", tc.body, nil)
		if e, _ := out["error"].(map[string]any); code != tc.code || e["message"] == nil {
			t.Errorf("%s: %d %v, want %d in Google's error shape", tc.name, code, out, tc.code)
		}
	}
	if _, out := call(t, "GET", sb.URL+"/admin/delegation", "", "", "", nil); fmt.Sprint(out["delegations"]) != "map[]" {
		t.Errorf("delegations after refused requests: %v, want none", out["delegations"])
	}
	if sb.Gmail.Mailboxes() != nil && len(sb.Gmail.Mailboxes()) != 0 {
		t.Errorf("mailboxes after refused requests: %v, want none", sb.Gmail.Mailboxes())
	}
}
