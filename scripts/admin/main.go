// Command admin is the operator's tool for connected Gmail users, a client
// of the accounts API (functions/accounts), so it changes nothing the API
// would not:
//
//	go run ./scripts/admin list [-status active|reauth_required|disconnected]
//	go run ./scripts/admin show USER_KEY
//	go run ./scripts/admin find APP_REF
//	go run ./scripts/admin reconnect-link -success-url URL -error-url URL USER_KEY
//	go run ./scripts/admin disconnect USER_KEY
//	go run ./scripts/admin resync USER_KEY
//
// It reads ACCOUNTS_URL (the accounts function's URL; locally from
// .local/env). The API answers only the callers in its ACCOUNTS_INVOKERS,
// with a Google ID token for its URL: the tool sends ACCOUNTS_ID_TOKEN if
// set (for example from `gcloud auth print-identity-token
// --audiences=$ACCOUNTS_URL`), locally one the sandbox (SANDBOX_URL) signs
// for the first of ACCOUNTS_INVOKERS, or else an ID token for the URL from
// Application Default Credentials of a service account.
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
	"net/url"
	"os"
	"os/signal"
	"regexp"
	"strings"
	"text/tabwriter"
	"time"

	"golang.org/x/oauth2"
	"google.golang.org/api/idtoken"

	"github.com/gmailwatch/gmailwatch/shared/config"
)

const usage = `usage: go run ./scripts/admin list [-status S] | show USER_KEY | find APP_REF | reconnect-link -success-url URL -error-url URL USER_KEY | disconnect USER_KEY | resync USER_KEY`

var errUsage = errors.New(usage)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, os.Args[1:], os.LookupEnv, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "admin:", err)
		if errors.Is(err, errUsage) {
			os.Exit(2)
		}
		os.Exit(1)
	}
}

var userKey = regexp.MustCompile(`^[0-9a-f]{32}$`)

// run carries out one command, writing its answer to out.
func run(ctx context.Context, args []string, lookup func(string) (string, bool), out io.Writer) error {
	if len(args) == 0 {
		return errUsage
	}
	cmd, rest := args[0], args[1:]
	var status, successURL, errorURL string
	if cmd == "list" || cmd == "reconnect-link" {
		fl := flag.NewFlagSet(cmd, flag.ContinueOnError)
		fl.SetOutput(io.Discard)
		if cmd == "list" {
			fl.StringVar(&status, "status", "", "")
		} else {
			fl.StringVar(&successURL, "success-url", "", "")
			fl.StringVar(&errorURL, "error-url", "", "")
		}
		if err := fl.Parse(rest); err != nil {
			return errUsage
		}
		rest = fl.Args()
	}
	want := map[string]int{"list": 0, "show": 1, "find": 1, "reconnect-link": 1, "disconnect": 1, "resync": 1}
	if n, ok := want[cmd]; !ok || len(rest) != n {
		return errUsage
	}
	if cmd != "list" && cmd != "find" && !userKey.MatchString(rest[0]) {
		return fmt.Errorf("%q is not a user key (32 lower-case hex digits; find one with list or find)", rest[0])
	}
	r := config.NewReader(lookup)
	base := strings.TrimRight(r.URL("ACCOUNTS_URL", config.Required), "/")
	token := r.String("ACCOUNTS_ID_TOKEN", "")
	sandboxURL, invokers := r.URL("SANDBOX_URL", ""), r.List("ACCOUNTS_INVOKERS", nil)
	if err := r.Err(); err != nil {
		return err
	}
	if token == "" && sandboxURL != "" && len(invokers) > 0 {
		var err error
		if token, err = sandboxToken(ctx, sandboxURL, invokers[0], base); err != nil {
			return err
		}
	}
	c, err := newClient(ctx, base, token)
	if err != nil {
		return err
	}
	switch cmd {
	case "list":
		return c.list(ctx, status, out)
	case "find":
		var page accountPage
		if err := c.do(ctx, "GET", "/accounts?"+url.Values{"appRef": {rest[0]}}.Encode(), &page); err != nil {
			return err
		}
		return table(out, page.Accounts)
	case "show":
		var a map[string]any
		if err := c.do(ctx, "GET", "/accounts/"+rest[0], &a); err != nil {
			return err
		}
		return fields(out, a)
	case "reconnect-link":
		var l struct{ URL, ExpiresAt string }
		body := map[string]string{}
		if successURL != "" || errorURL != "" {
			body = map[string]string{"successUrl": successURL, "errorUrl": errorURL}
		}
		if err := c.post(ctx, "/accounts/"+rest[0]+"/reconnect-link", body, &l); err != nil {
			return err
		}
		fmt.Fprintf(out, "%s\n(expires %s; send it to the user of %s)\n", l.URL, l.ExpiresAt, rest[0])
		return nil
	case "disconnect":
		var a map[string]any
		if err := c.do(ctx, "POST", "/accounts/"+rest[0]+"/disconnect", &a); err != nil {
			return err
		}
		fmt.Fprintf(out, "disconnected %s\n", rest[0])
		return nil
	default: // resync
		var res struct {
			Outcome   string
			Announced int
			Cursor    int64
		}
		if err := c.do(ctx, "POST", "/accounts/"+rest[0]+"/resync", &res); err != nil {
			return err
		}
		fmt.Fprintf(out, "resynced %s: %s, %d announced, cursor %d\n", rest[0], res.Outcome, res.Announced, res.Cursor)
		return nil
	}
}

