terraform {
  required_version = ">= 1.3"
  required_providers {
    google = {
      source  = "hashicorp/google"
      version = "~> 5.0"
    }
  }
}

variable "project" {
  type        = string
  description = "GCP project id"
}

resource "google_storage_bucket" "artifacts" {
  project                     = var.project
  name                        = "${var.project}-artifacts"
  location                    = "EU"
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"

  versioning {
    enabled = true
  }
}
