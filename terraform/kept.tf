# What a destroy must not take with it.
#
# Firestore is abandoned on destroy (firestore.tf), so the users outlive it;
# their records are keyed by secrets that must outlive it too: the user-key
# secret (a new one recomputes every user key, orphaning every record: a
# reconnecting user would get a second record, a second watch and duplicate
# events), the connect-link key (links the application already handed out)
# and the OAuth state key (flows in progress). Terraform does not manage
# these three: scripts/deploy.sh creates them when missing, before the
# apply, and only their IAM grants are here. prevent_destroy would keep them
# too, but it makes every `terraform destroy` fail instead of leaving them.
locals {
  kept_secrets = {
    state_key        = local.names.state_key_secret
    connect_link_key = local.names.connect_link_key_secret
    user_key         = local.names.user_key_secret
  }

  # Service agents the apply binds (iam.tf), created by scripts/deploy.sh
  # with `gcloud beta services identity create` before the apply: Eventarc
  # creates its agent "only when first needed" and not when the API is
  # enabled (Eventarc access control page), and the trigger fails until it
  # exists and holds its role (hashicorp/terraform-provider-google #25294;
  # in pulumi/pulumi-gcp #1290 creating the identity first fixed what a
  # 15-minute sleep did not). Pub/Sub's agent mints the OIDC tokens of every
  # push (the webhook subscription and Eventarc's own).
  service_identities = ["eventarc.googleapis.com", "pubsub.googleapis.com"]
  service_agents = {
    eventarc = "serviceAccount:service-${var.project_number}@gcp-sa-eventarc.iam.gserviceaccount.com"
    pubsub   = "serviceAccount:service-${var.project_number}@gcp-sa-pubsub.iam.gserviceaccount.com"
  }
}

# Deployments from before these secrets were kept had them in state: forget
# them without deleting them.
removed {
  from = google_secret_manager_secret.state_key
  lifecycle {
    destroy = false
  }
}

removed {
  from = google_secret_manager_secret.connect_link_key
  lifecycle {
    destroy = false
  }
}

removed {
  from = google_secret_manager_secret.user_key
  lifecycle {
    destroy = false
  }
}

output "kept_secrets" {
  description = "Secrets scripts/deploy.sh creates and no destroy deletes (the user key, connect-link key and OAuth state key)."
  value       = local.kept_secrets
}

output "service_identities" {
  description = "APIs whose service agents scripts/deploy.sh creates before the apply."
  value       = local.service_identities
}
