"""The queue-access port's contract, run against every adapter that can run here.

The local adapter (on SQLite and PostgreSQL) and the Redis adapter (on the real
Redis at 127.0.0.1:6379, with the same stores for its effect log) must behave
alike for a runbook: an adapter that passes can replace the other. Then what
only Redis can show: a connected tenant is cut off by a pause, and the token
bucket holds under concurrent callers. When Redis does not answer, these tests
fail; they never skip.
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any, Protocol

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry as RedisRetry

from tenantops.db import Database
from tenantops.drivers.access.local import LocalQueueAccess
from tenantops.drivers.access.port import QueueAccess, RateLimit
from tenantops.drivers.access.redis import LuaScript, RedisQueueAccess
from tenantops.drivers.access.settings import RedisAccessSettings
from tenantops.drivers.errors import DriverError, Retry
from tenantops.kit.ids import new_id

REDIS_HOST = os.environ.get("TENANTOPS_TEST_REDIS_HOST", "127.0.0.1")
REDIS_PORT = int(os.environ.get("TENANTOPS_TEST_REDIS_PORT", "6379"))
REDIS_URL = f"redis://{REDIS_HOST}:{REDIS_PORT}/0"


class Access(QueueAccess, Protocol):
    """The port, plus the effect-log count both adapters keep."""

    def effect_count(self, *, tenant_id: str | None = None) -> int: ...


# Redis fixtures ---------------------------------------------------------------------------


def connect(**kwargs: Any) -> redis.Redis:
    """A client that reports a dropped connection instead of reconnecting behind our back."""
    return redis.Redis(
        host=REDIS_HOST,
        port=REDIS_PORT,
        decode_responses=True,
        socket_timeout=5,
        retry=RedisRetry(NoBackoff(), 0),
        **kwargs,
    )


@pytest.fixture(scope="module")
def admin() -> Iterator[redis.Redis]:
    """The test's own view of Redis (the default user); the run fails if Redis is absent."""
    client = connect()
    try:
        client.ping()
    except redis.RedisError as exc:
        pytest.fail(
            f"Redis is needed for these tests but {REDIS_URL} does not answer: {exc}. "
            "Start it: redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save ''",
            pytrace=False,
        )
    yield client
    client.close()


@pytest.fixture
def names(admin: redis.Redis) -> Iterator[RedisAccessSettings]:
    """Settings with a user and key prefix of this test's own; its users and keys go after."""
    tag = uuid.uuid4().hex[:10]
    settings = RedisAccessSettings(
        url=REDIS_URL,  # type: ignore[arg-type]
        user_prefix=f"test-{tag}-",
        key_prefix=f"tenantops-test-{tag}:",
        socket_timeout_seconds=5,
        retries=0,
    )
    yield settings
    for user in admin.acl_users():
        if user.startswith(settings.user_prefix):
            admin.acl_deluser(user)
    for key in admin.scan_iter(match=f"{settings.key_prefix}*"):
        admin.delete(key)


Make = Callable[..., RedisQueueAccess]


@pytest.fixture
def make(db: Database, names: RedisAccessSettings) -> Iterator[Make]:
    """``make(url=…, user_prefix=…)``: a Redis adapter on this test's names, closed after."""
    made: list[RedisQueueAccess] = []

    def build(**changes: Any) -> RedisQueueAccess:
        settings = RedisAccessSettings.model_validate({**names.model_dump(), **changes})
        made.append(RedisQueueAccess(db, settings))
        return made[-1]

    yield build
    for adapter in made:
        adapter.close()


@pytest.fixture
def rq(make: Make) -> RedisQueueAccess:
    return make()


@pytest.fixture(params=["local", "redis"])
def access(request: pytest.FixtureRequest, db: Database) -> Access:
    if request.param == "local":
        return LocalQueueAccess(db)
    adapter: RedisQueueAccess = request.getfixturevalue("rq")
    return adapter


