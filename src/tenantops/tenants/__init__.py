"""Tenant registry and lifecycle."""
