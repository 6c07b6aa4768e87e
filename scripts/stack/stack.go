// Package stack runs the whole system on this machine, with no Google
// account: Google's Firestore and Pub/Sub emulators, the Google sandbox, and
// each function as its own process behind the functions framework, wired with
// the topics and push subscriptions the deployed system has. Gmail pushes
// reach the notify function as they reach it through Eventarc when
// deployed: pushed from a subscription by a Relay, which delivers as Pub/Sub
// push does in the cloud (the emulator's own push is an option). scripts/dev,
// the soak and the benchmarks are built on it.
package stack

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"cloud.google.com/go/pubsub/v2"
	"cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"
	secretmanager "cloud.google.com/go/secretmanager/apiv1"
	"cloud.google.com/go/secretmanager/apiv1/secretmanagerpb"
	"google.golang.org/api/option"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/gmailwatch/gmailwatch/scripts/sandbox"
)

// Functions in the order they start; the target names they register.
var Functions = []string{"consent", "accounts", "notify", "renew", "webhook"}

var targets = map[string]string{"consent": "Consent", "accounts": "Accounts", "notify": "Notify", "renew": "Renew", "webhook": "Webhook"}

// Topic and subscription ids, as Terraform names them.
const (
	GmailTopic      = "gmail-notifications"
	EventsTopic     = "gmail-events"
	DeadLetterTopic = "gmail-events-dead-letter"
	EventsPull      = "local-events" // a pull subscription for watching events
	DeadLetterPull  = "gmail-events-dead-letter-replay"

	// The second webhook endpoint: only users connected under OtherAppRef.
	OtherEndpoint        = "other-app"
	OtherAppRef          = "other-app"
	OtherSecret          = "webhook-other-app-signing-secret"
	OtherDeadLetterTopic = "webhook-other-app-dead-letter"
)

// AppOrigin is the application's origin in local runs: connect links may
// send the browser back there (RETURN_ORIGINS).
const AppOrigin = "http://localhost:8000"

// Options configure a stack; the zero value runs everything.
type Options struct {
	Dir       string            // binaries, logs and state; default .local under the module root
	ProjectID string            // default local-gmailwatch
	Env       map[string]string // extra settings for every function
	Sandbox   sandbox.Options   // addresses and client are filled in
	NoWebhook bool              // run without the webhook function and receiver
	// EmulatorPush leaves Gmail's pushes to notify to the Pub/Sub emulator's
	// own push delivery (about two requests in flight) instead of a Relay.
	EmulatorPush bool
}

// Stack is a running local system.
type Stack struct {
	Project       string `json:"project"`
	FirestoreHost string `json:"firestoreEmulator"`
	PubSubHost    string `json:"pubsubEmulator"`
	SandboxURL    string `json:"sandboxURL"`
	SecretManager string `json:"secretManager"`
	ConsentURL    string `json:"consentURL"`
	AccountsURL   string `json:"accountsURL"`
	DisconnectURL string `json:"disconnectURL"`
	ReceiverURL   string `json:"webhookReceiverURL,omitempty"`
	// OtherReceiverURL is the second webhook endpoint's receiver, which
	// takes only the events of users connected under OtherAppRef.
	OtherReceiverURL string            `json:"otherWebhookReceiverURL,omitempty"`
	FunctionURLs     map[string]string `json:"functions"`
	Logs             string            `json:"logs"`
	ClientID         string            `json:"oauthClientId"`

	Sandbox *sandbox.Sandbox `json:"-"`
	// NotifyRelay pushes Gmail's notifications to notify; nil with EmulatorPush.
	NotifyRelay *Relay `json:"-"`

	dir      string
	env      []string
	mu       sync.Mutex
	procs    map[string]*process
	emus     *Emulators
	pubsub   *pubsub.Client
	relays   []func() // each stops a Relay and waits for it
	stopping bool
}

