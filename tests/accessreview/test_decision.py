"""The revoke grammar of the Access Review's decision: parsed and checked strictly, no I/O."""

from __future__ import annotations

from typing import Any

import pytest

from tenantops.accessreview.decision import Decision, DecisionError, Item, check, parse

SNAPSHOT: dict[str, Any] = {
    "members": [{"subject": "alice@example.com"}, {"subject": "owner@acme.example"}],
    "tokens": [{"prefix": "tnp_AbC123"}, {"prefix": "tnp_twice"}, {"prefix": "tnp_twice"}],
    "users": [{"username": "Bob"}],
    "break_glass": [{"run_id": "0193aaaa-0000-7000-8000-000000000001", "token_id": "t1"}],
    "platform": {
        "tokens": [{"prefix": "tnp_Root01"}],
        "users": [{"username": "platform-admin"}],
        "break_glass": [{"run_id": "0193bbbb-0000-7000-8000-000000000002", "token_id": "t2"}],
    },
}


def test_revoke_names_items_then_a_reason() -> None:
    decision = parse(
        "Revoke: member:Alice@Example.com, token:tnp_AbC123 user:Bob,"
        " breakglass:0193AAAA-0000-7000-8000-000000000001; left the team; really"
    )
    assert decision == Decision(
        outcome="revoke",
        items=(
            Item("member", "alice@example.com"),  # subjects and run ids compare without case
            Item("token", "tnp_AbC123"),  # a prefix and a username keep theirs
            Item("user", "Bob"),
            Item("breakglass", "0193aaaa-0000-7000-8000-000000000001"),
        ),
        reason="left the team; really",
    )
    assert check(decision, SNAPSHOT) == list(decision.items)


def test_keep_and_no_comment_revoke_nothing() -> None:
    assert parse("keep: all expected") == Decision(outcome="keep", reason="all expected")
    assert parse("KEEP member:alice@example.com") == Decision(
        outcome="keep", reason="member:alice@example.com"
    )
    assert parse(None) == parse("  ") == Decision(outcome=None)


@pytest.mark.parametrize(
    ("comment", "says"),
    [
        ("looks fine", "must start with keep or revoke"),
        ("revoked member:alice@example.com", "must start with keep or revoke"),
        ("revoke", "revoke names nothing"),
        ("revoke ; because", "revoke names nothing"),
        ("revoke tnp_AbC123 and bob: left", "'tnp_AbC123' is not kind:identifier"),
        ("revoke user:Bob left the team", "'left' is not kind:identifier"),
        ("revoke group:blue", "'group:blue' has an unknown kind 'group'"),
        ("revoke token:", "'token:' is not kind:identifier"),
    ],
)
def test_what_is_not_grammar_is_refused(comment: str, says: str) -> None:
    with pytest.raises(DecisionError, match=says):
        parse(comment)


def test_every_bad_word_is_named_at_once() -> None:
    with pytest.raises(DecisionError) as refused:
        parse("revoke user:Bob, frob:x and")
    assert "'frob:x' has an unknown kind 'frob'" in str(refused.value)
    assert "'and' is not kind:identifier" in str(refused.value)


@pytest.mark.parametrize(
    ("comment", "says"),
    [
        ("revoke member:mallory@example.com", "member:mallory@example.com is not in the reviewed"),
        ("revoke user:bob", "user:bob is not in the reviewed"),  # usernames keep their case
        ("revoke token:tnp_abc123", "token:tnp_abc123 is not in the reviewed"),
        (
            "revoke token:tnp_Root01",
            "bound to no tenant: write platform-token:tnp_Root01 to revoke it for every tenant",
        ),
        ("revoke platform-user:Bob", "bound to this tenant: write user:Bob"),
        (
            "revoke platform-breakglass:0193aaaa-0000-7000-8000-000000000001",
            "bound to this tenant",
        ),
        ("revoke token:tnp_twice", "token:tnp_twice names 2 entries of the snapshot"),
    ],
)
def test_an_item_not_in_the_reviewed_snapshot_is_refused(comment: str, says: str) -> None:
    with pytest.raises(DecisionError, match=says) as refused:
        check(parse(comment), SNAPSHOT)
    assert str(refused.value).startswith("nothing was revoked: ")


def test_access_bound_to_no_tenant_is_named_as_such() -> None:
    decision = parse(
        "revoke platform-token:tnp_Root01 platform-user:platform-admin"
        " platform-breakglass:0193bbbb-0000-7000-8000-000000000002"
    )
    assert [i.platform for i in check(decision, SNAPSHOT)] == [True, True, True]


def test_one_bad_item_refuses_the_whole_decision() -> None:
    with pytest.raises(DecisionError) as refused:
        check(parse("revoke user:Bob member:nobody@example.com token:tnp_nope"), SNAPSHOT)
    message = str(refused.value)
    assert "member:nobody@example.com is not in the reviewed snapshot" in message
    assert "token:tnp_nope is not in the reviewed snapshot" in message
    assert "user:Bob" not in message
