"""The startup heap is frozen out of the garbage collector's full collections (ADR 0029)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tenantops.runbooks.worker import Worker
from tests.conftest import CliRunner

PROBE = """
import gc, sys
from pathlib import Path
from tenantops.app import create_app
from tenantops.config import Settings, WorkerSettings
from tenantops.kit import heap

settings = Settings(data_dir=Path(sys.argv[1]), worker=WorkerSettings(in_process=False))
create_app(settings)
built = len(gc.get_objects())
heap.settle()
print(built, gc.get_freeze_count(), len(gc.get_objects()))
"""


def test_settle_leaves_the_built_app_out_of_later_collections(tmp_path: Path) -> None:
    # In a process of its own: frozen objects stay frozen, which the test process must not be.
    out = subprocess.run(
        [sys.executable, "-c", PROBE, str(tmp_path)],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    ).stdout
    built, frozen, tracked = (int(n) for n in out.split())
    assert built > 50_000  # what a full collection would otherwise walk every time
    assert frozen >= built * 0.9
    assert tracked < built * 0.01


def test_serve_and_worker_settle_the_heap_once_built_and_before_they_serve(
    cli: CliRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[str] = []
    monkeypatch.setattr("tenantops.kit.heap.settle", lambda: calls.append("settle"))
    monkeypatch.setattr("uvicorn.run", lambda app, **kw: calls.append("serve"))
    monkeypatch.setattr(Worker, "serve", lambda self: calls.append("work"))
    monkeypatch.setattr("signal.signal", lambda *args: None)  # the test process keeps its own

    assert cli("serve").code == 0
    assert cli("worker").code == 0
    assert calls == ["settle", "serve", "settle", "work"]
