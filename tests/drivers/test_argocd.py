"""Argo CD against recorded exchanges replayed by a local HTTP server, and the local stand-in.

``Replay`` is one ``http.server`` on 127.0.0.1 that answers a scripted list of
exchanges from ``tests/drivers/contracts/<vendor>/*.json`` in order. Each
request must be the one the exchange records (method, path, required query
parameters and body keys, an ``Authorization`` header); one that is not is
answered 400 and recorded as a problem, and every test ends with no problems
and nothing left unanswered. Polling runs on a fake clock whose sleep only
advances time, so timeouts are exercised with bounded polls and no waiting.
"""

from __future__ import annotations

import json
import logging
import re
import socket
import threading
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from pydantic import SecretStr

from tenantops.drivers.argocd.local import OBSERVED_BY, LocalArgoCD
from tenantops.drivers.argocd.port import ArgoCD, app_name
from tenantops.drivers.argocd.rest import ArgoCDError, ArgoCDRest
from tenantops.drivers.argocd.settings import ArgoCDSettings
from tenantops.drivers.errors import DriverError, Retry
from tenantops.drivers.gitops import Change, LocalGitRepo

CONTRACTS = Path(__file__).parent / "contracts"
TOKEN = "eyJhbGciOiJIUzI1NiJ9.sEcReTaRgOtOkEn.signature"
APP = "tenant-acme"


