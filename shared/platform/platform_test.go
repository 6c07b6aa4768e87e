package platform

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/cloudevents/sdk-go/v2/event"

	"github.com/gmailwatch/gmailwatch/shared/config"
	"github.com/gmailwatch/gmailwatch/shared/logging"
)

func TestReadSettings(t *testing.T) {
	r := config.NewReader(config.FromMap(map[string]string{"PROJECT_ID": "p", "SECRETMANAGER_ENDPOINT": "127.0.0.1:9"}))
	got := ReadSettings(r)
	if want := (Settings{ProjectID: "p", SecretEndpoint: "127.0.0.1:9"}); got != want {
		t.Errorf("ReadSettings = %+v, want %+v", got, want)
	}
	if err := r.Err(); err == nil || !strings.Contains(err.Error(), "EVENTS_TOPIC: missing") {
		t.Errorf("error %v, want EVENTS_TOPIC: missing", err)
	}
}

func TestProductionBuildsOnceAndFailsEveryCall(t *testing.T) {
	for _, tc := range []struct {
		name string
		read func(Lookup) (Settings, error)
		want string
	}{
		{"bad settings", func(Lookup) (Settings, error) { return Settings{}, errors.New("PROJECT_ID: missing") }, "PROJECT_ID: missing"},
		{"a client cannot be built", func(Lookup) (Settings, error) {
			return Settings{ProjectID: "p", SecretEndpoint: "secretmanager.example.com:443"}, nil
		}, "only loopback"},
	} {
		reads, wires := 0, 0
		get := Production("test", func(l Lookup) (Settings, error) { reads++; return tc.read(l) },
			func(_ Settings, c *Clients) *int { wires++; c.Vault(); return new(int) })
		for range 3 {
			if h, err := get(); h != nil || err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("%s: get = %v, %v; want no handler and an error containing %q", tc.name, h, err, tc.want)
			}
		}
		if reads != 1 || wires > 1 {
			t.Errorf("%s: read %d times, wired %d times; want once at most", tc.name, reads, wires)
		}
	}
}

type okHandler struct{}

func (okHandler) ServeHTTP(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusTeapot) }
func (okHandler) Handle(context.Context, event.Event) error        { return errors.New("handled") }

func TestEntryPoints(t *testing.T) {
	broken := func() (okHandler, error) { return okHandler{}, errors.New("not configured") }
	working := func() (okHandler, error) { return okHandler{}, nil }
	fail := func(w http.ResponseWriter, err error) { http.Error(w, err.Error(), http.StatusServiceUnavailable) }
	for _, tc := range []struct {
		name    string
		get     func() (okHandler, error)
		status  int
		handled string
	}{
		{"broken", broken, http.StatusServiceUnavailable, "not configured"},
		{"working", working, http.StatusTeapot, "handled"},
	} {
		rec := httptest.NewRecorder()
		HTTP(tc.get, fail)(rec, httptest.NewRequest(http.MethodGet, "/", nil))
		if rec.Code != tc.status {
			t.Errorf("%s: HTTP status %d, want %d", tc.name, rec.Code, tc.status)
		}
		if err := CloudEvent(tc.get)(context.Background(), event.New()); err == nil || err.Error() != tc.handled {
			t.Errorf("%s: CloudEvent = %v, want %q", tc.name, err, tc.handled)
		}
	}
}

func TestTraceRequestPrefersTraceparent(t *testing.T) {
	const w3c, cloud = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "0123456789abcdef0123456789abcdef/1;o=1"
	for _, tc := range []struct {
		name    string
		headers map[string]string
		want    string
	}{
		{"both", map[string]string{"traceparent": w3c, "X-Cloud-Trace-Context": cloud}, "projects/p/traces/4bf92f3577b34da6a3ce929d0e0e4736"},
		{"cloud only", map[string]string{"X-Cloud-Trace-Context": cloud}, "projects/p/traces/0123456789abcdef0123456789abcdef"},
		{"none", nil, ""},
	} {
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		for k, v := range tc.headers {
			r.Header.Set(k, v)
		}
		if got := traceOf(t, TraceRequest(context.Background(), "p", r)); got != tc.want {
			t.Errorf("%s: trace %q, want %q", tc.name, got, tc.want)
		}
	}
	e := event.New()
	e.SetExtension("traceparent", w3c)
	if got := traceOf(t, TraceEvent(context.Background(), "p", e)); got != "projects/p/traces/4bf92f3577b34da6a3ce929d0e0e4736" {
		t.Errorf("event trace %q", got)
	}
}

// traceOf logs one line with ctx and returns the trace field it carries.
func traceOf(t *testing.T, ctx context.Context) string {
	var b strings.Builder
	logging.New(&b, slog.LevelInfo).InfoContext(ctx, "x")
	_, after, ok := strings.Cut(b.String(), `"logging.googleapis.com/trace":"`)
	if !ok {
		return ""
	}
	trace, _, _ := strings.Cut(after, `"`)
	return trace
}

func TestIsMessageOf(t *testing.T) {
	const topic = "projects/p/topics/gmail"
	for _, tc := range []struct {
		typ, source string
		want        bool
	}{
		{MessagePublished, "//pubsub.googleapis.com/" + topic, true},
		{MessagePublished, "//pubsub.googleapis.com/projects/p/topics/other", false},
		{MessagePublished, "//pubsub.googleapis.com/projects/evil/topics/gmail", false},
		{"google.cloud.storage.object.v1.finalized", "//pubsub.googleapis.com/" + topic, false},
		{"", "", false},
	} {
		e := event.New()
		e.SetType(tc.typ)
		e.SetSource(tc.source)
		if got := IsMessageOf(e, topic); got != tc.want {
			t.Errorf("IsMessageOf(type %q, source %q) = %v, want %v", tc.typ, tc.source, got, tc.want)
		}
	}
}

func TestClientsRememberTheFirstFailure(t *testing.T) {
	c := NewClients(context.Background(), Settings{ProjectID: "p", SecretEndpoint: "secretmanager.example.com:443"})
	if v := c.Vault(); v != nil {
		t.Errorf("vault %v over a plaintext endpoint off loopback, want none", v)
	}
	if ps := c.PubSub(); ps != nil {
		t.Errorf("pubsub client %v after a failure, want none", ps)
	}
	if err := c.Err(); err == nil || !strings.Contains(err.Error(), "only loopback") {
		t.Errorf("Err = %v, want the vault's refusal", err)
	}
}
