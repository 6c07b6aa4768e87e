package vault_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"cloud.google.com/go/secretmanager/apiv1/secretmanagerpb"

	"github.com/gmailwatch/gmailwatch/scripts/sandbox/secrets"
	"github.com/gmailwatch/gmailwatch/shared/vault"
)

// put adds value as the newest version of secret id (created if missing).
func put(t *testing.T, srv *secrets.Server, id, value string) {
	t.Helper()
	ctx := context.Background()
	srv.CreateSecret(ctx, &secretmanagerpb.CreateSecretRequest{Parent: "projects/proj", SecretId: id, Secret: &secretmanagerpb.Secret{
		Replication: &secretmanagerpb.Replication{Replication: &secretmanagerpb.Replication_Automatic_{Automatic: &secretmanagerpb.Replication_Automatic{}}}}})
	if _, err := srv.AddSecretVersion(ctx, &secretmanagerpb.AddSecretVersionRequest{Parent: "projects/proj/secrets/" + id,
		Payload: &secretmanagerpb.SecretPayload{Data: []byte(value)}}); err != nil {
		t.Fatal(err)
	}
}

type testClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *testClock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *testClock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// TestKeysFollowARotation: the keys are read once per cache time, so a
// rotation (a new key in front of the previous one) is taken within it, and
// a failed read keeps the keys read before.
func TestKeysFollowARotation(t *testing.T) {
	v, srv := start(t)
	ctx := context.Background()
	old, next := strings.Repeat("o", 32), strings.Repeat("n", 32)
	clock := &testClock{t: time.Unix(1_800_000_000, 0)}
	keys := vault.NewKeys(v, "state-key", 32, clock.now)
	if _, err := keys.Get(ctx); !errors.Is(err, vault.ErrNotFound) {
		t.Fatalf("Get of a missing secret = %v, want ErrNotFound", err)
	}
	put(t, srv, "state-key", old+"\n")
	got := func() string {
		t.Helper()
		k, err := keys.Get(ctx)
		if err != nil {
			t.Fatalf("Get: %v", err)
		}
		var s []string
		for _, b := range k {
			s = append(s, string(b[:1]))
		}
		return strings.Join(s, " ")
	}
	if k := got(); k != "o" {
		t.Fatalf("keys = %q, want the one key", k)
	}
	put(t, srv, "state-key", next+" "+old) // scripts/set-secrets.sh --rotate
	clock.advance(vault.KeysCacheTTL - time.Second)
	if k := got(); k != "o" {
		t.Errorf("keys within the cache time = %q, want those read before", k)
	}
	clock.advance(time.Second)
	if k := got(); k != "n o" {
		t.Errorf("keys after the cache time = %q, want the new one, then the previous", k)
	}

	// Secret Manager unreachable for the secret: the keys read before stay.
	if _, err := srv.DeleteSecret(ctx, &secretmanagerpb.DeleteSecretRequest{Name: "projects/proj/secrets/state-key"}); err != nil {
		t.Fatal(err)
	}
	clock.advance(vault.KeysCacheTTL)
	if k := got(); k != "n o" {
		t.Errorf("keys after a failed read = %q, want those read before", k)
	}
}

// TestKeysRefusesAShortKey names the key by position, never its value.
func TestKeysRefusesAShortKey(t *testing.T) {
	v, srv := start(t)
	put(t, srv, "link-key", strings.Repeat("n", 32)+" short-secret")
	_, err := vault.NewKeys(v, "link-key", 32, nil).Get(context.Background())
	if err == nil || !strings.Contains(err.Error(), "key 2 of 2 is shorter than 32 bytes") || strings.Contains(err.Error(), "short-secret") {
		t.Errorf("Get = %v, want key 2 of 2 refused without its value", err)
	}
	put(t, srv, "empty-key", " \n")
	if _, err := vault.NewKeys(v, "empty-key", 32, nil).Get(context.Background()); err == nil || !strings.Contains(err.Error(), "empty") {
		t.Errorf("Get of a blank secret = %v, want empty", err)
	}
}
