"""The real Prometheus and Alertmanager (Debian packages) on 127.0.0.1, for end-to-end tests.

``PromStack`` writes both configurations into a work directory, checks them
with ``promtool``/``amtool`` when those are installed, starts both servers on
free ports (Alertmanager without gossip), waits until both answer
``/-/ready`` and always stops them. Prometheus scrapes and evaluates every
second; Alertmanager flushes a group at once and again every second, and
repeats it only after ``repeat_interval`` (long by default), so a test sees
each alert state soon and once.

Missing binaries fail the tests in CI (``CI`` set: its machines have the
packages) and skip them on a laptop, with that reason — the Terraform policy.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
import yaml

from tests.servers import HOST, free_port

PROMETHEUS = "prometheus"
ALERTMANAGER = "prometheus-alertmanager"
T = TypeVar("T")
READY_WITHIN = 30.0  # seconds each server may take to answer /-/ready


def binary(name: str, package: str) -> str:
    """The path of ``name``; fails in CI, skips on a laptop when it is not installed."""
    found = shutil.which(name) or (
        f"/usr/bin/{name}" if Path(f"/usr/bin/{name}").exists() else None
    )
    if found is None:
        reason = f"{name} is not installed: apt-get install {package} to run this test"
        if os.environ.get("CI"):
            pytest.fail(reason + " (CI must run it)", pytrace=False)
        pytest.skip(reason)
    return found


def binaries() -> tuple[str, str]:
    """Prometheus and Alertmanager, or the test's skip/fail."""
    return binary(PROMETHEUS, "prometheus"), binary(ALERTMANAGER, "prometheus-alertmanager")


@dataclass(frozen=True)
class Webhook:
    """Where Alertmanager posts, and the bearer token it sends (http_config.authorization)."""

    url: str
    bearer: str | None = None
    send_resolved: bool = True


@dataclass
class Route:
    """The one route of the test Alertmanager: fast first notification, slow repeats."""

    group_by: list[str] = field(default_factory=lambda: ["alertname", "tenant"])
    group_wait: str = "0s"
    group_interval: str = "1s"
    repeat_interval: str = "4h"


def prometheus_config(*, targets: list[str], alertmanager: str) -> dict[str, Any]:
    return {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s", "scrape_timeout": "1s"},
        "rule_files": ["rules.yml"],
        "alerting": {"alertmanagers": [{"static_configs": [{"targets": [alertmanager]}]}]},
        "scrape_configs": [{"job_name": "target", "static_configs": [{"targets": targets}]}],
    }


def alertmanager_config(webhook: Webhook, route: Route) -> dict[str, Any]:
    hook: dict[str, Any] = {"url": webhook.url, "send_resolved": webhook.send_resolved}
    if webhook.bearer is not None:
        hook["http_config"] = {"authorization": {"type": "Bearer", "credentials": webhook.bearer}}
    return {
        "route": {
            "receiver": "tenantops",
            "group_by": route.group_by,
            "group_wait": route.group_wait,
            "group_interval": route.group_interval,
            "repeat_interval": route.repeat_interval,
        },
        "receivers": [{"name": "tenantops", "webhook_configs": [hook]}],
    }


def _tail(path: Path) -> str:
    return path.read_text(errors="replace")[-4000:] if path.exists() else ""


