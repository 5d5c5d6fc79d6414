"""Secrets rotation: the inventory of tenants' secrets (metadata only), their rotation
cycle, overdue detection and the notices it sends."""
