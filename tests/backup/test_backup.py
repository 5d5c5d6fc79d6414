"""``tenantops backup``: a control plane backed up and restored, on either store, into the other.

The source is real: tenants onboarded and suspended by the worker on the local
drivers (GitOps commits, evidence files), a FOCUS import (decimals), tokens.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.script import ScriptDirectory
from fastapi.testclient import TestClient
from pydantic import SecretStr
from sqlalchemy import Column, ForeignKey, Integer, MetaData, Table, inspect, select, text

from tenantops.app import create_app
from tenantops.audit import service as audit
from tenantops.audit.models import AuditEntry
from tenantops.backup import archive, database
from tenantops.backup.errors import BackupError
from tenantops.config import HealthSettings, Settings, WorkerSettings
from tenantops.db import Base, Database
from tenantops.drivers.gitops.local import LocalGitRepo
from tenantops.finops.models import LedgerEntry
from tenantops.itil import service as itil
from tenantops.itil.states import Kind
from tenantops.migrations import alembic_config, current_revision, head_revision, upgrade
from tenantops.wiring import build_worker
from tests.conftest import (
    Actors,
    CliRunner,
    Clock,
    create_pg_database,
    drop_pg_database,
    invoke,
)
from tests.factories import tenant_body
from tests.finops.focusdata import tagged, write_csv
from tests.flows import approve, drain, ok, request_tenant, suspend
from tests.itil.helpers import OPS
from tests.servers import HOST, free_port, in_thread

COST = "10.123456789012"
ACTIVE_WITHIN = 120  # rounds of draining (about a second each) an onboarding may take


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    # The same data directory the ``cli`` fixture gives the command line; the port
    # the built-in health probe of the ``served`` app listens on.
    return Settings(
        data_dir=tmp_path / "data",
        log_json=False,
        worker=WorkerSettings(in_process=False),
        host=HOST,
        port=free_port(),
        # A generous probe timeout: on a loaded CI machine the in-thread server is slow.
        health=HealthSettings(timeout_seconds=60),
    )


@pytest.fixture
def served(db: Database, settings: Settings) -> Iterator[None]:
    """This app on its port, so the onboarding's health checks reach a real probe."""
    with in_thread(create_app(settings, db=db), settings.port):
        yield


@pytest.fixture
def source(
    client: TestClient, actors: Actors, db: Database, settings: Settings, served: None
) -> Database:
    """Two tenants onboarded through the worker, one suspended, a month of costs imported."""
    worker = build_worker(settings, db)

    def settled(name: str) -> None:
        # A health check that timed out on a loaded machine is retried after its
        # backoff: keep draining until the tenant's runs are done (bounded, not timed).
        for _ in range(ACTIVE_WITHIN):
            drain(worker)
            runs = ok(client.get("/api/v1/runs", params={"tenant": name}, headers=actors.admin))
            if all(r["status"] == "succeeded" for r in runs["items"]):
                return
            time.sleep(1)
        raise AssertionError(f"the runs of {name} did not finish: {runs['items']}")

    try:
        for name in ("acme", "globex"):
            request_tenant(client, actors.am, name=name)
            drain(worker)
            approve(client, name, "governance", actors.gov)
            approve(client, name, "security", actors.sec)
            settled(name)
        ok(suspend(client, "globex", actors.ops))
        settled("globex")
    finally:
        worker.stop()
    csv = write_csv(settings.data_dir.parent / "jan.csv", [tagged("acme", COST)])
    imported = client.post(
        "/api/v1/finops/imports",
        content=csv.read_bytes(),
        headers={**actors.admin, "content-type": "text/csv"},
        params={"filename": "jan.csv"},
    )
    assert imported.status_code == 201, imported.text
    return db


@pytest.fixture
def target(db: Database, tmp_path: Path) -> Iterator[tuple[Database, Settings]]:
    """An empty database of the *other* store and an empty data directory."""
    data = tmp_path / "restored"
    if db.is_sqlite:
        url = create_pg_database()
    else:
        data.mkdir()
        url = f"sqlite:///{data / 'tenantops.db'}"
    restored = Database(url)
    yield restored, Settings(database_url=url, data_dir=data, log_json=False)
    restored.dispose()
    if db.is_sqlite:
        drop_pg_database(url)


