variable "project_id" {
  description = "Google Cloud project id that receives every resource."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{4,28}[a-z0-9]$", var.project_id))
    error_message = "The project_id must be 6-30 lower-case letters, digits or hyphens, starting with a letter."
  }
}

variable "project_number" {
  description = "Numeric project number (gcloud projects describe PROJECT --format='value(projectNumber)'). Secret Manager IAM conditions match secret names by project number, and taking it as input keeps plan free of cloud reads."
  type        = string

  validation {
    condition     = can(regex("^[0-9]{6,20}$", var.project_number))
    error_message = "The project_number must be the numeric project number, not the project id."
  }
}

variable "region" {
  description = "Region of the functions, the Cloud Scheduler job, the Artifact Registry repository and the source bucket."
  type        = string
  default     = "us-central1"

  validation {
    condition     = can(regex("^[a-z]+-[a-z]+[0-9]+$", var.region))
    error_message = "The region must be a Cloud Functions region such as us-central1 or europe-west1."
  }
}

variable "firestore_location" {
  description = "Location of the Firestore database: a multi-region (nam5, eur3) or a region. It cannot be changed after creation."
  type        = string
  default     = "nam5"

  validation {
    condition     = can(regex("^[a-z0-9-]+$", var.firestore_location))
    error_message = "The firestore_location must be a Firestore location id such as nam5, eur3 or us-central1."
  }
}

variable "firestore_point_in_time_recovery" {
  description = "Keep 7 days of Firestore document versions for point-in-time recovery (read, export or clone the database as it was at a past minute). Costs storage for the kept versions."
  type        = bool
  default     = true
}

variable "name_prefix" {
  description = "Prefix of every name this deployment creates in the project (functions, service accounts, custom role, topics, subscriptions, secrets, scheduler job, metrics, repository, bucket), so deployments with different prefixes can share a project's names."
  type        = string
  default     = "gmailwatch-"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{0,19}$", var.name_prefix)) && !startswith(var.name_prefix, "gmail-refresh")
    error_message = "The name_prefix must be 1-20 lower-case letters, digits or hyphens, starting with a letter and not with gmail-refresh (service account ids are limited to 30 characters)."
  }
}

variable "labels" {
  description = "Extra labels on every resource that takes labels."
  type        = map(string)
  default     = {}
}

variable "runtime" {
  description = "Cloud Functions Go runtime. Keep it in step with the go directive of go.mod."
  type        = string
  default     = "go126"

  validation {
    condition     = can(regex("^go[0-9]{3}$", var.runtime))
    error_message = "The runtime must be a Go runtime id such as go126."
  }
}

variable "source_dir" {
  description = "Root of the Go module whose functions are deployed (holds go.mod). Empty means the parent of this directory."
  type        = string
  default     = ""
}

variable "build_dir" {
  description = "Directory where the function source zips are written. Empty means .build inside this directory."
  type        = string
  default     = ""
}

variable "consent_public_url" {
  description = "Public base URL of the consent function when it is served from your own domain (https, no trailing slash). Empty means its cloudfunctions.net URL."
  type        = string
  default     = ""

  validation {
    condition     = var.consent_public_url == "" || can(regex("^https://[^/?#\\s]+(/[^?#\\s]*[^/?#\\s])?$", var.consent_public_url))
    error_message = "The consent_public_url must be empty or an https:// URL without a trailing slash, query or fragment."
  }
}

variable "oauth_client_id" {
  description = "OAuth 2.0 web client id created in the console (APIs & Services > Credentials). Its secret goes to Secret Manager with scripts/set-secrets.sh, never here."
  type        = string

  validation {
    condition     = can(regex("^[0-9]+-[a-z0-9]+\\.apps\\.googleusercontent\\.com$", var.oauth_client_id))
    error_message = "The oauth_client_id must look like 1234-abc.apps.googleusercontent.com."
  }
}

variable "gmail_scope" {
  description = "Gmail OAuth scope requested at consent. gmail.metadata is the least privilege that lists history and reads headers."
  type        = string
  default     = "https://www.googleapis.com/auth/gmail.metadata"

  validation {
    condition = contains([
      "https://www.googleapis.com/auth/gmail.metadata",
      "https://www.googleapis.com/auth/gmail.readonly",
    ], var.gmail_scope)
    error_message = "The gmail_scope must be the gmail.metadata or gmail.readonly scope URL."
  }
}

