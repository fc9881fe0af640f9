"""The engine: runs one configuration from start to stop.  It is the composition root, nothing more.

``start`` resolves the backends, builds the shared ``runtime.Runtime``, the pump, the owners of each
concern (``servers.ServerStates``, ``health.HealthMonitor``, ``limits.AdmissionControl``,
``dispatch.Dispatcher``, ``lanes.Lanes``) and wires them to one another with narrow callables, then
opens the listeners of every frontend (a lane where the pump can serve it alone, else a Python
listener feeding the TCP proxy or the user's handler), the runtime API on the ``stats socket``
lines (``runtime_api``) and the HTTP stats listeners of the ``mode http`` stats proxies
(``stats_http``), both over one ``operations.Operations``.  ``stop`` closes in order: listeners
first, then established connections end on their own or are cut after the grace period.  ``stats`` reads
the books.  No other module imports this one.
"""

from __future__ import annotations

import asyncio
import collections
import functools
import logging
import socket
import ssl
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Optional

from .acl import Router
from .config import model, validate
from .dispatch import Dispatcher
from .errors import ConfigError
from .extcheck import NOT_USED, ExternalCheck
from . import logs, tcplog, tls
from .health import AgentReply, CheckResult, HealthMonitor, ServerCheck, ServerHealth, check_tls_context
from .balance import ServerState
from .lanes import Lanes, lane_backend
from .limits import AdmissionControl
from .persistence import Persistence
from .proxy import TCPProxy
from .pump import Counter, EndReason, Pump, default_threads
from .runtime import BackendRuntime, FrontendRuntime, Runtime, ServerRuntime
from . import stats
from .runtime_api import RuntimeApi
from .operations import Operations
from .runtime_commands import COMMANDS
from .handover import Opener, PairReceiver, PairSender, backlog_of, bind_listener
from .server import Handler, LaneListener, Listener, listen_backlog
from .servers import ServerStates
from .session import Director, ErrorHandler
from .sticktables import pump_can_keep
from .tls import BindTls, ServerTls
from .tlsrelay import WithTls

if TYPE_CHECKING:  # pragma: no cover
    from .stats_http import StatsListener

DEFAULT_GRACE = 10.0  # seconds established connections get on stop, without hard-stop-after
MOVE_ROUND = 0.02  # seconds between two rounds of pairs moving to a reload's new worker
SPARE_BLOCKS = 1024  # counter blocks kept for servers added at run time (``add server``): 96 bytes each

log = logging.getLogger("fastproxy")


def default_fullconn(config: model.Config, backends: dict[str, BackendRuntime]) -> None:
    """HAProxy's default ``fullconn``: 10% of the maxconn (the global one when unset) of the
    frontends that may use the backend.  Without any maxconn it stays unset: servers run at their
    maxconn (HAProxy always has a global maxconn, derived from ``ulimit -n`` when unset)."""
    totals: dict[str, int] = {}
    for frontend in config.frontends.values():
        maxconn = frontend.maxconn or config.global_.maxconn or 0
        names = {use.backend for use in frontend.use_backends}
        if frontend.default_backend:
            names.add(frontend.default_backend)
        for name in names:
            totals[name] = totals.get(name, 0) + maxconn
    for name, backend in backends.items():
        if not backend.model.fullconn and totals.get(name):
            backend.balancer.fullconn = max((totals[name] + 9) // 10, 1)


def _first_bind(frontend: Optional[model.Frontend]) -> tuple[str, str]:
    """An external check's ``<proxy_address> <proxy_port>``: its proxy's first bind (a ``listen``'s),
    ``NOT_USED`` twice for a backend, which has none (HAProxy's prepare_external_check())."""
    bind = frontend.binds[0] if frontend is not None and frontend.binds else None
    if bind is None or bind.fd is not None:
        return NOT_USED, NOT_USED
    return bind.host or "0.0.0.0", str(bind.port)


def _own_id(proxy: stats.Proxy) -> bool:
    return any(runtime is not None and runtime.model.id for runtime in (proxy.frontend, proxy.backend))


def _checks_send_proxy(server: model.Server) -> bool:
    """HAProxy's rule: ``check-send-proxy``, or ``send-proxy(-v2)`` without a check ``port`` or ``addr``."""
    return server.check_send_proxy or ((server.send_proxy or server.send_proxy_v2)
                                       and not server.check_port and not server.check_addr)


def _checks_speak_tls(server: model.Server) -> bool:
    """HAProxy's rule: ``check-ssl``, or ``ssl`` without a check ``port`` or ``addr`` of its own."""
    return server.check_ssl or (server.ssl and not server.check_port and not server.check_addr)


def _check_tls(server: model.Server, rules: Sequence[model.TcpCheckRule],
               default_verify: str) -> Optional[ssl.SSLContext]:
    """The TLS context of a server's checks, when they speak TLS (``check-ssl``, ``tcp-check connect
    ssl``); a certificate or CA file it cannot read is the server line's error."""
    if not (server.check and (_checks_speak_tls(server) or any(rule.ssl for rule in rules))):
        return None
    try:
        return check_tls_context(server, default_verify)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"server '{server.name}': cannot load the TLS files of its checks: {exc}",
                          file=server.location.file, line=server.location.line, keyword="server") from None


