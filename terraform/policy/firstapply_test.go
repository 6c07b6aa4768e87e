package policy

import (
	"fmt"
	"regexp"
	"sort"
	"strings"
	"testing"
)

// The rules below turn each known failure of a first apply on a fresh
// project, and each part that would deploy but fail silently, into a check
// of the plan. terraform/README.md cites the issue or document behind each.
var firstApplyRules = []rule{
	{"builds can read the gcf-v2-sources bucket once grants settle", buildsReadSources},
	{"alerts need no freshly created metric", alertsNeedNoNewMetric},
	{"service agents are bound only once created", serviceAgentsExist},
	{"the apply enables every API it calls", apisEnabled},
	{"pushes and the scheduler call run.app with an explicit audience", runAppAudiences},
	{"alerts cover failures no function logs", silentFailuresAlerted},
	{"expiring documents have a TTL policy", ttlPolicies},
	{"webhook_url is sensitive", webhookURLSensitive},
	{"names carry name_prefix", namesPrefixed},
	{"project_number is checked against the project", projectNumberChecked},
	{"data is recoverable and old images are cleaned up", recoverable},
}

// gcfSourcesClause matches the clauses a condition may use to confine a
// grant to one bucket and its objects.
var gcfSourcesClause = regexp.MustCompile(`^resource\.name( == |\.startsWith\()"projects/_/buckets/([^"/]+)(/?)"(\)?)$`)

// confinedToBucket reports whether a CEL condition admits only bucket b and
// its objects.
func confinedToBucket(cond, b string) bool {
	objects := false
	for _, clause := range strings.Split(cond, "||") {
		m := gcfSourcesClause.FindStringSubmatch(strings.TrimSpace(clause))
		switch {
		case m == nil || m[2] != b:
			return false
		case m[1] == " == " && m[3] == "" && m[4] == "":
		case m[1] == ".startsWith(" && m[3] == "/" && m[4] == ")":
			objects = true
		default:
			return false
		}
	}
	return objects
}

// builder returns the planned member of the account a function builds as.
func (p *plan) builder(f function) string {
	c, _ := p.configOf(f.address)
	for _, ref := range references(expr(c, "build_config", "service_account")) {
		if r, ok := p.byAddress(strings.TrimSuffix(strings.TrimSuffix(ref, ".id"), ".email")); ok && r.Type == "google_service_account" {
			return str(r.Values, "member")
		}
	}
	return ""
}

func stripIndex(address string) string {
	if i := strings.Index(address, "["); i >= 0 {
		return address[:i]
	}
	return address
}

func buildsReadSources(p *plan) []string {
	number, _ := p.vars["project_number"].(string)
	return withBindings(p, func(bs []binding) []string {
		var out []string
		for _, f := range p.functions() {
			r, _ := p.byAddress(f.address)
			bucket := fmt.Sprintf("gcf-v2-sources-%s-%s", number, str(r.Values, "location"))
			member := p.builder(f)
			if member == "" {
				out = append(out, f.address+" builds as no account of this plan (build_config.service_account)")
				continue
			}
			var grants []string
			reads := false
			for _, b := range bs {
				if b.member != member {
					continue
				}
				grants = append(grants, stripIndex(b.address))
				if b.role != "roles/storage.objectViewer" {
					continue
				}
				if (b.typ == "google_storage_bucket_iam_member" && b.target == bucket) ||
					(b.typ == "google_project_iam_member" && confinedToBucket(b.condition, bucket)) {
					reads = true
				}
			}
			if !reads {
				out = append(out, fmt.Sprintf("%s builds as %s, which cannot read %s: the build fails to fetch its source", f.address, member, bucket))
			}
			out = append(out, waitsFor(p, f.address, grants)...)
		}
		return out
	})
}

