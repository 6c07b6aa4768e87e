terraform {
  required_version = ">= 1.11.0" # removed blocks (kept.tf), write-only secret_data_wo (secrets.tf)

  required_providers {
    google = {
      source  = "hashicorp/google"
      version = ">= 8.0, < 9.0"
    }
    archive = {
      source  = "hashicorp/archive"
      version = ">= 2.7, < 3.0"
    }
  }
}

provider "google" {
  project = var.project_id
  region  = var.region

  default_labels = merge({ app = "gmailwatch" }, var.labels)
}
