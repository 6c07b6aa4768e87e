package policy

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/gmailwatch/gmailwatch/functions/accounts"
	"github.com/gmailwatch/gmailwatch/functions/consent"
	"github.com/gmailwatch/gmailwatch/functions/notify"
	"github.com/gmailwatch/gmailwatch/functions/renew"
	"github.com/gmailwatch/gmailwatch/functions/webhook"
)

// readers are the functions' settings readers, by function name.
var readers = map[string]func(func(string) (string, bool)) error{
	"consent":  func(l func(string) (string, bool)) error { _, err := consent.ReadConfig(l); return err },
	"accounts": func(l func(string) (string, bool)) error { _, err := accounts.ReadConfig(l); return err },
	"notify":   func(l func(string) (string, bool)) error { _, err := notify.ReadConfig(l); return err },
	"renew":    func(l func(string) (string, bool)) error { _, err := renew.ReadConfig(l); return err },
	"webhook":  func(l func(string) (string, bool)) error { _, err := webhook.ReadEndpoints(l); return err },
}

// reads is what a function's code reads from its environment.
type reads struct {
	all      map[string]bool // every setting asked for
	required map[string]bool // those without a default
}

var missing = regexp.MustCompile(`([A-Z][A-Z0-9_]*): missing`)

// codeReads asks each function's settings reader with an empty environment,
// recording every name it looks up and every one it reports missing.
func codeReads() map[string]reads {
	out := map[string]reads{}
	for name, read := range readers {
		r := reads{all: map[string]bool{}, required: map[string]bool{}}
		err := read(func(k string) (string, bool) { r.all[k] = true; return "", false })
		if err != nil {
			for _, m := range missing.FindAllStringSubmatch(err.Error(), -1) {
				r.required[m[1]] = true
			}
		}
		out[name] = r
	}
	return out
}

// tfEnv is each function's environment as Terraform sets it: the names in
// common_env, and those in the function's own env block.
type tfEnv struct {
	common map[string]bool
	own    map[string]map[string]bool // by function name
}

func (e tfEnv) of(fn string) map[string]bool {
	out := map[string]bool{}
	for k := range e.common {
		out[k] = true
	}
	for k := range e.own[fn] {
		out[k] = true
	}
	return out
}

// envProblems lists where Terraform's environments and the code disagree:
// a setting Terraform sets that no function reads (a typo, or a setting left
// behind), one set in a function's own env that the function does not read,
// a required setting Terraform does not set, and a setting Terraform sets on
// one function but not on another that reads it, so the two could disagree.
func envProblems(tf tfEnv, code map[string]reads) []string {
	var out []string
	readBySome := map[string]bool{}
	for _, r := range code {
		for k := range r.all {
			readBySome[k] = true
		}
	}
	setOnSome := map[string]bool{}
	for k := range tf.common {
		setOnSome[k] = true
	}
	for fn, own := range tf.own {
		for k := range own {
			setOnSome[k] = true
			if !code[fn].all[k] {
				out = append(out, fmt.Sprintf("%s: Terraform sets %s, which it does not read", fn, k))
			}
		}
	}
	for k := range setOnSome {
		if !readBySome[k] {
			out = append(out, fmt.Sprintf("Terraform sets %s, which no function reads", k))
		}
	}
	for fn, r := range code {
		env := tf.of(fn)
		for k := range r.required {
			if !env[k] {
				out = append(out, fmt.Sprintf("%s: requires %s, which Terraform does not set", fn, k))
			}
		}
		for k := range r.all {
			if setOnSome[k] && !env[k] {
				out = append(out, fmt.Sprintf("%s: reads %s, which Terraform sets on another function but not on this one", fn, k))
			}
		}
	}
	sort.Strings(out)
	return out
}

var (
	envName  = regexp.MustCompile(`^\s*([A-Z][A-Z0-9_]*)\s*=`)
	fnHeader = regexp.MustCompile(`^\s*(consent|accounts|notify|renew|webhook)\s*=\s*\{`)
)

