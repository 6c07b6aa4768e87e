package renew

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"cloud.google.com/go/pubsub/v2"

	"github.com/gmailwatch/gmailwatch/shared/store"
)

// The scheduled run fans out: it publishes one message per range of shards
// (store.Split of RENEW_FANOUT) to the fan-out topic (RENEW_FANOUT_TOPIC),
// whose push subscription posts each back to this function, where it runs
// over those shards only; so up to RENEW_FANOUT instances share a pass, each
// with that part of the quota. Pub/Sub rather than Cloud Tasks: the project
// has its API and the push already (the webhook's), it authenticates the push
// with an OIDC token Cloud Run checks, retries a run that failed with
// backoff and gives up on one to the dead-letter topic, and needs no queue
// nor actAs grant. Without a topic (locally) one run walks every shard.

// Fanout publishes one fan-out message; *pubsub.Publisher is one through
// PublishFanout.
type Fanout interface {
	Publish(ctx context.Context, data []byte) error
}

// pubsubFanout publishes to a Pub/Sub topic and waits for the server's ack.
type pubsubFanout struct{ p *pubsub.Publisher }

func (f pubsubFanout) Publish(ctx context.Context, data []byte) error {
	_, err := f.p.Publish(ctx, &pubsub.Message{Data: data}).Get(ctx)
	return err
}

// PublishFanout is the Fanout over a Pub/Sub publisher.
func PublishFanout(p *pubsub.Publisher) Fanout { return pubsubFanout{p} }

// FanoutReport is the answer of a scheduled run that fanned out.
type FanoutReport struct {
	Published []store.Shards `json:"published"`       // the ranges whose message was published
	Error     string         `json:"error,omitempty"` // what failed to publish; those ranges wait for the next run
}

// fanOut publishes one message per range of shards.
func (h *Handler) fanOut(ctx context.Context) FanoutReport {
	var rep FanoutReport
	var errs []error
	for _, r := range store.Split(h.set.Fanout) {
		data, _ := json.Marshal(r)
		pctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		err := h.d.Fanout.Publish(pctx, data)
		cancel()
		if err != nil {
			errs = append(errs, fmt.Errorf("shards %d..%d: %w", r.From, r.To, err))
			continue
		}
		rep.Published = append(rep.Published, r)
	}
	if err := errors.Join(errs...); err != nil {
		rep.Error = err.Error()
		h.d.Logger.ErrorContext(ctx, "renew fan-out incomplete", "report", rep)
		return rep
	}
	h.d.Logger.InfoContext(ctx, "renew fanned out", "report", rep)
	return rep
}

// pushEnvelope is the body of a Pub/Sub push.
type pushEnvelope struct {
	Message *struct {
		Data []byte `json:"data"`
	} `json:"message"`
}

// maxBody bounds what a request may send: a push of a shard range is a
// few hundred bytes.
const maxBody = 64 << 10

// ShardsPath is where the fan-out subscription pushes its messages; a POST
// to any other path is a scheduled run, whose body is never read.
const ShardsPath = "/shards"

// shardsOf reads which shards a Pub/Sub push of a fan-out message names.
func shardsOf(r *http.Request) (store.Shards, error) {
	body, err := io.ReadAll(io.LimitReader(r.Body, maxBody+1))
	if err != nil {
		return store.Shards{}, fmt.Errorf("read body: %w", err)
	}
	if len(body) > maxBody {
		return store.Shards{}, fmt.Errorf("body over %d bytes", maxBody)
	}
	var env pushEnvelope
	if err := json.Unmarshal(body, &env); err != nil || env.Message == nil {
		return store.Shards{}, fmt.Errorf("not a Pub/Sub push of a fan-out message")
	}
	var s store.Shards
	if err := json.Unmarshal(env.Message.Data, &s); err != nil {
		return store.Shards{}, fmt.Errorf("fan-out message: %w", err)
	}
	if !s.Valid() {
		return store.Shards{}, fmt.Errorf("fan-out message names shards %d..%d, not a range of 0..%d", s.From, s.To, store.ShardCount)
	}
	return s, nil
}
