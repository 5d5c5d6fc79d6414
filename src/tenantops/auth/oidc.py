"""OIDC bearer-token verification against the issuer's JWKS.

Checks signature (by ``kid``, with the algorithm of that key), issuer, audience,
expiry and not-before; reads roles from a configurable (dotted) claim. The JWKS
comes from ``jwks_url`` or the issuer's discovery document and is kept for
``JWKS_MAX_AGE``, so a key the issuer withdraws stops working within that time.
A token naming an unknown ``kid`` refreshes the set at once, so key rotation at
the IdP needs no restart — but at most once per ``UNKNOWN_KID_COOLDOWN``, so
tokens with made-up kids cannot turn this server into a flood of requests to
the IdP. Both are measured on the tenantops clock.

The web login (``tenantops.web.oidc_login``) verifies its ID tokens with the
same class (audience = its client id, plus the nonce) and maps their claims with
the same :func:`principal_from_claims`, so a browser session and a bearer token
of one person carry the same roles and tenant.
"""

from __future__ import annotations

import hmac
import threading
from datetime import datetime, timedelta
from typing import Any

import httpx
import jwt
import structlog

from tenantops.auth.principal import Principal, Role
from tenantops.config import OIDCSettings
from tenantops.errors import NotAuthenticated
from tenantops.kit.clock import utcnow

JWKS_MAX_AGE = timedelta(minutes=5)
UNKNOWN_KID_COOLDOWN = timedelta(seconds=10)
FETCH_TIMEOUT_SECONDS = 5.0

log = structlog.get_logger("tenantops.auth.oidc")


def _claim(claims: dict[str, Any], path: str) -> Any:
    value: Any = claims
    for part in path.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value


def _role_names(raw: Any) -> list[str]:
    """Role names from a claim that is a list of strings or one space-separated string."""
    if isinstance(raw, str):
        return raw.split()
    if isinstance(raw, list):
        return [r for r in raw if isinstance(r, str)]
    return []


class IssuerUnreachable(Exception):
    """The discovery document or the JWKS could not be fetched or read."""


def principal_from_claims(
    settings: OIDCSettings, claims: dict[str, Any], *, via: str = "oidc"
) -> Principal:
    """The principal verified claims stand for: subject, known roles, tenant.

    The one mapping of claims to roles and tenant, for bearer tokens and web
    sign-in alike. Unknown role names are ignored; ``tenant_owner`` without a
    tenant claim is dropped, since its rights exist only within a tenant.
    """
    subject = _claim(claims, settings.subject_claim)
    if not isinstance(subject, str) or not subject:
        raise NotAuthenticated(f"the token has no {settings.subject_claim!r} claim")
    tenant = _claim(claims, settings.tenant_claim)
    tenant = tenant if isinstance(tenant, str) and tenant else None
    known = {r.value for r in Role}
    roles = {Role(r) for r in _role_names(_claim(claims, settings.roles_claim)) if r in known}
    if tenant is None:
        roles.discard(Role.TENANT_OWNER)
    return Principal(subject=subject, roles=frozenset(roles), tenant=tenant, via=via)


