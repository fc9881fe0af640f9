"""Listening sockets fetched from a running process (``-x <socket>``), HAProxy 2.6's ``_getsocks``.

A process whose ``stats socket`` has ``expose-fd listeners`` answers the ``_getsocks`` request with
its listening sockets; a new process started with ``-x <that socket>`` listens on them instead of
binding its own, so that an old-style reload (``-sf``/``-st``, no master) refuses no connection: old
and new process accept from the same kernel socket until the old one stops.

The wire format is HAProxy's (cli.c ``_getsocks``, sock.c ``sock_get_old_sockets``), so either end
may be the real haproxy: the request ``_getsocks\\n``; the answer a native ``int``, the number of
descriptors, then messages of at most ``MAX_SEND_FD`` descriptors (SCM_RIGHTS) whose bytes hold, per
descriptor, the length and name of its network namespace, the length and name of its interface, and
four zero bytes (listener options before 2.3).  The receiver acknowledges each message with an
``int``; the sender waits for that acknowledgement after each full message only.  A socket without
``expose-fd listeners`` closes the connection without an answer.

Which fetched socket serves which ``bind`` is decided by its address (``getsockname``), as HAProxy's
sock_find_compatible_fd() does; the fetched sockets no bind takes are closed once the process listens.
"""

from __future__ import annotations

import array
import socket
import struct
from dataclasses import dataclass
from typing import Iterable, Optional

from .config import model
from .handover import Opener, bind_listener, listen_again
from .server import bind_address

MAX_SEND_FD = 253  # compat-t.h: descriptors per message (the kernel's SCM_MAX_FD less a margin)
REQUEST = b"_getsocks\n"
TIMEOUT = 1.0  # seconds either end waits for the other, as HAProxy's SO_RCVTIMEO
_INT = struct.Struct("=i")
_PER_FD_MAX = 1 + 4096 + 1 + 16 + 4  # 1 + MAXPATHLEN + 1 + IFNAMSIZ + sizeof(int)


class TransferError(Exception):
    """The sockets could not be fetched: HAProxy's warning text as the message."""


@dataclass
class TransferredSocket:
    sock: socket.socket
    interface: str = ""
    namespace: str = ""


def _describe(namespace: str = "", interface: str = "") -> bytes:
    ns, iface = namespace.encode(), interface.encode()
    return bytes([len(ns)]) + ns + bytes([len(iface)]) + iface + b"\0\0\0\0"


def send_sockets(connection: socket.socket, sockets: Iterable[socket.socket]) -> None:
    """Answer ``_getsocks`` on ``connection`` (blocking, ``TIMEOUT`` per step) with ``sockets``."""
    fds = [sock.fileno() for sock in sockets if sock.fileno() >= 0]
    connection.settimeout(TIMEOUT)
    connection.sendall(_INT.pack(len(fds)))
    for start in range(0, len(fds), MAX_SEND_FD):
        batch = fds[start:start + MAX_SEND_FD]
        payload = b"".join(_describe() for _ in batch)
        rights = (socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", batch))
        sent = connection.sendmsg([payload], [rights])
        if sent != len(payload):
            raise TransferError("Failed to transfer sockets")
        if len(batch) == MAX_SEND_FD and start + MAX_SEND_FD < len(fds):
            if len(connection.recv(_INT.size)) != _INT.size:  # the receiver's ack before the next ones
                raise TransferError("Unexpected error while transferring sockets")


def fetch_sockets(path: str) -> list[TransferredSocket]:
    """The listening sockets of the process whose stats socket is at ``path`` (``-x``).
    TransferError with HAProxy's warning when they cannot be had."""
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    received: list[int] = []
    try:
        try:
            conn.connect(path)
        except OSError:
            raise TransferError(f"Failed to connect to the old process socket '{path}'") from None
        conn.settimeout(TIMEOUT)
        try:
            conn.sendall(REQUEST)
            head = conn.recv(_INT.size, socket.MSG_WAITALL)
        except OSError:
            head = b""
        if len(head) != _INT.size:
            raise TransferError("Failed to get the number of sockets to be transferred !")
        (expected,) = _INT.unpack(head)
        data = b""
        while len(received) < expected:
            try:
                chunk, ancillary, _, _ = conn.recvmsg(MAX_SEND_FD * _PER_FD_MAX,
                                                      socket.CMSG_SPACE(MAX_SEND_FD * _INT.size))
            except OSError:
                break
            for level, kind, fd_bytes in ancillary:
                if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                    fds = array.array("i")
                    fds.frombytes(fd_bytes[:len(fd_bytes) - len(fd_bytes) % _INT.size])
                    received.extend(fds)
            if not chunk:
                break
            data += chunk
            try:
                conn.sendall(_INT.pack(len(received)))  # the ack: the sender may go on
            except OSError:
                pass
            if len(received) > expected:
                raise TransferError("Got to many sockets !")
        if len(received) != expected:
            raise TransferError(f"We didn't get the expected number of sockets (expecting {expected} "
                                f"got {len(received)})")
        sockets = []
        offset = 0
        for fd in received:
            ns_len = data[offset] if offset < len(data) else -1
            namespace = data[offset + 1:offset + 1 + ns_len].decode("latin-1")
            offset += 1 + max(ns_len, 0)
            if_len = data[offset] if offset < len(data) else -1
            interface = data[offset + 1:offset + 1 + if_len].decode("latin-1")
            offset += 1 + max(if_len, 0) + 4
            if ns_len < 0 or if_len < 0 or offset > len(data):
                raise TransferError("Inconsistency while transferring sockets")
            sockets.append(TransferredSocket(socket.socket(fileno=fd), interface, namespace))
        received = []  # each one is a socket object now, closed with it
        return sockets
    finally:
        for fd in received:
            _close(fd)
        conn.close()


def _close(fd: int) -> None:
    try:
        socket.socket(fileno=fd).close()
    except OSError:
        pass


def _bind_address(bind: model.Bind) -> Optional[tuple[int, tuple]]:
    try:
        family, address = bind_address(bind)
    except OSError:
        return None
    return family, address[:2]


def _listening_address(sock: socket.socket) -> Optional[tuple[int, tuple]]:
    try:
        if sock.type != socket.SOCK_STREAM or sock.family not in (socket.AF_INET, socket.AF_INET6):
            return None
        return sock.family, sock.getsockname()[:2]
    except OSError:
        return None


class TransferredListeners:
    """The sockets fetched with ``-x``, handed to the binds whose address they have."""

    def __init__(self, sockets: list[TransferredSocket]) -> None:
        self.unused = [t.sock for t in sockets]

    def take(self, bind: model.Bind) -> Optional[socket.socket]:
        if bind.fd is not None:
            return None
        wanted = _bind_address(bind)
        for sock in self.unused:
            found = _listening_address(sock)
            if found is None or found != wanted:
                continue
            if sock.family == socket.AF_INET6 and bind.v6only is not None and \
                    bool(sock.getsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY)) != bind.v6only:
                continue
            self.unused.remove(sock)
            return sock
        return None

    def opener(self) -> Opener:
        """Listen on a fetched socket where one has the bind's address (its backlog and
        ``defer-accept`` set again for this configuration), else bind a socket of its own."""
        def open_(bind: model.Bind, backlog: int) -> socket.socket:
            sock = self.take(bind)
            return bind_listener(bind, backlog) if sock is None else listen_again(sock, bind, backlog)
        return open_

    def close_unused(self) -> None:
        """sock.c's sock_drop_unused_old_sockets(): the addresses the new configuration dropped."""
        for sock in self.unused:
            sock.close()
        self.unused = []
