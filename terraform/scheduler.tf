# Hourly (by default) call of the private renew function, authenticated by an
# OIDC token of the scheduler's own service account.
resource "google_cloud_scheduler_job" "renew" {
  name             = "${var.name_prefix}renew"
  region           = var.region
  description      = "Renews Gmail watches and reconciles mailboxes whose notifications were missed."
  schedule         = var.renew_schedule
  time_zone        = var.renew_time_zone
  attempt_deadline = "${max(15, min(var.function_settings["renew"].timeout, 1800))}s"

  http_target {
    http_method = "POST"
    uri         = google_cloudfunctions2_function.function["renew"].service_config[0].uri

    oidc_token {
      service_account_email = google_service_account.scheduler.email
      audience              = google_cloudfunctions2_function.function["renew"].service_config[0].uri
    }
  }

  # A missed run is made up by the next one; no need to pile up retries.
  retry_config {
    retry_count = 0
  }

  # renew queries the users indexes: a run before the last of them exists
  # fails with FAILED_PRECONDITION.
  depends_on = [
    google_cloud_run_v2_service_iam_member.scheduler_invoker,
    google_firestore_index.strays_by_at,
  ]
}
