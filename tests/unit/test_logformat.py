"""``log-format`` compiled and rendered as HAProxy 2.6 does (logformat.py), sans-IO.

The golden values are what the real haproxy 2.6.12 wrote for the same format (run once by hand, and
compared line for line on live traffic in tests/integration/test_log_format.py)."""

from __future__ import annotations

import calendar

import pytest

from fastproxy import logformat
from fastproxy.acl import ConnInfo
from fastproxy.logformat import Alias, LogFormatError, LogRecord

ACCEPTED = calendar.timegm((2026, 12, 2, 0, 29, 38, 0, 0, 0)) + 0.190


RECORD = LogRecord(
    client=("127.0.0.1", 39748), frontend_address=("127.0.0.1", 18001), backend_address=("127.0.0.1", 50378),
    server_address=("127.0.0.1", 18002), accepted=ACCEPTED, frontend="fe", backend="be", server="s1",
    bytes_out=6, bytes_in=5, queue_ms=0, connect_ms=0, total_ms=0, termination="--", active=1,
    frontend_current=1, pid=15379, hostname="vm", connection=ConnInfo("127.0.0.1", 39748, "127.0.0.1", 18001))


def test_every_variable_haproxy_wrote_for_a_tcp_session(utc):
    fmt = logformat.compile(
        "%ci|%cp|%fi|%fp|%bi|%bp|%si|%sp|%t|%T|%Tl|%Ts|%{+X}Ts|%ms|%{+X}ms|%ft|%f|%b|%s|%B|%U|%Tc|%Tt|"
        "%Th|%Td|%Tu|%ts|%tsc|%ac|%fc|%bc|%sc|%rc|%sq|%bq|%ID|%pid|%H|%rt|%lc|%ST|%{+Q}b|%{+Q}ft|%[src]|"
        "%[dst_port]|%{+X}ci|%{+X}cp|%hr|%sslv|%{+Q}sslv|%%|%{+Q}o%b %{-Q}s")
    assert fmt.render(RECORD) == (
        "127.0.0.1|39748|127.0.0.1|18001|127.0.0.1|50378|127.0.0.1|18002|02/Dec/2026:00:29:38.190|"
        "02/Dec/2026:00:29:38 +0000|02/Dec/2026:00:29:38 +0000|1796171378|6B0F6672|190|BE|fe|fe|be|s1|6|5|"
        "0|0|0|0|0|--|----|1|1|0|0|0|0|0|-|15379|vm|0|0|0|\"be\"|\"fe\"|127.0.0.1|18001|7F000001|9B44||-|"
        "\"\"|%|\"be\" s1")


def test_a_session_that_reached_no_server(utc):
    record = LogRecord(client=("127.0.0.1", 39760), accepted=ACCEPTED, frontend="fe", backend="fe",
                       server=None, connect_ms=-1, total_ms=300, termination="SC", retries=3)
    fmt = logformat.compile("%bi|%bp|%si|%sp|%{+Q}si|%s|%Tc|%Tt|%Td|%Tu|%ts|%rc")
    assert fmt.render(record) == '-|-|-|-|""|<NOSRV>|-1|300|-1|300|SC|3'


def test_escaping_quotes_names_and_never_states():
    record = LogRecord(frontend='f"e', backend="b]e", server="s\\1", termination="CD")
    assert logformat.compile("%{+E}f %{+E,+Q}b %{+E}s %{+Q}ts").render(record) == 'f\\"e "b\\]e" s\\\\1 CD'
    assert logformat.compile("%{+Q}ft").render(LogRecord(frontend='f"e', ssl=True)) == '"f"e~"'


def test_the_tcplog_format_is_the_predefined_one(utc):
    assert logformat.TCP_LOG.render(RECORD) == \
        "127.0.0.1:39748 [02/Dec/2026:00:29:38.190] fe be/s1 0/0/0 6 -- 1/1/0/0/0 0/0"


@pytest.mark.parametrize("text, message", [
    ("%r", "format variable 'r' is reserved for HTTP mode"),
    ("%Ta/%Tq", "format variable 'Ta' is reserved for HTTP mode"),
    ("%zz", "no such format variable 'zz'. If you wanted to emit the '%' character verbatim, you need to "
            "use '%%'"),
    ("50% %ci", "unexpected variable name near ' ' at position 3 line : '50% %ci'. Maybe you want to write a "
                "single '%', use the syntax '%%'"),
    ("%1", "unexpected variable name near '1' at position 1 line : '%1'. Maybe you want to write a single "
           "'%', use the syntax '%%'"),
    ("%", "truncated line after '%'"),
    ("%{+Q", "truncated line after '+Q'"),
    ("%{+Q} x", "parse argument modifier without variable name near '%{+Q}'"),
    ("%[src", "missing ']' after 'src'"),
])
def test_formats_haproxy_refuses(text, message):
    with pytest.raises(LogFormatError) as info:
        logformat.compile(text)
    assert str(info.value) == message


def test_http_variables_are_allowed_in_a_mode_http_proxy_and_write_nothing():
    fmt = logformat.compile("%ci %r %ST", http=True)
    assert fmt.render(LogRecord(client=("10.0.0.1", 1))) == "10.0.0.1  0"


def test_a_sample_fastproxy_lacks_is_logged_as_a_dash_with_a_warning():
    fmt = logformat.compile("%[ssl_fc_npn] %{+Q}[ssl_fc_npn] %[dst_port]")
    assert len(fmt.warnings) == 2 and "ssl_fc_npn" in fmt.warnings[0]
    assert fmt.render(LogRecord(connection=ConnInfo("10.0.0.1", 5, "10.0.0.2", 80))) == '- "" 80'


def test_numbers_in_hexadecimal():
    record = LogRecord(client=("::1", 80), pid=255, counter=10, log_count=11)
    assert logformat.compile("%{+X}ci %{+X}cp %{+X}pid %{+X}rt %{+X}lc %{+X}B").render(record) == \
        "00000000000000000000000000000001 0050 00FF 000A 000B 0"


def test_a_lane_runs_what_varies_and_gets_the_rest_as_text():
    fmt = logformat.compile("%f %b/%s %pid %H %ST %Tw %rc %{+Q}ID %ci")
    program = logformat.lane_program(fmt, LogRecord(frontend="fe", backend="be", pid=7, hostname="h"))
    assert program is not None
    ops = []
    at = 0
    while at < len(program):
        op, _options, length = logformat._NODE.unpack_from(program, at)
        at += logformat._NODE.size
        ops.append((Alias(op), program[at:at + length].decode()))
        at += length
    assert ops == [(Alias.TEXT, "fe be/"), (Alias.SERVER, ""), (Alias.TEXT, ' 7 h 0 0 0 "" '),
                   (Alias.CLIENT_IP, "")]


@pytest.mark.parametrize("text", ["%[src]", "%rt", "%lc"])
def test_what_needs_python_per_connection_has_no_lane_program(text):
    assert logformat.lane_program(logformat.compile(text), LogRecord()) is None
