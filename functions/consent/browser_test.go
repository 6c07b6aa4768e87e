package consent_test

import (
	"context"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/gmailwatch/gmailwatch/scripts/testenv"
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
