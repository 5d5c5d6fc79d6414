"""An in-memory cluster: the embedded default's stand-in and the test seam of the port.

``LocalCluster`` keeps applied objects in a dict and merges each apply into
what is there, as server-side apply does for the fields one manager owns:
fields set by someone else (see :meth:`LocalCluster.edit`) survive unless the
apply sets them. It checks kinds against the same table as the REST adapter,
so an object the real cluster would refuse before any request is refused here
too. It does not model namespaces existing, admission or defaulting.
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Iterable, Mapping
from typing import Any

from tenantops.drivers.kubernetes.port import (
    FIELD_MANAGER,
    Applied,
    Drift,
    identity,
    isolation_policy,
    managed_drift,
)
from tenantops.drivers.kubernetes.rest import kind_of

Key = tuple[str, str, str | None]


class LocalCluster:
    """``Cluster`` in memory; ``objects`` is keyed by ``(kind, name, namespace)``."""

    def __init__(self) -> None:
        self.objects: dict[Key, dict[str, Any]] = {}
        self.managers: dict[Key, str] = {}
        self._version = 0
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"LocalCluster({len(self.objects)} objects)"

    def apply(
        self,
        objects: Iterable[Mapping[str, Any]],
        *,
        field_manager: str = FIELD_MANAGER,
        dry_run: bool = False,
    ) -> list[Applied]:
        """Merge each object into the stored one (Namespaces first); nothing kept on a dry run."""
        ordered = sorted(objects, key=lambda o: o.get("kind") != "Namespace")
        return [self._apply(o, field_manager=field_manager, dry_run=dry_run) for o in ordered]

    def read(self, kind: str, name: str, namespace: str | None) -> dict[str, Any] | None:
        """A copy of the stored object, or ``None``."""
        kind_of(kind)
        with self._lock:
            found = self.objects.get((kind, name, namespace))
            return copy.deepcopy(found) if found is not None else None

    def drift(self, objects: Iterable[Mapping[str, Any]]) -> list[Drift]:
        """Compare the fields each object sets with the stored ones."""
        found: list[Drift] = []
        for obj in objects:
            found.extend(managed_drift(obj, self.read(*identity(obj))))
        return found

    def isolate(self, namespace: str) -> Applied:
        """Store the deny-all NetworkPolicy in ``namespace``."""
        return self._apply(isolation_policy(namespace), field_manager=FIELD_MANAGER, dry_run=False)

    def edit(self, kind: str, name: str, namespace: str | None, path: str, value: Any) -> None:
        """Change one field as another writer would (``kubectl edit``): to make drift in tests."""
        with self._lock:
            target = self.objects[(kind, name, namespace)]
            *parents, last = path.split(".")
            for part in parents:
                target = target.setdefault(part, {})
            target[last] = value

    def _apply(self, obj: Mapping[str, Any], *, field_manager: str, dry_run: bool) -> Applied:
        key = identity(obj)
        kind_of(key[0], str(obj.get("apiVersion")))
        with self._lock:
            merged = _merge(copy.deepcopy(self.objects.get(key) or {}), obj)
            self._version += 1
            meta = merged.setdefault("metadata", {})
            meta["resourceVersion"] = str(self._version)
            meta.setdefault("uid", f"local-{self._version}")
            if not dry_run:
                self.objects[key] = merged
                self.managers[key] = field_manager
            return Applied(*key, meta["resourceVersion"], meta["uid"], dry_run)


def _merge(into: dict[str, Any], given: Mapping[str, Any]) -> dict[str, Any]:
    for k, v in given.items():
        if isinstance(v, Mapping) and isinstance(into.get(k), dict):
            _merge(into[k], v)
        else:
            into[k] = copy.deepcopy(v)
    return into
