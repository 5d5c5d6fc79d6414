"""The last enabled platform admin web user is never disabled, not even by two callers at once."""

from __future__ import annotations

import threading
import time

import pytest

from tenantops.auth.principal import SYSTEM, Role
from tenantops.db import Database
from tenantops.errors import Conflict
from tenantops.web import service as web
from tests.conftest import blocked_on_a_lock, postgres_only

PASSWORD = "a long enough password 9"


def _user(db: Database, username: str, *roles: Role, tenant_id: str | None = None) -> None:
    with db.write() as session:
        web.create_user(
            session,
            actor=SYSTEM,
            username=username,
            password=PASSWORD,
            roles=list(roles),
            tenant_id=tenant_id,
        )


def _disabled(db: Database) -> dict[str, bool]:
    with db.read() as session:
        return {u.username: u.disabled for u in web.list_users(session)}


def test_admins_who_cannot_run_the_platform_do_not_count(db: Database) -> None:
    """An admin holding tenant_owner is scoped to a tenant: it leaves root the last one."""
    _user(db, "root", Role.ADMIN)
    _user(db, "owner-admin", Role.ADMIN)
    with db.write() as session:  # holding tenant_owner too scopes the whole principal
        [owner] = [u for u in web.list_users(session) if u.username == "owner-admin"]
        owner.roles = [Role.ADMIN.value, Role.TENANT_OWNER.value]
    with pytest.raises(Conflict) as refused, db.write() as session:
        web.set_disabled(session, actor=SYSTEM, username="root", disabled=True)
    assert "root is the last enabled admin web user bound to no tenant" in str(refused.value)
    assert _disabled(db)["root"] is False


def test_disabling_reports_whether_it_changed_anything(db: Database) -> None:
    _user(db, "root", Role.ADMIN)
    _user(db, "viewer", Role.AUDITOR)
    with db.write() as session:
        first = web.set_disabled(session, actor=SYSTEM, username="viewer", disabled=True)
    with db.write() as session:
        again = web.set_disabled(session, actor=SYSTEM, username="viewer", disabled=True)
    assert (first.changed, again.changed) == (True, False)


@postgres_only  # SQLite has one writer: nothing commits between a read and the lock
def test_a_user_read_before_the_lock_is_read_again_under_it(db: Database) -> None:
    """A caller that loaded the user (an access review checks it first) and then disables
    it sees what another transaction committed meanwhile: ``already``, not done twice."""
    _user(db, "root", Role.ADMIN)
    _user(db, "bob", Role.OPS_ENGINEER)
    with db.write() as session:
        [bob] = [u for u in web.list_users(session) if u.username == "bob"]
        assert bob.disabled is False  # loaded, and held by this session
        with db.write() as other:  # `tenantops users disable bob`, committed meanwhile
            assert web.set_disabled(other, actor=SYSTEM, username="bob", disabled=True).changed
        again = web.set_disabled(session, actor=SYSTEM, username="bob", disabled=True)
        assert again.changed is False
        assert bob.disabled is True


@postgres_only  # row locks and READ COMMITTED
def test_two_transactions_disabling_the_last_two_admins_leave_one(db: Database) -> None:
    """Each disables one of the last two admins at once: exactly one succeeds.

    The first holds its transaction open until the second has either finished
    or is waiting on a row lock (read from pg_stat_activity, no sleep decides
    anything); a plain read under READ COMMITTED would let the second count the
    first's admin as still enabled and disable the other.
    """
    _user(db, "alice", Role.ADMIN)
    _user(db, "bob", Role.ADMIN)
    first_done, release = threading.Event(), threading.Event()
    outcomes: dict[str, str] = {}

    def disable(username: str, hold: bool) -> None:
        try:
            with db.write() as session:
                web.set_disabled(session, actor=SYSTEM, username=username, disabled=True)
                if hold:
                    first_done.set()
                    release.wait()
            outcomes[username] = "disabled"
        except Conflict:
            outcomes[username] = "refused"
        finally:
            first_done.set()

    first = threading.Thread(target=disable, args=("alice", True))
    second = threading.Thread(target=disable, args=("bob", False))
    first.start()
    assert first_done.wait(60)
    second.start()
    deadline = time.monotonic() + 60  # a hang guard only: the test waits on states
    while second.is_alive() and not blocked_on_a_lock(db):
        assert time.monotonic() < deadline, "the second transaction neither ran nor waited"
        time.sleep(0.01)
    release.set()
    first.join(60)
    second.join(60)

    assert outcomes == {"alice": "disabled", "bob": "refused"}
    assert _disabled(db) == {"alice": True, "bob": False}
