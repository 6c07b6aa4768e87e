#!/usr/bin/env bash
# Builds Terraform and the google and archive providers from the Go module
# proxy into a cache directory (reused when already built) and writes a CLI
# config whose dev_overrides point Terraform at those providers.
#
# Usage: scripts/tf-tools.sh        prints the cache directory on stdout
# Env:   GMAILWATCH_TF_CACHE        cache directory (default $HOME/.cache/gmailwatch-tf)
set -euo pipefail

TERRAFORM_VERSION=v1.5.7
GOOGLE_PROVIDER=github.com/hashicorp/terraform-provider-google@v1.20.1-0.20260828184646-f3721fb45fa3
ARCHIVE_PROVIDER=github.com/hashicorp/terraform-provider-archive@v1.3.1-0.20260727144921-44050a6fd1aa

cache="${GMAILWATCH_TF_CACHE:-$HOME/.cache/gmailwatch-tf}"
bin="$cache/bin"
mkdir -p "$bin"

log() { echo "tf-tools: $*" >&2; }

# stamp records what a binary was built from, so a version change rebuilds it.
built() { [[ -x "$bin/$1" && "$(cat "$bin/$1.version" 2>/dev/null)" == "$2" ]]; }

if ! built terraform "$TERRAFORM_VERSION"; then
	log "building terraform $TERRAFORM_VERSION"
	GOBIN="$bin" GOFLAGS=-mod=mod go install "github.com/hashicorp/terraform@$TERRAFORM_VERSION"
	echo "$TERRAFORM_VERSION" >"$bin/terraform.version"
fi

if ! built terraform-provider-google "$GOOGLE_PROVIDER"; then
	log "building $GOOGLE_PROVIDER (several minutes)"
	GOBIN="$bin" GOFLAGS=-mod=mod go install "$GOOGLE_PROVIDER"
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
		GOFLAGS=-mod=mod go get "$ARCHIVE_PROVIDER"
		GOFLAGS=-mod=mod go build -o "$bin/terraform-provider-archive" "${ARCHIVE_PROVIDER%@*}"
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
