"""Notify driver: messages to stakeholders through the outbox, delivered by SMTP when set up."""
