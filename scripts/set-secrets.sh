#!/usr/bin/env bash
# Adds the values of the secrets Terraform creates empty, so no value ever
# enters Terraform state:
#   - the OAuth client secret, read from standard input (prompted on a terminal);
#   - the OAuth state-signing key, the signed connect-link key and the webhook
#     signing secret (whsec_...), generated with openssl when the secret has
#     no enabled version yet, or always with --rotate. A rotated webhook
#     secret keeps the previous key beside the new one ("whsec_new whsec_old"),
#     so deliveries carry both signatures and receivers holding the old key
#     keep verifying; --drop-old-webhook-secret then keeps only the newest.
#   - the user-key secret (the keyed hash that turns Google's account id into
#     a user key), generated once and never rotated: a new one would re-key
#     every user.
# Values go to gcloud on standard input, never on a command line, and are
# never printed.
#
# Usage: scripts/set-secrets.sh [--rotate | --drop-old-webhook-secret] [--project PROJECT] < client-secret.txt
# Env:   OAUTH_CLIENT_SECRET_NAME, STATE_KEY_SECRET_NAME, WEBHOOK_SECRET_NAME,
#        CONNECT_LINK_KEY_SECRET_NAME, USER_KEY_SECRET_NAME (default
#        oauth-client-secret, consent-state-key, webhook-signing-secret,
#        connect-link-key, user-key-secret)
set -euo pipefail

rotate=0
drop=0
project=""
while (($#)); do
	case "$1" in
	--rotate) rotate=1 ;;
	--drop-old-webhook-secret) drop=1 ;;
	--project) project="${2:?--project needs a value}"; shift ;;
	-h | --help) sed -n '2,23p' "$0"; exit 0 ;;
	*) echo "set-secrets: unknown argument $1" >&2; exit 2 ;;
	esac
	shift
done

if ((rotate && drop)); then
	echo "set-secrets: --rotate and --drop-old-webhook-secret are separate steps: rotate, update receivers, then drop" >&2
	exit 2
fi
project="${project:-$(gcloud config get-value project 2>/dev/null)}"
if [[ -z "$project" ]]; then
	echo "set-secrets: no project: pass --project or run gcloud config set project PROJECT" >&2
	exit 2
fi
oauth_name="${OAUTH_CLIENT_SECRET_NAME:-oauth-client-secret}"
state_name="${STATE_KEY_SECRET_NAME:-consent-state-key}"
webhook_name="${WEBHOOK_SECRET_NAME:-webhook-signing-secret}"
link_name="${CONNECT_LINK_KEY_SECRET_NAME:-connect-link-key}"
userkey_name="${USER_KEY_SECRET_NAME:-user-key-secret}"

# add NAME: adds standard input as a new version of secret NAME.
add() {
	gcloud secrets versions add "$1" --project="$project" --data-file=- >/dev/null
	echo "set-secrets: added a version to $1" >&2
}

has_version() {
	[[ -n "$(gcloud secrets versions list "$1" --project="$project" --filter=state:enabled --limit=1 --format='value(name)')" ]]
}

# latest NAME: prints the latest value of secret NAME (into a variable, never the terminal).
latest() {
	gcloud secrets versions access latest --secret="$1" --project="$project"
}

if ((drop)); then
	current="$(latest "$webhook_name")"
	read -r -a keys <<<"$current"
	if ((${#keys[@]} < 2)); then
		echo "set-secrets: $webhook_name holds one key; there is nothing to drop" >&2
		exit 0
	fi
	printf '%s' "${keys[0]}" | add "$webhook_name"
	unset current keys
	echo "set-secrets: deliveries are now signed with the newest webhook key only" >&2
	exit 0
fi

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

if ! has_version "$webhook_name"; then
	printf 'whsec_%s' "$(openssl rand -base64 32 | tr -d '\n')" | add "$webhook_name"
	echo "set-secrets: give your webhook receiver the signing secret:" >&2
	echo "  gcloud secrets versions access latest --secret=$webhook_name --project=$project" >&2
elif ((rotate)); then
	current="$(latest "$webhook_name")"
	printf 'whsec_%s %s' "$(openssl rand -base64 32 | tr -d '\n')" "${current%% *}" | add "$webhook_name"
	unset current
	echo "set-secrets: deliveries now carry signatures by the new and the previous key." >&2
	echo "  Give your receivers the new key (the first of the value), then run --drop-old-webhook-secret:" >&2
	echo "  gcloud secrets versions access latest --secret=$webhook_name --project=$project" >&2
else
	echo "set-secrets: $webhook_name already has a value (use --rotate to replace it)" >&2
fi

if ((rotate)) || ! has_version "$link_name"; then
	openssl rand -base64 32 | tr -d '\n' | add "$link_name"
	echo "set-secrets: backends that sign connect links read their key with:" >&2
	echo "  gcloud secrets versions access latest --secret=$link_name --project=$project" >&2
else
	echo "set-secrets: $link_name already has a value (use --rotate to replace it)" >&2
fi

if ! has_version "$userkey_name"; then
	openssl rand -base64 32 | tr -d '\n' | add "$userkey_name"
else
	echo "set-secrets: $userkey_name already has a value; it is never rotated (a new one would re-key every user)" >&2
fi
