locals {
  source_root = var.source_dir != "" ? var.source_dir : "${path.module}/.."
  build_dir   = var.build_dir != "" ? var.build_dir : "${path.module}/.build"

  # Per-user refresh tokens live in secrets named by this prefix; the
  # functions create and read them, IAM conditions confine them to it.
  refresh_token_prefix = "gmail-refresh-"
  secret_name_prefix   = "projects/${var.project_number}/secrets/${local.refresh_token_prefix}"

  # Every name a second deployment in the same project could collide with
  # carries name_prefix unless set explicitly.
  names = {
    gmail_topic             = coalesce(var.gmail_topic_name, "${var.name_prefix}gmail-notifications")
    events_topic            = coalesce(var.events_topic_name, "${var.name_prefix}events")
    events_subscription     = var.events_subscription_name == null ? "${var.name_prefix}events-app" : var.events_subscription_name
    dead_letter_topic       = coalesce(var.dead_letter_topic_name, "${var.name_prefix}events-dead-letter")
    oauth_client_secret     = coalesce(var.oauth_client_secret_name, "${var.name_prefix}oauth-client-secret")
    state_key_secret        = coalesce(var.state_key_secret_name, "${var.name_prefix}consent-state-key")
    webhook_secret          = coalesce(var.webhook_secret_name, "${var.name_prefix}webhook-signing-secret")
    webhook_url_secret      = "${var.name_prefix}webhook-url"
    connect_link_key_secret = coalesce(var.connect_link_key_secret_name, "${var.name_prefix}connect-link-key")
    user_key_secret         = coalesce(var.user_key_secret_name, "${var.name_prefix}user-key-secret")
    # Custom role ids allow letters, digits, _ and . only.
    refresh_token_role = "${replace(var.name_prefix, "-", "_")}refreshTokenWriter"
  }

  gmail_topic = "projects/${var.project_id}/topics/${local.names.gmail_topic}"

  # Google-managed bucket Cloud Functions builds from (see iam.tf).
  gcf_sources_bucket = "gcf-v2-sources-${var.project_number}-${var.region}"

  # Cloud Functions serves every function at this predictable URL too, so the
  # consent function can know its own callback before it exists.
  consent_name = "${var.name_prefix}consent"
  public_url   = var.consent_public_url != "" ? var.consent_public_url : "https://${var.region}-${var.project_id}.cloudfunctions.net/${local.consent_name}"
  # The accounts API checks its callers' ID tokens for its own URL, the same
  # predictable one (Cloud Functions takes tokens for it, as for run.app).
  accounts_url = "https://${var.region}-${var.project_id}.cloudfunctions.net/${var.name_prefix}accounts"

  # webhook_url is sensitive (it may carry a token), but whether it is set is
  # not, and for_each refuses sensitive values.
  legacy_webhook = nonsensitive(var.webhook_url != "")

  # Every endpoint with the names of its subscription, secrets and
  # dead-letter topic; "default" (webhook_url) keeps the names the single
  # webhook had. The filter selects its event types and appRef (Pub/Sub
  # filter syntax: attributes.KEY = "VALUE", OR within parentheses).
  webhook_endpoints = {
    for name, e in merge(local.legacy_webhook ? { default = { event_types = [], app_ref = null, rate_per_second = 0, enabled = true } } : {}, var.webhook_endpoints) :
    name => merge(e, {
      subscription      = name == "default" ? "${var.name_prefix}webhook" : "${var.name_prefix}webhook-${name}"
      url_secret        = name == "default" ? local.names.webhook_url_secret : "${var.name_prefix}webhook-${name}-url"
      signing_secret    = name == "default" ? local.names.webhook_secret : "${var.name_prefix}webhook-${name}-signing-secret"
      dead_letter_topic = name == "default" ? local.names.dead_letter_topic : "${var.name_prefix}webhook-${name}-dead-letter"
      filter = join(" AND ", compact([
        length(e.event_types) == 0 ? "" : "(${join(" OR ", [for t in e.event_types : "attributes.type = \"${t}\""])})",
        e.app_ref == null ? "" : "attributes.appRef = \"${e.app_ref}\"",
      ]))
    })
  }
  webhook_enabled = length(local.webhook_endpoints) > 0

  common_env = {
    PROJECT_ID                = var.project_id
    GMAIL_TOPIC               = local.gmail_topic
    EVENTS_TOPIC              = local.names.events_topic
    GMAIL_SCOPE               = var.gmail_scope
    GMAIL_QUOTA_PROFILE       = var.gmail_quota_profile
    GMAIL_LABELS              = join(",", var.gmail_labels)
    GMAIL_LABEL_FILTER        = var.gmail_label_filter
    EVENT_TYPES               = join(",", var.event_types)
    MESSAGE_CONTENT           = var.message_content
    MESSAGE_CONTENT_MAX_BYTES = var.message_content_max_bytes
    OAUTH_CLIENT_ID           = var.oauth_client_id
    OAUTH_CLIENT_SECRET_NAME  = local.names.oauth_client_secret
    STATE_KEY_SECRET_NAME     = local.names.state_key_secret
    PUBLIC_URL                = local.public_url
  }

  # What differs between the functions. trigger_topic null means an HTTP function.
  functions = merge({
    # Each setting goes to every function that reads it (consent dates the
    # first renewal, notify the next reconcile); terraform/policy checks it.
    consent = {
      entry_point   = "Consent"
      ingress       = "ALLOW_ALL"
      trigger_topic = null
      env = {
        RENEW_BEFORE                 = var.renew_before
        RENEW_EVERY                  = var.renew_every
        RECONCILE_AFTER              = var.reconcile_after
        ALLOWED_ADDRESSES            = join(",", var.allowed_addresses)
        ALLOWED_DOMAINS              = join(",", var.allowed_domains)
        OPEN_ENROLLMENT              = tostring(var.open_enrollment)
        RETURN_ORIGINS               = join(",", var.return_origins)
        CONNECT_CONFIRM              = tostring(var.connect_confirm)
        CONNECT_RESULT_TTL           = var.connect_result_ttl
        CONNECT_LINK_KEY_SECRET_NAME = local.names.connect_link_key_secret
        USER_KEY_SECRET_NAME         = local.names.user_key_secret
        CONNECT_MODE                 = var.connect_mode # delegation: it refuses every route
      }
    }
    # The application's backend API (accounts.tf: who may call it).
    accounts = {
      entry_point   = "Accounts"
      ingress       = var.accounts_ingress
      trigger_topic = null
      env = {
        CONSENT_URL       = local.public_url
        ACCOUNTS_URL      = local.accounts_url
        ACCOUNTS_INVOKERS = join(",", [for m in var.accounts_invokers : split(":", m)[1]])
        RETURN_ORIGINS    = join(",", var.return_origins)
        CONNECT_CONFIRM   = tostring(var.connect_confirm)
        CONNECT_LINK_TTL  = var.connect_link_ttl
        RECONCILE_AFTER   = var.reconcile_after
        CONNECT_MODE      = var.connect_mode # delegation: it makes no links
        # Access tokens and resyncs of delegated users (delegation.tf).
        DELEGATION_SERVICE_ACCOUNT = local.delegated_account
      }
    }
    notify = {
      entry_point   = "Notify"
      ingress       = "ALLOW_INTERNAL_ONLY"
      trigger_topic = "projects/${var.project_id}/topics/${google_pubsub_topic.gmail.name}"
      env = {
        RECONCILE_AFTER            = var.reconcile_after
        CONNECT_MODE               = var.connect_mode
        DELEGATION_SERVICE_ACCOUNT = local.delegated_account
      }
    }
    renew = {
      entry_point   = "Renew"
      ingress       = "ALLOW_INTERNAL_ONLY"
      trigger_topic = null
      env = {
        RENEW_BEFORE           = var.renew_before
        RENEW_EVERY            = var.renew_every
        RECONCILE_AFTER        = var.reconcile_after
        QUOTA_UNITS_PER_MINUTE = tostring(var.quota_units_per_minute)
        RENEW_QUOTA_SHARE      = tostring(var.renew_quota_share)
        RENEW_FANOUT_TOPIC     = google_pubsub_topic.renew_fanout.name
        RENEW_FANOUT           = tostring(var.renew_fanout)
        RUN_BUDGET             = var.run_budget
        REAUTH_STOP_AFTER      = var.reauth_stop_after
        CONNECT_MODE           = var.connect_mode
        # Delegation mode (delegation.tf); empty values are left out.
        DELEGATION_SERVICE_ACCOUNT = local.delegated_account
        DELEGATION_DOMAIN          = var.delegation_domain
        DELEGATION_ADMIN           = var.delegation_admin
        DELEGATION_ORG_UNIT        = var.delegation_org_unit
        DELEGATION_GROUP           = var.delegation_group
        USER_KEY_SECRET_NAME       = local.delegation ? local.names.user_key_secret : ""
      }
    }
    }, local.webhook_enabled ? {
    # Fed by its own push subscription (pubsub.tf), not an Eventarc trigger:
    # Eventarc gives up on an event after 24 hours, so the function could not
    # retry for 24 hours and still dead-letter what never got through.
    webhook = {
      entry_point   = "Webhook"
      ingress       = "ALLOW_INTERNAL_ONLY"
      trigger_topic = null
      env = {
        # Each endpoint's URL, which may carry the receiver's token, is in
        # Secret Manager (secrets.tf), not in the function's environment.
        WEBHOOK_ENDPOINTS = jsonencode([for name, e in local.webhook_endpoints : {
          name            = name, subscription = e.subscription, urlSecret = e.url_secret, secret = e.signing_secret,
          deadLetterTopic = e.dead_letter_topic, enabled = e.enabled, eventTypes = e.event_types, appRef = e.app_ref == null ? "" : e.app_ref,
          # Each instance limits itself, so the endpoint's rate holds with every instance running.
          ratePerSecond = e.rate_per_second / var.function_settings["webhook"].max_instances
        }])
        WEBHOOK_TIMEOUT        = var.webhook_timeout
        WEBHOOK_RETRY_WINDOW   = var.webhook_retry_window
        ENDPOINT_DISABLE_AFTER = var.endpoint_disable_after
      }
    }
  } : {})
}

# Secret Manager IAM names secrets by project number, so a wrong
# project_number would make every gmail-refresh- condition silently false:
# users could connect, but notify and renew could never read their tokens.
# Plan and apply read the project and warn when the number differs (offline,
# the read fails and the check only warns that it could not run).
check "project_number" {
  data "google_project" "this" {
    project_id = var.project_id
  }

  assert {
    condition     = data.google_project.this.number == var.project_number
    error_message = "project_number ${var.project_number} is not the number of project ${var.project_id} (${data.google_project.this.number}): fix it in terraform.tfvars, or secret access conditions match no secret."
  }
}