// Start brings the stack up; on error everything started so far is stopped.
func Start(ctx context.Context, opts Options) (st *Stack, err error) {
	root, err := moduleRoot()
	if err != nil {
		return nil, err
	}
	if opts.Dir == "" {
		opts.Dir = filepath.Join(root, ".local")
	}
	if opts.ProjectID == "" {
		opts.ProjectID = "local-gmailwatch"
	}
	st = &Stack{Project: opts.ProjectID, dir: opts.Dir, procs: map[string]*process{}, FunctionURLs: map[string]string{}}
	defer func() {
		if err != nil {
			st.Stop()
			st = nil
		}
	}()
	st.Logs = filepath.Join(opts.Dir, "logs")
	_ = os.RemoveAll(st.Logs) // each run starts with fresh logs
	if err := os.MkdirAll(st.Logs, 0o755); err != nil {
		return st, err
	}
	if err := st.build(ctx, root); err != nil {
		return st, err
	}
	if err := st.startEmulators(ctx); err != nil {
		return st, err
	}
	ports := map[string]int{}
	for _, name := range append(Functions, "receiver", "receiver-other") {
		if ports[name], err = FreePort(); err != nil {
			return st, err
		}
	}
	for name, port := range ports {
		st.FunctionURLs[name] = fmt.Sprintf("http://127.0.0.1:%d", port)
	}
	consentURL := st.FunctionURLs["consent"]
	st.ConsentURL, st.DisconnectURL = consentURL+"/connect", consentURL+"/disconnect"
	st.AccountsURL = st.FunctionURLs["accounts"]

	clientSecret, stateKey, linkKey, webhookSecret := random(24), random(64), random(64), "whsec_"+base64.StdEncoding.EncodeToString([]byte(random(24)))
	otherSecret := "whsec_" + base64.StdEncoding.EncodeToString([]byte(random(24)))
	st.ClientID = "local-" + random(6) + ".apps.googleusercontent.com"
	so := opts.Sandbox
	so.ClientID, so.ClientSecret = st.ClientID, clientSecret
	so.RedirectURIs = []string{consentURL + "/oauth2/callback"}
	so.PubSubEmulatorHost = st.PubSubHost
	if st.Sandbox, err = sandbox.Start(ctx, so); err != nil {
		return st, fmt.Errorf("sandbox: %w", err)
	}
	st.SandboxURL, st.SecretManager = st.Sandbox.URL, st.Sandbox.SecretManagerAddr
	if err := st.createSecrets(ctx, map[string]string{
		"oauth-client-secret":    clientSecret,
		"consent-state-key":      stateKey,
		"connect-link-key":       linkKey,
		"user-key-secret":        random(64),
		"webhook-signing-secret": webhookSecret,
		OtherSecret:              otherSecret,
	}); err != nil {
		return st, err
	}
	// Two webhook endpoints, unless a caller points the single webhook
	// elsewhere (WEBHOOK_URL, as scripts/soak does).
	two := !opts.NoWebhook && opts.Env["WEBHOOK_URL"] == ""
	if err := st.createTopics(ctx, opts.NoWebhook, opts.EmulatorPush, two); err != nil {
		return st, err
	}

	st.env = []string{
		"PROJECT_ID=" + st.Project,
		"FIRESTORE_EMULATOR_HOST=" + st.FirestoreHost,
		"PUBSUB_EMULATOR_HOST=" + st.PubSubHost,
		"SECRETMANAGER_ENDPOINT=" + st.SecretManager,
		"GMAIL_ENDPOINT=" + st.SandboxURL + "/",
		"OAUTH_AUTH_URL=" + st.SandboxURL + "/o/oauth2/v2/auth",
		"OAUTH_TOKEN_URL=" + st.SandboxURL + "/token",
		"OAUTH_REVOKE_URL=" + st.SandboxURL + "/revoke",
		"OAUTH_CERTS_URL=" + st.SandboxURL + "/oauth2/v3/certs",
		"OAUTH_CLIENT_ID=" + st.ClientID,
		"GMAIL_QUOTA_PROFILE=" + string(st.Sandbox.Gmail.Quota().Profile), // count what the sandbox charges
		"PUBLIC_URL=" + consentURL,
		"CONSENT_URL=" + consentURL,
		// The accounts API answers the application's backend only, with
		// an ID token the sandbox signs (BackendToken; locally
		// scripts/admin asks SANDBOX_URL for one).
		"ACCOUNTS_URL=" + st.AccountsURL,
		"ACCOUNTS_INVOKERS=" + Backend,
		"SANDBOX_URL=" + st.SandboxURL,
		"RETURN_ORIGINS=" + AppOrigin,
		// Local only: every sandbox account is a test account, so the plain
		// consent URL admits anyone. Deployed, OPEN_ENROLLMENT is off.
		"OPEN_ENROLLMENT=true",
		"GMAIL_TOPIC=projects/" + st.Project + "/topics/" + GmailTopic,
		"EVENTS_TOPIC=" + EventsTopic,
	}
	if two {
		endpoints, _ := json.Marshal([]map[string]any{
			{"name": "app", "subscription": "webhook", "url": st.FunctionURLs["receiver"] + "/webhook", "secret": "webhook-signing-secret", "deadLetterTopic": DeadLetterTopic},
			{"name": OtherEndpoint, "subscription": "webhook-" + OtherEndpoint, "url": st.FunctionURLs["receiver-other"] + "/webhook", "secret": OtherSecret,
				"deadLetterTopic": OtherDeadLetterTopic, "appRef": OtherAppRef},
		})
		st.env = append(st.env, "WEBHOOK_ENDPOINTS="+string(endpoints))
	} else {
		st.env = append(st.env, "DEAD_LETTER_TOPIC="+DeadLetterTopic, "WEBHOOK_URL="+st.FunctionURLs["receiver"]+"/webhook")
	}
	if so.Domain != "" { // delegation mode: IAM Credentials, Directory, metadata server
		sbEnv := st.Sandbox.Env()
		for _, k := range []string{"IAMCREDENTIALS_ENDPOINT", "DIRECTORY_ENDPOINT", "GCE_METADATA_HOST", "DELEGATION_SERVICE_ACCOUNT"} {
			st.env = append(st.env, k+"="+sbEnv[k])
		}
	}
	for k, v := range opts.Env {
		st.env = append(st.env, k+"="+v)
	}
	// The signed-link key, for trying signed links by hand (README).
	if err := os.WriteFile(filepath.Join(opts.Dir, "connect-link-key"), []byte(linkKey), 0o600); err != nil {
		return st, err
	}
	if !opts.NoWebhook {
		secretFile := filepath.Join(opts.Dir, "webhook-secret")
		if err := os.WriteFile(secretFile, []byte(webhookSecret), 0o600); err != nil {
			return st, err
		}
		st.ReceiverURL = st.FunctionURLs["receiver"] + "/webhook"
		if err := st.startReceiver(ctx, "receiver", "webhook-secret"); err != nil {
			return st, err
		}
	} else {
		delete(st.FunctionURLs, "receiver")
	}
	if two {
		if err := os.WriteFile(filepath.Join(opts.Dir, "webhook-other-secret"), []byte(otherSecret), 0o600); err != nil {
			return st, err
		}
		st.OtherReceiverURL = st.FunctionURLs["receiver-other"] + "/webhook"
		if err := st.startReceiver(ctx, "receiver-other", "webhook-other-secret"); err != nil {
			return st, err
		}
	} else {
		delete(st.FunctionURLs, "receiver-other")
	}
	for _, name := range Functions {
		if name == "webhook" && opts.NoWebhook {
			delete(st.FunctionURLs, name)
			continue
		}
		if err := st.startFunction(ctx, name); err != nil {
			return st, err
		}
	}
	if !opts.EmulatorPush {
		st.NotifyRelay = st.Relay(context.WithoutCancel(ctx), "notify", st.NotifyPushURL())
	}
	return st, nil
}

