"""Access driver: a tenant's queue access (on/paused) and its rate limit."""
