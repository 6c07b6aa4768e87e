package main

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	secretmanager "cloud.google.com/go/secretmanager/apiv1"
	"cloud.google.com/go/secretmanager/apiv1/secretmanagerpb"
	"google.golang.org/api/option"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/gmailwatch/gmailwatch/scripts/testenv"
)

func TestBadArguments(t *testing.T) {
	t.Parallel()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"-secret", "novalue"}, "ID=VALUE"},
		{[]string{"-secret", "a=b"}, "-secret needs -project"},
		{[]string{"-http", "0.0.0.0:0"}, "loopback"},
		{[]string{"-pubsub", "pubsub.googleapis.com:443"}, "loopback"},
		{[]string{"-no-such-flag"}, "not defined"},
		{[]string{"extra"}, "unexpected arguments"},
		{[]string{"-quota", "standard-2025"}, "unknown Gmail quota profile"},
		{[]string{"-user-units", "-5"}, "must not be negative"},
	} {
		err := run(tc.args, log)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("run(%q) = %v, want an error mentioning %q", tc.args, err, tc.want)
		}
	}
}

// TestProgram builds and runs the program as the local stack does: it
// prints its addresses, serves the admin API and Secret Manager, and exits 0
// on SIGTERM.
func TestProgram(t *testing.T) {
	t.Parallel()
	testenv.Need(t, "PUBSUB_EMULATOR_HOST")
	bin := filepath.Join(t.TempDir(), "sandbox")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	cmd := exec.Command(bin, "-project", "local-project", "-client-id", "local-client", "-client-secret", "s3cret",
		"-redirect-uri", "http://127.0.0.1:8081/oauth2/callback", "-secret", "consent-state-key=k3y",
		"-mailbox", "alice@example.com", "-auto-approve", "-quota", "legacy", "-user-units", "9000")
	cmd.Env = os.Environ()
	stdout, _ := cmd.StdoutPipe()
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	exited := false
	t.Cleanup(func() {
		if !exited {
			cmd.Process.Kill()
			<-done
		}
	})
	lines := bufio.NewScanner(stdout)
	if !lines.Scan() {
		go func() { done <- cmd.Wait() }()
		t.Fatalf("no ready line; stderr: %s", stderr.String())
	}
	go func() { done <- cmd.Wait() }()
	var got ready
	if err := json.Unmarshal(lines.Bytes(), &got); err != nil {
		t.Fatalf("ready line %q: %v", lines.Text(), err)
	}
	if !strings.HasPrefix(got.URL, "http://127.0.0.1:") || !strings.HasPrefix(got.SecretManager, "127.0.0.1:") ||
		got.Env["GMAIL_ENDPOINT"] != got.URL+"/" || got.Env["OAUTH_CLIENT_ID"] != "local-client" ||
		got.Env["GMAIL_QUOTA_PROFILE"] != "legacy" {
		t.Fatalf("ready = %+v", got)
	}

	resp, err := http.Get(got.Admin + "mailboxes")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(body), `"alice@example.com"`) {
		t.Fatalf("mailboxes = %s", body)
	}
	resp, err = http.Get(got.Admin + "quota/profile")
	if err != nil {
		t.Fatal(err)
	}
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(body), `"profile":"legacy"`) || !strings.Contains(string(body), `"userUnitsPerMinute":9000`) {
		t.Fatalf("quota profile = %s", body)
	}
	ctx := context.Background()
	sm, err := secretmanager.NewClient(ctx, option.WithEndpoint(got.SecretManager), option.WithoutAuthentication(),
		option.WithGRPCDialOption(grpc.WithTransportCredentials(insecure.NewCredentials())))
	if err != nil {
		t.Fatal(err)
	}
	defer sm.Close()
	v, err := sm.AccessSecretVersion(ctx, &secretmanagerpb.AccessSecretVersionRequest{Name: "projects/local-project/secrets/consent-state-key/versions/latest"})
	if err != nil || string(v.Payload.Data) != "k3y" {
		t.Fatalf("secret = %v, %v", v, err)
	}
	if strings.Contains(stderr.String(), "k3y") || strings.Contains(stderr.String(), "s3cret") {
		t.Fatalf("secret values logged: %s", stderr.String())
	}

	cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-done:
		exited = true
		if err != nil {
			t.Fatalf("exit after SIGTERM: %v; stderr: %s", err, stderr.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("still running 10s after SIGTERM")
	}
}
