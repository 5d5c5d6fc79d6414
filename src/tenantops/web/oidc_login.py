"""Sign-in through the configured OIDC issuer (authorization code + PKCE).

``GET /login/oidc`` sends the browser to the issuer with a fresh ``state``,
``nonce`` and PKCE ``code_challenge`` (S256); what the callback needs to check
them (and the ``next`` page) travels in a short-lived ``HttpOnly``,
``SameSite=Lax`` cookie scoped to ``/login/oidc`` (ADR 0023). ``GET
/login/oidc/callback`` checks ``state``, redeems the code with the verifier,
verifies the ID token (JWKS signature, ``iss``, ``aud`` = client id, ``exp``,
``nonce``) with :class:`tenantops.auth.oidc.OIDCVerifier`, maps its claims as a
bearer token's, and opens an ordinary web session. Every failure shows the
login page with a message and opens no session.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import threading
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

import httpx
import structlog
from fastapi import APIRouter, Request, Response
from fastapi.responses import RedirectResponse

from tenantops.auth.oidc import FETCH_TIMEOUT_SECONDS, IssuerUnreachable, OIDCVerifier
from tenantops.config import Settings
from tenantops.errors import NotAuthenticated
from tenantops.web import service
from tenantops.web.login import login_form, start_session
from tenantops.web.pagekit import database, error_page, safe_next, secure

FLOW_COOKIE = "tenantops_oidc"
FLOW_PATH = "/login/oidc"
FLOW_MAX_AGE = 600  # seconds the browser may spend at the issuer
FLOW_COOKIE_MAX = 2048  # bytes; anything longer is not a cookie we set

EXPIRED = (
    "This sign-in expired or was started in another browser or tab. "
    "Start it again with the button below."
)

log = structlog.get_logger("tenantops.web.oidc_login")
router = APIRouter(include_in_schema=False)
_lock = threading.Lock()


@dataclass(frozen=True)
class WebClient:
    """The web UI as a client of the issuer: its registration and an ID-token verifier."""

    issuer: str
    client_id: str
    client_secret: str | None
    scopes: str
    redirect_url: str | None
    name: str
    verifier: OIDCVerifier


def sign_in_name(settings: Settings) -> str | None:
    """What 'Sign in with …' names, or ``None`` when web sign-in through OIDC is off."""
    if not settings.oidc.issuer or not settings.web.oidc_client_id:
        return None
    return settings.web.oidc_display_name or urlsplit(settings.oidc.issuer).netloc


def web_client(request: Request) -> WebClient | None:
    """The app's OIDC web client (made once per app), or ``None`` when not configured."""
    found: WebClient | None = getattr(request.app.state, "oidc_web_client", None)
    if found is not None:
        return found
    settings: Settings = request.app.state.settings
    name = sign_in_name(settings)
    client_id = settings.web.oidc_client_id
    if name is None or client_id is None or settings.oidc.issuer is None:
        return None
    scopes = settings.web.oidc_scopes.split()
    secret = settings.web.oidc_client_secret
    with _lock:
        found = getattr(request.app.state, "oidc_web_client", None)
        if found is None:
            found = WebClient(
                issuer=settings.oidc.issuer,
                client_id=client_id,
                client_secret=secret.get_secret_value() if secret else None,
                scopes=" ".join(scopes if "openid" in scopes else ["openid", *scopes]),
                redirect_url=settings.web.oidc_redirect_url,
                name=name,
                # The API's issuer and claim settings; the audience of an ID token
                # is the client it was issued to.
                verifier=OIDCVerifier(settings.oidc.model_copy(update={"audience": client_id})),
            )
            request.app.state.oidc_web_client = found
    return found


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _flow_cookie(flow: dict[str, str]) -> str:
    return _b64(json.dumps(flow, separators=(",", ":")).encode())


def _read_flow(request: Request) -> dict[str, str] | None:
    raw = request.cookies.get(FLOW_COOKIE, "")
    if not raw or len(raw) > FLOW_COOKIE_MAX:
        return None
    try:
        data = json.loads(base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)))
    except (ValueError, UnicodeDecodeError):
        return None
    keys = ("state", "nonce", "verifier", "next", "redirect")
    if not isinstance(data, dict) or not all(isinstance(data.get(k), str) for k in keys):
        return None
    return {k: data[k] for k in keys}


def _refused(request: Request, message: str, *, next: str, status: int) -> Response:
    """The login page with ``message``; the flow cookie is gone, no session opened."""
    response = login_form(request, next=safe_next(next), error=message, status=status)
    response.delete_cookie(FLOW_COOKIE, path=FLOW_PATH)
    return response


def _endpoint(document: dict[str, Any], name: str) -> str:
    value = document.get(name)
    if not isinstance(value, str) or urlsplit(value).scheme not in ("http", "https"):
        raise IssuerUnreachable(f"the discovery document names no {name}")
    return value


