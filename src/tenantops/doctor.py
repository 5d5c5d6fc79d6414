"""``tenantops doctor``: is every configured adapter reachable, logged in and allowed?

Each probe looks at one port as the settings configure it and returns rows of
(check, status, detail, fix). ``ok`` and ``skip`` (not configured, nothing to
check) pass; ``fail`` makes the command exit non-zero. A probe never changes
anything and never prints a secret.
"""

from __future__ import annotations

import os
import shutil
import smtplib
import ssl
import subprocess
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import httpx

from tenantops.config import Settings
from tenantops.db import Database
from tenantops.drivers.actions import identity_provider, queue_access, secret_store
from tenantops.drivers.errors import Checked, CheckRow, DriverError
from tenantops.drivers.notify.routing import EMAIL, parse_recipient
from tenantops.migrations import current_revision, head_revision

Status = Literal["ok", "skip", "fail"]


@dataclass(frozen=True)
class Finding:
    check: str
    status: Status
    detail: str
    fix: str = ""


Probe = Callable[[Settings], Iterator[Finding]]


def _error(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:300]


def database(settings: Settings) -> Iterator[Finding]:
    url = settings.resolved_database_url()
    kind = "SQLite" if url.startswith("sqlite") else "PostgreSQL"
    file = Path(url.removeprefix("sqlite:///")) if kind == "SQLite" else None
    if file is not None and not file.exists():
        if _writable(file.parent):
            yield Finding("database", "ok", f"{kind} {file}: made by the first `tenantops serve`")
        else:
            yield Finding(
                "database",
                "fail",
                f"{kind} {file}: {file.parent} is not writable",
                "set TENANTOPS_DATA_DIR to a writable directory",
            )
        return
    try:
        db = Database(url)
        try:
            current, head = current_revision(db.engine), head_revision(db.engine)
        finally:
            db.dispose()
    except Exception as exc:
        yield Finding(
            "database",
            "fail",
            f"{kind}: {_error(exc)}",
            "check TENANTOPS_DATABASE_URL (host, port, user, database) and that the server runs",
        )
        return
    if current == head:
        yield Finding("database", "ok", f"{kind}, schema at {head}")
    elif current is None and kind == "SQLite":
        yield Finding("database", "ok", f"{kind}, empty: the first `tenantops serve` migrates it")
    else:
        yield Finding(
            "database",
            "fail",
            f"{kind}, schema at {current or 'nothing'}, this version needs {head}",
            "run: tenantops db upgrade",
        )


def windows(settings: Settings) -> Iterator[Finding]:
    """Every maintenance window a runbook of the library names is defined and readable here."""
    from tenantops.runbooks import spec
    from tenantops.runbooks import windows as defined

    named = sorted(
        {
            step.window
            for loaded in spec.load_library().values()
            for step in loaded.runbook.steps
            if step.window is not None
        }
    )
    if not named:
        yield Finding("maintenance windows", "skip", "no runbook of the library names a window")
        return
    url = settings.resolved_database_url()
    rows = {}
    if not (url.startswith("sqlite") and not Path(url.removeprefix("sqlite:///")).exists()):
        db = Database(url)  # a SQLite file that is not there yet is not made by a probe
        try:
            with db.read() as session:
                rows = {w.name: w for w in defined.list_windows(session)}
                session.expunge_all()
        finally:
            db.dispose()
    problems = []
    for name in named:
        if name not in rows:
            problems.append(f"{name}: not defined")
            continue
        try:
            defined.of_row(rows[name])
        except ValueError as exc:
            problems.append(f"{name}: {exc}")
    if problems:
        yield Finding(
            "maintenance windows",
            "fail",
            "; ".join(problems),
            "define them: tenantops windows set NAME --days … --from HH:MM --to HH:MM --tz ZONE "
            "(a windowed step whose window is missing fails its run)",
        )
    else:
        yield Finding("maintenance windows", "ok", f"defined: {', '.join(named)}")


