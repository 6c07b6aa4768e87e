package policy

import (
	"fmt"
	"os"
	"strings"
	"testing"
)

const tokenCreator = "roles/iam.serviceAccountTokenCreator"

// delegatingFunctions returns the functions that act for a Workspace
// domain: CONNECT_MODE delegation or both, in a function whose code reads
// the delegated account (consent reads the mode only, to refuse).
func delegatingFunctions(p *plan) []function {
	var out []function
	reads := codeReads()
	for _, f := range p.functions() {
		if m := f.env["CONNECT_MODE"]; (m == "delegation" || m == "both") && reads[functionKey(f)].all["DELEGATION_SERVICE_ACCOUNT"] {
			out = append(out, f)
		}
	}
	return out
}

// functionKey is the function's key in terraform/main.tf's functions map:
// google_cloudfunctions2_function.function["renew"] is renew.
func functionKey(f function) string {
	_, k, _ := strings.Cut(f.address, `["`)
	return strings.TrimSuffix(k, `"]`)
}

// delegationSigning: each function in delegation mode can sign as the
// account it names (the token creator role on that account for its own
// identity, or every signJwt fails with 403); the token creator role is
// never granted project-wide, where it would let a function sign as every
// account of the project; and the delegated account itself holds no role,
// as whatever it holds, every user of the domain's delegation could use.
func delegationSigning(p *plan) []string {
	fns := delegatingFunctions(p)
	return withBindings(p, func(bs []binding) []string {
		var out []string
		delegated := map[string]bool{}
		for _, f := range fns {
			sa := f.env["DELEGATION_SERVICE_ACCOUNT"]
			if sa == "" {
				out = append(out, fmt.Sprintf("%s sets CONNECT_MODE=%s without DELEGATION_SERVICE_ACCOUNT", f.address, f.env["CONNECT_MODE"]))
				continue
			}
			delegated["serviceAccount:"+sa] = true
			can := false
			for _, b := range bs {
				if b.role == tokenCreator && b.member == "serviceAccount:"+f.serviceAccount && strings.HasSuffix(b.target, "/serviceAccounts/"+sa) {
					can = true
				}
			}
			if !can {
				out = append(out, fmt.Sprintf("%s runs as %s, which has no %s on %s: its signJwt calls fail with 403", f.address, f.serviceAccount, tokenCreator, sa))
			}
		}
		for _, b := range bs {
			if b.role == tokenCreator && !strings.HasPrefix(b.typ, "google_service_account_iam_") {
				out = append(out, fmt.Sprintf("%s grants %s to %s on %q: grant it on the one service account instead", b.address, b.role, b.member, b.target))
			}
			if delegated[b.member] {
				out = append(out, fmt.Sprintf("%s grants %s to the delegated account %s: it must hold no role", b.address, b.role, b.member))
			}
		}
		return out
	})
}

// delegationAPIs: delegation mode needs IAM Credentials (signJwt) and the
// Admin SDK (the directory) enabled (apis.tf), or the first call of each fails with
// SERVICE_DISABLED after an apply that looked fine.
func delegationAPIs(p *plan) []string {
	fns := delegatingFunctions(p)
	if len(fns) == 0 {
		return nil
	}
	enabled := map[string]bool{}
	for _, r := range p.ofType("google_project_service") {
		enabled[str(r.Values, "service")] = true
	}
	var out []string
	for _, api := range []string{"iamcredentials.googleapis.com", "admin.googleapis.com"} {
		if !enabled[api] {
			out = append(out, fmt.Sprintf("%s is in delegation mode but %s is not enabled", fns[0].address, api))
		}
	}
	return out
}

// TestDelegationPreconditions plans delegation mode with settings that are
// each valid alone but not together: each must be refused with its message.
func TestDelegationPreconditions(t *testing.T) {
	bin := os.Getenv(tfBinEnv)
	if bin == "" {
		t.Skipf("%s is not set: run scripts/tf-check.sh to check the preconditions with Terraform", tfBinEnv)
	}
	for _, tc := range []struct {
		name string
		vars []string
		want string
	}{
		{"no admin", []string{"delegation_admin="}, "Delegation mode needs delegation_domain and delegation_admin"},
		{"org unit and group", []string{"delegation_group=support@example.com"}, "Set delegation_org_unit or delegation_group, not both"},
		{"admin of another domain", []string{"delegation_admin=admin@example.org"}, "must be addresses of delegation_domain"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			out, err := planWith(t, bin, tc.vars...)
			got := strings.Join(strings.Fields(string(out)), " ")
			if err == nil || !strings.Contains(got, tc.want) || !strings.Contains(got, "Resource precondition failed") {
				t.Errorf("plan with %v: err %v, output\n%s\nwant it refused with %q", tc.vars, err, out, tc.want)
			}
		})
	}
}
