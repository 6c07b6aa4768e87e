#!/usr/bin/env bash
# Adds the values of the secrets Terraform creates empty, so no value ever
# enters Terraform state:
#   - the OAuth client secret, read from standard input (prompted on a terminal);
#   - the OAuth state-signing key and the webhook signing secret (whsec_...),
#     generated with openssl when the secret has no enabled version yet, or
#     always with --rotate.
# Values go to gcloud on standard input, never on a command line, and are
# never printed.
#
# Usage: scripts/set-secrets.sh [--rotate] [--project PROJECT] < client-secret.txt
# Env:   OAUTH_CLIENT_SECRET_NAME, STATE_KEY_SECRET_NAME, WEBHOOK_SECRET_NAME
#        (default oauth-client-secret, consent-state-key, webhook-signing-secret)
set -euo pipefail

rotate=0
project=""
while (($#)); do
	case "$1" in
	--rotate) rotate=1 ;;
	--project) project="${2:?--project needs a value}"; shift ;;
	-h | --help) sed -n '2,13p' "$0"; exit 0 ;;
	*) echo "set-secrets: unknown argument $1" >&2; exit 2 ;;
	esac
	shift
done

project="${project:-$(gcloud config get-value project 2>/dev/null)}"
if [[ -z "$project" ]]; then
	echo "set-secrets: no project: pass --project or run gcloud config set project PROJECT" >&2
	exit 2
fi
oauth_name="${OAUTH_CLIENT_SECRET_NAME:-oauth-client-secret}"
state_name="${STATE_KEY_SECRET_NAME:-consent-state-key}"
webhook_name="${WEBHOOK_SECRET_NAME:-webhook-signing-secret}"

# add NAME: adds standard input as a new version of secret NAME.
add() {
	gcloud secrets versions add "$1" --project="$project" --data-file=- >/dev/null
	echo "set-secrets: added a version to $1" >&2
}

has_version() {
	[[ -n "$(gcloud secrets versions list "$1" --project="$project" --filter=state:enabled --limit=1 --format='value(name)')" ]]
}

if [[ -t 0 ]]; then
	read -rsp "OAuth client secret (from the console's OAuth client): " client_secret
	echo >&2
else
	IFS= read -r client_secret || true
fi
if [[ -z "${client_secret// /}" ]]; then
	echo "set-secrets: empty OAuth client secret on standard input" >&2
	exit 2
fi
printf '%s' "$client_secret" | add "$oauth_name"
unset client_secret

if ((rotate)) || ! has_version "$state_name"; then
	openssl rand -base64 32 | tr -d '\n' | add "$state_name"
else
	echo "set-secrets: $state_name already has a value (use --rotate to replace it)" >&2
fi

if ((rotate)) || ! has_version "$webhook_name"; then
	printf 'whsec_%s' "$(openssl rand -base64 32 | tr -d '\n')" | add "$webhook_name"
	echo "set-secrets: give your webhook receiver the new signing secret:" >&2
	echo "  gcloud secrets versions access latest --secret=$webhook_name --project=$project" >&2
else
	echo "set-secrets: $webhook_name already has a value (use --rotate to replace it)" >&2
fi
