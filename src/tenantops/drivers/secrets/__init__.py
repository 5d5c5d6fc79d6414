"""Secrets driver: a tenant's secret store and path references — never a secret's value."""
