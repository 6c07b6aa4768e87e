package consent_test

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gmailwatch/gmailwatch/scripts/sandbox/googleauth"
	"github.com/gmailwatch/gmailwatch/shared/store"
)

// A mailbox watched through domain-wide delegation (both connect modes on)
// that its user disconnects is marked to stay out, and the page says so; a
// consented one's page says what it always did.
func TestDisconnectOfADelegatedMailboxSaysItStaysOut(t *testing.T) {
	s := newStack(t)
	ctx := context.Background()
	key := s.key(alice)
	if _, _, err := s.users.Connect(ctx, store.Connection{Key: key, Sub: googleauth.Subject(alice), Email: alice, HistoryID: 5,
		Delegated: true, RenewAt: time.Now().Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	s.auth.SetBehavior(googleauth.Behavior{AutoApprove: true})
	status, body := s.disconnectAs(t, alice)
	if status != http.StatusOK || !strings.Contains(body, `id="disconnected"`) || !strings.Contains(body, "stays out") {
		t.Fatalf("disconnect of a delegated mailbox: %d, want the page saying it stays out:\n%s", status, body)
	}
	if u, err := s.users.Get(ctx, key); err != nil || u.Status != store.Disconnected || !u.OptedOut {
		t.Fatalf("record after the disconnect: %+v, %v; want disconnected at the user's request", u, err)
	}

	// Connecting by consent clears it; that user's page is the usual one.
	s.connect(t)
	if u, _ := s.users.Get(ctx, key); u.Status != store.Active || u.OptedOut || u.Delegated {
		t.Fatalf("after connecting by consent: %+v; want an active consented user", u)
	}
	if status, body := s.disconnectAs(t, alice); status != http.StatusOK || strings.Contains(body, "stays out") || !strings.Contains(body, "Access was revoked") {
		t.Fatalf("disconnect of a consented mailbox: %d\n%s", status, body)
	}
}
