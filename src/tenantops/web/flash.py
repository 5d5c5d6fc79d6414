"""One-time messages after a form post: a short-lived cookie read by the next page.

A POST that is carried out answers with a redirect (so a reload does not post
again), and what it did rides along in a cookie scoped to the page group's
path, shown once and deleted; so does the reason for most refusals. The
approvals inbox, the on-call and the records pages share it. Not every refusal
goes this way: the approvals inbox answers a refused decision by rendering the
inbox again (422) with the message and the comment back in its form, whole.
"""

from __future__ import annotations

from typing import Literal
from urllib.parse import quote, unquote

from fastapi import Request, Response
from fastapi.responses import RedirectResponse

from tenantops.web.pagekit import secure

COOKIE = "tenantops_flash"
MAX_TEXT = 600  # characters of a message kept in the cookie
MAX_COOKIE = 4 * MAX_TEXT  # its value percent-encoded: longer is not ours, and ignored
ELLIPSIS = "…"
Level = Literal["ok", "error"]


def read(request: Request) -> tuple[str, str] | None:
    """The message left for this page: (``ok`` or ``error``, text), or None."""
    raw = request.cookies.get(COOKIE)
    if not raw or len(raw) > MAX_COOKIE:
        return None
    level, _, text = unquote(raw).partition(":")
    if level not in ("ok", "error") or not text:
        return None
    return level, text


def redirect(request: Request, target: str, *, path: str, level: Level, text: str) -> Response:
    """A 303 to ``target`` carrying ``text`` for the next page under ``path``."""
    response = RedirectResponse(target, status_code=303)
    response.set_cookie(
        COOKIE,
        encoded(level, text),
        max_age=60,
        path=path,
        httponly=True,
        samesite="lax",
        secure=secure(request),
    )
    return response


def encoded(level: Level, text: str) -> str:
    """The cookie's value: ``text`` cut to ``MAX_TEXT`` characters and, encoded, to ``MAX_COOKIE``.

    Cut after encoding, so a message ``read`` would drop (a character of a
    non-Latin script takes 6 or 9 bytes encoded) is shortened instead, at a
    character boundary, ending in an ellipsis.
    """
    value = quote(f"{level}:{text[:MAX_TEXT]}", safe="")
    if len(value) <= MAX_COOKIE and len(text) <= MAX_TEXT:
        return value
    budget = MAX_COOKIE - len(quote(f"{level}:{ELLIPSIS}", safe=""))
    kept: list[str] = []
    for char in text[:MAX_TEXT]:
        budget -= len(quote(char, safe=""))
        if budget < 0:
            break
        kept.append(char)
    return quote(f"{level}:{''.join(kept)}{ELLIPSIS}", safe="")


def shown(request: Request, response: Response, *, path: str) -> Response:
    """``response`` with the message deleted, once the page has shown it."""
    if COOKIE in request.cookies:
        response.delete_cookie(COOKIE, path=path)
    return response
