"""The GitOps port: a repository that takes one change per commit, at most once per key.

Value objects in, value objects out. A :class:`Change` is the whole effect of
one runbook step on the repository; applying it again with the same
``idempotency_key`` returns the commit made the first time instead of a new
one, so a step re-executed after a crash does not repeat its effect. The
repository's history is the driver's effect log.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

IDEMPOTENCY_TRAILER = "Tenantops-Idempotency-Key"
RUN_TRAILER = "Tenantops-Run"
ACTOR_TRAILER = "Tenantops-Actor"


@dataclass(frozen=True)
class Change:
    """One commit's worth of edits, with who made it, in which run, under which key.

    ``files`` maps a repository path to its new content, or to ``None`` to
    delete it. Every folder in ``replace`` ends up holding exactly the files of
    ``files`` under it: anything else there is deleted (a re-render that drops
    a manifest removes it; ``replace`` with no files deletes the folder).
    """

    summary: str
    run_id: str
    actor: str
    idempotency_key: str
    files: Mapping[str, str | None] = field(default_factory=dict)
    replace: tuple[str, ...] = ()


@dataclass(frozen=True)
class Commit:
    """What applying a change did: the commit carrying it, or the unchanged head.

    ``changed`` is False when the tree already matched (no commit was made);
    ``replayed`` is True when a commit with the same key already existed.
    """

    sha: str
    changed: bool
    replayed: bool = False


class GitOpsRepo(Protocol):
    """A GitOps repository (local git today; a remote git host behind the same calls)."""

    def apply(self, change: Change) -> Commit:
        """Commit ``change`` unless its key was committed before or nothing differs."""
        ...

    def read(self, prefix: str = "") -> dict[str, str]:
        """The committed files under ``prefix`` at the head of the branch, path -> text."""
        ...

    def commits_with_key(self, idempotency_key: str) -> list[str]:
        """Every commit (newest first) carrying ``idempotency_key`` — the effect log."""
        ...

    def head(self) -> str:
        """The sha at the head of the branch (creating the repository if need be)."""
        ...

    def contains(self, revision: str, ancestor: str) -> bool:
        """Whether ``revision`` is ``ancestor`` or a commit whose history includes it.

        False for a revision this repository does not hold (nor its remote).
        """
        ...
