"""The Redis queue-access adapter: a tenant's ACL user and a token bucket per tenant.

``QueueAccess`` on a real Redis (7.0+: ``check()`` uses ``ACL DRYRUN``; tested on 7.0.15).
What it does there:

- **Pause** turns the tenant's user off (``ACL SETUSER <user> off``) and then
  closes that user's open connections (``CLIENT KILL USER <user>``): turning a
  user off only stops new logins, so without the kill a tenant that is already
  connected would keep reading and writing. Off comes first, so a killed client
  cannot log in again in between. **Resume** turns the user on and nothing
  else: its password, keys, channels and commands are left exactly as they
  were, so resuming never widens what the tenant may do.
- **The user may not exist yet** (provisioning creates it later). Pausing then
  creates it *disabled*, with no password, its own keys and channels only and no
  dangerous commands: ``off ~<key_prefix><name>:* &<key_prefix><name>:*
  +@all -@dangerous``. A user with neither a password nor ``nopass`` cannot log
  in at all, so the user is safe even once someone turns it on; provisioning
  sets its password. Resuming a user that does not exist creates nothing: pause
  took nothing from it. The rules are added without ``reset``, so a user that
  provisioning created in the same instant loses nothing but its ``on`` flag.
- **Resume refuses** (needs a human) a user flagged ``nopass``: turning it on
  would let anyone log in as the tenant.
- **A rate limit** is a token bucket in a hash ``<key_prefix>_ratelimit:<tenant
  id>`` (``rate``, ``burst``, ``tokens``, ``ts``), read and updated by one Lua
  script per call (atomic on the server), timed by the server's clock
  (``TIME``) so that every app host agrees. Tokens are fractional; a call may
  cost any non-negative amount. Replacing a limit keeps the tokens the tenant
  has (capped at the new burst); a new limit starts full.
- **Control keys** (``<key_prefix>_access:<id>``, ``<key_prefix>_ratelimit:<id>``)
  start with ``_``, which a tenant name (a DNS label) never does, so no
  tenant's key pattern ``<key_prefix><name>:*`` can reach them.

Each step's change is recorded in the control-plane database's access effect
log (``apply_once``) under the step's idempotency key, as the local adapter
does: a re-run step gets the recorded state back and Redis is not touched.
Redis errors become ``DriverError``: connection trouble is retriable, missing
permissions (``NOPERM``, a rejected login) need a human, a refused argument is
permanent. Messages never carry the URL's credentials.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any, NamedTuple, cast
from urllib.parse import unquote, urlsplit

import redis
from redis.backoff import ExponentialBackoff
from redis.exceptions import (
    AuthenticationError,
    AuthorizationError,
    BusyLoadingError,
    DataError,
    NoPermissionError,
    NoScriptError,
    ReadOnlyError,
    RedisError,
    ResponseError,
)
from redis.retry import Retry as RedisRetry
from sqlalchemy import select
from sqlalchemy.orm import Session

from tenantops.db import Database
from tenantops.drivers.access.local import check_limit
from tenantops.drivers.access.models import AccessEffect
from tenantops.drivers.access.port import AccessState, RateLimit
from tenantops.drivers.access.settings import RedisAccessSettings
from tenantops.drivers.effects import apply_once
from tenantops.drivers.errors import CheckRow, DriverError, Retry
from tenantops.kit.clock import utcnow

# A DNS label, as tenant names are: no glob character, colon or space can widen a pattern.
TENANT_NAME = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")

# Token bucket. KEYS[1] the bucket hash, ARGV[1] the cost. Returns
# {allowed (0/1), tokens left, seconds until the cost fits}; floats as strings,
# since Redis truncates Lua numbers to integers. No limit: allowed, "inf" left.
ALLOW_LUA = """
local cfg = redis.call('HMGET', KEYS[1], 'rate', 'burst', 'tokens', 'ts')
local rate, burst = tonumber(cfg[1]), tonumber(cfg[2])
if not rate or not burst then
  return {1, 'inf', '0'}
end
local cost = tonumber(ARGV[1])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local tokens = tonumber(cfg[3]) or burst
local ts = tonumber(cfg[4]) or now
if now > ts then
  tokens = math.min(burst, tokens + (now - ts) / 1000000 * rate)
  ts = now