class PromStack:
    """Prometheus + Alertmanager of one test, in ``workdir``; use as a context manager."""

    def __init__(
        self,
        workdir: Path,
        *,
        rules: dict[str, Any],
        targets: list[str],
        webhook: Webhook,
        route: Route | None = None,
    ) -> None:
        self.prometheus_bin, self.alertmanager_bin = binaries()
        self.workdir = workdir
        self.rules = rules
        self.targets = targets
        self.webhook = webhook
        self.route = route or Route()
        self.prometheus_port = free_port()
        self.alertmanager_port = free_port()
        self.prometheus_url = f"http://{HOST}:{self.prometheus_port}"
        self.alertmanager_url = f"http://{HOST}:{self.alertmanager_port}"
        self._procs: list[tuple[str, subprocess.Popen[bytes], Path]] = []

    # --- configuration --------------------------------------------------------

    def write_configs(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        (self.workdir / "rules.yml").write_text(yaml.safe_dump(self.rules), encoding="utf-8")
        prom = prometheus_config(
            targets=self.targets, alertmanager=f"{HOST}:{self.alertmanager_port}"
        )
        (self.workdir / "prometheus.yml").write_text(yaml.safe_dump(prom), encoding="utf-8")
        am = alertmanager_config(self.webhook, self.route)
        (self.workdir / "alertmanager.yml").write_text(yaml.safe_dump(am), encoding="utf-8")
        self._check("promtool", "check", "config", str(self.workdir / "prometheus.yml"))
        self._check("amtool", "check-config", str(self.workdir / "alertmanager.yml"))

    def _check(self, tool: str, *args: str) -> None:
        found = shutil.which(tool) or (
            f"/usr/bin/{tool}" if Path(f"/usr/bin/{tool}").exists() else None
        )
        if found is None:
            return  # the servers check their configuration too, less readably
        done = subprocess.run(
            [found, *args], capture_output=True, text=True, timeout=60, check=False
        )
        if done.returncode != 0:
            raise AssertionError(f"{tool} {' '.join(args)} failed:\n{done.stdout}{done.stderr}")

    # --- processes ------------------------------------------------------------

    def _spawn(self, name: str, argv: list[str]) -> None:
        log = self.workdir / f"{name}.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, cwd=self.workdir)
        self._procs.append((name, proc, log))

    def _wait_ready(self, name: str, url: str) -> None:
        _, proc, log = next(p for p in self._procs if p[0] == name)
        deadline = time.monotonic() + READY_WITHIN
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise AssertionError(f"{name} exited with {proc.returncode}:\n{_tail(log)}")
            try:
                if httpx.get(f"{url}/-/ready", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"{name} not ready within {READY_WITHIN}s:\n{_tail(log)}")

    def start(self) -> None:
        self.write_configs()
        self._spawn(
            "alertmanager",
            [
                self.alertmanager_bin,
                f"--config.file={self.workdir / 'alertmanager.yml'}",
                f"--storage.path={self.workdir / 'alertmanager-data'}",
                f"--web.listen-address={HOST}:{self.alertmanager_port}",
                "--cluster.listen-address=",
                "--log.level=debug",
            ],
        )
        self._spawn(
            "prometheus",
            [
                self.prometheus_bin,
                f"--config.file={self.workdir / 'prometheus.yml'}",
                f"--storage.tsdb.path={self.workdir / 'prometheus-data'}",
                f"--web.listen-address={HOST}:{self.prometheus_port}",
            ],
        )
        self._wait_ready("alertmanager", self.alertmanager_url)
        self._wait_ready("prometheus", self.prometheus_url)

    def stop(self) -> None:
        for _, proc, _ in reversed(self._procs):
            if proc.poll() is None:
                proc.terminate()
        for _, proc, _ in reversed(self._procs):
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=15)
        self._procs.clear()

    def __enter__(self) -> PromStack:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- what they see ----------------------------------------------------------

    def prometheus_alerts(self) -> list[dict[str, Any]]:
        """Alerts Prometheus holds (pending or firing)."""
        body = httpx.get(f"{self.prometheus_url}/api/v1/alerts", timeout=5).json()
        alerts: list[dict[str, Any]] = body["data"]["alerts"]
        return alerts

    def alertmanager_alerts(self) -> list[dict[str, Any]]:
        alerts: list[dict[str, Any]] = httpx.get(
            f"{self.alertmanager_url}/api/v2/alerts", timeout=5
        ).json()
        return alerts

    def logs(self) -> str:
        """The tail of both servers' output, for a failing assertion's message."""
        return "\n".join(f"--- {name} ---\n{_tail(log)}" for name, _, log in self._procs)


class MetricsTarget:
    """A tiny scrape target: ``/metrics`` answers whatever ``set`` put there last."""

    def __init__(self) -> None:
        self._text = ""
        self._lock = threading.Lock()
        target = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                with target._lock:
                    body = target._text.encode()
                self.send_response(200 if self.path == "/metrics" else 404)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                return  # scraped every second: keep the test output quiet

        self._server = ThreadingHTTPServer((HOST, 0), Handler)
        self.address = f"{HOST}:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def set(self, samples: dict[str, float]) -> None:
        """Replace the exposition: ``{'test_tenant_ratio{tenant="acme"}': 1.5}``."""
        lines = [f"{series} {value}" for series, value in samples.items()]
        with self._lock:
            self._text = "\n".join(lines) + "\n"

    def __enter__(self) -> MetricsTarget:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()


def wait_for(
    what: str,
    check: Callable[[], T | None],
    *,
    within: float = 60.0,
    every: float = 0.25,
    logs: Callable[[], str] | None = None,
) -> T:
    """Poll ``check()`` until it returns something truthy; fail naming ``what`` after ``within``."""
    deadline = time.monotonic() + within
    last: T | None = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(every)
    seen = json.dumps(last, default=str)[:2000]
    extra = f"\n{logs()}" if logs is not None else ""
    raise AssertionError(f"{what}: not seen within {within:.0f}s (last: {seen}){extra}")
