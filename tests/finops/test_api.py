"""The finops JSON API: uploads, costs, budgets, the ledger; who may see what."""

from __future__ import annotations

import io
from datetime import UTC, datetime
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tenantops.db import Database
from tests.conftest import Clock, TokenFactory
from tests.finops.focusdata import line, make_tenant, tagged, write_csv, write_parquet

Headers = dict[str, str]


@pytest.fixture
def tenants(db: Database) -> dict[str, str]:
    with db.write() as session:
        return {
            name: make_tenant(session, name, monthly_budget=100, currency="EUR")
            for name in ("blue", "green")
        }


@pytest.fixture
def finance(auth: TokenFactory) -> Headers:
    return auth("fiona", "finance")


def _upload(client: TestClient, who: Headers, path: Path, content_type: str = "text/csv") -> object:
    return client.post(
        "/api/v1/finops/imports",
        content=path.read_bytes(),
        headers={**who, "content-type": content_type},
        params={"filename": path.name},
    )


def test_upload_answers_the_summary_and_a_repeat_is_recognised(
    client: TestClient, finance: Headers, tenants: dict[str, str], tmp_path: Path
) -> None:
    path = write_csv(tmp_path / "jan.csv", [tagged("blue", "60"), line(EffectiveCost="5")])
    first = _upload(client, finance, path)
    assert first.status_code == 201, first.text
    body = first.json()
    assert body["rows"] == 2
    assert body["unallocated_rows"] == 1
    assert body["unallocated_cost"] == "5.000000000000"
    assert body["filename"] == "jan.csv"
    assert body["duplicate"] is False
    again = _upload(client, finance, path)
    assert again.status_code == 200
    assert again.json()["id"] == body["id"]
    assert again.json()["duplicate"] is True
    listed = client.get("/api/v1/finops/imports", headers=finance).json()
    assert [i["id"] for i in listed["items"]] == [body["id"]]


def test_multipart_and_parquet_uploads_work(
    client: TestClient, finance: Headers, tenants: dict[str, str], tmp_path: Path
) -> None:
    parquet = write_parquet(tmp_path / "jan.parquet", [tagged("blue", "1.5")])
    raw = _upload(client, finance, parquet, "application/vnd.apache.parquet")
    assert raw.status_code == 201, raw.text
    assert raw.json()["format"] == "parquet"
    csv_file = write_csv(tmp_path / "feb.csv", [tagged("green", "2", BillingAccountId="b")])
    form = client.post(
        "/api/v1/finops/imports",
        files={"file": ("feb.csv", io.BytesIO(csv_file.read_bytes()), "text/csv")},
        headers=finance,
    )
    assert form.status_code == 201, form.text
    assert form.json()["filename"] == "feb.csv"
    assert form.json()["allocated_rows"] == 1


def test_a_bad_file_is_a_problem_listing_its_lines(
    client: TestClient, finance: Headers, tenants: dict[str, str], tmp_path: Path
) -> None:
    path = write_csv(
        tmp_path / "bad.csv", [tagged("blue"), tagged("blue", BilledCost="x"), line(Tags="nope")]
    )
    response = _upload(client, finance, path)
    assert response.status_code == 422
    assert response.headers["content-type"].startswith("application/problem+json")
    problem = response.json()
    assert problem["type"].endswith("/focus-invalid-rows")
    assert problem["error_count"] == 2
    assert [(e["line"], e["column"]) for e in problem["errors"]] == [
        (3, "BilledCost"),
        (4, "Tags"),
    ]
    assert client.get("/api/v1/finops/imports", headers=finance).json()["items"] == []
    missing = client.post(
        "/api/v1/finops/imports",
        content=b"BilledCost,Tags\n1,{}\n",
        headers={**finance, "content-type": "text/csv"},
    )
    assert missing.status_code == 422
    assert "BillingAccountId" in missing.json()["missing_columns"]
    empty = client.post(
        "/api/v1/finops/imports", content=b"", headers={**finance, "content-type": "text/csv"}
    )
    assert empty.status_code == 422


def test_only_finance_and_admin_import(
    client: TestClient, auth: TokenFactory, tenants: dict[str, str], tmp_path: Path
) -> None:
    path = write_csv(tmp_path / "jan.csv", [tagged("blue")])
    assert _upload(client, auth("gus", "governance"), path).status_code == 403
    assert _upload(client, auth("o", "tenant_owner", tenant="blue"), path).status_code == 403
    assert _upload(client, {}, path).status_code == 401
    assert _upload(client, auth("root", "admin"), path).status_code == 201


