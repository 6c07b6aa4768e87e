package gmailapi

import (
	"maps"
	"sync"
	"time"
)

// Usage counts a mailbox's (or the project's) Gmail API use since the start
// or the last reset: calls admitted per method, the quota units they cost,
// calls refused for exceeding the per-minute limits or the per-user
// concurrency cap, and calls that an injected fault failed.
type Usage struct {
	Units          int64            `json:"units"`
	Calls          map[string]int64 `json:"calls"`
	RateLimited    int64            `json:"rateLimited"`
	InjectedErrors int64            `json:"injectedErrors"`
}

type counter struct {
	Usage
	window      time.Time // start of the current minute
	windowUnits int
}

// quota charges Google's unit costs against per-minute limits, per user and
// per project, in fixed one-minute windows.
type quota struct {
	now    func() time.Time
	strict bool // refusals in every documented shape, not one

	mu                 sync.Mutex
	userLimit, project int
	users              map[string]*counter
	total              counter
}

func newQuota(userLimit, projectLimit int, strict bool, now func() time.Time) *quota {
	return &quota{now: now, strict: strict, userLimit: userLimit, project: projectLimit, users: map[string]*counter{}}
}

func (q *quota) user(email string) *counter {
	c := q.users[email]
	if c == nil {
		c = &counter{}
		q.users[email] = c
	}
	return c
}

func (c *counter) roll(now time.Time) {
	if w := now.Truncate(time.Minute); !w.Equal(c.window) {
		c.window, c.windowUnits = w, 0
	}
}

// charge admits a call of cost units for email, or refuses it: 429 in the
// kind profile; strict, the per-user limit alternates between Gmail's 403 and
// 429 userRateLimitExceeded and the project's is 403 rateLimitExceeded.
func (q *quota) charge(email, method string, cost int) *Error {
	now := q.now()
	q.mu.Lock()
	defer q.mu.Unlock()
	u := q.user(email)
	u.roll(now)
	q.total.roll(now)
	var refused *Error
	switch {
	case q.strict && u.windowUnits+cost > q.userLimit:
		refused = errUserRate429
		if u.RateLimited%2 == 0 {
			refused = errUserRate403
		}
	case q.strict && q.total.windowUnits+cost > q.project:
		refused = errProjectRate
	case u.windowUnits+cost > q.userLimit:
		refused = statusError(429, "Quota exceeded for quota metric 'Queries' and limit 'Queries per minute per user' of service 'gmail.googleapis.com'.")
	case q.total.windowUnits+cost > q.project:
		refused = statusError(429, "Quota exceeded for quota metric 'Queries' and limit 'Queries per minute' of service 'gmail.googleapis.com'.")
	}
	for _, c := range []*counter{u, &q.total} {
		if refused != nil {
			c.RateLimited++
			continue
		}
		c.windowUnits += cost
		c.Units += int64(cost)
		if c.Calls == nil {
			c.Calls = map[string]int64{}
		}
		c.Calls[method]++
	}
	return refused
}

// countRefused counts a call refused by the per-user concurrency cap.
func (q *quota) countRefused(email string) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.user(email).RateLimited++
	q.total.RateLimited++
}

func (q *quota) countInjected(email string) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.user(email).InjectedErrors++
	q.total.InjectedErrors++
}

// usage returns email's counters, or the project's for "".
func (q *quota) usage(email string) Usage {
	q.mu.Lock()
	defer q.mu.Unlock()
	c := &q.total
	if email != "" {
		c = q.user(email)
	}
	u := c.Usage
	u.Calls = maps.Clone(u.Calls)
	if u.Calls == nil {
		u.Calls = map[string]int64{}
	}
	return u
}

func (q *quota) reset() {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.users = map[string]*counter{}
	q.total = counter{}
}

func (q *quota) setLimits(user, project int) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if user > 0 {
		q.userLimit = user
	}
	if project > 0 {
		q.project = project
	}
}
