package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gmailwatch/gmailwatch/scripts/sandbox/gmailapi"
	"github.com/gmailwatch/gmailwatch/shared/store"
	"github.com/gmailwatch/gmailwatch/shared/vault"
)

// Throughput is what one notify instance sustained.
type Throughput struct {
	Concurrency       int     `json:"concurrency"`
	Seconds           float64 `json:"seconds"`
	Messages          int64   `json:"messages"` // pushes acknowledged, one new message each
	Failed            int64   `json:"failed"`   // pushes answered with an error (Pub/Sub would redeliver)
	MessagesPerSecond float64 `json:"messagesPerSecond"`
	Announced         int     `json:"announced"` // of those messages, with an event on the topic
	MessagesGet       int64   `json:"messagesGet"`
	Request           Dist    `json:"request"`    // push POST to acknowledgement
	PeakRSSMiB        float64 `json:"peakRssMiB"` // VmHWM of the notify process
	CPUSeconds        float64 `json:"cpuSeconds"` // notify's user+system CPU during the timed run
	// FirestoreUnderLoad is the bench's own read-then-write transaction,
	// one after another during the run: what each of notify's transactions
	// waited for.
	FirestoreUnderLoad Dist `json:"firestoreTransactionUnderLoad"`
	// FirestoreCapacity is what the emulator sustains alone with as many
	// transactions in flight, each on its own document: the ceiling for
	// notify, which makes two transactions, a read and a batch write per
	// message.
	FirestoreCapacity float64 `json:"firestoreTransactionsPerSecond"`
	// SecretAccesses and TokenRefreshes are the users' refresh-token reads
	// from Secret Manager and exchanges at the token endpoint: in the
	// warm-up, the instance's first push of each user, and in the timed
	// run after it.
	WarmUpSecretAccesses int    `json:"warmUpSecretAccesses"`
	WarmUpTokenRefreshes int    `json:"warmUpTokenRefreshes"`
	SecretAccesses       int    `json:"secretAccesses"`
	TokenRefreshes       int    `json:"tokenRefreshes"`
	FirstError           string `json:"firstError,omitempty"`
}

// tokenCounts sums the users' Secret Manager reads of their refresh tokens
// and the sandbox's refresh-token grants for them.
func (b *bench) tokenCounts(users []string) (accesses, refreshes int) {
	for _, u := range users {
		accesses += b.sb.Secrets.Accesses("projects/" + b.st.Project + "/secrets/" + vault.RefreshPrefix + store.Key(u))
		refreshes += b.sb.Auth.Refreshes(u)
	}
	return accesses, refreshes
}

// throughput restarts notify (so its peak RSS is this run's), then keeps
// Concurrency pushes in flight straight at it, each for a user with one new
// message, for Duration. Every worker owns a user, as the platform's
// concurrency setting lets 80 pushes of different users in at once.
func (b *bench) throughput(ctx context.Context) error {
	n := b.cfg.Concurrency
	users := emails("load-%03d@bench.test", n)
	b.progress("throughput: connecting %d users", n)
	err := b.connectAll(ctx, users, 16, func(ctx context.Context, e string) error {
		_, _, err := b.connect(ctx, e, modeSystem, false, time.Time{})
		return err
	})
	if err != nil {
		return err
	}
	// Restarting recreates the function's log: keep the earlier sections' one.
	logs := filepath.Join(b.st.Logs, "notify.log")
	if data, err := os.ReadFile(logs); err == nil {
		_ = os.WriteFile(filepath.Join(b.st.Logs, "notify-before-throughput.log"), data, 0o644)
	}
	if err := b.st.Restart(ctx, "notify"); err != nil {
		return err
	}
	pid := b.st.PID("notify")
	url := b.st.NotifyPushURL()
	b.progress("throughput: Firestore emulator capacity, %d transactions at once for 5 s", n)
	capacity, err := b.firestoreCapacity(ctx, n, 5*time.Second)
	if err != nil {
		return err
	}
	b.progress("throughput: warm-up, one push per user")
	a0, r0 := b.tokenCounts(users)
	if _, _, err := b.load(ctx, url, users, 1, time.Time{}); err != nil {
		return fmt.Errorf("warm-up: %w", err)
	}
	a1, r1 := b.tokenCounts(users)
	b.sb.Gmail.ResetUsage()
	cpu0 := cpuSeconds(pid)
	b.progress("throughput: %d concurrent pushes for %v", n, b.cfg.Duration)
	start := time.Now()
	probing, stopProbe := context.WithCancel(ctx)
	var fsLat []time.Duration
	probed := make(chan struct{})
	go func() {
		defer close(probed)
		for probing.Err() == nil {
			d, _ := b.firestoreProbe(probing, "latency", 1)
			fsLat = append(fsLat, d...)
		}
	}()
	res, ds, err := b.load(ctx, url, users, 0, start.Add(b.cfg.Duration))
	elapsed := time.Since(start)
	a2, r2 := b.tokenCounts(users)
	stopProbe()
	<-probed
	if err != nil {
		return err
	}
	t := &Throughput{Concurrency: n, Seconds: round2(elapsed.Seconds()), Messages: res.ok.Load(), Failed: res.failed.Load(),
		Request: distOf(res.latency), CPUSeconds: round2(cpuSeconds(pid) - cpu0), FirestoreUnderLoad: distOf(fsLat), FirestoreCapacity: capacity,
		WarmUpSecretAccesses: a1 - a0, WarmUpTokenRefreshes: r1 - r0, SecretAccesses: a2 - a1, TokenRefreshes: r2 - r1}
	t.MessagesPerSecond = round2(float64(t.Messages) / elapsed.Seconds())
	if e := res.firstErr.Load(); e != nil {
		t.FirstError = e.(string)
	}
	t.PeakRSSMiB = peakRSS(pid)
	ids := make([]string, 0, len(ds))
	for _, d := range ds {
		ids = append(ids, d.id)
	}
	b.sysEvents.wait(ctx, ids, 30*time.Second)
	for _, id := range ids {
		if _, _, ok := b.sysEvents.first(id); ok {
			t.Announced++
		}
	}
	for _, u := range users {
		t.MessagesGet += b.sb.Gmail.Usage(u).Calls[gmailapi.MessagesGet]
	}
	b.rep.Throughput = t
	return nil
}

