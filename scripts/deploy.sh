#!/usr/bin/env bash
# Deploys gmailwatch: the one command after filling in terraform/terraform.tfvars
# (from terraform/example.tfvars). Safe to run again: every step leaves what
# is already there alone.
#
#   1. checks: gcloud logged in, billing on, no organization policy refusing
#      the public consent function (domain restricted sharing);
#   2. vets the code and checks each function's upload builds;
#   3. creates what Terraform cannot or must not: the bootstrap APIs, the
#      Eventarc and Pub/Sub service agents (gcloud beta services identity
#      create: they exist "only when first needed"), and the secrets a
#      destroy must not take (terraform/kept.tf);
#   4. terraform apply (arguments are passed to it, e.g. -auto-approve), with
#      deployer set to gcloud's account;
#   5. adds the missing secret values (scripts/set-secrets.sh --if-missing:
#      asks for the OAuth client secret only when it has none);
#   6. prints the consent URL, the accounts API URL and the dashboard link.
#
# Usage: scripts/deploy.sh [terraform apply arguments]
# Env:   TERRAFORM  terraform binary (default terraform on PATH)
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
tf="${TERRAFORM:-terraform}"
cd "$root"
step() { echo "deploy: $*" >&2; }
die() { echo "deploy: $*" >&2; exit 2; }

[[ -f terraform/terraform.tfvars ]] || die "terraform/terraform.tfvars is missing: copy terraform/example.tfvars and fill it in"
for c in gcloud jq openssl curl go "$tf"; do
	command -v "$c" >/dev/null || die "$c is not installed"
done

step "terraform init"
"$tf" -chdir=terraform init -input=false >/dev/null

# What the configuration names, as Terraform computes it from terraform.tfvars.
settings="$(echo 'jsonencode({project = var.project_id, kept = local.kept_secrets, identities = local.service_identities})' |
	"$tf" -chdir=terraform console | jq -r .)"
project="$(jq -r .project <<<"$settings")"

step "checks: gcloud login, billing, organization policy ($project)"
account="$(gcloud auth list --filter=status:ACTIVE --format='value(account)' | head -n1)"
[[ -n "$account" ]] || die "gcloud is not logged in: run gcloud auth login and gcloud auth application-default login"
[[ "$(gcloud billing projects describe "$project" --format='value(billingEnabled)')" == True ]] ||
	die "billing is not enabled on $project: link a billing account (gcloud billing projects link $project --billing-account=...)"
# Domain restricted sharing refuses allUsers, so users' browsers could not
# reach the consent function: the project needs an exception.
drs="$(gcloud resource-manager org-policies describe iam.allowedPolicyMemberDomains --project="$project" --effective --format=json 2>/dev/null || echo '{}')"
if [[ "$(jq -r '.listPolicy.allowedValues // [] | length' <<<"$drs")" != 0 ]]; then
	die "organization policy iam.allowedPolicyMemberDomains refuses allUsers on $project: ask an organization admin for a project exception (terraform/README.md, Organization policies)"
fi
case "$account" in
*.gserviceaccount.com) deployer="serviceAccount:$account" ;;
*) deployer="user:$account" ;;
esac

step "go vet"
go vet ./...
step "packaging check"
PACKAGING_REQUIRE_ALL=1 go test -count=1 -run TestPackagedFunctionsBuild ./terraform/policy/

step "bootstrap APIs and service agents"
mapfile -t identities < <(jq -r '.identities[]' <<<"$settings")
gcloud services enable cloudresourcemanager.googleapis.com serviceusage.googleapis.com "${identities[@]}" --project="$project"
for s in "${identities[@]}"; do
	gcloud beta services identity create --service="$s" --project="$project" --format='value(email)' >/dev/null
done

step "kept secrets"
gcloud services enable secretmanager.googleapis.com --project="$project"
for name in $(jq -r '.kept[]' <<<"$settings"); do
	if ! gcloud secrets describe "$name" --project="$project" --format='value(name)' >/dev/null 2>&1; then
		gcloud secrets create "$name" --project="$project" --replication-policy=automatic --labels=app=gmailwatch >/dev/null
		step "created secret $name"
	fi
done

step "terraform apply"
"$tf" -chdir=terraform apply -input=false -var="deployer=$deployer" "$@"

step "secret values"
eval "$("$tf" -chdir=terraform output -raw set_secrets_command) --if-missing"

echo "consent URL:      $("$tf" -chdir=terraform output -raw consent_url)"
echo "accounts API URL: $("$tf" -chdir=terraform output -raw accounts_url)"
echo "dashboard:        $("$tf" -chdir=terraform output -raw dashboard_url)"
