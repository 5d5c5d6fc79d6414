"""Runbook engine throughput against DBOS 3.4 and the database's raw commit rate.

For one store (SQLite in WAL mode, or PostgreSQL on 127.0.0.1:5432 with trust
auth), each on a fresh database of its own, this measures in one invocation:

1. the raw commit rate: tiny ``INSERT`` + ``COMMIT`` transactions in a loop on
   one connection (the physical limit of a durable transaction per step);
2. tenantops: N runs of a 5-step runbook of builtin ``noop`` steps, started by
   one thread through ``engine.start_run`` while W ``Worker`` threads
   (``serve``, woken on each start) drain them; step transitions/s and runs/s
   over the wall time from the first start to the last run succeeded;
3. DBOS 3.4: N five-step workflows (five ``@DBOS.step`` no-ops), started with
   ``DBOS.start_workflow`` and awaited, on the same kind of database.

DBOS is NOT a dependency of tenantops. It runs in a separate virtualenv that
this script calls as a subprocess (``--dbos-python``), so the product's
dependencies stay untouched:

    python3 -m venv /tmp/dbos-venv
    /tmp/dbos-venv/bin/pip install dbos==3.4.0 -e /work/main

Then:

    .venv/bin/python bench/bench_engine.py --store sqlite   --runs 1000
    .venv/bin/python bench/bench_engine.py --store postgres --runs 1000
    .venv/bin/python bench/bench_engine.py --store sqlite --runs 300 --profile

``--measure drain`` starts every run first and times only their draining;
with ``--processes N`` the draining is done by N worker processes (as
``tenantops worker`` × N runs), and DBOS by ``--dbos-processes`` processes:

    .venv/bin/python bench/bench_engine.py --store postgres --runs 2000 --measure drain \\
        --processes 2 --workers 1 --concurrency 128

``--start-batch N`` starts A's runs N per transaction (``engine.start_runs``,
what a fleet start does), and ``--processes`` drains A with worker processes
too, this process starting the runs once they are ready:

    .venv/bin/python bench/bench_engine.py --store postgres --runs 2000 --measure start+drain \\
        --processes 2 --workers 1 --concurrency 128 --start-batch 100

On PostgreSQL, drains by processes also print the server's CPU per run.

``--profile`` skips the comparison and runs one worker on the main thread
under cProfile (runs started beforehand), printing the hot spots of the
claim/complete path. ``--no-dbos`` skips DBOS.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import logging
import os
import pstats
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any

PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
STEPS = 5
# How often DBOS polls its queue in the drain-only measurement: the same as
# the tenantops workers' poll_seconds (DBOS's default is 1 s).
DBOS_QUEUE_POLL = 0.05

RUNBOOK = """
id: bench-noop
version: "1.0"
title: Five no-op steps
tenant: false
steps:
  - {name: s1, action: noop, params: {i: 1}}
  - {name: s2, action: noop, params: {i: 2}}
  - {name: s3, action: noop, params: {i: 3}}
  - {name: s4, action: noop, params: {i: 4}}
  - {name: s5, action: noop, params: {i: 5}}
