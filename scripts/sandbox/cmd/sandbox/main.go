// Command sandbox runs the Google sandbox (Gmail, OAuth 2.0, Secret Manager
// and the admin API) on loopback addresses until SIGINT or SIGTERM. When it
// is ready it prints one JSON line with its addresses, for scripts:
//
//	go run ./scripts/sandbox/cmd/sandbox -project local-project \
//	    -client-id local-client -client-secret s3cret \
//	    -redirect-uri http://127.0.0.1:8081/oauth2/callback \
//	    -secret oauth-client-secret=s3cret -mailbox alice@example.com
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/gmailwatch/gmailwatch/scripts/sandbox"
	"github.com/gmailwatch/gmailwatch/scripts/sandbox/gmailapi"
	"github.com/gmailwatch/gmailwatch/shared/logging"
)

// repeated is a flag that may be given many times.
type repeated []string

func (r *repeated) String() string     { return strings.Join(*r, ",") }
func (r *repeated) Set(v string) error { *r = append(*r, v); return nil }

// ready is the line printed once the sandbox serves.
type ready struct {
	URL           string            `json:"url"`
	SecretManager string            `json:"secretManager"`
	Admin         string            `json:"admin"`
	Env           map[string]string `json:"env"` // endpoint overrides for the functions
}

func main() {
	log := logging.New(os.Stderr, slog.LevelInfo)
	if err := run(os.Args[1:], log); err != nil {
		log.Error("sandbox", "error", err)
		os.Exit(1)
	}
}

func run(args []string, log *slog.Logger) error {
	fs := flag.NewFlagSet("sandbox", flag.ContinueOnError)
	var opts sandbox.Options
	var redirects, secretFlags, mailboxes repeated
	fs.StringVar(&opts.HTTPAddr, "http", "127.0.0.1:0", "HTTP listen address (loopback)")
	fs.StringVar(&opts.GRPCAddr, "grpc", "127.0.0.1:0", "Secret Manager gRPC listen address (loopback)")
	fs.StringVar(&opts.PubSubEmulatorHost, "pubsub", os.Getenv("PUBSUB_EMULATOR_HOST"), "Pub/Sub emulator host:port")
	fs.StringVar(&opts.ProjectID, "project", "", "project of the -secret secrets")
	fs.StringVar(&opts.ClientID, "client-id", "", "registered OAuth client id")
	fs.StringVar(&opts.ClientSecret, "client-secret", "", "registered OAuth client secret")
	fs.Var(&redirects, "redirect-uri", "registered redirect URI (repeatable)")
	fs.BoolVar(&opts.AutoApprove, "auto-approve", false, "approve consent at once instead of showing the page")
	fs.Var(&secretFlags, "secret", "ID=VALUE: create secret ID in -project (repeatable)")
	fs.Var(&mailboxes, "mailbox", "create this Gmail mailbox and OAuth account (repeatable)")
	fs.StringVar(&opts.Domain, "domain", "", "serve a Google Workspace tenant of this domain: Directory API, IAM Credentials, domain-wide delegation")
	fs.StringVar(&opts.ServiceAccount, "service-account", "", "with -domain: the service account delegated to (default gmailwatch-mailboxes@PROJECT.iam.gserviceaccount.com)")
	quota := fs.String("quota", string(gmailapi.Standard2026), "Gmail's quota profile: standard-2026 (projects created since 1 May 2026) or legacy")
	fs.IntVar(&opts.UserUnitsPerMinute, "user-units", 0, "Gmail quota units per user per minute (default: the -quota profile's)")
	fs.IntVar(&opts.ProjectUnitsPerMinute, "project-units", 0, "Gmail quota units per project per minute (default: the -quota profile's)")
	profile := fs.String("profile", "strict", "Gmail's harshness: strict, or kind (coalesced pushes, historical labels)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	switch *profile {
	case "strict":
	case "kind":
		opts.GmailProfile = gmailapi.Kind
	default:
		return fmt.Errorf("-profile %q: want strict or kind", *profile)
	}
	opts.GmailQuota = gmailapi.QuotaProfile(*quota)
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	opts.RedirectURIs = redirects
	secrets := map[string]string{}
	for _, kv := range secretFlags {
		id, value, ok := strings.Cut(kv, "=")
		if !ok || id == "" || value == "" {
			return fmt.Errorf("-secret wants ID=VALUE, got %q", strings.SplitN(kv, "=", 2)[0]+"=…")
		}
		secrets[id] = value
	}
	if len(secrets) > 0 && opts.ProjectID == "" {
		return errors.New("-secret needs -project")
	}
	opts.Logger = log

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	sb, err := sandbox.Start(ctx, opts)
	if err != nil {
		return err
	}
	defer sb.Close()
	for id, value := range secrets {
		if err := sb.PutSecret(ctx, opts.ProjectID, id, []byte(value)); err != nil {
			return err
		}
	}
	for _, m := range mailboxes {
		if err := sb.AddMailbox(m); err != nil {
			return fmt.Errorf("mailbox %s: %w", m, err)
		}
	}
	if opts.PubSubEmulatorHost == "" {
		log.Warn("no Pub/Sub emulator: users.watch will be refused (set PUBSUB_EMULATOR_HOST or -pubsub)")
	}
	line, _ := json.Marshal(ready{URL: sb.URL, SecretManager: sb.SecretManagerAddr, Admin: sb.URL + "/admin/", Env: sb.Env()})
	fmt.Println(string(line))
	<-ctx.Done()
	log.Info("sandbox stopping")
	return nil
}
