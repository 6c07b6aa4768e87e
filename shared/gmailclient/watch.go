package gmailclient

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"google.golang.org/api/gmail/v1"

	"github.com/gmailwatch/gmailwatch/shared/config"
	"github.com/gmailwatch/gmailwatch/shared/events"
)

// WatchSettings say what Gmail should push about, where, and when a watch is
// due for renewal (Gmail's expire after 7 days; Google recommends daily).
type WatchSettings struct {
	Topic       string   // projects/P/topics/T
	Labels      []string // watched label ids: which arrivals are received mail
	LabelFilter string   // include or exclude
	Types       []string // mailbox event types announced (events.ReadTypes)
	RenewBefore time.Duration
	RenewEvery  time.Duration
	// ReconcileAfter is when a new connection's first safety-net sync is
	// due, as a sync's next one is (gmailsync), so a user whose first
	// notifications Gmail drops is not left waiting longer.
	ReconcileAfter time.Duration
}

// ReadWatchSettings reads the watch settings from r.
func ReadWatchSettings(r *config.Reader) WatchSettings {
	w := WatchSettings{
		Topic:          ReadTopic(r),
		RenewBefore:    r.Duration("RENEW_BEFORE", 48*time.Hour),
		RenewEvery:     r.Duration("RENEW_EVERY", 24*time.Hour),
		ReconcileAfter: ReadReconcileAfter(r),
	}
	w.Labels, w.LabelFilter = ReadLabels(r)
	w.Types = events.ReadTypes(r)
	return w
}

// ReadReconcileAfter reads RECONCILE_AFTER: how long a user may go with no
// sync before the renew run's safety net syncs it.
func ReadReconcileAfter(r *config.Reader) time.Duration {
	return r.Duration("RECONCILE_AFTER", time.Hour)
}

// ReadTopic reads GMAIL_TOPIC, the topic Gmail pushes to: projects/P/topics/T.
func ReadTopic(r *config.Reader) string {
	topic := r.String("GMAIL_TOPIC", config.Required)
	if p := strings.Split(topic, "/"); topic != "" && (len(p) != 4 || p[0] != "projects" || p[2] != "topics" || p[1] == "" || p[3] == "") {
		r.Problem("GMAIL_TOPIC", "%q is not projects/PROJECT/topics/TOPIC", topic)
	}
	return topic
}

// ReadLabels reads the watched labels (GMAIL_LABELS, default INBOX) and
// whether a watch includes or excludes them (GMAIL_LABEL_FILTER). The watch
// and the sync's filter both take them from here.
func ReadLabels(r *config.Reader) (labels []string, filter string) {
	return r.List("GMAIL_LABELS", []string{"INBOX"}), r.OneOf("GMAIL_LABEL_FILTER", "include", "include", "exclude")
}

// Request is the users.watch request. Gmail pushes only changes that touch
// a watched label (include) or no excluded one, so a label filter serves
// arrivals alone: a label change, deletion or sent message outside INBOX
// would never be pushed, and would wait for the next reconcile. When any
// other type is announced, the watch covers the whole mailbox; the sync
// still tells received mail by the labels.
func (w WatchSettings) Request() *gmail.WatchRequest {
	if slices.ContainsFunc(w.Types, func(t string) bool { return t != events.MessageReceived }) {
		return &gmail.WatchRequest{TopicName: w.Topic}
	}
	return &gmail.WatchRequest{TopicName: w.Topic, LabelIds: w.Labels, LabelFilterBehavior: strings.ToUpper(w.LabelFilter)}
}

// Watch asks Gmail to push changes of the mailbox to the topic. It returns
// the mailbox's current history id and the watch's expiry.
func (w WatchSettings) Watch(ctx context.Context, svc *gmail.Service) (historyID int64, expires time.Time, err error) {
	resp, err := svc.Users.Watch("me", w.Request()).Context(ctx).Do()
	if err != nil {
		return 0, time.Time{}, fmt.Errorf("users.watch: %w", err)
	}
	return int64(resp.HistoryId), time.UnixMilli(resp.Expiration), nil
}

// NextRenewal returns when a watch expiring at expires should be renewed:
// RenewBefore its expiry or RenewEvery after now, whichever comes first.
func (w WatchSettings) NextRenewal(expires, now time.Time) time.Time {
	due := now.Add(w.RenewEvery)
	if early := expires.Add(-w.RenewBefore); early.Before(due) {
		return early
	}
	return due
}
