package gmailapi

import (
	"encoding/json"
	"fmt"
	"net/http"
)

// Error is an API error in Google's JSON shape. The Go API of this package
// returns it too, so the sandbox's admin API can answer with the same shape.
type Error struct {
	Code    int    // HTTP status
	Status  string // canonical status, e.g. NOT_FOUND
	Reason  string // errors[].reason, e.g. notFound
	Message string
	Domain  string // errors[].domain; "" is global
}

func (e *Error) Error() string { return fmt.Sprintf("gmail %d %s: %s", e.Code, e.Reason, e.Message) }

// Respond writes e as Google's error body:
// {"error":{"code":N,"message":…,"status":…,"errors":[{"domain":"global","reason":…,"message":…}]}}.
func (e *Error) Respond(w http.ResponseWriter) {
	if e.Code == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Bearer realm="https://accounts.google.com/", error="invalid_token"`)
	}
	domain := e.Domain
	if domain == "" {
		domain = "global"
	}
	writeJSON(w, e.Code, map[string]any{"error": map[string]any{
		"code":    e.Code,
		"message": e.Message,
		"status":  e.Status,
		"errors":  []map[string]string{{"domain": domain, "reason": e.Reason, "message": e.Message}},
	}})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=UTF-8")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

func invalidArgument(format string, args ...any) *Error {
	return &Error{http.StatusBadRequest, "INVALID_ARGUMENT", "invalidArgument", fmt.Sprintf(format, args...), ""}
}

// invalidValue is Google's answer to a query parameter of the wrong type.
func invalidValue(field, typ, value string) *Error {
	return invalidArgument("Invalid value at '%s' (%s), %q", field, typ, value)
}

func notFound(format string, args ...any) *Error {
	return &Error{http.StatusNotFound, "NOT_FOUND", "notFound", fmt.Sprintf(format, args...), ""}
}

var (
	errEntityNotFound = notFound("Requested entity was not found.")
	errNoCredentials  = &Error{http.StatusUnauthorized, "UNAUTHENTICATED", "authError",
		"Request is missing required authentication credential. Expected OAuth 2 access token, login cookie or other valid authentication credential.", ""}
	errBadCredentials = &Error{http.StatusUnauthorized, "UNAUTHENTICATED", "authError",
		"Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other valid authentication credential.", ""}
	errScopes = &Error{http.StatusForbidden, "PERMISSION_DENIED", "insufficientPermissions",
		"Request had insufficient authentication scopes.", ""}
	errMailDisabled = &Error{http.StatusBadRequest, "FAILED_PRECONDITION", "failedPrecondition", "Mail service not enabled", ""}
)

func forbidden(reason, format string, args ...any) *Error {
	return &Error{http.StatusForbidden, "PERMISSION_DENIED", reason, fmt.Sprintf(format, args...), ""}
}

// Gmail's quota and concurrency refusals, in the shapes the Gmail API's
// "Resolve errors" guide documents: the per-user rate limit as 403 or 429
// userRateLimitExceeded, the project's as 403 rateLimitExceeded, both in the
// usageLimits domain, and the per-user concurrent request limit as 429.
var (
	errUserRate403 = &Error{http.StatusForbidden, "PERMISSION_DENIED", "userRateLimitExceeded",
		"User Rate Limit Exceeded. Quota exceeded for quota metric 'Queries' and limit 'Queries per minute per user' of service 'gmail.googleapis.com'.", "usageLimits"}
	errUserRate429 = &Error{http.StatusTooManyRequests, "RESOURCE_EXHAUSTED", "userRateLimitExceeded",
		"User-rate limit exceeded. Quota exceeded for quota metric 'Queries' and limit 'Queries per minute per user' of service 'gmail.googleapis.com'.", "usageLimits"}
	errProjectRate = &Error{http.StatusForbidden, "PERMISSION_DENIED", "rateLimitExceeded",
		"Rate Limit Exceeded. Quota exceeded for quota metric 'Queries' and limit 'Queries per minute' of service 'gmail.googleapis.com'.", "usageLimits"}
	errConcurrent = &Error{http.StatusTooManyRequests, "RESOURCE_EXHAUSTED", "rateLimitExceeded",
		"Too many concurrent requests for user.", "usageLimits"}
)

// quotaShapes are the refusals an injected 429 draws from in the strict profile.
var quotaShapes = []*Error{errUserRate403, errUserRate429, errProjectRate, errConcurrent}

// statusError returns the error Gmail answers with for an overloaded or
// failing backend: 429, 500 or 503.
func statusError(code int, message string) *Error {
	switch code {
	case http.StatusTooManyRequests:
		if message == "" {
			message = "Too many concurrent requests for user."
		}
		return &Error{code, "RESOURCE_EXHAUSTED", "rateLimitExceeded", message, ""}
	case http.StatusServiceUnavailable:
		return &Error{code, "UNAVAILABLE", "backendError", "The service is currently unavailable.", ""}
	}
	return &Error{http.StatusInternalServerError, "INTERNAL", "backendError", "Backend Error", ""}
}
