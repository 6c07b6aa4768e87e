package stack

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"cloud.google.com/go/pubsub/v2"
)

// How a Relay paces and retries, as Pub/Sub push does in the cloud.
const (
	// Pub/Sub "dynamically adjusts the rate of push requests based on the
	// rate at which it receives success responses"
	// (https://cloud.google.com/pubsub/docs/push): the requests in flight
	// start few, grow with each success and shrink on a failure.
	pushWindowStart = 3
	pushWindowMax   = 1000
	// The retry policy of the subscriptions behind the deployed functions:
	// terraform/pubsub.tf's for the webhook, and Eventarc's default for
	// notify's trigger, "a minimum of 10 seconds ... up to a maximum of 600
	// seconds" (https://cloud.google.com/eventarc/docs/retry-events).
	pushBackoffMin = 10 * time.Second
	pushBackoffMax = 600 * time.Second
)

// Relay delivers a pull subscription's messages to an endpoint as Pub/Sub
// push delivers them in the cloud: each message POSTed in the push format,
// acknowledged on 2xx and tried again otherwise after an exponential
// backoff; the requests in flight a window that starts at 3, grows by one
// per success and halves on a failure. The Pub/Sub emulator's own push
// keeps about two requests in flight per subscription whatever the
// endpoint answers, so a handler that holds its request (notify's look
// after a push's second) builds a queue there that the cloud would not.
type Relay struct {
	project, name, url string
	client             *http.Client

	mu       sync.Mutex
	cond     *sync.Cond
	window   int
	inFlight int
	peak     int

	retried atomic.Int64
	done    chan struct{}
}

// Relay starts delivering subscription sub's messages to url until ctx
// ends or the stack stops.
func (st *Stack) Relay(ctx context.Context, sub, url string) *Relay {
	r := &Relay{project: st.Project, name: sub, url: url, window: pushWindowStart, done: make(chan struct{}),
		client: &http.Client{Timeout: 10 * time.Minute}}
	r.cond = sync.NewCond(&r.mu)
	ctx, cancel := context.WithCancel(ctx)
	st.mu.Lock()
	st.relays = append(st.relays, func() { cancel(); <-r.done })
	st.mu.Unlock()
	stop := r.wakeWhenDone(ctx)
	s := st.pubsub.Subscriber(sub)
	s.ReceiveSettings.MaxOutstandingMessages = 10_000
	s.ReceiveSettings.MaxExtension = 24 * time.Hour
	go func() {
		defer close(r.done)
		defer stop()
		_ = s.Receive(ctx, r.deliver)
	}()
	return r
}

// Retried counts deliveries answered with an error (or none) and tried again.
func (r *Relay) Retried() int64 { return r.retried.Load() }

// PeakInFlight is the most requests the relay had in flight at once.
func (r *Relay) PeakInFlight() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.peak
}

func (r *Relay) deliver(ctx context.Context, m *pubsub.Message) {
	body := PushBody(r.project, r.name, m)
	for backoff := pushBackoffMin; ; backoff = min(2*backoff, pushBackoffMax) {
		if !r.acquire(ctx) {
			m.Nack()
			return
		}
		err := Push(ctx, r.client, r.url, body)
		r.release(err == nil)
		if err == nil {
			m.Ack()
			return
		}
		r.retried.Add(1)
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			m.Nack()
			return
		case <-t.C:
		}
	}
}

// wakeWhenDone makes acquire calls waiting on ctx return once it ends.
func (r *Relay) wakeWhenDone(ctx context.Context) (stop func() bool) {
	return context.AfterFunc(ctx, func() { r.mu.Lock(); r.cond.Broadcast(); r.mu.Unlock() })
}

// acquire waits for room in the window; false when ctx ended first.
func (r *Relay) acquire(ctx context.Context) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for r.inFlight >= r.window {
		if ctx.Err() != nil {
			return false
		}
		r.cond.Wait()
	}
	r.inFlight++
	r.peak = max(r.peak, r.inFlight)
	return ctx.Err() == nil
}

func (r *Relay) release(ok bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.inFlight--
	if ok {
		r.window = min(r.window+1, pushWindowMax)
	} else {
		r.window = max(r.window/2, 1)
	}
	r.cond.Broadcast()
}

// Push POSTs one push request body to url, as Pub/Sub push does, and fails
// unless it is acknowledged (2xx).
func Push(ctx context.Context, client *http.Client, url string, body []byte) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("push answered %s: %s", resp.Status, bytes.TrimSpace(msg))
	}
	return nil
}

// PushBody is the body of a Pub/Sub push request carrying m from
// subscription sub of project.
func PushBody(project, sub string, m *pubsub.Message) []byte {
	body, _ := json.Marshal(map[string]any{
		"message": map[string]any{
			"data": m.Data, "attributes": m.Attributes, "messageId": m.ID,
			"publishTime": m.PublishTime.UTC().Format(time.RFC3339Nano),
		},
		"subscription": "projects/" + project + "/subscriptions/" + sub,
	})
	return body
}
