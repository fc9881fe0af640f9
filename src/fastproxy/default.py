"""The embedded default: what ``fastproxy run`` runs with no file, so a newcomer sees it work at once.

A frontend on 127.0.0.1:8080 balancing round robin over two small built-in echo backends on ephemeral
loopback ports.  Each backend prefixes the lines it echoes with its name, so consecutive connections
show the balancing.
"""

from __future__ import annotations

import asyncio

from .config import model

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8080
BACKEND_NAMES = ("echo1", "echo2")

HOW_TO_TRY = """\
fastproxy is running its embedded default: 127.0.0.1:{port} -> round robin over {backends}.
Try it:   nc 127.0.0.1 {port}     (type a line: the backend that serves you echoes it with its name)
Stop it:  Ctrl-C
"""


def _echo_with_name(name: str):
    prefix = f"{name}: ".encode()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while line := await reader.readline():
                writer.write(prefix + line)
                await writer.drain()
        except (ConnectionError, asyncio.LimitOverrunError, ValueError):
            pass
        finally:
            writer.close()

    return serve


async def start_echo_backends() -> list[tuple[str, asyncio.AbstractServer, int]]:
    """The two echo backends, listening on ephemeral ports of 127.0.0.1."""
    backends: list[tuple[str, asyncio.AbstractServer, int]] = []
    for name in BACKEND_NAMES:
        server = await asyncio.start_server(_echo_with_name(name), DEFAULT_HOST, 0)
        backends.append((name, server, server.sockets[0].getsockname()[1]))
    return backends


def default_config(backend_ports: list[tuple[str, int]], port: int = DEFAULT_PORT) -> model.Config:
    cfg = model.Config(files=("<embedded default>",))
    timeouts = model.Timeouts(connect=5.0, client=60.0, server=60.0)
    cfg.backends["echo"] = model.Backend(
        "echo", servers=[model.Server(name, DEFAULT_HOST, p) for name, p in backend_ports],
        timeouts=timeouts)
    # Not SO_REUSEPORT: a second ``fastproxy run`` says the port is taken, it does not share it.
    demo = model.Bind(DEFAULT_HOST, port, reuseport=False)
    cfg.frontends["demo"] = model.Frontend("demo", binds=[demo], default_backend="echo", timeouts=timeouts,
                                           log=True, tcplog=True)
    return cfg
