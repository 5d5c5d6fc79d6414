"""Governance reports: the weekly SLA/SLO report (``tenantops.reports.service``)."""
