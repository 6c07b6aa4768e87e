package gmailclient

import "github.com/gmailwatch/gmailwatch/shared/config"

// QuotaProfile names the Gmail quota regime of the project the system runs
// in: its per-minute limits and what each method used here costs. The zero
// value is the default, QuotaStandard2026.
type QuotaProfile string

const (
	// QuotaStandard2026 is what a Cloud project created on or after 1 May
	// 2026 gets, and every project from 1 April 2027: 6,000 units per user
	// and 1,200,000 per project a minute, messages.get at 20 units. "Usage
	// limits", Gmail API,
	// https://developers.google.com/workspace/gmail/api/reference/quota;
	// messages.get 20: Nylas, "Gmail API quotas",
	// https://developer.nylas.com/docs/cookbook/email/gmail-api-quotas/.
	QuotaStandard2026 QuotaProfile = "standard-2026"
	// QuotaLegacy is the earlier table, kept by projects that used the API
	// between November 2025 and April 2026: 15,000 units per user a minute,
	// messages.get at 5.
	QuotaLegacy QuotaProfile = "legacy"
)

// Gmail methods by their names in Google's quota table.
const (
	MethodGetProfile   = "getProfile"
	MethodHistoryList  = "history.list"
	MethodMessagesGet  = "messages.get"
	MethodMessagesList = "messages.list"
	MethodLabelsList   = "labels.list"
	MethodWatch        = "watch"
	MethodStop         = "stop"
)

type quotaTable struct {
	user, project int            // units per minute
	units         map[string]int // per method
}

var quotaTables = map[QuotaProfile]quotaTable{
	QuotaStandard2026: {6000, 1_200_000, map[string]int{
		MethodGetProfile: 1, MethodHistoryList: 2, MethodMessagesGet: 20, MethodMessagesList: 5, MethodLabelsList: 1, MethodWatch: 100, MethodStop: 50,
	}},
	QuotaLegacy: {15_000, 1_200_000, map[string]int{
		MethodGetProfile: 1, MethodHistoryList: 2, MethodMessagesGet: 5, MethodMessagesList: 5, MethodLabelsList: 1, MethodWatch: 100, MethodStop: 50,
	}},
}

// ReadQuotaProfile reads GMAIL_QUOTA_PROFILE: standard-2026 (the default)
// or legacy, whichever the project's Gmail quota page shows.
func ReadQuotaProfile(r *config.Reader) QuotaProfile {
	return QuotaProfile(r.OneOf("GMAIL_QUOTA_PROFILE", string(QuotaStandard2026), string(QuotaStandard2026), string(QuotaLegacy)))
}

func (p QuotaProfile) table() quotaTable {
	if t, ok := quotaTables[p]; ok {
		return t
	}
	return quotaTables[QuotaStandard2026]
}

// Name returns the profile's name, the default's for the zero value.
func (p QuotaProfile) Name() string {
	if _, ok := quotaTables[p]; ok {
		return string(p)
	}
	return string(QuotaStandard2026)
}

// Units returns what a call to method costs, in quota units.
func (p QuotaProfile) Units(method string) int { return p.table().units[method] }

// UserPerMinute returns the per-user limit, in units a minute.
func (p QuotaProfile) UserPerMinute() int { return p.table().user }

// ProjectPerMinute returns the per-project limit, in units a minute.
func (p QuotaProfile) ProjectPerMinute() int { return p.table().project }
