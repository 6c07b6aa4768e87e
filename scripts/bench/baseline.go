package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"cloud.google.com/go/pubsub/v2"
	"google.golang.org/api/gmail/v1"
	"google.golang.org/api/googleapi"

	"github.com/gmailwatch/gmailwatch/shared/events"
	"github.com/gmailwatch/gmailwatch/shared/store"
)

// baseline is what the common Gmail push tutorial builds, to compare with: a
// push endpoint that, for every push, lists history from the history id it
// stored last, fetches each added message with format=full one after the
// other, publishes an event per message, and stores the push's history id.
// There is no lease (concurrent pushes of one user both work) and no check
// that a push is news (a duplicated or stale push lists history again). It
// is given its fairest reading: the stored id never moves backwards, and
// state lives in memory, costing nothing. Every push that reaches it is
// timed, which measures the push hop for the system's users too.
type baseline struct {
	b   *bench
	url string
	pub *pubsub.Publisher
	srv *http.Server

	mu    sync.Mutex
	users map[string]*tutorialUser
}

type tutorialUser struct {
	svc  *gmail.Service
	last int64 // the history id stored after the previous push
}

func startBaseline(b *bench, pub *pubsub.Publisher) (*baseline, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("baseline listen: %w", err)
	}
	t := &baseline{b: b, url: "http://" + l.Addr().String() + "/push", pub: pub, users: map[string]*tutorialUser{}}
	t.srv = &http.Server{Handler: t, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = t.srv.Serve(l) }()
	return t, nil
}

func (t *baseline) close() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = t.srv.Shutdown(ctx)
	t.pub.Stop()
}

func (t *baseline) add(email string, svc *gmail.Service, historyID int64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.users[email] = &tutorialUser{svc: svc, last: historyID}
}

func (t *baseline) last(email string) int64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	if u := t.users[email]; u != nil {
		return u.last
	}
	return 0
}

// ServeHTTP takes one Pub/Sub push. Pushes for other users (the system's)
// are only timed and acknowledged.
func (t *baseline) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	arrived := time.Now()
	body, err := io.ReadAll(io.LimitReader(r.Body, 64<<10))
	var envelope struct {
		Message struct {
			Data []byte `json:"data"`
		} `json:"message"`
	}
	var n struct {
		EmailAddress string `json:"emailAddress"`
		HistoryID    int64  `json:"historyId"`
	}
	if err == nil {
		err = json.Unmarshal(body, &envelope)
	}
	if err == nil {
		err = json.Unmarshal(envelope.Message.Data, &n)
	}
	if err != nil {
		w.WriteHeader(http.StatusNoContent) // acknowledged: a retry would not help
		return
	}
	t.b.hops.record(strings.ToLower(n.EmailAddress), uint64(n.HistoryID), arrived)
	t.mu.Lock()
	u := t.users[n.EmailAddress]
	t.mu.Unlock()
	if u == nil {
		w.WriteHeader(http.StatusNoContent)
		return
	}
	if err := t.handle(r.Context(), n.EmailAddress, n.HistoryID, u); err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError) // Pub/Sub redelivers
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (t *baseline) handle(ctx context.Context, email string, pushID int64, u *tutorialUser) error {
	t.mu.Lock()
	start := u.last
	t.mu.Unlock()
	call := u.svc.Users.History.List("me").StartHistoryId(uint64(start)).HistoryTypes("messageAdded").LabelId("INBOX")
	var ids []string
	for page := ""; ; {
		resp, err := call.PageToken(page).Context(ctx).Do()
		if err != nil {
			return fmt.Errorf("history.list: %w", err)
		}
		for _, h := range resp.History {
			for _, a := range h.MessagesAdded {
				ids = append(ids, a.Message.Id)
			}
		}
		if page = resp.NextPageToken; page == "" {
			break
		}
	}
	key := store.Key(email)
	var results []*pubsub.PublishResult
	for _, id := range ids {
		msg, err := u.svc.Users.Messages.Get("me", id).Format("full").Context(ctx).Do()
		var ge *googleapi.Error
		if errors.As(err, &ge) && ge.Code == http.StatusNotFound {
			continue
		}
		if err != nil {
			return fmt.Errorf("messages.get: %w", err)
		}
		ev := events.Event{Version: events.Version, Type: events.MessageReceived, ID: events.ID(events.MessageReceived, key, msg.Id),
			Time: time.Now().UTC().Format(time.RFC3339Nano), User: key, EmailAddress: email, MessageID: msg.Id,
			ThreadID: msg.ThreadId, HistoryID: msg.HistoryId, LabelIDs: msg.LabelIds, InternalDate: msg.InternalDate, Snippet: msg.Snippet}
		for _, h := range msg.Payload.Headers {
			switch h.Name {
			case "From":
				ev.From = h.Value
			case "To":
				ev.To = h.Value
			case "Subject":
				ev.Subject = h.Value
			case "Date":
				ev.Date = h.Value
			}
		}
		data, _ := json.Marshal(ev)
		results = append(results, t.pub.Publish(ctx, &pubsub.Message{Data: data, Attributes: ev.Attributes()}))
	}
	for _, r := range results {
		if _, err := r.Get(ctx); err != nil {
			return fmt.Errorf("publish event: %w", err)
		}
	}
	t.mu.Lock()
	u.last = max(u.last, pushID)
	t.mu.Unlock()
	return nil
}
