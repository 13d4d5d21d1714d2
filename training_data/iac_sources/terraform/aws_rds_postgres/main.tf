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

variable "db_password" {
  type        = string
  description = "Master password"
  sensitive   = true
}

variable "subnet_ids" {
  type        = list(string)
  description = "Private subnets for the database"
}

resource "aws_db_subnet_group" "db" {
  name       = "app-db"
  subnet_ids = var.subnet_ids
}

resource "aws_db_instance" "app" {
  identifier                          = "app-db"
  engine                              = "postgres"
  engine_version                      = "13.3"
  instance_class                      = "db.t3.micro"
  allocated_storage                   = 20
  storage_encrypted                   = true
  username                            = "app"
  password                            = var.db_password
  db_subnet_group_name                = aws_db_subnet_group.db.name
  publicly_accessible                 = false
  multi_az                            = true
  deletion_protection                 = true
  backup_retention_period             = 7
  copy_tags_to_snapshot               = true
  auto_minor_version_upgrade          = true
  iam_database_authentication_enabled = true
  performance_insights_enabled        = true
  enabled_cloudwatch_logs_exports     = ["postgresql"]
  final_snapshot_identifier           = "app-db-final"
}

output "endpoint" {
  value = aws_db_instance.app.endpoint
}