def test_costs_per_tenant_and_for_all(
    client: TestClient,
    finance: Headers,
    auth: TokenFactory,
    tenants: dict[str, str],
    tmp_path: Path,
    clock: Clock,
) -> None:
    clock.now = datetime(2030, 1, 11, tzinfo=UTC)
    path = write_csv(
        tmp_path / "jan.csv",
        [
            tagged("blue", "60", ServiceName="Compute"),
            tagged("blue", "25"),
            line(EffectiveCost="3"),
        ],
    )
    assert _upload(client, finance, path).status_code == 201
    blue = client.get("/api/v1/tenants/blue/costs", headers=finance).json()
    assert blue["month"] == "2030-01"
    assert (blue["cost"], blue["budget"], blue["ratio"]) == ("85.00", "100.00", "0.8500")
    assert blue["forecast"] == "263.50"
    assert blue["crossed"] == [50, 80]
    assert blue["top_services"][0] == {"service": "Compute", "cost": "60.00"}  # cents, as cost
    assert blue["days"] == [{"day": "2030-01-01", "currency": "EUR", "cost": "85.000000000000"}]
    overview = client.get(
        "/api/v1/finops/costs", params={"month": "2030-01"}, headers=auth("gus", "governance")
    ).json()
    rows = {r["tenant_name"]: r for r in overview["items"]}
    assert rows["blue"]["crossed"] == 80
    assert rows["green"]["cost"] == "0.00"
    assert overview["unallocated"] == {"EUR": "3.000000000000"}
    assert overview["total"] == {"EUR": "88.000000000000"}
    paged = client.get("/api/v1/finops/costs", params={"limit": 1}, headers=finance).json()
    assert len(paged["items"]) == 1
    assert paged["next_cursor"]
    bad = client.get("/api/v1/finops/costs", params={"month": "2030-1"}, headers=finance)
    assert bad.status_code == 422


def test_a_tenant_owner_sees_only_their_own_tenant(
    client: TestClient, auth: TokenFactory, finance: Headers, tenants: dict[str, str]
) -> None:
    owner = auth("olga", "tenant_owner", tenant=tenants["blue"])
    assert client.get("/api/v1/tenants/blue/costs", headers=owner).status_code == 200
    assert client.get("/api/v1/tenants/blue/ledger", headers=owner).status_code == 200
    assert client.get("/api/v1/tenants/blue/budget", headers=owner).status_code == 200
    for path in ("costs", "ledger", "budget"):
        other = client.get(f"/api/v1/tenants/green/{path}", headers=owner)
        assert other.status_code == 404, path
    assert client.get("/api/v1/finops/costs", headers=owner).status_code == 403
    assert client.get("/api/v1/finops/imports", headers=owner).status_code == 403
    put = client.put("/api/v1/tenants/blue/budget", json={"amount": "1"}, headers=owner)
    assert put.status_code == 403
    ops = auth("oli", "ops_engineer")
    assert client.get("/api/v1/tenants/blue/costs", headers=ops).status_code == 403


def test_budget_put_get_with_if_match_and_the_ledger_shows_it(
    client: TestClient, finance: Headers, tenants: dict[str, str]
) -> None:
    read = client.get("/api/v1/tenants/blue/budget", headers=finance)
    assert read.json()["version"] == 0
    assert read.headers["etag"] == '"0"'
    put = client.put(
        "/api/v1/tenants/blue/budget",
        json={"amount": "250.00", "thresholds": [80, 100]},
        headers={**finance, "if-match": '"0"'},
    )
    assert put.status_code == 200, put.text
    assert put.json()["amount"] == "250.00"
    assert put.json()["currency"] == "EUR"
    assert put.headers["etag"] == '"1"'
    stale = client.put(
        "/api/v1/tenants/blue/budget",
        json={"amount": "1"},
        headers={**finance, "if-match": '"0"'},
    )
    assert stale.status_code == 412
    malformed = client.put(
        "/api/v1/tenants/blue/budget", json={"amount": "1"}, headers={**finance, "if-match": "v1"}
    )
    assert malformed.status_code == 422
    assert malformed.json()["detail"].startswith("If-Match must be the ETag of the budget")
    invalid = client.put("/api/v1/tenants/blue/budget", json={"amount": "-5"}, headers=finance)
    assert invalid.status_code == 422
    entries = client.get("/api/v1/tenants/blue/ledger", headers=finance).json()["items"]
    assert [(e["kind"], e["amount"], e["actor"]) for e in entries] == [
        ("budget", "250.000000000000", "fiona")
    ]
    budget_only = client.get(
        "/api/v1/tenants/blue/ledger", params={"kind": "cost"}, headers=finance
    ).json()
    assert budget_only["items"] == []


def test_a_month_outside_four_digit_years_is_a_422_not_a_500() -> None:
    from tenantops.errors import Unprocessable
    from tenantops.finops.costs import Month

    for text in ("0000-01", "0999-12", "9999-12", "2026-13"):
        with pytest.raises(Unprocessable, match="month must be a year and a month 01-12"):
            Month.parse(text)
    assert Month.parse("9998-12").label == "9998-12"