type loadResult struct {
	ok, failed atomic.Int64
	firstErr   atomic.Value
	mu         sync.Mutex
	latency    []time.Duration
}

// load runs one worker per user: deliver a message, push, wait for the
// answer; rounds times each (0: until the deadline).
func (b *bench) load(ctx context.Context, url string, users []string, rounds int, deadline time.Time) (*loadResult, []delivery, error) {
	res := &loadResult{}
	var mu sync.Mutex
	var ds []delivery
	var wg sync.WaitGroup
	for _, u := range users {
		wg.Go(func() {
			for i := 0; (rounds == 0 || i < rounds) && (deadline.IsZero() || time.Now().Before(deadline)) && ctx.Err() == nil; i++ {
				d, err := b.sb.Deliver(gmailapi.Delivery{To: u, Subject: "Load " + strconv.Itoa(i), Body: "Throughput message."})
				if err != nil {
					res.firstErr.CompareAndSwap(nil, err.Error())
					res.failed.Add(1)
					return
				}
				start := time.Now()
				err = b.push(ctx, url, u, int64(d.HistoryID))
				took := time.Since(start)
				if err != nil {
					res.firstErr.CompareAndSwap(nil, err.Error())
					res.failed.Add(1)
					continue
				}
				res.ok.Add(1)
				res.mu.Lock()
				res.latency = append(res.latency, took)
				res.mu.Unlock()
				mu.Lock()
				ds = append(ds, delivery{id: d.ID, user: u, historyID: d.HistoryID})
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if rounds > 0 && res.failed.Load() > 0 {
		return res, ds, fmt.Errorf("%d of %d pushes failed: %v", res.failed.Load(), len(users)*rounds, res.firstErr.Load())
	}
	return res, ds, ctx.Err()
}

// firestoreCapacity counts the transactions per second the emulator completes
// with n in flight, each worker on its own document.
func (b *bench) firestoreCapacity(ctx context.Context, n int, d time.Duration) (float64, error) {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	var done atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for i := range n {
		wg.Go(func() {
			for ctx.Err() == nil {
				if _, err := b.firestoreProbe(ctx, fmt.Sprintf("capacity-%03d", i), 1); err == nil {
					done.Add(1)
				}
			}
		})
	}
	wg.Wait()
	if done.Load() == 0 {
		return 0, errors.New("firestore capacity: no transaction completed")
	}
	return round2(float64(done.Load()) / time.Since(start).Seconds()), nil
}

// peakRSS reads VmHWM, the process's peak resident set, in MiB.
func peakRSS(pid int) float64 {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if v, ok := strings.CutPrefix(s.Text(), "VmHWM:"); ok {
			kb, _ := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 64)
			return round2(kb / 1024)
		}
	}
	return 0
}

// cpuSeconds reads the process's user and system CPU time.
func cpuSeconds(pid int) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	s := string(b)
	fields := strings.Fields(s[strings.LastIndexByte(s, ')')+1:]) // after "pid (comm)"
	if len(fields) < 13 {
		return 0
	}
	utime, _ := strconv.ParseFloat(fields[11], 64)
	stime, _ := strconv.ParseFloat(fields[12], 64)
	return (utime + stime) / 100 // USER_HZ
}
