package sandbox_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"cloud.google.com/go/pubsub/v2"
	secretmanager "cloud.google.com/go/secretmanager/apiv1"
	"cloud.google.com/go/secretmanager/apiv1/secretmanagerpb"
	"golang.org/x/oauth2"
	gmail "google.golang.org/api/gmail/v1"
	"google.golang.org/api/option"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/gmailwatch/gmailwatch/scripts/sandbox"
	"github.com/gmailwatch/gmailwatch/scripts/sandbox/gmailapi"
	"github.com/gmailwatch/gmailwatch/scripts/testenv"
)

const (
	clientID     = "local-client.apps.googleusercontent.com"
	clientSecret = "GOCSPX-local"
	redirectURI  = "http://127.0.0.1:9/oauth2/callback"
)

func start(t *testing.T, opts sandbox.Options) *sandbox.Sandbox {
	t.Helper()
	testenv.Need(t, "PUBSUB_EMULATOR_HOST")
	opts.ClientID, opts.ClientSecret, opts.RedirectURIs = clientID, clientSecret, []string{redirectURI}
	sb, err := sandbox.Start(context.Background(), opts)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() {
		if err := sb.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return sb
}

// TestConsentToNotification drives the sandbox the way the system does: the
// OAuth consent flow through x/oauth2, Gmail through the generated client,
// a watch whose pushes arrive on a Pub/Sub emulator subscription.
func TestConsentToNotification(t *testing.T) {
	t.Parallel()
	project := testenv.Project(t)
	ps := testenv.PubSub(t, project)
	topic := testenv.Topic(t, ps, "gmail")
	sub := testenv.Subscription(t, ps, topic, "gmail-sub")
	sb := start(t, sandbox.Options{ProjectID: project, AutoApprove: true})
	if err := sb.AddMailbox("alice@example.com"); err != nil {
		t.Fatal(err)
	}

	cfg := &oauth2.Config{ClientID: clientID, ClientSecret: clientSecret, RedirectURL: redirectURI,
		Scopes:   []string{gmailapi.ScopeMetadata},
		Endpoint: oauth2.Endpoint{AuthURL: sb.Env()["OAUTH_AUTH_URL"], TokenURL: sb.Env()["OAUTH_TOKEN_URL"]}}
	verifier := oauth2.GenerateVerifier()
	authURL := cfg.AuthCodeURL("st4te", oauth2.AccessTypeOffline, oauth2.S256ChallengeOption(verifier),
		oauth2.SetAuthURLParam("login_hint", "alice@example.com"))
	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := noRedirect.Get(authURL)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	loc, _ := url.Parse(resp.Header.Get("Location"))
	if resp.StatusCode/100 != 3 || !strings.HasPrefix(loc.String(), redirectURI) || loc.Query().Get("state") != "st4te" {
		t.Fatalf("authorize = %d to %q, want a redirect to the callback with the state", resp.StatusCode, loc)
	}
	ctx := context.Background()
	tok, err := cfg.Exchange(ctx, loc.Query().Get("code"), oauth2.VerifierOption(verifier))
	if err != nil || tok.RefreshToken == "" {
		t.Fatalf("exchange = %+v, %v; want a refresh token", tok, err)
	}
	svc, err := gmail.NewService(ctx, option.WithEndpoint(sb.Env()["GMAIL_ENDPOINT"]), option.WithTokenSource(cfg.TokenSource(ctx, tok)))
	if err != nil {
		t.Fatal(err)
	}
	w, err := svc.Users.Watch("me", &gmail.WatchRequest{TopicName: topic, LabelIds: []string{"INBOX"}, LabelFilterBehavior: "INCLUDE"}).Do()
	if err != nil {
		t.Fatal(err)
	}

	got := make(chan []byte, 10)
	rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	go ps.Subscriber(sub).Receive(rctx, func(_ context.Context, m *pubsub.Message) { m.Ack(); got <- m.Data })

	var d gmailapi.Delivered
	adminJSON(t, sb, "POST", "/admin/messages", `{"to":"alice@example.com","from":"bob@example.com","subject":"hi","body":"hello"}`, 200, &d)
	select {
	case data := <-got:
		var n map[string]any
		if err := json.Unmarshal(data, &n); err != nil {
			t.Fatalf("push %q: %v", data, err)
		}
		// Gmail sends historyId as a JSON number.
		if n["emailAddress"] != "alice@example.com" || n["historyId"] != float64(d.HistoryID) || d.HistoryID <= w.HistoryId {
			t.Fatalf("push = %s, want alice at %d (> watch %d)", data, d.HistoryID, w.HistoryId)
		}
	case <-rctx.Done():
		t.Fatal("no notification arrived")
	}
	r, err := svc.Users.History.List("me").StartHistoryId(w.HistoryId).HistoryTypes("messageAdded").LabelId("INBOX").Do()
	if err != nil || len(r.History) != 1 || r.History[0].MessagesAdded[0].Message.Id != d.ID {
		t.Fatalf("history = %+v, %v", r, err)
	}

	// The revoke fault makes the refresh token fail as Google does.
	adminJSON(t, sb, "POST", "/admin/faults", `{"user":"alice@example.com","revokeRefreshToken":true}`, 200, nil)
	_, err = cfg.TokenSource(ctx, &oauth2.Token{RefreshToken: tok.RefreshToken}).Token()
	var re *oauth2.RetrieveError
	if !errors.As(err, &re) || re.ErrorCode != "invalid_grant" {
		t.Fatalf("refresh after revoke = %v, want invalid_grant", err)
	}
	if f := sb.Gmail.Faults(); len(f) != 0 {
		t.Fatalf("a revoke-only spec set Gmail faults %v", f)
	}
}

func TestSecretManager(t *testing.T) {
	t.Parallel()
	sb := start(t, sandbox.Options{})
	ctx := context.Background()
	if err := sb.PutSecret(ctx, "p1", "oauth-client-secret", []byte("v1")); err != nil {
		t.Fatal(err)
	}
	if err := sb.PutSecret(ctx, "p1", "oauth-client-secret", []byte("v2")); err != nil {
		t.Fatal(err)
	}
	if err := sb.PutSecret(ctx, "p1", "bad/id", []byte("x")); err == nil {
		t.Fatal("PutSecret accepted an invalid id")
	}
	c, err := secretmanager.NewClient(ctx, option.WithEndpoint(sb.SecretManagerAddr), option.WithoutAuthentication(),
		option.WithGRPCDialOption(grpc.WithTransportCredentials(insecure.NewCredentials())))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	v, err := c.AccessSecretVersion(ctx, &secretmanagerpb.AccessSecretVersionRequest{Name: "projects/p1/secrets/oauth-client-secret/versions/latest"})
	if err != nil || string(v.Payload.Data) != "v2" {
		t.Fatalf("latest = %v, %v; want v2", v, err)
	}
}

func TestStartRefusesNonLoopback(t *testing.T) {
	t.Parallel()
	for _, tc := range []sandbox.Options{
		{HTTPAddr: "0.0.0.0:0"},
		{GRPCAddr: "10.1.2.3:0"},
		{HTTPAddr: "localhost"},
		{PubSubEmulatorHost: "pubsub.googleapis.com:443"},
	} {
		if sb, err := sandbox.Start(context.Background(), tc); err == nil {
			sb.Close()
			t.Errorf("Start(%+v) succeeded", tc)
		} else if !strings.Contains(err.Error(), "loopback") && !strings.Contains(err.Error(), "host:port") {
			t.Errorf("Start(%+v) = %v, want a loopback error", tc, err)
		}
	}
}

func TestConnectAndEnv(t *testing.T) {
	t.Parallel()
	sb := start(t, sandbox.Options{})
	rt, err := sb.Connect("Carol@example.com", gmailapi.ScopeReadonly)
	if err != nil || !strings.HasPrefix(rt, "1//") {
		t.Fatalf("Connect = %q, %v", rt, err)
	}
	if _, err := sb.Connect("carol@example.com"); err != nil {
		t.Fatalf("second Connect: %v", err)
	}
	env := sb.Env()
	cfg := oauth2.Config{ClientID: env["OAUTH_CLIENT_ID"], ClientSecret: clientSecret, Endpoint: oauth2.Endpoint{TokenURL: env["OAUTH_TOKEN_URL"]}}
	ctx := context.Background()
	svc, err := gmail.NewService(ctx, option.WithEndpoint(env["GMAIL_ENDPOINT"]), option.WithTokenSource(cfg.TokenSource(ctx, &oauth2.Token{RefreshToken: rt})))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sb.Deliver(gmailapi.Delivery{To: "carol@example.com", Subject: "s", Body: "full body"}); err != nil {
		t.Fatal(err)
	}
	l, err := svc.Users.Messages.List("me").Do()
	if err != nil || len(l.Messages) != 1 {
		t.Fatalf("list = %+v, %v", l, err)
	}
	m, err := svc.Users.Messages.Get("me", l.Messages[0].Id).Format("full").Do()
	if err != nil || m.Payload.Body.Data == "" {
		t.Fatalf("full get with readonly = %+v, %v", m, err)
	}
	sb.Revoke("carol@example.com")
	if _, err := cfg.TokenSource(ctx, &oauth2.Token{RefreshToken: rt}).Token(); err == nil {
		t.Fatal("refresh token works after Revoke")
	}
	if env["SECRETMANAGER_ENDPOINT"] != sb.SecretManagerAddr || env["OAUTH_REVOKE_URL"] != sb.URL+"/revoke" {
		t.Fatalf("env = %v", env)
	}
}
