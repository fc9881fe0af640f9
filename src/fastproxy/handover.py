"""What outlives a worker across a reload: its listening sockets, and its established pairs.

Listening sockets: the master opens them, every worker inherits them.

In master-worker mode (``master.py``) the master binds each ``bind`` of the configuration once and
keeps the socket open for as long as a configuration names its address.  A worker started by the
master inherits the descriptors (``pass_fds``; the command line says which descriptor is which
address, as ``--inherit FD=KEY``) and listens on them instead of binding its own.  Old and new
workers of a reload therefore accept from the *same* kernel socket, the same accept queue: nothing
is refused while the new worker starts, and a connection queued when the old worker stops accepting
is accepted by the new one, with no need for ``net.ipv4.tcp_migrate_req`` (which only moves requests
between the distinct sockets of a ``SO_REUSEPORT`` group).

A key names an address as the configuration writes it, normalized as ``server.open_listener``
resolves it, so ``*:80`` and ``0.0.0.0:80`` share a socket.  Options that can change on a listening
socket (``backlog``, ``defer-accept``) are applied again by each worker; the others (``v6only``,
``reuseport``) are those of the configuration that first bound the address.

Established pairs: on a reload the master gives the former worker one end of a UNIX socket pair whose
other end the new worker got at its start (``--handover-from FD``).  The new worker (``PairReceiver``)
first writes the routes it has (its frontends, and each backend's servers), once the master has
prepared it (``_prepared``, after the servers the former worker added at run time are added again, so
that their pairs move too); the former one
(``PairSender``), which has stopped accepting, detaches from its pump every established pair whose
frontend, backend and server the new worker has (``Pump.detach``: at a clean point, its bytes in
flight with it) and sends each as one frame: a JSON header (where the pair stood, the client's address
and the names for the log line) with both sockets attached (SCM_RIGHTS), then the bytes in flight.
The new worker adopts it (``Pump.adopt``) and logs it when it ends.  A pair whose route the new worker
lacks stays in the former worker until it ends or ``hard-stop-after`` cuts it; pairs still connecting
or not yet handed to the pump move at a later round.  The former worker exits once nothing is left.
If the channel breaks, a pair detached but not sent is adopted back by the worker that detached it.

A pair a lane made moves as the others and is Python's in the new worker, as a lane's hand-back is
(``AdmissionControl.adopted``: the frontend's and server's current counts, the global ``maxconn``
total, Python's log line at its end), not the new lane's: that lane's own open count, which holds its
frontend's ``maxconn``, does not include it, and no stick table of the new worker tracks it (they
start empty, as haproxy's new process's without ``peers``).
"""

from __future__ import annotations

import array
import asyncio
import functools
import json
import logging
import os
import socket
import struct
import threading
import time
from typing import TYPE_CHECKING, Any, Callable, Iterable, Optional

from . import _linux
from .config import model
from .pump import DetachedPair
from .server import open_listener
from .session import Session

if TYPE_CHECKING:  # pragma: no cover
    from .dispatch import Dispatcher
    from .limits import AdmissionControl
    from .runtime import Runtime

log = logging.getLogger("fastproxy")

# How a worker gets a listening socket for a bind (``Engine(open_listener=...)``).
Opener = Callable[[model.Bind, int], socket.socket]

STATS_BACKLOG = 16  # a stats socket's: few operators at once


def bind_listener(bind: model.Bind, backlog: int) -> socket.socket:
    """The default opener: a socket of this process's own."""
    return open_listener(bind, backlog=backlog)


def bind_key(bind: model.Bind) -> str:
    """The address of ``bind`` as one string: ``ipv4@0.0.0.0:80``, ``@[::1]:8080``..."""
    host = bind.host
    if host in ("", "*"):
        host = "::" if bind.family == "ipv6" else "0.0.0.0"
    if ":" in host:
        host = f"[{host}]"
    device = f"%{bind.interface}" if bind.interface else ""  # one socket per interface on an address
    return f"{bind.family or ''}@{host}:{bind.port}{device}"


def backlog_of(frontend: model.Frontend) -> int:
    return frontend.maxconn or socket.SOMAXCONN


def stats_socket_bind(config: model.StatsSocket) -> model.Bind:
    """A TCP ``stats socket`` as the bind it listens like."""
    return model.Bind(config.host, config.port, family=config.family, location=config.location)


