package renew

import (
	"testing"

	"github.com/gmailwatch/gmailwatch/scripts/sandbox/gmailapi"
)

// Gmail refuses over-quota calls in several shapes (403 and 429
// userRateLimitExceeded, 403 rateLimitExceeded, 429 "Too many concurrent
// requests for user"); the strict sandbox draws an injected 429 from all of
// them, and renew counts every one as rate-limited, not as a failure.
func TestEveryQuotaShapeCountsAsRateLimited(t *testing.T) {
	e := newEnv(t, envOptions{})
	const n = 16
	seedUsers(t, e, n)
	if err := e.sb.Gmail.SetFaults("", gmailapi.Faults{Seed: 11, ErrorRate: 1, ErrorCodes: []int{429}, ErrorMethods: []string{gmailapi.WatchMethod}}); err != nil {
		t.Fatal(err)
	}
	rep := e.post(t)
	usage := e.sb.Gmail.Usage("")
	if rep.RateLimited != n || rep.Failed != 0 || rep.Renewed != 0 || usage.InjectedErrors != n {
		t.Errorf("report %+v with %d injected refusals: want all %d users rate-limited, none failed", countsOf(rep), usage.InjectedErrors, n)
	}
}
