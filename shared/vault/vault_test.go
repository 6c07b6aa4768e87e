package vault_test

import (
	"context"
	"errors"
	"net"
	"strings"
	"testing"

	"google.golang.org/grpc"

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
