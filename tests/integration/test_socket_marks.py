"""``tcp-request ... set-tos`` and ``set-mark`` on real sockets, held to the real haproxy 2.6: the
proxy's accepted client socket carries the TOS (IP_TOS) and the mark (SO_MARK) the rules set, read
back with getsockopt on that very socket (fastproxy's in this process; haproxy's taken with
pidfd_getfd), and ``set-priority-class``/``set-priority-offset`` order a queue as haproxy orders it.
SO_MARK needs CAP_NET_ADMIN: without it both leave the mark at 0, as HAProxy does at run time.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import socket
from collections.abc import Iterator

import pytest

from fastproxy.config import parse_text

from ..support import assert_verdicts, free_port, in_a_frontend, running, serving
from .test_routing import HAPROXY, connect_from, named_backend
from .test_routing_keywords import PROLOGUE
from .test_variables import haproxy_listening

needs_haproxy = pytest.mark.skipif(HAPROXY is None, reason="haproxy is not installed")
_libc = ctypes.CDLL(None, use_errno=True)
_SYS_PIDFD_GETFD = 438  # x86_64 and aarch64 alike


def _socket_inode(pid: int, local_port: int, remote_port: int) -> int:
    for table in ("tcp", "tcp6"):
        with open(f"/proc/{pid}/net/{table}") as lines:
            for line in list(lines)[1:]:
                fields = line.split()
                if (int(fields[1].rsplit(":", 1)[1], 16), int(fields[2].rsplit(":", 1)[1], 16)) == (
                        local_port, remote_port):
                    return int(fields[9])
    raise AssertionError(f"no socket {local_port} <- {remote_port} in {pid}")


def _link(path: str) -> str:
    try:
        return os.readlink(path)
    except OSError:  # closed meanwhile
        return ""


@contextlib.contextmanager
def accepted_socket(pid: int, port: int, client_port: int) -> Iterator[socket.socket]:
    """The socket process ``pid`` accepted on ``port`` from ``client_port``, duplicated here."""
    target = f"socket:[{_socket_inode(pid, port, client_port)}]"
    fd = next(int(fd) for fd in os.listdir(f"/proc/{pid}/fd") if _link(f"/proc/{pid}/fd/{fd}") == target)
    if pid == os.getpid():
        copy = os.dup(fd)
    else:
        pidfd = os.pidfd_open(pid)
        try:
            copy = _libc.syscall(_SYS_PIDFD_GETFD, pidfd, fd, 0)
            if copy < 0:
                raise OSError(ctypes.get_errno(), "pidfd_getfd")
        finally:
            os.close(pidfd)
    sock = socket.socket(fileno=copy)
    try:
        yield sock
    finally:
        sock.close()


MARKS = PROLOGUE + """
frontend fe
    bind 127.0.0.1:{port}
    tcp-request inspect-delay 1s
    tcp-request connection set-tos 0x28 if {{ src 127.0.0.2 }}
    tcp-request session set-mark 0x1234 if {{ src 127.0.0.2 }}
    tcp-request content set-tos 16 if {{ src 127.0.0.3 }}
    tcp-request content set-mark 07 if {{ src 127.0.0.3 }}
    tcp-request content set-tos 0x28 if {{ src 127.0.0.4 }}
    default_backend be
backend be
    tcp-request content set-tos 0x10 if {{ src 127.0.0.4 }}
    server s1 127.0.0.1:{server}
