# Alerts over the functions' JSON logs (shared/logging): the functions log
# these messages with stable text, and each alert matches them per Cloud Run
# service.
locals {
  deployment = trimsuffix(var.name_prefix, "-")

  services = { for name in keys(local.functions) : name => "${var.name_prefix}${name}" }

  service_filter = "resource.type=\"cloud_run_revision\" AND (${join(" OR ", [for s in values(local.services) : "resource.labels.service_name=\"${s}\""])})"

  log_alerts = merge({
    watch_expiring = {
      title = "Gmail watch close to expiry"
      filter = join(" AND ", [
        "resource.type=\"cloud_run_revision\"",
        "resource.labels.service_name=\"${local.services["renew"]}\"",
        "(jsonPayload.message=\"watch close to expiry\" OR jsonPayload.message=\"watch renewal failed\")",
      ])
      doc = "A Gmail watch could not be renewed and will expire (Gmail then stops notifying). Check the renew function's logs for the user key and the Gmail error."
    }
    reauth_required = {
      title = "Gmail user needs reauthorization"
      filter = join(" AND ", [
        local.service_filter,
        "jsonPayload.message=\"user must consent again\"",
      ])
      doc = "A user's refresh token was revoked or expired (invalid_grant): no mail is announced for that user until they open the consent URL again."
    }
    dead_lettered = {
      title = "Events dead-lettered"
      filter = join(" AND ", [
        local.service_filter,
        "(jsonPayload.message=\"webhook event dead-lettered\" OR jsonPayload.message=\"webhook endpoint gone\")",
      ])
      doc = "The webhook could not deliver events; they wait in the dead-letter subscription for replay."
    }
    endpoint_disabled = {
      title = "Webhook endpoint disabled"
      filter = join(" AND ", [
        local.service_filter,
        "jsonPayload.message=\"webhook endpoint disabled\"",
      ])
      doc = "A webhook endpoint failed for endpoint_disable_after and was disabled: its events wait in its subscription (7 days) and its dead letters. Fix the receiver, then POST /endpoints/NAME/enable on the accounts API and replay its dead letters (scripts/replay -endpoint NAME)."
    }
    function_errors = {
      title  = "gmailwatch function errors"
      filter = "${local.service_filter} AND severity>=ERROR AND NOT jsonPayload.message=\"domain-wide delegation refused\""
      doc    = "A function logged an error. Check its logs; Pub/Sub-triggered functions retry on their own."
    }
    }, local.delegation ? {
    delegation_refused = {
      title = "Workspace domain-wide delegation refused"
      filter = join(" AND ", [
        "resource.type=\"cloud_run_revision\"",
        "resource.labels.service_name=\"${local.services["renew"]}\"",
        "jsonPayload.message=\"domain-wide delegation refused\"",
      ])
      doc = "Google refused the domain-wide delegation (unauthorized_client): a Workspace admin removed or changed it. Each delegated user is marked reauth_required once and nothing retries; enter the deployment's delegation_client_id and delegation_scopes again in the Admin console, and the next renew run resumes every user."
    }
  } : {})
}

resource "google_monitoring_notification_channel" "email" {
  for_each = toset(var.alert_emails)

  display_name = "gmailwatch alerts ${each.key}"
  type         = "email"
  labels = {
    email_address = each.key
  }

  depends_on = [google_project_service.enabled]
}

# Log-match alert policies, not log-based metrics: an alert policy created
# right after the metric it counts fails with "Error 404: Cannot find
# metric(s)" for up to 10 minutes (hashicorp/terraform-provider-google
# #11102, open; #10325), so the first apply would need a re-run. A log-match
# condition reads the log entries themselves and exists at once.
resource "google_monitoring_alert_policy" "log_alert" {
  for_each = local.log_alerts

  display_name          = "${each.value.title} (${local.deployment})"
  combiner              = "OR"
  notification_channels = [for c in google_monitoring_notification_channel.email : c.id]

  conditions {
    display_name = each.value.title

    condition_matched_log {
      filter = each.value.filter
      label_extractors = {
        service = "EXTRACT(resource.labels.service_name)"
      }
    }
  }

  # Required for log-match conditions: at most one notification per period.
  alert_strategy {
    notification_rate_limit {
      period = "300s"
    }
    auto_close = "86400s"
  }

  documentation {
    content   = each.value.doc
    mime_type = "text/markdown"
  }

  depends_on = [google_project_service.enabled]
}

