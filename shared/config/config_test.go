package config_test

import (
	"strings"
	"testing"
	"time"

	"github.com/gmailwatch/gmailwatch/shared/config"
)

func TestReaderReportsEveryProblemAtOnce(t *testing.T) {
	r := config.NewReader(config.FromMap(map[string]string{
		"TIMEOUT": "soon",
		"LIMIT":   "9000",
		"MODE":    "sideways",
		"HOOK":    "http://example.com/hook",
		"FLAG":    "maybe",
		"LABELS":  " , ",
		"SHARE":   "1.5",
		"RATIO":   "NaN",
	}))
	r.String("PROJECT_ID", config.Required)
	r.Duration("TIMEOUT", time.Second)
	r.Int("LIMIT", 1, 1, 100)
	r.OneOf("MODE", "include", "include", "exclude")
	r.URL("HOOK", "")
	r.Bool("FLAG", false)
	r.List("LABELS", nil)
	r.Float("SHARE", 0.5, 0.01, 1)
	r.Float("RATIO", 0.5, 0, 1)
	err := r.Err()
	if err == nil {
		t.Fatal("Err() = nil, want every problem listed")
	}
	for _, want := range []string{"PROJECT_ID: missing", "TIMEOUT", "LIMIT: 9000 is outside 1..100", "MODE", "HOOK", "must use https", "FLAG", "LABELS: empty list", "SHARE: 1.5 is outside 0.01..1", "RATIO: \"NaN\" is not a number"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
}

func TestReaderValuesAndDefaults(t *testing.T) {
	r := config.NewReader(config.FromMap(map[string]string{
		"PROJECT_ID": " demo ",
		"TIMEOUT":    "90s",
		"LIMIT":      "7",
		"MODE":       "EXCLUDE",
		"HOOK":       "http://127.0.0.1:8080/hook",
		"LABELS":     "INBOX, IMPORTANT",
		"FLAG":       "true",
		"SHARE":      "0.25",
	}))
	tests := []struct {
		name      string
		got, want any
	}{
		{"string trimmed", r.String("PROJECT_ID", config.Required), "demo"},
		{"default", r.String("UNSET", "fallback"), "fallback"},
		{"duration", r.Duration("TIMEOUT", time.Second), 90 * time.Second},
		{"int", r.Int("LIMIT", 1, 1, 100), 7},
		{"one of, canonical case", r.OneOf("MODE", "include", "include", "exclude"), "exclude"},
		{"loopback http", r.URL("HOOK", ""), "http://127.0.0.1:8080/hook"},
		{"list", strings.Join(r.List("LABELS", nil), "|"), "INBOX|IMPORTANT"},
		{"bool", r.Bool("FLAG", false), true},
		{"float", r.Float("SHARE", 0.5, 0.01, 1), 0.25},
		{"float default", r.Float("UNSET", 0.5, 0.01, 1), 0.5},
	}
	for _, tc := range tests {
		if tc.got != tc.want {
			t.Errorf("%s: got %v, want %v", tc.name, tc.got, tc.want)
		}
	}
	if err := r.Err(); err != nil {
		t.Fatalf("Err() = %v, want nil", err)
	}
}

func TestCheckURL(t *testing.T) {
	tests := []struct {
		url string
		ok  bool
	}{
		{"https://app.example.com/hooks", true},
		{"http://localhost:9000/x", true},
		{"http://[::1]:9000/x", true},
		{"http://127.0.0.9/x", true},
		{"http://app.example.com/hooks", false},
		{"ftp://127.0.0.1/x", false},
		{"/relative", false},
		{"https://", false},
		{"https://:443/x", false},
		{"http://127.0.0.1.evil.example/x", false},
		{"http://127.evil.example/x", false},
		{"http://user:s3cret@app.example.com/hooks/T0K3N?key=s3cret#s3cret", false},
		{"https://app.example.com/hooks/\x00s3cret", false},
	}
	for _, tc := range tests {
		err := config.CheckURL(tc.url)
		if (err == nil) != tc.ok {
			t.Errorf("CheckURL(%q) = %v, want ok=%v", tc.url, err, tc.ok)
		}
		if err != nil && (strings.Contains(err.Error(), "s3cret") || strings.Contains(err.Error(), "T0K3N")) {
			t.Errorf("CheckURL(%q) = %v: the error quotes the path, query or password", tc.url, err)
		}
	}
}
