// Command replay puts dead-lettered webhook events back on the output events
// topic, where the Webhook function delivers them again (with a fresh retry
// window and the same webhook-id). Run it once the endpoint is fixed:
//
//	go run ./scripts/replay -project P -subscription webhook-dead-letter [-reason expired] [-max 100]
//
// It pulls from the dead-letter topic's subscription, republishes each event's
// original body with its original attributes (type, id, user, specversion)
// plus replayed=true, and acknowledges the dead letter only once the publish
// succeeded. Messages that are not events (reason "malformed") or do not match
// -reason stay in the subscription, as does everything after a failed publish.
// It stops after -max events, when a pull waited -idle without a message, or
// when only messages it left come back. PUBSUB_EMULATOR_HOST points it at the
// emulator.
//
// With several webhook endpoints, a replay through the events topic would
// deliver again to every endpoint whose filter takes the event. -endpoint
// NAME replays to that endpoint only (endpoint.go):
//
//	go run ./scripts/replay -project P -endpoint crm [-prefix gmailwatch-]
//	go run ./scripts/replay -project P -endpoint crm -since 2026-12-07T10:00:00Z
//
// The first POSTs the endpoint's dead letters straight to its URL (read from
// its URL secret, or -url on loopback), signed with its current signing
// secret, in the order pulled, stopping at the first that is not accepted.
// The second seeks the endpoint's subscription back to -since, so the
// webhook function delivers everything published since then to it again
// (terraform/pubsub.tf keeps acknowledged messages for that).
// SECRETMANAGER_ENDPOINT points it at the sandbox's Secret Manager.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"time"

	"cloud.google.com/go/pubsub/v2"
	pubsubapi "cloud.google.com/go/pubsub/v2/apiv1"
	"cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/gmailwatch/gmailwatch/shared/events"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, os.Args[1:], os.LookupEnv, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "replay:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, lookup func(string) (string, bool), stdout, stderr io.Writer) error {
	env := func(k string) string { v, _ := lookup(k); return v }
	fs := flag.NewFlagSet("replay", flag.ContinueOnError)
	fs.SetOutput(stderr)
	project := fs.String("project", env("PROJECT_ID"), "Google Cloud project (default $PROJECT_ID)")
	subscription := fs.String("subscription", "", "subscription of the dead-letter topic to replay from")
	topic := fs.String("topic", env("EVENTS_TOPIC"), "topic to republish to (default $EVENTS_TOPIC, the output events topic)")
	reason := fs.String("reason", "", "replay only dead letters with this reason (gone, rejected, expired)")
	limit := fs.Int("max", 0, "stop after replaying this many events (0: all)")
	idle := fs.Duration("idle", 10*time.Second, "stop when a pull waited this long without a message")
	var ep endpointFlags
	ep.register(fs, env)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if ep.name != "" {
		return runEndpoint(ctx, *project, *subscription, *reason, *limit, *idle, ep, stdout)
	}
	var problems []error
	for _, f := range []struct{ name, value string }{{"-project", *project}, {"-subscription", *subscription}, {"-topic", *topic}} {
		if f.value == "" {
			problems = append(problems, fmt.Errorf("%s is required", f.name))
		}
	}
	if *limit < 0 || *idle <= 0 {
		problems = append(problems, errors.New("-max must be >= 0 and -idle > 0"))
	}
	if err := errors.Join(problems...); err != nil {
		return err
	}

	client, err := pubsub.NewClient(ctx, *project)
	if err != nil {
		return fmt.Errorf("pubsub client: %w", err)
	}
	defer client.Close()
	pub := client.Publisher(*topic)
	defer pub.Stop()

	r := &replayer{
		send: func(ctx context.Context, ev events.Event, m *pubsubpb.PubsubMessage) error {
			return republish(ctx, pub, ev, m)
		},
		subs: client.SubscriptionAdminClient,
		sub:  "projects/" + *project + "/subscriptions/" + *subscription,
		out:  stdout,
		seen: map[string]bool{},
	}
	replayed, left, err := r.replay(ctx, *reason, *limit, *idle)
	fmt.Fprintf(stdout, "replayed %d, left %d\n", replayed, left)
	return err
}

