package policy

import (
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"
)

const (
	gmailPushAccount = "serviceAccount:gmail-api-push@system.gserviceaccount.com"
	pubsubEvent      = "google.cloud.pubsub.topic.v1.messagePublished"
	retryPolicy      = "RETRY_POLICY_RETRY"
	projectClause    = `resource.type == "cloudresourcemanager.googleapis.com/Project"`
)

// refreshPrefixClause is the only condition that opens secrets by name prefix.
var refreshPrefixClause = regexp.MustCompile(`^resource\.name\.startsWith\("projects/[0-9]+/secrets/gmail-refresh-"\)$`)

// rule is one policy: check lists every violation found in a plan.
type rule struct {
	name  string
	check func(*plan) []string
}

var rules = []rule{
	{"no primitive roles", noPrimitiveRoles},
	{"only consent is public", onlyConsentIsPublic},
	{"each function has its own service account", ownServiceAccounts},
	{"secret access only on named secrets or the refresh-token prefix", secretAccessScoped},
	{"gmail push account publishes to the gmail topic", gmailPublisher},
	{"event triggers retry", triggersRetry},
	{"scheduler calls renew with oidc", schedulerUsesOIDC},
	{"no secret values in terraform", noSecretVersions},
	{"delegation signs only as the delegated account", delegationSigning},
	{"delegation APIs are enabled", delegationAPIs},
	{"events reach subscribers in order per user", eventsOrdered},
}

func withBindings(p *plan, f func([]binding) []string) []string {
	bs, err := p.bindings()
	if err != nil {
		return []string{err.Error()}
	}
	return f(bs)
}

func noPrimitiveRoles(p *plan) []string {
	return withBindings(p, func(bs []binding) []string {
		var out []string
		for _, b := range bs {
			switch b.role {
			case "roles/owner", "roles/editor", "roles/viewer":
				out = append(out, fmt.Sprintf("%s grants primitive role %s to %s", b.address, b.role, b.member))
			}
		}
		return out
	})
}

func isPublic(member string) bool {
	return member == "allUsers" || member == "allAuthenticatedUsers"
}

func onlyConsentIsPublic(p *plan) []string {
	consent, ok := p.function("Consent")
	if !ok {
		return []string{"no function with entry point Consent"}
	}
	return withBindings(p, func(bs []binding) []string {
		var out []string
		public := false
		for _, b := range bs {
			if !isPublic(b.member) {
				continue
			}
			if strings.HasPrefix(b.typ, "google_cloud_run_") && b.role == "roles/run.invoker" && b.target == consent.name {
				public = true
				continue
			}
			out = append(out, fmt.Sprintf("%s grants %s to %s on %q: only the consent function's invoker may be public", b.address, b.role, b.member, b.target))
		}
		if !public {
			out = append(out, fmt.Sprintf("consent function %q has no allUsers run.invoker binding: users could not reach it", consent.name))
		}
		return out
	})
}

func isDefaultAccount(email string) bool {
	return strings.HasSuffix(email, "-compute@developer.gserviceaccount.com") || strings.HasSuffix(email, "@appspot.gserviceaccount.com")
}

func ownServiceAccounts(p *plan) []string {
	var out []string
	funcs := p.functions()
	for _, want := range []string{"Consent", "Notify", "Renew"} {
		if _, ok := p.function(want); !ok {
			out = append(out, "no function with entry point "+want)
		}
	}
	owner := map[string]string{}
	for _, f := range funcs {
		sa := f.serviceAccount
		switch {
		case sa == "":
			out = append(out, f.address+" has no runtime service account (unset or unknown at plan time)")
			continue
		case isDefaultAccount(sa):
			out = append(out, fmt.Sprintf("%s runs as the default account %s", f.address, sa))
		case owner[sa] != "":
			out = append(out, fmt.Sprintf("%s shares service account %s with %s", f.address, sa, owner[sa]))
		}
		owner[sa] = f.address
	}
	for _, f := range funcs {
		if f.trigger == nil {
			continue
		}
		if ts := str(f.trigger, "service_account_email"); ts != "" && ts != f.serviceAccount {
			out = append(out, fmt.Sprintf("%s is triggered as %s, not as its own account %s", f.address, ts, f.serviceAccount))
		}
	}
	return out
}

