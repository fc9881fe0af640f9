"""The process around the service: daemon mode (``-D``) and systemd's notifications, for a single
process (``service.py``) and a master (``master.py``) alike."""

from __future__ import annotations

import logging
import os
import socket
import sys
from typing import Any, Callable, NoReturn, Optional, Protocol

log = logging.getLogger("fastproxy")

Ready = Callable[[], None]  # called once the process serves (daemon mode lets its parent exit then)
PIDFILE_MODE = 0o644  # HAProxy's: readable by all, written by its owner only


def write_pidfile(path: str) -> None:
    """Write this process's id to ``path``, mode 0644 whatever the umask (HAProxy's mode: a root
    started with umask 000 would otherwise leave a world-writable file naming whom to signal)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, PIDFILE_MODE)
    try:
        os.fchmod(fd, PIDFILE_MODE)  # the umask narrowed it, or the file was there with another mode
        os.write(fd, f"{os.getpid()}\n".encode())
    finally:
        os.close(fd)


def exit_now(status: int) -> NoReturn:
    """End a worker that has stopped (its pairs handed over or ended, its totals sent): the logs and
    standard streams flushed, then ``os._exit`` without the interpreter's teardown, which takes
    hundreds of milliseconds with every module of a worker loaded and has nothing left to do."""
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(status)


def notify(*states: str) -> None:
    """Tell systemd (``Type=notify``) how the service is: ``READY=1``, ``RELOADING=1``,
    ``STOPPING=1``.  Nothing without ``NOTIFY_SOCKET``; a failure to send is no failure to serve."""
    path = os.environ.get("NOTIFY_SOCKET")
    if not path:
        return
    if path.startswith("@"):
        path = "\0" + path[1:]  # an abstract socket
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.sendto("\n".join(states).encode(), path)
    except OSError as exc:
        log.warning("cannot notify %s: %s", os.environ.get("NOTIFY_SOCKET"), exc)


def daemonize() -> Ready:
    """Fork into the background (``-D``), in a session of its own.  The parent exits once the
    returned callable is called (0), or with 1 if the child exits first.  The child keeps its
    standard streams until it is ready, so that start-up errors are still seen, then drops them."""
    read_end, write_end = os.pipe()
    if os.fork():
        os.close(write_end)
        started = os.read(read_end, 1)
        os._exit(0 if started else 1)
    os.close(read_end)
    os.setsid()

    def ready() -> None:
        os.write(write_end, b"1")
        os.close(write_end)
        devnull = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(devnull, fd)
        os.close(devnull)
    return ready


class MasterLink(Protocol):
    """A worker's tie to its master (``master.WorkerLink``)."""

    def ready(self, engine: Any = None) -> None:
        """Tell the master the worker serves ``engine`` (whose runtime API the master's CLI reaches)."""

    async def stop_requested(self) -> Optional[socket.socket]:
        """Return once the worker must stop: the channel its established pairs go through to the
        new worker of a reload, or None (the master has gone)."""

    def stopped(self, engine: Any) -> None:
        """Tell the master the worker has stopped serving ``engine`` (its final counters)."""
