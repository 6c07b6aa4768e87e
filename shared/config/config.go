// Package config reads a function's settings from environment variables and
// reports every missing or malformed one in a single error, so a misconfigured
// deployment fails at its first request with a message that names them all.
//
//	r := config.NewReader(os.LookupEnv)
//	project := r.String("PROJECT_ID", config.Required)
//	timeout := r.Duration("SYNC_TIMEOUT", 50*time.Second)
//	if err := r.Err(); err != nil { ... }
package config

import (
	"errors"
	"fmt"
	"math"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"
)

// Required marks a string setting that has no default.
const Required = "\x00required"

// Reader reads settings and remembers every problem it meets.
type Reader struct {
	lookup   func(string) (string, bool)
	problems []string
}

// NewReader returns a Reader over lookup; nil means os.LookupEnv.
func NewReader(lookup func(string) (string, bool)) *Reader {
	if lookup == nil {
		lookup = os.LookupEnv
	}
	return &Reader{lookup: lookup}
}

// FromMap returns a lookup function over m, for tests and local runs.
func FromMap(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) {
		v, ok := m[k]
		return v, ok
	}
}

func (r *Reader) raw(name string) (string, bool) {
	v, ok := r.lookup(name)
	v = strings.TrimSpace(v)
	return v, ok && v != ""
}

// Problem records a problem with a setting that a caller checked itself.
func (r *Reader) Problem(name, format string, args ...any) { r.fail(name, format, args...) }

func (r *Reader) fail(name, format string, args ...any) {
	r.problems = append(r.problems, name+": "+fmt.Sprintf(format, args...))
}

// String returns the setting, or def when it is unset. def == Required makes
// an unset setting a problem.
func (r *Reader) String(name, def string) string {
	v, ok := r.raw(name)
	if ok {
		return v
	}
	if def == Required {
		r.fail(name, "missing")
		return ""
	}
	return def
}

// OneOf returns the setting, which must be one of allowed (compared without case).
func (r *Reader) OneOf(name, def string, allowed ...string) string {
	v := r.String(name, def)
	for _, a := range allowed {
		if strings.EqualFold(v, a) {
			return a
		}
	}
	if v != "" {
		r.fail(name, "%q is not one of %s", v, strings.Join(allowed, ", "))
	}
	return v
}

// List returns a comma-separated setting as a slice without empty items.
func (r *Reader) List(name string, def []string) []string {
	v, ok := r.raw(name)
	if !ok {
		return def
	}
	var out []string
	for _, item := range strings.Split(v, ",") {
		if item = strings.TrimSpace(item); item != "" {
			out = append(out, item)
		}
	}
	if len(out) == 0 {
		r.fail(name, "empty list")
	}
	return out
}

// Int returns an integer setting that must lie in [min, max].
func (r *Reader) Int(name string, def, min, max int) int {
	v, ok := r.raw(name)
	if !ok {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		r.fail(name, "%q is not a whole number", v)
		return def
	}
	if n < min || n > max {
		r.fail(name, "%d is outside %d..%d", n, min, max)
		return def
	}
	return n
}

// Float returns a decimal setting that must lie in [min, max].
func (r *Reader) Float(name string, def, min, max float64) float64 {
	v, ok := r.raw(name)
	if !ok {
		return def
	}
	f, err := strconv.ParseFloat(v, 64)
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
		r.fail(name, "%q is not a number", v)
		return def
	}
	if f < min || f > max {
		r.fail(name, "%v is outside %v..%v", f, min, max)
		return def
	}
	return f
}

// Duration returns a positive Go duration setting such as "90s" or "24h".
func (r *Reader) Duration(name string, def time.Duration) time.Duration {
	v, ok := r.raw(name)
	if !ok {
		return def
	}
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		r.fail(name, "%q is not a positive duration like 30s or 24h", v)
		return def
	}
	return d
}

// Bool returns a boolean setting (true/false/1/0).
func (r *Reader) Bool(name string, def bool) bool {
	v, ok := r.raw(name)
	if !ok {
		return def
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		r.fail(name, "%q is not true or false", v)
		return def
	}
	return b
}

// URL returns an absolute URL setting. Deployed settings must use https; plain
// http is accepted only for loopback hosts, which local runs use.
func (r *Reader) URL(name, def string) string {
	v := r.String(name, def)
	if v == "" {
		return v
	}
	if err := CheckURL(v); err != nil {
		r.fail(name, "%v", err)
	}
	return v
}

// CheckURL accepts https URLs, and http URLs only on loopback hosts. Its
// errors show at most the URL's scheme and host: a path or query may hold a
// token.
func CheckURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil || u.Hostname() == "" {
		return errors.New("the value is not an absolute URL")
	}
	switch {
	case u.Scheme == "https":
		return nil
	case u.Scheme == "http" && IsLoopback(u.Hostname()):
		return nil
	}
	return fmt.Errorf("%q must use https (http only on loopback)", u.Scheme+"://"+u.Host+"/…")
}

// IsLoopback reports whether host names this machine: localhost or a
// loopback address, not a name that merely starts with "127.".
func IsLoopback(host string) bool {
	ip := net.ParseIP(host)
	return host == "localhost" || ip != nil && ip.IsLoopback()
}

// Err returns one error naming every problem, or nil.
func (r *Reader) Err() error {
	if len(r.problems) == 0 {
		return nil
	}
	return errors.New("configuration: " + strings.Join(r.problems, "; "))
}