end
local allowed, wait = 0, 0
if cost > burst then
  wait = math.huge
elseif tokens + 1e-9 >= cost then
  allowed = 1
  tokens = math.max(0, tokens - cost)
else
  wait = (cost - tokens) / rate
end
redis.call('HSET', KEYS[1], 'tokens', string.format('%.17g', tokens),
  'ts', string.format('%.17g', ts))
return {allowed, string.format('%.17g', tokens), string.format('%.17g', wait)}
"""

# Set or replace a limit. KEYS[1] the bucket hash, ARGV rate and burst (kept as
# given, so they read back exactly). The tokens the tenant has carry over,
# capped at the new burst; a new bucket starts full.
CONFIGURE_LUA = """
local rate, burst = tonumber(ARGV[1]), tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local cfg = redis.call('HMGET', KEYS[1], 'rate', 'burst', 'tokens', 'ts')
local old_rate, old_burst = tonumber(cfg[1]), tonumber(cfg[2])
local tokens, ts = tonumber(cfg[3]), tonumber(cfg[4])
if old_rate and old_burst and tokens and ts then
  if now > ts then
    tokens = math.min(old_burst, tokens + (now - ts) / 1000000 * old_rate)
    ts = now
  end
  tokens = math.min(tokens, burst)
else
  tokens, ts = burst, now
end
redis.call('HSET', KEYS[1], 'rate', ARGV[1], 'burst', ARGV[2],
  'tokens', string.format('%.17g', tokens), 'ts', string.format('%.17g', ts))
return 1
"""


class Allowance(NamedTuple):
    """One ``allow`` answer: whether the call may go ahead, and when it could."""

    allowed: bool
    remaining: float
    retry_after_seconds: float


def _run(client: redis.Redis, *args: str | int) -> Any:
    """One raw command: the rules are sent exactly as written (redis-py leaves it untyped)."""
    return client.execute_command(*args)  # type: ignore[no-untyped-call]


class LuaScript:
    """A Lua script run by ``EVALSHA``, loaded with ``SCRIPT LOAD`` when the server lacks it."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.sha = hashlib.sha1(source.encode(), usedforsecurity=False).hexdigest()

    def __call__(self, client: redis.Redis, keys: Sequence[str], args: Sequence[str]) -> Any:
        try:
            return _run(client, "EVALSHA", self.sha, len(keys), *keys, *args)
        except NoScriptError:
            # A restarted or flushed server: load it once and run it again.
            _run(client, "SCRIPT", "LOAD", self.source)
            return _run(client, "EVALSHA", self.sha, len(keys), *keys, *args)


ALLOW = LuaScript(ALLOW_LUA)
CONFIGURE = LuaScript(CONFIGURE_LUA)


def driver_error(exc: RedisError, doing: str, *, secret: str | None = None) -> DriverError:
    """``exc`` as a ``DriverError`` saying whether a retry can help; ``secret`` is masked."""
    text = f"redis {doing}: {type(exc).__name__}: {exc}"
    if secret:
        text = text.replace(secret, "***").replace(unquote(secret), "***")
    if isinstance(exc, AuthenticationError | AuthorizationError):
        return DriverError(
            f"{text} — check the user and password of the Redis URL", retry=Retry.NEEDS_HUMAN
        )
    if isinstance(exc, NoPermissionError) or "NOPERM" in str(exc):
        return DriverError(
            f"{text} — the control-plane Redis user lacks a permission (`tenantops doctor`)",
            retry=Retry.NEEDS_HUMAN,
        )
    if isinstance(exc, redis.ConnectionError | redis.TimeoutError | BusyLoadingError):
        return DriverError(text, retry=Retry.RETRIABLE)
    if isinstance(exc, ReadOnlyError):
        return DriverError(text, retry=Retry.RETRIABLE)  # a failover in progress
    if isinstance(exc, ResponseError | DataError):
        return DriverError(text, retry=Retry.PERMANENT)
    return DriverError(text, retry=Retry.RETRIABLE)


def _flags(info: Any) -> list[str]:
    if not isinstance(info, dict):
        return []
    return [str(f) for f in info.get("flags") or []]


