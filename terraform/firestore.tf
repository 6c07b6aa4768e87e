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

# renew pages through users by shard, status and a time: active users whose
# watch is due for renewal (renewAt) or whose mailbox is due for
# reconciliation (syncDueAt), reauth_required users whose watch has not
# lapsed yet (watchExpiration), owed connected events (notice.at) and
# unredeemed connections (pendingUntil); and renew looks for recent stray
# pushes (strayPushes.at). Each of these times is written close to "now" by
# every user, and Firestore caps writes to a collection with such an indexed
# field at about 500 a second per index range: every index on a time field
# starts with the hashed shard (shared/store ShardOf, ShardCount), which
# lifts the cap to 500 a second per shard
# (https://cloud.google.com/firestore/native/docs/solutions/shard-timestamp).
# shared/store Indexes lists them; terraform/policy holds this file to it.
#
# Index and field operations on one database conflict with each other (409
# "Please retry", hashicorp/terraform-provider-google #16329, and #14997 for
# several exemptions of one collection); the provider retries the 409 for
# fields (GoogleCloudPlatform/magic-modules #9329) but not for indexes. So
# nothing here runs in parallel: the TTL policies one after the other, then
# the indexes, then the exemptions (separate resources, since for_each
# instances are created at once).
#
# Replacing the indexes of an existing deployment: apply this first (the new
# renew needs them, the old one stops finding users while they build), then
# give existing records their shard with `go run ./scripts/migrate-shards`
# before the next renew run; every write gives a record its shard too.
resource "google_firestore_index" "users_by_renew_at" {
  database   = google_firestore_database.main.name
  collection = "users"

  fields {
    field_path = "shard"
    order      = "ASCENDING"
  }
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
    field_path = "shard"
    order      = "ASCENDING"
  }
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
    field_path = "shard"
    order      = "ASCENDING"
  }
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

resource "google_firestore_index" "users_by_notice_at" {
  database   = google_firestore_database.main.name
  collection = "users"

  fields {
    field_path = "shard"
    order      = "ASCENDING"
  }
  fields {
    field_path = "notice.at"
    order      = "ASCENDING"
  }

  depends_on = [google_firestore_index.users_by_watch_expiration]
}

resource "google_firestore_index" "users_by_pending_until" {
  database   = google_firestore_database.main.name
  collection = "users"

  fields {
    field_path = "shard"
    order      = "ASCENDING"
  }
  fields {
    field_path = "pendingUntil"
    order      = "ASCENDING"
  }

  depends_on = [google_firestore_index.users_by_notice_at]
}

resource "google_firestore_index" "strays_by_at" {
  database   = google_firestore_database.main.name
  collection = "strayPushes"

  fields {
    field_path = "shard"
    order      = "ASCENDING"
  }
  fields {
    field_path = "at"
    order      = "ASCENDING"
  }

  depends_on = [google_firestore_index.users_by_pending_until]
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

  depends_on = [google_firestore_index.strays_by_at]
}

# Single-field index exemptions: every field no query filters or orders on
# alone. Firestore indexes every field of every document by default; each
# index entry is a write per document write, and a time written near now
# (updatedAt, lastSyncAt, lease.until...) would cap the collection's writes
# at about 500 a second even unqueried. A map's exemption covers its
# subfields (lease, notice, catchUp). The fields the composite indexes above
# use are exempted too: a composite index does not need them. Kept indexed:
# users' status, delegated, appRef and email (queried by equality alone),
# and the TTL fields above (exempted there). One operation at a time, after
# the last TTL policy; Firestore allows 200 single-field configurations a
# database (https://cloud.google.com/firestore/quotas#indexes).

resource "google_firestore_field" "users_shard_unindexed" {
  database   = google_firestore_database.main.name
  collection = "users"
  field      = "shard"

  index_config {}

  depends_on = [google_firestore_field.stray_push_ttl]
}

resource "google_firestore_field" "users_sub_unindexed" {
  database   = google_firestore_database.main.name
  collection = "users"
  field      = "sub"

  index_config {}

  depends_on = [google_firestore_field.users_shard_unindexed]
}

resource "google_firestore_field" "users_cursor_unindexed" {
  database   = google_firestore_database.main.name
  collection = "users"
  field      = "cursor"

  index_config {}

  depends_on = [google_firestore_field.users_sub_unindexed]
}

resource "google_firestore_field" "users_pending_history_id_unindexed" {
  database   = google_firestore_database.main.name
  collection = "users"
  field      = "pendingHistoryId"

  index_config {}

  depends_on = [google_firestore_field.users_cursor_unindexed]
}

