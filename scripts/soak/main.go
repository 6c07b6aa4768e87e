// Command soak proves "nothing lost, nothing twice" under load and faults: it
// runs the whole local stack (scripts/stack: emulators, sandbox, each function
// as its own process), connects users through the consent flow, delivers
// messages at random times to random users while a seeded schedule injects
// Gmail 429/500/503 and latency, dropped, duplicated, reordered and early
// pushes, expired cursors, token revocations, webhook receiver outages and
// kill -9 of function processes, with renew running on a schedule. Then it
// clears the faults, drains, and compares what arrived on the output topic
// and at the webhook receiver with what was sent.
//
//	go run ./scripts/soak                                   # short: 4 users, 200 messages
//	go run ./scripts/soak -users 50 -messages 5000 -fault-rate 0.3 -duration 10m
//
// It prints one summary, writes it as JSON (-out) and exits 1 when a message
// was lost or repeated with no kill to explain it (or another guarantee
// broke), 2 when the soak itself could not run.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"
)

func main() {
	cfg, out, err := parseFlags(os.Args[1:], os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		return
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "soak:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	cfg.Progress = os.Stderr
	rep, err := Run(ctx, cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, "soak:", err)
		os.Exit(2)
	}
	rep.Print(os.Stdout)
	if err := rep.Write(out); err != nil {
		fmt.Fprintln(os.Stderr, "soak: write report:", err)
		os.Exit(2)
	}
	fmt.Println("report:", out)
	if !rep.Pass {
		os.Exit(1)
	}
}

// parseFlags reads the command line into a Config and the report path,
// reporting every bad value at once.
func parseFlags(args []string, stderr io.Writer) (Config, string, error) {
	fs := flag.NewFlagSet("soak", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var c Config
	fs.IntVar(&c.Users, "users", 4, "users connected through the consent flow")
	fs.IntVar(&c.Messages, "messages", 200, "messages delivered at random times to random users")
	fs.Float64Var(&c.FaultRate, "fault-rate", 0.2, "0..0.9: Gmail error and push fault rate, and how often fault episodes and receiver outages come")
	fs.Uint64Var(&c.Seed, "seed", 1, "seed of the schedule (sends, faults, outages, kills, revocations)")
	fs.IntVar(&c.Kills, "kills", 6, "function processes killed with SIGKILL and restarted during the send phase (0: none)")
	fs.IntVar(&c.Revoke, "revoke", -1, "users whose tokens are revoked mid-run (-1: a tenth of the users, at least one when there are two or more)")
	fs.DurationVar(&c.Duration, "duration", time.Minute, "length of the send phase")
	fs.DurationVar(&c.Drain, "drain", 3*time.Minute, "longest wait, after faults clear, for every message to arrive")
	fs.DurationVar(&c.RenewEvery, "renew-every", 3*time.Second, "how often the renew function runs")
	fs.BoolVar(&c.Delegation, "delegation", false, "watch the users as a Workspace org unit through domain-wide delegation instead of consent (needs -revoke 0 or the default)")
	fs.BoolVar(&c.AllTypes, "all-types", false, "switch every mailbox event type on and also read, star, trash, delete and send mail; check each type and the order per user")
	fs.StringVar(&c.Dir, "dir", ".local/soak", "the stack's binaries and logs")
	out := fs.String("out", ".local/soak.json", "where the JSON report goes")
	if err := fs.Parse(args); err != nil {
		return Config{}, "", err
	}
	if fs.NArg() > 0 {
		return Config{}, "", fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if c.Revoke == -1 {
		c.Revoke = (c.Users + 9) / 10
		if c.Users < 2 || c.Delegation {
			c.Revoke = 0
		}
	}
	if *out == "" {
		return Config{}, "", errors.New("-out: want a file path")
	}
	return c, *out, c.validate()
}