def contract(vendor: str, name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((CONTRACTS / vendor / f"{name}.json").read_text())
    return loaded


# The replaying server --------------------------------------------------------------------


@dataclass
class Seen:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: Any


def request_problems(expected: dict[str, Any], seen: Seen) -> list[str]:
    """How ``seen`` differs from the recorded request (query values: exact, ``None`` = present,
    ``~regex``); body keys must be present, and equal where the record gives a value."""
    found = []
    if seen.method != expected["method"] or seen.path != expected["path"]:
        found.append(f"{seen.method} {seen.path}, expected {expected['method']} {expected['path']}")
    for name, want in (expected.get("query") or {}).items():
        got = seen.query.get(name)
        if got is None:
            found.append(f"query {name} missing")
        elif isinstance(want, str) and want.startswith("~"):
            if not re.search(want[1:], got):
                found.append(f"query {name}={got!r} does not match {want[1:]!r}")
        elif want is not None and got != want:
            found.append(f"query {name}={got!r}, expected {want!r}")
    for name, want in (expected.get("body") or {}).items():
        if not isinstance(seen.body, dict) or name not in seen.body:
            found.append(f"body {name} missing")
        elif want is not None and seen.body[name] != want:
            found.append(f"body {name}={seen.body[name]!r}, expected {want!r}")
    if expected.get("auth", True) and not seen.headers.get("authorization"):
        found.append("no Authorization header")
    return found


class Replay:
    """Answers scripted exchanges in order; records what it saw and what did not fit."""

    def __init__(self) -> None:
        self.queue: deque[dict[str, Any]] = deque()
        self.seen: list[Seen] = []
        self.problems: list[str] = []
        self.lock = threading.Lock()
        self.url = ""

    def script(self, *exchanges: dict[str, Any]) -> None:
        self.queue.extend(exchanges)

    def answer(self, seen: Seen) -> dict[str, Any]:
        with self.lock:
            self.seen.append(seen)
            if not self.queue:
                self.problems.append(f"unexpected {seen.method} {seen.path}")
                return {"status": 400, "headers": {}, "body": {"error": "not scripted"}}
            exchange = self.queue.popleft()
            found = request_problems(exchange["request"], seen)
            if found:
                self.problems.extend(found)
                return {"status": 400, "headers": {}, "body": {"error": "; ".join(found)}}
            response: dict[str, Any] = exchange["response"]
            return response

    def assert_done(self) -> None:
        assert self.problems == []
        assert not self.queue, f"{len(self.queue)} scripted exchanges never asked for"


@pytest.fixture
def replay() -> Iterator[Replay]:
    state = Replay()

    class Handler(BaseHTTPRequestHandler):
        def _serve(self) -> None:
            split = urlsplit(self.path)
            raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            seen = Seen(
                method=self.command,
                path=split.path,
                query={k: v[0] for k, v in parse_qs(split.query).items()},
                headers={k.lower(): v for k, v in self.headers.items()},
                body=json.loads(raw) if raw else None,
            )
            reply = state.answer(seen)
            body = reply["body"]
            data = (body if isinstance(body, str) else json.dumps(body)).encode()
            self.send_response(reply["status"])
            headers = {"Content-Type": "application/json", **reply["headers"]}
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_PATCH = _serve  # noqa: N815

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield state
    server.shutdown()
    server.server_close()
    thread.join()


class FakeTime:
    """A monotonic clock that only moves when something sleeps."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


# Argo CD -----------------------------------------------------------------------------------

APPS = contract("argocd", "application")
ERRORS = contract("argocd", "errors")
DOCTOR = contract("argocd", "doctor")
OLD, NEW = APPS["revisions"]["old"], APPS["revisions"]["new"]


def ex(name: str) -> dict[str, Any]:
    for c in (APPS, ERRORS, DOCTOR):
        if name in c["exchanges"]:
            found: dict[str, Any] = c["exchanges"][name]
            return found
    raise KeyError(name)


@pytest.fixture
def fake_time() -> FakeTime:
    return FakeTime()


@pytest.fixture
def argocd(replay: Replay, fake_time: FakeTime) -> Iterator[ArgoCDRest]:
    settings = ArgoCDSettings(url=replay.url, token=SecretStr(TOKEN), poll_initial_seconds=2)
    client = ArgoCDRest(settings, sleep=fake_time.sleep, clock=fake_time.clock)
    yield client
    client.close()


def test_the_tenant_application_is_named_as_the_manifests_render_it() -> None:
    assert app_name("acme") == APP


def test_sync_then_wait_follows_the_application_to_synced_and_healthy(
    argocd: ArgoCDRest, replay: Replay, fake_time: FakeTime
) -> None:
    replay.script(
        ex("sync_started"),
        ex("out_of_sync_progressing"),
        ex("synced_progressing"),
        ex("synced_healthy"),
    )
    started = argocd.sync(APP, revision=NEW)
    assert (started.sync_status, started.operation_phase) == ("OutOfSync", "Running")

    state = argocd.wait(APP, timeout=120, revision=NEW)

    assert state.done
    assert (state.sync_status, state.health, state.revision) == ("Synced", "Healthy", NEW)
    assert state.operation_phase == "Succeeded"
    assert [h.revision for h in state.history] == [NEW, OLD]  # newest first, for evidence
    assert state.as_dict()["history"][0]["deployed_at"]
    assert fake_time.sleeps == [2, 4]  # backoff doubles between polls
    sync = replay.seen[0]
    assert sync.body == {"name": APP, "prune": True, "dryRun": False, "revision": NEW}
    assert all(s.headers["authorization"] == f"Bearer {TOKEN}" for s in replay.seen)
    replay.assert_done()


def test_a_healthy_application_at_the_old_revision_is_not_done(
    argocd: ArgoCDRest, replay: Replay
) -> None:
    replay.script(ex("synced_healthy_old"), ex("synced_healthy"))
    assert argocd.wait(APP, timeout=60, revision=NEW).revision == NEW
    replay.assert_done()


def test_a_later_revision_holding_the_commit_is_done_and_an_older_one_asks_for_a_refresh(
    replay: Replay, fake_time: FakeTime
) -> None:
    # The GitOps history: OLD, then the step's commit OURS, then NEW on top of it.
    ours = "5" * 40
    history = {(NEW, ours), (NEW, OLD), (ours, OLD)}  # (revision, ancestor)
    asked: list[tuple[str, str]] = []

    def contains(revision: str, ancestor: str) -> bool:
        asked.append((revision, ancestor))
        return (revision, ancestor) in history

    replay.script(ex("synced_healthy_old"), ex("refreshed"))
    settings = ArgoCDSettings(url=replay.url, token=SecretStr(TOKEN), poll_initial_seconds=2)
    client = ArgoCDRest(settings, sleep=fake_time.sleep, clock=fake_time.clock, contains=contains)
    try:
        state = client.wait(APP, timeout=60, revision=ours)
    finally:
        client.close()

    assert state.revision == NEW  # another change landed on top; ours is deployed with it
    assert asked == [(OLD, ours), (NEW, ours)]
    assert "refresh" not in replay.seen[0].query
    assert replay.seen[1].query == {"refresh": "normal"}  # behind: Argo CD looks at git now
    replay.assert_done()


def test_a_gitops_history_that_cannot_answer_yet_is_polled_through_one_that_never_will_stops(
    replay: Replay, fake_time: FakeTime
) -> None:
    answers: list[bool | DriverError] = [
        DriverError("git fetch failed: connection refused", retry=Retry.RETRIABLE),
        True,
    ]

    def contains(revision: str, ancestor: str) -> bool:
        answer = answers.pop(0)
        if isinstance(answer, DriverError):
            raise answer
        return answer

    replay.script(ex("synced_healthy"), ex("refreshed"))
    settings = ArgoCDSettings(url=replay.url, token=SecretStr(TOKEN), poll_initial_seconds=2)
    client = ArgoCDRest(settings, sleep=fake_time.sleep, clock=fake_time.clock, contains=contains)
    try:
        assert client.wait(APP, timeout=60, revision="5" * 40).revision == NEW
        replay.assert_done()

        answers.append(DriverError("login refused", retry=Retry.NEEDS_HUMAN))
        replay.script(ex("synced_healthy"))
        with pytest.raises(DriverError, match="login refused"):
            client.wait(APP, timeout=60, revision="5" * 40)
    finally:
        client.close()
    replay.assert_done()


def test_without_the_history_only_the_very_revision_is_done(
    argocd: ArgoCDRest, replay: Replay
) -> None:
    replay.script(ex("synced_healthy"), ex("refreshed"))
    with pytest.raises(ArgoCDError) as raised:
        argocd.wait(APP, timeout=2, revision="5" * 40)
    assert raised.value.retry is Retry.RETRIABLE
    assert f"at {'5' * 12}" in str(raised.value)
    replay.assert_done()


def test_an_application_left_out_of_sync_with_nothing_running_is_synced_once_more(
    argocd: ArgoCDRest, replay: Replay
) -> None:
    # No automated sync, and the step's sync came before Argo CD saw the commit.
    replay.script(
        ex("out_of_sync_idle"),
        ex("out_of_sync_idle"),
        ex("sync_started"),  # asked once more, to the Application's target
        ex("out_of_sync_progressing"),
        ex("synced_healthy"),
    )
    assert argocd.wait(APP, timeout=300, revision=NEW, resync=True).revision == NEW
    (again,) = [s for s in replay.seen if s.method == "POST"]
    assert "revision" not in again.body
    replay.assert_done()

    # Without resync (or once it was used) the wait only watches.
    replay.script(*[ex("out_of_sync_idle")] * 4)
    with pytest.raises(ArgoCDError, match="not Synced/Healthy"):
        argocd.wait(APP, timeout=10, revision=NEW)
    replay.assert_done()


def test_wait_times_out_retriable_naming_the_last_state_after_bounded_polls(
    argocd: ArgoCDRest, replay: Replay, fake_time: FakeTime
) -> None:
    # Polls at t=0, 2, 6 and 10 (the last sleep is cut to what is left), then gives up.
    replay.script(*[ex("out_of_sync_progressing")] * 4)
    with pytest.raises(ArgoCDError) as raised:
        argocd.wait(APP, timeout=10)
    assert raised.value.retry is Retry.RETRIABLE
    assert "not Synced/Healthy after 10s" in str(raised.value)
    assert "OutOfSync/Progressing, operation Running" in str(raised.value)
    assert sum(fake_time.sleeps) == 10
    replay.assert_done()


def test_poll_delay_is_capped(replay: Replay, fake_time: FakeTime) -> None:
    settings = ArgoCDSettings(
        url=replay.url, token=SecretStr(TOKEN), poll_initial_seconds=2, poll_max_seconds=5
    )
    client = ArgoCDRest(settings, sleep=fake_time.sleep, clock=fake_time.clock)
    replay.script(*[ex("out_of_sync_progressing")] * 5, ex("synced_healthy"))
    client.wait(APP, timeout=300)
    assert fake_time.sleeps == [2, 4, 5, 5, 5]
    replay.assert_done()


def test_degraded_health_needs_a_human_and_stops_polling(
    argocd: ArgoCDRest, replay: Replay
) -> None:
    replay.script(ex("out_of_sync_progressing"), ex("degraded"))
    with pytest.raises(ArgoCDError) as raised:
        argocd.wait(APP, timeout=300)
    assert raised.value.retry is Retry.NEEDS_HUMAN
    assert "Degraded" in str(raised.value)
    replay.assert_done()


def test_a_failed_sync_operation_needs_a_human_with_argo_cds_message(
    argocd: ArgoCDRest, replay: Replay
) -> None:
    replay.script(ex("sync_failed"))
    with pytest.raises(ArgoCDError) as raised:
        argocd.wait(APP, timeout=300)
    assert raised.value.retry is Retry.NEEDS_HUMAN
    assert "admission webhook" in str(raised.value)
    replay.assert_done()


def test_a_sync_already_in_progress_is_followed_not_failed(
    argocd: ArgoCDRest, replay: Replay
) -> None:
    replay.script(ex("sync_in_progress"), ex("out_of_sync_progressing"), ex("synced_healthy"))
    assert argocd.sync(APP).operation_phase == "Running"
    assert argocd.wait(APP, timeout=60).done
    replay.assert_done()


def test_wait_polls_through_not_found_and_rate_limits_honouring_retry_after(
    argocd: ArgoCDRest, replay: Replay, fake_time: FakeTime
) -> None:
    replay.script(ex("not_found"), ex("rate_limited"), ex("unavailable"), ex("synced_healthy"))
    assert argocd.wait(APP, timeout=60).done
    assert fake_time.sleeps == [2, 4, 8]  # the 429's Retry-After: 4 is not shorter than 4
    replay.assert_done()


def test_wait_stops_at_once_on_an_error_retrying_cannot_fix(
    argocd: ArgoCDRest, replay: Replay
) -> None:
    replay.script(ex("unauthenticated"))
    with pytest.raises(ArgoCDError) as raised:
        argocd.wait(APP, timeout=60)
    assert raised.value.retry is Retry.NEEDS_HUMAN
    replay.assert_done()


@pytest.mark.parametrize("name", sorted(ERRORS["exchanges"]))
def test_each_recorded_error_maps_to_its_verdict(
    argocd: ArgoCDRest, replay: Replay, name: str
) -> None:
    exchange = ERRORS["exchanges"][name]
    replay.script(exchange)
    call = argocd.sync if exchange["request"]["method"] == "POST" else argocd.status
    with pytest.raises(ArgoCDError) as raised:
        call(APP)
    error = raised.value
    assert error.retry is Retry(exchange["verdict"])
    assert error.status == exchange["response"]["status"]
    assert error.retry_after == exchange.get("retry_after")
    body = exchange["response"]["body"]
    if isinstance(body, dict):
        assert body["message"][:40] in str(error)
    replay.assert_done()


def test_no_server_is_retriable() -> None:
    client = ArgoCDRest(
        ArgoCDSettings(url=f"http://127.0.0.1:{free_port()}", token=SecretStr(TOKEN))
    )
    with pytest.raises(ArgoCDError) as raised:
        client.status(APP)
    assert raised.value.retry is Retry.RETRIABLE
    assert client.check()[0].ok is False
    client.close()


def test_the_token_shows_in_no_error_repr_or_log(
    argocd: ArgoCDRest, replay: Replay, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    replay.script(ex("unauthenticated"), ex("permission_denied"))
    errors = []
    for call in (lambda: argocd.status(APP), lambda: argocd.sync(APP)):
        with pytest.raises(ArgoCDError) as raised:
            call()
        errors.append(raised.value)
    shown = [repr(argocd), repr(argocd.settings), str(argocd.settings), caplog.text]
    shown += [str(e) for e in errors] + [repr(e) for e in errors]
    assert not [s for s in shown if "sEcReT" in s]
    replay.assert_done()


def test_doctor_checks_reachable_token_and_applications(argocd: ArgoCDRest, replay: Replay) -> None:
    replay.script(ex("version"), ex("userinfo"), ex("applications"))
    rows = argocd.check()
    assert [(r.check, r.ok) for r in rows] == [
        ("argocd reachable", True),
        ("argocd token valid", True),
        ("argocd can read applications", True),
    ]
    assert rows[0].detail.startswith("v2.")
    assert rows[2].detail == "2 visible"
    replay.assert_done()


def test_doctor_says_how_to_fix_a_token_that_is_not_logged_in(
    argocd: ArgoCDRest, replay: Replay
) -> None:
    replay.script(ex("version"), ex("userinfo_logged_out"))
    rows = argocd.check()
    assert rows[-1].ok is False
    assert "TENANTOPS_ARGOCD__TOKEN" in rows[-1].fix
    replay.assert_done()


# The local stand-in ----------------------------------------------------------------------


def test_local_stand_in_reports_the_gitops_head_and_says_no_cluster_saw_it(
    tmp_path: Path,
) -> None:
    repo = LocalGitRepo(tmp_path / "gitops")
    commit = repo.apply(
        Change(
            summary="onboard acme",
            run_id="r1",
            actor="alice",
            idempotency_key="k1",
            files={"apps/tenants/acme.yaml": "kind: Application\n"},
        )
    )
    argocd: ArgoCD = LocalArgoCD(repo)
    synced = argocd.sync(APP)
    again = argocd.sync(APP)
    state = argocd.wait(APP, timeout=1, revision=commit.sha)

    assert (state.sync_status, state.health, state.revision) == ("Synced", "Healthy", commit.sha)
    assert state.observed_by == synced.observed_by == OBSERVED_BY == "local (no cluster)"
    assert len(again.history) == 1  # the same head synced twice is one deployment
    with pytest.raises(DriverError) as raised:
        argocd.sync(APP, revision="0" * 40)
    assert raised.value.retry is Retry.PERMANENT


def test_local_stand_in_accepts_a_revision_the_head_holds_and_refuses_one_it_does_not(
    tmp_path: Path,
) -> None:
    repo = LocalGitRepo(tmp_path / "gitops")

    def commit(key: str) -> str:
        files: dict[str, str | None] = {f"apps/{key}.yaml": f"{key}\n"}
        change = Change(summary=key, run_id="r", actor="a", idempotency_key=key, files=files)
        return repo.apply(change).sha

    ours, on_top = commit("ours"), commit("on-top")
    elsewhere = LocalGitRepo(tmp_path / "elsewhere")
    foreign = elsewhere.apply(
        Change(summary="x", run_id="r", actor="a", idempotency_key="x", files={"x": "x\n"})
    ).sha
    argocd = LocalArgoCD(repo)

    assert argocd.sync(APP, revision=ours).revision == on_top
    assert argocd.wait(APP, timeout=1, revision=ours).revision == on_top
    for unknown in (foreign, "not-a-sha"):
        with pytest.raises(DriverError) as raised:
            argocd.wait(APP, timeout=1, revision=unknown)
        assert raised.value.retry is Retry.PERMANENT
        assert "does not hold" in str(raised.value)


# One contract for every adapter of the port ------------------------------------------------


@pytest.fixture(params=["local", "rest"])
def any_argocd(
    request: pytest.FixtureRequest, replay: Replay, fake_time: FakeTime, tmp_path: Path
) -> Iterator[tuple[ArgoCD, str]]:
    if request.param == "local":
        repo = LocalGitRepo(tmp_path / "gitops")
        sha = repo.apply(
            Change(summary="s", run_id="r", actor="a", idempotency_key="k", files={"f": "x\n"})
        ).sha
        yield LocalArgoCD(repo), sha
        return
    replay.script(ex("sync_started"), ex("synced_progressing"), ex("synced_healthy"))
    settings = ArgoCDSettings(url=replay.url, token=SecretStr(TOKEN))
    client = ArgoCDRest(settings, sleep=fake_time.sleep, clock=fake_time.clock)
    yield client, NEW
    client.close()
    replay.assert_done()


def test_contract_sync_then_wait_ends_synced_healthy_at_the_revision_with_history(
    any_argocd: tuple[ArgoCD, str],
) -> None:
    argocd, revision = any_argocd
    argocd.sync(APP, revision=revision)
    state = argocd.wait(APP, timeout=60, revision=revision)
    assert state.done
    assert (state.app, state.revision) == (APP, revision)
    assert state.history[0].revision == revision
    assert state.as_dict()["observed_by"] == state.observed_by
