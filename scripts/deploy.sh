#!/usr/bin/env bash
# Deploys the system: vets the code, checks that every function's upload
# builds the way the Go buildpack builds it, then runs terraform apply in
# terraform/ (arguments are passed to apply, e.g. -auto-approve).
#
# Usage: scripts/deploy.sh [terraform apply arguments]
# Env:   TERRAFORM  terraform binary (default terraform on PATH)
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
tf="${TERRAFORM:-terraform}"
cd "$root"

if [[ ! -f terraform/terraform.tfvars ]]; then
	echo "deploy: terraform/terraform.tfvars is missing: copy terraform/example.tfvars and fill it in" >&2
	exit 2
fi

echo "deploy: go vet" >&2
go vet ./...

echo "deploy: packaging check" >&2
PACKAGING_REQUIRE_ALL=1 go test -count=1 -run TestPackagedFunctionsBuild ./terraform/policy/

echo "deploy: terraform apply" >&2
"$tf" -chdir=terraform init -input=false
"$tf" -chdir=terraform apply "$@"

echo "deploy: consent URL: $("$tf" -chdir=terraform output -raw consent_url)" >&2
