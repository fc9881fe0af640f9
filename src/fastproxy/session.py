"""One client connection through the proxy, from accept to end (HAProxy's stream), and the hooks
that may look at it.

A ``Session`` holds the client descriptor while Python owns it, what routing and balancing decided
(``frontend``, ``backend``, ``slot``), the attempt count of retries and the hooks' ``context``.  It is
plain data: ``dispatch.Dispatcher`` moves it along its path, ``proxy.TCPProxy`` creates it.
"""

from __future__ import annotations

import itertools
import os
import socket
import time
from typing import TYPE_CHECKING, Any, Awaitable, Callable, Optional, Union

from . import _linux, proxyproto
from .acl import ConnInfo
from .balance import PickKey, ServerSlot
from .config import model

if TYPE_CHECKING:  # pragma: no cover
    from .runtime import BackendRuntime, FrontendRuntime
    from .server import Connection

# What a director may return: a server of the backend (by model or by slot), an explicit address, or
# None to let the backend's balancer choose.
Target = Union[None, ServerSlot, model.Server, tuple]
Director = Callable[["Session", "BackendRuntime"], Union[Target, Awaitable[Target]]]
ErrorHandler = Callable[["Connection", Exception], Union[None, Awaitable[None]]]


class Session:
    """One client connection through the proxy.

    Hooks receive it where they would receive a Connection: it has ``peername``, ``sockname``,
    ``frontend`` (its runtime: ``.name``, ``.model``), ``backend`` and a free ``context`` dict.
    """

    __slots__ = ("fd", "lent_fd", "_peer", "_peername", "_sockname", "frontend", "backend", "slot",
                 "attempt", "excluded", "started", "context", "_finished", "number", "server_address",
                 "backend_address", "info", "tracker",
                 "stick_pending", "variables", "tls", "tls_facts",
                 "bind_tls", "priority_class", "priority_offset", "captures")

    numbers = itertools.count()  # HAProxy's stream numbers (%rt): in the order sessions begin

    def __init__(self, fd: int, peer: _linux.Peer, frontend: "FrontendRuntime", sockname: Any = None,
                 finished: Optional[Callable[[], None]] = None) -> None:
        self.fd = fd  # the client descriptor while Python owns it, else -1
        self.lent_fd = -1  # the client descriptor while the pump owns it
        self._peer = peer  # as accepted: decoded only if someone asks
        self._peername: Any = None
        self._sockname = sockname
        self.frontend = frontend
        self.backend: Optional["BackendRuntime"] = None
        self.slot: Optional[ServerSlot] = None
        self.attempt = 0
        self.excluded: Optional[set[int]] = None
        self.started = time.monotonic()
        self.context: dict[str, Any] = {}
        self._finished = finished
        self.number = next(Session.numbers)
        self.server_address: Optional[bytes] = None  # the raw sockaddr last dialed, for the log line
        self.backend_address: Optional[tuple] = None  # the proxy's end of that connection (%bi %bp)
        self.info: Any = None  # the connection as rules saw it (acl.ConnInfo), for log-format samples
        self.tracker: Any = None  # its stick counters (``tracking.Tracker``), when its rules may use them
        self.stick_pending: Any = None  # where persistence stores its server; None: tables not consulted yet
        self.variables: Any = None  # its variables (``variables.Variables``), once a rule or a log reads them
        self.bind_tls: Any = None  # its bind's TLS (``tls.BindTls``), when the bind terminates it
        self.tls: Any = None  # the client's TLS once handshaken (``tls.Endpoint``)
        self.tls_facts: Any = None  # what the handshake gave (``tls.TlsFacts``), for fetches and logs
        # ``set-priority-class`` / ``set-priority-offset``: its place in a queue (lower first; ms)
        self.priority_class = self.priority_offset = 0
        self.captures: Optional[list] = None  # its request capture slots, once a rule may fill them

    @property
    def peername(self) -> Any:
        if self._peername is None:
            self._peername = _linux.peer_address(self._peer)
        return self._peername

    @property
    def sockname(self) -> Any:
        if self._sockname is None:
            sock = socket.socket(fileno=self.fd if self.fd >= 0 else self.lent_fd)
            try:
                self._sockname = sock.getsockname()
            finally:
                sock.detach()
        return self._sockname

    def set_addresses(self, src: tuple, dst: tuple) -> None:
        """The addresses that stand for the client's own from now on (in rules, balancing, tables,
        logs, PROXY headers to servers): a PROXY header's (``accept-proxy``, ``expect-proxy``), or
        what ``set-src``/``set-dst`` rules set."""
        self._peername, self._sockname = src, dst

    def finished(self) -> None:
        tracker, self.tracker = self.tracker, None
        if tracker is not None:
            tracker.release()
        callback, self._finished = self._finished, None
        if callback is not None:
            callback()

    def close(self) -> None:
        """Close the client (if Python still owns it) and end the session."""
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
        self.finished()


def proxy_header(session: Session, *, v2: bool) -> bytes:
    """The PROXY header a ``send-proxy`` / ``send-proxy-v2`` server gets: the client as we know it."""
    peer, local = session.peername, session.sockname
    if not (isinstance(peer, tuple) and isinstance(local, tuple)):
        return proxyproto.encode_v2(command="LOCAL") if v2 else proxyproto.encode_v1_unknown()
    src, dst = (peer[0], peer[1]), (local[0], local[1])
    return proxyproto.encode_v2(src, dst) if v2 else proxyproto.encode_v1(src, dst)


def conn_info(session: Session) -> ConnInfo:
    """What stick rules and their conditions may look at for this session, in a backend."""
    peer, local = session.peername, session.sockname
    src, src_port = (peer[0], peer[1]) if isinstance(peer, tuple) else ("", 0)
    dst, dst_port = (local[0], local[1]) if isinstance(local, tuple) else ("", 0)
    sni = session.context.get("sni")
    request = session.info.request if session.info is not None else b""
    return ConnInfo(src=src, src_port=src_port, dst=dst, dst_port=dst_port, sni=sni,
                    ssl_hello_seen=sni is not None, counters=session.tracker, request=request,
                    variables=session.variables, tls=session.tls_facts)


def pick_key(session: Session) -> PickKey:
    """What the balancer may look at for this session."""
    peer = session.peername
    src, src_port = (peer[0], peer[1]) if isinstance(peer, tuple) else ("", 0)
    dst_port = 0
    if session.backend is not None and session.backend.needs_destination:
        local = session.sockname
        dst_port = local[1] if isinstance(local, tuple) else 0
    return PickKey(src=src, src_port=src_port, dst_port=dst_port, sni=session.context.get("sni"),
                   request=session.info.request if session.info is not None else b"")