variable "gmail_labels" {
  description = "Gmail label ids given to users.watch and used to filter history."
  type        = list(string)
  default     = ["INBOX"]

  validation {
    condition     = length(var.gmail_labels) > 0 && alltrue([for l in var.gmail_labels : can(regex("^[A-Za-z0-9_-]+$", l))])
    error_message = "The gmail_labels must be a non-empty list of label ids such as INBOX or Label_12 (no commas or spaces)."
  }
}

variable "gmail_label_filter" {
  description = "Whether gmail_labels are the labels to watch (include) or the labels to ignore (exclude)."
  type        = string
  default     = "include"

  validation {
    condition     = contains(["include", "exclude"], var.gmail_label_filter)
    error_message = "The gmail_label_filter must be include or exclude."
  }
}

variable "event_types" {
  description = "Mailbox event types announced. Any type beside gmail.message.received makes users.watch cover the whole mailbox (more pushes), since a label filter would not push changes outside the watched labels."
  type        = list(string)
  default     = ["gmail.message.received"]

  validation {
    condition = length(var.event_types) > 0 && alltrue([for t in var.event_types : contains([
      "gmail.message.received", "gmail.message.sent", "gmail.message.labels_changed", "gmail.message.deleted",
    ], t)])
    error_message = "The event_types must name one or more of gmail.message.received, gmail.message.sent, gmail.message.labels_changed and gmail.message.deleted."
  }
}

variable "message_content" {
  description = "Message content in received and sent events: none, text (the plain-text body) or full (also the HTML body and the attachments' metadata). text and full need gmail_scope gmail.readonly."
  type        = string
  default     = "none"

  validation {
    condition     = contains(["none", "text", "full"], var.message_content) && (var.message_content == "none" || var.gmail_scope != "https://www.googleapis.com/auth/gmail.metadata")
    error_message = "The message_content must be none, text or full, and text or full needs gmail_scope gmail.readonly (gmail.metadata never shows a body)."
  }
}

variable "message_content_max_bytes" {
  description = "Bytes of the text and of the HTML body an event carries at most, each; longer bodies are cut and flagged truncated."
  type        = number
  default     = 65536

  validation {
    condition     = var.message_content_max_bytes >= 1024 && var.message_content_max_bytes <= 524288
    error_message = "The message_content_max_bytes must be 1024 to 524288."
  }
}

variable "gmail_topic_name" {
  description = "Pub/Sub topic id that Gmail publishes mailbox changes to. Null means <name_prefix>gmail-notifications."
  type        = string
  default     = null

  validation {
    condition     = var.gmail_topic_name == null || (can(regex("^[A-Za-z][A-Za-z0-9._~%+-]{2,254}$", var.gmail_topic_name)) && !can(regex("^goog", var.gmail_topic_name)))
    error_message = "The gmail_topic_name must be a valid Pub/Sub topic id (3-255 characters, starting with a letter, not with goog)."
  }
}

variable "events_topic_name" {
  description = "Pub/Sub topic id of the output events the application consumes. Null means <name_prefix>events."
  type        = string
  default     = null

  validation {
    condition     = var.events_topic_name == null || (can(regex("^[A-Za-z][A-Za-z0-9._~%+-]{2,254}$", var.events_topic_name)) && !can(regex("^goog", var.events_topic_name)))
    error_message = "The events_topic_name must be a valid Pub/Sub topic id (3-255 characters, starting with a letter, not with goog)."
  }
}

variable "events_subscription_name" {
  description = "Pull subscription created on the output topic for the application, so no event published before the application subscribes is lost. Null means <name_prefix>events-app; empty creates none."
  type        = string
  default     = null

  validation {
    condition     = var.events_subscription_name == null || var.events_subscription_name == "" || can(regex("^[A-Za-z][A-Za-z0-9._~%+-]{2,254}$", var.events_subscription_name))
    error_message = "The events_subscription_name must be null, empty or a valid Pub/Sub subscription id."
  }
}

variable "dead_letter_topic_name" {
  description = "Pub/Sub topic id for events the webhook could not deliver; a pull subscription of the same name keeps them for replay. Null means <name_prefix>events-dead-letter."
  type        = string
  default     = null

  validation {
    condition     = var.dead_letter_topic_name == null || (can(regex("^[A-Za-z][A-Za-z0-9._~%+-]{2,254}$", var.dead_letter_topic_name)) && !can(regex("^goog", var.dead_letter_topic_name)))
    error_message = "The dead_letter_topic_name must be a valid Pub/Sub topic id (3-255 characters, starting with a letter, not with goog)."
  }
}

