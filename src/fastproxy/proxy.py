"""The TCP proxy: the handler of a frontend, from an accepted client to a routed session.

Service logic is kept apart from proxy logic by two hooks in the spirit of Go's
``httputil.ReverseProxy``: a ``director`` that may choose or rewrite the upstream of a connection, and
an ``error_handler`` that decides what a client sees when no upstream could be reached (both run in
``dispatch.Dispatcher``).  ``TCPProxy`` takes each accepted descriptor (``accept``, the fast entry,
or ``serve_tcp``, the generic one), reads a PROXY header first for ``accept-proxy`` binds, applies the
frontend's ``tcp-request`` rules and ``use_backend`` routing (peeking at what the client sends, without
consuming it, when rules read it: ``tcp-request content`` rules wait for more while they miss a sample,
within ``tcp-request inspect-delay``), and hands the session to the dispatcher with its backend.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import socket
import time
from typing import Callable, Optional, TypeVar

from . import _linux, logformat, proxyproto, tcplog, tls
from .acl import ConnInfo
from .dispatch import Dispatcher, default_error_handler
from .pump import Counter
from .runtime import FrontendRuntime, Runtime
from .server import Connection
from .session import Director, ErrorHandler, Session, Target
from .sni import HelloStatus, parse_client_hello
from .tls import BindTls
from .tracking import Tracker
from .variables import Variables

__all__ = ["Director", "ErrorHandler", "Session", "Target", "TCPProxy", "default_error_handler"]

log = logging.getLogger("fastproxy")

PEEK_SIZE = 16384 + 5  # a whole TLS record: a ClientHello is almost always in the first one
PEEK_POLL = 0.005  # seconds between peeks while bytes wait unread (the socket stays readable meanwhile)
TCP_CLOSE_WAIT = 8  # tcpi_state once the client has shut its side down
_Decision = TypeVar("_Decision")


async def peek_until(fd: int, timeout: float, parse: Callable[[bytes], Optional[object]]) -> Optional[object]:
    """Peek at what waits in ``fd``'s receive queue (MSG_PEEK: it stays there) until ``parse`` returns
    something other than None for it; None when the client closed or ``timeout`` seconds passed
    without that.  ``parse`` returns ``INCOMPLETE`` to ask for more bytes."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    sock = socket.socket(fileno=fd)
    try:
        while True:
            try:
                data = sock.recv(PEEK_SIZE, socket.MSG_PEEK)
            except (BlockingIOError, InterruptedError):
                data = None
            if data is not None:
                if not data:  # the client closed first
                    return None
                result = parse(data)
                if result is not INCOMPLETE:
                    return result
            if not await wait_readable(fd, deadline - loop.time()):
                return None  # nothing new before the deadline
    finally:
        sock.detach()


INCOMPLETE = object()  # what a ``peek_until`` parser returns to wait for more bytes


def _header_or_incomplete(data: bytes) -> Optional[object]:
    header = proxyproto.parse(data)
    if header.status is proxyproto.ProxyStatus.OK:
        return header
    return INCOMPLETE if header.status is not proxyproto.ProxyStatus.INVALID else None


async def wait_readable(fd: int, timeout: float) -> bool:
    """True when ``fd`` becomes readable within ``timeout`` seconds."""
    if timeout <= 0:
        return False
    loop = asyncio.get_running_loop()
    readable = loop.create_future()

    def ready() -> None:
        if not readable.done():
            readable.set_result(None)
    loop.add_reader(fd, ready)
    try:
        await asyncio.wait_for(readable, timeout)
        return True
    except asyncio.TimeoutError:
        return False
    finally:
        loop.remove_reader(fd)


def _set_socket_option(fd: int, option: str, value: int) -> None:
    """IP_TOS (IPV6_TCLASS for an IPv6 client) or SO_MARK on the client socket, as HAProxy's
    conn_set_tos()/conn_set_mark(): a failure (SO_MARK needs CAP_NET_ADMIN) changes nothing."""
    if fd < 0:
        return
    sock = socket.socket(fileno=fd)
    try:
        if option == "mark":
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_MARK, value & 0xFFFFFFFF)
        elif sock.family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_TCLASS, value)
        else:
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_TOS, value)
    except OSError:
        pass
    finally:
        sock.detach()


