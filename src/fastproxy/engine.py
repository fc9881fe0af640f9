"""The engine: runs one configuration from start to stop.

It builds the runtime of every backend (balancer, resolved server addresses, counter blocks), one pump,
and the listeners of every frontend with a handler each (the TCP proxy unless the user registered their
own).  It keeps the books per connection (limits, balancer counts, counters, the log line) and stops in
order: listeners first, then established connections end on their own or are cut after a grace period.
"""

from __future__ import annotations

import asyncio
import collections
import functools
import logging
import os
import socket
import time
from typing import Any, Optional

from . import _linux, logs
from .acl import Router
from .health import CheckResult, HealthMonitor, ServerCheck
from .balance import Balancer, ServerSlot, ServerState
from .config import model
from .errors import ConfigError, ProxyError, QueueTimeout
from .proxy import Director, ErrorHandler, Session, TCPProxy
from .pump import Counter, EndReason, Pump
from .queues import Pending, Queues
from .rate import FreqCounter
from .server import Handler, LaneListener, Listener, open_listener, tune_listener

log = logging.getLogger("fastproxy")

DEFAULT_GRACE = 10.0  # seconds established connections get on stop, without hard-stop-after
TERMINATION = {  # HAProxy's two-letter termination state of a TCP session, by how the pump ended it
    EndReason.CLOSED: "--",
    EndReason.CLIENT_RESET: "CD",
    EndReason.SERVER_RESET: "SD",
    EndReason.CLIENT_TIMEOUT: "cD",
    EndReason.SERVER_TIMEOUT: "sD",
    EndReason.ERROR: "PD",
    EndReason.SHUTDOWN: "KD",
    EndReason.SERVER_DOWN: "DD",
}


FAMILIES = {None: socket.AF_UNSPEC, "ipv4": socket.AF_INET, "ipv6": socket.AF_INET6}


def resolve(host: str, port: int, family: Optional[str] = None) -> tuple[int, tuple]:
    """(family, sockaddr) for a server address, resolved once at start as HAProxy does; ``family``
    is the ``ipv4@`` / ``ipv6@`` prefix of the address, if any."""
    infos = socket.getaddrinfo(host, port, FAMILIES[family], socket.SOCK_STREAM)
    family, _, _, _, address = infos[0]
    return family, address[:2]


class BackendRuntime:
    """A backend while it runs: the model, its balancer and where each server is."""

    def __init__(self, backend: model.Backend, first_block: int) -> None:
        self.model = backend
        self.name = backend.name
        self.balancer = Balancer(backend)
        self.queues = Queues(self.balancer)
        self.log = logs.ProxyLog(backend.name, backend.log_targets) if backend.log_targets else None
        self.serving = False  # the engine is handing free slots to queued connections
        self.serve_again = False  # a slot freed up meanwhile
        self.addresses: list[tuple] = []
        self.raw_addresses: list[bytes] = []  # sockaddrs ready for the dialer
        keepalive = backend.server_keepalive
        self.dialer = _linux.Dialer(nodelay=True, keepalive=keepalive.enabled, idle=keepalive.idle,
                                    interval=keepalive.interval, count=keepalive.count)
        self.blocks = [first_block + i for i in range(len(backend.servers))]
        self.families: list[int] = []
        # Whether picking needs the address the client connected to (one more syscall per connection).
        self.needs_destination = any("dst" in arg for arg in backend.balance.arguments)
        for server in backend.servers:
            try:
                family, address = resolve(server.host, server.port or 0, server.family)
                self.families.append(family)
                self.addresses.append(address)
                self.raw_addresses.append(_linux.sockaddr(self.addresses[-1]))
            except OSError as exc:
                raise ConfigError(f"server '{server.name}': cannot resolve '{server.host}': {exc}",
                                  file=server.location.file, line=server.location.line,
                                  keyword="server") from None

    def check_target(self, slot: ServerSlot) -> tuple[int, tuple]:
        """Where a check of the server connects: ``addr`` and ``port`` when set, else the server."""
        server = slot.server
        family, (host, port) = self.families[slot.index], self.addresses[slot.index]
        if server.check_addr:
            try:
                family, (host, _) = resolve(server.check_addr, 0)
            except OSError as exc:
                raise ConfigError(f"server '{server.name}': cannot resolve check address "
                                  f"'{server.check_addr}': {exc}", file=server.location.file,
                                  line=server.location.line, keyword="addr") from None
        return family, (host, server.check_port or port)

    def raw_address_of(self, slot: ServerSlot, session: Session) -> bytes:
        if self.addresses[slot.index][1]:
            return self.raw_addresses[slot.index]
        return _linux.sockaddr(self.address_of(slot, session))

    def address_of(self, slot: ServerSlot, session: Session) -> tuple:
        host, port = self.addresses[slot.index]
        if not port:  # a server without a port takes the port the client connected to
            port = session.sockname[1]
        return (host, port)