func moduleRoot() (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil || strings.TrimSpace(string(out)) == "" || strings.TrimSpace(string(out)) == os.DevNull {
		return "", fmt.Errorf("run from inside the gmailwatch module: %v", err)
	}
	return filepath.Dir(strings.TrimSpace(string(out))), nil
}

// build compiles the function runner and the webhook receiver once.
func (st *Stack) build(ctx context.Context, root string) error {
	for name, pkg := range map[string]string{"serve": "./scripts/serve", "receiver": "./scripts/receiver"} {
		cmd := exec.CommandContext(ctx, "go", "build", "-o", filepath.Join(st.dir, "bin", name), pkg)
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("go build %s: %v\n%s", pkg, err, out)
		}
	}
	return nil
}

func (st *Stack) startEmulators(ctx context.Context) (err error) {
	if st.emus, err = StartEmulators(ctx, st.Logs); err != nil {
		return err
	}
	st.FirestoreHost, st.PubSubHost = st.emus.FirestoreHost, st.emus.PubSubHost
	// The client libraries in this process (sandbox, topic set-up) use them too.
	os.Setenv("FIRESTORE_EMULATOR_HOST", st.FirestoreHost)
	os.Setenv("PUBSUB_EMULATOR_HOST", st.PubSubHost)
	st.pubsub, err = pubsub.NewClient(ctx, st.Project)
	return err
}

