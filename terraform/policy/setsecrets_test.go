package policy

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// fakeGcloud records each call's arguments and, for "secrets versions add",
// the payload read from standard input; "versions list" prints
// $FAKE_VERSIONS, "versions access" prints $FAKE_CURRENT and "config
// get-value project" prints $FAKE_PROJECT.
const fakeGcloud = `#!/usr/bin/env bash
set -eu
echo "$*" >>"$FAKE_DIR/calls"
case "$*" in
"config get-value project") echo "${FAKE_PROJECT:-}" ;;
"secrets versions list "*) echo "${FAKE_VERSIONS:-}" ;;
"secrets versions add "*) cat >"$FAKE_DIR/payload-$4" ;;
"secrets versions access latest "*) printf '%s' "${FAKE_CURRENT:-}" ;;
*) echo "unexpected gcloud $*" >&2; exit 1 ;;
esac
`

// Webhook keys as the secret holds them across a rotation.
const (
	olderKey = "whsec_b2xkZXJvbGRlcm9sZGVyb2xkZXJvbGRlcm9sZGVy"
	oldKey   = "whsec_b2xkb2xkb2xkb2xkb2xkb2xkb2xkb2xkb2xkb2xk"
	newKey   = "whsec_bmV3bmV3bmV3bmV3bmV3bmV3bmV3bmV3bmV3bmV3"
)

