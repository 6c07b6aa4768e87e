package sandbox_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"golang.org/x/oauth2"
	"google.golang.org/api/gmail/v1"
	"google.golang.org/api/option"

	"github.com/gmailwatch/gmailwatch/scripts/sandbox"
	"github.com/gmailwatch/gmailwatch/scripts/sandbox/googleauth"
)

// A renamed mailbox keeps its history, its grants and its account id; the
// profile names the new address, and the old one is unknown.
func TestRenameMailbox(t *testing.T) {
	t.Parallel()
	sb := start(t, sandbox.Options{})
	rt, err := sb.Connect("rita@example.com")
	if err != nil {
		t.Fatal(err)
	}
	if err := sb.AddMailbox("taken@example.com"); err != nil {
		t.Fatal(err)
	}
	before, _ := sb.Gmail.HistoryID("rita@example.com")
	for _, bad := range []struct{ body, want string }{
		{`{"from":"rita@example.com"}`, "from and to are required"},
		{`{"from":"rita@example.com","to":"taken@example.com"}`, "already exists"},
		{`{"from":"nobody@example.com","to":"new@example.com"}`, "unknown mailbox"},
		{`{"from":"rita@example.com","to":"not an address"}`, "invalid email address"},
		{`{"from":"rita@example.com","to":"x@example.com","extra":1}`, "unknown field"},
	} {
		got := adminJSONRaw(t, sb, "POST", "/admin/rename", bad.body)
		if got.code < 400 || !strings.Contains(got.text, bad.want) {
			t.Errorf("rename %s = %d %s, want an error saying %q", bad.body, got.code, got.text, bad.want)
		}
	}
	if h, err := sb.Gmail.HistoryID("rita@example.com"); err != nil || h != before {
		t.Fatalf("after refused renames: history %d, %v; want %d", h, err, before)
	}

	var mb struct {
		Email     string
		HistoryID uint64
	}
	adminJSON(t, sb, "POST", "/admin/rename", `{"from":"Rita@example.com","to":"Rita.Lee@example.com"}`, 200, &mb)
	if mb.Email != "rita.lee@example.com" || mb.HistoryID != before {
		t.Fatalf("rename answered %+v, want the new address at history %d", mb, before)
	}
	env := sb.Env()
	cfg := oauth2.Config{ClientID: env["OAUTH_CLIENT_ID"], ClientSecret: clientSecret, Endpoint: oauth2.Endpoint{TokenURL: env["OAUTH_TOKEN_URL"]}}
	ctx := context.Background()
	ts := cfg.TokenSource(ctx, &oauth2.Token{RefreshToken: rt})
	svc, err := gmail.NewService(ctx, option.WithEndpoint(env["GMAIL_ENDPOINT"]), option.WithTokenSource(ts))
	if err != nil {
		t.Fatal(err)
	}
	p, err := svc.Users.GetProfile("me").Do()
	if err != nil || p.EmailAddress != "rita.lee@example.com" || p.HistoryId != before {
		t.Fatalf("profile after the rename = %+v, %v", p, err)
	}
	tok, err := ts.Token()
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.PostForm(sb.URL+"/tokeninfo", url.Values{"access_token": {tok.AccessToken}})
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var info struct{ Sub string }
	if err := json.NewDecoder(resp.Body).Decode(&info); err != nil || info.Sub != googleauth.Subject("rita@example.com") {
		t.Fatalf("tokeninfo sub = %q, %v; want the account's id from before the rename", info.Sub, err)
	}
	if _, err := sb.Gmail.HistoryID("rita@example.com"); err == nil {
		t.Fatal("the old address still names a mailbox")
	}
}
