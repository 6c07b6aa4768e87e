package store

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"cloud.google.com/go/firestore"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// ErrStateUsed means an OAuth state nonce was recorded before: the callback
// carrying it is a replay.
var ErrStateUsed = errors.New("state already used")

// usedState is an oauthStates document.
type usedState struct {
	Flow     string    `firestore:"flow"`
	UsedAt   time.Time `firestore:"usedAt"`
	ExpireAt time.Time `firestore:"expireAt"` // Firestore TTL
}

// UseState records an OAuth state nonce as used, in oauthStates/{sha256 of
// the nonce}, so each is accepted at most once by any instance. The document
// keeps the flow and when it was used, and an expireAt (an hour after the
// state's own expiry) for a Firestore TTL policy. It fails with ErrStateUsed
// when the nonce was recorded before.
func (s *Store) UseState(ctx context.Context, nonce, flow string, expires time.Time) error {
	count(ctx, Ops{Writes: 1})
	_, err := s.state(nonce).Create(ctx, usedState{Flow: flow, UsedAt: s.now(), ExpireAt: expires.Add(time.Hour)})
	switch {
	case status.Code(err) == codes.AlreadyExists:
		return ErrStateUsed
	case err != nil:
		return fmt.Errorf("record used state: %w", err)
	}
	return nil
}

// StateUnused fails with ErrStateUsed if the nonce was recorded, without
// writing: the consent callback checks it before the code exchange and
// records the nonce only once the exchange succeeded, so callbacks with
// made-up codes leave nothing behind.
func (s *Store) StateUnused(ctx context.Context, nonce string) error {
	snap, err := s.state(nonce).Get(ctx)
	switch {
	case err == nil && snap.Exists():
		return ErrStateUsed
	case err != nil && status.Code(err) != codes.NotFound:
		return fmt.Errorf("read used state: %w", err)
	}
	return nil
}

func (s *Store) state(nonce string) *firestore.DocumentRef {
	sum := sha256.Sum256([]byte(nonce))
	return s.fs.Collection("oauthStates").Doc(hex.EncodeToString(sum[:]))
}