variable "oauth_client_secret_name" {
  description = "Secret Manager secret id holding the OAuth client secret. Null means <name_prefix>oauth-client-secret."
  type        = string
  default     = null

  validation {
    condition     = var.oauth_client_secret_name == null || (can(regex("^[A-Za-z0-9_-]{1,255}$", var.oauth_client_secret_name)) && !can(regex("^gmail-refresh-", var.oauth_client_secret_name)))
    error_message = "The oauth_client_secret_name must be a secret id (letters, digits, - and _) that does not start with gmail-refresh-."
  }
}

variable "state_key_secret_name" {
  description = "Secret Manager secret id holding the key that signs OAuth state. Null means <name_prefix>consent-state-key."
  type        = string
  default     = null

  validation {
    condition     = var.state_key_secret_name == null || (can(regex("^[A-Za-z0-9_-]{1,255}$", var.state_key_secret_name)) && !can(regex("^gmail-refresh-", var.state_key_secret_name)))
    error_message = "The state_key_secret_name must be a secret id (letters, digits, - and _) that does not start with gmail-refresh-."
  }
}

variable "webhook_secret_name" {
  description = "Secret Manager secret id holding the webhook signing secret (whsec_...). Null means <name_prefix>webhook-signing-secret."
  type        = string
  default     = null

  validation {
    condition     = var.webhook_secret_name == null || (can(regex("^[A-Za-z0-9_-]{1,255}$", var.webhook_secret_name)) && !can(regex("^gmail-refresh-", var.webhook_secret_name)))
    error_message = "The webhook_secret_name must be a secret id (letters, digits, - and _) that does not start with gmail-refresh-."
  }
}

variable "webhook_url" {
  description = "HTTPS URL the webhook function delivers events to. Empty deploys no webhook function. Sensitive, since a path may carry the receiver's token: plans do not show it. Credentials in the authority (user:password@), query strings and fragments are refused."
  type        = string
  default     = ""
  sensitive   = true

  validation {
    condition     = var.webhook_url == "" || can(regex("^https://[^/?#@\\s]+(/[^?#\\s]*)?$", var.webhook_url))
    error_message = "The webhook_url must be empty or an https:// URL without user:password@, query string or fragment."
  }
}

# Endpoints are data: each entry gets a filtered push subscription, its own
# signing secret, URL secret and dead-letter topic (pubsub.tf, secrets.tf).
# One webhook function serves them all: it reads the push envelope itself
# (an HTTP entry point) and picks the endpoint by the push's subscription,
# which the functions framework's CloudEvent conversion would drop. One
# deployment means one build and one set of instances; endpoints stay apart
# through their subscriptions (each its own backlog, ordering and backoff)
# and per-endpoint rate limits in the function. The old webhook_url and
# webhook_secret_name keep working: they are the endpoint "default", under
# the names they had (moved blocks in pubsub.tf carry the resources over).
variable "webhook_endpoints" {
  description = "Webhook endpoints by name (lowercase letters, digits, -): event_types (empty: every type), app_ref (deliver only that appRef's events), rate_per_second (0: unlimited) and enabled. Their URLs are in webhook_endpoint_urls. Pub/Sub cannot change a subscription's filter: changing event_types or app_ref replaces the subscription and drops its undelivered events, so add a new entry, let the old one drain, then remove it."
  type = map(object({
    event_types     = optional(list(string), [])
    app_ref         = optional(string)
    rate_per_second = optional(number, 0)
    enabled         = optional(bool, true)
  }))
  default = {}

  validation {
    condition     = alltrue([for name, _ in var.webhook_endpoints : can(regex("^[a-z][a-z0-9-]{0,19}$", name)) && name != "default"])
    error_message = "Each webhook_endpoints name must be 1-20 lowercase letters, digits or - starting with a letter, and not default (the name of webhook_url's endpoint)."
  }
  validation {
    condition = alltrue(flatten([for e in values(var.webhook_endpoints) : [for t in e.event_types : contains([
      "gmail.message.received", "gmail.message.sent", "gmail.message.labels_changed", "gmail.message.deleted",
      "gmail.user.connected", "gmail.user.disconnected", "gmail.user.reauth_required", "gmail.endpoint.disabled",
    ], t)]]))
    error_message = "Each webhook_endpoints event type must be a gmail.message.* or gmail.user.* event type the functions publish."
  }
  validation {
    condition     = alltrue([for e in values(var.webhook_endpoints) : e.rate_per_second >= 0 && (e.app_ref == null || can(regex("^[^\"\\\\]{1,100}$", e.app_ref)))])
    error_message = "Each webhook_endpoints rate_per_second must be >= 0 and app_ref, when set, 1-100 characters without quotes or backslashes."
  }
  # Pub/Sub refuses filters over 256 bytes.
  validation {
    condition     = alltrue([for e in values(var.webhook_endpoints) : length(join(" OR ", [for t in e.event_types : "attributes.type = \"${t}\""])) + (e.app_ref == null ? 0 : length(e.app_ref) + 30) <= 250])
    error_message = "A webhook_endpoints filter (its event_types and app_ref) is longer than the 256 bytes Pub/Sub allows: list fewer types."
  }
}

