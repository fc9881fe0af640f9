"""The engine: runs one configuration from start to stop.

It builds the runtime of every backend (balancer, resolved server addresses, counter blocks), one pump,
and the listeners of every frontend with a handler each (the TCP proxy unless the user registered their
own).  It keeps the books per connection (limits, balancer counts, counters, the log line) and stops in
order: listeners first, then established connections end on their own or are cut after a grace period.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import socket
import time
from dataclasses import dataclass
from typing import Any, Optional

from .balance import Balancer, ServerSlot
from .config import model
from .errors import ConfigError, ProxyError
from .proxy import Director, ErrorHandler, TCPProxy
from .pump import Counter, EndReason, Pump
from .server import Connection, Handler, Listener, open_listener

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
}


def resolve(host: str, port: int) -> tuple[int, tuple]:
    """(family, sockaddr) for a server address, resolved once at start as HAProxy does."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    family, _, _, _, address = infos[0]
    return family, address[:2]


class BackendRuntime:
    """A backend while it runs: the model, its balancer and where each server is."""

    def __init__(self, backend: model.Backend, first_block: int) -> None:
        self.model = backend
        self.name = backend.name
        self.balancer = Balancer(backend)
        self.addresses: list[tuple] = []
        self.blocks = [first_block + i for i in range(len(backend.servers))]
        for server in backend.servers:
            try:
                self.addresses.append(resolve(server.host, server.port or 0)[1])
            except OSError as exc:
                raise ConfigError(f"server '{server.name}': cannot resolve '{server.host}': {exc}",
                                  file=server.location.file, line=server.location.line,
                                  keyword="server") from None

    def address_of(self, slot: ServerSlot, conn: Connection) -> tuple:
        host, port = self.addresses[slot.index]
        if not port:  # a server without a port takes the port the client connected to
            port = conn.sockname[1]
        return (host, port)


class FrontendRuntime:
    def __init__(self, frontend: model.Frontend, block: int, handler: Handler) -> None:
        self.model = frontend
        self.block = block
        self.handler = handler
        self.listeners: list[Listener] = []
        self.current = 0