// secretRoles returns the roles of the plan that carry Secret Manager
// permissions: predefined secretmanager roles and custom roles listing any.
func secretRoles(p *plan, bs []binding) map[string]bool {
	custom := map[string][]string{}
	for _, r := range p.ofType("google_project_iam_custom_role") {
		perms, _ := r.Values["permissions"].([]any)
		for _, perm := range perms {
			s, _ := perm.(string)
			custom[str(r.Values, "role_id")] = append(custom[str(r.Values, "role_id")], s)
		}
	}
	out := map[string]bool{}
	for _, b := range bs {
		if strings.HasPrefix(b.role, "roles/secretmanager.") {
			out[b.role] = true
		}
		if i := strings.LastIndex(b.role, "/roles/"); i >= 0 {
			for _, perm := range custom[b.role[i+len("/roles/"):]] {
				if strings.HasPrefix(perm, "secretmanager.") {
					out[b.role] = true
				}
			}
		}
	}
	return out
}

// prefixScoped reports whether a CEL condition limits a grant to the
// refresh-token secrets: a disjunction of the prefix clause and, at most, the
// clause admitting the project-level secrets.create check.
func prefixScoped(expr string) bool {
	prefix := false
	for _, clause := range strings.Split(expr, "||") {
		clause = strings.TrimSpace(clause)
		switch {
		case refreshPrefixClause.MatchString(clause):
			prefix = true
		case clause == projectClause:
		default:
			return false
		}
	}
	return prefix
}

func secretAccessScoped(p *plan) []string {
	return withBindings(p, func(bs []binding) []string {
		var out []string
		roles := secretRoles(p, bs)
		prefixGrant := map[string]bool{}
		for _, b := range bs {
			if !roles[b.role] {
				continue
			}
			switch {
			case strings.HasPrefix(b.typ, "google_secret_manager_secret_iam_"):
				if b.target == "" || strings.Contains(b.target, "*") {
					out = append(out, fmt.Sprintf("%s grants %s on an unnamed secret", b.address, b.role))
				}
			case b.typ == "google_project_iam_member" || b.typ == "google_project_iam_binding":
				if !prefixScoped(b.condition) {
					out = append(out, fmt.Sprintf("%s grants %s to %s project-wide with condition %q: it must be limited to the gmail-refresh- prefix", b.address, b.role, b.member, b.condition))
					continue
				}
				prefixGrant[b.member] = true
			default:
				out = append(out, fmt.Sprintf("%s grants %s on %s, which is neither a named secret nor the project with a prefix condition", b.address, b.role, b.typ))
			}
		}
		for _, entry := range []string{"Consent", "Notify", "Renew"} {
			if f, ok := p.function(entry); ok && !prefixGrant["serviceAccount:"+f.serviceAccount] {
				out = append(out, fmt.Sprintf("%s (%s) has no grant on the gmail-refresh- secrets it needs", f.address, f.serviceAccount))
			}
		}
		return out
	})
}

// topicID reduces "projects/P/topics/T" or "T" to "T".
func topicID(s string) string {
	return s[strings.LastIndex(s, "/")+1:]
}