// TestSetSecrets runs scripts/set-secrets.sh against a fake gcloud.
func TestSetSecrets(t *testing.T) {
	all := []string{"oauth-client-secret", "consent-state-key", "webhook-signing-secret", "connect-link-key", "user-key-secret"}
	generatedKeys := all[1:]
	script, err := filepath.Abs("../../scripts/set-secrets.sh")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name        string
		args        []string
		stdin       string
		project     string // what gcloud config reports
		versions    string // what versions list reports
		wantExit    int
		wantStderr  string
		current     string   // the webhook secret's latest value
		wantWritten []string // secrets that get a new version
		wantWebhook string   // the webhook payload, when it must be exactly this
	}{
		{name: "first run", args: []string{"--project", "p1"}, stdin: "client-s3cret\n", wantWritten: all},
		{name: "project from gcloud config", stdin: "client-s3cret\n", project: "p1", wantWritten: all},
		{name: "generated secrets kept", args: []string{"--project", "p1"}, stdin: "client-s3cret\n", versions: "projects/1/secrets/x/versions/1", wantWritten: []string{"oauth-client-secret"}, wantStderr: "already has a value"},
		{name: "rotate keeps each previous key", args: []string{"--rotate", "--project", "p1"}, stdin: "client-s3cret\n", versions: "projects/1/secrets/x/versions/1",
			current: oldKey + " " + olderKey, wantWritten: all, wantStderr: "holds a new key and the previous one"},
		{name: "drop the old keys", args: []string{"--drop-old", "--project", "p1"}, versions: "projects/1/secrets/x/versions/2",
			current: newKey + " " + oldKey, wantWritten: generatedKeys, wantWebhook: newKey},
		{name: "drop under its former name", args: []string{"--drop-old-webhook-secret", "--project", "p1"}, versions: "projects/1/secrets/x/versions/2",
			current: newKey + " " + oldKey, wantWritten: generatedKeys, wantWebhook: newKey},
		{name: "nothing to drop", args: []string{"--drop-old", "--project", "p1"}, versions: "projects/1/secrets/x/versions/2",
			current: newKey, wantStderr: "nothing to drop"},
		{name: "rotate and drop at once", args: []string{"--rotate", "--drop-old", "--project", "p1"}, stdin: "client-s3cret\n", wantExit: 2, wantStderr: "separate steps"},
		{name: "if missing keeps a set client secret", args: []string{"--if-missing", "--project", "p1"}, stdin: "", versions: "projects/1/secrets/x/versions/1", wantStderr: "oauth-client-secret already has a value"},
		{name: "if missing still asks for an unset one", args: []string{"--if-missing", "--project", "p1"}, stdin: "client-s3cret\n", wantWritten: all},
		{name: "empty client secret", args: []string{"--project", "p1"}, stdin: "\n", wantExit: 2, wantStderr: "empty OAuth client secret"},
		{name: "no input", args: []string{"--project", "p1"}, stdin: "", wantExit: 2, wantStderr: "empty OAuth client secret"},
		{name: "no project", stdin: "client-s3cret\n", wantExit: 2, wantStderr: "no project"},
		{name: "unknown argument", args: []string{"--force"}, stdin: "client-s3cret\n", wantExit: 2, wantStderr: "unknown argument --force"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			bin := filepath.Join(dir, "bin")
			if err := os.MkdirAll(bin, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(bin, "gcloud"), []byte(fakeGcloud), 0o755); err != nil {
				t.Fatal(err)
			}
			cmd := exec.Command("bash", append([]string{script}, tc.args...)...)
			cmd.Stdin = strings.NewReader(tc.stdin)
			cmd.Env = append(os.Environ(), "PATH="+bin+":"+os.Getenv("PATH"), "FAKE_DIR="+dir,
				"FAKE_PROJECT="+tc.project, "FAKE_VERSIONS="+tc.versions, "FAKE_CURRENT="+tc.current)
			var stderr strings.Builder
			cmd.Stderr = &stderr
			err := cmd.Run()
			exit := 0
			if ee, ok := err.(*exec.ExitError); ok {
				exit = ee.ExitCode()
			} else if err != nil {
				t.Fatal(err)
			}
			if exit != tc.wantExit || !strings.Contains(stderr.String(), tc.wantStderr) {
				t.Fatalf("exit %d, stderr\n%s\nwant exit %d and stderr containing %q", exit, stderr.String(), tc.wantExit, tc.wantStderr)
			}

			var written []string
			payloads := map[string]string{}
			for _, name := range []string{"oauth-client-secret", "consent-state-key", "webhook-signing-secret", "connect-link-key", "user-key-secret"} {
				if data, err := os.ReadFile(filepath.Join(dir, "payload-"+name)); err == nil {
					written = append(written, name)
					payloads[name] = string(data)
				}
			}
			if got, want := strings.Join(written, ","), strings.Join(tc.wantWritten, ","); got != want {
				t.Fatalf("secrets written: got %q, want %q", got, want)
			}
			if p, ok := payloads["oauth-client-secret"]; ok && p != "client-s3cret" {
				t.Errorf("oauth client secret payload = %q, want %q (no trailing newline)", p, "client-s3cret")
			}
			p, ok := payloads["webhook-signing-secret"]
			switch {
			case !ok:
			case tc.wantWebhook != "":
				if p != tc.wantWebhook {
					t.Errorf("webhook secret payload = %q, want %q", p, tc.wantWebhook)
				}
			case tc.current != "":
				// Rotated: a new key first, then the previous newest, and no older one.
				if !regexp.MustCompile(`^whsec_[A-Za-z0-9+/]{43}= ` + regexp.QuoteMeta(oldKey) + `$`).MatchString(p) {
					t.Errorf("rotated webhook secret = %q, want a new whsec_ key then %q only", p, oldKey)
				}
			case !regexp.MustCompile(`^whsec_[A-Za-z0-9+/]{43}=$`).MatchString(p):
				t.Errorf("webhook secret payload = %q, want whsec_ and 32 random bytes in base64", p)
			}
			for _, name := range []string{"consent-state-key", "connect-link-key", "user-key-secret"} {
				p, ok := payloads[name]
				switch {
				case !ok:
				case tc.wantWebhook != "":
					// Dropped: the newest key alone.
					if p != newKey {
						t.Errorf("%s after drop = %q, want %q", name, p, newKey)
					}
				case tc.current != "":
					// Rotated, as the webhook secret: a new key, then the previous newest only.
					if !regexp.MustCompile(`^[A-Za-z0-9+/]{43}= ` + regexp.QuoteMeta(oldKey) + `$`).MatchString(p) {
						t.Errorf("rotated %s = %q, want a new key then %q only", name, p, oldKey)
					}
				case !regexp.MustCompile(`^[A-Za-z0-9+/]{43}=$`).MatchString(p):
					t.Errorf("%s payload = %q, want 32 random bytes in base64", name, p)
				}
			}

			calls, _ := os.ReadFile(filepath.Join(dir, "calls"))
			for name, p := range payloads {
				if strings.Contains(string(calls), p) || strings.Contains(stderr.String(), p) {
					t.Errorf("the %s value appears on a command line or in the output", name)
				}
			}
			for _, line := range strings.Split(strings.TrimSpace(string(calls)), "\n") {
				if strings.HasPrefix(line, "secrets ") && !strings.Contains(line, "--project=p1") {
					t.Errorf("gcloud %s: want --project=p1", line)
				}
			}
		})
	}
}
