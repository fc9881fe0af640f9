"""``show stat`` as HAProxy 2.6.12 writes it, computed sans-IO (``fastproxy.stats``): the header byte for
byte, and each row of a configuration held to the line the real haproxy wrote for the same file after
the same traffic (8 connections of 1000 bytes through ``fe``, 3 of 500 through ``ls``; s1 checked and
up, s3 disabled, s4 checked and down).  The rows are built from runtime objects and counter values
given by hand: no socket, no pump, a hand-moved clock.  ``show servers state`` and ``show info`` too.
"""

from __future__ import annotations

import pytest

from fastproxy import stats
from fastproxy.config import parse_text
from fastproxy.engine import default_fullconn
from fastproxy.health import CheckResult, HealthMonitor, ServerCheck
from fastproxy.pump import COUNTER_FIELDS, Counter
from fastproxy.runtime import BackendRuntime, FrontendRuntime, Runtime
from fastproxy.servers import ServerStates

CONFIG = """\
global
    maxconn 1000
    stats socket /tmp/fastproxy-test-api.sock level admin
    stats timeout 5s
defaults
    mode tcp
    timeout connect 2s
    timeout client 10s
    timeout server 10s
frontend fe
    bind 127.0.0.1:19401
    default_backend be
backend be
    balance roundrobin
    server s1 127.0.0.1:19501 check inter 300ms
    server s2 127.0.0.1:19502 weight 3
    server s3 127.0.0.1:19503 check disabled
    server s4 127.0.0.1:19509 check inter 300ms
listen ls
    bind 127.0.0.1:19402
    server a 127.0.0.1:19501
"""

# What haproxy 2.6.12 answered to ``show stat`` on CONFIG after that traffic (tests/test_stats_socket.py
# runs both again and compares them live).
HAPROXY_HEADER = (
    "# pxname,svname,qcur,qmax,scur,smax,slim,stot,bin,bout,dreq,dresp,ereq,econ,eresp,wretr,wredis,status,"
    "weight,act,bck,chkfail,chkdown,lastchg,downtime,qlimit,pid,iid,sid,throttle,lbtot,tracked,type,rate,"
    "rate_lim,rate_max,check_status,check_code,check_duration,hrsp_1xx,hrsp_2xx,hrsp_3xx,hrsp_4xx,hrsp_5xx,"
    "hrsp_other,hanafail,req_rate,req_rate_max,req_tot,cli_abrt,srv_abrt,comp_in,comp_out,comp_byp,comp_rsp,"
    "lastsess,last_chk,last_agt,qtime,ctime,rtime,ttime,agent_status,agent_code,agent_duration,check_desc,"
    "agent_desc,check_rise,check_fall,check_health,agent_rise,agent_fall,agent_health,addr,cookie,mode,algo,"
    "conn_rate,conn_rate_max,conn_tot,intercepted,dcon,dses,wrew,connect,reuse,cache_lookups,cache_hits,"
    "srv_icur,src_ilim,qtime_max,ctime_max,rtime_max,ttime_max,eint,idle_conn_cur,safe_conn_cur,"
    "used_conn_cur,need_conn_est,uweight,agg_server_status,agg_server_check_status,agg_check_status,-,"
    "ssl_sess,ssl_reused_sess,ssl_failed_handshake,h2_headers_rcvd,h2_data_rcvd,h2_settings_rcvd,"
    "h2_rst_stream_rcvd,h2_goaway_rcvd,h2_detected_conn_protocol_errors,h2_detected_strm_protocol_errors,"
    "h2_rst_stream_resp,h2_goaway_resp,h2_open_connections,h2_backend_open_streams,h2_total_connections,"
    "h2_backend_total_streams,h1_open_connections,h1_open_streams,h1_total_connections,h1_total_streams,"
    "h1_bytes_in,h1_bytes_out,h1_spliced_bytes_in,h1_spliced_bytes_out,\n")
