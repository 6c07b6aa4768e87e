# Embedding in an application: the accounts function (the backend API),
# who may call it, who may connect, and the two secrets it brings. The
# function and both functions' settings are entries of local.functions
# (main.tf); this file holds the rest.

variable "accounts_invokers" {
  description = "IAM members that may call the accounts API with a Google identity token, e.g. [\"serviceAccount:backend@my-app.iam.gserviceaccount.com\"]: each gets run.invoker, and the function checks the token's address against the list (ACCOUNTS_INVOKERS). Empty: nobody can call it."
  type        = list(string)
  default     = []

  validation {
    condition = alltrue([
      for m in var.accounts_invokers : can(regex("^(serviceAccount|user):[^@\\s]+@[^@\\s]+$", m))
    ])
    error_message = "Each accounts_invokers entry must be serviceAccount: or user: followed by an address; allUsers, allAuthenticatedUsers and domain: are refused, so the API stays private, and so is group:, since an ID token names its account, not the account's groups, and the function checks that name."
  }
}

variable "accounts_ingress" {
  description = "Network ingress of the accounts API: ALLOW_INTERNAL_ONLY (callers in the project's VPC or Google Cloud services) or ALLOW_ALL (callers anywhere, still only accounts_invokers with an identity token)."
  type        = string
  default     = "ALLOW_INTERNAL_ONLY"

  validation {
    condition     = contains(["ALLOW_INTERNAL_ONLY", "ALLOW_ALL"], var.accounts_ingress)
    error_message = "The accounts_ingress must be ALLOW_INTERNAL_ONLY or ALLOW_ALL."
  }
}

variable "return_origins" {
  description = "Origins (https://app.example.com) a connect link's success and error URLs may be on."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for o in var.return_origins : can(regex("^https://[a-z0-9.-]+(:[0-9]+)?$", o))])
    error_message = "Each return_origins entry must be an https origin without a path, like https://app.example.com."
  }
}

variable "allowed_addresses" {
  description = "Addresses that may connect on the plain consent URL, without a connect link."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for a in var.allowed_addresses : can(regex("^[^@\\s,]+@[^@\\s,]+\\.[^@\\s,]+$", a))])
    error_message = "Each allowed_addresses entry must be an email address."
  }
}

variable "allowed_domains" {
  description = "Google Workspace domains whose users may connect on the plain consent URL (matched on the ID token's verified hd claim)."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for d in var.allowed_domains : can(regex("^([a-z0-9-]+\\.)+[a-z]{2,63}$", d))])
    error_message = "Each allowed_domains entry must be a lower-case domain name like example.com."
  }
}

variable "open_enrollment" {
  description = "Let any Google account connect on the plain consent URL. Off by default: without a link, only the allowlists admit."
  type        = bool
  default     = false
}

variable "connect_link_ttl" {
  description = "Default life of a connect link (Go duration, at most 24h)."
  type        = string
  default     = "15m"

  validation {
    condition     = can(regex("^[0-9]+(s|m|h)$", var.connect_link_ttl))
    error_message = "The connect_link_ttl must be a duration like 30m or 2h."
  }
}

variable "connect_confirm" {
  description = "A link's connection waits until the application's backend redeems the one-time result code (POST /connect-results). false restores connections that complete for whoever opens the link: only for deployments that need it."
  type        = bool
  default     = true
}

variable "connect_result_ttl" {
  description = "How long a link's result code waits for its redeem before the connection is withdrawn (Go duration, 1m to 1h)."
  type        = string
  default     = "10m"

  validation {
    condition     = can(regex("^[0-9]+(s|m|h)$", var.connect_result_ttl))
    error_message = "The connect_result_ttl must be a duration like 10m."
  }
}

variable "connect_link_key_secret_name" {
  description = "Secret Manager id of the key of connect links an application's backend signs itself. Null means <name_prefix>connect-link-key."
  type        = string
  default     = null

  validation {
    condition     = var.connect_link_key_secret_name == null || (can(regex("^[A-Za-z0-9_-]{1,255}$", var.connect_link_key_secret_name)) && !can(regex("^gmail-refresh-", var.connect_link_key_secret_name)))
    error_message = "The connect_link_key_secret_name must be a secret id (letters, digits, - and _) that does not start with gmail-refresh-."
  }
}

variable "user_key_secret_name" {
  description = "Secret Manager id of the secret of the keyed hash that turns Google's account id into a user key. Never rotate it. Null means <name_prefix>user-key-secret."
  type        = string
  default     = null

  validation {
    condition     = var.user_key_secret_name == null || (can(regex("^[A-Za-z0-9_-]{1,255}$", var.user_key_secret_name)) && !can(regex("^gmail-refresh-", var.user_key_secret_name)))
    error_message = "The user_key_secret_name must be a secret id (letters, digits, - and _) that does not start with gmail-refresh-."
  }
}

# --- Secrets: the link key and the user-key secret are kept across a
# destroy (kept.tf); only their grants are here.
resource "google_secret_manager_secret_iam_member" "connect_link_key_accessor" {
  secret_id = local.kept_secrets.connect_link_key
  role      = "roles/secretmanager.secretAccessor"
  member    = google_service_account.function["consent"].member
}

resource "google_secret_manager_secret_iam_member" "user_key_accessor" {
  secret_id = local.kept_secrets.user_key
  role      = "roles/secretmanager.secretAccessor"
  member    = google_service_account.function["consent"].member
}

# --- Connect links outlive their use by a day (a use must be remembered while
# a late flow can still complete); then a TTL policy deletes them, as it does
# the message markers.
resource "google_firestore_field" "connect_link_ttl" {
  database   = google_firestore_database.main.name
  collection = "connectLinks"
  field      = "expireAt"

  ttl_config {}
  index_config {}

  depends_on = [google_firestore_field.oauth_state_ttl]
}

# Redeemed or lapsed connect results (connectResults/{hash}) are kept a day
# to tell a replay "already redeemed"; then TTL deletes them. Made after the
# links' policy, one field operation at a time.
resource "google_firestore_field" "connect_result_ttl" {
  database   = google_firestore_database.main.name
  collection = "connectResults"
  field      = "expireAt"

  ttl_config {}
  index_config {}

  depends_on = [google_firestore_field.connect_link_ttl]
}

# --- Who may call it: the listed members, and nobody else.
resource "google_cloud_run_v2_service_iam_member" "accounts_invoker" {
  for_each = toset(var.accounts_invokers)

  location = var.region
  name     = google_cloudfunctions2_function.function["accounts"].name
  role     = "roles/run.invoker"
  member   = each.value
}

output "accounts_url" {
  description = "URL of the accounts API (the application's backend calls it with a Google identity token for this audience, the function's ACCOUNTS_URL)."
  value       = local.accounts_url
}
