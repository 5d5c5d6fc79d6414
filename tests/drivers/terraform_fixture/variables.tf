# A copy of terraform/tenant-bootstrap/variables.tf (a test checks they match):
# the builtin-only stand-in takes exactly the inputs of the real module.

variable "tenant" {
  description = "Tenant name; also the namespace name."
  type        = string

  validation {
    condition     = can(regex("^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$", var.tenant))
    error_message = "The tenant name must be a DNS-1123 label (lowercase letters, digits, '-')."
  }
}

variable "tier" {
  description = "Tier name (basic, standard, premium, enterprise): a label only; sizes come from tier_size."
  type        = string
}

variable "region" {
  description = "Region label of the namespace."
  type        = string
}

variable "compliance_classification" {
  description = "Compliance class label of the namespace."
  type        = string
}

variable "business_owner" {
  description = "Business owner annotation."
  type        = string
  default     = ""
}

variable "contacts" {
  description = "Contact addresses, joined into one annotation."
  type        = list(string)
  default     = []
}

variable "isolated" {
  description = "Whether the tenant is suspended (labels the namespace tenantops.io/isolated=true)."
  type        = bool
  default     = false
}

variable "groups" {
  description = "Identity-provider group name -> access in the namespace (admin, developer, viewer)."
  type        = map(string)

  validation {
    condition     = alltrue([for access in values(var.groups) : contains(["admin", "developer", "viewer"], access)])
    error_message = "Each group's access must be admin, developer or viewer."
  }
}

variable "tier_size" {
  description = "The tier's namespace budget: ResourceQuota hard limits and LimitRange container defaults."
  type = object({
    requests_cpu             = string
    requests_memory          = string
    limits_cpu               = string
    limits_memory            = string
    pods                     = number
    services                 = number
    pvcs                     = number
    storage                  = string
    container_default_cpu    = string
    container_default_memory = string
    container_request_cpu    = string
    container_request_memory = string
    container_max_cpu        = string
    container_max_memory     = string
  })
}
