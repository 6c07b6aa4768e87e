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
