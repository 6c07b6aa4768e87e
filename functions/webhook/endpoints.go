package webhook

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"regexp"
	"strings"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"

	"github.com/gmailwatch/gmailwatch/shared/platform"
)

// Endpoints is the settings of every endpoint the function serves.
type Endpoints struct {
	List []Config
}

// Cloud returns the settings every function shares.
func (e Endpoints) Cloud() platform.Settings { return e.List[0].Cloud() }

// endpointSpec is one entry of WEBHOOK_ENDPOINTS (terraform/main.tf writes them).
type endpointSpec struct {
	Name            string   `json:"name"`
	Subscription    string   `json:"subscription"`
	URL             string   `json:"url"`       // local runs
	URLSecret       string   `json:"urlSecret"` // deployed
	Secret          string   `json:"secret"`
	DeadLetterTopic string   `json:"deadLetterTopic"`
	RatePerSecond   float64  `json:"ratePerSecond"`
	Enabled         *bool    `json:"enabled"`
	EventTypes      []string `json:"eventTypes"` // empty: every type
	AppRef          string   `json:"appRef"`     // empty: every user
}

var endpointName = regexp.MustCompile(`^[a-z][a-z0-9-]{0,19}$`)

// perEndpoint are the settings WEBHOOK_ENDPOINTS gives each endpoint, which
// then may not be set alone.
var perEndpoint = []string{"WEBHOOK_URL", "WEBHOOK_URL_SECRET_NAME", "WEBHOOK_SECRET_NAME", "DEAD_LETTER_TOPIC"}

// ReadEndpoints reads WEBHOOK_ENDPOINTS, a JSON list of endpoints, each
// checked as ReadConfig checks the single webhook's settings, which are read
// instead when it is unset (the endpoint "default", fed by any subscription).
func ReadEndpoints(lookup platform.Lookup) (Endpoints, error) {
	raw, ok := lookup("WEBHOOK_ENDPOINTS")
	if !ok || strings.TrimSpace(raw) == "" {
		if !setAny(lookup, perEndpoint) {
			// Neither way is set: report it with the shared settings' problems.
			_, err := ReadConfig(func(k string) (string, bool) {
				if k == "WEBHOOK_URL" || k == "DEAD_LETTER_TOPIC" {
					return "https://unset.invalid", true
				}
				return lookup(k)
			})
			const none = "WEBHOOK_ENDPOINTS: missing (or WEBHOOK_URL or WEBHOOK_URL_SECRET_NAME, for a single endpoint)"
			if err == nil {
				return Endpoints{}, errors.New("configuration: " + none)
			}
			return Endpoints{}, fmt.Errorf("%w; %s", err, none)
		}
		c, err := ReadConfig(lookup)
		if err != nil {
			return Endpoints{}, err
		}
		return Endpoints{List: []Config{c}}, nil
	}
	for _, k := range perEndpoint {
		if setAny(lookup, []string{k}) {
			return Endpoints{}, fmt.Errorf("configuration: %s is set with WEBHOOK_ENDPOINTS, which sets it per endpoint", k)
		}
	}
	dec := json.NewDecoder(strings.NewReader(raw))
	dec.DisallowUnknownFields()
	var specs []endpointSpec
	if err := dec.Decode(&specs); err != nil {
		return Endpoints{}, fmt.Errorf("configuration: WEBHOOK_ENDPOINTS is not a JSON list of endpoints: %w", err)
	}
	if len(specs) == 0 {
		return Endpoints{}, errors.New("configuration: WEBHOOK_ENDPOINTS lists no endpoint")
	}
	var e Endpoints
	names, subs := map[string]bool{}, map[string]bool{}
	for i, s := range specs {
		switch {
		case !endpointName.MatchString(s.Name):
			return Endpoints{}, fmt.Errorf("configuration: WEBHOOK_ENDPOINTS entry %d: name %q is not 1-20 lowercase letters, digits or -", i, truncate(s.Name, 40))
		case names[s.Name]:
			return Endpoints{}, fmt.Errorf("configuration: WEBHOOK_ENDPOINTS names %s twice", s.Name)
		case s.Subscription == "" || strings.Contains(s.Subscription, "/"):
			return Endpoints{}, fmt.Errorf("configuration: endpoint %s: subscription must be a subscription id", s.Name)
		case subs[s.Subscription]:
			return Endpoints{}, fmt.Errorf("configuration: endpoint %s: subscription %s feeds another endpoint", s.Name, s.Subscription)
		case s.RatePerSecond < 0:
			return Endpoints{}, fmt.Errorf("configuration: endpoint %s: ratePerSecond is negative", s.Name)
		}
		names[s.Name], subs[s.Subscription] = true, true
		own := map[string]string{"WEBHOOK_URL": s.URL, "WEBHOOK_URL_SECRET_NAME": s.URLSecret, "WEBHOOK_SECRET_NAME": s.Secret, "DEAD_LETTER_TOPIC": s.DeadLetterTopic}
		c, err := ReadConfig(func(k string) (string, bool) {
			if v, mine := own[k]; mine {
				return v, v != ""
			}
			return lookup(k)
		})
		if err != nil {
			return Endpoints{}, fmt.Errorf("endpoint %s: %w", s.Name, err)
		}
		c.Name, c.Subscription, c.RatePerSecond = s.Name, s.Subscription, s.RatePerSecond
		c.Disabled = s.Enabled != nil && !*s.Enabled
		c.EventTypes, c.AppRef = strings.Join(s.EventTypes, ","), s.AppRef
		e.List = append(e.List, c)
	}
	return e, nil
}

