"""The Access Review decision: what the ``decide`` comment says to revoke, checked strictly.

Grammar (ADR 0040)::

    keep [anything]                         nothing is revoked
    revoke <item> [<item> ...] [; reason]   each item is revoked
    (no comment at all)                     no decision written: nothing is revoked

An item is ``kind:identifier`` with the identifier the snapshot file shows:
``member:<subject>`` (a member of the tenant's group), ``token:<prefix>``,
``user:<username>``, ``breakglass:<grant run id>`` for access bound to the
tenant, and ``platform-token:``, ``platform-user:``, ``platform-breakglass:``
for access bound to no tenant (listed under ``platform``; revoking it reaches
every tenant, so it must be named as such). Items are separated by spaces or
commas and end at the first ``;``. Every problem — an unknown kind, a word that
is no item, an identifier the reviewed snapshot does not list — is reported at
once, before anything is revoked. Pure: no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from tenantops.errors import Unprocessable

OUTCOMES = ("keep", "revoke")
# kind -> (the snapshot's list, its identifier field); the platform kinds read snapshot["platform"].
KINDS: dict[str, tuple[str, str]] = {
    "member": ("members", "subject"),
    "token": ("tokens", "prefix"),
    "user": ("users", "username"),
    "breakglass": ("break_glass", "run_id"),
    "platform-token": ("tokens", "prefix"),
    "platform-user": ("users", "username"),
    "platform-breakglass": ("break_glass", "run_id"),
}
# Identifiers compared without case: e-mail-like subjects and UUID run ids. Token
# prefixes (base64url) and usernames are case-sensitive.
_FOLDED = {"member", "breakglass", "platform-breakglass"}
_WORD = re.compile(r"\s*([A-Za-z]+)\b:?\s*(.*)\Z", re.DOTALL)
EXAMPLE = "revoke member:alice@example.com, token:tnp_AbC123, user:bob; left the team"


class DecisionError(Unprocessable):
    """The decision cannot be carried out as written; the message names every bad item."""


@dataclass(frozen=True)
class Item:
    """One thing to revoke: ``kind`` as in ``KINDS``, ``ident`` as the snapshot shows it."""

    kind: str
    ident: str

    @property
    def platform(self) -> bool:
        return self.kind.startswith("platform-")

    @property
    def base(self) -> str:
        """``token`` for both ``token`` and ``platform-token``."""
        return self.kind.removeprefix("platform-")

    def __str__(self) -> str:
        return f"{self.kind}:{self.ident}"


@dataclass(frozen=True)
class Decision:
    """What security decided: ``outcome`` (``None``: no comment), the items, the reason."""

    outcome: str | None
    items: tuple[Item, ...] = ()
    reason: str = ""


def outcome_of(comment: str) -> str | None:
    """``keep`` or ``revoke`` when the comment starts with it (any case, ``:`` allowed)."""
    match = _WORD.match(comment)
    word = match.group(1).lower() if match else ""
    return word if word in OUTCOMES else None


def parse(comment: str | None) -> Decision:
    """The decision in ``comment``; ``DecisionError`` naming every part that is not grammar."""
    text = (comment or "").strip()
    if not text:
        return Decision(outcome=None)
    outcome = outcome_of(text)
    match = _WORD.match(text)
    if outcome is None or match is None:
        raise DecisionError(
            f"the decision must start with keep or revoke (e.g. {EXAMPLE!r}), not {text[:60]!r}"
        )
    rest = match.group(2)
    if outcome == "keep":
        return Decision(outcome="keep", reason=rest.strip())
    listed, _, reason = rest.partition(";")
    items: list[Item] = []
    problems: list[str] = []
    for word in (w for w in re.split(r"[\s,]+", listed) if w):
        kind, colon, ident = word.partition(":")
        if not colon or not ident or not kind:
            problems.append(f"{word!r} is not kind:identifier")
        elif kind.lower() not in KINDS:
            problems.append(f"{word!r} has an unknown kind {kind!r}")
        else:
            kind = kind.lower()
            item = Item(kind, ident.lower() if kind in _FOLDED else ident)
            if item not in items:
                items.append(item)
    if problems:
        raise DecisionError(_refusal(problems))
    if not items:
        raise DecisionError(f"revoke names nothing to revoke (e.g. {EXAMPLE!r})")
    return Decision(outcome="revoke", items=tuple(items), reason=reason.strip())


def _listed(snapshot: Mapping[str, Any], kind: str) -> list[dict[str, Any]]:
    field_list, _ident = KINDS[kind]
    where = (snapshot.get("platform") or {}) if kind.startswith("platform-") else snapshot
    found = where.get(field_list) if isinstance(where, Mapping) else None
    return [e for e in found or [] if isinstance(e, dict)]


def _matches(item: Item, kind: str, snapshot: Mapping[str, Any]) -> list[dict[str, Any]]:
    _list, field = KINDS[kind]
    folded = item.kind in _FOLDED
    return [
        e
        for e in _listed(snapshot, kind)
        if (str(e.get(field) or "").lower() if folded else str(e.get(field) or "")) == item.ident
    ]


def check(decision: Decision, snapshot: Mapping[str, Any]) -> list[Item]:
    """The items of ``decision``, each listed once in the reviewed ``snapshot``, or an error.

    Every item must be listed in the snapshot under its own scope: the tenant's
    lists for ``member``/``token``/``user``/``breakglass``, ``platform`` for the
    ``platform-`` kinds. A prefix listed twice is ambiguous and refused.
    """
    problems: list[str] = []
    for item in decision.items:
        found = _matches(item, item.kind, snapshot)
        if not found:
            other = f"platform-{item.kind}" if not item.platform else item.base
            hint = ""
            if item.base != "member" and _matches(item, other, snapshot):
                hint = (
                    f" (it is bound to no tenant: write {other}:{item.ident} to revoke it for"
                    " every tenant)"
                    if not item.platform
                    else f" (it is bound to this tenant: write {other}:{item.ident})"
                )
            problems.append(f"{item} is not in the reviewed snapshot{hint}")
        elif len(found) > 1:
            problems.append(f"{item} names {len(found)} entries of the snapshot")
    if problems:
        raise DecisionError(_refusal(problems))
    return list(decision.items)


def _refusal(problems: list[str]) -> str:
    kinds = ", ".join(KINDS)
    return f"nothing was revoked: {'; '.join(problems)} (items are kind:identifier, kinds: {kinds})"
