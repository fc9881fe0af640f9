"""HAProxy's statistics, computed from a running configuration: ``show stat``, ``show info`` and
``show servers state`` as HAProxy 2.6 writes them (doc/management.txt §9.1, src/stats.c).

Sans-IO: the functions here read the runtime objects (``runtime.FrontendRuntime``, ``BackendRuntime``,
``ServerRuntime``) and the pump's counter blocks through a ``counters(block)`` callable, at the moment
they are asked, and return rows of fields; nothing is counted per connection for them.  A field is
``None`` where HAProxy leaves it empty (it does not apply to that kind of row, or to TCP, or fastproxy
does not measure it), else an ``int`` or a ``str``.  ``csv`` and ``typed`` turn rows into text.

Ids follow HAProxy: proxies are numbered in declaration order from 2 (1 is the stats socket's own
frontend), skipping the ids given with ``id``; a ``listen`` is one proxy, a frontend row and a backend
row of the same id.  Servers keep their ``id`` or the next free one (``balance.ServerSlot.id``).

What fastproxy does not measure reads 0 where HAProxy would count (aborts, HTTP).  The session
times (``qtime``, ``ctime``, ``ttime`` and their maxima) are the pump's (``Pump.times``): HAProxy's
sliding sums over the last 1024 connections, read as HAProxy 2.6.12 reads them (``swrate_avg`` over
the connections balanced so far, at most 1024); ``rtime`` is 0 in TCP mode, as HAProxy's.  The
pump keeps no maximum and no rate: ``Sampler`` reads the counters once a second for ``smax``,
``rate``, ``rate_max`` and ``conn_rate`` (a burst shorter than a second may not show in ``smax``);
``qmax`` is the queues' own maximum.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Optional, Sequence

from .pump import TIME_FIELDS, TIME_WINDOW, Counter, Time
from .runtime import AdminState, BackendRuntime, FrontendRuntime, Runtime, ServerRuntime

Value = Optional[Any]  # None (empty), int or str
Counters = Callable[[int], Sequence[int]]

# HAProxy 2.6's 103 static columns (stats-t.h ST_F_*), in order.
FIELDS: tuple[str, ...] = (
    "pxname", "svname", "qcur", "qmax", "scur", "smax", "slim", "stot", "bin", "bout", "dreq", "dresp",
    "ereq", "econ", "eresp", "wretr", "wredis", "status", "weight", "act", "bck", "chkfail", "chkdown",
    "lastchg", "downtime", "qlimit", "pid", "iid", "sid", "throttle", "lbtot", "tracked", "type", "rate",
    "rate_lim", "rate_max", "check_status", "check_code", "check_duration", "hrsp_1xx", "hrsp_2xx",
    "hrsp_3xx", "hrsp_4xx", "hrsp_5xx", "hrsp_other", "hanafail", "req_rate", "req_rate_max", "req_tot",
    "cli_abrt", "srv_abrt", "comp_in", "comp_out", "comp_byp", "comp_rsp", "lastsess", "last_chk",
    "last_agt", "qtime", "ctime", "rtime", "ttime", "agent_status", "agent_code", "agent_duration",
    "check_desc", "agent_desc", "check_rise", "check_fall", "check_health", "agent_rise", "agent_fall",
    "agent_health", "addr", "cookie", "mode", "algo", "conn_rate", "conn_rate_max", "conn_tot",
    "intercepted", "dcon", "dses", "wrew", "connect", "reuse", "cache_lookups", "cache_hits", "srv_icur",
    "src_ilim", "qtime_max", "ctime_max", "rtime_max", "ttime_max", "eint", "idle_conn_cur",
    "safe_conn_cur", "used_conn_cur", "need_conn_est", "uweight", "agg_server_status",
    "agg_server_check_status", "agg_check_status",
)
# The columns of the stats modules HAProxy 2.6 is built with (ssl, h2, h1), after a "-" column; a
# module's columns are zeros on the rows of the kinds it counts (ssl: servers too), empty elsewhere.
SSL_FIELDS = ("ssl_sess", "ssl_reused_sess", "ssl_failed_handshake")
H2_FIELDS = (
    "h2_headers_rcvd", "h2_data_rcvd", "h2_settings_rcvd", "h2_rst_stream_rcvd", "h2_goaway_rcvd",
    "h2_detected_conn_protocol_errors", "h2_detected_strm_protocol_errors", "h2_rst_stream_resp",
    "h2_goaway_resp", "h2_open_connections", "h2_backend_open_streams", "h2_total_connections",
    "h2_backend_total_streams")
H1_FIELDS = ("h1_open_connections", "h1_open_streams", "h1_total_connections", "h1_total_streams",
             "h1_bytes_in", "h1_bytes_out", "h1_spliced_bytes_in", "h1_spliced_bytes_out")
MODULE_FIELDS = SSL_FIELDS + H2_FIELDS + H1_FIELDS
HEADER = "# " + ",".join(FIELDS + ("-",) + MODULE_FIELDS) + ",\n"

TYPE_FRONTEND, TYPE_BACKEND, TYPE_SERVER = 0, 1, 2
FIRST_PROXY_ID = 2  # 1 goes to the stats socket's frontend (HAProxy's "GLOBAL")

# check.c's check statuses as HAProxy numbers them (show servers state's srv_check_status).
CHECK_STATUS_CODES = {"INI": 1, "HANA": 4, "SOCKERR": 5, "L4OK": 6, "L4TOUT": 7, "L4CON": 8, "L6OK": 9,
                      "L6TOUT": 10, "L6RSP": 11, "L7TOUT": 12, "L7RSP": 13, "L7OK": 15, "L7OKC": 16,
                      "L7STS": 17, "PROCERR": 18, "PROCTOUT": 19, "PROCOK": 20}


@dataclass(eq=False)
class Proxy:
    """One HAProxy proxy: a frontend, a backend, or both (``listen``), with its id."""

    name: str
    uuid: int
    frontend: Optional[FrontendRuntime] = None
    backend: Optional[BackendRuntime] = None


def number_proxies(state: Runtime) -> list[Proxy]:
    """The proxies in declaration order, with HAProxy's ids (see the module docstring)."""
    files = {name: index for index, name in enumerate(state.config.files)}
    found: dict[tuple, Proxy] = {}
    for runtime in list(state.frontends.values()) + list(state.backends.values()):
        where = runtime.model.location
        key = (files.get(where.file, len(files)), where.line, runtime.name)
        proxy = found.setdefault(key, Proxy(runtime.name, 0))
        if isinstance(runtime, FrontendRuntime):
            proxy.frontend = runtime
        else:
            proxy.backend = runtime
    proxies = [found[key] for key in sorted(found)]
    explicit = {proxy: _configured_id(proxy) for proxy in proxies}
    taken = {uuid for uuid in explicit.values() if uuid}
    next_id = FIRST_PROXY_ID
    for proxy in proxies:  # HAProxy: every proxy moves the next id on, one with an id of its own too
        if explicit[proxy]:
            proxy.uuid = explicit[proxy]
            next_id += 1
            continue
        while next_id in taken:
            next_id += 1
        proxy.uuid = next_id
        taken.add(next_id)
        next_id += 1
    return proxies


