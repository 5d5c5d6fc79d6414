"""FOCUS validation and allocation, without a database."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pytest

from tenantops.finops.allocation import Allocator, tag_value
from tenantops.finops.focus import (
    FIRST_LINE,
    REQUIRED_COLUMNS,
    MissingColumns,
    Validator,
    read_batches,
)
from tenantops.finops.settings import AllocationRule, FinOpsSettings
from tests.finops.focusdata import line, tagged, write_csv


def _check(tmp_path: Path, rows: list[dict[str, str]]) -> Validator:
    validator = Validator(max_errors=10)
    first = FIRST_LINE
    for batch in read_batches(write_csv(tmp_path / "f.csv", rows), "csv"):
        validator.check(batch, first)
        first += batch.num_rows
    return validator


def test_a_file_missing_columns_names_them_all_at_once(tmp_path: Path) -> None:
    columns = [c for c in REQUIRED_COLUMNS if c not in ("BilledCost", "Tags", "ServiceName")]
    path = write_csv(tmp_path / "f.csv", [line()], columns=columns)
    with pytest.raises(MissingColumns) as caught:
        list(read_batches(path, "csv"))
    assert caught.value.missing == ["BilledCost", "ServiceName", "Tags"]


def test_service_provider_name_stands_for_provider_name(tmp_path: Path) -> None:
    columns = [c if c != "ProviderName" else "ServiceProviderName" for c in REQUIRED_COLUMNS]
    row = {**line(), "ServiceProviderName": "Cloud Inc"}
    validator = _check_columns(tmp_path, [row], columns)
    assert validator.error_count == 0


def _check_columns(tmp_path: Path, rows: list[dict[str, str]], columns: list[str]) -> Validator:
    validator = Validator()
    for batch in read_batches(write_csv(tmp_path / "f.csv", rows, columns=columns), "csv"):
        validator.check(batch, FIRST_LINE)
    return validator


def test_bad_values_are_reported_by_line_and_column(tmp_path: Path) -> None:
    validator = _check(
        tmp_path,
        [
            line(),
            line(BilledCost="12,5"),
            line(ChargePeriodStart="yesterday"),
            line(ChargePeriodStart="2030-01-03T00:00:00Z", ChargePeriodEnd="2030-01-02T00:00:00Z"),
            line(BillingCurrency="EURO"),
            line(Tags="[1, 2]"),
            line(ServiceName=""),
            line(BillingPeriodStart="2029-12-01T00:00:00Z"),
            line(ChargePeriodEnd="2030-01-02T00:00:00"),
        ],
    )
    found = {(e.line, e.column) for e in validator.errors}
    assert found == {
        (3, "BilledCost"),
        (4, "ChargePeriodStart"),
        (5, "ChargePeriodEnd"),
        (6, "BillingCurrency"),
        (7, "Tags"),
        (8, "ServiceName"),
        (9, "BillingPeriodStart"),
        (10, "ChargePeriodEnd"),
    }
    assert [e.line for e in validator.errors] == sorted(e.line for e in validator.errors)
    messages = {(e.line): e.message for e in validator.errors}
    assert "not a decimal" in messages[3]
    assert "one billing period" in messages[9]
    assert "time zone" in messages[10]


def test_only_the_first_errors_are_listed_but_all_are_counted(tmp_path: Path) -> None:
    validator = _check(tmp_path, [line(BilledCost="x")] * 25)
    assert validator.error_count == 25
    assert [e.line for e in validator.errors] == list(range(2, 12))


def test_decimals_keep_their_digits(tmp_path: Path) -> None:
    validator = Validator()
    path = write_csv(tmp_path / "f.csv", [line(BilledCost="0.000000000001", ListCost="1e3")])
    checked = validator.check(next(read_batches(path, "csv")), FIRST_LINE)
    assert checked is not None
    assert str(checked.columns["BilledCost"][0].as_py()) == "1E-12"
    assert checked.columns["ListCost"][0].as_py() == 1000


def test_tag_value_reads_one_key_of_the_tags_object() -> None:
    assert tag_value('{"tenant": "blue", "env": "prod"}', "tenant") == "blue"
    assert tag_value('{"env": "prod"}', "tenant") is None
    assert tag_value('{"tenant": 42}', "tenant") == "42"
    assert tag_value(None, "tenant") is None


def test_first_matching_rule_wins_and_the_rest_stay_unallocated() -> None:
    known = {"blue": "id-blue", "green": "id-green", "id-red": "id-red"}
    rules = [
        AllocationRule(kind="tag", key="tenant"),
        AllocationRule(kind="resource", pattern=r"/namespaces/(?P<tenant>[a-z0-9-]+)"),
    ]
    allocator = Allocator(rules, lambda refs: {r: known[r] for r in refs if r in known})
    tags = pa.array(
        [
            json.dumps({"tenant": "blue"}),
            json.dumps({"tenant": "blue"}),
            "{}",
            json.dumps({"tenant": "ghost"}),
            None,
            json.dumps({"tenant": "id-red"}),
        ]
    )
    resources = pa.array(
        ["/namespaces/green/x", None, "/namespaces/green/y", "/namespaces/green/z", "/vm/1", None]
    )
    result = allocator.allocate(tags, resources)
    assert result.tenant_ids.to_pylist() == [
        "id-blue",
        "id-blue",
        "id-green",
        "id-green",
        None,
        "id-red",
    ]
    assert result.by_rule == {"tag:tenant": 3, "resource:/namespaces/(?P<tenant>[a-z0-9-]+)": 2}
    assert allocator.unknown["ghost"] == 1


def test_rules_are_validated_when_settings_load() -> None:
    with pytest.raises(ValueError, match="named group"):
        AllocationRule(kind="resource", pattern=r"/namespaces/([a-z]+)")
    with pytest.raises(ValueError, match="key"):
        AllocationRule(kind="tag")
    settings = FinOpsSettings.model_validate(
        {"allocation": [{"kind": "resource", "pattern": "ns/(?P<tenant>.+)", "name": "ns"}]}
    )
    assert settings.allocation[0].label == "ns"


def test_rules_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    from tenantops.config import Settings

    monkeypatch.setenv(
        "TENANTOPS_FINOPS__ALLOCATION",
        json.dumps([{"kind": "tag", "key": "team"}, {"kind": "tag", "key": "tenant"}]),
    )
    monkeypatch.setenv("TENANTOPS_FINOPS__COST_COLUMN", "BilledCost")
    finops = Settings().finops
    assert [r.key for r in finops.allocation] == ["team", "tenant"]
    assert finops.cost_column == "BilledCost"


def test_tagged_builder_is_valid(tmp_path: Path) -> None:
    assert _check(tmp_path, [tagged("blue"), line()]).error_count == 0


def test_rules_come_from_the_toml_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tenantops.config import Settings

    config = tmp_path / "tenantops.toml"
    config.write_text(
        """
[finops]
cost_column = "BilledCost"
default_thresholds = [100, 50]

[[finops.allocation]]
kind = "resource"
pattern = '^/subscriptions/[^/]+/resourceGroups/rg-(?P<tenant>[a-z0-9-]+)/'
name = "resource-group"
"""
    )
    monkeypatch.setenv("TENANTOPS_CONFIG_FILE", str(config))
    finops = Settings().finops
    assert [r.label for r in finops.allocation] == ["resource-group"]
    assert finops.default_thresholds == [50, 100]
