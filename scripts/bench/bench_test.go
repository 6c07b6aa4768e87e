package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/gmailwatch/gmailwatch/scripts/stack"
	"github.com/gmailwatch/gmailwatch/shared/gmailclient"
)

// TestMain lets the test binary serve as the isolated probe, as the program
// does: the cold-start section runs os.Executable() inside the namespace.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == isolatedProbeArg {
		os.Exit(isolatedProbe(os.Args[2:], os.Stdout))
	}
	os.Exit(m.Run())
}

func TestParseFlags(t *testing.T) {
	for _, tc := range []struct {
		name    string
		args    []string
		want    func(*Config)
		wantOut string
		wantErr []string
	}{
		{name: "defaults", wantOut: filepath.Join(".local", "bench", "bench.json"), want: func(*Config) {}},
		{name: "sizes", args: []string{"-only", "renewal, quota", "-users", "500", "-latency", "100ms", "-out", "x.json"}, wantOut: "x.json",
			want: func(c *Config) {
				c.Sections, c.RenewUsers, c.GmailLatency = []string{"renewal", "quota"}, 500, 100*time.Millisecond
			}},
		{name: "legacy quota", args: []string{"-quota", "legacy"}, wantOut: filepath.Join(".local", "bench", "bench.json"),
			want: func(c *Config) { c.Quota = gmailclient.QuotaLegacy }},
		{name: "every bad value at once", args: []string{"-only", "quota,speed", "-users", "0", "-duplicates", "2", "-concurrency", "0", "-quota", "standard-2025"},
			wantErr: []string{`unknown section "speed"`, "-users 0", "-duplicates 2", "-concurrency 0", `-quota "standard-2025"`}},
		{name: "shard runs", args: []string{"-only", "renewal", "-renew-shards", "16"}, wantOut: filepath.Join(".local", "bench", "bench.json"),
			want: func(c *Config) { c.Sections, c.RenewShards = []string{"renewal"}, 16 }},
		{name: "too many shard runs", args: []string{"-renew-shards", "17"}, wantErr: []string{"-renew-shards 17"}},
		{name: "no section", args: []string{"-only", ","}, wantErr: []string{"no section chosen"}},
		{name: "stray argument", args: []string{"quota"}, wantErr: []string{"unexpected arguments"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, out, err := parseFlags(tc.args, io.Discard)
			if len(tc.wantErr) > 0 {
				if err == nil {
					t.Fatalf("parseFlags(%q) = %+v, want an error", tc.args, got)
				}
				for _, w := range tc.wantErr {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("parseFlags(%q) error %q, want it to mention %q", tc.args, err, w)
					}
				}
				return
			}
			if err != nil {
				t.Fatalf("parseFlags(%q): %v", tc.args, err)
			}
			want := Defaults()
			tc.want(&want)
			if !reflect.DeepEqual(got, want) || out != tc.wantOut {
				t.Errorf("parseFlags(%q) = %+v, %q\nwant %+v, %q", tc.args, got, out, want, tc.wantOut)
			}
		})
	}
}

func TestDistOf(t *testing.T) {
	msList := func(v ...int) []time.Duration {
		out := make([]time.Duration, len(v))
		for i, x := range v {
			out[i] = time.Duration(x) * time.Millisecond
		}
		return out
	}
	hundred := make([]int, 100)
	for i := range hundred {
		hundred[i] = 100 - i // 100..1, unsorted
	}
	for _, tc := range []struct {
		name string
		in   []time.Duration
		want Dist
	}{
		{"none", nil, Dist{}},
		{"one", msList(7), Dist{N: 1, P50: 7, P99: 7, Max: 7}},
		{"nearest rank", msList(hundred...), Dist{N: 100, P50: 50, P99: 99, Max: 100}},
		{"odd count", msList(3, 1, 2), Dist{N: 3, P50: 2, P99: 3, Max: 3}},
	} {
		if got := distOf(tc.in); got != tc.want {
			t.Errorf("%s: distOf = %+v, want %+v", tc.name, got, tc.want)
		}
	}
}

func TestNetworkCalls(t *testing.T) {
	trace := filepath.Join(t.TempDir(), "trace")
	lines := strings.Join([]string{
		`4101  connect(7, {sa_family=AF_INET, sin_port=htons(8681), sin_addr=inet_addr("127.0.0.1")}, 16) = -1 ECONNREFUSED (Connection refused)`,
		`4102  sendto(9, "\x01\x02", 2, 0, NULL, 0) = 2`,
		`4103  connect(8, {sa_family=AF_INET6, ...}, 28 <unfinished ...>`,
		`4103  <... connect resumed>) = 0`,
		`4104  +++ exited with 0 +++`,
		`4105  sendmsg(3, {msg_name=NULL}, 0) = 12`,
	}, "\n")
	if err := os.WriteFile(trace, []byte(lines), 0o644); err != nil {
		t.Fatal(err)
	}
	if got, want := len(networkCalls(trace)), 4; got != want {
		t.Errorf("networkCalls found %d calls, want %d: %q", got, want, networkCalls(trace))
	}
	if got := networkCalls(filepath.Join(t.TempDir(), "missing")); got != nil {
		t.Errorf("networkCalls of a missing trace = %q, want none", got)
	}
}

