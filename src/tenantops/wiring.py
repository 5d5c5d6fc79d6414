"""The composition root: which actions (and, through them, drivers) a worker has.

Nothing in the domains imports this module; the CLI and the app call it. A new
driver, action or gate check is installed here, and only here.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import structlog

from tenantops.accessreview.actions import access_review_actions, access_review_checks
from tenantops.breakglass.actions import breakglass_actions
from tenantops.compliance.actions import compliance_actions
from tenantops.config import Settings
from tenantops.db import Database
from tenantops.drivers.actions import driver_actions, identity_provider, itsm_adapter, secret_store
from tenantops.drivers.itsm.database import MirroredItsm
from tenantops.drivers.notify.local import OutboxNotifier, longest_delivery
from tenantops.drivers.notify.settings import SCHEMES
from tenantops.events.publishers.port import NoBroker, Publisher
from tenantops.events.relay import Relay
from tenantops.events.webhooks import signing_key
from tenantops.finops.actions import budget_review_checks, finops_actions
from tenantops.finops.playbook import playbook_actions
from tenantops.itil import refresh
from tenantops.kit.clock import utcnow
from tenantops.oncall import service as oncall
from tenantops.oncall import watch
from tenantops.oncall.escalator import escalate_due
from tenantops.provisioning.actions import (
    cluster_actions,
    gitops_actions,
    quota_actions,
    terraform_actions,
)
from tenantops.reports.actions import report_actions
from tenantops.runbooks import engine
from tenantops.runbooks.actions import ActionContext, GateChecks, Registry, builtin_actions
from tenantops.runbooks.engine import Breach
from tenantops.runbooks.transitions import ENGINE_ACTOR
from tenantops.runbooks.worker import Periodic, Worker
from tenantops.secrets.actions import secret_actions
from tenantops.tenants import service as tenants
from tenantops.tenants.actions import tenant_actions

log = structlog.get_logger("tenantops.events")


def build_actions(settings: Settings, db: Database) -> Registry:
    """Every action a runbook step may name, bound to the configured drivers."""
    actions = builtin_actions()
    actions.update(tenant_actions(settings.data_dir, settings.regions))
    actions.update(driver_actions(settings, db))
    actions.update(gitops_actions(settings, state_of=tenant_state(db)))
    actions.update(terraform_actions(settings))
    actions.update(cluster_actions(settings))
    actions.update(quota_actions())
    actions.update(breakglass_actions())
    actions.update(finops_actions(settings, db))
    actions.update(playbook_actions(settings, db))
    actions.update(report_actions(settings, db))
    actions.update(compliance_actions(settings, db))
    actions.update(access_review_actions(settings, db, identity=identity_provider(settings, db)))
    actions.update(
        secret_actions(settings, db, store=secret_store(settings, db), send=actions["notify.send"])
    )
    return actions


def build_gate_checks(settings: Settings) -> GateChecks:
    """Every check a runbook gate may name (``gate: {check: …}``), for the API and the web."""
    return {**access_review_checks(settings), **budget_review_checks()}


def tenant_state(db: Database) -> Callable[[str], str | None]:
    """A tenant's lifecycle state now, read in a transaction of its own."""

    def state_of(tenant_id: str) -> str | None:
        with db.read() as session:
            return tenants.state_of(session, tenant_id)

    return state_of


def breach_notifier(db: Database, actions: Registry) -> Callable[[Breach], None]:
    """Raise an SLA breach to on-call: a page (escalated by its policy until someone
    acknowledges) and the message to ``TENANTOPS_NOTIFY__ONCALL``, once per breach."""
    send = actions["notify.send"]

    def notify(breach: Breach) -> None:
        with db.read() as session:
            run = engine.get_run(session, breach.run_id)
            runbook_id, tenant = run.runbook_id, run.inputs.get("tenant")
        name = tenant.get("name") if isinstance(tenant, dict) else None
        try:
            with db.write() as session:
                oncall.trigger(
                    session,
                    key=f"sla:{breach.run_id}/{breach.step or 'run'}",
                    summary=(
                        f"SLA breached: {runbook_id} {breach.step or 'run'}"
                        + (f" for {name}" if name else "")
                        + f", deadline {breach.deadline.isoformat()}"
                    ),
                    severity="high",
                    actor=ENGINE_ACTOR,
                    tenant_id=breach.tenant_id,
                )
        except Exception:  # the message below still goes out
            log.exception("could not page on-call for an sla breach", run_id=breach.run_id)
        send.run(
            ActionContext(
                run_id=breach.run_id,
                step_name="sla-breach",
                tenant_id=breach.tenant_id,
                params={
                    "template": "sla_breach",
                    "to": "oncall",
                    "vars": {
                        "runbook": runbook_id,
                        "step": breach.step,
                        "deadline": breach.deadline.isoformat(),
                    },
                },
                idempotency_key=f"{breach.run_id}/sla-breach/{breach.step or 'run'}",
                attempt=1,
                actor="system:engine",
                inputs={"tenant": tenant} if isinstance(tenant, dict) else {},
            )
        )

    return notify


