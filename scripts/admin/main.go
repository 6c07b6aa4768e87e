// Command admin is the operator's tool for connected Gmail users: list them
// with their status, watch expiry and last sync, show one in full, or
// disconnect one through the same code path as the user's own disconnect
// (users.stop, revoke, delete the token, mark disconnected, delete markers,
// publish gmail.user.disconnected).
//
//	go run ./scripts/admin list
//	go run ./scripts/admin show EMAIL
//	go run ./scripts/admin disconnect EMAIL
//
// It reads PROJECT_ID and uses Application Default Credentials, or locally
// the emulator and sandbox variables (FIRESTORE_EMULATOR_HOST,
// PUBSUB_EMULATOR_HOST, SECRETMANAGER_ENDPOINT, OAUTH_*_URL, GMAIL_ENDPOINT).
// disconnect also reads the consent function's OAUTH_CLIENT_ID,
// OAUTH_CLIENT_SECRET_NAME and EVENTS_TOPIC.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/mail"
	"os"
	"os/signal"
	"strings"
	"text/tabwriter"
	"time"

	"cloud.google.com/go/firestore"
	"cloud.google.com/go/pubsub/v2"

	"github.com/gmailwatch/gmailwatch/shared/config"
	"github.com/gmailwatch/gmailwatch/shared/disconnect"
	"github.com/gmailwatch/gmailwatch/shared/events"
	"github.com/gmailwatch/gmailwatch/shared/gmailclient"
	"github.com/gmailwatch/gmailwatch/shared/logging"
	"github.com/gmailwatch/gmailwatch/shared/store"
	"github.com/gmailwatch/gmailwatch/shared/vault"
)

const usage = `usage: go run ./scripts/admin list | show EMAIL | disconnect EMAIL`

var errUsage = errors.New(usage)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	err := run(ctx, os.Args[1:], os.LookupEnv, os.Stdout, logging.New(os.Stderr, slog.LevelInfo))
	if err != nil {
		fmt.Fprintln(os.Stderr, "admin:", err)
		if errors.Is(err, errUsage) {
			os.Exit(2)
		}
		os.Exit(1)
	}
}

// run carries out one command, writing its answer to out.
func run(ctx context.Context, args []string, lookup func(string) (string, bool), out io.Writer, log *slog.Logger) error {
	arity := map[string]int{"list": 0, "show": 1, "disconnect": 1}
	if len(args) == 0 {
		return errUsage
	}
	if n, ok := arity[args[0]]; !ok || len(args) != n+1 {
		return errUsage
	}
	cmd, email := args[0], ""
	if len(args) == 2 {
		a, err := mail.ParseAddress(args[1])
		if err != nil || a.Address != args[1] {
			return fmt.Errorf("%q is not an email address", args[1])
		}
		email = strings.ToLower(a.Address)
	}
	r := config.NewReader(lookup)
	project := r.String("PROJECT_ID", config.Required)
	var settings gmailclient.Settings
	var topic, secretEndpoint string
	if cmd == "disconnect" {
		settings = gmailclient.ReadSettings(r)
		topic = r.String("EVENTS_TOPIC", config.Required)
		secretEndpoint = r.String("SECRETMANAGER_ENDPOINT", "")
	}
	if err := r.Err(); err != nil {
		return err
	}
	fs, err := firestore.NewClient(ctx, project)
	if err != nil {
		return fmt.Errorf("firestore client: %w", err)
	}
	defer fs.Close()
	users := store.New(fs, nil)
	switch cmd {
	case "list":
		return list(ctx, users, out)
	case "show":
		return show(ctx, users, email, out)
	}
	v, err := vault.New(ctx, project, secretEndpoint)
	if err != nil {
		return err
	}
	defer v.Close()
	ps, err := pubsub.NewClient(ctx, project)
	if err != nil {
		return fmt.Errorf("pubsub client: %w", err)
	}
	defer ps.Close()
	pub := events.NewPublisher(ps, topic)
	defer pub.Stop()
	d := disconnect.New(users, v, gmailclient.NewFactory(settings, v), pub, &http.Client{Timeout: 30 * time.Second}, log)
	found, err := d.Disconnect(ctx, store.Key(email))
	switch {
	case err != nil:
		return err
	case found:
		fmt.Fprintf(out, "disconnected %s\n", email)
	default:
		fmt.Fprintf(out, "%s was not connected; nothing to do\n", email)
	}
	return nil
}

// list prints every user, a page at a time, and a count by status.
func list(ctx context.Context, users *store.Store, out io.Writer) error {
	w := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "EMAIL\tSTATUS\tWATCH EXPIRES\tLAST SYNC\tLAST PUSH\tCURSOR\tKEY")
	counts := map[string]int{}
	total := 0
	for after := ""; ; {
		page, err := users.List(ctx, after, 300)
		if err != nil {
			return err
		}
		for _, u := range page {
			fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%d\t%s\n", u.Email, u.Status,
				when(u.WatchExpiration), when(u.LastSyncAt), when(u.LastNotificationAt), u.Cursor, u.Key)
			counts[u.Status]++
			total++
		}
		if len(page) < 300 {
			break
		}
		after = page[len(page)-1].Key
	}
	fmt.Fprintf(w, "\n%d users: %d active, %d reauth_required, %d disconnected\n",
		total, counts[store.Active], counts[store.ReauthRequired], counts[store.Disconnected])
	return w.Flush()
}

// show prints every field of one user's record.
func show(ctx context.Context, users *store.Store, email string, out io.Writer) error {
	u, err := users.Get(ctx, store.Key(email))
	if err != nil {
		return err
	}
	w := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	for _, f := range [][2]string{
		{"email", u.Email}, {"key", u.Key}, {"status", u.Status},
		{"cursor", fmt.Sprint(u.Cursor)}, {"pending history id", fmt.Sprint(u.PendingHistoryID)},
		{"labels", u.LabelFilter + " " + strings.Join(u.Labels, ",")},
		{"watch expires", when(u.WatchExpiration)}, {"renew at", when(u.RenewAt)}, {"last renewed", when(u.LastRenewAt)},
		{"last push", when(u.LastNotificationAt)}, {"last sync", when(u.LastSyncAt)}, {"sync due", when(u.SyncDueAt)},
		{"connected", when(u.ConnectedAt)}, {"reauth since", when(u.ReauthSince)}, {"updated", when(u.UpdatedAt)},
		{"lease", lease(u.Lease)},
	} {
		fmt.Fprintf(w, "%s:\t%s\n", f[0], f[1])
	}
	return w.Flush()
}

func when(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format(time.RFC3339)
}

func lease(l store.Lease) string {
	if l.Holder == "" {
		return "-"
	}
	return l.Holder + " until " + when(l.Until)
}
