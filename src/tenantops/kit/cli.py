"""Shared by every ``tenantops`` command that calls a server: options, client, console."""

from __future__ import annotations

import sys
from typing import Annotated

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
