resource "google_pubsub_topic" "gmail" {
  name       = local.names.gmail_topic
  depends_on = [google_project_service.enabled]
}

# Gmail publishes watch notifications as this Google-owned account.
resource "google_pubsub_topic_iam_member" "gmail_push_publisher" {
  topic  = google_pubsub_topic.gmail.name
  role   = "roles/pubsub.publisher"
  member = "serviceAccount:gmail-api-push@system.gserviceaccount.com"
}

resource "google_pubsub_topic" "events" {
  name       = local.names.events_topic
  depends_on = [google_project_service.enabled]
}

resource "google_pubsub_subscription" "events" {
  count = local.names.events_subscription != "" ? 1 : 0

  name  = local.names.events_subscription
  topic = google_pubsub_topic.events.id

  ack_deadline_seconds       = 60
  message_retention_duration = "604800s"
  # Events carry the user key as ordering key; only an ordered subscription
  # hands one user's events over in history order. Pub/Sub fixes this when
  # a subscription is created: changing it replaces the subscription.
  enable_message_ordering = true

  expiration_policy {
    ttl = ""
  }
}

resource "google_pubsub_topic" "dead_letter" {
  name       = local.names.dead_letter_topic
  depends_on = [google_project_service.enabled]
}

# A topic without a subscription drops what is published to it: this one
# keeps undeliverable events for inspection and replay, for the 31 days
# Pub/Sub allows at most (message_retention_duration, Pub/Sub subscription
# reference), so a receiver down over a long holiday still gets them back.
resource "google_pubsub_subscription" "dead_letter" {
  name  = local.names.dead_letter_topic
  topic = google_pubsub_topic.dead_letter.id

  ack_deadline_seconds       = 60
  message_retention_duration = "2678400s"

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
# It goes to the service's run.app URL: Cloud Run counts Pub/Sub pushes as
# internal traffic only there, so on the cloudfunctions.net URL an
# internal-only function refuses them (Cloud Run ingress documentation). The
# token's audience is that URL too, set explicitly as for the scheduler.
resource "google_pubsub_subscription" "webhook" {
  count = local.webhook_enabled ? 1 : 0

  name  = "${var.name_prefix}webhook"
  topic = google_pubsub_topic.events.name

  ack_deadline_seconds       = min(var.function_settings["webhook"].timeout, 600)
  message_retention_duration = "604800s"
  enable_message_ordering    = true # one user's events delivered in history order

  retry_policy {
    minimum_backoff = "10s"
    maximum_backoff = "600s"
  }

  expiration_policy {
    ttl = ""
  }

  push_config {
    push_endpoint = "${google_cloudfunctions2_function.function["webhook"].service_config[0].uri}/projects/${var.project_id}/topics/${google_pubsub_topic.events.name}"
    oidc_token {
      service_account_email = google_service_account.function["webhook"].email
      audience              = google_cloudfunctions2_function.function["webhook"].service_config[0].uri
    }
  }

  depends_on = [
    google_cloud_run_v2_service_iam_member.webhook_pusher,
    google_service_account_iam_member.pubsub_agent_token_creator,
  ]
}

# The scheduled renew run fans out through this topic: one message per range
# of the users' shards (functions/renew/fanout.go says why Pub/Sub), each
# pushed back to the renew function, which walks only those shards. The push
# is authenticated with the scheduler account's OIDC token, which may invoke
# renew already, to the run.app URL (internal traffic there, as for the
# webhook). A message is worth nothing after the next scheduled run: it is
# kept an hour, redelivered with backoff meanwhile if its run failed.
resource "google_pubsub_topic" "renew_fanout" {
  name       = "${var.name_prefix}renew-fanout"
  depends_on = [google_project_service.enabled]
}

resource "google_pubsub_subscription" "renew_fanout" {
  name  = "${var.name_prefix}renew-fanout"
  topic = google_pubsub_topic.renew_fanout.name

  ack_deadline_seconds       = min(var.function_settings["renew"].timeout, 600)
  message_retention_duration = "3600s"

  retry_policy {
    minimum_backoff = "30s"
    maximum_backoff = "600s"
  }

  expiration_policy {
    ttl = ""
  }

  push_config {
    push_endpoint = "${google_cloudfunctions2_function.function["renew"].service_config[0].uri}/shards" # functions/renew ShardsPath
    oidc_token {
      service_account_email = google_service_account.scheduler.email
      audience              = google_cloudfunctions2_function.function["renew"].service_config[0].uri
    }
  }

  lifecycle {
    precondition {
      condition     = var.function_settings["renew"].max_instances > var.renew_fanout
      error_message = "function_settings.renew.max_instances must be above renew_fanout: each shard range runs on its own instance, beside the scheduled run."
    }
  }

  depends_on = [
    google_cloud_run_v2_service_iam_member.scheduler_invoker,
    google_service_account_iam_member.pubsub_agent_scheduler_token,
  ]
}
