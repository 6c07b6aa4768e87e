# One runtime identity per function, holding only what that function uses.
resource "google_service_account" "function" {
  for_each = local.functions

  account_id   = "${var.name_prefix}${each.key}"
  display_name = "gmailwatch ${each.key} function"
  depends_on   = [google_project_service.enabled]
}

# Cloud Scheduler signs its OIDC token to renew as this account.
resource "google_service_account" "scheduler" {
  account_id   = "${var.name_prefix}scheduler"
  display_name = "gmailwatch renew scheduler"
  depends_on   = [google_project_service.enabled]
}

# Cloud Build builds the function images as this account instead of the
# default compute account, which new projects leave without roles.
resource "google_service_account" "builder" {
  account_id   = "${var.name_prefix}builder"
  display_name = "gmailwatch function builds"
  depends_on   = [google_project_service.enabled]
}

# --- Firestore: no finer IAM than the project exists.
# The webhook records each endpoint's delivery health there.
resource "google_project_iam_member" "datastore_user" {
  for_each = toset(concat(["consent", "accounts", "notify", "renew"], local.webhook_enabled ? ["webhook"] : []))

  project = var.project_id
  role    = "roles/datastore.user"
  member  = google_service_account.function[each.key].member
}

# IAM targets below name resources by their configured names rather than
# computed ids, so a plan shows every grant in full for the policy tests.

# --- Secrets named in variables: accessor on each secret itself.
resource "google_secret_manager_secret_iam_member" "oauth_client_accessor" {
  for_each = toset(["consent", "accounts", "notify", "renew"])

  secret_id = google_secret_manager_secret.oauth_client.secret_id
  role      = "roles/secretmanager.secretAccessor"
  member    = google_service_account.function[each.key].member
}

resource "google_secret_manager_secret_iam_member" "state_key_accessor" {
  secret_id = local.kept_secrets.state_key
  role      = "roles/secretmanager.secretAccessor"
  member    = google_service_account.function["consent"].member
}

resource "google_secret_manager_secret_iam_member" "webhook_accessor" {
  for_each = local.webhook_endpoints

  secret_id = each.key == "default" ? google_secret_manager_secret.webhook.secret_id : google_secret_manager_secret.webhook_endpoint[each.key].secret_id
  role      = "roles/secretmanager.secretAccessor"
  member    = google_service_account.function["webhook"].member
}

moved {
  from = google_secret_manager_secret_iam_member.webhook_accessor[0]
  to   = google_secret_manager_secret_iam_member.webhook_accessor["default"]
}

# --- Per-user refresh-token secrets, created at consent time: every grant is
# confined by an IAM condition to secret names starting with the prefix.
resource "google_project_iam_custom_role" "refresh_token_writer" {
  role_id     = local.names.refresh_token_role
  title       = "gmailwatch refresh-token writer"
  description = "Create, rotate, read and delete the per-user gmail-refresh-* secrets."
  # Exactly the calls shared/vault makes.
  permissions = [
    "secretmanager.secrets.create",
    "secretmanager.secrets.delete",
    "secretmanager.versions.access",
    "secretmanager.versions.add",
    "secretmanager.versions.destroy",
    "secretmanager.versions.list",
  ]
  depends_on = [google_project_service.enabled]
}

# consent stores refresh tokens; accounts disconnects (deletes them) and
# resyncs (reads them): both hold the custom role, confined to the prefix.
resource "google_project_iam_member" "refresh_token_writer" {
  for_each = toset(["consent", "accounts"])

  project = var.project_id
  role    = "projects/${var.project_id}/roles/${google_project_iam_custom_role.refresh_token_writer.role_id}"
  member  = google_service_account.function[each.key].member

  # secrets.create is checked on the parent project, whose resource name
  # cannot carry the secret id: the project clause admits only that check.
  condition {
    title       = "gmail-refresh secrets only"
    description = "Secrets whose id starts with ${local.refresh_token_prefix}, and the project-level create check."
    expression  = "resource.name.startsWith(\"${local.secret_name_prefix}\") || resource.type == \"cloudresourcemanager.googleapis.com/Project\""
  }
}

moved {
  from = google_project_iam_member.consent_refresh_tokens
  to   = google_project_iam_member.refresh_token_writer["consent"]
}

resource "google_project_iam_member" "refresh_token_accessor" {
  for_each = toset(["notify", "renew"])

  project = var.project_id
  role    = "roles/secretmanager.secretAccessor"
  member  = google_service_account.function[each.key].member

  condition {
    title       = "gmail-refresh secrets only"
    description = "Secrets whose id starts with ${local.refresh_token_prefix}."
    expression  = "resource.name.startsWith(\"${local.secret_name_prefix}\")"
  }
}

# --- Pub/Sub: publish on the one topic each function writes to.
# The webhook publishes gmail.endpoint.disabled only.
resource "google_pubsub_topic_iam_member" "events_publisher" {
  for_each = toset(concat(["consent", "accounts", "notify", "renew"], local.webhook_enabled ? ["webhook"] : []))

  topic  = google_pubsub_topic.events.name
  role   = "roles/pubsub.publisher"
  member = google_service_account.function[each.key].member
}

# The webhook publishes to each endpoint's dead-letter topic and to the
# events topic (gmail.endpoint.disabled).
resource "google_pubsub_topic_iam_member" "dead_letter_publisher" {
  for_each = local.webhook_endpoints

  topic  = each.key == "default" ? google_pubsub_topic.dead_letter.name : google_pubsub_topic.webhook_dead_letter[each.key].name
  role   = "roles/pubsub.publisher"
  member = google_service_account.function["webhook"].member
}

