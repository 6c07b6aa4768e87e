package policy

import (
	"strconv"
	"testing"
)

// TestNotifyServesManyRequestsAnInstance checks the real plan: notify's
// syncs mostly wait (the look after a push's second), so an instance serves
// many at once, and Cloud Run allows more than one request at a time only
// on a whole vCPU; every other function with a concurrency above one has
// one too.
func TestNotifyServesManyRequestsAnInstance(t *testing.T) {
	p := realPlan(t)
	for _, r := range p.ofType("google_cloudfunctions2_function") {
		s := block(r.Values, "service_config")
		if s == nil {
			t.Fatalf("%s: no service_config", r.Address)
		}
		conc, _ := s["max_instance_request_concurrency"].(float64)
		cpu, _ := strconv.ParseFloat(str(s, "available_cpu"), 64)
		if build := block(r.Values, "build_config"); build != nil && str(build, "entry_point") == "Notify" && conc <= 1 {
			t.Errorf("%s: notify serves %v requests an instance, want more than one", r.Address, conc)
		}
		if conc > 1 && cpu < 1 {
			t.Errorf("%s: %v requests an instance on %q vCPU; Cloud Run needs a whole vCPU above one", r.Address, conc, str(s, "available_cpu"))
		}
	}
}
