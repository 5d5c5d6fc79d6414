"""Opaque cursors of keyset paging over time-ordered ids (``GET /tenants``, ``/runs``).

A cursor is the last id of the previous page, base64url without padding. Only a
canonical UUID decodes: any other string would silently page wrongly, so it is
a 422 naming the ``cursor`` parameter instead.
"""

from __future__ import annotations

import base64
import binascii
import uuid
from collections.abc import Sequence
from typing import Protocol, TypeVar

from tenantops.errors import Unprocessable


class _HasId(Protocol):
    @property
    def id(self) -> str: ...


Row = TypeVar("Row", bound=_HasId)


def encode_cursor(last_id: str) -> str:
    return base64.urlsafe_b64encode(last_id.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> str:
    """The id a cursor of ``encode_cursor`` carries; 422 for anything else."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        last_id = base64.b64decode(padded.encode(), altchars=b"-_", validate=True).decode()
        if str(uuid.UUID(last_id)) != last_id:
            raise ValueError(last_id)
    except (binascii.Error, UnicodeDecodeError, ValueError) as exc:
        raise Unprocessable("the cursor is not one this API issued", param="cursor") from exc
    return last_id


def page(rows: Sequence[Row], limit: int) -> tuple[Sequence[Row], str | None]:
    """One page of ``rows`` fetched with ``limit + 1``, and the cursor of the next if any."""
    if len(rows) > limit:
        return rows[:limit], encode_cursor(rows[limit - 1].id)
    return rows, None
