// Command migrate-keys moves users to the keys they should have, records and
// secrets alike: users keyed by address (a plain hash of it, as before keys
// came from Google's account id) to keys derived from their account id, and,
// after a rotation of the user-key secret, users keyed with the previous
// secret to the new one. Run it once after deploying the consent function
// that keys by account id, and after each rotation; it is safe to run again,
// and to rerun after a failure.
//
//	go run ./scripts/migrate-keys [-dry-run]
//
// For each legacy record it refreshes the stored token, asks Google's
// tokeninfo endpoint for the account id (sub), stores the token under the
// new key's secret, copies the announced-message markers, creates the new
// record and marks the old one moved (one transaction), then deletes the old
// secret, markers and record. A user whose account id cannot be learned (its
// token no longer works, or tokeninfo does not name the account) is listed
// and moved the same way to the keyed hash of its address
// (store.Keyer.AddressKey), so nothing stays named after an address's plain
// hash; it gets its account id's key when its user reconnects (a later run
// then removes the waiting record) or when a later run learns the id.
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
	Moved, Finished, Waiting, Rekeyed int
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
	fmt.Fprintf(out, "moved %d, finished %d earlier moves, %d waiting for their user to reconnect (under keyed names), %d keyed anew after a rotation\n",
		rep.Moved, rep.Finished, rep.Waiting, rep.Rekeyed)
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
	moved     map[string]bool // the keys records moved to in this run
}

// all walks every record, a page at a time, and moves those not under the
// key they should have: legacy ones (no account id), and, after a rotation
// of the user-key secret, those keyed with a previous secret.
func (m *migrator) all(ctx context.Context) (Report, error) {
	var rep Report
	m.moved = map[string]bool{}
	for after := ""; ; {
		page, err := m.users.List(ctx, after, 300)
		if err != nil {
			return rep, err
		}
		for _, u := range page {
			var err error
			switch {
			case m.moved[u.Key]: // moved to a key further on in this run
			case u.MovedTo != "":
				rep.Finished++
				err = m.cleanUp(ctx, u.Key)
			case u.Sub != "" && u.Key != m.keys.Key(u.Sub):
				rep.Rekeyed++
				err = m.move(ctx, u, m.keys.Key(u.Sub), u.Sub)
			case u.Sub == "":
				err = m.legacy(ctx, u, &rep)
			}
			if err != nil {
				return rep, err
			}
		}
		if len(page) < 300 {
			return rep, nil
		}
		after = page[len(page)-1].Key
	}
}

// errNoAccountID is a tokeninfo answer that does not name the account.
var errNoAccountID = errors.New("tokeninfo named no account id")

// legacy moves a record keyed by its address to the key of its account id,
// asked of Google with its token. One whose account id cannot be learned
// (its token no longer works, or tokeninfo does not name the account) waits
// for its user to reconnect, under the keyed hash of its address, so no
// record or secret is named after the plain hash of an address any more.
func (m *migrator) legacy(ctx context.Context, u store.User, rep *Report) error {
	token, err := m.vault.RefreshToken(ctx, u.Key)
	var sub string
	if err == nil {
		sub, err = m.accountID(ctx, token)
	}
	switch {
	case errors.Is(err, vault.ErrNotFound), gmailclient.IsInvalidGrant(err), errors.Is(err, errNoAccountID):
		rep.Waiting++
		why := "its token no longer works"
		if errors.Is(err, errNoAccountID) {
			why = "Google did not name its account"
		}
		fmt.Fprintf(m.out, "waiting  %s (%s): %s; it moves when its user reconnects\n", u.Key, u.Status, why)
		if dropped, err := m.dropIfReconnected(ctx, u); dropped || err != nil {
			return err
		}
		if hidden := m.keys.AddressKey(u.Email); u.Key != hidden {
			return m.move(ctx, u, hidden, "")
		}
		return nil
	case err != nil:
		return fmt.Errorf("user %s: %w", u.Key, err)
	}
	rep.Moved++
	return m.move(ctx, u, m.keys.Key(sub), sub)
}

// move re-keys a record: its token (if it has one) under the new key's
// secret, its markers, the record (one transaction), then what is left
// under the old key is deleted.
func (m *migrator) move(ctx context.Context, u store.User, newKey, sub string) error {
	fmt.Fprintf(m.out, "move     %s -> %s\n", u.Key, newKey)
	m.moved[newKey] = true
	if m.dry {
		return nil
	}
	token, err := m.vault.RefreshToken(ctx, u.Key)
	switch {
	case err == nil:
		if err := m.vault.PutRefreshToken(ctx, newKey, token); err != nil {
			return err
		}
	case !errors.Is(err, vault.ErrNotFound):
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
// its new key meanwhile (an active record with an account id for the
// address), and reports whether it did.
func (m *migrator) dropIfReconnected(ctx context.Context, u store.User) (bool, error) {
	now, err := m.users.ByEmail(ctx, u.Email)
	if err != nil || now.Sub == "" || now.Status != store.Active || m.dry {
		return false, nil
	}
	if err := m.users.CopyMarkers(ctx, u.Key, now.Key); err != nil {
		return false, err
	}
	if err := m.users.MoveUser(ctx, u.Key, now.Key, now.Sub); err != nil {
		return false, err
	}
	return true, m.cleanUp(ctx, u.Key)
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
	if info.Aud != conf.ClientID {
		return "", errors.New("tokeninfo: a token of another client")
	}
	if info.Sub == "" {
		return "", errNoAccountID
	}
	return info.Sub, nil
}
