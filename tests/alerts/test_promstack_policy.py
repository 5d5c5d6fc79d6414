"""The harness's policy for missing binaries: fail in CI, skip on a laptop, say why."""

from __future__ import annotations

import pytest

from tests.promstack import Route, Webhook, alertmanager_config, binary


def test_a_missing_binary_fails_in_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match=r"apt-get install some-package.*CI must"):
        binary("no-such-binary-here", "some-package")


def test_a_missing_binary_skips_on_a_laptop(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="apt-get install some-package"):
        binary("no-such-binary-here", "some-package")


def test_the_webhook_sends_alertmanagers_own_bearer_authorization() -> None:
    config = alertmanager_config(Webhook(url="http://127.0.0.1:1/hook", bearer="t0ken"), Route())
    [hook] = config["receivers"][0]["webhook_configs"]
    assert hook["http_config"] == {"authorization": {"type": "Bearer", "credentials": "t0ken"}}
    assert config["route"]["group_interval"] == "1s"
