package policy

import (
	"encoding/json"
	"fmt"
	"os"
	"sort"
	"strings"
	"testing"
)

// planEnv names the environment variable holding the plan JSON path.
const planEnv = "TF_PLAN_JSON"

// resource is one resource instance of a plan's planned values or prior state.
type resource struct {
	Address string         `json:"address"`
	Mode    string         `json:"mode"`
	Type    string         `json:"type"`
	Name    string         `json:"name"`
	Values  map[string]any `json:"values"`
}

type module struct {
	Resources    []resource `json:"resources"`
	ChildModules []module   `json:"child_modules"`
}

type planJSON struct {
	PlannedValues struct {
		RootModule module `json:"root_module"`
	} `json:"planned_values"`
	PriorState struct {
		Values struct {
			RootModule module `json:"root_module"`
		} `json:"values"`
	} `json:"prior_state"`
}

// plan holds the managed resources a plan would create and the data sources
// it read while planning.
type plan struct {
	resources []resource
	data      []resource
}

func (m module) all() []resource {
	out := append([]resource(nil), m.Resources...)
	for _, c := range m.ChildModules {
		out = append(out, c.all()...)
	}
	return out
}

func parsePlan(data []byte) (*plan, error) {
	var p planJSON
	if err := json.Unmarshal(data, &p); err != nil {
		return nil, fmt.Errorf("plan json: %w", err)
	}
	out := &plan{}
	for _, r := range p.PlannedValues.RootModule.all() {
		if r.Mode == "managed" {
			out.resources = append(out.resources, r)
		}
	}
	for _, r := range p.PriorState.Values.RootModule.all() {
		if r.Mode == "data" {
			out.data = append(out.data, r)
		}
	}
	if len(out.resources) == 0 {
		return nil, fmt.Errorf("plan json: no planned resources")
	}
	return out, nil
}

func readPlan(t *testing.T, path string) *plan {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read plan: %v", err)
	}
	p, err := parsePlan(data)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return p
}

// realPlan returns the plan named by TF_PLAN_JSON, or skips the test.
func realPlan(t *testing.T) *plan {
	t.Helper()
	path := os.Getenv(planEnv)
	if path == "" {
		t.Skipf("%s is not set: run scripts/tf-check.sh to plan terraform/ and check the real plan", planEnv)
	}
	return readPlan(t, path)
}

func (p *plan) ofType(typ string) []resource {
	var out []resource
	for _, r := range p.resources {
		if r.Type == typ {
			out = append(out, r)
		}
	}
	return out
}

// str returns the string at key, or "" when it is absent or unknown.
func str(v map[string]any, key string) string {
	s, _ := v[key].(string)
	return s
}

// block returns the first element of a nested block, or nil.
func block(v map[string]any, key string) map[string]any {
	list, _ := v[key].([]any)
	if len(list) == 0 {
		return nil
	}
	m, _ := list[0].(map[string]any)
	return m
}

// binding is one role granted to one member on one resource.
type binding struct {
	address   string
	typ       string // the IAM resource type, e.g. google_project_iam_member
	target    string // what the role is granted on, as written in the plan
	role      string
	member    string
	condition string // CEL expression, "" when unconditioned
}

// targetKeys are the attributes naming the resource an IAM resource grants on.
var targetKeys = []string{"project", "secret_id", "topic", "subscription", "name", "service", "bucket", "repository", "service_account_id"}

// bindings expands every *_iam_member, *_iam_binding and *_iam_policy
// resource of the plan into single grants.
func (p *plan) bindings() ([]binding, error) {
	var out []binding
	for _, r := range p.resources {
		var target string
		for _, k := range targetKeys {
			if s := str(r.Values, k); s != "" && (k != "project" || target == "") {
				target = s
			}
		}
		cond := ""
		if c := block(r.Values, "condition"); c != nil {
			cond = str(c, "expression")
		}
		add := func(role, member, cond string) {
			out = append(out, binding{address: r.Address, typ: r.Type, target: target, role: role, member: member, condition: cond})
		}
		switch {
		case strings.HasSuffix(r.Type, "_iam_member"):
			add(str(r.Values, "role"), str(r.Values, "member"), cond)
		case strings.HasSuffix(r.Type, "_iam_binding"):
			members, _ := r.Values["members"].([]any)
			for _, m := range members {
				s, _ := m.(string)
				add(str(r.Values, "role"), s, cond)
			}
		case strings.HasSuffix(r.Type, "_iam_policy"):
			var pol struct {
				Bindings []struct {
					Role      string   `json:"role"`
					Members   []string `json:"members"`
					Condition *struct {
						Expression string `json:"expression"`
					} `json:"condition"`
				} `json:"bindings"`
			}
			if err := json.Unmarshal([]byte(str(r.Values, "policy_data")), &pol); err != nil {
				return nil, fmt.Errorf("%s: policy_data: %w", r.Address, err)
			}
			for _, b := range pol.Bindings {
				c := ""
				if b.Condition != nil {
					c = b.Condition.Expression
				}
				for _, m := range b.Members {
					add(b.Role, m, c)
				}
			}
		}
	}
	for _, b := range out {
		if b.role == "" || b.member == "" || b.target == "" {
			return nil, fmt.Errorf("%s: role, member or target unknown at plan time; the policies need them known", b.address)
		}
	}
	return out, nil
}

// function is a planned Cloud Function, reduced to what the policies read.
type function struct {
	address        string
	name           string
	entryPoint     string
	serviceAccount string
	env            map[string]string
	trigger        map[string]any // nil for HTTP functions
}

func (p *plan) functions() []function {
	var out []function
	for _, r := range p.ofType("google_cloudfunctions2_function") {
		f := function{address: r.Address, name: str(r.Values, "name"), env: map[string]string{}}
		if b := block(r.Values, "build_config"); b != nil {
			f.entryPoint = str(b, "entry_point")
		}
		if s := block(r.Values, "service_config"); s != nil {
			f.serviceAccount = str(s, "service_account_email")
			env, _ := s["environment_variables"].(map[string]any)
			for k, v := range env {
				f.env[k], _ = v.(string)
			}
		}
		f.trigger = block(r.Values, "event_trigger")
		out = append(out, f)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].entryPoint < out[j].entryPoint })
	return out
}

func (p *plan) function(entryPoint string) (function, bool) {
	for _, f := range p.functions() {
		if f.entryPoint == entryPoint {
			return f, true
		}
	}
	return function{}, false
}
