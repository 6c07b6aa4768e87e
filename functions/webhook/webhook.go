// Package webhook is the Webhook function: pushed every message of the output
// events topic once per endpoint (one filtered push subscription each), it
// POSTs the event to that endpoint's URL, signed per
// Standard Webhooks with the same webhook-id on every attempt. It retries
// briefly within one invocation and then returns an error so the platform
// redelivers with backoff; an event the endpoint rejects, or still
// undelivered once the retry window has passed, goes to the dead-letter topic,
// from which scripts/replay puts it back. Only messages of the events topic
// are delivered: anything else is logged and acknowledged.
package webhook

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"cloud.google.com/go/pubsub/v2"
	"github.com/GoogleCloudPlatform/functions-framework-go/functions"
	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/googleapis/gax-go/v2"
	"golang.org/x/time/rate"

	"github.com/gmailwatch/gmailwatch/shared/config"
	"github.com/gmailwatch/gmailwatch/shared/endpointhealth"
	"github.com/gmailwatch/gmailwatch/shared/events"
	"github.com/gmailwatch/gmailwatch/shared/logging"
	"github.com/gmailwatch/gmailwatch/shared/platform"
	"github.com/gmailwatch/gmailwatch/shared/vault"
	"github.com/gmailwatch/gmailwatch/shared/webhooksig"
)

// An HTTP entry point rather than a CloudEvent one: the framework's CloudEvent
// conversion of a push drops its subscription, which names the endpoint.
func init() { functions.HTTP("Webhook", platform.HTTP(production, failStart)) }

// Dead-letter reasons, in the "reason" attribute.
const (
	ReasonGone      = "gone"      // 410: the endpoint asked us to stop
	ReasonRejected  = "rejected"  // another 4xx: the request will never be accepted as is
	ReasonExpired   = "expired"   // retryable failures until the retry window passed
	ReasonMalformed = "malformed" // not an event: delivering it cannot succeed
	ReasonDisabled  = "disabled"  // the endpoint stayed disabled for the whole retry window
)

const (
	maxResponseBody = 64 << 10
	secretCacheTTL  = 5 * time.Minute
	firstBackoff    = time.Second
	maxBackoff      = 30 * time.Second
)

// Config is the settings of one endpoint.
type Config struct {
	Name            string  // the endpoint's name; "default" for the single webhook's settings
	Subscription    string  // the push subscription id feeding it; empty only when it is the sole endpoint
	RatePerSecond   float64 // requests per second at most from one instance; 0 means no limit
	Disabled        bool    // deliver nothing and acknowledge nothing: Pub/Sub keeps the events
	EventTypes      string  // comma-separated types delivered; empty: every type
	AppRef          string  // deliver only events with this appRef; empty: every event
	ProjectID       string
	URL             string        // WEBHOOK_URL: https, or http on loopback; deployed, read from URLSecretName
	URLSecretName   string        // WEBHOOK_URL_SECRET_NAME: Secret Manager id holding the URL (it may carry a token)
	SecretName      string        // WEBHOOK_SECRET_NAME: whitespace-separated whsec_ keys
	Timeout         time.Duration // WEBHOOK_TIMEOUT: one attempt, response included
	RetryWindow     time.Duration // WEBHOOK_RETRY_WINDOW: from first publish to dead-letter
	CallBudget      time.Duration // WEBHOOK_CALL_BUDGET: attempts and waits in one invocation
	DeadLetterTopic string        // DEAD_LETTER_TOPIC: topic id
	SecretEndpoint  string        // SECRETMANAGER_ENDPOINT: loopback, local runs only
	EventsTopic     string        // projects/PROJECT_ID/topics/EVENTS_TOPIC: the trigger's topic
	DisableAfter    time.Duration // ENDPOINT_DISABLE_AFTER: failing this long disables the endpoint; 0 never
}

// Cloud returns the settings every function shares; EventsTopic is the
// full name here, which no client needs.
func (c Config) Cloud() platform.Settings {
	return platform.Settings{ProjectID: c.ProjectID, SecretEndpoint: c.SecretEndpoint}
}