// waitsFor checks that a resource depends on terraform/wait-for-builder.sh
// (a terraform_data's local-exec) run after every one of the given grants:
// a fixed pause (time_sleep, or a sleep) only lowers the odds that a build
// starts before its grants have arrived.
func waitsFor(p *plan, address string, grants []string) []string {
	c, _ := p.configOf(address)
	for _, dep := range c.DependsOn {
		w, ok := p.config[dep]
		if ok && w.Type == "time_sleep" {
			return []string{fmt.Sprintf("%s waits a fixed time (%s): IAM changes take \"potentially 7 minutes or longer\"; ask IAM as the builder instead (wait-for-builder.sh)", address, dep)}
		}
		if !ok || w.Type != "terraform_data" || len(w.Provisioners) == 0 || w.Provisioners[0].Type != "local-exec" {
			continue
		}
		if cmd, _ := w.Provisioners[0].Expressions["command"].(map[string]any)["constant_value"].(string); !strings.HasSuffix(cmd, "wait-for-builder.sh") {
			return []string{fmt.Sprintf("%s waits on %s, which runs %q, not wait-for-builder.sh: a fixed pause does not know when the grants have arrived", address, dep, cmd)}
		}
		after := map[string]bool{}
		for _, d := range w.DependsOn {
			after[d] = true
		}
		for _, e := range w.Expressions {
			if m, ok := e.(map[string]any); ok {
				for _, ref := range references(m) {
					after[ref] = true
				}
			}
		}
		var missing []string
		for _, g := range grants {
			if !after[g] {
				missing = append(missing, g)
			}
		}
		if len(missing) == 0 {
			return nil
		}
		sort.Strings(missing)
		return []string{fmt.Sprintf("%s waits on %s, which does not come after %s", address, dep, strings.Join(missing, ", "))}
	}
	return []string{address + " starts its build without waiting for its account's grants to take effect"}
}

// conditionFilters returns each alert condition's kind and filter.
func conditionFilters(r resource) map[string][]string {
	out := map[string][]string{}
	for _, c := range list(r.Values, "conditions") {
		for _, kind := range []string{"condition_threshold", "condition_absent", "condition_matched_log"} {
			for _, b := range list(c, kind) {
				out[kind] = append(out[kind], str(b, "filter"))
			}
		}
	}
	return out
}

func alertsNeedNoNewMetric(p *plan) []string {
	var out []string
	for _, r := range p.ofType("google_monitoring_alert_policy") {
		conds := conditionFilters(r)
		for _, kind := range []string{"condition_threshold", "condition_absent"} {
			for _, f := range conds[kind] {
				if strings.Contains(f, "logging.googleapis.com/user/") {
					out = append(out, fmt.Sprintf("%s alerts on a log-based metric: created with it, it fails with 404 \"Cannot find metric(s)\" on the first apply", r.Address))
				}
			}
		}
		if len(conds["condition_matched_log"]) > 0 {
			if rl := block(block(r.Values, "alert_strategy"), "notification_rate_limit"); rl == nil || str(rl, "period") == "" {
				out = append(out, r.Address+" matches logs without alert_strategy.notification_rate_limit, which the API requires")
			}
		}
	}
	return out
}

// serviceAgent matches Google-managed service agents, created per project
// only when their service first needs them.
var serviceAgent = regexp.MustCompile(`^serviceAccount:service-[0-9]+@gcp-sa-([a-z-]+)\.iam\.gserviceaccount\.com$`)

// createdAgents lists the services whose agents exist before the apply:
// made by google_project_service_identity, or named in the
// service_identities output, which scripts/deploy.sh creates first
// (TestDeployDryRun checks that it creates exactly those).
func createdAgents(p *plan) map[string]bool {
	created := map[string]bool{}
	for _, r := range p.ofType("google_project_service_identity") {
		created[strings.TrimSuffix(str(r.Values, "service"), ".googleapis.com")] = true
	}
	ids, _ := p.outputs["service_identities"].([]any)
	for _, s := range ids {
		if s, ok := s.(string); ok {
			created[strings.TrimSuffix(s, ".googleapis.com")] = true
		}
	}
	return created
}

func serviceAgentsExist(p *plan) []string {
	created := createdAgents(p)
	return withBindings(p, func(bs []binding) []string {
		var out []string
		for _, b := range bs {
			if m := serviceAgent.FindStringSubmatch(b.member); m != nil && !created[m[1]] {
				out = append(out, fmt.Sprintf("%s binds %s, which may not exist yet on a fresh project: create it first (scripts/deploy.sh, listed in output service_identities)", b.address, b.member))
			}
		}
		return out
	})
}

// apiOf maps resource type prefixes to the APIs creating them calls.
var apiOf = []struct{ prefix, api string }{
	{"google_cloudfunctions2_", "cloudfunctions.googleapis.com"},
	{"google_cloudfunctions2_", "cloudbuild.googleapis.com"},
	{"google_cloudfunctions2_", "run.googleapis.com"},
	{"google_cloudfunctions2_", "artifactregistry.googleapis.com"},
	{"google_cloud_run_", "run.googleapis.com"},
	{"google_pubsub_", "pubsub.googleapis.com"},
	{"google_secret_manager_", "secretmanager.googleapis.com"},
	{"google_firestore_", "firestore.googleapis.com"},
	{"google_cloud_scheduler_", "cloudscheduler.googleapis.com"},
	{"google_monitoring_", "monitoring.googleapis.com"},
	{"google_logging_", "logging.googleapis.com"},
	{"google_storage_", "storage.googleapis.com"},
	{"google_artifact_registry_", "artifactregistry.googleapis.com"},
	{"google_service_account", "iam.googleapis.com"},
	{"google_project_iam_custom_role", "iam.googleapis.com"},
	{"google_project_iam_", "cloudresourcemanager.googleapis.com"},
}