# The contract -----------------------------------------------------------------------------


def test_a_tenant_never_touched_has_no_state(access: Access) -> None:
    assert access.get_state(tenant_id=new_id()) is None


def test_a_paused_tenant_reads_back_paused(access: Access) -> None:
    tid = new_id()
    paused = access.pause_queues(tenant_id=tid, tenant_name="acme", idempotency_key="p")

    assert paused.queues_paused
    assert paused.paused_at is not None
    assert paused.tenant_name == "acme"
    assert access.get_state(tenant_id=tid) == paused


def test_pausing_again_keeps_the_time_of_the_first_pause(access: Access) -> None:
    tid = new_id()
    first = access.pause_queues(tenant_id=tid, tenant_name="acme", idempotency_key="p1")
    again = access.pause_queues(tenant_id=tid, tenant_name="acme", idempotency_key="p2")

    assert again.queues_paused
    assert again.paused_at == first.paused_at


def test_resume_gives_the_access_back(access: Access) -> None:
    tid = new_id()
    access.pause_queues(tenant_id=tid, tenant_name="acme", idempotency_key="p")
    resumed = access.resume_queues(tenant_id=tid, tenant_name="acme", idempotency_key="r")

    assert not resumed.queues_paused
    assert resumed.paused_at is None
    assert access.get_state(tenant_id=tid) == resumed


def test_the_same_key_again_returns_the_record_and_does_not_repeat(access: Access) -> None:
    tid = new_id()
    paused = access.pause_queues(tenant_id=tid, tenant_name="acme", idempotency_key="p")
    access.resume_queues(tenant_id=tid, tenant_name="acme", idempotency_key="r")

    replay = access.pause_queues(tenant_id=tid, tenant_name="acme", idempotency_key="p")

    assert replay == paused
    now = access.get_state(tenant_id=tid)
    assert now is not None
    assert not now.queues_paused
    assert access.effect_count(tenant_id=tid) == 2


def test_a_key_used_for_another_operation_is_refused(access: Access) -> None:
    tid = new_id()
    access.pause_queues(tenant_id=tid, tenant_name="acme", idempotency_key="k")

    with pytest.raises(DriverError) as caught:
        access.resume_queues(tenant_id=tid, tenant_name="acme", idempotency_key="k")

    assert caught.value.retry is Retry.PERMANENT
    state = access.get_state(tenant_id=tid)
    assert state is not None
    assert state.queues_paused


def test_a_rate_limit_is_set_replaced_read_back_and_lifted(access: Access) -> None:
    tid = new_id()
    first = access.set_rate_limit(
        tenant_id=tid, tenant_name="acme", limit=RateLimit(10, 20), idempotency_key="a"
    )
    second = access.set_rate_limit(
        tenant_id=tid, tenant_name="acme", limit=RateLimit(2.5, 5), idempotency_key="b"
    )
    read = access.get_state(tenant_id=tid)
    lifted = access.lift_rate_limit(tenant_id=tid, tenant_name="acme", idempotency_key="c")

    assert first.rate_limit == RateLimit(10.0, 20)
    assert second.rate_limit == RateLimit(2.5, 5)
    assert read == second
    assert lifted.rate_limit is None
    assert access.get_state(tenant_id=tid) == lifted
    assert not lifted.queues_paused


@pytest.mark.parametrize(("rate", "burst"), [(0, 1), (-1, 5), (float("nan"), 5), (1, 0)])
def test_an_unusable_rate_limit_is_refused_for_good(
    access: Access, rate: float, burst: int
) -> None:
    tid = new_id()
    with pytest.raises(DriverError) as caught:
        access.set_rate_limit(
            tenant_id=tid, tenant_name="acme", limit=RateLimit(rate, burst), idempotency_key="x"
        )
    assert caught.value.retry is Retry.PERMANENT
    assert access.effect_count() == 0
    assert access.get_state(tenant_id=tid) is None