type replayer struct {
	send func(context.Context, events.Event, *pubsubpb.PubsubMessage) error // the event is replayed once it returns nil
	subs *pubsubapi.SubscriptionAdminClient
	sub  string // full subscription name
	out  io.Writer
	seen map[string]bool // dead-letter message ids met so far
}

// replay pulls batches until a limit of replayed events, a pull that waits
// idle without a message, or a batch of only messages it has met before
// (those it left, coming back). It acknowledges a dead letter only after its
// event was republished, and hands every other one back at once.
func (r *replayer) replay(ctx context.Context, reason string, limit int, idle time.Duration) (replayed, left int, failure error) {
	for failure == nil && (limit == 0 || replayed < limit) {
		pullCtx, cancel := context.WithTimeout(ctx, idle)
		resp, err := r.subs.Pull(pullCtx, &pubsubpb.PullRequest{Subscription: r.sub, MaxMessages: 10})
		cancel()
		if err != nil {
			if ctx.Err() == nil && (errors.Is(err, context.DeadlineExceeded) || status.Code(err) == codes.DeadlineExceeded) {
				return replayed, left, nil
			}
			return replayed, left, fmt.Errorf("pull %s: %w", r.sub, err)
		}
		fresh := false
		var giveBack []string
		for _, rm := range resp.GetReceivedMessages() {
			m := rm.GetMessage()
			if r.seen[m.GetMessageId()] {
				giveBack = append(giveBack, rm.GetAckId())
				continue
			}
			r.seen[m.GetMessageId()] = true
			fresh = true
			ev, decodeErr := events.Decode(m.GetData())
			switch {
			case limit > 0 && replayed >= limit:
				giveBack = append(giveBack, rm.GetAckId())
			case decodeErr != nil || reason != "" && m.GetAttributes()["reason"] != reason:
				left++
				giveBack = append(giveBack, rm.GetAckId())
			case failure == nil:
				if failure = r.send(ctx, ev, m); failure != nil {
					giveBack = append(giveBack, rm.GetAckId())
					continue
				}
				if err := r.subs.Acknowledge(ctx, &pubsubpb.AcknowledgeRequest{Subscription: r.sub, AckIds: []string{rm.GetAckId()}}); err != nil {
					failure = fmt.Errorf("acknowledge dead letter of %s (republished; it may be replayed twice): %w", ev.ID, err)
					continue
				}
				replayed++
				fmt.Fprintf(r.out, "replayed %s type=%s reason=%s status=%s attempts=%s\n",
					ev.ID, ev.Type, m.GetAttributes()["reason"], m.GetAttributes()["status"], m.GetAttributes()["attempts"])
			default: // a failure stopped the run: keep the rest
				giveBack = append(giveBack, rm.GetAckId())
			}
		}
		if len(giveBack) > 0 {
			_ = r.subs.ModifyAckDeadline(ctx, &pubsubpb.ModifyAckDeadlineRequest{Subscription: r.sub, AckIds: giveBack, AckDeadlineSeconds: 0})
		}
		if !fresh {
			break
		}
	}
	return replayed, left, failure
}

// republish publishes the event's original body with its original attributes.
func republish(ctx context.Context, pub *pubsub.Publisher, ev events.Event, m *pubsubpb.PubsubMessage) error {
	attrs := ev.Attributes()
	attrs["replayed"] = "true"
	if _, err := pub.Publish(ctx, &pubsub.Message{Data: m.GetData(), Attributes: attrs}).Get(ctx); err != nil {
		return fmt.Errorf("republish %s (it stays dead-lettered): %w", ev.ID, err)
	}
	return nil
}
