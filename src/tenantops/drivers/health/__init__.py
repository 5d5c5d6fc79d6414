"""Health driver: HTTP health checks, synthetic tests and access reviews of tenants."""
