"""The RFC 9457 problem body, as an OpenAPI-documented model."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict


class Problem(BaseModel):
    """RFC 9457 problem details; extra members (e.g. ``current_state``) may follow."""

    model_config = ConfigDict(extra="allow")

    type: str
    title: str
    status: int
    detail: str
    instance: str | None = None


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` entries for problem bodies with the given statuses."""
    ref = {"$ref": "#/components/schemas/Problem"}
    return {
        status: {
            "model": Problem,
            "description": "Problem details (RFC 9457)",
            "content": {"application/problem+json": {"schema": ref}},
        }
        for status in statuses
    }
