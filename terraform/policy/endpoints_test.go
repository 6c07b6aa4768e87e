package policy

import (
	"os"
	"strings"
	"testing"
)

// TestThreeWebhookEndpoints plans with three endpoints and no webhook_url:
// each endpoint is one map entry and gets its own filtered subscription,
// signing secret, URL secret and dead-letter topic, and the single webhook's
// "default" endpoint is gone.
func TestThreeWebhookEndpoints(t *testing.T) {
	bin := os.Getenv(tfBinEnv)
	if bin == "" {
		t.Skipf("%s is not set: run scripts/tf-check.sh to plan with three webhook endpoints", tfBinEnv)
	}
	out, err := planWith(t, bin, `webhook_url=`,
		`webhook_endpoints={crm={event_types=["gmail.message.received","gmail.message.sent"]},assistant={app_ref="assistant",rate_per_second=5},audit={enabled=false}}`,
		`webhook_endpoint_urls={crm="https://crm.example.com/h",assistant="https://a.example.com/h",audit="https://audit.example.com/h"}`)
	if err != nil {
		t.Fatalf("plan with three endpoints: %v\n%s", err, out)
	}
	plan := string(out)
	for _, name := range []string{"crm", "assistant", "audit"} {
		for _, addr := range []string{
			`google_pubsub_subscription.webhook["` + name + `"] will be created`,
			`google_pubsub_topic.webhook_dead_letter["` + name + `"] will be created`,
			`google_pubsub_subscription.webhook_dead_letter["` + name + `"] will be created`,
			`google_secret_manager_secret.webhook_endpoint["` + name + `"] will be created`,
			`google_secret_manager_secret.webhook_url["` + name + `"] will be created`,
			`google_secret_manager_secret_iam_member.webhook_accessor["` + name + `"] will be created`,
			`google_pubsub_topic_iam_member.dead_letter_publisher["` + name + `"] will be created`,
			`google_monitoring_alert_policy.backlog["webhook_backlog_` + name + `"] will be created`,
		} {
			if !strings.Contains(plan, addr) {
				t.Errorf("the plan lacks %s", addr)
			}
		}
	}
	for _, want := range []string{
		`filter                     = "(attributes.type = \"gmail.message.received\" OR attributes.type = \"gmail.message.sent\")"`,
		`filter                     = "attributes.appRef = \"assistant\""`,
		`name                       = "gmailwatch-webhook-crm"`,
	} {
		if !strings.Contains(plan, want) {
			t.Errorf("the plan lacks %s", want)
		}
	}
	if strings.Contains(plan, `["default"]`) {
		t.Error("the plan has a default endpoint although webhook_url is empty")
	}
	if strings.Contains(plan, "crm.example.com") {
		t.Error("the plan shows an endpoint URL")
	}
}

// TestWebhookEndpointsRefused plans with bad endpoint maps: each is refused
// with its own message.
func TestWebhookEndpointsRefused(t *testing.T) {
	bin := os.Getenv(tfBinEnv)
	if bin == "" {
		t.Skipf("%s is not set: run scripts/tf-check.sh", tfBinEnv)
	}
	tests := []struct {
		name      string
		endpoints string
		urls      string
		want      string
	}{
		{"url missing", `{crm={}}`, `{}`, "exactly one URL for each webhook_endpoints entry"},
		{"url without endpoint", `{}`, `{crm="https://crm.example.com/h"}`, "exactly one URL for each webhook_endpoints entry"},
		{"http url", `{crm={}}`, `{crm="http://crm.example.com/h"}`, "must be an https:// URL"},
		{"bad name", `{CRM={}}`, `{CRM="https://crm.example.com/h"}`, "name must be 1-20 lowercase letters"},
		{"default name", `{default={}}`, `{default="https://crm.example.com/h"}`, "not default"},
		{"unknown type", `{crm={event_types=["gmail.message.starred"]}}`, `{crm="https://crm.example.com/h"}`, "event type must be"},
		{"quote in appRef", `{crm={app_ref="a\"b"}}`, `{crm="https://crm.example.com/h"}`, "without quotes or backslashes"},
		{"negative rate", `{crm={rate_per_second=-1}}`, `{crm="https://crm.example.com/h"}`, "rate_per_second must be >= 0"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			out, err := planWith(t, bin, "webhook_endpoints="+tc.endpoints, "webhook_endpoint_urls="+tc.urls)
			if err == nil {
				t.Fatalf("plan succeeded, want it refused")
			}
			got := strings.Join(strings.Fields(string(out)), " ")
			if !strings.Contains(got, tc.want) {
				t.Errorf("got\n%s\nwant an error containing %q", out, tc.want)
			}
		})
	}
}