"""


# --- fresh databases ---------------------------------------------------------------


def fresh_store(kind: str, label: str) -> tuple[str, Callable[[], None]]:
    """A URL (``sqlite:///…`` or ``postgresql://…``) of a new, empty database, and its drop."""
    if kind == "sqlite":
        where = Path(tempfile.mkdtemp(prefix=f"bench-{label}-"))
        return f"sqlite:///{where / f'{label}.db'}", lambda: shutil.rmtree(where, True)
    import psycopg

    name = f"bench_{label}_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')

    def drop() -> None:
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    return f"postgresql://postgres@127.0.0.1:5432/{name}", drop


def sqlalchemy_url(url: str) -> str:
    return url.replace("postgresql://", "postgresql+psycopg://", 1)


# --- 1. raw commit rate --------------------------------------------------------------


def raw_commits(kind: str, seconds: float, connections: int = 1) -> dict[str, Any]:
    """Commits/s of ``connections`` threads, each on its own connection, doing
    ``INSERT`` + ``COMMIT`` of one tiny row in a loop.

    One connection is the latency-bound limit of a single committer; several
    show what group commit (PostgreSQL) or the single write lock (SQLite) allow.
    """
    url, drop = fresh_store(kind, "raw")
    try:
        _raw_connect(kind, url, create=True)[1]()
        counts = [0] * connections
        ready = threading.Barrier(connections + 1)
        go = threading.Event()
        until = [0.0]

        def loop(i: int) -> None:
            one, close = _raw_connect(kind, url)
            ready.wait()
            go.wait()
            n = 0
            while time.perf_counter() < until[0]:
                one(n)
                n += 1
            counts[i] = n
            close()

        threads = [threading.Thread(target=loop, args=(i,)) for i in range(connections)]
        for t in threads:
            t.start()
        ready.wait()
        started = time.perf_counter()
        until[0] = started + seconds
        go.set()
        for t in threads:
            t.join()
        elapsed = time.perf_counter() - started
        n = sum(counts)
        return {
            "connections": connections,
            "commits": n,
            "seconds": elapsed,
            "commits_per_s": n / elapsed,
        }
    finally:
        drop()


def _raw_connect(
    kind: str, url: str, *, create: bool = False
) -> tuple[Callable[[int], None], Callable[[], None]]:
    """(insert-and-commit one row, close) on a new connection to ``url``."""
    if kind == "sqlite":
        conn = sqlite3.connect(url.removeprefix("sqlite:///"), isolation_level=None, timeout=30)
        # The settings tenantops uses (src/tenantops/db.py): WAL, synchronous=NORMAL.
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        if create:
            conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)")

        def one(i: int) -> None:
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("INSERT INTO t (v) VALUES (?)", (f"v{i}",))
            conn.execute("COMMIT")

        return one, conn.close
    import psycopg

    pg = psycopg.connect(url)
    if create:
        pg.execute("CREATE TABLE t (id bigserial PRIMARY KEY, v text)")
        pg.commit()

    def one_pg(i: int) -> None:
        pg.execute("INSERT INTO t (v) VALUES (%s)", (f"v{i}",))
        pg.commit()

    return one_pg, pg.close


# --- 2. tenantops ----------------------------------------------------------------


def _tenantops_setup(kind: str) -> tuple[Any, Any, Callable[[], None]]:
    from tenantops.db import Database
    from tenantops.migrations import upgrade
    from tenantops.runbooks.spec import parse

    url, drop = fresh_store(kind, "tenantops")
    db = Database(sqlalchemy_url(url))
    upgrade(db.engine)
    return db, parse(RUNBOOK), drop


def _succeeded_runs(db: Any) -> int:
    """How many tenantops runs have succeeded."""
    from sqlalchemy import func, select

    from tenantops.runbooks.models import Run

    with db.read() as s:
        query = select(func.count()).select_from(Run).where(Run.status == "succeeded")
        return int(s.execute(query).scalar_one())


def _wait_for(succeeded: Callable[[], int], runs: int, limit: float = 600) -> int:
    """Poll ``succeeded`` every 20 ms until it reaches ``runs`` (or ``limit`` s); its last count."""
    done = 0
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        done = succeeded()
        if done >= runs:
            break
        time.sleep(0.02)
    return done


def _start_runs(
    db: Any, loaded: Any, runs: int, batch: int, wake: Callable[[], None] = lambda: None
) -> None:
    """Start ``runs`` runs from this thread: one ``start_run`` transaction each (``batch`` 1)
    or ``batch`` at a time with ``engine.start_runs`` (what a fleet start does); ``wake``
    after each transaction."""
    from tenantops.auth.principal import Principal, Role
    from tenantops.runbooks import engine

    amy = Principal("amy", frozenset({Role.ADMIN}))
    for first in range(0, runs, batch):
        with db.write() as s:
            if batch == 1:
                engine.start_run(s, loaded=loaded, actor=amy)
            else:
                new = [engine.NewRun() for _ in range(min(batch, runs - first))]
                engine.start_runs(s, loaded=loaded, actor=amy, runs=new)
        wake()


