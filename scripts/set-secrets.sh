#!/usr/bin/env bash
# Adds the values of the secrets Terraform creates empty (and of those
# scripts/deploy.sh keeps across a destroy), so no value ever enters
# Terraform state:
#   - the OAuth client secret, read from standard input (prompted on a
#     terminal); with --if-missing only when it has no value yet;
#   - four generated keys, made with openssl when the secret has no enabled
#     version yet: the OAuth state-signing key, the signed connect-link key,
#     the user-key secret (the keyed hash that turns Google's account id into
#     a user key) and the webhook signing secret (whsec_...).
#   - --rotate gives each of the four a new key and keeps the previous one
#     beside it ("new old", newest first), so what was signed or keyed with
#     the old one still verifies and receivers holding the old webhook key
#     keep verifying; once receivers and backends have the new keys (and
#     every user record is keyed anew), --drop-old keeps only the newest.
# Values go to gcloud on standard input, never on a command line, and are
# never printed.
#
# Usage: scripts/set-secrets.sh [--rotate | --drop-old] [--if-missing] [--project PROJECT] < client-secret.txt
# Env:   OAUTH_CLIENT_SECRET_NAME, STATE_KEY_SECRET_NAME, WEBHOOK_SECRET_NAME,
#        CONNECT_LINK_KEY_SECRET_NAME, USER_KEY_SECRET_NAME (default
#        oauth-client-secret, consent-state-key, webhook-signing-secret,
#        connect-link-key, user-key-secret);
#        WEBHOOK_ENDPOINT_SECRET_NAMES: the signing secrets of the other webhook
#        endpoints (space-separated; terraform output set_secrets_command
#        lists them), each treated as the webhook signing secret is
set -euo pipefail

rotate=0
drop=0
if_missing=0
project=""
while (($#)); do
	case "$1" in
	--rotate) rotate=1 ;;
	--drop-old | --drop-old-webhook-secret) drop=1 ;;
	--if-missing) if_missing=1 ;;
	--project) project="${2:?--project needs a value}"; shift ;;
	-h | --help) sed -n '2,28p' "$0"; exit 0 ;;
	*) echo "set-secrets: unknown argument $1" >&2; exit 2 ;;
	esac
	shift
done

if ((rotate && drop)); then
	echo "set-secrets: --rotate and --drop-old are separate steps: rotate, update receivers and backends, then drop" >&2
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
read -r -a endpoint_names <<<"${WEBHOOK_ENDPOINT_SECRET_NAMES:-}"
for name in ${endpoint_names[@]+"${endpoint_names[@]}"}; do
	if [[ ! "$name" =~ ^[A-Za-z0-9_-]{1,255}$ ]]; then
		echo "set-secrets: WEBHOOK_ENDPOINT_SECRET_NAMES: $name is not a secret id" >&2
		exit 2
	fi
done

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

# key PREFIX: prints a new random key.
key() { printf '%s%s' "$1" "$(openssl rand -base64 32 | tr -d '\n')"; }

# generated NAME PREFIX: gives secret NAME a key when it has none, or with
# --rotate a new key followed by its previous newest.
generated() {
	local current
	if ! has_version "$1"; then
		key "$2" | add "$1"
	elif ((rotate)); then
		current="$(latest "$1")"
		printf '%s %s' "$(key "$2")" "${current%% *}" | add "$1"
		echo "set-secrets: $1 holds a new key and the previous one; run --drop-old once nothing needs the old one" >&2
	else
		echo "set-secrets: $1 already has a value (use --rotate to replace it)" >&2
	fi
}

# dropped NAME: keeps only the newest key of secret NAME.
dropped() {
	local current keys
	current="$(latest "$1")"
	read -r -a keys <<<"$current"
	if ((${#keys[@]} < 2)); then
		echo "set-secrets: $1 holds one key; there is nothing to drop" >&2
		return
	fi
	printf '%s' "${keys[0]}" | add "$1"
	echo "set-secrets: $1 now holds its newest key only" >&2
}

if ((drop)); then
	for name in "$state_name" "$link_name" "$userkey_name" "$webhook_name" ${endpoint_names[@]+"${endpoint_names[@]}"}; do
		dropped "$name"
	done
	exit 0
fi

if ((if_missing)) && has_version "$oauth_name"; then
	echo "set-secrets: $oauth_name already has a value" >&2
else
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
fi

webhook_new=0
has_version "$webhook_name" || webhook_new=1
generated "$state_name" ""
generated "$webhook_name" whsec_
generated "$link_name" ""
generated "$userkey_name" ""
if ((webhook_new || rotate)); then
	echo "set-secrets: give your webhook receiver the signing secret (with --rotate, the first key of the value):" >&2
	echo "  gcloud secrets versions access latest --secret=$webhook_name --project=$project" >&2
fi
for name in ${endpoint_names[@]+"${endpoint_names[@]}"}; do
	new=0
	has_version "$name" || new=1
	generated "$name" whsec_
	if ((new || rotate)); then
		echo "set-secrets: give that endpoint's receiver its signing secret: gcloud secrets versions access latest --secret=$name --project=$project" >&2
	fi
done
if ((rotate)); then
	echo "set-secrets: backends that sign connect links read their new key (the first of the value) with:" >&2
	echo "  gcloud secrets versions access latest --secret=$link_name --project=$project" >&2
fi