def _configured_id(proxy: Proxy) -> int:
    for runtime in (proxy.frontend, proxy.backend):
        if runtime is not None and runtime.model.id:
            return runtime.model.id
    return 0


class Sampler:
    """The current connections and the connection totals of every row, read once a second (a few
    dozen counter reads, never per connection): the highest counts seen (``smax``), the rate over the
    last second (``rate``, ``conn_rate``, HAProxy's freq_ctr interpolated between two readings) and
    its highest value (``rate_max``).  Keys are ``("fe", name)``, ``("sv", block)``, ``("be", name)``."""

    def __init__(self) -> None:
        self._last: dict[tuple, tuple[float, int]] = {}
        self._before: dict[tuple, tuple[float, int]] = {}
        self.max_current: dict[tuple, int] = {}
        self.max_rate: dict[tuple, int] = {}

    def take(self, now: float, readings: dict[tuple, tuple[int, int]]) -> None:
        for key, (current, total) in readings.items():
            rate = self.rate(key, now, total)
            if key in self._last:
                self._before[key] = self._last[key]
            self._last[key] = (now, total)
            self.max_current[key] = max(self.max_current.get(key, 0), current)
            self.max_rate[key] = max(self.max_rate.get(key, 0), rate)

    def rate(self, key: tuple, now: float, total: int) -> int:
        """Connections in the second before ``now``: ``total`` less the total one second earlier,
        interpolated between the two readings around that time."""
        last, before = self._last.get(key), self._before.get(key)
        if last is None:
            return 0
        then = now - 1.0
        if then >= last[0] or before is None:  # what came since a reading over a second old (or the only one)
            base = float(last[1])
        elif then <= before[0]:
            base = float(before[1])
        else:
            share = (then - before[0]) / (last[0] - before[0])
            base = before[1] + (last[1] - before[1]) * share
        return max(int(round(total - base)), 0)

    def highest(self, key: tuple, current: int) -> int:
        return max(self.max_current.get(key, 0), current)

    def highest_rate(self, key: tuple, rate: int) -> int:
        return max(self.max_rate.get(key, 0), rate)

    def clear(self) -> None:
        """``clear counters``: the maxima start over."""
        self.max_current.clear()
        self.max_rate.clear()


def readings(state: Runtime, counts: Callable[[int], Sequence[int]]) -> dict[tuple, tuple[int, int]]:
    """(current connections, connection total) of every frontend, server and backend, for ``Sampler``."""
    result: dict[tuple, tuple[int, int]] = {}
    current = total = 0
    for fe in state.frontends.values():
        c = counts(fe.block)
        result[("fe", fe.name)] = (c[Counter.CONN_CUR], c[Counter.CONN_TOTAL])
        current, total = current + c[Counter.CONN_CUR], total + c[Counter.CONN_TOTAL]
    result[("process", "")] = (current, total)  # show info's ConnRate and MaxConnRate
    for fe in state.frontends.values():
        if fe.http is not None:  # a stats listener's request rate (req_rate)
            result[("req", fe.name)] = (0, fe.http.requests)
    for be in state.backends.values():
        current = total = 0
        for server in be.servers:
            c = counts(server.block)
            result[("sv", server.block)] = (c[Counter.CONN_CUR], c[Counter.CONN_TOTAL])
            current, total = current + c[Counter.CONN_CUR], total + c[Counter.CONN_TOTAL]
        result[("be", be.name)] = (current, total)
    return result


@dataclass
class StatsView:
    """What the rows are computed from: the running configuration, the counters, the clock."""

    state: Runtime
    counters: Counters
    now: float  # on the clock of ServerRuntime.last_change (the event loop's)
    show_addresses: bool = True  # HAProxy shows addr and algo from level operator on
    sampler: Sampler = field(default_factory=Sampler)
    cleared: dict[int, tuple[int, ...]] = field(default_factory=dict)  # block -> counters at clear time
    times: Optional[Counters] = None  # the pump's session times of a block (None: all read 0)

    def counts(self, block: int) -> tuple[int, ...]:
        values = tuple(self.counters(block))
        base = self.cleared.get(block)
        if base is None:
            return values
        # CONN_CUR is a gauge: it is never cleared.
        return tuple(v if i == Counter.CONN_CUR else max(v - b, 0)
                     for i, (v, b) in enumerate(zip(values, base)))


def session_times(view: StatsView, block: int, balanced: int) -> dict[str, Value]:
    """qtime, ctime, rtime, ttime and their maxima of a server's or backend's block, as HAProxy
    2.6.12's stats_fill_sv_stats() reads them: ``swrate_avg(sum, n)``, ``n`` the connections balanced
    to it (``balanced``, lbtot) up to TIME_STATS_SAMPLES."""
    t = tuple(view.times(block)) if view.times is not None and block >= 0 else (0,) * TIME_FIELDS
    window = min(balanced, TIME_WINDOW)

    def average(total: int) -> int:
        return (total + window - 1) // window if window else 0
    return {"qtime": average(t[Time.QUEUE_SUM]), "ctime": average(t[Time.CONNECT_SUM]), "rtime": 0,
            "ttime": average(t[Time.TOTAL_SUM]), "qtime_max": t[Time.QUEUE_MAX],
            "ctime_max": t[Time.CONNECT_MAX], "rtime_max": 0, "ttime_max": t[Time.TOTAL_MAX]}


def _blank() -> dict[str, Value]:
    return dict.fromkeys(FIELDS)


def _age(now: float, since: float) -> int:
    return max(int(now - since), 0)


def _rates(view: "StatsView", key: tuple, current: int, total: int) -> tuple[int, int, int]:
    """(smax, rate, rate_max) of a row from the sampler and what the counters say now."""
    sampler = view.sampler
    rate = sampler.rate(key, view.now, total)
    return sampler.highest(key, current), rate, sampler.highest_rate(key, rate)


