package policy

import (
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// deployStubs are a gcloud, terraform and go that record each call in
// $STUB_DIR/calls and keep what gcloud created (secrets, agents, versions)
// as files under $STUB_DIR/cloud, so a second run sees the first's work.
var deployStubs = map[string]string{
	"gcloud": `#!/usr/bin/env bash
set -eu
c="$STUB_DIR/cloud"; mkdir -p "$c"
echo "gcloud $*" >>"$STUB_DIR/calls"
case "$*" in
"auth list "*) echo "ops@example.com" ;;
"billing projects describe "*) echo "${STUB_BILLING:-True}" ;;
"resource-manager org-policies describe "*) echo "${STUB_DRS:-{\}}" ;;
"services enable "*) ;;
"beta services identity create --service="*) s="${5#--service=}"; touch "$c/agent-$s"; echo "service-1@gcp-sa-${s%%.*}.iam.gserviceaccount.com" ;;
"secrets describe "*) [[ -e "$c/secret-$3" ]] ;;
"secrets create "*) touch "$c/secret-$3" ;;
"secrets versions list "*) [[ -s "$c/secret-$4" ]] && echo "projects/1/secrets/$4/versions/1" || true ;;
"secrets versions add "*) cat >>"$c/secret-$4"; echo >>"$c/secret-$4" ;;
"secrets versions access latest "*) s="${5#--secret=}"; tail -n1 "$c/secret-$s" ;;
*) echo "unexpected gcloud $*" >&2; exit 1 ;;
esac
`,
	"terraform": `#!/usr/bin/env bash
set -eu
echo "terraform $*" >>"$STUB_DIR/calls"
case "$*" in
"-chdir=terraform init "*) ;;
"-chdir=terraform console") cat >/dev/null; echo '"{\"identities\":[\"eventarc.googleapis.com\",\"pubsub.googleapis.com\"],\"kept\":{\"connect_link_key\":\"gw-connect-link-key\",\"state_key\":\"gw-consent-state-key\",\"user_key\":\"gw-user-key-secret\"},\"project\":\"demo-project\"}"' ;;
"-chdir=terraform apply "*) ;;
"-chdir=terraform output -raw set_secrets_command") echo "OAUTH_CLIENT_SECRET_NAME=gw-oauth-client-secret STATE_KEY_SECRET_NAME=gw-consent-state-key WEBHOOK_SECRET_NAME=gw-webhook-signing-secret CONNECT_LINK_KEY_SECRET_NAME=gw-connect-link-key USER_KEY_SECRET_NAME=gw-user-key-secret scripts/set-secrets.sh --project demo-project" ;;
"-chdir=terraform output -raw "*) echo "https://example.test/$4" ;;
*) echo "unexpected terraform $*" >&2; exit 1 ;;
esac
`,
	"go": `#!/usr/bin/env bash
echo "go $*" >>"$STUB_DIR/calls"
`,
}

// mutating reports whether a recorded call changes something in the project.
func mutating(call string) bool {
	for _, p := range []string{"gcloud secrets create ", "gcloud secrets versions add "} {
		if strings.HasPrefix(call, p) {
			return true
		}
	}
	return false
}

// steps reduces the calls to the order of deploy.sh's steps.
func steps(calls []string) []string {
	var out []string
	add := func(s string) {
		if len(out) == 0 || out[len(out)-1] != s {
			out = append(out, s)
		}
	}
	for _, c := range calls {
		switch {
		case strings.Contains(c, " init "):
			add("init")
		case strings.HasPrefix(c, "gcloud auth list"), strings.HasPrefix(c, "gcloud billing"), strings.HasPrefix(c, "gcloud resource-manager"):
			add("checks")
		case strings.HasPrefix(c, "go "):
			add("vet and packaging")
		case strings.HasPrefix(c, "gcloud beta services identity create"):
			add("service agents")
		case strings.HasPrefix(c, "gcloud secrets describe"), strings.HasPrefix(c, "gcloud secrets create"):
			add("kept secrets")
		case strings.Contains(c, " apply "):
			add("apply")
		case strings.HasPrefix(c, "gcloud secrets versions"):
			add("secret values")
		case strings.Contains(c, "output -raw consent_url"), strings.Contains(c, "output -raw accounts_url"), strings.Contains(c, "output -raw dashboard_url"):
			add("print")
		}
	}
	return out
}

// needTfvars gives deploy.sh the terraform.tfvars it requires (the stub
// terraform reads nothing from it) when the repository has none.
func needTfvars(t *testing.T) {
	tfvars := filepath.Join(repoRoot(t), "terraform", "terraform.tfvars")
	if _, err := os.Stat(tfvars); err == nil {
		return
	}
	if err := os.WriteFile(tfvars, []byte("# written by the deploy.sh tests\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Remove(tfvars) })
}

// runDeploy runs scripts/deploy.sh in a copy of the repository's scripts
// with the stubs first on PATH.
func runDeploy(t *testing.T, dir string, stdin string, env ...string) ([]string, string, error) {
	t.Helper()
	root := repoRoot(t)
	bin := filepath.Join(dir, "bin")
	if err := os.MkdirAll(bin, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, body := range deployStubs {
		if err := os.WriteFile(filepath.Join(bin, name), []byte(body), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	_ = os.Remove(filepath.Join(dir, "calls"))
	cmd := exec.Command("bash", filepath.Join(root, "scripts", "deploy.sh"), "-auto-approve")
	cmd.Env = append(append(os.Environ(), "PATH="+bin+":"+os.Getenv("PATH"), "STUB_DIR="+dir), env...)
	cmd.Stdin = strings.NewReader(stdin)
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	data, _ := os.ReadFile(filepath.Join(dir, "calls"))
	return strings.Split(strings.TrimSpace(string(data)), "\n"), out.String(), err
}

// TestDeployDryRun runs scripts/deploy.sh twice against stub gcloud,
// terraform and go: the steps come in order, the second run changes
// nothing, and the service agents it creates are the ones the plan binds.
func TestDeployDryRun(t *testing.T) {
	needTfvars(t)
	dir := t.TempDir()
	calls, out, err := runDeploy(t, dir, "client-s3cret\n")
	if err != nil {
		t.Fatalf("first run: %v\n%s", err, out)
	}
	want := []string{"init", "checks", "vet and packaging", "service agents", "kept secrets", "apply", "secret values", "print"}
	if got := steps(calls); !reflect.DeepEqual(got, want) {
		t.Fatalf("first run steps %v, want %v\ncalls:\n%s", got, want, strings.Join(calls, "\n"))
	}
	for _, w := range []string{
		"gcloud beta services identity create --service=eventarc.googleapis.com --project=demo-project",
		"gcloud secrets create gw-user-key-secret --project=demo-project --replication-policy=automatic",
		"terraform -chdir=terraform apply -input=false -var=deployer=user:ops@example.com -auto-approve",
	} {
		if !strings.Contains(strings.Join(calls, "\n"), w) {
			t.Errorf("first run made no call %q", w)
		}
	}
	for _, w := range []string{"consent URL:      https://example.test/consent_url", "accounts API URL: https://example.test/accounts_url", "dashboard:        https://example.test/dashboard_url"} {
		if !strings.Contains(out, w) {
			t.Errorf("output lacks %q:\n%s", w, out)
		}
	}
	if p := os.Getenv("TF_PLAN_JSON"); p != "" {
		plan := readPlan(t, p)
		var created []string
		for _, c := range calls {
			if s, ok := strings.CutPrefix(c, "gcloud beta services identity create --service="); ok {
				created = append(created, strings.Fields(s)[0])
			}
		}
		var planned []string
		ids, _ := plan.outputs["service_identities"].([]any)
		for _, s := range ids {
			planned = append(planned, s.(string))
		}
		if !reflect.DeepEqual(created, planned) {
			t.Errorf("deploy.sh creates agents %v, the plan's service_identities are %v", created, planned)
		}
	}

	// Again, with nothing on standard input: nothing is created or added.
	calls, out, err = runDeploy(t, dir, "")
	if err != nil {
		t.Fatalf("second run: %v\n%s", err, out)
	}
	if got := steps(calls); !reflect.DeepEqual(got, want) {
		t.Fatalf("second run steps %v, want %v", got, want)
	}
	for _, c := range calls {
		if mutating(c) {
			t.Errorf("second run changed something: %s", c)
		}
	}
}

// TestDeployRefuses checks that a missing prerequisite stops deploy.sh
// before it creates anything.
func TestDeployRefuses(t *testing.T) {
	needTfvars(t)
	for _, tc := range []struct{ name, env, want string }{
		{"billing off", "STUB_BILLING=False", "billing is not enabled on demo-project"},
		{"domain restricted sharing", `STUB_DRS={"listPolicy":{"allowedValues":["C0abc"]}}`, "iam.allowedPolicyMemberDomains refuses allUsers"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			calls, out, err := runDeploy(t, t.TempDir(), "client-s3cret\n", tc.env)
			if err == nil || !strings.Contains(out, tc.want) {
				t.Fatalf("err %v, output\n%s\nwant a failure saying %q", err, out, tc.want)
			}
			for _, c := range calls {
				if mutating(c) || strings.Contains(c, " apply ") || strings.Contains(c, "identity create") {
					t.Errorf("a refused deploy made %s", c)
				}
			}
		})
	}
}
