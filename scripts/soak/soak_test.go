package main

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gmailwatch/gmailwatch/scripts/sandbox/gmailapi"
	"github.com/gmailwatch/gmailwatch/shared/events"
	"github.com/gmailwatch/gmailwatch/shared/webhooksig"
)

// TestSoak runs the short configuration against the whole stack and holds
// the system to its promise: nothing lost, nothing repeated without a kill.
func TestSoak(t *testing.T) {
	if testing.Short() {
		t.Skip("the soak runs the whole stack for a few minutes")
	}
	var progress bytes.Buffer
	cfg := Config{Users: 4, Messages: 200, FaultRate: 0.2, Seed: 7, Kills: 6, Revoke: 1,
		Duration: 45 * time.Second, Drain: 2 * time.Minute, RenewEvery: 3 * time.Second,
		Dir: t.TempDir(), Progress: &progress}
	rep, err := Run(t.Context(), cfg)
	if err != nil {
		t.Fatalf("soak did not run: %v\n%s", err, progress.String())
	}
	var summary bytes.Buffer
	rep.Print(&summary)
	t.Log(summary.String())

	for _, c := range []struct {
		what      string
		got, want int
	}{
		{"topic: lost", len(rep.Topic.Lost), 0},
		{"topic: unexplained duplicates", len(rep.Topic.DuplicatesUnexplained), 0},
		{"topic: unexpected events", len(rep.Topic.Unexpected), 0},
		{"topic: delivered", rep.Topic.Delivered, rep.Sent.Required},
		{"webhook: lost", len(rep.Webhook.Lost), 0},
		{"webhook: unexplained duplicates", len(rep.Webhook.DuplicatesUnexplained), 0},
		{"webhook: delivered", rep.Webhook.Delivered, rep.Sent.Required},
		{"cursor regressions", len(rep.Cursor.Regressions), 0},
		{"revoked users marked", rep.Reauth.Marked, 1},
		{"kills done", len(rep.Injected.KillLog), cfg.Kills},
		{"kills not restarted", len(slices.DeleteFunc(slices.Clone(rep.Injected.KillLog), func(k killed) bool { return k.Error == "" })), 0},
	} {
		if c.got != c.want {
			t.Errorf("%s = %d, want %d", c.what, c.got, c.want)
		}
	}
	// The faults must really have happened, or the run proves nothing.
	for what, n := range map[string]int64{
		"required messages":        int64(rep.Sent.Required),
		"Gmail errors injected":    rep.Quota.InjectedErrors,
		"pushes dropped":           rep.Injected.Pushes.Dropped,
		"pushes duplicated":        rep.Injected.Pushes.Duplicated,
		"fault episodes":           int64(len(rep.Injected.Episodes)),
		"webhook requests refused": int64(rep.Injected.OutageRefused),
		"renew runs":               int64(rep.Injected.RenewRuns),
	} {
		if n == 0 {
			t.Errorf("%s = 0, want some", what)
		}
	}
	if !rep.Pass {
		t.Errorf("soak failed: %v", rep.Problems)
	}
	if t.Failed() {
		t.Log(progress.String())
	}
}

func TestParseFlags(t *testing.T) {
	for _, tc := range []struct {
		name    string
		args    []string
		want    func(Config) bool
		wantErr []string
	}{
		{"defaults", nil, func(c Config) bool {
			return c.Users == 4 && c.Messages == 200 && c.Revoke == 1 && c.Kills == 6 && c.Duration == time.Minute
		}, nil},
		{"long", []string{"-users", "50", "-messages", "5000", "-fault-rate", "0.3", "-duration", "10m"}, func(c Config) bool {
			return c.Users == 50 && c.Messages == 5000 && c.FaultRate == 0.3 && c.Revoke == 5
		}, nil},
		{"one user is never revoked", []string{"-users", "1"}, func(c Config) bool { return c.Revoke == 0 }, nil},
		{"kills off", []string{"-kills", "0"}, func(c Config) bool { return c.Kills == 0 }, nil},
		{"every bad value at once", []string{"-users", "0", "-messages", "0", "-fault-rate", "1.5", "-kills", "-1",
			"-duration", "1s", "-drain", "1s", "-renew-every", "0s", "-dir", ""},
			nil, []string{"-users 0", "-messages 0", "-fault-rate 1.5", "-kills -1", "-duration 1s", "-drain 1s", "-renew-every 0s", "-dir"}},
		{"NaN fault rate", []string{"-fault-rate", "NaN"}, nil, []string{"-fault-rate NaN"}},
		{"revoking everyone", []string{"-users", "3", "-revoke", "3"}, nil, []string{"-revoke 3"}},
		{"too many users", []string{"-users", "501"}, nil, []string{"-users 501"}},
		{"stray argument", []string{"extra"}, nil, []string{"unexpected arguments"}},
		{"no report path", []string{"-out", ""}, nil, []string{"-out"}},
		{"not a number", []string{"-users", "many"}, nil, []string{"invalid value"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, _, err := parseFlags(tc.args, io.Discard)
			if tc.wantErr == nil {
				if err != nil || !tc.want(cfg) {
					t.Fatalf("parseFlags(%q) = %+v, %v", tc.args, cfg, err)
				}
				return
			}
			if err == nil {
				t.Fatalf("parseFlags(%q) = %+v, want an error mentioning %q", tc.args, cfg, tc.wantErr)
			}
			for _, w := range tc.wantErr {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("parseFlags(%q) error %q, want it to mention %q", tc.args, err, w)
				}
			}
		})
	}
}

