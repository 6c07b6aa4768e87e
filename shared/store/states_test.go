package store_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"testing"
	"time"

	"github.com/gmailwatch/gmailwatch/scripts/testenv"
	"github.com/gmailwatch/gmailwatch/shared/store"
)

func TestUseStateAcceptsANonceOnce(t *testing.T) {
	t.Parallel()
	fs := testenv.Firestore(t, testenv.Project(t))
	now := time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC)
	s := store.New(fs, func() time.Time { return now })
	ctx := context.Background()
	expires := now.Add(10 * time.Minute)
	if err := s.UseState(ctx, "nonce-1", "connect", expires); err != nil {
		t.Fatalf("first use: %v", err)
	}
	for _, tc := range []struct{ nonce, flow string }{{"nonce-1", "connect"}, {"nonce-1", "disconnect"}} {
		if err := s.UseState(ctx, tc.nonce, tc.flow, expires); !errors.Is(err, store.ErrStateUsed) {
			t.Errorf("reuse of %s in %s: got %v, want ErrStateUsed", tc.nonce, tc.flow, err)
		}
	}
	if err := s.UseState(ctx, "nonce-2", "disconnect", expires); err != nil {
		t.Errorf("another nonce: %v", err)
	}
	// The document is named by the nonce's hash, never the nonce, and
	// carries the expiry a TTL policy deletes it by.
	sum := sha256.Sum256([]byte("nonce-1"))
	snap, err := fs.Collection("oauthStates").Doc(hex.EncodeToString(sum[:])).Get(ctx)
	if err != nil {
		t.Fatal(err)
	}
	got := snap.Data()
	if got["flow"] != "connect" || !got["usedAt"].(time.Time).Equal(now) || !got["expireAt"].(time.Time).Equal(expires.Add(time.Hour)) {
		t.Errorf("oauthStates document %v, want flow connect, usedAt %v, expireAt %v", got, now, expires.Add(time.Hour))
	}
	docs, err := fs.Collection("oauthStates").Documents(ctx).GetAll()
	if err != nil || len(docs) != 2 {
		t.Errorf("oauthStates holds %d documents (%v), want 2", len(docs), err)
	}
}
