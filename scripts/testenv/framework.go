package testenv

import (
	"context"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/GoogleCloudPlatform/functions-framework-go/funcframework"
	"github.com/cloudevents/sdk-go/v2/event"
)

// ServeHTTP serves h through the functions framework on 127.0.0.1, as the
// Cloud Functions runtime does (its ServeMux, with path cleaning, in front),
// and returns the base URL. Not for parallel tests: see serve.
func ServeHTTP(t testing.TB, h http.HandlerFunc) string {
	t.Helper()
	return serve(t, func() error { return funcframework.RegisterHTTPFunctionContext(context.Background(), "/", h) })
}

// ServeCloudEvent serves fn through the functions framework on 127.0.0.1,
// with the CloudEvents SDK and the Pub/Sub push conversion in front, and
// returns the base URL. Not for parallel tests: see serve.
func ServeCloudEvent(t testing.TB, fn func(context.Context, event.Event) error) string {
	t.Helper()
	return serve(t, func() error { return funcframework.RegisterCloudEventFunctionContext(context.Background(), "/", fn) })
}

// ServeRegistered serves the function that the package's init registered
// as target, through the functions framework on 127.0.0.1, as deployed, and
// returns the base URL. The function builds its production handler from
// the process environment: set it (t.Setenv) first. Not for parallel tests.
func ServeRegistered(t testing.TB, target string) string {
	t.Helper()
	return start(t, target)
}

// serve registers a function without a name and points FUNCTION_TARGET at
// no function, so the framework serves the last function registered without
// a name. FUNCTION_TARGET is process-wide, hence t.Setenv and no t.Parallel.
func serve(t testing.TB, register func() error) string {
	t.Helper()
	if err := register(); err != nil {
		t.Fatal(err)
	}
	return start(t, "UnnamedTestFunction")
}

// start serves FUNCTION_TARGET target on a free loopback port once it listens.
func start(t testing.TB, target string) string {
	t.Helper()
	t.Setenv("FUNCTION_TARGET", target)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	go func() { _ = funcframework.StartHostPort("127.0.0.1", strings.TrimPrefix(addr, "127.0.0.1:")) }()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			return "http://" + addr
		}
		if time.Now().After(deadline) {
			t.Fatalf("the functions framework never listened on %s", addr)
		}
	}
}
