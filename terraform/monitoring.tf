# Log-based metrics over the functions' JSON logs (shared/logging): the
# functions log these messages with stable text, and each metric counts them
# per Cloud Run service.
locals {
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

resource "google_logging_metric" "alert" {
  for_each = local.log_alerts

  name        = "${var.name_prefix}${replace(each.key, "_", "-")}"
  description = each.value.title
  filter      = each.value.filter

  metric_descriptor {
    metric_kind = "DELTA"
    value_type  = "INT64"
    unit        = "1"

    labels {
      key         = "service"
      value_type  = "STRING"
      description = "Cloud Run service (function) that logged the entry."
    }
  }

  label_extractors = {
    service = "EXTRACT(resource.labels.service_name)"
  }

  depends_on = [google_project_service.enabled]
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

resource "google_monitoring_alert_policy" "log_alert" {
  for_each = local.log_alerts

  display_name          = each.value.title
  combiner              = "OR"
  notification_channels = [for c in google_monitoring_notification_channel.email : c.id]

  conditions {
    display_name = each.value.title

    condition_threshold {
      filter          = "metric.type=\"logging.googleapis.com/user/${google_logging_metric.alert[each.key].name}\" AND resource.type=\"cloud_run_revision\""
      comparison      = "COMPARISON_GT"
      threshold_value = 0
      duration        = "0s"

      aggregations {
        alignment_period     = "300s"
        per_series_aligner   = "ALIGN_SUM"
        cross_series_reducer = "REDUCE_SUM"
        group_by_fields      = ["metric.label.service"]
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
}