# Failures no function logs: a renew that never runs (the scheduler cannot
# call it), events piling up unacknowledged in front of notify or the
# webhook, dead letters waiting for replay. These count Google's own log
# entries and built-in metrics, which exist before the first event.
locals {
  # Eventarc makes the subscription that feeds notify and names it
  # eventarc-<region>-<trigger id>-sub-<n>; a function's trigger id starts
  # with the function's name.
  eventarc_subscription_prefix = "eventarc-${var.region}-${local.services["notify"]}-"

  backlog_alerts = merge({
    notify_backlog = {
      title        = "Gmail notifications not processed"
      subscription = "starts_with(\"${local.eventarc_subscription_prefix}\")"
      metric       = "pubsub.googleapis.com/subscription/oldest_unacked_message_age"
      threshold    = 600
      doc          = "A Gmail notification has waited more than 10 minutes for the notify function: notify keeps failing (see its logs) or cannot be invoked. Renew's reconciliation catches up on missed mail within the hour once notify works again."
    }
    renew_fanout_backlog = {
      title        = "Renew shard runs not taken"
      subscription = "\"${google_pubsub_subscription.renew_fanout.name}\""
      metric       = "pubsub.googleapis.com/subscription/oldest_unacked_message_age"
      threshold    = 1200
      doc          = "A renew fan-out message (a range of the users' shards) has waited more than 20 minutes: its renew run keeps failing (see its logs) or cannot be invoked (max_instances, IAM). Those shards' watches are not renewed until it runs; the message lapses after an hour and the next scheduled run hands the shards out again."
    }
    dead_letter_backlog = {
      title        = "Dead-lettered events waiting"
      subscription = "\"${google_pubsub_subscription.dead_letter.name}\""
      metric       = "pubsub.googleapis.com/subscription/num_undelivered_messages"
      threshold    = 0
      doc          = "Events the webhook could not deliver wait in the dead-letter subscription: fix the receiver, then replay them (scripts/replay)."
    }
    }, {
    for name, e in local.webhook_endpoints : (name == "default" ? "webhook_backlog" : "webhook_backlog_${name}") => {
      title        = name == "default" ? "Webhook deliveries delayed" : "Webhook deliveries to ${name} delayed"
      subscription = "\"${google_pubsub_subscription.webhook[name].name}\""
      metric       = "pubsub.googleapis.com/subscription/oldest_unacked_message_age"
      threshold    = 1800
      doc          = "An event has waited more than 30 minutes for delivery to the webhook endpoint ${name}: the receiver is down, refusing it or rate-limiting, or the endpoint is disabled (GET /endpoints/${name} on the accounts API). The webhook keeps retrying until webhook_retry_window, then dead-letters; a disabled endpoint keeps its events until POST /endpoints/${name}/enable."
    }
  })
}

resource "google_monitoring_alert_policy" "backlog" {
  for_each = local.backlog_alerts

  display_name          = "${each.value.title} (${local.deployment})"
  combiner              = "OR"
  notification_channels = [for c in google_monitoring_notification_channel.email : c.id]

  conditions {
    display_name = each.value.title

    condition_threshold {
      filter          = "metric.type=\"${each.value.metric}\" AND resource.type=\"pubsub_subscription\" AND resource.label.subscription_id=${each.value.subscription}"
      comparison      = "COMPARISON_GT"
      threshold_value = each.value.threshold
      duration        = "300s"

      aggregations {
        alignment_period   = "60s"
        per_series_aligner = "ALIGN_MAX"
      }

      trigger {
        count = 1
      }
    }
  }

  alert_strategy {
    auto_close = "86400s"
  }

  documentation {
    content   = each.value.doc
    mime_type = "text/markdown"
  }

  depends_on = [google_project_service.enabled]
}

# Cloud Scheduler logs each failed attempt of a job (the call was refused,
# timed out or answered an error) as an ERROR entry on the job.
resource "google_monitoring_alert_policy" "renew_not_run" {
  display_name          = "Renew job failed (${local.deployment})"
  combiner              = "OR"
  notification_channels = [for c in google_monitoring_notification_channel.email : c.id]

  conditions {
    display_name = "Renew job failed"

    condition_matched_log {
      filter = join(" AND ", [
        "resource.type=\"cloud_scheduler_job\"",
        "resource.labels.job_id=\"${google_cloud_scheduler_job.renew.name}\"",
        "severity>=ERROR",
      ])
    }
  }

  alert_strategy {
    notification_rate_limit {
      period = "3600s"
    }
    auto_close = "86400s"
  }

  documentation {
    content   = "Cloud Scheduler could not run the renew function. Without renew, Gmail watches lapse after 7 days and dropped notifications are never made up. Check the job's logs for the HTTP status (401/403: the scheduler account lost run.invoker on renew)."
    mime_type = "text/markdown"
  }

  depends_on = [google_project_service.enabled]
}
