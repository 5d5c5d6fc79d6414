# One tenant's namespace, budget and RBAC: the objects the GitOps render puts in
# tenants/<name>/ (namespace, ResourceQuota, LimitRange, Roles, RoleBindings).
# Network policies and the SecretStore stay on the GitOps path.

locals {
  managed_by = { "app.kubernetes.io/managed-by" = "tenantops" }
  labels     = merge(local.managed_by, { "tenantops.io/tenant" = var.tenant })

  namespace_labels = merge(
    local.labels,
    {
      "tenantops.io/tier"             = var.tier
      "tenantops.io/region"           = var.region
      "tenantops.io/compliance-class" = var.compliance_classification
      "kubernetes.io/metadata.name"   = var.tenant
    },
    var.isolated ? { "tenantops.io/isolated" = "true" } : {},
  )

  namespace_annotations = merge(
    { "tenantops.io/business-owner" = var.business_owner },
    length(var.contacts) > 0 ? { "tenantops.io/contacts" = join(",", var.contacts) } : {},
  )

  read  = ["get", "list", "watch"]
  write = concat(local.read, ["create", "update", "patch", "delete"])

  workloads = [
    { api_group = "", resources = ["pods", "services", "configmaps", "persistentvolumeclaims", "serviceaccounts"] },
    { api_group = "apps", resources = ["deployments", "statefulsets", "replicasets"] },
    { api_group = "batch", resources = ["jobs", "cronjobs"] },
    { api_group = "autoscaling", resources = ["horizontalpodautoscalers"] },
  ]

  # Quotas, limit ranges and network policies are never the tenant's to change:
  # that would lift its budget or undo an isolation.
  rules = {
    for access in distinct(values(var.groups)) : access => concat(
      [for w in local.workloads : {
        api_groups = [w.api_group]
        resources  = w.resources
        verbs      = access == "viewer" ? local.read : local.write
      }],
      [{ api_groups = [""], resources = ["events", "pods/log"], verbs = local.read }],
      access == "admin" ? [
        { api_groups = [""], resources = ["secrets"], verbs = local.write },
        { api_groups = [""], resources = ["pods/exec"], verbs = ["create"] },
      ] : [],
    )
  }

  # Binding names as the render makes them: <access>-<first 10 hex of sha256(group)>.
  bindings = {
    for group, access in var.groups : "${access}-${substr(sha256(group), 0, 10)}" => {
      group  = group
      access = access
    }
  }
}

resource "kubernetes_namespace_v1" "tenant" {
  metadata {
    name        = var.tenant
    labels      = local.namespace_labels
    annotations = local.namespace_annotations
  }
}

resource "kubernetes_resource_quota_v1" "tenant" {
  metadata {
    name      = "tenant-quota"
    namespace = kubernetes_namespace_v1.tenant.metadata[0].name
    labels    = local.labels
  }

  spec {
    hard = {
      "requests.cpu"           = var.tier_size.requests_cpu
      "requests.memory"        = var.tier_size.requests_memory
      "limits.cpu"             = var.tier_size.limits_cpu
      "limits.memory"          = var.tier_size.limits_memory
      "pods"                   = tostring(var.tier_size.pods)
      "services"               = tostring(var.tier_size.services)
      "persistentvolumeclaims" = tostring(var.tier_size.pvcs)
      "requests.storage"       = var.tier_size.storage
    }
  }
}

resource "kubernetes_limit_range_v1" "tenant" {
  metadata {
    name      = "tenant-limits"
    namespace = kubernetes_namespace_v1.tenant.metadata[0].name
    labels    = local.labels
  }

  spec {
    limit {
      type = "Container"
      default = {
        cpu    = var.tier_size.container_default_cpu
        memory = var.tier_size.container_default_memory
      }
      default_request = {
        cpu    = var.tier_size.container_request_cpu
        memory = var.tier_size.container_request_memory
      }
      max = {
        cpu    = var.tier_size.container_max_cpu
        memory = var.tier_size.container_max_memory
      }
    }
  }
}

resource "kubernetes_role_v1" "tenant" {
  for_each = local.rules

  metadata {
    name      = "tenant-${each.key}"
    namespace = kubernetes_namespace_v1.tenant.metadata[0].name
    labels    = local.labels
  }

  dynamic "rule" {
    for_each = each.value
    content {
      api_groups = rule.value.api_groups
      resources  = rule.value.resources
      verbs      = rule.value.verbs
    }
  }
}

resource "kubernetes_role_binding_v1" "tenant" {
  for_each = local.bindings

  metadata {
    name        = each.key
    namespace   = kubernetes_namespace_v1.tenant.metadata[0].name
    labels      = local.labels
    annotations = { "tenantops.io/group" = each.value.group }
  }

  role_ref {
    api_group = "rbac.authorization.k8s.io"
    kind      = "Role"
    name      = kubernetes_role_v1.tenant[each.value.access].metadata[0].name
  }

  subject {
    api_group = "rbac.authorization.k8s.io"
    kind      = "Group"
    name      = each.value.group
  }
}
