"""Sign-in through the configured OIDC issuer (authorization code + PKCE)."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(include_in_schema=False)
