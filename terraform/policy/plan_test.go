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

// configResource is a resource block as configured: its expressions (each
// attribute a constant_value or the references it is computed from) and its
// explicit dependencies. One block stands for every instance of a for_each.
type configResource struct {
	Address      string         `json:"address"`
	Mode         string         `json:"mode"`
	Type         string         `json:"type"`
	Expressions  map[string]any `json:"expressions"`
	DependsOn    []string       `json:"depends_on"`
	Provisioners []struct {
		Type        string         `json:"type"`
		Expressions map[string]any `json:"expressions"`
	} `json:"provisioners"`
}

type planJSON struct {
	Variables map[string]struct {
		Value any `json:"value"`
	} `json:"variables"`
	PlannedValues struct {
		RootModule module `json:"root_module"`
		Outputs    map[string]struct {
			Value any `json:"value"`
		} `json:"outputs"`
	} `json:"planned_values"`
	PriorState struct {
		Values struct {
			RootModule module `json:"root_module"`
		} `json:"values"`
	} `json:"prior_state"`
	Configuration struct {
		RootModule struct {
			Resources []configResource `json:"resources"`
			Variables map[string]struct {
				Sensitive bool `json:"sensitive"`
			} `json:"variables"`
		} `json:"root_module"`
	} `json:"configuration"`
	Checks []struct {
		Address struct {
			Kind string `json:"kind"`
			Name string `json:"name"`
		} `json:"address"`
	} `json:"checks"`
}

// plan holds the managed resources a plan would create, the data sources it
// read while planning, and what the configuration says of both.
type plan struct {
	resources []resource
	data      []resource
	vars      map[string]any            // variable values
	sensitive map[string]bool           // variables declared sensitive
	config    map[string]configResource // by address without instance key
	checks    []string                  // names of check blocks
	outputs   map[string]any            // planned output values (unknown ones absent)
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
	out := &plan{vars: map[string]any{}, sensitive: map[string]bool{}, config: map[string]configResource{}, outputs: map[string]any{}}
	for name, o := range p.PlannedValues.Outputs {
		out.outputs[name] = o.Value
	}
	for name, v := range p.Variables {
		out.vars[name] = v.Value
	}
	for name, v := range p.Configuration.RootModule.Variables {
		out.sensitive[name] = v.Sensitive
	}
	for _, r := range p.Configuration.RootModule.Resources {
		out.config[r.Address] = r
	}
	for _, c := range p.Checks {
		if c.Address.Kind == "check" {
			out.checks = append(out.checks, c.Address.Name)
		}
	}
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

// configOf returns the configured block of a resource instance address.
func (p *plan) configOf(address string) (configResource, bool) {
	if i := strings.Index(address, "["); i >= 0 {
		address = address[:i]
	}
	c, ok := p.config[address]
	return c, ok
}

// expr follows a path of attribute names through configured expressions,
// taking the first element of each nested block, and returns the
// expression found there (constant_value or references), or nil.
func expr(c configResource, path ...string) map[string]any {
	var cur any = c.Expressions
	for _, k := range path {
		if list, ok := cur.([]any); ok {
			if len(list) == 0 {
				return nil
			}
			cur = list[0]
		}
		m, ok := cur.(map[string]any)
		if !ok {
			return nil
		}
		cur = m[k]
	}
	if list, ok := cur.([]any); ok && len(list) > 0 {
		cur = list[0]
	}
	m, _ := cur.(map[string]any)
	return m
}

// references lists what an expression is computed from.
func references(e map[string]any) []string {
	refs, _ := e["references"].([]any)
	var out []string
	for _, r := range refs {
		if s, ok := r.(string); ok {
			out = append(out, s)
		}
	}
	return out
}

// byAddress returns the planned resource instance at an address.
func (p *plan) byAddress(address string) (resource, bool) {
	for _, r := range p.resources {
		if r.Address == address {
			return r, true
		}
	}
	return resource{}, false
}

// list returns the nested blocks at key.
func list(v map[string]any, key string) []map[string]any {
	l, _ := v[key].([]any)
	var out []map[string]any
	for _, e := range l {
		if m, ok := e.(map[string]any); ok {
			out = append(out, m)
		}
	}
	return out
}
