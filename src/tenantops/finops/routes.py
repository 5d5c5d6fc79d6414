"""HTTP routes of the finops domain."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter()
