package vault_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/gmailwatch/gmailwatch/scripts/sandbox/secrets"
	"github.com/gmailwatch/gmailwatch/shared/vault"
)

// start serves a Secret Manager sandbox on loopback and returns a Vault on it.
func start(t *testing.T) (*vault.Vault, *secrets.Server) {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := secrets.New()
	g := grpc.NewServer()
	srv.Register(g)
	go g.Serve(lis)
	t.Cleanup(g.Stop)
	v, err := vault.New(context.Background(), "proj", lis.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { v.Close() })
	return v, srv
}

func TestRefreshTokenLifecycle(t *testing.T) {
	v, srv := start(t)
	ctx := context.Background()
	const key = "0123456789abcdef"
	if _, err := v.RefreshToken(ctx, key); !errors.Is(err, vault.ErrNotFound) {
		t.Fatalf("RefreshToken before connect: err = %v, want ErrNotFound", err)
	}
	for _, tok := range []string{"1//first", "1//second", "1//third"} {
		if err := v.PutRefreshToken(ctx, key, tok); err != nil {
			t.Fatalf("PutRefreshToken(%s): %v", tok, err)
		}
		got, err := v.RefreshToken(ctx, key)
		if err != nil || got != tok {
			t.Fatalf("RefreshToken = %q, %v; want %q", got, err, tok)
		}
	}
	versions, ok := srv.Secret("projects/proj/secrets/gmail-refresh-" + key)
	if !ok || len(versions) != 3 {
		t.Fatalf("secret versions = %+v (exists %v), want 3", versions, ok)
	}
	for _, ver := range versions[:2] {
		if ver.State != "DESTROYED" {
			t.Errorf("superseded version %d is %s, want DESTROYED", ver.Number, ver.State)
		}
	}
	if versions[2].State != "ENABLED" {
		t.Errorf("newest version is %s", versions[2].State)
	}
	if err := v.DeleteRefreshToken(ctx, key); err != nil {
		t.Fatal(err)
	}
	if _, ok := srv.Secret("projects/proj/secrets/gmail-refresh-" + key); ok {
		t.Fatal("secret still exists after DeleteRefreshToken")
	}
	if err := v.DeleteRefreshToken(ctx, key); err != nil {
		t.Fatalf("deleting twice: %v, want nil", err)
	}
}

func TestErrorsNeverCarryTheSecret(t *testing.T) {
	v, _ := start(t)
	ctx := context.Background()
	if err := v.PutRefreshToken(ctx, "bad/key", "1//leaky-token"); err == nil || strings.Contains(err.Error(), "leaky") {
		t.Fatalf("PutRefreshToken with a bad key: err = %v, want an error without the token", err)
	}
	if _, err := v.Access(ctx, "missing"); !errors.Is(err, vault.ErrNotFound) {
		t.Fatalf("Access(missing) = %v, want ErrNotFound", err)
	}
}

func TestPlaintextOnlyOnLoopback(t *testing.T) {
	for _, ep := range []string{"secretmanager.example.com:443", "10.0.0.1:9000", "nonsense"} {
		if _, err := vault.New(context.Background(), "p", ep); err == nil {
			t.Errorf("New(%q) accepted a non-loopback plaintext endpoint", ep)
		}
	}
}

// Connects faster than Secret Manager's project write quota wait for the
// quota and are all stored, rather than failing the user's consent. The
// sandbox's clock runs a minute every 0.6 s, so the quota refills quickly.
func TestConnectsAboveTheWriteRateWait(t *testing.T) {
	v, srv := start(t)
	const limit = 10
	srv.SetProjectWriteLimit(limit)
	var mu sync.Mutex
	now := time.Now()
	srv.SetClock(func() time.Time { mu.Lock(); defer mu.Unlock(); return now })
	ticking, stop := context.WithCancel(context.Background())
	defer stop()
	go func() {
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-ticking.Done():
				return
			case <-tick.C:
				mu.Lock()
				now = now.Add(5 * time.Second)
				mu.Unlock()
			}
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	const users = 12 // a create and an add each: 24 writes, over two minutes' quota
	errs := make(chan error, users)
	var wg sync.WaitGroup
	for i := range users {
		wg.Go(func() { errs <- v.PutRefreshToken(ctx, fmt.Sprintf("user%02d", i), fmt.Sprintf("token-%02d", i)) })
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("connect above the write rate: %v", err)
		}
	}
	for i := range users {
		if got, err := v.RefreshToken(ctx, fmt.Sprintf("user%02d", i)); err != nil || got != fmt.Sprintf("token-%02d", i) {
			t.Errorf("user%02d: token %q, %v", i, got, err)
		}
	}
}

// With no time left to wait, a refused write fails with Secret Manager's
// quota error, and no version is added.
func TestWriteRateRefusalWithoutTime(t *testing.T) {
	v, srv := start(t)
	srv.SetProjectWriteLimit(2)
	ctx := context.Background()
	if err := v.PutRefreshToken(ctx, "first", "token-1"); err != nil { // a create and an add: the minute's quota
		t.Fatal(err)
	}
	short, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	err := v.PutRefreshToken(short, "second", "token-2")
	if code := status.Code(err); code != codes.ResourceExhausted && code != codes.DeadlineExceeded && !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("write over the quota: %v, want RESOURCE_EXHAUSTED or the deadline", err)
	}
	if _, ok := srv.Secret("projects/proj/secrets/" + vault.RefreshPrefix + "second"); ok {
		t.Error("a refused connect created its secret")
	}
}