// alwaysAPIs are needed whatever the plan holds: Terraform reads the project
// and enables services through the first two, the functions call Gmail and
// sign delegated tokens through the last two.
var alwaysAPIs = []string{"cloudresourcemanager.googleapis.com", "serviceusage.googleapis.com", "gmail.googleapis.com", "iamcredentials.googleapis.com"}

func apisEnabled(p *plan) []string {
	enabled := map[string]bool{}
	for _, r := range p.ofType("google_project_service") {
		enabled[str(r.Values, "service")] = true
	}
	need := map[string]string{}
	for _, a := range alwaysAPIs {
		need[a] = "Terraform or the functions"
	}
	for _, r := range p.resources {
		for _, m := range apiOf {
			if strings.HasPrefix(r.Type, m.prefix) && need[m.api] == "" {
				need[m.api] = r.Address
			}
		}
		if r.Type == "google_cloudfunctions2_function" && block(r.Values, "event_trigger") != nil {
			need["eventarc.googleapis.com"] = r.Address
		}
	}
	var out []string
	for api, by := range need {
		if !enabled[api] {
			out = append(out, fmt.Sprintf("%s is not enabled by google_project_service; needed by %s", api, by))
		}
	}
	sort.Strings(out)
	return out
}

// runURI reports whether an expression is computed from a function's Cloud
// Run URI and not from its cloudfunctions.net URL.
func runURI(e map[string]any) bool {
	uri := false
	for _, ref := range references(e) {
		if strings.HasPrefix(ref, "google_cloudfunctions2_function.") {
			switch {
			case strings.HasSuffix(ref, ".url"):
				return false
			case strings.HasSuffix(ref, ".service_config[0].uri"):
				uri = true
			}
		}
	}
	return uri
}

func runAppAudiences(p *plan) []string {
	var out []string
	check := func(address string, c configResource, target ...string) {
		if !runURI(expr(c, append(target, "push_endpoint")...)) && !runURI(expr(c, append(target, "uri")...)) {
			out = append(out, address+" does not call the function's run.app URL (service_config[0].uri): Cloud Run counts Pub/Sub and Scheduler as internal only there")
		}
		if !runURI(expr(c, append(target, "oidc_token", "audience")...)) {
			out = append(out, address+" leaves the OIDC audience to its default instead of the function's run.app URL")
		}
	}
	for _, r := range p.ofType("google_pubsub_subscription") {
		if block(r.Values, "push_config") == nil {
			continue
		}
		c, _ := p.configOf(r.Address)
		check(r.Address, c, "push_config")
	}
	for _, r := range p.ofType("google_cloud_scheduler_job") {
		c, _ := p.configOf(r.Address)
		check(r.Address, c, "http_target")
	}
	return out
}

// emitted is what a Google service writes when something fails that no
// function logs: a log entry of a failed Cloud Scheduler attempt
// (https://cloud.google.com/scheduler/docs/view-logs: entries on resource
// cloud_scheduler_job, label job_id, severity ERROR when the attempt fails)
// and the Pub/Sub subscription metrics (resource pubsub_subscription, label
// subscription_id).
type emitted struct {
	what   string
	kind   string // the alert condition that must match it
	fields map[string]string
}

func silentFailures(p *plan) []emitted {
	var out []emitted
	for _, j := range p.ofType("google_cloud_scheduler_job") {
		out = append(out, emitted{"a failed attempt of " + j.Address, "condition_matched_log", map[string]string{
			"resource.type":          "cloud_scheduler_job",
			"resource.labels.job_id": str(j.Values, "name"),
			"severity":               "ERROR",
			"jsonPayload.@type":      "type.googleapis.com/google.cloud.scheduler.logging.AttemptFinished",
			"jsonPayload.status":     "PERMISSION_DENIED",
		}})
	}
	age := func(what, sub string) emitted {
		return emitted{what, "condition_threshold", map[string]string{
			"metric.type":                     "pubsub.googleapis.com/subscription/oldest_unacked_message_age",
			"resource.type":                   "pubsub_subscription",
			"resource.labels.subscription_id": sub,
		}}
	}
	deadLetter := map[string]bool{}
	for _, f := range p.functions() {
		if t := f.env["DEAD_LETTER_TOPIC"]; t != "" {
			deadLetter[topicID(t)] = true
		}
		if f.trigger != nil {
			// Eventarc's own subscription, eventarc-<region>-<trigger id>-sub-<n>,
			// where a function's trigger id is its name and a number.
			r, _ := p.byAddress(f.address)
			out = append(out, age("unacknowledged events for "+f.address, fmt.Sprintf("eventarc-%s-%s-482913-sub-017", str(r.Values, "location"), f.name)))
		}
	}
	for _, s := range p.ofType("google_pubsub_subscription") {
		switch {
		case block(s.Values, "push_config") != nil:
			out = append(out, age("unacknowledged pushes of "+s.Address, str(s.Values, "name")))
		case deadLetter[topicID(str(s.Values, "topic"))]:
			out = append(out, emitted{"events waiting in " + s.Address, "condition_threshold", map[string]string{
				"metric.type":                     "pubsub.googleapis.com/subscription/num_undelivered_messages",
				"resource.type":                   "pubsub_subscription",
				"resource.labels.subscription_id": str(s.Values, "name"),
			}})
		}
	}
	return out
}