HAPROXY_ROWS = """\
fe,FRONTEND,,,0,2,1000,8,8000,8000,0,0,0,,,,,OPEN,,,,,,,,,1,2,0,,,,0,8,0,8,,,,,,,,,,,0,0,0,,,0,0,0,0,,,,,,,,,,,,,,,,,,,,,tcp,,8,8,8,,0,0,0,,,,,,,,,,,0,,,,,,,,,-,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,
be,s1,0,0,0,1,,2,2000,2000,,0,,0,0,0,0,UP,1,1,0,0,0,2,0,,1,3,1,,2,,2,2,,2,L4OK,,0,,,,,,,,,,,0,0,,,,,0,,,0,0,0,1,,,,Layer4 check passed,,2,3,4,,,,127.0.0.1:19501,,tcp,,,,,,,,0,2,0,,,0,,0,0,0,1,0,0,0,0,1,1,,,,-,0,0,0,,,,,,,,,,,,,,,,,,,,,,
be,s2,0,0,0,2,,6,6000,6000,,0,,0,0,0,0,no check,3,1,0,,,2,,,1,3,2,,6,,2,6,,6,,,,,,,,,,,,,,0,0,,,,,0,,,0,0,0,1,,,,,,,,,,,,127.0.0.1:19502,,tcp,,,,,,,,0,6,0,,,0,,0,0,0,1,0,0,0,0,1,3,,,,-,0,0,0,,,,,,,,,,,,,,,,,,,,,,
be,s3,0,0,0,0,,0,0,0,,0,,0,0,0,0,MAINT,1,1,0,0,0,2,2,,1,3,3,,0,,2,0,,0,,,,,,,,,,,,,,0,0,,,,,-1,,,0,0,0,0,,,,,,,,,,,,127.0.0.1:19503,,tcp,,,,,,,,0,0,0,,,0,,0,0,0,0,0,0,0,0,0,1,,,,-,0,0,0,,,,,,,,,,,,,,,,,,,,,,
be,s4,0,0,0,0,,0,0,0,,0,,0,0,0,0,DOWN,1,1,0,1,1,1,1,,1,3,4,,0,,2,0,,0,L4CON,,0,,,,,,,,,,,0,0,,,,,-1,Connection refused,,0,0,0,0,,,,Layer4 connection problem,,2,3,0,,,,127.0.0.1:19509,,tcp,,,,,,,,0,0,0,,,0,,0,0,0,0,0,0,0,0,1,1,,,,-,0,0,0,,,,,,,,,,,,,,,,,,,,,,
be,BACKEND,0,0,0,2,100,8,8000,8000,0,0,,0,0,0,0,UP,4,2,0,,0,2,0,,1,3,0,,8,,1,8,,8,,,,,,,,,,,,,,0,0,0,0,0,0,0,,,0,0,0,1,,,,,,,,,,,,,,tcp,roundrobin,,,,,,,0,8,0,,,,,0,0,0,1,0,,,,,4,0,0,0,-,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,
ls,FRONTEND,,,0,2,1000,3,1500,1500,0,0,0,,,,,OPEN,,,,,,,,,1,4,0,,,,0,3,0,3,,,,,,,,,,,0,0,0,,,0,0,0,0,,,,,,,,,,,,,,,,,,,,,tcp,,3,3,3,,0,0,0,,,,,,,,,,,0,,,,,,,,,-,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,
ls,a,0,0,0,2,,3,1500,1500,,0,,0,0,0,0,no check,1,1,0,,,2,,,1,4,1,,3,,2,3,,3,,,,,,,,,,,,,,0,0,,,,,0,,,0,0,0,0,,,,,,,,,,,,127.0.0.1:19501,,tcp,,,,,,,,0,3,0,,,0,,0,0,0,0,0,0,0,0,1,1,,,,-,0,0,0,,,,,,,,,,,,,,,,,,,,,,
ls,BACKEND,0,0,0,2,100,3,1500,1500,0,0,,0,0,0,0,UP,1,1,0,,0,2,0,,1,4,0,,3,,1,3,,3,,,,,,,,,,,,,,0,0,0,0,0,0,0,,,0,0,0,0,,,,,,,,,,,,,,tcp,roundrobin,,,,,,,0,3,0,,,,,0,0,0,0,0,,,,,1,0,0,0,-,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,
"""  # noqa: E501
# Columns fastproxy does not measure, which read 0 (HAProxy's averages over the last sessions; the
# connections its idle pool estimates it needs), and smax, which fastproxy samples once a second.
NOT_MEASURED = {"ttime", "ttime_max", "need_conn_est"}


class Clock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def time(self) -> float:
        return self.now

    def call_later(self, delay, callback, *args):
        return _NoTimer()


class _NoTimer:
    def cancel(self) -> None:
        pass


