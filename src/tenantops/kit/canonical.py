"""Canonical JSON: the one byte form that hashes and signatures are computed over."""

from __future__ import annotations

import json
from datetime import datetime
from decimal import Decimal
from typing import Any


def _default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"not JSON-serialisable: {type(value).__name__}")


def canonical_json(value: Any) -> str:
    """Sorted keys, no whitespace, UTF-8 kept; Decimals as strings."""
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=_default
    )


def jsonable(value: Any) -> Any:
    """``value`` as plain JSON types (what a JSON column will give back).

    NaN and the infinities become ``None``: a JSON column stores them as
    ``null`` (``db.json_text``), and a hash over this value must match what the
    column gives back.
    """
    if type(value) is dict and not value:
        return {}  # most audit entries' ``changes``: no round trip for nothing
    return json.loads(canonical_json(value), parse_constant=_no_number)


def _no_number(_constant: str) -> None:
    return None