// sandboxToken asks the local sandbox for caller's ID token for audience.
func sandboxToken(ctx context.Context, sandboxURL, caller, audience string) (string, error) {
	u, _ := url.Parse(sandboxURL)
	if !config.IsLoopback(u.Hostname()) {
		return "", fmt.Errorf("SANDBOX_URL %s: the sandbox is local only", sandboxURL)
	}
	body, _ := json.Marshal(map[string]string{"email": caller, "audience": audience})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimRight(sandboxURL, "/")+"/admin/id-token", strings.NewReader(string(body)))
	if err != nil {
		return "", err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", fmt.Errorf("sandbox ID token: %w", err)
	}
	defer resp.Body.Close()
	var got struct{ IDToken string }
	if err := json.NewDecoder(resp.Body).Decode(&got); err != nil || resp.StatusCode != http.StatusOK || got.IDToken == "" {
		return "", fmt.Errorf("sandbox ID token: %s", resp.Status)
	}
	return got.IDToken, nil
}

type client struct {
	base   string
	tokens oauth2.TokenSource // the caller's ID token for base; nil: none (loopback)
	http   *http.Client
}

// newClient returns a client of the API at base. Loopback http needs no
// identity; anything else sends a Google ID token for base: token, or one
// from Application Default Credentials.
func newClient(ctx context.Context, base, token string) (*client, error) {
	c := &client{base: base, http: &http.Client{Timeout: 60 * time.Second}}
	u, _ := url.Parse(base)
	switch {
	case token != "":
		c.tokens = oauth2.StaticTokenSource(&oauth2.Token{AccessToken: token})
	case !config.IsLoopback(u.Hostname()):
		ts, err := idtoken.NewTokenSource(ctx, base)
		if err != nil {
			return nil, fmt.Errorf("ID token for %s (set ACCOUNTS_ID_TOKEN, or use a service account's credentials): %w", base, err)
		}
		c.tokens = ts
	}
	return c, nil
}

// do sends a request and decodes the answer into out, or returns the
// API's error message.
func (c *client) do(ctx context.Context, method, path string, out any) error {
	if method == "POST" {
		return c.post(ctx, path, map[string]string{}, out)
	}
	return c.send(ctx, method, path, nil, out)
}

// post sends in as the JSON body of a POST.
func (c *client) post(ctx context.Context, path string, in, out any) error {
	b, err := json.Marshal(in)
	if err != nil {
		return err
	}
	return c.send(ctx, "POST", path, bytes.NewReader(b), out)
}

func (c *client) send(ctx context.Context, method, path string, body io.Reader, out any) error {
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, body)
	if err != nil {
		return err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.tokens != nil {
		tok, err := c.tokens.Token()
		if err != nil {
			return fmt.Errorf("ID token for %s: %w", c.base, err)
		}
		// Cloud Run's IAM check takes the first and strips its signature;
		// the second reaches the API intact for its own check.
		req.Header.Set("X-Serverless-Authorization", "Bearer "+tok.AccessToken)
		req.Header.Set("Authorization", "Bearer "+tok.AccessToken)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(io.LimitReader(resp.Body, 8<<20))
	if resp.StatusCode >= 300 {
		var e struct {
			Error struct{ Message, Reason string }
		}
		if json.Unmarshal(raw, &e) == nil && e.Error.Message != "" {
			if e.Error.Reason != "" {
				return fmt.Errorf("%s %s: %s (%s): %s", method, path, resp.Status, e.Error.Reason, e.Error.Message)
			}
			return fmt.Errorf("%s %s: %s: %s", method, path, resp.Status, e.Error.Message)
		}
		return fmt.Errorf("%s %s: %s", method, path, resp.Status)
	}
	return json.Unmarshal(raw, out)
}

type account struct {
	User, AppRef, EmailAddress, Status string
	WatchExpiration, LastSyncAt        string
	LastNotificationAt, LastErrorClass string
	HistoryLag                         int64
}

type accountPage struct {
	Accounts      []account
	NextPageToken string
}

// list prints every account, a page at a time, and a count by status.
func (c *client) list(ctx context.Context, status string, out io.Writer) error {
	var all []account
	for token := ""; ; {
		q := url.Values{"pageSize": {"300"}}
		if status != "" {
			q.Set("status", status)
		}
		if token != "" {
			q.Set("pageToken", token)
		}
		var page accountPage
		if err := c.do(ctx, "GET", "/accounts?"+q.Encode(), &page); err != nil {
			return err
		}
		all = append(all, page.Accounts...)
		if token = page.NextPageToken; token == "" {
			break
		}
	}
	if err := table(out, all); err != nil {
		return err
	}
	counts := map[string]int{}
	for _, a := range all {
		counts[a.Status]++
	}
	fmt.Fprintf(out, "\n%d accounts: %d active, %d reauth_required, %d disconnected\n",
		len(all), counts["active"], counts["reauth_required"], counts["disconnected"])
	return nil
}

func table(out io.Writer, accounts []account) error {
	w := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "USER\tAPP REF\tEMAIL\tSTATUS\tWATCH EXPIRES\tLAST SYNC\tLAST PUSH\tLAG\tERROR")
	for _, a := range accounts {
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%d\t%s\n", a.User, dash(a.AppRef), a.EmailAddress, a.Status,
			dash(a.WatchExpiration), dash(a.LastSyncAt), dash(a.LastNotificationAt), a.HistoryLag, dash(a.LastErrorClass))
	}
	return w.Flush()
}

func fields(out io.Writer, a map[string]any) error {
	w := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	for _, k := range []string{"user", "appRef", "emailAddress", "status", "watchExpiration", "lastNotificationAt",
		"lastSyncAt", "connectedAt", "historyLag", "lastErrorClass"} {
		v, ok := a[k]
		if !ok || v == "" {
			v = "-"
		}
		fmt.Fprintf(w, "%s:\t%v\n", k, v)
	}
	return w.Flush()
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
