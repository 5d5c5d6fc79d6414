"""Tenant KPIs: the dashboard's numbers and ``GET /api/v1/kpis``."""
