"""Shared by every ``tenantops`` command that calls a server: options, client, console."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import httpx
import typer
from rich.console import Console

from tenantops.kit.client import ApiClient, ClientError

Url = Annotated[str, typer.Option("--url", envvar="TENANTOPS_URL", help="Server URL")]
Token = Annotated[
    str | None,
    typer.Option("--token", envvar="TENANTOPS_TOKEN", help="API or OIDC token", show_default=False),
]
Output = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table")]
DEFAULT_URL = "http://127.0.0.1:8080"
PIPE_WIDTH = 1000  # columns a table may use when stdout is not a terminal
# A report of 10,000 tenants is rendered on request: minutes, not seconds.
DOWNLOAD_TIMEOUT = httpx.Timeout(15.0, read=600.0)


def terminal() -> Console:
    """Rich fits a terminal; into a pipe or file every value is printed whole.

    Rich assumes 80 columns when stdout is not a terminal and would cut names
    and states short with an ellipsis, which breaks ``grep`` and ``awk``.
    """
    return Console() if sys.stdout.isatty() else Console(width=PIPE_WIDTH)


def connect(url: str, token: str | None) -> ApiClient:
    """A client for ``url``; refuses early what can only fail (no token, not an HTTP URL)."""
    if not url.startswith(("http://", "https://")):
        raise typer.BadParameter(
            f"{url!r} is not an http:// or https:// URL", param_hint="'--url' / TENANTOPS_URL"
        )
    if not token:
        raise ClientError(
            "no token: pass --token or set TENANTOPS_TOKEN "
            "(create one with: tenantops tokens create)"
        )
    return ApiClient(url, token)


def download(
    url: str, token: str | None, path: str, params: dict[str, str], fallback: str
) -> tuple[bytes, str]:
    """The bytes of ``GET path`` and the file name the server gave (else ``fallback``).

    Problems become one ``ClientError`` line, as every other command's.
    """
    connect(url, token).close()  # the same early refusals as every other command
    try:
        with httpx.Client(
            base_url=url.rstrip("/"),
            headers={"Authorization": f"Bearer {token}"},
            timeout=DOWNLOAD_TIMEOUT,
        ) as http:
            response = http.get(path, params=params)
    except httpx.HTTPError as exc:
        raise ClientError(f"cannot reach tenantops at {url}: {exc}") from exc
    if response.status_code >= 400:
        try:
            body = response.json()
            message = f"{body.get('title') or response.status_code}: {body['detail']}"
        except (ValueError, KeyError, TypeError, AttributeError):
            message = f"HTTP {response.status_code}: {response.text[:200]}"
        raise ClientError(message, response.status_code)
    disposition = response.headers.get("content-disposition", "")
    name = disposition.partition('filename="')[2].rstrip('"') or fallback
    return response.content, Path(name).name