// ReadConfig reads the settings, reporting every problem in one error.
func ReadConfig(lookup platform.Lookup) (Config, error) {
	r := config.NewReader(lookup)
	p := platform.ReadSettings(r)
	// Deployed, the URL is in a secret, read at start (readDeployed); local
	// runs set it directly.
	urlSecret := r.String("WEBHOOK_URL_SECRET_NAME", "")
	hook := r.URL("WEBHOOK_URL", "")
	if hook == "" && urlSecret == "" {
		r.Problem("WEBHOOK_URL_SECRET_NAME", "missing (or WEBHOOK_URL, for local runs)")
	}
	c := Config{
		Name:            "default",
		ProjectID:       p.ProjectID,
		URL:             hook,
		URLSecretName:   urlSecret,
		SecretName:      r.String("WEBHOOK_SECRET_NAME", "webhook-signing-secret"),
		Timeout:         r.Duration("WEBHOOK_TIMEOUT", 15*time.Second),
		RetryWindow:     r.Duration("WEBHOOK_RETRY_WINDOW", 24*time.Hour),
		CallBudget:      r.Duration("WEBHOOK_CALL_BUDGET", 40*time.Second),
		DeadLetterTopic: r.String("DEAD_LETTER_TOPIC", config.Required),
		SecretEndpoint:  p.SecretEndpoint,
		EventsTopic:     "projects/" + p.ProjectID + "/topics/" + p.EventsTopic,
		DisableAfter:    r.Duration("ENDPOINT_DISABLE_AFTER", endpointhealth.DefaultDisableAfter),
	}
	if err := r.Err(); err != nil {
		return Config{}, err
	}
	if c.URL != "" && c.URLSecretName != "" {
		return Config{}, errors.New("configuration: set WEBHOOK_URL or WEBHOOK_URL_SECRET_NAME, not both")
	}
	if c.CallBudget < c.Timeout {
		return Config{}, fmt.Errorf("configuration: WEBHOOK_CALL_BUDGET %s is shorter than WEBHOOK_TIMEOUT %s", c.CallBudget, c.Timeout)
	}
	return c, nil
}

// SecretSource returns the latest value of a secret; *vault.Vault is one.
type SecretSource interface {
	Access(ctx context.Context, id string) ([]byte, error)
}

// Handler delivers events to one endpoint's URL.
type Handler struct {
	cfg        Config
	endpoint   string // host of the URL, safe to log (the path or query may carry a token)
	secrets    SecretSource
	deadLetter *pubsub.Publisher
	client     *http.Client
	log        *slog.Logger
	now        func() time.Time
	backoff    time.Duration

	limit    *rate.Limiter // nil: no limit
	health   HealthBook    // nil: health is not recorded
	announce *pubsub.Publisher

	mu          sync.Mutex
	keys        *webhooksig.Keyring
	keysAt      time.Time
	pausedUntil time.Time // the receiver's Retry-After, past the call budget
	disabled    bool      // as the health document said at checkedAt
	checkedAt   time.Time
	succeededAt time.Time // last success written
	failing     bool      // the last outcome written was a failure
}

