"""``show sess`` formatting (fastproxy.streams) and the session-time rule both pumps fold by
(``_pump_common.fold_times``, HAProxy's swrate), sans-IO."""

from __future__ import annotations

from fastproxy._pump_common import TIME_FIELDS, TIME_WINDOW, Time, fold_times
from fastproxy.stats import StatsView, session_times
from fastproxy.streams import Stream, human_time, long_form, short_line


def test_human_time_writes_at_most_two_units_as_haproxy():
    cases = {0: "0s", 5: "5s", 59: "59s", 60: "1m", 61: "1m1s", 3599: "59m59s", 3600: "1h", 3661: "1h1m",
             86400: "1d", 90061: "1d1h", 86401: "1d1s", -1: "?"}
    assert {seconds: human_time(seconds) for seconds in cases} == cases


def stream(**fields) -> Stream:
    values = dict(ident=0x2A, proto="tcpv4", source="127.0.0.1:5000", frontend="fe", backend="be",
                  server="s1", accepted=1000.0, client_fd=8, server_fd=9, client_expires_ms=8500,
                  server_expires_ms=9500, pending_in=3, bytes_in=10, bytes_out=20)
    values.update(fields)
    return Stream(**values)


def test_the_short_line_has_haproxys_fields_in_its_order():
    line = short_line(stream(), now=1061.5)
    assert line == ("0x2a: proto=tcpv4 src=127.0.0.1:5000 fe=fe be=be srv=s1 ts=00 epoch=0 age=1m1s calls=0 "
                    "rate=0 cpu=0 lat=0 rq[f=0h,i=3,an=00h,rx=8s,wx=,ax=] rp[f=0h,i=0,an=00h,rx=9s,wx=,ax=] "
                    "scf=[8,0h,fd=8] scb=[8,1h,fd=9] exp=8s rc=0 c_exp=\n")


def test_a_connecting_stream_shows_its_connect_expiry_and_no_backend_reads_none():
    line = short_line(stream(connecting=True, backend=None, server=None, client_expires_ms=-1,
                             server_expires_ms=2000), now=1000.2)
    assert " be=<NONE> srv=<none> " in line and "scb=[5,1h,fd=9]" in line
    assert line.endswith(" exp=2s rc=0 c_exp=2s\n") and "rq[f=0h,i=3,an=00h,rx=,wx=,ax=]" in line


def test_the_long_form_carries_the_bytes_moved_each_way():
    text = long_form(stream(), now=1002.0)
    assert text.startswith("0x2a: [") and "] id=42 proto=tcpv4 source=127.0.0.1:5000\n" in text
    assert "  req=0x2a (f=0x0 an=0x0 pipe=0 tofwd=-1 total=10)\n" in text
    assert "  res=0x2a (f=0x0 an=0x0 pipe=0 tofwd=-1 total=20)\n" in text
    assert "  server=s1 (id=-1) addr=\n" in text and "conn_exp=<NEVER>" in text


def test_times_sum_without_decay_up_to_the_window_then_slide_as_haproxys_swrate():
    times = [0] * TIME_FIELDS
    for _ in range(TIME_WINDOW):
        fold_times(times, 0, 0, 2, 10)
    assert (times[Time.TOTAL_SUM], times[Time.CONNECT_SUM], times[Time.SAMPLES]) == (10240, 2048, 1024)
    fold_times(times, 0, 0, 2, 1034)  # the 1025th: the window applies, the sum loses its average share
    assert times[Time.TOTAL_SUM] == 10240 - 10 + 1034 and times[Time.TOTAL_MAX] == 1034
    assert times[Time.SAMPLES] == TIME_WINDOW + 1
    fold_times(times, 0, 0, 2, 10)
    assert times[Time.SAMPLES] == TIME_WINDOW + 1  # counted no further


def test_stats_average_over_the_connections_balanced_up_to_the_window_as_haproxy_2_6_12():
    times = [0] * TIME_FIELDS
    for value in (100, 301):
        fold_times(times, 0, 5, 1, value)
    view = StatsView(state=None, counters=lambda block: (), now=0.0,  # type: ignore[arg-type]
                     times=lambda block: tuple(times))
    assert session_times(view, 0, 2) == {"qtime": 5, "ctime": 1, "rtime": 0, "ttime": 201, "qtime_max": 5,
                                         "ctime_max": 1, "rtime_max": 0, "ttime_max": 301}
    assert session_times(view, 0, 3)["ttime"] == 134  # one more in flight: its time is not in yet
    assert session_times(view, 0, 0)["ttime"] == 0
