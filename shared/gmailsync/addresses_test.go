package gmailsync_test

import (
	"context"
	"testing"

	"github.com/gmailwatch/gmailwatch/shared/gmailsync"
	"github.com/gmailwatch/gmailwatch/shared/store"
)

// A push finds its user by the key an earlier push of the address found
// only while that record is active with the address: an address whose
// record was disconnected and connected again as another Google account
// (another key) is synced as the new record at once.
func TestPushFindsTheCurrentRecordOfAnAddress(t *testing.T) {
	t.Parallel()
	e := newEnv(t, fast)
	ctx := context.Background()
	const email = "moved@example.com"
	old := e.connect(email, nil, "")
	first := e.deliver(email, "first")
	if res := e.push(email, first.HistoryID); res.Outcome != gmailsync.Synced || res.User != old.Key {
		t.Fatalf("first push: %+v, want synced as %s", res, old.Key)
	}
	if _, err := e.store.Update(ctx, old.Key, func(u *store.User) error { u.Status = store.Disconnected; return nil }); err != nil {
		t.Fatal(err)
	}
	second := e.deliver(email, "second")
	if res := e.push(email, second.HistoryID); res.Outcome != gmailsync.Inactive || res.User != old.Key {
		t.Errorf("push after the disconnect: %+v, want inactive", res)
	}
	now, _, err := e.store.Connect(ctx, store.Connection{Key: "another-account-key", Email: email, HistoryID: int64(second.HistoryID)})
	if err != nil {
		t.Fatal(err)
	}
	third := e.deliver(email, "third")
	// The new record has no token here: that its sync was tried is enough.
	if res := e.push(email, third.HistoryID); res.User != now.Key || res.Outcome == gmailsync.Inactive {
		t.Errorf("push after the address came back as another account: %+v, want a sync of %s", res, now.Key)
	}
}
