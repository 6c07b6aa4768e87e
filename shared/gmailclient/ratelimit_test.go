package gmailclient_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"

	"golang.org/x/oauth2"
	"google.golang.org/api/gmail/v1"
	"google.golang.org/api/googleapi"
	"google.golang.org/api/option"

	"github.com/gmailwatch/gmailwatch/scripts/sandbox/gmailapi"
	"github.com/gmailwatch/gmailwatch/scripts/sandbox/googleauth"
	"github.com/gmailwatch/gmailwatch/shared/gmailclient"
)

// Every quota and concurrency refusal the strict sandbox sends, in the shapes
// of Gmail's "Resolve errors" guide, read back through the real client,
// counts as rate-limited and is retried.
func TestEveryDocumentedQuotaShapeIsRateLimited(t *testing.T) {
	const client, secret, email = "c", "s", "quota@example.com"
	auth := googleauth.New(googleauth.Options{Clients: map[string]googleauth.Client{client: {Secret: secret, RedirectURIs: []string{"http://127.0.0.1/cb"}}}})
	g := gmailapi.New(gmailapi.Options{Auth: auth})
	mux := http.NewServeMux()
	auth.Register(mux)
	g.Register(mux)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	if err := g.AddMailbox(email); err != nil {
		t.Fatal(err)
	}
	auth.AddAccount(email)
	conf := oauth2.Config{ClientID: client, ClientSecret: secret, Endpoint: oauth2.Endpoint{TokenURL: srv.URL + "/token"}}
	ctx := context.Background()
	ts := conf.TokenSource(ctx, &oauth2.Token{RefreshToken: auth.IssueRefreshToken(client, email, []string{gmailapi.ScopeMetadata})})
	svc, err := gmail.NewService(ctx, option.WithEndpoint(srv.URL+"/"), option.WithTokenSource(ts))
	if err != nil {
		t.Fatal(err)
	}
	if err := g.SetFaults(email, gmailapi.Faults{Seed: 7, ErrorRate: 1, ErrorCodes: []int{429}}); err != nil {
		t.Fatal(err)
	}
	shapes := map[string]bool{}
	for range 40 {
		_, err := svc.Users.GetProfile("me").Do()
		ge, ok := err.(*googleapi.Error)
		if !ok || len(ge.Errors) == 0 {
			t.Fatalf("got %v, want a Google API error", err)
		}
		shapes[ge.Errors[0].Reason+" "+http.StatusText(ge.Code)] = true
		if !gmailclient.IsRateLimited(err) || !gmailclient.IsRetryable(err) {
			t.Errorf("%d %s (%s): IsRateLimited %v, IsRetryable %v; want both", ge.Code, ge.Errors[0].Reason, ge.Message,
				gmailclient.IsRateLimited(err), gmailclient.IsRetryable(err))
		}
	}
	if len(shapes) != 4 {
		t.Errorf("saw %d shapes %v, want all four", len(shapes), shapes)
	}
	for _, tc := range []struct {
		name string
		err  error
		want bool
	}{
		{"usageLimits domain, other reason", &googleapi.Error{Code: 403, Body: `{"error":{"errors":[{"domain":"usageLimits","reason":"quotaExceeded"}]}}`}, true},
		{"daily limit", &googleapi.Error{Code: 403, Errors: []googleapi.ErrorItem{{Reason: "dailyLimitExceeded"}},
			Body: `{"error":{"errors":[{"domain":"usageLimits","reason":"dailyLimitExceeded"}]}}`}, false},
		{"403 forbidden", &googleapi.Error{Code: 403, Errors: []googleapi.ErrorItem{{Reason: "forbidden"}}, Body: `{"error":{"errors":[{"domain":"global","reason":"forbidden"}]}}`}, false},
		{"400", &googleapi.Error{Code: 400}, false},
	} {
		if got := gmailclient.IsRateLimited(tc.err); got != tc.want {
			t.Errorf("%s: IsRateLimited = %v, want %v", tc.name, got, tc.want)
		}
	}
}