def listening_binds(config: model.Config) -> list[tuple[model.Bind, int]]:
    """Every TCP address the configuration listens on, with its default backlog: the frontends'
    binds (stats listeners' too) and the TCP ``stats socket`` lines."""
    binds = [(bind, backlog_of(frontend))
             for frontend in config.frontends.values() for bind in frontend.binds]
    binds += [(stats_socket_bind(stats), STATS_BACKLOG) for stats in config.global_.stats_sockets
              if stats.path is None]
    return binds


class ListenerPool:
    """The master's listening sockets, by ``bind_key``."""

    def __init__(self) -> None:
        self.sockets: dict[str, socket.socket] = {}

    def open_for(self, config: model.Config) -> tuple[dict[str, socket.socket], list[str]]:
        """The sockets ``config`` listens on, opening those not open yet: ``(by key, keys opened
        now)``.  On a failure (an address in use...) the ones opened now are closed and it raises."""
        wanted: dict[str, socket.socket] = {}
        opened: list[str] = []
        try:
            for bind, backlog in listening_binds(config):
                key = bind_key(bind)
                if key in wanted:
                    continue
                sock = self.sockets.get(key)
                if sock is None:
                    sock = open_listener(bind, backlog=backlog)
                    self.sockets[key] = sock
                    opened.append(key)
                wanted[key] = sock
        except BaseException:
            self.close(opened)
            raise
        return wanted, opened

    def keep_only(self, keys: Iterable[str]) -> None:
        """Close the sockets no configuration in use names any more."""
        keep = set(keys)
        self.close([key for key in self.sockets if key not in keep])

    def close(self, keys: Optional[Iterable[str]] = None) -> None:
        for key in list(self.sockets if keys is None else keys):
            sock = self.sockets.pop(key, None)
            if sock is not None:
                sock.close()


def parse_inherited(values: Iterable[str]) -> dict[str, int]:
    """``--inherit FD=KEY`` arguments: descriptor by key."""
    inherited: dict[str, int] = {}
    for value in values:
        fd, _, key = value.partition("=")
        inherited[key] = int(fd)
    return inherited


def inheriting_opener(inherited: dict[str, int]) -> Opener:
    """An opener that listens on the inherited socket of a bind's address (its backlog and
    ``defer-accept`` set again for this configuration), and binds one for an address it was not
    given (the master always gives them all; a frontend built at run time may not be)."""
    remaining = dict(inherited)

    def open_(bind: model.Bind, backlog: int) -> socket.socket:
        fd = remaining.pop(bind_key(bind), None)
        if fd is None:
            return bind_listener(bind, backlog)
        return listen_again(socket.socket(fileno=fd), bind, backlog)
    return open_


def listen_again(sock: socket.socket, bind: model.Bind, backlog: int) -> socket.socket:
    """A listening socket another process bound, set for ``bind``: its backlog (listen() again only
    changes that) and ``defer-accept``; closed if that fails."""
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_DEFER_ACCEPT, int(bind.defer_accept))
        sock.listen(bind.backlog or backlog)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


# --- established pairs -------------------------------------------------------------------------------

FRAME_LENGTH = struct.Struct("!I")  # before each frame's JSON header
MAX_HEADER = 1 << 20
ROUTES_TIMEOUT = 5.0  # seconds the former worker waits for the new one's routes


def send_frame(channel: socket.socket, header: dict, fds: tuple[int, ...] = (), payload: bytes = b"") -> None:
    """One frame: the header's length, the header, then ``payload``; ``fds`` ride on its first byte."""
    data = json.dumps(header).encode()
    first = FRAME_LENGTH.pack(len(data)) + data
    ancillary = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))] if fds else []
    sent = channel.sendmsg([first], ancillary)
    channel.sendall(first[sent:] + payload)


class FrameReader:
    """Frames from a channel as ``send_frame`` writes them: ``(header, fds, payload)``."""

    def __init__(self, channel: socket.socket) -> None:
        self.channel = channel
        self.data = bytearray()
        self.fds: list[int] = []  # received in order, each frame's taken by its header's ``fds``

    def next(self) -> Optional[tuple[dict, list[int], bytes]]:
        """The next frame (blocking as the channel does); None at the end of the channel."""
        while True:
            frame = self._parse()
            if frame is not None:
                return frame
            ancillary_size = socket.CMSG_SPACE(16 * array.array("i").itemsize)
            data, ancillary, _, _ = self.channel.recvmsg(1 << 16, ancillary_size)
            for level, kind, payload in ancillary:
                if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                    fds = array.array("i")
                    fds.frombytes(payload[:len(payload) - len(payload) % fds.itemsize])
                    self.fds.extend(fds)
            if not data:
                self.close()
                return None
            self.data += data

    def _parse(self) -> Optional[tuple[dict, list[int], bytes]]:
        if len(self.data) < FRAME_LENGTH.size:
            return None
        (length,) = FRAME_LENGTH.unpack_from(self.data)
        if length > MAX_HEADER:
            raise ValueError("a handover frame's header is too long")
        end = FRAME_LENGTH.size + length
        if len(self.data) < end:
            return None
        header = json.loads(self.data[FRAME_LENGTH.size:end])
        total = end + header.get("payload", 0)
        if len(self.data) < total:
            return None
        payload = bytes(self.data[end:total])
        del self.data[:total]
        count = header.get("fds", 0)
        fds, self.fds = self.fds[:count], self.fds[count:]
        return header, fds, payload

    def close(self) -> None:
        for fd in self.fds:  # descriptors of frames that never came whole
            os.close(fd)
        self.fds = []


