// Command migrate-keys moves users keyed by address (a plain hash of it, as
// before keys came from Google's account id) to keys derived from their
// account id, records and secrets alike. Run it once after deploying the
// consent function that keys by account id; it is safe to run again, and to
// rerun after a failure.
//
//	go run ./scripts/migrate-keys [-dry-run]
//
// For each user record without an account id it refreshes the stored token,
// asks Google's tokeninfo endpoint for the account id (sub), stores the token
// under the new key's secret, copies the announced-message markers, creates
// the new record and marks the old one moved (one transaction), then deletes
// the old secret, markers and record. A user whose token no longer works
// (reauth_required, revoked) cannot be asked; it is listed and left as it is
// until it reconnects, which creates its new record, and a later run removes
// the old one.
//
// It reads PROJECT_ID, USER_KEY_SECRET_NAME (default user-key-secret), the
// consent function's OAUTH_CLIENT_ID and OAUTH_CLIENT_SECRET_NAME, and
// OAUTH_TOKENINFO_URL (default Google's); locally the emulator and sandbox
// variables too.
package main

import (
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
	"strings"
	"time"

	"cloud.google.com/go/firestore"
	"golang.org/x/oauth2"

	"github.com/gmailwatch/gmailwatch/shared/config"
	"github.com/gmailwatch/gmailwatch/shared/gmailclient"
	"github.com/gmailwatch/gmailwatch/shared/store"
	"github.com/gmailwatch/gmailwatch/shared/vault"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, os.Args[1:], os.LookupEnv, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "migrate-keys:", err)
		os.Exit(1)
	}
}

// Report counts what a run did.
type Report struct {
	Moved, Finished, Waiting int
}

func run(ctx context.Context, args []string, lookup func(string) (string, bool), out io.Writer) error {
	fl := flag.NewFlagSet("migrate-keys", flag.ContinueOnError)
	dry := fl.Bool("dry-run", false, "list what would move, change nothing")
	if err := fl.Parse(args); err != nil || fl.NArg() != 0 {
		return errors.New("usage: go run ./scripts/migrate-keys [-dry-run]")
	}
	r := config.NewReader(lookup)
	project := r.String("PROJECT_ID", config.Required)
	secretEndpoint := r.String("SECRETMANAGER_ENDPOINT", "")
	userKeyName := r.String("USER_KEY_SECRET_NAME", "user-key-secret")
	tokenInfo := r.URL("OAUTH_TOKENINFO_URL", "https://oauth2.googleapis.com/tokeninfo")
	settings := gmailclient.ReadSettings(r)
	if err := r.Err(); err != nil {
		return err
	}
	fs, err := firestore.NewClient(ctx, project)
	if err != nil {
		return fmt.Errorf("firestore client: %w", err)
	}
	defer fs.Close()
	v, err := vault.New(ctx, project, secretEndpoint)
	if err != nil {
		return err
	}
	defer v.Close()
	secrets, err := vault.NewKeys(v, userKeyName, store.MinUserKeyBytes, nil).Get(ctx)
	if err != nil {
		return fmt.Errorf("user key secret: %w", err)
	}
	keys, err := store.NewKeyer(secrets...)
	if err != nil {
		return err
	}
	m := &migrator{users: store.New(fs, nil), vault: v, keys: keys, oauth: gmailclient.NewFactory(settings, v),
		tokenInfo: tokenInfo, http: &http.Client{Timeout: 30 * time.Second}, dry: *dry, out: out}
	rep, err := m.all(ctx)
	fmt.Fprintf(out, "moved %d, finished %d earlier moves, %d waiting for their user to reconnect\n", rep.Moved, rep.Finished, rep.Waiting)
	return err
}

type migrator struct {
	users     *store.Store
	vault     *vault.Vault
	keys      store.Keyer
	oauth     *gmailclient.Factory
	tokenInfo string
	http      *http.Client
	dry       bool
	out       io.Writer
}