class Running:
    """A configuration's runtime objects as the engine builds them, with counters set by hand."""

    def __init__(self, text: str = CONFIG) -> None:
        self.config = parse_text(text, filename="t.cfg")
        self.clock = Clock()
        self.values: dict[int, list[int]] = {}
        state = self.state = Runtime(self.config, None, None)  # type: ignore[arg-type]
        block = len(self.config.frontends)
        for backend in self.config.backends.values():
            state.backends[backend.name] = BackendRuntime(backend, block)
            block += len(backend.servers)
        default_fullconn(self.config, state.backends)
        for index, frontend in enumerate(self.config.frontends.values()):
            runtime = FrontendRuntime(frontend, index, None, self.config.backends)  # type: ignore[arg-type]
            state.frontends[frontend.name] = runtime
        self.monitor = HealthMonitor(self.clock, changed=self._changed,  # type: ignore[arg-type]
                                     established=lambda check: 0)
        self.servers = ServerStates(self.clock, self.monitor, cut_sessions=lambda block: None,
                                    write_log=lambda *args: None)
        self._by_check = {}
        for backend in state.backends.values():
            for server in backend.servers:
                server.last_change = backend.last_change = self.clock.now
                server.check = ServerCheck(server.name, server.slot.server, server.family, server.address, ())
                self._by_check[server.check] = server
                state.servers[server.block] = server
        self.sampler = stats.Sampler()

    def _changed(self, check, result) -> None:
        self.servers.health_changed(self._by_check[check], result)

    def server(self, path: str):
        backend, name = path.split("/")
        runtime = self.state.backends[backend]
        return runtime.servers[runtime.balancer.slot(name).index]

    def count(self, block: int, **fields: int) -> None:
        values = self.values.setdefault(block, [0] * COUNTER_FIELDS)
        for name, value in fields.items():
            values[Counter[name.upper()]] = value

    def counters(self, block: int) -> tuple[int, ...]:
        return tuple(self.values.get(block, [0] * COUNTER_FIELDS))

    def view(self, **kwargs) -> stats.StatsView:
        return stats.StatsView(self.state, self.counters, self.clock.now, sampler=self.sampler, **kwargs)

    def csv(self, **kwargs) -> str:
        return stats.csv(stats.rows(self.view(**kwargs), stats.number_proxies(self.state)))


def after_the_reference_traffic() -> Running:
    """CONFIG as haproxy had it when it wrote HAPROXY_ROWS: checks run, 11 connections ended, 2 s on."""
    r = Running()
    r.monitor.report(r.server("be/s1").check, CheckResult("L4OK", "", 0.0001))
    r.clock.now += 1
    r.monitor.report(r.server("be/s4").check, CheckResult("L4CON", "Connection refused", 0.0001))
    fe, ls = r.state.frontends["fe"].block, r.state.frontends["ls"].block
    s1, s2, a = (r.server(path).block for path in ("be/s1", "be/s2", "ls/a"))
    # The sampler's readings: two connections at once a little earlier, none counted yet.
    r.sampler.take(r.clock.now - 0.5, {("fe", "fe"): (2, 0), ("fe", "ls"): (2, 0), ("sv", s1): (1, 0),
                                       ("sv", s2): (2, 0), ("sv", a): (2, 0), ("be", "be"): (2, 0),
                                       ("be", "ls"): (2, 0)})
    r.sampler.take(r.clock.now, stats.readings(r.state, r.counters))
    r.clock.now += 1
    r.count(fe, conn_total=8, bytes_in=8000, bytes_out=8000)
    r.count(s1, conn_total=2, bytes_in=2000, bytes_out=2000)
    r.count(s2, conn_total=6, bytes_in=6000, bytes_out=6000)
    r.count(ls, conn_total=3, bytes_in=1500, bytes_out=1500)
    r.count(a, conn_total=3, bytes_in=1500, bytes_out=1500)
    return r


def fields_of(line: str) -> dict[str, str]:
    names = HAPROXY_HEADER[2:].rstrip(",\n").split(",")
    return dict(zip(names, line.rstrip(",\n").split(",")))


def test_the_header_is_haproxys_byte_for_byte():
    assert stats.HEADER == HAPROXY_HEADER
    assert len(stats.FIELDS) == 103 and stats.FIELDS[-1] == "agg_check_status"


