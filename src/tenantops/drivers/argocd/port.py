"""The Argo CD port: sync a tenant's Application, wait for it, read its state for evidence.

Value objects only. ``SyncState`` is what a step records as evidence: sync
status, health, the revision deployed, the last operation's phase and the
newest history entries. ``observed_by`` says who saw it — ``argocd`` for a real
server, ``local (no cluster)`` for the stand-in that only knows the GitOps head.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

SYNCED, OUT_OF_SYNC, HEALTHY, DEGRADED = "Synced", "OutOfSync", "Healthy", "Degraded"


def app_name(tenant: str) -> str:
    """The tenant's Application, as ``provisioning.manifests`` renders it: ``tenant-<name>``."""
    return f"tenant-{tenant}"


@dataclass(frozen=True)
class HistoryEntry:
    """One deployment in the Application's history (``status.history[]``)."""

    id: int
    revision: str
    deployed_at: str
    deploy_started_at: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "revision": self.revision,
            "deployed_at": self.deployed_at,
            "deploy_started_at": self.deploy_started_at,
        }


@dataclass(frozen=True)
class SyncState:
    """An Application's state as read once; ``history`` newest first."""

    app: str
    sync_status: str
    health: str
    revision: str | None
    operation_phase: str | None = None
    operation_message: str | None = None
    history: tuple[HistoryEntry, ...] = ()
    observed_by: str = "argocd"

    @property
    def done(self) -> bool:
        """Synced and Healthy with no operation still running."""
        return (
            self.sync_status == SYNCED
            and self.health == HEALTHY
            and self.operation_phase in (None, "Succeeded")
        )

    def describe(self) -> str:
        """One line for a message: ``OutOfSync/Progressing, operation Running at abc123``."""
        text = f"{self.sync_status}/{self.health}"
        if self.operation_phase:
            text += f", operation {self.operation_phase}"
        if self.revision:
            text += f" at {self.revision[:12]}"
        return text

    def as_dict(self) -> dict[str, Any]:
        return {
            "app": self.app,
            "sync_status": self.sync_status,
            "health": self.health,
            "revision": self.revision,
            "operation_phase": self.operation_phase,
            "operation_message": self.operation_message,
            "history": [h.as_dict() for h in self.history],
            "observed_by": self.observed_by,
        }


class ArgoCD(Protocol):
    """Argo CD (its REST API; a no-cluster stand-in locally)."""

    def sync(self, app: str, *, revision: str | None = None, prune: bool = True) -> SyncState:
        """Start a sync of ``app`` (to ``revision``, else its target); the state right after."""
        ...

    def wait(
        self, app: str, *, timeout: float, revision: str | None = None, resync: bool = False
    ) -> SyncState:
        """Poll until Synced and Healthy (at ``revision`` if given), or raise ``DriverError``.

        Timeout is retriable and names the last state; Degraded health or a
        failed sync operation needs a human. With ``resync``, an Application seen
        OutOfSync twice in a row with nothing running is asked to sync once more
        (one without automated sync whose first sync came before it saw the commit).
        """
        ...

    def status(self, app: str) -> SyncState:
        """The Application's state now, with its newest history entries."""
        ...