def gitops(settings: Settings) -> Iterator[Finding]:
    if shutil.which("git") is None:
        yield Finding(
            "gitops: git", "fail", "git is not installed", "install git (apt install git)"
        )
    else:
        version = subprocess.run(
            ["git", "--version"],  # noqa: S607 - found on PATH just above
            capture_output=True,
            text=True,
            check=False,
        ).stdout.strip()
        yield Finding("gitops: git", "ok", version)
    if settings.gitops.remote is not None:
        from tenantops.drivers.gitops.remote import RemoteGitRepo
        from tenantops.provisioning.actions import gitops_repo

        repo = gitops_repo(settings)
        assert isinstance(repo, RemoteGitRepo)
        yield from _findings("gitops", repo.check())
        return
    path = settings.resolved_gitops_path()
    parent = path if path.exists() else path.parent
    if _writable(parent):
        yield Finding(
            "gitops: repository",
            "ok",
            f"{path} ({'exists' if path.exists() else 'made on first use'})",
        )
    else:
        yield Finding(
            "gitops: repository",
            "fail",
            f"{parent} is not writable",
            "set TENANTOPS_GITOPS__REPO_PATH to a writable directory",
        )


def _writable(directory: Path) -> bool:
    """Whether ``directory`` (or, while it does not exist, the nearest parent) is writable."""
    existing = directory.resolve()
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    return existing.is_dir() and os.access(existing, os.W_OK | os.X_OK)


def events(settings: Settings) -> Iterator[Finding]:
    from tenantops.wiring import build_publisher

    e = settings.events
    if e.broker == "none":
        yield Finding(
            "events: broker", "skip", "none: events stay in the outbox and go to webhooks"
        )
    else:
        publisher = build_publisher(settings)
        try:
            yield Finding(f"events: {e.broker}", "ok", publisher.check())
        except Exception as exc:
            where = e.nats_url if e.broker == "nats" else e.kafka_bootstrap_servers
            yield Finding(
                f"events: {e.broker}",
                "fail",
                f"{where}: {_error(exc)}",
                f"start the broker or fix TENANTOPS_EVENTS__{e.broker.upper()}_…",
            )
        finally:
            publisher.close()
    if settings.database_url is not None and e.signing_key is None:
        yield Finding(
            "events: signing key",
            "fail",
            "replicas sharing a database would each sign webhooks with a key file of their own",
            "set TENANTOPS_EVENTS__SIGNING_KEY to the same random value on every replica",
        )


PROBE_TENANT = "doctor-probe"  # no tenant has to exist: any answer proves the URL is reachable


def health(settings: Settings) -> Iterator[Finding]:
    """The configured health URL answers at all: every onboarding's health check and synthetic
    test call it, so a URL nothing answers fails each one at ``health-check``."""
    h = settings.health
    if not h.base_url:
        yield Finding(
            "health",
            "skip",
            "no TENANTOPS_HEALTH__BASE_URL: tenants are checked through this server's built-in "
            "probe /probe/tenants/{tenant}",
        )
        return
    from tenantops.drivers.health.local import reach

    shown = _without_userinfo(h.base_url)
    try:
        response = reach(h.base_url, tenant_name=PROBE_TENANT, timeout_seconds=h.timeout_seconds)
    except (ValueError, httpx.InvalidURL) as exc:  # no placeholder, or not a URL at all
        yield Finding(
            "health",
            "fail",
            _short(f"{shown}: {exc}"),
            "set TENANTOPS_HEALTH__BASE_URL to a URL with a {tenant} placeholder, "
            "e.g. https://{tenant}.apps.example.com/healthz",
        )
        return
    except DriverError as exc:  # refused, timed out, TLS failed: the connection error itself
        yield Finding(
            "health",
            "fail",
            _short(f"{shown}: {_error(exc.__cause__ or exc)}"),
            "check TENANTOPS_HEALTH__BASE_URL (and __TIMEOUT_SECONDS) and that this host reaches "
            "the tenants' endpoints",
        )
        return
    yield Finding(
        "health",
        "ok",
        f"{_without_userinfo(str(response.url))} answers {response.status_code} "
        f"(for a tenant named {PROBE_TENANT}: any status proves it is reachable)",
    )


