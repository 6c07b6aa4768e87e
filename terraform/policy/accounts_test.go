package policy

import (
	"fmt"
	"strings"
	"testing"
)

// accountsRules keep the accounts API (the application's backend API)
// private: it answers only identities named in accounts_invokers.
var accountsRules = []rule{
	{"accounts is invoked only by named identities", accountsPrivate},
	{"run.invoker is granted on the Cloud Run service", invokerOnService},
}

// invokerOnService catches a known first-apply failure: Cloud Functions'
// own IAM refuses roles/run.invoker on a 2nd gen function ("Role
// roles/run.invoker is not supported for this resource",
// hashicorp/terraform-provider-google #21674, #20320, #15264); the grant
// belongs on the function's Cloud Run service.
func invokerOnService(p *plan) []string {
	return withBindings(p, func(bs []binding) []string {
		var out []string
		for _, b := range bs {
			if strings.HasPrefix(b.typ, "google_cloudfunctions2_function_iam_") && b.role == "roles/run.invoker" {
				out = append(out, fmt.Sprintf("%s grants roles/run.invoker through the function's IAM, which refuses it: use google_cloud_run_v2_service_iam_member", b.address))
			}
		}
		return out
	})
}

// runAdminRoles would let their members invoke every function of the
// project, the accounts API included, if granted project-wide.
var runAdminRoles = map[string]bool{
	"roles/run.invoker": true, "roles/run.admin": true, "roles/run.developer": true,
	"roles/cloudfunctions.invoker": true, "roles/cloudfunctions.admin": true, "roles/cloudfunctions.developer": true,
}

func accountsPrivate(p *plan) []string {
	accounts, ok := p.function("Accounts")
	if !ok {
		return []string{"no function with entry point Accounts"}
	}
	return withBindings(p, func(bs []binding) []string {
		var out []string
		for _, b := range bs {
			switch {
			case b.typ == "google_project_iam_member" && runAdminRoles[b.role]:
				out = append(out, fmt.Sprintf("%s grants %s to %s project-wide: it would reach the accounts API; grant run.invoker on one service", b.address, b.role, b.member))
			case b.target != accounts.name:
			case b.role != "roles/run.invoker":
				out = append(out, fmt.Sprintf("%s grants %s on the accounts API %q: callers need only run.invoker", b.address, b.role, accounts.name))
			case !strings.HasPrefix(b.member, "serviceAccount:") && !strings.HasPrefix(b.member, "user:") && !strings.HasPrefix(b.member, "group:"):
				out = append(out, fmt.Sprintf("%s lets %s invoke the accounts API %q: only named identities may", b.address, b.member, accounts.name))
			}
		}
		return out
	})
}

// TestAccountsPolicies checks the real plan written by scripts/tf-check.sh.
func TestAccountsPolicies(t *testing.T) {
	p := realPlan(t)
	for _, r := range accountsRules {
		if got := r.check(p); len(got) != 0 {
			t.Errorf("%s: violations:\n  %s", r.name, strings.Join(got, "\n  "))
		}
	}
}

// TestAccountsPolicyFixtures proves each rule on a plan it must accept and
// one it must reject.
func TestAccountsPolicyFixtures(t *testing.T) {
	good := readPlan(t, "testdata/accounts-good-plan.json")
	broken := readPlan(t, "testdata/accounts-broken-plan.json")
	want := map[string][]string{
		"accounts is invoked only by named identities": {
			`accounts_invoker["allAuthenticatedUsers"] lets allAuthenticatedUsers invoke`,
			`accounts_invoker["domain:example.com"] lets domain:example.com invoke`,
			"google_project_iam_member.everyone_invokes grants roles/run.invoker to serviceAccount:backend@demo-project.iam.gserviceaccount.com project-wide",
			"accounts_admin grants roles/run.admin on the accounts API",
		},
		"run.invoker is granted on the Cloud Run service": {
			"google_cloudfunctions2_function_iam_member.accounts_fn_invoker grants roles/run.invoker through the function's IAM",
		},
	}
	for _, r := range accountsRules {
		t.Run(r.name, func(t *testing.T) {
			if got := r.check(good); len(got) != 0 {
				t.Errorf("good plan: got violations\n  %s\nwant none", strings.Join(got, "\n  "))
			}
			got := strings.Join(r.check(broken), "\n")
			if len(want[r.name]) == 0 {
				t.Fatal("no expected violations for this rule")
			}
			for _, w := range want[r.name] {
				if !strings.Contains(got, w) {
					t.Errorf("broken plan: got violations\n%s\nwant one containing %q", got, w)
				}
			}
		})
	}
}
