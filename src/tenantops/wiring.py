"""The composition root: which actions (and, through them, drivers) a worker has.

Nothing in the domains imports this module; the CLI and the app call it. A new
driver or action is installed here, and only here.
"""

from __future__ import annotations

from tenantops.config import Settings
from tenantops.db import Database
from tenantops.drivers.actions import driver_actions
from tenantops.provisioning.actions import gitops_actions
from tenantops.runbooks.actions import Registry, builtin_actions
from tenantops.runbooks.worker import Worker
from tenantops.tenants.actions import tenant_actions


def build_actions(settings: Settings, db: Database) -> Registry:
    """Every action a runbook step may name, bound to the configured drivers."""
    actions = builtin_actions()
    actions.update(tenant_actions(settings.data_dir))
    actions.update(driver_actions(settings, db))
    actions.update(gitops_actions(settings))
    return actions


def build_worker(settings: Settings, db: Database) -> Worker:
    w = settings.worker
    return Worker(
        db,
        build_actions(settings, db),
        concurrency=w.concurrency,
        poll_seconds=w.poll_seconds,
        deadline_check_seconds=w.deadline_check_seconds,
    )
