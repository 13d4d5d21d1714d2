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

variable "domain" {
  type        = string
  description = "Domain of the hosted zone"
}

variable "web_ip" {
  type        = string
  description = "Address of the web server"
}

resource "aws_route53_zone" "main" {
  name = var.domain
}

resource "aws_route53_record" "www" {
  zone_id = aws_route53_zone.main.zone_id
  name    = "www.${var.domain}"
  type    = "A"
  ttl     = 300
  records = [var.web_ip]
}

output "name_servers" {
  value = aws_route53_zone.main.name_servers
}