variable "webhook_endpoint_urls" {
  description = "HTTPS URL of each webhook_endpoints entry, by name. Sensitive, since a path may carry the receiver's token."
  type        = map(string)
  default     = {}
  sensitive   = true

  validation {
    condition     = alltrue([for u in values(var.webhook_endpoint_urls) : can(regex("^https://[^/?#@\\s]+(/[^?#\\s]*)?$", u))])
    error_message = "Each webhook_endpoint_urls entry must be an https:// URL without user:password@, query string or fragment."
  }
  validation {
    condition     = nonsensitive(length(setsubtract(keys(var.webhook_endpoint_urls), keys(var.webhook_endpoints))) == 0 && length(setsubtract(keys(var.webhook_endpoints), keys(var.webhook_endpoint_urls))) == 0)
    error_message = "The webhook_endpoint_urls must have exactly one URL for each webhook_endpoints entry."
  }
}

variable "endpoint_disable_after" {
  description = "A webhook endpoint failing every delivery this long is disabled (ENDPOINT_DISABLE_AFTER, Go duration; 0s never): it gets nothing more, its events wait in its subscription, and gmail.endpoint.disabled is published, until POST /endpoints/NAME/enable on the accounts API."
  type        = string
  default     = "120h"

  validation {
    condition     = can(regex("^([0-9]+(ms|s|m|h))+$", var.endpoint_disable_after))
    error_message = "The endpoint_disable_after must be a Go duration such as 120h."
  }
}

variable "webhook_timeout" {
  description = "Time the webhook function waits for one delivery (Go duration)."
  type        = string
  default     = "15s"

  validation {
    condition     = can(regex("^([0-9]+(ms|s|m|h))+$", var.webhook_timeout))
    error_message = "The webhook_timeout must be a Go duration such as 15s."
  }
}

variable "webhook_retry_window" {
  description = "How long after publication an undeliverable event keeps being retried before it is dead-lettered (Go duration; at least 24h, under the 7 days the webhook subscription keeps events)."
  type        = string
  default     = "24h"

  validation {
    condition     = can(regex("^([0-9]+(ms|s|m|h))+$", var.webhook_retry_window))
    error_message = "The webhook_retry_window must be a Go duration such as 24h."
  }
}

variable "renew_schedule" {
  description = "Cron schedule of the renew function (watch renewal and reconciliation)."
  type        = string
  default     = "0 * * * *"

  validation {
    condition     = length(split(" ", trimspace(var.renew_schedule))) == 5
    error_message = "The renew_schedule must be a five-field cron expression such as \"0 * * * *\"."
  }
}

variable "renew_time_zone" {
  description = "Time zone of renew_schedule."
  type        = string
  default     = "Etc/UTC"
}

variable "renew_before" {
  description = "Renew a watch when it expires within this long (RENEW_BEFORE, Go duration). Gmail watches last 7 days."
  type        = string
  default     = "48h"

  validation {
    condition     = can(regex("^([0-9]+(ms|s|m|h))+$", var.renew_before))
    error_message = "The renew_before must be a Go duration such as 48h."
  }
}

variable "renew_every" {
  description = "Renew a watch last renewed longer ago than this (RENEW_EVERY, Go duration); Google recommends daily."
  type        = string
  default     = "24h"

  validation {
    condition     = can(regex("^([0-9]+(ms|s|m|h))+$", var.renew_every))
    error_message = "The renew_every must be a Go duration such as 24h."
  }
}

