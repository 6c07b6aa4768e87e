// Package platform is what every function needs of Google Cloud and the
// functions runtime, in one place: the settings they all read (project,
// events topic, Secret Manager endpoint), the Google clients, built once
// each and only when asked for, the deployed handler, built once at the
// first request or event, the trace context of a request or event, and the
// check that a CloudEvent is a message of the expected Pub/Sub topic.
//
// Each function package has the same wiring:
//
//	func init() { functions.CloudEvent("Notify", platform.CloudEvent(production)) }
//	var production = platform.Production("notify", ReadConfig, wire)
//	func wire(cfg Config, c *platform.Clients) *Handler // New over c.Firestore(), c.Vault(), c.Events()
package platform

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"sync"

	"cloud.google.com/go/firestore"
	"cloud.google.com/go/pubsub/v2"
	"github.com/cloudevents/sdk-go/v2/event"

	"github.com/gmailwatch/gmailwatch/shared/config"
	"github.com/gmailwatch/gmailwatch/shared/events"
	"github.com/gmailwatch/gmailwatch/shared/logging"
	"github.com/gmailwatch/gmailwatch/shared/vault"
)

// Settings are read by every function.
type Settings struct {
	ProjectID      string // PROJECT_ID
	EventsTopic    string // EVENTS_TOPIC: the output topic's id
	SecretEndpoint string // SECRETMANAGER_ENDPOINT: loopback, local runs only
}

// ReadSettings reads the settings every function shares from r.
func ReadSettings(r *config.Reader) Settings {
	return Settings{
		ProjectID:      r.String("PROJECT_ID", config.Required),
		EventsTopic:    r.String("EVENTS_TOPIC", config.Required),
		SecretEndpoint: r.String("SECRETMANAGER_ENDPOINT", ""),
	}
}

// Cloud returns s: Settings is a Config of its own.
func (s Settings) Cloud() Settings { return s }

// Lookup reads one environment variable; os.LookupEnv is the deployed one.
type Lookup = func(string) (string, bool)

// Config is a function's settings, which name its project.
type Config interface{ Cloud() Settings }

// Production returns the deployed handler of the function name, built at
// the first call: its settings read by read from the process environment,
// then wire over the clients of its project. Later calls return the same
// handler, or the same error, which is logged each time: a function then
// fails every request, so Pub/Sub keeps the pushes and Cloud Scheduler
// retries until the configuration is fixed. wire only assembles: a client
// that could not be built is nil there, and its error is returned instead
// of the handler.
func Production[C Config, H any](name string, read func(Lookup) (C, error), wire func(C, *Clients) H) func() (H, error) {
	once := sync.OnceValues(func() (h H, err error) {
		cfg, err := read(os.LookupEnv)
		if err != nil {
			return h, err
		}
		c := NewClients(context.Background(), cfg.Cloud())
		if h = wire(cfg, c); c.Err() != nil {
			var none H
			return none, c.Err()
		}
		return h, nil
	})
	return func() (H, error) {
		h, err := once()
		if err != nil {
			logging.New(os.Stderr, slog.LevelInfo).Error(name+" cannot start: requests fail until this is fixed", "error", err)
		}
		return h, err
	}
}

// CloudEvent returns what the runtime calls for each event: the Handle of
// the handler production builds, or production's error, so that Pub/Sub
// redelivers the event.
func CloudEvent[H interface {
	Handle(context.Context, event.Event) error
}](production func() (H, error)) func(context.Context, event.Event) error {
	return func(ctx context.Context, e event.Event) error {
		h, err := production()
		if err != nil {
			return err
		}
		return h.Handle(ctx, e)
	}
}

// HTTP returns what the runtime calls for each request: the handler
// production builds, or fail, which answers with production's error.
func HTTP[H http.Handler](production func() (H, error), fail func(http.ResponseWriter, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		h, err := production()
		if err != nil {
			fail(w, err)
			return
		}
		h.ServeHTTP(w, r)
	}
}

