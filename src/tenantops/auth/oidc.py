"""OIDC bearer-token verification against the issuer's JWKS.

Checks signature (by ``kid``), issuer, audience, expiry and not-before; reads
roles from a configurable (dotted) claim. Signing keys are fetched from the
JWKS URL (or the issuer's discovery document) and cached; an unknown ``kid``
triggers one refresh, so key rotation at the IdP needs no restart.
"""

from __future__ import annotations

from typing import Any

import httpx
import jwt

from tenantops.auth.principal import Principal, Role
from tenantops.config import OIDCSettings
from tenantops.errors import NotAuthenticated


def _claim(claims: dict[str, Any], path: str) -> Any:
    value: Any = claims
    for part in path.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value


class OIDCVerifier:
    """Verifies bearer JWTs for one issuer."""

    def __init__(self, settings: OIDCSettings) -> None:
        if not settings.issuer:
            raise ValueError("OIDC verification needs an issuer")
        self.settings = settings
        self._jwks: jwt.PyJWKClient | None = None

    def _client(self) -> jwt.PyJWKClient:
        if self._jwks is None:
            url = self.settings.jwks_url or self._discover()
            self._jwks = jwt.PyJWKClient(url, cache_keys=True, lifespan=300, timeout=5)
        return self._jwks

    def _discover(self) -> str:
        issuer = (self.settings.issuer or "").rstrip("/")
        try:
            response = httpx.get(f"{issuer}/.well-known/openid-configuration", timeout=5)
            response.raise_for_status()
            return str(response.json()["jwks_uri"])
        except (httpx.HTTPError, KeyError, ValueError) as exc:
            raise NotAuthenticated(
                "the identity provider's discovery document is unreachable"
            ) from exc

    def verify(self, token: str) -> Principal:
        """The principal a valid token stands for; ``NotAuthenticated`` otherwise."""
        s = self.settings
        try:
            key = self._client().get_signing_key_from_jwt(token)
            claims: dict[str, Any] = jwt.decode(
                token,
                key.key,
                algorithms=s.algorithms,
                issuer=s.issuer,
                audience=s.audience,
                leeway=s.leeway_seconds,
                options={"require": ["exp", "iss", "sub"], "verify_aud": s.audience is not None},
            )
        except jwt.ExpiredSignatureError as exc:
            raise NotAuthenticated("the bearer token has expired") from exc
        except jwt.PyJWKClientConnectionError as exc:
            raise NotAuthenticated("the identity provider's signing keys are unreachable") from exc
        except jwt.PyJWKClientError as exc:
            raise NotAuthenticated("the bearer token is signed by an unknown key") from exc
        except jwt.InvalidTokenError as exc:
            raise NotAuthenticated(f"the bearer token is not valid: {exc}") from exc
        raw_roles = _claim(claims, s.roles_claim) or []
        if isinstance(raw_roles, str):
            raw_roles = raw_roles.split()
        known = {r.value for r in Role}
        roles = frozenset(Role(r) for r in raw_roles if isinstance(r, str) and r in known)
        tenant = _claim(claims, s.tenant_claim)
        return Principal(
            subject=str(_claim(claims, s.subject_claim)),
            roles=roles,
            tenant=str(tenant) if tenant else None,
            via="oidc",
        )
