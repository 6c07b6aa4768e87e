package consent_test

import (
	"context"
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/gmailwatch/gmailwatch/scripts/sandbox/googleauth"
	"github.com/gmailwatch/gmailwatch/shared/store"
	"github.com/gmailwatch/gmailwatch/shared/vault"
)

// TestKeysRotateWithoutARedeploy: scripts/set-secrets.sh --rotate puts a
// new key in front of the previous one in each secret. A running instance
// takes the new keys within the cache time, and what was signed or keyed
// with the previous ones still works: a flow started before the rotation
// (state cookie and signed link of the old keys) completes, and the user
// keyed with the old user-key secret keeps its record. A link signed with a
// key that is in neither place is refused, and changes nothing.
func TestKeysRotateWithoutARedeploy(t *testing.T) {
	s := newStack(t)
	ctx := context.Background()
	const (
		newStateKey = "state-signing-key-after-rotation-0123456789"
		newLinkKey  = "connect-link-key-after-rotation-0123456789"
		newUserKey  = "user-key-secret-after-rotation-0123456789"
		unknownKey  = "connect-link-key-nobody-has-0123456789abcdef"
	)
	s.seen.add(newStateKey, newLinkKey, newUserKey, unknownKey)

	// Before: alice connects with a link signed with the current key.
	c, cb, _ := s.followLink(t, s.signedLink(s.request("rot-1"), 20*time.Minute, linkKey), alice)
	if back := s.back(t, cb, c); back.Query().Get("outcome") != "connected" {
		t.Fatalf("before the rotation: back to %s", back)
	}
	oldKey := s.key(alice)
	if _, err := s.users.Get(ctx, oldKey); err != nil {
		t.Fatal(err)
	}
	// A flow started before the rotation: its cookie and link are of the old keys.
	pending, pendingCB, _ := s.followLink(t, s.signedLink(s.request("rot-1"), 20*time.Minute, linkKey), alice)

	s.PutSecret("consent-state-key", newStateKey+" "+stateKey)
	s.PutSecret("connect-link-key", newLinkKey+"\n"+linkKey)
	s.PutSecret("user-key-secret", newUserKey+" "+userKeySecret)

	// Within the cache time the instance still uses the keys it read.
	if _, _, refused := s.followLink(t, s.signedLink(s.request("rot-1"), 20*time.Minute, newLinkKey), alice); refused == nil {
		t.Error("a link of the new key worked before the cache time passed: the keys were not cached")
	}
	s.clock.Advance(vault.KeysCacheTTL + time.Second)

	if _, _, refused := s.followLink(t, s.signedLink(s.request("rot-1"), 20*time.Minute, newLinkKey), alice); refused != nil {
		t.Errorf("a link of the new key after the cache time: status %d, want the flow started", refused.StatusCode)
	}
	before := s.snapshot(t)
	_, _, refused := s.followLink(t, s.signedLink(s.request("rot-1"), 20*time.Minute, unknownKey), alice)
	if refused == nil {
		t.Fatal("a link signed with an unknown key started a flow")
	}
	if refused.StatusCode != http.StatusBadRequest || refused.Header.Get("Location") != "" {
		t.Errorf("unknown key: status %d to %q, want 400 and no redirect (a forged link's error URL is not trusted)", refused.StatusCode, refused.Header.Get("Location"))
	}
	s.unchanged(t, before)

	// The flow of the old keys completes, on alice's existing record.
	if back := s.back(t, pendingCB, pending); back.Query().Get("outcome") != "connected" || s.redeemed(t, back).User != oldKey {
		t.Fatalf("flow started before the rotation: back to %s, want connected as %s", back, oldKey)
	}
	rotated, _ := store.NewKeyer([]byte(newUserKey))
	if _, err := s.users.Get(ctx, rotated.Key(googleauth.Subject(alice))); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("alice has a second record under the new user key (%v): one mailbox, two users", err)
	}
	// A new user is keyed with the new secret.
	s.addPeople(t)
	c, cb, _ = s.followLink(t, s.signedLink(s.request("rot-2"), 20*time.Minute, newLinkKey), carol)
	if back := s.back(t, cb, c); s.redeemed(t, back).User != rotated.Key(googleauth.Subject(carol)) {
		t.Errorf("carol, new, went back as %s, want keyed with the new secret", back)
	}
}