@router.get("/login/oidc")
def oidc_start(request: Request, next: str | None = None) -> Response:
    client = web_client(request)
    if client is None:
        return error_page(
            request, "Not configured", "Sign-in through an identity provider is not set up.", 404
        )
    target = safe_next(next)
    try:
        authorize = _endpoint(client.verifier.discovery(), "authorization_endpoint")
    except IssuerUnreachable as exc:
        log.warning("oidc issuer unreachable", issuer=client.issuer, error=str(exc))
        return _refused(
            request,
            f"{client.name} cannot be reached just now. Try again in a moment.",
            next=target,
            status=503,
        )
    verifier = secrets.token_urlsafe(64)
    flow = {
        "state": secrets.token_urlsafe(32),
        "nonce": secrets.token_urlsafe(32),
        "verifier": verifier,
        "next": target,
        "redirect": client.redirect_url or str(request.url_for("oidc_callback")),
    }
    params = {
        "response_type": "code",
        "client_id": client.client_id,
        "redirect_uri": flow["redirect"],
        "scope": client.scopes,
        "state": flow["state"],
        "nonce": flow["nonce"],
        "code_challenge": _b64(hashlib.sha256(verifier.encode()).digest()),
        "code_challenge_method": "S256",
    }
    joiner = "&" if urlsplit(authorize).query else "?"
    response = RedirectResponse(authorize + joiner + urlencode(params), status_code=303)
    response.headers["Cache-Control"] = "no-store"
    # Lax, not Strict: the issuer sends the browser back with a cross-site top-level
    # GET, which is exactly what Lax lets through and Strict would not.
    response.set_cookie(
        FLOW_COOKIE,
        _flow_cookie(flow),
        max_age=FLOW_MAX_AGE,
        httponly=True,
        samesite="lax",
        secure=secure(request),
        path=FLOW_PATH,
    )
    return response


def _redeem(client: WebClient, token_url: str, code: str, flow: dict[str, str]) -> str:
    """The ID token the issuer gives for ``code``; ``NotAuthenticated`` if it refuses."""
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": flow["redirect"],
        "code_verifier": flow["verifier"],
    }
    headers = {"Accept": "application/json"}
    if client.client_secret is None:
        form["client_id"] = client.client_id  # a public client (RFC 6749 2.3)
    else:
        # client_secret_basic: both form-urlencoded first (RFC 6749 2.3.1).
        pair = f"{quote(client.client_id, safe='')}:{quote(client.client_secret, safe='')}"
        headers["Authorization"] = "Basic " + base64.b64encode(pair.encode()).decode()
    with httpx.Client(timeout=FETCH_TIMEOUT_SECONDS, follow_redirects=False) as http:
        response = http.post(token_url, data=form, headers=headers)
    try:
        body = response.json()
    except ValueError:
        body = None
    if response.status_code != 200 or not isinstance(body, dict):
        error = body.get("error") if isinstance(body, dict) else None
        log.warning(
            "oidc code refused", status=response.status_code, error=error, issuer=client.issuer
        )
        raise NotAuthenticated(f"the code was not accepted ({error or response.status_code})")
    id_token = body.get("id_token")
    if not isinstance(id_token, str) or not id_token:
        raise NotAuthenticated("the answer holds no ID token (is 'openid' a granted scope?)")
    return id_token


@router.get("/login/oidc/callback", name="oidc_callback")
def oidc_callback(
    request: Request,
    state: str | None = None,
    code: str | None = None,
    error: str | None = None,
) -> Response:
    client = web_client(request)
    if client is None:
        return error_page(
            request, "Not configured", "Sign-in through an identity provider is not set up.", 404
        )
    flow = _read_flow(request)
    # The state ties this answer to the sign-in this browser started: without it a
    # stranger could sign the browser in to the stranger's own account.
    if (
        flow is None
        or not state
        or not hmac.compare_digest(flow["state"].encode(), state.encode("utf-8", "replace"))
    ):
        return _refused(request, EXPIRED, next=flow["next"] if flow else "/", status=400)
    target = flow["next"]
    if error is not None:
        message = (
            f"The sign-in was cancelled at {client.name}."
            if error == "access_denied"
            else f"{client.name} refused the sign-in ({error[:64]}). Try again."
        )
        return _refused(request, message, next=target, status=401)
    if not code:
        return _refused(request, EXPIRED, next=target, status=400)
    try:
        token_url = _endpoint(client.verifier.discovery(), "token_endpoint")
        id_token = _redeem(client, token_url, code, flow)
        principal, claims = client.verifier.verify_id_token(id_token, nonce=flow["nonce"])
    except (IssuerUnreachable, httpx.HTTPError) as exc:
        log.warning("oidc issuer unreachable", issuer=client.issuer, error=str(exc))
        return _refused(
            request,
            f"{client.name} cannot be reached just now. Try again in a moment.",
            next=target,
            status=503,
        )
    except NotAuthenticated as exc:
        log.warning("oidc sign-in refused", issuer=client.issuer, error=exc.detail)
        return _refused(
            request,
            f"The answer from {client.name} was not accepted: {exc.detail}. Start again.",
            next=target,
            status=401,
        )
    audiences = claims.get("aud")
    if isinstance(audiences, list) and len(audiences) > 1 and claims.get("azp") != client.client_id:
        # OIDC Core 3.1.3.7 (4, 5): a token for several audiences must name us as its party.
        return _refused(
            request,
            f"The answer from {client.name} was not accepted: it was issued to another client.",
            next=target,
            status=401,
        )
    db = database(request)
    with db.write() as session:
        result = service.sign_in_external(session, issuer=client.issuer, principal=principal)
    if result.opened is None:
        return _refused(request, result.refusal or EXPIRED, next=target, status=403)
    response = start_session(request, result.opened, safe_next(target))
    response.delete_cookie(FLOW_COOKIE, path=FLOW_PATH)
    return response
