"""The state-change lines an operator's runtime commands cause (``set server ... state
ready|drain|maint``, ``set server ... health``, ``disable|enable server``), written by fastproxy and by
the real haproxy 2.6 for the same file and the same commands, to a UDP syslog receiver: the same
lines, at the same syslog levels, in the same order."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import socket

import pytest

from fastproxy.config import load

from ..support import haproxy_running, running, serving
from .test_stats_socket import ask, table

HAPROXY = shutil.which("haproxy")

CONFIG = """
global
    stats socket {sock} level admin
defaults
    mode tcp
    timeout connect 2s
    timeout client 5s
    timeout server 5s
    log 127.0.0.1:{sink} local0
backend be
    server s1 127.0.0.1:{port} check inter 200ms
    server s2 127.0.0.1:{port}
    server s3 127.0.0.1:{port} backup
"""

COMMANDS = [
    "set server be/s1 state maint", "set server be/s1 state drain", "set server be/s1 state ready",
    "set server be/s2 state drain", "set server be/s2 state maint", "set server be/s2 state ready",
    "set server be/s2 health down", "set server be/s2 state maint", "set server be/s2 state ready",
    "set server be/s2 health down", "set server be/s2 state drain", "set server be/s2 health up",
    "set server be/s2 health down", "set server be/s2 state ready", "set server be/s2 state drain",
    "set server be/s2 state maint", "set server be/s2 state drain", "set server be/s2 state ready",
    "set server be/s2 health stopping", "set server be/s2 health up", "disable server be/s2",
    "enable server be/s2", "set server be/s1 state maint", "set server be/s2 state maint",
    "set server be/s3 state maint", "set server be/s3 state drain", "set server be/s2 state drain",
    "set server be/s3 state ready", "set server be/s2 state drain",
]


async def received(sink: socket.socket) -> list[str]:
    """The datagrams, as ``<priority>message`` (the date and the pid differ by nature)."""
    loop = asyncio.get_running_loop()
    lines = []
    with contextlib.suppress(asyncio.TimeoutError):
        while True:
            datagram = (await asyncio.wait_for(loop.sock_recv(sink, 4096), 1.0)).decode()
            priority, _, rest = datagram.partition(">")
            lines.append(f"{priority}>{rest.split(': ', 1)[1].rstrip()}")
    return lines


async def first_check_done(sock: str) -> None:
    """Until s1's first check ended (its status no longer INI): the commands then find the same
    server state in both, however long the proxy took to start on a loaded machine."""
    for _ in range(200):
        try:
            row = table(await ask(sock, "show stat")).get(("be", "s1"), {})
        except (FileNotFoundError, ConnectionRefusedError):  # not listening yet
            row = {}
        if row.get("check_status", "INI").removeprefix("* ") not in ("", "INI"):
            return
        await asyncio.sleep(0.05)
    raise AssertionError("s1's first check never ended")


async def run(sink: socket.socket, sock: str) -> list[str]:
    await first_check_done(sock)
    for command in COMMANDS:
        await ask(sock, command)
    return await received(sink)


@pytest.mark.skipif(HAPROXY is None, reason="haproxy is not installed")
@pytest.mark.timeout(60)
async def test_operator_state_changes_write_haproxys_lines(tmp_path, pump_class):
    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sink.bind(("127.0.0.1", 0))
    sink.setblocking(False)
    sock = str(tmp_path / "admin.sock")
    try:
        async with serving(lambda reader, writer: writer.close()) as port:
            path = tmp_path / "states.cfg"
            path.write_text(CONFIG.format(sock=sock, sink=sink.getsockname()[1], port=port))
            async with running(load([str(path)]), pump_class):
                ours = await run(sink, sock)
            async with haproxy_running(str(path), sock):
                theirs = await run(sink, sock)
    finally:
        sink.close()
    assert ours == theirs
    assert "<133>Server be/s1 is UP/READY (leaving forced maintenance)." not in ours  # it left for drain
    assert ours[:3] == [
        "<129>Server be/s1 is going DOWN for maintenance. 1 active and 1 backup servers left. 0 sessions "
        "active, 0 requeued, 0 remaining in queue.",
        "<133>Server be/s1 is UP/DRAIN (leaving forced maintenance).",
        "<133>Server be/s1 remains in forced drain mode."]
