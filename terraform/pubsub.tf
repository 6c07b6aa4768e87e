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

# Events reach the webhook function through one push subscription per
# endpoint (webhook_endpoints). Each keeps its undelivered events for 7 days
# and redelivers with backoff, so the function's retry window
# (webhook_retry_window, at least 24 h) always ends in delivery or the
# endpoint's dead-letter topic, never in the event expiring unrecorded; one
# endpoint's outage leaves the others' subscriptions untouched. The filter
# keeps only the endpoint's event types and appRef: Pub/Sub acknowledges the
# rest for it. A filter cannot change in place (Pub/Sub filtering
# documentation: "The filter is an immutable property of a subscription"), so
# the provider replaces the subscription, dropping its backlog; no IAM is
# bound on these subscriptions, so a replacement loses no grant either
# (terraform-google-modules/terraform-google-pubsub#173).
# The push is authenticated with the webhook account's OIDC token; the path
# names the topic, as the functions framework expects. It goes to the
# service's run.app URL: Cloud Run counts Pub/Sub pushes as internal traffic
# only there, so on the cloudfunctions.net URL an internal-only function
# refuses them (Cloud Run ingress documentation). The token's audience is
# that URL too, set explicitly as for the scheduler.
resource "google_pubsub_subscription" "webhook" {
  for_each = local.webhook_endpoints

  name   = each.value.subscription
  topic  = google_pubsub_topic.events.name
  filter = each.value.filter

  ack_deadline_seconds       = min(var.function_settings["webhook"].timeout, 600)
  message_retention_duration = "604800s"
  enable_message_ordering    = true # one user's events delivered in history order
  # Kept after delivery too, for the retention above, so scripts/replay
  # -endpoint NAME -since T can seek the subscription back and redeliver.
  retain_acked_messages = true

  # Redeliveries of a failed or refused (429, 503) push wait 10 s, doubling
  # to 600 s; the function's own attempts within one push come first.
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

# Each endpoint but "default" (which keeps the shared dead-letter topic
# above) has a dead-letter topic of its own, with a subscription keeping its
# dead letters for replay (scripts/replay -endpoint).
resource "google_pubsub_topic" "webhook_dead_letter" {
  for_each = { for name, e in local.webhook_endpoints : name => e if name != "default" }

  name       = each.value.dead_letter_topic
  depends_on = [google_project_service.enabled]
}

resource "google_pubsub_subscription" "webhook_dead_letter" {
  for_each = google_pubsub_topic.webhook_dead_letter

  name  = each.value.name
  topic = each.value.id

  ack_deadline_seconds       = 60
  message_retention_duration = "2678400s"

  expiration_policy {
    ttl = ""
  }
}

# The single webhook became the endpoint "default".
moved {
  from = google_pubsub_subscription.webhook[0]
  to   = google_pubsub_subscription.webhook["default"]
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