def tenantops_engine(
    kind: str, runs: int, workers: int, concurrency: int, start_batch: int = 1
) -> dict[str, Any]:
    """Start ``runs`` runs from one thread while ``workers`` worker threads drain them."""

    from tenantops.runbooks.actions import builtin_actions
    from tenantops.runbooks.worker import Worker

    logging.getLogger().setLevel(logging.WARNING)
    db, loaded, drop = _tenantops_setup(kind)
    pool = [
        Worker(db, builtin_actions(), name=f"w{i}", concurrency=concurrency, poll_seconds=0.05)
        for i in range(workers)
    ]
    try:
        for w in pool:
            w.start()
        cpu = time.process_time()
        started = time.perf_counter()

        def wake() -> None:
            for w in pool:
                w.wake()

        _start_runs(db, loaded, runs, start_batch, wake)
        started_all = time.perf_counter() - started
        done = _wait_for(partial(_succeeded_runs, db), runs)
        elapsed = time.perf_counter() - started
        cpu = time.process_time() - cpu
        return {
            "runs": runs,
            "succeeded": done,
            "cpu_ms_per_run": cpu / runs * 1000,
            "workers": workers,
            "concurrency": concurrency,
            "seconds": elapsed,
            "start_seconds": started_all,
            "runs_per_s": done / elapsed,
            "steps_per_s": done * STEPS / elapsed,
            "fenced": sum(w.stats.fenced for w in pool),
        }
    finally:
        for w in pool:
            w.stop()
        db.dispose()
        drop()


def tenantops_drain(kind: str, runs: int, workers: int, concurrency: int) -> dict[str, Any]:
    """Start ``runs`` runs first (no worker running), then time ``workers`` threads draining them.

    Measures the engine alone: the start phase (one ``start_run`` transaction
    per run, from one thread) is not in the figure.
    """

    from tenantops.runbooks.actions import builtin_actions
    from tenantops.runbooks.worker import Worker

    logging.getLogger().setLevel(logging.WARNING)
    db, loaded, drop = _tenantops_setup(kind)
    pool = [
        Worker(db, builtin_actions(), name=f"w{i}", concurrency=concurrency, poll_seconds=0.05)
        for i in range(workers)
    ]
    try:
        began = time.perf_counter()
        _start_runs(db, loaded, runs, 1)
        start_seconds = time.perf_counter() - began
        cpu = time.process_time()
        started = time.perf_counter()
        for w in pool:
            w.start()
        done = _wait_for(partial(_succeeded_runs, db), runs)
        elapsed = time.perf_counter() - started
        cpu = time.process_time() - cpu
        return {
            "runs": runs,
            "succeeded": done,
            "cpu_ms_per_run": cpu / runs * 1000,
            "workers": workers,
            "concurrency": concurrency,
            "seconds": elapsed,
            "start_seconds": start_seconds,
            "runs_per_s": done / elapsed,
            "steps_per_s": done * STEPS / elapsed,
            "fenced": sum(w.stats.fenced for w in pool),
        }
    finally:
        for w in pool:
            w.stop()
        db.dispose()
        drop()


def worker_child(url: str, workers: int, concurrency: int) -> None:
    """One worker process, as ``tenantops worker`` runs one: ``workers`` Worker threads.

    Builds everything first and prints ``ready``; starts serving on a ``go``
    line on stdin and stops on the next line (or end of input), then prints a
    JSON line with its CPU time and counts. The parent times only go → done.
    """
    from tenantops.db import Database
    from tenantops.runbooks.actions import builtin_actions
    from tenantops.runbooks.worker import Worker

    logging.getLogger().setLevel(logging.WARNING)
    db = Database(url)
    pool = [
        Worker(db, builtin_actions(), concurrency=concurrency, poll_seconds=0.05)
        for _ in range(workers)
    ]
    print("ready", flush=True)
    sys.stdin.readline()
    cpu = time.process_time()
    for w in pool:
        w.start()
    sys.stdin.readline()
    for w in pool:
        w.stop()
    cpu = time.process_time() - cpu
    db.dispose()
    print(
        json.dumps(
            {
                "cpu_seconds": cpu,
                "completed": sum(w.stats.completed for w in pool),
                "fenced": sum(w.stats.fenced for w in pool),
            }
        ),
        flush=True,
    )


