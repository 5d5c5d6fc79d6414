"""A receiver with a bearer token, an HMAC secret and the test playbooks configured."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from tenantops.alerts.settings import AlertsSettings
from tenantops.app import create_app
from tenantops.config import Settings
from tenantops.db import Database
from tests.conftest import Actors
from tests.factories import tenant_body

RUNBOOKS = Path(__file__).resolve().parent / "runbooks"
TOKEN = "alertmanager-test-token"
HMAC_SECRET = "relay-test-secret"
AM = {"Authorization": f"Bearer {TOKEN}"}


def configured(settings: Settings, **alerts: object) -> Settings:
    values: dict[str, object] = {
        "bearer_token": SecretStr(TOKEN),
        "hmac_secret": SecretStr(HMAC_SECRET),
        "runbooks_dir": RUNBOOKS,
        **alerts,
    }
    return settings.model_copy(update={"alerts": AlertsSettings.model_validate(values)})


@pytest.fixture
def receiver(db: Database, settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(configured(settings), db=db), raise_server_exceptions=False) as c:
        yield c


@pytest.fixture
def tenant(receiver: TestClient, actors: Actors) -> dict[str, str]:
    """A tenant (just requested) the alerts can name."""
    r = receiver.post("/api/v1/tenants", json=tenant_body(), headers=actors.am)
    assert r.status_code == 201, r.text
    body = r.json()
    return {"id": body["id"], "name": body["name"]}
