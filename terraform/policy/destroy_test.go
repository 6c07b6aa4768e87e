package policy

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// stateFrom writes a Terraform state holding every resource a plan would
// create, with its planned values, as if that plan had been applied, plus
// the given extra google_secret_manager_secret resources (name => secret
// id), as an older deployment's state held them.
func stateFrom(t *testing.T, bin, dir string, planPath string, extra map[string]string) string {
	t.Helper()
	var pj struct {
		PlannedValues struct {
			RootModule struct {
				Resources []struct {
					Address  string         `json:"address"`
					Mode     string         `json:"mode"`
					Type     string         `json:"type"`
					Name     string         `json:"name"`
					Index    any            `json:"index"`
					Provider string         `json:"provider_name"`
					Values   map[string]any `json:"values"`
				} `json:"resources"`
			} `json:"root_module"`
		} `json:"planned_values"`
	}
	data, err := os.ReadFile(planPath)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, &pj); err != nil {
		t.Fatal(err)
	}
	// Each instance is written at its resource type's current schema
	// version, so the provider upgrades nothing.
	cmd := exec.Command(bin, "providers", "schema", "-json")
	cmd.Dir = dir
	cmd.Env = offlineEnv(t)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("providers schema: %v", err)
	}
	var schemas struct {
		Providers map[string]struct {
			Resources map[string]struct {
				Version int `json:"version"`
			} `json:"resource_schemas"`
		} `json:"provider_schemas"`
	}
	if err := json.Unmarshal(out, &schemas); err != nil {
		t.Fatal(err)
	}
	version := map[string]int{}
	for _, p := range schemas.Providers {
		for typ, r := range p.Resources {
			version[typ] = r.Version
		}
	}
	type instance struct {
		IndexKey   any            `json:"index_key,omitempty"`
		Schema     int            `json:"schema_version"`
		Attributes map[string]any `json:"attributes"`
		Sensitive  []any          `json:"sensitive_attributes"`
	}
	type res struct {
		Mode      string     `json:"mode"`
		Type      string     `json:"type"`
		Name      string     `json:"name"`
		Provider  string     `json:"provider"`
		Instances []instance `json:"instances"`
	}
	byName := map[string]*res{}
	var order []string
	add := func(typ, name, provider string, index any, values map[string]any) {
		key := typ + "." + name
		if byName[key] == nil {
			byName[key] = &res{Mode: "managed", Type: typ, Name: name, Provider: `provider["` + provider + `"]`}
			order = append(order, key)
		}
		if _, ok := values["id"]; !ok {
			values["id"] = "restored-" + key
		}
		byName[key].Instances = append(byName[key].Instances, instance{IndexKey: index, Schema: version[typ], Attributes: values, Sensitive: []any{}})
	}
	for _, r := range pj.PlannedValues.RootModule.Resources {
		if r.Mode != "managed" {
			continue
		}
		if r.Type == "terraform_data" {
			// Its attributes are dynamically typed, stored with their type:
			// the id is all a destroy needs.
			r.Values = map[string]any{}
		}
		add(r.Type, r.Name, r.Provider, r.Index, r.Values)
	}
	for name, id := range extra {
		add("google_secret_manager_secret", name, "registry.terraform.io/hashicorp/google", nil,
			map[string]any{"secret_id": id, "project": "demo-project", "replication": []any{map[string]any{"auto": []any{map[string]any{}}}}})
	}
	state := map[string]any{"version": 4, "terraform_version": "1.7.0", "serial": 1, "lineage": "destroy-test", "outputs": map[string]any{}}
	var resources []*res
	for _, k := range order {
		resources = append(resources, byName[k])
	}
	state["resources"] = resources
	path := filepath.Join(t.TempDir(), "terraform.tfstate")
	data, _ = json.Marshal(state)
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// offlineEnv is the environment Terraform runs in here: no network but a
// closed loopback proxy (as scripts/tf-check.sh does), a data directory
// of the test's own.
func offlineEnv(t *testing.T) []string {
	return append(os.Environ(), "TF_DATA_DIR="+filepath.Join(t.TempDir(), "data"),
		"HTTPS_PROXY=http://127.0.0.1:9", "HTTP_PROXY=http://127.0.0.1:9", "NO_PROXY=")
}

