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
  region = var.region
}

variable "region" {
  type        = string
  description = "AWS region to deploy into"
  default     = "us-east-1"
}

variable "bucket_name" {
  type        = string
  description = "Bucket the policy grants read access to"
}

data "aws_iam_policy_document" "read" {
  statement {
    sid       = "ListBucket"
    actions   = ["s3:ListBucket"]
    resources = ["arn:aws:s3:::${var.bucket_name}"]
  }

  statement {
    sid       = "ReadObjects"
    actions   = ["s3:GetObject"]
    resources = ["arn:aws:s3:::${var.bucket_name}/*"]
  }
}

resource "aws_iam_policy" "read" {
  name        = "${var.bucket_name}-read"
  description = "Read-only access to ${var.bucket_name}"
  policy      = data.aws_iam_policy_document.read.json
}

output "policy_arn" {
  value = aws_iam_policy.read.arn
}