# Redis only: pausing cuts a connected tenant off ------------------------------------------


def provision(admin: redis.Redis, rq: RedisQueueAccess, name: str, password: str) -> str:
    """What provisioning does: the tenant's user, on, with a password and its own keys."""
    user = rq.user_for(name)
    pattern = rq.tenant_pattern(name)
    admin.execute_command(
        "ACL", "SETUSER", user, "on", f">{password}", f"~{pattern}", f"&{pattern}",
        "+@all", "-@dangerous",
    )  # fmt: skip
    return user


def cannot_log_in(user: str, password: str) -> bool:
    """True when Redis turns down a login as ``user`` with ``password``."""
    client = connect(username=user, password=password)
    try:
        client.ping()
    except redis.AuthenticationError:
        return True
    finally:
        client.close()
    return False


def test_pause_disconnects_a_connected_tenant_who_cannot_log_in_again(
    admin: redis.Redis, rq: RedisQueueAccess
) -> None:
    user = provision(admin, rq, "acme", "s3cret-acme")
    tenant = connect(username=user, password="s3cret-acme", single_connection_client=True)
    own_key = f"{rq.settings.key_prefix}acme:jobs"
    tenant.rpush(own_key, "job-1")

    rq.pause_queues(tenant_id=new_id(), tenant_name="acme", idempotency_key="p")

    with pytest.raises(redis.ConnectionError):
        tenant.rpush(own_key, "job-2")  # the open connection was closed by the server
    assert cannot_log_in(user, "s3cret-acme")
    clients = admin.execute_command("CLIENT", "LIST").splitlines()
    assert not [c for c in clients if f" user={user} " in c]
    assert admin.lrange(own_key, 0, -1) == ["job-1"]  # the queue itself is kept
    tenant.close()


def test_resume_lets_the_tenant_back_in_with_exactly_the_access_it_had(
    admin: redis.Redis, rq: RedisQueueAccess
) -> None:
    user = provision(admin, rq, "acme", "s3cret-acme")
    before = admin.acl_getuser(user)
    tid = new_id()

    rq.pause_queues(tenant_id=tid, tenant_name="acme", idempotency_key="p")
    rq.resume_queues(tenant_id=tid, tenant_name="acme", idempotency_key="r")

    assert admin.acl_getuser(user) == before
    tenant = connect(username=user, password="s3cret-acme")
    assert tenant.set(f"{rq.settings.key_prefix}acme:x", "1")
    with pytest.raises(redis.exceptions.NoPermissionError):
        tenant.set(f"{rq.settings.key_prefix}globex:x", "1")
    with pytest.raises(redis.exceptions.NoPermissionError):
        tenant.hgetall(rq.bucket_key(tid))  # nor the control plane's own keys
    tenant.close()


def test_pausing_a_user_that_does_not_exist_creates_it_disabled_and_confined(
    admin: redis.Redis, rq: RedisQueueAccess
) -> None:
    tid = new_id()
    rq.pause_queues(tenant_id=tid, tenant_name="initech", idempotency_key="p")
    user = rq.user_for("initech")

    info = admin.acl_getuser(user)
    assert info is not None
    assert "off" in info["flags"]
    assert "nopass" not in info["flags"]
    assert info["passwords"] == []
    assert info["keys"] == [f"~{rq.tenant_pattern('initech')}"]
    assert info["channels"] == [f"&{rq.tenant_pattern('initech')}"]
    assert info["categories"] == ["+@all", "-@dangerous"]

    # Resumed before provisioning gave it a password: on, yet nobody can log in as it.
    rq.resume_queues(tenant_id=tid, tenant_name="initech", idempotency_key="r")
    assert "on" in admin.acl_getuser(user)["flags"]
    assert cannot_log_in(user, "")
    assert cannot_log_in(user, "guess")


