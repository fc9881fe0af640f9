"""The TCP server: listens, accepts, tunes each connection, and hands it to a handler.

This is the seed design's "TCP server" half: it knows nothing of proxying.  A ``Listener`` owns one
listening socket; every accepted socket gets TCP_NODELAY and keepalive, becomes a ``Connection``, and
is given to a ``Handler``.  Whatever the handler does not take (``Connection.detach``) is closed when it
returns, on every path: normal end, error, timeout, shutdown.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import socket
from typing import Any, Callable, Optional, Protocol

from . import _linux
from .config import model

log = logging.getLogger("fastproxy")

ACCEPT_BATCH = 64  # accepts per readiness event, so one busy listener cannot starve the loop
EMFILE_PAUSE = 0.1  # seconds without accepting after running out of descriptors


class Connection:
    """One accepted client connection, as a handler sees it."""

    __slots__ = ("sock", "frontend", "bind", "peername", "sockname", "_detached", "context", "_on_finished")

    def __init__(self, sock: socket.socket, frontend: model.Frontend, bind: model.Bind,
                 peername: Any, sockname: Any, on_finished: Optional[Callable[[], None]] = None) -> None:
        self.sock = sock
        self.frontend = frontend
        self.bind = bind
        self.peername = peername
        self.sockname = sockname
        self._detached = False
        self._on_finished = on_finished
        self.context: dict[str, Any] = {}  # free for hooks to share state on one connection

    def finished(self) -> None:
        """Say the connection is over (it no longer counts against maxconn).  Idempotent.

        The server calls it when the handler returns, unless the handler detached the socket: then
        whoever took it calls it when the connection really ends.
        """
        callback, self._on_finished = self._on_finished, None
        if callback is not None:
            callback()

    @property
    def detached(self) -> bool:
        return self._detached

    def detach(self) -> socket.socket:
        """Take ownership of the socket: the server will no longer close it."""
        self._detached = True
        return self.sock

    def close(self, reset: bool = False) -> None:
        """Close the client socket (with a reset if asked) unless a handler took it."""
        if self._detached or self.sock.fileno() < 0:
            return
        if reset:
            try:
                _linux.set_linger0(self.sock.fileno())
            except OSError:
                pass
        self.sock.close()


class Handler(Protocol):
    """What a listener hands each accepted connection to (the seed's ``TCPHandler.ServeTCP``)."""

    async def serve_tcp(self, conn: Connection) -> None: ...


class ListenerLike(Protocol):
    """A listening socket of a frontend, whoever accepts on it: ``Listener`` (the event loop, then
    Python) or ``LaneListener`` (the pump's threads).  ``pause``/``resume`` are how limits stop and
    restart accepting; a lane's limits are the pump's own, so on a lane they do nothing."""

    tasks: set[asyncio.Task]
    sock: socket.socket  # the listening socket (``_getsocks`` hands it to a new process)

    @property
    def address(self) -> Any: ...

    def resume(self) -> None: ...

    def pause(self) -> None: ...

    def set_enabled(self, enabled: bool) -> None: ...

    def close(self) -> None: ...


def bind_address(bind: model.Bind) -> tuple[int, Any]:
    """The family and address ``bind`` binds (``*`` and an empty host: every address)."""
    host = bind.host
    family = {"ipv4": socket.AF_INET, "ipv6": socket.AF_INET6}.get(bind.family or "", socket.AF_UNSPEC)
    if host in ("", "*"):
        host = "::" if family == socket.AF_INET6 else "0.0.0.0"
    infos = socket.getaddrinfo(host, bind.port, family, socket.SOCK_STREAM, 0, socket.AI_PASSIVE)
    return infos[0][0], infos[0][4]


def open_listener(bind: model.Bind, *, backlog: int) -> socket.socket:
    """A bound, listening, non-blocking socket for ``bind``."""
    if bind.fd is not None:
        return _inherited_listener(bind, backlog=backlog)
    family, address = bind_address(bind)
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if bind.reuseport:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if family == socket.AF_INET6 and bind.v6only is not None:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, int(bind.v6only))
        if bind.defer_accept:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_DEFER_ACCEPT, 1)
        if bind.interface:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, bind.interface.encode())
        sock.bind(address)
        sock.listen(bind.backlog or backlog)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