def _without_userinfo(url: str) -> str:
    """``url`` without a user and password, which a probe never prints."""
    scheme, sep, rest = url.partition("://")
    authority, slash, path = rest.partition("/")
    return f"{scheme}{sep}{authority.rpartition('@')[2]}{slash}{path}" if sep else url


def _findings(
    prefix: str, rows: Iterable[CheckRow], shown: Callable[[str], str] = str
) -> Iterator[Finding]:
    """An adapter's own check rows as findings, named after its port."""
    for row in rows:
        yield Finding(
            f"{prefix}: {row.check}", "ok" if row.ok else "fail", shown(row.detail), row.fix
        )


def _asked(prefix: str, adapter: object) -> Iterator[Finding]:
    """The findings of an adapter that checks itself; its connections closed after."""
    assert isinstance(adapter, Checked), f"{type(adapter).__name__} cannot check itself"
    try:
        yield from _findings(prefix, adapter.check())
    finally:
        adapter.close()


def _stored(
    prefix: str, settings: Settings, build: Callable[[Settings, Database], object]
) -> Iterator[Finding]:
    """``_asked`` for an adapter that keeps its effect log in the database."""
    db = Database(settings.resolved_database_url())
    try:
        yield from _asked(prefix, build(settings, db))
    finally:
        db.dispose()


def access(settings: Settings) -> Iterator[Finding]:
    if settings.access.adapter == "local":
        yield Finding("access", "skip", "local adapter: queue access kept in the database")
        return
    yield from _stored("access", settings, queue_access)


def identity(settings: Settings) -> Iterator[Finding]:
    if settings.identity.adapter == "local":
        yield Finding("identity", "skip", "local adapter: tenant groups kept in the database")
        return
    yield from _stored("identity", settings, identity_provider)


def secrets(settings: Settings) -> Iterator[Finding]:
    if settings.secrets.adapter == "local":
        yield Finding("secrets", "skip", "local adapter: references kept in the database")
        return
    yield from _stored("secrets", settings, secret_store)


def kubernetes(settings: Settings) -> Iterator[Finding]:
    if settings.kubernetes is None:
        yield Finding("kubernetes", "skip", "not configured: the cluster is reached through GitOps")
        return
    from tenantops.drivers.kubernetes.rest import KubernetesRest

    yield from _asked("kubernetes", KubernetesRest(settings.kubernetes))


def argocd(settings: Settings) -> Iterator[Finding]:
    if settings.argocd is None:
        yield Finding("argocd", "skip", "not configured: syncs are reported without a cluster")
        return
    from tenantops.drivers.argocd.rest import ArgoCDRest

    yield from _asked("argocd", ArgoCDRest(settings.argocd))


def itsm(settings: Settings) -> Iterator[Finding]:
    if settings.servicenow is None:
        yield Finding(
            "itsm",
            "skip",
            "no ServiceNow: records are kept as ITIL records in the database (tenantops itil list)",
        )
        return
    from tenantops.drivers.itsm.servicenow import ServiceNowItsm

    yield from _asked("itsm", ServiceNowItsm(settings.servicenow))


def notify(settings: Settings) -> Iterator[Finding]:
    smtp = settings.smtp
    if smtp.host is None:
        yield Finding("notify: smtp", "skip", "no SMTP host: messages stay in the outbox")
    else:
        yield _smtp(settings)
    problems = settings.channels.problems()
    if problems:
        for problem in problems:
            yield Finding("notify: channels", "fail", problem, "fix TENANTOPS_CHANNELS__…")
    elif settings.channels.configured():
        names = [
            f"{scheme}:{name}"
            for scheme in ("slack", "teams", "webhook", "pagerduty")
            for name in settings.channels.names(scheme)
        ]
        yield Finding("notify: channels", "ok", ", ".join(names) + " configured (not posted to)")
    else:
        yield Finding("notify: channels", "skip", "no Slack, Teams, webhook or PagerDuty channel")
    unknown = []
    for role in ("legal", "finance", "governance", "security", "oncall"):
        for value in getattr(settings.notify, role):
            try:
                found = parse_recipient(value)
            except DriverError as exc:
                unknown.append(f"{role}: {exc}")
                continue
            if found.scheme != EMAIL and found.name not in settings.channels.names(found.scheme):
                unknown.append(f"{role}: {found.scheme}:{found.name} is not configured")
    for problem in unknown:
        yield Finding(
            "notify: recipients",
            "fail",
            problem,
            "configure the channel under TENANTOPS_CHANNELS__… or fix TENANTOPS_NOTIFY__…",
        )


