"""The approvals inbox: what waits for the viewer."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(include_in_schema=False)
