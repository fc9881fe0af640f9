"""The TCP proxy: a handler that dials an upstream and pairs it with the client.

This is the seed design's "TCP proxy" half, kept apart from service logic by two hooks in the spirit of
``httputil.ReverseProxy``: a ``director`` that may choose or rewrite the upstream of a connection, and an
``error_handler`` that decides what a client sees when no upstream could be reached.

The path of a connection is synchronous and allocation-light, because connections per second are won or
lost here: the listener hands over an accepted descriptor (``TCPProxy.accept``), the balancer picks a
server, a non-blocking ``connect`` is started, and the pair goes to the pump at once with the connect
still in progress.  The pump completes it; if it fails, the client descriptor comes back
(``connect_failed``) for a retry, a redispatch, or the error handler.  Only hooks that return awaitables
and the generic ``serve_tcp`` entry use the event loop's tasks.
"""

from __future__ import annotations

import asyncio
import dataclasses
import errno
import logging
import os
import socket
import time
from typing import TYPE_CHECKING, Any, Awaitable, Callable, Optional, Union

from . import _linux, proxyproto
from .balance import PickKey, ServerSlot
from .config import model
from .errors import NoServerAvailable, ProxyError, UpstreamConnectError
from .acl import ConnInfo
from .server import Connection
from .sni import ClientHelloResult, HelloStatus, parse_client_hello

PEEK_SIZE = 16384 + 5  # a whole TLS record: a ClientHello is almost always in the first one


