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

variable "availability_zone" {
  type        = string
  description = "Zone of the instance that will attach the volume"
  default     = "us-east-1a"
}

resource "aws_ebs_volume" "data" {
  availability_zone = var.availability_zone
  size              = 100
  type              = "gp3"
  encrypted         = true

  tags = {
    Name = "data"
  }
}

output "volume_id" {
  value = aws_ebs_volume.data.id
}