func silentFailuresAlerted(p *plan) []string {
	var out []string
	for _, e := range silentFailures(p) {
		found := false
		for _, r := range p.ofType("google_monitoring_alert_policy") {
			for _, f := range conditionFilters(r)[e.kind] {
				ok, err := matches(f, e.fields)
				if err != nil {
					out = append(out, r.Address+": "+err.Error())
				}
				found = found || ok
			}
		}
		if !found {
			out = append(out, fmt.Sprintf("no alert policy's %s matches %s", e.kind, e.what))
		}
	}
	return out
}

// expiring lists the collections whose documents carry an expiry time for
// a TTL policy: announced-message markers (shared/store Marker.ExpireAt),
// used OAuth state nonces (shared/store UseState) and connect links.
var expiring = map[string]string{"messages": "expireAt", "oauthStates": "expireAt", "connectLinks": "expireAt"}

func ttlPolicies(p *plan) []string {
	have := map[string]bool{}
	for _, r := range p.ofType("google_firestore_field") {
		if block(r.Values, "ttl_config") != nil {
			have[str(r.Values, "collection")+"/"+str(r.Values, "field")] = true
		}
	}
	var out []string
	for coll, field := range expiring {
		if !have[coll+"/"+field] {
			out = append(out, fmt.Sprintf("no TTL policy on %s.%s: those documents are never deleted", coll, field))
		}
	}
	sort.Strings(out)
	return out
}

func webhookURLSensitive(p *plan) []string {
	if !p.sensitive["webhook_url"] {
		return []string{"variable webhook_url is not sensitive: a token in its path would show in plans"}
	}
	return nil
}

// named lists, per resource type, the attribute holding a name that must be
// unique in the project.
var named = map[string]string{
	"google_service_account":              "account_id",
	"google_pubsub_topic":                 "name",
	"google_pubsub_subscription":          "name",
	"google_secret_manager_secret":        "secret_id",
	"google_cloud_scheduler_job":          "name",
	"google_cloudfunctions2_function":     "name",
	"google_artifact_registry_repository": "repository_id",
	"google_storage_bucket":               "name",
	"google_project_iam_custom_role":      "role_id",
}

func namesPrefixed(p *plan) []string {
	prefix, _ := p.vars["name_prefix"].(string)
	if prefix == "" {
		return []string{"the plan has no name_prefix variable"}
	}
	var out []string
	for _, r := range p.resources {
		attr, ok := named[r.Type]
		if !ok {
			continue
		}
		name, want := str(r.Values, attr), prefix
		if r.Type == "google_project_iam_custom_role" {
			want = strings.ReplaceAll(prefix, "-", "_")
		}
		if !strings.Contains(name, want) {
			out = append(out, fmt.Sprintf("%s %s = %q does not carry name_prefix %q: a second deployment in the project would collide with it", r.Address, attr, name, want))
		}
	}
	return out
}

func projectNumberChecked(p *plan) []string {
	project := false
	for _, c := range p.config {
		project = project || (c.Mode == "data" && c.Type == "google_project")
	}
	if len(p.checks) == 0 || !project {
		return []string{"no check block compares project_number with data.google_project: a wrong number makes every secret condition silently false"}
	}
	return nil
}

