"""Alerts: the Alertmanager webhook receiver and the playbooks it starts."""