def test_show_stat_is_the_header_one_line_per_row_and_an_empty_line():
    text = after_the_reference_traffic().csv()
    lines = text.split("\n")
    assert lines[0] + "\n" == HAPROXY_HEADER
    assert [line.split(",")[:2] for line in lines[1:-2]] == [
        line.split(",")[:2] for line in HAPROXY_ROWS.splitlines()]
    assert text.endswith(",\n\n")


@pytest.mark.parametrize("index", range(len(HAPROXY_ROWS.splitlines())),
                         ids=[",".join(line.split(",")[:2]) for line in HAPROXY_ROWS.splitlines()])
def test_each_row_holds_haproxys_values_after_the_same_traffic(index):
    ours = after_the_reference_traffic().csv().split("\n")[1 + index]
    theirs = HAPROXY_ROWS.splitlines()[index]
    assert len(ours.split(",")) == len(theirs.split(","))
    differ = {name: (mine, haproxy) for (name, mine), haproxy in
              zip(fields_of(ours).items(), fields_of(theirs).values()) if mine != haproxy}
    assert set(differ) <= NOT_MEASURED, differ


def test_status_words_follow_the_server_state():
    r = Running()
    s1, s2 = r.server("be/s1"), r.server("be/s2")

    def status(server) -> str:
        return stats.server_row(r.view(), stats.number_proxies(r.state)[1], server)["status"]

    # Checked servers start up at the bottom of their health (one failure from down), as HAProxy's.
    assert (status(s1), status(s2), status(r.server("be/s3"))) == ("UP 1/3", "no check", "MAINT")
    r.monitor.report(s1.check, CheckResult("L4OK", "", 0.001))  # health at the top: 4 of rise 2 + fall 3
    assert status(s1) == "UP"
    r.monitor.report(s1.check, CheckResult("L4CON", "Connection refused", 0.001))
    assert status(s1) == "UP 2/3"  # going down
    r.servers.set_state(s1, "DRAIN")
    assert status(s1) == "DRAIN 2/3"
    r.servers.set_ready(s1)
    r.servers.set_state(s2, "DRAIN")
    assert status(s2) == "DRAIN"
    r.servers.set_health(s2, "stopping")
    assert status(s2) == "NOLB"
    r.servers.set_health(s2, "down")
    assert status(s2) == "DOWN"
    r.servers.set_state(s2, "MAINT")
    assert status(s2) == "MAINT"


def test_a_drained_server_keeps_its_weights_and_the_backend_leaves_it_out():
    """As haproxy 2.6.12: ``set server be/s2 state drain`` leaves s2's weight column at 3."""
    r = Running()
    r.servers.set_state(r.server("be/s2"), "DRAIN")
    row = stats.server_row(r.view(), stats.number_proxies(r.state)[1], r.server("be/s2"))
    assert (row["status"], row["weight"], row["uweight"]) == ("DRAIN", 3, 3)
    backend = stats.backend_row(r.view(), stats.number_proxies(r.state)[1])
    assert (backend["weight"], backend["act"], backend["status"]) == (2, 2, "UP")


def test_a_backend_without_usable_server_is_down_and_counts_the_transition():
    r = Running()
    for name in ("s1", "s2", "s4"):
        r.servers.set_state(r.server(f"be/{name}"), "MAINT")
    r.clock.now += 5
    row = stats.backend_row(r.view(), stats.number_proxies(r.state)[1])
    assert (row["status"], row["weight"], row["act"], row["chkdown"]) == ("DOWN", 0, 0, 1)
    assert (row["lastchg"], row["downtime"]) == (5, 5)


def test_addresses_and_algorithm_are_shown_from_level_operator_on():
    r = Running()
    proxies = stats.number_proxies(r.state)
    user = r.view(show_addresses=False)
    assert stats.server_row(user, proxies[1], r.server("be/s1"))["addr"] is None
    assert stats.backend_row(user, proxies[1])["algo"] is None
    assert stats.server_row(r.view(), proxies[1], r.server("be/s1"))["addr"] == "127.0.0.1:19501"