class FrontendRuntime:
    def __init__(self, frontend: model.Frontend, block: int, handler: Handler,
                 backends: dict[str, model.Backend]) -> None:
        self.model = frontend
        self.block = block
        self.handler = handler
        self.listeners: list[Listener] = []
        self.current = 0
        self.denied = 0  # connections refused by tcp-request rules
        self.session_rate = FreqCounter()  # for ``rate-limit sessions``
        self.log = logs.ProxyLog(frontend.name, frontend.log_targets) if frontend.log_targets else None
        # Where a lane of this frontend may write its log lines itself (see _lane_log_sinks).
        self.lane_log_sinks = _lane_log_sinks(self.log) if frontend.log else None
        # A frontend with rules gets a router; one without goes straight to its default backend.
        has_rules = bool(frontend.use_backends or frontend.tcp_request_rules)
        self.router: Optional[Router] = Router.for_frontend(frontend, backends) if has_rules else None
        # Content rules and SNI routing wait for the first bytes, as long as inspect-delay allows.
        self.inspects = bool(self.router is not None and frontend.inspect_delay and (
            self.router.needs_sni or any(r.phase == "content" for r in frontend.tcp_request_rules)))


class Engine:
    """Runs a Config: ``await engine.start()``, then ``await engine.stop()``."""

    def __init__(self, config: model.Config, *, pump_class: Any = None,
                 director: Optional[Director] = None, error_handler: Optional[ErrorHandler] = None,
                 handlers: Optional[dict[str, Handler]] = None) -> None:
        self.config = config
        self.pump_class = pump_class or Pump
        self.director = director
        self.error_handler = error_handler
        self.handlers = dict(handlers or {})  # frontend name -> a handler instead of the proxy
        self.backends: dict[str, BackendRuntime] = {}
        self.frontends: dict[str, FrontendRuntime] = {}
        self.pump: Any = None
        self.pairs: dict[int, Session] = {}  # by pump tag
        self._tasks: set[asyncio.Future] = set()
        self.python_current = 0  # client connections Python accepted (or took from a lane), not yet ended
        self._ended_by: collections.Counter[EndReason] = collections.Counter()  # Python's pairs, by end reason
        self.lanes: list[LaneListener] = []
        self._lane_blocks: dict[int, FrontendRuntime] = {}  # frontend counter block -> runtime, for lanes
        self._server_slots: dict[int, tuple[BackendRuntime, ServerSlot]] = {}  # counter block -> server
        self._accept_errors_seen = 0
        self._next_tag = 1
        self._paused_for_maxconn = False
        self.accept_rate = FreqCounter()  # for ``maxconnrate``
        self._rate_limited = False  # some rate limit applies: accepts are counted
        self._rate_timers: dict[Optional[str], asyncio.TimerHandle] = {}  # frontend (None: all) -> resume
        self._stopping = False
        self._idle = asyncio.Event()
        self.loop: asyncio.AbstractEventLoop
        self.health: HealthMonitor
        self._ramps: dict[tuple[str, str], asyncio.TimerHandle] = {}  # slowstarts under way

    # --- lifecycle --------------------------------------------------------------------------------

    async def start(self) -> None:
        """Resolve, build and listen; on any failure nothing stays open."""
        self.loop = asyncio.get_running_loop()
        cfg = self.config
        block = len(cfg.frontends)
        for backend in cfg.backends.values():
            self.backends[backend.name] = BackendRuntime(backend, block)
            block += len(backend.servers)
        self._default_fullconn()
        g = cfg.global_
        self.health = HealthMonitor(self.loop, spread=g.spread_checks, timeouts_of=_check_timeouts,
                                    changed=self._health_changed, established=self._established)
        for backend_runtime in self.backends.values():
            rules = backend_runtime.model.tcp_check_rules if backend_runtime.model.tcp_check else ()
            for slot in backend_runtime.balancer.slots:
                family, address = backend_runtime.check_target(slot)
                self.health.add(ServerCheck(backend_runtime, slot, family, address, rules))
        self._rate_limited = bool(g.maxconnrate or any(fe.rate_limit_sessions
                                                      for fe in cfg.frontends.values()))
        self.pump = self.pump_class(threads=g.nbthread, bufsize=g.bufsize, pipesize=g.pipesize,
                                    maxpipes=g.maxpipes or 0, splice=g.splice, counter_blocks=block,
                                    on_end=self._pair_ended)
        self.pump.start(self.loop)
        if hasattr(self.pump, "add_lane"):
            self.pump.maxconn = g.maxconn or 0
        for backend_runtime in self.backends.values():
            for slot in backend_runtime.balancer.slots:
                self._server_slots[backend_runtime.blocks[slot.index]] = (backend_runtime, slot)
            backend_runtime.balancer.on_change.append(
                functools.partial(self._servers_changed, backend_runtime))
        try:
            for index, frontend in enumerate(cfg.frontends.values()):
                handler = self.handlers.get(frontend.name) or TCPProxy(
                    self, director=self.director, error_handler=self.error_handler)
                runtime = FrontendRuntime(frontend, index, handler, cfg.backends)
                self.frontends[frontend.name] = runtime
                lane_backend = self._lane_backend(runtime)
                for bind in frontend.binds:
                    sock = open_listener(bind, backlog=frontend.maxconn or socket.SOMAXCONN)
                    if lane_backend is not None and not bind.accept_proxy:
                        runtime.listeners.append(self._add_lane(sock, runtime, lane_backend))
                        continue
                    closed = (lambda rt=runtime: self._closed(rt))
                    fast = None
                    if isinstance(handler, TCPProxy):
                        fast = functools.partial(handler.accept, runtime=runtime, finished=closed,
                                                 accept_proxy=bind.accept_proxy)
                    listener = Listener(sock, frontend, bind, handler, loop=self.loop,
                                        admit=lambda rt=runtime: self._admit(rt),
                                        opened=lambda rt=runtime: self._opened(rt),
                                        closed=closed, fast=fast)
                    runtime.listeners.append(listener)
        except BaseException:
            self._close_listeners()
            self.pump.stop()
            raise
        for runtime in self.frontends.values():
            for listener in runtime.listeners:
                listener.resume()
        self.health.start()

    # --- lanes: frontends the pump serves without Python per connection ------------------------------

    def _lane_backend(self, frontend: FrontendRuntime) -> Optional[BackendRuntime]:
        """The backend a lane of ``frontend`` would dial, if the frontend can be a lane at all: nothing
        on its path may need Python per connection (rules, hooks, logs, rate limits, queues, PROXY
        headers, a balancing algorithm other than round robin or a hash of the source).  With several
        pump threads, each accepts on the lane."""
        cfg = self.config
        fe = frontend.model
        if (not hasattr(self.pump, "add_lane") or cfg.global_.maxconnrate
                or not isinstance(frontend.handler, TCPProxy) or self.director is not None
                or self.error_handler is not None or frontend.router is not None
                or (fe.log and not fe.tcplog and not frontend.lane_log_sinks)
                or fe.rate_limit_sessions or fe.options.get("lanes") is False):
            return None
        backend = self.backends.get(fe.default_backend or "")
        if backend is None or backend.needs_destination:
            return None
        be = backend.model
        if _lane_hashing(be) is False or be.fullconn:
            return None
        for server in be.servers:
            if (server.maxconn or server.minconn or server.maxqueue or server.send_proxy
                    or server.send_proxy_v2 or server.slowstart or not server.port):
                return None
        return backend

    def _add_lane(self, sock: socket.socket, frontend: FrontendRuntime,
                  backend: BackendRuntime) -> LaneListener:
        client_t, server_t = frontend.model.timeouts, backend.model.timeouts
        tunnel = server_t.tunnel or client_t.tunnel
        ka_c, ka_s = frontend.model.client_keepalive, backend.model.server_keepalive
        balancer = backend.balancer
        servers = [(backend.raw_addresses[slot.index], backend.blocks[slot.index], weight)
                   for slot, weight in zip(balancer.slots, _lane_weights(backend))]
        hashing = _lane_hashing(backend.model)
        fe = frontend.model
        sinks = frontend.lane_log_sinks
        try:
            tune_listener(sock, ka_c)  # accepted clients inherit the options: no setsockopt per client
            index = self.pump.add_lane(
                sock.fileno(), frontend_block=frontend.block, servers=servers,
                client_timeout=tunnel or client_t.client, server_timeout=tunnel or server_t.server,
                client_fin_timeout=client_t.client_fin, server_fin_timeout=server_t.server_fin,
                connect_timeout=server_t.connect,
                client_tcp=None, server_tcp=_tcp_options(ka_s),
                maxconn=frontend.model.maxconn or 0, hashing=hashing, hash_seed=balancer.seed,
                log_ends=fe.log and fe.tcplog and sinks != [], log_sinks=sinks, log_frontend=fe.name,
                log_servers=[f"{backend.name}/{slot.name}" for slot in balancer.slots],
                log_dontlognull=fe.dontlognull, log_connect=fe.log and not fe.tcplog)
        except BaseException:
            sock.close()
            raise
        lane = LaneListener(sock, self.pump, index)
        self.lanes.append(lane)
        self._lane_blocks[frontend.block] = frontend

        # Weight and state changes (health, the runtime API) reach the lane at once.
        def changed() -> None:
            if hashing is None:
                self.pump.set_lane_weights(index, _lane_weights(backend))
            elif hashing == "map":
                self.pump.set_lane_picks(index, server_map=balancer.hash_map)
            elif balancer.ring is None:  # only the first backup is left: Python picks it
                self.pump.set_lane_picks(index)
            else:
                table = balancer.ring.table  # the compiled ring's C table: looked up without the GIL
                self.pump.set_lane_picks(index, table=table,
                                         table_servers=[balancer.slot(name).index for name in table.names])
        if hashing is not None:
            changed()
        balancer.on_change.append(changed)
        if len(self.lanes) == 1:
            self.background(asyncio.ensure_future(self._watch_lanes()))
        return lane

    async def _watch_lanes(self) -> None:
        """Lanes rest after EMFILE on their own; say so once, as the Python listener does."""
        while not self._stopping:
            await asyncio.sleep(1.0)
            errors = self.pump.accept_errors
            if errors and not self._accept_errors_seen:
                log.error("accept: out of file descriptors or memory; pausing accepts for 100 ms at a time")
            self._accept_errors_seen = errors

    def _adopt(self, tag: int, frontend_block: int, server_block: int, client_fd: int, error: int) -> None:
        """A client a lane could not place: from now on it goes the Python way (retries, redispatch,
        backup servers, the error handler)."""
        runtime = self._lane_blocks.get(frontend_block)
        if runtime is None or self._stopping:
            os.close(client_fd)
            return
        try:
            with socket.socket(fileno=client_fd) as sock:
                peer, sockname = sock.getpeername(), sock.getsockname()
                sock.detach()
        except OSError:  # the client is gone already
            os.close(client_fd)
            return
        self.python_current += 1
        runtime.current += 1
        self.pump.add_counter(runtime.block, Counter.CONN_CUR, 1)  # the lane counted it in CONN_TOTAL
        self.pump.open_delta(1)
        proxy = runtime.handler
        assert isinstance(proxy, TCPProxy)
        session = Session(proxy, client_fd, peer, runtime, sockname=sockname,
                          finished=lambda: self._closed(runtime))
        found = self._server_slots.get(server_block)
        if found is None:  # no server had a weight: the balancer decides (backups, or <NOSRV>)
            proxy.start(session)
            return
        session.backend, session.slot = found
        session.backend.balancer.connection_started(session.slot)
        proxy.connect_failed(session, error)

    def _lane_open(self) -> int:
        return self.pump.lane_open() if self.lanes else 0

    @property
    def current(self) -> int:
        """Client connections open now, whoever accepted them."""
        return self.python_current + self._lane_open()

    @property
    def ended_by(self) -> collections.Counter[EndReason]:
        """Pairs that ended, by reason: Python's and the lanes'."""
        merged = collections.Counter(self._ended_by)
        if self.lanes:
            for reason, value in enumerate(self.pump.lane_ended()):
                if value:
                    merged[EndReason(reason)] += value
        return merged

    def _close_listeners(self) -> None:
        for runtime in self.frontends.values():
            for listener in runtime.listeners:
                listener.close()

    async def stop(self, grace: Optional[float] = None) -> None:
        """Close the listeners, let established connections end within ``grace`` seconds, then cut."""
        if self._stopping:
            return
        self._stopping = True
        self._close_listeners()
        self.health.stop()
        for timer in list(self._rate_timers.values()) + list(self._ramps.values()):
            timer.cancel()
        self._rate_timers.clear()
        self._ramps.clear()
        await self.health.wait_stopped()
        if grace is None:
            grace = self.config.global_.hard_stop_after
            if grace is None:
                grace = DEFAULT_GRACE
        deadline = self.loop.time() + grace
        while self.current and self.loop.time() < deadline:
            self._idle.clear()
            try:
                await asyncio.wait_for(self._idle.wait(), min(0.1, max(deadline - self.loop.time(), 0)))
            except asyncio.TimeoutError:
                pass
        # Handlers still running are cancelled; pairs in the pump are cut.
        tasks = set(self._tasks)
        for runtime in self.frontends.values():
            for listener in runtime.listeners:
                tasks |= listener.tasks
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        for backend in self.backends.values():  # connections still waiting for a server
            for pending in list(backend.queues):
                self._leave_queue(backend, pending)
                pending.item.close()
        self.pump.stop()
        await asyncio.sleep(0)  # let the twin's end reports run
        for session in list(self.pairs.values()):  # connects cut while in progress
            session.close()
        self.pairs.clear()
        for runtime in list(self.frontends.values()) + list(self.backends.values()):
            if runtime.log is not None:
                runtime.log.close()

    def background(self, task: asyncio.Future) -> None:
        """Keep a task of the engine's (an error handler, a director) until it ends or stop cancels it."""
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def listening_addresses(self, frontend: Optional[str] = None) -> list[tuple]:
        """Where the listeners listen (useful with port 0)."""
        return [listener.address for runtime in self.frontends.values()
                if frontend in (None, runtime.model.name) for listener in runtime.listeners]

    # --- limits -------------------------------------------------------------------------------------

    def _admit(self, frontend: FrontendRuntime) -> int:
        """How many connections ``frontend`` may accept now; at 0 its listeners (or all) pause."""
        room = 1 << 30
        limit = self.config.global_.maxconn
        if limit:
            room = limit - self.current
            if room <= 0:
                self._pause_all()
                return 0
        if frontend.model.maxconn:
            frontend_room = frontend.model.maxconn - frontend.current
            if frontend_room <= 0:
                for listener in frontend.listeners:
                    listener.pause()
                return 0
            room = min(room, frontend_room)
        if self._rate_limited:
            room = min(room, self._rate_room(frontend))
        return room

    def _rate_room(self, frontend: FrontendRuntime) -> int:
        """How many connections ``maxconnrate`` and the frontend's ``rate-limit sessions`` let in now.
        At 0 the listeners they cover pause until the rate allows one more: clients wait in the kernel's
        backlog meanwhile, as with HAProxy."""
        now = self.loop.time()
        room = 1 << 30
        limits = ((self.accept_rate, self.config.global_.maxconnrate, None),
                  (frontend.session_rate, frontend.model.rate_limit_sessions, frontend))
        for counter, limit, runtime in limits:
            if limit:
                remain = counter.remain(now, limit)
                if not remain:
                    self._pause_for_rate(runtime, counter.delay(now, limit))
                    return 0
                room = min(room, remain)
        return room

    def _pause_for_rate(self, frontend: Optional[FrontendRuntime], delay: float) -> None:
        """Pause ``frontend``'s listeners (every listener for None) for ``delay`` seconds."""
        runtimes = [frontend] if frontend is not None else list(self.frontends.values())
        for runtime in runtimes:
            for listener in runtime.listeners:
                listener.pause()
        key = frontend.model.name if frontend is not None else None
        if key not in self._rate_timers:
            self._rate_timers[key] = self.loop.call_later(delay, self._rate_allows, key)

    def _rate_allows(self, key: Optional[str]) -> None:
        # Resumed listeners ask _admit again before accepting: any limit still reached pauses them.
        self._rate_timers.pop(key, None)
        for runtime in self.frontends.values():
            if key is None or runtime.model.name == key:
                for listener in runtime.listeners:
                    listener.resume()

    def _pause_all(self) -> None:
        self._paused_for_maxconn = True
        for runtime in self.frontends.values():
            for listener in runtime.listeners:
                listener.pause()

    def _opened(self, frontend: FrontendRuntime) -> None:
        self.python_current += 1
        if self.lanes:
            self.pump.open_delta(1)
        frontend.current += 1
        self.pump.add_counter(frontend.block, Counter.CONN_CUR, 1)
        self.pump.add_counter(frontend.block, Counter.CONN_TOTAL, 1)
        if self._rate_limited:
            now = self.loop.time()
            self.accept_rate.add(now)
            frontend.session_rate.add(now)

    def _closed(self, frontend: FrontendRuntime) -> None:
        self.python_current -= 1
        if self.lanes:
            self.pump.open_delta(-1)
        frontend.current -= 1
        self.pump.add_counter(frontend.block, Counter.CONN_CUR, -1)
        if self._stopping:
            if not self.current:
                self._idle.set()
            return
        # A slot is free again: listeners paused by a limit accept once more.
        limit = self.config.global_.maxconn
        if self._paused_for_maxconn and (not limit or self.current < limit):
            self._paused_for_maxconn = False
            for runtime in self.frontends.values():
                if not runtime.model.maxconn or runtime.current < runtime.model.maxconn:
                    for listener in runtime.listeners:
                        listener.resume()
        elif frontend.model.maxconn and frontend.current < frontend.model.maxconn:
            if not self._paused_for_maxconn:
                for listener in frontend.listeners:
                    listener.resume()

    # --- queues: connections waiting for a server slot ---------------------------------------------

    def _default_fullconn(self) -> None:
        """HAProxy's default ``fullconn``: 10% of the maxconn (the global one when unset) of the
        frontends that may use the backend.  Without any maxconn it stays unset: servers run at their
        maxconn (HAProxy always has a global maxconn, derived from ``ulimit -n`` when unset)."""
        totals: dict[str, int] = {}
        for frontend in self.config.frontends.values():
            maxconn = frontend.maxconn or self.config.global_.maxconn or 0
            names = {use.backend for use in frontend.use_backends}
            if frontend.default_backend:
                names.add(frontend.default_backend)
            for name in names:
                totals[name] = totals.get(name, 0) + maxconn
        for name, backend in self.backends.items():
            if not backend.model.fullconn and totals.get(name):
                backend.balancer.fullconn = max((totals[name] + 9) // 10, 1)

    def enqueue(self, session: Session, slot: Optional[ServerSlot]) -> None:
        """``session`` waits for a slot: in ``slot``'s queue, or in its backend's for None.  It waits at
        most ``timeout queue`` (``timeout connect`` when unset, as HAProxy), then is closed (sQ)."""
        backend = session.backend
        assert backend is not None
        pending = backend.queues.add(session, slot)
        timeouts = backend.model.timeouts
        timeout = timeouts.queue if timeouts.queue is not None else timeouts.connect
        if timeout:
            pending.timer = self.loop.call_later(timeout, self._queue_expired, backend, pending)
        # Queued connections raise the backend's load, and with it dynamic limits (minconn/fullconn).
        self.serve_queues(backend)

    def serve_queues(self, backend: BackendRuntime, slot: Optional[ServerSlot] = None) -> None:
        """Give free server slots to queued connections, oldest first: ``slot``'s (one of its
        connections ended), or every server's (None: servers changed, or the queues grew)."""
        if backend.serving:  # a dial below ended at once and freed a slot: one more round
            backend.serve_again = True
            return
        backend.serving = True
        queues = backend.queues
        try:
            while queues.waiting:
                backend.serve_again = False
                for candidate in ((slot,) if slot is not None else backend.balancer.slots):
                    while (pending := queues.next_for(candidate)) is not None:
                        self._leave_queue(backend, pending)
                        session = pending.item
                        session.proxy.dequeued(session, candidate)
                if not backend.serve_again:
                    break
                slot = None
        finally:
            backend.serving = False

    def _leave_queue(self, backend: BackendRuntime, pending: Pending) -> None:
        backend.queues.remove(pending)
        if pending.timer is not None:
            pending.timer.cancel()
            pending.timer = None

    def _queue_expired(self, backend: BackendRuntime, pending: Pending) -> None:
        pending.timer = None
        if not pending.waiting:
            return
        backend.queues.remove(pending, expired=True)
        session = pending.item
        session.proxy.fail(session, QueueTimeout(
            "queue-timeout", f"no slot on backend '{backend.name}' within timeout queue"))

    def _servers_changed(self, backend: BackendRuntime) -> None:
        """A server's state or weight changed.  With ``option redispatch``, connections queued for a
        server that is no longer usable are balanced again (HAProxy's pendconn_redistribute());
        without, they wait for it.  Servers that became usable take from the backend's queue."""
        queues = backend.queues
        if not queues.waiting or self._stopping:
            return
        if backend.model.redispatch:
            for slot in backend.balancer.slots:
                if slot.queued and not slot.usable:
                    for pending in queues.take_all(slot):
                        self._leave_queue(backend, pending)
                        session = pending.item
                        session.proxy.choose_and_dial(session)
        self.serve_queues(backend)

    def set_server_state(self, backend: str, server: str, state: "ServerState | str") -> None:
        """Set a server's state at run time: ``MAINT`` (no traffic, checks stop), ``DRAIN`` (no new
        connections, checks go on), ``UP`` (ready again: out of MAINT a checked server is up but
        checked at once, and down at its first failure, as HAProxy) or ``DOWN`` (down until a check or
        ``UP`` brings it back).  Only UP servers get new connections, queued ones included;
        established connections go on in every state, unless ``on-marked-down shutdown-sessions``."""
        if isinstance(state, str):
            state = ServerState(state.upper())
        check = self.health.get(backend, server)
        was_up = self._serving(check)
        if state is ServerState.MAINT or state is ServerState.DRAIN:
            check.admin = state.value
        elif state is ServerState.UP:
            leaving_maintenance = check.admin == "MAINT"
            check.admin = None
            if leaving_maintenance:
                self.health.leave_maintenance(check)
            else:
                self.health.set_up(check)
        else:
            check.admin = None
            self.health.set_down(check)
        self._apply_state(check, was_up, None)

    def _serving(self, check: ServerCheck) -> bool:
        return check.admin is None and check.health.up

    def _apply_state(self, check: ServerCheck, was_up: bool, result: Optional[CheckResult]) -> None:
        """Give the balancer the state health and administration make, and act on a change: log it,
        cut sessions (``on-marked-down``/``on-marked-up``), start a slowstart."""
        if check.admin == "MAINT":
            state = ServerState.MAINT
        elif not check.health.up:
            state = ServerState.DOWN
        elif check.admin == "DRAIN":
            state = ServerState.DRAIN
        else:
            state = ServerState.UP
        backend, slot = check.backend, check.slot
        up = state is ServerState.UP
        if not up:
            self._end_ramp(check)
        backend.balancer.set_state(slot.name, state)
        if up == was_up and state is not ServerState.MAINT:
            return
        server = slot.server
        if not up and state is not ServerState.DRAIN:
            if was_up:
                self._log_down(check, state, result)
            if server.on_marked_down == "shutdown-sessions":
                self.pump.cut_server(backend.blocks[slot.index])
        elif up and not was_up:
            self._log_up(check, result)
            if server.on_marked_up == "shutdown-backup-sessions" and not slot.backup:
                for other in backend.balancer.slots:
                    if other.backup:
                        self.pump.cut_server(backend.blocks[other.index])
            if server.slowstart and backend.balancer.ramps and not self._stopping:
                self._ramp(check, self.loop.time())

    def _health_changed(self, check: ServerCheck, result: Optional[CheckResult]) -> None:
        """A check (or an observed error) took a server up or down."""
        # The counter has flipped already: a ready server was serving iff it is not up now.
        was_up = check.admin is None and not check.health.up
        self._apply_state(check, was_up, result)

    def _established(self, check: ServerCheck) -> int:
        return self.pump.counters(check.backend.blocks[check.slot.index])[Counter.CONN_TOTAL]

    def _ramp(self, check: ServerCheck, started: float) -> None:
        """HAProxy's slowstart: the weight (and maxconn) of a server back up grows from one step to
        the full value over ``slowstart`` seconds, recomputed every max(1 s, slowstart / 20)."""
        key = (check.backend.name, check.slot.name)
        self._ramps.pop(key, None)
        slowstart = check.slot.server.slowstart or 0.0
        elapsed = self.loop.time() - started
        share = elapsed / slowstart if slowstart else 1.0
        check.backend.balancer.set_ramp(check.slot.name, share if share < 1 else None)
        if share < 1:
            self._ramps[key] = self.loop.call_later(max(1.0, slowstart / 20), self._ramp, check, started)

    def _end_ramp(self, check: ServerCheck) -> None:
        timer = self._ramps.pop((check.backend.name, check.slot.name), None)
        if timer is not None:
            timer.cancel()
        if check.slot.ramp is not None:
            check.backend.balancer.set_ramp(check.slot.name, None)

    def _log_down(self, check: ServerCheck, state: ServerState, result: Optional[CheckResult]) -> None:
        backend, slot = check.backend, check.slot
        if state is ServerState.MAINT:
            reason = "is going DOWN for maintenance"
        else:
            reason = "is DOWN" + _reason(result)
        active, backups = _counts(backend)
        self._state_log(backend, logs.NOTICE if state is ServerState.MAINT else logs.ALERT,
                        f"{'Backup Server' if slot.backup else 'Server'} {backend.name}/{slot.name} {reason}. "
                        f"{active} active and {backups} backup servers left. {slot.current} sessions active, "
                        f"{slot.queued} remaining in queue.")
        if not active and not backups:
            self._state_log(backend, logs.EMERG, f"backend {backend.name} has no server available!")

    def _log_up(self, check: ServerCheck, result: Optional[CheckResult]) -> None:
        backend, slot = check.backend, check.slot
        active, backups = _counts(backend)
        self._state_log(backend, logs.NOTICE,
                        f"{'Backup Server' if slot.backup else 'Server'} {backend.name}/{slot.name} is UP"
                        f"{_reason(result)}. {active} active and {backups} backup servers online. "
                        f"{backend.queues.waiting} total in queue.")

    def _state_log(self, backend: BackendRuntime, severity: int, message: str) -> None:
        """A server state change: on stderr as HAProxy's warnings, and to the backend's ``log``
        targets at HAProxy's levels (alert when a server goes down, emerg when none is left)."""
        if severity <= logs.ALERT:
            log.error("%s", message)
        else:
            log.warning("%s", message)
        if backend.log is not None:
            backend.log.send(severity, message)

    # --- the proxy's books ----------------------------------------------------------------------------

    def count_denied(self, session: Session) -> None:
        session.runtime.denied += 1

    def count_connect_error(self, backend: BackendRuntime, slot: ServerSlot) -> None:
        self.pump.add_counter(backend.blocks[slot.index], Counter.CONNECT_ERRORS, 1)
        if slot.server.observe and not self._stopping:
            self.health.observe_error(self.health.get(backend.name, slot.name))

    def connect_failed(self, session: Session, exc: ProxyError) -> None:
        self.pump.add_counter(session.runtime.block, Counter.CONNECT_ERRORS, 1)
        if session.frontend.log and session.frontend.tcplog:
            termination = "sQ" if isinstance(exc, QueueTimeout) else "SC"
            self.traffic_log(session.runtime, self._tcplog_line(session, termination, 0))

    def pair(self, session: Session, server_fd: int, *, connecting: bool,
             prefix: Optional[bytes] = None) -> None:
        """Hand a client and its upstream (connected, or connecting) to the pump."""
        backend = session.backend
        assert backend is not None
        tag = self._next_tag
        self._next_tag += 1
        slot = session.slot
        server_block = backend.blocks[slot.index] if slot is not None else -1
        self.pairs[tag] = session
        client_t, server_t = session.frontend.timeouts, backend.model.timeouts
        tunnel = server_t.tunnel or client_t.tunnel
        client_fd = session.lent_fd = session.fd  # the pump's now, until it gives it back
        session.fd = -1
        try:
            self.pump.add_pair(
                client_fd, server_fd,
                client_timeout=tunnel or client_t.client,
                server_timeout=tunnel or server_t.server,
                client_fin_timeout=client_t.client_fin,
                server_fin_timeout=server_t.server_fin,
                frontend_block=session.runtime.block, server_block=server_block, tag=tag,
                connecting=connecting, connect_timeout=server_t.connect, prefix=prefix)
        except Exception:
            self.pairs.pop(tag, None)
            session.lent_fd = -1
            os.close(client_fd)
            os.close(server_fd)
            if slot is not None:
                backend.balancer.connection_ended(slot)
                self.loop.call_soon(self.serve_queues, backend, slot)
            session.finished()
            raise

    def _pair_ended(self, tag: int, reason: int, bytes_in: int, bytes_out: int, error: int = 0,
                    client_fd: int = -1, frontend_block: int = -1, server_block: int = -1,
                    peer: Optional[bytes] = None, duration_ms: int = 0, connect_ms: int = 0) -> None:
        if peer is not None:  # a lane's pair ended: only its log line is Python's
            self._lane_log(frontend_block, server_block, reason, bytes_in, bytes_out, peer, duration_ms,
                           connect_ms)
            return
        if client_fd >= 0:  # a client a lane gives back
            self._adopt(tag, frontend_block, server_block, client_fd, error)
            return
        session = self.pairs.pop(tag, None)
        if session is None:
            return
        if reason == EndReason.CONNECT_FAILED:
            session.fd, session.lent_fd = session.lent_fd, -1  # the pump gave the client back
            if self._stopping:
                session.close()
            else:
                session.proxy.connect_failed(session, error)
            return
        self._ended_by[EndReason(reason)] += 1
        backend = session.backend
        slot = session.slot
        if slot is not None and backend is not None:
            backend.balancer.connection_ended(slot)
            if backend.balancer.queued:
                self.serve_queues(backend, slot)
        frontend = session.frontend
        if frontend.log and frontend.tcplog and not (frontend.dontlognull and bytes_in == 0):
            self.traffic_log(session.runtime, self._tcplog_line(session, TERMINATION[EndReason(reason)],
                                                                bytes_out))
        session.finished()

    def _lane_log(self, frontend_block: int, server_block: int, reason: int, bytes_in: int,
                  bytes_out: int, peer: bytes, duration_ms: int, connect_ms: int) -> None:
        """The tcplog line of a pair a lane made: the counts come from the pump's books."""
        runtime = self._lane_blocks.get(frontend_block)
        found = self._server_slots.get(server_block)
        if runtime is None or found is None or (runtime.model.dontlognull and bytes_in == 0):
            return
        backend, slot = found
        counts = self.pump.counters
        server_current = counts(server_block)[Counter.CONN_CUR]
        backend_current = sum(counts(block)[Counter.CONN_CUR] for block in backend.blocks)
        host, port = _linux.peer_address(peer)[:2]
        line = _tcplog(f"{host}:{port}", duration_ms / 1000, runtime.model.name, backend.name, slot.name,
                       connect_ms, bytes_out, TERMINATION[EndReason(reason)], self.current,
                       counts(frontend_block)[Counter.CONN_CUR], backend_current, server_current, 0)
        self.traffic_log(runtime, line)

    def _tcplog_line(self, session: Session, termination: str, bytes_out: int) -> str:
        """HAProxy's ``option tcplog`` line: ``%ci:%cp [%t] %ft %b/%s %Tw/%Tc/%Tt %B %ts
        %ac/%fc/%bc/%sc/%rc %sq/%bq``.  The connect completes in the pump, unseen by Python: %Tc is
        reported as 0 once the pair was established (HAProxy gives milliseconds there)."""
        elapsed = time.monotonic() - session.started
        backend, slot = session.backend, session.slot
        server_current = slot.current if slot is not None else 0
        backend_current = sum(s.current for s in backend.balancer.slots) if backend is not None else 0
        return _tcplog(_peer(session), elapsed, session.frontend.name,
                       backend.name if backend else session.frontend.name, slot.name if slot else "<NOSRV>",
                       0 if slot is not None else -1, bytes_out, termination, self.current,
                       session.runtime.current, backend_current, server_current, max(session.attempt - 1, 0))

    def log_connect(self, session: Session) -> None:
        """Without ``option tcplog``, HAProxy logs each accepted connection in one short line."""
        sockname = session.sockname
        self.traffic_log(session.runtime, f"Connect from {_peer(session)} to {sockname[0]}:{sockname[1]} "
                                          f"({session.frontend.name}/TCP)")

    def traffic_log(self, frontend: FrontendRuntime, message: str) -> None:
        """One traffic log line, to the frontend's ``log`` targets (to stderr for a model without)."""
        if frontend.log is not None:
            frontend.log.send(logs.INFO, message)
        else:
            log.info("%s", message)

    # --- observability ------------------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        """Counters of every frontend and server, read live from the pump."""
        fields = [c.name.lower() for c in Counter]
        result: dict[str, Any] = {"frontends": {}, "servers": {}, "active_pairs": self.pump.active}
        for name, fe in self.frontends.items():
            result["frontends"][name] = dict(zip(fields, self.pump.counters(fe.block)))
        result["backends"] = {}
        for name, be in self.backends.items():
            queues = be.queues
            result["backends"][name] = {"queue_cur": queues.backend.length, "queue_max": queues.backend.max,
                                        "queue_expired": queues.backend.expired,
                                        "queued_total": queues.waiting}
            for slot in be.balancer.slots:
                values = dict(zip(fields, self.pump.counters(be.blocks[slot.index])))
                values["state"] = slot.state.value
                check = self.health.get(name, slot.name)
                last = check.last
                values.update(check_status=last.status if last else None,
                              check_info=last.info if last else None,
                              check_duration_ms=round(last.duration * 1000) if last else None,
                              health=check.health.describe() if check.active else None,
                              failed_checks=check.failed_checks, down_transitions=check.went_down)
                queue = queues.servers[slot.index]
                values.update(queue_cur=queue.length, queue_max=queue.max, queue_expired=queue.expired)
                result["servers"][f"{name}/{slot.name}"] = values
        return result


def _tcplog(peer: str, elapsed: float, frontend: str, backend: str, server: str, connect_ms: int,
            bytes_out: int, termination: str, active: int, frontend_current: int, backend_current: int,
            server_current: int, retries: int) -> str:
    """HAProxy's tcplog line from its parts (``elapsed``: seconds since the accept)."""
    accepted = time.time() - elapsed
    stamp = logs.second_stamp("%d/%b/%Y:%H:%M:%S", accepted) + f".{int(accepted % 1 * 1000):03d}"
    return (f"{peer} [{stamp}] {frontend} {backend}/{server} 0/{connect_ms}/{int(elapsed * 1000)} {bytes_out} "
            f"{termination} {active}/{frontend_current}/{backend_current}/{server_current}/{retries} 0/0")


def _check_timeouts(backend: BackendRuntime) -> tuple[Optional[float], Optional[float]]:
    timeouts = backend.model.timeouts
    return timeouts.connect, timeouts.check


def _counts(backend: BackendRuntime) -> tuple[int, int]:
    """Usable active and backup servers of a backend."""
    slots = backend.balancer.slots
    return (sum(1 for s in slots if s.usable and not s.backup), sum(1 for s in slots if s.usable and s.backup))


def _reason(result: Optional[CheckResult]) -> str:
    """HAProxy's ``, reason: ..., info: "...", check duration: Nms`` of a state change."""
    if result is None:
        return ""
    text = f", reason: {result.description}"
    if result.info:
        text += f', info: "{result.info}"'
    return text + f", check duration: {round(result.duration * 1000)}ms"


def _lane_log_sinks(proxy_log: Optional[logs.ProxyLog]) -> Optional[list[tuple]]:
    """Where a lane may write its tcplog lines itself, as ``Pump.add_lane`` takes them: the targets
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


LANE_LOG_FORMATS = {"rfc3164": 0, "raw": 1, "short": 2}


def _lane_hashing(backend: model.Backend) -> Any:
    """How a lane picks for ``backend``: None (smooth weighted round robin), "map" or "table" (the
    client address hashed, as ``balance source`` / ``hash src``), or False when a lane cannot."""
    balance = backend.balance
    if balance.algorithm in ("roundrobin", "static-rr"):
        return None
    if balance.hash_balance_factor or not (
            balance.algorithm == "source" or (balance.algorithm == "hash" and balance.arguments == ("src",))):
        return False
    return "map" if balance.hash_type == "map-based" else "table"


def _lane_weights(backend: BackendRuntime) -> list[int]:
    """What a lane may pick: active servers that are usable, at their weight; backups only through
    Python (the lane hands a client back when no active server is left)."""
    return [slot.weight if slot.usable and not slot.backup else 0 for slot in backend.balancer.slots]


def _tcp_options(keepalive: model.KeepAlive) -> tuple[int, int, int, int]:
    return (int(keepalive.enabled), int(keepalive.idle or 0), int(keepalive.interval or 0),
            int(keepalive.count or 0))


def _peer(session: Session) -> str:
    peer = session.peername
    if isinstance(peer, tuple):
        return f"{peer[0]}:{peer[1]}"
    return str(peer)