def test_resuming_a_user_that_does_not_exist_creates_nothing(
    admin: redis.Redis, rq: RedisQueueAccess
) -> None:
    state = rq.resume_queues(tenant_id=new_id(), tenant_name="hooli", idempotency_key="r")
    assert not state.queues_paused
    assert admin.acl_getuser(rq.user_for("hooli")) is None


def test_resume_refuses_to_turn_on_a_password_less_user(
    admin: redis.Redis, rq: RedisQueueAccess
) -> None:
    user = rq.user_for("acme")
    admin.execute_command("ACL", "SETUSER", user, "off", "nopass", "~x:*")
    tid = new_id()

    with pytest.raises(DriverError) as caught:
        rq.resume_queues(tenant_id=tid, tenant_name="acme", idempotency_key="r")

    assert caught.value.retry is Retry.NEEDS_HUMAN
    assert "off" in admin.acl_getuser(user)["flags"]
    assert rq.effect_count(tenant_id=tid) == 0


def test_the_control_planes_own_user_is_never_paused(admin: redis.Redis, make: Make) -> None:
    unsafe = make(user_prefix="")
    with pytest.raises(DriverError) as caught:
        unsafe.pause_queues(tenant_id=new_id(), tenant_name="default", idempotency_key="p")

    assert caught.value.retry is Retry.PERMANENT
    assert "on" in admin.acl_getuser("default")["flags"]
    assert unsafe.effect_count() == 0


@pytest.mark.parametrize("name", ["acme*", "Acme", "a:b", "-acme", "acme\n", "a b", "x" * 64])
def test_a_tenant_name_that_could_widen_the_key_pattern_is_refused(
    rq: RedisQueueAccess, name: str
) -> None:
    with pytest.raises(DriverError) as caught:
        rq.pause_queues(tenant_id=new_id(), tenant_name=name, idempotency_key="p")
    assert caught.value.retry is Retry.PERMANENT


# Redis only: the token bucket -------------------------------------------------------------


def limited(rq: RedisQueueAccess, rate: float, burst: int) -> str:
    tid = new_id()
    rq.set_rate_limit(
        tenant_id=tid, tenant_name="acme", limit=RateLimit(rate, burst), idempotency_key=tid
    )
    return tid


def test_a_burst_is_allowed_at_once_then_refused_then_refilled_at_the_rate(
    rq: RedisQueueAccess,
) -> None:
    tid = limited(rq, rate=4.0, burst=3)  # a token every 0.25 s

    burst = [rq.allow(tid) for _ in range(3)]
    refused = rq.allow(tid)

    assert all(a.allowed for a in burst)
    assert not refused.allowed
    assert 0 < refused.retry_after_seconds <= 1 / 4
    assert refused.retry_after_seconds == pytest.approx((1 - refused.remaining) / 4)
    time.sleep(refused.retry_after_seconds + 0.02)  # just enough for one token, and a margin
    again = rq.allow(tid)
    assert again.allowed
    assert not rq.allow(tid).allowed  # one token came back, not the whole burst


def test_tokens_are_fractional(rq: RedisQueueAccess) -> None:
    tid = limited(rq, rate=0.01, burst=1)  # refills 0.01 a second: negligible here

    first = rq.allow(tid, cost=0.4)
    second = rq.allow(tid, cost=0.4)
    third = rq.allow(tid, cost=0.4)
    small = rq.allow(tid, cost=0.15)

    assert first.allowed
    assert first.remaining == pytest.approx(0.6, abs=0.01)
    assert second.allowed
    assert second.remaining == pytest.approx(0.2, abs=0.01)
    assert not third.allowed
    assert third.retry_after_seconds == pytest.approx((0.4 - 0.2) / 0.01, rel=0.1)
    assert small.allowed
    assert small.remaining == pytest.approx(0.05, abs=0.01)