def _smtp(settings: Settings) -> Finding:
    s = settings.smtp
    where = f"{s.host}:{s.port}"
    try:
        with smtplib.SMTP(s.host or "", s.port, timeout=s.timeout_seconds) as client:
            client.ehlo()
            if s.starttls:
                client.starttls(context=ssl.create_default_context())
                client.ehlo()
            if s.username and s.password is not None:
                client.login(s.username, s.password.get_secret_value())
                return Finding("notify: smtp", "ok", f"{where}, logged in as {s.username}")
            return Finding("notify: smtp", "ok", f"{where} answers")
    except smtplib.SMTPAuthenticationError:
        return Finding(
            "notify: smtp",
            "fail",
            f"{where} refused the login of {s.username}",
            "check TENANTOPS_SMTP__USERNAME and __PASSWORD",
        )
    except (OSError, smtplib.SMTPException) as exc:
        return Finding(
            "notify: smtp",
            "fail",
            f"{where}: {_error(exc)}",
            "check TENANTOPS_SMTP__HOST/__PORT and that the server accepts this host",
        )


def oidc(settings: Settings) -> Iterator[Finding]:
    o = settings.oidc
    if not o.issuer:
        yield Finding("auth: oidc", "skip", "no issuer: API tokens only")
        return
    if not o.audience:
        yield Finding(
            "auth: oidc", "fail", "an issuer without an audience", "set TENANTOPS_OIDC__AUDIENCE"
        )
    jwks = o.jwks_url
    try:
        with httpx.Client(timeout=10) as client:
            if jwks is None:
                meta = client.get(o.issuer.rstrip("/") + "/.well-known/openid-configuration")
                meta.raise_for_status()
                jwks = str(meta.json()["jwks_uri"])
            keys = client.get(jwks)
            keys.raise_for_status()
            count = len(keys.json().get("keys", []))
    except (httpx.HTTPError, ValueError, KeyError) as exc:
        yield Finding(
            "auth: oidc",
            "fail",
            f"{o.issuer}: {_error(exc)}",
            "check TENANTOPS_OIDC__ISSUER (or __JWKS_URL) and that this host reaches it",
        )
        return
    yield Finding(
        "auth: oidc",
        "ok" if count else "fail",
        f"{jwks}: {count} signing keys",
        "" if count else "the issuer publishes no keys; check its realm",
    )


def terraform(settings: Settings) -> Iterator[Finding]:
    """Terraform is checked only when chosen (``TENANTOPS_TERRAFORM__BINARY``); its check
    initialises the module in a scratch directory, which an unchosen probe must not make."""
    tf = settings.terraform
    if not tf.binary:
        found = shutil.which("terraform") or shutil.which("tofu")
        detail = (
            f"{found} found but not chosen (TENANTOPS_TERRAFORM__BINARY)"
            if found
            else "neither terraform nor tofu installed"
        )
        yield Finding("terraform", "skip", f"{detail}: runbooks use the GitOps path")
        return
    from tenantops.drivers.terraform.cli import TerraformCli

    yield from _findings("terraform", TerraformCli(settings.resolved_terraform()).check(), _short)


def _short(text: str, limit: int = 300) -> str:
    """The first lines of a tool's long message, enough to recognise it."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


PROBES: tuple[Probe, ...] = (
    database,
    windows,
    gitops,
    events,
    access,
    identity,
    secrets,
    kubernetes,
    argocd,
    itsm,
    notify,
    oidc,
    health,
    terraform,
)


def run(settings: Settings, probes: tuple[Probe, ...] = PROBES) -> list[Finding]:
    """Every finding of every probe; a probe that crashes is a failure, not a crash."""
    findings: list[Finding] = []
    for probe in probes:
        try:
            findings.extend(probe(settings))
        except Exception as exc:
            findings.append(Finding(probe.__name__, "fail", _error(exc), "see the detail"))
    return findings