def _inherited_listener(bind: model.Bind, *, backlog: int) -> socket.socket:
    """``bind fd@<n>``: the socket the process was handed, listening (HAProxy listens on one that is
    only bound).  A copy of the descriptor: closing the listener leaves the inherited one open."""
    assert bind.fd is not None
    sock = socket.socket(fileno=os.dup(bind.fd))
    try:
        if sock.family not in (socket.AF_INET, socket.AF_INET6) or sock.type != socket.SOCK_STREAM:
            raise OSError(f"file descriptor {bind.fd} is not a TCP socket")
        if not sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN):
            sock.listen(bind.backlog or backlog)
        if bind.defer_accept:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_DEFER_ACCEPT, 1)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


def listen_backlog(bind: model.Bind, frontend: model.Frontend) -> int:
    """The backlog a listener of ``bind`` listens with: its own, else the frontend's maxconn."""
    return bind.backlog or frontend.maxconn or socket.SOMAXCONN


def pause_listening(sock: socket.socket) -> None:
    """HAProxy's tcp_pause_listener(): the socket stops listening (new clients are refused, those in
    the backlog reset) but keeps its address, for ``listen`` to resume."""
    try:
        sock.shutdown(socket.SHUT_RD)
    except OSError:
        pass


def tune_listener(sock: socket.socket, keepalive: model.KeepAlive) -> None:
    """TCP_NODELAY and the frontend's keepalive on the listening socket: Linux copies them to every
    socket it accepts, which spares each connection its own setsockopt calls."""
    _linux.tune_socket(sock.fileno(), nodelay=True, keepalive=keepalive.enabled, idle=keepalive.idle,
                       interval=keepalive.interval, count=keepalive.count)


