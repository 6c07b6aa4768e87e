// Command emulators runs a command with Google's Firestore and Pub/Sub
// emulators started on free loopback ports, FIRESTORE_EMULATOR_HOST and
// PUBSUB_EMULATOR_HOST set for it, and stops the emulators when it ends
// (also on Ctrl-C). It exits with the command's status. scripts/test.sh runs
// the tests through it:
//
//	go run ./scripts/emulators go test ./...
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"syscall"

	"github.com/gmailwatch/gmailwatch/scripts/stack"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: go run ./scripts/emulators COMMAND [ARG...]")
		os.Exit(2)
	}
	os.Exit(run(os.Args[1:]))
}

func run(command []string) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	logs, err := os.MkdirTemp("", "emulators-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "emulators:", err)
		return 1
	}
	emus, err := stack.StartEmulators(ctx, logs)
	if err != nil {
		fmt.Fprintln(os.Stderr, "emulators:", err)
		return 1
	}
	defer emus.Stop()
	fmt.Fprintf(os.Stderr, "emulators: firestore %s, pubsub %s (logs in %s)\n", emus.FirestoreHost, emus.PubSubHost, logs)

	cmd := exec.CommandContext(ctx, command[0], command[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	cmd.Env = append(os.Environ(), emus.Env()...)
	cmd.Cancel = func() error { return cmd.Process.Signal(os.Interrupt) }
	err = cmd.Run()
	var exit *exec.ExitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &exit) && exit.ExitCode() > 0:
		return exit.ExitCode()
	}
	fmt.Fprintln(os.Stderr, "emulators:", err)
	return 1
}