moved {
  from = google_pubsub_topic_iam_member.dead_letter_publisher[0]
  to   = google_pubsub_topic_iam_member.dead_letter_publisher["default"]
}

# --- Invocation. Event-triggered functions are invoked by their own account
# (the trigger identity); renew by the scheduler; consent by anyone, since
# users' browsers reach it.
resource "google_cloud_run_v2_service_iam_member" "trigger_invoker" {
  for_each = { for name, f in local.functions : name => f if f.trigger_topic != null }

  location = var.region
  name     = google_cloudfunctions2_function.function[each.key].name
  role     = "roles/run.invoker"
  member   = google_service_account.function[each.key].member
}

# The webhook's push subscription presents the webhook account's OIDC token,
# minted by Pub/Sub's service agent, which therefore needs token creator on
# that account (and on notify's, the identity of its Eventarc trigger). The
# agent exists before the apply: scripts/deploy.sh creates it (kept.tf).
resource "google_cloud_run_v2_service_iam_member" "webhook_pusher" {
  count = local.webhook_enabled ? 1 : 0

  location = var.region
  name     = google_cloudfunctions2_function.function["webhook"].name
  role     = "roles/run.invoker"
  member   = google_service_account.function["webhook"].member
}

resource "google_service_account_iam_member" "pubsub_agent_token_creator" {
  for_each = { for name, f in local.functions : name => f if f.trigger_topic != null || name == "webhook" }

  service_account_id = "projects/${var.project_id}/serviceAccounts/${google_service_account.function[each.key].email}"
  role               = "roles/iam.serviceAccountTokenCreator"
  member             = local.service_agents.pubsub
}

# Eventarc's agent creates the trigger's subscription and needs its role
# before the first trigger (kept.tf says why it exists by then).
resource "google_project_iam_member" "eventarc_agent" {
  project = var.project_id
  role    = "roles/eventarc.serviceAgent"
  member  = local.service_agents.eventarc
}

resource "google_cloud_run_v2_service_iam_member" "scheduler_invoker" {
  location = var.region
  name     = google_cloudfunctions2_function.function["renew"].name
  role     = "roles/run.invoker"
  member   = google_service_account.scheduler.member
}

resource "google_cloud_run_v2_service_iam_member" "consent_public" {
  location = var.region
  name     = google_cloudfunctions2_function.function["consent"].name
  role     = "roles/run.invoker"
  member   = "allUsers"
}

# --- Builds. The builder's project-level grants are made one after the
# other, log writer last: IAM propagates a resource's whole policy, so once
# the builder holds the log writer's permission, the policy it reads holds
# the gcf-v2-sources grant made before it too (terraform/wait-for-builder.sh).
resource "google_project_iam_member" "builder_log_writer" {
  project = var.project_id
  role    = "roles/logging.logWriter"
  member  = google_service_account.builder.member

  depends_on = [google_project_iam_member.builder_gcf_sources_reader]
}

# The deployer asks, as the builder, whether the builder's grants have
# arrived (terraform/wait-for-builder.sh): that takes token creator on the
# builder, and on nothing else.
resource "google_service_account_iam_member" "deployer_tests_builder" {
  count = var.deployer != "" ? 1 : 0

  service_account_id = "projects/${var.project_id}/serviceAccounts/${google_service_account.builder.email}"
  role               = "roles/iam.serviceAccountTokenCreator"
  member             = var.deployer
}

resource "google_artifact_registry_repository_iam_member" "builder_writer" {
  location   = google_artifact_registry_repository.functions.location
  repository = google_artifact_registry_repository.functions.repository_id
  role       = "roles/artifactregistry.writer"
  member     = google_service_account.builder.member
}

# Cloud Functions copies each upload into the Google-managed bucket
# gcf-v2-sources-<project number>-<region>, and the build fetches it from
# there, as the builder. That bucket appears with the first function, so no
# grant can name it before; this project-level grant is conditioned on its
# name instead. Without it every build fails: "Access to bucket gcf-v2-sources-…
# denied. You must grant Storage Object Viewer permission" (hashicorp/
# terraform-provider-google #20571, GoogleCloudPlatform/magic-modules #11324).
resource "google_project_iam_member" "builder_gcf_sources_reader" {
  project = var.project_id
  role    = "roles/storage.objectViewer"
  member  = google_service_account.builder.member

  condition {
    title       = "gcf-v2-sources bucket only"
    description = "The bucket Cloud Functions copies uploads to in ${var.region}."
    expression  = "resource.name == \"projects/_/buckets/${local.gcf_sources_bucket}\" || resource.name.startsWith(\"projects/_/buckets/${local.gcf_sources_bucket}/\")"
  }
}

resource "google_storage_bucket_iam_member" "builder_source_reader" {
  bucket = google_storage_bucket.source.name
  role   = "roles/storage.objectViewer"
  member = google_service_account.builder.member
}

# renew publishes the fan-out messages of its scheduled run.
resource "google_pubsub_topic_iam_member" "renew_fanout_publisher" {
  topic  = google_pubsub_topic.renew_fanout.name
  role   = "roles/pubsub.publisher"
  member = google_service_account.function["renew"].member
}

# Pub/Sub's agent signs the fan-out pushes' OIDC tokens as the scheduler.
resource "google_service_account_iam_member" "pubsub_agent_scheduler_token" {
  service_account_id = "projects/${var.project_id}/serviceAccounts/${google_service_account.scheduler.email}"
  role               = "roles/iam.serviceAccountTokenCreator"
  member             = local.service_agents.pubsub
}
