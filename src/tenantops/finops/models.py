"""Tables of the finops domain."""

from __future__ import annotations
