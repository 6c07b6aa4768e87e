package gmailapi

import (
	"cmp"
	"maps"
	"slices"
	"sync"
	"time"
)

// QuotaProfile names one of Gmail's quota regimes: its per-minute limits and
// what each method costs.
type QuotaProfile string

const (
	// Standard2026 is what a project created on or after 1 May 2026 gets,
	// and what every project gets from 1 April 2027: 6,000 units per user
	// and 1,200,000 per project a minute, messages.get at 20 units. "Usage
	// limits", Gmail API (the note "As of May 1, 2026, the usage limits for
	// this API were updated"),
	// https://developers.google.com/workspace/gmail/api/reference/quota;
	// Standard Tier from 1 April 2027: "Usage and quotas",
	// https://developers.google.com/workspace/gmail/api/guides/quotas;
	// messages.get 20 and threads.get 40: Nylas, "Gmail API quotas",
	// https://developer.nylas.com/docs/cookbook/email/gmail-api-quotas/.
	Standard2026 QuotaProfile = "standard-2026"
	// Legacy is the table of projects that used the API between November
	// 2025 and April 2026: 15,000 units per user a minute, messages.get at 5.
	Legacy QuotaProfile = "legacy"
)

// QuotaProfiles lists every profile, the default first.
var QuotaProfiles = []QuotaProfile{Standard2026, Legacy}

// quotaWindow is the span the per-minute limits count over. It rolls: a
// call counts against the limits for the 60 seconds after it, however
// those are aligned to the clock (Gmail's older page called its per-user
// limit a "moving average (allows short bursts)").
const quotaWindow = time.Minute

// QuotaUnits is each served method's cost in quota units, per profile.
// Methods the standard-2026 sources do not price anew keep their legacy
// cost.
var QuotaUnits = map[QuotaProfile]map[string]int{
	Standard2026: {GetProfile: 1, WatchMethod: 100, Stop: 50, HistoryList: 2, MessagesGet: 20, MessagesList: 5, LabelsList: 1},
	Legacy:       {GetProfile: 1, WatchMethod: 100, Stop: 50, HistoryList: 2, MessagesGet: 5, MessagesList: 5, LabelsList: 1},
}

var quotaLimits = map[QuotaProfile]struct{ user, project int }{
	Standard2026: {6000, 1_200_000},
	Legacy:       {15_000, 1_200_000},
}

// QuotaState is the quota profile in force, with its limits and costs.
type QuotaState struct {
	Profile               QuotaProfile   `json:"profile"`
	UserUnitsPerMinute    int            `json:"userUnitsPerMinute"`
	ProjectUnitsPerMinute int            `json:"projectUnitsPerMinute"`
	WindowSeconds         int            `json:"windowSeconds"` // the rolling window the limits count over
	Units                 map[string]int `json:"units"`         // each method's cost
}

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

// spend is units admitted at one instant.
type spend struct {
	at    time.Time
	units int
}

type counter struct {
	Usage
	recent      []spend // admitted within the last window, oldest first
	windowUnits int     // their sum
}

// roll forgets what was spent a window or more before now.
func (c *counter) roll(now time.Time) {
	i := 0
	for i < len(c.recent) && !now.Before(c.recent[i].at.Add(quotaWindow)) {
		c.windowUnits -= c.recent[i].units
		i++
	}
	c.recent = c.recent[i:]
}

func (c *counter) add(now time.Time, units int) {
	if n := len(c.recent); n > 0 && c.recent[n-1].at.Equal(now) {
		c.recent[n-1].units += units
	} else {
		c.recent = append(c.recent, spend{now, units})
	}
	c.windowUnits += units
}

// quota charges Google's unit costs against per-minute limits, per user and
// per project, over rolling windows.
type quota struct {
	now    func() time.Time
	strict bool // refusals in every documented shape, not one

	mu                 sync.Mutex
	profile            QuotaProfile
	userLimit, project int
	users              map[string]*counter
	total              counter
}

// newQuota returns a quota of profile p; userLimit and projectLimit, when
// positive, replace the profile's limits.
func newQuota(p QuotaProfile, userLimit, projectLimit int, strict bool, now func() time.Time) *quota {
	q := &quota{now: now, strict: strict, users: map[string]*counter{}}
	q.set(p, userLimit, projectLimit)
	return q
}

func (q *quota) set(p QuotaProfile, user, project int) {
	q.profile = p
	q.userLimit, q.project = quotaLimits[p].user, quotaLimits[p].project
	if user > 0 {
		q.userLimit = user
	}
	if project > 0 {
		q.project = project
	}
}

func (q *quota) user(email string) *counter {
	c := q.users[email]
	if c == nil {
		c = &counter{}
		q.users[email] = c
	}
	return c
}

// charge admits a call to method for email, charging its cost, or refuses
// it: 429 in the kind profile; strict, the per-user limit alternates
// between Gmail's 403 and 429 userRateLimitExceeded and the project's is
// 403 rateLimitExceeded.
func (q *quota) charge(email, method string) *Error {
	now := q.now()
	q.mu.Lock()
	defer q.mu.Unlock()
	cost := QuotaUnits[q.profile][method]
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
		c.add(now, cost)
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

// setQuota switches to profile p ("" keeps the one in force), taking its
// limits, then sets the limits given as positive numbers.
func (q *quota) setQuota(p QuotaProfile, user, project int) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if p == "" {
		p, user, project = q.profile, cmp.Or(max(user, 0), q.userLimit), cmp.Or(max(project, 0), q.project)
	}
	q.set(p, user, project)
}

func (q *quota) state() QuotaState {
	q.mu.Lock()
	defer q.mu.Unlock()
	return QuotaState{
		Profile: q.profile, UserUnitsPerMinute: q.userLimit, ProjectUnitsPerMinute: q.project,
		WindowSeconds: int(quotaWindow / time.Second), Units: maps.Clone(QuotaUnits[q.profile]),
	}
}

// validQuotaProfile reports whether p names a profile.
func validQuotaProfile(p QuotaProfile) bool { return slices.Contains(QuotaProfiles, p) }
