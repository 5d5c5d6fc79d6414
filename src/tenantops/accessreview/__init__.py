"""The Access Review checklist: who can reach a tenant now, confirmed by security.

Started by ``POST /api/v1/tenants/{tenant}/access-reviews`` or
``tenantops tenants access-review TENANT``; the runbook is
``runbooks/library/access-review.yaml``.
"""
