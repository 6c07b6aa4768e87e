// Command receiver is a local webhook endpoint for development: it verifies
// every request's Standard Webhooks signature, de-duplicates by webhook-id and
// prints each new event as one JSON line on stdout, the way an application
// receiving the Webhook function's requests should behave.
//
//	go run ./scripts/receiver -addr 127.0.0.1:8089 -secret-file webhook-secret.txt
//
// The secret file holds the whsec_ key(s) the function signs with,
// whitespace-separated during rotation. Answers: 204 for a new event, 200 for
// a repeat, 401 for a bad signature or stale timestamp, 405 for other methods,
// 413 for bodies over 1 MiB.
package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync"

	"github.com/gmailwatch/gmailwatch/shared/config"
	"github.com/gmailwatch/gmailwatch/shared/logging"
	"github.com/gmailwatch/gmailwatch/shared/webhooksig"
)

const maxBody = 1 << 20

func main() {
	if err := run(os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "receiver:", err)
		os.Exit(2)
	}
}

func run(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("receiver", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("addr", "127.0.0.1:8089", "loopback host:port to listen on")
	secretFile := fs.String("secret-file", "", "file holding the whsec_ signing key(s)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *secretFile == "" {
		return errors.New("-secret-file is required")
	}
	host, _, err := net.SplitHostPort(*addr)
	if err != nil || !config.IsLoopback(host) {
		return fmt.Errorf("-addr %q: must be a loopback host:port such as 127.0.0.1:8089", *addr)
	}
	data, err := os.ReadFile(*secretFile)
	if err != nil {
		return fmt.Errorf("read secret file: %w", err)
	}
	keys, err := webhooksig.Parse(string(data))
	if err != nil {
		return fmt.Errorf("%s: %w", *secretFile, err)
	}
	l, err := net.Listen("tcp", *addr)
	if err != nil {
		return err
	}
	log := logging.New(stderr, slog.LevelInfo)
	log.Info("receiver listening", "url", "http://"+l.Addr().String()+"/")
	return http.Serve(l, newReceiver(keys, stdout, log))
}

// receiver is the endpoint. seen grows without bound: fine for a
// development session; an application would keep ids for a day in its store.
type receiver struct {
	keys *webhooksig.Keyring
	log  *slog.Logger

	mu   sync.Mutex
	out  io.Writer
	seen map[string]bool
}

func newReceiver(keys *webhooksig.Keyring, out io.Writer, log *slog.Logger) *receiver {
	return &receiver{keys: keys, out: out, log: log, seen: map[string]bool{}}
}

func (rv *receiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		http.Error(w, "POST only", http.StatusMethodNotAllowed)
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	if err != nil {
		rv.log.Warn("body rejected", "error", err)
		http.Error(w, "body too large", http.StatusRequestEntityTooLarge)
		return
	}
	id := r.Header.Get(webhooksig.HeaderID)
	if err := rv.keys.Verify(body, r.Header); err != nil {
		rv.log.Warn("signature rejected", "webhookId", id, "error", err)
		http.Error(w, "invalid signature", http.StatusUnauthorized)
		return
	}
	rv.mu.Lock()
	defer rv.mu.Unlock()
	if rv.seen[id] {
		rv.log.Info("duplicate ignored", "webhookId", id)
		w.WriteHeader(http.StatusOK)
		return
	}
	var line bytes.Buffer
	if err := json.Compact(&line, body); err != nil {
		rv.log.Warn("body is not JSON", "webhookId", id)
		http.Error(w, "body is not JSON", http.StatusBadRequest)
		return
	}
	line.WriteByte('\n')
	if _, err := rv.out.Write(line.Bytes()); err != nil {
		http.Error(w, "cannot record event", http.StatusInternalServerError)
		return
	}
	rv.seen[id] = true
	w.WriteHeader(http.StatusNoContent)
}
