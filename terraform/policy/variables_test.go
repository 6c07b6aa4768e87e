package policy

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// tfBinEnv names the Terraform binary scripts/tf-check.sh built; its CLI
// configuration (dev_overrides) comes in TF_CLI_CONFIG_FILE.
const tfBinEnv = "TF_BIN"

// TestVariableValidation plans with one bad variable at a time on top of the
// example variables: each must be refused with its own message (a refused
// plan writes no plan and no state, so nothing changes).
func TestVariableValidation(t *testing.T) {
	bin := os.Getenv(tfBinEnv)
	if bin == "" {
		t.Skipf("%s is not set: run scripts/tf-check.sh to check variable validation with Terraform", tfBinEnv)
	}
	tests := []struct {
		name, value, want string
	}{
		{"project_id", "My_Project", "The project_id must be"},
		{"project_number", "gmailwatch-demo", "The project_number must be the numeric project number"},
		{"region", "Mars", "The region must be"},
		{"name_prefix", "a-prefix-longer-than-twenty", "The name_prefix must be"},
		{"oauth_client_id", "not-a-client-id", "The oauth_client_id must look like"},
		{"consent_public_url", "http://consent.example.com/", "The consent_public_url must be"},
		{"gmail_scope", "https://mail.google.com/", "The gmail_scope must be"},
		{"gmail_labels", `["INBOX,SPAM"]`, "The gmail_labels must be"},
		{"gmail_labels", `[]`, "The gmail_labels must be"},
		{"gmail_label_filter", "INCLUDE_ALL", "The gmail_label_filter must be"},
		{"event_types", `["gmail.message.starred"]`, "The event_types must name"},
		{"event_types", `[]`, "The event_types must name"},
		{"gmail_topic_name", "goog-topic", "The gmail_topic_name must be"},
		{"oauth_client_secret_name", "gmail-refresh-admin", "The oauth_client_secret_name must be"},
		{"webhook_url", "http://hooks.example.com/gmail", "The webhook_url must be empty or an https:// URL"},
		{"webhook_url", "https://user:s3cret@hooks.example.com/gmail", "without user:password@, query string or fragment"},
		{"webhook_url", "https://hooks.example.com/gmail?token=s3cret", "without user:password@, query string or fragment"},
		{"webhook_url", "https://hooks.example.com/gmail#s3cret", "without user:password@, query string or fragment"},
		{"name_prefix", "gmail-refresh-", "The name_prefix must be"},
		{"events_topic_name", "goog-events", "The events_topic_name must be"},
		{"state_key_secret_name", "gmail-refresh-key", "The state_key_secret_name must be"},
		{"builder_wait_seconds", "30", "The builder_wait_seconds must be"},
		{"deployer", "allUsers", "The deployer must be"},
		{"webhook_timeout", "15", "The webhook_timeout must be a Go duration"},
		{"renew_schedule", "0 * * *", "The renew_schedule must be a five-field cron"},
		{"renew_before", "two days", "The renew_before must be a Go duration"},
		{"quota_units_per_minute", "99", "The quota_units_per_minute must be"},
		{"gmail_quota_profile", "standard-2025", "The gmail_quota_profile must be"},
		{"renew_quota_share", "0", "The renew_quota_share must be"},
		{"renew_quota_share", "1.5", "The renew_quota_share must be"},
		{"function_settings", `{consent={memory="256M",timeout=60,max_instances=1}}`, "must have an entry for each of consent, accounts, notify, renew and webhook"},
		{"function_settings", `{consent={memory="256M",timeout=60,max_instances=1},accounts={memory="256M",timeout=60,max_instances=1},notify={memory="256M",timeout=900,max_instances=1},renew={memory="256M",timeout=60,max_instances=1},webhook={memory="256M",timeout=60,max_instances=1}}`, "timeout of 1-540 s"},
		{"function_settings", `{consent={memory="256M",timeout=60,max_instances=1},accounts={memory="256M",timeout=60,max_instances=1},notify={memory="256M",timeout=300,max_instances=1,concurrency=80},renew={memory="256M",timeout=60,max_instances=1},webhook={memory="256M",timeout=60,max_instances=1}}`, "a concurrency above 1 needs a cpu of at least"},
		{"function_settings", `{consent={memory="256M",timeout=60,max_instances=1},accounts={memory="256M",timeout=60,max_instances=1},notify={memory="256M",timeout=300,max_instances=1,cpu="0.5",concurrency=8},renew={memory="256M",timeout=60,max_instances=1},webhook={memory="256M",timeout=60,max_instances=1}}`, "a concurrency above 1 needs a cpu of at least"},
		{"function_settings", `{consent={memory="256M",timeout=60,max_instances=1},accounts={memory="256M",timeout=60,max_instances=1},notify={memory="512M",timeout=300,max_instances=1,cpu="one",concurrency=1},renew={memory="256M",timeout=60,max_instances=1},webhook={memory="256M",timeout=60,max_instances=1}}`, "its cpu null or a number"},
		{"alert_emails", `["oncall"]`, "Each alert_emails entry must be an email address"},
		{"accounts_invokers", `["allUsers"]`, "Each accounts_invokers entry must be serviceAccount:"},
		{"accounts_invokers", `["domain:example.com"]`, "Each accounts_invokers entry must be serviceAccount:"},
		{"accounts_invokers", `["group:ops@example.com"]`, "Each accounts_invokers entry must be serviceAccount:"},
		{"accounts_ingress", "ALLOW_INTERNAL_AND_GCLB", "The accounts_ingress must be"},
		{"return_origins", `["http://app.example.com"]`, "Each return_origins entry must be an https origin"},
		{"return_origins", `["https://app.example.com/path"]`, "Each return_origins entry must be an https origin"},
		{"allowed_domains", `["@example.com"]`, "Each allowed_domains entry must be"},
		{"allowed_addresses", `["a@example.com,b@example.com"]`, "Each allowed_addresses entry must be an email address"},
		{"connect_link_ttl", "thirty", "The connect_link_ttl must be a duration"},
		{"connect_result_ttl", "ten", "The connect_result_ttl must be a duration"},
		{"user_key_secret_name", "gmail-refresh-keys", "The user_key_secret_name must be a secret id"},
		{"connect_link_key_secret_name", "gmail-refresh-link", "The connect_link_key_secret_name must be a secret id"},
		{"connect_mode", "domain", "The connect_mode must be consent, delegation or both"},
		{"delegation_domain", "Example.COM", "The delegation_domain must be"},
		{"delegation_admin", "admin", "The delegation_admin must be an address"},
		{"delegation_org_unit", "Support", "The delegation_org_unit must be an org unit path"},
		{"delegation_group", "support", "The delegation_group must be a group address"},
	}
	for _, tc := range tests {
		t.Run(tc.name+"="+tc.value, func(t *testing.T) {
			t.Parallel()
			out, err := planWith(t, bin, tc.name+"="+tc.value)
			if err == nil {
				t.Fatalf("plan with %s=%s succeeded, want it refused", tc.name, tc.value)
			}
			// Terraform wraps long messages; compare with whitespace folded.
			got := strings.Join(strings.Fields(string(out)), " ")
			if !strings.Contains(got, tc.want) || !strings.Contains(got, "Invalid value for variable") {
				t.Errorf("plan with %s=%s: got\n%s\nwant an invalid-variable error containing %q", tc.name, tc.value, out, tc.want)
			}
		})
	}
}

// planWith plans terraform/ with the example variables and vars (NAME=VALUE)
// on top, with an empty state in a directory of the test's own, and returns
// Terraform's output.
func planWith(t *testing.T, bin string, vars ...string) ([]byte, error) {
	t.Helper()
	dir, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	work := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	args := []string{"plan", "-no-color", "-input=false", "-lock=false",
		"-state=" + filepath.Join(work, "terraform.tfstate"),
		"-var-file=example.tfvars",
		"-var=build_dir=" + filepath.Join(work, "build")}
	for _, v := range vars {
		args = append(args, "-var="+v)
	}
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "TF_DATA_DIR="+filepath.Join(work, "data"),
		"HTTPS_PROXY=http://127.0.0.1:9", "HTTP_PROXY=http://127.0.0.1:9", "NO_PROXY=")
	return cmd.CombinedOutput()
}
