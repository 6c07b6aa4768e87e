package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/gmailwatch/gmailwatch/scripts/stack"
)

// ColdStart is, per function, its binary and how fast it serves.
type ColdStart struct {
	Functions []FunctionStart `json:"functions"`
	// Isolation is the "no network call before the first request" check,
	// or why it could not run.
	Isolation      []IsolatedRun `json:"isolation,omitempty"`
	IsolationError string        `json:"isolationError,omitempty"`
}

// FunctionStart is one function's binary, built as its Cloud Functions
// upload is (the function package and the framework), and its starts.
type FunctionStart struct {
	Name           string  `json:"name"`
	SizeMiB        float64 `json:"sizeMiB"`         // go build
	StrippedMiB    float64 `json:"strippedSizeMiB"` // go build -ldflags="-s -w"
	Listen         Dist    `json:"listen"`          // process start -> the port accepts a connection
	FirstRequest   Dist    `json:"firstRequest"`    // process start -> first request answered
	FirstRequestIs string  `json:"firstRequestIs"`  // what that request was
	FirstStatus    int     `json:"firstStatus"`
}

// IsolatedRun is one start in a network namespace of its own, with
// only loopback, under strace.
type IsolatedRun struct {
	Function   string  `json:"function"`
	Configured bool    `json:"configured"` // with the stack's settings, whose endpoints do not exist in the namespace
	ListenMS   float64 `json:"listenMs"`
	// Network system calls (connect, sendto, sendmsg, sendmmsg) traced from
	// the start until the first request, which is sent 300 ms after the
	// port is bound; then until 300 ms after its answer.
	CallsBefore int      `json:"networkCallsBeforeFirstRequest"`
	CallsAfter  int      `json:"networkCallsAfterFirstRequest"`
	FirstStatus int      `json:"firstStatus,omitempty"`
	FirstError  string   `json:"firstError,omitempty"`
	Before      []string `json:"tracedBefore,omitempty"`
}

// firstRequest is a cheap real request for each function: the work it does
// first when it is invoked.
type firstRequest struct {
	Method, Path, Body, About string
	Authorization             string `json:"-"` // the caller's ID token, for the accounts API
}

func (b *bench) firstRequests() map[string]firstRequest {
	topic := func(t string) string { return "/projects/" + b.st.Project + "/topics/" + t }
	return map[string]firstRequest{
		"consent": {Method: http.MethodGet, Path: "/connect", About: "GET /connect (consent redirect: reads the state key)"},
		"accounts": {Method: http.MethodGet, Path: "/accounts/" + strings.Repeat("0", 32), About: "GET an unknown account (the caller's ID token checked, one Firestore read)",
			Authorization: "Bearer " + b.st.BackendToken()},
		"notify": {Method: http.MethodPost, Path: topic(stack.GmailTopic), Body: string(pushBody(b.st.Project, "nobody@bench.test", 1, 1)),
			About: "a Gmail push for an unknown user (one Firestore read)"},
		"renew": {Method: http.MethodGet, Path: "/", About: "GET / (builds the clients, answers 405)"},
		"webhook": {Method: http.MethodPost, Path: topic(stack.EventsTopic), Body: string(pushBody(b.st.Project, "nobody@bench.test", 1, 1)),
			About: "an undecodable event (dead-lettered)"},
	}
}

// coldStart builds each function's binary, starts it ColdRuns times with
// the stack's settings, and checks in an isolated network namespace that no
// network call precedes the first request.
func (b *bench) coldStart(ctx context.Context) error {
	dir := filepath.Join(b.cfg.Dir, "coldstart")
	cs := &ColdStart{}
	reqs := b.firstRequests()
	var probe probeSpec
	for _, name := range stack.Functions {
		b.progress("coldstart: building %s", name)
		bin, fs, err := buildFunction(ctx, dir, name)
		if err != nil {
			return err
		}
		req := reqs[name]
		fs.FirstRequestIs = req.About
		var listen, first []time.Duration
		for range b.cfg.ColdRuns {
			l, f, status, err := b.startOnce(ctx, bin, name, req)
			if err != nil {
				return fmt.Errorf("%s: %w", name, err)
			}
			listen, first = append(listen, l), append(first, f)
			fs.FirstStatus = status
		}
		fs.Listen, fs.FirstRequest = distOf(listen), distOf(first)
		cs.Functions = append(cs.Functions, fs)
		probe.Functions = append(probe.Functions, probeFunction{Name: name, Bin: bin, Request: req})
	}
	probe.Env = b.st.Env()
	b.progress("coldstart: isolated starts under strace")
	cs.Isolation, cs.IsolationError = runIsolated(ctx, probe)
	b.rep.ColdStart = cs
	return nil
}

