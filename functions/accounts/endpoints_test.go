package accounts_test

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/gmailwatch/gmailwatch/shared/endpointhealth"
)

type endpointView struct {
	Name                        string     `json:"name"`
	State                       string     `json:"state"`
	ConsecutiveFailures         int        `json:"consecutiveFailures"`
	LastFailureStatus           int        `json:"lastFailureStatus"`
	LastSuccess                 *time.Time `json:"lastSuccess"`
	FailingSince                *time.Time `json:"failingSince"`
	Disabled                    bool       `json:"disabled"`
	OldestUndeliveredAgeSeconds int64      `json:"oldestUndeliveredAgeSeconds"`
}

func TestEndpointsHealthAndEnable(t *testing.T) {
	w := newWorld(t)
	ctx := context.Background()
	book := endpointhealth.New(w.Firestore, nil)
	if err := book.Success(ctx, "crm"); err != nil {
		t.Fatal(err)
	}
	published := time.Now().Add(-time.Hour)
	for range 2 {
		if _, err := book.Failure(ctx, "audit", 503, "", published, time.Nanosecond); err != nil {
			t.Fatal(err)
		}
	}

	var list struct{ Endpoints []endpointView }
	if code, body := w.call(t, http.MethodGet, "/endpoints", "", &list); code != http.StatusOK {
		t.Fatalf("GET /endpoints = %d %s", code, body)
	}
	if len(list.Endpoints) != 2 || list.Endpoints[0].Name != "audit" || list.Endpoints[1].Name != "crm" {
		t.Fatalf("GET /endpoints = %+v, want audit and crm", list.Endpoints)
	}
	audit, crm := list.Endpoints[0], list.Endpoints[1]
	if audit.State != "disabled" || !audit.Disabled || audit.ConsecutiveFailures != 2 || audit.LastFailureStatus != 503 ||
		audit.OldestUndeliveredAgeSeconds < 3500 || audit.FailingSince == nil {
		t.Errorf("audit = %+v, want disabled after two 503s, its oldest failure an hour old", audit)
	}
	if crm.State != "healthy" || crm.LastSuccess == nil || crm.ConsecutiveFailures != 0 {
		t.Errorf("crm = %+v, want healthy", crm)
	}

	for _, tc := range []struct {
		method, path string
		want         int
	}{
		{http.MethodGet, "/endpoints/nobody", http.StatusNotFound},
		{http.MethodPost, "/endpoints/nobody/enable", http.StatusNotFound},
		{http.MethodGet, "/endpoints/Bad_Name", http.StatusBadRequest},
		{http.MethodPost, "/endpoints/Bad_Name/enable", http.StatusBadRequest},
	} {
		if code, body := w.call(t, tc.method, tc.path, "", nil); code != tc.want {
			t.Errorf("%s %s = %d %s, want %d", tc.method, tc.path, code, body, tc.want)
		}
	}
	if e, _ := book.Get(ctx, "audit"); !e.Disabled {
		t.Fatal("a refused request changed audit")
	}

	var one endpointView
	if code, body := w.call(t, http.MethodPost, "/endpoints/audit/enable", "", &one); code != http.StatusOK {
		t.Fatalf("POST /endpoints/audit/enable = %d %s", code, body)
	}
	if one.State != "healthy" || one.Disabled || one.ConsecutiveFailures != 0 || one.FailingSince != nil {
		t.Errorf("enabled audit = %+v", one)
	}
	if code, body := w.call(t, http.MethodGet, "/endpoints/audit", "", &one); code != http.StatusOK || one.Disabled {
		t.Errorf("GET /endpoints/audit after enable = %d %s", code, body)
	}
}
