"""argocd.sync_wait, itsm.open and itsm.update as runbook steps, on the embedded default.

Without Argo CD or ServiceNow configured, the stand-ins answer: the GitOps head
reported as synced (saying it was observed without a cluster), ITSM tickets as
the ITIL records of the database (``tenantops itil``). The REST adapters
themselves are tested against recorded contracts in test_argocd.py and test_itsm.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tenantops.config import Settings
from tenantops.db import Database
from tenantops.drivers.actions import driver_actions, local_drivers
from tenantops.drivers.argocd.local import LocalArgoCD
from tenantops.drivers.argocd.rest import ArgoCDRest
from tenantops.drivers.itsm.database import DatabaseItsm
from tenantops.provisioning.actions import gitops_actions
from tenantops.runbooks.actions import StepFailed
from tests.itil.helpers import make_tenant
from tests.provisioning.test_actions import ctx


def test_a_synced_tenant_is_reported_with_the_gitops_commit(db: Database, tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    commit = gitops_actions(settings)["gitops.sync_tenant"].run(ctx()).evidence["commit"]
    actions = driver_actions(settings, db)
    synced = actions["argocd.sync_wait"].run(ctx("argocd", params={"revision": commit}))
    assert synced.evidence["app"] == "tenant-acme"
    assert synced.evidence["sync_status"] == "Synced"
    assert synced.evidence["health"] == "Healthy"
    assert synced.evidence["revision"] == commit
    assert synced.evidence["observed_by"] == "local (no cluster)"


def test_a_commit_landed_on_top_of_the_steps_commit_still_counts_as_deployed(
    db: Database, tmp_path: Path
) -> None:
    """Between the GitOps step and the sync another run committed (here: another tenant);
    the head holds this step's commit, so the sync waits for no exact match."""
    settings = Settings(data_dir=tmp_path)
    gitops = gitops_actions(settings)["gitops.sync_tenant"]
    ours = gitops.run(ctx()).evidence["commit"]
    globex = {**ctx().inputs["tenant"], "id": "t-2", "name": "globex"}
    on_top = gitops.run(ctx(run_id="run-2", tenant=globex)).evidence["commit"]
    assert on_top != ours

    synced = driver_actions(settings, db)["argocd.sync_wait"].run(
        ctx("argocd", params={"revision": ours})
    )
    assert synced.evidence["revision"] == on_top


def test_a_ticket_opened_by_one_step_is_updated_by_another(db: Database, tmp_path: Path) -> None:
    make_tenant(db, "acme")
    actions = driver_actions(Settings(data_dir=tmp_path), db)
    opened = actions["itsm.open"].run(
        ctx("ticket", params={"kind": "change", "short_description": "onboard acme"})
    )
    again = actions["itsm.open"].run(
        ctx("ticket", params={"kind": "change", "short_description": "onboard acme"})
    )
    assert again.output["id"] == opened.output["id"]  # same step key: the same record
    assert again.output["replayed"]
    updated = actions["itsm.update"].run(
        ctx("close", params={"ticket": opened.output, "state": "closed", "work_notes": "done"})
    )
    assert updated.output["id"] == opened.output["id"]
    assert updated.output["state"] == "closed"
    assert opened.output["tenant"] == "acme"
    with pytest.raises(StepFailed, match="kind must be one of"):
        actions["itsm.open"].run(ctx("bad", params={"kind": "request"}))
    with pytest.raises(StepFailed, match=r"output of an itsm\.open step"):
        actions["itsm.update"].run(ctx("bad-update", params={"ticket": "INC001"}))


def test_configured_argocd_is_the_rest_adapter(db: Database, tmp_path: Path) -> None:
    assert isinstance(local_drivers(Settings(data_dir=tmp_path), db).argocd, LocalArgoCD)
    assert isinstance(local_drivers(Settings(data_dir=tmp_path), db).itsm, DatabaseItsm)
    configured = Settings(
        data_dir=tmp_path, argocd={"url": "https://argocd.example", "token": "argo-token"}
    )
    client = local_drivers(configured, db).argocd
    assert isinstance(client, ArgoCDRest)
    # A deployed revision holds the step's commit if the configured GitOps history says so.
    history = getattr(client._contains, "__self__", None)
    assert getattr(history, "path", None) == configured.resolved_gitops_path()
    client.close()


def test_an_application_not_created_yet_is_retried_not_failed_for_good(
    db: Database, tmp_path: Path
) -> None:
    """404 on the sync request: the root app has not created the Application yet."""
    import json
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
    from typing import Any

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.dumps(
                {"error": "not found", "code": 5, "message": 'applications "tenant-acme" not found'}
            ).encode()
            self.send_response(404)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        settings = Settings(
            data_dir=tmp_path,
            argocd={"url": f"http://127.0.0.1:{server.server_port}", "token": "argo-token"},
        )
        with pytest.raises(StepFailed, match="does not exist yet") as failed:
            driver_actions(settings, db)["argocd.sync_wait"].run(ctx("argocd-sync"))
        assert failed.value.retriable
    finally:
        server.shutdown()
        server.server_close()