// Clients builds the Google clients of one project, each at most once and
// only when first asked for, so a function creates only what it uses. Like
// config.Reader it remembers the first failure: ask for every client, then
// check Err once.
type Clients struct {
	ctx context.Context
	set Settings
	err error

	firestore *firestore.Client
	pubsub    *pubsub.Client
	vault     *vault.Vault
}

// NewClients returns the clients of s.ProjectID, with Secret Manager at
// s.SecretEndpoint when set.
func NewClients(ctx context.Context, s Settings) *Clients { return &Clients{ctx: ctx, set: s} }

// Err returns the first failure to build a client, or nil.
func (c *Clients) Err() error { return c.err }

func (c *Clients) fail(err error) {
	if c.err == nil {
		c.err = err
	}
}

// Firestore returns the Firestore client, nil after a failure.
func (c *Clients) Firestore() *firestore.Client {
	if c.firestore == nil && c.err == nil {
		fs, err := firestore.NewClient(c.ctx, c.set.ProjectID)
		if err != nil {
			c.fail(fmt.Errorf("firestore client: %w", err))
		}
		c.firestore = fs
	}
	return c.firestore
}

// PubSub returns the Pub/Sub client, nil after a failure.
func (c *Clients) PubSub() *pubsub.Client {
	if c.pubsub == nil && c.err == nil {
		ps, err := pubsub.NewClient(c.ctx, c.set.ProjectID)
		if err != nil {
			c.fail(fmt.Errorf("pubsub client: %w", err))
		}
		c.pubsub = ps
	}
	return c.pubsub
}

// Vault returns the Secret Manager vault, nil after a failure.
func (c *Clients) Vault() *vault.Vault {
	if c.vault == nil && c.err == nil {
		v, err := vault.New(c.ctx, c.set.ProjectID, c.set.SecretEndpoint)
		if err != nil {
			c.fail(err)
		}
		c.vault = v
	}
	return c.vault
}

// Publisher returns a publisher to topic (an id), nil after a failure.
func (c *Clients) Publisher(topic string) *pubsub.Publisher {
	if ps := c.PubSub(); ps != nil {
		return ps.Publisher(topic)
	}
	return nil
}

// Events returns a publisher to the events topic, nil after a failure.
func (c *Clients) Events() *events.Publisher {
	if ps := c.PubSub(); ps != nil {
		return events.NewPublisher(ps, c.set.EventsTopic)
	}
	return nil
}

// TraceRequest returns ctx carrying the trace of an HTTP request: the W3C
// traceparent header, or Google's X-Cloud-Trace-Context when there is none
// (Cloud Run sends both, for the same trace).
func TraceRequest(ctx context.Context, projectID string, r *http.Request) context.Context {
	header := r.Header.Get("traceparent")
	if header == "" {
		header = r.Header.Get("X-Cloud-Trace-Context")
	}
	return logging.WithTrace(ctx, projectID, header)
}

// TraceEvent returns ctx carrying the trace of a CloudEvent: its
// distributed-tracing traceparent extension.
func TraceEvent(ctx context.Context, projectID string, e event.Event) context.Context {
	header, _ := e.Extensions()["traceparent"].(string)
	return logging.WithTrace(ctx, projectID, header)
}

// MessagePublished is the CloudEvent type of a Pub/Sub message, from
// Eventarc and from the functions framework's push conversion alike.
const MessagePublished = "google.cloud.pubsub.topic.v1.messagePublished"

// IsMessageOf reports whether e is a message of topic (projects/P/topics/T).
// Anything else reaching a Pub/Sub-triggered function is forged or
// misrouted, and its content is not to be trusted as the topic's.
func IsMessageOf(e event.Event, topic string) bool {
	return e.Type() == MessagePublished && e.Source() == "//pubsub.googleapis.com/"+topic
}
