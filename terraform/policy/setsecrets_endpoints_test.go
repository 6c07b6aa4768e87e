package policy

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestSetSecretsEndpointSecrets: each secret of WEBHOOK_ENDPOINT_SECRET_NAMES
// gets a whsec_ key as the webhook signing secret does, and a bad name is
// refused before anything is written.
func TestSetSecretsEndpointSecrets(t *testing.T) {
	script, err := filepath.Abs("../../scripts/set-secrets.sh")
	if err != nil {
		t.Fatal(err)
	}
	runWith := func(t *testing.T, names string) (string, string, error) {
		dir := t.TempDir()
		bin := filepath.Join(dir, "bin")
		if err := os.MkdirAll(bin, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(bin, "gcloud"), []byte(fakeGcloud), 0o755); err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command("bash", script, "--project", "p1")
		cmd.Stdin = strings.NewReader("client-s3cret\n")
		cmd.Env = append(os.Environ(), "PATH="+bin+":"+os.Getenv("PATH"), "FAKE_DIR="+dir, "FAKE_VERSIONS=", "WEBHOOK_ENDPOINT_SECRET_NAMES="+names)
		var stderr strings.Builder
		cmd.Stderr = &stderr
		err := cmd.Run()
		return dir, stderr.String(), err
	}
	dir, stderr, err := runWith(t, "gw-webhook-crm-signing-secret gw-webhook-audit-signing-secret")
	if err != nil {
		t.Fatalf("set-secrets: %v\n%s", err, stderr)
	}
	key := regexp.MustCompile(`^whsec_[A-Za-z0-9+/]{43}=$`)
	for _, name := range []string{"gw-webhook-crm-signing-secret", "gw-webhook-audit-signing-secret", "webhook-signing-secret"} {
		data, err := os.ReadFile(filepath.Join(dir, "payload-"+name))
		if err != nil || !key.Match(data) {
			t.Errorf("%s: payload %q (%v), want a whsec_ key", name, data, err)
		}
	}
	if !strings.Contains(stderr, "--secret=gw-webhook-crm-signing-secret") {
		t.Errorf("stderr does not say how to read the crm endpoint's key:\n%s", stderr)
	}

	dir, stderr, err = runWith(t, "ok-name bad/name")
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 2 || !strings.Contains(stderr, "bad/name is not a secret id") {
		t.Fatalf("bad name: %v\n%s\nwant exit 2 naming it", err, stderr)
	}
	if files, _ := filepath.Glob(filepath.Join(dir, "payload-*")); len(files) != 0 {
		t.Errorf("a refused run wrote %v", files)
	}
}
