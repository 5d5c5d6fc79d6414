"""``TENANTOPS_CONFIG_FILE``: settings from a TOML file, the environment overriding it."""

from __future__ import annotations

from pathlib import Path

import pytest

from tenantops.config import MAX_WORKER_CONCURRENCY, Settings
from tests.conftest import invoke

CONFIG = """
port = 9090

[events]
broker = "nats"
nats_url = "nats://10.0.0.5:4222"

[access]
adapter = "redis"

[access.redis]
url = "redis://ops:file-hunter2@10.0.0.6:6379/0"
"""


def test_the_file_sets_nested_settings_and_the_environment_wins(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "tenantops.toml"
    config.write_text(CONFIG)
    monkeypatch.setenv("TENANTOPS_CONFIG_FILE", str(config))
    monkeypatch.setenv("TENANTOPS_PORT", "9999")
    monkeypatch.delenv("TENANTOPS_EVENTS__BROKER", raising=False)
    settings = Settings()
    assert settings.port == 9999  # the environment overrides the file
    assert settings.events.broker == "nats"
    assert settings.events.nats_url == "nats://10.0.0.5:4222"
    assert settings.events.poll_seconds == 0.5  # a default the file did not touch
    assert settings.access.adapter == "redis"
    assert settings.access.redis.url.get_secret_value().endswith("@10.0.0.6:6379/0")
    assert "file-hunter2" not in repr(settings)


@pytest.mark.parametrize(
    ("content", "says"),
    [
        (None, "no such file"),
        ("port = \n", "is not valid TOML"),
        ('port = "eighty"\n', "port"),
    ],
)
def test_a_bad_config_file_is_one_line_and_a_non_zero_exit(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    content: str | None,
    says: str,
) -> None:
    config = tmp_path / "tenantops.toml"
    if content is not None:
        config.write_text(content)
    monkeypatch.setenv("TENANTOPS_CONFIG_FILE", str(config))
    result = invoke(capsys, "doctor")
    assert result.code != 0
    assert says in result.err
    assert len(result.err.strip().splitlines()) == 1


def test_worker_concurrency_is_bounded_by_the_same_figure_as_the_cli(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("TENANTOPS_WORKER__CONCURRENCY", str(MAX_WORKER_CONCURRENCY))
    assert Settings().worker.concurrency == MAX_WORKER_CONCURRENCY
    monkeypatch.setenv("TENANTOPS_WORKER__CONCURRENCY", str(MAX_WORKER_CONCURRENCY + 1))
    result = invoke(capsys, "doctor")
    assert result.code != 0
    assert "concurrency" in result.err
    assert len(result.err.strip().splitlines()) == 1


@pytest.mark.parametrize(
    ("host", "url"),
    [
        ("127.0.0.1", "http://127.0.0.1:8090"),
        ("0.0.0.0", "http://127.0.0.1:8090"),  # noqa: S104 - a bind address, not bound here
        ("::", "http://127.0.0.1:8090"),
        ("ops.internal", "http://ops.internal:8090"),
        ("::1", "http://[::1]:8090"),
    ],
)
def test_message_links_follow_the_servers_host_and_port(
    monkeypatch: pytest.MonkeyPatch, host: str, url: str
) -> None:
    """Unset, the links in messages open where ``serve`` listens, not on a fixed 8080."""
    monkeypatch.delenv("TENANTOPS_CONFIG_FILE", raising=False)
    monkeypatch.delenv("TENANTOPS_NOTIFY__DASHBOARD_URL", raising=False)
    monkeypatch.setenv("TENANTOPS_HOST", host)
    monkeypatch.setenv("TENANTOPS_PORT", "8090")
    assert Settings().notify.dashboard_url == url


def test_an_explicit_dashboard_url_wins_over_the_port(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("TENANTOPS_CONFIG_FILE", raising=False)
    monkeypatch.setenv("TENANTOPS_PORT", "8090")
    monkeypatch.setenv("TENANTOPS_NOTIFY__DASHBOARD_URL", "https://ops.example.com")
    assert Settings().notify.dashboard_url == "https://ops.example.com"
    # From the TOML file as well; the port from the environment changes nothing.
    monkeypatch.delenv("TENANTOPS_NOTIFY__DASHBOARD_URL")
    config = tmp_path / "tenantops.toml"
    config.write_text('[notify]\ndashboard_url = "https://file.example.com"\n')
    monkeypatch.setenv("TENANTOPS_CONFIG_FILE", str(config))
    assert Settings().notify.dashboard_url == "https://file.example.com"


def test_serve_flags_given_to_the_constructor_move_the_links_too(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # `tenantops serve --port` builds its settings this way: the links follow the flag.
    monkeypatch.setenv("TENANTOPS_PORT", "9999")
    monkeypatch.delenv("TENANTOPS_NOTIFY__DASHBOARD_URL", raising=False)
    settings = Settings.model_validate({"port": 8095, "host": "0.0.0.0"})  # noqa: S104
    assert (settings.port, settings.notify.dashboard_url) == (8095, "http://127.0.0.1:8095")


def test_a_bad_setting_names_its_variable_and_never_echoes_the_value(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("TENANTOPS_PORT", "eighty-hunter2")
    monkeypatch.setenv("TENANTOPS_EVENTS__BROKER", "carrier-pigeon")
    result = invoke(capsys, "doctor")
    assert result.code == 1
    assert result.err.strip() == (
        "error: setting port (TENANTOPS_PORT): Input should be a valid integer, unable to parse"
        " string as an integer; setting events.broker (TENANTOPS_EVENTS__BROKER): Input should be"
        " 'none', 'nats' or 'kafka'"
    )
    assert "hunter2" not in result.err + result.out
