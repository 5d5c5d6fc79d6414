"""HTTP routes of the alerts domain."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter()
