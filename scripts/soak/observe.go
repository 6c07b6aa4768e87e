package main

import (
	"context"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"sync"
	"time"

	"cloud.google.com/go/pubsub/v2"

	"github.com/gmailwatch/gmailwatch/shared/events"
	"github.com/gmailwatch/gmailwatch/shared/store"
	"github.com/gmailwatch/gmailwatch/shared/webhooksig"
)

// eventLog records every event read from a pull subscription. A Pub/Sub
// redelivery of the same message (same message id) is not a duplicate; the
// same event id under two message ids was published twice.
type eventLog struct {
	mu        sync.Mutex
	byID      map[string]*published
	undecoded int
}

type published struct {
	event   events.Event
	msgIDs  map[string]bool
	arrived []time.Time // one per distinct Pub/Sub message, in arrival order
}

func newEventLog() *eventLog { return &eventLog{byID: map[string]*published{}} }

// receive reads sub until ctx ends.
func (l *eventLog) receive(ctx context.Context, sub *pubsub.Subscriber) error {
	return sub.Receive(ctx, func(_ context.Context, m *pubsub.Message) {
		m.Ack()
		l.add(m.ID, m.Data, time.Now())
	})
}

func (l *eventLog) add(msgID string, data []byte, at time.Time) {
	e, err := events.Decode(data)
	l.mu.Lock()
	defer l.mu.Unlock()
	if err != nil {
		l.undecoded++
		return
	}
	p := l.byID[e.ID]
	if p == nil {
		p = &published{event: e, msgIDs: map[string]bool{}}
		l.byID[e.ID] = p
	}
	if !p.msgIDs[msgID] {
		p.msgIDs[msgID] = true
		p.arrived = append(p.arrived, at)
	}
}

// find returns the id of an event of typ for the user's message.
func (l *eventLog) find(typ, user, msgID string) (string, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for id, p := range l.byID {
		if p.event.Type == typ && p.event.User == user && p.event.MessageID == msgID {
			return id, true
		}
	}
	return "", false
}

// first returns when event id first arrived.
func (l *eventLog) first(id string) (time.Time, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if p := l.byID[id]; p != nil {
		return p.arrived[0], true
	}
	return time.Time{}, false
}

func (l *eventLog) snapshot() map[string]published {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make(map[string]published, len(l.byID))
	for id, p := range l.byID {
		out[id] = published{event: p.event, arrived: append([]time.Time(nil), p.arrived...)}
	}
	return out
}

// gate stands between the webhook function and the receiver: it forwards
// each request and records the receiver's answer by webhook-id, or, during
// an outage, refuses it without forwarding, so no repeat can come from the
// gate itself.
type gate struct {
	srv   *http.Server
	URL   string
	proxy *httputil.ReverseProxy

	mu       sync.Mutex
	target   *url.URL
	mode     string                 // "" forwards; "503" or "reset" refuses
	accepted map[string][]time.Time // webhook-id -> times the receiver answered 2xx
	statuses map[int]int            // receiver answers by status
	refused  int                    // requests refused by an outage
}

func newGate() (*gate, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	g := &gate{URL: "http://" + l.Addr().String() + "/webhook", accepted: map[string][]time.Time{}, statuses: map[int]int{}}
	g.proxy = &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			g.mu.Lock()
			r.SetURL(g.target)
			g.mu.Unlock()
			r.Out.URL.Path = r.In.URL.Path
		},
		ModifyResponse: func(resp *http.Response) error {
			g.record(resp.Request.Header.Get(webhooksig.HeaderID), resp.StatusCode, time.Now())
			return nil
		},
	}
	g.srv = &http.Server{Handler: g, ReadHeaderTimeout: 10 * time.Second}
	go g.srv.Serve(l)
	return g, nil
}

// open points the gate at the receiver's base URL.
func (g *gate) open(receiver string) error {
	u, err := url.Parse(receiver)
	if err != nil {
		return err
	}
	u.Path = ""
	g.mu.Lock()
	g.target = u
	g.mu.Unlock()
	return nil
}

func (g *gate) setOutage(mode string) {
	g.mu.Lock()
	g.mode = mode
	g.mu.Unlock()
}

func (g *gate) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	g.mu.Lock()
	mode, ready := g.mode, g.target != nil
	if mode != "" || !ready {
		g.refused++
	}
	g.mu.Unlock()
	switch {
	case mode == "reset":
		if conn, _, err := http.NewResponseController(w).Hijack(); err == nil {
			conn.Close()
			return
		}
		fallthrough
	case mode != "" || !ready:
		http.Error(w, "receiver outage", http.StatusServiceUnavailable)
	default:
		g.proxy.ServeHTTP(w, r)
	}
}

func (g *gate) record(id string, status int, at time.Time) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.statuses[status]++
	if status/100 == 2 {
		g.accepted[id] = append(g.accepted[id], at)
	}
}

func (g *gate) first(id string) (time.Time, bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if t := g.accepted[id]; len(t) > 0 {
		return t[0], true
	}
	return time.Time{}, false
}

func (g *gate) close() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = g.srv.Shutdown(ctx)
}

// cursorWatch polls every user's record and flags any cursor that reads
// lower than it did before.
type cursorWatch struct {
	mu          sync.Mutex
	users       map[string]store.User
	high        map[string]int64
	regressions []regression
	polls       int
	errors      int
}

type regression struct {
	User string    `json:"user"`
	From int64     `json:"from"`
	To   int64     `json:"to"`
	At   time.Time `json:"at"`
}

func newCursorWatch() *cursorWatch {
	return &cursorWatch{users: map[string]store.User{}, high: map[string]int64{}}
}

func (c *cursorWatch) run(ctx context.Context, users *store.Store, every time.Duration) {
	for {
		c.poll(ctx, users)
		select {
		case <-ctx.Done():
			return
		case <-time.After(every):
		}
	}
}

func (c *cursorWatch) poll(ctx context.Context, users *store.Store) {
	var all []store.User
	for after := ""; ; {
		page, err := users.List(ctx, after, 500)
		if err != nil {
			c.mu.Lock()
			c.errors++
			c.mu.Unlock()
			return
		}
		all = append(all, page...)
		if len(page) < 500 {
			break
		}
		after = page[len(page)-1].Key
	}
	now := time.Now()
	c.mu.Lock()
	defer c.mu.Unlock()
	c.polls++
	for _, u := range all {
		if h, ok := c.high[u.Key]; ok && u.Cursor < h {
			c.regressions = append(c.regressions, regression{User: u.Key, From: h, To: u.Cursor, At: now})
		}
		c.high[u.Key] = max(c.high[u.Key], u.Cursor)
		c.users[u.Key] = u
	}
}

func (c *cursorWatch) status(key string) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.users[key].Status
}

// cursor returns the cursor last polled for the user.
func (w *cursorWatch) cursor(key string) int64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.users[key].Cursor
}