func setAny(lookup platform.Lookup, keys []string) bool {
	for _, k := range keys {
		if v, ok := lookup(k); ok && v != "" {
			return true
		}
	}
	return false
}

// maxPush bounds a push body: Pub/Sub messages are at most 10 MB, base64
// makes them a third longer.
const maxPush = 14 << 20

// Router takes the pushes of every endpoint's subscription and hands each to
// its endpoint's Handler.
type Router struct {
	project string
	bySub   map[string]*Handler // subscription id, or "" for the sole endpoint
	log     *slog.Logger
}

// NewRouter routes to hs by their subscription.
func NewRouter(project string, hs []*Handler, log *slog.Logger) *Router {
	r := &Router{project: project, bySub: map[string]*Handler{}, log: log}
	for _, h := range hs {
		r.bySub[h.cfg.Subscription] = h
	}
	return r
}

// pushTopic finds the topic in a push path, as the functions framework does.
var pushTopic = regexp.MustCompile(`(projects/[^/?]+/topics/[^/?]+)/*`)

// pushEnvelope is the body of a Pub/Sub push (wrapped).
type pushEnvelope struct {
	Message      json.RawMessage `json:"message"`
	Subscription string          `json:"subscription"`
}

// ServeHTTP answers a push: 204 when the event was delivered, dead-lettered
// or ignored, 503 when Pub/Sub should redeliver it later.
func (r *Router) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	if req.Method != http.MethodPost {
		http.Error(w, "POST a Pub/Sub push", http.StatusMethodNotAllowed)
		return
	}
	body, err := io.ReadAll(io.LimitReader(req.Body, maxPush+1))
	var env pushEnvelope
	if err == nil && len(body) > maxPush {
		err = errors.New("push too large")
	}
	if err == nil {
		err = json.NewDecoder(bytes.NewReader(body)).Decode(&env)
	}
	m := pushTopic.FindStringSubmatch(req.URL.Path)
	if err != nil || m == nil || len(env.Message) == 0 {
		// Not a push: redelivering cannot help, and nothing here is an event.
		r.log.ErrorContext(req.Context(), "webhook: request that is not a Pub/Sub push ignored", "path", truncate(req.URL.Path, 128))
		w.WriteHeader(http.StatusNoContent)
		return
	}
	h, ok := r.handler(env.Subscription)
	if !ok {
		// A subscription with no endpoint yet (the function's settings lag
		// behind Terraform's) keeps its events until it has one.
		r.log.ErrorContext(req.Context(), "webhook: push from a subscription no endpoint is fed by", "subscription", truncate(env.Subscription, 256))
		http.Error(w, "no endpoint for this subscription", http.StatusServiceUnavailable)
		return
	}
	var msg struct {
		MessageID   string    `json:"messageId"`
		PublishTime time.Time `json:"publishTime"`
	}
	_ = json.Unmarshal(env.Message, &msg)
	ce := event.New()
	ce.SetID(msg.MessageID)
	ce.SetSource("//pubsub.googleapis.com/" + m[1])
	ce.SetType(platform.MessagePublished)
	ce.SetTime(msg.PublishTime)
	if err := ce.SetData(event.ApplicationJSON, json.RawMessage(body)); err != nil {
		http.Error(w, "cannot read push", http.StatusServiceUnavailable)
		return
	}
	if err := h.Handle(req.Context(), ce); err != nil {
		http.Error(w, "not delivered yet", http.StatusServiceUnavailable)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// handler returns the endpoint fed by subscription (projects/P/subscriptions/ID).
func (r *Router) handler(subscription string) (*Handler, bool) {
	if h, ok := r.bySub[""]; ok && len(r.bySub) == 1 {
		return h, true
	}
	id, ok := strings.CutPrefix(subscription, "projects/"+r.project+"/subscriptions/")
	if !ok {
		return nil, false
	}
	h, ok := r.bySub[id]
	return h, ok
}
