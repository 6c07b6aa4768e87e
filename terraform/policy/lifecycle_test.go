package policy

import (
	"encoding/json"
	"fmt"
	"regexp"
	"sort"
	"strings"
	"testing"
)

// Rules for what a first apply orders and what a destroy keeps.
// terraform/README.md cites the issue or document behind each.
var lifecycleRules = []rule{
	{"firestore field and index operations run one at a time", firestoreSerialised},
	{"the scheduler starts after the indexes", schedulerAfterIndexes},
	{"event triggers wait for the agents' roles", triggersAfterAgents},
	{"dead letters are kept 31 days", deadLettersKept},
	{"user-keying secrets survive a destroy", keptSecretsSurvive},
	{"dashboard charts read metrics that exist", dashboardMetrics},
}

// refsIn lists every reference in a configured expression tree.
func refsIn(v any) []string {
	var out []string
	switch v := v.(type) {
	case map[string]any:
		out = append(out, references(v)...)
		for k, e := range v {
			if k != "references" {
				out = append(out, refsIn(e)...)
			}
		}
	case []any:
		for _, e := range v {
			out = append(out, refsIn(e)...)
		}
	}
	return out
}

// dependsOn reports whether configured resource a comes after b: through
// depends_on or a reference, directly or through other resources.
func dependsOn(p *plan, a, b string) bool {
	seen := map[string]bool{}
	var walk func(string) bool
	walk = func(x string) bool {
		if seen[x] {
			return false
		}
		seen[x] = true
		c, ok := p.config[x]
		if !ok {
			return false
		}
		for _, d := range append(append([]string(nil), c.DependsOn...), refsIn(c.Expressions)...) {
			d = stripIndex(d)
			// "google_x.y.attr" names resource google_x.y.
			if parts := strings.SplitN(d, ".", 3); len(parts) >= 2 {
				d = parts[0] + "." + parts[1]
			}
			if d == b || walk(d) {
				return true
			}
		}
		return false
	}
	return walk(a)
}

func instances(p *plan, typ string) map[string]int {
	n := map[string]int{}
	for _, r := range p.ofType(typ) {
		n[stripIndex(r.Address)]++
	}
	return n
}

// firestoreSerialised: operations on one database's fields and indexes
// conflict (409); the provider retries that for fields, not for indexes, so
// every one must come after another, none beside it.
func firestoreSerialised(p *plan) []string {
	var out, all []string
	for _, typ := range []string{"google_firestore_field", "google_firestore_index"} {
		for addr, n := range instances(p, typ) {
			all = append(all, addr)
			if n > 1 {
				out = append(out, fmt.Sprintf("%s has %d instances, which Terraform creates at once: index and field operations conflict (409)", addr, n))
			}
		}
	}
	sort.Strings(all)
	for i, a := range all {
		for _, b := range all[i+1:] {
			if !dependsOn(p, a, b) && !dependsOn(p, b, a) {
				out = append(out, fmt.Sprintf("%s and %s may run at once: chain them with depends_on", a, b))
			}
		}
	}
	return out
}

func schedulerAfterIndexes(p *plan) []string {
	var out []string
	for job := range instances(p, "google_cloud_scheduler_job") {
		for idx := range instances(p, "google_firestore_index") {
			if !dependsOn(p, job, idx) {
				out = append(out, fmt.Sprintf("%s may run renew before %s exists: its queries would fail", job, idx))
			}
		}
	}
	sort.Strings(out)
	return out
}