// TestBench runs every section at a tiny size against the whole stack and
// checks that each measured what it claims to: the numbers exist, add up
// with what was sent, and the detectors detect (the baseline's probe costs
// calls; a configured function dials after its first request).
func TestBench(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the whole stack and builds every function")
	}
	cfg := Config{Sections: Sections, GmailLatency: 20 * time.Millisecond, Mailboxes: 2, Singles: 2, Bursts: 1, BurstSize: 4,
		DuplicateRate: 0.5, Concurrency: 4, Duration: 2 * time.Second, RenewUsers: 30, RenewQuota: 60_000, RenewShards: 1,
		SeedBudget: time.Minute, ColdRuns: 1, Push: pushRelay, Dir: t.TempDir(), Quota: gmailclient.QuotaStandard2026}
	var progress bytes.Buffer
	cfg.Progress = &progress
	rep, err := Run(t.Context(), cfg)
	if err != nil {
		t.Fatalf("bench did not run: %v\n%s", err, progress.String())
	}
	w, tp, rn, cs := rep.Workload, rep.Throughput, rep.Renewal, rep.ColdStart
	if w == nil || tp == nil || rn == nil || cs == nil {
		t.Fatalf("sections missing from the report: %+v", rep)
	}
	isolated := map[string]IsolatedRun{}
	callsBefore := 0
	for _, i := range cs.Isolation {
		isolated[i.Function+map[bool]string{true: " configured", false: ""}[i.Configured]] = i
		callsBefore += i.CallsBefore
	}
	for _, c := range []struct {
		what      string
		got, want any
	}{
		{"system latency single messages", w.System.Latency.Single.Messages, 4},
		{"system latency single announced", w.System.Latency.Single.Announced, 4},
		{"system latency single timed", w.System.Latency.Single.Latency.N, 4},
		{"system quota burst messages", w.System.Quota.Burst.Messages, 8},
		{"system quota burst announced", w.System.Quota.Burst.Announced, 8},
		{"system quota pushes duplicated", w.System.Quota.Single.DuplicatePushes+w.System.Quota.Burst.DuplicatePushes > 0, true},
		{"baseline latency burst announced", w.Baseline.Latency.Burst.Announced, 8},
		{"system units cover a get per message", w.System.Quota.Burst.Units >= int64(8*cfg.Quota.Units(gmailclient.MethodMessagesGet)), true},
		{"push hops timed", w.PushHop.N > 0, true},
		{"probe pushes", w.System.Probe.Duplicate + w.System.Probe.Stale, 6},
		{"system probe Gmail calls", w.System.Probe.Calls, int64(0)},
		// At least a history.list per push: the baseline keeps the push's
		// history id, which falls short of a burst whose later pushes were dropped.
		{"baseline probe Gmail calls (a history.list per push at least)", w.Baseline.Probe.Calls >= 6, true},
		{"messages after a dropped push, announced once", fmt.Sprint(w.Dropped.Messages, w.Dropped.Announced, w.Dropped.DuplicateEvents), "4 4 0"},
		{"their pushes dropped by the rate", w.Dropped.RateDropped >= 4, true},
		{"throughput messages fetched once each", tp.MessagesGet, tp.Messages},
		{"throughput messages announced", int64(tp.Announced), tp.Messages},
		{"throughput measured", tp.Messages > 0 && tp.PeakRSSMiB > 0, true},
		{"renewal users", rn.Users, 30},
		{"watches renewed", rn.Renewed, 30},
		{"watch calls", rn.WatchCalls, int64(30)},
		{"functions started", len(cs.Functions), len(stack.Functions)},
		{"isolated starts", len(cs.Isolation), 2 * len(stack.Functions)},
		{"isolation error", cs.IsolationError, ""},
		{"network calls before a first request", callsBefore, 0},
		{"configured notify dials after its first request", isolated["notify configured"].CallsAfter > 0, true},
		{"targets evaluated", len(rep.Targets) > 10, true},
		{"throughput users' tokens read once each, in the warm-up", fmt.Sprint(tp.WarmUpSecretAccesses, tp.WarmUpTokenRefreshes, tp.SecretAccesses, tp.TokenRefreshes), "4 4 0 0"},
		{"capacity limits", len(rep.Capacity.Limits), 8},
		{"capacity first reached", rep.Capacity.First, rep.Capacity.Limits[0].Resource},
		{"capacity: Secret Manager writes per first connect and reconnect", fmt.Sprint(rep.Capacity.Inputs[6].Value, rep.Capacity.Inputs[7].Value), "2 3"},
	} {
		if !reflect.DeepEqual(c.got, c.want) {
			t.Errorf("%s = %v, want %v", c.what, c.got, c.want)
		}
	}
	for _, f := range cs.Functions {
		if f.SizeMiB <= f.StrippedMiB || f.StrippedMiB <= 0 || f.Listen.N != 1 || f.FirstStatus == 0 {
			t.Errorf("cold start of %s = %+v, want sizes, one start and a first answer", f.Name, f)
		}
	}

	var table bytes.Buffer
	rep.Print(&table)
	for _, want := range []string{"1. Quota", "2. Latency", "3. Throughput", "4. Renewal", "5. Cold start", "6. Capacity", "Targets"} {
		if !strings.Contains(table.String(), want) {
			t.Errorf("printed report lacks %q:\n%s", want, table.String())
		}
	}
	out := filepath.Join(t.TempDir(), "bench.json")
	if err := rep.Write(out); err != nil {
		t.Fatal(err)
	}
	var back Report
	if b, err := os.ReadFile(out); err != nil || json.Unmarshal(b, &back) != nil || back.Throughput.Messages != tp.Messages {
		t.Errorf("bench.json does not read back: %v", err)
	}
	var again bytes.Buffer
	if err := printFile(out, &again); err != nil || again.String() != table.String() {
		t.Errorf("-print of bench.json = %v\n%s\nwant the run's own table\n%s", err, again.String(), table.String())
	}
	if t.Failed() {
		t.Log(table.String(), "\n", progress.String())
	}
}
