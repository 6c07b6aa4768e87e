output "consent_url" {
  description = "Page a user opens to connect their Gmail account."
  value       = "${local.public_url}/connect"
}

output "oauth_redirect_uri" {
  description = "Authorized redirect URI to register on the OAuth web client."
  value       = "${local.public_url}/oauth2/callback"
}

output "public_url" {
  description = "Base URL of the consent function (PUBLIC_URL)."
  value       = local.public_url
}

output "gmail_topic" {
  description = "Full name of the topic Gmail publishes to (GMAIL_TOPIC)."
  value       = google_pubsub_topic.gmail.id
}

output "events_topic" {
  description = "Full name of the output events topic."
  value       = google_pubsub_topic.events.id
}

output "events_subscription" {
  description = "Pull subscription on the output topic for the application (null when not created)."
  value       = one(google_pubsub_subscription.events[*].id)
}

output "dead_letter_topic" {
  description = "Full name of the topic that holds undeliverable webhook events."
  value       = google_pubsub_topic.dead_letter.id
}

output "dead_letter_subscription" {
  description = "Subscription that keeps dead-lettered events for replay."
  value       = google_pubsub_subscription.dead_letter.id
}

output "service_accounts" {
  description = "Service account email of each function, the scheduler and the build."
  value = merge(
    { for name, sa in google_service_account.function : name => sa.email },
    { scheduler = google_service_account.scheduler.email, builder = google_service_account.builder.email },
  )
}

output "secrets" {
  description = "Secret ids whose values scripts/set-secrets.sh adds."
  value = {
    oauth_client_secret = google_secret_manager_secret.oauth_client.secret_id
    state_key           = local.kept_secrets.state_key
    webhook_secret      = google_secret_manager_secret.webhook.secret_id
  }
}

output "function_uris" {
  description = "Cloud Run URI of each function."
  value       = { for name, f in google_cloudfunctions2_function.function : name => f.service_config[0].uri }
}

output "set_secrets_command" {
  description = "Command that adds the secret values to this deployment's secrets (run it from the repository root)."
  value       = "OAUTH_CLIENT_SECRET_NAME=${google_secret_manager_secret.oauth_client.secret_id} STATE_KEY_SECRET_NAME=${local.kept_secrets.state_key} WEBHOOK_SECRET_NAME=${google_secret_manager_secret.webhook.secret_id} CONNECT_LINK_KEY_SECRET_NAME=${local.kept_secrets.connect_link_key} USER_KEY_SECRET_NAME=${local.kept_secrets.user_key} WEBHOOK_ENDPOINT_SECRET_NAMES='${join(" ", [for name, e in local.webhook_endpoints : e.signing_secret if name != "default"])}' scripts/set-secrets.sh --project ${var.project_id}"
}

output "webhook_endpoints" {
  description = "Each webhook endpoint's subscription, signing secret (its whsec_ keys are added by scripts/set-secrets.sh --webhook-endpoint NAME) and dead-letter subscription (scripts/replay -endpoint NAME)."
  value = { for name, e in local.webhook_endpoints : name => {
    subscription             = google_pubsub_subscription.webhook[name].id
    signing_secret           = e.signing_secret
    dead_letter_subscription = name == "default" ? google_pubsub_subscription.dead_letter.id : google_pubsub_subscription.webhook_dead_letter[name].id
  } }
}
