#!/usr/bin/env bash
# Waits, during the apply, until the function build account holds the
# permissions its grants give (iam.tf), asked of IAM as that account with
# testIamPermissions, so no build starts before they have arrived. IAM says
# changes take "typically 2 minutes, potentially 7 minutes or longer" (IAM
# documentation, access change propagation): a fixed pause only lowers the
# odds of a failed build.
#
#   logging.logEntries.create on the project: the log writer grant, made
#     after the conditioned gcf-v2-sources reader grant, so the project
#     policy the builder is checked against holds both (the gcf-v2-sources
#     bucket itself exists only once the first function does);
#   artifactregistry.repositories.uploadArtifacts on the image repository;
#   storage.objects.get on the upload bucket.
#
# Env (set by terraform_data.builder_ready): PROJECT, BUILDER (email),
# REPOSITORY (projects/P/locations/L/repositories/R), SOURCE_BUCKET,
# WAIT_SECONDS (give up after this long, with the permission still missing).
set -euo pipefail

: "${PROJECT:?}" "${BUILDER:?}" "${REPOSITORY:?}" "${SOURCE_BUCKET:?}"
deadline=$((SECONDS + ${WAIT_SECONDS:-900}))
log() { echo "wait-for-builder: $*" >&2; }

# has PERMISSION METHOD URL [BODY]: the builder holds PERMISSION there.
has() {
	local perm="$1" method="$2" url="$3" body="${4:-}" out
	out="$(curl -sS -X "$method" -H "Authorization: Bearer $token" -H 'Content-Type: application/json' \
		${body:+--data "$body"} "$url" 2>/dev/null || true)"
	[[ "$out" == *"\"$perm\""* ]]
}

delay=5
while :; do
	missing=""
	if ! token="$(gcloud auth print-access-token --impersonate-service-account="$BUILDER" 2>/dev/null)"; then
		missing="a token as $BUILDER (the deployer needs token creator on it: set deployer in terraform.tfvars)"
	else
		has logging.logEntries.create POST "https://cloudresourcemanager.googleapis.com/v1/projects/$PROJECT:testIamPermissions" \
			'{"permissions":["logging.logEntries.create"]}' || missing+=" logging.logEntries.create on the project"
		has artifactregistry.repositories.uploadArtifacts POST "https://artifactregistry.googleapis.com/v1/$REPOSITORY:testIamPermissions" \
			'{"permissions":["artifactregistry.repositories.uploadArtifacts"]}' || missing+=" artifactregistry.repositories.uploadArtifacts on $REPOSITORY"
		has storage.objects.get GET "https://storage.googleapis.com/storage/v1/b/$SOURCE_BUCKET/iam/testPermissions?permissions=storage.objects.get" ||
			missing+=" storage.objects.get on gs://$SOURCE_BUCKET"
	fi
	unset token
	if [[ -z "$missing" ]]; then
		log "$BUILDER holds its build permissions"
		exit 0
	fi
	if ((SECONDS >= deadline)); then
		log "gave up: $BUILDER still lacks:$missing"
		exit 1
	fi
	log "waiting for$missing"
	sleep "$delay"
	delay=$((delay < 40 ? delay * 2 : 60))
done