// TestDestroyKeepsUsers plans `terraform destroy` over the state the real
// plan would leave (and over the older state that still held the kept
// secrets): every other resource is deleted, while the user-key, link and
// state secrets are not in it, so a re-apply finds every user keyed as
// before.
func TestDestroyKeepsUsers(t *testing.T) {
	planPath, bin := os.Getenv("TF_PLAN_JSON"), os.Getenv("TF_BIN")
	if planPath == "" || bin == "" {
		t.Skip("TF_PLAN_JSON and TF_BIN not set: run scripts/tf-check.sh")
	}
	dir, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	p := readPlan(t, planPath)
	kept, _ := p.outputs["kept_secrets"].(map[string]any)
	if len(kept) != 3 {
		t.Fatalf("output kept_secrets = %v, want the three kept secrets", kept)
	}
	extra := map[string]string{}
	for k, v := range kept {
		extra[k] = v.(string)
	}
	// The state an apply of this configuration leaves, destroyed.
	changes := planChanges(t, bin, dir, stateFrom(t, bin, dir, planPath, nil), "-destroy")
	keptIDs := map[string]bool{}
	for _, v := range extra {
		keptIDs[v] = true
	}
	deleted := map[string]bool{}
	for _, rc := range changes {
		if strings.Contains(strings.Join(rc.Change.Actions, ","), "delete") {
			deleted[rc.Address] = true
		}
		if rc.Type == "google_secret_manager_secret" && keptIDs[str(rc.Change.Before, "secret_id")] {
			t.Errorf("destroy plan holds %s (secret %s, %v): every user would be re-keyed", rc.Address, str(rc.Change.Before, "secret_id"), rc.Change.Actions)
		}
	}
	// The destroy is real: it takes everything else.
	for _, r := range p.resources {
		if !deleted[r.Address] {
			t.Errorf("destroy plan does not delete %s", r.Address)
		}
	}
	t.Logf("destroy plan deletes %d resources and none of the kept secrets %v", len(deleted), extra)

	// An older deployment's state still holds the three secrets: the next
	// apply forgets them (removed blocks) and deletes nothing. (A destroy
	// before that apply would still delete them: Terraform destroys every
	// instance in state, removed blocks or not.)
	forgotten := 0
	for _, rc := range planChanges(t, bin, dir, stateFrom(t, bin, dir, planPath, extra)) {
		if rc.Type == "google_secret_manager_secret" && keptIDs[str(rc.Change.Before, "secret_id")] {
			forgotten++
			if got := strings.Join(rc.Change.Actions, ","); got != "forget" {
				t.Errorf("apply over an older state: %s (secret %s) %s, want forget", rc.Address, str(rc.Change.Before, "secret_id"), got)
			}
		}
	}
	if forgotten != len(extra) {
		t.Errorf("apply over an older state plans %d of the %d kept secrets, want each forgotten", forgotten, len(extra))
	}
}

type resourceChange struct {
	Address string `json:"address"`
	Type    string `json:"type"`
	Change  struct {
		Actions []string       `json:"actions"`
		Before  map[string]any `json:"before"`
	} `json:"change"`
}

// planChanges plans terraform/ over a state, offline, and returns the
// planned resource changes.
func planChanges(t *testing.T, bin, dir, state string, args ...string) []resourceChange {
	t.Helper()
	work := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, append([]string{"plan", "-refresh=false", "-no-color", "-input=false", "-lock=false",
		"-state=" + state, "-var-file=example.tfvars", "-var=build_dir=" + filepath.Join(work, "build"),
		"-out=" + filepath.Join(work, "plan.tfplan")}, args...)...)
	cmd.Dir, cmd.Env = dir, offlineEnv(t)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("plan %v: %v\n%s", args, err, out)
	}
	cmd = exec.CommandContext(ctx, bin, "show", "-json", filepath.Join(work, "plan.tfplan"))
	cmd.Dir, cmd.Env = dir, offlineEnv(t)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("show: %v", err)
	}
	var dp struct {
		ResourceChanges []resourceChange `json:"resource_changes"`
	}
	if err := json.Unmarshal(out, &dp); err != nil {
		t.Fatal(err)
	}
	return dp.ResourceChanges
}