func (st *Stack) createSecrets(ctx context.Context, values map[string]string) error {
	c, err := secretmanager.NewClient(ctx, option.WithEndpoint(st.SecretManager), option.WithoutAuthentication(),
		option.WithGRPCDialOption(grpc.WithTransportCredentials(insecure.NewCredentials())))
	if err != nil {
		return err
	}
	defer c.Close()
	for id, v := range values {
		_, err := c.CreateSecret(ctx, &secretmanagerpb.CreateSecretRequest{
			Parent: "projects/" + st.Project, SecretId: id,
			Secret: &secretmanagerpb.Secret{Replication: &secretmanagerpb.Replication{Replication: &secretmanagerpb.Replication_Automatic_{Automatic: &secretmanagerpb.Replication_Automatic{}}}},
		})
		if err != nil {
			return fmt.Errorf("create secret %s: %w", id, err)
		}
		sum := int64(crc32.Checksum([]byte(v), crc32.MakeTable(crc32.Castagnoli)))
		_, err = c.AddSecretVersion(ctx, &secretmanagerpb.AddSecretVersionRequest{
			Parent: "projects/" + st.Project + "/secrets/" + id, Payload: &secretmanagerpb.SecretPayload{Data: []byte(v), DataCrc32C: &sum},
		})
		if err != nil {
			return fmt.Errorf("add secret %s: %w", id, err)
		}
	}
	return nil
}

// NotifyPushURL is where the functions framework takes a Pub/Sub push for
// the notify function.
func (st *Stack) NotifyPushURL() string {
	return st.FunctionURLs["notify"] + "/projects/" + st.Project + "/topics/" + GmailTopic
}

func (st *Stack) createTopics(ctx context.Context, noWebhook, emulatorPush, two bool) error {
	topic := func(id string) string { return "projects/" + st.Project + "/topics/" + id }
	sub := func(id string) string { return "projects/" + st.Project + "/subscriptions/" + id }
	ids := []string{GmailTopic, EventsTopic, DeadLetterTopic}
	if two {
		ids = append(ids, OtherDeadLetterTopic)
	}
	for _, id := range ids {
		if _, err := st.pubsub.TopicAdminClient.CreateTopic(ctx, &pubsubpb.Topic{Name: topic(id)}); err != nil {
			return fmt.Errorf("create topic %s: %w", id, err)
		}
	}
	var notifyPush *pubsubpb.PushConfig // nil: a pull subscription the relay drains
	if emulatorPush {
		notifyPush = &pubsubpb.PushConfig{PushEndpoint: st.NotifyPushURL()}
	}
	subs := []*pubsubpb.Subscription{
		{Name: sub("notify"), Topic: topic(GmailTopic), AckDeadlineSeconds: 60, PushConfig: notifyPush},
		// Ordered, as terraform/pubsub.tf has the webhook's: one user's events in history order.
		{Name: sub(EventsPull), Topic: topic(EventsTopic), AckDeadlineSeconds: 30, EnableMessageOrdering: true},
		{Name: sub(DeadLetterPull), Topic: topic(DeadLetterTopic), AckDeadlineSeconds: 30},
	}
	if !noWebhook {
		subs = append(subs, &pubsubpb.Subscription{Name: sub("webhook"), Topic: topic(EventsTopic), AckDeadlineSeconds: 60, EnableMessageOrdering: true,
			PushConfig: &pubsubpb.PushConfig{PushEndpoint: st.FunctionURLs["webhook"] + "/projects/" + st.Project + "/topics/" + EventsTopic}})
	}
	if two {
		// Filtered as terraform/pubsub.tf filters it; the emulator ignores
		// filters, so the webhook function applies the endpoint's own.
		subs = append(subs, &pubsubpb.Subscription{Name: sub("webhook-" + OtherEndpoint), Topic: topic(EventsTopic), AckDeadlineSeconds: 60, EnableMessageOrdering: true,
			Filter:     `attributes.appRef = "` + OtherAppRef + `"`,
			PushConfig: &pubsubpb.PushConfig{PushEndpoint: st.FunctionURLs["webhook"] + "/projects/" + st.Project + "/topics/" + EventsTopic}},
			&pubsubpb.Subscription{Name: sub(OtherDeadLetterTopic), Topic: topic(OtherDeadLetterTopic), AckDeadlineSeconds: 30})
	}
	for _, s := range subs {
		if _, err := st.pubsub.SubscriptionAdminClient.CreateSubscription(ctx, s); err != nil {
			return fmt.Errorf("create subscription %s: %w", s.Name, err)
		}
	}
	return nil
}

func (st *Stack) startFunction(ctx context.Context, name string) error {
	port := strings.TrimPrefix(st.FunctionURLs[name], "http://127.0.0.1:")
	env := append([]string{"FUNCTION_TARGET=" + targets[name], "PORT=" + port}, st.env...)
	return st.startProcessEnv(ctx, name, st.FunctionURLs[name], env, filepath.Join(st.dir, "bin", "serve"))
}

