"""tenantops: a control plane for operating the tenants of a multi-tenant platform."""

__version__ = "0.1.0"
