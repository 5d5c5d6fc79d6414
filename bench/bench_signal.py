"""Signal latency: an approval given on a waiting gate -> the next step started.

A run of ``gate -> noop`` waits at its gate; the benchmark signals the gate
(``engine.signal`` by a governance principal, its own write transaction) and
measures ``next step.started_at - signal.created_at`` — both stamped by the
engine, on one host clock. An in-process ``Worker`` serves in a background
thread, as in ``tenantops serve``; with ``--mode wake`` the caller calls
``Worker.wake()`` after the commit (what the runs API does), with
``--mode poll`` the worker only finds the step at its next poll
(``--poll-seconds``, default 0.5 = the ``worker.poll_seconds`` default).
One signal at a time, after a random pause (10-60 ms; with ``poll``, up to a
whole poll interval), so samples do not line up with the poll.

    .venv/bin/python bench/bench_signal.py --store sqlite   --mode wake --samples 300
    .venv/bin/python bench/bench_signal.py --store sqlite   --mode poll --samples 100
    .venv/bin/python bench/bench_signal.py --store postgres --mode wake --samples 300
    .venv/bin/python bench/bench_signal.py --store postgres --mode poll --samples 100
"""

from __future__ import annotations

import argparse
import logging
import random
import statistics
import time

from bench_engine import fresh_store, sqlalchemy_url

from tenantops.auth.principal import Principal, Role
from tenantops.db import Database
from tenantops.kit.clock import as_utc
from tenantops.migrations import upgrade
from tenantops.runbooks import engine
from tenantops.runbooks.actions import builtin_actions
from tenantops.runbooks.spec import parse
from tenantops.runbooks.worker import Worker

RUNBOOK = """
id: bench-gate
version: "1.0"
title: Gate then a step
tenant: false
steps:
  - {name: gate, gate: {roles: [governance]}}
  - {name: next, action: noop, params: {x: 1}}
"""

AMY = Principal("amy", frozenset({Role.ADMIN}))
GUS = Principal("gus", frozenset({Role.GOVERNANCE}))


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def measure(store: str, mode: str, samples: int, poll_seconds: float) -> list[float]:
    url, drop = fresh_store(store, "signal")
    db = Database(sqlalchemy_url(url))
    upgrade(db.engine)
    loaded = parse(RUNBOOK)
    worker = Worker(db, builtin_actions(), name="bench", poll_seconds=poll_seconds)
    worker.start()
    latencies: list[float] = []
    try:
        for _ in range(samples):
            with db.write() as s:
                run_id = engine.start_run(s, loaded=loaded, actor=AMY, audited=False).id
            # Jitter, so a signal lands anywhere in the worker's poll cycle.
            time.sleep(random.uniform(0.01, 0.06 if mode == "wake" else 0.01 + poll_seconds))
            with db.write() as s:
                sig = engine.signal(
                    s, run_id=run_id, step_name="gate", decision="approve", principal=GUS
                )
                given = as_utc(sig.created_at)
            if mode == "wake":
                worker.wake()
            until = time.monotonic() + 10
            started = None
            while time.monotonic() < until:
                with db.read() as s:
                    nxt = engine.steps_of(s, run_id)[1]
                    started = nxt.started_at
                if started is not None:
                    break
                time.sleep(0.002)
            if started is None:
                raise SystemExit(f"run {run_id}: the next step never started")
            latencies.append((as_utc(started) - given).total_seconds() * 1000)
    finally:
        worker.stop()
        db.dispose()
        drop()
    return latencies


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--store", choices=["sqlite", "postgres"], default="sqlite")
    p.add_argument("--mode", choices=["wake", "poll"], default="wake")
    p.add_argument("--samples", type=int, default=300)
    p.add_argument("--poll-seconds", type=float, default=0.5)
    args = p.parse_args()
    logging.getLogger().setLevel(logging.WARNING)
    ms = measure(args.store, args.mode, args.samples, args.poll_seconds)
    p50, p99 = pct(ms, 50), pct(ms, 99)
    print(
        f"| {args.store} | {args.mode} | {args.poll_seconds:g} s | {len(ms)} | "
        f"{p50:.1f} ms | {p99:.1f} ms | {max(ms):.1f} ms | {statistics.fmean(ms):.1f} ms | "
        f"{'met' if p99 < 100 else 'NOT met'} |"
    )


if __name__ == "__main__":
    main()
