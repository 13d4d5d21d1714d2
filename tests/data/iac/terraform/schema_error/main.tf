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

# aws_instance has no argument "instance_size" (it is instance_type): a schema error only the provider knows.
resource "aws_instance" "web" {
  ami           = "ami-0123456789abcdef0"
  instance_size = "t3.micro"

  root_block_device {
    encrypted = true
  }
}