def build_worker(settings: Settings, db: Database) -> Worker:
    w = settings.worker
    actions = build_actions(settings, db)
    return Worker(
        db,
        actions,
        concurrency=w.concurrency,
        poll_seconds=w.poll_seconds,
        deadline_check_seconds=w.deadline_check_seconds,
        lease=timedelta(seconds=w.lease_seconds),
        on_breach=breach_notifier(db, actions),
        jobs=[
            escalator_job(settings, db, actions),
            failed_runs_job(db),
            *mirror_refresh_jobs(settings, db),
        ],
    )


def mirror_refresh_jobs(settings: Settings, db: Database) -> list[Periodic]:
    """The ITSM tool's open mirror rows asked for their tickets' state (``itil.refresh``)
    every ``TENANTOPS_SERVICENOW__REFRESH_SECONDS``; none on the embedded records, or at 0."""
    snow = settings.servicenow
    itsm = itsm_adapter(settings, db) if snow is not None and snow.refresh_seconds > 0 else None
    if snow is None or not isinstance(itsm, MirroredItsm):
        return []
    again = refresh.again_after(
        timedelta(seconds=snow.refresh_seconds), timedelta(seconds=snow.timeout_seconds)
    )
    return [
        Periodic(
            name="itsm-mirror-refresh",
            seconds=snow.refresh_seconds,
            run=lambda stopping: refresh.refresh_mirrors(
                db, itsm.state_of, system=itsm.system, again_after=again, stopping=stopping
            ),
            close=itsm.close,  # its own ServiceNow client, closed when the worker stops
        )
    ]


def failed_runs_job(db: Database) -> Periodic:
    """A run that failed pages on-call once (``oncall.watch``), checked every minute."""
    return Periodic(
        name="oncall-failed-runs",
        seconds=watch.EVERY.total_seconds(),
        run=lambda _stopping: watch.page_failed_runs(db, utcnow()),
    )


def notify_delivery(settings: Settings) -> timedelta:
    """The longest one ``notify.send`` may take with these settings: each attempt
    bounded by the SMTP timeout and every channel's HTTP timeout, times the
    attempts, plus the backoffs between them (a channel's Retry-After included)."""
    smtp, channels = settings.smtp, settings.channels
    per_attempt = smtp.timeout_seconds if smtp.host else 0.0
    if channels.configured():
        count = sum(len(channels.names(scheme)) for scheme in SCHEMES)
        per_attempt += channels.timeout_seconds * count
    if per_attempt == 0:
        return timedelta(0)  # the outbox is the mailbox: nothing is delivered
    return timedelta(
        seconds=longest_delivery(
            attempts=smtp.attempts,
            backoff_seconds=smtp.backoff_seconds,
            attempt_seconds=per_attempt,
            retry_after=channels.configured(),
        )
    )


def escalator_job(settings: Settings, db: Database, actions: Registry) -> Periodic:
    """The on-call escalator as a worker's periodic job (``TENANTOPS_ONCALL__SWEEP_SECONDS``):
    claims outlast the notifier's worst case, and the outbox is asked before a message
    is sent again (``oncall.escalator``)."""
    send = actions["notify.send"]
    outbox = OutboxNotifier(db).queued  # a read: no transport needed
    delivery = notify_delivery(settings)
    return Periodic(
        name="oncall-escalator",
        seconds=settings.oncall.sweep_seconds,
        run=lambda stopping: escalate_due(
            db, send, outbox=outbox, delivery=delivery, stopping=stopping
        ),
    )


def build_publisher(settings: Settings) -> Publisher:
    """The broker the relay publishes to, as configured (``TENANTOPS_EVENTS__BROKER``)."""
    e = settings.events
    if e.broker == "nats":
        from tenantops.events.publishers.nats import NatsPublisher

        return NatsPublisher(
            e.nats_url,
            stream=e.nats_stream,
            subject_prefix=e.nats_subject_prefix,
            timeout=e.publish_timeout_seconds,
        )
    if e.broker == "kafka":
        from tenantops.events.publishers.kafka import KafkaPublisher

        return KafkaPublisher(
            e.kafka_bootstrap_servers,
            options=e.kafka_options,
            topic_prefix=e.kafka_topic_prefix,
            timeout=e.publish_timeout_seconds,
        )
    return NoBroker()


def build_relay(settings: Settings, db: Database) -> Relay:
    if not db.is_sqlite and settings.events.signing_key is None:
        # Each replica would derive webhook secrets from a key file of its own.
        log.warning(
            "TENANTOPS_EVENTS__SIGNING_KEY is not set: replicas sharing this database "
            "sign webhooks with different keys; set the same key on every replica"
        )
    return Relay(db, build_publisher(settings), settings.events, signing_key(settings))
