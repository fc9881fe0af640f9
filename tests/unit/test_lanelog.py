"""The lanes' C log writer holds to tcplog.py byte for byte: the same inputs give the same lines.

``_pump.tcplog_line``, ``connect_line`` and ``termination_states`` run the very C formatters and table
the lanes write their lines with (dataplane/lanelog.pxi); tcplog.py is the one Python source."""

from __future__ import annotations

import calendar
import importlib
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fastproxy import tcplog
from fastproxy._impl import NO_EXTENSIONS
from fastproxy.pump import EndReason

pytestmark = pytest.mark.skipif(NO_EXTENSIONS, reason="the C log writer is part of the compiled pump")
SECOND_2026 = calendar.timegm((2026, 1, 1, 0, 0, 0, 0, 0, 0))


@pytest.fixture(scope="module")
def c_pump():
    return importlib.import_module("fastproxy._pump")  # fails, not skips, when the build is broken


def test_the_c_termination_table_is_tcplogs(c_pump):
    states = c_pump.termination_states()
    assert len(states) == len(EndReason)
    for reason in EndReason:
        expected = tcplog.CONNECT_FAILED if reason is EndReason.CONNECT_FAILED else tcplog.TERMINATION[reason]
        assert states[reason] == expected, reason


@settings(max_examples=300, deadline=None)
@given(host=st.sampled_from(["127.0.0.1", "10.1.2.3", "::1", "2001:db8::7"]), port=st.integers(0, 65535),
       ms=st.integers(0, 366 * 86400 * 1000), duration=st.integers(0, 10**10), connect=st.integers(0, 10**6),
       bytes_out=st.integers(0, 2**63 - 1), reason=st.sampled_from(sorted(tcplog.TERMINATION)),
       counts=st.tuples(*(st.integers(0, 10**6) for _ in range(4))))
def test_the_c_tcplog_line_is_tcplogs(c_pump, host, port, ms, duration, connect, bytes_out, reason, counts):
    accepted = SECOND_2026 + ms / 1000
    active, frontend_current, backend_current, server_current = counts
    termination = tcplog.TERMINATION[reason]
    python = tcplog.tcplog_line(
        client=f"{host}:{port}", accepted=accepted, duration_ms=duration, frontend="fe", backend="be",
        server="s1", connect_ms=connect, bytes_out=bytes_out, termination=termination, active=active,
        frontend_current=frontend_current, backend_current=backend_current, server_current=server_current,
        retries=0)
    c = c_pump.tcplog_line(host, port, accepted, "fe", "be/s1", connect, duration, bytes_out, termination,
                           active, frontend_current, backend_current, server_current)
    assert c == python


def test_the_c_connect_line_is_tcplogs(c_pump):
    for host, local in (("10.0.0.1", "127.0.0.1"), ("::1", "::1")):
        assert c_pump.connect_line(host, 1234, local, 8080, "fe") == \
            tcplog.connect_line(f"{host}:1234", (local, 8080), "fe")


def test_both_stamp_local_time(c_pump, monkeypatch):
    monkeypatch.setenv("TZ", "Asia/Kolkata")  # +05:30: a zone whose offset is not whole hours
    time.tzset()
    try:
        # A second outside the property test's range: logs.second_stamp caches the last second it made.
        accepted = SECOND_2026 - 86400 + 0.5
        line = c_pump.tcplog_line("127.0.0.1", 1, accepted, "fe", "be/s1", 0, 0, 0, "--", 0, 0, 0, 0)
        assert "[31/Dec/2025:05:30:00.500]" in line
        assert line == tcplog.tcplog_line(
            client="127.0.0.1:1", accepted=accepted, duration_ms=0, frontend="fe", backend="be", server="s1",
            connect_ms=0, bytes_out=0, termination="--", active=0, frontend_current=0, backend_current=0,
            server_current=0, retries=0)
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()
