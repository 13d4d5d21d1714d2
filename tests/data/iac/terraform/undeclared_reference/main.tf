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

# var.bucket_name is never declared.
resource "aws_s3_bucket" "data" {
  bucket = var.bucket_name
  acl    = "private"
}