def tenantops_drain_processes(
    kind: str, runs: int, processes: int, workers: int, concurrency: int
) -> dict[str, Any]:
    """The drain-only measurement with ``processes`` worker processes (``tenantops worker`` × N).

    One process's worker threads share one GIL; processes do not. Every process
    is started and ready (imports done, pool built) before the runs' clock starts.
    """
    logging.getLogger().setLevel(logging.WARNING)
    db, loaded, drop = _tenantops_setup(kind)
    try:
        began = time.perf_counter()
        _start_runs(db, loaded, runs, 1)
        start_seconds = time.perf_counter() - began
        with _worker_children(db, processes, workers, concurrency) as children:
            result = _serve_children(children, partial(_succeeded_runs, db), runs)
        return result | {
            "workers": workers,
            "concurrency": concurrency,
            "start_seconds": start_seconds,
        }
    finally:
        db.dispose()
        drop()


@contextmanager
def _worker_children(
    db: Any, processes: int, workers: int, concurrency: int
) -> Iterator[list[subprocess.Popen[str]]]:
    """``processes`` worker processes on ``db`` (each ``--worker-child``), killed on the way out
    if still running."""
    url = db.engine.url.render_as_string(hide_password=False)
    children: list[subprocess.Popen[str]] = []
    try:
        for _ in range(processes):
            command = [sys.executable, __file__, "--worker-child", url]
            command += ["--workers", str(workers), "--concurrency", str(concurrency)]
            children.append(
                subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
            )
        yield children
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
                child.wait()


def tenantops_engine_processes(
    kind: str, runs: int, processes: int, workers: int, concurrency: int, start_batch: int
) -> dict[str, Any]:
    """The start+drain measurement with ``processes`` worker processes: this process starts
    the runs (as the API would) once every worker process is ready and told to go.

    The workers find new runs by polling (``poll_seconds`` 0.05), not by a wake-up.
    CPU is that of the worker processes and of this process's starting, summed.
    """
    logging.getLogger().setLevel(logging.WARNING)
    db, loaded, drop = _tenantops_setup(kind)
    timing: dict[str, float] = {}

    def start() -> None:
        cpu, began = time.process_time(), time.perf_counter()
        _start_runs(db, loaded, runs, start_batch)
        timing["start_seconds"] = time.perf_counter() - began
        timing["start_cpu"] = time.process_time() - cpu

    try:
        with _worker_children(db, processes, workers, concurrency) as children:
            result = _serve_children(children, partial(_succeeded_runs, db), runs, after_go=start)
        result["cpu_ms_per_run"] += timing["start_cpu"] / runs * 1000
        return result | {
            "workers": workers,
            "concurrency": concurrency,
            "start_seconds": timing["start_seconds"],
        }
    finally:
        db.dispose()
        drop()