resource "google_firestore_field" "users_labels_unindexed" {
  database   = google_firestore_database.main.name
  collection = "users"
  field      = "labels"

  index_config {}

  depends_on = [google_firestore_field.users_pending_history_id_unindexed]
}

resource "google_firestore_field" "users_label_filter_unindexed" {
  database   = google_firestore_database.main.name
  collection = "users"
  field      = "labelFilter"

  index_config {}

  depends_on = [google_firestore_field.users_labels_unindexed]
}

resource "google_firestore_field" "users_watch_expiration_unindexed" {
  database   = google_firestore_database.main.name
  collection = "users"
  field      = "watchExpiration"

  index_config {}

  depends_on = [google_firestore_field.users_label_filter_unindexed]
}

resource "google_firestore_field" "users_renew_at_unindexed" {
  database   = google_firestore_database.main.name
  collection = "users"
  field      = "renewAt"

  index_config {}

  depends_on = [google_firestore_field.users_watch_expiration_unindexed]
}

resource "google_firestore_field" "users_sync_due_at_unindexed" {
  database   = google_firestore_database.main.name
  collection = "users"
  field      = "syncDueAt"

  index_config {}

  depends_on = [google_firestore_field.users_renew_at_unindexed]
}

resource "google_firestore_field" "users_last_notification_at_unindexed" {
  database   = google_firestore_database.main.name
  collection = "users"
  field      = "lastNotificationAt"

  index_config {}

  depends_on = [google_firestore_field.users_sync_due_at_unindexed]
}

resource "google_firestore_field" "users_last_sync_at_unindexed" {
  database   = google_firestore_database.main.name
  collection = "users"
  field      = "lastSyncAt"

  index_config {}

  depends_on = [google_firestore_field.users_last_notification_at_unindexed]
}

resource "google_firestore_field" "users_last_renew_at_unindexed" {
  database   = google_firestore_database.main.name
  collection = "users"
  field      = "lastRenewAt"

  index_config {}

  depends_on = [google_firestore_field.users_last_sync_at_unindexed]
}

resource "google_firestore_field" "users_connected_at_unindexed" {
  database   = google_firestore_database.main.name
  collection = "users"
  field      = "connectedAt"

  index_config {}

  depends_on = [google_firestore_field.users_last_renew_at_unindexed]
}

resource "google_firestore_field" "users_active_since_unindexed" {
  database   = google_firestore_database.main.name
  collection = "users"
  field      = "activeSince"

  index_config {}

  depends_on = [google_firestore_field.users_connected_at_unindexed]
}

resource "google_firestore_field" "users_reauth_since_unindexed" {
  database   = google_firestore_database.main.name
  collection = "users"
  field      = "reauthSince"

  index_config {}

  depends_on = [google_firestore_field.users_active_since_unindexed]
}

resource "google_firestore_field" "users_updated_at_unindexed" {
  database   = google_firestore_database.main.name
  collection = "users"
  field      = "updatedAt"

  index_config {}

  depends_on = [google_firestore_field.users_reauth_since_unindexed]
}

resource "google_firestore_field" "users_lease_unindexed" {
  database   = google_firestore_database.main.name
  collection = "users"
  field      = "lease"

  index_config {}

  depends_on = [google_firestore_field.users_updated_at_unindexed]
}

resource "google_firestore_field" "users_left_at_unindexed" {
  database   = google_firestore_database.main.name
  collection = "users"
  field      = "leftAt"

  index_config {}

  depends_on = [google_firestore_field.users_lease_unindexed]
}

resource "google_firestore_field" "users_refusals_unindexed" {
  database   = google_firestore_database.main.name
  collection = "users"
  field      = "refusals"

  index_config {}

  depends_on = [google_firestore_field.users_left_at_unindexed]
}

resource "google_firestore_field" "users_refused_since_unindexed" {
  database   = google_firestore_database.main.name
  collection = "users"
  field      = "refusedSince"

  index_config {}

  depends_on = [google_firestore_field.users_refusals_unindexed]
}

resource "google_firestore_field" "users_opted_out_unindexed" {
  database   = google_firestore_database.main.name
  collection = "users"
  field      = "optedOut"

  index_config {}

  depends_on = [google_firestore_field.users_refused_since_unindexed]
}

resource "google_firestore_field" "users_moved_to_unindexed" {
  database   = google_firestore_database.main.name
  collection = "users"
  field      = "movedTo"

  index_config {}

  depends_on = [google_firestore_field.users_opted_out_unindexed]
}