// all walks every record, a page at a time, and moves the legacy ones.
func (m *migrator) all(ctx context.Context) (Report, error) {
	var rep Report
	for after := ""; ; {
		page, err := m.users.List(ctx, after, 300)
		if err != nil {
			return rep, err
		}
		for _, u := range page {
			if u.Sub != "" {
				continue
			}
			if err := m.one(ctx, u, &rep); err != nil {
				return rep, err
			}
		}
		if len(page) < 300 {
			return rep, nil
		}
		after = page[len(page)-1].Key
	}
}

func (m *migrator) one(ctx context.Context, u store.User, rep *Report) error {
	if u.MovedTo != "" {
		rep.Finished++
		return m.cleanUp(ctx, u.Key)
	}
	token, err := m.vault.RefreshToken(ctx, u.Key)
	var sub string
	if err == nil {
		sub, err = m.accountID(ctx, token)
	}
	switch {
	case errors.Is(err, vault.ErrNotFound), gmailclient.IsInvalidGrant(err):
		rep.Waiting++
		fmt.Fprintf(m.out, "waiting  %s (%s): its token no longer works; it moves when its user reconnects\n", u.Key, u.Status)
		return m.dropIfReconnected(ctx, u)
	case err != nil:
		return fmt.Errorf("user %s: %w", u.Key, err)
	}
	newKey := m.keys.Key(sub)
	fmt.Fprintf(m.out, "move     %s -> %s\n", u.Key, newKey)
	rep.Moved++
	if m.dry {
		return nil
	}
	if err := m.vault.PutRefreshToken(ctx, newKey, token); err != nil {
		return err
	}
	if err := m.users.CopyMarkers(ctx, u.Key, newKey); err != nil {
		return err
	}
	if err := m.users.MoveUser(ctx, u.Key, newKey, sub); err != nil {
		return fmt.Errorf("move %s: %w", u.Key, err)
	}
	return m.cleanUp(ctx, u.Key)
}

// dropIfReconnected removes a legacy record whose mailbox reconnected under
// its new key meanwhile (an active record with an account id for the address).
func (m *migrator) dropIfReconnected(ctx context.Context, u store.User) error {
	now, err := m.users.ByEmail(ctx, u.Email)
	if err != nil || now.Sub == "" || now.Status != store.Active || m.dry {
		return nil
	}
	if err := m.users.CopyMarkers(ctx, u.Key, now.Key); err != nil {
		return err
	}
	if err := m.users.MoveUser(ctx, u.Key, now.Key, now.Sub); err != nil {
		return err
	}
	return m.cleanUp(ctx, u.Key)
}

// cleanUp deletes what is left under a moved record's old key.
func (m *migrator) cleanUp(ctx context.Context, oldKey string) error {
	if m.dry {
		return nil
	}
	if err := m.vault.DeleteRefreshToken(ctx, oldKey); err != nil {
		return err
	}
	if err := m.users.DeleteMarkers(ctx, oldKey); err != nil {
		return err
	}
	return m.users.DeleteUser(ctx, oldKey)
}

// accountID returns the Google account id behind a refresh token, from the
// tokeninfo of a fresh access token: legacy grants have no openid scope, so
// no ID token, but tokeninfo names the account of any access token.
func (m *migrator) accountID(ctx context.Context, refresh string) (string, error) {
	conf, err := m.oauth.OAuth(ctx)
	if err != nil {
		return "", err
	}
	tok, err := conf.TokenSource(context.WithValue(ctx, oauth2.HTTPClient, m.http), &oauth2.Token{RefreshToken: refresh}).Token()
	if err != nil {
		return "", err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, m.tokenInfo,
		strings.NewReader(url.Values{"access_token": {tok.AccessToken}}.Encode()))
	if err != nil {
		return "", err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := m.http.Do(req)
	if err != nil {
		return "", fmt.Errorf("tokeninfo: %w", err)
	}
	defer resp.Body.Close()
	var info struct {
		Sub string `json:"sub"`
		Aud string `json:"aud"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 64<<10)).Decode(&info); err != nil || resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("tokeninfo: status %d", resp.StatusCode)
	}
	if info.Sub == "" || info.Aud != conf.ClientID {
		return "", errors.New("tokeninfo: no account id, or a token of another client")
	}
	return info.Sub, nil
}
