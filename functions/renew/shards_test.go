package renew

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"cloud.google.com/go/pubsub/v2"
	"golang.org/x/oauth2"

	"github.com/gmailwatch/gmailwatch/scripts/testenv"
	"github.com/gmailwatch/gmailwatch/shared/directory"
	"github.com/gmailwatch/gmailwatch/shared/store"
)

// postBody posts body to the handler as Cloud Scheduler or a Pub/Sub push
// would, and decodes the answer into out.
func postBody(t *testing.T, h http.Handler, path, body string, out any) int {
	t.Helper()
	srv := httptest.NewServer(h)
	defer srv.Close()
	resp, err := http.Post(srv.URL+path, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode
}

// push is the body Pub/Sub's push subscription posts for a message.
func push(data []byte) string {
	b, _ := json.Marshal(map[string]any{
		"message":      map[string]any{"data": base64.StdEncoding.EncodeToString(data), "messageId": "1"},
		"subscription": "projects/p/subscriptions/renew-fanout",
	})
	return string(b)
}

// The scheduled run publishes one message per range of shards to the
// fan-out topic; each, pushed back, renews the due users of its shards
// only, and together they renew every due user once.
func TestScheduledRunFansOutAndTheShardRunsRenewEveryone(t *testing.T) {
	const fanout = 4
	e := newEnv(t, envOptions{settings: func(s *Settings) { s.FanoutTopic, s.Fanout = "renew-fanout", fanout }})
	ps := testenv.PubSub(t, e.Project)
	topic := testenv.Topic(t, ps, "renew-fanout")
	sub := testenv.Subscription(t, ps, topic, "renew-fanout-pull")
	e.h.d.Fanout = PublishFanout(ps.Publisher(topic))
	if got, want := e.h.set.budget(), max(int(float64(e.h.set.UnitsPerMinute)*e.h.set.QuotaShare/fanout), 1); got != want {
		t.Errorf("budget of one fanned-out run = %d units/min, want the share over %d runs, %d", got, fanout, want)
	}

	const users = 24
	due := time.Now().Add(-time.Minute)
	shardOf := map[string]int{}
	for i := range users {
		u, err := e.add(fmt.Sprintf("fan%02d@example.com", i), due, nil)
		if err != nil {
			t.Fatal(err)
		}
		shardOf[u.Key] = u.Shard
	}

	var fan FanoutReport
	if code := postBody(t, e.h, "/", "", &fan); code != http.StatusOK || fan.Error != "" || len(fan.Published) != fanout {
		t.Fatalf("scheduled run: %d %+v, want %d ranges published", code, fan, fanout)
	}
	if n, _ := e.users.CountDue(context.Background(), store.AllShards(), store.RenewDue, time.Now()); n != users {
		t.Fatalf("the fan-out renewed %d users itself, want none (%d still due)", users-n, n)
	}

	// Receive the messages the way the push subscription would deliver them.
	var mu sync.Mutex
	var msgs [][]byte
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	err := ps.Subscriber(sub).Receive(ctx, func(_ context.Context, m *pubsub.Message) {
		m.Ack()
		mu.Lock()
		defer mu.Unlock()
		if msgs = append(msgs, m.Data); len(msgs) == fanout {
			cancel()
		}
	})
	cancel()
	if err != nil || len(msgs) != fanout {
		t.Fatalf("received %d fan-out messages (%v), want %d", len(msgs), err, fanout)
	}
	renewed := 0
	covered := map[int]bool{}
	for _, data := range msgs {
		var rep Report
		if code := postBody(t, e.h, ShardsPath, push(data), &rep); code != http.StatusOK || rep.Error != "" {
			t.Fatalf("shard run %s: %d %+v", data, code, rep)
		}
		for s := rep.Shards.From; s < rep.Shards.To; s++ {
			if covered[s] {
				t.Errorf("shard %d handed out twice", s)
			}
			covered[s] = true
		}
		want := 0
		for _, shard := range shardOf {
			if rep.Shards.From <= shard && shard < rep.Shards.To {
				want++
			}
		}
		if rep.Renewed != want || rep.Remaining != 0 {
			t.Errorf("run over shards %v renewed %d with %d remaining, want the %d users of its shards and none left", rep.Shards, rep.Renewed, rep.Remaining, want)
		}
		renewed += rep.Renewed
	}
	if renewed != users || len(covered) != store.ShardCount {
		t.Errorf("the shard runs renewed %d of %d users over %d of %d shards", renewed, users, len(covered), store.ShardCount)
	}
	if n, err := e.users.CountDue(context.Background(), store.AllShards(), store.RenewDue, time.Now()); err != nil || n != 0 {
		t.Errorf("after the pass %d users still due (%v)", n, err)
	}
}

// A push naming no valid range of shards is refused, and nothing is run.
func TestBadFanoutMessagesAreRefused(t *testing.T) {
	e := newEnv(t, envOptions{})
	u := e.connect(t, "bad-push@example.com", func(u *store.User) { u.RenewAt = time.Now().Add(-time.Minute) })
	for _, body := range []string{push([]byte(`{"from": 5, "to": 3}`)), push([]byte(`{"from": 0, "to": 17}`)), push([]byte(`{"from": -1, "to": 2}`)),
		push([]byte(`not json`)), `{"ignored": true}`, ``, strings.Repeat("x", maxBody+1)} {
		var out map[string]string
		if code := postBody(t, e.h, ShardsPath, body, &out); code != http.StatusBadRequest || out["error"] == "" {
			t.Errorf("push of %.40q: %d %v, want 400 with an error", body, code, out)
		}
	}
	if got := e.user(t, u.Key); !got.LastRenewAt.Equal(u.LastRenewAt) {
		t.Errorf("a refused push renewed the user (last renewal %v, was %v)", got.LastRenewAt, u.LastRenewAt)
	}
	if rep := e.h.RunShards(context.Background(), store.Shards{From: 3, To: 3}); rep.Error == "" || rep.Renewed != 0 {
		t.Errorf("RunShards(3..3) = %+v, want an error and nothing renewed", rep)
	}
}

// In delegation mode a directory that cannot be listed fails the run, but
// the renewals and reconciles of the users already watched still happen.
func TestDirectoryFailureSkipsNoRenewal(t *testing.T) {
	ctx := context.Background()
	e, _ := newDelegation(t, nil, "ann@example.com")
	keyOf := putUserKey(t, e.World)
	if rep := e.h.Run(ctx); rep.Error != "" || rep.Joined != 1 {
		t.Fatalf("first run: %+v, want ann joined", rep)
	}
	key := keyOf("ann@example.com")
	before, err := e.users.Update(ctx, key, func(u *store.User) error {
		u.RenewAt, u.SyncDueAt = time.Now().Add(-time.Minute), time.Now().Add(-time.Minute)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// The directory's endpoint now refuses connections (a closed loopback port).
	srv := httptest.NewServer(http.NotFoundHandler())
	dead := srv.URL
	srv.Close()
	e.h.d.Domain.Directory = directory.New(directory.Settings{Admin: "admin@example.com", Domain: "example.com", Endpoint: dead + "/"},
		func(context.Context) (oauth2.TokenSource, error) {
			return oauth2.StaticTokenSource(&oauth2.Token{AccessToken: "t"}), nil
		})
	rep := e.h.Run(ctx)
	if !strings.Contains(rep.Error, "directory listing") {
		t.Errorf("run with the directory down: error %q, want the directory listing's", rep.Error)
	}
	if rep.Renewed != 1 || rep.Reconciled != 1 {
		t.Errorf("run with the directory down renewed %d and reconciled %d, want ann's renewal and reconcile (report %+v)", rep.Renewed, rep.Reconciled, rep)
	}
	if after := e.user(t, key); !after.RenewAt.After(before.RenewAt) || !after.LastRenewAt.After(before.LastRenewAt) {
		t.Errorf("ann's renewal not recorded: renewAt %v -> %v", before.RenewAt, after.RenewAt)
	}
}
