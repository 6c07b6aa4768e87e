// Package policy checks the Terraform in terraform/ without a cloud account.
//
// Its tests read the JSON of a real plan (`terraform show -json`, path in
// TF_PLAN_JSON, written by scripts/tf-check.sh) and enforce least privilege:
// no primitive roles, nothing public but the consent function, one service
// account per function, secret access only on named secrets or on the
// gmail-refresh- prefix, the Gmail publisher binding, retried triggers and an
// OIDC-authenticated scheduler. The first-apply rules (firstapply_test.go)
// turn each known failure of an apply on a fresh project into a check: the
// build account reads the gcf-v2-sources bucket and the builds wait for its
// grants, no alert waits on a metric created beside it, no service agent is
// bound before it exists, every API the apply calls is enabled, pushes and
// the scheduler call run.app URLs with explicit audiences, Google's own
// failure signals are alerted on (checked by matching each alert's filter
// against what the service emits), expiring documents have TTL policies,
// the webhook URL is sensitive, names carry name_prefix, project_number is
// checked, data is recoverable, and event_types accepts exactly the types
// shared/events.MessageTypes lists. Each rule also runs on hand-made plans in
// testdata, one that must pass and one that must fail, so no rule can pass
// vacuously. Without TF_PLAN_JSON the real-plan checks skip.
//
// The packaging test unpacks each function's upload (the real archive_file
// zip when the plan names one, else the same file set assembled from the
// repository), adds the main package the Go buildpack generates, and builds
// and starts it the way Cloud Functions would. Each validated variable is
// planned with a bad value (TF_BIN names the Terraform binary), and
// scripts/set-secrets.sh runs against a fake gcloud.
package policy
