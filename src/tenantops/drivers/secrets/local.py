"""The local secret store: references and metadata in the control-plane database.

The embedded default and the test seam of ``SecretStore``. It keeps what a
Vault adapter would keep on our side — which store, which paths, revoked or
not — and refuses metadata that looks like it carries a value, so a secret
cannot end up in the control plane through it. Each change and its
effect-log row commit together: once per idempotency key.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from tenantops.db import Database
from tenantops.drivers.effects import apply_once
from tenantops.drivers.errors import DriverError, Retry
from tenantops.drivers.secrets.models import SecretEffect, SecretPathRecord, SecretStoreRecord
from tenantops.drivers.secrets.port import (
    PathSpec,
    SecretRef,
    StoreState,
    check_metadata,
    check_path,
    state_from_record,
)
from tenantops.kit.clock import as_utc, utcnow


def prefix_of(tenant_name: str) -> str:
    return f"tenants/{tenant_name}/"


def store_ref_of(tenant_name: str) -> str:
    return f"local://secrets/{prefix_of(tenant_name)}"


def _state(session: Session, store: SecretStoreRecord) -> StoreState:
    paths = session.execute(
        select(SecretPathRecord)
        .where(SecretPathRecord.tenant_id == store.tenant_id)
        .order_by(SecretPathRecord.path)
    ).scalars()
    return StoreState(
        tenant_id=store.tenant_id,
        tenant_name=store.tenant_name,
        store_ref=store.store_ref,
        prefix=store.prefix,
        status=store.status,
        revoked_at=None if store.revoked_at is None else as_utc(store.revoked_at),
        paths=tuple(
            SecretRef(
                p.path, p.status, p.version, dict(p.meta), as_utc(p.rotated_at or p.created_at)
            )
            for p in paths
        ),
    )


def _put_path(session: Session, store: SecretStoreRecord, spec: PathSpec) -> None:
    full = store.prefix + check_path(spec.path.strip("/"))
    metadata = check_metadata(spec.metadata)
    now = utcnow()
    row = session.get(SecretPathRecord, full)
    if row is None:
        session.add(
            SecretPathRecord(
                path=full,
                tenant_id=store.tenant_id,
                status=store.status,
                version=1,
                meta=metadata,
                created_at=now,
                updated_at=now,
                rotated_at=now,
            )
        )
    elif row.meta != metadata and metadata:
        row.meta, row.updated_at = metadata, now


class LocalSecrets:
    """``SecretStore`` on the control-plane database (metadata only)."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def _change(
        self,
        *,
        key: str,
        operation: str,
        tenant_id: str,
        mutate: Callable[[Session], SecretStoreRecord],
    ) -> StoreState:
        def change(session: Session) -> StoreState:
            store = mutate(session)
            store.updated_at = utcnow()
            session.flush()
            return _state(session, store)

        return apply_once(
            self.db,
            SecretEffect,
            key=key,
            operation=operation,
            tenant_id=tenant_id,
            change=change,
            recorded=state_from_record,
            what="secrets",
        )

    @staticmethod
    def _store(session: Session, tenant_id: str) -> SecretStoreRecord:
        store = session.get(SecretStoreRecord, tenant_id, with_for_update=True)
        if store is None:
            raise DriverError(
                f"tenant {tenant_id} has no secret store; create it first",
                retry=Retry.NEEDS_HUMAN,
            )
        return store

    def create_store(
        self,
        *,
        tenant_id: str,
        tenant_name: str,
        paths: Sequence[PathSpec],
        idempotency_key: str,
    ) -> StoreState:
        def mutate(session: Session) -> SecretStoreRecord:
            store = session.get(SecretStoreRecord, tenant_id, with_for_update=True)
            if store is None:
                now = utcnow()
                store = SecretStoreRecord(
                    tenant_id=tenant_id,
                    tenant_name=tenant_name,
                    store_ref=store_ref_of(tenant_name),
                    prefix=prefix_of(tenant_name),
                    status="active",
                    created_at=now,
                    updated_at=now,
                    revoked_at=None,
                )
                session.add(store)
                session.flush()
            for spec in paths:
                _put_path(session, store, spec)
            return store

        return self._change(
            key=idempotency_key, operation="create_store", tenant_id=tenant_id, mutate=mutate
        )

    def add_path(self, *, tenant_id: str, path: PathSpec, idempotency_key: str) -> StoreState:
        def mutate(session: Session) -> SecretStoreRecord:
            store = self._store(session, tenant_id)
            _put_path(session, store, path)
            return store

        return self._change(
            key=idempotency_key, operation="add_path", tenant_id=tenant_id, mutate=mutate
        )

    def revoke(self, *, tenant_id: str, idempotency_key: str) -> StoreState:
        def mutate(session: Session) -> SecretStoreRecord:
            store = self._store(session, tenant_id)
            now = utcnow()
            store.status, store.revoked_at = "revoked", now
            for row in self._under_prefix(session, store):
                if row.status != "revoked":
                    row.status, row.updated_at = "revoked", now
            return store

        return self._change(
            key=idempotency_key, operation="revoke", tenant_id=tenant_id, mutate=mutate
        )

    def restore(self, *, tenant_id: str, idempotency_key: str) -> StoreState:
        def mutate(session: Session) -> SecretStoreRecord:
            store = self._store(session, tenant_id)
            now = utcnow()
            # ``revoked_at`` stays: what was revoked may have leaked until it is rotated.
            store.status = "active"
            for row in self._under_prefix(session, store):
                if row.status == "revoked":
                    # It comes back as a new generation of references, but its value and
                    # so when it was last rotated (``rotated_at``) are unchanged.
                    row.status, row.version, row.updated_at = "active", row.version + 1, now
            return store

        return self._change(
            key=idempotency_key, operation="restore", tenant_id=tenant_id, mutate=mutate
        )

    def rotate(self, *, tenant_id: str, path: str, idempotency_key: str) -> StoreState:
        relative = check_path(path.strip("/"))

        def mutate(session: Session) -> SecretStoreRecord:
            store = self._store(session, tenant_id)
            row = session.get(SecretPathRecord, store.prefix + relative, with_for_update=True)
            if row is None:
                raise DriverError(
                    f"no secret {relative!r} in the store of {store.tenant_name}",
                    retry=Retry.PERMANENT,
                )
            now = utcnow()
            row.version, row.rotated_at, row.updated_at = row.version + 1, now, now
            return store

        return self._change(
            key=idempotency_key, operation="rotate", tenant_id=tenant_id, mutate=mutate
        )

    @staticmethod
    def _under_prefix(session: Session, store: SecretStoreRecord) -> list[SecretPathRecord]:
        pattern = store.prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        return list(
            session.execute(
                select(SecretPathRecord).where(
                    SecretPathRecord.path.like(pattern + "%", escape="\\")
                )
            ).scalars()
        )

    def get_store(self, *, tenant_id: str) -> StoreState | None:
        with self.db.read() as session:
            store = session.get(SecretStoreRecord, tenant_id)
            return None if store is None else _state(session, store)

    def effect_count(self, *, tenant_id: str | None = None) -> int:
        """How many effects were applied (the crash harness counts these)."""
        query = select(SecretEffect.idempotency_key)
        if tenant_id is not None:
            query = query.where(SecretEffect.tenant_id == tenant_id)
        with self.db.read() as session:
            return len(session.execute(query).all())
