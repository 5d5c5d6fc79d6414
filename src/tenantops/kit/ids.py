"""Identifiers that sort by creation time (UUIDv7-shaped), so keyset paging is stable."""

from __future__ import annotations

import secrets
import uuid

from tenantops.kit.clock import utcnow


def new_id() -> str:
    """A UUIDv7 string: 48-bit millisecond timestamp, then random bits."""
    ms = int(utcnow().timestamp() * 1000)
    rand = secrets.randbits(74)
    value = (ms & ((1 << 48) - 1)) << 80
    value |= 0x7 << 76  # version 7
    value |= ((rand >> 62) & 0xFFF) << 64
    value |= 0b10 << 62  # RFC 4122 variant
    value |= rand & ((1 << 62) - 1)
    return str(uuid.UUID(int=value))
