package gmailapi

import (
	"encoding/json"
	"fmt"
	"maps"
	"math"
	"math/rand/v2"
	"slices"
	"sync"
	"time"
)

// Faults describe failures to inject into one mailbox's traffic, or every
// mailbox's. The zero value injects nothing. Random draws come from a
// generator seeded with Seed, so a run is repeatable given the same sequence
// of calls.
type Faults struct {
	Seed uint64 `json:"seed,omitempty"`

	// ErrorRate (0..1) of calls to ErrorMethods (all methods when empty)
	// fail with one of ErrorCodes (429, 500, 503; all three when empty).
	ErrorRate    float64  `json:"errorRate,omitempty"`
	ErrorCodes   []int    `json:"errorCodes,omitempty"`
	ErrorMethods []string `json:"errorMethods,omitempty"`

	// Latency is added to every call; MethodLatency overrides it per method.
	Latency       Duration            `json:"latency,omitempty"`
	MethodLatency map[string]Duration `json:"methodLatency,omitempty"`

	// Notifications: DropNotifications (0..1) are never published;
	// DuplicateNotifications (0..1) are published 1+n times, n drawn from
	// 1..DuplicateCopies (default 1); ReorderNotifications (0..1) are held back
	// and published after the next one (or after a few intervals).
	DropNotifications      float64 `json:"dropNotifications,omitempty"`
	DuplicateNotifications float64 `json:"duplicateNotifications,omitempty"`
	DuplicateCopies        int     `json:"duplicateCopies,omitempty"`
	ReorderNotifications   float64 `json:"reorderNotifications,omitempty"`

	// HistoryDelay hides a change from history.list until this long after it
	// happened, while its notification goes out at once (Gmail's indexing race).
	HistoryDelay Duration `json:"historyDelay,omitempty"`

	// ExpireHistory answers 404 to history.list for every startHistoryId older
	// than the mailbox's history id when the faults were set, as if the
	// cursor had aged out of Gmail's retention window.
	ExpireHistory bool `json:"expireHistory,omitempty"`

	// IndexedHistoryID makes history.list answer with the newest record it
	// shows (indexed) as its historyId, instead of the mailbox's current
	// one: the lenient reading of the field, beside the strict default.
	IndexedHistoryID bool `json:"indexedHistoryId,omitempty"`

	// EmptyPages (0..1) of history.list pages that would hold records are
	// answered empty with a nextPageToken that leads on to them, filtered
	// or not; the page after an empty one is never empty by this fault.
	EmptyPages float64 `json:"emptyPages,omitempty"`

	// OmitLabelIDs (0..1) of history records show their messages without
	// labelIds; which ones is fixed per record by Seed, so every read of a
	// record shows it alike.
	OmitLabelIDs float64 `json:"omitLabelIds,omitempty"`

	// MessageDelay makes messages.get answer 404 for a message until this
	// long after it reached the mailbox (the sandbox clock), while history
	// and the notification show it at once.
	MessageDelay Duration `json:"messageDelay,omitempty"`

	// PushDelay publishes every notification this long after Gmail sends
	// it (real time, as notification pacing); the per-user rate counts
	// from the sending.
	PushDelay Duration `json:"pushDelay,omitempty"`
}

// Duration is a time.Duration written in JSON as a Go duration string
// ("250ms", "2s"); a bare number is read as milliseconds.
type Duration time.Duration

// MarshalJSON writes d as a duration string.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

// UnmarshalJSON reads a duration string or a number of milliseconds.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	switch v := v.(type) {
	case string:
		p, err := time.ParseDuration(v)
		if err != nil {
			return fmt.Errorf("duration %q: want a value like 250ms or 2s", v)
		}
		*d = Duration(p)
	case float64:
		*d = Duration(v * float64(time.Millisecond))
	default:
		return fmt.Errorf("duration %s: want a string like 250ms or a number of milliseconds", b)
	}
	return nil
}

func (f Faults) validate() *Error {
	for name, r := range map[string]float64{
		"errorRate": f.ErrorRate, "dropNotifications": f.DropNotifications,
		"duplicateNotifications": f.DuplicateNotifications, "reorderNotifications": f.ReorderNotifications,
		"emptyPages": f.EmptyPages, "omitLabelIds": f.OmitLabelIDs,
	} {
		if math.IsNaN(r) || r < 0 || r > 1 {
			return invalidArgument("faults: %s %v is outside 0..1", name, r)
		}
	}
	for _, c := range f.ErrorCodes {
		if c != 429 && c != 500 && c != 503 {
			return invalidArgument("faults: error code %d is not one of 429, 500, 503", c)
		}
	}
	methods := slices.Clone(f.ErrorMethods)
	for m := range f.MethodLatency {
		methods = append(methods, m)
	}
	for _, m := range methods {
		if _, ok := QuotaUnits[Standard2026][m]; !ok {
			return invalidArgument("faults: unknown method %q (want one of %v)", m, slices.Sorted(maps.Keys(QuotaUnits[Standard2026])))
		}
	}
	lat := []Duration{f.Latency}
	for _, d := range f.MethodLatency {
		lat = append(lat, d)
	}
	for _, d := range lat {
		if d < 0 || time.Duration(d) > time.Minute {
			return invalidArgument("faults: latency %v is outside 0..1m", time.Duration(d))
		}
	}
	if f.HistoryDelay < 0 || time.Duration(f.HistoryDelay) > 24*time.Hour {
		return invalidArgument("faults: historyDelay %v is outside 0..24h", time.Duration(f.HistoryDelay))
	}
	for name, d := range map[string]Duration{"messageDelay": f.MessageDelay, "pushDelay": f.PushDelay} {
		if d < 0 || time.Duration(d) > time.Hour {
			return invalidArgument("faults: %s %v is outside 0..1h", name, time.Duration(d))
		}
	}
	if f.DuplicateCopies < 0 || f.DuplicateCopies > 10 {
		return invalidArgument("faults: duplicateCopies %d is outside 0..10", f.DuplicateCopies)
	}
	return nil
}

