#!/usr/bin/env bash
# Checks terraform/ offline, without a Google Cloud account: gets Terraform
# and builds its providers when not cached (scripts/tf-tools.sh, which waits
# for a build already running in the background), then runs
# fmt -check, validate and plan (dummy token, example variables, empty
# state), and the Go policy and packaging tests over the plan's JSON.
#
# Usage: scripts/tf-check.sh
# Env:   GMAILWATCH_TF_CACHE  tool cache (default $HOME/.cache/gmailwatch-tf)
#        TF_CHECK_KEEP=1      keep the work directory (plan, zips) and print it
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
start=$SECONDS
step() { echo "tf-check: $* ($((SECONDS - start))s)" >&2; }

step "tools"
cache="$("$root/scripts/tf-tools.sh")"

work="$(mktemp -d)"
if [[ "${TF_CHECK_KEEP:-}" == 1 ]]; then
	echo "tf-check: work directory $work" >&2
else
	trap 'rm -rf "$work"' EXIT
fi

# Only the built providers, no credentials of the machine, nothing but a
# dummy token: plan must not need Google.
export TF_CLI_CONFIG_FILE="$cache/terraformrc"
export TF_DATA_DIR="$work/data"
export TF_IN_AUTOMATION=1
export CHECKPOINT_DISABLE=1
export GOOGLE_OAUTH_ACCESS_TOKEN=dummy
unset GOOGLE_APPLICATION_CREDENTIALS GOOGLE_CREDENTIALS GOOGLE_CLOUD_KEYFILE_JSON GCLOUD_KEYFILE_JSON
export CLOUDSDK_CONFIG="$work/gcloud"

# tf runs Terraform cut off from every network but loopback: in a fresh
# network namespace when the machine allows it (root), and always with HTTP(S)
# proxies pointing at a closed loopback port. The google provider's configure
# step asks Google's userinfo endpoint who the token belongs to, only to log
# it; the proxy makes that one request fail at once, on loopback, instead of
# resolving and dialing a Google host.
tf() {
	local cmd=(env HTTPS_PROXY=http://127.0.0.1:9 HTTP_PROXY=http://127.0.0.1:9 NO_PROXY= "$cache/bin/terraform" "$@")
	if unshare -n sh -c 'ip link set lo up' 2>/dev/null; then
		unshare -n sh -c 'ip link set lo up && exec "$@"' sh "${cmd[@]}"
	else
		"${cmd[@]}"
	fi
}

cd "$root/terraform"

step "terraform fmt -check"
tf fmt -check -recursive -diff

# dev_overrides make init unnecessary for the overridden providers (and it
# would try the registry), so validate and plan run without it.
step "terraform validate"
tf validate -no-color

step "terraform plan"
tf plan -no-color -input=false -lock=false \
	-state="$work/terraform.tfstate" \
	-var-file=example.tfvars \
	-var="build_dir=$work/build" \
	-out="$work/plan.tfplan" >"$work/plan.txt" || {
	cat "$work/plan.txt" >&2
	exit 1
}
grep -E '^Plan:' "$work/plan.txt" >&2

tf show -json "$work/plan.tfplan" >"$work/plan.json"

step "policy, variable and packaging tests"
cd "$root"
TF_PLAN_JSON="$work/plan.json" TF_BIN="$cache/bin/terraform" go test -count=1 -timeout 30m ./terraform/policy/...

step "done"
