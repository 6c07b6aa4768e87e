resource "google_firestore_database" "main" {
  name        = "(default)"
  location_id = var.firestore_location
  type        = "FIRESTORE_NATIVE"

  delete_protection_state = "DELETE_PROTECTION_ENABLED"
  deletion_policy         = "ABANDON"

  depends_on = [google_project_service.enabled]
}

# renew pages through users by status and a time: active users whose watch is
# due for renewal (renewAt) or whose mailbox is due for reconciliation
# (syncDueAt), and reauth_required users whose watch has not lapsed yet
# (watchExpiration). See shared/store.
resource "google_firestore_index" "users_by_status" {
  for_each = toset(["renewAt", "syncDueAt", "watchExpiration"])

  database   = google_firestore_database.main.name
  collection = "users"

  fields {
    field_path = "status"
    order      = "ASCENDING"
  }

  fields {
    field_path = each.key
    order      = "ASCENDING"
  }
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