async def peek_client_hello(fd: int, delay: float) -> Optional[ClientHelloResult]:
    """The ClientHello waiting in ``fd``'s receive queue, read with MSG_PEEK so that it stays there;
    None if none was complete within ``delay`` seconds (or the bytes are not TLS)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + delay
    sock = socket.socket(fileno=fd)
    try:
        while True:
            try:
                data = sock.recv(PEEK_SIZE, socket.MSG_PEEK)
            except (BlockingIOError, InterruptedError):
                data = None
            if data is not None:
                if not data:  # the client closed before sending a hello
                    return None
                result = parse_client_hello(data)
                if result.status is HelloStatus.OK:
                    return result
                if result.status is not HelloStatus.INCOMPLETE:
                    return None
            if not await wait_readable(fd, deadline - loop.time()):
                return None  # nothing new before the deadline: a hello that is incomplete never came
    finally:
        sock.detach()


async def wait_readable(fd: int, timeout: float) -> bool:
    """True when ``fd`` becomes readable within ``timeout`` seconds."""
    if timeout <= 0:
        return False
    loop = asyncio.get_running_loop()
    readable = loop.create_future()
    loop.add_reader(fd, lambda: readable.done() or readable.set_result(None))
    try:
        await asyncio.wait_for(readable, timeout)
        return True
    except asyncio.TimeoutError:
        return False
    finally:
        loop.remove_reader(fd)


if TYPE_CHECKING:
    from .engine import BackendRuntime, Engine, FrontendRuntime

log = logging.getLogger("fastproxy")

# What a director may return: a server of the backend (by model or by slot), an explicit address, or
# None to let the backend's balancer choose.
Target = Union[None, ServerSlot, model.Server, tuple]
Director = Callable[["Session", "BackendRuntime"], Union[Target, Awaitable[Target]]]
ErrorHandler = Callable[[Connection, Exception], Union[None, Awaitable[None]]]

CONNECT_ERROR_KIND = {errno.ECONNREFUSED: "refused", errno.ETIMEDOUT: "timeout"}


class Session:
    """One client connection through the proxy, from accept to end.

    Hooks receive it where they would receive a Connection: it has ``peername``, ``sockname``,
    ``frontend``, ``backend`` and a free ``context`` dict.
    """

    __slots__ = ("proxy", "fd", "lent_fd", "_peer", "_peername", "_sockname", "frontend", "runtime",
                 "backend", "slot", "attempt", "excluded", "started", "connected", "context", "_finished")

    def __init__(self, proxy: "TCPProxy", fd: int, peer: _linux.Peer, runtime: "FrontendRuntime",
                 sockname: Any = None, finished: Optional[Callable[[], None]] = None) -> None:
        self.proxy = proxy
        self.fd = fd  # the client descriptor while Python owns it, else -1
        self.lent_fd = -1  # the client descriptor while the pump owns it
        self._peer = peer  # as accepted: decoded only if someone asks
        self._peername: Any = None
        self._sockname = sockname
        self.runtime = runtime
        self.frontend: model.Frontend = runtime.model
        self.backend: Optional[BackendRuntime] = None
        self.slot: Optional[ServerSlot] = None
        self.attempt = 0
        self.excluded: Optional[set[int]] = None
        self.started = time.monotonic()
        self.connected = 0.0
        self.context: dict[str, Any] = {}
        self._finished = finished

    @property
    def peername(self) -> Any:
        if self._peername is None:
            self._peername = _linux.peer_address(self._peer)
        return self._peername

    @property
    def sockname(self) -> Any:
        if self._sockname is None:
            sock = socket.socket(fileno=self.fd)
            try:
                self._sockname = sock.getsockname()
            finally:
                sock.detach()
        return self._sockname

    def finished(self) -> None:
        callback, self._finished = self._finished, None
        if callback is not None:
            callback()

    def close(self) -> None:
        """Close the client (if Python still owns it) and end the session."""
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
        self.finished()


async def default_error_handler(conn: Connection, exc: Exception) -> None:
    """Close the client cleanly: what HAProxy does in TCP mode when no server can be reached."""
    conn.close()


def proxy_header(session: Session, *, v2: bool) -> bytes:
    """The PROXY header a ``send-proxy`` / ``send-proxy-v2`` server gets: the client as we know it."""
    peer, local = session.peername, session.sockname
    if not (isinstance(peer, tuple) and isinstance(local, tuple)):
        return proxyproto.encode_v2(command="LOCAL") if v2 else proxyproto.encode_v1_unknown()
    src, dst = (peer[0], peer[1]), (local[0], local[1])
    return proxyproto.encode_v2(src, dst) if v2 else proxyproto.encode_v1(src, dst)


def pick_key(session: Session) -> PickKey:
    peer = session.peername
    src, src_port = (peer[0], peer[1]) if isinstance(peer, tuple) else ("", 0)
    dst_port = 0
    if session.backend is not None and session.backend.needs_destination:
        local = session.sockname
        dst_port = local[1] if isinstance(local, tuple) else 0
    return PickKey(src=src, src_port=src_port, dst_port=dst_port, sni=session.context.get("sni"))


class TCPProxy:
    """The proxy handler of a frontend: route, pick, dial (with retries), pair."""

    def __init__(self, engine: "Engine", *, director: Optional[Director] = None,
                 error_handler: Optional[ErrorHandler] = None) -> None:
        self.engine = engine
        self.director = director
        self.error_handler = error_handler

    # --- entries ----------------------------------------------------------------------------------

    def accept(self, fd: int, peer: _linux.Peer, *, runtime: "FrontendRuntime",
               finished: Callable[[], None], accept_proxy: bool = False) -> None:
        """A freshly accepted, tuned, non-blocking client descriptor: the fast entry."""
        session = Session(self, fd, peer, runtime, finished=finished)
        if accept_proxy:
            self.engine.background(asyncio.ensure_future(self._read_proxy_header(session)))
        else:
            self.start(session)

    async def _read_proxy_header(self, session: Session) -> None:
        """``bind ... accept-proxy``: the client's first bytes are a PROXY header whose addresses stand
        for the client's own (in ACLs, balancing and logs).  A client that sends no valid header within
        ``timeout client`` (5 s when unset) is closed, as HAProxy does."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + (session.frontend.timeouts.client or 5.0)
        sock = socket.socket(fileno=session.fd)
        try:
            while True:
                try:
                    data = sock.recv(PEEK_SIZE, socket.MSG_PEEK)
                except (BlockingIOError, InterruptedError):
                    data = None
                if data is not None:
                    header = proxyproto.parse(data) if data else None
                    if header is None or header.status is proxyproto.ProxyStatus.INVALID:
                        break
                    if header.status is proxyproto.ProxyStatus.OK:
                        sock.recv(header.length)  # consume exactly the header: the rest is the client's
                        if header.command == "PROXY" and header.src and header.dst:
                            session._peername = header.src
                            session._sockname = header.dst
                        sock.detach()
                        self.start(session)
                        return
                if not await wait_readable(session.fd, deadline - loop.time()):
                    break
        except OSError:
            pass
        except asyncio.CancelledError:
            sock.detach()
            session.close()
            raise
        sock.detach()
        session.close()

    async def serve_tcp(self, conn: Connection) -> None:
        """The generic Handler entry: take the connection over and proxy it."""
        runtime = self.engine.frontends[conn.frontend.name]
        sock = conn.detach()
        session = Session(self, sock.detach(), conn.peername, runtime, sockname=conn.sockname,
                          finished=conn.finished)
        session.context.update(conn.context)
        self.start(session)

    # --- the path of a connection ---------------------------------------------------------------

    def start(self, session: Session) -> None:
        if session.frontend.log and not session.frontend.tcplog:
            self.engine.log_connect(session)
        router = session.runtime.router
        if router is None:  # no rule at all: the default backend
            self._go(session, session.frontend.default_backend)
            return
        info = ConnInfo(src=session.peername[0], src_port=session.peername[1],
                        dst=session.sockname[0], dst_port=session.sockname[1])
        if not router.accept_connection(info):  # tcp-request connection reject
            session.close()
            self.engine.count_denied(session)
            return
        if session.runtime.inspects:
            task = asyncio.ensure_future(self._inspect_then_route(session, info))
            self.engine.background(task)
            return
        # Without inspect-delay, content rules run at once on what is known (HAProxy does the same).
        if not router.accept_content(info):
            session.close()
            self.engine.count_denied(session)
            return
        self._go(session, router.backend_for(info))

    def _go(self, session: Session, backend_name: Optional[str]) -> None:
        backend = self.engine.backends.get(backend_name) if backend_name else None
        if backend is None:  # no backend for this connection: HAProxy closes it
            session.close()
            return
        session.backend = backend
        self.choose_and_dial(session)

    async def _inspect_then_route(self, session: Session, info: ConnInfo) -> None:
        """Wait (at most ``tcp-request inspect-delay``) for the client's TLS ClientHello, without
        consuming it, then apply the content rules and route on what was seen (HAProxy's
        ``req.ssl_sni`` / ``req_ssl_hello_type``).  A client that sends nothing usable within the delay
        is routed on what is known: the content rules and ACLs see no SNI."""
        try:
            hello = await peek_client_hello(session.fd, session.frontend.inspect_delay or 0.0)
        except asyncio.CancelledError:
            session.close()
            raise
        except OSError:
            session.close()
            return
        if hello is not None:
            info = dataclasses.replace(info, ssl_hello_seen=True, hello_type=hello.hello_type,
                                       sni=hello.server_name)
            if hello.server_name is not None:
                session.context["sni"] = hello.server_name
        router = session.runtime.router
        if not router.accept_content(info):  # tcp-request content reject
            session.close()
            self.engine.count_denied(session)
            return
        self._go(session, router.backend_for(info))

    def choose_and_dial(self, session: Session) -> None:
        if self.director is not None:
            target = self.director(session, session.backend)  # type: ignore[arg-type]
            if asyncio.iscoroutine(target) or isinstance(target, asyncio.Future):
                task = asyncio.ensure_future(target)
                task.add_done_callback(lambda t: self._directed(session, t))
                return
            self._dial_target(session, target)
        else:
            self._dial_target(session, None)

    def _directed(self, session: Session, task: "asyncio.Future[Target]") -> None:
        if task.cancelled():
            session.close()
            return
        exc = task.exception()
        if exc is not None:
            log.error("director failed: %r", exc)
            self.fail(session, ProxyError("director", str(exc)))
            return
        self._dial_target(session, task.result())

    def _dial_target(self, session: Session, target: Target) -> None:
        backend = session.backend
        assert backend is not None
        slot: Optional[ServerSlot]
        if target is None:
            balancer = backend.balancer
            if balancer.queued:  # those waiting get the slots that freed up before a newcomer does
                self.engine.serve_queues(backend)
            slot = balancer.pick(pick_key(session), session.excluded or ())
            if slot is None:
                if not balancer.pool:
                    self.fail(session, NoServerAvailable(
                        "no-server", f"backend '{backend.name}' has no server available"))
                else:  # every server is full
                    self.engine.enqueue(session, None)
                return
            if not balancer.available(slot):  # the hash (or leastconn under maxqueue) chose a full one
                self._wait_for(session, slot)
                return
            address = backend.raw_address_of(slot, session)
        elif isinstance(target, (ServerSlot, model.Server)):
            slot = target if isinstance(target, ServerSlot) else backend.balancer.slot(target.name)
            if not backend.balancer.available(slot):
                self._wait_for(session, slot)
                return
            address = backend.raw_address_of(slot, session)
        else:
            slot, address = None, _linux.sockaddr(tuple(target))
        self.dial(session, slot, address)

    def _wait_for(self, session: Session, slot: ServerSlot) -> None:
        """``slot`` was chosen for the session and is full: wait in its queue.  When that queue is at
        the server's ``maxqueue``, the connection goes to another server instead (the next one the
        balancer would choose), or to the backend's queue when every other is full too, as HAProxy's
        documentation of ``maxqueue`` says."""
        backend = session.backend
        assert backend is not None
        balancer = backend.balancer
        avoid = set(session.excluded or ())
        while slot.server.maxqueue and backend.queues.length(slot) >= slot.server.maxqueue:
            avoid.add(slot.index)
            other = balancer.pick(pick_key(session), avoid)
            if other is None or other.index in avoid:
                self.engine.enqueue(session, None)
                return
            if balancer.available(other):
                self.dial(session, other, backend.raw_address_of(other, session))
                return
            slot = other
        self.engine.enqueue(session, slot)

    def dequeued(self, session: Session, slot: ServerSlot) -> None:
        """A connection that waited in a queue got a slot on ``slot``."""
        backend = session.backend
        assert backend is not None
        self.dial(session, slot, backend.raw_address_of(slot, session))

    def dial(self, session: Session, slot: Optional[ServerSlot], address: bytes) -> None:
        """Start a non-blocking connect to ``address`` (a raw sockaddr) and hand the pair over."""
        backend = session.backend
        assert backend is not None
        session.slot = slot
        if slot is not None:
            backend.balancer.connection_started(slot)
        try:
            server_fd, in_progress = backend.dialer.dial(address)
        except OSError as exc:  # refused at once, or out of descriptors: this connection's failure only
            self.connect_failed(session, exc.errno or errno.EINVAL)
            return
        prefix = None
        if slot is not None and (slot.server.send_proxy or slot.server.send_proxy_v2):
            prefix = proxy_header(session, v2=slot.server.send_proxy_v2)
        self.engine.pair(session, server_fd, connecting=in_progress, prefix=prefix)

    def connect_failed(self, session: Session, error: int) -> None:
        """The connect to the session's server failed: retry, redispatch or give up, as HAProxy does
        (``retries`` attempts more; with ``option redispatch`` the last one goes to another server)."""
        backend = session.backend
        assert backend is not None
        slot = session.slot
        if slot is not None:
            backend.balancer.connection_ended(slot)
            self.engine.count_connect_error(backend, slot)
        session.attempt += 1
        retries = backend.model.retries
        if session.attempt > retries or session.fd < 0:
            kind = CONNECT_ERROR_KIND.get(error, "unreachable")
            self.fail(session, UpstreamConnectError(kind, f"connect failed: {os.strerror(error)}"))
        elif backend.model.redispatch and session.attempt == retries and slot is not None:
            session.excluded = {slot.index}
            self.choose_and_dial(session)
        elif slot is not None:
            self.dial(session, slot, backend.raw_address_of(slot, session))
        else:
            self.choose_and_dial(session)
        if slot is not None and backend.balancer.queued:
            self.engine.serve_queues(backend, slot)  # the slot this session had may be free now

    def fail(self, session: Session, exc: ProxyError) -> None:
        """No upstream: count it and let the error handler answer the client."""
        self.engine.connect_failed(session, exc)
        if self.error_handler is None or session.fd < 0:
            session.close()
            return
        sock = socket.socket(fileno=session.fd)
        session.fd = -1
        conn = Connection(sock, session.frontend, session.runtime.model.binds[0] if session.runtime.model.binds
                          else None, session.peername, session._sockname, session.finished)  # type: ignore[arg-type]
        conn.context.update(session.context)
        task = asyncio.ensure_future(self._run_error_handler(conn, exc))
        self.engine.background(task)

    async def _run_error_handler(self, conn: Connection, exc: Exception) -> None:
        try:
            result = self.error_handler(conn, exc)  # type: ignore[misc]
            if asyncio.iscoroutine(result):
                await result
        except Exception:
            log.exception("error handler failed")
        finally:
            conn.close()
            conn.finished()