def profile_engine(kind: str, runs: int, concurrency: int, top: int) -> None:
    """Runs started first (timed); then one worker's run_once loop on this thread, alone
    under cProfile."""
    from sqlalchemy import event

    from tenantops.runbooks.actions import builtin_actions
    from tenantops.runbooks.worker import Worker

    logging.getLogger().setLevel(logging.WARNING)
    db, loaded, drop = _tenantops_setup(kind)
    try:
        prof = cProfile.Profile()
        t0 = time.perf_counter()
        _start_runs(db, loaded, runs, 1)
        t_start = time.perf_counter() - t0
        prof.enable()  # the drain only: start_run is timed above
        w = Worker(db, builtin_actions(), name="prof", concurrency=concurrency)
        statements: Counter[str] = Counter()

        @event.listens_for(db.engine, "before_cursor_execute")
        def count(conn: Any, cursor: Any, sql: str, *args: Any) -> None:
            words = sql.split()
            table = next(
                (words[i + 1] for i, x in enumerate(words[:-1]) if x in ("FROM", "INTO", "UPDATE")),
                "",
            )
            statements[f"{words[0]} {table}".strip()] += 1

        t1 = time.perf_counter()
        steps = 0
        while (n := w.run_once()) > 0:
            steps += n
        t_drain = time.perf_counter() - t1
        prof.disable()
        event.remove(db.engine, "before_cursor_execute", count)
        print(f"SQL statements per step while draining ({steps} steps):")
        for what, k in statements.most_common():
            print(f"  {k / steps:6.2f}  {what}")
        print(f"  {sum(statements.values()) / steps:6.2f}  in all")
        print(
            f"{kind}: start_run {runs / t_start:.0f}/s ({t_start / runs * 1000:.2f} ms each); "
            f"{steps} steps by one worker in {t_drain:.1f}s = {steps / t_drain:.0f} steps/s "
            f"({t_drain / steps * 1000:.2f} ms per step, claim+complete)"
        )
        for order, only in (
            ("tottime", ()),
            ("cumulative", ()),
            ("cumulative", (r"tenantops|sqlalchemy/orm/session.py:.*\((commit|flush|get)\)",)),
        ):
            out = io.StringIO()
            stats = pstats.Stats(prof, stream=out).sort_stats(order)
            stats.print_stats(*only, top)
            print(out.getvalue())
    finally:
        db.dispose()
        drop()


# --- 3. DBOS (runs inside the DBOS virtualenv) -----------------------------------


def dbos_child(url: str, runs: int, mode: str = "start") -> None:
    """Run ``runs`` five-step DBOS workflows on ``url``; print a JSON result line.

    ``mode``: ``start`` starts them with ``DBOS.start_workflow`` and awaits them
    (start and run overlap, as in the start+drain measurement); ``enqueue``
    only puts them on the ``bench`` queue, in a process that does not dequeue
    from it, and prints their ids; ``drain`` is one of the processes that
    dequeue and run them (``dbos_drain`` starts them and does the timing).
    """
    from dbos import DBOS, DBOSConfig

    @DBOS.step()
    def noop(params: dict[str, int]) -> dict[str, Any]:
        return {"echo": params}

    @DBOS.workflow(name="five_steps")
    def five_steps() -> None:
        for i in range(1, STEPS + 1):
            noop({"i": i})

    config: DBOSConfig = {
        "name": "bench-dbos",
        "system_database_url": url,
        "run_admin_server": False,
        "log_level": "WARNING",
    }
    DBOS(config=config)
    if mode == "enqueue":
        DBOS.listen_queues(["not-bench"])  # this process must not start them
        DBOS.launch()
        try:
            queue = DBOS.register_queue("bench", polling_interval_sec=DBOS_QUEUE_POLL)
            started = time.perf_counter()
            handles = [queue.enqueue(five_steps) for _ in range(runs)]
            print(
                json.dumps(
                    {
                        "ids": [h.get_workflow_id() for h in handles],
                        "enqueue_seconds": time.perf_counter() - started,
                    }
                )
            )
        finally:
            DBOS.destroy()
        return
    if mode == "drain":
        # One of the draining processes: ready once launched; the queue is
        # registered (so dequeuing starts) on the parent's "go" line, and the
        # process stops on the next line. The parent counts what succeeded.
        DBOS.launch()
        print("ready", flush=True)
        sys.stdin.readline()
        cpu = time.process_time()
        DBOS.register_queue("bench", polling_interval_sec=DBOS_QUEUE_POLL)
        sys.stdin.readline()
        cpu = time.process_time() - cpu
        DBOS.destroy()
        print(json.dumps({"cpu_seconds": cpu}), flush=True)
        return
    DBOS.launch()
    try:
        cpu = time.process_time()
        started = time.perf_counter()
        handles = [DBOS.start_workflow(five_steps) for _ in range(runs)]
        started_all = time.perf_counter() - started
        for h in handles:
            h.get_result()
        elapsed = time.perf_counter() - started
        cpu = time.process_time() - cpu
    finally:
        DBOS.destroy()
    print(
        json.dumps(
            {
                "runs": runs,
                "seconds": elapsed,
                "start_seconds": started_all,
                "runs_per_s": runs / elapsed,
                "steps_per_s": runs * STEPS / elapsed,
                "cpu_ms_per_run": cpu / runs * 1000,
            }
        )
    )


