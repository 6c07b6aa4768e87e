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

# The signing secret of each endpoint but "default", whose secret is the one
# above (webhook_secret_name), kept whether or not webhook_url is set.
resource "google_secret_manager_secret" "webhook_endpoint" {
  for_each = { for name, e in local.webhook_endpoints : name => e if name != "default" }

  secret_id = each.value.signing_secret

  replication {
    auto {}
  }

  depends_on = [google_project_service.enabled]
}

# Each endpoint's URL, which may carry the receiver's token. Written as a
# write-only argument (Terraform 1.11): the value reaches Secret Manager and
# never Terraform's plan or state. A changed URL gets a new version: the
# version number is derived from the URL's hash.
resource "google_secret_manager_secret" "webhook_url" {
  for_each = local.webhook_endpoints

  secret_id = each.value.url_secret

  replication {
    auto {}
  }

  depends_on = [google_project_service.enabled]
}

resource "google_secret_manager_secret_version" "webhook_url" {
  for_each = local.webhook_endpoints

  secret                 = google_secret_manager_secret.webhook_url[each.key].id
  secret_data_wo         = each.key == "default" ? var.webhook_url : var.webhook_endpoint_urls[each.key]
  secret_data_wo_version = parseint(substr(sha256(each.key == "default" ? var.webhook_url : var.webhook_endpoint_urls[each.key]), 0, 7), 16)
}

resource "google_secret_manager_secret_iam_member" "webhook_url_accessor" {
  for_each = local.webhook_endpoints

  secret_id = google_secret_manager_secret.webhook_url[each.key].secret_id
  role      = "roles/secretmanager.secretAccessor"
  member    = google_service_account.function["webhook"].member
}

moved {
  from = google_secret_manager_secret.webhook_url[0]
  to   = google_secret_manager_secret.webhook_url["default"]
}

moved {
  from = google_secret_manager_secret_version.webhook_url[0]
  to   = google_secret_manager_secret_version.webhook_url["default"]
}

moved {
  from = google_secret_manager_secret_iam_member.webhook_url_accessor[0]
  to   = google_secret_manager_secret_iam_member.webhook_url_accessor["default"]
}
