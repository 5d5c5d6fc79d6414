"""ITIL records — incidents, changes and problems — linked to tenants."""
