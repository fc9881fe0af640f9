"""The TCP proxy: a handler that dials an upstream and pairs it with the client.

This is the seed design's "TCP proxy" half, kept apart from service logic by two hooks in the spirit of
``httputil.ReverseProxy``: a ``director`` that may choose or rewrite the upstream of a connection, and an
``error_handler`` that decides what a client sees when no upstream could be reached.  Once both sockets
are connected they are handed to the pump, which owns them from then on.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
import sys
import time
from typing import TYPE_CHECKING, Any, Awaitable, Callable, Optional, Union

from . import _linux
from .balance import PickKey, ServerSlot
from .config import model
from .errors import NoServerAvailable, UpstreamConnectError
from .server import Connection

if TYPE_CHECKING:
    from .engine import BackendRuntime, Engine

log = logging.getLogger("fastproxy")

# What a director may return: a server of the backend (by model or by slot), an explicit address, or
# None to let the backend's balancer choose.
Target = Union[None, ServerSlot, model.Server, tuple]
Director = Callable[[Connection, "BackendRuntime"], Union[Target, Awaitable[Target]]]
ErrorHandler = Callable[[Connection, Exception], Union[None, Awaitable[None]]]


if sys.version_info >= (3, 11):
    async def _connect_within(loop: asyncio.AbstractEventLoop, sock: socket.socket, address: Any,
                              timeout: Optional[float]) -> None:
        async with asyncio.timeout(timeout):
            await loop.sock_connect(sock, address)
else:  # pragma: no cover - exercised on 3.10 only
    async def _connect_within(loop: asyncio.AbstractEventLoop, sock: socket.socket, address: Any,
                              timeout: Optional[float]) -> None:
        await asyncio.wait_for(loop.sock_connect(sock, address), timeout)


async def dial(address: tuple, *, family: int, timeout: Optional[float],
               keepalive: model.KeepAlive) -> socket.socket:
    """A connected, tuned, non-blocking socket to ``address``, or UpstreamConnectError."""
    loop = asyncio.get_running_loop()
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setblocking(False)
        _linux.tune_socket(sock.fileno(), nodelay=True, keepalive=keepalive.enabled, idle=keepalive.idle,
                           interval=keepalive.interval, count=keepalive.count)
        await _connect_within(loop, sock, address, timeout)
    except (asyncio.TimeoutError, TimeoutError):
        sock.close()
        raise UpstreamConnectError("timeout", f"connect to {address[0]}:{address[1]} timed out") from None
    except OSError as exc:
        sock.close()
        kind = "refused" if exc.errno == errno.ECONNREFUSED else "unreachable"
        raise UpstreamConnectError(kind, f"connect to {address[0]}:{address[1]}: {exc.strerror}") from exc
    except BaseException:
        sock.close()
        raise
    return sock


async def default_error_handler(conn: Connection, exc: Exception) -> None:
    """Close the client cleanly: what HAProxy does in TCP mode when no server can be reached."""
    conn.close()


class TCPProxy:
    """The proxy handler of one frontend: route, pick, dial (with retries), pair."""

    def __init__(self, engine: "Engine", *, director: Optional[Director] = None,
                 error_handler: Optional[ErrorHandler] = None) -> None:
        self.engine = engine
        self.director = director
        self.error_handler = error_handler or default_error_handler

    async def serve_tcp(self, conn: Connection) -> None:
        started = time.monotonic()
        backend = self.engine.backend_for(conn)
        if backend is None:
            conn.close()
            return
        try:
            slot, sock, retries = await self._connect(conn, backend)
        except (UpstreamConnectError, NoServerAvailable) as exc:
            self.engine.connect_failed(conn, backend, exc)
            result = self.error_handler(conn, exc)
            if asyncio.iscoroutine(result):
                await result
            return
        self.engine.pair(conn, backend, slot, sock, started=started, retries=retries)

    async def _choose(self, conn: Connection, backend: "BackendRuntime",
                      exclude: set[int]) -> tuple[Optional[ServerSlot], tuple]:
        if self.director is not None:
            target = self.director(conn, backend)
            if asyncio.iscoroutine(target):
                target = await target
            if isinstance(target, ServerSlot):
                return target, backend.address_of(target, conn)
            if isinstance(target, model.Server):
                slot = backend.balancer.slot(target.name)
                return slot, backend.address_of(slot, conn)
            if isinstance(target, tuple):
                return None, target
        slot = backend.balancer.pick(pick_key(conn), exclude)
        if slot is None:
            raise NoServerAvailable("no-server", f"backend '{backend.name}' has no server available")
        return slot, backend.address_of(slot, conn)

    async def _connect(self, conn: Connection, backend: "BackendRuntime"
                       ) -> tuple[Optional[ServerSlot], socket.socket, int]:
        """Dial, retrying as ``retries`` and ``option redispatch`` say (HAProxy: the last retry of a
        redispatching backend goes to another server)."""
        model_backend = backend.model
        attempts = model_backend.retries + 1
        exclude: set[int] = set()
        slot, address = await self._choose(conn, backend, exclude)
        last_error: Optional[Exception] = None
        for attempt in range(attempts):
            if attempt and model_backend.redispatch and attempt == attempts - 1 and slot is not None:
                exclude.add(slot.index)
                try:
                    slot, address = await self._choose(conn, backend, exclude)
                except NoServerAvailable:
                    pass
            family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
            if slot is not None:
                backend.balancer.connection_started(slot)
            try:
                sock = await dial(address, family=family, timeout=model_backend.timeouts.connect,
                                  keepalive=model_backend.server_keepalive)
            except UpstreamConnectError as exc:
                if slot is not None:
                    backend.balancer.connection_ended(slot)
                    self.engine.count_connect_error(backend, slot)
                last_error = exc
                continue
            except BaseException:
                if slot is not None:
                    backend.balancer.connection_ended(slot)
                raise
            return slot, sock, attempt
        assert last_error is not None
        raise last_error


def pick_key(conn: Connection) -> PickKey:
    src = conn.peername[0] if isinstance(conn.peername, tuple) else ""
    src_port = conn.peername[1] if isinstance(conn.peername, tuple) else 0
    dst = conn.sockname[0] if isinstance(conn.sockname, tuple) else ""
    dst_port = conn.sockname[1] if isinstance(conn.sockname, tuple) else 0
    return PickKey(src=src, src_port=src_port, dst=dst, dst_port=dst_port,
                   sni=conn.context.get("sni"))