// New returns a Handler; cfg must come from ReadConfig (or be as valid).
func New(cfg Config, secrets SecretSource, deadLetter *pubsub.Publisher, log *slog.Logger) *Handler {
	u, _ := url.Parse(cfg.URL)
	var limit *rate.Limiter
	if cfg.RatePerSecond > 0 {
		limit = rate.NewLimiter(rate.Limit(cfg.RatePerSecond), max(1, int(math.Ceil(cfg.RatePerSecond))))
	}
	return &Handler{
		limit:      limit,
		cfg:        cfg,
		endpoint:   u.Host,
		secrets:    secrets,
		deadLetter: deadLetter,
		client: &http.Client{
			Transport: http.DefaultTransport.(*http.Transport).Clone(),
			// A redirect is answered as a failure and never followed, so an
			// event cannot be sent anywhere but the configured URL.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
		log:     log,
		now:     time.Now,
		backoff: firstBackoff,
	}
}

// production is the deployed router, built from the environment at the first push.
var production = platform.Production("webhook", readDeployed, wire)

// failStart answers a push while the function cannot start: Pub/Sub
// redelivers later.
func failStart(w http.ResponseWriter, _ error) {
	http.Error(w, "webhook cannot start", http.StatusServiceUnavailable)
}

// readDeployed reads every endpoint's settings and, for those whose URL is
// kept in Secret Manager, the URL, once per instance: deployed, a URL is not
// an environment variable, which anyone who may view the function can read.
func readDeployed(lookup platform.Lookup) (Endpoints, error) {
	e, err := ReadEndpoints(lookup)
	if err != nil {
		return Endpoints{}, err
	}
	var v *vault.Vault
	for i, c := range e.List {
		if c.URLSecretName == "" {
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if v == nil {
			if v, err = vault.New(ctx, c.ProjectID, c.SecretEndpoint); err != nil {
				return Endpoints{}, err
			}
			defer v.Close()
		}
		if e.List[i], err = withSecretURL(ctx, c, v); err != nil {
			return Endpoints{}, fmt.Errorf("endpoint %s: %w", c.Name, err)
		}
	}
	return e, nil
}

// withSecretURL sets c.URL from the secret c.URLSecretName, checked as
// WEBHOOK_URL is; no error quotes the value.
func withSecretURL(ctx context.Context, c Config, secrets SecretSource) (Config, error) {
	data, err := secrets.Access(ctx, c.URLSecretName)
	if err != nil {
		return Config{}, fmt.Errorf("webhook URL secret %s: %w", c.URLSecretName, err)
	}
	raw := strings.TrimSpace(string(data))
	if err := config.CheckURL(raw); err != nil {
		return Config{}, fmt.Errorf("webhook URL secret %s: %w", c.URLSecretName, err)
	}
	c.URL = raw
	return c, nil
}

// wire builds the router over the deployed clients.
func wire(e Endpoints, c *platform.Clients) *Router {
	log := logging.New(os.Stdout, slog.LevelInfo)
	book := endpointhealth.New(c.Firestore(), nil)
	hs := make([]*Handler, len(e.List))
	for i, cfg := range e.List {
		hs[i] = New(cfg, c.Vault(), c.Publisher(cfg.DeadLetterTopic), log)
		hs[i].WithHealth(book, c.Publisher(topicID(cfg.EventsTopic)))
	}
	return NewRouter(e.List[0].ProjectID, hs, log)
}

// pushData is the data of a Pub/Sub CloudEvent (MessagePublishedData).
type pushData struct {
	Message struct {
		Data        []byte            `json:"data"`
		Attributes  map[string]string `json:"attributes"`
		MessageID   string            `json:"messageId"`
		PublishTime time.Time         `json:"publishTime"`
	} `json:"message"`
}

// Handle delivers one event. It returns nil when the event was delivered,
// dead-lettered or not a message of the events topic, and an error when the
// platform should redeliver it.
func (h *Handler) Handle(ctx context.Context, ce event.Event) error {
	ctx = platform.TraceEvent(ctx, h.cfg.ProjectID, ce)
	// Anything else is forged or misrouted: it is not signed and sent to the
	// application, nor dead-lettered, from where a replay would publish it
	// to the events topic.
	if !platform.IsMessageOf(ce, h.cfg.EventsTopic) {
		h.log.ErrorContext(ctx, "webhook: event not from the events topic ignored",
			"type", truncate(ce.Type(), 128), "source", truncate(ce.Source(), 128), "ceId", truncate(ce.ID(), 128))
		return nil
	}
	var push pushData
	if err := json.Unmarshal(ce.Data(), &push); err != nil {
		return h.deadLetterMessage(ctx, ce.Data(), nil, ce.Time(), ReasonMalformed, attempt{err: fmt.Errorf("not a Pub/Sub message: %w", err)}, 0)
	}
	msg := push.Message
	published := msg.PublishTime
	if published.IsZero() {
		published = ce.Time()
	}
	ev, err := events.Decode(msg.Data)
	if err == nil && strings.Contains(ev.ID, ".") {
		err = fmt.Errorf("event id %q contains '.'", ev.ID)
	}
	if err != nil {
		return h.deadLetterMessage(ctx, msg.Data, msg.Attributes, published, ReasonMalformed, attempt{err: err}, 0)
	}
	log := h.log.With("eventId", ev.ID, "type", ev.Type, "user", ev.User, "endpoint", h.cfg.Name, "host", h.endpoint)
	if !h.wants(ev) {
		// The subscription's filter (terraform/pubsub.tf) keeps these away;
		// where no filter is applied (the Pub/Sub emulator ignores them),
		// the endpoint still gets only what it asked for.
		log.DebugContext(ctx, "webhook: event outside the endpoint's filter acknowledged")
		return nil
	}
	if h.cfg.Disabled || h.autoDisabled(ctx) {
		// Nothing is delivered or acknowledged: Pub/Sub keeps the event and
		// redelivers it with backoff, until the retry window ends; then it
		// goes to the dead-letter topic (kept 31 days, replayable) rather
		// than expire from the subscription (7 days).
		err := fmt.Errorf("endpoint %s is disabled (in Terraform, or after failing for %s: POST /endpoints/%s/enable resumes it)", h.cfg.Name, h.cfg.DisableAfter, h.cfg.Name)
		if h.now().Sub(published) >= h.cfg.RetryWindow {
			return h.deadLetterMessage(ctx, msg.Data, msg.Attributes, published, ReasonDisabled, attempt{err: err}, 0)
		}
		return err
	}
	if until := h.paused(); !until.IsZero() {
		// The receiver asked for a pause longer than one call: leave the
		// event with Pub/Sub, unposted, until then (or its retry window ends).
		err := fmt.Errorf("endpoint %s asked to wait until %s (Retry-After)", h.cfg.Name, until.UTC().Format(time.RFC3339))
		if h.now().Sub(published) >= h.cfg.RetryWindow {
			return h.deadLetterMessage(ctx, msg.Data, msg.Attributes, published, ReasonExpired, attempt{err: err}, 0)
		}
		return err
	}

	last, attempts := h.deliver(ctx, ev.ID, msg.Data)
	if attempts > 0 {
		h.record(ctx, last, published)
	}
	switch class(last) {
	case delivered:
		log.InfoContext(ctx, "webhook delivered", "status", last.status, "attempts", attempts)
		return nil
	case gone:
		log.ErrorContext(ctx, "webhook endpoint gone", "status", last.status, "attempts", attempts)
		return h.deadLetterMessage(ctx, msg.Data, msg.Attributes, published, ReasonGone, last, attempts)
	case rejected:
		log.ErrorContext(ctx, "webhook rejected", "status", last.status, "attempts", attempts)
		return h.deadLetterMessage(ctx, msg.Data, msg.Attributes, published, ReasonRejected, last, attempts)
	}
	if age := h.now().Sub(published); age >= h.cfg.RetryWindow {
		log.ErrorContext(ctx, "webhook undeliverable within retry window", "status", last.status, "attempts", attempts, "result", last.String(), "age", age.Round(time.Second).String())
		return h.deadLetterMessage(ctx, msg.Data, msg.Attributes, published, ReasonExpired, last, attempts)
	}
	if last.status >= 300 && last.status < 400 {
		log.WarnContext(ctx, "webhook endpoint redirects; update WEBHOOK_URL", "status", last.status, "location", last.location)
	}
	if last.retryAfter > 0 {
		h.pauseFor(last.retryAfter)
	}
	log.WarnContext(ctx, "webhook delivery failed, will retry", "status", last.status, "attempts", attempts, "result", last.String())
	return fmt.Errorf("deliver event %s: %s", ev.ID, last)
}

// attempt is the outcome of one POST.
type attempt struct {
	status     int // 0 when no response arrived
	retryAfter time.Duration
	location   string
	err        error // why no response arrived, or why none was sent
}

func (a attempt) String() string {
	if a.status == 0 {
		return fmt.Sprintf("no response: %v", a.err)
	}
	return "status " + strconv.Itoa(a.status)
}

type outcome int

const (
	retryable outcome = iota
	delivered
	gone
	rejected
)

// class sorts an attempt: 2xx delivered; 410 gone; 408, 429, 3xx, 5xx and no
// response retryable; every other status rejected.
func class(a attempt) outcome {
	switch s := a.status; {
	case s == 0, s == http.StatusRequestTimeout, s == http.StatusTooManyRequests, s >= 300 && s < 400, s >= 500:
		return retryable
	case s >= 200 && s < 300:
		return delivered
	case s == http.StatusGone:
		return gone
	}
	return rejected
}

// deliver POSTs until an answer other than retryable, or until another try
// (its wait plus a full timeout) would not end within the call budget.
func (h *Handler) deliver(ctx context.Context, id string, body []byte) (attempt, int) {
	end := h.now().Add(h.cfg.CallBudget)
	if d, ok := ctx.Deadline(); ok && d.Before(end) {
		end = d
	}
	for n := 1; ; n++ {
		if h.limit != nil {
			// Wait for the rate limit's token, or give the event back to
			// Pub/Sub when it would come after the call budget.
			r := h.limit.ReserveN(h.now(), 1)
			if d := r.DelayFrom(h.now()); d > 0 {
				if h.now().Add(d+h.cfg.Timeout).After(end) || gax.Sleep(ctx, d) != nil {
					r.Cancel()
					return attempt{err: errors.New("rate limit: no token within the call budget")}, n - 1
				}
			}
		}
		a := h.post(ctx, id, body)
		if class(a) != retryable {
			return a, n
		}
		wait := max(a.retryAfter, h.jitteredBackoff(n))
		if h.now().Add(wait+h.cfg.Timeout).After(end) || gax.Sleep(ctx, wait) != nil {
			return a, n
		}
	}
}

// wants reports whether ev passes the endpoint's filter, the same as its
// subscription's: its type among EventTypes, its appRef AppRef.
func (h *Handler) wants(ev events.Event) bool {
	if h.cfg.AppRef != "" && ev.AppRef != h.cfg.AppRef {
		return false
	}
	if h.cfg.EventTypes == "" {
		return true
	}
	for _, t := range strings.Split(h.cfg.EventTypes, ",") {
		if t == ev.Type {
			return true
		}
	}
	return false
}

// paused returns until when the receiver asked not to be called, or zero.
func (h *Handler) paused() time.Time {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.now().Before(h.pausedUntil) {
		return h.pausedUntil
	}
	return time.Time{}
}

// pauseFor records a Retry-After the call budget could not wait out.
func (h *Handler) pauseFor(d time.Duration) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if until := h.now().Add(d); until.After(h.pausedUntil) {
		h.pausedUntil = until
	}
}

// jitteredBackoff is the wait before try n+1: exponential, at least half of
// it fixed and the rest random, so failing endpoints are not hit in lockstep.
func (h *Handler) jitteredBackoff(n int) time.Duration {
	d := min(h.backoff<<min(n-1, 16), maxBackoff)
	return d/2 + rand.N(d/2+1)
}

func (h *Handler) post(ctx context.Context, id string, body []byte) attempt {
	keys, err := h.keyring(ctx)
	if err != nil {
		return attempt{err: err}
	}
	header, err := keys.Header(id, h.now(), body)
	if err != nil {
		return attempt{err: err}
	}
	ctx, cancel := context.WithTimeout(ctx, h.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, h.cfg.URL, bytes.NewReader(body))
	if err != nil {
		return attempt{err: errors.New("cannot build request for WEBHOOK_URL")}
	}
	header.Set("Content-Type", "application/json")
	header.Set("User-Agent", "gmailwatch-webhook/1")
	req.Header = header
	resp, err := h.client.Do(req)
	if err != nil {
		return attempt{err: transportError(err, h.cfg.Timeout)}
	}
	defer resp.Body.Close()
	// Read a bounded amount so the connection can be reused; the content is not needed.
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxResponseBody))
	return attempt{
		status:     resp.StatusCode,
		retryAfter: retryAfter(resp.Header.Get("Retry-After"), h.now()),
		location:   resp.Header.Get("Location"),
	}
}