func recoverable(p *plan) []string {
	var out []string
	for _, r := range p.ofType("google_firestore_database") {
		if got := str(r.Values, "point_in_time_recovery_enablement"); got != "POINT_IN_TIME_RECOVERY_ENABLED" {
			out = append(out, fmt.Sprintf("%s point_in_time_recovery_enablement = %q: a corrupted cursor could not be read back", r.Address, got))
		}
	}
	for _, r := range p.ofType("google_artifact_registry_repository") {
		del, keep := false, false
		for _, c := range list(r.Values, "cleanup_policies") {
			switch str(c, "action") {
			case "DELETE":
				del = true
			case "KEEP":
				keep = keep || len(list(c, "most_recent_versions")) > 0
			}
		}
		if dry, _ := r.Values["cleanup_policy_dry_run"].(bool); !del || !keep || dry {
			out = append(out, r.Address+" has no cleanup policy that deletes old images and keeps the newest: images pile up with every deploy")
		}
	}
	return out
}

// TestFirstApply checks the real plan written by scripts/tf-check.sh.
func TestFirstApply(t *testing.T) {
	checkPlan(t, realPlan(t), firstApplyRules)
}

// TestFirstApplyFixtures runs each rule on a compliant plan and on one with
// the violation planted for it.
func TestFirstApplyFixtures(t *testing.T) {
	checkFixtures(t, firstApplyRules, []fixture{
		{"builds can read the gcf-v2-sources bucket once grants settle", []string{
			`google_cloudfunctions2_function.function["notify"] builds as serviceAccount:gw-builder@demo-project.iam.gserviceaccount.com, which cannot read gcf-v2-sources-123456789-us-central1`,
			`google_cloudfunctions2_function.function["notify"] starts its build without waiting`,
		}},
		{"alerts need no freshly created metric", []string{
			`google_monitoring_alert_policy.errors alerts on a log-based metric`,
			`google_monitoring_alert_policy.renew_not_run matches logs without alert_strategy.notification_rate_limit`,
		}},
		{"service agents are bound only once created", []string{"google_service_account_iam_member.pubsub_token_creator binds serviceAccount:service-123456789@gcp-sa-pubsub.iam.gserviceaccount.com"}},
		{"the apply enables every API it calls", []string{
			"iamcredentials.googleapis.com is not enabled",
			"eventarc.googleapis.com is not enabled by google_project_service; needed by google_cloudfunctions2_function.function[\"notify\"]",
		}},
		{"pushes and the scheduler call run.app with an explicit audience", []string{
			"google_pubsub_subscription.webhook does not call the function's run.app URL",
			"google_pubsub_subscription.webhook leaves the OIDC audience to its default",
		}},
		{"alerts cover failures no function logs", []string{
			"no alert policy's condition_matched_log matches a failed attempt of google_cloud_scheduler_job.renew",
			`no alert policy's condition_threshold matches unacknowledged events for google_cloudfunctions2_function.function["notify"]`,
			"no alert policy's condition_threshold matches events waiting in google_pubsub_subscription.dead_letter",
		}},
		{"expiring documents have a TTL policy", []string{"no TTL policy on oauthStates.expireAt"}},
		{"webhook_url is sensitive", []string{"variable webhook_url is not sensitive"}},
		{"names carry name_prefix", []string{
			`google_pubsub_topic.gmail name = "gmail-notifications" does not carry name_prefix "gw-"`,
			`google_project_iam_custom_role.token_writer role_id = "gmailwatchRefreshTokenWriter" does not carry name_prefix "gw_"`,
		}},
		{"project_number is checked against the project", []string{"no check block compares project_number"}},
		{"data is recoverable and old images are cleaned up", []string{
			`google_firestore_database.main point_in_time_recovery_enablement = "POINT_IN_TIME_RECOVERY_DISABLED"`,
			"google_artifact_registry_repository.functions has no cleanup policy",
		}},
	}, "testdata/first-apply-good.json", "testdata/first-apply-broken.json")
}

func TestConfinedToBucket(t *testing.T) {
	const b = "gcf-v2-sources-1-us-central1"
	tests := []struct {
		expr string
		want bool
	}{
		{`resource.name == "projects/_/buckets/` + b + `" || resource.name.startsWith("projects/_/buckets/` + b + `/")`, true},
		{`resource.name.startsWith("projects/_/buckets/` + b + `/")`, true},
		{`resource.name == "projects/_/buckets/` + b + `"`, false},
		{`resource.name.startsWith("projects/_/buckets/` + b + `")`, false},
		{`resource.name.startsWith("projects/_/buckets/gcf-v2-sources-1-us-central2/")`, false},
		{`resource.name.startsWith("projects/_/buckets/` + b + `/") || true`, false},
		{"", false},
	}
	for _, tc := range tests {
		if got := confinedToBucket(tc.expr, b); got != tc.want {
			t.Errorf("confinedToBucket(%q) = %v, want %v", tc.expr, got, tc.want)
		}
	}
}
