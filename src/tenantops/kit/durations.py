"""Parse short durations such as ``90m``, ``8h``, ``30d``."""

from __future__ import annotations

import re
from datetime import timedelta

_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_duration(text: str) -> timedelta:
    """``8h`` -> 8 hours; raises ``ValueError`` with a readable message."""
    match = re.fullmatch(r"\s*(\d{1,6})\s*([smhdw])\s*", text)
    if match is None:
        raise ValueError(f"{text!r} is not a duration like 90m, 8h or 30d")
    value = int(match.group(1))
    if value == 0:
        raise ValueError("the duration must be positive")
    return timedelta(**{_UNITS[match.group(2)]: value})
