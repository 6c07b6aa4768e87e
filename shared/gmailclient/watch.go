package gmailclient

import (
	"context"
	"fmt"
	"strings"
	"time"

	"google.golang.org/api/gmail/v1"

	"github.com/gmailwatch/gmailwatch/shared/config"
)

// WatchSettings say what Gmail should push about, where, and when a watch is
// due for renewal (Gmail's expire after 7 days; Google recommends daily).
type WatchSettings struct {
	Topic       string   // projects/P/topics/T
	Labels      []string // watched label ids
	LabelFilter string   // include or exclude
	RenewBefore time.Duration
	RenewEvery  time.Duration
}

// ReadWatchSettings reads the watch settings from r.
func ReadWatchSettings(r *config.Reader) WatchSettings {
	w := WatchSettings{
		Topic:       ReadTopic(r),
		RenewBefore: r.Duration("RENEW_BEFORE", 48*time.Hour),
		RenewEvery:  r.Duration("RENEW_EVERY", 24*time.Hour),
	}
	w.Labels, w.LabelFilter = ReadLabels(r)
	return w
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

// Watch asks Gmail to push changes of the mailbox to the topic. It returns
// the mailbox's current history id and the watch's expiry.
func (w WatchSettings) Watch(ctx context.Context, svc *gmail.Service) (historyID int64, expires time.Time, err error) {
	resp, err := svc.Users.Watch("me", &gmail.WatchRequest{
		TopicName:           w.Topic,
		LabelIds:            w.Labels,
		LabelFilterBehavior: strings.ToUpper(w.LabelFilter),
	}).Context(ctx).Do()
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