func (st *Stack) startReceiver(ctx context.Context, name, secretFile string) error {
	url := st.FunctionURLs[name]
	return st.startProcessEnv(ctx, name, url, nil, filepath.Join(st.dir, "bin", "receiver"),
		"-addr", strings.TrimPrefix(url, "http://"), "-secret-file", filepath.Join(st.dir, secretFile))
}

func (st *Stack) startProcessEnv(ctx context.Context, name, url string, env []string, bin string, args ...string) error {
	p, err := startProcess(name, st.Logs, env, bin, args...)
	if err != nil {
		return err
	}
	st.mu.Lock()
	st.procs[name] = p
	st.mu.Unlock()
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := waitHTTP(wctx, url+"/", p); err != nil {
		return fmt.Errorf("%w (log: %s)", err, filepath.Join(st.Logs, name+".log"))
	}
	return nil
}

// Restart kills a function's process at once, wherever it is (mid-sync
// included), and starts it again, as the platform replaces a crashed instance.
func (st *Stack) Restart(ctx context.Context, name string) error {
	st.mu.Lock()
	p := st.procs[name]
	st.mu.Unlock()
	if p == nil {
		return fmt.Errorf("no process %q", name)
	}
	p.kill()
	switch name {
	case "receiver":
		return st.startReceiver(ctx, name, "webhook-secret")
	case "receiver-other":
		return st.startReceiver(ctx, name, "webhook-other-secret")
	}
	return st.startFunction(ctx, name)
}

// PID returns the process id of a running function or the receiver (0 if none),
// for measuring its memory.
func (st *Stack) PID(name string) int {
	st.mu.Lock()
	defer st.mu.Unlock()
	if p := st.procs[name]; p != nil {
		return p.cmd.Process.Pid
	}
	return 0
}

// Renew runs the renew function once, as Cloud Scheduler does, and returns its report.
func (st *Stack) Renew(ctx context.Context) (string, error) { return st.postRenew(ctx, "/", nil) }

// RenewShards runs the renew function over a range of shards, as the
// fan-out topic's push subscription does, and returns its report.
func (st *Stack) RenewShards(ctx context.Context, from, to int) (string, error) {
	data, _ := json.Marshal(map[string]int{"from": from, "to": to})
	body, _ := json.Marshal(map[string]any{
		"message":      map[string]any{"data": base64.StdEncoding.EncodeToString(data), "messageId": fmt.Sprintf("shards-%d-%d", from, to)},
		"subscription": "projects/local/subscriptions/renew-fanout",
	})
	return st.postRenew(ctx, "/shards", bytes.NewReader(body))
}

func (st *Stack) postRenew(ctx context.Context, path string, in io.Reader) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, st.FunctionURLs["renew"]+path, in)
	if err != nil {
		return "", err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", fmt.Errorf("renew: %w", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode != http.StatusOK {
		return string(body), fmt.Errorf("renew: %s", resp.Status)
	}
	return strings.TrimSpace(string(body)), nil
}

// PubSub returns the stack's Pub/Sub emulator client.
func (st *Stack) PubSub() *pubsub.Client { return st.pubsub }

// Env returns the settings every function runs with.
func (st *Stack) Env() []string { return append([]string(nil), st.env...) }

// Backend is the application's backend identity, the one caller of the
// local accounts API.
const Backend = "backend@local-app.iam.gserviceaccount.com"

// BackendToken returns an ID token of Backend for the accounts API, valid
// for an hour.
func (st *Stack) BackendToken() string { return st.Sandbox.Auth.IDToken(Backend, st.AccountsURL) }

// Stop ends every process and emulator; it is safe to call more than once.
func (st *Stack) Stop() {
	st.mu.Lock()
	if st.stopping {
		st.mu.Unlock()
		return
	}
	st.stopping = true
	procs, relays := st.procs, st.relays
	st.mu.Unlock()
	for _, stop := range relays {
		stop()
	}
	for _, p := range procs {
		p.stop(3 * time.Second)
	}
	if st.Sandbox != nil {
		_ = st.Sandbox.Close()
	}
	if st.pubsub != nil {
		_ = st.pubsub.Close()
	}
	if st.emus != nil {
		st.emus.Stop()
	}
}

func random(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(errors.New("no randomness"))
	}
	return hex.EncodeToString(b)[:n]
}
