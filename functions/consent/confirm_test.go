package consent_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/gmailwatch/gmailwatch/functions/consent"
	"github.com/gmailwatch/gmailwatch/functions/renew"
	"github.com/gmailwatch/gmailwatch/scripts/sandbox/gmailapi"
	"github.com/gmailwatch/gmailwatch/scripts/sandbox/googleauth"
	"github.com/gmailwatch/gmailwatch/shared/config"
	"github.com/gmailwatch/gmailwatch/shared/connectlink"
	"github.com/gmailwatch/gmailwatch/shared/disconnect"
	"github.com/gmailwatch/gmailwatch/shared/events"
	"github.com/gmailwatch/gmailwatch/shared/gmailclient"
	"github.com/gmailwatch/gmailwatch/shared/gmailsync"
	"github.com/gmailwatch/gmailwatch/shared/store"
)

// linkFlow runs a stored link for r to its end as email, in the stack's
// browser, and returns where the browser went back to.
func (s *stack) linkFlow(t *testing.T, r connectlink.Request, email string) *url.URL {
	t.Helper()
	c, cb, refused := s.followLink(t, s.storedLink(t, r, 15*time.Minute), email)
	if refused != nil {
		t.Fatalf("/connect refused the link: status %d", refused.StatusCode)
	}
	return s.back(t, cb, c)
}

// push tells the system, as Gmail's push would, that a message reached email.
func (s *stack) push(t *testing.T, email, subject string) gmailapi.Delivered {
	t.Helper()
	d, err := s.gmail.Deliver(gmailapi.Delivery{To: email, Subject: subject})
	if err != nil {
		t.Fatal(err)
	}
	syncer := gmailsync.New(gmailsync.Deps{Users: s.users, Gmail: gmailclient.NewFactory(s.cfg.OAuth, s.vault), Events: s.publisher, Now: s.clock.Now}, gmailsync.Settings{})
	if _, err := syncer.OnPush(context.Background(), email, int64(d.HistoryID)); err != nil {
		t.Fatal(err)
	}
	return d
}

// renewRun runs the renew function once, on the stack's clock.
func (s *stack) renewRun(t *testing.T) renew.Report {
	t.Helper()
	cfg, err := renew.ReadConfig(config.FromMap(s.env()))
	if err != nil {
		t.Fatal(err)
	}
	gmail := gmailclient.NewFactory(cfg.Gmail, s.vault)
	syncer := gmailsync.New(gmailsync.Deps{Users: s.users, Gmail: gmail, Events: s.publisher, Now: s.clock.Now}, cfg.Sync)
	h := renew.New(renew.Deps{Users: s.users, Gmail: gmail, Syncer: syncer, Events: s.publisher, Logger: s.log, Now: s.clock.Now,
		Pending: disconnect.New(s.users, s.vault, gmail, s.publisher, s.httpClient, s.log)}, cfg.Run)
	return h.Run(context.Background())
}