class TCPProxy:
    """The proxy handler of a frontend: read, filter and route each client, then dispatch it."""

    def __init__(self, state: Runtime, dispatcher: Dispatcher) -> None:
        self.state = state
        self.dispatcher = dispatcher

    # --- entries ----------------------------------------------------------------------------------

    def accept(self, fd: int, peer: _linux.Peer, *, frontend: FrontendRuntime,
               finished: Callable[[], None], accept_proxy: bool = False,
               tls: Optional[BindTls] = None) -> None:
        """A freshly accepted, tuned, non-blocking client descriptor: the fast entry (``tls``: its bind
        terminates TLS)."""
        session = Session(fd, peer, frontend, finished=finished)
        session.bind_tls = tls
        if accept_proxy:
            self.state.background(asyncio.ensure_future(self._read_proxy_header(session, self.start)))
        else:
            self.start(session)

    async def _read_proxy_header(self, session: Session, then: Callable[[Session], None]) -> None:
        """``bind ... accept-proxy`` (or ``tcp-request connection expect-proxy layer4``): the client's
        first bytes are a PROXY header whose addresses stand for the client's own (in ACLs, balancing
        and logs); ``then`` goes on with the session.  A client that sends no valid header within
        ``timeout client`` (5 s when unset) is closed, as HAProxy does."""
        try:
            header = await peek_until(session.fd, session.frontend.model.timeouts.client or 5.0,
                                      _header_or_incomplete)
            if isinstance(header, proxyproto.ProxyHeaderResult):
                with socket.socket(fileno=session.fd) as sock:
                    try:
                        sock.recv(header.length)  # consume exactly the header: the rest is the client's
                    finally:
                        sock.detach()
                if header.command == "PROXY" and header.src and header.dst:
                    session.set_addresses(header.src, header.dst)
                then(session)
                return
        except OSError:
            pass
        except asyncio.CancelledError:
            session.close()
            raise
        session.close()

    async def serve_tcp(self, conn: Connection) -> None:
        """The generic Handler entry: take the connection over and proxy it."""
        frontend = self.state.frontends[conn.frontend.name]
        sock = conn.detach()
        session = Session(sock.detach(), conn.peername, frontend, sockname=conn.sockname,
                          finished=conn.finished)
        session.context.update(conn.context)
        self.start(session)

    # --- routing ----------------------------------------------------------------------------------

    def start(self, session: Session) -> None:
        frontend = session.frontend
        if frontend.model.log and not frontend.model.tcplog:
            frontend.traffic_log(tcplog.connect_line(tcplog.address_text(session.peername), session.sockname,
                                                     frontend.name))
        router = frontend.router
        if frontend.tables:  # rules (the frontend's, the backend's) may track or read stick counters
            session.tracker = Tracker(frontend.tables, frontend.name)
        if router is None:  # no rule at all: the default backend
            if not self._terminating(session, lambda: self._go(session, frontend.model.default_backend)):
                self._go(session, frontend.model.default_backend)
            return
        info = self._info(session)
        session.info = info
        accepted, expect_proxy = router.screen_connection(info)
        if not accepted:  # tcp-request connection reject
            # Never a session: HAProxy counts it in conn_tot and dcon, not in stot.
            self.state.pump.add_counter(frontend.block, Counter.CONN_TOTAL, -1)
            self._deny(session)
            return
        info = self._rewritten(session, info)
        if expect_proxy:  # tcp-request connection expect-proxy layer4: the header first
            self.state.background(asyncio.ensure_future(self._read_proxy_header(session, self._screened)))
            return
        self._screened(session, info)

    def _screened(self, session: Session, info: Optional[ConnInfo] = None) -> None:
        """The connection rules accepted: the session rules (on the PROXY header's addresses, when one
        was expected), then the content rules and routing."""
        frontend = session.frontend
        router = frontend.router
        assert router is not None
        if self._terminating(session, lambda: self._screened(session)):
            return
        if info is None:  # the PROXY header (or the TLS handshake) may have changed what rules see
            info = session.info = self._info(session)
        if not router.accept_session(info):  # tcp-request session reject
            self._deny(session)
            return
        info = self._rewritten(session, info)
        if frontend.inspects:
            self.state.background(asyncio.ensure_future(self._inspect_then_route(session, info)))
            return
        # Without inspect-delay, content rules run at once on what is known (HAProxy does the same).
        if not router.accept_content(info):
            self._deny(session)
            return
        info = self._rewritten(session, info)
        self._go(session, router.backend_for(info), info)

    @staticmethod
    def _rewritten(session: Session, info: ConnInfo) -> ConnInfo:
        """What ``set-src``/``set-dst`` rules changed becomes the session's addresses, and the info the
        next rules see; what ``set-tos``/``set-mark`` set, the client socket's; ``set-priority-*``, the
        session's place in queues."""
        changes = info.rewritten
        if not changes:
            return info
        for option in ("tos", "mark"):
            if option in changes:
                _set_socket_option(session.fd, option, changes.pop(option))
        for priority in ("priority_class", "priority_offset"):
            if priority in changes:
                setattr(session, priority, changes.pop(priority))
        if not changes:
            return info
        peer, local = session.peername, session.sockname
        src = (changes.get("src", peer[0]), int(changes.get("src_port", peer[1])))
        dst = (changes.get("dst", local[0]), int(changes.get("dst_port", local[1])))
        session.set_addresses(src, dst)
        changes.clear()
        session.info = info = dataclasses.replace(info, src=src[0], src_port=src[1], dst=dst[0],
                                                  dst_port=dst[1], rewritten={})
        return info

    @staticmethod
    def _client_closed(sock: socket.socket) -> bool:
        """Whether the client sent its FIN (its bytes may still wait unread): no more will come."""
        try:
            return sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 1)[0] == TCP_CLOSE_WAIT
        except OSError:
            return False

    async def _inspect(self, session: Session, info: ConnInfo, delay: float,
                       decide: Callable[[ConnInfo], Optional[_Decision]],
                       ) -> Optional[tuple[ConnInfo, _Decision]]:
        """Peek at what the client sends (left in its receive queue) until ``decide`` answers for
        ``info`` with those bytes; after ``delay`` seconds, when the client closed or the buffer is full,
        the bytes are final and ``decide`` must answer (HAProxy's SMP_OPT_FINAL).  None when the session
        ended meanwhile (closed here)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + delay
        sock = socket.socket(fileno=session.fd)
        seen = -1
        try:
            while True:
                try:
                    data = sock.recv(PEEK_SIZE, socket.MSG_PEEK)
                    closed = not data or self._client_closed(sock)
                except (BlockingIOError, InterruptedError):
                    data, closed = b"", False
                final = closed or len(data) >= PEEK_SIZE or loop.time() >= deadline
                if len(data) != seen or final:
                    seen = len(data)
                    current = self._with_request(info, data, final)
                    decision = decide(current)
                    if decision is not None:
                        return current, decision
                    assert not final, "a decision on final bytes"
                remaining = deadline - loop.time()
                if data:
                    await asyncio.sleep(min(PEEK_POLL, max(remaining, 0.0)))
                else:
                    await wait_readable(session.fd, remaining)
        except asyncio.CancelledError:
            session.close()
            raise
        except OSError:
            session.close()
            return None
        finally:
            sock.detach()

    @staticmethod
    def _with_request(info: ConnInfo, data: bytes, final: bool) -> ConnInfo:
        """``info`` with the client's first bytes, and the ClientHello they hold (once whole)."""
        hello = parse_client_hello(data)
        if hello.status is HelloStatus.OK:
            return dataclasses.replace(info, ssl_hello_seen=True, request=data, final=final,
                                       hello_pending=False, sni=hello.server_name,
                                       hello_type=hello.hello_type, alpn=hello.alpn,
                                       hello_extensions=hello.extensions)
        return dataclasses.replace(info, ssl_hello_seen=True, request=data, final=final,
                                   hello_pending=hello.status is HelloStatus.INCOMPLETE)

    def _info(self, session: Session) -> ConnInfo:
        if session.variables is None:
            session.variables = Variables(self.state.variables)
        slots = session.frontend.model.request_captures
        if slots and session.captures is None:
            session.captures = [None] * len(slots)
        return ConnInfo(src=session.peername[0], src_port=session.peername[1],
                        dst=session.sockname[0], dst_port=session.sockname[1], counters=session.tracker,
                        rewritten={}, variables=session.variables, tls=session.tls_facts,
                        captures=session.captures)

    # --- TLS termination (bind ... ssl) ---------------------------------------------------------------

    def _terminating(self, session: Session, then: Callable[[], None]) -> bool:
        """Whether the session's TLS handshake is still to be done: it starts, and ``then`` follows
        once it completed.  As in HAProxy, it comes after the ``tcp-request connection`` rules (and a
        PROXY header), before the session rules."""
        if session.bind_tls is None or session.tls is not None:
            return False
        self.state.background(asyncio.ensure_future(self._handshake(session, then)))
        return True

    async def _handshake(self, session: Session, then: Callable[[], None]) -> None:
        """The client's TLS handshake within ``timeout client``; a client that fails it is closed and,
        as in HAProxy, never becomes a session (counted in conn_tot, not stot)."""
        endpoint = session.bind_tls.endpoint()
        sock = socket.socket(fileno=session.fd)
        try:
            await tls.handshake(sock, endpoint, session.frontend.model.timeouts.client)
        except tls.HandshakeError as exc:
            self.state.pump.add_counter(session.frontend.block, Counter.CONN_TOTAL, -1)
            _log_handshake_failure(session, exc.reason)
            session.close()
            return
        except asyncio.CancelledError:
            session.close()
            raise
        finally:
            sock.detach()
        session.tls, session.tls_facts = endpoint, tls.TlsFacts.of(endpoint.obj)
        then()

    def _deny(self, session: Session) -> None:
        session.close()
        session.frontend.denied += 1

    def _go(self, session: Session, backend_name: Optional[str], info: Optional[ConnInfo] = None) -> None:
        backend = self.state.backends.get(backend_name) if backend_name else None
        if backend is None:  # no backend for this connection: HAProxy closes it
            session.close()
            return
        session.backend = backend
        # A listen's rules ran as its frontend's; a backend's own run now, before a server is chosen.
        if backend.router is not None and backend.name != session.frontend.name:
            info = info or self._info(session)
            if backend.router.reads_content:
                self.state.background(asyncio.ensure_future(self._inspect_in_backend(session, info)))
                return
            if not backend.router.accept_content(info):
                self._deny_in_backend(session)
                return
            self._rewritten(session, info)
        self.dispatcher.choose_and_dial(session)

    def _deny_in_backend(self, session: Session) -> None:
        session.close()
        assert session.backend is not None
        session.backend.denied += 1

    async def _inspect_in_backend(self, session: Session, info: ConnInfo) -> None:
        """The backend's content rules on what the client sends, waiting for more within the backend's
        own ``tcp-request inspect-delay`` while they miss a sample (HAProxy's AN_REQ_INSPECT_BE)."""
        backend = session.backend
        assert backend is not None and backend.router is not None
        inspected = await self._inspect(session, info, backend.inspect_delay, backend.router.accept_content)
        if inspected is None:
            return
        session.info = inspected[0]
        self._rewritten(session, inspected[0])
        if not inspected[1]:
            self._deny_in_backend(session)
            return
        self.dispatcher.choose_and_dial(session)

    async def _inspect_then_route(self, session: Session, info: ConnInfo) -> None:
        """The content rules on what the client sends, without consuming it: they wait for more bytes
        while a condition misses a sample (``req.ssl_sni`` of a ClientHello cut short, ``req.len``,
        ``WAIT_END``...), at most ``tcp-request inspect-delay``, then decide on what came.  Then
        ``use_backend`` routes on what arrived."""
        frontend = session.frontend
        router = frontend.router
        assert router is not None
        inspected = await self._inspect(session, info, frontend.inspect_delay, router.accept_content)
        if inspected is None:
            return
        seen, accepted = inspected
        session.info = seen  # what log-format samples and the balancer read
        seen = self._rewritten(session, seen)
        if seen.sni is not None:
            session.context["sni"] = seen.sni
        if not accepted:  # tcp-request content reject
            self._deny(session)
            return
        self._go(session, router.backend_for(seen), seen)


def _log_handshake_failure(session: Session, reason: str) -> None:
    """HAProxy's line of a connection that never became a session (sess_log_embryonic()), from a
    frontend that logs sessions (``option tcplog``, ``log-format``): ``<client>:<port> [<accept
    date>] <frontend>/<listener>: <reason>``; with ``option dontlognull``, not for a client that
    closed before its handshake began or let it time out (``tls.QUIET_FAILURES``)."""
    frontend = session.frontend
    if frontend.log is None or frontend.log_format is None or \
            (frontend.model.dontlognull and reason in tls.QUIET_FAILURES):
        return
    accepted = time.time() - (time.monotonic() - session.started)
    listener = session.bind_tls.listener if session.bind_tls is not None else "?"
    frontend.traffic_log(f"{tcplog.address_text(session.peername)} [{logformat.accept_stamp(accepted)}] "
                         f"{frontend.name}/{listener}: {reason}")
