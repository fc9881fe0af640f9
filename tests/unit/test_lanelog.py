"""The lanes' C log writer holds to logformat.py byte for byte: the same format and values give the
same line.

``_pump.log_line`` runs the very C formatter the lanes run (dataplane/lanelog.pxi) over a program
``logformat.lane_program`` compiled; ``connect_line`` and ``termination_states`` the other C code and
table the lanes write their lines with.  logformat.py and tcplog.py are the one Python source."""

from __future__ import annotations

import calendar
import importlib
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fastproxy import _linux, logformat, tcplog
from fastproxy._impl import NO_EXTENSIONS
from fastproxy.pump import EndReason

pytestmark = pytest.mark.skipif(NO_EXTENSIONS, reason="the C log writer is part of the compiled pump")
SECOND_2026 = calendar.timegm((2026, 1, 1, 0, 0, 0, 0, 0, 0))
# Every variable a lane program may carry, each with and without the options that change it.
LANE_VARIABLES = ["ci", "cp", "fi", "fp", "bi", "bp", "si", "sp", "t", "T", "Tl", "Ts", "ms", "s", "B", "U",
                  "Tc", "Tt", "Td", "Tu", "ts", "tsc", "ac", "fc", "bc", "sc", "f", "ft", "b", "Tw", "Th",
                  "rc", "sq", "bq", "pid", "H", "ST", "hr", "sslv", "ID"]


@pytest.fixture(scope="module")
def c_pump():
    return importlib.import_module("fastproxy._pump")  # fails, not skips, when the build is broken


def c_line(c_pump, fmt: logformat.Format, record: logformat.LogRecord) -> str:
    """The line the lane writes for ``record``: its constants folded into the program, the rest given
    as the pump has them (raw sockaddrs, milliseconds)."""
    constants = logformat.LogRecord(frontend=record.frontend, backend=record.backend, pid=record.pid,
                                    hostname=record.hostname)
    program = logformat.lane_program(fmt, constants)
    assert program is not None
    raw = {name: _linux.sockaddr(address) if address else None for name, address in (
        ("client", record.client), ("frontend", record.frontend_address), ("backend", record.backend_address),
        ("server", record.server_address))}
    return c_pump.log_line(program, dict(
        raw, accepted=record.accepted, connect_ms=record.connect_ms, total_ms=record.total_ms,
        bytes_in=record.bytes_in, bytes_out=record.bytes_out, termination=record.termination,
        server_name=record.server, active=record.active, frontend_current=record.frontend_current,
        backend_current=record.backend_current, server_current=record.server_current))


def test_the_c_termination_table_is_tcplogs(c_pump):
    states = c_pump.termination_states()
    assert len(states) == len(EndReason)
    for reason in EndReason:
        expected = tcplog.CONNECT_FAILED if reason is EndReason.CONNECT_FAILED else tcplog.TERMINATION[reason]
        assert states[reason] == expected, reason


addresses = st.one_of(st.none(), st.tuples(st.sampled_from(["127.0.0.1", "10.1.2.3", "::1", "2001:db8::7"]),
                                           st.integers(0, 65535)))
options = st.sampled_from(["", "{+Q}", "{+X}", "{+E}", "{+Q,+X}", "{+Q,+E}"])
variables = st.tuples(options, st.sampled_from(LANE_VARIABLES)).map(lambda t: f"%{t[0]}{t[1]}")
formats = st.lists(st.one_of(variables,
                             st.sampled_from([" ", "/", "|", "[", "]", "%%", " x y", '"'])),
                   min_size=1, max_size=12).map("".join)


@settings(max_examples=200, deadline=None)
@given(text=formats, client=addresses, frontend=addresses, backend=addresses, server=addresses,
       ms=st.integers(0, 366 * 86400 * 1000), total=st.integers(0, 10**10), connect=st.integers(-1, 10**6),
       sizes=st.tuples(st.integers(0, 2**63 - 1), st.integers(0, 2**63 - 1)),
       reason=st.sampled_from(sorted(tcplog.TERMINATION)), server_name=st.sampled_from([None, "s1", 'a"b]c']),
       counts=st.tuples(*(st.integers(0, 10**6) for _ in range(4))))
def test_the_c_formatter_writes_what_logformat_renders(c_pump, text, client, frontend, backend, server, ms,
                                                        total, connect, sizes, reason, server_name, counts):
    fmt = logformat.compile(text)
    record = logformat.LogRecord(
        client=client, frontend_address=frontend, backend_address=backend, server_address=server,
        accepted=SECOND_2026 + ms / 1000, frontend="fe", backend="be", server=server_name, bytes_in=sizes[0],
        bytes_out=sizes[1], connect_ms=connect, total_ms=total, termination=tcplog.TERMINATION[reason],
        active=counts[0], frontend_current=counts[1], backend_current=counts[2], server_current=counts[3],
        pid=4242, hostname="node-1")
    assert c_line(c_pump, fmt, record) == fmt.render(record)


def test_the_c_tcplog_line_is_tcplogs(c_pump):
    record = logformat.LogRecord(client=("10.0.0.1", 1234), accepted=SECOND_2026 + 0.25, frontend="fe",
                                 backend="be", server="s1", connect_ms=3, total_ms=1503, bytes_out=4096,
                                 active=3, frontend_current=2, backend_current=1, server_current=1)
    assert c_line(c_pump, logformat.TCP_LOG, record) == tcplog.tcplog_line(record)


def test_the_c_connect_line_is_tcplogs(c_pump):
    for host, local in (("10.0.0.1", "127.0.0.1"), ("::1", "::1")):
        assert c_pump.connect_line(host, 1234, local, 8080, "fe") == \
            tcplog.connect_line(f"{host}:1234", (local, 8080), "fe")


def test_both_stamp_local_time(c_pump, monkeypatch):
    monkeypatch.setenv("TZ", "Asia/Kolkata")  # +05:30: a zone whose offset is not whole hours
    time.tzset()
    try:
        # A second outside the property test's range: logs.second_stamp caches the last second it made.
        record = logformat.LogRecord(client=("127.0.0.1", 1), accepted=SECOND_2026 - 86400 + 0.5,
                                     frontend="fe", backend="be", server="s1", connect_ms=0)
        fmt = logformat.compile("[%t] %Tl %T")
        line = c_line(c_pump, fmt, record)
        assert line == "[31/Dec/2025:05:30:00.500] 31/Dec/2025:05:30:00 +0530 31/Dec/2025:00:00:00 +0000"
        assert line == fmt.render(record)
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()


def test_a_line_longer_than_the_buffer_is_cut_not_overrun(c_pump):
    fmt = logformat.compile("x" * 3000 + "%ci")
    line = c_line(c_pump, fmt, logformat.LogRecord(client=("127.0.0.1", 1)))
    assert line == "x" * 1023
