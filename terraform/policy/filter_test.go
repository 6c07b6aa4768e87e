package policy

import (
	"fmt"
	"strconv"
	"strings"
	"testing"
	"unicode"
)

// matches evaluates the part of the Cloud Logging query language and the
// Cloud Monitoring filter syntax the alert policies use against one entry or
// time series, given as field path -> value: comparisons key="value",
// key=starts_with("prefix") and severity>=LEVEL, joined by AND and OR (OR
// binds tighter, as in the Logging query language), NOT, and parentheses.
// Monitoring's resource.label.K and Logging's resource.labels.K name the
// same field.
func matches(filter string, fields map[string]string) (bool, error) {
	toks, err := tokenize(filter)
	if err != nil {
		return false, err
	}
	norm := map[string]string{}
	for k, v := range fields {
		norm[fieldKey(k)] = v
	}
	e := &evaluator{toks: toks, fields: norm}
	got, err := e.and()
	if err == nil && e.pos < len(toks) {
		err = fmt.Errorf("unexpected %q", toks[e.pos])
	}
	if err != nil {
		return false, fmt.Errorf("filter %q: %w", filter, err)
	}
	return got, nil
}

func fieldKey(k string) string {
	for _, p := range []string{"resource.label.", "metric.label."} {
		if strings.HasPrefix(k, p) {
			return strings.Replace(k, ".label.", ".labels.", 1)
		}
	}
	return k
}

// tokenize splits a filter into quoted strings (kept with their quotes),
// parentheses, operators and words.
func tokenize(s string) ([]string, error) {
	var out []string
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n':
			i++
		case c == '"':
			j := i + 1
			for ; j < len(s) && s[j] != '"'; j++ {
				if s[j] == '\\' {
					j++
				}
			}
			if j >= len(s) {
				return nil, fmt.Errorf("unterminated string at %d", i)
			}
			out = append(out, s[i:j+1])
			i = j + 1
		case c == '(' || c == ')':
			out = append(out, string(c))
			i++
		case strings.HasPrefix(s[i:], ">=") || strings.HasPrefix(s[i:], "<=") || strings.HasPrefix(s[i:], "!="):
			out = append(out, s[i:i+2])
			i += 2
		case c == '=' || c == '>' || c == '<' || c == ':':
			out = append(out, string(c))
			i++
		default:
			j := i
			for j < len(s) && !strings.ContainsRune(" \t\n\"()=<>!:", rune(s[j])) {
				j++
			}
			if j == i {
				return nil, fmt.Errorf("unexpected %q at %d", c, i)
			}
			out = append(out, s[i:j])
			i = j
		}
	}
	return out, nil
}

type evaluator struct {
	toks   []string
	pos    int
	fields map[string]string
}

func (e *evaluator) peek() string {
	if e.pos < len(e.toks) {
		return e.toks[e.pos]
	}
	return ""
}

func (e *evaluator) next() string {
	t := e.peek()
	e.pos++
	return t
}

func (e *evaluator) and() (bool, error) {
	got, err := e.or()
	for err == nil && e.peek() == "AND" {
		e.next()
		var r bool
		r, err = e.or()
		got = got && r
	}
	return got, err
}

func (e *evaluator) or() (bool, error) {
	got, err := e.unary()
	for err == nil && e.peek() == "OR" {
		e.next()
		var r bool
		r, err = e.unary()
		got = got || r
	}
	return got, err
}

func (e *evaluator) unary() (bool, error) {
	switch e.peek() {
	case "NOT":
		e.next()
		got, err := e.unary()
		return !got, err
	case "(":
		e.next()
		got, err := e.and()
		if err == nil && e.next() != ")" {
			err = fmt.Errorf("missing )")
		}
		return got, err
	}
	return e.comparison()
}

var severities = []string{"DEFAULT", "DEBUG", "INFO", "NOTICE", "WARNING", "ERROR", "CRITICAL", "ALERT", "EMERGENCY"}

func severityRank(s string) int {
	for i, v := range severities {
		if v == s {
			return i
		}
	}
	return -1
}

func (e *evaluator) comparison() (bool, error) {
	key := e.next()
	if key == "" || !unicode.IsLetter(rune(key[0])) {
		return false, fmt.Errorf("want a field, got %q", key)
	}
	op := e.next()
	val := e.next()
	if val == "" || val == ")" || val == "(" {
		return false, fmt.Errorf("%s %s without a value", key, op)
	}
	prefix := false
	if val == "starts_with" {
		if e.next() != "(" {
			return false, fmt.Errorf("starts_with without (")
		}
		val = e.next()
		if e.next() != ")" {
			return false, fmt.Errorf("starts_with without )")
		}
		prefix = true
	}
	if strings.HasPrefix(val, `"`) {
		s, err := strconv.Unquote(val)
		if err != nil {
			return false, fmt.Errorf("string %s: %w", val, err)
		}
		val = s
	}
	got, ok := e.fields[fieldKey(key)]
	switch {
	case op == "=" && prefix:
		return ok && strings.HasPrefix(got, val), nil
	case op == "=":
		return ok && got == val, nil
	case op == "!=":
		return !ok || got != val, nil
	case op == ">=" && key == "severity":
		return ok && severityRank(got) >= severityRank(val) && severityRank(val) >= 0, nil
	case op == ">":
		// Numbers, as a log filter compares a number field with a number.
		want, err := strconv.ParseFloat(val, 64)
		if err != nil {
			return false, fmt.Errorf("%s > %s: not a number", key, val)
		}
		n, err := strconv.ParseFloat(got, 64)
		return ok && err == nil && n > want, nil
	}
	return false, fmt.Errorf("unsupported comparison %s %s %s", key, op, val)
}

func TestMatches(t *testing.T) {
	entry := map[string]string{
		"resource.type":                "cloud_run_revision",
		"resource.labels.service_name": "gw-renew",
		"jsonPayload.message":          "watch renewal failed",
		"severity":                     "WARNING",
	}
	tests := []struct {
		filter string
		want   bool
	}{
		{`resource.type="cloud_run_revision"`, true},
		{`resource.type="cloud_scheduler_job"`, false},
		{`resource.type="cloud_run_revision" AND (jsonPayload.message="x" OR jsonPayload.message="watch renewal failed")`, true},
		{`resource.type="cloud_run_revision" AND jsonPayload.message="x" OR jsonPayload.message="watch renewal failed"`, true},
		{`resource.labels.service_name="gw-renew" AND severity>=ERROR`, false},
		{`severity>=WARNING`, true},
		{`resource.label.service_name=starts_with("gw-")`, true},
		{`resource.labels.service_name=starts_with("gw-notify")`, false},
		{`NOT resource.type="cloud_run_revision"`, false},
		{`resource.type!="cloud_run_revision"`, false},
	}
	for _, tc := range tests {
		got, err := matches(tc.filter, entry)
		if err != nil || got != tc.want {
			t.Errorf("matches(%q) = %v, %v; want %v", tc.filter, got, err, tc.want)
		}
	}
	for _, bad := range []string{`resource.type="x`, `resource.type=`, `(resource.type="x"`, `resource.type~"x"`, `AND x="y"`} {
		if _, err := matches(bad, entry); err == nil {
			t.Errorf("matches(%q): no error, want one", bad)
		}
	}
}
