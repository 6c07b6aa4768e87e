package notify

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gmailwatch/gmailwatch/scripts/sandbox/gmailapi"
	"github.com/gmailwatch/gmailwatch/shared/gmailsync"
)

// Gmail's indexing lagging longer than the sync's rechecks fails the push
// with a retryable error, so Pub/Sub redelivers it in seconds, and the
// redelivery announces the message once.
func TestIndexingLagIsRedelivered(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		faults gmailapi.Faults
	}{
		{"history hides the message", gmailapi.Faults{HistoryDelay: gmailapi.Duration(time.Second)}},
		{"history hides it and reports its newest indexed record", gmailapi.Faults{HistoryDelay: gmailapi.Duration(time.Second), IndexedHistoryID: true}},
		{"messages.get does not find it yet", gmailapi.Faults{MessageDelay: gmailapi.Duration(time.Second)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			w := newWorld(t)
			s := gmailsync.New(gmailsync.Deps{Users: w.store, Gmail: w.Mailboxes(), Events: w.Publisher, Logger: w.Log},
				gmailsync.Settings{BackoffBase: time.Millisecond, BackoffMax: 10 * time.Millisecond, MaxTries: 2,
					RecheckDelay: 100 * time.Millisecond, Rechecks: 1, TrailDelay: 100 * time.Millisecond})
			h := New(s, w.project, "projects/p/topics/gmail", w.Log)
			if err := w.sb.Gmail.SetFaults(email, tc.faults); err != nil {
				t.Fatal(err)
			}
			d, err := w.sb.Deliver(gmailapi.Delivery{To: email, Subject: "indexed late"})
			if err != nil {
				t.Fatal(err)
			}
			push := cloudEvent(t, fmt.Sprintf(`{"emailAddress":%q,"historyId":%d}`, email, d.HistoryID), false)
			err = h.Handle(context.Background(), push)
			if !errors.Is(err, gmailsync.ErrHistoryLag) || strings.Contains(err.Error(), "@") {
				t.Fatalf("first delivery: %v; want ErrHistoryLag, without the address", err)
			}
			if u, _ := w.store.Get(context.Background(), w.user.Key); u.Cursor >= int64(d.HistoryID) || u.PendingHistoryID != int64(d.HistoryID) {
				t.Fatalf("after the lag: cursor %d pending %d; want the cursor before %d and it pending", u.Cursor, u.PendingHistoryID, d.HistoryID)
			}
			for deadline := time.Now().Add(5 * time.Second); ; {
				err := h.Handle(context.Background(), push)
				if err == nil {
					break
				}
				if !errors.Is(err, gmailsync.ErrHistoryLag) || time.Now().After(deadline) {
					t.Fatalf("redelivery: %v", err)
				}
				time.Sleep(100 * time.Millisecond) // Pub/Sub's redelivery backoff
			}
			if got := messageIDs(w.events(1)); !slices.Equal(got, []string{d.ID}) {
				t.Errorf("events: %v, want %s once", got, d.ID)
			}
		})
	}
}