class RedisQueueAccess:
    """``QueueAccess`` on a real Redis, with each step's effect recorded once in ``db``."""

    def __init__(
        self,
        db: Database,
        settings: RedisAccessSettings | None = None,
        *,
        client: redis.Redis | None = None,
    ) -> None:
        self.db = db
        self.settings = settings or RedisAccessSettings()
        self._secret = self._url_password()
        self.client = client or redis.Redis.from_url(
            self.settings.url.get_secret_value(),
            decode_responses=True,
            socket_timeout=self.settings.socket_timeout_seconds,
            socket_connect_timeout=self.settings.socket_timeout_seconds,
            retry=RedisRetry(ExponentialBackoff(cap=0.5, base=0.05), self.settings.retries),
        )
        self._me: str | None = None

    def __repr__(self) -> str:
        return f"RedisQueueAccess({self.settings.safe_location()})"

    def close(self) -> None:
        """Close the pooled connections."""
        self.client.close()

    # Names -----------------------------------------------------------------------------

    def user_for(self, tenant_name: str) -> str:
        """The tenant's Redis user; a permanent error for a name that is not a DNS label."""
        if len(tenant_name) > 63 or not TENANT_NAME.fullmatch(tenant_name):
            raise DriverError(
                f"tenant name {tenant_name!r} is not a DNS label; it cannot name a Redis user",
                retry=Retry.PERMANENT,
            )
        return f"{self.settings.user_prefix}{tenant_name}"

    def tenant_pattern(self, tenant_name: str) -> str:
        """The keys and channels a tenant's user is created with."""
        return f"{self.settings.key_prefix}{tenant_name}:*"

    def _record_key(self, tenant_id: str) -> str:
        return f"{self.settings.key_prefix}_access:{tenant_id}"

    def bucket_key(self, tenant_id: str) -> str:
        """The hash holding the tenant's token bucket (``rate``, ``burst``, ``tokens``, ``ts``)."""
        return f"{self.settings.key_prefix}_ratelimit:{tenant_id}"

    def _url_password(self) -> str | None:
        return urlsplit(self.settings.url.get_secret_value()).password

    @contextmanager
    def _redis(self, doing: str) -> Iterator[None]:
        try:
            yield
        except RedisError as exc:
            raise driver_error(exc, doing, secret=self._secret) from None

    # The port -------------------------------------------------------------------------

    def pause_queues(
        self, *, tenant_id: str, tenant_name: str, idempotency_key: str
    ) -> AccessState:
        user = self.user_for(tenant_name)

        def change(_: Session) -> AccessState:
            with self._redis("pause_queues"):
                self._refuse_own_user(user)
                info = self.client.acl_getuser(user)
                if info is None:
                    pattern = self.tenant_pattern(tenant_name)
                    rules = (f"~{pattern}", f"&{pattern}", "+@all", "-@dangerous")
                    _run(self.client, "ACL", "SETUSER", user, "off", *rules)
                else:
                    _run(self.client, "ACL", "SETUSER", user, "off")
                _run(self.client, "CLIENT", "KILL", "USER", user)
                record = self._record_key(tenant_id)
                since = self.client.hget(record, "paused_at")
                if not (since and "off" in _flags(info)):
                    since = utcnow().isoformat()  # paused now, not earlier
                self.client.hset(
                    record, mapping={"tenant_name": tenant_name, "user": user, "paused_at": since}
                )
            return self._state(tenant_id)

        return self._apply(idempotency_key, "pause_queues", tenant_id, change)

    def resume_queues(
        self, *, tenant_id: str, tenant_name: str, idempotency_key: str
    ) -> AccessState:
        user = self.user_for(tenant_name)

        def change(_: Session) -> AccessState:
            with self._redis("resume_queues"):
                info = self.client.acl_getuser(user)
                if info is not None:
                    if "nopass" in _flags(info):
                        raise DriverError(
                            f"Redis user {user} is flagged nopass: turning it on would let "
                            "anyone log in as the tenant; give it a password, then resume",
                            retry=Retry.NEEDS_HUMAN,
                        )
                    _run(self.client, "ACL", "SETUSER", user, "on")
                record = self._record_key(tenant_id)
                self.client.hset(record, mapping={"tenant_name": tenant_name, "user": user})
                self.client.hdel(record, "paused_at")
            return self._state(tenant_id)

        return self._apply(idempotency_key, "resume_queues", tenant_id, change)

    def set_rate_limit(
        self, *, tenant_id: str, tenant_name: str, limit: RateLimit, idempotency_key: str
    ) -> AccessState:
        check_limit(limit)
        user = self.user_for(tenant_name)

        def change(_: Session) -> AccessState:
            with self._redis("set_rate_limit"):
                CONFIGURE(
                    self.client,
                    [self.bucket_key(tenant_id)],
                    [repr(float(limit.rate)), str(int(limit.burst))],
                )
                self._remember(tenant_id, tenant_name, user)
            return self._state(tenant_id)

        return self._apply(idempotency_key, "set_rate_limit", tenant_id, change)

    def lift_rate_limit(
        self, *, tenant_id: str, tenant_name: str, idempotency_key: str
    ) -> AccessState:
        user = self.user_for(tenant_name)

        def change(_: Session) -> AccessState:
            with self._redis("lift_rate_limit"):
                self.client.delete(self.bucket_key(tenant_id))
                self._remember(tenant_id, tenant_name, user)
            return self._state(tenant_id)

        return self._apply(idempotency_key, "lift_rate_limit", tenant_id, change)

    def get_state(self, *, tenant_id: str) -> AccessState | None:
        """What Redis enforces now: paused from the user's ACL flags, the limit from its bucket."""
        with self._redis("get_state"):
            record = self.client.hgetall(self._record_key(tenant_id))
            if not record:
                return None
            return self._read(tenant_id, cast(dict[str, str], record))

    # The platform's call ----------------------------------------------------------------

    def allow(self, tenant_id: str, cost: float = 1.0) -> Allowance:
        """Take ``cost`` tokens from the tenant's bucket if it has them (one atomic script).

        No limit set: always allowed, ``remaining`` infinite. A cost above the
        burst never fits: refused, ``retry_after_seconds`` infinite.
        """
        if not (math.isfinite(cost) and cost >= 0):
            raise DriverError(
                f"cost must be a finite number >= 0, not {cost}", retry=Retry.PERMANENT
            )
        with self._redis("allow"):
            allowed, remaining, wait = ALLOW(
                self.client, [self.bucket_key(tenant_id)], [repr(cost)]
            )
        return Allowance(bool(int(allowed)), float(remaining), float(wait))

    # Doctor -----------------------------------------------------------------------------

    def check(self) -> list[CheckRow]:
        """Reachable, logged in, and allowed every command this adapter sends."""
        where = self.settings.safe_location()
        rows: list[CheckRow] = []
        try:
            self.client.ping()
            rows.append(CheckRow("redis reachable", True, where, ""))
            me = str(_run(self.client, "ACL", "WHOAMI"))
            rows.append(CheckRow("redis authenticated", True, f"as user {me}", ""))
        except (AuthenticationError, AuthorizationError) as exc:
            rows.append(CheckRow("redis reachable", True, where, ""))
            rows.append(
                CheckRow(
                    "redis authenticated",
                    False,
                    str(driver_error(exc, "login", secret=self._secret)),
                    "put the control-plane user and its password in the Redis URL "
                    "(redis://USER:PASSWORD@host:port/db)",
                )
            )
            return rows
        except NoPermissionError as exc:
            rows.append(CheckRow("redis reachable", True, where, ""))
            rows.append(
                CheckRow(
                    "redis may PING and ACL WHOAMI",
                    False,
                    str(driver_error(exc, "login", secret=self._secret)),
                    f"grant it: {self.least_privilege('USER')}",
                )
            )
            return rows
        except RedisError as exc:
            rows.append(
                CheckRow(
                    "redis reachable",
                    False,
                    str(driver_error(exc, "ping", secret=self._secret)),
                    f"start Redis at {where} or correct the Redis URL's host and port",
                )
            )
            return rows
        rows.extend(self._permission_rows(me))
        return rows

    def _permission_rows(self, me: str) -> list[CheckRow]:
        probe_user = f"{self.user_for('doctor-probe')}"
        bucket = self.bucket_key("doctor-probe")
        record = self._record_key("doctor-probe")
        needs = {
            "ACL SETUSER": ["ACL", "SETUSER", probe_user, "off"],
            "ACL GETUSER": ["ACL", "GETUSER", probe_user],
            "CLIENT KILL USER": ["CLIENT", "KILL", "USER", probe_user],
            "EVALSHA": ["EVALSHA", ALLOW.sha, "1", bucket, "1"],
            "SCRIPT LOAD": ["SCRIPT", "LOAD", "return 1"],
            "TIME": ["TIME"],
            "HSET rate limits": ["HSET", bucket, "tokens", "1"],
            "HMGET rate limits": ["HMGET", bucket, "rate"],
            "DEL rate limits": ["DEL", bucket],
            "HSET tenant records": ["HSET", record, "user", probe_user],
            "HDEL tenant records": ["HDEL", record, "paused_at"],
        }
        grant = self.least_privilege(me)
        rows: list[CheckRow] = []
        for name, command in needs.items():
            try:
                answer = str(_run(self.client, "ACL", "DRYRUN", me, *command))
            except RedisError as exc:
                answer = str(driver_error(exc, "ACL DRYRUN", secret=self._secret))
            ok = answer == "OK"
            rows.append(
                CheckRow(
                    f"redis may {name}",
                    ok,
                    f"user {me}" if ok else answer,
                    "" if ok else f"grant it: {grant}",
                )
            )
        return rows

    # Helpers ----------------------------------------------------------------------------

    def least_privilege(self, user: str) -> str:
        """The least a control-plane user needs, as one command an administrator can run."""
        return (
            f"ACL SETUSER {user} +ping +acl|whoami +acl|dryrun +acl|setuser +acl|getuser "
            f"+client|kill +evalsha +script|load +time +hset +hget +hgetall +hmget +hdel +del "
            f"~{self.settings.key_prefix}_*"
        )

    def effect_count(self, *, tenant_id: str | None = None) -> int:
        """How many effects were applied (recorded in the effect log)."""
        query = select(AccessEffect.idempotency_key)
        if tenant_id is not None:
            query = query.where(AccessEffect.tenant_id == tenant_id)
        with self.db.read() as session:
            return len(session.execute(query).all())

    def _apply(
        self,
        key: str,
        operation: str,
        tenant_id: str,
        change: Callable[[Session], AccessState],
    ) -> AccessState:
        return apply_once(
            self.db,
            AccessEffect,
            key=key,
            operation=operation,
            tenant_id=tenant_id,
            change=change,
            recorded=AccessState.from_dict,
            what="access",
        )

    def _refuse_own_user(self, user: str) -> None:
        if self._me is None:
            self._me = str(_run(self.client, "ACL", "WHOAMI"))
        if user in ("default", self._me):
            raise DriverError(
                f"refusing to pause Redis user {user}: the control plane itself logs in as it",
                retry=Retry.PERMANENT,
            )

    def _remember(self, tenant_id: str, tenant_name: str, user: str) -> None:
        self.client.hset(
            self._record_key(tenant_id), mapping={"tenant_name": tenant_name, "user": user}
        )

    def _state(self, tenant_id: str) -> AccessState:
        with self._redis("read state"):
            record = cast(dict[str, str], self.client.hgetall(self._record_key(tenant_id)))
            return self._read(tenant_id, record)

    def _read(self, tenant_id: str, record: dict[str, str]) -> AccessState:
        info = self.client.acl_getuser(record["user"])
        # No such user: nothing is paused (and nobody can log in as it either).
        paused = "off" in _flags(info)
        since = record.get("paused_at")
        rate, burst = self.client.hmget(self.bucket_key(tenant_id), ["rate", "burst"])
        return AccessState(
            tenant_id=tenant_id,
            tenant_name=record["tenant_name"],
            queues_paused=paused,
            paused_at=datetime.fromisoformat(since) if paused and since else None,
            rate_limit=(
                RateLimit(rate=float(rate), burst=int(burst))
                if rate is not None and burst is not None
                else None
            ),
        )
