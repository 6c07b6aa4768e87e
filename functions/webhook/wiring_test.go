package webhook

import (
	"context"
	"fmt"
	"hash/crc32"
	"net"
	"net/http"
	"testing"
	"time"

	"cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"
	secretmanager "cloud.google.com/go/secretmanager/apiv1"
	"cloud.google.com/go/secretmanager/apiv1/secretmanagerpb"
	"github.com/GoogleCloudPlatform/functions-framework-go/funcframework"
	"google.golang.org/api/option"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/gmailwatch/gmailwatch/scripts/sandbox/secrets"
	"github.com/gmailwatch/gmailwatch/scripts/testenv"
	"github.com/gmailwatch/gmailwatch/shared/events"
)

// TestRegisteredFunction runs the function as deployed: registered by init,
// configured from the environment, served by the functions framework, fed by
// a Pub/Sub emulator push subscription, its key read from the sandbox's
// Secret Manager. The receiver fails each event's first request, so every
// event is delivered on a repeat.
func TestRegisteredFunction(t *testing.T) {
	ctx := context.Background()
	ps := testenv.PubSub(t, testenv.Project(t))
	project := ps.Project()

	// Secret Manager with the signing key.
	sl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := grpc.NewServer()
	secrets.New().Register(g)
	go g.Serve(sl)
	defer g.Stop()
	admin, err := secretmanager.NewClient(ctx, option.WithEndpoint(sl.Addr().String()), option.WithoutAuthentication(),
		option.WithGRPCDialOption(grpc.WithTransportCredentials(insecure.NewCredentials())))
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	if _, err := admin.CreateSecret(ctx, &secretmanagerpb.CreateSecretRequest{Parent: "projects/" + project, SecretId: testSecretName,
		Secret: &secretmanagerpb.Secret{Replication: &secretmanagerpb.Replication{
			Replication: &secretmanagerpb.Replication_Automatic_{Automatic: &secretmanagerpb.Replication_Automatic{}}}}}); err != nil {
		t.Fatal(err)
	}
	sum := int64(crc32.Checksum([]byte(testSecret), crc32.MakeTable(crc32.Castagnoli)))
	if _, err := admin.AddSecretVersion(ctx, &secretmanagerpb.AddSecretVersionRequest{Parent: "projects/" + project + "/secrets/" + testSecretName,
		Payload: &secretmanagerpb.SecretPayload{Data: []byte(testSecret), DataCrc32C: &sum}}); err != nil {
		t.Fatal(err)
	}

	rv := newReceiver(t, func(n int, w http.ResponseWriter) {
		w.WriteHeader(map[bool]int{true: http.StatusServiceUnavailable, false: http.StatusNoContent}[n == 1])
	})

	fl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := fl.Addr().(*net.TCPAddr).Port
	fl.Close()
	for k, v := range map[string]string{
		"FUNCTION_TARGET": "Webhook", "PROJECT_ID": project, "WEBHOOK_URL": rv.URL + "/hook",
		"DEAD_LETTER_TOPIC": "webhook-dead-letter", "SECRETMANAGER_ENDPOINT": sl.Addr().String(), "EVENTS_TOPIC": "gmail-events",
		"WEBHOOK_TIMEOUT": "2s", "WEBHOOK_CALL_BUDGET": "10s",
	} {
		t.Setenv(k, v)
	}
	go func() { _ = funcframework.StartHostPort("127.0.0.1", fmt.Sprint(port)) }()

	eventsTopic := testenv.Topic(t, ps, "gmail-events")
	testenv.Topic(t, ps, "webhook-dead-letter")
	if _, err := ps.SubscriptionAdminClient.CreateSubscription(ctx, &pubsubpb.Subscription{
		Name: "projects/" + project + "/subscriptions/webhook", Topic: eventsTopic, AckDeadlineSeconds: 30,
		PushConfig: &pubsubpb.PushConfig{PushEndpoint: fmt.Sprintf("http://127.0.0.1:%d/projects/%s/topics/gmail-events", port, project)},
	}); err != nil {
		t.Fatal(err)
	}
	pub := events.NewPublisher(ps, "gmail-events")
	defer pub.Stop()
	var want []events.Event
	for i := range 3 {
		ev, _ := testEvent(300 + i)
		want = append(want, ev)
	}
	if err := pub.Publish(ctx, want...); err != nil {
		t.Fatal(err)
	}

	deadline := time.Now().Add(30 * time.Second)
	for {
		got := map[string]int{}
		for _, r := range rv.got() {
			if r.verified != nil {
				t.Fatalf("request for %s does not verify: %v", r.id, r.verified)
			}
			got[r.id]++
		}
		done := true
		for _, ev := range want {
			done = done && got[ev.ID] >= 2
		}
		if done {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("receiver saw %v, want every event of %d at least twice (503 then 204)", got, len(want))
		}
		time.Sleep(100 * time.Millisecond)
	}
}