def frontend_row(view: StatsView, proxy: Proxy) -> dict[str, Value]:
    runtime = proxy.frontend
    assert runtime is not None
    fe = runtime.model
    c = view.counts(runtime.block)
    raw = view.counters(runtime.block)
    smax, rate, rate_max = _rates(view, ("fe", runtime.name), raw[Counter.CONN_CUR], raw[Counter.CONN_TOTAL])
    row = _blank()
    row.update(
        pxname=proxy.name, svname="FRONTEND", scur=c[Counter.CONN_CUR], smax=smax,
        slim=runtime.maxconn if runtime.maxconn_set else fe.maxconn or view.state.maxconn,
        stot=c[Counter.CONN_TOTAL],
        bin=c[Counter.BYTES_IN], bout=c[Counter.BYTES_OUT], dreq=0, dresp=0, ereq=0,
        status="STOP" if view.state.stopping else runtime.state,
        pid=1, iid=proxy.uuid, sid=0, type=TYPE_FRONTEND,
        rate=rate, rate_lim=fe.rate_limit_sessions or 0, rate_max=rate_max, req_rate=0, req_rate_max=0,
        req_tot=0, comp_in=0, comp_out=0, comp_byp=0, comp_rsp=0, mode=fe.mode, conn_rate=rate,
        conn_rate_max=rate_max, conn_tot=c[Counter.CONN_TOTAL] + runtime.denied + c[Counter.DENIED_CONN],
        dcon=runtime.denied + c[Counter.DENIED_CONN],
        dses=0, wrew=0, eint=0)
    if fe.mode == "http":  # a stats listener: HAProxy's HTTP counters, its own requests'
        row.update(dict.fromkeys(HTTP_FIELDS + ("intercepted",), 0))
        if runtime.http is not None:
            requests = runtime.http.requests
            _, req_rate, req_rate_max = _rates(view, ("req", runtime.name), 0, requests)
            row.update(zip(RESPONSE_FIELDS, runtime.http.responses), req_tot=requests, req_rate=req_rate,
                       req_rate_max=req_rate_max, intercepted=runtime.http.intercepted)
            # The h1 module's columns: its connections, requests and bytes on the wire (bin and bout
            # are the same bytes here; HAProxy's count its internal messages' sizes instead).
            row.update(h1_open_connections=c[Counter.CONN_CUR], h1_total_connections=c[Counter.CONN_TOTAL],
                       h1_total_streams=requests, h1_bytes_in=c[Counter.BYTES_IN],
                       h1_bytes_out=c[Counter.BYTES_OUT])
    return row


# The HTTP columns a ``mode http`` proxy (a stats listener) carries, 0 where fastproxy serves no HTTP.
RESPONSE_FIELDS = ("hrsp_1xx", "hrsp_2xx", "hrsp_3xx", "hrsp_4xx", "hrsp_5xx", "hrsp_other")
HTTP_FIELDS = RESPONSE_FIELDS + ("cache_lookups", "cache_hits")


def server_status(server: ServerRuntime) -> str:
    """The ``status`` column of a server (stats.c's srv_hlt_st): a tracking server shows the checks of
    the server at the end of its chain (HAProxy's ``ref``), and the maintenance it inherits."""
    ref = server
    while ref.tracked is not None:
        ref = ref.tracked
    check = ref.check
    health = check.health
    if server.admin is AdminState.MAINT:
        return "MAINT (resolution)" if server.unresolved else "MAINT"
    admins = []
    via = server.tracked
    while via is not None:
        admins.append(via.admin)
        via = via.tracked
    if AdminState.MAINT in admins:
        assert server.tracked is not None
        return f"MAINT (via {server.tracked.name})"
    if ref.agent is not None and not ref.agent.health.up:
        return "DOWN (agent)"
    checked = check.active
    if health.up and server.nolb:  # ``set server ... health stopping``
        return "NOLB" if not checked or health.health == health.top else \
            f"NOLB {health.health - health.rise + 1}/{health.fall}"
    if health.up:
        going_down = checked and health.health < health.top
        if server.admin is AdminState.DRAIN or AdminState.DRAIN in admins:
            if going_down:
                return f"DRAIN {health.health - health.rise + 1}/{health.fall}"
            return "DRAIN (agent)" if ref.agent is not None else "DRAIN"
        if going_down:
            return f"UP {health.health - health.rise + 1}/{health.fall}"
        return "UP" if checked else "no check"
    if checked and health.health:
        return f"DOWN {health.health}/{health.rise}"
    return "DOWN"


def server_state_header(server: ServerRuntime, current: Callable[[ServerRuntime], int]) -> str:
    """The ``X-Haproxy-Server-State`` value of ``http-check send-state`` (check.c's
    httpchk_build_status_header()): health as the check sees it, address, name, node, weight over the
    backend's total, sessions of the server over the backend's, the server's queue.  ``current``
    gives a server's established connections (the pump's books)."""
    check, health = server.check, server.check.health
    if not check.active:
        text = "no check"
    elif health.up:
        stopping = "NOLB" if server.nolb else "UP"
        text = stopping if health.health == health.top else \
            f"{stopping} {health.health - health.rise + 1}/{health.fall}"
    else:
        text = f"DOWN {health.health}/{health.rise}" if health.health else "DOWN"
    backend = server.backend
    total_weight = sum(effective_weight(other) for other in backend.servers
                       if other.slot.usable and other.slot.backup == server.slot.backup)
    host, port = server.address
    queue = backend.queues.servers[server.slot.index].length
    return (f"{text}; address={host}; port={port}; name={backend.name}/{server.slot.name}; "
            f"node={os.uname().nodename}; weight={effective_weight(server)}/{total_weight}; "
            f"scur={current(server)}/{sum(current(other) for other in backend.servers)}; qcur={queue}")


def effective_weight(server: ServerRuntime) -> int:
    """The server's effective weight in the configuration's unit.  A drained server keeps it, as
    HAProxy's cur_eweight (its ``show stat`` and exporter say 3 for a drained weight 3): the backend's
    total leaves it out instead (``backend_weights``)."""
    slot = server.slot
    scale = server.backend.balancer.weight_scale
    return (slot.weight + scale - 1) // scale


