"""HAProxy's log lines, sans-IO (``tcplog.py``): golden lines from fixed inputs.

The lines are HAProxy 2.6's (doc/configuration.txt 8.2.2 "TCP log format", and the state-change texts
of src/server.c); the pump's C copy for lanes is held to the same lines in tests/integration/test_logs.py."""

from __future__ import annotations

import calendar


from fastproxy import tcplog
from fastproxy.health import CheckResult
from fastproxy.logformat import LogRecord
from fastproxy.pump import EndReason

# 2026-12-01 21:59:36.123 UTC
ACCEPTED = calendar.timegm((2026, 12, 1, 21, 59, 36, 0, 0, 0)) + 0.123


def test_the_tcplog_line_is_haproxys(utc):
    line = tcplog.tcplog_line(LogRecord(
        client=("127.0.0.1", 40312), accepted=ACCEPTED, total_ms=1503, frontend="fe", backend="be",
        server="s1", connect_ms=0, bytes_out=4096, termination="--", active=3, frontend_current=2,
        backend_current=1, server_current=1, retries=0))
    assert line == ("127.0.0.1:40312 [01/Dec/2026:21:59:36.123] fe be/s1 0/0/1503 4096 -- 3/2/1/1/0 0/0")


def test_a_connection_that_reached_no_server_logs_nosrv_and_minus_one(utc):
    line = tcplog.tcplog_line(LogRecord(
        client=("::1", 5, 0, 0), accepted=ACCEPTED, total_ms=0, frontend="fe", backend="fe", server=None,
        connect_ms=-1, bytes_out=0, termination=tcplog.CONNECT_FAILED, active=1, frontend_current=1,
        backend_current=0, server_current=0, retries=3))
    assert line == "::1:5 [01/Dec/2026:21:59:36.123] fe fe/<NOSRV> 0/-1/0 0 SC 1/1/0/0/3 0/0"


def test_the_connect_line_without_option_tcplog():
    assert tcplog.connect_line("10.0.0.1:1234", ("127.0.0.1", 8080), "fe") == \
        "Connect from 10.0.0.1:1234 to 127.0.0.1:8080 (fe/TCP)"


def test_every_end_reason_but_a_failed_connect_has_a_termination_state():
    assert set(tcplog.TERMINATION) == set(EndReason) - {EndReason.CONNECT_FAILED}
    assert all(len(state) == 2 for state in tcplog.TERMINATION.values())


def test_server_state_lines_are_haproxys():
    result = CheckResult("L7RSP", "TCPCHK did not match content 'PONG' at step 2", 0.0042)
    assert tcplog.server_down_message("be", "s1", backup=False, maintenance=False, result=result, active=0,
                                      backups=1, sessions=4, queued=2) == (
        "Server be/s1 is DOWN, reason: Layer7 invalid response, info: \"TCPCHK did not match content 'PONG' "
        "at step 2\", check duration: 4ms. 0 active and 1 backup servers left. Running on backup. "
        "4 sessions active, 0 requeued, 2 remaining in queue.")
    assert tcplog.server_down_message("be", "b1", backup=True, maintenance=True, result=None, active=1,
                                      backups=0, sessions=0, queued=0) == (
        "Backup Server be/b1 is going DOWN for maintenance. 1 active and 0 backup servers left. "
        "0 sessions active, 0 requeued, 0 remaining in queue.")
    assert tcplog.server_up_message("be", "s1", backup=False, result=CheckResult("L4OK", "", 0.0), active=2,
                                    backups=0, queued=0) == (
        "Server be/s1 is UP, reason: Layer4 check passed, check duration: 0ms. 2 active and 0 backup "
        "servers online. 0 sessions requeued, 0 total in queue.")
    assert tcplog.no_server_message("be") == "backend be has no server available!"


def test_addresses_print_as_host_port_and_unix_paths_as_they_are():
    assert tcplog.address_text(("::1", 80, 0, 0)) == "::1:80"
    assert tcplog.address_text("/run/fastproxy.sock") == "/run/fastproxy.sock"
