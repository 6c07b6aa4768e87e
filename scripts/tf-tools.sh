#!/usr/bin/env bash
# Provides what the offline Terraform checks run: a Terraform CLI and the two
# providers terraform/ uses (google and archive), in a cache directory, plus a
# CLI config whose dev_overrides point Terraform at those providers.
#
# Terraform comes from the machine when its version is at least the one
# terraform/versions.tf requires; otherwise it is built from the Go module
# proxy. The providers are always built from the proxy at the commits below
# (terraform/README.md says which releases they stand for). Builds run at low
# CPU priority, so starting this in the background beside the tests (as
# .ci/run does) slows them little; a second run waits for the first, through
# a lock on the cache, instead of building the same thing twice.
#
# Usage: scripts/tf-tools.sh        prints the cache directory on stdout
# Env:   GMAILWATCH_TF_CACHE        cache directory (default $HOME/.cache/gmailwatch-tf)
#        TERRAFORM                  Terraform to use if its version fits (default: terraform on PATH)
set -euo pipefail

TERRAFORM_MIN=1.11.0
TERRAFORM_BUILD=github.com/hashicorp/terraform@v1.11.4
GOOGLE_PROVIDER=github.com/hashicorp/terraform-provider-google@v1.20.1-0.20260828184646-f3721fb45fa3
ARCHIVE_PROVIDER=github.com/hashicorp/terraform-provider-archive@v1.3.1-0.20260727144921-44050a6fd1aa

cache="${GMAILWATCH_TF_CACHE:-$HOME/.cache/gmailwatch-tf}"
bin="$cache/bin"
mkdir -p "$bin"

log() { echo "tf-tools: $*" >&2; }

exec 9>"$cache/.lock"
if ! flock -n 9; then
	log "another tf-tools run is building into $cache: waiting for it"
	flock 9
fi

# stamp records what a binary was built from, so a version change rebuilds it.
built() { [[ -x "$bin/$1" && "$(cat "$bin/$1.version" 2>/dev/null)" == "$2" ]]; }
gobuild() { nice -n 10 env GOFLAGS=-mod=mod "$@"; }

# version_ok V: V (x.y.z) is at least TERRAFORM_MIN.
version_ok() { [[ "$(printf '%s\n' "$TERRAFORM_MIN" "$1" | sort -V | head -n1)" == "$TERRAFORM_MIN" ]]; }

machine_tf="$(command -v "${TERRAFORM:-terraform}" 2>/dev/null || true)"
machine_version=""
if [[ -n "$machine_tf" && "$machine_tf" != "$bin/terraform" ]]; then
	machine_version="$("$machine_tf" version -json 2>/dev/null | sed -n 's/.*"terraform_version": *"\([0-9.]*\)".*/\1/p')"
fi
if [[ -n "$machine_version" ]] && version_ok "$machine_version"; then
	if ! built terraform "machine $machine_tf $machine_version"; then
		log "using $machine_tf (Terraform $machine_version)"
		ln -sf "$machine_tf" "$bin/terraform"
		echo "machine $machine_tf $machine_version" >"$bin/terraform.version"
	fi
elif ! built terraform "$TERRAFORM_BUILD"; then
	log "building $TERRAFORM_BUILD (no Terraform >= $TERRAFORM_MIN on this machine)"
	rm -f "$bin/terraform"
	GOBIN="$bin" gobuild go install "$TERRAFORM_BUILD"
	echo "$TERRAFORM_BUILD" >"$bin/terraform.version"
fi

if ! built terraform-provider-google "$GOOGLE_PROVIDER"; then
	log "building $GOOGLE_PROVIDER (several minutes)"
	GOBIN="$bin" gobuild go install "$GOOGLE_PROVIDER"
	echo "$GOOGLE_PROVIDER" >"$bin/terraform-provider-google.version"
fi

# The archive provider's go.mod has replace directives, so go install refuses
# it; build it from a scratch module instead.
if ! built terraform-provider-archive "$ARCHIVE_PROVIDER"; then
	log "building $ARCHIVE_PROVIDER"
	scratch="$cache/archive-build"
	rm -rf "$scratch" && mkdir -p "$scratch"
	(
		cd "$scratch"
		go mod init gmailwatch.local/archivebuild >/dev/null 2>&1
		gobuild go get "$ARCHIVE_PROVIDER"
		gobuild go build -o "$bin/terraform-provider-archive" "${ARCHIVE_PROVIDER%@*}"
	)
	echo "$ARCHIVE_PROVIDER" >"$bin/terraform-provider-archive.version"
fi

cat >"$cache/terraformrc" <<RC
provider_installation {
  dev_overrides {
    "hashicorp/google"  = "$bin"
    "hashicorp/archive" = "$bin"
  }
  direct {}
}
disable_checkpoint = true
RC

echo "$cache"
