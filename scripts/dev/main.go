// Command dev runs the whole system locally until interrupted (scripts/dev.sh).
// With -demo it connects a sandbox user through the consent flow, delivers a
// few messages, prints each event from the output topic as it arrives, and
// exits: 0 when every expected event arrived, 1 otherwise.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"cloud.google.com/go/pubsub/v2"

	"github.com/gmailwatch/gmailwatch/scripts/stack"
	"github.com/gmailwatch/gmailwatch/shared/events"
)

func main() {
	demo := flag.Bool("demo", false, "connect a user, deliver messages, print the events, exit")
	messages := flag.Int("messages", 3, "messages the demo delivers")
	renewEvery := flag.Duration("renew-every", 5*time.Minute, "how often the local scheduler runs the renew function (0: never)")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	st, err := stack.Start(ctx, stack.Options{})
	if err != nil {
		fmt.Fprintln(os.Stderr, "dev: start:", err)
		os.Exit(1)
	}
	defer st.Stop()
	if err := describe(st); err != nil {
		fmt.Fprintln(os.Stderr, "dev:", err)
	}
	if *demo {
		if err := runDemo(ctx, st, *messages); err != nil {
			fmt.Fprintln(os.Stderr, "demo failed:", err)
			st.Stop()
			os.Exit(1)
		}
		fmt.Println("demo: every event arrived")
		return
	}
	fmt.Println("Running. Open the consent URL in a browser; Ctrl-C stops everything.")
	var tick <-chan time.Time
	if *renewEvery > 0 {
		t := time.NewTicker(*renewEvery)
		defer t.Stop()
		tick = t.C
	}
	for {
		select {
		case <-ctx.Done():
			fmt.Println("\nstopping")
			return
		case <-tick:
			report, err := st.Renew(ctx)
			fmt.Println("renew:", report, errOrEmpty(err))
		}
	}
}

func errOrEmpty(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// describe prints what a person needs and writes it to .local/stack.json.
func describe(st *stack.Stack) error {
	fmt.Printf(`Local stack (project %s)
  consent URL      %s
  disconnect URL   %s
  accounts API     %s  (connect links, account status: see README, "Embedding in an application")
  sandbox admin    %s/admin/  (mailboxes, messages, faults, quota: see scripts/sandbox/README.md)
  webhook receiver %s  (endpoint app: every event)
  second receiver  %s  (endpoint other-app: appRef other-app only)
  renew now        curl -X POST %s/
  logs             %s
  settings         .local/env  (for operator commands: set -a; . .local/env; go run ./scripts/admin list)
  emulators        FIRESTORE_EMULATOR_HOST=%s PUBSUB_EMULATOR_HOST=%s
`, st.Project, st.ConsentURL, st.DisconnectURL, st.AccountsURL, st.SandboxURL, st.ReceiverURL, st.OtherReceiverURL, st.FunctionURLs["renew"], st.Logs, st.FirestoreHost, st.PubSubHost)
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return err
	}
	dir := filepath.Dir(st.Logs)
	if err := os.WriteFile(filepath.Join(dir, "stack.json"), append(b, '\n'), 0o644); err != nil {
		return err
	}
	// The functions' settings, for operator commands: set -a; . .local/env
	return os.WriteFile(filepath.Join(dir, "env"), []byte(strings.Join(st.Env(), "\n")+"\n"), 0o600)
}

