package accounts

import (
	"time"

	"github.com/gmailwatch/gmailwatch/shared/store"
)

// account is what the API tells of a user. History lag is how far Gmail's
// newest known history id is ahead of what was announced. The error class
// is derived from the record: invalid_grant (the user must reconnect),
// watch_expired (renewals stopped), sync_stalled (a push is owed and no sync
// ran for an hour), or empty.
type account struct {
	User               string `json:"user"`
	AppRef             string `json:"appRef,omitempty"`
	Email              string `json:"emailAddress"`
	Status             string `json:"status"`
	WatchExpiration    string `json:"watchExpiration,omitempty"`
	LastNotificationAt string `json:"lastNotificationAt,omitempty"`
	LastSyncAt         string `json:"lastSyncAt,omitempty"`
	ConnectedAt        string `json:"connectedAt,omitempty"`
	HistoryLag         int64  `json:"historyLag"`
	LastErrorClass     string `json:"lastErrorClass,omitempty"`
}

// stalledAfter is how long an owed sync may wait before it counts as stalled.
const stalledAfter = time.Hour

func (h *Handler) view(u store.User) account {
	now := h.now()
	a := account{
		User: u.Key, AppRef: u.AppRef, Email: u.Email, Status: u.Status,
		WatchExpiration: stamp(u.WatchExpiration), LastNotificationAt: stamp(u.LastNotificationAt),
		LastSyncAt: stamp(u.LastSyncAt), ConnectedAt: stamp(u.ConnectedAt),
		HistoryLag: max(0, u.PendingHistoryID-u.Cursor),
	}
	switch {
	case u.Status == store.ReauthRequired:
		a.LastErrorClass = "invalid_grant"
	case u.Status != store.Active:
	case !u.WatchExpiration.IsZero() && !now.Before(u.WatchExpiration):
		a.LastErrorClass = "watch_expired"
	case a.HistoryLag > 0 && now.Sub(u.LastSyncAt) > stalledAfter && now.Sub(u.LastNotificationAt) > stalledAfter:
		a.LastErrorClass = "sync_stalled"
	}
	return a
}

func stamp(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339)
}