func gmailPublisher(p *plan) []string {
	notify, ok := p.function("Notify")
	if !ok {
		return []string{"no function with entry point Notify"}
	}
	gmailTopic := topicID(notify.env["GMAIL_TOPIC"])
	if gmailTopic == "" {
		return []string{notify.address + " has no GMAIL_TOPIC"}
	}
	return withBindings(p, func(bs []binding) []string {
		var out []string
		found := false
		for _, b := range bs {
			if b.member != gmailPushAccount {
				continue
			}
			if strings.HasPrefix(b.typ, "google_pubsub_topic_iam_") && b.role == "roles/pubsub.publisher" && topicID(b.target) == gmailTopic {
				found = true
				continue
			}
			out = append(out, fmt.Sprintf("%s grants the Gmail push account %s on %q: it needs only publisher on %q", b.address, b.role, b.target, gmailTopic))
		}
		if !found {
			out = append(out, fmt.Sprintf("no roles/pubsub.publisher for %s on topic %q: Gmail could not publish", gmailPushAccount, gmailTopic))
		}
		return out
	})
}

func triggersRetry(p *plan) []string {
	var out []string
	notify, ok := p.function("Notify")
	switch {
	case !ok:
		out = append(out, "no function with entry point Notify")
	case notify.trigger == nil:
		out = append(out, notify.address+" has no event trigger")
	default:
		if got := str(notify.trigger, "event_type"); got != pubsubEvent {
			out = append(out, fmt.Sprintf("%s event_type = %q, want %q", notify.address, got, pubsubEvent))
		}
		if got, want := topicID(str(notify.trigger, "pubsub_topic")), topicID(notify.env["GMAIL_TOPIC"]); got == "" || got != want {
			out = append(out, fmt.Sprintf("%s is triggered by topic %q, want the Gmail topic %q", notify.address, got, want))
		}
	}
	for _, f := range p.functions() {
		if f.trigger != nil && str(f.trigger, "retry_policy") != retryPolicy {
			out = append(out, fmt.Sprintf("%s retry_policy = %q, want %s: failed events would be dropped", f.address, str(f.trigger, "retry_policy"), retryPolicy))
		}
	}
	if webhook, ok := p.function("Webhook"); ok {
		out = append(out, webhookPushed(p, webhook)...)
	}
	return out
}

// webhookPushed checks that the webhook function is fed by a push
// subscription that keeps events well past the function's 24-hour retry
// window and authenticates with OIDC; an Eventarc trigger would give up on an
// event after 24 hours, before the function could dead-letter it.
func webhookPushed(p *plan, webhook function) []string {
	if webhook.trigger != nil {
		return []string{webhook.address + " has an Eventarc trigger, which drops events after 24 h: feed it by a push subscription"}
	}
	for _, r := range p.ofType("google_pubsub_subscription") {
		push := block(r.Values, "push_config")
		if push == nil || topicID(str(r.Values, "topic")) != topicID(webhook.env["EVENTS_TOPIC"]) {
			continue
		}
		var out []string
		if block(push, "oidc_token") == nil {
			out = append(out, r.Address+" pushes to the webhook without an OIDC token")
		}
		if d, err := time.ParseDuration(str(r.Values, "message_retention_duration")); err != nil || d < 48*time.Hour {
			out = append(out, fmt.Sprintf("%s keeps events for %q, want at least 48h so retries last 24 h", r.Address, str(r.Values, "message_retention_duration")))
		}
		return out
	}
	return []string{"no push subscription on the events topic feeds " + webhook.address}
}

// eventsOrdered checks that every subscription of the events topic delivers
// in order: events carry the user key as ordering key, and Pub/Sub honours
// it only on subscriptions created with message ordering on.
func eventsOrdered(p *plan) []string {
	topic := ""
	for _, f := range p.functions() {
		if t := f.env["EVENTS_TOPIC"]; t != "" {
			topic = topicID(t)
			break
		}
	}
	if topic == "" {
		return []string{"no function names EVENTS_TOPIC"}
	}
	var out []string
	for _, r := range p.ofType("google_pubsub_subscription") {
		if topicID(str(r.Values, "topic")) != topic {
			continue
		}
		if on, _ := r.Values["enable_message_ordering"].(bool); !on {
			out = append(out, r.Address+" on the events topic does not enable message ordering")
		}
	}
	return out
}

