"""The Vault secret-store adapter: a tenant's policy, path references and leases in Vault.

``SecretStore`` on Vault's HTTP API (through ``hvac``). Only metadata and
policies are ever written or read — never a secret's value (no call touches
``<mount>/data/``). What it keeps where:

- **The store record**: KV v2 metadata ``<mount>/metadata/<state_path>/<tenant
  id>``, ``custom_metadata`` ``{tenant_name, status[, revoked_at]}`` (``revoked_at``:
  the last revocation, kept after a restore).
- **Path references**: KV v2 metadata ``<mount>/metadata/<path_prefix>/<tenant>/<path>``
  (``POST`` with only ``custom_metadata``, so the operator's ``max_versions``
  and friends are left alone). Its ``custom_metadata`` is the caller's metadata
  plus ``tenantops_status`` and ``tenantops_version`` (a generation: restoring
  a revoked reference bumps it, but not ``tenantops_rotated_at``: its value did
  not change) and ``tenantops_rotated_at`` (when a rotation was last recorded
  through ``rotate``).
- **When a secret was last rotated**: the later of the current KV version's
  ``created_time`` (``versions[current_version]`` of the metadata; whoever
  writes a new value makes a new version) and ``tenantops_rotated_at``. A
  value can only be rotated by writing it, so ``rotate`` records the rotation
  its owner made; it never writes the value.
- **The tenant's policy** ``sys/policies/acl/<policy_prefix><tenant>``: read and
  write on the tenant's data, read and list on its metadata; on revoke the same
  paths with ``deny``, so every token carrying the policy is cut at once.
- **Revoke** also revokes leases and tokens by prefix (``PUT
  sys/leases/revoke-prefix/<prefix>``; by default the tokens minted from the
  tenant's token role, ``auth/token/create/<policy>``). Restore re-grants the
  policy; revoked leases stay revoked (new ones are issued).

Each step's change is recorded once in the control-plane database's secrets
effect log (``apply_once``) under the step's idempotency key, exactly as the
local adapter does: a re-run step gets the recorded state back and Vault is not
called. Every step converges (reads, then writes what differs), so a step that
failed half-way can simply run again.

What a Vault answer means for a retry:

======================================================  ==================
401, 403 (bad or expired token, a policy missing)       ``needs_human``
501 (not initialised), a TLS verification failure       ``needs_human``
404 on a read                                           absent, no error
404 on a write (no such mount), 400, 405, any other     ``permanent``
409, 412, 429 (``Retry-After`` kept), 472, 473          ``retriable``
5xx (503: sealed, standby), no connection, a timeout    ``retriable``
======================================================  ==================

The token never appears in a message, a repr or a log line.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import hvac  # type: ignore[import-untyped]
import requests
from hvac.adapters import JSONAdapter  # type: ignore[import-untyped]
from sqlalchemy import select
from sqlalchemy.orm import Session

from tenantops.db import Database
from tenantops.drivers.effects import apply_once
from tenantops.drivers.errors import CheckRow, DriverError, Retry, retry_after
from tenantops.drivers.secrets.models import SecretEffect
from tenantops.drivers.secrets.port import (
    PathSpec,
    SecretRef,
    StoreState,
    check_metadata,
    check_path,
    state_from_record,
)
from tenantops.drivers.secrets.settings import VaultSettings
from tenantops.kit.clock import utcnow

TENANT_NAME = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
TENANT_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
STATUS, VERSION, ROTATED = "tenantops_status", "tenantops_version", "tenantops_rotated_at"
OURS = "tenantops_"
CUSTOM_METADATA_MAX = 64  # Vault's limit on custom_metadata keys
OWN_KEYS = 3  # status, version, rotated_at


class VaultError(DriverError):
    """Vault refused or missed a call; ``status`` and ``retry_after`` when known."""


class _Answer(Exception):
    """A non-2xx answer, caught inside this module and turned into ``VaultError``."""

    def __init__(self, status: int, errors: list[str], retry_after: float | None) -> None:
        super().__init__(f"HTTP {status}")
        self.status, self.errors, self.retry_after = status, errors, retry_after


class _Adapter(JSONAdapter):  # type: ignore[misc]
    """hvac's JSON adapter, raising ``_Answer`` (status, errors, Retry-After) on an error."""

    def _raise_for_error(self, method: str, url: str, response: requests.Response) -> None:
        errors: list[str] = []
        try:
            body = response.json()
            if isinstance(body, dict):
                errors = [str(e) for e in body.get("errors") or []]
        except ValueError:
            errors = [response.text[:200]] if response.text else []
        raise _Answer(
            response.status_code, errors, retry_after(response.headers.get("Retry-After"))
        )


