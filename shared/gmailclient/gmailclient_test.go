package gmailclient_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"golang.org/x/oauth2"
	"google.golang.org/api/googleapi"

	"github.com/gmailwatch/gmailwatch/shared/config"
	"github.com/gmailwatch/gmailwatch/shared/gmailclient"
)

func TestErrorClasses(t *testing.T) {
	grant := &oauth2.RetrieveError{ErrorCode: "invalid_grant", Response: &http.Response{StatusCode: 400}}
	tests := []struct {
		name                   string
		err                    error
		retry, grant, notFound bool
	}{
		{"429", &googleapi.Error{Code: 429}, true, false, false},
		{"503", &googleapi.Error{Code: 503}, true, false, false},
		{"403 rate limit", &googleapi.Error{Code: 403, Errors: []googleapi.ErrorItem{{Reason: "userRateLimitExceeded"}}}, true, false, false},
		{"403 scope", &googleapi.Error{Code: 403, Errors: []googleapi.ErrorItem{{Reason: "insufficientPermissions"}}}, false, false, false},
		{"404", &googleapi.Error{Code: 404}, false, false, true},
		{"invalid_grant wrapped", fmt.Errorf("get: %w", grant), false, true, false},
		{"token endpoint 500", &oauth2.RetrieveError{Response: &http.Response{StatusCode: 500}}, true, false, false},
		{"canceled", context.Canceled, false, false, false},
		{"transport", errors.New("connection reset"), true, false, false},
	}
	for _, tc := range tests {
		if got := gmailclient.IsRetryable(tc.err); got != tc.retry {
			t.Errorf("%s: IsRetryable = %v, want %v", tc.name, got, tc.retry)
		}
		if got := gmailclient.IsInvalidGrant(tc.err); got != tc.grant {
			t.Errorf("%s: IsInvalidGrant = %v, want %v", tc.name, got, tc.grant)
		}
		if got := gmailclient.IsNotFound(tc.err); got != tc.notFound {
			t.Errorf("%s: IsNotFound = %v, want %v", tc.name, got, tc.notFound)
		}
	}
}

func TestNextRenewal(t *testing.T) {
	w := gmailclient.WatchSettings{RenewBefore: 48 * time.Hour, RenewEvery: 24 * time.Hour}
	now := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	tests := []struct{ expires, want time.Time }{
		{now.Add(7 * 24 * time.Hour), now.Add(24 * time.Hour)}, // fresh: daily
		{now.Add(60 * time.Hour), now.Add(12 * time.Hour)},     // 48 h before expiry comes first
		{now.Add(time.Hour), now.Add(-47 * time.Hour)},         // already due
	}
	for _, tc := range tests {
		if got := w.NextRenewal(tc.expires, now); !got.Equal(tc.want) {
			t.Errorf("NextRenewal(expires %v) = %v, want %v", tc.expires, got, tc.want)
		}
	}
}

func TestReadSettingsRejectsBadValues(t *testing.T) {
	r := config.NewReader(config.FromMap(map[string]string{
		"GMAIL_SCOPE":        "https://mail.google.com/",
		"GMAIL_TOPIC":        "gmail-notifications",
		"GMAIL_LABEL_FILTER": "only",
		"EVENT_TYPES":        "gmail.message.received,gmail.message.starred",
		"OAUTH_TOKEN_URL":    "http://oauth.example.com/token",
	}))
	gmailclient.ReadSettings(r)
	gmailclient.ReadWatchSettings(r)
	err := r.Err()
	for _, want := range []string{"OAUTH_CLIENT_ID: missing", "GMAIL_SCOPE", "GMAIL_TOPIC", "GMAIL_LABEL_FILTER", "OAUTH_TOKEN_URL", `EVENT_TYPES: "gmail.message.starred" is not one of`} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v does not name %s", err, want)
		}
	}
}

func TestWatchCoversTheWholeMailboxWhenMoreThanArrivalsIsAnnounced(t *testing.T) {
	for _, tc := range []struct {
		types      string
		wantLabels []string
		wantFilter string
	}{
		{"", []string{"INBOX"}, "INCLUDE"},
		{"gmail.message.received", []string{"INBOX"}, "INCLUDE"},
		{"gmail.message.received,gmail.message.labels_changed", nil, ""},
		{"gmail.message.deleted", nil, ""},
		{"gmail.message.sent", nil, ""},
	} {
		env := map[string]string{"GMAIL_TOPIC": "projects/p/topics/gmail"}
		if tc.types != "" {
			env["EVENT_TYPES"] = tc.types
		}
		r := config.NewReader(config.FromMap(env))
		req := gmailclient.ReadWatchSettings(r).Request()
		if err := r.Err(); err != nil {
			t.Fatalf("%q: %v", tc.types, err)
		}
		if fmt.Sprint(req.LabelIds) != fmt.Sprint(tc.wantLabels) || req.LabelFilterBehavior != tc.wantFilter || req.TopicName != "projects/p/topics/gmail" {
			t.Errorf("EVENT_TYPES %q: watch %+v, want labels %v %s", tc.types, req, tc.wantLabels, tc.wantFilter)
		}
	}
}
