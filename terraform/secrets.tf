# Only the secrets exist here: their values are added by
# scripts/set-secrets.sh, so they never enter Terraform state.
resource "google_secret_manager_secret" "oauth_client" {
  secret_id = local.names.oauth_client_secret

  replication {
    auto {}
  }

  depends_on = [google_project_service.enabled]
}

resource "google_secret_manager_secret" "webhook" {
  secret_id = local.names.webhook_secret

  replication {
    auto {}
  }

  depends_on = [google_project_service.enabled]
}

# The webhook URL, which may carry the receiver's token. Written as a
# write-only argument (Terraform 1.11): the value reaches Secret Manager and
# never Terraform's plan or state. A changed URL gets a new version: the
# version number is derived from the URL's hash.
resource "google_secret_manager_secret" "webhook_url" {
  count = local.webhook_enabled ? 1 : 0

  secret_id = local.names.webhook_url_secret

  replication {
    auto {}
  }

  depends_on = [google_project_service.enabled]
}

resource "google_secret_manager_secret_version" "webhook_url" {
  count = local.webhook_enabled ? 1 : 0

  secret                 = google_secret_manager_secret.webhook_url[0].id
  secret_data_wo         = var.webhook_url
  secret_data_wo_version = parseint(substr(sha256(var.webhook_url), 0, 7), 16)
}

resource "google_secret_manager_secret_iam_member" "webhook_url_accessor" {
  count = local.webhook_enabled ? 1 : 0

  secret_id = google_secret_manager_secret.webhook_url[0].secret_id
  role      = "roles/secretmanager.secretAccessor"
  member    = google_service_account.function["webhook"].member
}