variable "reconcile_after" {
  description = "Sync a user whose last sync is older than this, in case notifications were dropped (RECONCILE_AFTER, Go duration)."
  type        = string
  default     = "1h"

  validation {
    condition     = can(regex("^([0-9]+(ms|s|m|h))+$", var.reconcile_after))
    error_message = "The reconcile_after must be a Go duration such as 1h."
  }
}

variable "gmail_quota_profile" {
  description = "The project's Gmail quota table (GMAIL_QUOTA_PROFILE): standard-2026 for projects created on or after 1 May 2026 (and every project from 1 April 2027: 6,000 units per user a minute, messages.get 20 units), legacy for projects that used the Gmail API between November 2025 and April 2026 (15,000, messages.get 5). The console's Gmail API quota page shows which."
  type        = string
  default     = "standard-2026"

  validation {
    condition     = contains(["standard-2026", "legacy"], var.gmail_quota_profile)
    error_message = "The gmail_quota_profile must be standard-2026 or legacy."
  }
}

variable "renew_fanout" {
  description = "How many ranges of the users' 16 shards each scheduled renew run hands out through the fan-out topic (RENEW_FANOUT), each run by its own renew invocation with that part of renew_quota_share. One invocation works through ~45,000 users in its 8-minute budget (32 at once, ~1.3 s each under Gmail's latency), so 16 take 1M users' hourly renewals and reconciles when the quota allows. Keep function_settings.renew.max_instances above it."
  type        = number
  default     = 16

  validation {
    condition     = var.renew_fanout >= 1 && var.renew_fanout <= 16 && floor(var.renew_fanout) == var.renew_fanout
    error_message = "The renew_fanout must be a whole number from 1 to 16 (the number of shards)."
  }
}

variable "renew_quota_share" {
  description = "The part of quota_units_per_minute the renew function may spend (RENEW_QUOTA_SHARE); the rest is left to notify, whose syncs users wait for. A quarter of 1,200,000 renews 3,000 watches a minute."
  type        = number
  default     = 0.25

  validation {
    condition     = var.renew_quota_share >= 0.01 && var.renew_quota_share <= 1
    error_message = "The renew_quota_share must be a number from 0.01 to 1."
  }
}

variable "quota_units_per_minute" {
  description = "The project's Gmail API quota in units per minute (QUOTA_UNITS_PER_MINUTE), of which renew spends renew_quota_share; Gmail's default project limit is 1,200,000, raise this only with the quota."
  type        = number
  default     = 1200000

  validation {
    condition     = var.quota_units_per_minute >= 100 && var.quota_units_per_minute <= 100000000 && floor(var.quota_units_per_minute) == var.quota_units_per_minute
    error_message = "The quota_units_per_minute must be a whole number from 100 to 100000000."
  }
}

variable "run_budget" {
  description = "Time one renew run may work before it stops and leaves the rest to the next run (RUN_BUDGET, Go duration). Keep it below the renew function timeout."
  type        = string
  default     = "8m"

  validation {
    condition     = can(regex("^([0-9]+(ms|s|m|h))+$", var.run_budget))
    error_message = "The run_budget must be a Go duration such as 8m."
  }
}

variable "reauth_stop_after" {
  description = "How long a user may stay in reauth_required before renew stops the user's Gmail watch (REAUTH_STOP_AFTER, Go duration)."
  type        = string
  default     = "24h"

  validation {
    condition     = can(regex("^([0-9]+(ms|s|m|h))+$", var.reauth_stop_after))
    error_message = "The reauth_stop_after must be a Go duration such as 24h."
  }
}