resource "google_firestore_field" "users_notice_unindexed" {
  database   = google_firestore_database.main.name
  collection = "users"
  field      = "notice"

  index_config {}

  depends_on = [google_firestore_field.users_moved_to_unindexed]
}

resource "google_firestore_field" "users_catch_up_unindexed" {
  database   = google_firestore_database.main.name
  collection = "users"
  field      = "catchUp"

  index_config {}

  depends_on = [google_firestore_field.users_notice_unindexed]
}

resource "google_firestore_field" "users_pending_result_unindexed" {
  database   = google_firestore_database.main.name
  collection = "users"
  field      = "pendingResult"

  index_config {}

  depends_on = [google_firestore_field.users_catch_up_unindexed]
}

resource "google_firestore_field" "users_pending_until_unindexed" {
  database   = google_firestore_database.main.name
  collection = "users"
  field      = "pendingUntil"

  index_config {}

  depends_on = [google_firestore_field.users_pending_result_unindexed]
}

# When the disconnected event a disconnect still owes was made
# (shared/lifecycle): written near now, never queried.
resource "google_firestore_field" "users_farewell_unindexed" {
  database   = google_firestore_database.main.name
  collection = "users"
  field      = "farewell"

  index_config {}

  depends_on = [google_firestore_field.users_pending_until_unindexed]
}

resource "google_firestore_field" "messages_type_unindexed" {
  database   = google_firestore_database.main.name
  collection = "messages"
  field      = "type"

  index_config {}

  depends_on = [google_firestore_field.users_farewell_unindexed]
}

resource "google_firestore_field" "messages_message_id_unindexed" {
  database   = google_firestore_database.main.name
  collection = "messages"
  field      = "messageId"

  index_config {}

  depends_on = [google_firestore_field.messages_type_unindexed]
}

resource "google_firestore_field" "messages_event_id_unindexed" {
  database   = google_firestore_database.main.name
  collection = "messages"
  field      = "eventId"

  index_config {}

  depends_on = [google_firestore_field.messages_message_id_unindexed]
}

resource "google_firestore_field" "messages_history_id_unindexed" {
  database   = google_firestore_database.main.name
  collection = "messages"
  field      = "historyId"

  index_config {}

  depends_on = [google_firestore_field.messages_event_id_unindexed]
}

resource "google_firestore_field" "messages_announced_at_unindexed" {
  database   = google_firestore_database.main.name
  collection = "messages"
  field      = "announcedAt"

  index_config {}

  depends_on = [google_firestore_field.messages_history_id_unindexed]
}

resource "google_firestore_field" "stray_pushes_history_id_unindexed" {
  database   = google_firestore_database.main.name
  collection = "strayPushes"
  field      = "historyId"

  index_config {}

  depends_on = [google_firestore_field.messages_announced_at_unindexed]
}

resource "google_firestore_field" "stray_pushes_at_unindexed" {
  database   = google_firestore_database.main.name
  collection = "strayPushes"
  field      = "at"

  index_config {}

  depends_on = [google_firestore_field.stray_pushes_history_id_unindexed]
}

resource "google_firestore_field" "stray_pushes_shard_unindexed" {
  database   = google_firestore_database.main.name
  collection = "strayPushes"
  field      = "shard"

  index_config {}

  depends_on = [google_firestore_field.stray_pushes_at_unindexed]
}

resource "google_firestore_field" "connect_links_app_ref_unindexed" {
  database   = google_firestore_database.main.name
  collection = "connectLinks"
  field      = "appRef"

  index_config {}

  depends_on = [google_firestore_field.stray_pushes_shard_unindexed]
}

resource "google_firestore_field" "connect_links_address_unindexed" {
  database   = google_firestore_database.main.name
  collection = "connectLinks"
  field      = "address"

  index_config {}

  depends_on = [google_firestore_field.connect_links_app_ref_unindexed]
}

resource "google_firestore_field" "connect_links_domain_unindexed" {
  database   = google_firestore_database.main.name
  collection = "connectLinks"
  field      = "domain"

  index_config {}

  depends_on = [google_firestore_field.connect_links_address_unindexed]
}

resource "google_firestore_field" "connect_links_success_url_unindexed" {
  database   = google_firestore_database.main.name
  collection = "connectLinks"
  field      = "successUrl"

  index_config {}

  depends_on = [google_firestore_field.connect_links_domain_unindexed]
}

resource "google_firestore_field" "connect_links_error_url_unindexed" {
  database   = google_firestore_database.main.name
  collection = "connectLinks"
  field      = "errorUrl"

  index_config {}

  depends_on = [google_firestore_field.connect_links_success_url_unindexed]
}