func schedulerUsesOIDC(p *plan) []string {
	renew, ok := p.function("Renew")
	if !ok {
		return []string{"no function with entry point Renew"}
	}
	runtime := map[string]bool{}
	for _, f := range p.functions() {
		runtime[f.serviceAccount] = true
	}
	return withBindings(p, func(bs []binding) []string {
		var out []string
		jobs := p.ofType("google_cloud_scheduler_job")
		if len(jobs) == 0 {
			out = append(out, "no Cloud Scheduler job calls renew")
		}
		for _, j := range jobs {
			target := block(j.Values, "http_target")
			if target == nil {
				out = append(out, j.Address+" has no http_target")
				continue
			}
			if block(target, "oauth_token") != nil {
				out = append(out, j.Address+" uses an OAuth token: Cloud Run accepts OIDC identity tokens")
			}
			oidc := block(target, "oidc_token")
			sa := ""
			if oidc != nil {
				sa = str(oidc, "service_account_email")
			}
			if sa == "" {
				out = append(out, j.Address+" has no oidc_token service account")
				continue
			}
			if runtime[sa] {
				out = append(out, fmt.Sprintf("%s signs as %s, a function's runtime account: the scheduler needs its own", j.Address, sa))
			}
			invokes := false
			for _, b := range bs {
				if b.member != "serviceAccount:"+sa {
					continue
				}
				if b.role == "roles/run.invoker" && b.target == renew.name {
					invokes = true
					continue
				}
				out = append(out, fmt.Sprintf("%s grants the scheduler account %s on %q: it needs only run.invoker on renew", b.address, b.role, b.target))
			}
			if !invokes {
				out = append(out, fmt.Sprintf("scheduler account %s has no run.invoker on %q", sa, renew.name))
			}
		}
		return out
	})
}

func noSecretVersions(p *plan) []string {
	var out []string
	for _, r := range p.resources {
		if !strings.HasPrefix(r.Type, "google_secret_manager_") || !strings.HasSuffix(r.Type, "secret_version") {
			continue
		}
		// A write-only value (secret_data_wo) reaches Secret Manager and
		// never the plan or state.
		c, _ := p.configOf(r.Address)
		if r.Values["secret_data"] != nil || expr(c, "secret_data_wo") == nil {
			out = append(out, r.Address+" puts a secret value in Terraform state: add it with scripts/set-secrets.sh or as secret_data_wo")
		}
	}
	return out
}

// TestPolicies checks the real plan written by scripts/tf-check.sh.
func TestPolicies(t *testing.T) {
	checkPlan(t, realPlan(t), rules)
}

// checkPlan runs every rule on a plan that must satisfy them all.
func checkPlan(t *testing.T, p *plan, rules []rule) {
	for _, r := range rules {
		t.Run(r.name, func(t *testing.T) {
			if got := r.check(p); len(got) != 0 {
				t.Errorf("violations:\n  %s", strings.Join(got, "\n  "))
			}
		})
	}
}

// fixture names a rule and substrings of the violations it must report on
// the broken plan.
type fixture struct {
	rule string
	want []string
}

// checkFixtures proves each rule accepts the good plan and catches the
// violation planted for it in the broken one; tests lists one fixture per
// rule, in order.
func checkFixtures(t *testing.T, rules []rule, tests []fixture, goodPath, brokenPath string) {
	good := readPlan(t, goodPath)
	broken := readPlan(t, brokenPath)
	if len(tests) != len(rules) {
		t.Fatalf("%d fixture cases for %d rules: every rule needs one", len(tests), len(rules))
	}
	for i, tc := range tests {
		r := rules[i]
		t.Run(tc.rule, func(t *testing.T) {
			if r.name != tc.rule {
				t.Fatalf("case %d is for rule %q, want %q", i, tc.rule, r.name)
			}
			if got := r.check(good); len(got) != 0 {
				t.Errorf("good plan: got violations\n  %s\nwant none", strings.Join(got, "\n  "))
			}
			got := strings.Join(r.check(broken), "\n")
			for _, w := range tc.want {
				if !strings.Contains(got, w) {
					t.Errorf("broken plan: got violations\n%s\nwant one containing %q", got, w)
				}
			}
		})
	}
}