def _dbos_run(python: str, url: str, runs: int, mode: str) -> Any:
    command = [python, __file__, "--dbos-child", url, "--runs", str(runs), "--dbos-mode", mode]
    out = subprocess.run(command, capture_output=True, text=True, timeout=900)
    if out.returncode != 0:
        raise RuntimeError(f"DBOS run failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def dbos_engine(kind: str, runs: int, python: str) -> dict[str, Any]:
    """DBOS starting its workflows while it runs them (the start+drain measurement)."""
    url, drop = fresh_store(kind, "dbos")
    try:
        result: dict[str, Any] = _dbos_run(python, url, runs, "start")
        return result
    finally:
        drop()


def dbos_drain(kind: str, runs: int, python: str, processes: int = 1) -> dict[str, Any]:
    """DBOS draining workflows enqueued beforehand by another process (the drain-only one).

    ``processes`` DBOS processes dequeue from the one queue, as the tenantops
    worker processes share the runs; this process counts the succeeded
    workflows in DBOS's ``workflow_status`` table, as it counts tenantops'
    runs, from the ``go`` sent to every (launched, ready) process.
    """
    url, drop = fresh_store(kind, "dbos")
    children: list[subprocess.Popen[str]] = []
    try:
        enqueued = _dbos_run(python, url, runs, "enqueue")
        command = [python, __file__, "--dbos-child", url, "--runs", str(runs)]
        command += ["--dbos-mode", "drain"]
        for _ in range(processes):
            children.append(
                subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
            )
        result = _serve_children(children, lambda: _dbos_succeeded(kind, url), runs)
        result["start_seconds"] = enqueued["enqueue_seconds"]
        return result
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
                child.wait()
        drop()


def _dbos_succeeded(kind: str, url: str) -> int:
    """How many DBOS workflows have succeeded (its system table, read directly)."""
    if kind == "sqlite":
        with sqlite3.connect(url.removeprefix("sqlite:///"), timeout=30) as conn:
            row = conn.execute("SELECT count(*) FROM workflow_status WHERE status = 'SUCCESS'")
            return int(row.fetchone()[0])
    import psycopg

    with psycopg.connect(url) as pg:
        one = pg.execute("SELECT count(*) FROM dbos.workflow_status WHERE status = 'SUCCESS'")
        return int(one.fetchone()[0])  # type: ignore[index]


def _serve_children(
    children: list[subprocess.Popen[str]],
    succeeded: Callable[[], int],
    runs: int,
    after_go: Callable[[], None] = lambda: None,
) -> dict[str, Any]:
    """Wait until every child is ready, say go, time until ``runs`` succeeded, stop them.

    Each child prints ``ready``, starts on a first stdin line, stops on a
    second and prints a JSON line with its ``cpu_seconds`` (and counts).
    ``after_go`` runs on the clock, right after the go (to start the runs).
    """
    for child in children:
        assert child.stdout is not None
        if child.stdout.readline().strip() != "ready":
            raise RuntimeError("a worker process did not start")
    server = _postgres_cpu()
    started = time.perf_counter()
    for child in children:
        assert child.stdin is not None
        child.stdin.write("go\n")
        child.stdin.flush()
    after_go()
    done = _wait_for(succeeded, runs)
    elapsed = time.perf_counter() - started
    reports = []
    for child in children:
        out, _ = child.communicate("stop\n", timeout=120)
        reports.append(json.loads(out.strip().splitlines()[-1]))
    time.sleep(0.5)  # the children's backends exit; the postmaster reaps them
    server = _postgres_cpu() - server
    return {
        "runs": runs,
        "succeeded": done,
        "processes": len(children),
        "seconds": elapsed,
        "runs_per_s": done / elapsed,
        "steps_per_s": done * STEPS / elapsed,
        "cpu_ms_per_run": sum(r["cpu_seconds"] for r in reports) / runs * 1000,
        "server_cpu_ms_per_run": server / runs * 1000,
        "completed": sum(r.get("completed", 0) for r in reports),
        "fenced": sum(r.get("fenced", 0) for r in reports),
    }


def _postgres_cpu() -> float:
    """CPU seconds used so far by this machine's PostgreSQL server processes (user and
    system time from ``/proc``, with that of the backends that exited, which the
    postmaster reaped): the server's share of a measurement on 127.0.0.1."""
    ticks = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:  # the process ended while we looked
            continue
        name, fields = text[text.index("(") + 1 : text.rindex(")")], text.rsplit(")", 1)[1].split()
        if name.startswith("postgres"):
            ticks += sum(int(f) for f in fields[11:15])  # utime, stime, cutime, cstime
    return ticks / os.sysconf("SC_CLK_TCK")


# --- report ----------------------------------------------------------------------


def _table(
    title: str,
    raw: list[dict[str, Any]],
    rows: list[tuple[str, dict[str, Any]]],
    postgres: bool = False,
) -> None:
    print(f"\n{title}")
    print("| system | runs/s | step transitions/s | commits/s | CPU ms/run | wall s |")
    print("|---|---|---|---|---|---|")
    for r in raw:
        print(
            f"| raw INSERT+COMMIT, {r['connections']} connection(s) | | | "
            f"{r['commits_per_s']:,.0f} | | {r['seconds']:.1f} |"
        )
    for name, r in rows:
        server = r.get("server_cpu_ms_per_run") if postgres else None
        cpu = f"{r['cpu_ms_per_run']:.1f}" + (f" (+ {server:.1f} server)" if server else "")
        print(
            f"| {name} | {r['runs_per_s']:,.1f} | {r['steps_per_s']:,.0f} | | "
            f"{cpu} | {r['seconds']:.1f} |"
        )


def _targets(raw: dict[str, Any], ours: dict[str, Any], dbos: dict[str, Any] | None) -> None:
    half = raw["commits_per_s"] / 2
    print(
        f"target: step transitions/s ≥ half the raw commit rate of one connection "
        f"({half:,.0f}/s): {'met' if ours['steps_per_s'] >= half else 'NOT met'} "
        f"({ours['steps_per_s'] / raw['commits_per_s']:.0%} of raw)"
    )
    if dbos is not None:
        ratio = ours["runs_per_s"] / dbos["runs_per_s"]
        print(f"target: runs/s ≥ 10× DBOS: {'met' if ratio >= 10 else 'NOT met'} ({ratio:.2f}×)")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--store", choices=["sqlite", "postgres"], default="sqlite")
    p.add_argument("--runs", type=int, default=1000)
    p.add_argument("--workers", type=int, default=2, help="tenantops worker threads (per process)")
    p.add_argument(
        "--processes",
        type=int,
        default=0,
        help="drain with this many worker processes (tenantops worker × N) instead of\n"
        "worker threads in the benchmark's own process (0, the default)",
    )
    p.add_argument("--concurrency", type=int, default=8, help="steps claimed per batch")
    p.add_argument(
        "--start-batch",
        type=int,
        default=1,
        help="A: runs started per transaction (engine.start_runs, as a fleet start does);\n"
        "1 (the default): one start_run transaction per run",
    )
    p.add_argument("--raw-seconds", type=float, default=5.0)
    p.add_argument("--raw-connections", type=int, default=8, help="second raw row")
    p.add_argument(
        "--measure",
        choices=["both", "start+drain", "drain"],
        default="both",
        help="start+drain: runs started while workers drain them (the original figure);\n"
        "drain: runs started first, only their draining timed",
    )
    p.add_argument("--dbos-python", default="/tmp/dbos-venv/bin/python")  # noqa: S108
    p.add_argument(
        "--dbos-processes",
        type=int,
        default=1,
        help="DBOS processes dequeuing in the drain measurement (1: its fastest here)",
    )
    p.add_argument("--no-dbos", action="store_true")
    p.add_argument("--profile", action="store_true")
    p.add_argument("--top", type=int, default=25)
    p.add_argument("--dbos-child", metavar="URL", help=argparse.SUPPRESS)
    p.add_argument("--dbos-mode", default="start", help=argparse.SUPPRESS)
    p.add_argument("--worker-child", metavar="URL", help=argparse.SUPPRESS)
    args = p.parse_args()

    if args.dbos_child:
        dbos_child(args.dbos_child, args.runs, args.dbos_mode)
        return
    if args.worker_child:
        worker_child(args.worker_child, args.workers, args.concurrency)
        return
    if args.profile:
        profile_engine(args.store, args.runs, args.concurrency, args.top)
        return

    raw = raw_commits(args.store, args.raw_seconds)
    raw_n = raw_commits(args.store, args.raw_seconds, connections=args.raw_connections)
    name = f"tenantops ({args.workers} workers × {args.concurrency})"
    results: dict[str, Any] = {"raw": raw, "raw_n": raw_n}
    print(f"\nstore={args.store} runs={args.runs} (5 no-op steps each)")
    if args.start_batch < 1:
        p.error("--start-batch must be at least 1")
    if args.measure in ("both", "start+drain"):
        if args.processes:
            ours = tenantops_engine_processes(
                args.store,
                args.runs,
                args.processes,
                args.workers,
                args.concurrency,
                args.start_batch,
            )
            name = f"tenantops ({args.processes} processes × {args.workers} × {args.concurrency})"
        else:
            ours = tenantops_engine(
                args.store, args.runs, args.workers, args.concurrency, args.start_batch
            )
        if args.start_batch > 1:
            name += f", started {args.start_batch} per transaction"
        dbos = None if args.no_dbos else dbos_engine(args.store, args.runs, args.dbos_python)
        _table(
            f"A. start+drain: one thread starts the runs ({args.start_batch} per transaction) "
            "while the workers drain them; timed from the first start to the last run succeeded",
            [raw, raw_n],
            [(name, ours)] + ([("DBOS 3.4 (start_workflow)", dbos)] if dbos else []),
            postgres=args.store == "postgres",
        )
        _targets(raw, ours, dbos)
        results |= {"tenantops": ours, "dbos": dbos}
    if args.measure in ("both", "drain"):
        if args.processes:
            ours = tenantops_drain_processes(
                args.store, args.runs, args.processes, args.workers, args.concurrency
            )
            name = f"tenantops ({args.processes} processes × {args.workers} × {args.concurrency})"
        else:
            ours = tenantops_drain(args.store, args.runs, args.workers, args.concurrency)
        dbos = (
            None
            if args.no_dbos
            else dbos_drain(args.store, args.runs, args.dbos_python, args.dbos_processes)
        )
        _table(
            "B. drain only: every run started (DBOS: enqueued) first with no worker "
            "running; timed from the workers' start to the last run succeeded",
            [] if args.measure == "both" else [raw, raw_n],
            [(name, ours)] + ([("DBOS 3.4 (queue, enqueued first)", dbos)] if dbos else []),
            postgres=args.store == "postgres",
        )
        _targets(raw, ours, dbos)
        results |= {"tenantops_drain": ours, "dbos_drain": dbos}
    print(json.dumps(results))


if __name__ == "__main__":
    sys.exit(main())
