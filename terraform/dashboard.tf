# A dashboard to look at, over log-based metrics counted from the keys the
# functions really log (shared/gmailsync logSync: "sync" with outcome,
# messages, units, durationMs; functions/renew: "renew run" with report.*;
# functions/webhook: "webhook delivered", "webhook event dead-lettered").
# Alerts never filter on these metrics (monitoring.tf says why); the one
# that needs a sum uses PromQL, which names the metric only when evaluated.

variable "gmail_daily_units" {
  description = "Gmail API quota units the project may spend per day (Gmail's per-project usage limit), against which gmail_units_alert_share is measured."
  type        = number
  default     = 1000000000

  validation {
    condition     = var.gmail_daily_units > 0
    error_message = "The gmail_daily_units must be positive."
  }
}

variable "gmail_units_alert_share" {
  description = "Share of gmail_daily_units spent over the last 24 hours above which an alert fires (0.8 = 80%)."
  type        = number
  default     = 0.8

  validation {
    condition     = var.gmail_units_alert_share > 0 && var.gmail_units_alert_share <= 1
    error_message = "The gmail_units_alert_share must be above 0 and at most 1."
  }
}

locals {
  metric_prefix = replace(var.name_prefix, "-", "_")

  sync_filter  = "${local.service_filter} AND jsonPayload.message=\"sync\""
  renew_filter = "resource.type=\"cloud_run_revision\" AND resource.labels.service_name=\"${local.services["renew"]}\" AND jsonPayload.message=\"renew run\""

  # name => filter, value extractor (null: a count), labels extracted.
  log_metrics = {
    syncs = {
      description = "Syncs by outcome (synced, stale, busy: a push found the lease held and left its id pending)."
      filter      = local.sync_filter
      value       = null
      labels      = { outcome = "EXTRACT(jsonPayload.outcome)", service = "EXTRACT(resource.labels.service_name)" }
    }
    messages_announced = {
      description = "New-message events published by syncs."
      filter      = "${local.sync_filter} AND jsonPayload.messages>0"
      value       = "EXTRACT(jsonPayload.messages)"
      labels      = { service = "EXTRACT(resource.labels.service_name)" }
    }
    sync_duration = {
      description = "Time from a sync's start to its events published, in milliseconds."
      filter      = local.sync_filter
      value       = "EXTRACT(jsonPayload.durationMs)"
      labels      = { service = "EXTRACT(resource.labels.service_name)" }
    }
    gmail_units = {
      description = "Gmail quota units spent by syncs and renew runs."
      filter      = "(${local.sync_filter}) OR (${local.renew_filter})"
      value       = "EXTRACT(jsonPayload.units)"
      labels      = { service = "EXTRACT(resource.labels.service_name)" }
    }
    renew_units = {
      description = "Gmail quota units paced by renew runs."
      filter      = local.renew_filter
      value       = "EXTRACT(jsonPayload.report.units)"
      labels      = {}
    }
    renew_rate_limited = {
      description = "429 answers from Gmail during renew runs."
      filter      = "${local.renew_filter} AND jsonPayload.report.rate_limited>0"
      value       = "EXTRACT(jsonPayload.report.rate_limited)"
      labels      = {}
    }
    renew_done = {
      description = "Watches renewed by renew runs."
      filter      = local.renew_filter
      value       = "EXTRACT(jsonPayload.report.renewed)"
      labels      = {}
    }
    renew_reconciled = {
      description = "Mailboxes reconciled by renew runs."
      filter      = local.renew_filter
      value       = "EXTRACT(jsonPayload.report.reconciled)"
      labels      = {}
    }
    renew_left = {
      description = "Renewals and reconciles still due when a renew run ended."
      filter      = local.renew_filter
      value       = "EXTRACT(jsonPayload.report.remaining)"
      labels      = {}
    }
    webhook_delivered = {
      description = "Events delivered to the webhook URL."
      filter      = "${local.service_filter} AND jsonPayload.message=\"webhook delivered\""
      value       = null
      labels      = {}
    }
    webhook_dead_lettered = {
      description = "Events the webhook dead-lettered, by reason."
      filter      = "${local.service_filter} AND jsonPayload.message=\"webhook event dead-lettered\""
      value       = null
      labels      = { reason = "EXTRACT(jsonPayload.reason)" }
    }
  }
}

resource "google_logging_metric" "metric" {
  for_each = local.log_metrics

  name        = "${local.metric_prefix}${each.key}"
  description = each.value.description
  filter      = each.value.filter

  metric_descriptor {
    metric_kind = "DELTA"
    value_type  = each.value.value == null ? "INT64" : "DISTRIBUTION"
    unit        = "1"

    dynamic "labels" {
      for_each = each.value.labels
      content {
        key        = labels.key
        value_type = "STRING"
      }
    }
  }

  label_extractors = each.value.labels
  value_extractor  = each.value.value

  dynamic "bucket_options" {
    for_each = each.value.value == null ? [] : [1]
    content {
      exponential_buckets {
        num_finite_buckets = 32
        growth_factor      = 2
        scale              = 1
      }
    }
  }

  depends_on = [google_project_service.enabled]
}

