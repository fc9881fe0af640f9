"""Linux socket calls for the Python side, bound with cffi: batch accept, one-call dial, socket options
(TCP_NODELAY, keepalive, SO_LINGER 0) and raw sockaddrs.

The compiled cffi module (built by setup.py from _linux_build.py over includes/fastproxy.h, the C
helpers the data plane compiles too) is used when present; otherwise the few C declarations needed are
loaded in cffi's ABI mode from the C library, and what the helpers do is done with the standard
library.  The data plane does not go through here: _pump.pyx calls the kernel directly.
"""

from __future__ import annotations

import errno
import os
import socket
import struct
from typing import Any, Optional, Union

from ._impl import NO_EXTENSIONS

try:
    if NO_EXTENSIONS:
        raise ImportError
    from ._linux_cffi import ffi, lib  # type: ignore[import-not-found]

    COMPILED = True
except ImportError:
    import cffi  # type: ignore[import-untyped]

    from ._linux_build import CDEF

    ffi = cffi.FFI()
    ffi.cdef(CDEF)
    lib = ffi.dlopen(None)
    COMPILED = False


def _check(result: int) -> int:
    if result < 0:
        code = ffi.errno
        raise OSError(code, os.strerror(code))
    return result


def tune_socket(
    fd: int,
    *,
    nonblocking: bool = False,
    nodelay: bool = True,
    keepalive: bool = True,
    idle: float | None = None,
    interval: float | None = None,
    count: int | None = None,
) -> None:
    """O_NONBLOCK, TCP_NODELAY and keepalive with its idle/interval/count: one call to C when compiled."""
    idle_s = int(idle) if idle else 0
    interval_s = int(interval) if interval else 0
    count_n = int(count) if count else 0
    if COMPILED:
        if lib.fp_tune_socket(fd, int(nonblocking), int(nodelay), int(keepalive), idle_s, interval_s,
                              count_n) != 0:
            code = ffi.errno
            raise OSError(code, os.strerror(code))
        return
    if nonblocking:
        os.set_blocking(fd, False)
    sock = socket.socket(fileno=fd)
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, int(nodelay))
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, int(keepalive))
        if keepalive:
            if idle_s:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, idle_s)
            if interval_s:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, interval_s)
            if count_n:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, count_n)
    finally:
        sock.detach()


def set_linger0(fd: int) -> None:
    """Make the next close of ``fd`` send a reset."""
    if COMPILED:
        if lib.fp_set_linger0(fd) != 0:
            code = ffi.errno
            if code not in (errno.EBADF, errno.ENOTSOCK):
                raise OSError(code, os.strerror(code))
        return
    value = struct.pack("ii", 1, 0)
    buf = ffi.from_buffer(value)
    _check(lib.setsockopt(fd, socket.SOL_SOCKET, socket.SO_LINGER, buf, len(value)))


PR_SET_CHILD_SUBREAPER = 36  # <linux/prctl.h>


def set_child_subreaper(on: bool) -> None:
    """Make this process the reaper of its orphaned descendants (``on``), or no longer: a process whose
    parent exits is then re-parented to it rather than to init (prctl(2))."""
    _check(lib.prctl(PR_SET_CHILD_SUBREAPER, ffi.cast("unsigned long", int(on))))


# --- the connection path: batch accept and one-call dial ---------------------------------------------

SOCKADDR_SIZE = 28  # a sockaddr_in6; a sockaddr_in fits too

Peer = Union[bytes, tuple]  # a raw sockaddr (compiled path) or an address tuple (fallback)


def sockaddr(address: tuple) -> bytes:
    """The raw ``struct sockaddr_in`` / ``sockaddr_in6`` of ``(host, port)``: built once per server."""
    host, port = address[0], address[1]
    if ":" in host:
        return (struct.pack("<H", socket.AF_INET6) + struct.pack(">HI", port, 0)
                + socket.inet_pton(socket.AF_INET6, host) + struct.pack("<I", 0))
    return (struct.pack("<H", socket.AF_INET) + struct.pack(">H", port)
            + socket.inet_pton(socket.AF_INET, host) + bytes(8))


def sockname(fd: int) -> Optional[tuple]:
    """The local address of a socket descriptor, None if it has none (the descriptor stays open)."""
    sock = socket.socket(fileno=fd)
    try:
        return sock.getsockname()
    except OSError:
        return None
    finally:
        sock.detach()


def peer_address(peer: Peer) -> tuple:
    """``(host, port)`` (or the 4-tuple of IPv6) of a peer as an accept returned it."""
    if isinstance(peer, tuple):
        return peer
    family = peer[0] | (peer[1] << 8)
    port = (peer[2] << 8) | peer[3]
    if family == socket.AF_INET6:
        return (socket.inet_ntop(socket.AF_INET6, peer[8:24]), port, 0, 0)
    if family == socket.AF_INET:
        return (socket.inet_ntop(socket.AF_INET, peer[4:8]), port)
    return ("", 0)


