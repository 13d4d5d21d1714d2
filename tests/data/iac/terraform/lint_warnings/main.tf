# Valid Terraform that tflint's core rules warn about: no required_version, a provider without a version
# constraint, an untyped variable, an unused local and an unused data source. The for-expression variable
# and the dynamic block's iterator look like resource references and must not be reported as undeclared.
terraform {
  required_providers {
    aws = {
      source = "hashicorp/aws"
    }
  }
}

variable "name" {
  default = "web"
}

variable "ports" {
  type    = list(number)
  default = [443]
}

variable "subnets" {
  type    = list(object({ id = string }))
  default = []
}

locals {
  unused_note = "never read"
  subnet_ids  = [for sub_net in var.subnets : sub_net.id]
}

data "aws_caller_identity" "current" {}

resource "aws_security_group" "web" {
  name        = var.name
  description = "web"

  dynamic "ingress" {
    for_each = var.ports
    iterator = port_rule
    content {
      description = "port ${port_rule.value}"
      from_port   = port_rule.value
      to_port     = port_rule.value
      protocol    = "tcp"
      cidr_blocks = ["10.0.0.0/8"]
    }
  }
}

output "subnet_ids" {
  value = local.subnet_ids
}