// parseMainEnv reads the environment names out of terraform/main.tf: the
// keys of local.common_env, and of each function's env map in local.functions.
func parseMainEnv(src string) (tfEnv, error) {
	env := tfEnv{common: map[string]bool{}, own: map[string]map[string]bool{}}
	var fn string // the function block we are in
	var into map[string]bool
	depth, intoDepth := 0, -1
	for _, line := range strings.Split(src, "\n") {
		code, _, _ := strings.Cut(line, "#")
		trimmed := strings.TrimSpace(code)
		switch {
		case strings.HasPrefix(trimmed, "common_env") && strings.HasSuffix(trimmed, "{"):
			into, intoDepth = env.common, depth
		case fnHeader.MatchString(code):
			fn = fnHeader.FindStringSubmatch(code)[1]
			env.own[fn] = map[string]bool{}
		case fn != "" && strings.HasPrefix(trimmed, "env") && strings.HasSuffix(trimmed, "{"):
			into, intoDepth = env.own[fn], depth
		case into != nil && depth == intoDepth+1:
			if m := envName.FindStringSubmatch(code); m != nil {
				into[m[1]] = true
			}
		}
		depth += strings.Count(code, "{") - strings.Count(code, "}")
		if into != nil && depth <= intoDepth {
			into, intoDepth = nil, -1
		}
	}
	if len(env.common) == 0 || len(env.own) != len(readers) {
		return env, fmt.Errorf("found common_env %v and env blocks for %d functions, want %d", env.common, len(env.own), len(readers))
	}
	return env, nil
}

// TestFunctionEnvironmentsMatchTheCode checks terraform/main.tf's function
// environments against what each function's code reads, and proves the rule
// on environments broken the ways it guards against.
func TestFunctionEnvironmentsMatchTheCode(t *testing.T) {
	src, err := os.ReadFile(filepath.Join(repoRoot(t), "terraform", "main.tf"))
	if err != nil {
		t.Fatal(err)
	}
	tf, err := parseMainEnv(string(src))
	if err != nil {
		t.Fatalf("terraform/main.tf: %v", err)
	}
	code := codeReads()
	for _, want := range []struct{ fn, name string }{{"notify", "RECONCILE_AFTER"}, {"renew", "GMAIL_LABELS"}, {"consent", "PUBLIC_URL"}} {
		if !code[want.fn].all[want.name] {
			t.Fatalf("the recorded reads of %s miss %s: the recording is broken", want.fn, want.name)
		}
	}
	if problems := envProblems(tf, code); len(problems) > 0 {
		t.Errorf("terraform/main.tf and the code disagree:\n%s", strings.Join(problems, "\n"))
	}

	for _, tc := range []struct {
		name  string
		brk   func(tfEnv)
		wants string
	}{
		{"a setting only on renew that notify reads", func(e tfEnv) { delete(e.own["notify"], "RECONCILE_AFTER"); e.own["renew"]["RECONCILE_AFTER"] = true },
			"notify: reads RECONCILE_AFTER"},
		{"a required setting missing", func(e tfEnv) { delete(e.common, "EVENTS_TOPIC") }, "requires EVENTS_TOPIC"},
		{"a misspelt setting", func(e tfEnv) { e.own["renew"]["RENEW_BEFOR"] = true }, "no function reads"},
		{"a setting on a function that ignores it", func(e tfEnv) { e.own["webhook"]["RUN_BUDGET"] = true }, "webhook: Terraform sets RUN_BUDGET, which it does not read"},
	} {
		broken := tfEnv{common: clone(tf.common), own: map[string]map[string]bool{}}
		for fn, own := range tf.own {
			broken.own[fn] = clone(own)
		}
		tc.brk(broken)
		problems := envProblems(broken, code)
		if !slices.ContainsFunc(problems, func(p string) bool { return strings.Contains(p, tc.wants) }) {
			t.Errorf("%s: problems %q, want one containing %q", tc.name, problems, tc.wants)
		}
	}
}