locals {
  metric_type = { for k, m in google_logging_metric.metric : k => "logging.googleapis.com/user/${m.name}" }

  # One chart: title, then per line a metric, the aligner and a group-by.
  charts = [
    { title = "Events published per minute (new mail)", lines = [{ metric = "messages_announced", aligner = "ALIGN_DELTA", reducer = "REDUCE_SUM", by = [] }] },
    { title = "Sync time p50 / p99 (ms)", lines = [
      { metric = "sync_duration", aligner = "ALIGN_PERCENTILE_50", reducer = "REDUCE_MAX", by = [] },
      { metric = "sync_duration", aligner = "ALIGN_PERCENTILE_99", reducer = "REDUCE_MAX", by = [] },
    ] },
    { title = "Pushes by outcome (busy: lease held, left pending)", lines = [{ metric = "syncs", aligner = "ALIGN_DELTA", reducer = "REDUCE_SUM", by = ["metric.label.outcome"] }] },
    { title = "Gmail units per minute by function", lines = [{ metric = "gmail_units", aligner = "ALIGN_DELTA", reducer = "REDUCE_SUM", by = ["metric.label.service"] }] },
    { title = "Gmail 429s in renew runs", lines = [{ metric = "renew_rate_limited", aligner = "ALIGN_DELTA", reducer = "REDUCE_SUM", by = [] }] },
    { title = "Renew progress: done, reconciled, left", lines = [
      { metric = "renew_done", aligner = "ALIGN_DELTA", reducer = "REDUCE_SUM", by = [] },
      { metric = "renew_reconciled", aligner = "ALIGN_DELTA", reducer = "REDUCE_SUM", by = [] },
      { metric = "renew_left", aligner = "ALIGN_DELTA", reducer = "REDUCE_SUM", by = [] },
    ] },
    { title = "Webhook deliveries and dead letters", lines = [
      { metric = "webhook_delivered", aligner = "ALIGN_DELTA", reducer = "REDUCE_SUM", by = [] },
      { metric = "webhook_dead_lettered", aligner = "ALIGN_DELTA", reducer = "REDUCE_SUM", by = ["metric.label.reason"] },
    ] },
    { title = "Dead letters waiting", lines = [{ metric = "", aligner = "ALIGN_MAX", reducer = "REDUCE_SUM", by = [] }] },
  ]

  # The last chart reads Pub/Sub's own metric of the dead-letter subscription.
  dead_letter_waiting = "metric.type=\"pubsub.googleapis.com/subscription/num_undelivered_messages\" AND resource.type=\"pubsub_subscription\" AND resource.label.subscription_id=\"${google_pubsub_subscription.dead_letter.name}\""

  dashboard = {
    displayName = "gmailwatch (${local.deployment})"
    mosaicLayout = {
      columns = 12
      tiles = [for i, c in local.charts : {
        xPos   = (i % 2) * 6
        yPos   = floor(i / 2) * 4
        width  = 6
        height = 4
        widget = {
          title = c.title
          xyChart = {
            dataSets = [for l in c.lines : {
              plotType = "LINE"
              timeSeriesQuery = {
                timeSeriesFilter = {
                  filter = l.metric == "" ? local.dead_letter_waiting : "metric.type=\"${local.metric_type[l.metric]}\""
                  aggregation = {
                    alignmentPeriod    = "60s"
                    perSeriesAligner   = l.aligner
                    crossSeriesReducer = l.reducer
                    groupByFields      = l.by
                  }
                }
              }
            }]
          }
        }
      }]
    }
  }
}

resource "google_monitoring_dashboard" "main" {
  dashboard_json = jsonencode(local.dashboard)

  depends_on = [google_project_service.enabled]
}

output "dashboard_url" {
  description = "Cloud Monitoring dashboard of this deployment."
  value       = "https://console.cloud.google.com/monitoring/dashboards/custom/${element(split("/", google_monitoring_dashboard.main.id), 3)}?project=${var.project_id}"
}

# A renew run that ends with work left: the budget or Gmail's quota did not
# cover every due user, so watches may lapse if it keeps happening.
resource "google_monitoring_alert_policy" "renew_work_left" {
  display_name          = "Renew run ended with work left (${local.deployment})"
  combiner              = "OR"
  notification_channels = [for c in google_monitoring_notification_channel.email : c.id]

  conditions {
    display_name = "Renew run ended with work left"
    condition_matched_log {
      filter = "${local.renew_filter} AND jsonPayload.report.remaining>0"
    }
  }

  alert_strategy {
    notification_rate_limit {
      period = "3600s"
    }
    auto_close = "86400s"
  }

  documentation {
    content   = "A renew run ended with renewals or reconciles of its shards still due (report.remaining, report.shards). One such run is made up by the next; if it repeats, raise renew_fanout (with the renew function's max_instances), run_budget, quota_units_per_minute or the renew function's timeout, or run renew more often."
    mime_type = "text/markdown"
  }

  depends_on = [google_project_service.enabled]
}

# Gmail units over the last day above a share of the daily limit. PromQL
# names the log-based metric only when it is evaluated, so, unlike a filter
# condition, creating it beside the metric does not fail with 404.
resource "google_monitoring_alert_policy" "gmail_units" {
  display_name          = "Gmail units above ${var.gmail_units_alert_share * 100}% of the daily limit (${local.deployment})"
  combiner              = "OR"
  notification_channels = [for c in google_monitoring_notification_channel.email : c.id]

  conditions {
    display_name = "Gmail units over 24 h"
    condition_prometheus_query_language {
      query               = "sum(increase(logging_googleapis_com:user_${google_logging_metric.metric["gmail_units"].name}_sum[1d])) > ${var.gmail_units_alert_share * var.gmail_daily_units}"
      duration            = "0s"
      evaluation_interval = "300s"
    }
  }

  alert_strategy {
    auto_close = "86400s"
  }

  documentation {
    content   = "Gmail quota units spent over the last 24 hours passed the share of gmail_daily_units set by gmail_units_alert_share. Past the limit Gmail answers 429 and mail is announced late. Look at the dashboard's units per function."
    mime_type = "text/markdown"
  }

  depends_on = [google_project_service.enabled]
}