// transportError drops the URL (its query may hold a receiver's token) from
// a client error.
func transportError(err error, timeout time.Duration) error {
	if errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("timeout after %s", timeout)
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

// retryAfter parses a Retry-After header: delay seconds or an HTTP date.
func retryAfter(v string, now time.Time) time.Duration {
	if v == "" {
		return 0
	}
	if s, err := strconv.Atoi(v); err == nil {
		return time.Duration(max(s, 0)) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(t.Sub(now), 0)
	}
	return 0
}

// keyring returns the signing keys, read from Secret Manager at most every
// few minutes so a rotation takes effect without a redeploy. If a refresh
// fails the previous keys are used.
func (h *Handler) keyring(ctx context.Context) (*webhooksig.Keyring, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.keys != nil && h.now().Sub(h.keysAt) < secretCacheTTL {
		return h.keys, nil
	}
	data, err := h.secrets.Access(ctx, h.cfg.SecretName)
	if err == nil {
		var keys *webhooksig.Keyring
		if keys, err = webhooksig.Parse(string(data)); err == nil {
			h.keys, h.keysAt = keys, h.now()
			return keys, nil
		}
	}
	err = fmt.Errorf("signing secret %s: %w", h.cfg.SecretName, err)
	if h.keys != nil {
		h.log.WarnContext(ctx, "webhook: using previous signing keys", "error", err)
		return h.keys, nil
	}
	return nil, err
}

// deadLetterMessage publishes the message, unchanged, to the dead-letter
// topic with why, the last status and the number of attempts as attributes.
// An error means the platform should redeliver, so nothing is lost.
func (h *Handler) deadLetterMessage(ctx context.Context, data []byte, attrs map[string]string, published time.Time, reason string, last attempt, attempts int) error {
	out := map[string]string{}
	for k, v := range attrs {
		out[k] = v
	}
	out["reason"] = reason
	out["status"] = strconv.Itoa(last.status)
	out["attempts"] = strconv.Itoa(attempts)
	out["publishTime"] = published.UTC().Format(time.RFC3339)
	if last.err != nil {
		out["error"] = truncate(logging.Scrub(last.err.Error()), 512)
	}
	id, err := h.deadLetter.Publish(ctx, &pubsub.Message{Data: data, Attributes: out}).Get(ctx)
	if err != nil {
		return fmt.Errorf("dead-letter %s event: %w", reason, err)
	}
	h.log.InfoContext(ctx, "webhook event dead-lettered", "eventId", attrs["id"], "reason", reason, "deadLetterMessageId", id)
	return nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}
