// Command bench measures what the system costs in Gmail quota and in delay,
// against the physical floor and against the design most tutorials show. It
// runs the whole local stack (scripts/stack: Google's Firestore and Pub/Sub
// emulators, the Google sandbox, each function as its own process) with a
// fixed Gmail round-trip latency injected by the sandbox, and measures:
//
//   - quota: Gmail units per delivered message, singly and in bursts, with
//     duplicated pushes, beside the floor (5 per message + 3 per push: its
//     history read and a look after its second, since Gmail drops pushes
//     above one a second) and a tutorial baseline; duplicated and stale
//     pushes must cost no Gmail call;
//   - latency: from the sandbox accepting a message to its event on the
//     output topic, beside the floor (push hop + two Gmail round trips), and
//     for a message whose own push Gmail dropped, beside its floor (the rest
//     of the previous push's second + two Gmail round trips);
//   - throughput: messages per second one notify instance sustains with 80
//     concurrent requests, and its peak memory;
//   - renewal: watches renewed per second over many users when quota is the
//     bottleneck, against the quota-allowed rate, and Gmail's 429s;
//   - coldstart: process start to first answer of each function binary, the
//     binaries' sizes, and whether any network call precedes the first request.
//   - capacity: from the quota, throughput and renewal figures of the same
//     run (which it runs), the mailboxes per deployment at which each limit
//     is reached: notify instances, the renew run, Firestore index writes,
//     Secret Manager accesses and writes, Gmail's per-user, per-project and
//     daily units.
//
// It prints a table and writes the same figures as JSON (bench.json):
//
//	go run ./scripts/bench                                  # everything, 10,000 renewal users
//	go run ./scripts/bench -only quota,latency -latency 100ms
//	go run ./scripts/bench -only renewal -users 2000 -renew-quota 120000
//	go run ./scripts/bench -only capacity -users 2000 -renew-quota 1200000 -concurrency 250
//
// `go run ./scripts/bench -print bench.json` prints the tables of a report
// again. Exit status: 0 when every target was met, 1 when one was missed, 2 when the
// benchmark could not run.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/gmailwatch/gmailwatch/shared/gmailclient"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == isolatedProbeArg {
		os.Exit(isolatedProbe(os.Args[2:], os.Stdout))
	}
	if len(os.Args) == 3 && os.Args[1] == "-print" {
		if err := printFile(os.Args[2], os.Stdout); err != nil {
			fmt.Fprintln(os.Stderr, "bench:", err)
			os.Exit(2)
		}
		return
	}
	cfg, out, err := parseFlags(os.Args[1:], os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		return
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	cfg.Progress = os.Stderr
	rep, err := Run(ctx, cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(2)
	}
	rep.Command = "go run ./scripts/bench " + strings.Join(os.Args[1:], " ")
	rep.Print(os.Stdout)
	if err := rep.Write(out); err != nil {
		fmt.Fprintln(os.Stderr, "bench: write report:", err)
		os.Exit(2)
	}
	fmt.Println("figures written to", out)
	if !rep.AllMet() {
		os.Exit(1)
	}
}

// parseFlags reads the command line into a Config and the JSON path,
// reporting every bad value at once.
func parseFlags(args []string, errOut io.Writer) (Config, string, error) {
	d := Defaults()
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(errOut)
	only := fs.String("only", strings.Join(Sections, ","), "sections to run, comma-separated: "+strings.Join(Sections, ", "))
	c := d
	fs.DurationVar(&c.GmailLatency, "latency", d.GmailLatency, "Gmail round-trip latency the sandbox adds to every call")
	fs.IntVar(&c.Mailboxes, "mailboxes", d.Mailboxes, "users per mode (system, baseline) in the quota and latency workload")
	fs.IntVar(&c.Singles, "singles", d.Singles, "single messages per user")
	fs.IntVar(&c.Bursts, "bursts", d.Bursts, "bursts per user")
	fs.IntVar(&c.BurstSize, "burst-size", d.BurstSize, "messages per burst")
	fs.Float64Var(&c.DuplicateRate, "duplicates", d.DuplicateRate, "share of Gmail pushes the sandbox publishes twice or three times")
	fs.IntVar(&c.Concurrency, "concurrency", d.Concurrency, "concurrent requests to the notify instance in the throughput section")
	fs.DurationVar(&c.Duration, "duration", d.Duration, "length of the throughput run")
	fs.IntVar(&c.RenewUsers, "users", d.RenewUsers, "users whose watches the renewal section renews")
	fs.IntVar(&c.RenewQuota, "renew-quota", d.RenewQuota, "Gmail project quota in units per minute during the renewal section (the renew function is told the same)")
	fs.IntVar(&c.RenewShards, "renew-shards", d.RenewShards, "renewal: how many ranges of the 16 shards run at once, as renew's fan-out pushes them (1: the scheduled run over every shard)")
	fs.DurationVar(&c.SeedBudget, "seed-budget", d.SeedBudget, "time allowed for seeding the renewal users; fewer are used if it runs out")
	fs.IntVar(&c.ColdRuns, "cold-runs", d.ColdRuns, "starts per function binary in the cold-start section")
	fs.StringVar(&c.Push, "push", d.Push, "how Gmail pushes reach notify and the baseline: relay (pulled and POSTed in parallel, as Pub/Sub push does) or emulator (the emulator's own push, about two at a time)")
	quota := fs.String("quota", string(d.Quota), "Gmail's quota profile in the sandbox and the functions: standard-2026 or legacy")
	fs.StringVar(&c.Dir, "dir", d.Dir, "directory for the stack's state, logs and the built binaries")
	out := fs.String("out", "", "where the JSON report goes (default: bench.json in -dir)")
	if err := fs.Parse(args); err != nil {
		return Config{}, "", err
	}
	if fs.NArg() > 0 {
		return Config{}, "", fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	c.Quota = gmailclient.QuotaProfile(*quota)
	c.Sections = nil
	var errs []error
	for _, s := range strings.Split(*only, ",") {
		s = strings.TrimSpace(s)
		switch {
		case s == "":
		case !slices.Contains(Sections, s):
			errs = append(errs, fmt.Errorf("-only: unknown section %q (want %s)", s, strings.Join(Sections, ", ")))
		case !slices.Contains(c.Sections, s):
			c.Sections = append(c.Sections, s)
		}
	}
	if err := errors.Join(append(errs, c.validate())...); err != nil {
		return Config{}, "", err
	}
	if *out == "" {
		*out = filepath.Join(c.Dir, "bench.json")
	}
	return c, *out, nil
}

// printFile prints the tables of a JSON report written earlier.
func printFile(path string, out io.Writer) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	var r Report
	if err := json.Unmarshal(b, &r); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	r.Print(out)
	return nil
}

// sleep waits d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}