def routes_of(state: Runtime) -> dict[str, Any]:
    """What a pair's route must find in a worker: its frontends, and each backend's servers."""
    return {"frontends": sorted(state.frontends),
            "servers": {name: [slot.name for slot in backend.balancer.slots]
                        for name, backend in state.backends.items()}}


def route_of(state: Runtime, session: Optional[Session], frontend_block: int,
             server_block: int) -> Optional[tuple[str, str, Optional[str]]]:
    """``(frontend, backend, server)`` of a pair: Python's from its session, a lane's from its blocks;
    None if this worker cannot name it.  The server is None for a pair a director sent to an address."""
    if session is not None:
        if session.backend is None:
            return None
        return (session.frontend.name, session.backend.name,
                session.slot.name if session.slot is not None else None)
    frontend = state.frontend_blocks.get(frontend_block)
    server = state.servers.get(server_block)
    if frontend is None or server is None:
        return None
    return frontend.name, server.backend.name, server.slot.name


def adopt_pair(state: Runtime, dispatcher: Dispatcher, admission: AdmissionControl, header: dict,
               client_fd: int, server_fd: int, payload: bytes) -> None:
    """A pair another worker sent (or one this worker could not send): pumped here from where it
    stood, with a session of this worker's for its books and its log line.  If it raises, both
    descriptors are closed."""
    pending_in = payload[:header["pending_in"]]
    carried = DetachedPair(
        0, client_fd, server_fd, -1, -1, -1, b"", tuple(header["timeouts_ms"]),  # type: ignore[arg-type]
        header["client_idle_ms"], header["server_idle_ms"], header["age_ms"], header["queue_ms"],
        header["connect_ms"], header["bytes_in"], header["bytes_out"], header["in_eof"], header["in_shut"],
        header["out_eof"], header["out_shut"], pending_in, payload[len(pending_in):])
    frontend = state.frontends.get(header["frontend"])
    backend = state.backends.get(header["backend"])
    slot = None
    if backend is not None and header["server"] is not None:
        try:
            slot = backend.balancer.slot(header["server"])
        except KeyError:
            pass
    if frontend is None or backend is None or (header["server"] is not None and slot is None):
        # Its route went between the routes sent and now (a server deleted at run time): pumped all
        # the same, without books here.
        try:
            state.pump.adopt(carried)
        except BaseException:
            os.close(client_fd)
            os.close(server_fd)
            raise
        return
    session = Session(-1, tuple(header["client"]), frontend,
                      finished=functools.partial(admission.closed, frontend))
    admission.adopted(frontend)
    session.backend, session.slot = backend, slot
    session.started = time.monotonic() - header["age_ms"] / 1000
    session.attempt = header["attempt"]
    session.server_address = bytes.fromhex(header["server_address"]) if header["server_address"] else None
    dispatcher.adopt(session, carried)