// buildFunction compiles what a Cloud Functions upload of the function
// compiles: its package and the framework, served on $PORT.
func buildFunction(ctx context.Context, dir, name string) (string, FunctionStart, error) {
	src := filepath.Join(dir, "src", name, "main.go")
	if err := os.MkdirAll(filepath.Dir(src), 0o755); err != nil {
		return "", FunctionStart{}, err
	}
	main := `// Command ` + name + ` serves only the ` + name + ` function, as its deployed upload does.
package main

import (
	"log"
	"os"

	"github.com/GoogleCloudPlatform/functions-framework-go/funcframework"

	_ "github.com/gmailwatch/gmailwatch/functions/` + name + `"
)

func main() {
	if err := funcframework.StartHostPort("127.0.0.1", os.Getenv("PORT")); err != nil {
		log.Fatal(err)
	}
}
`
	if err := os.WriteFile(src, []byte(main), 0o644); err != nil {
		return "", FunctionStart{}, err
	}
	fs := FunctionStart{Name: name}
	bin := filepath.Join(dir, "bin", name)
	for _, v := range []struct {
		out  string
		args []string
		size *float64
	}{
		{bin, nil, &fs.SizeMiB},
		{bin + "-stripped", []string{"-ldflags=-s -w"}, &fs.StrippedMiB},
	} {
		cmd := exec.CommandContext(ctx, "go", append(append([]string{"build"}, v.args...), "-o", v.out, src)...)
		if out, err := cmd.CombinedOutput(); err != nil {
			return "", fs, fmt.Errorf("go build %s: %v\n%s", name, err, out)
		}
		st, err := os.Stat(v.out)
		if err != nil {
			return "", fs, err
		}
		*v.size = round2(float64(st.Size()) / (1 << 20))
	}
	return bin, fs, nil
}

// startOnce starts the binary with the stack's settings and times the
// port accepting a connection and the first request's answer, then kills it.
func (b *bench) startOnce(ctx context.Context, bin, name string, req firstRequest) (listen, first time.Duration, status int, err error) {
	port, err := stack.FreePort()
	if err != nil {
		return 0, 0, 0, err
	}
	addr := "127.0.0.1:" + strconv.Itoa(port)
	logf, err := os.Create(filepath.Join(b.st.Logs, "coldstart-"+name+".log"))
	if err != nil {
		return 0, 0, 0, err
	}
	defer logf.Close()
	cmd := exec.Command(bin)
	cmd.Env = append(os.Environ(), append(b.st.Env(), "FUNCTION_TARGET="+targetOf(name), "PORT="+strconv.Itoa(port))...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return 0, 0, 0, err
	}
	defer func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		_ = cmd.Wait()
	}()
	for {
		c, derr := net.DialTimeout("tcp", addr, time.Second)
		if derr == nil {
			listen = time.Since(start)
			c.Close()
			break
		}
		if time.Since(start) > 10*time.Second || ctx.Err() != nil {
			return 0, 0, 0, fmt.Errorf("%s never listened: %v", name, derr)
		}
		time.Sleep(200 * time.Microsecond)
	}
	status, err = send(ctx, b.client, "http://"+addr, req, 30*time.Second)
	if err != nil {
		return 0, 0, 0, fmt.Errorf("first request: %w", err)
	}
	return listen, time.Since(start), status, nil
}

func send(ctx context.Context, client *http.Client, base string, req firstRequest, timeout time.Duration) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	r, err := http.NewRequestWithContext(ctx, req.Method, base+req.Path, strings.NewReader(req.Body))
	if err != nil {
		return 0, err
	}
	if req.Body != "" {
		r.Header.Set("Content-Type", "application/json")
	}
	if req.Authorization != "" {
		r.Header.Set("Authorization", req.Authorization)
	}
	client = &http.Client{Transport: client.Transport, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := client.Do(r)
	if err != nil {
		return 0, err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, nil
}

func targetOf(name string) string { return strings.ToUpper(name[:1]) + name[1:] }

// The isolation check runs this program again as
// `unshare -rn <self> isolated-probe <spec>`: in a new user and network
// namespace whose only interface is loopback, so nothing outside can be
// reached whatever the binary tries. There it starts each function under
// strace, unconfigured and then with the stack's settings, and reports the
// network system calls made before and after the first request.
const isolatedProbeArg = "isolated-probe"

type probeSpec struct {
	Functions []probeFunction `json:"functions"`
	Env       []string        `json:"env"`
}

type probeFunction struct {
	Name    string       `json:"name"`
	Bin     string       `json:"bin"`
	Request firstRequest `json:"request"`
}

func runIsolated(ctx context.Context, spec probeSpec) ([]IsolatedRun, string) {
	for _, tool := range []string{"unshare", "strace", "ip"} {
		if _, err := exec.LookPath(tool); err != nil {
			return nil, "not checked: " + tool + " is not installed"
		}
	}
	self, err := os.Executable()
	if err != nil {
		return nil, "not checked: " + err.Error()
	}
	arg, _ := json.Marshal(spec)
	cmd := exec.CommandContext(ctx, "unshare", "-rn", self, isolatedProbeArg, string(arg))
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Sprintf("not checked: unshare -rn: %v", err)
	}
	var runs []IsolatedRun
	if err := json.Unmarshal(out, &runs); err != nil {
		return nil, fmt.Sprintf("not checked: probe output: %v", err)
	}
	return runs, ""
}

