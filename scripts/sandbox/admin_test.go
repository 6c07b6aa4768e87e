package sandbox_test

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/gmailwatch/gmailwatch/scripts/sandbox"
	"github.com/gmailwatch/gmailwatch/scripts/sandbox/gmailapi"
)

// adminJSON calls the admin API, checks the status and decodes the answer into out.
func adminJSON(t *testing.T, sb *sandbox.Sandbox, method, path, body string, want int, out any) string {
	t.Helper()
	req, _ := http.NewRequest(method, sb.URL+path, strings.NewReader(body))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != want {
		t.Fatalf("%s %s %s = %d %s, want %d", method, path, body, resp.StatusCode, data, want)
	}
	if out != nil {
		if err := json.Unmarshal(data, out); err != nil {
			t.Fatalf("%s %s: %q: %v", method, path, data, err)
		}
	}
	return string(data)
}

func TestAdminAPI(t *testing.T) {
	t.Parallel()
	sb := start(t, sandbox.Options{})
	var mb struct {
		Email     string
		HistoryID uint64
	}
	adminJSON(t, sb, "POST", "/admin/mailboxes", `{"email":"Dana@Example.com"}`, 201, &mb)
	if mb.Email != "dana@example.com" || mb.HistoryID == 0 {
		t.Fatalf("mailbox = %+v", mb)
	}
	var d1, d2 gmailapi.Delivered
	adminJSON(t, sb, "POST", "/admin/messages", `{"to":"dana@example.com","subject":"a","labelIds":["INBOX","STARRED"]}`, 200, &d1)
	adminJSON(t, sb, "POST", "/admin/messages", `{"to":"dana@example.com","from":"x@example.com","subject":"b","body":"hi"}`, 200, &d2)
	if d1.ID == "" || d1.ThreadID != d1.ID || d2.HistoryID <= d1.HistoryID {
		t.Fatalf("deliveries %+v %+v", d1, d2)
	}
	var h struct{ HistoryID uint64 }
	adminJSON(t, sb, "POST", "/admin/labels", `{"user":"dana@example.com","id":"`+d1.ID+`","removeLabelIds":["STARRED"]}`, 200, &h)
	adminJSON(t, sb, "DELETE", "/admin/messages?user=dana@example.com&id="+d2.ID, "", 200, &h)
	if cur, _ := sb.Gmail.HistoryID("dana@example.com"); h.HistoryID != cur || cur <= d2.HistoryID {
		t.Fatalf("delete answered %d, mailbox at %d", h.HistoryID, cur)
	}
	var list struct{ Mailboxes []struct{ Email string } }
	adminJSON(t, sb, "GET", "/admin/mailboxes", "", 200, &list)
	if len(list.Mailboxes) != 1 || list.Mailboxes[0].Email != "dana@example.com" {
		t.Fatalf("mailboxes = %+v", list)
	}

	var u gmailapi.Usage
	adminJSON(t, sb, "GET", "/admin/quota?user=dana@example.com", "", 200, &u)
	if u.Units != 0 || u.Calls == nil {
		t.Fatalf("quota before any call = %+v", u)
	}
	var q gmailapi.QuotaState
	adminJSON(t, sb, "GET", "/admin/quota/profile", "", 200, &q)
	if q.Profile != gmailapi.Standard2026 || q.UserUnitsPerMinute != 6000 || q.ProjectUnitsPerMinute != 1_200_000 || q.WindowSeconds != 60 || q.Units["messages.get"] != 20 {
		t.Fatalf("default quota profile %+v", q)
	}
	if got := sb.Env()["GMAIL_QUOTA_PROFILE"]; got != "standard-2026" {
		t.Fatalf("env GMAIL_QUOTA_PROFILE = %q", got)
	}
	adminJSON(t, sb, "POST", "/admin/quota", `{"userUnitsPerMinute":50}`, 200, &q)
	if q.Profile != gmailapi.Standard2026 || q.UserUnitsPerMinute != 50 || q.ProjectUnitsPerMinute != 1_200_000 {
		t.Fatalf("after setting the user limit %+v", q)
	}
	adminJSON(t, sb, "POST", "/admin/quota", `{"profile":"legacy","projectUnitsPerMinute":9000}`, 200, &q)
	adminJSON(t, sb, "GET", "/admin/quota/profile", "", 200, &q)
	if q.Profile != gmailapi.Legacy || q.UserUnitsPerMinute != 15_000 || q.ProjectUnitsPerMinute != 9000 || q.Units["messages.get"] != 5 {
		t.Fatalf("after switching to legacy %+v", q)
	}
	if got := sb.Env()["GMAIL_QUOTA_PROFILE"]; got != "legacy" {
		t.Fatalf("env GMAIL_QUOTA_PROFILE = %q after the switch", got)
	}
	adminJSON(t, sb, "POST", "/admin/quota", `{"profile":"standard-2026"}`, 200, &q)
	adminJSON(t, sb, "DELETE", "/admin/quota", "", 200, nil)
	adminJSON(t, sb, "GET", "/admin/quota", "", 200, &u)

	type faultState struct {
		Global *gmailapi.Faults
		Users  map[string]gmailapi.Faults
	}
	var faults faultState
	adminJSON(t, sb, "POST", "/admin/faults", `{"errorRate":0.5,"errorCodes":[503],"latency":"10ms","seed":9}`, 200, &faults)
	adminJSON(t, sb, "POST", "/admin/faults", `{"user":"dana@example.com","dropNotifications":1,"historyDelay":"2s","expireHistory":true}`, 200, &faults)
	if faults.Global == nil || faults.Global.ErrorRate != 0.5 || faults.Users["dana@example.com"].DropNotifications != 1 {
		t.Fatalf("faults = %+v", faults)
	}
	faults = faultState{}
	adminJSON(t, sb, "DELETE", "/admin/faults?user=dana@example.com", "", 200, &faults)
	if faults.Global == nil || len(faults.Users) != 0 {
		t.Fatalf("after clearing dana = %+v", faults)
	}
	faults = faultState{}
	adminJSON(t, sb, "DELETE", "/admin/faults", "", 200, &faults)
	if faults.Global != nil {
		t.Fatalf("after clearing all = %+v", faults)
	}

	var w gmailapi.WatchState
	adminJSON(t, sb, "GET", "/admin/watch?user=dana@example.com", "", 200, &w)
	if w.Active {
		t.Fatalf("watch = %+v", w)
	}
	adminJSON(t, sb, "POST", "/admin/oauth", `{"autoApprove":true,"grantScopes":["openid"]}`, 200, nil)
	adminJSON(t, sb, "POST", "/admin/revoke", `{"email":"dana@example.com"}`, 200, nil)
	adminJSON(t, sb, "GET", "/admin/", "", 200, nil)
}

