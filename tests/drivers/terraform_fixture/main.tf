# A stand-in for tenant-bootstrap that runs offline: the same inputs, the same
# object names, but terraform_data (the builtin provider, nothing to download)
# in place of the Kubernetes resources.

terraform {
  required_version = ">= 1.5"
}

locals {
  labels = {
    "app.kubernetes.io/managed-by" = "tenantops"
    "tenantops.io/tenant"          = var.tenant
  }
  bindings = {
    for group, access in var.groups : "${access}-${substr(sha256(group), 0, 10)}" => group
  }
}

resource "terraform_data" "namespace" {
  input = {
    name = var.tenant
    labels = merge(local.labels, {
      "tenantops.io/tier"             = var.tier
      "tenantops.io/region"           = var.region
      "tenantops.io/compliance-class" = var.compliance_classification
    })
  }
}

resource "terraform_data" "quota" {
  input = {
    namespace = terraform_data.namespace.output.name
    pods      = var.tier_size.pods
    cpu       = var.tier_size.requests_cpu
  }
}

resource "terraform_data" "limits" {
  input = {
    namespace   = terraform_data.namespace.output.name
    default_cpu = var.tier_size.container_default_cpu
  }
}

resource "terraform_data" "role" {
  for_each = toset(values(var.groups))
  input    = "tenant-${each.key}"
}

resource "terraform_data" "binding" {
  for_each = local.bindings
  input    = { group = each.value, role = terraform_data.role[split("-", each.key)[0]].output }
}

output "namespace" {
  value = terraform_data.namespace.output.name
}