// isolatedProbe is the program's entry inside the namespace.
func isolatedProbe(args []string, out io.Writer) int {
	var spec probeSpec
	if len(args) != 1 || json.Unmarshal([]byte(args[0]), &spec) != nil {
		fmt.Fprintln(os.Stderr, "isolated-probe: want one JSON argument")
		return 2
	}
	if b, err := exec.Command("ip", "link", "set", "lo", "up").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "isolated-probe: ip link set lo up: %v %s\n", err, b)
		return 2
	}
	dir, err := os.MkdirTemp("", "bench-isolated-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "isolated-probe:", err)
		return 2
	}
	defer os.RemoveAll(dir)
	var runs []IsolatedRun
	for _, f := range spec.Functions {
		for _, configured := range []bool{false, true} {
			env := []string{"PATH=" + os.Getenv("PATH")}
			if configured {
				env = append(env, spec.Env...)
			}
			r, err := traceStart(f, env, configured, filepath.Join(dir, f.Name+".trace"))
			if err != nil {
				fmt.Fprintf(os.Stderr, "isolated-probe: %s: %v\n", f.Name, err)
				return 2
			}
			runs = append(runs, r)
		}
	}
	if err := json.NewEncoder(out).Encode(runs); err != nil {
		return 2
	}
	return 0
}

func traceStart(f probeFunction, env []string, configured bool, trace string) (IsolatedRun, error) {
	r := IsolatedRun{Function: f.Name, Configured: configured}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return r, err
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	cmd := exec.Command("strace", "-f", "-qq", "-e", "trace=connect,sendto,sendmsg,sendmmsg", "-e", "signal=none", "-o", trace, f.Bin)
	cmd.Env = append(env, "FUNCTION_TARGET="+targetOf(f.Name), "PORT="+strconv.Itoa(port))
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return r, err
	}
	defer func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		_ = cmd.Wait()
	}()
	for !listening(port) {
		if time.Since(start) > 20*time.Second {
			return r, errors.New("never listened")
		}
		time.Sleep(500 * time.Microsecond)
	}
	r.ListenMS = ms(time.Since(start))
	time.Sleep(300 * time.Millisecond)
	r.Before = networkCalls(trace)
	r.CallsBefore = len(r.Before)
	status, err := send(context.Background(), http.DefaultClient, "http://127.0.0.1:"+strconv.Itoa(port), f.Request, 3*time.Second)
	r.FirstStatus = status
	if err != nil {
		r.FirstError = err.Error()
	}
	time.Sleep(300 * time.Millisecond)
	r.CallsAfter = len(networkCalls(trace)) - r.CallsBefore
	return r, nil
}

// listening reports whether a socket listens on 127.0.0.1:port, read from
// /proc so that checking sends nothing to the process.
func listening(port int) bool {
	want := fmt.Sprintf("0100007F:%04X", port)
	f, err := os.Open("/proc/net/tcp")
	if err != nil {
		return false
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		fields := strings.Fields(s.Text())
		if len(fields) > 3 && fields[1] == want && fields[3] == "0A" {
			return true
		}
	}
	return false
}

var tracedCall = regexp.MustCompile(`^\d+\s+(connect|sendto|sendmsg|sendmmsg)\(`)

// networkCalls returns the traced network system calls so far.
func networkCalls(trace string) []string {
	b, err := os.ReadFile(trace)
	if err != nil {
		return nil
	}
	var calls []string
	for _, line := range strings.Split(string(b), "\n") {
		if tracedCall.MatchString(line) {
			calls = append(calls, line)
		}
	}
	return calls
}
