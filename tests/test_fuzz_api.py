"""Schemathesis over the OpenAPI spec: no 5xx, and every response matches the spec.

Runs in-process over ASGI on a SQLite store, with real API tokens: governance
or security (whichever the body names) for the approval routes, admin for
everything else. Path parameters are either generated or the names of a few
seeded tenants in different states, so requests reach the services and not
only the 404 branch. Bounded: a few dozen examples per operation, no deadline.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import hypothesis.strategies as st
import pytest
import schemathesis
from fastapi import FastAPI
from fastapi.testclient import TestClient
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
    unsupported_method,
)

from tenantops.app import create_app
from tenantops.config import Settings
from tenantops.db import Database
from tenantops.migrations import upgrade
from tests.factories import tenant_body
from tests.servers import bearer, mint_token

MAX_EXAMPLES = 25
# Seeded tenant -> how many lifecycle steps it is taken through (see Fuzzed._seed).
SEEDED = {"fz-requested": 0, "fz-approved": 2, "fz-active": 5, "fz-suspended": 6}
# What the spec promises. Left out on purpose: positive_data_acceptance and
# negative_data_rejection, heuristics that flag deliberate server-side checks
# (a cursor this API never issued, an If-Match that is no ETag, a number
# accepted as a Unix time) rather than broken responses.
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
    unsupported_method,
]


def _token(db: Database, subject: str, *roles: str) -> dict[str, str]:
    return bearer(mint_token(db, subject, *roles))


class Fuzzed:
    """The app under test, its tokens and the tenants seeded in it."""

    def __init__(self, tmp: Path) -> None:
        self.db = Database(f"sqlite:///{tmp / 'fuzz.db'}")
        upgrade(self.db.engine)
        self.app: FastAPI = create_app(Settings(data_dir=tmp, log_json=False), db=self.db)
        self.admin = _token(self.db, "fuzz-admin", "admin")
        self.approver = {
            "governance": _token(self.db, "fuzz-gov", "governance"),
            "security": _token(self.db, "fuzz-sec", "security"),
        }
        self._seed()

    def _seed(self) -> None:
        """Take each seeded tenant as far along the lifecycle as its name says."""
        am = _token(self.db, "fuzz-am", "account_manager")
        ops, qa = _token(self.db, "fuzz-ops", "ops_engineer"), _token(self.db, "fuzz-qa", "qa")
        gov, sec = self.approver["governance"], self.approver["security"]
        lifecycle = [
            ("approvals", {"role": "governance", "decision": "approve"}, gov),
            ("approvals", {"role": "security", "decision": "approve"}, sec),
            ("lifecycle-events", {"event": "start_provisioning"}, ops),
            ("lifecycle-events", {"event": "provisioned"}, ops),
            ("lifecycle-events", {"event": "verified"}, qa),
            ("suspend", {"reason": "fuzz"}, ops),
        ]
        with TestClient(self.app) as client:
            for name, steps in SEEDED.items():
                r = client.post("/api/v1/tenants", json=tenant_body(name=name), headers=am)
                assert r.status_code == 201, r.text
                for action, body, who in lifecycle[:steps]:
                    r = client.post(f"/api/v1/tenants/{name}/{action}", json=body, headers=who)
                    assert r.status_code == 200, r.text

    def headers_for(self, case: schemathesis.Case[Any]) -> dict[str, str]:
        """Governance or security for the decisions, admin for the rest."""
        path = case.operation.path
        if case.method.upper() == "POST" and path.endswith("/approvals"):
            role = case.body.get("role") if isinstance(case.body, dict) else None
            return self.approver["security" if role == "security" else "governance"]
        return self.admin


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fuzzed]:
    target = Fuzzed(tmp_path_factory.mktemp("fuzz"))
    yield target
    target.db.dispose()


def _spec_only_app() -> FastAPI:
    """An app to read the spec from; it never touches its (in-memory) database."""
    return create_app(Settings(log_json=False), db=Database("sqlite://"))


schema = schemathesis.openapi.from_asgi(
    "/openapi.json",
    _spec_only_app(),
    config=schemathesis.Config.from_dict(
        {"generation": {"max-examples": MAX_EXAMPLES, "database": "none"}}
    ),
)


@schema.hook
def flatmap_path_parameters(
    context: schemathesis.HookContext, path_parameters: dict[str, Any] | None
) -> st.SearchStrategy[dict[str, Any] | None]:
    """Half the time, one of the seeded tenants instead of a generated name."""
    if not path_parameters or "tenant" not in path_parameters:
        return st.just(path_parameters)
    seeded = st.sampled_from(sorted(SEEDED)).map(lambda name: {**path_parameters, "tenant": name})
    return st.one_of(st.just(path_parameters), seeded)


@schema.parametrize()
def test_api_conforms_to_its_spec(case: schemathesis.Case[Any], fuzzed: Fuzzed) -> None:
    case.call_and_validate(app=fuzzed.app, headers=fuzzed.headers_for(case), checks=CHECKS)
