# Every API the apply itself calls, and those the functions call at run time.
# cloudresourcemanager (project IAM, the project check) and serviceusage
# (enabling the rest) must already be on for Terraform to get this far on a
# fresh project: the README enables them with gcloud first; listing them here
# keeps them on. iamcredentials serves the signJwt calls of the functions'
# keyless domain-wide delegation; in delegation mode the Admin SDK serves
# the directory listing (delegation.tf).
resource "google_project_service" "enabled" {
  for_each = toset(concat([
    "artifactregistry.googleapis.com",
    "cloudbuild.googleapis.com",
    "cloudfunctions.googleapis.com",
    "cloudresourcemanager.googleapis.com",
    "cloudscheduler.googleapis.com",
    "eventarc.googleapis.com",
    "firestore.googleapis.com",
    "gmail.googleapis.com",
    "iam.googleapis.com",
    "iamcredentials.googleapis.com",
    "logging.googleapis.com",
    "monitoring.googleapis.com",
    "pubsub.googleapis.com",
    "run.googleapis.com",
    "secretmanager.googleapis.com",
    "serviceusage.googleapis.com",
    "storage.googleapis.com",
  ], local.delegation ? ["admin.googleapis.com"] : []))

  service = each.key

  # Other workloads in the project may use these APIs too.
  disable_on_destroy         = false
  disable_dependent_services = false
}
