output "namespace" {
  description = "The tenant's namespace."
  value       = kubernetes_namespace_v1.tenant.metadata[0].name
}

output "roles" {
  description = "Role names by access level."
  value       = { for access, role in kubernetes_role_v1.tenant : access => role.metadata[0].name }
}

output "role_bindings" {
  description = "RoleBinding name -> group it binds."
  value       = { for name, binding in local.bindings : name => binding.group }
}
