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
