"""Persistence on stick tables, on real sockets, held to the real haproxy 2.6 on the same file.

Each scenario runs the same steps through haproxy and through fastproxy (both data planes): clients
from fixed source addresses connect to named servers, servers stop and start listening (their health
checks notice, and the ``stats socket`` says when), and the servers the clients reach are compared,
step for step.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from fastproxy.config import load

from ..support import NamedBackends, compared_prologue, free_port, haproxy_running, open_client, running
from .test_stats_socket import needs_haproxy, until_status


def write_config(tmp_path: Path, backends: NamedBackends, backend_lines: str, *,
                 backup: bool = False) -> tuple[Path, int]:
    port = free_port()
    a, b = backends.ports
    path = tmp_path / "haproxy.cfg"
    head = compared_prologue(tmp_path, "    retries 1\n")
    path.write_text(f"""{head}frontend fe
    bind 127.0.0.1:{port}
    default_backend be
backend be
{backend_lines}
    server a 127.0.0.1:{a} check inter 100ms fall 1 rise 1
    server b 127.0.0.1:{b} check inter 100ms fall 1 rise 1{' backup' if backup else ''}
""")
    return path, port


async def visit(port: int, source: str) -> str:
    """The server one connection from ``source`` reaches ('' when the proxy closes it)."""
    try:
        sock, name = await open_client(("127.0.0.1", port), source)
    except (EOFError, ConnectionError):
        return ""
    sock.close()
    return name


async def scenario_down_and_up(port: int, sock: Path, backends: NamedBackends) -> list[str]:
    """Two clients stick; the first one's server goes down, then comes back."""
    seen = [await visit(port, "127.0.0.2") for _ in range(3)]
    seen += [await visit(port, "127.0.0.3") for _ in range(3)]
    first = seen[0]
    backends.stop_server(first)
    await until_status(sock, ("be", first), "DOWN")
    seen += [await visit(port, "127.0.0.2") for _ in range(2)]
    await backends.restart_server(first)
    await until_status(sock, ("be", first), "UP")
    seen += [await visit(port, "127.0.0.2") for _ in range(2)]
    seen += [await visit(port, "127.0.0.3")]
    return seen


async def through_haproxy(cfg: Path, sock: Path, scenario) -> list[str]:
    async with haproxy_running(str(cfg), str(sock)):
        await until_status(sock, ("be", "a"), "UP")
        return await scenario()


async def through_fastproxy(cfg: Path, sock: Path, pump_class, scenario) -> list[str]:
    async with running(load([str(cfg)]), pump_class):
        await until_status(sock, ("be", "a"), "UP")
        return await scenario()


async def compare(tmp_path: Path, pump_class, backend_lines: str, *,
                  backup: bool = False) -> tuple[list, list]:
    sock = tmp_path / "admin.sock"
    results = []
    for side in ("haproxy", "fastproxy"):
        async with NamedBackends(["a", "b"]) as backends:
            cfg, port = write_config(tmp_path, backends, backend_lines, backup=backup)

            def scenario():
                return scenario_down_and_up(port, sock, backends)
            if side == "haproxy":
                results.append(await through_haproxy(cfg, sock, scenario))
            else:
                results.append(await through_fastproxy(cfg, sock, pump_class, scenario))
    return results[0], results[1]


@needs_haproxy
@pytest.mark.timeout(60)
async def test_stick_on_src_keeps_clients_across_reconnects_and_moves_them_when_their_server_fails(
        tmp_path, pump_class):
    theirs, ours = await compare(tmp_path, pump_class, "    stick-table type ip size 10\n    stick on src")
    assert ours == theirs
    assert theirs[:6] == ["a"] * 3 + ["b"] * 3  # each client keeps its server
    assert theirs[6:] == ["b"] * 5  # the failed server's client moved, and stays moved


@needs_haproxy
@pytest.mark.timeout(60)
@pytest.mark.parametrize("nopurge, back_to", [("", "b"), (" nopurge", "a")])
async def test_active_passive_on_dst_returns_to_the_first_server_only_with_nopurge(
        tmp_path, pump_class, nopurge, back_to):
    theirs, ours = await compare(tmp_path, pump_class,
                                 f"    stick-table type ip size 1{nopurge}\n    stick on dst", backup=True)
    assert ours == theirs
    assert theirs[:6] == ["a"] * 6  # every client on the active server
    assert theirs[6:8] == ["b", "b"]  # it failed: the backup
    assert theirs[8:] == [back_to] * 3


@needs_haproxy
@pytest.mark.timeout(60)
async def test_option_persist_keeps_clients_on_their_failed_server_until_redispatched(tmp_path, pump_class):
    theirs, ours = await compare(tmp_path, pump_class,
                                 "    stick-table type ip size 10\n    stick on src\n    option persist\n"
                                 "    option redispatch")
    assert ours == theirs


@needs_haproxy
@pytest.mark.timeout(60)
@pytest.mark.parametrize("ignored, forced_after_down", [("127.0.0.2", False), ("127.0.0.9", True)])
async def test_an_earlier_ignore_persist_keeps_force_persist_from_forcing_as_haproxy(
        tmp_path, pump_class, ignored, forced_after_down):
    theirs, ours = await compare(tmp_path, pump_class,
                                 "    stick-table type ip size 10\n    stick on src\n"
                                 f"    ignore-persist if {{ src {ignored} }}\n"
                                 "    force-persist if { src 127.0.0.0/8 }")
    assert ours == theirs
    # The first client's server is down: forced to it (refused, closed), or balanced to the other.
    assert (theirs[6:8] == ["", ""]) is forced_after_down