def run_as(settings: Settings, capsys: pytest.CaptureFixture[str], *argv: str) -> Any:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TENANTOPS_DATABASE_URL", settings.resolved_database_url())
        mp.setenv("TENANTOPS_DATA_DIR", str(settings.data_dir))
        return invoke(capsys, *argv)


def rows(db: Database, scratch: Path) -> dict[str, list[Any]]:
    """Every table's rows as the backup writes them: the state to compare."""
    conn = database.snapshot(db.engine)
    try:
        entries = database.dump(conn, scratch, lambda _m: None)
    finally:
        conn.close()
    return {
        e.name: [json.loads(line) for line in (scratch / e.member).read_text().splitlines()]
        for e in entries
    }


def test_a_backup_restores_into_the_other_store_whole(
    source: Database,
    settings: Settings,
    target: tuple[Database, Settings],
    cli: CliRunner,
    capsys: pytest.CaptureFixture[str],
    actors: Actors,
    tmp_path: Path,
) -> None:
    backup = tmp_path / "b.tar.gz"
    made = cli("backup", "create", "-o", str(backup))
    assert made.code == 0, made.err
    assert f"wrote {backup}" in made.out
    digest = hashlib.sha256(backup.read_bytes()).hexdigest()
    assert f"sha256 {digest}" in made.out
    assert "table audit_log:" in made.err  # progress, on stderr

    checked = cli("backup", "verify", str(backup))
    assert checked.code == 0, checked.err
    assert "backup intact" in checked.out

    restored_db, restored = target
    done = run_as(restored, capsys, "backup", "restore", str(backup))
    assert done.code == 0, done.err
    assert "audit trail of" in done.out

    # Every row, as it was (one more audit entry: the restore itself).
    before, after = rows(source, tmp_path / "before"), rows(restored_db, tmp_path / "after")
    assert "control_plane.restored" in after["audit_log"].pop()
    assert after.pop("audit_head") != before.pop("audit_head")
    assert after == before
    with restored_db.read() as s:
        entry = s.execute(select(AuditEntry).order_by(AuditEntry.seq.desc())).scalars().first()
        assert entry is not None
        assert entry.action == "control_plane.restored"
        assert entry.detail["sha256"] == digest
        assert entry.actor.startswith("cli:")
        assert audit.verify(s).ok
        # Decimals keep their digits across stores.
        costs = s.execute(select(LedgerEntry.effective_cost)).scalars().all()
        assert Decimal(COST) in costs

    # The data directory's files and the GitOps repository came along.
    kept = {p.relative_to(settings.data_dir) for p in settings.data_dir.rglob("*.json")}
    assert any(p.parts[0] == "evidence" for p in kept)  # the suspension's evidence bundle
    for relative in kept:
        assert (restored.data_dir / relative).read_bytes() == (
            settings.data_dir / relative
        ).read_bytes()
    original = LocalGitRepo(settings.resolved_gitops_path())
    copy = LocalGitRepo(restored.resolved_gitops_path())
    assert copy.head() == original.head()
    assert copy.log() == original.log()
    assert copy.read() == original.read()

    # The restored control plane answers as the old one did, to the same tokens.
    with TestClient(create_app(restored, db=restored_db)) as api:
        assert ok(api.get("/api/v1/tenants/acme", headers=actors.am))["state"] == "active"
        assert ok(api.get("/api/v1/tenants/globex", headers=actors.am))["state"] == "suspended"
        # A new row gets a fresh id after the restored ones (sequences moved on).
        again = api.post(
            "/api/v1/finops/imports",
            content=write_csv(tmp_path / "feb.csv", [tagged("acme", "1")]).read_bytes(),
            headers={**actors.admin, "content-type": "text/csv"},
            params={"filename": "feb.csv"},
        )
        assert again.status_code == 201, again.text


