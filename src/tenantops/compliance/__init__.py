"""Compliance Evidence Collection: per-tenant evidence bundles an auditor verifies."""
