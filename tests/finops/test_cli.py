"""``tenantops finops``: imports with a progress bar, costs, budgets, the ledger, via a server."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tenantops.db import Database
from tests.conftest import invoke
from tests.finops.focusdata import line, make_tenant, tagged, write_csv, write_parquet
from tests.servers import mint_token, serve_process, tenantops_env


@dataclass
class Server:
    url: str
    db: Database


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("finops-cli")
    env = tenantops_env(data_dir=str(tmp), bootstrap_admin="false")
    with serve_process(env, tmp / "server.log") as url:
        db = Database(f"sqlite:///{tmp / 'tenantops.db'}")
        with db.write() as session:
            for name in ("cli-blue", "cli-green"):
                make_tenant(session, name, monthly_budget=100, currency="EUR")
        yield Server(url=url, db=db)
        db.dispose()


@pytest.fixture
def as_finance(server: Server, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TENANTOPS_URL", server.url)
    monkeypatch.setenv("TENANTOPS_TOKEN", mint_token(server.db, "fiona", "finance"))


@pytest.mark.usefixtures("as_finance")
def test_import_prints_the_summary_then_recognises_the_file(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = write_csv(
        tmp_path / "acct-cli.csv",
        [tagged("cli-blue", "30", BillingAccountId="acct-cli"), line(BillingAccountId="acct-cli")],
    )
    first = invoke(capsys, "finops", "import", str(path))
    assert first.code == 0, first
    assert "imported" in first.out
    assert "2 lines of acct-cli 2030-01-01" in first.out
    assert re.search(r"2030-01-01, \d+\.\d\d EUR effective", first.out), first.out  # cents
    assert "unallocated 1 lines" in first.out
    assert "rule tag:tenant: 1 lines" in first.out
    again = invoke(capsys, "finops", "import", str(path))
    assert again.code == 0
    assert again.out.startswith("already imported as")
    listed = invoke(capsys, "finops", "imports")
    assert "acct-cli.csv" in listed.out


@pytest.mark.usefixtures("as_finance")
def test_a_parquet_file_is_recognised_by_its_content(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = write_parquet(
        tmp_path / "export.bin", [tagged("cli-green", "2", BillingAccountId="acct-pq")]
    )
    result = invoke(capsys, "finops", "import", str(path))
    assert result.code == 0, result
    assert "1 lines of acct-pq" in result.out


@pytest.mark.usefixtures("as_finance")
def test_a_bad_file_is_one_error_line_and_a_failing_exit(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = write_csv(
        tmp_path / "bad.csv", [tagged("cli-blue", BilledCost="lots", BillingAccountId="bad")]
    )
    result = invoke(capsys, "finops", "import", str(path))
    assert result.code == 1
    assert result.out == ""
    lines = result.err.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("error: ")
    assert "nothing was imported" in lines[0]


@pytest.mark.usefixtures("as_finance")
def test_budget_costs_and_ledger(capsys: pytest.CaptureFixture[str]) -> None:
    set_ = invoke(capsys, "finops", "budget", "set", "cli-green", "80", "--thresholds", "50,100")
    assert set_.code == 0, set_
    assert "budget of cli-green: 80.00 EUR, thresholds 50,100" in set_.out
    costs = invoke(capsys, "finops", "costs", "--month", "2030-01", "--json")
    assert costs.code == 0, costs
    assert '"tenant_name": "cli-green"' in costs.out
    ledger = invoke(capsys, "finops", "ledger", "cli-green")
    assert ledger.code == 0, ledger
    assert "budget" in ledger.out
    assert "fiona" in ledger.out
    refused = invoke(capsys, "finops", "budget", "set", "cli-green", "-5")
    assert refused.code != 0


def test_a_tenant_owner_cannot_set_budgets(
    server: Server, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("TENANTOPS_URL", server.url)
    monkeypatch.setenv(
        "TENANTOPS_TOKEN", mint_token(server.db, "olga", "tenant_owner", tenant="cli-blue")
    )
    result = invoke(capsys, "finops", "budget", "set", "cli-blue", "1000")
    assert result.code == 1
    assert "403" in result.err or "Not allowed" in result.err