def test_the_snapshot_holds_while_writers_commit(
    source: Database, settings: Settings, actors: Actors, client: TestClient, tmp_path: Path
) -> None:
    """A change committed between two tables' dumps is in none of them."""
    from tenantops.backup import service

    def write_meanwhile(_message: str) -> None:
        # An audited write: a new audit entry and a new head, between two dumps.
        body = tenant_body(name=f"late{len(seen)}")
        assert client.post("/api/v1/tenants", json=body, headers=actors.am).status_code == 201
        seen.append(_message)

    seen: list[str] = []
    written = service.create(settings, source, tmp_path / "b.tar.gz", progress=write_meanwhile)
    assert seen
    checked = service.verify(written.path)
    assert checked.audit_entries == written.manifest.audit_entries


def test_every_table_of_the_schema_is_backed_up_or_left_out_on_purpose(db: Database) -> None:
    with db.engine.connect() as conn:
        dumped = {t.name for t in database.tables(conn)}
    declared = {t.name for t in Base.metadata.tables.values()}
    assert dumped | (database.EXCLUDED - {"alembic_version"}) == declared


def test_a_backup_of_an_older_schema_restores_and_is_migrated_up(
    source: Database,
    settings: Settings,
    target: tuple[Database, Settings],
    capsys: pytest.CaptureFixture[str],
    actors: Actors,
    tmp_path: Path,
) -> None:
    from tenantops.backup import service

    scripts = ScriptDirectory.from_config(alembic_config(source.engine))
    head = scripts.get_current_head()
    assert head is not None
    older = scripts.get_revision(head).down_revision
    assert isinstance(older, str)
    command.downgrade(alembic_config(source.engine), older)
    try:
        written = service.create(settings, source, tmp_path / "old.tar.gz")
    finally:
        upgrade(source.engine)  # the session's other tests share this database
    assert written.manifest.schema_revision == older

    restored_db, restored = target
    done = run_as(restored, capsys, "backup", "restore", str(written.path))
    assert done.code == 0, done.err
    assert f"schema {older} upgraded to {head}" in done.err
    assert current_revision(restored_db.engine) == head
    with restored_db.read() as s:
        assert audit.verify(s).ok
        entry = s.execute(select(AuditEntry).order_by(AuditEntry.seq.desc())).scalars().first()
        assert entry is not None
        assert entry.detail["schema_revision"] == older
    with TestClient(create_app(restored, db=restored_db)) as api:
        assert ok(api.get("/api/v1/tenants/acme", headers=actors.am))["state"] == "active"


# ------------------------------------------------------------------ refusals


@pytest.fixture
def backup(source: Database, settings: Settings, tmp_path: Path) -> Path:
    from tenantops.backup import service

    return service.create(settings, source, tmp_path / "b.tar.gz").path


def _empty_sqlite(tmp_path: Path) -> Settings:
    """An empty data directory with its SQLite database (the environment may name another)."""
    data = tmp_path / "fresh"
    data.mkdir()
    return Settings(
        data_dir=data, database_url=SecretStr(f"sqlite:///{data / 'tenantops.db'}"), log_json=False
    )


def _untouched(settings: Settings) -> None:
    """The empty data directory of ``_empty_sqlite`` is as empty as it was: not even the
    SQLite file the restore created is left, nor its journals or a staging folder."""
    assert list(settings.data_dir.iterdir()) == []


def _rewrite(backup: Path, out: Path, change: Any) -> Path:
    """``backup`` with its members passed through ``change(name, bytes, manifest)``."""
    with tarfile.open(backup, "r:gz") as tar:
        members = {m.name: tar.extractfile(m).read() for m in tar if m.isfile()}  # type: ignore[union-attr]
    manifest = json.loads(members.pop(archive.MANIFEST))
    members = change(members, manifest)
    with tarfile.open(out, "w:gz") as tar:
        for name, body in [(archive.MANIFEST, json.dumps(manifest).encode()), *members.items()]:
            info = tarfile.TarInfo(name)
            info.size = len(body)
            tar.addfile(info, io.BytesIO(body))
    return out


