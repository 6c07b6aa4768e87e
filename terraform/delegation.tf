# Delegation mode: a Google Workspace admin grants domain-wide delegation to
# one service account of this deployment, and notify, renew and accounts act
# for the domain's users through it with no key. The account has no role and
# no key; those three hold roles/iam.serviceAccountTokenCreator on it
# alone, which lets IAM Credentials signJwt sign their assertions with its
# Google-managed key. The outputs say what the admin enters in the Admin
# console.

variable "connect_mode" {
  description = "How mailboxes connect: consent (each user through the consent page), delegation (a Workspace domain's mailboxes through domain-wide delegation) or both."
  type        = string
  default     = "consent"

  validation {
    condition     = contains(["consent", "delegation", "both"], var.connect_mode)
    error_message = "The connect_mode must be consent, delegation or both."
  }
}

variable "delegation_domain" {
  description = "With delegation: the Google Workspace domain whose mailboxes are watched, e.g. example.com."
  type        = string
  default     = ""

  validation {
    condition     = var.delegation_domain == "" || can(regex("^[a-z0-9]([a-z0-9-]*[a-z0-9])?(\\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)+$", var.delegation_domain))
    error_message = "The delegation_domain must be a lower-case domain name such as example.com."
  }
}

variable "delegation_admin" {
  description = "With delegation: an admin of the domain whom the directory listing acts as, with a read-only scope."
  type        = string
  default     = ""

  validation {
    condition     = var.delegation_admin == "" || can(regex("^[^@\\s]+@[a-z0-9.-]+$", var.delegation_admin))
    error_message = "The delegation_admin must be an address such as admin@example.com."
  }
}

variable "delegation_org_unit" {
  description = "With delegation: watch only this org unit and those under it, e.g. /Support. Empty: every user of the domain (or of delegation_group)."
  type        = string
  default     = ""

  validation {
    condition     = var.delegation_org_unit == "" || can(regex("^/[^'\"]*$", var.delegation_org_unit))
    error_message = "The delegation_org_unit must be an org unit path starting with /, such as /Support."
  }
}

variable "delegation_group" {
  description = "With delegation: watch only the members of this Google group, e.g. support@example.com. Not with delegation_org_unit."
  type        = string
  default     = ""

  validation {
    condition     = var.delegation_group == "" || can(regex("^[^@\\s]+@[a-z0-9.-]+$", var.delegation_group))
    error_message = "The delegation_group must be a group address such as support@example.com."
  }
}

locals {
  delegation = var.connect_mode != "consent"

  # The one read-only directory scope the listing needs.
  directory_scope = var.delegation_group != "" ? "https://www.googleapis.com/auth/admin.directory.group.member.readonly" : "https://www.googleapis.com/auth/admin.directory.user.readonly"

  # Spelt out rather than read from the account, so that the environment
  # and the IAM binding are known at plan time (terraform/policy needs them).
  delegated_account = local.delegation ? "${var.name_prefix}mailboxes@${var.project_id}.iam.gserviceaccount.com" : ""
}

resource "google_service_account" "mailboxes" {
  count = local.delegation ? 1 : 0

  account_id   = "${var.name_prefix}mailboxes"
  display_name = "gmailwatch Workspace domain-wide delegation"
  description  = "Delegated to by the Workspace admin; holds no role and no key. Notify and renew sign as it."
  depends_on   = [google_project_service.enabled]

  lifecycle {
    precondition {
      condition     = var.delegation_domain != "" && var.delegation_admin != ""
      error_message = "Delegation mode needs delegation_domain and delegation_admin."
    }
    precondition {
      condition     = var.delegation_org_unit == "" || var.delegation_group == ""
      error_message = "Set delegation_org_unit or delegation_group, not both."
    }
    precondition {
      condition     = endswith(var.delegation_admin, "@${var.delegation_domain}") && (var.delegation_group == "" || endswith(var.delegation_group, "@${var.delegation_domain}"))
      error_message = "delegation_admin and delegation_group must be addresses of delegation_domain."
    }
  }
}

# signJwt on the delegated account, for the functions that act for
# delegated users: notify and renew, and accounts (their access tokens and
# resyncs).
resource "google_service_account_iam_member" "mailboxes_token_creator" {
  for_each = local.delegation ? toset(["accounts", "notify", "renew"]) : toset([])

  service_account_id = "projects/${var.project_id}/serviceAccounts/${local.delegated_account}"
  role               = "roles/iam.serviceAccountTokenCreator"
  member             = google_service_account.function[each.key].member

  depends_on = [google_service_account.mailboxes]
}

# Renew keys the users it connects as consent does (a keyed hash of
# Google's account id), so it reads the user-key secret.
resource "google_secret_manager_secret_iam_member" "user_key_renew_accessor" {
  count = local.delegation ? 1 : 0

  secret_id = local.kept_secrets.user_key
  role      = "roles/secretmanager.secretAccessor"
  member    = google_service_account.function["renew"].member
}

output "delegation_client_id" {
  description = "With delegation: the client id to enter in the Admin console (Security > Access and data control > API controls > Manage Domain Wide Delegation > Add new)."
  value       = local.delegation ? google_service_account.mailboxes[0].unique_id : null
}

output "delegation_scopes" {
  description = "With delegation: the OAuth scopes to enter beside the client id, comma-separated as the Admin console takes them."
  value       = local.delegation ? join(",", [var.gmail_scope, local.directory_scope]) : null
}

output "delegation_service_account" {
  description = "With delegation: the service account delegated to (DELEGATION_SERVICE_ACCOUNT)."
  value       = local.delegation ? google_service_account.mailboxes[0].email : null
}
