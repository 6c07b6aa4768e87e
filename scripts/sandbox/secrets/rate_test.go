package secrets_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"cloud.google.com/go/secretmanager/apiv1/secretmanagerpb"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/gmailwatch/gmailwatch/scripts/sandbox/secrets"
)

// Secret Manager's quotas page: AddSecretVersion is limited to 2 requests per
// second and 120 per minute per (global) secret; state changes to 1 per second
// and 60 per minute per version.
func TestPerSecretWriteRate(t *testing.T) {
	ctx := context.Background()
	srv, c := start(t)
	var mu sync.Mutex
	now := time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)
	srv.SetClock(func() time.Time { mu.Lock(); defer mu.Unlock(); return now })
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }
	name := create(t, c, "gmail-refresh-rate")
	other := create(t, c, "gmail-refresh-other")
	addErr := func(parent string) error {
		_, err := c.AddSecretVersion(ctx, &secretmanagerpb.AddSecretVersionRequest{Parent: parent, Payload: &secretmanagerpb.SecretPayload{Data: []byte("1//x")}})
		return err
	}
	for i := range 2 {
		if err := addErr(name); err != nil {
			t.Fatalf("write %d within the second: %v", i+1, err)
		}
	}
	err := addErr(name)
	if status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("third write within a second: got %v, want RESOURCE_EXHAUSTED", err)
	}
	if versions, _ := srv.Secret(name); len(versions) != 2 {
		t.Errorf("the refused write stored a version: %d versions", len(versions))
	}
	if err := addErr(other); err != nil {
		t.Errorf("another secret is limited too: %v", err)
	}
	advance(time.Second)
	if err := addErr(name); err != nil {
		t.Errorf("a second later: %v", err)
	}
	// 120 a minute: two a second for a minute, and the next is refused.
	minute := create(t, c, "gmail-refresh-minute")
	for sec := range 60 {
		advance(time.Second)
		for i := range 2 {
			if err := addErr(minute); err != nil {
				t.Fatalf("second %d, write %d: %v", sec, i+1, err)
			}
		}
	}
	advance(500 * time.Millisecond)
	if err := addErr(minute); status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("write 121 within a minute: got %v, want RESOURCE_EXHAUSTED", err)
	}

	// Version state changes: one per second per version.
	v := name + "/versions/1"
	if _, err := c.DisableSecretVersion(ctx, &secretmanagerpb.DisableSecretVersionRequest{Name: v}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.EnableSecretVersion(ctx, &secretmanagerpb.EnableSecretVersionRequest{Name: v}); status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("second state change within a second: got %v, want RESOURCE_EXHAUSTED", err)
	}
}

// Secret Manager's quotas page: 600 write requests a minute per project,
// whatever the secret. The sandbox's own seeding (Unmetered) is outside it.
func TestProjectWriteQuota(t *testing.T) {
	ctx := context.Background()
	srv, c := start(t)
	var mu sync.Mutex
	now := time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)
	srv.SetClock(func() time.Time { mu.Lock(); defer mu.Unlock(); return now })
	createErr := func(ctx context.Context, id string) error {
		_, err := c.CreateSecret(ctx, &secretmanagerpb.CreateSecretRequest{Parent: project, SecretId: id, Secret: automatic()})
		return err
	}
	for i := range secrets.ProjectWritesPerMinute {
		if err := createErr(ctx, fmt.Sprintf("gmail-refresh-q%03d", i)); err != nil {
			t.Fatalf("write %d of the minute: %v", i+1, err)
		}
	}
	if err := createErr(ctx, "gmail-refresh-over"); status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("write 601 within a minute: got %v, want RESOURCE_EXHAUSTED", err)
	}
	if _, ok := srv.Secret(project + "/secrets/gmail-refresh-over"); ok {
		t.Error("the refused create made its secret")
	}
	if got := srv.Writes(strings.TrimPrefix(project, "projects/")); got != secrets.ProjectWritesPerMinute {
		t.Errorf("Writes = %d, want the %d admitted", got, secrets.ProjectWritesPerMinute)
	}
	if _, err := srv.CreateSecret(secrets.Unmetered(ctx), &secretmanagerpb.CreateSecretRequest{Parent: project, SecretId: "seeded", Secret: automatic()}); err != nil {
		t.Errorf("unmetered seeding refused: %v", err)
	}
	mu.Lock()
	now = now.Add(time.Minute)
	mu.Unlock()
	if err := createErr(ctx, "gmail-refresh-over"); err != nil {
		t.Errorf("a minute later: %v", err)
	}
}
