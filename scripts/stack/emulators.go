package stack

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"
)

// process is a child started in its own process group, so stopping it also
// stops what it started (the emulators' gcloud wrappers start Java).
type process struct {
	name string
	cmd  *exec.Cmd
	done chan error
}

func startProcess(name, logDir string, env []string, bin string, args ...string) (*process, error) {
	// Append, so a restarted process keeps the log of the one that was killed.
	logf, err := os.OpenFile(filepath.Join(logDir, name+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &process{name: name, cmd: cmd, done: make(chan error, 1)}
	go func() { p.done <- cmd.Wait(); logf.Close() }()
	return p, nil
}

// stop sends SIGTERM to the group, then SIGKILL after grace.
func (p *process) stop(grace time.Duration) {
	pgid := -p.cmd.Process.Pid
	_ = syscall.Kill(pgid, syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(grace):
		_ = syscall.Kill(pgid, syscall.SIGKILL)
		<-p.done
	}
	_ = syscall.Kill(pgid, syscall.SIGKILL) // stragglers in the group
}

// kill ends the group at once, as a crashing instance would.
func (p *process) kill() {
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	<-p.done
}

// FreePort returns a free TCP port on 127.0.0.1.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// waitHTTP polls url until it answers or ctx ends.
func waitHTTP(ctx context.Context, url string, p *process) error {
	for {
		resp, err := http.Get(url)
		if err == nil {
			resp.Body.Close()
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s did not answer at %s: %w", p.name, url, ctx.Err())
		case err := <-p.done:
			return fmt.Errorf("%s exited before answering: %v", p.name, err)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// Emulators are Google's Firestore and Pub/Sub emulators, each on a free
// loopback port.
type Emulators struct {
	FirestoreHost string
	PubSubHost    string
	procs         []*process
}

// StartEmulators starts both emulators, logging to logDir, and waits until
// they answer. On error nothing is left running.
func StartEmulators(ctx context.Context, logDir string) (*Emulators, error) {
	e := &Emulators{}
	for _, kind := range []string{"firestore", "pubsub"} {
		p, addr, err := startEmulator(ctx, kind, logDir)
		if err != nil {
			e.Stop()
			return nil, err
		}
		e.procs = append(e.procs, p)
		if kind == "firestore" {
			e.FirestoreHost = addr
		} else {
			e.PubSubHost = addr
		}
	}
	return e, nil
}

// Env returns the variables Google's client libraries read to use them.
func (e *Emulators) Env() []string {
	return []string{"FIRESTORE_EMULATOR_HOST=" + e.FirestoreHost, "PUBSUB_EMULATOR_HOST=" + e.PubSubHost}
}

// Stop ends both emulators and the Java processes they started.
func (e *Emulators) Stop() {
	for _, p := range e.procs {
		p.stop(5 * time.Second)
	}
	e.procs = nil
}

// startEmulator runs `gcloud [beta] emulators KIND start` on a free port.
func startEmulator(ctx context.Context, kind, logDir string) (*process, string, error) {
	port, err := FreePort()
	if err != nil {
		return nil, "", err
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	args := []string{"emulators", kind, "start", "--host-port=" + addr, "--quiet"}
	if kind == "pubsub" {
		args = append([]string{"beta"}, args...)
	}
	p, err := startProcess(kind+"-emulator", logDir, nil, "gcloud", args...)
	if err != nil {
		return nil, "", err
	}
	wctx, cancel := context.WithTimeout(ctx, 90*time.Second)
	defer cancel()
	if err := waitHTTP(wctx, "http://"+addr+"/", p); err != nil {
		p.stop(time.Second)
		return nil, "", fmt.Errorf("%w (log: %s)", err, filepath.Join(logDir, kind+"-emulator.log"))
	}
	return p, addr, nil
}