// triggersAfterAgents: a function with an event trigger comes after the
// bindings of the Eventarc and Pub/Sub agents, so the trigger is created by
// an agent that exists and holds its role.
func triggersAfterAgents(p *plan) []string {
	var agentGrants []string
	bs, err := p.bindings()
	if err != nil {
		return []string{err.Error()}
	}
	for _, b := range bs {
		if m := serviceAgent.FindStringSubmatch(b.member); m != nil && (m[1] == "eventarc" || m[1] == "pubsub") {
			agentGrants = append(agentGrants, stripIndex(b.address))
		}
	}
	var out []string
	done := map[string]bool{}
	for _, f := range p.functions() {
		fa := stripIndex(f.address)
		if f.trigger == nil || done[fa] {
			continue
		}
		done[fa] = true
		eventarc := false
		for _, g := range agentGrants {
			eventarc = eventarc || (grantsTo(bs, g, "eventarc") && dependsOn(p, fa, g))
		}
		if !eventarc {
			out = append(out, fmt.Sprintf("%s has an event trigger but does not come after a role of the Eventarc service agent: the first apply fails (terraform-provider-google #25294)", f.address))
		}
	}
	return out
}

func grantsTo(bs []binding, address, agent string) bool {
	for _, b := range bs {
		if m := serviceAgent.FindStringSubmatch(b.member); m != nil && m[1] == agent && stripIndex(b.address) == address {
			return true
		}
	}
	return false
}

func deadLettersKept(p *plan) []string {
	dl := map[string]bool{}
	for _, f := range p.functions() {
		if t := f.env["DEAD_LETTER_TOPIC"]; t != "" {
			dl[topicID(t)] = true
		}
	}
	for _, t := range p.ofType("google_pubsub_topic") {
		if strings.Contains(str(t.Values, "name"), "dead-letter") {
			dl[str(t.Values, "name")] = true
		}
	}
	var out []string
	for _, s := range p.ofType("google_pubsub_subscription") {
		if dl[topicID(str(s.Values, "topic"))] && str(s.Values, "message_retention_duration") != "2678400s" {
			out = append(out, fmt.Sprintf("%s keeps dead letters %s, not the 31 days (2678400s) Pub/Sub allows", s.Address, str(s.Values, "message_retention_duration")))
		}
	}
	return out
}

// keptSecretsSurvive: the secrets user keys, links and OAuth states are
// made with are not Terraform's to delete. Their names come from the
// functions' settings; the kept_secrets output names them for deploy.sh.
func keptSecretsSurvive(p *plan) []string {
	want := map[string]bool{}
	for _, f := range p.functions() {
		for _, k := range []string{"USER_KEY_SECRET_NAME", "CONNECT_LINK_KEY_SECRET_NAME", "STATE_KEY_SECRET_NAME"} {
			if n := f.env[k]; n != "" {
				want[n] = true
			}
		}
	}
	var out []string
	if len(want) == 0 {
		out = append(out, "no function names USER_KEY_SECRET_NAME, CONNECT_LINK_KEY_SECRET_NAME or STATE_KEY_SECRET_NAME")
	}
	for _, r := range p.ofType("google_secret_manager_secret") {
		if want[str(r.Values, "secret_id")] {
			out = append(out, fmt.Sprintf("%s manages secret %s: a destroy deletes it and every user is re-keyed (orphaned records, duplicate events)", r.Address, str(r.Values, "secret_id")))
		}
	}
	kept := map[string]bool{}
	if m, ok := p.outputs["kept_secrets"].(map[string]any); ok {
		for _, v := range m {
			if s, ok := v.(string); ok {
				kept[s] = true
			}
		}
	}
	var names []string
	for n := range want {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		if !kept[n] {
			out = append(out, fmt.Sprintf("secret %s is not in output kept_secrets: scripts/deploy.sh would not create it", n))
		}
	}
	return out
}

// TestLifecycle checks the real plan written by scripts/tf-check.sh.
func TestLifecycle(t *testing.T) {
	checkPlan(t, realPlan(t), lifecycleRules)
}

