"""FinOps FOCUS cost exports: the columns we require, streaming readers, row validation.

Reference: FinOps Open Cost and Usage Specification 1.0
(https://focus.finops.org/focus-specification/v1-0/), column library
"Mandatory" feature level. Four columns that FOCUS 1.0 marks "Conditional"
are required here too, because allocation and reports read them: ResourceId
and Tags (allocation), RegionId and SkuId (reports); their values may be null.
FOCUS 1.3 renamed ProviderName to ServiceProviderName; either is accepted.

Files are read in Arrow record batches (CSV through ``pyarrow.csv.open_csv``,
Parquet through ``ParquetFile.iter_batches``) and checked column-wise with
``pyarrow.compute``: a million rows are never Python objects at once. Only a
batch whose column fails a vectorised check is walked value by value, to name
the offending lines.

A "line" is the record number in the file counting the CSV header as line 1
(the first data row is line 2; in Parquet, row ``n`` of the file is line
``n + 2`` too, so both formats report alike). A quoted CSV value spanning
several physical lines counts as one.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, Literal

from tenantops.finops.arrow import pa, pacsv, pc, pq
from tenantops.kit.iso4217 import CURRENCY_CODES

FOCUS_VERSION = "1.0"
FOCUS_REFERENCE = "https://focus.finops.org/focus-specification/v1-0/"

# FOCUS 1.0 columns at the "Mandatory" feature level.
FOCUS_MANDATORY: tuple[str, ...] = (
    "BilledCost",
    "BillingAccountId",
    "BillingAccountName",
    "BillingCurrency",
    "BillingPeriodEnd",
    "BillingPeriodStart",
    "ChargeCategory",
    "ChargeClass",
    "ChargeDescription",
    "ChargePeriodEnd",
    "ChargePeriodStart",
    "ContractedCost",
    "EffectiveCost",
    "InvoiceIssuerName",
    "ListCost",
    "PricingQuantity",
    "PricingUnit",
    "ProviderName",
    "PublisherName",
    "ServiceCategory",
    "ServiceName",
)
# "Conditional" in FOCUS 1.0, required by tenantops (values may be null).
TENANTOPS_REQUIRED: tuple[str, ...] = ("ResourceId", "RegionId", "SkuId", "Tags")
REQUIRED_COLUMNS: tuple[str, ...] = FOCUS_MANDATORY + TENANTOPS_REQUIRED
# Accepted under another name (FOCUS 1.3 renamed ProviderName).
ALIASES: dict[str, str] = {"ServiceProviderName": "ProviderName"}

COST_COLUMNS: tuple[str, ...] = ("BilledCost", "EffectiveCost", "ListCost", "ContractedCost")
DATETIME_COLUMNS: tuple[str, ...] = (
    "BillingPeriodStart",
    "BillingPeriodEnd",
    "ChargePeriodStart",
    "ChargePeriodEnd",
)
# Mandatory columns whose value may not be null (FOCUS 1.0 nullability).
NOT_NULL: tuple[str, ...] = (
    "BillingAccountId",
    "BillingCurrency",
    "ChargeCategory",
    "ChargeDescription",
    "ProviderName",
    "PublisherName",
    "InvoiceIssuerName",
    "ServiceCategory",
    "ServiceName",
)
CHARGE_CATEGORIES: frozenset[str] = frozenset({"Usage", "Purchase", "Tax", "Credit", "Adjustment"})
# The columns the importer keeps; the others are validated for presence only.
KEPT: tuple[str, ...] = (
    "BillingAccountId",
    "BillingCurrency",
    "BillingPeriodStart",
    "BillingPeriodEnd",
    "ChargePeriodStart",
    "ChargePeriodEnd",
    "ChargeCategory",
    "ChargeDescription",
    "ProviderName",
    "PublisherName",
    "InvoiceIssuerName",
    "ServiceCategory",
    "ServiceName",
    "ResourceId",
    "Tags",
    *COST_COLUMNS,
)

COST_TYPE = pa.decimal128(38, 12)
TIME_TYPE = pa.timestamp("us", tz="UTC")
BATCH_ROWS = 65_536
FIRST_LINE = 2  # the header is line 1

Format = Literal["csv", "parquet"]


class MissingColumns(ValueError):
    """The file lacks required FOCUS columns (all are named at once)."""

    def __init__(self, missing: list[str]) -> None:
        super().__init__("missing FOCUS columns: " + ", ".join(missing))
        self.missing = missing


class UnreadableFile(ValueError):
    """The file is not CSV or Parquet we can read at all."""


@dataclass(frozen=True)
class RowError:
    """What is wrong with one line (``column`` is None for a whole-row problem)."""

    line: int
    column: str | None
    message: str


@dataclass
class CheckedBatch:
    """A batch of valid rows, typed: costs as decimals, times as UTC timestamps."""

    lines: pa.Array
    columns: dict[str, pa.Array]

    def __len__(self) -> int:
        return len(self.lines)


@dataclass
class Scope:
    """What every row of one file shares: billing account, period and currency."""

    account: str
    period_start: datetime
    period_end: datetime
    currency: str
    first_line: int


@dataclass
class Validator:
    """Checks batches in file order; remembers the file's scope from its first valid row."""

    max_errors: int = 100
    errors: list[RowError] = field(default_factory=list)
    error_count: int = 0
    scope: Scope | None = None
    _tags_ok: dict[str, str | None] = field(default_factory=dict)
    _pending: list[RowError] = field(default_factory=list)

    def _fail(self, line: int, column: str | None, message: str) -> None:
        self.error_count += 1
        if len(self._pending) < self.max_errors:
            self._pending.append(RowError(line, column, message))

    def _fail_mask(self, lines: pa.Array, mask: pa.Array, column: str | None, msg: str) -> None:
        bad = pc.filter(lines, mask)
        count = len(bad)
        if not count:
            return
        room = self.max_errors - len(self._pending)
        for line in bad.slice(0, max(room, 0)).to_pylist():
            self._pending.append(RowError(line, column, msg))
        self.error_count += count

    def check(self, batch: pa.RecordBatch, first_line: int) -> CheckedBatch | None:
        """The batch typed, or None when any of its rows is invalid (errors recorded)."""
        before = self.error_count
        n = batch.num_rows
        lines = pa.array(range(first_line, first_line + n), pa.int64())
        cols: dict[str, pa.Array] = {name: _column(batch, name) for name in KEPT}
        for name in COST_COLUMNS:
            cols[name] = self._decimal(cols[name], lines, name)
        for name in DATETIME_COLUMNS:
            cols[name] = self._datetime(cols[name], lines, name)
        for name in NOT_NULL:
            col = cols[name]
            empty = pc.or_(pc.is_null(col), pc.equal(pc.utf8_trim_whitespace(col), ""))
            self._fail_mask(lines, pc.fill_null(empty, True), name, "is required")
        currency = cols["BillingCurrency"]
        unknown = pc.invert(pc.is_in(currency, value_set=_CURRENCIES))
        self._fail_mask(
            lines,
            pc.and_(pc.is_valid(currency), unknown),
            "BillingCurrency",
            "is not an ISO 4217 currency code",
        )
        category = cols["ChargeCategory"]
        self._fail_mask(
            lines,
            pc.and_(
                pc.is_valid(category),
                pc.invert(pc.is_in(category, value_set=_CATEGORIES)),
            ),
            "ChargeCategory",
            "must be one of " + ", ".join(sorted(CHARGE_CATEGORIES)),
        )
        self._tags(cols["Tags"], lines)
        self._periods(cols, lines)
        if self.error_count != before:
            # The first errors by line, whichever check found them.
            self._pending.sort(key=lambda e: e.line)
            room = max(self.max_errors - len(self.errors), 0)
            self.errors.extend(self._pending[:room])
            self._pending.clear()
            return None
        return CheckedBatch(lines=lines, columns=cols)

    def _decimal(self, col: pa.Array, lines: pa.Array, name: str) -> pa.Array:
        nulls = pc.is_null(col)
        if pc.any(nulls).as_py():
            self._fail_mask(lines, nulls, name, "is required (a decimal number)")
        if pa.types.is_decimal(col.type) or pa.types.is_integer(col.type):
            return pc.cast(col, COST_TYPE)
        if pa.types.is_floating(col.type):
            return _float_to_decimal(col)
        return _parsed(col, lines, COST_TYPE, lambda raw, line: self._one_decimal(raw, line, name))

    def _one_decimal(self, raw: str | None, line: int, name: str) -> Decimal | None:
        if raw is None:
            return None
        try:
            value = Decimal(raw.strip())
        except InvalidOperation:
            self._fail(line, name, f"{_short(raw)!r} is not a decimal number")
            return None
        if not value.is_finite():
            self._fail(line, name, f"{_short(raw)!r} is not a finite number")
            return None
        try:
            return value.quantize(Decimal("1e-12"))
        except InvalidOperation:
            self._fail(line, name, f"{_short(raw)!r} is out of range")
            return None

    def _datetime(self, col: pa.Array, lines: pa.Array, name: str) -> pa.Array:
        nulls = pc.is_null(col)
        if pc.any(nulls).as_py():
            self._fail_mask(lines, nulls, name, "is required (an ISO 8601 date-time)")
        if pa.types.is_timestamp(col.type):
            if col.type.tz is None:
                col = pc.assume_timezone(col, "UTC")
            return pc.cast(col, TIME_TYPE)
        return _parsed(col, lines, TIME_TYPE, lambda raw, line: self._one_datetime(raw, line, name))

    def _one_datetime(self, raw: str | None, line: int, name: str) -> datetime | None:
        if raw is None:
            return None
        try:
            value = datetime.fromisoformat(raw.strip())
        except ValueError:
            self._fail(line, name, f"{_short(raw)!r} is not an ISO 8601 date-time")
            return None
        if value.tzinfo is None:
            self._fail(line, name, f"{_short(raw)!r} has no time zone (FOCUS times are UTC, 'Z')")
            return None
        return value

    def _tags(self, col: pa.Array, lines: pa.Array) -> None:
        if not pa.types.is_string(col.type):
            return
        for text in pc.unique(col).to_pylist():
            if text is None:
                continue
            if text not in self._tags_ok:
                if len(self._tags_ok) > 100_000:
                    self._tags_ok.clear()
                self._tags_ok[text] = _tags_problem(text)
            problem = self._tags_ok[text]
            if problem:
                self._fail_mask(lines, pc.fill_null(pc.equal(col, text), False), "Tags", problem)

    def _periods(self, cols: dict[str, pa.Array], lines: pa.Array) -> None:
        start, end = cols["ChargePeriodStart"], cols["ChargePeriodEnd"]
        self._fail_mask(
            lines,
            pc.fill_null(pc.invert(pc.less(start, end)), False),
            "ChargePeriodEnd",
            "must be after ChargePeriodStart",
        )
        bstart, bend = cols["BillingPeriodStart"], cols["BillingPeriodEnd"]
        self._fail_mask(
            lines,
            pc.fill_null(pc.invert(pc.less(bstart, bend)), False),
            "BillingPeriodEnd",
            "must be after BillingPeriodStart",
        )
        account, currency = cols["BillingAccountId"], cols["BillingCurrency"]
        if self.scope is None:
            complete = pc.and_(
                pc.and_(pc.is_valid(bstart), pc.is_valid(bend)),
                pc.and_(pc.is_valid(account), pc.is_valid(currency)),
            )
            found = pc.indices_nonzero(complete)
            if not len(found):
                return
            i = found[0].as_py()
            self.scope = Scope(
                account=account[i].as_py(),
                period_start=bstart[i].as_py(),
                period_end=bend[i].as_py(),
                currency=currency[i].as_py(),
                first_line=lines[i].as_py(),
            )
        scope = self.scope
        where = f"line {scope.first_line}'s"
        self._fail_mask(
            lines,
            pc.fill_null(
                pc.or_(
                    pc.not_equal(bstart, pa.scalar(scope.period_start, TIME_TYPE)),
                    pc.not_equal(bend, pa.scalar(scope.period_end, TIME_TYPE)),
                ),
                False,
            ),
            "BillingPeriodStart",
            f"billing period differs from {where} "
            f"({scope.period_start.isoformat()} - {scope.period_end.isoformat()}); "
            "one file holds one billing period",
        )
        self._fail_mask(
            lines,
            pc.fill_null(pc.not_equal(account, scope.account), False),
            "BillingAccountId",
            f"billing account differs from {where} ({scope.account!r}); "
            "one file holds one billing account",
        )
        self._fail_mask(
            lines,
            pc.fill_null(pc.not_equal(currency, scope.currency), False),
            "BillingCurrency",
            f"differs from {where} ({scope.currency}); a billing account bills in one currency",
        )