// TestPlannedEnvironmentsAreRead runs each function's settings reader on the
// environment of the real plan: each must accept it.
func TestPlannedEnvironmentsAreRead(t *testing.T) {
	p := realPlan(t)
	for _, f := range p.functions() {
		name := strings.ToLower(f.entryPoint)
		read, ok := readers[name]
		if !ok {
			t.Errorf("%s: no settings reader for entry point %s", f.address, f.entryPoint)
			continue
		}
		env := f.env
		if err := read(func(k string) (string, bool) { v, ok := env[k]; return v, ok }); err != nil {
			t.Errorf("%s: the planned environment is refused: %v", f.address, err)
		}
	}
}

func clone(m map[string]bool) map[string]bool {
	out := make(map[string]bool, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// readmeRow is a row of the README's configuration table: `NAME` (or
// `A` / `B`), its default, the functions that use it, its meaning.
var readmeRow = regexp.MustCompile("^\\| ((?:`[A-Z][A-Z0-9_]*`(?: / )?)+) \\| [^|]* \\| ([^|]*) \\|")

// readmeUsedBy reads, for each setting the README's configuration table
// (the one headed "| variable | default | used by | meaning |") names, the
// functions its "used by" column lists ("all": every one).
func readmeUsedBy(src string) map[string][]string {
	out := map[string][]string{}
	names := regexp.MustCompile("`([A-Z][A-Z0-9_]*)`")
	in := false
	for _, line := range strings.Split(src, "\n") {
		switch {
		case strings.HasPrefix(line, "| variable | default | used by | meaning |"):
			in = true
			continue
		case strings.TrimSpace(line) == "":
			in = false
		}
		m := readmeRow.FindStringSubmatch(line)
		if !in || m == nil {
			continue
		}
		var fns []string
		for _, f := range strings.Split(m[2], ",") {
			if f = strings.TrimSpace(f); f == "all" {
				fns = append(fns, "accounts", "consent", "notify", "renew", "webhook")
			} else if f != "" {
				fns = append(fns, f)
			}
		}
		slices.Sort(fns)
		for _, n := range names.FindAllStringSubmatch(m[1], -1) {
			out[n[1]] = fns
		}
	}
	return out
}

// usedByProblems lists the README rows whose "used by" column is not the
// set of functions whose code reads the setting.
func usedByProblems(readme map[string][]string, code map[string]reads) []string {
	var out []string
	for name, listed := range readme {
		var reading []string
		for fn, r := range code {
			if r.all[name] {
				reading = append(reading, fn)
			}
		}
		slices.Sort(reading)
		if !slices.Equal(listed, reading) {
			out = append(out, fmt.Sprintf("README: %s is used by %s, the code says %s", name, strings.Join(listed, ", "), strings.Join(reading, ", ")))
		}
	}
	sort.Strings(out)
	return out
}

// TestReadmeConfigurationTableMatchesTheCode checks the README's
// configuration table: each setting it names is used by exactly the
// functions it lists, as their settings readers show.
func TestReadmeConfigurationTableMatchesTheCode(t *testing.T) {
	src, err := os.ReadFile(filepath.Join(repoRoot(t), "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	readme, code := readmeUsedBy(string(src)), codeReads()
	if len(readme) < 20 || len(readme["RENEW_EVERY"]) == 0 {
		t.Fatalf("read %d settings from the README's table (RENEW_EVERY: %v): the table's format changed", len(readme), readme["RENEW_EVERY"])
	}
	if problems := usedByProblems(readme, code); len(problems) > 0 {
		t.Errorf("the README's configuration table and the code disagree:\n%s", strings.Join(problems, "\n"))
	}
	broken := map[string][]string{"RECONCILE_AFTER": {"notify", "renew"}}
	if p := usedByProblems(broken, code); len(p) != 1 || !strings.Contains(p[0], "RECONCILE_AFTER") {
		t.Errorf("a row missing a function that reads it: problems %q, want one naming RECONCILE_AFTER", p)
	}
}
