"""The shared state of a running configuration: what every part of the runtime receives.

``Runtime`` is what uvicorn's ``ServerState`` is to its protocols: the frontends, backends and servers
as they run, the pump, the loop, and the few counts that span them (connections Python holds, whether
the engine is stopping).  The engine builds it and hands it to the modules that serve connections
(``limits``, ``dispatch``, ``lanes``, ``proxy``) and keep server state (``servers``); none of them
knows the engine.  The runtime objects hold no policy: each module decides what its own concern
needs and changes state only through the owners named in its docstring.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import os
import socket
import time
from dataclasses import dataclass
from typing import Any, Optional

from . import _linux, logformat, logs
from .acl import Router, compile_condition
from .balance import Balancer, ServerSlot, ServerState
from .config import model
from .errors import ConfigError
from .queues import Queues
from .persistence import Persistence
from .rate import FreqCounter
from .sticktables import StickTable, tables_for
from .variables import ProcessVariables
from .tls import ServerTls

from .health import ServerCheck
from .server import Handler, LaneListener, ListenerLike

log = logging.getLogger("fastproxy")

FAMILIES = {None: socket.AF_UNSPEC, "ipv4": socket.AF_INET, "ipv6": socket.AF_INET6}


def resolve(host: str, port: int, family: Optional[str] = None) -> tuple[int, tuple]:
    """(family, sockaddr) for a server address, resolved once at start as HAProxy does; ``family``
    is the ``ipv4@`` / ``ipv6@`` prefix of the address, if any."""
    infos = socket.getaddrinfo(host, port, FAMILIES[family], socket.SOCK_STREAM)
    resolved_family, _, _, _, address = infos[0]
    return resolved_family, address[:2]


def initial_address(server: model.Server) -> Optional[tuple[int, tuple]]:
    """Where a server is at start, as HAProxy's srv_iterate_initaddr() finds it: an IP address as
    written, else the ``init-addr`` methods in order (``last``, ``libc`` by default): ``last`` needs a
    server-state file (fastproxy reads none: it never applies), ``libc`` resolves the name, an IP stands
    for the server's, ``none`` gives None (the server starts in maintenance).  OSError when every method
    failed."""
    port = server.port or 0
    if _is_ip(server.host):
        return resolve(server.host, port, server.family)
    failure: Optional[OSError] = None
    for method in server.init_addr or ("last", "libc"):
        if method == "last":
            continue
        if method == "none":
            return None
        try:
            return resolve(server.host if method == "libc" else method, port, server.family)
        except OSError as exc:
            failure = failure or exc
    raise failure or OSError(f"no address found by 'init-addr {','.join(server.init_addr or ())}'")


def _is_ip(host: str) -> bool:
    try:
        socket.inet_pton(socket.AF_INET6 if ":" in host else socket.AF_INET, host.split("%", 1)[0])
    except OSError:
        return False
    return True


class AdminState(enum.Enum):
    """What an operator (or ``disabled`` in the file) says of a server, whatever its health says."""

    READY = "READY"
    DRAIN = "DRAIN"  # no new connections; checks go on
    MAINT = "MAINT"  # no traffic; checks stop


@dataclass(frozen=True)
class PairTimeouts:
    """The timeouts of one proxied connection, from its frontend and backend (seconds, None: none).

    ``timeout tunnel`` (the backend's, else the frontend's) replaces both idle timeouts once the pair
    is established, as it does in HAProxy for a TCP connection."""

    client: Optional[float]
    server: Optional[float]
    client_fin: Optional[float]
    server_fin: Optional[float]
    connect: Optional[float]

    @classmethod
    def for_route(cls, frontend: model.Frontend, backend: model.Backend) -> "PairTimeouts":
        client_t, server_t = frontend.timeouts, backend.timeouts
        tunnel = server_t.tunnel or client_t.tunnel
        return cls(client=tunnel or client_t.client, server=tunnel or server_t.server,
                   client_fin=client_t.client_fin, server_fin=server_t.server_fin,
                   connect=server_t.connect)


class ServerRuntime:
    """One server while it runs: where it is, its counter block, its balancer slot, its check, and
    its administrative state (written by ``servers.ServerStates`` only)."""

    __slots__ = ("backend", "slot", "block", "family", "address", "raw_address", "admin", "check", "agent",
                 "last_change", "down_time", "stopped", "admin_changed", "seen_total", "seen_at", "nolb",
                 "dynamic", "unresolved", "dialer", "tracked", "trackers", "operational", "tls")

    def __init__(self, backend: "BackendRuntime", slot: ServerSlot, block: int) -> None:
        server = slot.server
        self.backend = backend
        self.slot = slot
        self.block = block
        try:
            found = initial_address(server)
        except OSError as exc:
            raise ConfigError(f"server '{server.name}': cannot resolve '{server.host}': {exc}",
                              file=server.location.file, line=server.location.line,
                              keyword="server") from None
        # ``init-addr none`` and no address: in maintenance (HAProxy's RMAINT) until one is set.
        self.unresolved = found is None
        if self.unresolved:
            log.warning("[%s] : 'server %s/%s' : could not resolve address '%s', disabling server.",
                        server.location, backend.name, server.name, server.host)
        self.family, self.address = found or (socket.AF_INET, ("0.0.0.0", server.port or 0))
        self.raw_address = _linux.sockaddr(self.address)  # ready for the dialer
        backend.balancer.set_address(slot.name, self.address[0], self.address[1])  # resolved: hash-key addr
        self.admin = AdminState.MAINT if server.disabled or self.unresolved else AdminState.READY
        self.dialer = backend.dialer if server.source is None else backend.dialer_from(server.source)
        self.tls: Optional[ServerTls] = None  # ``ssl``: how to speak TLS to it (set by the engine)
        # ``track``: the server whose state this one follows, and the servers following this one.
        self.tracked: Optional[ServerRuntime] = None
        self.trackers: list[ServerRuntime] = []
        self.check: ServerCheck  # set by the engine once the health monitor exists
        self.agent: Optional[ServerCheck] = None  # the agent check (``agent-check``), when configured
        # The stats of its state (HAProxy's last_change and down_time), kept by servers.ServerStates
        # on the event loop's clock: when it last changed, the time spent stopped (DOWN or MAINT)
        # before the current spell, whether it is stopped now, whether an operator changed it.
        self.last_change = time.monotonic()
        self.down_time = 0.0
        self.stopped = server.disabled or self.unresolved
        self.admin_changed = False
        self.seen_total, self.seen_at = 0, 0.0  # stats: the connection total last read, and when
        self.nolb = False  # ``set server ... health stopping``: up, but no new connections
        # HAProxy's operational state, whatever the drain: RUNNING, STOPPING (NOLB) or STOPPED (down, or
        # in maintenance), as the last state-change line left it (servers.ServerStates).
        self.operational = "STOPPED" if self.stopped else "RUNNING"
        self.dynamic = False  # added at run time (``add server``)

    @property
    def name(self) -> str:
        return f"{self.backend.name}/{self.slot.name}"

    def check_target(self) -> tuple[int, tuple]:
        """Where a check of the server connects: ``addr`` and ``port`` when set, else the server."""
        server = self.slot.server
        family, (host, port) = self.family, self.address
        if server.check_addr:
            try:
                family, (host, _) = resolve(server.check_addr, 0)
            except OSError as exc:
                raise ConfigError(f"server '{server.name}': cannot resolve check address "
                                  f"'{server.check_addr}': {exc}", file=server.location.file,
                                  line=server.location.line, keyword="addr") from None
        return family, (host, server.check_port or port)

    def agent_target(self) -> tuple[int, tuple]:
        """Where the agent check connects: ``agent-addr``, else ``addr``, else the server; on
        ``agent-port``."""
        server = self.slot.server
        family, (host, _) = self.family, self.address
        named = server.agent_addr or server.check_addr
        if named:
            try:
                family, (host, _) = resolve(named, 0)
            except OSError as exc:
                raise ConfigError(f"server '{server.name}': cannot resolve agent address '{named}': {exc}",
                                  file=server.location.file, line=server.location.line,
                                  keyword="agent-addr") from None
        return family, (host, server.agent_port or 0)

    def address_for(self, sockname: Any) -> tuple:
        """The address to dial for a client that connected to ``sockname``: a server without a port
        takes the port the client connected to."""
        host, port = self.address
        return (host, port or sockname[1])


class BackendRuntime:
    """A backend while it runs: the model, its balancer and queues, its servers."""

    def __init__(self, backend: model.Backend, first_block: int) -> None:
        self.model = backend
        self.name = backend.name
        self.balancer = Balancer(backend)
        self.queues = Queues(self.balancer)
        self.log = logs.ProxyLog(backend.name, backend.log_targets) if backend.log_targets else None
        self.serving = False  # free slots are being handed to queued connections
        self.serve_again = False  # a slot freed up meanwhile
        self.dialer = self.dialer_from(backend.source)
        self.servers = [ServerRuntime(self, slot, first_block + slot.index) for slot in self.balancer.slots]
        for server in self.servers:
            if server.unresolved:  # its initial state, as ``disabled`` gives the balancer's
                self.balancer.set_state(server.slot.name, ServerState.MAINT)
        self.blocks = [server.block for server in self.servers]
        self.block = -1  # its own counter block, where its pairs' session times are folded (the engine's)
        self.lanes = 0  # lanes that dial it (they cannot enforce a server's maxconn)
        self.servers_moved: list[Any] = []  # told when a server's address changes (the lanes' lists)
        # The stats of its state, kept by servers.ServerStates: when it last went down (no usable
        # server left) or back up, how often it went down, the time spent down before now.
        self.last_change = time.monotonic()
        self.down_time = 0.0
        self.went_down = 0
        # Whether picking needs the address the client connected to (one more syscall per connection).
        self.needs_destination = self.balancer.needs_destination
        # ``tcp-request content`` rules run after the backend is chosen, before the server is; built
        # by the engine once the stick tables exist (track-sc rules count in them).
        self.router: Optional[Router] = None
        self.inspect_delay = backend.inspect_delay or 0.0
        # ``use-server`` rules: (server, condition), the first match choosing the server.
        self.server_rules = [(rule.backend, compile_condition(rule.condition, backend.acls))
                             for rule in backend.use_servers]
        self.denied = 0  # connections refused by its tcp-request content rules
        self.persistence: Optional[Persistence] = None  # its stick rules, once the tables exist

    def dialer_from(self, source: Optional[tuple[str, int]]) -> _linux.Dialer:
        """A dialer with the backend's keepalive settings, binding ``source`` (None: the kernel's
        choice) before each connect."""
        keepalive = self.model.server_keepalive
        return _linux.Dialer(nodelay=True, keepalive=keepalive.enabled, idle=keepalive.idle,
                             interval=keepalive.interval, count=keepalive.count, source=source)

    @property
    def live_servers(self) -> list["ServerRuntime"]:
        """Its servers but the deleted ones (``del server``), for what lists them."""
        return [server for server in self.servers if not server.slot.deleted]

    def raw_address_of(self, slot: ServerSlot, session: Any) -> bytes:
        """The raw sockaddr to dial ``slot`` for ``session``: only a server without a port looks at
        where the client connected (``session.sockname``, a syscall the common case never makes)."""
        server = self.servers[slot.index]
        if server.address[1]:
            return server.raw_address
        return _linux.sockaddr(server.address_for(session.sockname))

    def write_log(self, severity: int, message: str) -> None:
        """A line about the backend (server state changes): to its ``log`` targets, if any."""
        if self.log is not None:
            self.log.send(severity, message)


class HttpCounts:
    """A stats listener's requests, counted by ``stats_http`` as it answers them (in Python: this is off
    the data path; its connections and bytes go to the frontend's counter block, as a TCP frontend's
    do), for the HTTP columns HAProxy fills on the stats proxy's FRONTEND and BACKEND rows."""

    def __init__(self) -> None:
        self.requests = 0
        self.intercepted = 0  # answered by the listener itself: the page, monitor-uri, the exporter
        self.unserved = 0  # what no page answers: HAProxy passes it to the proxy's backend, without server
        self.responses = [0] * 6  # by status: 1xx, 2xx, 3xx, 4xx, 5xx, other (hrsp_*)

    def count(self, status: int, *, intercepted: bool) -> None:
        self.requests += 1
        self.intercepted += intercepted
        self.unserved += not intercepted
        self.responses[status // 100 - 1 if 100 <= status < 600 else 5] += 1


class FrontendRuntime:
    """A frontend while it runs: its listeners, counts, router and log."""

    def __init__(self, frontend: model.Frontend, block: int, handler: Handler,
                 backends: dict[str, model.Backend], tables: Optional[dict[str, StickTable]] = None) -> None:
        self.model = frontend
        self.name = frontend.name
        self.block = block
        self.handler = handler
        self.listeners: list[ListenerLike] = []
        self.current = 0
        self.denied = 0  # connections refused by tcp-request rules
        self.state = "OPEN"  # OPEN, PAUSED (``disable frontend``), STOP (``shutdown frontend``)
        self.maxconn = frontend.maxconn or 0  # 0: none; ``set maxconn frontend`` changes it
        self.maxconn_set = False  # by ``set maxconn frontend`` (show stat then shows it as it is)
        self.http = HttpCounts() if frontend.mode == "http" else None  # a stats listener's requests
        self.session_rate = FreqCounter()  # for ``rate-limit sessions``
        self.log = logs.ProxyLog(frontend.name, frontend.log_targets) if frontend.log_targets else None
        # The line of each session, compiled once: HAProxy's tcplog unless ``log-format`` says otherwise.
        self.log_format: Optional[logformat.Format] = None
        if frontend.tcplog:
            self.log_format = logformat.compile(frontend.log_format) if frontend.log_format \
                else logformat.TCP_LOG
        self.unique_id: Optional[logformat.Format] = logformat.compile(frontend.unique_id_format) \
            if frontend.unique_id_format else None
        self.log_format_sd: Optional[logformat.Format] = logformat.compile(frontend.log_format_sd) \
            if frontend.log_format_sd else None
        # A frontend with rules gets a router; one without goes straight to its default backend.
        has_rules = bool(frontend.use_backends or frontend.tcp_request_rules)
        self.router: Optional[Router] = Router.for_frontend(frontend, backends, tables) if has_rules else None
        self.tables = tables or {}  # its rules' stick counters (a Tracker per connection) read these
        # Rules reading what the client sends peek at it: content rules wait for it as long as
        # inspect-delay allows, and use_backend sees what arrived when they decided (HAProxy's analysers:
        # without content rules nothing waits, and use_backend sees what came with the connection).
        self.inspects = bool(self.router is not None and self.router.reads_content)
        self.inspect_delay = (frontend.inspect_delay or 0.0) if self.router is not None and \
            self.router.has_content_rules else 0.0

    def set_enabled(self, enabled: bool) -> None:
        """HAProxy's pause_proxy()/resume_proxy() (``disable|enable frontend``, SIGTTOU/SIGTTIN): its
        listeners stop listening (clients refused, the port free for another process to bind) or
        listen again; established connections go on.  OSError if one cannot listen again (another
        process listens on the port): the frontend stays PAUSED."""
        for listener in self.listeners:
            listener.set_enabled(enabled)
        self.state = "OPEN" if enabled else "PAUSED"

    def log_reads(self, aliases: tuple[logformat.Alias, ...]) -> bool:
        """Whether the session's log line (its format, or the unique id it writes) reads any of these."""
        return any(fmt is not None and logformat.needs(fmt, aliases)
                   for fmt in (self.log_format, self.unique_id))

    def traffic_log(self, message: str, record: Optional[logformat.LogRecord] = None) -> None:
        """One traffic log line, to the frontend's ``log`` targets (to stderr for a model without);
        ``record``: the session's, for the structured data of ``rfc5424`` targets."""
        if self.log is not None:
            sd = self.log_format_sd.render(record) if self.log_format_sd is not None and record else "-"
            self.log.send(logs.INFO, message, sd)
        else:
            log.info("%s", message)


class Runtime:
    """The state every part of a running configuration shares (built by the engine at start)."""

    def __init__(self, config: model.Config, loop: asyncio.AbstractEventLoop, pump: Any) -> None:
        self.config = config
        self.pid = os.getpid()  # %pid and %H of log lines
        self.hostname = socket.gethostname()
        self.log_count = 0  # traffic log lines written by Python (%lc)
        self.loop = loop
        self.pump = pump
        self.frontends: dict[str, FrontendRuntime] = {}
        self.backends: dict[str, BackendRuntime] = {}
        self.servers: dict[int, ServerRuntime] = {}  # by counter block
        self.frontend_blocks: dict[int, FrontendRuntime] = {}  # by counter block
        self.tables = tables_for(config)  # the stick tables, by name
        self.variables = ProcessVariables(config.global_.variables)  # the ``proc.`` ones
        self.python_current = 0  # client connections Python accepted (or took from a lane), not yet ended
        self.lane_listeners: list[LaneListener] = []  # where the pump accepts itself
        self.spare_blocks: list[int] = []  # counter blocks free for servers added at run time
        self.maxconn = config.global_.maxconn or 0  # the global one (0: none); ``set maxconn global``
        self.stopping = False
        self.idle = asyncio.Event()  # set when the last connection ends while stopping
        self._tasks: set[asyncio.Future] = set()

    @property
    def current(self) -> int:
        """Client connections open now, whoever accepted them."""
        return self.python_current + (self.pump.lanes.open_clients() if self.lane_listeners else 0)

    @property
    def tasks(self) -> set[asyncio.Future]:
        return self._tasks

    def background(self, task: asyncio.Future) -> None:
        """Keep a task (an error handler, a director, a PROXY header read) until it ends or stop
        cancels it."""
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def listeners(self) -> list[ListenerLike]:
        return [listener for frontend in self.frontends.values() for listener in frontend.listeners]
