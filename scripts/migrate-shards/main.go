// Command migrate-shards gives every user record written before shards its
// shard (store.ShardOf of its key), without which no sharded query, and so
// no renew run, finds it. Run it once right after deploying the renew
// function and indexes that query by shard; it is safe to run again, and to
// rerun after a failure. Records written since the deploy get their shard
// with that write, so it only has the older ones to change.
//
//	go run ./scripts/migrate-shards
//
// It reads PROJECT_ID (locally FIRESTORE_EMULATOR_HOST too).
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"

	"cloud.google.com/go/firestore"

	"github.com/gmailwatch/gmailwatch/shared/config"
	"github.com/gmailwatch/gmailwatch/shared/store"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, os.Args[1:], os.LookupEnv, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "migrate-shards:", err)
		os.Exit(1)
	}
}

// page is how many records one query reads.
const page = 300

func run(ctx context.Context, args []string, lookup func(string) (string, bool), out io.Writer) error {
	if len(args) != 0 {
		return errors.New("usage: go run ./scripts/migrate-shards")
	}
	r := config.NewReader(lookup)
	project := r.String("PROJECT_ID", config.Required)
	if err := r.Err(); err != nil {
		return err
	}
	fs, err := firestore.NewClient(ctx, project)
	if err != nil {
		return fmt.Errorf("firestore client: %w", err)
	}
	defer fs.Close()
	users := store.New(fs, nil)
	total, after := 0, ""
	for {
		next, changed, err := users.AssignShards(ctx, after, page)
		total += changed
		if err != nil {
			return fmt.Errorf("after %d records given their shard: %w", total, err)
		}
		if next == "" {
			fmt.Fprintf(out, "%d records given their shard\n", total)
			return nil
		}
		after = next
	}
}