// The attack the result code closes: mallory, a user of the application,
// asks for a link for herself and sends it to alice. Alice consents, and her
// browser lands on the application's success page, where the backend finds
// no session of mallory's, so it never redeems. Nothing is published, the
// account is under no reference (mallory's list stays empty), pushes
// announce nothing, and once the result lapses the renew run withdraws it:
// grant revoked, token and record gone, still no event.
func TestLinkSentToSomeoneElseConnectsNothingUnlessTheSenderRedeems(t *testing.T) {
	s := newStack(t)
	ctx := context.Background()
	api := s.accountsAPI(t)
	back := s.linkFlow(t, s.request("mallory"), alice)
	if back.Query().Get("outcome") != "connected" || back.Query().Get("result") == "" || back.Query().Has("user") {
		t.Fatalf("back to %s, want outcome=connected with a result and no user key", back)
	}
	key := s.key(alice)
	u, err := s.users.Get(ctx, key)
	if err != nil || u.Status != store.Pending || u.AppRef != "" {
		t.Fatalf("before the redeem: %+v, %v; want pending under no reference", u, err)
	}
	resp, err := api.client.Get(api.url + "/accounts?appRef=mallory")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if strings.Contains(string(body), alice) || strings.Contains(string(body), key) {
		t.Errorf("mallory's accounts show alice before any redeem: %s", body)
	}
	s.push(t, alice, "private")
	if got := s.published(2 * time.Second); len(got) != 0 {
		t.Fatalf("events for an unredeemed connection: %+v", got)
	}

	revokes := s.revokes()
	s.clock.Advance(s.cfg.ResultTTL + time.Second)
	before := s.snapshot(t)
	if status, got := redeem(t, api, back.Query().Get("result")); status != http.StatusGone || got.Error.Reason != "result_expired" {
		t.Errorf("late redeem: status %d %+v, want 410 result_expired", status, got.Error)
	}
	s.unchanged(t, before)
	if rep := s.renewRun(t); rep.Withdrawn != 1 || rep.Error != "" {
		t.Errorf("renew run: %+v, want one connection withdrawn", rep)
	}
	if _, err := s.users.Get(ctx, key); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("record after the result lapsed: %v, want none", err)
	}
	if vs := s.tokenVersions(alice); len(vs) != 0 {
		t.Errorf("token versions left: %d, want the secret deleted", len(vs))
	}
	if s.revokes() == revokes {
		t.Error("the grant was not revoked")
	}
	if w, _ := s.gmail.Watch(alice); w.Active {
		t.Error("the watch was not stopped")
	}
	if got := s.published(time.Second); len(got) != 0 {
		t.Errorf("events after the withdrawal: %+v", got)
	}
}

