"""Versioned runbooks and the durable engine that runs them, on the database."""