@dataclass
class PairRecord:
    """What the engine remembers of a connection while the pump carries it."""

    conn: Connection
    frontend: FrontendRuntime
    backend: BackendRuntime
    slot: Optional[ServerSlot]
    started: float
    connected: float
    retries: int


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
        self.pairs: dict[int, PairRecord] = {}
        self.current = 0  # client connections open (accepted, not yet ended)
        self.ended_by: collections.Counter[EndReason] = collections.Counter()  # pairs, by end reason
        self._next_tag = 1
        self._paused_for_maxconn = False
        self._stopping = False
        self._idle = asyncio.Event()
        self.loop: asyncio.AbstractEventLoop

    # --- lifecycle --------------------------------------------------------------------------------

    async def start(self) -> None:
        """Resolve, build and listen; on any failure nothing stays open."""
        self.loop = asyncio.get_running_loop()
        cfg = self.config
        block = len(cfg.frontends)
        for backend in cfg.backends.values():
            self.backends[backend.name] = BackendRuntime(backend, block)
            block += len(backend.servers)
        g = cfg.global_
        self.pump = self.pump_class(threads=g.nbthread, bufsize=g.bufsize, pipesize=g.pipesize,
                                    maxpipes=g.maxpipes or 0, splice=g.splice, counter_blocks=block,
                                    on_end=self._pair_ended)
        self.pump.start(self.loop)
        try:
            for index, frontend in enumerate(cfg.frontends.values()):
                handler = self.handlers.get(frontend.name) or TCPProxy(
                    self, director=self.director, error_handler=self.error_handler)
                runtime = FrontendRuntime(frontend, index, handler)
                self.frontends[frontend.name] = runtime
                for bind in frontend.binds:
                    sock = open_listener(bind, backlog=frontend.maxconn or socket.SOMAXCONN)
                    listener = Listener(sock, frontend, bind, handler, loop=self.loop,
                                        admit=lambda rt=runtime: self._admit(rt),
                                        opened=lambda rt=runtime: self._opened(rt),
                                        closed=lambda rt=runtime: self._closed(rt))
                    runtime.listeners.append(listener)
        except BaseException:
            self._close_listeners()
            self.pump.stop()
            raise
        for runtime in self.frontends.values():
            for listener in runtime.listeners:
                listener.resume()

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
        # Handlers still dialling are cancelled; pairs in the pump are cut.
        for runtime in self.frontends.values():
            for listener in runtime.listeners:
                for task in list(listener.tasks):
                    task.cancel()
                if listener.tasks:
                    await asyncio.gather(*listener.tasks, return_exceptions=True)
        self.pump.stop()
        await asyncio.sleep(0)  # let the twin's end reports run

    def listening_addresses(self, frontend: Optional[str] = None) -> list[tuple]:
        """Where the listeners listen (useful with port 0)."""
        return [listener.address for runtime in self.frontends.values()
                if frontend in (None, runtime.model.name) for listener in runtime.listeners]

    # --- limits -------------------------------------------------------------------------------------

    def _admit(self, frontend: FrontendRuntime) -> bool:
        limit = self.config.global_.maxconn
        if limit and self.current >= limit:
            self._pause_all()
            return False
        if frontend.model.maxconn and frontend.current >= frontend.model.maxconn:
            for listener in frontend.listeners:
                listener.pause()
            return False
        return True

    def _pause_all(self) -> None:
        self._paused_for_maxconn = True
        for runtime in self.frontends.values():
            for listener in runtime.listeners:
                listener.pause()

    def _opened(self, frontend: FrontendRuntime) -> None:
        self.current += 1
        frontend.current += 1
        self.pump.add_counter(frontend.block, Counter.CONN_CUR, 1)
        self.pump.add_counter(frontend.block, Counter.CONN_TOTAL, 1)

    def _closed(self, frontend: FrontendRuntime) -> None:
        self.current -= 1
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

    # --- the proxy's books ----------------------------------------------------------------------------

    def backend_for(self, conn: Connection) -> Optional[BackendRuntime]:
        name = conn.frontend.default_backend
        if name is None:
            return None
        return self.backends.get(name)

    def count_connect_error(self, backend: BackendRuntime, slot: ServerSlot) -> None:
        self.pump.add_counter(backend.blocks[slot.index], Counter.CONNECT_ERRORS, 1)

    def connect_failed(self, conn: Connection, backend: BackendRuntime, exc: ProxyError) -> None:
        frontend = self.frontends[conn.frontend.name]
        self.pump.add_counter(frontend.block, Counter.CONNECT_ERRORS, 1)
        if conn.frontend.log:
            log.info("%s %s %s/<NOSRV> %s", _peer(conn), conn.frontend.name, backend.name, exc)

    def pair(self, conn: Connection, backend: BackendRuntime, slot: Optional[ServerSlot],
             sock: socket.socket, *, started: float, retries: int) -> None:
        """Hand a client and its connected upstream to the pump."""
        frontend = self.frontends[conn.frontend.name]
        tag = self._next_tag
        self._next_tag += 1
        server_block = backend.blocks[slot.index] if slot is not None else -1
        if server_block >= 0:
            self.pump.add_counter(server_block, Counter.CONN_CUR, 1)
            self.pump.add_counter(server_block, Counter.CONN_TOTAL, 1)
        self.pairs[tag] = PairRecord(conn, frontend, backend, slot, started, time.monotonic(), retries)
        client_t, server_t = conn.frontend.timeouts, backend.model.timeouts
        tunnel = server_t.tunnel or client_t.tunnel
        client_fd = conn.detach().detach()
        server_fd = sock.detach()
        try:
            self.pump.add_pair(
                client_fd, server_fd,
                client_timeout=tunnel or client_t.client,
                server_timeout=tunnel or server_t.server,
                client_fin_timeout=client_t.client_fin,
                server_fin_timeout=server_t.server_fin,
                frontend_block=frontend.block, server_block=server_block, tag=tag)
        except Exception:
            socket.socket(fileno=client_fd).close()
            socket.socket(fileno=server_fd).close()
            self._pair_ended(tag, EndReason.ERROR, 0, 0)
            raise

    def _pair_ended(self, tag: int, reason: int, bytes_in: int, bytes_out: int) -> None:
        record = self.pairs.pop(tag, None)
        if record is None:
            return
        self.ended_by[EndReason(reason)] += 1
        if record.slot is not None:
            record.backend.balancer.connection_ended(record.slot)
            self.pump.add_counter(record.backend.blocks[record.slot.index], Counter.CONN_CUR, -1)
        frontend = record.conn.frontend
        if frontend.log and not (frontend.dontlognull and bytes_in == 0):
            now = time.monotonic()
            server = record.slot.name if record.slot is not None else "<direct>"
            log.info("%s %s %s/%s %d/%d/%d %d %s %d/%d/-/-/%d", _peer(record.conn), frontend.name,
                     record.backend.name, server, -1, int((record.connected - record.started) * 1000),
                     int((now - record.started) * 1000), bytes_out, TERMINATION[EndReason(reason)],
                     self.current, record.frontend.current, record.retries)
        record.conn.finished()

    # --- observability ------------------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        """Counters of every frontend and server, read live from the pump."""
        fields = [c.name.lower() for c in Counter]
        result: dict[str, Any] = {"frontends": {}, "servers": {}, "active_pairs": self.pump.active}
        for name, fe in self.frontends.items():
            result["frontends"][name] = dict(zip(fields, self.pump.counters(fe.block)))
        for name, be in self.backends.items():
            for slot in be.balancer.slots:
                values = dict(zip(fields, self.pump.counters(be.blocks[slot.index])))
                values["state"] = slot.state.value
                result["servers"][f"{name}/{slot.name}"] = values
        return result


def _peer(conn: Connection) -> str:
    peer = conn.peername
    if isinstance(peer, tuple):
        return f"{peer[0]}:{peer[1]}"
    return str(peer)
