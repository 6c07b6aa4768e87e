resource "google_pubsub_topic" "gmail" {
  name       = var.gmail_topic_name
  depends_on = [google_project_service.enabled]
}

# Gmail publishes watch notifications as this Google-owned account.
resource "google_pubsub_topic_iam_member" "gmail_push_publisher" {
  topic  = google_pubsub_topic.gmail.name
  role   = "roles/pubsub.publisher"
  member = "serviceAccount:gmail-api-push@system.gserviceaccount.com"
}

resource "google_pubsub_topic" "events" {
  name       = var.events_topic_name
  depends_on = [google_project_service.enabled]
}

resource "google_pubsub_subscription" "events" {
  count = var.events_subscription_name != "" ? 1 : 0

  name  = var.events_subscription_name
  topic = google_pubsub_topic.events.id

  ack_deadline_seconds       = 60
  message_retention_duration = "604800s"

  expiration_policy {
    ttl = ""
  }
}

resource "google_pubsub_topic" "dead_letter" {
  name       = var.dead_letter_topic_name
  depends_on = [google_project_service.enabled]
}

# A topic without a subscription drops what is published to it: this one
# keeps undeliverable events for inspection and replay.
resource "google_pubsub_subscription" "dead_letter" {
  name  = var.dead_letter_topic_name
  topic = google_pubsub_topic.dead_letter.id

  ack_deadline_seconds       = 60
  message_retention_duration = "604800s"

  expiration_policy {
    ttl = ""
  }
}

# Events reach the webhook function through this push subscription. It keeps
# an undelivered event for 7 days and redelivers with backoff, so the
# function's retry window (webhook_retry_window, at least 24 h) always ends in
# delivery or the dead-letter topic, never in the event expiring unrecorded.
# The push is authenticated with the webhook account's OIDC token; the path
# names the topic, from which the functions framework builds the CloudEvent.
resource "google_pubsub_subscription" "webhook" {
  count = local.webhook_enabled ? 1 : 0

  name  = "${var.name_prefix}webhook"
  topic = google_pubsub_topic.events.name

  ack_deadline_seconds       = min(var.function_settings["webhook"].timeout, 600)
  message_retention_duration = "604800s"

  retry_policy {
    minimum_backoff = "10s"
    maximum_backoff = "600s"
  }

  expiration_policy {
    ttl = ""
  }

  push_config {
    push_endpoint = "${google_cloudfunctions2_function.function["webhook"].url}/projects/${var.project_id}/topics/${google_pubsub_topic.events.name}"
    oidc_token {
      service_account_email = google_service_account.function["webhook"].email
    }
  }

  depends_on = [google_cloud_run_v2_service_iam_member.webhook_pusher]
}