// active is a Faults in force with its random source and, for
// ExpireHistory, each mailbox's history id when it was set.
type active struct {
	Faults
	rng          *rand.Rand
	expiredBelow map[string]uint64
}

// faultSet holds the global faults and per-mailbox ones; a mailbox's own
// faults take the place of the global ones.
type faultSet struct {
	mu     sync.Mutex
	global *active
	users  map[string]*active
}

func newFaultSet() *faultSet { return &faultSet{users: map[string]*active{}} }

func (fs *faultSet) set(email string, f Faults, expiredBelow map[string]uint64) {
	a := &active{Faults: f, rng: rand.New(rand.NewPCG(f.Seed, f.Seed+1)), expiredBelow: expiredBelow}
	fs.mu.Lock()
	defer fs.mu.Unlock()
	if email == "" {
		fs.global = a
	} else {
		fs.users[email] = a
	}
}

func (fs *faultSet) clear(email string) {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	if email == "" {
		fs.global, fs.users = nil, map[string]*active{}
	} else {
		delete(fs.users, email)
	}
}

func (fs *faultSet) all() map[string]Faults {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	out := map[string]Faults{}
	if fs.global != nil {
		out[""] = fs.global.Faults
	}
	for e, a := range fs.users {
		out[e] = a.Faults
	}
	return out
}

// with runs fn on the faults in force for email, under the lock; fn is not
// called when there are none.
func (fs *faultSet) with(email string, fn func(*active)) {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	a := fs.users[email]
	if a == nil {
		a = fs.global
	}
	if a != nil {
		fn(a)
	}
}

func (fs *faultSet) latency(email, method string) (d time.Duration) {
	fs.with(email, func(a *active) {
		d = time.Duration(a.Latency)
		if m, ok := a.MethodLatency[method]; ok {
			d = time.Duration(m)
		}
	})
	return d
}

// injectedError returns the error a call should fail with, or nil. Strict,
// a 429 is one of Gmail's documented quota and concurrency refusals, drawn
// at random.
func (fs *faultSet) injectedError(email, method string, strict bool) (e *Error) {
	fs.with(email, func(a *active) {
		if a.ErrorRate == 0 || (len(a.ErrorMethods) > 0 && !slices.Contains(a.ErrorMethods, method)) {
			return
		}
		if a.rng.Float64() >= a.ErrorRate {
			return
		}
		codes := a.ErrorCodes
		if len(codes) == 0 {
			codes = []int{429, 500, 503}
		}
		code := codes[a.rng.IntN(len(codes))]
		e = statusError(code, "")
		if strict && code == 429 {
			e = quotaShapes[a.rng.IntN(len(quotaShapes))]
		}
	})
	return e
}

func (fs *faultSet) historyDelay(email string) (d time.Duration) {
	fs.with(email, func(a *active) { d = time.Duration(a.HistoryDelay) })
	return d
}

// reading is how history.list reads for email: the historyId it reports
// (indexed: the newest record shown), the share of pages answered empty
// first, and whether a record shows its labels.
type reading struct {
	indexed   bool
	emptyPage bool
	omit      func(recordID uint64) bool
}

func (fs *faultSet) reading(email string) reading {
	r := reading{omit: func(uint64) bool { return false }}
	fs.with(email, func(a *active) {
		r.indexed = a.IndexedHistoryID
		r.emptyPage = a.EmptyPages > 0 && a.rng.Float64() < a.EmptyPages
		if rate, seed := a.OmitLabelIDs, a.Seed; rate > 0 {
			r.omit = func(id uint64) bool { return float64(mix(seed^id)>>11)/(1<<53) < rate }
		}
	})
	return r
}

// mix is splitmix64's finalizer: a fixed pseudo-random value per input.
func mix(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9
	x = (x ^ (x >> 27)) * 0x94d049bb133111eb
	return x ^ (x >> 31)
}

func (fs *faultSet) messageDelay(email string) (d time.Duration) {
	fs.with(email, func(a *active) { d = time.Duration(a.MessageDelay) })
	return d
}

func (fs *faultSet) pushDelay(email string) (d time.Duration) {
	fs.with(email, func(a *active) { d = time.Duration(a.PushDelay) })
	return d
}

func (fs *faultSet) expiredBelow(email string) (h uint64) {
	fs.with(email, func(a *active) { h = a.expiredBelow[email] })
	return h
}

// pushFate decides what happens to one notification: dropped, published
// copies times, or held back to be published after a later one.
func (fs *faultSet) pushFate(email string) (drop bool, copies int, hold bool) {
	copies = 1
	fs.with(email, func(a *active) {
		if a.DropNotifications > 0 && a.rng.Float64() < a.DropNotifications {
			drop = true
			return
		}
		if a.DuplicateNotifications > 0 && a.rng.Float64() < a.DuplicateNotifications {
			copies += 1 + a.rng.IntN(max(a.DuplicateCopies, 1))
		}
		hold = a.ReorderNotifications > 0 && a.rng.Float64() < a.ReorderNotifications
	})
	return drop, copies, hold
}
