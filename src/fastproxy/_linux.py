"""Linux calls for the Python side (splice, pipe sizing, socket options), bound with cffi.

The compiled cffi module (built by setup.py from _linux_build.py) is used when present; otherwise the
same C declarations are loaded in cffi's ABI mode from the C library, and the helpers that only exist
in the compiled module are done with the standard library.  The data plane does not go through here:
_pump.pyx calls the kernel directly.
"""

from __future__ import annotations

import errno
import os
import socket
import struct

from ._impl import NO_EXTENSIONS

SPLICE_F_MOVE = 1
SPLICE_F_NONBLOCK = 2
F_SETPIPE_SZ = 1031
F_GETPIPE_SZ = 1032

try:
    if NO_EXTENSIONS:
        raise ImportError
    from ._linux_cffi import ffi, lib  # type: ignore[import-not-found]

    COMPILED = True
except ImportError:
    import cffi

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


def splice(fd_in: int, fd_out: int, length: int, flags: int = SPLICE_F_MOVE | SPLICE_F_NONBLOCK) -> int:
    """Move up to ``length`` bytes from ``fd_in`` to ``fd_out`` in the kernel (one side must be a pipe)."""
    return _check(lib.splice(fd_in, ffi.NULL, fd_out, ffi.NULL, length, flags))


def pipe(size: int | None = None) -> tuple[int, int]:
    """A non-blocking, close-on-exec pipe, resized to ``size`` bytes when given (rounded up by the kernel)."""
    fds = ffi.new("int[2]")
    _check(lib.pipe2(fds, os.O_NONBLOCK | os.O_CLOEXEC))
    read_end, write_end = fds[0], fds[1]
    if size:
        try:
            set_pipe_size(write_end, size)
        except OSError:
            os.close(read_end)
            os.close(write_end)
            raise
    return read_end, write_end


def set_pipe_size(fd: int, size: int) -> int:
    return _check(lib.fcntl(fd, F_SETPIPE_SZ, ffi.cast("int", size)))


def get_pipe_size(fd: int) -> int:
    return _check(lib.fcntl(fd, F_GETPIPE_SZ))


def pipe_max_size() -> int:
    """The largest pipe an unprivileged process may ask for (/proc/sys/fs/pipe-max-size)."""
    if COMPILED:
        return lib.fp_pipe_max_size()
    try:
        with open("/proc/sys/fs/pipe-max-size") as f:
            return int(f.read())
    except (OSError, ValueError):
        return -1


def tune_socket(
    fd: int,
    *,
    nodelay: bool = True,
    keepalive: bool = True,
    idle: float | None = None,
    interval: float | None = None,
    count: int | None = None,
) -> None:
    """TCP_NODELAY and keepalive with its idle/interval/count, in one call to C when compiled."""
    idle_s = int(idle) if idle else 0
    interval_s = int(interval) if interval else 0
    count_n = int(count) if count else 0
    if COMPILED:
        if lib.fp_tune_socket(fd, int(nodelay), int(keepalive), idle_s, interval_s, count_n) != 0:
            code = ffi.errno
            raise OSError(code, os.strerror(code))
        return
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
