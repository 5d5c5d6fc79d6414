"""Authentication (OIDC bearer JWTs, API tokens) and authorization (role matrix)."""
