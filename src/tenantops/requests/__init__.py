"""Self-service requests of tenant owners (new tenant, quota, budget, access), as gated runs."""
