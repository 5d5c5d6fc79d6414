"""The Terraform port: plan and apply a tenant's bootstrap module, the plan JSON as evidence."""
