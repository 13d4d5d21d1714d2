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

resource "aws_kms_key" "secrets" {
  description         = "Encrypts application secrets"
  enable_key_rotation = true
}

resource "aws_secretsmanager_secret" "db" {
  name                    = "app/db-password"
  kms_key_id              = aws_kms_key.secrets.arn
  recovery_window_in_days = 7
}

output "secret_arn" {
  value = aws_secretsmanager_secret.db.arn
}
