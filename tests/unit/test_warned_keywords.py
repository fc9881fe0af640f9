"""The list of HAProxy 2.6 keywords fastproxy only warns about (``fastproxy.config.haproxy.warned``)
is what the reader does, and ``docs/WARNED_KEYWORDS.md`` is that list."""

from __future__ import annotations

from pathlib import Path

from fastproxy.config.haproxy import warned

DOCUMENT = Path(__file__).resolve().parents[2] / "docs" / "WARNED_KEYWORDS.md"


def test_the_list_holds_what_the_reader_warns_about_and_nothing_it_acts_on():
    found = warned.warned_keywords()
    assert "timeout http-request" in found["timeout"]
    assert "tune.ssl.lifetime" in found["global"]
    assert "maxconn" not in found["global"] and "option tcplog" not in found["option"]  # acted on
    assert "tcp-request content set-var" not in found["tcp-request"]  # implemented
    assert all(warned.reason(group, keyword) for group, keywords in found.items() for keyword in keywords), \
        "each warned keyword says why ignoring it is safe (or that it is a gap)"


def test_the_document_is_the_list():
    expected = warned.markdown(warned.warned_keywords())
    assert DOCUMENT.read_text() == expected, (
        "docs/WARNED_KEYWORDS.md is stale: python -m fastproxy.config.haproxy.warned --markdown "
        "> docs/WARNED_KEYWORDS.md")