variable "function_settings" {
  description = "Per-function memory, timeout (seconds), instance limit, vCPU (cpu, null: the memory size's share) and requests one instance serves at once (concurrency). Event-triggered functions may run at most 540 s, HTTP ones 3600 s; a concurrency above 1 needs cpu of at least 1."
  type = map(object({
    memory        = string
    timeout       = number
    max_instances = number
    cpu           = optional(string)
    concurrency   = optional(number, 1)
  }))
  # Sized for 100,000 mailboxes at 50 messages per user per day, a daytime
  # peak of 3x the average: 5M messages a day, 58 a second on average, 174
  # at the peak.
  #
  # notify holds each push for the look after the push's second
  # (TRAIL_DELAY 1.2 s, about 1.3 s in all), waiting, not computing: at the
  # peak about 230 syncs are in flight. One request per instance made that
  # 230 instances, each billed for its waits. Measured on one notify process
  # (README, "Benchmarks": go run ./scripts/bench -only throughput
  # -concurrency N): 80 syncs in flight gave 58.9 messages a second, which
  # is 80 / 1.3 s, the slots and not the CPU being the limit; 250 gave 140
  # a second with 4.5 CPU seconds for 3,019 messages (1.5 ms each, a fifth
  # of a vCPU) and a peak RSS of 78 MiB, its p99 (3 s) the local Firestore
  # emulator's. So 250 requests per instance on 1 vCPU (the least Cloud
  # Run allows above one request) and 512M, which also holds the token
  # cache (one token source per user the instance has seen, estimated, not
  # measured, at 1-2 KB each: some 200 MiB once an instance has seen all
  # 100k): 2 instances at the 100k peak.
  # max_instances 20 serves about 2,800 messages a second, above what
  # Gmail's per-project quota lets one deployment fetch (1,200,000 units a
  # minute at 23 units a message alone in standard-2026: about 870 a
  # second, 650 after renew's quarter, the peak of some 375,000 users).
  #
  # consent and accounts answer people and admin tools, a request at a time
  # is plenty; renew is one run an hour; webhook delivers one event per
  # request and keeps its own sizing.
  default = {
    consent  = { memory = "256M", timeout = 60, max_instances = 10 }
    accounts = { memory = "256M", timeout = 300, max_instances = 10 }
    notify   = { memory = "512M", timeout = 300, max_instances = 20, cpu = "1", concurrency = 250 }
    renew    = { memory = "512M", timeout = 540, max_instances = 17 } # renew_fanout shard runs and the scheduled one
    webhook  = { memory = "256M", timeout = 120, max_instances = 50 }
  }

  validation {
    condition     = length(setsubtract(["consent", "accounts", "notify", "renew", "webhook"], keys(var.function_settings))) == 0
    error_message = "The function_settings must have an entry for each of consent, accounts, notify, renew and webhook."
  }

  validation {
    condition = alltrue([
      for name, s in var.function_settings :
      s.timeout >= 1 && s.timeout <= (contains(["notify", "webhook"], name) ? 540 : 3600) && s.max_instances >= 1 && can(regex("^[0-9]+(M|Mi|G|Gi)$", s.memory))
    ])
    error_message = "Each function needs memory like 256M, max_instances >= 1 and a timeout of 1-540 s (notify, webhook) or 1-3600 s (consent, accounts, renew)."
  }

  validation {
    condition = alltrue([
      for name, s in var.function_settings :
      s.concurrency >= 1 && s.concurrency <= 1000 && floor(s.concurrency) == s.concurrency &&
      (s.cpu == null || can(regex("^([0-9]+|0?\\.[0-9]+)$", s.cpu))) &&
      (s.concurrency == 1 || (s.cpu != null && try(tonumber(s.cpu) >= 1, false)))
    ])
    error_message = "Each function's concurrency must be a whole number from 1 to 1000, its cpu null or a number such as \"1\" or \"0.5\", and a concurrency above 1 needs a cpu of at least \"1\"."
  }
}

variable "alert_emails" {
  description = "Email addresses notified by the alert policies. Empty creates the policies without notification channels."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for e in var.alert_emails : can(regex("^[^@\\s]+@[^@\\s]+\\.[^@\\s]+$", e))])
    error_message = "Each alert_emails entry must be an email address."
  }
}

variable "builder_wait_seconds" {
  description = "Longest the apply waits for the build account's grants to take effect before the function builds (terraform/wait-for-builder.sh asks IAM as the builder until they have)."
  type        = number
  default     = 900

  validation {
    condition     = var.builder_wait_seconds >= 60 && var.builder_wait_seconds <= 3600 && floor(var.builder_wait_seconds) == var.builder_wait_seconds
    error_message = "The builder_wait_seconds must be a whole number from 60 to 3600."
  }
}

variable "deployer" {
  description = "IAM member running the apply (user:you@example.com or serviceAccount:...), given token creator on the build account so the apply can check its grants as it. scripts/deploy.sh sets it from gcloud's account. Empty: the deployer must already be able to impersonate the build account."
  type        = string
  default     = ""

  validation {
    condition     = var.deployer == "" || can(regex("^(user|serviceAccount):[^@\\s]+@[^@\\s]+$", var.deployer))
    error_message = "The deployer must be empty or user: or serviceAccount: followed by an address."
  }
}
