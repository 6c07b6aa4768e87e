package webhooksig

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gmailwatch/gmailwatch/scripts/testenv"
)

// verifierDir holds the independent verifier: the standardwebhooks npm
// package, pinned in package-lock.json, driven by verify.js.
const verifierDir = "../../scripts/webhook-verify"

type nodeCase struct {
	Op        string            `json:"op"`
	Secret    string            `json:"secret"`
	ID        string            `json:"id,omitempty"`
	Timestamp int64             `json:"timestamp,omitempty"`
	Body      string            `json:"body"`
	Headers   map[string]string `json:"headers,omitempty"`
}

type nodeResult struct {
	OK        bool   `json:"ok"`
	Error     string `json:"error"`
	Signature string `json:"signature"`
}

// runNode runs the cases through verify.js, installing the pinned package
// first when node_modules is missing. Without node the test is skipped on a
// workstation and fails under CI.
func runNode(t *testing.T, cases []nodeCase) []nodeResult {
	t.Helper()
	node, err := exec.LookPath("node")
	if err != nil {
		testenv.Missing(t, "node is not installed: scripts/setup.sh installs Node.js for the independent standardwebhooks check")
	}
	if _, err := os.Stat(filepath.Join(verifierDir, "node_modules", "standardwebhooks")); err != nil {
		npm, err := exec.LookPath("npm")
		if err != nil {
			t.Fatalf("node is installed but npm is not: cannot install standardwebhooks into %s", verifierDir)
		}
		cmd := exec.Command(npm, "ci", "--no-audit", "--no-fund")
		cmd.Dir = verifierDir
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("npm ci in %s: %v\n%s\n(the standardwebhooks package could not be installed; check registry access)", verifierDir, err, out)
		}
	}
	in, err := json.Marshal(cases)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(node, "verify.js")
	cmd.Dir = verifierDir
	cmd.Stdin = bytes.NewReader(in)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("node verify.js: %v\n%s", err, stderr.String())
	}
	var results []nodeResult
	if err := json.Unmarshal(out, &results); err != nil || len(results) != len(cases) {
		t.Fatalf("node verify.js output %q: %v (want %d results)", out, err, len(cases))
	}
	return results
}

func TestIndependentVerifier(t *testing.T) {
	body := `{"specversion":"1","type":"gmail.message.received","id":"0f1e2d3c","subject":"Grüße"}`
	headers := func(secrets string, ts time.Time, id string) map[string]string {
		h, err := mustParse(t, secrets).Header(id, ts, []byte(body))
		if err != nil {
			t.Fatal(err)
		}
		m := map[string]string{}
		for k := range h {
			m[strings.ToLower(k)] = h.Get(k)
		}
		return m
	}
	now := time.Now()
	tests := []struct {
		name    string
		c       nodeCase
		wantOK  bool
		wantSig string
	}{
		{"node signs the published vector", nodeCase{Op: "sign", Secret: vectorSecret, ID: vectorID, Timestamp: vectorTimestamp, Body: vectorBody}, true, vectorSignature},
		{"node verifies our signature", nodeCase{Op: "verify", Secret: vectorSecret, Body: body, Headers: headers(vectorSecret, now, "0f1e2d3c")}, true, ""},
		{"node verifies during rotation", nodeCase{Op: "verify", Secret: vectorSecret, Body: body, Headers: headers(otherSecret+" "+vectorSecret, now, "0f1e2d3c")}, true, ""},
		{"altered body", nodeCase{Op: "verify", Secret: vectorSecret, Body: body + " ", Headers: headers(vectorSecret, now, "0f1e2d3c")}, false, ""},
		{"wrong secret", nodeCase{Op: "verify", Secret: otherSecret, Body: body, Headers: headers(vectorSecret, now, "0f1e2d3c")}, false, ""},
		{"old timestamp", nodeCase{Op: "verify", Secret: vectorSecret, Body: body, Headers: headers(vectorSecret, now.Add(-10*time.Minute), "0f1e2d3c")}, false, ""},
	}
	cases := make([]nodeCase, len(tests))
	for i, tc := range tests {
		cases[i] = tc.c
	}
	results := runNode(t, cases)
	for i, tc := range tests {
		got := results[i]
		if got.OK != tc.wantOK || got.Signature != tc.wantSig {
			t.Errorf("%s: node says ok=%v signature=%q error=%q; want ok=%v signature=%q", tc.name, got.OK, got.Signature, got.Error, tc.wantOK, tc.wantSig)
		}
	}
}
