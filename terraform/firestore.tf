resource "google_firestore_database" "main" {
  name        = "(default)"
  location_id = var.firestore_location
  type        = "FIRESTORE_NATIVE"

  # Seven days of versions to read, export or clone from if a bad deploy or
  # an operator's mistake corrupts users' cursors.
  point_in_time_recovery_enablement = var.firestore_point_in_time_recovery ? "POINT_IN_TIME_RECOVERY_ENABLED" : "POINT_IN_TIME_RECOVERY_DISABLED"

  delete_protection_state = "DELETE_PROTECTION_ENABLED"
  deletion_policy         = "ABANDON"

  depends_on = [google_project_service.enabled]
}

# renew pages through users by status and a time: active users whose watch is
# due for renewal (renewAt) or whose mailbox is due for reconciliation
# (syncDueAt), and reauth_required users whose watch has not lapsed yet
# (watchExpiration). See shared/store.
#
# Index and field operations on one database conflict with each other (409
# "Please retry", hashicorp/terraform-provider-google #16329); the provider
# retries the 409 for fields (GoogleCloudPlatform/magic-modules #9329) but
# not for indexes. So nothing here runs in parallel: the four TTL policies
# one after the other, then the indexes one after the other (separate
# resources, since for_each instances are created at once).
resource "google_firestore_index" "users_by_renew_at" {
  database   = google_firestore_database.main.name
  collection = "users"

  fields {
    field_path = "status"
    order      = "ASCENDING"
  }
  fields {
    field_path = "renewAt"
    order      = "ASCENDING"
  }

  depends_on = [google_firestore_field.connect_result_ttl]
}

resource "google_firestore_index" "users_by_sync_due_at" {
  database   = google_firestore_database.main.name
  collection = "users"

  fields {
    field_path = "status"
    order      = "ASCENDING"
  }
  fields {
    field_path = "syncDueAt"
    order      = "ASCENDING"
  }

  depends_on = [google_firestore_index.users_by_renew_at]
}

resource "google_firestore_index" "users_by_watch_expiration" {
  database   = google_firestore_database.main.name
  collection = "users"

  fields {
    field_path = "status"
    order      = "ASCENDING"
  }
  fields {
    field_path = "watchExpiration"
    order      = "ASCENDING"
  }

  depends_on = [google_firestore_index.users_by_sync_due_at]
}

moved {
  from = google_firestore_index.users_by_status["renewAt"]
  to   = google_firestore_index.users_by_renew_at
}

moved {
  from = google_firestore_index.users_by_status["syncDueAt"]
  to   = google_firestore_index.users_by_sync_due_at
}

moved {
  from = google_firestore_index.users_by_status["watchExpiration"]
  to   = google_firestore_index.users_by_watch_expiration
}

# Announced-message markers (users/{user}/messages/{id}) expire by TTL. The
# field is never queried, so its single-field indexes are turned off.
resource "google_firestore_field" "message_marker_ttl" {
  database   = google_firestore_database.main.name
  collection = "messages"
  field      = "expireAt"

  ttl_config {}
  index_config {}
}

# Used OAuth state nonces (oauthStates/{hash}, shared/store UseState) are kept
# only to refuse a replayed state until it would have expired anyway; TTL
# deletes them after expireAt. Field operations on one database can conflict
# (409, hashicorp/terraform-provider-google #16329, retried by the provider
# since GoogleCloudPlatform/magic-modules #9329): the TTL policies are made
# one after the other (connect links' and results' in accounts.tf come last).
resource "google_firestore_field" "oauth_state_ttl" {
  database   = google_firestore_database.main.name
  collection = "oauthStates"
  field      = "expireAt"

  ttl_config {}
  index_config {}

  depends_on = [google_firestore_field.message_marker_ttl]
}

# Pushes naming an address no user has (strayPushes/{hash}, shared/store
# KeepStray) wait for a sync's getProfile to show whose mailbox took that
# address; after the week Gmail keeps history they say nothing, and TTL
# deletes them. Made after the indexes, as field and index operations on
# one database conflict.
resource "google_firestore_field" "stray_push_ttl" {
  database   = google_firestore_database.main.name
  collection = "strayPushes"
  field      = "expireAt"

  ttl_config {}
  index_config {}

  depends_on = [google_firestore_index.users_by_watch_expiration]
}
