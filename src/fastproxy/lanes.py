"""Lanes: frontends whose connections the pump accepts, balances and dials itself, without Python.

Two parts.  ``lane_backend`` and the helpers beside it decide, sans-IO, whether a frontend can be a
lane at all (nothing on its path may need Python per connection: rules other than the flood defence
``lane_rules`` compiles, hooks, rate limits, queues, PROXY headers, stick rules, a ``source`` address to
bind, a balancing algorithm other than round robin or a hash of the source) and with which parameters
(weights, hashing, rules, log sinks).  ``Lanes`` binds the lanes of one running
configuration to the pump: it adds each listener to the pump, pushes every weight and state change of
the balancer to it at once, says when lanes rest after EMFILE, takes over (``adopt``) the clients a
lane could not place (a refused connect to retry or redispatch, no active server left), and writes the
log lines of lane pairs for targets the pump cannot write itself.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import os
import socket
import time
from collections.abc import Mapping
from typing import Any, Optional

from . import _linux, logformat, logs, samples, tcplog
from .acl import AclError, int_patterns, parse_networks
from .config import model
from .dispatch import Dispatcher
from .limits import AdmissionControl
from .pump import LOG_NEEDS_BACKEND, LOG_NEEDS_FRONTEND, Counter, EndReason, LaneRule, LaneSpec
from .runtime import BackendRuntime, FrontendRuntime, PairTimeouts, Runtime
from .server import LaneListener, tune_listener
from .session import Session
from .sticktables import PUMP_DATA, PumpStickTable

log = logging.getLogger("fastproxy")

LANE_LOG_FORMATS = {"rfc3164": 0, "raw": 1, "short": 2}  # the formats the pump writes itself


# --- the plan: can this frontend be a lane, and how ---------------------------------------------------

def lane_backend(state: Runtime, frontend: FrontendRuntime, *, hooks: bool) -> Optional[BackendRuntime]:
    """The backend a lane of ``frontend`` would dial, or None when the frontend needs Python per
    connection (``hooks``: a director, an error handler or a handler of the user's own)."""
    fe = frontend.model
    if (state.pump.lanes is None or hooks or state.config.global_.maxconnrate
            or (frontend.router is not None and lane_rules(fe, state.tables) is None)
            or (fe.log and not fe.tcplog and not lane_log_sinks(frontend.log))
            or (fe.log and not lane_can_log(frontend))
            or fe.rate_limit_sessions or fe.lanes is False
            or any(bind.ssl for bind in fe.binds)):  # TLS is made and opened in Python (tlsrelay)
        return None
    backend = state.backends.get(fe.default_backend or "")
    if backend is None or backend.needs_destination or backend.router is not None:
        return None
    be = backend.model
    if lane_hashing(be) is False or be.fullconn or be.stick_rules or be.source:
        return None
    for server in be.servers:
        if (server.maxconn or server.minconn or server.maxqueue or server.agent_check or server.send_proxy
                or server.send_proxy_v2 or server.slowstart or not server.port or server.source
                or server.ssl):
            return None
    return backend


def lane_rules(frontend: model.Frontend, tables: Mapping[str, Any]) -> Optional[list[LaneRule]]:
    """The frontend's rules as a lane runs them at accept, or None when they need Python.  A lane runs
    the common defence against floods: ``tcp-request connection`` rules only, ``track-sc<n> src
    [table <t>]`` (unconditional, once per counter) in a table the pump keeps
    (``sticktables.pump_can_keep``), and ``reject`` or ``accept`` without a condition or with one
    test, maybe negated: a connection counter (``sc<n>_conn_cur``, ``sc_conn_rate(<n>)``,
    ``src_conn_cnt([<t>])``...) against one integer pattern (``gt 10``, ``ge``, ``lt``, ``le``,
    ``eq``, ``a:b``), or ``src`` against addresses and networks (a whitelist: ``{ src -f <file> }``).
    Anything else (another action or fetch, several terms, ``use_backend``) keeps the frontend on the
    Python path."""
    if frontend.use_backends:
        return None
    rules: list[LaneRule] = []
    tracked: dict[int, PumpStickTable] = {}
    for rule in frontend.tcp_request_rules:
        if rule.phase != "connection":
            return None
        if rule.action == "track-sc":
            table = tables.get(rule.table or frontend.name)
            if (rule.condition is not None or rule.sample != model.Sample("src") or rule.counter in tracked
                    or not isinstance(table, PumpStickTable)):
                return None
            tracked[rule.counter] = table
            rules.append(LaneRule("track", rule.counter, table.counters))
        elif rule.action in ("accept", "reject"):
            if rule.condition is None:
                test: Optional[dict[str, Any]] = {}
            else:
                test = _lane_test(rule.condition, frontend, tables, tracked)
            if test is None:
                return None
            rules.append(LaneRule(rule.action, **test))
        else:
            return None
    return rules


def _lane_test(condition: model.Condition, frontend: model.Frontend, tables: Mapping[str, Any],
               tracked: dict[int, PumpStickTable]) -> Optional[dict[str, Any]]:
    """The ``LaneRule`` fields of a condition a lane can test (one term), or None."""
    if len(condition.groups) != 1 or len(condition.groups[0]) != 1:
        return None
    negated, term = condition.groups[0][0]
    acls = [term] if isinstance(term, model.Acl) else list(frontend.acls.get(term, ()))
    if len(acls) != 1 or acls[0].criterion.converters or acls[0].flags:
        return None
    acl = acls[0]
    negate = negated != condition.negate
    if acl.criterion.fetch == "src":
        try:
            networks = tuple(_network_prefix(network) for network in parse_networks(acl.values))
        except AclError:
            return None
        return {"scope": "address", "networks": networks, "negate": negate} if networks else None
    fetch, args = samples.fetch_of(acl.criterion.fetch)
    if fetch.counter is None or fetch.counter[1] not in PUMP_DATA:
        return None
    scope, data = fetch.counter
    number, table_name = samples.counter_arguments(fetch, args)
    try:
        ranges = int_patterns(acl.values)
    except AclError:
        return None
    if len(ranges) != 1:
        return None
    low, high = ranges[0]
    test = {"data": data, "negate": negate, "low": LaneRule.low if low is None else low,
            "high": LaneRule.high if high is None else high}
    if scope == "src":
        table = tables.get(table_name or frontend.name)
        if not isinstance(table, PumpStickTable):
            return None
        return {**test, "scope": "src", "table": table.counters}
    if table_name is not None or number not in tracked:
        return None
    return {**test, "scope": "sc", "counter": number, "table": tracked[number].counters}


def _network_prefix(network: Any) -> tuple[bytes, int]:
    """A network as a lane tests it: its IPv6 address (IPv4 mapped, as clients are) and prefix length."""
    if network.version == 4:
        return (0xFFFF00000000 | int(network.network_address)).to_bytes(16, "big"), 96 + network.prefixlen
    return int(network.network_address).to_bytes(16, "big"), network.prefixlen


def lane_can_log(frontend: FrontendRuntime) -> bool:
    """Whether a lane can give the frontend's log lines: the pump runs the log-format itself (where it
    writes the lines), or reports each ended pair with what the line needs (the addresses of the
    connections excepted: they are closed by then)."""
    fmt = frontend.log_format
    if fmt is None:
        return True
    if logformat.lane_program(fmt, logformat.LogRecord()) is None or (
            fmt.uses_unique_id and frontend.unique_id is not None):
        return False
    return bool(lane_log_sinks(frontend.log)) or not logformat.needs(
        fmt, logformat.FRONTEND_ADDRESS + logformat.BACKEND_ADDRESS)


def log_needs(fmt: Optional[logformat.Format]) -> int:
    """The ``LaneSpec.log_needs`` of a format: the addresses the pump must read for its lines."""
    if fmt is None:
        return 0
    return ((LOG_NEEDS_FRONTEND if logformat.needs(fmt, logformat.FRONTEND_ADDRESS) else 0)
            | (LOG_NEEDS_BACKEND if logformat.needs(fmt, logformat.BACKEND_ADDRESS) else 0))


def lane_log_program(frontend: FrontendRuntime, backend: BackendRuntime, pid: int, hostname: str) -> bytes:
    """The frontend's log-format as the pump runs it for a lane dialing ``backend``."""
    assert frontend.log_format is not None
    slots = frontend.model
    program = logformat.lane_program(frontend.log_format, logformat.LogRecord(
        frontend=frontend.name, backend=backend.name, pid=pid, hostname=hostname,
        request_captures=[None] * len(slots.request_captures) if slots.request_captures else None,
        response_captures=len(slots.response_captures)))
    assert program is not None
    return program


def lane_hashing(backend: model.Backend) -> Any:
    """How a lane picks for ``backend``: None (smooth weighted round robin), "map" or "table" (the
    client address hashed, as ``balance source`` / ``hash src``), or False when a lane cannot."""
    balance = backend.balance
    if balance.algorithm in ("roundrobin", "static-rr"):
        return None
    if balance.hash_balance_factor or not (balance.algorithm == "source" or (
            balance.algorithm == "hash" and balance.sample == model.Sample("src"))):
        return False
    return "map" if balance.hash_type == "map-based" else "table"


def lane_weights(backend: BackendRuntime) -> list[int]:
    """What a lane may pick: active servers that are usable, at their weight; backups only through
    Python (the lane hands a client back when no active server is left)."""
    return [slot.weight if slot.usable and not slot.backup else 0 for slot in backend.balancer.slots]


def lane_log_sinks(proxy_log: Optional[logs.ProxyLog]) -> Optional[list[tuple]]:
    """Where a lane may write its log lines itself, as ``LaneSpec.log_sinks`` takes them: the targets
    that are stdout/stderr or UDP (connected), in rfc3164, raw or short format, without sampling.
    None when some target needs Python (a UNIX socket by path, rfc5424, ``sample``), or when there is
    no target (lines then go to fastproxy's logger)."""
    if proxy_log is None:
        return None
    sinks = []
    for sender in proxy_log.senders:
        target = sender.target
        if target.sample is not None or target.format not in LANE_LOG_FORMATS:
            return None
        if target.level < logs.INFO:  # a target above info takes no traffic lines
            continue
        severity = max(logs.INFO, target.minlevel)
        if sender.fd >= 0:
            fd, stream = sender.fd, True
        elif sender.connected and sender.sock is not None:
            fd, stream = sender.sock.fileno(), False
        else:
            return None
        pri = {"rfc3164": f"<{target.facility * 8 + severity}>", "short": f"<{severity}>", "raw": ""}
        sinks.append((fd, stream, LANE_LOG_FORMATS[target.format], target.length,
                      pri[target.format].encode()))
    return sinks


def tcp_options(keepalive: model.KeepAlive) -> tuple[int, int, int, int]:
    return (int(keepalive.enabled), int(keepalive.idle or 0), int(keepalive.interval or 0),
            int(keepalive.count or 0))


# --- the binding: lanes of one running configuration -------------------------------------------------

class Lanes:
    """The lanes of one running configuration, bound to its pump and balancers."""

    def __init__(self, state: Runtime, dispatcher: Dispatcher, admission: AdmissionControl) -> None:
        self.state = state
        self.dispatcher = dispatcher
        self.admission = admission
        self._accept_errors_seen = 0

    def add(self, sock: socket.socket, frontend: FrontendRuntime, backend: BackendRuntime, *,
            backlog: int = socket.SOMAXCONN, accepting: bool = True) -> LaneListener:
        """Let the pump accept on ``sock`` for ``frontend``, dialing ``backend`` (with ``accepting``
        False, from ``lanes.set_enabled`` on)."""
        state, lanes = self.state, self.state.pump.lanes
        balancer = backend.balancer
        servers = [(server.raw_address, server.block, weight)
                   for server, weight in zip(backend.servers, lane_weights(backend))]
        hashing = lane_hashing(backend.model)
        fe = frontend.model
        sinks = lane_log_sinks(frontend.log) if fe.log else None
        timeouts = PairTimeouts.for_route(fe, backend.model)
        try:
            tune_listener(sock, fe.client_keepalive)  # accepted clients inherit the options
            index = lanes.add(LaneSpec(
                sock.fileno(), frontend_block=frontend.block, servers=servers, timeouts=timeouts,
                client_tcp=None, server_tcp=tcp_options(backend.model.server_keepalive),
                maxconn=fe.maxconn or 0, hashing=hashing, hash_seed=balancer.seed,
                log_ends=fe.log and fe.tcplog and sinks != [], log_sinks=sinks, log_frontend=fe.name,
                log_servers=[slot.name for slot in balancer.slots], log_dontlognull=fe.dontlognull,
                log_connect=fe.log and not fe.tcplog,
                log_program=lane_log_program(frontend, backend, state.pid, state.hostname)
                if fe.log and fe.tcplog else None, log_needs=log_needs(frontend.log_format),
                backend_block=backend.block, disabled=not accepting,
                rules=lane_rules(fe, state.tables) or ()))
        except BaseException:
            sock.close()
            raise
        lane = LaneListener(sock, state.pump, index, backlog)
        state.lane_listeners.append(lane)
        backend.lanes += 1

        # Weight and state changes (health, the runtime API) reach the lane at once.
        def changed() -> None:
            if hashing is None:
                lanes.set_weights(index, lane_weights(backend))
            elif hashing == "map":
                lanes.set_picks(index, server_map=balancer.hash_map)
            elif balancer.ring is None:  # only the first backup is left: Python picks it
                lanes.set_picks(index)
            else:
                table = balancer.ring.table  # the compiled ring's C table: looked up without the GIL
                lanes.set_picks(index, table=table,
                                table_servers=[balancer.ring_slot(name).index for name in table.names])
        if hashing is not None:
            changed()
        balancer.on_change.append(changed)

        # A server at a new address (``set server ... addr``): the lane dials it there from now on.
        def moved() -> None:
            lanes.set_servers(index, [(server.raw_address, server.block, weight) for server, weight
                                      in zip(backend.servers, lane_weights(backend))],
                              [slot.name for slot in balancer.slots])
            if hashing is not None:
                changed()
        backend.servers_moved.append(moved)
        if len(state.lane_listeners) == 1:
            state.background(asyncio.ensure_future(self._watch()))
        return lane

    async def _watch(self) -> None:
        """Lanes rest after EMFILE on their own; say so once, as the Python listener does."""
        while not self.state.stopping:
            await asyncio.sleep(1.0)
            errors = self.state.pump.lanes.accept_errors
            if errors and not self._accept_errors_seen:
                log.error("accept: out of file descriptors or memory; pausing accepts for 100 ms at a time")
            self._accept_errors_seen = errors

    def adopt(self, frontend_block: int, server_block: int, client_fd: int, error: int) -> None:
        """A client a lane could not place: from now on it goes the Python way (retries, redispatch,
        backup servers, the error handler)."""
        state = self.state
        frontend = state.frontend_blocks.get(frontend_block)
        if frontend is None or state.stopping:
            os.close(client_fd)
            return
        try:
            with socket.socket(fileno=client_fd) as sock:
                peer, sockname = sock.getpeername(), sock.getsockname()
                sock.detach()
        except OSError:  # the client is gone already
            os.close(client_fd)
            return
        self.admission.adopted(frontend)
        session = Session(client_fd, peer, frontend, sockname=sockname,
                          finished=lambda: self.admission.closed(frontend))
        session.backend = state.backends[frontend.model.default_backend or ""]
        server = state.servers.get(server_block)
        if server is None:  # no server had a weight: the balancer decides (backups, or <NOSRV>)
            self.dispatcher.choose_and_dial(session)
            return
        session.slot = server.slot
        server.backend.balancer.connection_started(server.slot)
        self.dispatcher.connect_failed(session, error)

    def pair_ended(self, frontend_block: int, server_block: int, reason: int, bytes_in: int,
                   bytes_out: int, peer: bytes, duration_ms: int, connect_ms: int) -> None:
        """The log line of a pair a lane made, for targets the pump does not write: the counts
        come from the pump's books."""
        frontend = self.state.frontend_blocks.get(frontend_block)
        server = self.state.servers.get(server_block)
        if frontend is None or server is None or (frontend.model.dontlognull and bytes_in == 0):
            return
        backend = server.backend
        counts = self.state.pump.counters
        assert frontend.log_format is not None
        self.state.log_count += 1
        record = logformat.LogRecord(
            client=_linux.peer_address(peer), server_address=server.address,
            accepted=time.time() - duration_ms / 1000, frontend=frontend.name, backend=backend.name,
            server=server.slot.name, bytes_in=bytes_in, bytes_out=bytes_out, connect_ms=connect_ms,
            total_ms=duration_ms, termination=tcplog.TERMINATION[EndReason(reason)],
            active=self.state.current,
            frontend_current=counts(frontend_block)[Counter.CONN_CUR],
            backend_current=sum(counts(block)[Counter.CONN_CUR] for block in backend.blocks),
            server_current=counts(server_block)[Counter.CONN_CUR], pid=self.state.pid,
            hostname=self.state.hostname)
        frontend.traffic_log(frontend.log_format.render(record), record)

    def ended_by(self) -> collections.Counter[EndReason]:
        """Lane pairs that ended, by reason."""
        counts: collections.Counter[EndReason] = collections.Counter()
        if self.state.lane_listeners:
            for reason, value in enumerate(self.state.pump.lanes.ended()):
                if value:
                    counts[EndReason(reason)] += value
        return counts
