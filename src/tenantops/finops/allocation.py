"""Allocation of cost lines to tenants by the ordered rules of ``FinOpsSettings.allocation``.

The first rule that names an existing tenant wins. A rule that names a tenant
the registry does not know does not match (the next rule is tried), and the
name is counted in ``unknown`` so the import summary can show it. A line no
rule matches stays unallocated (tenant null); it is never dropped.

Rules run per distinct value, not per line: a batch's Tags and ResourceId
columns are dictionary-encoded, each distinct value is looked at once (and
remembered across batches), and the answers are spread back over the lines.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from tenantops.finops.arrow import pa, pc
from tenantops.finops.settings import AllocationRule

CACHE_LIMIT = 200_000  # distinct values remembered per rule before starting over


def tag_value(tags: str | None, key: str) -> str | None:
    """``Tags[key]`` of a FOCUS Tags JSON object, as text; None when absent."""
    if not tags:
        return None
    try:
        value = json.loads(tags)
    except ValueError:
        return None
    if not isinstance(value, dict) or key not in value or value[key] is None:
        return None
    found = value[key]
    return found if isinstance(found, str) else json.dumps(found)


@dataclass
class _Compiled:
    rule: AllocationRule
    regex: re.Pattern[str] | None
    refs: dict[str, str | None] = field(default_factory=dict)

    def reference(self, value: str) -> str | None:
        """The tenant name or id a value names under this rule (remembered per value)."""
        if value in self.refs:
            return self.refs[value]
        if len(self.refs) >= CACHE_LIMIT:
            self.refs.clear()
        ref: str | None
        if self.rule.kind == "tag":
            assert self.rule.key is not None
            ref = tag_value(value, self.rule.key)
        else:
            assert self.regex is not None
            match = self.regex.search(value)
            ref = match.group("tenant") if match and match.group("tenant") else None
        self.refs[value] = ref
        return ref


@dataclass
class Allocation:
    """Tenant id per line (null: unallocated) and how many lines each rule took."""

    tenant_ids: pa.Array
    by_rule: dict[str, int]


Resolve = Callable[[set[str]], dict[str, str]]


class Allocator:
    """Applies the rules to batches.

    ``resolve`` maps a set of tenant names or ids to ids in one query; refs
    missing from its answer are unknown tenants.
    """

    def __init__(self, rules: Sequence[AllocationRule], resolve: Resolve) -> None:
        self._rules = [
            _Compiled(r, re.compile(r.pattern) if r.kind == "resource" and r.pattern else None)
            for r in rules
        ]
        self._resolve = resolve
        self._ids: dict[str, str | None] = {}
        self.unknown: Counter[str] = Counter()

    def _lookup(self, refs: list[str | None]) -> list[str | None]:
        missing = {r for r in refs if r is not None and r not in self._ids}
        if missing:
            if len(self._ids) >= CACHE_LIMIT:
                self._ids.clear()
            found = self._resolve(missing)
            for ref in missing:
                self._ids[ref] = found.get(ref)
        ids = []
        for name in refs:
            tenant_id = self._ids.get(name) if name is not None else None
            if name is not None and tenant_id is None:
                self.unknown[name] += 1
            ids.append(tenant_id)
        return ids

    def allocate(self, tags: pa.Array, resource_ids: pa.Array) -> Allocation:
        tenant = pa.nulls(len(tags), pa.string())
        by_rule: dict[str, int] = {}
        for compiled in self._rules:
            if pc.all(pc.is_valid(tenant)).as_py():
                break
            source = tags if compiled.rule.kind == "tag" else resource_ids
            # Only the lines still unallocated are looked at.
            open_values = pc.if_else(pc.is_null(tenant), source, pa.scalar(None, pa.string()))
            encoded = pc.dictionary_encode(open_values)
            dictionary = encoded.dictionary.to_pylist()
            refs = [None if v is None else compiled.reference(v) for v in dictionary]
            mapped = pa.array(self._lookup(refs), pa.string())
            candidate = pc.take(mapped, encoded.indices)
            taken = pc.and_(pc.is_null(tenant), pc.is_valid(candidate))
            count = int(pc.sum(taken).as_py() or 0)
            by_rule[compiled.rule.label] = by_rule.get(compiled.rule.label, 0) + count
            tenant = pc.coalesce(tenant, candidate)
        return Allocation(tenant_ids=tenant, by_rule=by_rule)
