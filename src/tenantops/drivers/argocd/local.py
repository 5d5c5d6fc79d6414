"""A no-cluster stand-in for Argo CD: it deploys nothing and says so.

The embedded default has a GitOps repository and no cluster, so nothing can be
observed syncing. ``LocalArgoCD`` records the syncs it was asked for (in
memory) and reports the head of the local GitOps repository as the revision,
"Synced/Healthy", with ``observed_by = "local (no cluster)"`` in every state —
evidence that reads as what it is: the commit exists, no controller applied it.
"""

from __future__ import annotations

import threading

from tenantops.drivers.argocd.port import HEALTHY, SYNCED, HistoryEntry, SyncState
from tenantops.drivers.errors import DriverError, Retry
from tenantops.drivers.gitops.port import GitOpsRepo
from tenantops.kit.clock import utcnow

OBSERVED_BY = "local (no cluster)"


class LocalArgoCD:
    """``ArgoCD`` without a cluster: the GitOps head stands for the deployed revision."""

    def __init__(self, repo: GitOpsRepo, *, history_entries: int = 5) -> None:
        self.repo = repo
        self.history_entries = history_entries
        self._syncs: dict[str, list[HistoryEntry]] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return "LocalArgoCD(no cluster)"

    def sync(self, app: str, *, revision: str | None = None, prune: bool = True) -> SyncState:
        """Record a sync of the GitOps head; a ``revision`` the head does not hold is refused
        (the stand-in can only "deploy" the head)."""
        head = self.repo.head()
        if revision is not None and not self.repo.contains(head, revision):
            raise DriverError(
                f"{app}: revision {revision[:12]} is not in the GitOps head {head[:12]}; "
                "the local stand-in only knows the head",
                retry=Retry.PERMANENT,
            )
        with self._lock:
            entries = self._syncs.setdefault(app, [])
            if not entries or entries[-1].revision != head:
                at = utcnow().isoformat()
                entries.append(HistoryEntry(len(entries), head, at, at))
        return self.status(app)

    def wait(
        self, app: str, *, timeout: float, revision: str | None = None, resync: bool = False
    ) -> SyncState:
        """Nothing to wait for without a cluster: the state now, whose head must be
        ``revision`` or a later commit that holds it."""
        state = self.status(app)
        if revision is not None and not self.repo.contains(str(state.revision), revision):
            raise DriverError(
                f"{app}: GitOps head {str(state.revision)[:12]} does not hold {revision[:12]}",
                retry=Retry.PERMANENT,
            )
        return state

    def status(self, app: str) -> SyncState:
        """The GitOps head as "Synced/Healthy", with the syncs recorded here as history."""
        with self._lock:
            entries = list(self._syncs.get(app, ()))
        return SyncState(
            app=app,
            sync_status=SYNCED,
            health=HEALTHY,
            revision=self.repo.head(),
            operation_phase="Succeeded" if entries else None,
            operation_message="recorded by the no-cluster stand-in" if entries else None,
            history=tuple(reversed(entries))[: self.history_entries],
            observed_by=OBSERVED_BY,
        )