// A result works once. Bad input is refused with 400 (415 for a body that
// is not JSON) and changes nothing; a second redeem is refused with 409 and
// changes nothing either. The redeem announces the connection, then the mail
// that arrived since the consent.
func TestResultRedeemsOnceAndAnnouncesTheMailSinceConsent(t *testing.T) {
	s := newStack(t)
	api := s.accountsAPI(t)
	s.api = api
	back := s.linkFlow(t, s.request("crm/7"), alice)
	d := s.push(t, alice, "arrived before the redeem")

	before := s.snapshot(t)
	post := func(ctype, body string) int {
		resp, err := api.client.Post(api.url+"/connect-results", ctype, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	for _, tc := range []struct {
		ctype, body string
		want        int
	}{
		{"application/json", `{}`, http.StatusBadRequest},
		{"application/json", `{"result":"short"}`, http.StatusBadRequest},
		{"application/json", `{"result":"` + back.Query().Get("result") + `","user":"x"}`, http.StatusBadRequest},
		{"application/json", `{"result":"` + back.Query().Get("result") + `"}{}`, http.StatusBadRequest},
		{"application/json", `{"result":"` + strings.Repeat("A", 43) + `"}`, http.StatusNotFound},
		{"text/plain", `{"result":"` + back.Query().Get("result") + `"}`, http.StatusUnsupportedMediaType},
	} {
		if got := post(tc.ctype, tc.body); got != tc.want {
			t.Errorf("POST %s %s: status %d, want %d", tc.ctype, tc.body, got, tc.want)
		}
	}
	s.unchanged(t, before)

	acc := s.redeemed(t, back)
	if acc.User != s.key(alice) || acc.AppRef != "crm/7" || acc.Email != alice || acc.Status != store.Active {
		t.Errorf("redeemed account = %+v", acc)
	}
	got := s.awaitEvents(t, 2)
	if got[0].Type != events.UserConnected || got[1].Type != events.MessageReceived || got[1].MessageID != d.ID || got[1].AppRef != "crm/7" {
		t.Errorf("events = %+v, want connected, then the message that arrived before the redeem", got)
	}

	before = s.snapshot(t)
	if status, ans := redeem(t, api, back.Query().Get("result")); status != http.StatusConflict || ans.Error.Reason != "result_redeemed" {
		t.Errorf("second redeem: status %d %+v, want 409 result_redeemed", status, ans.Error)
	}
	s.unchanged(t, before)
}

// A link copied from a log or a history does nothing in another browser:
// the first browser that opens it owns it, a second gets a page saying so,
// nothing is stored, and the first can still go on. Signed links likewise.
func TestLinkOpenedInAnotherBrowserDoesNothing(t *testing.T) {
	s := newStack(t)
	s.auth.SetBehavior(googleauth.Behavior{AutoApprove: true})
	for _, kind := range []string{"stored", "signed"} {
		t.Run(kind, func(t *testing.T) {
			token := s.signedLink(s.request("app-"+kind), 10*time.Minute, linkKey)
			if kind == "stored" {
				token = s.storedLink(t, s.request("app-"+kind), 10*time.Minute)
			}
			open := s.url + "/connect?" + url.Values{"link": {token}}.Encode()
			s.binding = nil
			if resp := s.get(t, open, nil); resp.StatusCode != http.StatusFound || s.binding == nil {
				t.Fatalf("first open: status %d, binding cookie %v", resp.StatusCode, s.binding)
			}
			first := s.binding
			if !first.HttpOnly || first.SameSite != http.SameSiteLaxMode || first.MaxAge != int(connectlink.MaxTTL.Seconds()) {
				t.Errorf("binding cookie = %+v, want HttpOnly, SameSite=Lax, a day", first)
			}

			s.binding = nil // another browser
			before := s.snapshot(t)
			resp := s.get(t, open, nil)
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != http.StatusForbidden || !strings.Contains(string(body), "another browser") || resp.Header.Get("Location") != "" {
				t.Errorf("second browser: status %d, Location %q:\n%s", resp.StatusCode, resp.Header.Get("Location"), body)
			}
			if len(resp.Cookies()) != 0 {
				t.Errorf("second browser got cookies: %v", resp.Header["Set-Cookie"])
			}
			s.unchanged(t, before)

			s.binding = first
			c, cb := s.begin(t, "/connect?"+url.Values{"link": {token}}.Encode())
			back := s.back(t, cb, c)
			if back.Query().Get("outcome") != "connected" {
				t.Errorf("first browser: back to %s", back)
			}
		})
	}
}

// A move asked by a link takes effect only when redeemed: until then the
// mailbox stays with its reference, whose events go on; unredeemed, it
// lapses leaving that connection as it was; redeemed, the previous
// reference hears gmail.user.disconnected before anything is published
// under the new one.
func TestMoveTakesEffectOnlyAtRedeem(t *testing.T) {
	s := newStack(t)
	ctx := context.Background()
	key := s.key(alice)
	s.redeemed(t, s.linkFlow(t, s.request("owner"), alice))
	s.awaitEvents(t, 1)
	s.Events.Quiet(time.Second)

	steal := s.request("thief")
	steal.Move = true
	s.linkFlow(t, steal, alice) // never redeemed
	if u, _ := s.users.Get(ctx, key); u.AppRef != "owner" || u.Status != store.Active {
		t.Fatalf("after an unredeemed move: %+v, want active under owner", u)
	}
	d := s.push(t, alice, "still the owner's")
	if got := s.awaitEvents(t, 2); got[1].MessageID != d.ID || got[1].AppRef != "owner" {
		t.Errorf("event = %+v, want the message under owner", got[1])
	}
	s.clock.Advance(s.cfg.ResultTTL + time.Second)
	revokes := s.revokes()
	if rep := s.renewRun(t); rep.Withdrawn != 1 {
		t.Errorf("renew run: %+v, want the lapsed move withdrawn", rep)
	}
	if u, _ := s.users.Get(ctx, key); u.AppRef != "owner" || u.Status != store.Active || u.PendingResult != "" {
		t.Errorf("after the move lapsed: %+v, want active under owner", u)
	}
	if s.revokes() != revokes || len(s.tokenVersions(alice)) == 0 {
		t.Error("a lapsed move touched the owner's grant")
	}

	move := s.request("new-owner")
	move.Move = true
	s.redeemed(t, s.linkFlow(t, move, alice))
	got := s.awaitEvents(t, 4)[2:]
	if got[0].Type != events.UserDisconnect || got[0].AppRef != "owner" || got[1].Type != events.UserConnected || got[1].AppRef != "new-owner" {
		t.Errorf("events of the move = %+v, want disconnected under owner, then connected under new-owner", got)
	}
}

// CONNECT_CONFIRM=false is the old behaviour, for deployments that ask for
// it: a link connects at once, even without return URLs, and the browser
// goes back with the user key.
func TestConfirmOff(t *testing.T) {
	s := newStack(t)
	s.cfg = s.withEnv(t, map[string]string{"CONNECT_CONFIRM": "false"})
	s.handler = consent.New(s.cfg, s.deps(), s.log)
	back := s.linkFlow(t, s.request("legacy"), alice)
	if back.Query().Get("user") != s.key(alice) || back.Query().Has("result") {
		t.Errorf("back to %s, want the user key and no result", back)
	}
	if u, _ := s.users.Get(context.Background(), s.key(alice)); u.Status != store.Active || u.AppRef != "legacy" {
		t.Errorf("user = %+v, want active under legacy", u)
	}
	if _, err := s.cfg.Links.Check(connectlink.Request{AppRef: "x"}, s.clock.Now().Add(time.Minute)); err != nil {
		t.Errorf("a link without return URLs: %v, want it allowed", err)
	}
	on := s.withEnv(t, nil)
	if _, err := on.Links.Check(connectlink.Request{AppRef: "x"}, s.clock.Now().Add(time.Minute)); err == nil || !strings.Contains(err.Error(), "successUrl") {
		t.Errorf("by default a link without successUrl: %v, want refused", err)
	}
	for _, bad := range []string{"0s", "30s", "2h", "soon"} {
		env := s.env()
		env["CONNECT_RESULT_TTL"] = bad
		if _, err := consent.ReadConfig(config.FromMap(env)); err == nil || !strings.Contains(err.Error(), "CONNECT_RESULT_TTL") {
			t.Errorf("CONNECT_RESULT_TTL=%s: %v, want refused", bad, err)
		}
	}
}

// A result belongs to the caller that asked for its link: another backend
// the API admits cannot redeem it (403, nothing changed), the one that
// asked still can.
func TestResultRedeemsOnlyForTheCallerThatAskedForTheLink(t *testing.T) {
	s := newStack(t)
	api := s.accountsAPI(t)
	link, _ := url.Parse(askForLink(t, api, "/connect-links", map[string]any{"appRef": "crm-9",
		"successUrl": s.app.URL + "/done", "errorUrl": s.app.URL + "/failed"}))
	token := link.Query().Get("link")
	s.seen.add(token)
	c, cb, refused := s.followLink(t, token, alice)
	if refused != nil {
		t.Fatalf("/connect refused the link: status %d", refused.StatusCode)
	}
	code := s.back(t, cb, c).Query().Get("result")

	before := s.snapshot(t)
	if status, got := redeem(t, s.as(api, otherBackend), code); status != http.StatusForbidden || got.Error.Reason != "result_other_caller" {
		t.Errorf("redeem by another backend: status %d %+v, want 403 result_other_caller", status, got.Error)
	}
	s.unchanged(t, before)
	if status, got := redeem(t, api, code); status != http.StatusOK || got.AppRef != "crm-9" {
		t.Errorf("redeem by the backend that asked: status %d %+v", status, got)
	}
}