// TestLifecycleFixtures runs each rule on a compliant plan and on one with
// the violation planted for it.
func TestLifecycleFixtures(t *testing.T) {
	checkFixtures(t, lifecycleRules, []fixture{
		{"firestore field and index operations run one at a time", []string{
			"google_firestore_index.users_by_status has 3 instances",
			"google_firestore_field.connect_link_ttl and google_firestore_field.oauth_state_ttl may run at once",
		}},
		{"the scheduler starts after the indexes", []string{"google_cloud_scheduler_job.renew may run renew before google_firestore_index.users_by_status exists"}},
		{"event triggers wait for the agents' roles", []string{`google_cloudfunctions2_function.function["notify"] has an event trigger but does not come after a role of the Eventarc service agent`}},
		{"dead letters are kept 31 days", []string{"google_pubsub_subscription.dead_letter keeps dead letters 604800s"}},
		{"user-keying secrets survive a destroy", []string{
			"google_secret_manager_secret.user_key manages secret gw-user-key-secret",
			"secret gw-connect-link-key is not in output kept_secrets",
		}},
		{"dashboard charts read metrics that exist", []string{`google_monitoring_dashboard.main chart "Syncs" reads logging.googleapis.com/user/gw_syncs, which no google_logging_metric of this plan creates`}},
	}, "testdata/lifecycle-good.json", "testdata/lifecycle-broken.json")
}

var metricType = regexp.MustCompile(`metric\.type="([^"]+)"`)

// dashboardMetrics checks every chart of every dashboard: a chart reads a
// log-based metric this plan creates or a built-in Pub/Sub metric, with a
// filter and an aligner, and the dashboard has a title and tiles.
func dashboardMetrics(p *plan) []string {
	logMetrics := map[string]bool{}
	for _, m := range p.ofType("google_logging_metric") {
		logMetrics["logging.googleapis.com/user/"+str(m.Values, "name")] = true
	}
	var out []string
	dashboards := p.ofType("google_monitoring_dashboard")
	if len(dashboards) == 0 {
		return []string{"no google_monitoring_dashboard: an operator has nothing to look at"}
	}
	for _, d := range dashboards {
		var db struct {
			DisplayName  string `json:"displayName"`
			MosaicLayout struct {
				Tiles []struct {
					Widget struct {
						Title   string `json:"title"`
						XyChart struct {
							DataSets []struct {
								TimeSeriesQuery struct {
									TimeSeriesFilter struct {
										Filter      string `json:"filter"`
										Aggregation struct {
											PerSeriesAligner string `json:"perSeriesAligner"`
										} `json:"aggregation"`
									} `json:"timeSeriesFilter"`
								} `json:"timeSeriesQuery"`
							} `json:"dataSets"`
						} `json:"xyChart"`
					} `json:"widget"`
				} `json:"tiles"`
			} `json:"mosaicLayout"`
		}
		if err := json.Unmarshal([]byte(str(d.Values, "dashboard_json")), &db); err != nil {
			out = append(out, fmt.Sprintf("%s dashboard_json: %v", d.Address, err))
			continue
		}
		if db.DisplayName == "" || len(db.MosaicLayout.Tiles) == 0 {
			out = append(out, d.Address+" has no displayName or no tiles")
		}
		for _, tile := range db.MosaicLayout.Tiles {
			for _, ds := range tile.Widget.XyChart.DataSets {
				f := ds.TimeSeriesQuery.TimeSeriesFilter
				m := metricType.FindStringSubmatch(f.Filter)
				switch {
				case m == nil:
					out = append(out, fmt.Sprintf("%s chart %q has no metric.type filter", d.Address, tile.Widget.Title))
				case strings.HasPrefix(m[1], "logging.googleapis.com/user/") && !logMetrics[m[1]]:
					out = append(out, fmt.Sprintf("%s chart %q reads %s, which no google_logging_metric of this plan creates", d.Address, tile.Widget.Title, m[1]))
				case !strings.HasPrefix(m[1], "logging.googleapis.com/user/") && !strings.HasPrefix(m[1], "pubsub.googleapis.com/"):
					out = append(out, fmt.Sprintf("%s chart %q reads %s, neither a log-based metric of this plan nor a Pub/Sub metric", d.Address, tile.Widget.Title, m[1]))
				}
				if f.Aggregation.PerSeriesAligner == "" {
					out = append(out, fmt.Sprintf("%s chart %q has no perSeriesAligner", d.Address, tile.Widget.Title))
				}
			}
		}
	}
	return out
}
