package consent_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/json"
	"fmt"
	"html"
	"net/http"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/gmailwatch/gmailwatch/scripts/testenv"
	"github.com/gmailwatch/gmailwatch/shared/events"
	"github.com/gmailwatch/gmailwatch/shared/store"
)

const chromium = "/usr/bin/chromium"

// newBrowser starts Debian's chromium, headless, able to reach loopback only.
func newBrowser(t *testing.T) context.Context {
	t.Helper()
	if _, err := exec.LookPath(chromium); err != nil {
		testenv.Missing(t, chromium+" is missing: scripts/setup.sh installs Debian's chromium package")
	}
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(chromium),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.Flag("headless", true),
		chromedp.Flag("no-sandbox", true),
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("no-first-run", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		// Only loopback may be contacted: every other name fails to resolve.
		chromedp.Flag("host-resolver-rules", "MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"),
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	ctx, cancelTimeout := context.WithTimeout(ctx, 60*time.Second)
	t.Cleanup(func() { cancelTimeout(); cancel(); cancelAlloc() })
	return ctx
}

// TestConnectInABrowser drives Debian's chromium through the whole consent
// flow: /connect, the sandbox's consent page, Allow, the connected page.
func TestConnectInABrowser(t *testing.T) {
	s := newStack(t) // the sandbox shows its consent page: no AutoApprove
	ctx := newBrowser(t)

	step := func(what string, err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("browser: %s: %v\nfunction log:\n%s", what, err, s.logs)
		}
	}
	step("open /connect", chromedp.Do(ctx, chromedp.Navigate(s.url+"/connect"), chromedp.WaitVisible(chromedp.ID("allow"))))
	account, err := chromedp.Run(ctx, chromedp.Value(chromedp.ID("account")))
	step("read the consent page", err)
	step("click Allow", chromedp.Do(ctx, chromedp.Click(chromedp.ID("allow")), chromedp.WaitVisible(chromedp.ID("connected"))))
	email, err := chromedp.Run(ctx, chromedp.Text(chromedp.ID("email")))
	step("read the connected page", err)
	page, err := chromedp.Run(ctx, chromedp.OuterHTML(chromedp.CSS("html")))
	step("read the connected page", err)
	if account != alice || email != alice {
		t.Errorf("consent page account %q, connected page email %q; want %s", account, email, alice)
	}
	if leak := s.seen.foundIn(page); leak != "" {
		t.Errorf("the connected page contains a secret (%s)", leak)
	}

	if v := s.tokenVersions(alice); len(v) != 1 || v[0].State != "ENABLED" || !strings.HasPrefix(string(v[0].Data), "1//") {
		t.Errorf("Secret Manager sandbox: %d versions, want one enabled refresh token", len(v))
	}
	u, err := s.users.Get(context.Background(), s.key(alice))
	watch, werr := s.gmail.Watch(alice)
	if err != nil || werr != nil {
		t.Fatalf("user %v, watch %v", err, werr)
	}
	if u.Status != store.Active || u.Cursor != int64(watch.HistoryID) {
		t.Errorf("Firestore user = %+v, want active with cursor %d", u, watch.HistoryID)
	}
	if !watch.Active || watch.TopicName != s.cfg.Watch.Topic || !slices.Equal(watch.LabelIDs, []string{"INBOX"}) {
		t.Errorf("Gmail sandbox watch = %+v, want active on %s for INBOX", watch, s.cfg.Watch.Topic)
	}
}

// walkthroughApp is the README's embedding walk-through as an application:
// a session per browser (its own cookie), a link asked for the session's
// user with a one-time value in successUrl kept in the session, and a
// success page that redeems the result only when it came back to that
// session, with that value.
type walkthroughApp struct {
	api      backendAPI
	origin   string
	mu       sync.Mutex
	sessions map[string]*appSession // by session cookie
}

type appSession struct{ user, expect string }

