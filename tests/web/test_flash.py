"""The flash cookie: never longer than the next page will read, cut where a character ends."""

from __future__ import annotations

from urllib.parse import unquote

import pytest

from tenantops.web import flash


@pytest.mark.parametrize(
    "text",
    ["ok " * 100, "x" * 2000, "ушёл из команды " * 40, "漢字" * 500, "😀" * 300],
    ids=["short", "latin", "cyrillic", "cjk", "emoji"],
)
def test_the_cookie_always_fits_what_read_accepts(text: str) -> None:
    value = flash.encoded("error", text)

    assert len(value) <= flash.MAX_COOKIE  # read() would drop anything longer
    level, _, shown = unquote(value, errors="strict").partition(":")
    assert level == "error"
    if len(text) <= flash.MAX_TEXT and shown == text:
        return  # it fitted whole
    assert shown.endswith(flash.ELLIPSIS)
    assert text.startswith(shown.removesuffix(flash.ELLIPSIS))
    assert len(shown) > 100  # cut at the limit, not emptied


def test_a_short_message_is_kept_whole() -> None:
    assert unquote(flash.encoded("ok", "Done: 5 approved.")) == "ok:Done: 5 approved."
