// Package testenv is the one test harness: it connects tests to Google's
// Firestore and Pub/Sub emulators, which scripts/test.sh starts, and to the
// project's sandbox for Gmail, OAuth and Secret Manager. NewWorld builds all
// of it for one test; every test gets a project id of its own, so tests
// running in parallel never see each other's data.
package testenv

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"io"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"

	"cloud.google.com/go/firestore"
	"cloud.google.com/go/pubsub/v2"
	"cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"

	"github.com/gmailwatch/gmailwatch/shared/logging"
)

// Need skips the test unless the named emulator variables are set, saying
// how to run it; under CI it fails instead, so CI cannot pass by skipping.
func Need(t testing.TB, vars ...string) {
	t.Helper()
	for _, v := range vars {
		if os.Getenv(v) == "" {
			Missing(t, v+" is not set: run the tests with scripts/test.sh, which starts the emulators")
		}
	}
}

// Missing ends a test that cannot run on this machine: it skips with why,
// or fails under CI (CI=true), where everything the tests need is set up.
func Missing(t testing.TB, why string) {
	t.Helper()
	if ci, _ := strconv.ParseBool(os.Getenv("CI")); ci {
		t.Fatal(why)
	}
	t.Skip(why)
}

// Project returns a new project id, unique to this test.
func Project(t testing.TB) string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return "test-" + hex.EncodeToString(b)
}

// Firestore returns a client of the Firestore emulator for project.
func Firestore(t testing.TB, project string) *firestore.Client {
	t.Helper()
	Need(t, "FIRESTORE_EMULATOR_HOST")
	c, err := firestore.NewClient(context.Background(), project)
	if err != nil {
		t.Fatalf("firestore client: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// PubSub returns a client of the Pub/Sub emulator for project.
func PubSub(t testing.TB, project string) *pubsub.Client {
	t.Helper()
	Need(t, "PUBSUB_EMULATOR_HOST")
	c, err := pubsub.NewClient(context.Background(), project)
	if err != nil {
		t.Fatalf("pubsub client: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// Topic creates topic id in the client's project and returns its full name.
func Topic(t testing.TB, c *pubsub.Client, id string) string {
	t.Helper()
	name := "projects/" + c.Project() + "/topics/" + id
	if _, err := c.TopicAdminClient.CreateTopic(context.Background(), &pubsubpb.Topic{Name: name}); err != nil {
		t.Fatalf("create topic %s: %v", name, err)
	}
	return name
}

// Subscription creates a pull subscription id on topic (a full name), with
// message ordering as the deployment's subscriptions have it, and returns
// its full name.
func Subscription(t testing.TB, c *pubsub.Client, topic, id string) string {
	t.Helper()
	name := "projects/" + c.Project() + "/subscriptions/" + id
	_, err := c.SubscriptionAdminClient.CreateSubscription(context.Background(),
		&pubsubpb.Subscription{Name: name, Topic: topic, AckDeadlineSeconds: 10, EnableMessageOrdering: true})
	if err != nil {
		t.Fatalf("create subscription %s: %v", name, err)
	}
	return name
}

// LogBuffer collects log lines written by a logger from Logger, for tests
// that assert on what is, and what is never, logged.
type LogBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

// Write implements io.Writer.
func (b *LogBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// String returns everything logged so far.
func (b *LogBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// Contains reports whether any logged line contains s.
func (b *LogBuffer) Contains(s string) bool { return strings.Contains(b.String(), s) }

// Logger returns a debug-level production logger that writes to the returned
// buffer and, with -v, to the test log.
func Logger(t testing.TB) (*slog.Logger, *LogBuffer) {
	buf := &LogBuffer{}
	var w io.Writer = buf
	if testing.Verbose() {
		w = io.MultiWriter(buf, testWriter{t})
	}
	return logging.New(w, slog.LevelDebug), buf
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