class PairSender:
    """The former worker's side: its established pairs, to the new worker."""

    def __init__(self, state: Runtime, dispatcher: Dispatcher, admission: AdmissionControl,
                 channel: socket.socket) -> None:
        self.state, self.dispatcher, self.admission = state, dispatcher, admission
        self.channel = channel
        self.routes: Optional[dict[str, Any]] = None
        self.moved = 0
        self.broken = False

    def open(self) -> bool:
        """Read the new worker's routes; False if they do not come (nothing moves then)."""
        self.channel.settimeout(ROUTES_TIMEOUT)
        try:
            frame = FrameReader(self.channel).next()
        except (OSError, ValueError) as exc:
            log.warning("handover: no routes from the new worker: %s", exc)
            frame = None
        if frame is None or "frontends" not in frame[0]:
            self.broken = True
            return False
        self.routes = frame[0]
        self.channel.settimeout(None)
        return True

    def _goes(self, route: Optional[tuple[str, str, Optional[str]]]) -> bool:
        routes = self.routes
        if route is None or routes is None:
            return False
        frontend, backend, server = route
        servers = routes["servers"].get(backend)
        return (frontend in routes["frontends"] and servers is not None
                and (server is None or server in servers))

    def move(self) -> int:
        """One round: every established pair whose route the new worker has goes to it; how many."""
        if self.broken:
            return 0
        state, pairs = self.state, self.dispatcher.pairs
        tags = [info.tag for info in state.pump.pairs() if not info.connecting and self._goes(
            route_of(state, pairs.get(info.tag), info.frontend_block, info.server_block))]
        moved = 0
        for pair in state.pump.detach(tags) if tags else ():
            session = pairs.get(pair.tag)
            route = route_of(state, session, pair.frontend_block, pair.server_block)
            header = self._header(pair, session, route)
            self.dispatcher.pair_moved(pair.tag)
            payload = pair.pending_in + pair.pending_out
            if not self.broken:
                try:
                    send_frame(self.channel, header, (pair.client_fd, pair.server_fd), payload)
                except OSError as exc:
                    log.warning("handover: the channel to the new worker broke: %s", exc)
                    self.broken = True
                else:
                    os.close(pair.client_fd)
                    os.close(pair.server_fd)
                    moved += 1
                    continue
            # Not sent: it goes on here.
            adopt_pair(state, self.dispatcher, self.admission, header, pair.client_fd, pair.server_fd,
                       payload)
        self.moved += moved
        return moved

    def _header(self, pair: DetachedPair, session: Optional[Session],
                route: Optional[tuple[str, str, Optional[str]]]) -> dict[str, Any]:
        assert route is not None  # detached only for a route the new worker has
        if session is not None:
            client, attempt = session.peername, session.attempt
            server_address = session.server_address.hex() if session.server_address else ""
        else:  # a lane's
            client, attempt = _linux.peer_address(pair.peer), 1
            server_address = self.state.servers[pair.server_block].raw_address.hex()
        header = {field: getattr(pair, field) for field in (
            "timeouts_ms", "client_idle_ms", "server_idle_ms", "age_ms", "queue_ms", "connect_ms",
            "bytes_in", "bytes_out", "in_eof", "in_shut", "out_eof", "out_shut")}
        header.update(frontend=route[0], backend=route[1], server=route[2], client=list(client),
                      attempt=attempt, server_address=server_address, pending_in=len(pair.pending_in),
                      payload=len(pair.pending_in) + len(pair.pending_out), fds=2)
        return header

    def close(self) -> None:
        self.channel.close()


class PairReceiver:
    """The new worker's side: says which routes it has, then adopts the pairs the former one sends."""

    def __init__(self, state: Runtime, dispatcher: Dispatcher, admission: AdmissionControl,
                 channel: socket.socket) -> None:
        self.state, self.dispatcher, self.admission = state, dispatcher, admission
        self.channel = channel
        self.adopted = 0
        self._thread: Optional[threading.Thread] = None

    def start(self) -> None:
        """Frames are read by a thread of their own and adopted on the loop; none comes before the
        routes are sent (``send_routes``)."""
        self.channel.setblocking(True)
        loop = self.state.loop
        self._thread = threading.Thread(target=self._read, args=(loop,), name="fastproxy-handover",
                                        daemon=True)
        self._thread.start()

    def send_routes(self) -> None:
        """The routes this worker has now, for the former one to send the pairs they fit.  OSError if
        the channel is gone (nothing moves then)."""
        send_frame(self.channel, routes_of(self.state))

    def _read(self, loop: asyncio.AbstractEventLoop) -> None:
        reader = FrameReader(self.channel)
        try:
            while (frame := reader.next()) is not None:
                header, fds, payload = frame
                loop.call_soon_threadsafe(self._adopt, header, fds, payload)
        except (OSError, ValueError, RuntimeError) as exc:  # RuntimeError: the loop has closed
            log.warning("handover: reading the former worker's pairs: %s", exc)
        finally:
            reader.close()
            self.channel.close()

    def _adopt(self, header: dict, fds: list[int], payload: bytes) -> None:
        if len(fds) != 2:
            for fd in fds:
                os.close(fd)
            log.warning("handover: a pair came without its two sockets")
            return
        try:
            adopt_pair(self.state, self.dispatcher, self.admission, header, fds[0], fds[1], payload)
        except Exception:  # the pump stopped meanwhile, or no memory: this pair only (its sockets closed)
            log.exception("handover: cannot adopt a pair")
            return
        self.adopted += 1
