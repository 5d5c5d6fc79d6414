"""Runbook runs: the list and a run's live detail."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(include_in_schema=False)