def server_row(view: StatsView, proxy: Proxy, server: ServerRuntime) -> dict[str, Value]:
    slot, check, conf = server.slot, server.check, server.slot.server
    c = view.counts(server.block)
    queue = server.backend.queues.servers[slot.index]
    raw = view.counters(server.block)
    smax, rate, rate_max = _rates(view, ("sv", server.block), raw[Counter.CONN_CUR], raw[Counter.CONN_TOTAL])
    row = _blank()
    checked = check.active
    row.update(
        pxname=proxy.name, svname=slot.name, qcur=queue.length,
        qmax=max(queue.max, queue.length), scur=c[Counter.CONN_CUR], smax=smax,
        slim=slot.maxconn or None, stot=c[Counter.CONN_TOTAL], bin=c[Counter.BYTES_IN],
        bout=c[Counter.BYTES_OUT], dresp=0, econ=c[Counter.CONNECT_ERRORS], eresp=0, wretr=0, wredis=0,
        status=server_status(server), weight=effective_weight(server), act=0 if slot.backup else 1,
        bck=1 if slot.backup else 0, lastchg=_age(view.now, server.last_change),
        qlimit=conf.maxqueue or None, pid=1, iid=proxy.uuid, sid=slot.id, lbtot=c[Counter.CONN_TOTAL],
        type=TYPE_SERVER, rate=rate, rate_max=rate_max, cli_abrt=0, srv_abrt=0,
        lastsess=_last_session(view, server, c), qtime=0, ctime=0, rtime=0, ttime=0, mode="tcp",
        wrew=0, connect=c[Counter.CONN_TOTAL] + c[Counter.CONNECT_ERRORS], reuse=0, srv_icur=0,
        qtime_max=0, ctime_max=0, rtime_max=0, ttime_max=0, eint=0, idle_conn_cur=0, safe_conn_cur=0,
        used_conn_cur=c[Counter.CONN_CUR], need_conn_est=0, uweight=slot.user_weight)
    row.update(session_times(view, server.block, raw[Counter.CONN_TOTAL]))
    if slot.ramp is not None and server.admin is not AdminState.DRAIN:
        row["throttle"] = max(1, int(slot.ramp * 100))
    if checked:
        row.update(chkfail=check.failed_checks, chkdown=check.went_down,
                   downtime=int(server_downtime(server, view.now)))
    if checked and not check.paused:
        last = check.last
        status = last.status if last is not None else "INI"
        row["check_status"] = ("* " if check.task is not None else "") + status
        if last is not None and last.has_code:
            row["check_code"] = last.code & 0xFFFFFFFF  # HAProxy's unsigned field (a signal's -1)
        if last is not None:
            row["check_duration"] = round(last.duration * 1000)
        row.update(check_desc=last.description if last is not None else "Initializing",
                   last_chk=last.info if last is not None else "", check_rise=check.health.rise,
                   check_fall=check.health.fall, check_health=check.health.health)
    agent = server.agent
    if agent is not None:
        last = agent.last
        status = last.status if last is not None else "INI"
        row["agent_status"] = ("* " if agent.task is not None else "") + status
        if last is not None and last.has_code:
            row["agent_code"] = last.code
        if last is not None:
            row["agent_duration"] = round(last.duration * 1000)
        row.update(agent_desc=last.description if last is not None else "Initializing",
                   last_agt=last.info if last is not None else "", agent_rise=agent.health.rise,
                   agent_fall=agent.health.fall, agent_health=agent.health.health)
    if conf.observe:
        row["hanafail"] = 0
    if view.show_addresses:
        host, port = server.address
        row["addr"] = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    return row


def _last_session(view: StatsView, server: ServerRuntime, c: Sequence[int]) -> int:
    """Seconds since the server's last connection, -1 for none: the pump keeps no time, so this is
    when the reader first saw the current total (a second's precision when read every second)."""
    total = c[Counter.CONN_TOTAL]
    if not total:
        return -1
    if server.seen_total != total:
        server.seen_total, server.seen_at = total, view.now
    return _age(view.now, server.seen_at)


def server_downtime(server: ServerRuntime, now: float) -> float:
    """HAProxy's srv_downtime(): the time spent stopped (DOWN or MAINT), the current spell included."""
    if server.stopped:
        return server.down_time + now - server.last_change
    return server.down_time