@pytest.mark.parametrize("sections, ids", [
    ("frontend fe|backend be", [("fe", 2), ("be", 3)]),
    ("backend a|  id 5|backend b|backend c", [("a", 5), ("b", 3), ("c", 4)]),
    ("backend a|backend b|  id 2|backend c|backend d", [("a", 3), ("b", 2), ("c", 5), ("d", 6)]),
    ("backend b0|frontend fe|  id 1|backend be", [("b0", 2), ("fe", 1), ("be", 4)]),
])
def test_proxies_are_numbered_as_haproxy_numbers_them(sections, ids):
    """Observed on haproxy 2.6.12: ids from 2 in declaration order, every proxy moving the next id on,
    one with an ``id`` of its own too."""
    lines = []
    for section in sections.split("|"):
        lines.append(section)
        if section.startswith("frontend"):
            lines += ["  bind 127.0.0.1:19999", "  default_backend " + ("be" if "be" in sections else "a")]
        elif section.startswith("backend"):
            lines.append("  server s 127.0.0.1:1")
    text = "defaults\n  mode tcp\n  timeout connect 1s\n  timeout client 1s\n  timeout server 1s\n"
    r = Running(text + "\n".join(lines) + "\n")
    assert [(proxy.name, proxy.uuid) for proxy in stats.number_proxies(r.state)] == ids


def test_show_stat_selects_by_proxy_id_type_and_server_id():
    r = Running()
    proxies = stats.number_proxies(r.state)
    view = r.view()
    assert [(row["pxname"], row["svname"]) for row in stats.rows(view, proxies, proxy_id=3, types=4,
                                                                server_id=2)] == [("be", "s2")]
    assert [row["svname"] for row in stats.rows(view, proxies, types=1)] == ["FRONTEND", "FRONTEND"]
    assert [row["svname"] for row in stats.rows(view, proxies, proxy_id=4, types=2)] == ["BACKEND"]


def test_clearing_every_counter_starts_them_from_what_the_pump_holds_now():
    r = after_the_reference_traffic()
    block = r.state.frontends["fe"].block
    view = r.view(cleared={block: r.counters(block)})
    row = stats.frontend_row(view, stats.number_proxies(r.state)[0])
    assert (row["stot"], row["bin"], row["bout"]) == (0, 0, 0)


def test_the_sampler_rate_is_the_connections_of_the_last_second():
    sampler = stats.Sampler()
    key = ("fe", "fe")
    sampler.take(10.0, {key: (0, 100)})
    sampler.take(11.0, {key: (3, 110)})
    assert sampler.rate(key, 11.5, 115) == 10  # 115 less the 105 interpolated at 10.5
    assert sampler.rate(key, 13.0, 120) == 10  # the last reading is over a second old
    assert sampler.highest(key, 1) == 3


SERVERS_STATE_HAPROXY = """\
1
# be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state srv_uweight srv_iweight \
srv_time_since_last_change srv_check_status srv_check_result srv_check_health srv_check_state \
srv_agent_state bk_f_forced_id srv_f_forced_id srv_fqdn srv_port srvrecord srv_use_ssl srv_check_port \
srv_check_addr srv_agent_addr srv_agent_port
3 be 1 s1 127.0.0.1 2 0 1 1 2 6 3 4 6 0 0 0 - 19501 - 0 0 - - 0
3 be 2 s2 127.0.0.1 2 0 3 3 2 1 0 2 0 0 0 0 - 19502 - 0 0 - - 0
3 be 3 s3 127.0.0.1 0 5 1 1 2 1 0 0 14 0 0 0 - 19503 - 0 0 - - 0
3 be 4 s4 127.0.0.1 0 0 1 1 1 8 2 0 6 0 0 0 - 19509 - 0 0 - - 0
4 ls 1 a 127.0.0.1 2 0 1 1 2 1 0 2 0 0 0 0 - 19501 - 0 0 - - 0

"""


def test_show_servers_state_is_format_version_1():
    r = after_the_reference_traffic()
    assert stats.servers_state(stats.number_proxies(r.state), r.clock.now) == SERVERS_STATE_HAPROXY


def test_show_info_has_haproxys_keys_in_order():
    r = after_the_reference_traffic()
    values = stats.info(r.state, r.counters, version="0.1.0", started=r.clock.now - 75, started_wall=0,
                        now=r.clock.now, listeners=3)
    text = stats.info_text(values)
    keys = [line.split(":", 1)[0] for line in text.splitlines() if line]
    assert keys[:3] == ["Name", "Version", "Release_date"] and keys[-1] == "Tainted" and len(keys) == 69
    assert "Uptime: 0d 0h01m15s\n" in text and "CumConns: 11\n" in text and "Maxconn: 1000\n" in text
    assert text.endswith("\n\n")