def test_concurrent_callers_never_get_more_than_the_burst(rq: RedisQueueAccess) -> None:
    tid = limited(rq, rate=0.001, burst=25)  # refills nothing in the test's time
    granted: list[bool] = []
    lock = threading.Lock()
    start = threading.Barrier(6)

    def caller() -> None:
        start.wait()
        mine = [rq.allow(tid).allowed for _ in range(10)]
        with lock:
            granted.extend(mine)

    threads = [threading.Thread(target=caller) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)

    assert len(granted) == 60
    assert sum(granted) == 25


def test_a_tenant_without_a_limit_is_always_allowed(rq: RedisQueueAccess) -> None:
    tid = limited(rq, rate=1, burst=1)
    rq.lift_rate_limit(tenant_id=tid, tenant_name="acme", idempotency_key="lift")

    answers = [rq.allow(tid) for _ in range(5)] + [rq.allow(new_id())]

    assert all(a.allowed and a.remaining == float("inf") for a in answers)


def test_a_cost_above_the_burst_never_fits_and_a_bad_cost_is_refused(
    rq: RedisQueueAccess,
) -> None:
    tid = limited(rq, rate=100, burst=2)

    too_big = rq.allow(tid, cost=3)

    assert not too_big.allowed
    assert too_big.retry_after_seconds == float("inf")
    assert too_big.remaining == pytest.approx(2, abs=1e-6)  # nothing was taken
    for bad in (-1.0, float("nan"), float("inf")):
        with pytest.raises(DriverError) as caught:
            rq.allow(tid, cost=bad)
        assert caught.value.retry is Retry.PERMANENT


def test_a_tighter_limit_caps_the_tokens_the_tenant_has(rq: RedisQueueAccess) -> None:
    tid = limited(rq, rate=0.01, burst=100)
    rq.set_rate_limit(
        tenant_id=tid, tenant_name="acme", limit=RateLimit(0.01, 2), idempotency_key="tight"
    )

    answers = [rq.allow(tid) for _ in range(3)]

    assert [a.allowed for a in answers] == [True, True, False]


def test_the_rate_limit_state_is_readable_in_redis(
    admin: redis.Redis, rq: RedisQueueAccess
) -> None:
    tid = limited(rq, rate=2.5, burst=5)
    rq.allow(tid, cost=1.5)

    bucket = admin.hgetall(rq.bucket_key(tid))
    state = rq.get_state(tenant_id=tid)

    assert bucket["rate"] == "2.5"
    assert bucket["burst"] == "5"
    assert float(bucket["tokens"]) == pytest.approx(3.5, abs=0.1)
    assert state is not None
    assert state.rate_limit == RateLimit(2.5, 5)


@pytest.mark.parametrize("prefix", ["t*", "t?", "[t]", "t ", "t\\"])
def test_a_prefix_that_is_a_glob_is_refused(prefix: str) -> None:
    with pytest.raises(ValueError, match="pattern"):
        RedisAccessSettings(key_prefix=prefix)
    with pytest.raises(ValueError, match="pattern"):
        RedisAccessSettings(user_prefix=prefix)


def test_a_script_the_server_does_not_have_is_loaded_and_run(admin: redis.Redis) -> None:
    marker = uuid.uuid4().hex
    script = LuaScript(f"return '{marker}'")
    assert admin.script_exists(script.sha) == [False]

    assert script(admin, [], []) == marker
    assert admin.script_exists(script.sha) == [True]


# Redis only: errors and doctor ------------------------------------------------------------


def unreachable(make: Make) -> RedisQueueAccess:
    return make(url="redis://127.0.0.1:1/0")


def as_user(admin: redis.Redis, make: Make, *rules: str) -> RedisQueueAccess:
    """The adapter logged in as a user of its own with ``rules``."""
    user = f"{make().settings.user_prefix}ops"
    admin.execute_command("ACL", "SETUSER", user, "on", ">ops-pw", *rules)
    return make(url=f"redis://{user}:ops-pw@{REDIS_HOST}:{REDIS_PORT}/0")


