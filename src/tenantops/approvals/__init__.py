"""Approval requests and decisions, with segregation of duties."""
