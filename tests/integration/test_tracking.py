"""Tracking stick counters on real sockets: a flood from one source address (127.0.0.2) is rejected
while another (127.0.0.3) is served, for the concurrent-connection rule and for the rate rule, on the
same file as the real haproxy 2.6, with the same verdicts.  These frontends run on the Python path."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import pytest

from fastproxy.config import load

from ..support import NamedBackends, free_port, haproxy_running, open_client, running
from .test_stats_socket import ask, needs_haproxy, until_status

LIMIT = 5


def write_config(tmp_path: Path, backends: NamedBackends, rules: str) -> tuple[Path, int]:
    port = free_port()
    path = tmp_path / "haproxy.cfg"
    path.write_text(f"""\
global
    nbthread 1
    stats socket {tmp_path}/admin.sock level admin
defaults
    mode tcp
    timeout connect 1s
    timeout client 5s
    timeout server 5s
frontend fe
    bind 127.0.0.1:{port}
    stick-table type ip size 100 expire 30s store conn_cur,conn_cnt,conn_rate(10s)
{rules}
    default_backend be
backend be
    server a 127.0.0.1:{backends.ports[0]} check inter 100ms
""")
    return path, port


async def attempt(port: int, source: str) -> tuple[bool, socket.socket | None]:
    """One connection from ``source``: whether it was served (the server's name came back)."""
    try:
        sock, _ = await open_client(("127.0.0.1", port), source)
    except (EOFError, ConnectionError):
        return False, None
    return True, sock


async def concurrent_flood(port: int) -> list[bool]:
    held, verdicts = [], []
    for _ in range(LIMIT * 2):
        served, sock = await attempt(port, "127.0.0.2")
        verdicts.append(served)
        if sock is not None:
            held.append(sock)
    verdicts.append((await attempt(port, "127.0.0.3"))[0])
    for sock in held[:2]:  # two of the flood's connections end: room for two more
        sock.close()
    await asyncio.sleep(0.3)
    for _ in range(3):
        served, sock = await attempt(port, "127.0.0.2")
        verdicts.append(served)
        if sock is not None:
            held.append(sock)
    for sock in held:
        sock.close()
    return verdicts


async def rate_flood(port: int) -> list[bool]:
    verdicts = []
    for _ in range(LIMIT * 2):
        served, sock = await attempt(port, "127.0.0.2")
        verdicts.append(served)
        if sock is not None:
            sock.close()
    verdicts.append((await attempt(port, "127.0.0.3"))[0])
    return verdicts


async def compare(tmp_path: Path, pump_class, rules: str, flood) -> tuple[list, list, str]:
    sock_path = tmp_path / "admin.sock"
    results = []
    table = ""
    for side in ("haproxy", "fastproxy"):
        async with NamedBackends(["a"], hold=True) as backends:
            cfg, port = write_config(tmp_path, backends, rules)
            if side == "haproxy":
                async with haproxy_running(str(cfg), str(sock_path)):
                    await until_status(sock_path, ("be", "a"), "UP")
                    results.append(await flood(port))
            else:
                async with running(load([str(cfg)]), pump_class):
                    await until_status(sock_path, ("be", "a"), "UP")
                    results.append(await flood(port))
                    table = await ask(str(sock_path), "show table fe")
    return results[0], results[1], table


@needs_haproxy
@pytest.mark.timeout(60)
async def test_a_flood_of_concurrent_connections_from_one_source_is_rejected_and_others_served(
        tmp_path, pump_class):
    theirs, ours, _ = await compare(tmp_path, pump_class, f"""\
    tcp-request connection track-sc0 src
    tcp-request connection reject if {{ sc_conn_cur(0) gt {LIMIT} }}""", concurrent_flood)
    assert ours == theirs
    assert theirs == [True] * LIMIT + [False] * LIMIT + [True] + [True, True, False]


@needs_haproxy
@pytest.mark.timeout(60)
async def test_a_flood_of_connections_over_a_rate_from_one_source_is_rejected_and_others_served(
        tmp_path, pump_class):
    theirs, ours, _ = await compare(tmp_path, pump_class, f"""\
    tcp-request connection track-sc1 src
    tcp-request connection reject if {{ sc1_conn_rate gt {LIMIT} }}""", rate_flood)
    assert ours == theirs
    assert theirs == [True] * LIMIT + [False] * LIMIT + [True]


@needs_haproxy
@pytest.mark.timeout(60)
async def test_src_fetches_without_tracking_read_the_table(tmp_path, pump_class):
    """``src_conn_rate`` reads the client's entry without tracking it; another rule tracks."""
    theirs, ours, table = await compare(tmp_path, pump_class, f"""\
    tcp-request connection reject if {{ src_conn_rate ge {LIMIT} }}
    tcp-request connection track-sc2 src""", rate_flood)
    assert ours == theirs
    assert theirs == [True] * LIMIT + [False] * LIMIT + [True]
    # The reject comes first: the rejected connections were never tracked.
    assert " key=127.0.0.2 use=0 " in table and f" conn_cnt={LIMIT} " in table