// TestPolicyFixtures proves each rule accepts a compliant plan and catches
// the violation planted for it in a broken one.
func TestPolicyFixtures(t *testing.T) {
	checkFixtures(t, rules, []fixture{
		{"no primitive roles", []string{"google_project_iam_member.owner grants primitive role roles/owner"}},
		{"only consent is public", []string{"google_cloud_run_v2_service_iam_member.renew_public grants roles/run.invoker to allUsers"}},
		{"each function has its own service account", []string{
			`google_cloudfunctions2_function.function["renew"] shares service account`,
			`google_cloudfunctions2_function.function["webhook"] runs as the default account`,
		}},
		{"secret access only on named secrets or the refresh-token prefix", []string{
			"google_project_iam_member.notify_all_secrets grants roles/secretmanager.secretAccessor",
			`google_project_iam_member.consent_tokens grants projects/demo-project/roles/tokenWriter to serviceAccount:consent@demo-project.iam.gserviceaccount.com project-wide with condition "resource.name.startsWith(\"projects/123456789/secrets/gmail-refresh-\") || true"`,
		}},
		{"gmail push account publishes to the gmail topic", []string{`no roles/pubsub.publisher for serviceAccount:gmail-api-push@system.gserviceaccount.com on topic "gmail-notifications"`}},
		{"event triggers retry", []string{
			`google_cloudfunctions2_function.function["notify"] retry_policy = "RETRY_POLICY_DO_NOT_RETRY"`,
			`google_cloudfunctions2_function.function["webhook"] has an Eventarc trigger`,
		}},
		{"scheduler calls renew with oidc", []string{"google_cloud_scheduler_job.renew has no oidc_token service account"}},
		{"no secret values in terraform", []string{"google_secret_manager_secret_version.oauth puts a secret value in Terraform state"}},
		{"delegation signs only as the delegated account", []string{
			`google_cloudfunctions2_function.function["notify"] runs as notify@demo-project.iam.gserviceaccount.com, which has no roles/iam.serviceAccountTokenCreator on mailboxes@demo-project.iam.gserviceaccount.com`,
			`google_project_iam_member.token_creator_everywhere grants roles/iam.serviceAccountTokenCreator to serviceAccount:renew@demo-project.iam.gserviceaccount.com on "demo-project"`,
			"google_project_iam_member.mailboxes_logs grants roles/logging.viewer to the delegated account serviceAccount:mailboxes@demo-project.iam.gserviceaccount.com",
		}},
		{"delegation APIs are enabled", []string{"is in delegation mode but admin.googleapis.com is not enabled"}},
		{"events reach subscribers in order per user", []string{"google_pubsub_subscription.events[0] on the events topic does not enable message ordering"}},
	}, "testdata/good-plan.json", "testdata/broken-plan.json")
}

func TestPrefixScoped(t *testing.T) {
	tests := []struct {
		expr string
		want bool
	}{
		{`resource.name.startsWith("projects/123/secrets/gmail-refresh-")`, true},
		{`resource.name.startsWith("projects/123/secrets/gmail-refresh-") || ` + projectClause, true},
		{projectClause, false},
		{"", false},
		{`resource.name.startsWith("projects/123/secrets/")`, false},
		{`resource.name.startsWith("projects/my-project/secrets/gmail-refresh-")`, false},
		{`resource.name.startsWith("projects/123/secrets/gmail-refresh-") || true`, false},
		{`resource.name.startsWith("projects/123/secrets/gmail-refresh-") && true`, false},
	}
	for _, tc := range tests {
		if got := prefixScoped(tc.expr); got != tc.want {
			t.Errorf("prefixScoped(%q) = %v, want %v", tc.expr, got, tc.want)
		}
	}
}
