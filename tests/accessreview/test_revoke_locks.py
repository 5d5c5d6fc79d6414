"""An access review ending a grant takes locks in the grant's own order (ADR 0040)."""

from __future__ import annotations

import threading
import time

from tenantops.accessreview import revocation
from tenantops.accessreview.decision import Item
from tenantops.accessreview.revocation import Decider
from tenantops.audit import service as audit
from tenantops.auth.principal import SYSTEM
from tenantops.runbooks import engine
from tests.accessreview.test_access_review import blue  # noqa: F401 (fixture)
from tests.accessreview.test_revoke import Review, review  # noqa: F401 (fixture)
from tests.conftest import blocked_on_a_lock, postgres_only


@postgres_only  # row locks
def test_a_token_named_before_a_grant_does_not_deadlock_with_the_grants_step(
    review: Review,  # noqa: F811
) -> None:
    """``token:`` before ``breakglass:``: the review waits for the grant's run before any write.

    The other transaction holds the grant's run, as the grant's own revoke step
    does, and then appends to the audit chain. Had the review revoked the token
    (audit head locked) before asking for the run, each would wait on the other.
    """
    db = review.db
    run_held, go_on = threading.Event(), threading.Event()
    errors: list[BaseException] = []
    done: dict[str, list[str]] = {}

    def grant_step() -> None:  # run -> audit head, the grant's revoke step's order
        try:
            with db.write() as session:
                engine.get_run(session, review.grant_run, for_update=True)
                run_held.set()
                go_on.wait(60)
                audit.record(
                    session,
                    actor=SYSTEM,
                    action="test.grant_step",
                    tenant_id=review.blue,
                    changes={},
                    detail={},
                )
        except BaseException as exc:  # reported by the asserts below
            errors.append(exc)
        finally:
            run_held.set()

    def review_apply() -> None:
        try:
            with db.write() as session:
                done.update(
                    revocation.revoke(
                        session,
                        items=[Item("token", review.prefix), Item("breakglass", review.grant_run)],
                        tenant={"id": review.blue, "name": "blue"},
                        run_id=review.run_id,
                        decider=Decider(
                            "sue", frozenset({"security", "admin"}), tenant_scoped=False
                        ),
                        reason="left",
                        group=None,
                    )
                )
        except BaseException as exc:  # reported by the asserts below
            errors.append(exc)

    step = threading.Thread(target=grant_step)
    step.start()
    assert run_held.wait(60)
    apply = threading.Thread(target=review_apply)
    apply.start()
    deadline = time.monotonic() + 60  # a hang guard only: the test waits on states
    while apply.is_alive() and not blocked_on_a_lock(db):
        assert time.monotonic() < deadline, "the review neither ran nor waited"
        time.sleep(0.01)
    go_on.set()
    step.join(60)
    apply.join(60)

    assert errors == []
    assert done["revoked"] == [f"token:{review.prefix}", f"breakglass:{review.grant_run}"]
    assert not review.works(review.deploy)
    assert not review.works(review.grant_token)