def test_a_restore_needs_an_empty_database_and_data_directory(
    backup: Path, db: Database, settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    live = settings.model_copy(update={"database_url": SecretStr(db.url)})
    used = run_as(live, capsys, "backup", "restore", str(backup))
    assert used.code == 1
    assert used.err.startswith("error: the database already holds the tenantops schema")
    assert len(used.err.strip().splitlines()) == 1


def test_a_file_in_the_way_stops_the_restore_before_anything_changes(
    backup: Path, tmp_path: Path, settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    fresh = _empty_sqlite(tmp_path)
    evidence = next(settings.data_dir.rglob("evidence/*/*.json")).relative_to(settings.data_dir)
    (fresh.data_dir / evidence).parent.mkdir(parents=True)
    (fresh.data_dir / evidence).write_text("mine")
    result = run_as(fresh, capsys, "backup", "restore", str(backup))
    assert result.code == 1
    assert "exists already: restore into an empty data directory" in result.err
    assert (fresh.data_dir / evidence).read_text() == "mine"
    # The SQLite file the restore opened to check it was empty is gone again.
    assert sorted(p.name for p in fresh.data_dir.iterdir()) == [evidence.parts[0]]


def test_an_altered_member_is_named_and_nothing_is_restored(
    backup: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], cli: CliRunner
) -> None:
    def alter(members: dict[str, bytes], _manifest: dict[str, Any]) -> dict[str, bytes]:
        members["tables/tenants.jsonl"] = members["tables/tenants.jsonl"].replace(b"acme", b"acmf")
        return members

    altered = _rewrite(backup, tmp_path / "altered.tar.gz", alter)
    checked = cli("backup", "verify", str(altered))
    assert checked.code == 1
    assert "tables/tenants.jsonl does not match its manifest" in checked.err
    fresh = _empty_sqlite(tmp_path)
    result = run_as(fresh, capsys, "backup", "restore", str(altered))
    assert result.code == 1
    _untouched(fresh)


def test_an_edit_with_matching_digests_is_caught_by_the_audit_chain_and_rolled_back(
    backup: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], cli: CliRunner
) -> None:
    def forge(members: dict[str, bytes], manifest: dict[str, Any]) -> dict[str, bytes]:
        name = "tables/audit_log.jsonl"
        members[name] = members[name].replace(b'"amy"', b'"eve"', 1)
        entry = next(t for t in manifest["tables"] if t["member"] == name)
        entry["size"] = len(members[name])
        entry["sha256"] = hashlib.sha256(members[name]).hexdigest()
        return members

    forged = _rewrite(backup, tmp_path / "forged.tar.gz", forge)
    checked = cli("backup", "verify", str(forged))
    assert checked.code == 1
    assert "the backup's audit trail is broken at entry" in checked.err
    fresh = _empty_sqlite(tmp_path)
    result = run_as(fresh, capsys, "backup", "restore", str(forged))
    assert result.code == 1
    assert "audit trail is broken" in result.err
    _untouched(fresh)  # the rows were loaded, then rolled back, then the schema dropped


def test_a_member_the_manifest_does_not_name_is_refused(
    backup: Path, tmp_path: Path, cli: CliRunner
) -> None:
    def smuggle(members: dict[str, bytes], _manifest: dict[str, Any]) -> dict[str, bytes]:
        return {**members, "../../etc/cron.d/evil": b"* * * * * root true\n"}

    smuggled = _rewrite(backup, tmp_path / "smuggled.tar.gz", smuggle)
    checked = cli("backup", "verify", str(smuggled))
    assert checked.code == 1
    assert "'../../etc/cron.d/evil' is not in its manifest" in checked.err


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"not a tarball", "is not a readable .tar.gz"),
        (None, "no such file"),
    ],
)
def test_a_file_that_is_no_backup_is_one_line(
    tmp_path: Path, cli: CliRunner, content: bytes | None, message: str
) -> None:
    path = tmp_path / "x.tar.gz"
    if content is not None:
        path.write_bytes(content)
    result = cli("backup", "verify", str(path))
    assert result.code == 1
    assert message in result.err
    assert len(result.err.strip().splitlines()) == 1