def test_an_unreachable_redis_is_worth_a_retry_and_records_nothing(make: Make) -> None:
    down = unreachable(make)
    calls: list[Callable[[], object]] = [
        lambda: down.pause_queues(tenant_id="t", tenant_name="acme", idempotency_key="p"),
        lambda: down.get_state(tenant_id="t"),
        lambda: down.allow("t"),
    ]
    for call in calls:
        with pytest.raises(DriverError) as caught:
            call()
        assert caught.value.retry is Retry.RETRIABLE
    assert down.effect_count() == 0


def test_a_missing_permission_needs_a_human(admin: redis.Redis, make: Make) -> None:
    weak = as_user(admin, make, "~*", "+@all", "-acl", "-client")
    with pytest.raises(DriverError) as caught:
        weak.pause_queues(tenant_id=new_id(), tenant_name="acme", idempotency_key="p")

    assert caught.value.retry is Retry.NEEDS_HUMAN
    assert weak.effect_count() == 0


def test_a_wrong_password_needs_a_human_and_is_never_shown(admin: redis.Redis, make: Make) -> None:
    good = as_user(admin, make, "+@all")
    bad = make(url=good.settings.url.get_secret_value().replace("ops-pw", "not-the-pw-xyz"))

    with pytest.raises(DriverError) as caught:
        bad.pause_queues(tenant_id=new_id(), tenant_name="acme", idempotency_key="p")
    rows = bad.check()

    assert caught.value.retry is Retry.NEEDS_HUMAN
    shown = f"{caught.value} {rows} {bad!r} {bad.settings!r}"
    assert "not-the-pw-xyz" not in shown
    assert [(r.check, r.ok) for r in rows] == [
        ("redis reachable", True),
        ("redis authenticated", False),
    ]


def test_doctor_passes_for_a_user_with_every_permission(rq: RedisQueueAccess) -> None:
    rows = rq.check()
    assert [r for r in rows if not r.ok] == []
    assert {"redis reachable", "redis authenticated", "redis may CLIENT KILL USER"} <= {
        r.check for r in rows
    }


def test_doctor_names_each_missing_permission_and_its_fix(
    admin: redis.Redis, make: Make, names: RedisAccessSettings
) -> None:
    weak = as_user(admin, make, f"~{names.key_prefix}*", "+@all", "-client|kill")
    rows = weak.check()

    failed = {r.check: r for r in rows if not r.ok}
    assert set(failed) == {"redis may CLIENT KILL USER"}
    assert "+client|kill" in failed["redis may CLIENT KILL USER"].fix


def test_doctor_says_when_redis_is_not_there(make: Make) -> None:
    rows = unreachable(make).check()
    assert len(rows) == 1
    assert rows[0].check == "redis reachable"
    assert not rows[0].ok
    assert "127.0.0.1:1" in rows[0].fix


def test_the_least_privilege_doctor_prints_is_enough_for_every_operation(
    admin: redis.Redis, make: Make, rq: RedisQueueAccess
) -> None:
    least = rq.least_privilege("x").split()[3:]  # ACL SETUSER x <rules…>
    ops = as_user(admin, make, *least)
    tid = new_id()

    ops.pause_queues(tenant_id=tid, tenant_name="acme", idempotency_key="p")
    ops.set_rate_limit(
        tenant_id=tid, tenant_name="acme", limit=RateLimit(1, 1), idempotency_key="l"
    )
    allowed = ops.allow(tid)
    ops.lift_rate_limit(tenant_id=tid, tenant_name="acme", idempotency_key="u")
    resumed = ops.resume_queues(tenant_id=tid, tenant_name="acme", idempotency_key="r")
    rows = ops.check()

    assert allowed.allowed
    assert not resumed.queues_paused
    assert [r for r in rows if not r.ok] == []
