"""Real backends, clients and proxies on 127.0.0.1 for the tests: no mocks of sockets."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import struct
import subprocess
import sys
from typing import Any, AsyncIterator, Callable, Iterator, Optional

from fastproxy.config import model
from fastproxy.engine import Engine


async def start_backend(handler: Callable, host: str = "127.0.0.1") -> tuple[asyncio.AbstractServer, int]:
    server = await asyncio.start_server(handler, host, 0, limit=1 << 20)
    return server, server.sockets[0].getsockname()[1]


class RawBackend:
    """A listener whose connections are served as plain non-blocking sockets (no transports)."""

    def __init__(self, serve: Callable[[socket.socket], Any]) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(1024)
        self.sock.setblocking(False)
        self.serve = serve
        self.tasks: set[asyncio.Task] = set()
        self.accepting = asyncio.get_running_loop().create_task(self._accept())

    async def _accept(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            conn, _ = await loop.sock_accept(self.sock)
            conn.setblocking(False)
            task = loop.create_task(self.serve(conn))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

    def close(self) -> None:
        self.accepting.cancel()
        self.sock.close()


async def start_raw_backend(serve: Callable[[socket.socket], Any]) -> tuple[RawBackend, int]:
    backend = RawBackend(serve)
    return backend, backend.sock.getsockname()[1]


async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Echo until the client half-closes, then half-close back."""
    try:
        while data := await reader.read(1 << 16):
            writer.write(data)
            await writer.drain()
        writer.write_eof()
        await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        writer.close()


ECHO_PROCESS = r"""
import asyncio, sys, uvloop
async def echo(reader, writer):
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
        writer.write_eof()
    except OSError:
        pass
    writer.close()
async def main():
    server = await asyncio.start_server(echo, "127.0.0.1", 0, backlog=4096)
    print(server.sockets[0].getsockname()[1], flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)  # until the test closes stdin
uvloop.run(main())
"""


@contextlib.contextmanager
def echo_process() -> Iterator[int]:
    """An echo server in a process of its own (its descriptors do not count against ours)."""
    proc = subprocess.Popen([sys.executable, "-c", ECHO_PROCESS], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    try:
        port = int(proc.stdout.readline())
        yield port
    finally:
        proc.stdin.close()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def config(ports: list[int], *, bind_host: str = "127.0.0.1", frontend: Optional[dict] = None,
           backend: Optional[dict] = None, timeouts_fe: Optional[dict] = None,
           timeouts_be: Optional[dict] = None, global_: Optional[dict] = None) -> model.Config:
    """A one-frontend, one-backend configuration over servers on 127.0.0.1:<ports>."""
    cfg = model.Config(global_=model.Global(**(global_ or {})))
    servers = [model.Server(f"s{i + 1}", "127.0.0.1", port) for i, port in enumerate(ports)]
    cfg.backends["be"] = model.Backend("be", servers=servers, timeouts=model.Timeouts(**(timeouts_be or {})),
                                       **(backend or {}))
    cfg.frontends["fe"] = model.Frontend("fe", binds=[model.Bind(bind_host, 0)], default_backend="be",
                                         timeouts=model.Timeouts(**(timeouts_fe or {})), **(frontend or {}))
    return cfg


@contextlib.asynccontextmanager
async def running(cfg: model.Config, pump_class: Any, **engine_kwargs: Any) -> AsyncIterator[Engine]:
    engine = Engine(cfg, pump_class=pump_class, **engine_kwargs)
    await engine.start()
    try:
        yield engine
    finally:
        await engine.stop(grace=0.5)


async def connect(address: tuple) -> socket.socket:
    loop = asyncio.get_running_loop()
    family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setblocking(False)
    await loop.sock_connect(sock, address[:2])
    return sock


async def recv_all(sock: socket.socket, timeout: float = 10.0) -> bytes:
    """Everything until EOF."""
    loop = asyncio.get_running_loop()
    chunks = []

    async def read() -> None:
        while data := await loop.sock_recv(sock, 1 << 16):
            chunks.append(data)
    await asyncio.wait_for(read(), timeout)
    return b"".join(chunks)


async def recv_exactly(sock: socket.socket, n: int, timeout: float = 10.0) -> bytes:
    loop = asyncio.get_running_loop()
    buf = bytearray()

    async def read() -> None:
        while len(buf) < n:
            data = await loop.sock_recv(sock, n - len(buf))
            if not data:
                raise EOFError(f"EOF after {len(buf)} of {n} bytes")
            buf.extend(data)
    await asyncio.wait_for(read(), timeout)
    return bytes(buf)


def reset(sock: socket.socket) -> None:
    """Close with a RST."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


async def wait_until(predicate: Callable[[], bool], timeout: float = 5.0, interval: float = 0.01) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(interval)
