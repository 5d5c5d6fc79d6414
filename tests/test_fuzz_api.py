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
from tenantops.tenants.lifecycle import TenantState
from tests.conftest import Actors
from tests.flows import tenant_in
from tests.servers import bearer, mint_token

MAX_EXAMPLES = 25
# Seeded tenant -> the lifecycle state it is brought to (see Fuzzed._seed).
SEEDED = {
    "fz-requested": TenantState.REQUESTED,
    "fz-approved": TenantState.APPROVED,
    "fz-active": TenantState.ACTIVE,
    "fz-suspended": TenantState.SUSPENDED,
}
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


class Fuzzed:
    """The app under test, its tokens and the tenants seeded in it."""

    def __init__(self, tmp: Path) -> None:
        self.db = Database(f"sqlite:///{tmp / 'fuzz.db'}")
        upgrade(self.db.engine)
        # The receiver configured, so the fuzzer reaches it (unconfigured it is a
        # deliberate 503, which the fuzzer's server-error check counts against it).
        settings = Settings(
            data_dir=tmp, log_json=False, alerts={"bearer_token": "fuzz-receiver-token"}
        )
        self.app: FastAPI = create_app(settings, db=self.db)
        self.actors = Actors.minted(self._token)
        self._seed()

    def _token(self, subject: str, *roles: str) -> dict[str, str]:
        return bearer(mint_token(self.db, f"fuzz-{subject}", *roles))

    def _seed(self) -> None:
        """Take each seeded tenant as far along the lifecycle as its name says."""
        with TestClient(self.app) as client:
            for name, state in SEEDED.items():
                tenant_in(client, self.actors, state, name=name)

    def headers_for(self, case: schemathesis.Case[Any]) -> dict[str, str]:
        """Governance or security for the decisions, admin for the rest."""
        path = case.operation.path
        if case.method.upper() == "POST" and path.endswith("/approvals"):
            role = case.body.get("role") if isinstance(case.body, dict) else None
            return self.actors.sec if role == "security" else self.actors.gov
        return self.actors.admin


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