resource "google_firestore_field" "connect_links_move_unindexed" {
  database   = google_firestore_database.main.name
  collection = "connectLinks"
  field      = "move"

  index_config {}

  depends_on = [google_firestore_field.connect_links_error_url_unindexed]
}

resource "google_firestore_field" "connect_links_reconnect_unindexed" {
  database   = google_firestore_database.main.name
  collection = "connectLinks"
  field      = "reconnect"

  index_config {}

  depends_on = [google_firestore_field.connect_links_move_unindexed]
}

resource "google_firestore_field" "connect_links_signed_unindexed" {
  database   = google_firestore_database.main.name
  collection = "connectLinks"
  field      = "signed"

  index_config {}

  depends_on = [google_firestore_field.connect_links_reconnect_unindexed]
}

resource "google_firestore_field" "connect_links_expires_unindexed" {
  database   = google_firestore_database.main.name
  collection = "connectLinks"
  field      = "expires"

  index_config {}

  depends_on = [google_firestore_field.connect_links_signed_unindexed]
}

resource "google_firestore_field" "connect_links_created_at_unindexed" {
  database   = google_firestore_database.main.name
  collection = "connectLinks"
  field      = "createdAt"

  index_config {}

  depends_on = [google_firestore_field.connect_links_expires_unindexed]
}

resource "google_firestore_field" "connect_links_used_at_unindexed" {
  database   = google_firestore_database.main.name
  collection = "connectLinks"
  field      = "usedAt"

  index_config {}

  depends_on = [google_firestore_field.connect_links_created_at_unindexed]
}

resource "google_firestore_field" "connect_links_browser_unindexed" {
  database   = google_firestore_database.main.name
  collection = "connectLinks"
  field      = "browser"

  index_config {}

  depends_on = [google_firestore_field.connect_links_used_at_unindexed]
}

resource "google_firestore_field" "connect_links_caller_unindexed" {
  database   = google_firestore_database.main.name
  collection = "connectLinks"
  field      = "caller"

  index_config {}

  depends_on = [google_firestore_field.connect_links_browser_unindexed]
}

resource "google_firestore_field" "connect_results_user_unindexed" {
  database   = google_firestore_database.main.name
  collection = "connectResults"
  field      = "user"

  index_config {}

  depends_on = [google_firestore_field.connect_links_caller_unindexed]
}

resource "google_firestore_field" "connect_results_app_ref_unindexed" {
  database   = google_firestore_database.main.name
  collection = "connectResults"
  field      = "appRef"

  index_config {}

  depends_on = [google_firestore_field.connect_results_user_unindexed]
}

resource "google_firestore_field" "connect_results_move_unindexed" {
  database   = google_firestore_database.main.name
  collection = "connectResults"
  field      = "move"

  index_config {}

  depends_on = [google_firestore_field.connect_results_app_ref_unindexed]
}

resource "google_firestore_field" "connect_results_caller_unindexed" {
  database   = google_firestore_database.main.name
  collection = "connectResults"
  field      = "caller"

  index_config {}

  depends_on = [google_firestore_field.connect_results_move_unindexed]
}

resource "google_firestore_field" "connect_results_expires_unindexed" {
  database   = google_firestore_database.main.name
  collection = "connectResults"
  field      = "expires"

  index_config {}

  depends_on = [google_firestore_field.connect_results_caller_unindexed]
}

resource "google_firestore_field" "connect_results_created_at_unindexed" {
  database   = google_firestore_database.main.name
  collection = "connectResults"
  field      = "createdAt"

  index_config {}

  depends_on = [google_firestore_field.connect_results_expires_unindexed]
}

resource "google_firestore_field" "connect_results_redeemed_at_unindexed" {
  database   = google_firestore_database.main.name
  collection = "connectResults"
  field      = "redeemedAt"

  index_config {}

  depends_on = [google_firestore_field.connect_results_created_at_unindexed]
}

resource "google_firestore_field" "oauth_states_flow_unindexed" {
  database   = google_firestore_database.main.name
  collection = "oauthStates"
  field      = "flow"

  index_config {}

  depends_on = [google_firestore_field.connect_results_redeemed_at_unindexed]
}

resource "google_firestore_field" "oauth_states_used_at_unindexed" {
  database   = google_firestore_database.main.name
  collection = "oauthStates"
  field      = "usedAt"

  index_config {}

  depends_on = [google_firestore_field.oauth_states_flow_unindexed]
}