func TestPlan(t *testing.T) {
	cfg := Config{Users: 10, Messages: 500, FaultRate: 0.3, Seed: 42, Kills: 20, Revoke: 3, Duration: time.Minute}
	p := newPlan(cfg)
	if again := newPlan(cfg); !reflect.DeepEqual(p, again) {
		t.Fatal("the same seed drew two different plans")
	}
	other := cfg
	other.Seed = 43
	if reflect.DeepEqual(p, newPlan(other)) {
		t.Fatal("seeds 42 and 43 drew the same plan")
	}
	revoked := map[int]bool{}
	for _, r := range p.Revokes {
		revoked[r.User] = true
	}
	kinds := map[string]bool{}
	for _, e := range p.Episodes {
		kinds[e.Kind] = true
	}
	for _, c := range []struct {
		what      string
		got, want any
	}{
		{"sends", len(p.Sends), cfg.Messages},
		{"sends in time order", slices.IsSortedFunc(p.Sends, func(a, b send) int { return int(a.At - b.At) }), true},
		{"kills", len(p.Kills), cfg.Kills},
		{"distinct revoked users", len(revoked), cfg.Revoke},
		{"episode kinds drawn", len(kinds), 7},
		{"some outages", len(p.Outages) > 0, true},
		{"baseline error rate", p.Baseline.ErrorRate, 0.3},
	} {
		if c.got != c.want {
			t.Errorf("%s = %v, want %v", c.what, c.got, c.want)
		}
	}
	// Every fault the plan draws is one the sandbox accepts.
	gmail := gmailapi.New(gmailapi.Options{Auth: nil})
	for _, f := range append([]gmailapi.Faults{p.Baseline}, mapSlice(p.Episodes, func(e episode) gmailapi.Faults { return merge(p.Baseline, []*episode{&e}) })...) {
		if err := gmail.SetFaults("", f); err != nil {
			t.Errorf("sandbox refused planned faults %+v: %v", f, err)
		}
	}

	calm := newPlan(Config{Users: 2, Messages: 10, Seed: 1, Duration: 10 * time.Second})
	if len(calm.Episodes)+len(calm.Outages)+len(calm.Kills)+len(calm.Revokes) != 0 || !reflect.ValueOf(calm.Baseline).IsZero() {
		t.Errorf("a plan with no faults, kills or revocations has %+v", calm)
	}
}

func mapSlice[T, U any](in []T, f func(T) U) []U {
	out := make([]U, len(in))
	for i, v := range in {
		out[i] = f(v)
	}
	return out
}

