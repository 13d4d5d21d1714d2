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

variable "retention_days" {
  type        = number
  description = "How long log events are kept"
  default     = 365
}

resource "aws_kms_key" "logs" {
  description         = "Encrypts the application log group"
  enable_key_rotation = true
}

resource "aws_cloudwatch_log_group" "app" {
  name              = "/app/web"
  retention_in_days = var.retention_days
  kms_key_id        = aws_kms_key.logs.arn
}

output "log_group_name" {
  value = aws_cloudwatch_log_group.app.name
}