func (a *walkthroughApp) session(r *http.Request) *appSession {
	c, err := r.Cookie("app-session")
	if err != nil {
		return nil
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.sessions[c.Value]
}

func (a *walkthroughApp) page(w http.ResponseWriter, id, text string) {
	w.Header().Set("Content-Type", "text/html")
	fmt.Fprintf(w, `<!doctype html><main id="%s">%s</main>`, id, html.EscapeString(text))
}

func (a *walkthroughApp) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case "/login": // stands for the app's own sign-in
		sid := rand.Text()
		a.mu.Lock()
		a.sessions[sid] = &appSession{user: r.URL.Query().Get("as")}
		a.mu.Unlock()
		http.SetCookie(w, &http.Cookie{Name: "app-session", Value: sid, Path: "/", HttpOnly: true})
		a.page(w, "app-home", "signed in")
	case "/gmail/connect": // step 1: a link for the session's user
		sess := a.session(r)
		if sess == nil {
			a.page(w, "app-refused", "sign in first")
			return
		}
		expect := rand.Text()
		a.mu.Lock()
		sess.expect = expect
		a.mu.Unlock()
		body, _ := json.Marshal(map[string]any{"appRef": sess.user,
			"successUrl": a.origin + "/gmail/connected?s=" + expect, "errorUrl": a.origin + "/gmail/failed"})
		resp, err := a.api.client.Post(a.api.url+"/connect-links", "application/json", bytes.NewReader(body))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		defer resp.Body.Close()
		var link struct{ URL string }
		json.NewDecoder(resp.Body).Decode(&link)
		if r.URL.Query().Has("show") { // the link, for its user to pass on
			a.page(w, "app-link", link.URL)
			return
		}
		http.Redirect(w, r, link.URL, http.StatusSeeOther)
	case "/gmail/connected": // step 4: the session's check, then the redeem
		sess := a.session(r)
		a.mu.Lock()
		expect := ""
		if sess != nil {
			expect, sess.expect = sess.expect, ""
		}
		a.mu.Unlock()
		if expect == "" || subtle.ConstantTimeCompare([]byte(r.URL.Query().Get("s")), []byte(expect)) != 1 {
			a.page(w, "app-refused", "this connection was not started here: start again")
			return
		}
		body, _ := json.Marshal(map[string]string{"result": r.URL.Query().Get("result")})
		resp, err := a.api.client.Post(a.api.url+"/connect-results", "application/json", bytes.NewReader(body))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		defer resp.Body.Close()
		var acc struct{ User, AppRef, Status string }
		if json.NewDecoder(resp.Body).Decode(&acc); resp.StatusCode != http.StatusOK || acc.AppRef != sess.user {
			a.page(w, "app-refused", "the connection could not be confirmed")
			return
		}
		a.page(w, "app-connected", acc.AppRef+" "+acc.Status)
	default:
		a.page(w, "app-failed", r.URL.Query().Get("reason"))
	}
}

// TestEmbeddingWalkthroughInABrowser runs the README's walk-through in
// chromium, against the accounts API and the consent function: mallory's
// link, opened by alice, lands on the app outside mallory's session and is
// never redeemed, so nothing is published and mallory gets nothing; alice's
// own link, from her session, is redeemed and announced under her reference.
func TestEmbeddingWalkthroughInABrowser(t *testing.T) {
	s := newStack(t) // the sandbox shows its consent page: no AutoApprove
	app := &walkthroughApp{api: s.accountsAPI(t), origin: s.app.URL, sessions: map[string]*appSession{}}
	s.app.Config.Handler = app
	step := func(what string, err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("browser: %s: %v\nfunction log:\n%s", what, err, s.logs)
		}
	}

	malloryBrowser := newBrowser(t)
	step("mallory signs in", chromedp.Do(malloryBrowser, chromedp.Navigate(s.app.URL+"/login?as=mallory"), chromedp.WaitVisible(chromedp.ID("app-home"))))
	step("mallory asks for a link", chromedp.Do(malloryBrowser, chromedp.Navigate(s.app.URL+"/gmail/connect?show"), chromedp.WaitVisible(chromedp.ID("app-link"))))
	link, err := chromedp.Run(malloryBrowser, chromedp.Text(chromedp.ID("app-link")))
	step("read the link", err)
	s.seen.add(link)

	alice1 := newBrowser(t)
	step("alice follows mallory's link", chromedp.Do(alice1, chromedp.Navigate(link), chromedp.WaitVisible(chromedp.ID("allow"))))
	step("alice allows", chromedp.Do(alice1, chromedp.Click(chromedp.ID("allow")), chromedp.WaitVisible(chromedp.ID("app-refused"))))
	if u, err := s.users.Get(context.Background(), s.key(alice)); err != nil || u.Status != store.Pending || u.AppRef != "" {
		t.Errorf("after mallory's link: %+v, %v; want pending under no reference", u, err)
	}
	if got := s.published(2 * time.Second); len(got) != 0 {
		t.Errorf("events after mallory's link: %+v", got)
	}

	alice2 := newBrowser(t)
	step("alice signs in", chromedp.Do(alice2, chromedp.Navigate(s.app.URL+"/login?as=alice-in-the-app"), chromedp.WaitVisible(chromedp.ID("app-home"))))
	step("alice connects", chromedp.Do(alice2, chromedp.Navigate(s.app.URL+"/gmail/connect"), chromedp.WaitVisible(chromedp.ID("allow"))))
	step("alice allows", chromedp.Do(alice2, chromedp.Click(chromedp.ID("allow")), chromedp.WaitVisible(chromedp.ID("app-connected"))))
	done, err := chromedp.Run(alice2, chromedp.Text(chromedp.ID("app-connected")))
	step("read the app's page", err)
	if done != "alice-in-the-app active" {
		t.Errorf("the app's page says %q, want alice-in-the-app active", done)
	}
	got := s.awaitEvents(t, 1)
	if got[0].Type != events.UserConnected || got[0].AppRef != "alice-in-the-app" {
		t.Errorf("events = %+v, want alice connected under her own reference", got)
	}
}