func runDemo(ctx context.Context, st *stack.Stack, n int) error {
	const user = "demo.user@example.com"
	if err := admin(ctx, st, "/admin/mailboxes", map[string]any{"email": user}, nil); err != nil {
		return err
	}
	if err := admin(ctx, st, "/admin/oauth", map[string]any{"autoApprove": true}, nil); err != nil {
		return err
	}
	// The application's backend asks for a connect link for its user...
	body := `{"appRef":"demo-app-user-1","expectedAddress":"` + user + `","successUrl":"` + stack.AppOrigin + `/connected","errorUrl":"` + stack.AppOrigin + `/failed"}`
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, st.AccountsURL+"/connect-links", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+st.BackendToken()) // as the backend's own identity would
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("connect link: %w", err)
	}
	var link struct{ URL string }
	err = json.NewDecoder(resp.Body).Decode(&link)
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusCreated {
		return fmt.Errorf("connect link: %s %v", resp.Status, err)
	}
	// ...and the browser follows it: consent -> Google (sandbox) -> callback
	// -> back to the application, where this demo stops.
	jar, _ := cookiejar.New(nil)
	browser := &http.Client{Jar: jar, Timeout: 30 * time.Second, CheckRedirect: func(r *http.Request, _ []*http.Request) error {
		if strings.HasPrefix(r.URL.String(), stack.AppOrigin+"/") {
			return http.ErrUseLastResponse
		}
		return nil
	}}
	resp, err = browser.Get(link.URL)
	if err != nil {
		return fmt.Errorf("consent flow: %w", err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	back, _ := url.Parse(resp.Header.Get("Location"))
	if resp.StatusCode != http.StatusSeeOther || back == nil || back.Query().Get("outcome") != "connected" {
		return fmt.Errorf("consent flow ended with %s %s: %s", resp.Status, resp.Header.Get("Location"), page)
	}
	// The application's success page hands the result code to its backend,
	// which redeems it: only then is the account active and announced.
	req, _ = http.NewRequestWithContext(ctx, http.MethodPost, st.AccountsURL+"/connect-results",
		strings.NewReader(`{"result":"`+back.Query().Get("result")+`"}`))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+st.BackendToken()) // the caller that asked for the link
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("redeem: %w", err)
	}
	var account struct{ User, AppRef, Status string }
	err = json.NewDecoder(resp.Body).Decode(&account)
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusOK {
		return fmt.Errorf("redeem: %s %v", resp.Status, err)
	}
	fmt.Printf("demo: %s connected through a connect link; the backend redeemed the result: user %s, %s under %s\n",
		user, account.User, account.Status, account.AppRef)

	want := map[string]string{}
	var ids []string
	for i := 1; i <= n; i++ {
		var got struct{ ID string }
		msg := map[string]any{"to": user, "from": "sender@example.net", "subject": fmt.Sprintf("Demo message %d", i), "body": "Hello from the sandbox.", "labelIds": []string{"INBOX", "UNREAD"}}
		if err := admin(ctx, st, "/admin/messages", msg, &got); err != nil {
			return err
		}
		want[got.ID] = msg["subject"].(string)
		ids = append(ids, got.ID)
		fmt.Printf("demo: delivered %s %q\n", got.ID, msg["subject"])
	}

	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	sub := st.PubSub().Subscriber(stack.EventsPull)
	err = sub.Receive(ctx, func(ctx context.Context, m *pubsub.Message) {
		m.Ack()
		e, err := events.Decode(m.Data)
		if err != nil {
			fmt.Println("demo: undecodable event:", err)
			return
		}
		line, _ := json.Marshal(e)
		fmt.Printf("event: %s\n", line)
		if e.Type == events.MessageReceived {
			delete(want, e.MessageID)
			if len(want) == 0 {
				cancel()
			}
		}
	})
	if err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	if len(want) > 0 {
		return fmt.Errorf("%d of %d events never arrived", len(want), n)
	}
	if st.OtherReceiverURL != "" {
		return demoEndpoints(ctx, st, ids)
	}
	return nil
}

// demoEndpoints waits for the webhook endpoint "app" (every event) to have
// delivered the demo's messages, and shows that "other-app", whose filter
// takes only users connected under stack.OtherAppRef, got none of them.
func demoEndpoints(ctx context.Context, st *stack.Stack, ids []string) error {
	received := func(name string) map[string]bool {
		data, _ := os.ReadFile(filepath.Join(st.Logs, name+".log"))
		got := map[string]bool{}
		for _, line := range strings.Split(string(data), "\n") {
			var e events.Event
			if json.Unmarshal([]byte(line), &e) == nil && e.MessageID != "" {
				got[e.MessageID] = true
			}
		}
		return got
	}
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		got, missing := received("receiver"), 0
		for _, id := range ids {
			if !got[id] {
				missing++
			}
		}
		if missing == 0 {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("webhook endpoint app: %d of %d messages never delivered (%s)", missing, len(ids), filepath.Join(st.Logs, "receiver.log"))
		}
	}
	fmt.Printf("demo: webhook endpoint app (every event) received all %d messages at %s\n", len(ids), st.ReceiverURL)
	other := received("receiver-other")
	for _, id := range ids {
		if other[id] {
			return fmt.Errorf("webhook endpoint %s received message %s, which its appRef filter excludes", stack.OtherEndpoint, id)
		}
	}
	fmt.Printf("demo: webhook endpoint %s (appRef %s only) received none of them at %s\n", stack.OtherEndpoint, stack.OtherAppRef, st.OtherReceiverURL)
	return nil
}

// admin calls the sandbox's admin API.
func admin(ctx context.Context, st *stack.Stack, path string, body, out any) error {
	b, _ := json.Marshal(body)
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, st.SandboxURL+path, bytes.NewReader(b))
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("sandbox %s: %w", path, err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("sandbox %s: %s: %s", path, resp.Status, data)
	}
	if out != nil {
		return json.Unmarshal(data, out)
	}
	return nil
}