def test_a_backup_of_a_schema_this_version_does_not_know_names_the_version_that_wrote_it(
    backup: Path, tmp_path: Path, cli: CliRunner
) -> None:
    def newer(members: dict[str, bytes], manifest: dict[str, Any]) -> dict[str, bytes]:
        manifest["schema_revision"] = "9999"
        manifest["tenantops_version"] = "9.9.9"
        return members

    result = cli("backup", "verify", str(_rewrite(backup, tmp_path / "new.tar.gz", newer)))
    assert result.code == 1
    assert "does not know: restore it with tenantops 9.9.9 or newer" in result.err


def test_a_manifest_that_names_the_wrong_schema_is_refused_and_leaves_nothing(
    backup: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    def wrong(members: dict[str, bytes], manifest: dict[str, Any]) -> dict[str, bytes]:
        manifest["schema_revision"] = "0001"
        return members

    fresh = _empty_sqlite(tmp_path)
    result = run_as(
        fresh, capsys, "backup", "restore", str(_rewrite(backup, tmp_path / "w", wrong))
    )
    assert result.code == 1
    assert "its schema revision has not" in result.err
    _untouched(fresh)


def test_create_keeps_no_secret_and_never_overwrites(
    source: Database, settings: Settings, cli: CliRunner, tmp_path: Path
) -> None:
    key = settings.data_dir / "events-signing.key"
    key.write_text("k" * 64)
    (settings.data_dir / "tenantops-backup-20200101T000000Z.tar.gz").write_bytes(b"older")
    backup = tmp_path / "b.tar.gz"
    made = cli("backup", "create", "-o", str(backup))
    assert made.code == 0, made.err
    assert f"the webhook signing key {key} is not in the backup" in made.err
    with tarfile.open(backup) as tar:
        names = tar.getnames()
    assert not any("signing" in n or n.endswith(".db") for n in names)
    assert not any(n.startswith("files/tenantops-backup-") for n in names)
    again = cli("backup", "create", "-o", str(backup))
    assert again.code == 1
    assert "exists already" in again.err


def test_an_empty_control_plane_backs_up_and_restores(
    db: Database, settings: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from tenantops.backup import service

    written = service.create(settings, db, tmp_path / "empty.tar.gz")
    assert written.manifest.gitops is None
    assert written.manifest.files == ()
    fresh = _empty_sqlite(tmp_path)
    result = run_as(fresh, capsys, "backup", "restore", str(written.path))
    assert result.code == 0, result.err
    restored = Database(fresh.resolved_database_url())
    with restored.read() as s:
        assert s.execute(text("SELECT count(*) FROM audit_log")).scalar() == 1
        assert current_revision(restored.engine) == head_revision(restored.engine)
    restored.dispose()


def test_a_folder_gets_a_dated_name_and_keep_removes_only_older_backups(
    db: Database, cli: CliRunner, tmp_path: Path
) -> None:
    folder = tmp_path / "backups"  # not there yet: the nightly cron's first night
    made_first = cli("backup", "create", "-o", str(folder), "--keep", "2")
    assert made_first.code == 0, made_first.err
    assert folder.is_dir()
    first = next(folder.iterdir())
    first.rename(folder / "tenantops-backup-20200104T000000Z.tar.gz")
    old = [folder / f"tenantops-backup-2020010{d}T000000Z.tar.gz" for d in (1, 2, 3)]
    for path in old:
        path.write_bytes(b"old")
    mine = [folder / "notes.txt", folder / "tenantops-backup-manual.tar.gz"]
    for path in mine:
        path.write_text("mine")
    made = cli("backup", "create", "-o", str(folder), "--keep", "2")
    assert made.code == 0, made.err
    kept = sorted(p.name for p in folder.iterdir())
    new = next(n for n in kept if n.startswith("tenantops-backup-2026") or "2030" in n)
    assert new.endswith("Z.tar.gz")
    # The newest two of the dated names; hand-named files are not backups it made.
    assert kept == sorted(
        [new, "tenantops-backup-20200104T000000Z.tar.gz", *(p.name for p in mine)]
    )
    for path in old:
        assert f"removed {path}" in made.out


def test_keep_without_a_folder_keeps_the_backups_here(
    db: Database, cli: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    here = tmp_path / "here"
    here.mkdir()
    (here / "tenantops-backup-20200101T000000Z.tar.gz").write_bytes(b"old")
    monkeypatch.chdir(here)
    made = cli("backup", "create", "--keep", "1")
    assert made.code == 0, made.err
    (kept,) = here.iterdir()
    assert kept.name != "tenantops-backup-20200101T000000Z.tar.gz"


def test_keep_needs_a_folder_and_a_file_it_cannot_write_is_one_line(
    cli: CliRunner, tmp_path: Path
) -> None:
    named = cli("backup", "create", "-o", str(tmp_path / "one.tar.gz"), "--keep", "2")
    assert named.code == 2
    assert "--keep needs a folder" in named.err
    unwritable = cli("backup", "create", "-o", "/proc/nowhere.tar.gz")
    assert unwritable.code == 1
    # Refused before any table is read: the error is the only line.
    assert unwritable.err.startswith("error: cannot write /proc/nowhere.tar.gz: ")
    assert len(unwritable.err.strip().splitlines()) == 1
    assert "Traceback" not in unwritable.err


def test_a_file_comes_back_with_its_permissions(
    db: Database, settings: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from tenantops.backup import service

    private = settings.data_dir / "terraform" / "acme" / "terraform.tfvars.json"
    shared = settings.data_dir / "reports" / "2030-01" / "cost.html"
    special = settings.data_dir / "bin" / "hook"  # setgid: kept out of the manifest's mode
    special.parent.mkdir(parents=True)
    special.write_text("#!/bin/sh\n")
    special.chmod(0o2755)
    for path, mode in ((private, 0o600), (shared, 0o644)):
        path.parent.mkdir(parents=True)
        path.write_text("{}")
        path.chmod(mode)
    written = service.create(settings, db, tmp_path / "modes.tar.gz")
    fresh = _empty_sqlite(tmp_path)
    result = run_as(fresh, capsys, "backup", "restore", str(written.path))
    assert result.code == 0, result.err
    for path, mode in ((private, 0o600), (shared, 0o644), (special, 0o755)):
        restored = fresh.data_dir / path.relative_to(settings.data_dir)
        assert restored.stat().st_mode & 0o7777 == mode


def test_a_backup_that_recorded_no_modes_restores_files_as_new_files_are_made(
    backup: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    def unrecorded(members: dict[str, bytes], manifest: dict[str, Any]) -> dict[str, bytes]:
        for entry in manifest["files"]:
            entry.pop("mode")
        return members

    older = _rewrite(backup, tmp_path / "nomodes.tar.gz", unrecorded)
    fresh = _empty_sqlite(tmp_path)
    result = run_as(fresh, capsys, "backup", "restore", str(older))
    assert result.code == 0, result.err
    mask = os.umask(0)
    os.umask(mask)
    evidence = next(fresh.data_dir.rglob("evidence/*/*.json"))
    assert evidence.stat().st_mode & 0o777 == 0o666 & ~mask


# ------------------------------------------------- rows that point at their own table


def _open(db: Database, kind: Kind, title: str) -> str:
    with db.write() as session:
        opened = itil.open_record(
            session, kind=kind, title=title, description="", priority=3, actor=OPS
        )
        return opened.record.number


def test_an_incident_linked_to_a_problem_opened_after_it_verifies_and_restores(
    db: Database,
    settings: Settings,
    clock: Clock,
    target: tuple[Database, Settings],
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    from tenantops.backup import service

    incident = _open(db, Kind.INCIDENT, "queue latency")
    clock.advance(seconds=1)  # a later id: the problem's row comes after the incident's
    problem = _open(db, Kind.PROBLEM, "x")
    with db.write() as session:
        itil.link_problem(session, actor=OPS, ref=incident, problem=problem)
    written = service.create(settings, db, tmp_path / "linked.tar.gz")

    # As every backup is written (before this fix too): the row that points comes first.
    with tarfile.open(written.path) as tar:
        member = tar.extractfile("tables/itil_records.jsonl")
        assert member is not None
        lines = member.read().decode().splitlines()
    assert [incident in line for line in lines] == [True, False]

    checked = service.verify(written.path)
    assert checked.audit_entries == written.manifest.audit_entries
    restored_db, restored = target
    done = run_as(restored, capsys, "backup", "restore", str(written.path))
    assert done.code == 0, done.err
    with restored_db.read() as session:
        linked = itil.get(session, principal=OPS, ref=incident)
        assert linked.problem_id == itil.get(session, principal=OPS, ref=problem).id
        assert audit.verify(session).ok
    if restored_db.is_sqlite:
        assert (restored.data_dir / "tenantops.db").stat().st_mode & 0o777 == 0o600


def test_every_reference_into_its_own_table_can_be_loaded_later() -> None:
    """A migration that adds one NOT NULL, or on a table without a primary key, fails here
    rather than in an operator's restore."""
    deferred = {
        t.name: [c.name for c in database.self_references(t)] for t in Base.metadata.tables.values()
    }
    assert deferred["itil_records"] == ["problem_id"]
    tree = Table(
        "tree",
        MetaData(),
        Column("id", Integer, primary_key=True),
        Column("parent_id", Integer, ForeignKey("tree.id"), nullable=False),
    )
    with pytest.raises(BackupError, match="refers to itself through columns that cannot be NULL"):
        database.self_references(tree)


# ------------------------------------------------- a failed restore leaves what was there


def _refused(db: Database, settings: Settings, tmp_path: Path) -> Path:
    """A backup that fails after the schema is created: its manifest names the wrong one."""
    from tenantops.backup import service

    def wrong(members: dict[str, bytes], manifest: dict[str, Any]) -> dict[str, bytes]:
        manifest["schema_revision"] = "0001"
        return members

    written = service.create(settings, db, tmp_path / "empty.tar.gz")
    return _rewrite(written.path, tmp_path / "wrong.tar.gz", wrong)


def test_a_failed_restore_into_a_new_data_directory_leaves_none(
    db: Database,
    settings: Settings,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    refused = _refused(db, settings, tmp_path)
    new = tmp_path / "new"
    monkeypatch.delenv("TENANTOPS_DATABASE_URL", raising=False)  # the SQLite file in it
    monkeypatch.setenv("TENANTOPS_DATA_DIR", str(new))
    result = invoke(capsys, "backup", "restore", str(refused))
    assert result.code == 1
    assert "its schema revision has not" in result.err
    assert not new.exists()


def test_a_failed_restore_keeps_the_database_file_the_operator_made(
    db: Database, settings: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    refused = _refused(db, settings, tmp_path)
    fresh = _empty_sqlite(tmp_path)
    file = fresh.data_dir / "tenantops.db"
    file.touch()
    file.chmod(0o640)  # the operator's choice, for a group that reads it
    result = run_as(fresh, capsys, "backup", "restore", str(refused))
    assert result.code == 1
    assert "its schema revision has not" in result.err
    assert file.stat().st_mode & 0o777 == 0o640
    kept = Database(fresh.resolved_database_url())
    try:
        assert inspect(kept.engine).get_table_names() == []
    finally:
        kept.dispose()


def test_an_older_sqlite_audit_entry_holding_nan_still_verifies_from_a_backup(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before decision 0048 a JSON column kept NaN on SQLite and the entry's hash covered
    it; the live engine now writes NaN as null, a restore must write it back as it was."""
    from tenantops.auth.principal import SYSTEM
    from tenantops.backup import service
    from tenantops.kit.canonical import canonical_json

    old = Database(f"sqlite:///{tmp_path / 'old.db'}", json_serializer=json.dumps)
    try:
        upgrade(old.engine)
        with monkeypatch.context() as then:  # the entry as the code before 0048 wrote it
            then.setattr(audit, "jsonable", lambda value: json.loads(canonical_json(value)))
            with old.write() as s:
                audit.record(
                    s,
                    actor=SYSTEM,
                    action="probe.nan",
                    tenant_id=None,
                    changes={},
                    detail={"ratio": float("nan")},
                )
        with old.read() as s:
            assert audit.verify(s).ok
        written = service.create(settings, old, tmp_path / "nan.tar.gz")
    finally:
        old.dispose()
    checked = service.verify(written.path)
    assert checked.audit_entries == 1