def _server_tls(server: model.Server, default_verify: str) -> ServerTls:
    """A ``server ... ssl``'s TLS; a certificate or CA file it cannot read is the server line's error."""
    try:
        return ServerTls(server, default_verify)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"server '{server.name}': cannot load its TLS settings: {exc}",
                          file=server.location.file, line=server.location.line, keyword="server") from None


def _bind_tls(bind: model.Bind, number: int) -> Optional[BindTls]:
    """A ``bind ... ssl``'s TLS (``number``: the listener's, from 1 in its frontend, HAProxy's name of
    a listener without ``name`` in log lines); a certificate or CA file it cannot read is the bind
    line's error."""
    if not bind.ssl:
        return None
    try:
        return BindTls(bind, bind.name or str(number))
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"bind '{bind.host}:{bind.port}': cannot load its TLS settings: {exc}",
                          file=bind.location.file, line=bind.location.line, keyword="bind") from None


class Engine:
    """Runs a Config: ``await engine.start()``, then ``await engine.stop()``."""

    def __init__(self, config: model.Config, *, pump_class: Any = None,
                 director: Optional[Director] = None, error_handler: Optional[ErrorHandler] = None,
                 handlers: Optional[dict[str, Handler]] = None,
                 open_listener: Optional[Opener] = None) -> None:
        self.config = config
        # How a bind gets its listening socket: bound here, or inherited from a master (handover.py).
        self.open_listener: Opener = open_listener or bind_listener
        self.pump_class = pump_class or Pump
        self.director = director
        self.error_handler = error_handler
        self.handlers = dict(handlers or {})  # frontend name -> a handler instead of the proxy
        self._cut_now = False  # a hard stop came: no grace left for what is established
        self._stats_paused = False  # SIGTTOU: what HAProxy logs of its stats socket's listener
        self.state: Runtime
        self.pump: Any = None
        self.health: HealthMonitor
        self.servers: ServerStates
        self.admission: AdmissionControl
        self.dispatcher: Dispatcher
        self.lane_binding: Lanes
        self.runtime_api: Optional[RuntimeApi] = None  # the stats sockets, when configured
        self.operations: Optional[Operations] = None  # what the stats socket and listeners act on
        self.stats_listeners: dict[str, StatsListener] = {}  # ``mode http`` stats proxies, by name

    # --- lifecycle --------------------------------------------------------------------------------

    async def start(self, *, accepting: bool = True) -> None:
        """Resolve, build and listen; on any failure nothing stays open.  With ``accepting`` False the
        listeners listen (clients wait in the kernel's backlog) but nothing accepts them before
        ``accept()``: a master's new worker first reads the servers it is to serve (the fleet's)."""
        validate.check(self.config)  # a configuration built through the API is checked as a file is
        loop = asyncio.get_running_loop()
        cfg, g = self.config, self.config.global_
        backends: dict[str, BackendRuntime] = {}
        block = len(cfg.frontends)
        for backend in cfg.backends.values():
            backends[backend.name] = BackendRuntime(backend, block)
            block += len(backend.servers)
        for backend_runtime in backends.values():  # a block of its own: the backend's session times
            backend_runtime.block = block
            block += 1
        default_fullconn(cfg, backends)

        state = self.state = Runtime(cfg, loop, None)  # its pump comes once what it reports to exists
        state.backends = backends
        state.spare_blocks = list(range(block + SPARE_BLOCKS - 1, block - 1, -1))  # popped lowest first
        block += SPARE_BLOCKS
        self.health = HealthMonitor(loop, spread=g.spread_checks, changed=self._health_changed,
                                    established=self._established, counted=self._check_counted,
                                    agent_replied=self._agent_replied)
        self._by_check: dict[ServerCheck, ServerRuntime] = {}
        for backend_runtime in backends.values():
            be = backend_runtime.model
            rules = be.tcp_check_rules if be.tcp_check else ()
            for server in backend_runtime.servers:
                state.servers[server.block] = server
                family, address = server.check_target()
                state_header = functools.partial(stats.server_state_header, server, self._current) \
                    if be.http_send_state and be.tcp_check and be.check_kind == "http" else None
                server.check = ServerCheck(server.name, server.slot.server, family, address, rules,
                                           connect_timeout=be.timeouts.connect,
                                           check_timeout=be.timeouts.check,
                                           kind=be.check_kind if be.tcp_check else "tcp",
                                           disable_on_404=be.http_disable_on_404, state_header=state_header,
                                           source=server.slot.server.source or be.source,
                                           tls=_check_tls(server.slot.server, rules, g.ssl_server_verify),
                                           tls_default=_checks_speak_tls(server.slot.server),
                                           proxy_version=2 if server.slot.server.send_proxy_v2 else 1,
                                           proxy_default=_checks_send_proxy(server.slot.server),
                                           proc_variables=state.variables)
                self._by_check[server.check] = server
                self.health.add(server.check)
                if server.slot.server.ssl:
                    server.tls = _server_tls(server.slot.server, g.ssl_server_verify)
                if server.unresolved:  # in maintenance from the start, as a ``disabled`` server
                    self.health.pause(server.check)
                    server.check.health.health = 0
                model_server = server.slot.server
                if model_server.agent_check:
                    agent_family, agent_address = server.agent_target()
                    text = model_server.agent_send
                    send = [model.TcpCheckRule("send", data=text.encode("latin-1", "replace"))
                            ] if text else []
                    server.agent = ServerCheck(
                        f"{server.name} (agent)", model_server, agent_family, agent_address,
                        [*send, model.TcpCheckRule("expect", match="custom", pattern="agent")],
                        connect_timeout=be.timeouts.connect, check_timeout=be.timeouts.check, kind="agent",
                        health=ServerHealth(1, 1, model_server.agent_inter),
                        source=model_server.source or be.source)
                    self._by_check[server.agent] = server
                    self.health.add(server.agent)
        for backend_runtime in backends.values():  # ``track``: who follows whom
            for server in backend_runtime.servers:
                if server.slot.server.track is None:
                    continue
                found = validate.tracked_server(cfg, backend_runtime.model, server.slot.server)
                if found is not None:
                    tracked = backends[found[0].name].servers[backends[found[0].name].balancer.slot(
                        found[1].name).index]
                    server.tracked = tracked
                    tracked.trackers.append(server)
        self.admission = AdmissionControl(state)
        self.dispatcher = Dispatcher(state, director=self.director, error_handler=self.error_handler,
                                     observe_error=self._observe_error)
        self.lane_binding = Lanes(state, self.dispatcher, self.admission)
        self.pump = state.pump = self.pump_class(
            threads=g.nbthread or default_threads(), bufsize=g.bufsize, pipesize=g.pipesize,
            maxpipes=g.maxpipes or 0, splice=g.splice, counter_blocks=block,
            on_pair_ended=self.dispatcher.pair_ended, on_connect_failed=self.dispatcher.pair_connect_failed,
            on_lane_hand_back=self.lane_binding.adopt, on_lane_ended=self.lane_binding.pair_ended)
        if tls.in_traffic(cfg):  # TLS pairs are pumped by the relay, in user space (see tlsrelay)
            self.pump = state.pump = WithTls(
                self.pump, bufsize=g.bufsize, counter_blocks=block, on_pair_ended=self.dispatcher.pair_ended,
                on_connect_failed=self.dispatcher.pair_connect_failed)
        self.servers = ServerStates(loop, self.health, cut_sessions=self.pump.cut_server)
        for server in state.servers.values():
            if server.tracked is not None:
                self.servers.follow(server)
        for name, table in list(state.tables.items()):
            if pump_can_keep(table):  # kept by the pump, where lanes track clients in it
                state.tables[name] = self.pump.stick_table(table.spec)
        for backend_runtime in backends.values():  # what needs the stick tables, now they exist
            be = backend_runtime.model
            if be.stick_rules:
                backend_runtime.persistence = Persistence(be, state.tables, backend_runtime.balancer)
            if be.tcp_request_rules:
                backend_runtime.router = Router.for_backend(be, state.tables)
        self.pump.start(loop)
        if self.pump.lanes is not None:
            self.pump.lanes.maxconn = g.maxconn or 0
        for backend_runtime in backends.values():
            backend_runtime.balancer.on_change.append(
                functools.partial(self.dispatcher.servers_changed, backend_runtime))
        try:
            self._listen(accepting)
        except BaseException:
            self._close_listeners()
            self.pump.stop()
            raise
        if accepting:
            for listener in state.listeners():
                listener.resume()
        self._external_checks()
        self.health.start()
        stats_pages = [frontend for frontend in cfg.frontends.values() if frontend.stats is not None]
        operations = self.operations = Operations(state, self.servers, self.pump,  # also for metrics()
                                                  pairs=self.dispatcher.pairs, admission=self.admission,
                                                  add_server=self.add_server,
                                                  delete_server=self.delete_server)
        if g.stats_sockets or stats_pages:
            # One sampler (rates, maxima, the page's history) for the socket and the pages alike.
            operations.start_sampling()
            try:
                if g.stats_sockets:
                    self.runtime_api = RuntimeApi(g, COMMANDS, operations, open_listener=self.open_listener)
                    await self.runtime_api.start()
                if stats_pages:
                    # aiohttp (a fifth of a worker's start) only where a stats listener serves HTTP.
                    from .stats_http import StatsListener
                for frontend in stats_pages:
                    stats_listener = self.stats_listeners[frontend.name] = StatsListener(
                        frontend, operations, open_listener=self.open_listener)
                    await stats_listener.start()
            except BaseException:
                await self.stop(0)
                raise

    def _external_checks(self) -> None:
        """``option external-check``: each checked server's command, its arguments and environment as
        HAProxy's prepare_external_check() writes them (the ids are the proxies' and servers' own)."""
        state, g = self.state, self.config.global_
        # HAProxy numbers its stats socket's frontend first, when there is one
        ids = {proxy.name: proxy.uuid - (not g.stats_sockets and not _own_id(proxy))
               for proxy in stats.number_proxies(state)}
        for backend in state.backends.values():
            model_backend = backend.model
            if not (model_backend.tcp_check and model_backend.check_kind == "external"):
                continue
            assert model_backend.external_command is not None
            proxy_address = _first_bind(self.config.frontends.get(backend.name))
            for server in backend.servers:
                model_server = server.slot.server
                environment = {
                    "PATH": model_backend.external_path or "", "HAPROXY_PROXY_NAME": backend.name,
                    "HAPROXY_PROXY_ID": str(ids.get(backend.name, 0)), "HAPROXY_PROXY_ADDR": proxy_address[0],
                    "HAPROXY_PROXY_PORT": proxy_address[1], "HAPROXY_SERVER_NAME": server.slot.name,
                    "HAPROXY_SERVER_ID": str(server.slot.id),
                    "HAPROXY_SERVER_MAXCONN": str(model_server.maxconn),
                    "HAPROXY_SERVER_SSL": "1" if model_server.ssl else "0", "HAPROXY_SERVER_PROTO": "tcp"}
                server.check.external = ExternalCheck(
                    model_backend.external_command, proxy_address, environment,
                    server_address=functools.partial(lambda runtime: runtime.address[:2], server),
                    current=functools.partial(self._current, server),
                    insecure_fork_wanted=g.insecure_fork_wanted)

    def accept(self) -> None:
        """Accept clients, after ``start(accepting=False)``; nothing once stopping (the listeners are
        closed)."""
        if self.state.stopping:
            return
        for listener in self.state.listeners():
            listener.resume()
        for lane in self.state.lane_listeners:
            if not lane.disabled:  # paused (SIGTTOU, disable frontend) before it accepted
                self.pump.lanes.set_enabled(lane.index, True)

    def pause_listeners(self, *, master_link: bool = False) -> None:
        """SIGTTOU, HAProxy's protocol_pause_all(): every frontend's listeners stop listening (new
        clients are refused, another process may bind the port) until ``resume_listeners``;
        established connections go on.  Logged as HAProxy logs it, once per frontend paused;
        ``master_link``: a master's worker, whose link is a CLI listener of HAProxy's frontend
        GLOBAL (its ``sockpair@``), as a stats socket is."""
        if self.state.stopping:
            return
        for frontend in self.state.frontends.values():
            if frontend.state == "OPEN" and frontend.listeners:
                frontend.set_enabled(False)
                log.warning("Paused %s %s.", self._proxy_kind(frontend), frontend.name)
        if (self.config.global_.stats_sockets or master_link) and not self._stats_paused:
            # HAProxy pauses its CLI's listeners as well (frontend GLOBAL), and a UNIX listener
            # paused still answers: the runtime API stays served here too.
            self._stats_paused = True
            log.warning("Paused frontend GLOBAL.")

    def resume_listeners(self) -> None:
        """SIGTTIN, HAProxy's protocol_resume_all(): every paused frontend listens again, one paused
        by ``disable frontend`` too.  A listener that cannot (another process listens on the port)
        stays paused, with HAProxy's warning."""
        if self.state.stopping:
            return
        refused = False
        for frontend in self.state.frontends.values():
            if frontend.state != "PAUSED":
                continue
            try:
                frontend.set_enabled(True)
            except OSError as exc:
                log.warning("frontend %s: cannot listen again: %s", frontend.name, exc)
                refused = True
                continue
            log.warning("Resumed %s %s.", self._proxy_kind(frontend), frontend.name)
        if self._stats_paused:
            self._stats_paused = False
            log.warning("Resumed frontend GLOBAL.")
        if refused:
            log.warning("Some proxies refused to resume, probably due to a conflict on a listening "
                        "port. You may want to try again after the conflicting application is stopped, "
                        "otherwise a restart might be needed to resume safe operations.")

    def _proxy_kind(self, frontend: FrontendRuntime) -> str:
        """HAProxy's proxy_cap_str(): "proxy" for a ``listen`` (its backend half declared with it)."""
        backend = self.state.backends.get(frontend.name)
        return "proxy" if backend is not None and backend.model.location == frontend.model.location \
            else "frontend"

    def _listen(self, accepting: bool) -> None:
        state, cfg = self.state, self.config
        hooks = self.director is not None or self.error_handler is not None
        for index, frontend in enumerate(cfg.frontends.values()):
            own_handler = self.handlers.get(frontend.name)
            handler = own_handler or TCPProxy(state, self.dispatcher)
            runtime = FrontendRuntime(frontend, index, handler, cfg.backends, state.tables)
            state.frontends[frontend.name] = runtime
            state.frontend_blocks[runtime.block] = runtime
            if frontend.stats is not None:
                continue  # a stats listener, served over HTTP by stats_http once the proxy runs
            lane_to = lane_backend(state, runtime, hooks=hooks or own_handler is not None)
            for number, bind in enumerate(frontend.binds, 1):
                sock = self.open_listener(bind, backlog_of(frontend))
                if lane_to is not None and not bind.accept_proxy:
                    runtime.listeners.append(self.lane_binding.add(sock, runtime, lane_to,
                                                                   backlog=listen_backlog(bind, frontend),
                                                                   accepting=accepting))
                    continue
                closed = functools.partial(self.admission.closed, runtime)
                fast = None
                if isinstance(handler, TCPProxy):
                    fast = functools.partial(handler.accept, frontend=runtime, finished=closed,
                                             accept_proxy=bind.accept_proxy, tls=_bind_tls(bind, number))
                elif bind.ssl:
                    raise ConfigError(f"frontend '{frontend.name}': a handler of its own would receive the "
                                      "TLS records of its 'bind ... ssl'", file=bind.location.file,
                                      line=bind.location.line, keyword="bind")
                runtime.listeners.append(Listener(
                    sock, frontend, bind, handler, loop=state.loop,
                    admit=functools.partial(self.admission.admit, runtime),
                    opened=functools.partial(self.admission.opened, runtime), closed=closed, fast=fast))

    def _close_listeners(self) -> None:
        for listener in self.state.listeners():
            listener.close()

    def receive_pairs(self, channel: socket.socket) -> PairReceiver:
        """As a reload's new worker: adopt the pairs the former worker sends on ``channel``."""
        receiver = PairReceiver(self.state, self.dispatcher, self.admission, channel)
        receiver.start()
        if self.operations is not None:
            self.operations.pairs_from = receiver  # its routes go once the master has prepared it (_prepared)
        return receiver

    def stop_now(self) -> None:
        """HAProxy's hard stop (SIGTERM) during a soft one, of an engine started: the grace period
        ends now, what is still established is cut."""
        self._cut_now = True
        self.state.idle.set()

    async def stop(self, grace: Optional[float] = None, *, hand_over: Optional[socket.socket] = None) -> None:
        """Close the listeners, let established connections end within ``grace`` seconds, then cut.
        With ``hand_over`` (a reload's channel to the new worker, ``handover.PairSender``), every
        established pair the new worker has a route for moves to it meanwhile, in rounds until none
        is left here."""
        state = self.state
        if state.stopping:
            return
        state.stopping = True
        self._close_listeners()
        for stats_listener in self.stats_listeners.values():
            await stats_listener.stop()
        if self.operations is not None:
            self.operations.stop_sampling()
        if self.runtime_api is not None:
            await self.runtime_api.stop()
        self.health.stop()
        self.servers.stop()
        self.admission.stop()
        await self.health.wait_stopped()
        if grace is None:
            grace = self.config.global_.hard_stop_after
            if grace is None:
                grace = DEFAULT_GRACE
        loop = state.loop
        deadline = loop.time() + grace
        sender = None
        if hand_over is not None:
            sender = PairSender(state, self.dispatcher, self.admission, hand_over)
            if not sender.open():
                sender.close()
                sender = None
        first_round = True
        while state.current and loop.time() < deadline and not self._cut_now:
            if sender is not None:
                sender.move()
                if first_round:
                    log.info("handover: %d connection(s) moved to the new worker, %d left here",
                             sender.moved, state.current)
                    first_round = False
                if not state.current:
                    break
            state.idle.clear()
            pause = MOVE_ROUND if sender is not None and not sender.broken else 0.1
            try:
                await asyncio.wait_for(state.idle.wait(), min(pause, max(deadline - loop.time(), 0)))
            except asyncio.TimeoutError:
                pass
        if sender is not None:
            log.info("handover: %d connection(s) moved to the new worker in all", sender.moved)
            sender.close()
        # Handlers still running are cancelled; pairs in the pump are cut.
        tasks = set(state.tasks)
        for listener in state.listeners():
            tasks |= listener.tasks
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        self.dispatcher.drop_queued()
        self.pump.stop()
        await asyncio.sleep(0)  # let the twin's end reports run
        for session in list(self.dispatcher.pairs.values()):  # connects cut while in progress
            session.close()
        self.dispatcher.pairs.clear()
        for runtime in list(state.frontends.values()) + list(state.backends.values()):
            if runtime.log is not None:
                runtime.log.close()

    # --- wiring -----------------------------------------------------------------------------------

    def _health_changed(self, check: ServerCheck, result: Optional[CheckResult]) -> None:
        server = self._by_check[check]
        # With log-health-checks the check's line gave the reason: HAProxy's state line omits it.
        self.servers.health_changed(server, None if server.backend.model.log_health_checks else result)

    def _agent_replied(self, check: ServerCheck, reply: AgentReply) -> Optional[str]:
        return self.servers.agent_reply(self._by_check[check], reply)

    def _check_counted(self, check: ServerCheck, result: CheckResult) -> None:
        server = self._by_check[check]
        if not server.backend.model.log_health_checks:
            return
        slot = server.slot
        message = tcplog.check_log_message(check.health, result, backend=server.backend.name,
                                           server=slot.name, backup=slot.backup,
                                           draining=slot.user_weight == 0)
        log.warning("%s", message)
        server.backend.write_log(logs.NOTICE, message)

    def _current(self, server: ServerRuntime) -> int:
        return self.pump.counters(server.block)[Counter.CONN_CUR]

    def _established(self, check: ServerCheck) -> int:
        return self.pump.counters(self._by_check[check].block)[Counter.CONN_TOTAL]

    def _observe_error(self, server_block: int) -> None:
        self.health.observe_error(self.state.servers[server_block].check)

    # --- servers added and deleted at run time (``add server``, ``del server``) ------------------------

    def add_server(self, backend: BackendRuntime, server: model.Server) -> ServerRuntime:
        """A server added to ``backend`` while it runs, in maintenance (HAProxy's dynamic server):
        a counter block of the spares, its check, its queue, and the lanes' server lists, before the
        balancer announces it.  ValueError (or ConfigError: no address) and nothing changed."""
        state = self.state
        if not state.spare_blocks:
            raise ValueError("no room left for servers added at run time")
        slot = backend.balancer.add_server(server)
        try:
            runtime = ServerRuntime(backend, slot, state.spare_blocks[-1])
        except BaseException:
            backend.balancer.slots.pop()
            del backend.balancer._by_name[slot.name]
            raise
        state.spare_blocks.pop()
        runtime.admin_changed = True  # in maintenance by the runtime API, not by the file
        runtime.dynamic = True
        family, address = runtime.check_target()
        be = backend.model
        runtime.check = ServerCheck(runtime.name, server, family, address,
                                    be.tcp_check_rules if be.tcp_check else (),
                                    connect_timeout=be.timeouts.connect, check_timeout=be.timeouts.check,
                                    proc_variables=self.state.variables)
        self._by_check[runtime.check] = runtime
        self.health.add(runtime.check)
        backend.servers.append(runtime)
        backend.blocks.append(runtime.block)
        backend.queues.server_added()
        state.servers[runtime.block] = runtime
        for moved in backend.servers_moved:  # the lanes' lists grow first: their weights follow
            moved()
        backend.balancer.changed(slot)
        return runtime

    def delete_server(self, server: ServerRuntime) -> None:
        """``del server``: a server in maintenance without connections leaves every list; its block
        is not given again (its counts stay in its backend's totals)."""
        backend = server.backend
        backend.balancer.delete_server(server.slot.name)
        check = self.health.checks.pop(server.check.name, None)
        if check is not None and check.timer is not None:
            check.timer.cancel()
            check.timer = None

    # --- the operator's interface -----------------------------------------------------------------

    def set_server_state(self, backend: str, server: str, state: "ServerState | str") -> None:
        """Set a server's state at run time (see ``servers.ServerStates.set_state``): ``MAINT``,
        ``DRAIN``, ``UP`` or ``DOWN``.  Only UP servers get new connections, queued ones included;
        established connections go on in every state, unless ``on-marked-down shutdown-sessions``."""
        runtime = self.state.backends[backend]
        self.servers.set_state(runtime.servers[runtime.balancer.slot(server).index], state)

    @property
    def pump_threads(self) -> int:
        """Threads that pump pairs: ``nbthread``, or one per CPU of the affinity mask when unset (the
        Python twin has one event loop whatever the file says)."""
        return self.pump.threads

    def listening_addresses(self, frontend: Optional[str] = None) -> list[tuple]:
        """Where the listeners listen (useful with port 0), the stats listeners' too."""
        return [listener.address for runtime in self.state.frontends.values()
                if frontend in (None, runtime.name) for listener in runtime.listeners] + \
            [address for name, stats_listener in self.stats_listeners.items() if frontend in (None, name)
             for address in stats_listener.addresses]

    @property
    def backends(self) -> dict[str, BackendRuntime]:
        return self.state.backends

    @property
    def frontends(self) -> dict[str, FrontendRuntime]:
        return self.state.frontends

    @property
    def lanes(self) -> list[LaneListener]:
        return self.state.lane_listeners

    @property
    def pairs(self) -> dict:
        """Python's pairs in the pump, by tag."""
        return self.dispatcher.pairs

    @property
    def python_current(self) -> int:
        return self.state.python_current

    @property
    def current(self) -> int:
        """Client connections open now, whoever accepted them."""
        return self.state.current

    @property
    def ended_by(self) -> collections.Counter[EndReason]:
        """Pairs that ended, by reason: Python's and the lanes'."""
        return self.dispatcher.ended_by + self.lane_binding.ended_by()

    def metrics(self, **options: Any) -> bytes:
        """HAProxy's Prometheus exposition of the running proxy (``promex``; options ``scopes``,
        ``no_maint``), what a ``prometheus-exporter`` stats listener serves.  Without a stats socket
        or listener nothing samples the counters once a second, so the maxima and rates read 0."""
        assert self.operations is not None, "Engine.metrics() on an engine not started"
        return self.operations.metrics(**options)

    def stats(self) -> dict[str, Any]:
        """Counters of every frontend and server, read live from the pump."""
        fields = [c.name.lower() for c in Counter]
        counters = self.pump.counters
        result: dict[str, Any] = {"frontends": {}, "servers": {}, "backends": {},
                                  "active_pairs": self.pump.active}
        for name, fe in self.state.frontends.items():
            result["frontends"][name] = dict(zip(fields, counters(fe.block)))
        for name, be in self.state.backends.items():
            queues = be.queues
            result["backends"][name] = {"queue_cur": queues.backend.length, "queue_max": queues.backend.max,
                                        "queue_expired": queues.backend.expired,
                                        "queued_total": queues.waiting}
            for server in be.servers:
                slot, check = server.slot, server.check
                values: dict[str, Any] = dict(zip(fields, counters(server.block)))
                values["state"] = slot.state.value
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
