#!/usr/bin/env bash
# Prints the URL users open to connect their Gmail account (a Terraform
# output, so run it after terraform apply).
#
# Usage: scripts/consent-url.sh
# Env:   TERRAFORM  terraform binary (default terraform on PATH)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
exec "${TERRAFORM:-terraform}" -chdir="$root/terraform" output -raw consent_url
