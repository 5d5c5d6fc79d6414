"""ETag / If-Match helpers for optimistic concurrency on versioned resources."""

from __future__ import annotations

from tenantops.errors import Unprocessable


def etag(version: int) -> str:
    return f'"{version}"'


def parse_if_match(header: str | None) -> int | None:
    """The version an ``If-Match`` header names; ``None`` for absent or ``*``."""
    if header is None or header.strip() == "*":
        return None
    value = header.strip()
    if value.startswith("W/"):
        value = value[2:]
    value = value.strip('"')
    # ASCII digits only: str.isdigit() also accepts "²", which int() refuses.
    if not (value.isascii() and value.isdigit()):
        raise Unprocessable(
            'If-Match must be the ETag of the tenant as last read, e.g. "3"',
            param="If-Match",
        )
    return int(value)