// TestAdminBadInput checks every bad request gets Google's error shape and
// leaves the sandbox as it was.
func TestAdminBadInput(t *testing.T) {
	t.Parallel()
	sb := start(t, sandbox.Options{})
	if err := sb.AddMailbox("eve@example.com"); err != nil {
		t.Fatal(err)
	}
	d, _ := sb.Deliver(gmailapi.Delivery{To: "eve@example.com"})
	before, _ := sb.Gmail.HistoryID("eve@example.com")
	for _, tc := range []struct {
		method, path, body string
		code               int
		message            string
	}{
		{"POST", "/admin/mailboxes", `{"email":`, 400, "malformed JSON"},
		{"POST", "/admin/mailboxes", ``, 400, "empty body"},
		{"POST", "/admin/mailboxes", `{"mail":"x@example.com"}`, 400, "unknown field"},
		{"POST", "/admin/mailboxes", `{"email":"not an address"}`, 400, "invalid email"},
		{"POST", "/admin/mailboxes", `{"email":"eve@example.com"}`, 409, "already exists"},
		{"POST", "/admin/mailboxes", `{"email":"a@example.com"}{}`, 400, "more than one"},
		{"POST", "/admin/messages", `{"to":"nobody@example.com"}`, 400, "unknown mailbox"},
		{"POST", "/admin/messages", `{"to":"eve@example.com","labelIds":"INBOX"}`, 400, "malformed JSON"},
		{"POST", "/admin/messages", `{"to":"eve@example.com","labelIds":["MADE_UP"]}`, 400, "Invalid label"},
		{"POST", "/admin/messages", `{"to":"eve@example.com","subject":"a\nb"}`, 400, "single line"},
		{"POST", "/admin/messages", `[1,2]`, 400, "malformed JSON"},
		{"DELETE", "/admin/messages?user=eve@example.com", "", 400, "id query parameter"},
		{"DELETE", "/admin/messages?id=" + d.ID, "", 400, "user query parameter"},
		{"DELETE", "/admin/messages?user=nobody@example.com&id=" + d.ID, "", 400, "unknown mailbox"},
		{"DELETE", "/admin/messages?user=eve@example.com&id=00000000000000ff", "", 404, "not found"},
		{"POST", "/admin/labels", `{"user":"eve@example.com","id":"` + d.ID + `","addLabelIds":["NOPE"]}`, 400, "Invalid label"},
		{"GET", "/admin/quota?user=nobody@example.com", "", 400, "unknown mailbox"},
		{"POST", "/admin/quota", `{"userUnitsPerMinute":-1}`, 400, "negative"},
		{"POST", "/admin/quota", `{"profile":"standard-2025"}`, 400, "unknown quota profile"},
		{"POST", "/admin/quota", `{"profile":"legacy","projectUnitsPerMinute":-1}`, 400, "negative"},
		{"POST", "/admin/quota/profile", `{}`, 405, "not allowed"},
		{"POST", "/admin/faults", `{"errorRate":7}`, 400, "outside 0..1"},
		{"POST", "/admin/faults", `{"errorCodes":[418]}`, 400, "not one of"},
		{"POST", "/admin/faults", `{"errorMethods":["drafts.list"]}`, 400, "unknown method"},
		{"POST", "/admin/faults", `{"latency":"forever"}`, 400, "malformed JSON"},
		{"POST", "/admin/faults", `{"user":"nobody@example.com","errorRate":1}`, 400, "unknown mailbox"},
		{"POST", "/admin/faults", `{"user":"nobody@example.com","revokeRefreshToken":true}`, 400, "unknown mailbox"},
		{"POST", "/admin/faults", `{"nonsense":true}`, 400, "unknown field"},
		{"DELETE", "/admin/faults?user=nobody@example.com", "", 400, "unknown mailbox"},
		{"POST", "/admin/revoke", `{"email":"nobody@example.com"}`, 400, "unknown mailbox"},
		{"POST", "/admin/oauth", `{"deny":true}`, 400, "autoApprove"},
		{"POST", "/admin/oauth", `{"autoApprove":"yes"}`, 400, "malformed JSON"},
		{"GET", "/admin/watch", "", 400, "user query parameter"},
		{"GET", "/admin/nothing", "", 404, "no admin endpoint"},
		{"PUT", "/admin/messages", `{}`, 405, "not allowed"},
		{"POST", "/admin/messages", strings.Repeat(" ", 3<<20), 400, "2 MiB"},
	} {
		body := adminJSONRaw(t, sb, tc.method, tc.path, tc.body)
		var got struct {
			Error struct {
				Code    int
				Message string
				Status  string
				Errors  []struct{ Reason string }
			}
		}
		if err := json.Unmarshal([]byte(body.text), &got); err != nil || body.code != tc.code || got.Error.Code != tc.code ||
			!strings.Contains(got.Error.Message, tc.message) || got.Error.Status == "" || len(got.Error.Errors) != 1 {
			t.Errorf("%s %s %.60s = %d %s; want %d mentioning %q", tc.method, tc.path, tc.body, body.code, body.text, tc.code, tc.message)
		}
	}
	if after, _ := sb.Gmail.HistoryID("eve@example.com"); after != before {
		t.Errorf("history moved %d -> %d", before, after)
	}
	if got := sb.Gmail.Mailboxes(); len(got) != 1 {
		t.Errorf("mailboxes = %v", got)
	}
	if f := sb.Gmail.Faults(); len(f) != 0 {
		t.Errorf("faults = %v", f)
	}
	if q := sb.Gmail.Quota(); q.Profile != gmailapi.Standard2026 || q.UserUnitsPerMinute != 6000 || q.ProjectUnitsPerMinute != 1_200_000 {
		t.Errorf("quota = %+v", q)
	}
	if _, err := sb.Connect("eve@example.com"); err != nil {
		t.Errorf("eve was revoked or broken by bad input: %v", err)
	}
}

type rawResponse struct {
	code int
	text string
}

func adminJSONRaw(t *testing.T, sb *sandbox.Sandbox, method, path, body string) rawResponse {
	t.Helper()
	req, _ := http.NewRequest(method, sb.URL+path, strings.NewReader(body))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	return rawResponse{resp.StatusCode, string(data)}
}