class Acceptor:
    """Accepts a listener's connections in batches: non-blocking, close-on-exec and tuned (TCP_NODELAY,
    keepalive) in one call to C; peers are raw sockaddrs until someone asks (``peer_address``)."""

    def __init__(self, listen_sock: socket.socket, batch: int, *, nodelay: bool = True,
                 keepalive: bool = True, idle: Optional[float] = None, interval: Optional[float] = None,
                 count: Optional[int] = None, inherited: bool = False) -> None:
        self.sock = listen_sock
        self.fd = listen_sock.fileno()
        self.batch = batch
        self.inherited = inherited  # the options were set on the listener, and accepted sockets have them
        self.options = ((-1, -1, 0, 0, 0) if inherited else
                        (int(nodelay), int(keepalive), int(idle or 0), int(interval or 0), int(count or 0)))
        self.tune: dict[str, Any] = dict(nodelay=nodelay, keepalive=keepalive, idle=idle, interval=interval,
                                         count=count)
        if COMPILED:
            self._fds = ffi.new("int[]", batch)
            self._addrs = ffi.new("unsigned char[]", batch * SOCKADDR_SIZE)
            self._addr_buffer = ffi.buffer(self._addrs)

    def accept(self, limit: int) -> list[tuple[int, Peer]]:
        """Up to ``limit`` connections the kernel has ready now (possibly none); OSError for a failure
        of the listener itself (EMFILE...)."""
        limit = min(limit, self.batch)
        if COMPILED:
            n = lib.fp_accept_batch(self.fd, limit, self._fds, self._addrs, *self.options)
            if n < 0:
                raise OSError(-n, os.strerror(-n))
            raw = self._addr_buffer[:n * SOCKADDR_SIZE]
            fds = self._fds
            return [(fds[i], raw[i * SOCKADDR_SIZE:(i + 1) * SOCKADDR_SIZE]) for i in range(n)]
        accepted: list[tuple[int, Peer]] = []
        while len(accepted) < limit:
            try:
                fd, peer = self.sock._accept()  # type: ignore[attr-defined]
            except (BlockingIOError, InterruptedError, ConnectionAbortedError):
                break
            except OSError:
                if accepted:
                    break
                raise
            try:
                if self.inherited:
                    os.set_blocking(fd, False)
                else:
                    tune_socket(fd, nonblocking=True, **self.tune)
            except OSError:
                os.close(fd)
                continue
            accepted.append((fd, peer))
        return accepted


IP_BIND_ADDRESS_NO_PORT = getattr(socket, "IP_BIND_ADDRESS_NO_PORT", 24)


def bind_source(sock: socket.socket, source: tuple[str, int]) -> None:
    """Bind an outgoing socket to ``source`` (HAProxy's ``source``): without a port the kernel picks it
    at connect time (IP_BIND_ADDRESS_NO_PORT), so one source address serves every destination."""
    host, port = source
    if not port:
        sock.setsockopt(socket.IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 1)
    else:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))


class Dialer:
    """Starts non-blocking connects with the options of one side (socket, options and connect in one
    call to C when compiled)."""

    def __init__(self, *, nodelay: bool = True, keepalive: bool = True, idle: Optional[float] = None,
                 interval: Optional[float] = None, count: Optional[int] = None,
                 source: Optional[tuple[str, int]] = None) -> None:
        self.options = (int(nodelay), int(keepalive), int(idle or 0), int(interval or 0), int(count or 0))
        self.tune: dict[str, Any] = dict(nodelay=nodelay, keepalive=keepalive, idle=idle, interval=interval,
                                         count=count)
        self.source = source  # ``source <addr>[:<port>]``: bound before the connect
        if COMPILED:
            self._in_progress = ffi.new("int *")

    def dial(self, raw_address: bytes) -> tuple[int, bool]:
        """(descriptor, connect still in progress); OSError if it failed at once (refused, EMFILE...)."""
        if COMPILED and self.source is None:
            fd = lib.fp_dial(raw_address, len(raw_address), *self.options, self._in_progress)
            if fd < 0:
                raise OSError(-fd, os.strerror(-fd))
            return fd, bool(self._in_progress[0])
        family = raw_address[0] | (raw_address[1] << 8)
        sock = socket.socket(family, socket.SOCK_STREAM | socket.SOCK_NONBLOCK)
        try:
            tune_socket(sock.fileno(), **self.tune)
            if self.source is not None:
                bind_source(sock, self.source)
            result = sock.connect_ex(peer_address(raw_address)[:2])
        except OSError:
            sock.close()
            raise
        if result not in (0, errno.EINPROGRESS):
            sock.close()
            raise OSError(result, os.strerror(result))
        return sock.detach(), result != 0