class Listener:
    """One listening socket of a frontend, feeding a handler from the event loop."""

    def __init__(self, sock: socket.socket, frontend: model.Frontend, bind: model.Bind, handler: Handler,
                 *, loop: asyncio.AbstractEventLoop, admit: Optional[Callable[[], int]] = None,
                 opened: Optional[Callable[[], None]] = None,
                 closed: Optional[Callable[[], None]] = None,
                 fast: Optional[Callable[[int, Any], None]] = None) -> None:
        self.sock = sock
        self.frontend = frontend
        self.bind = bind
        self.handler = handler
        self.loop = loop
        self._admit = admit  # how many may be accepted now; 0 when a limit paused us
        self._opened = opened
        self._closed_cb = closed
        # The fast entry takes a bare descriptor: no socket object, no task (the proxy's path).
        self._fast = fast
        self._reading = False
        self._closed = False
        self._disabled = False  # ``disable frontend``: limits may not resume it
        self._emfile_logged = False
        tune_listener(sock, frontend.client_keepalive)
        self._acceptor = _linux.Acceptor(sock, ACCEPT_BATCH, inherited=True)
        self.tasks: set[asyncio.Task] = set()

    @property
    def address(self) -> Any:
        return self.sock.getsockname()

    def resume(self) -> None:
        if not self._reading and not self._closed and not self._disabled:
            self._reading = True
            self.loop.add_reader(self.sock.fileno(), self._accept_ready)

    def pause(self) -> None:
        if self._reading:
            self._reading = False
            self.loop.remove_reader(self.sock.fileno())

    def set_enabled(self, enabled: bool) -> None:
        """``enable|disable frontend``: a disabled listener stops listening (clients are refused, as
        HAProxy's paused listeners refuse them) until enabled again, whatever the limits say."""
        if self._closed or enabled != self._disabled:
            return
        if enabled:
            self.sock.listen(listen_backlog(self.bind, self.frontend))  # OSError: still disabled
            self._disabled = False
            self.resume()
        else:
            self._disabled = True
            self.pause()
            pause_listening(self.sock)

    def close(self) -> None:
        """Stop accepting and close the listening socket; established connections go on."""
        if self._closed:
            return
        self.pause()
        self._closed = True
        self.sock.close()

    def _accept_ready(self) -> None:
        # How many the limits let in now; 0 means a limit paused us until a connection ends.
        room = self._admit() if self._admit is not None else ACCEPT_BATCH
        if room <= 0:
            return
        try:
            accepted = self._acceptor.accept(room)
        except OSError as exc:
            if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                self._out_of_resources(exc)
            elif exc.errno not in (errno.ECONNABORTED, errno.EPROTO):
                log.warning("accept on %s failed: %s", self.address, exc)
            return
        for fd, peer in accepted:
            if self._opened is not None:
                self._opened()
            if self._fast is not None:
                self._fast(fd, peer)
            else:
                self._serve(socket.socket(fileno=fd), _linux.peer_address(peer))

    def _out_of_resources(self, exc: OSError) -> None:
        # Waiting in the kernel backlog beats spinning on a listener we cannot serve.
        if not self._emfile_logged:
            log.error("accept on %s: %s; pausing accepts for %.0f ms", self.address, exc.strerror,
                      EMFILE_PAUSE * 1000)
            self._emfile_logged = True
        self.pause()
        self.loop.call_later(EMFILE_PAUSE, self.resume)

    def _serve(self, client: socket.socket, peername: Any) -> None:
        try:
            sockname = client.getsockname()
        except OSError:
            # The client is already gone (reset before we could look at it): its loss only.
            client.close()
            if self._closed_cb is not None:
                self._closed_cb()
            return
        conn = Connection(client, self.frontend, self.bind, peername, sockname, self._closed_cb)
        task = self.loop.create_task(self._run_handler(conn))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _run_handler(self, conn: Connection) -> None:
        try:
            await self.handler.serve_tcp(conn)
        except asyncio.CancelledError:
            conn.close(reset=True)
            raise
        except Exception:
            log.exception("handler failed on a connection from %s", conn.peername)
        finally:
            if not conn.detached:
                conn.close()
                conn.finished()


class LaneListener:
    """A listening socket whose connections the pump accepts, balances and dials itself (a lane, see
    ``_pump.pyx``): no Python runs per connection.  Limits are the pump's, so pause/resume do nothing."""

    def __init__(self, sock: socket.socket, pump: Any, index: int, backlog: int = socket.SOMAXCONN) -> None:
        self.sock = sock
        self.pump = pump
        self.index = index
        self.backlog = backlog  # to listen again after ``disable frontend``
        self._disabled = False
        self.tasks: set[asyncio.Task] = set()
        self._closed = False

    @property
    def address(self) -> Any:
        return self.sock.getsockname()

    def resume(self) -> None:
        pass

    def pause(self) -> None:
        pass

    def set_enabled(self, enabled: bool) -> None:
        """As ``Listener.set_enabled``; the workers stop polling it first (a refused listener would
        wake them), and poll it again once it listens."""
        if self._closed or enabled != self._disabled:
            return
        if enabled:
            self.sock.listen(self.backlog)  # OSError: still disabled
            self._disabled = False
            self.pump.lanes.set_enabled(self.index, True)
        else:
            self._disabled = True
            self.pump.lanes.set_enabled(self.index, False)
            pause_listening(self.sock)

    @property
    def disabled(self) -> bool:
        return self._disabled

    def close(self) -> None:
        """The pump lets go of the listener first: only then may its descriptor be closed."""
        if self._closed:
            return
        self._closed = True
        try:
            self.pump.lanes.remove(self.index)
        finally:
            self.sock.close()
