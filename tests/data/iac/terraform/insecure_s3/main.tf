terraform {
  required_version = ">= 1.0"
  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = "~> 3.39"
    }
  }
}

provider "aws" {
  region = "us-east-1"
}

# Valid Terraform, but the ACL makes every object world-readable: checkov CKV_AWS_20 (HIGH).
resource "aws_s3_bucket" "site" {
  bucket = "orch-example-public-site"
  acl    = "public-read"

  versioning {
    enabled = true
  }

  server_side_encryption_configuration {
    rule {
      apply_server_side_encryption_by_default {
        sse_algorithm = "aws:kms"
      }
    }
  }
}