def backend_weights(backend: BackendRuntime) -> tuple[int, int, int, int]:
    """(total effective weight, total user weight, usable active, usable backup) as HAProxy's lbprm:
    the active servers' when one is usable, else the backups' (the first one's without allbackups)."""
    scale = backend.balancer.weight_scale
    usable = [s for s in backend.servers if s.slot.usable and s.admin is not AdminState.DRAIN]
    active = [s for s in usable if not s.slot.backup]
    backups = [s for s in usable if s.slot.backup]
    first_backup = sorted(backups, key=lambda s: s.slot.id)[:1]
    group = active or (backups if backend.balancer.all_backups else first_backup)
    weight = sum((s.slot.weight + scale - 1) // scale for s in group)
    return weight, sum(s.slot.user_weight for s in group), len(active), len(backups)


def backend_row(view: StatsView, proxy: Proxy) -> dict[str, Value]:
    backend = proxy.backend
    assert backend is not None
    per_server = [view.counts(server.block) for server in backend.servers]

    def total(index: int) -> int:
        return sum(c[index] for c in per_server)

    queue = backend.queues.backend
    raw = [view.counters(server.block) for server in backend.servers]
    smax, rate, rate_max = _rates(view, ("be", backend.name), sum(c[Counter.CONN_CUR] for c in raw),
                                  sum(c[Counter.CONN_TOTAL] for c in raw))
    weight, user_weight, active, backups = backend_weights(backend)
    up = weight > 0 or not backend.servers
    row = _blank()
    row.update(
        pxname=proxy.name, svname="BACKEND", qcur=queue.length,
        qmax=max(queue.max, queue.length), scur=total(Counter.CONN_CUR), smax=smax,
        slim=backend.balancer.fullconn or None, stot=total(Counter.CONN_TOTAL), bin=total(Counter.BYTES_IN),
        bout=total(Counter.BYTES_OUT), dreq=0, dresp=0, econ=total(Counter.CONNECT_ERRORS), eresp=0,
        wretr=0, wredis=0, status="UP" if up else "DOWN", weight=weight, act=active, bck=backups,
        chkdown=backend.went_down, lastchg=_age(view.now, backend.last_change), pid=1, iid=proxy.uuid,
        sid=0, lbtot=total(Counter.CONN_TOTAL), type=TYPE_BACKEND, rate=rate, rate_max=rate_max, cli_abrt=0,
        srv_abrt=0, comp_in=0, comp_out=0, comp_byp=0, comp_rsp=0,
        lastsess=min((v for v in (_last_session(view, s, c) for s, c in zip(backend.servers, per_server))
                      if v >= 0), default=-1),
        qtime=0, ctime=0, rtime=0, ttime=0, mode=backend.model.mode, wrew=0,
        connect=total(Counter.CONN_TOTAL) + total(Counter.CONNECT_ERRORS), reuse=0, qtime_max=0,
        ctime_max=0, rtime_max=0, ttime_max=0, eint=0, uweight=user_weight, agg_server_status=0,
        agg_server_check_status=0, agg_check_status=0)
    row.update(session_times(view, backend.block, sum(c[Counter.CONN_TOTAL] for c in raw)))
    if backend.model.mode == "http":
        row.update(dict.fromkeys(HTTP_FIELDS + ("req_tot",), 0))
        http = proxy.frontend.http if proxy.frontend is not None else None
        if http is not None and proxy.frontend is not None:
            # As HAProxy's stats proxy: its backend carries every byte of the listener's, and the
            # requests no page answered, each a session without a server (a connection error, a 503).
            c = view.counts(proxy.frontend.block)
            row.update(bin=c[Counter.BYTES_IN], bout=c[Counter.BYTES_OUT], stot=http.unserved,
                       req_tot=http.unserved, econ=http.unserved, hrsp_5xx=http.unserved)
    if backend.servers:
        row["downtime"] = int(backend.down_time + (view.now - backend.last_change if not up else 0))
    if view.show_addresses:
        row["algo"] = backend.model.balance.algorithm
    return row


def rows(view: StatsView, proxies: Iterable[Proxy], *, proxy_id: int = -1, types: int = -1,
         server_id: int = -1) -> list[dict[str, Value]]:
    """Every row of ``show stat``, in HAProxy's order: per proxy its frontend, its servers, its backend.
    ``proxy_id``, ``types`` (1 frontends, 2 backends, 4 servers, summed) and ``server_id`` select as
    ``show stat <iid> <type> <sid>`` does (-1: all)."""
    result = []
    for proxy in proxies:
        if proxy_id != -1 and proxy.uuid != proxy_id:
            continue
        if proxy.frontend is not None and types & 1:
            result.append(frontend_row(view, proxy))
        if proxy.backend is not None:
            if types & 4:
                for server in proxy.backend.live_servers:
                    if server_id == -1 or server.slot.id == server_id:
                        result.append(server_row(view, proxy, server))
            if types & 2:
                result.append(backend_row(view, proxy))
    return result


def hide_servers(rows_: Iterable[dict[str, Value]], proxies: Sequence[Proxy], *, down: bool,
                 maint: bool) -> list[dict[str, Value]]:
    """``show stat up`` / ``no-maint`` (and the page's ``;up``, ``;no-maint``): servers down (or in
    maintenance) left out, and the backends' status followed by (servers not stopped/servers)."""
    servers: dict[tuple[Any, Any], ServerRuntime] = {
        (proxy.uuid, server.slot.id): server for proxy in proxies if proxy.backend is not None
        for server in proxy.backend.live_servers}
    by_id: dict[Any, Proxy] = {proxy.uuid: proxy for proxy in proxies}
    result = []
    for row in rows_:
        if row["type"] == TYPE_SERVER:
            server = servers[(row["iid"], row["sid"])]
            if server.admin is AdminState.MAINT and (maint or down):
                continue
            if down and not server.check.health.up:
                continue
        elif row["type"] == TYPE_BACKEND:
            backend = by_id[row["iid"]].backend
            members = backend.live_servers if backend is not None else []
            up = sum(1 for s in members if s.check.health.up and s.admin is not AdminState.MAINT)
            row = dict(row, status=f"{row['status']} ({up}/{len(members)})")
        result.append(row)
    return result


def _module_values(row: dict[str, Value]) -> list[str]:
    if row["type"] == TYPE_SERVER:  # the ssl module counts servers; h1 and h2 only proxies
        return ["0"] * len(SSL_FIELDS) + [""] * (len(H2_FIELDS) + len(H1_FIELDS))
    return [_text(row.get(name, 0)) for name in MODULE_FIELDS]  # what a row counts, zeros elsewhere


def _text(value: Value) -> str:
    return "" if value is None else str(value)


def csv_line(row: dict[str, Value]) -> str:
    """One CSV line as HAProxy writes it (each field followed by a comma).  Text fields are written
    as they are: HAProxy quotes none of them in CSV."""
    values = [_text(row[name]) for name in FIELDS] + ["-"] + _module_values(row)
    return ",".join(values) + ",\n"


def csv(rows_: Iterable[dict[str, Value]]) -> str:
    """``show stat``: the header, one line per row, and HAProxy's empty line at the end."""
    return HEADER + "".join(csv_line(row) for row in rows_) + "\n"


# --- show stat typed ---------------------------------------------------------------------------------

# The origin, nature and scope letters and the type of each field in HAProxy 2.6's typed output, per
# kind of row (F frontend, B backend, S server): as haproxy 2.6.12 writes them, for every field a TCP
# row carries.
_TYPED = {
    "F": (
        "pxname=KNS:str svname=KNS:str scur=MGP:u32 smax=MMP:u32 slim=CLP:u32 stot=MCP:u64 bin=MCP:u64 "
        "bout=MCP:u64 dreq=MCP:u64 dresp=MCP:u64 ereq=MCP:u64 status=SGP:str pid=KGP:u32 iid=KGS:u32 "
        "sid=KGS:u32 type=CGS:u32 rate=MRP:u32 rate_lim=CLP:u32 rate_max=MMP:u32 req_rate=MRP:u32 "
        "req_rate_max=MMP:u32 req_tot=MCP:u64 comp_in=MCP:u64 comp_out=MCP:u64 comp_byp=MCP:u64 "
        "comp_rsp=MCP:u64 mode=CGS:str conn_rate=MRP:u32 conn_rate_max=MMP:u32 conn_tot=MCP:u64 "
        "dcon=MCP:u64 dses=MCP:u64 wrew=MCP:u64 eint=MCP:u64 ssl_sess=MCP:u64 ssl_reused_sess=MCP:u64 "
        "ssl_failed_handshake=MCP:u64 h2_headers_rcvd=MCP:u64 h2_data_rcvd=MCP:u64 "
        "h2_settings_rcvd=MCP:u64 h2_rst_stream_rcvd=MCP:u64 h2_goaway_rcvd=MCP:u64 "
        "h2_detected_conn_protocol_errors=MCP:u64 h2_detected_strm_protocol_errors=MCP:u64 "
        "h2_rst_stream_resp=MCP:u64 h2_goaway_resp=MCP:u64 h2_open_connections=MGP:u64 "
        "h2_backend_open_streams=MGP:u64 h2_total_connections=MCP:u64 h2_backend_total_streams=MCP:u64 "
        "h1_open_connections=MGP:u64 h1_open_streams=MGP:u64 h1_total_connections=MCP:u64 "
        "h1_total_streams=MCP:u64 h1_bytes_in=MCP:u64 h1_bytes_out=MCP:u64 h1_spliced_bytes_in=MCP:u64 "
        "h1_spliced_bytes_out=MCP:u64 hrsp_1xx=MCP:u64 hrsp_2xx=MCP:u64 hrsp_3xx=MCP:u64 hrsp_4xx=MCP:u64 "
        "hrsp_5xx=MCP:u64 hrsp_other=MCP:u64 intercepted=MCP:u64 cache_lookups=MCP:u64 "
        "cache_hits=MCP:u64 "),
    "B": (
        "pxname=KNS:str svname=KNS:str qcur=MGP:u32 qmax=MMP:u32 scur=MGP:u32 smax=MMP:u32 slim=CLP:u32 "
        "stot=MCP:u64 bin=MCP:u64 bout=MCP:u64 dreq=MCP:u64 dresp=MCP:u64 econ=MCP:u64 eresp=MCP:u64 "
        "wretr=MCP:u64 wredis=MCP:u64 status=SGP:str weight=MaP:u32 act=MGP:u32 bck=MGP:u32 "
        "chkdown=MCP:u64 lastchg=MAP:u32 downtime=MCP:u32 pid=KGP:u32 iid=KGS:u32 sid=KGS:u32 "
        "lbtot=MCP:u64 type=CGS:u32 rate=MGP:u32 rate_max=MGP:u32 cli_abrt=MCP:u64 srv_abrt=MCP:u64 "
        "comp_in=MCP:u64 comp_out=MCP:u64 comp_byp=MCP:u64 comp_rsp=MCP:u64 lastsess=MAP:s32 "
        "qtime=MaP:u32 ctime=MaP:u32 rtime=MaP:u32 ttime=MaP:u32 mode=CGS:str algo=CGS:str wrew=MCP:u64 "
        "connect=MCP:u64 reuse=MCP:u64 qtime_max=MMP:u32 ctime_max=MMP:u32 rtime_max=MMP:u32 "
        "ttime_max=MMP:u32 eint=MCP:u64 uweight=MaP:u32 agg_server_status=MGP:u32 "
        "agg_server_check_status=MGP:u32 agg_check_status=MGP:u32 ssl_sess=MCP:u64 "
        "ssl_reused_sess=MCP:u64 ssl_failed_handshake=MCP:u64 h2_headers_rcvd=MCP:u64 "
        "h2_data_rcvd=MCP:u64 h2_settings_rcvd=MCP:u64 h2_rst_stream_rcvd=MCP:u64 h2_goaway_rcvd=MCP:u64 "
        "h2_detected_conn_protocol_errors=MCP:u64 h2_detected_strm_protocol_errors=MCP:u64 "
        "h2_rst_stream_resp=MCP:u64 h2_goaway_resp=MCP:u64 h2_open_connections=MGP:u64 "
        "h2_backend_open_streams=MGP:u64 h2_total_connections=MCP:u64 h2_backend_total_streams=MCP:u64 "
        "h1_open_connections=MGP:u64 h1_open_streams=MGP:u64 h1_total_connections=MCP:u64 "
        "h1_total_streams=MCP:u64 h1_bytes_in=MCP:u64 h1_bytes_out=MCP:u64 h1_spliced_bytes_in=MCP:u64 "
        "h1_spliced_bytes_out=MCP:u64 cookie=CNS:str hrsp_1xx=MCP:u64 hrsp_2xx=MCP:u64 hrsp_3xx=MCP:u64 "
        "hrsp_4xx=MCP:u64 hrsp_5xx=MCP:u64 hrsp_other=MCP:u64 req_tot=MCP:u64 cache_lookups=MCP:u64 "
        "cache_hits=MCP:u64 "),
    "S": (
        "pxname=KNS:str svname=KNS:str qcur=MGP:u32 qmax=MMP:u32 scur=MGP:u32 smax=MMP:u32 stot=MCP:u64 "
        "bin=MCP:u64 bout=MCP:u64 dresp=MCP:u64 econ=MCP:u64 eresp=MCP:u64 wretr=MCP:u64 wredis=MCP:u64 "
        "status=SGP:str weight=MaP:u32 act=SGP:u32 bck=SGP:u32 chkfail=MCP:u64 chkdown=MCP:u64 "
        "lastchg=MAP:u32 downtime=MCP:u32 pid=KGP:u32 iid=KGS:u32 sid=KGS:u32 lbtot=MCP:u64 type=CGS:u32 "
        "rate=MRP:u32 rate_max=MMP:u32 check_status=MOP:str check_duration=MDP:u64 cli_abrt=MCP:u64 "
        "srv_abrt=MCP:u64 lastsess=MAP:s32 last_chk=MOP:str qtime=MaP:u32 ctime=MaP:u32 rtime=MaP:u32 "
        "ttime=MaP:u32 check_desc=MOP:str check_rise=CGS:u32 check_fall=CGS:u32 check_health=CGS:u32 "
        "addr=CGS:str mode=CGS:str wrew=MCP:u64 connect=MCP:u64 reuse=MCP:u64 srv_icur=MGP:u32 "
        "qtime_max=MMP:u32 ctime_max=MMP:u32 rtime_max=MMP:u32 ttime_max=MMP:u32 eint=MCP:u64 "
        "idle_conn_cur=MGP:u32 safe_conn_cur=MGP:u32 used_conn_cur=MGP:u32 need_conn_est=MGP:u32 "
        "uweight=MaP:u32 ssl_sess=MCP:u64 ssl_reused_sess=MCP:u64 ssl_failed_handshake=MCP:u64 "
        "slim=CLP:u32 qlimit=CGS:u32 throttle=MaP:u32 check_code=MOP:u32 tracked=CNS:str cookie=CNS:str "
        "src_ilim=CLP:u32 hanafail=MCP:u64 "),
}
TYPED_TAGS = {kind: dict(item.split("=") for item in text.split()) for kind, text in _TYPED.items()}
_KINDS = {TYPE_FRONTEND: "F", TYPE_BACKEND: "B", TYPE_SERVER: "S"}


_ORIGINS = {"M": "Metric", "S": "Status", "K": "Key", "C": "Config", "P": "Product"}
_NATURES = {"G": "Gauge", "L": "Limit", "M": "Max", "R": "Rate", "C": "Counter", "D": "Duration", "a": "Avg",
            "A": "Age", "T": "Time", "N": "Name", "O": "Output"}
_SCOPES = {"P": "Process", "S": "Service", "s": "System", "C": "Cluster"}


def _json_field(position: int, name: str, tags_and_type: str, value: Value) -> dict[str, Any]:
    tags, kind = tags_and_type.split(":")
    return {"field": {"pos": position, "name": name}, "processNum": 1,
            "tags": {"origin": _ORIGINS[tags[0]], "nature": _NATURES[tags[1]], "scope": _SCOPES[tags[2]]},
            "value": {"type": kind, "value": str(value) if kind == "str" else value}}


def _typed_fields(row: dict[str, Value]) -> list[tuple[int, str, str, Value]]:
    """(position, name, tags:type, value) of every field of a row that is not empty."""
    tags = TYPED_TAGS[_KINDS[row["type"] or 0]]
    fields = [(i, name, row[name]) for i, name in enumerate(FIELDS) if row[name] is not None]
    fields += [(len(FIELDS) + i, name, int(value))
               for i, (name, value) in enumerate(zip(MODULE_FIELDS, _module_values(row))) if value != ""]
    return [(i, name, tags.get(name, "MGS:str" if isinstance(value, str) else "MGP:u32"), value)
            for i, name, value in fields]


def typed(rows_: Iterable[dict[str, Value]]) -> str:
    """``show stat typed``: one ``<kind>.<iid>.<sid>.<pos>.<name>.1:<tags>:<type>:<value>`` line per
    field that is not empty, module fields included."""
    out = []
    for row in rows_:
        prefix = f"{_KINDS[row['type'] or 0]}.{row['iid']}.{row['sid']}"
        out += [f"{prefix}.{i}.{name}.1:{tags}:{value}\n" for i, name, tags, value in _typed_fields(row)]
    return "".join(out)


def json_stat(rows_: Iterable[dict[str, Value]]) -> str:
    """``show stat json``: a list per row of HAProxy's field objects, compact, on one line."""
    kinds = {TYPE_FRONTEND: "Frontend", TYPE_BACKEND: "Backend", TYPE_SERVER: "Server"}
    doc = [[{"objType": kinds[row["type"] or 0], "proxyId": row["iid"], "id": row["sid"],
             **_json_field(i, name, tags, value)} for i, name, tags, value in _typed_fields(row)]
           for row in rows_]
    return json.dumps(doc, separators=(",", ":")) + "\n"


# --- show info ---------------------------------------------------------------------------------------

# HAProxy 2.6's show info fields, in order (stats-t.h INF_*): position, name ("_" for a blank), and the
# tags and type of the typed output, as haproxy 2.6.12 writes them (its zlib fields, absent there, are
# absent here too; description is there when the global section sets one).
_INFO = (
    "0=Name=POS:str 1=Version=POS:str 2=Release_date=POS:str 3=Nbthread=CGS:u32 4=Nbproc=CGS:u32 "
    "5=Process_num=KGP:u32 6=Pid=SGP:u32 7=Uptime=MDP:str 8=Uptime_sec=MDP:u32 9=Memmax_MB=CLP:u32 "
    "10=PoolAlloc_MB=MGP:u32 11=PoolUsed_MB=MGP:u32 12=PoolFailed=MCP:u32 13=Ulimit-n=CLP:u32 "
    "14=Maxsock=CLP:u32 15=Maxconn=CLP:u32 16=Hard_maxconn=CLP:u32 17=CurrConns=MGP:u32 "
    "18=CumConns=MCP:u32 19=CumReq=MCP:u32 20=MaxSslConns=MMP:u32 21=CurrSslConns=MGP:u32 "
    "22=CumSslConns=MCP:u32 23=Maxpipes=CLP:u32 24=PipesUsed=MGP:u32 25=PipesFree=MGP:u32 "
    "26=ConnRate=MRP:u32 27=ConnRateLimit=CLP:u32 28=MaxConnRate=MMP:u32 29=SessRate=MRP:u32 "
    "30=SessRateLimit=CLP:u32 31=MaxSessRate=MRP:u32 32=SslRate=MRP:u32 33=SslRateLimit=CLP:u32 "
    "34=MaxSslRate=MMP:u32 35=SslFrontendKeyRate=MGP:u32 36=SslFrontendMaxKeyRate=MMP:u32 "
    "37=SslFrontendSessionReuse_pct=MGP:u32 38=SslBackendKeyRate=MRP:u32 "
    "39=SslBackendMaxKeyRate=MMP:u32 40=SslCacheLookups=MCP:u32 41=SslCacheMisses=MCP:u32 "
    "42=CompressBpsIn=MRP:u32 43=CompressBpsOut=MRP:u32 44=CompressBpsRateLim=CLP:u32 "
    "47=Tasks=MGP:u32 48=Run_queue=MGP:u32 49=Idle_pct=MaP:u32 50=node=COS:str 51=description=COS:str "
    "52=Stopping=MGP:u32 "
    "53=Jobs=MGP:u32 54=Unstoppable_Jobs=MGP:u32 55=Listeners=MGP:u32 56=ActivePeers=MGP:u32 "
    "57=ConnectedPeers=MGP:u32 58=DroppedLogs=MGP:u32 59=BusyPolling=MGP:u32 "
    "60=FailedResolutions=MGP:u32 61=TotalBytesOut=MGP:u64 62=TotalSplicdedBytesOut=MGP:u64 "
    "63=BytesOutRate=MRP:u64 64=DebugCommandsIssued=MGP:u32 65=CumRecvLogs=MCP:u32 "
    "66=Build_info=POS:str 67=Memmax_bytes=CLP:u32 68=PoolAlloc_bytes=MGP:u64 "
    "69=PoolUsed_bytes=MGP:u64 70=Start_time_sec=MDP:u32 71=Tainted=SGP:str ")
INFO_ENTRIES = [(int(pos), name.replace("_", " ") if name in ("Unstoppable_Jobs", "Build_info") else name,
                 tags) for pos, name, tags in (item.split("=") for item in _INFO.split())]
INFO_FIELDS: tuple[str, ...] = tuple(name for _, name, _ in INFO_ENTRIES)


def uptime_text(seconds: int) -> str:
    """HAProxy's ``Uptime``: ``0d 0h01m31s``."""
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{days}d {hours}h{minutes:02d}m{secs:02d}s"


def info(state: Runtime, counters: Counters, *, version: str, started: float, started_wall: float,
         now: float, listeners: int, threads: int = 1, pipes_in_use: int = 0,
         sampler: Optional[Sampler] = None) -> dict[str, Value]:
    """``show info``'s values: fastproxy's where it has them, HAProxy's zeros elsewhere."""
    g = state.config.global_
    fe_blocks = [fe.block for fe in state.frontends.values()]
    cum_conns = sum(counters(block)[Counter.CONN_TOTAL] for block in fe_blocks)
    bytes_out = sum(counters(block)[Counter.BYTES_OUT] for block in fe_blocks)
    try:
        import resource
        nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    except (ImportError, ValueError):
        nofile = 0
    uptime = max(int(now - started), 0)
    rate = sampler.rate(("process", ""), now, cum_conns) if sampler is not None else 0
    max_rate = sampler.highest_rate(("process", ""), rate) if sampler is not None else 0
    values: dict[str, Value] = dict.fromkeys(INFO_FIELDS, 0)
    values.update({
        # "HAProxy" is how the tools written for HAProxy's socket recognize it (haproxyadmin checks).
        "Name": "HAProxy", "Version": version, "Release_date": "", "Nbthread": threads, "Nbproc": 1,
        "Process_num": 1, "Pid": os.getpid(), "Uptime": uptime_text(uptime), "Uptime_sec": uptime,
        "Ulimit-n": nofile, "Maxsock": nofile, "Maxconn": state.maxconn, "Hard_maxconn": g.maxconn or 0,
        "CurrConns": state.current, "CumConns": cum_conns, "Maxpipes": g.maxpipes or 0,
        "PipesUsed": pipes_in_use, "ConnRate": rate, "ConnRateLimit": g.maxconnrate or 0,
        "MaxConnRate": max_rate, "SessRate": rate, "MaxSessRate": max_rate, "Idle_pct": 100,
        "node": g.node or os.uname().nodename, "description": g.description,
        "Stopping": int(state.stopping), "Jobs": state.current + listeners,
        "Listeners": listeners, "TotalBytesOut": bytes_out, "Build info": version,
        "Start_time_sec": int(started_wall), "Tainted": 0,
    })
    return values


def info_text(values: dict[str, Value]) -> str:
    return "".join(f"{name}: {_quoted(_text(values[name]))}\n" for name in INFO_FIELDS
                   if values[name] is not None) + "\n"


def _quoted(text: str) -> str:
    """HAProxy's csv_enc() as show info applies it to a text: quoted (inner quotes doubled) where it
    holds a comma, a quote or a line break (a ``description`` may)."""
    if not any(c in text for c in ',"\r\n'):
        return text
    return '"' + text.replace('"', '""') + '"'


# A field without a value (``description`` unless the global section sets one) is left out, as HAProxy
# leaves it out of every format.
def info_typed(values: dict[str, Value]) -> str:
    """``show info typed``: ``<pos>.<name>.1:<tags>:<type>:<value>`` per field."""
    return "".join(f"{pos}.{name}.1:{tags}:{_text(values[name])}\n" for pos, name, tags in INFO_ENTRIES
                   if values[name] is not None)


def info_json(values: dict[str, Value]) -> str:
    doc = [_json_field(pos, name, tags, values[name]) for pos, name, tags in INFO_ENTRIES
           if values[name] is not None]
    return json.dumps(doc, separators=(",", ":")) + "\n"


# --- show servers state ------------------------------------------------------------------------------

SERVERS_STATE_HEADER = (
    "# be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state srv_uweight srv_iweight "
    "srv_time_since_last_change srv_check_status srv_check_result srv_check_health srv_check_state "
    "srv_agent_state bk_f_forced_id srv_f_forced_id srv_fqdn srv_port srvrecord srv_use_ssl "
    "srv_check_port srv_check_addr srv_agent_addr srv_agent_port\n")

# server-t.h: SRV_ST_STOPPED 0, RUNNING 2; SRV_ADMF_FMAINT 0x01, CMAINT 0x04, FDRAIN 0x08;
# check-t.h: CHK_ST_CONFIGURED 0x02, ENABLED 0x04, PAUSED 0x08; CHK_RES_FAILED 2, PASSED 3.


def server_state_line(proxy: Proxy, server: ServerRuntime, now: float) -> str:
    slot, check, conf = server.slot, server.check, server.slot.server
    stopped = not check.health.up or server.admin is AdminState.MAINT
    op_state = 0 if stopped else 2
    admin = 0
    if server.admin is AdminState.MAINT:
        admin = 0x05 if conf.disabled and not server.admin_changed else 0x01
    elif server.admin is AdminState.DRAIN:
        admin = 0x08
    last = check.last
    status = CHECK_STATUS_CODES.get(last.status, 0) if last is not None else 1
    result = 0 if last is None else (3 if last.passed else 2)
    check_state = 0
    if conf.check:
        check_state = 0x02 | (0x04 if check.active else 0) | (0x08 if check.paused else 0)
    elif conf.disabled and check.paused:  # haproxy pauses the (unconfigured) check of a disabled server
        check_state = 0x08
    host, port = server.address
    check_port = conf.check_port or 0
    return (f"{proxy.uuid} {proxy.name} {slot.id} {slot.name} {host} {op_state} {admin} {slot.user_weight} "
            f"{conf.weight} {_age(now, server.last_change)} {status} {result} {check.health.health} "
            f"{check_state} 0 {int(bool(_configured_id(proxy)))} {int(conf.id is not None)} - {port} - 0 "
            f"{check_port} {conf.check_addr or '-'} - 0\n")


def servers_state(proxies: Iterable[Proxy], now: float) -> str:
    """``show servers state``: format version 1, one line per server of the given backends."""
    lines = [server_state_line(proxy, server, now) for proxy in proxies if proxy.backend is not None
             for server in proxy.backend.live_servers]
    return "1\n" + SERVERS_STATE_HEADER + "".join(lines) + "\n"


def wall_clock() -> float:
    return time.time()
