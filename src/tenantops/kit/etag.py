"""ETag / If-Match helpers for optimistic concurrency on versioned resources."""

from __future__ import annotations

from tenantops.errors import Unprocessable


def etag(version: int) -> str:
    return f'"{version}"'


def parse_if_match(header: str | None, *, noun: str = "tenant") -> int | None:
    """The version an ``If-Match`` header names; ``None`` for absent or ``*``.

    ``noun`` is what the ETag is of, for the 422 a malformed header gets.
    """
    if header is None or header.strip() == "*":
        return None
    value = header.strip()
    if value.startswith("W/"):
        value = value[2:]
    value = value.strip('"')
    # ASCII digits only: str.isdigit() also accepts "²", which int() refuses.
    if not (value.isascii() and value.isdigit()):
        raise Unprocessable(
            f'If-Match must be the ETag of the {noun} as last read, e.g. "3"',
            param="If-Match",
        )
    return int(value)
