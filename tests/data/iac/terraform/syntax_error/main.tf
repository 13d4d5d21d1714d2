terraform {
  required_version = ">= 1.0"
}

resource "aws_s3_bucket" "data" {
  bucket = "orch-example-data"
  acl    = "private"

resource "aws_s3_bucket" "more" {
  bucket = "orch-example-more"
}
