package gmailclient_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"golang.org/x/oauth2"
	"google.golang.org/api/gmail/v1"
	"google.golang.org/api/option"

	"github.com/gmailwatch/gmailwatch/scripts/sandbox/gmailapi"
	"github.com/gmailwatch/gmailwatch/scripts/sandbox/googleauth"
	"github.com/gmailwatch/gmailwatch/shared/config"
	"github.com/gmailwatch/gmailwatch/shared/gmailclient"
)

func TestReadQuotaProfile(t *testing.T) {
	for _, tc := range []struct {
		value string
		want  gmailclient.QuotaProfile
	}{
		{"", gmailclient.QuotaStandard2026},
		{"standard-2026", gmailclient.QuotaStandard2026},
		{" LEGACY ", gmailclient.QuotaLegacy},
	} {
		r := config.NewReader(config.FromMap(map[string]string{"GMAIL_QUOTA_PROFILE": tc.value}))
		if got := gmailclient.ReadQuotaProfile(r); got != tc.want || r.Err() != nil {
			t.Errorf("GMAIL_QUOTA_PROFILE=%q: %q, %v; want %q", tc.value, got, r.Err(), tc.want)
		}
	}
	r := config.NewReader(config.FromMap(map[string]string{"GMAIL_QUOTA_PROFILE": "standard-2025"}))
	gmailclient.ReadQuotaProfile(r)
	if err := r.Err(); err == nil || !strings.Contains(err.Error(), `GMAIL_QUOTA_PROFILE: "standard-2025" is not one of standard-2026, legacy`) {
		t.Errorf("bad profile: %v", err)
	}
	// The zero value is the default.
	var zero gmailclient.QuotaProfile
	if zero.Name() != "standard-2026" || zero.Units("messages.get") != 20 || zero.UserPerMinute() != 6000 {
		t.Errorf("zero profile: %s, messages.get %d, %d a minute", zero.Name(), zero.Units("messages.get"), zero.UserPerMinute())
	}
}

// TestQuotaProfilesCountWhatGmailCharges: under each profile, the client's
// cost of every method it calls is what the sandbox charges for it, and its
// limits are the sandbox's.
func TestQuotaProfilesCountWhatGmailCharges(t *testing.T) {
	for _, p := range []gmailclient.QuotaProfile{gmailclient.QuotaStandard2026, gmailclient.QuotaLegacy} {
		t.Run(p.Name(), func(t *testing.T) {
			const client, secret, email = "c", "s", "units@example.com"
			auth := googleauth.New(googleauth.Options{Clients: map[string]googleauth.Client{client: {Secret: secret, RedirectURIs: []string{"http://127.0.0.1/cb"}}}})
			g := gmailapi.New(gmailapi.Options{Auth: auth, Quota: gmailapi.QuotaProfile(p.Name())})
			mux := http.NewServeMux()
			auth.Register(mux)
			g.Register(mux)
			srv := httptest.NewServer(mux)
			t.Cleanup(srv.Close)
			if err := g.AddMailbox(email); err != nil {
				t.Fatal(err)
			}
			auth.AddAccount(email)
			d, err := g.Deliver(gmailapi.Delivery{To: email})
			if err != nil {
				t.Fatal(err)
			}
			conf := oauth2.Config{ClientID: client, ClientSecret: secret, Endpoint: oauth2.Endpoint{TokenURL: srv.URL + "/token"}}
			ctx := context.Background()
			ts := conf.TokenSource(ctx, &oauth2.Token{RefreshToken: auth.IssueRefreshToken(client, email, []string{gmailapi.ScopeMetadata})})
			svc, err := gmail.NewService(ctx, option.WithEndpoint(srv.URL+"/"), option.WithTokenSource(ts))
			if err != nil {
				t.Fatal(err)
			}
			q := g.Quota()
			if q.UserUnitsPerMinute != p.UserPerMinute() || q.ProjectUnitsPerMinute != p.ProjectPerMinute() {
				t.Errorf("limits %d and %d a minute; the sandbox's are %d and %d", p.UserPerMinute(), p.ProjectPerMinute(), q.UserUnitsPerMinute, q.ProjectUnitsPerMinute)
			}
			// Each call is charged whether or not it succeeds (watch has no
			// Pub/Sub here and is refused after it was charged).
			for method, call := range map[string]func(){
				gmailclient.MethodGetProfile:   func() { svc.Users.GetProfile("me").Do() },
				gmailclient.MethodHistoryList:  func() { svc.Users.History.List("me").StartHistoryId(d.HistoryID).Do() },
				gmailclient.MethodMessagesGet:  func() { svc.Users.Messages.Get("me", d.ID).Format("metadata").Do() },
				gmailclient.MethodMessagesList: func() { svc.Users.Messages.List("me").Do() },
				gmailclient.MethodLabelsList:   func() { svc.Users.Labels.List("me").Do() },
				gmailclient.MethodWatch:        func() { svc.Users.Watch("me", &gmail.WatchRequest{TopicName: "projects/p/topics/t"}).Do() },
				gmailclient.MethodStop:         func() { svc.Users.Stop("me").Do() },
			} {
				before := g.Usage(email)
				call()
				after := g.Usage(email)
				if after.Calls[method] != before.Calls[method]+1 {
					t.Fatalf("%s: the sandbox counted calls %v", method, after.Calls)
				}
				if got, want := int(after.Units-before.Units), p.Units(method); got != want {
					t.Errorf("%s: the sandbox charged %d units, the client counts %d", method, got, want)
				}
			}
		})
	}
}
