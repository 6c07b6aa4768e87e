package stack

import (
	"context"
	"sync"
	"testing"
)

// The window starts small, grows by one per success, halves on a failure
// and never closes: the requests a Relay lets into flight follow the
// endpoint's answers, as Pub/Sub push's do.
func TestRelayWindow(t *testing.T) {
	r := &Relay{window: pushWindowStart}
	r.cond = sync.NewCond(&r.mu)
	ctx := context.Background()
	fill := func() int { // take every free place in the window, then give them back
		n := 0
		for r.inFlight < r.window {
			if !r.acquire(ctx) {
				t.Fatal("acquire refused with room in the window")
			}
			n++
		}
		return n
	}
	if n := fill(); n != pushWindowStart {
		t.Fatalf("first window: %d requests in flight, want %d", n, pushWindowStart)
	}
	for range pushWindowStart {
		r.release(true)
	}
	if r.window != 2*pushWindowStart || r.inFlight != 0 {
		t.Fatalf("after %d successes: window %d, in flight %d; want %d, 0", pushWindowStart, r.window, r.inFlight, 2*pushWindowStart)
	}
	fill()
	r.release(false)
	if r.window != pushWindowStart {
		t.Fatalf("after a failure: window %d, want %d", r.window, pushWindowStart)
	}
	for r.inFlight > 0 {
		r.release(false)
	}
	if r.window != 1 {
		t.Fatalf("after failures only: window %d, want 1", r.window)
	}
	if r.peak != 2*pushWindowStart {
		t.Fatalf("peak in flight %d, want %d", r.peak, 2*pushWindowStart)
	}
	for range 2 * pushWindowMax {
		r.acquire(ctx)
		r.release(true)
	}
	if r.window != pushWindowMax {
		t.Fatalf("window %d after many successes, want the cap %d", r.window, pushWindowMax)
	}
}

// A Relay whose context ends stops waiting for room in its window.
func TestRelayAcquireEnds(t *testing.T) {
	r := &Relay{window: 1}
	r.cond = sync.NewCond(&r.mu)
	if !r.acquire(context.Background()) {
		t.Fatal("acquire refused on an empty window")
	}
	ctx, cancel := context.WithCancel(context.Background())
	stop := r.wakeWhenDone(ctx)
	defer stop()
	done := make(chan bool)
	go func() { done <- r.acquire(ctx) }()
	cancel()
	if <-done {
		t.Fatal("acquire on a full window succeeded after its context ended")
	}
}