_CURRENCIES = pa.array(sorted(CURRENCY_CODES), pa.string())
_CATEGORIES = pa.array(sorted(CHARGE_CATEGORIES), pa.string())


def _short(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _tags_problem(text: str | None) -> str | None:
    if text is None:
        return None
    try:
        value = json.loads(text)
    except ValueError:
        return f"{_short(text)!r} is not JSON"
    if not isinstance(value, dict):
        return "must be a JSON object"
    return None


def _float_to_decimal(col: pa.Array) -> pa.Array:
    # Through the shortest decimal text of each float, so 0.1 stays 0.1.
    values = [None if v is None else Decimal(repr(v)) for v in col.to_pylist()]
    return pa.array(values, COST_TYPE)


def _column(batch: pa.RecordBatch, name: str) -> pa.Array:
    index = batch.schema.get_field_index(name)
    col = batch.column(index)
    if name in COST_COLUMNS or name in DATETIME_COLUMNS:
        return col
    if name == "Tags" and not pa.types.is_string(col.type):
        return pa.array(
            [None if v is None else json.dumps(_as_mapping(v)) for v in col.to_pylist()],
            pa.string(),
        )
    return col if pa.types.is_string(col.type) else pc.cast(col, pa.string())


def _as_mapping(value: Any) -> Any:
    # Parquet maps come back as a list of (key, value) pairs.
    if isinstance(value, list) and all(isinstance(p, tuple) and len(p) == 2 for p in value):
        return dict(value)
    return value


def detect_format(path: Path) -> Format:
    """Parquet files start with the magic ``PAR1``; anything else is read as CSV."""
    with path.open("rb") as fh:
        return "parquet" if fh.read(4) == b"PAR1" else "csv"


def _rename(names: list[str]) -> list[str]:
    present = set(names)
    return [ALIASES[n] if n in ALIASES and ALIASES[n] not in present else n for n in names]


def _check_columns(names: list[str]) -> None:
    present = set(names)
    missing = [c for c in REQUIRED_COLUMNS if c not in present]
    if missing:
        raise MissingColumns(missing)


def read_batches(path: Path, fmt: Format) -> Iterator[pa.RecordBatch]:
    """The file's rows in Arrow batches, columns renamed to FOCUS 1.0 names.

    Raises ``MissingColumns`` (before any row is read) or ``UnreadableFile``.
    """
    if fmt == "parquet":
        yield from _parquet(path)
    else:
        yield from _csv(path)


def _csv(path: Path) -> Iterator[pa.RecordBatch]:
    with path.open(newline="", encoding="utf-8-sig") as fh:
        try:
            header = next(csv.reader(fh), None)
        except (csv.Error, UnicodeDecodeError) as exc:
            raise UnreadableFile(f"not a CSV file: {exc}") from exc
    if not header:
        raise UnreadableFile("the file is empty (no CSV header)")
    names = _rename([h.strip() for h in header])
    _check_columns(names)
    try:
        reader = pacsv.open_csv(
            path,
            read_options=pacsv.ReadOptions(
                column_names=names,
                skip_rows=1,
                block_size=8 << 20,
                encoding="utf8",
                use_threads=False,
            ),
            parse_options=pacsv.ParseOptions(newlines_in_values=True),
            convert_options=pacsv.ConvertOptions(
                include_columns=[n for n in names if n in KEPT],
                column_types={n: pa.string() for n in names},
                strings_can_be_null=True,
                null_values=[""],
            ),
        )
        for batch in reader:
            for offset in range(0, batch.num_rows, BATCH_ROWS):
                yield batch.slice(offset, BATCH_ROWS)
    except pa.ArrowInvalid as exc:
        raise UnreadableFile(f"CSV could not be read: {exc}") from exc


def _parquet(path: Path) -> Iterator[pa.RecordBatch]:
    try:
        parquet = pq.ParquetFile(path)
    except (pa.ArrowInvalid, OSError) as exc:
        raise UnreadableFile(f"not a Parquet file: {exc}") from exc
    physical = list(parquet.schema_arrow.names)
    names = _rename(physical)
    _check_columns(names)
    wanted = [p for p, n in zip(physical, names, strict=True) if n in KEPT]
    try:
        for batch in parquet.iter_batches(batch_size=BATCH_ROWS, columns=wanted):
            yield batch.rename_columns([names[physical.index(c)] for c in batch.schema.names])
    except pa.ArrowInvalid as exc:
        raise UnreadableFile(f"Parquet could not be read: {exc}") from exc


def _parsed(
    col: pa.Array,
    lines: pa.Array,
    to: pa.DataType,
    one: Callable[[str | None, int], object],
) -> pa.Array:
    """``col`` as ``to``: one vectorised cast when every value parses, else value by value
    with ``one`` (which records each bad line and answers None for it)."""
    text = col if pa.types.is_string(col.type) else pc.cast(col, pa.string())
    try:
        return pc.cast(text, to)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        pass
    values = [one(raw, line) for line, raw in zip(lines.to_pylist(), text.to_pylist(), strict=True)]
    return pa.array(values, to)