def verdict(status: int) -> Retry:
    """What a Vault error status means for trying again."""
    if status in (401, 403, 501):
        return Retry.NEEDS_HUMAN
    if status in (409, 412, 429, 472, 473) or status >= 500:
        return Retry.RETRIABLE
    return Retry.PERMANENT


HINTS = {
    401: " — the Vault token is missing or invalid; set a valid one (`tenantops doctor`)",
    403: " — the Vault token is invalid, expired or lacks a policy (`tenantops doctor`)",
    404: " — does the KV v2 mount exist? (`tenantops doctor`)",
    501: " — Vault is not initialised",
    503: " — Vault is sealed, in standby or in maintenance",
}


class VaultSecretStore:
    """``SecretStore`` on Vault (metadata and policies only); each effect recorded once in db."""

    def __init__(
        self, db: Database, settings: VaultSettings, *, session: requests.Session | None = None
    ) -> None:
        self.db = db
        self.settings = settings
        self._token = settings.token.get_secret_value()
        self.client = hvac.Client(
            url=settings.url,
            token=self._token,
            namespace=settings.namespace,
            timeout=settings.timeout_seconds,
            verify=settings.verify(),
            allow_redirects=False,
            session=session,
            adapter=_Adapter,
        )

    def __repr__(self) -> str:
        return f"VaultSecretStore({self.settings.url}, kv {self.settings.kv_mount})"

    def close(self) -> None:
        """Close the pooled connections."""
        self.client.adapter.close()

    # Names -----------------------------------------------------------------------------

    def prefix_of(self, tenant_name: str) -> str:
        """The tenant's prefix inside the KV mount: ``<path_prefix>/<tenant>/``."""
        if len(tenant_name) > 63 or not TENANT_NAME.fullmatch(tenant_name):
            raise VaultError(
                f"tenant name {tenant_name!r} is not a DNS label; it cannot name a Vault path",
                retry=Retry.PERMANENT,
            )
        return f"{self.settings.path_prefix}/{tenant_name}/"

    def policy_of(self, tenant_name: str) -> str:
        return f"{self.settings.policy_prefix}{tenant_name}"

    def store_ref_of(self, tenant_name: str) -> str:
        return f"vault://{self.settings.kv_mount}/{self.prefix_of(tenant_name)}"

    def lease_prefixes(self, tenant_name: str) -> list[str]:
        policy = self.policy_of(tenant_name)
        return [
            p.format(policy=policy, tenant=tenant_name).strip("/")
            for p in self.settings.lease_prefixes
        ]

    def policy_text(self, tenant_name: str, *, active: bool) -> str:
        """The tenant's ACL policy (HCL): its own paths only; ``deny`` once revoked."""
        mount, prefix = self.settings.kv_mount, self.prefix_of(tenant_name)
        data = '["create", "read", "update", "patch", "delete"]' if active else '["deny"]'
        meta = '["read", "list"]' if active else '["deny"]'
        return (
            f'path "{mount}/data/{prefix}*" {{\n  capabilities = {data}\n}}\n'
            f'path "{mount}/metadata/{prefix}*" {{\n  capabilities = {meta}\n}}\n'
        )

    def _marker(self, tenant_id: str) -> str:
        if not TENANT_ID.fullmatch(tenant_id):
            raise VaultError(
                f"tenant id {tenant_id!r} cannot name a Vault path", retry=Retry.PERMANENT
            )
        return f"{self.settings.state_path}/{tenant_id}"

    # Vault calls --------------------------------------------------------------------------

    @contextmanager
    def _vault(self, doing: str) -> Iterator[None]:
        try:
            yield
        except _Answer as exc:
            raise self._error(doing, exc) from None
        except requests.exceptions.SSLError as exc:
            raise VaultError(
                self._mask(
                    f"vault {doing}: TLS failed ({type(exc).__name__}) at "
                    f"{self.settings.url} — check ca_path and the URL"
                ),
                retry=Retry.NEEDS_HUMAN,
            ) from None
        except requests.RequestException as exc:
            raise VaultError(
                self._mask(
                    f"vault {doing}: {self.settings.url} did not answer ({type(exc).__name__})"
                ),
                retry=Retry.RETRIABLE,
            ) from None

    def _error(self, doing: str, exc: _Answer) -> VaultError:
        kind = verdict(exc.status)
        wait = exc.retry_after if kind is Retry.RETRIABLE else None
        said = "; ".join(exc.errors)[:300]
        message = f"vault {doing}: HTTP {exc.status}" + (f": {said}" if said else "")
        message += HINTS.get(exc.status, "")
        if wait is not None:
            message += f"; retry after {wait:g}s"
        return VaultError(self._mask(message), retry=kind, status=exc.status, retry_after=wait)

    def _mask(self, text: str) -> str:
        return text.replace(self._token, "***") if self._token else text

    def _read_entry(self, path: str) -> dict[str, Any] | None:
        """A KV v2 entry's metadata (``data`` of the answer), or ``None`` when there is none."""
        try:
            answer = self.client.secrets.kv.v2.read_secret_metadata(
                path=path, mount_point=self.settings.kv_mount
            )
        except _Answer as exc:
            if exc.status == 404:
                return None
            raise
        data = answer.get("data") or {}
        return data if isinstance(data, dict) else {}

    def _read_meta(self, path: str) -> dict[str, str] | None:
        """A KV v2 entry's ``custom_metadata``, or ``None`` when there is no entry."""
        data = self._read_entry(path)
        return None if data is None else _custom(data)

    def _write_meta(self, path: str, custom: Mapping[str, str]) -> None:
        # Only custom_metadata: max_versions, cas_required… stay as the operator set them.
        self.client.adapter.post(
            f"/v1/{self.settings.kv_mount}/metadata/{path}", json={"custom_metadata": dict(custom)}
        )

    def _walk(self, folder: str) -> Iterator[str]:
        """Every KV entry under ``folder`` (recursive ``LIST``), none if the folder is empty."""
        try:
            answer = self.client.secrets.kv.v2.list_secrets(
                path=folder, mount_point=self.settings.kv_mount
            )
        except _Answer as exc:
            if exc.status == 404:
                return
            raise
        for key in (answer.get("data") or {}).get("keys") or []:
            if str(key).endswith("/"):
                yield from self._walk(folder + str(key))
            else:
                yield folder + str(key)

    def _put_policy(self, tenant_name: str, *, active: bool) -> None:
        self.client.sys.create_or_update_acl_policy(
            name=self.policy_of(tenant_name), policy=self.policy_text(tenant_name, active=active)
        )

    # Store state ----------------------------------------------------------------------------

    def _store(self, tenant_id: str) -> dict[str, str]:
        marker = self._read_meta(self._marker(tenant_id))
        if marker is None or "tenant_name" not in marker:
            raise VaultError(
                f"tenant {tenant_id} has no secret store in Vault; create it first",
                retry=Retry.NEEDS_HUMAN,
            )
        return marker

    def _state(self, tenant_id: str, marker: Mapping[str, str]) -> StoreState:
        name = marker["tenant_name"]
        prefix = self.prefix_of(name)
        refs: list[SecretRef] = []
        for full in sorted(self._walk(prefix)):
            entry = self._read_entry(full)
            if entry is None:
                continue  # deleted between LIST and read
            meta = _custom(entry)
            status = meta.pop(STATUS, marker.get("status", "active"))
            version = int(meta.pop(VERSION, "1"))
            recorded = meta.pop(ROTATED, None)
            rotated = [t for t in (_written(entry), _instant(recorded)) if t is not None]
            refs.append(SecretRef(full, status, version, meta, max(rotated, default=None)))
        return StoreState(
            tenant_id=tenant_id,
            tenant_name=name,
            store_ref=self.store_ref_of(name),
            prefix=prefix,
            status=marker.get("status", "active"),
            paths=tuple(refs),
            revoked_at=_instant(marker.get("revoked_at")),
        )

    def _put_path(self, prefix: str, spec: PathSpec, status: str) -> None:
        full = prefix + spec.path.strip("/")
        wanted = dict(spec.metadata)
        existing = self._read_meta(full)
        if existing is None:
            self._write_meta(full, {**wanted, STATUS: status, VERSION: "1"})
        elif wanted and {k: v for k, v in existing.items() if not k.startswith(OURS)} != wanted:
            ours = {k: v for k, v in existing.items() if k.startswith(OURS)}
            self._write_meta(full, {**wanted, **ours})

    def _set_paths(self, prefix: str, *, revoked: bool) -> None:
        for full in self._walk(prefix):
            meta = self._read_meta(full)
            if meta is None:
                continue
            if revoked and meta.get(STATUS) != "revoked":
                self._write_meta(full, {**meta, STATUS: "revoked"})
            elif not revoked and meta.get(STATUS) == "revoked":
                # A new generation of the reference; its value, and so when it was last
                # rotated (``tenantops_rotated_at``), is unchanged.
                version = int(meta.get(VERSION, "1")) + 1
                self._write_meta(full, {**meta, STATUS: "active", VERSION: str(version)})

    # The port -------------------------------------------------------------------------

    def create_store(
        self,
        *,
        tenant_id: str,
        tenant_name: str,
        paths: Sequence[PathSpec],
        idempotency_key: str,
    ) -> StoreState:
        self.prefix_of(tenant_name)  # a bad name fails before anything is recorded
        specs = [self._checked(spec) for spec in paths]
        marker_path = self._marker(tenant_id)

        def change(_: Session) -> StoreState:
            with self._vault("create_store"):
                marker = self._read_meta(marker_path)
                if marker is None:
                    marker = {"tenant_name": tenant_name, "status": "active"}
                    self._write_meta(marker_path, marker)
                status = marker.get("status", "active")
                self._put_policy(marker["tenant_name"], active=status == "active")
                for spec in specs:
                    self._put_path(self.prefix_of(marker["tenant_name"]), spec, status)
                return self._state(tenant_id, marker)

        return self._apply(idempotency_key, "create_store", tenant_id, change)

    def add_path(self, *, tenant_id: str, path: PathSpec, idempotency_key: str) -> StoreState:
        spec = self._checked(path)

        def change(_: Session) -> StoreState:
            with self._vault("add_path"):
                marker = self._store(tenant_id)
                prefix = self.prefix_of(marker["tenant_name"])
                self._put_path(prefix, spec, marker.get("status", "active"))
                return self._state(tenant_id, marker)

        return self._apply(idempotency_key, "add_path", tenant_id, change)

    def revoke(self, *, tenant_id: str, idempotency_key: str) -> StoreState:
        def change(_: Session) -> StoreState:
            with self._vault("revoke"):
                marker = self._store(tenant_id)
                name = marker["tenant_name"]
                # The policy first: every token carrying it loses access at once.
                self._put_policy(name, active=False)
                for lease_prefix in self.lease_prefixes(name):
                    self.client.sys.revoke_prefix(lease_prefix)
                self._set_paths(self.prefix_of(name), revoked=True)
                if marker.get("status") != "revoked":
                    marker = {**marker, "status": "revoked", "revoked_at": utcnow().isoformat()}
                    self._write_meta(self._marker(tenant_id), marker)
                return self._state(tenant_id, marker)

        return self._apply(idempotency_key, "revoke", tenant_id, change)

    def restore(self, *, tenant_id: str, idempotency_key: str) -> StoreState:
        def change(_: Session) -> StoreState:
            with self._vault("restore"):
                marker = self._store(tenant_id)
                name = marker["tenant_name"]
                self._set_paths(self.prefix_of(name), revoked=False)
                if marker.get("status") != "active":
                    # ``revoked_at`` stays: what was revoked may have leaked until rotated.
                    marker = {**marker, "status": "active"}
                    self._write_meta(self._marker(tenant_id), marker)
                # The policy last: access comes back once every reference is consistent.
                self._put_policy(name, active=True)
                return self._state(tenant_id, marker)

        return self._apply(idempotency_key, "restore", tenant_id, change)

    def rotate(self, *, tenant_id: str, path: str, idempotency_key: str) -> StoreState:
        relative = self._checked(PathSpec(path)).path

        def change(_: Session) -> StoreState:
            with self._vault("rotate"):
                marker = self._store(tenant_id)
                full = self.prefix_of(marker["tenant_name"]) + relative
                meta = self._read_meta(full)
                if meta is None:
                    raise VaultError(
                        f"no secret {relative!r} in the store of {marker['tenant_name']}",
                        retry=Retry.PERMANENT,
                    )
                # The value is its owner's to write (``<mount>/data/``, never called here):
                # this records the new generation in the entry's own metadata.
                version = int(meta.get(VERSION, "1")) + 1
                self._write_meta(
                    full, {**meta, VERSION: str(version), ROTATED: utcnow().isoformat()}
                )
                return self._state(tenant_id, marker)

        return self._apply(idempotency_key, "rotate", tenant_id, change)

    def get_store(self, *, tenant_id: str) -> StoreState | None:
        with self._vault("get_store"):
            marker = self._read_meta(self._marker(tenant_id))
            if marker is None or "tenant_name" not in marker:
                return None
            return self._state(tenant_id, marker)

    # Doctor -----------------------------------------------------------------------------

    def check(self) -> list[CheckRow]:
        """Reachable, unsealed, a valid token, and the capabilities every call needs."""
        where = self.settings.url
        rows: list[CheckRow] = []
        try:
            health = self.client.sys.read_health_status(method="GET")
        except requests.RequestException as exc:
            return [
                CheckRow(
                    "vault reachable",
                    False,
                    self._mask(f"{where}: {type(exc).__name__}"),
                    f"start Vault at {where}, or correct the URL (and ca_path for TLS)",
                )
            ]
        status, body = _status_and_body(health)
        rows.append(CheckRow("vault reachable", True, f"{where} (sys/health {status})", ""))
        if status == 501 or body.get("initialized") is False:
            rows.append(CheckRow("vault unsealed", False, "not initialised", "vault operator init"))
            return rows
        if status == 503 or body.get("sealed") is True:
            rows.append(CheckRow("vault unsealed", False, "sealed", "vault operator unseal"))
            return rows
        rows.append(CheckRow("vault unsealed", True, f"version {body.get('version', '?')}", ""))
        try:
            with self._vault("token lookup-self"):
                me = self.client.auth.token.lookup_self()
        except VaultError as exc:
            rows.append(
                CheckRow(
                    "vault token valid",
                    False,
                    str(exc),
                    "set TENANTOPS_SECRETS__VAULT__TOKEN to a valid, unexpired token",
                )
            )
            return rows
        data = me.get("data") or {}
        detail = f"{data.get('display_name', '?')}, policies {data.get('policies', [])}"
        rows.append(CheckRow("vault token valid", True, detail, ""))
        rows.extend(self._capability_rows())
        return rows

    def needs(self) -> dict[str, tuple[str, frozenset[str]]]:
        """What each call needs: a name -> (a probe path, the capabilities it must have)."""
        mount, probe = self.settings.kv_mount, "doctor-probe"
        lease = self.lease_prefixes(probe)
        rw = frozenset({"create", "read", "update", "list"})
        found = {
            "write path references": (f"{mount}/metadata/{self.prefix_of(probe)}app", rw),
            "write store records": (f"{mount}/metadata/{self.settings.state_path}/{probe}", rw),
            "write tenant policies": (
                f"sys/policies/acl/{self.policy_of(probe)}",
                frozenset({"create", "update"}),
            ),
        }
        for i, prefix in enumerate(lease):
            found[f"revoke leases ({i + 1})" if len(lease) > 1 else "revoke leases"] = (
                f"sys/leases/revoke-prefix/{prefix}",
                frozenset({"update", "sudo"}),
            )
        return found

    def least_privilege(self) -> str:
        """The policy (HCL) the control-plane token needs, as an administrator would write it."""
        s = self.settings
        stanzas = [
            (f"{s.kv_mount}/metadata/{s.path_prefix}/*", '["create", "read", "update", "list"]'),
            (f"{s.kv_mount}/metadata/{s.state_path}/*", '["create", "read", "update", "list"]'),
            (f"sys/policies/acl/{s.policy_prefix}*", '["create", "update"]'),
            ("sys/leases/revoke-prefix/*", '["update", "sudo"]'),
            ("sys/capabilities-self", '["update"]'),
        ]
        return "".join(f'path "{p}" {{ capabilities = {c} }}\n' for p, c in stanzas)

    def _capability_rows(self) -> list[CheckRow]:
        needs = self.needs()
        try:
            with self._vault("capabilities-self"):
                answer = self.client.adapter.post(
                    "/v1/sys/capabilities-self", json={"paths": [p for p, _ in needs.values()]}
                )
        except VaultError as exc:
            return [CheckRow("vault capabilities", False, str(exc), self.least_privilege())]
        caps = answer.get("data") or answer if isinstance(answer, dict) else {}
        rows = []
        for name, (path, wanted) in needs.items():
            have = set(caps.get(path) or [])
            missing = set() if "root" in have else wanted - have
            if "deny" in have:
                missing = set(wanted)
            rows.append(
                CheckRow(
                    f"vault may {name}",
                    not missing,
                    f"{path}: {sorted(have) or 'nothing'}"
                    + (f", missing {sorted(missing)}" if missing else ""),
                    "" if not missing else f"add to the token's policy:\n{self.least_privilege()}",
                )
            )
        return rows

    # Helpers ----------------------------------------------------------------------------

    def _checked(self, spec: PathSpec) -> PathSpec:
        path = check_path(spec.path.strip("/"))
        metadata = check_metadata(spec.metadata)
        reserved = [k for k in metadata if k.startswith(OURS)]
        if reserved or len(metadata) > CUSTOM_METADATA_MAX - OWN_KEYS:
            raise VaultError(
                f"metadata of {path!r}: keys starting {OURS!r} are the adapter's own, and "
                f"at most {CUSTOM_METADATA_MAX - OWN_KEYS} keys fit in Vault's custom_metadata",
                retry=Retry.PERMANENT,
            )
        return PathSpec(path, metadata)

    def effect_count(self, *, tenant_id: str | None = None) -> int:
        """How many effects were applied (recorded in the effect log)."""
        query = select(SecretEffect.idempotency_key)
        if tenant_id is not None:
            query = query.where(SecretEffect.tenant_id == tenant_id)
        with self.db.read() as session:
            return len(session.execute(query).all())

    def _apply(
        self, key: str, operation: str, tenant_id: str, change: Callable[[Session], StoreState]
    ) -> StoreState:
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


def _custom(entry: Mapping[str, Any]) -> dict[str, str]:
    return {str(k): str(v) for k, v in (entry.get("custom_metadata") or {}).items()}


def _instant(text: object) -> datetime | None:
    """An RFC 3339 time as Vault or this adapter wrote it; ``None`` if absent or unreadable."""
    if not isinstance(text, str) or not text:
        return None
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        return None
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def _written(entry: Mapping[str, Any]) -> datetime | None:
    """When the current version of a KV v2 entry was written (``created_time`` of
    ``versions[current_version]``); ``None`` while no value was ever written."""
    current = entry.get("current_version") or 0
    versions = entry.get("versions") or {}
    if not isinstance(current, int) or current < 1 or not isinstance(versions, dict):
        return None
    version = versions.get(str(current)) or {}
    return _instant(version.get("created_time")) if isinstance(version, dict) else None


def _status_and_body(health: Any) -> tuple[int, dict[str, Any]]:
    """``sys/health`` answers 200 as a dict (hvac) and 429/472/473/501/503 as a response."""
    if isinstance(health, dict):
        return 200, health
    try:
        body = health.json()
    except ValueError:
        body = {}
    return int(health.status_code), body if isinstance(body, dict) else {}
