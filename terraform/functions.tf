# Each upload holds go.mod, go.sum, the function's package, shared/ and a
# generated root package (function.go): the Go buildpack compiles only the
# root package of the upload, which must import the framework's functions
# package. Test files and testdata stay out.
locals {
  module_path = "github.com/gmailwatch/gmailwatch"

  shared_files = [
    for f in fileset(local.source_root, "shared/**") : f
    if !endswith(f, "_test.go") && !strcontains("/${f}", "/testdata/")
  ]

  source_files = {
    for name in keys(local.functions) : name => concat(
      ["go.mod", "go.sum"],
      [
        for f in fileset(local.source_root, "functions/${name}/**") : f
        if !endswith(f, "_test.go") && !strcontains("/${f}", "/testdata/")
      ],
      local.shared_files,
    )
  }
}

resource "google_storage_bucket" "source" {
  name     = "${var.project_id}-${var.name_prefix}source"
  location = var.region

  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  force_destroy               = true

  depends_on = [google_project_service.enabled]
}

resource "google_artifact_registry_repository" "functions" {
  location      = var.region
  repository_id = "${var.name_prefix}functions"
  format        = "DOCKER"
  description   = "Images of the gmailwatch functions."

  # Every deploy pushes a new image per function, and nothing else removes
  # them: keep the newest few of each function (a rollback needs the
  # previous one), delete the rest after 30 days. KEEP wins over DELETE.
  cleanup_policy_dry_run = false
  cleanup_policies {
    id     = "delete-old"
    action = "DELETE"
    condition {
      older_than = "2592000s"
    }
  }
  cleanup_policies {
    id     = "keep-recent"
    action = "KEEP"
    most_recent_versions {
      keep_count = 3
    }
  }

  depends_on = [google_project_service.enabled]
}

data "archive_file" "source" {
  for_each = local.functions

  type        = "zip"
  output_path = "${local.build_dir}/${each.key}.zip"

  dynamic "source" {
    for_each = local.source_files[each.key]
    content {
      filename = source.value
      content  = file("${local.source_root}/${source.value}")
    }
  }

  source {
    filename = "function.go"
    content  = templatefile("${path.module}/function.go.tftpl", { function_package = "${local.module_path}/functions/${each.key}" })
  }
}

# The object name carries the zip's hash, so changed code is a new object
# and Terraform redeploys the function.
resource "google_storage_bucket_object" "source" {
  for_each = local.functions

  bucket = google_storage_bucket.source.name
  name   = "${each.key}-${data.archive_file.source[each.key].output_md5}.zip"
  source = data.archive_file.source[each.key].output_path
}

resource "google_cloudfunctions2_function" "function" {
  for_each = local.functions

  name     = "${var.name_prefix}${each.key}"
  location = var.region

  build_config {
    runtime           = var.runtime
    entry_point       = each.value.entry_point
    service_account   = google_service_account.builder.id
    docker_repository = google_artifact_registry_repository.functions.id

    source {
      storage_source {
        bucket = google_storage_bucket.source.name
        object = google_storage_bucket_object.source[each.key].name
      }
    }
  }

  service_config {
    available_memory   = var.function_settings[each.key].memory
    timeout_seconds    = var.function_settings[each.key].timeout
    max_instance_count = var.function_settings[each.key].max_instances
    # Null CPU is the memory size's share; more than one request at a time
    # needs a whole vCPU (Cloud Run's CPU limits page).
    available_cpu                    = var.function_settings[each.key].cpu
    max_instance_request_concurrency = var.function_settings[each.key].concurrency
    min_instance_count               = 0
    service_account_email            = google_service_account.function[each.key].email
    ingress_settings                 = each.value.ingress
    # An empty value is an unset setting (shared/config): left out.
    environment_variables = { for k, v in merge(local.common_env, each.value.env) : k => v if v != "" }

    all_traffic_on_latest_revision = true
  }

  dynamic "event_trigger" {
    for_each = each.value.trigger_topic == null ? [] : [each.value.trigger_topic]
    content {
      trigger_region        = var.region
      event_type            = "google.cloud.pubsub.topic.v1.messagePublished"
      pubsub_topic          = event_trigger.value
      retry_policy          = "RETRY_POLICY_RETRY"
      service_account_email = google_service_account.function[each.key].email
    }
  }

  # Builds start once the builder holds its permissions, and triggers once
  # the agents that serve them hold theirs.
  depends_on = [
    terraform_data.builder_ready,
    google_project_iam_member.eventarc_agent,
    google_service_account_iam_member.pubsub_agent_token_creator,
  ]
}

# IAM grants take "typically 2 minutes, potentially 7 minutes or longer" to
# take effect (IAM access change propagation), and five builds start at
# once; a build that starts before its account's grants arrive fails to
# fetch its source or push its image (hashicorp/terraform-provider-google
# #20571). Rather than pause a fixed time and hope, this asks IAM, as the
# builder, for the very permissions each grant gives
# (testIamPermissions), until all are there or builder_wait_seconds pass.
# It asks again only when a grant it guards is replaced.
resource "terraform_data" "builder_ready" {
  triggers_replace = [
    google_project_iam_member.builder_log_writer.id,
    google_project_iam_member.builder_gcf_sources_reader.id,
    google_artifact_registry_repository_iam_member.builder_writer.id,
    google_storage_bucket_iam_member.builder_source_reader.id,
    one(google_service_account_iam_member.deployer_tests_builder[*].id),
  ]

  provisioner "local-exec" {
    command = "./wait-for-builder.sh" # local-exec runs in terraform/
    environment = {
      PROJECT       = var.project_id
      BUILDER       = google_service_account.builder.email
      REPOSITORY    = google_artifact_registry_repository.functions.id
      SOURCE_BUCKET = google_storage_bucket.source.name
      WAIT_SECONDS  = tostring(var.builder_wait_seconds)
    }
  }
}

moved {
  from = terraform_data.build_grants_settled
  to   = terraform_data.builder_ready
}