class OIDCVerifier:
    """Verifies bearer JWTs for one issuer; safe to share between request threads."""

    def __init__(self, settings: OIDCSettings) -> None:
        if not settings.issuer:
            raise ValueError("OIDC verification needs an issuer")
        if not settings.audience:
            # Without an audience, a token the same issuer minted for any other
            # application would be accepted here.
            raise ValueError(
                "OIDC verification needs an audience (TENANTOPS_OIDC__AUDIENCE): "
                "the client id tokens for tenantops are issued to"
            )
        self.settings = settings
        self._lock = threading.Lock()
        self._jwks_url: str | None = settings.jwks_url
        self._keys: dict[str, jwt.PyJWK] | None = None
        self._fetched_at: datetime | None = None
        self._last_attempt: datetime | None = None
        self._discovery: dict[str, Any] | None = None
        self._discovered_at: datetime | None = None

    def _discover(self, client: httpx.Client) -> str:
        document = self._discovery_document(client)
        if not isinstance(document.get("jwks_uri"), str):
            raise IssuerUnreachable("the discovery document names no jwks_uri")
        return str(document["jwks_uri"])

    def _discovery_document(self, client: httpx.Client) -> dict[str, Any]:
        issuer = (self.settings.issuer or "").rstrip("/")
        try:
            response = client.get(f"{issuer}/.well-known/openid-configuration")
            response.raise_for_status()
            document = response.json()
        except (httpx.HTTPError, ValueError) as exc:
            raise IssuerUnreachable(str(exc)) from exc
        if not isinstance(document, dict):
            raise IssuerUnreachable("the discovery document is not a JSON object")
        # OIDC Discovery 4.3: the document must name the issuer it was fetched for,
        # or a redirect or a proxy could hand us another issuer's endpoints.
        if str(document.get("issuer", "")).rstrip("/") != issuer:
            raise IssuerUnreachable(
                f"the discovery document is for issuer {document.get('issuer')!r}, not {issuer!r}"
            )
        return document

    def discovery(self) -> dict[str, Any]:
        """The issuer's discovery document, fetched at most once per ``JWKS_MAX_AGE``.

        Raises ``IssuerUnreachable`` when it cannot be fetched or is not the issuer's.
        """
        with self._lock:
            now = utcnow()
            if (
                self._discovery is not None
                and self._discovered_at is not None
                and now - self._discovered_at < JWKS_MAX_AGE
            ):
                return self._discovery
        with httpx.Client(timeout=FETCH_TIMEOUT_SECONDS, follow_redirects=False) as client:
            document = self._discovery_document(client)
        with self._lock:
            self._discovery, self._discovered_at = document, utcnow()
        return document

    def _fetch(self) -> dict[str, jwt.PyJWK]:
        """The issuer's signing keys by kid; keys this library cannot use are skipped."""
        try:
            with httpx.Client(timeout=FETCH_TIMEOUT_SECONDS, follow_redirects=False) as client:
                if self._jwks_url is None:
                    self._jwks_url = self._discover(client)
                response = client.get(self._jwks_url)
                response.raise_for_status()
                document = response.json()
        except (httpx.HTTPError, ValueError) as exc:
            raise IssuerUnreachable(str(exc)) from exc
        if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
            raise IssuerUnreachable("the JWKS is not a JSON object with a 'keys' list")
        keys: dict[str, jwt.PyJWK] = {}
        for data in document["keys"]:
            if not isinstance(data, dict) or data.get("use", "sig") != "sig":
                continue
            kid = data.get("kid")
            if not isinstance(kid, str) or not kid:
                continue
            try:
                keys[kid] = jwt.PyJWK(data)
            except (jwt.PyJWTError, KeyError, TypeError, ValueError):
                continue  # an encryption key or a key type we do not verify with
        return keys

    def _signing_key(self, kid: str) -> jwt.PyJWK:
        with self._lock:
            now = utcnow()
            keys, fetched_at = self._keys, self._fetched_at
            expired = fetched_at is None or now - fetched_at >= JWKS_MAX_AGE
            wanted = expired or keys is None or kid not in keys
            may_fetch = self._last_attempt is None or now - self._last_attempt >= (
                UNKNOWN_KID_COOLDOWN
            )
            if wanted and may_fetch:
                self._last_attempt = now
                try:
                    self._keys, self._fetched_at = self._fetch(), now
                except IssuerUnreachable as exc:
                    # Keep serving the keys we have through a short IdP outage.
                    log.warning(
                        "oidc signing keys unavailable", issuer=self.settings.issuer, error=str(exc)
                    )
            keys = self._keys
        if keys is None:
            raise NotAuthenticated("the identity provider's signing keys are unreachable")
        key = keys.get(kid)
        if key is None:
            raise NotAuthenticated("the bearer token is signed by an unknown key")
        return key

    def verify(self, token: str) -> Principal:
        """The principal a valid token stands for; ``NotAuthenticated`` otherwise."""
        return principal_from_claims(self.settings, self.claims(token))

    def verify_id_token(self, token: str, *, nonce: str) -> tuple[Principal, dict[str, Any]]:
        """The principal and claims of an ID token issued to this audience with ``nonce``.

        OIDC Core 3.1.3.7: signature, ``iss``, ``aud``, ``exp``, and the ``nonce``
        the sign-in sent (a token minted for another sign-in is refused).
        """
        claims = self.claims(token, require=("exp", "iss", "aud", "nonce"))
        presented = claims.get("nonce")
        if not isinstance(presented, str) or not hmac.compare_digest(
            presented.encode(), nonce.encode()
        ):
            raise NotAuthenticated("the ID token was issued for another sign-in (nonce)")
        return principal_from_claims(self.settings, claims), claims

    def claims(
        self, token: str, *, require: tuple[str, ...] = ("exp", "iss", "aud")
    ) -> dict[str, Any]:
        """The claims of a token signed by the issuer for this audience, unexpired."""
        s = self.settings
        try:
            kid = jwt.get_unverified_header(token).get("kid")
        except jwt.PyJWTError as exc:
            raise NotAuthenticated(f"the bearer token is not a JWT: {exc}") from exc
        if not isinstance(kid, str) or not kid:
            raise NotAuthenticated("the bearer token names no signing key (kid)")
        key = self._signing_key(kid)
        try:
            # Passing the PyJWK (not its raw key) pins the algorithm to the key's own,
            # whatever the token header claims.
            claims: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=s.algorithms,
                issuer=s.issuer,
                audience=s.audience,
                leeway=s.leeway_seconds,
                options={"require": list(require)},
            )
        except jwt.ExpiredSignatureError as exc:
            raise NotAuthenticated("the bearer token has expired") from exc
        except jwt.PyJWTError as exc:
            raise NotAuthenticated(f"the bearer token is not valid: {exc}") from exc
        except (TypeError, ValueError) as exc:  # a key or header the crypto backend rejects
            raise NotAuthenticated("the bearer token is not valid") from exc
        return claims
