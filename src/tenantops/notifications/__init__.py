"""Notifications: the outbox of messages to stakeholders, and its read API."""