func TestMerge(t *testing.T) {
	base := gmailapi.Faults{ErrorRate: 0.2, DropNotifications: 0.1}
	for _, tc := range []struct {
		name string
		eps  []gmailapi.Faults
		want gmailapi.Faults
	}{
		{"none", nil, base},
		{"harsher error rate wins", []gmailapi.Faults{{ErrorRate: 0.7}}, gmailapi.Faults{ErrorRate: 0.7, DropNotifications: 0.1}},
		{"milder rate keeps the base", []gmailapi.Faults{{ErrorRate: 0.1}}, base},
		{"kinds add up", []gmailapi.Faults{{ExpireHistory: true}, {Latency: gmailapi.Duration(time.Second)}, {DuplicateNotifications: 0.6, DuplicateCopies: 4}},
			gmailapi.Faults{ErrorRate: 0.2, DropNotifications: 0.1, ExpireHistory: true, Latency: gmailapi.Duration(time.Second), DuplicateNotifications: 0.6, DuplicateCopies: 4}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var eps []*episode
			for _, f := range tc.eps {
				eps = append(eps, &episode{Faults: f})
			}
			if got := merge(base, eps); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("merge = %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestLatency(t *testing.T) {
	ms := func(v ...int64) []slow { return mapSlice(v, func(n int64) slow { return slow{Ms: n} }) }
	hundred := make([]int64, 100)
	for i := range hundred {
		hundred[i] = int64(100 - i)
	}
	for _, tc := range []struct {
		name        string
		in          []slow
		want        Latency
		wantSlowest []int64
	}{
		{"none", nil, Latency{}, nil},
		{"one", ms(7), Latency{7, 7, 7}, []int64{7}},
		{"unsorted", ms(30, 10, 20), Latency{20, 30, 30}, []int64{30, 20, 10}},
		{"hundred", ms(hundred...), Latency{50, 99, 100}, []int64{100, 99, 98, 97, 96}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, slowest := latency(tc.in)
			gotSlowest := mapSlice(slowest, func(s slow) int64 { return s.Ms })
			if got != tc.want || !slices.Equal(gotSlowest, tc.wantSlowest) {
				t.Errorf("latency = %+v, slowest %v; want %+v, %v", got, gotSlowest, tc.want, tc.wantSlowest)
			}
		})
	}
}

func TestEventLog(t *testing.T) {
	ev := func(id string) []byte {
		b, _ := json.Marshal(events.Event{Version: events.Version, Type: events.MessageReceived, ID: id})
		return b
	}
	l := newEventLog()
	at := time.Now()
	l.add("m1", ev("a"), at)
	l.add("m1", ev("a"), at.Add(time.Second)) // Pub/Sub redelivery: not a second publish
	l.add("m2", ev("a"), at.Add(2*time.Second))
	l.add("m3", ev("b"), at)
	l.add("m4", []byte("not an event"), at)
	got := l.snapshot()
	for _, c := range []struct {
		what      string
		got, want any
	}{
		{"copies of a", len(got["a"].arrived), 2},
		{"copies of b", len(got["b"].arrived), 1},
		{"first of a", got["a"].arrived[0], at},
		{"undecodable", l.undecoded, 1},
		{"events", len(got), 2},
	} {
		if c.got != c.want {
			t.Errorf("%s = %v, want %v", c.what, c.got, c.want)
		}
	}
}

// TestGate checks the receiver stand-in: it forwards and records answers by
// webhook-id, and during an outage refuses without forwarding.
func TestGate(t *testing.T) {
	var mu sync.Mutex
	hits := map[string]int{}
	receiver := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		id := r.Header.Get(webhooksig.HeaderID)
		hits[id]++
		if r.URL.Path != "/webhook" {
			w.WriteHeader(http.StatusNotFound)
			return
		}
		if hits[id] > 1 {
			w.WriteHeader(http.StatusOK)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	defer receiver.Close()
	g, err := newGate()
	if err != nil {
		t.Fatal(err)
	}
	defer g.close()
	post := func(id string) (int, error) {
		req, _ := http.NewRequest(http.MethodPost, g.URL, strings.NewReader(`{}`))
		req.Header.Set(webhooksig.HeaderID, id)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return 0, err
		}
		resp.Body.Close()
		return resp.StatusCode, nil
	}
	for _, tc := range []struct {
		name     string
		setup    func()
		id       string
		want     int  // status the caller sees; 0: connection closed
		reachesR bool // the receiver saw it
	}{
		{"not open yet", func() {}, "early", 503, false},
		{"open", func() { g.open(receiver.URL + "/webhook") }, "one", 204, true},
		{"repeat", func() {}, "one", 200, true},
		{"outage 503", func() { g.setOutage("503") }, "two", 503, false},
		{"outage reset", func() { g.setOutage("reset") }, "two", 0, false},
		{"back", func() { g.setOutage("") }, "two", 204, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.setup()
			mu.Lock()
			before := hits[tc.id]
			mu.Unlock()
			got, err := post(tc.id)
			if tc.want == 0 && err == nil {
				t.Errorf("POST %s = %d, want the connection closed", tc.id, got)
			} else if tc.want != 0 && got != tc.want {
				t.Errorf("POST %s = %d (%v), want %d", tc.id, got, err, tc.want)
			}
			mu.Lock()
			reached := hits[tc.id] > before
			mu.Unlock()
			if reached != tc.reachesR {
				t.Errorf("receiver reached = %v, want %v", reached, tc.reachesR)
			}
		})
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if got := len(g.accepted["one"]); got != 2 {
		t.Errorf("accepted deliveries of one = %d, want 2", got)
	}
	if got := len(g.accepted["two"]); got != 1 {
		t.Errorf("accepted deliveries of two = %d, want 1", got)
	}
	if g.refused != 3 {
		t.Errorf("refused = %d, want 3", g.refused)
	}
}

func TestJudge(t *testing.T) {
	for _, tc := range []struct {
		name  string
		spoil func(*Report)
		want  string
	}{
		{"clean", func(*Report) {}, ""},
		{"lost on the topic", func(r *Report) { r.Topic.Lost = []missing{{MessageID: "m1"}} }, "output topic: 1 of 10 required messages lost"},
		{"lost at the webhook", func(r *Report) { r.Webhook.Lost = []missing{{MessageID: "m1"}, {MessageID: "m2"}} }, "webhook: 2 of 10 required messages lost"},
		{"unexplained duplicate", func(r *Report) { r.Topic.DuplicatesUnexplained = []string{"e1"} }, "output topic: 1 events repeated with no kill"},
		{"explained duplicates pass", func(r *Report) { r.Topic.Duplicates, r.Topic.DuplicatesExplained = 3, 3 }, ""},
		{"phantom", func(r *Report) { r.Topic.Unexpected = []string{"e9"} }, "never sent to a watched label"},
		{"cursor went back", func(r *Report) { r.Cursor.Regressions = []regression{{User: "u", From: 9, To: 8}} }, "1 cursor regressions"},
		{"revoked user unmarked", func(r *Report) { r.Reauth.Revoked = 2; r.Reauth.Marked = 1 }, "1 of 2 revoked users not marked"},
		{"dead-lettered", func(r *Report) { r.Webhook.DeadLettered = 1 }, "1 events dead-lettered"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := &Report{}
			r.Sent.Required = 10
			tc.spoil(r)
			r.judge()
			got := strings.Join(r.Problems, "; ")
			if r.Pass != (tc.want == "") || !strings.Contains(got, tc.want) {
				t.Errorf("judge: pass %v, problems %q; want problems containing %q", r.Pass, got, tc.want)
			}
		})
	}
}

func TestPlanOfEveryType(t *testing.T) {
	cfg := Config{Users: 10, Messages: 500, FaultRate: 0.3, Seed: 42, Kills: 20, Revoke: 3, Duration: time.Minute}
	plain := newPlan(cfg)
	cfg.AllTypes = true
	all := newPlan(cfg)
	if plain.Follow != nil {
		t.Errorf("without -all-types the plan has follow-ups %v", plain.Follow)
	}
	// The rest of the plan stays the same, so runs with and without compare.
	all.Follow = nil
	if !reflect.DeepEqual(plain, all) {
		t.Error("-all-types changed the sends, faults, kills or revocations")
	}
	kinds := map[string]int{}
	for _, k := range newPlan(cfg).Follow {
		kinds[k]++
	}
	for _, k := range []string{"", readIt, starIt, trashIt, deleteIt, sendIt} {
		if kinds[k] == 0 {
			t.Errorf("no send followed by %q in %v", k, kinds)
		}
	}
}

func TestOutOfOrder(t *testing.T) {
	at := time.Unix(1_800_000_000, 0)
	expected := map[string]expectation{
		"a": {User: 0, HistoryID: 10}, "b": {User: 0, HistoryID: 11}, "c": {User: 0, HistoryID: 12},
		"x": {User: 1, HistoryID: 5}, "y": {User: 1, HistoryID: 3}, // user 1 sees 5 before 3
	}
	arrived := map[string]time.Time{"a": at, "b": at.Add(2), "c": at.Add(1), "x": at, "y": at.Add(1)}
	checked := 0
	got := outOfOrder(expected, func(id string) (time.Time, bool) { t, ok := arrived[id]; return t, ok }, &checked)
	slices.Sort(got)
	if !slices.Equal(got, []string{"b", "y"}) || checked != 5 {
		t.Errorf("out of order %v (checked %d), want [b y] of 5", got, checked)
	}
}
