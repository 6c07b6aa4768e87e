package policy

import (
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
)

var messageFilter = regexp.MustCompile(`jsonPayload\.message="([^"]+)"`)

// TestAlertMessagesAreLogged keeps the log-match alerts and the functions in
// step: every message a planned alert matches must appear as a string literal
// in the non-test Go code of functions/ or shared/.
func TestAlertMessagesAreLogged(t *testing.T) {
	p := realPlan(t)
	want := map[string][]string{} // message -> metrics counting it
	for _, a := range p.ofType("google_monitoring_alert_policy") {
		for _, f := range conditionFilters(a)["condition_matched_log"] {
			for _, match := range messageFilter.FindAllStringSubmatch(f, -1) {
				want[match[1]] = append(want[match[1]], a.Address)
			}
		}
	}
	if len(want) == 0 {
		t.Fatal("no planned alert matches logs on jsonPayload.message")
	}

	root := repoRoot(t)
	var code strings.Builder
	for _, dir := range []string{"functions", "shared"} {
		err := filepath.WalkDir(filepath.Join(root, dir), func(path string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
				return err
			}
			data, err := os.ReadFile(path)
			code.Write(data)
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	var missing []string
	for msg, metrics := range want {
		if !strings.Contains(code.String(), strconv.Quote(msg)) {
			missing = append(missing, msg+" (matched by "+strings.Join(metrics, ", ")+")")
		}
	}
	sort.Strings(missing)
	if len(missing) > 0 {
		t.Errorf("alerts match log messages no function logs:\n  %s", strings.Join(missing, "\n  "))
	}
}