"""


async def marks(pid: int, port: int) -> list[tuple[int, int]]:
    """(TOS, mark) of the accepted socket of each client, once it has been answered."""
    found = []
    for source in ("127.0.0.1", "127.0.0.2", "127.0.0.3", "127.0.0.4"):
        sock = await connect_from(source, ("127.0.0.1", port))
        try:
            assert await asyncio.wait_for(asyncio.get_running_loop().sock_recv(sock, 10), 5) == b"s1"
            with accepted_socket(pid, port, sock.getsockname()[1]) as accepted:
                found.append((accepted.getsockopt(socket.IPPROTO_IP, socket.IP_TOS),
                              accepted.getsockopt(socket.SOL_SOCKET, socket.SO_MARK)))
        finally:
            sock.close()
    return found


@needs_haproxy
def test_set_tos_and_set_mark_mark_the_client_socket_as_haproxy(pump_class, tmp_path):
    async def main() -> tuple[list, list]:
        async with serving(named_backend(b"s1")) as server:
            port = free_port()
            text = MARKS.format(port=port, server=server)
            async with running(parse_text(text), pump_class):
                ours = await marks(os.getpid(), port)
            port = free_port()
            text = MARKS.format(port=port, server=server)
            with haproxy_listening(text, port, tmp_path) as proc:
                theirs = await marks(proc.pid, port)
        return ours, theirs

    ours, theirs = asyncio.run(main())
    assert ours == theirs
    mark = os.geteuid() == 0  # CAP_NET_ADMIN
    assert ours == [(0, 0), (0x28, 0x1234 if mark else 0), (16, 7 if mark else 0), (0x10, 0)]


PRIORITIES = PROLOGUE + """
frontend fe
    bind 127.0.0.1:{port}
    tcp-request content set-priority-class int(5) if {{ src 127.0.0.2 }}
    tcp-request content set-priority-class int(-5) if {{ src 127.0.0.3 }}
    tcp-request content set-priority-offset int(-10000) if {{ src 127.0.0.5 }}
    default_backend be
backend be
    timeout queue 10s
    server s1 127.0.0.1:{server} maxconn 1
"""


async def served_order(port: int, order: list[bytes]) -> list[bytes]:
    """A first client holds the only slot; four more queue from different sources (their rules set
    their priorities), each sending its name; once they all wait, the first leaves: the order the
    server sees them in."""
    loop = asyncio.get_running_loop()
    clients = []
    for name in (b"1", b"2", b"3", b"4", b"5"):
        sock = await connect_from(f"127.0.0.{name.decode()}", ("127.0.0.1", port))
        await loop.sock_sendall(sock, name)
        clients.append(sock)
        await asyncio.sleep(0.1)  # queued one after the other
    async def served(sock: socket.socket) -> None:  # closed once answered, freeing the slot
        await asyncio.wait_for(loop.sock_recv(sock, 10), 10)
        sock.close()

    await asyncio.gather(*map(served, clients))
    return list(order)


@needs_haproxy
def test_priority_class_and_offset_order_the_queue_as_haproxy(pump_class, tmp_path):
    order: list[bytes] = []

    async def server(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        name = await reader.read(1)
        order.append(name)
        writer.write(b"ok")
        if name == b"1":  # the first holds the only slot until it leaves
            with contextlib.suppress(ConnectionError):
                await reader.read()
        writer.close()

    async def main() -> tuple[list[bytes], list[bytes]]:
        async with serving(server) as server_port:
            port = free_port()
            async with running(parse_text(PRIORITIES.format(port=port, server=server_port)), pump_class):
                ours = await served_order(port, order)
            order.clear()
            port = free_port()
            with haproxy_listening(PRIORITIES.format(port=port, server=server_port), port, tmp_path):
                theirs = await served_order(port, order)
        return ours, theirs

    ours, theirs = asyncio.run(main())
    assert ours == theirs
    # The lowest class first (-5), then class 0 by arrival shifted by the offset (-10 s), class 5 last.
    assert ours == [b"1", b"3", b"5", b"4", b"2"]


def test_socket_and_priority_action_verdicts_are_haproxys(tmp_path):
    cases = {}
    for phase in ("connection", "session", "content"):
        cases.update({
            f" tcp-request {phase} set-tos\n": False,
            f" tcp-request {phase} set-tos abc\n": False,
            f" tcp-request {phase} set-tos 0x10\n": True,
            f" tcp-request {phase} set-tos 010 if {{ src 127.0.0.1 }}\n": True,
            f" tcp-request {phase} set-mark -1\n": True,
            f" tcp-request {phase} set-mark 12x\n": False,
            f" tcp-request {phase} set-priority-class int(3)\n": phase == "content",
            f" tcp-request {phase} set-priority-offset int(-30)\n": phase == "content",
            f" tcp-request {phase} set-nice 10\n": phase == "content",
            f" tcp-request {phase} set-log-level silent\n": phase == "content",
            f" tcp-request {phase} capture src len 3\n": phase == "content",
        })
    cases[" tcp-request content set-priority-class 3\n"] = False
    cases[" tcp-request content set-priority-class\n"] = False
    assert_verdicts(tmp_path, {in_a_frontend(line): valid for line, valid in cases.items()})
    assert_verdicts(tmp_path, {"backend b\n mode tcp\n tcp-request content capture src len 3\n": False})
