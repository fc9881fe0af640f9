"""The stats socket on real sockets: the engine serves HAProxy's runtime API on the ``stats socket``
lines of its configuration, and the tools written for HAProxy drive it unchanged (socat, the
haproxyadmin and haproxy-cli libraries).  Where haproxy 2.6 is installed, the same file runs through
both under the same traffic and ``show stat`` is compared: the header byte for byte, every column
that does not depend on timing value for value; the usage texts are compared with haproxy's too.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shutil
import stat
import subprocess
from pathlib import Path
from typing import AsyncIterator

import pytest

from fastproxy.config import load
from fastproxy.runtime_api import Command, split_request, usage_message

from ..support import (NamedBackends, echo, free_port, haproxy_running, open_client, running, serving,
                       wait_until)

HAPROXY = shutil.which("haproxy")
SOCAT = shutil.which("socat")
needs_haproxy = pytest.mark.skipif(HAPROXY is None or SOCAT is None, reason="haproxy or socat not installed")

# Columns that depend on when they are read (ages, rates, durations), on concurrency fastproxy samples
# once a second (smax), or that it does not measure (total session times, idle-pool estimates).
TIMING = {"smax", "lastchg", "downtime", "check_duration", "rate", "rate_max", "conn_rate", "conn_rate_max",
          "lastsess", "qtime", "ctime", "rtime", "ttime", "qtime_max", "ctime_max", "rtime_max", "ttime_max",
          "need_conn_est", "req_rate", "req_rate_max"}
# The stats listener's bytes: HAProxy's bin and bout count the sizes of its internal (HTX) messages, not
# the bytes on the wire, and the answers are not byte for byte the same (headers, the page): of the
# byte counts, only what the clients sent on the wire (h1_bytes_in) is compared.
# And HAProxy counts two client aborts on the stats backend for each 401 it answers (the client aborted
# nothing): fastproxy counts none.
PAGE_DIFFERS = {"bin", "bout", "h1_bytes_out", "cli_abrt"}


def write_config(tmp_path: Path, servers: tuple[int, ...] = (), *,
                 extra_global: str = "", extra: str = "") -> tuple[Path, dict]:
    """The configuration both run: ``servers`` are the ports of s1, s2 and s3 (free ports by default)."""
    ports = {name: free_port() for name in ("fe", "ls", "s1", "s2", "s3", "dead", "stats")}
    ports.update(zip(("s1", "s2", "s3"), servers))
    path = tmp_path / "haproxy.cfg"
    path.write_text(f"""\
global
    maxconn 1000
    nbthread 1
    stats socket {tmp_path}/admin.sock level admin mode 600
    stats socket ipv4@127.0.0.1:{free_port()} level user
    stats timeout 5s
{extra_global}
defaults
    mode tcp
    timeout connect 2s
    timeout client 10s
    timeout server 10s
frontend fe
    bind 127.0.0.1:{ports['fe']}
    default_backend be
backend be
    balance roundrobin
    server s1 127.0.0.1:{ports['s1']} check inter 200ms
    server s2 127.0.0.1:{ports['s2']} weight 3
    server s3 127.0.0.1:{ports['s3']} check disabled
    server s4 127.0.0.1:{ports['dead']} check inter 200ms
listen ls
    bind 127.0.0.1:{ports['ls']}
    server a 127.0.0.1:{ports['s1']}
{extra.format(**ports)}""")
    return path, ports


# A stats listener as real files have one: HAProxy lists it as a FRONTEND and a BACKEND row (mode http).
STATS_LISTEN = """\
listen stats
    mode http
    bind 127.0.0.1:{stats}
    stats enable
    stats uri /stats
    stats auth admin:secret
    monitor-uri /healthz
"""

# What a browser and a load balancer ask of the stats listener, byte for byte the same to both, each
# list on one connection: a 401, the CSV, a path no page answers (HAProxy's 503), monitor-uri, and
# two requests on one kept-alive connection.
AUTH = "Authorization: Basic YWRtaW46c2VjcmV0\r\n"  # admin:secret
PAGE_REQUESTS = [
    ["GET /stats HTTP/1.1\r\nHost: stats\r\nConnection: close\r\n\r\n"],
    [f"GET /stats;csv HTTP/1.1\r\nHost: stats\r\n{AUTH}Connection: close\r\n\r\n"],
    ["GET /elsewhere HTTP/1.1\r\nHost: stats\r\nConnection: close\r\n\r\n"],
    ["GET /healthz HTTP/1.0\r\n\r\n"],
    [f"GET /stats;csv HTTP/1.1\r\nHost: stats\r\n{AUTH}\r\n",
     f"GET /stats;csv;norefresh HTTP/1.1\r\nHost: stats\r\n{AUTH}Connection: close\r\n\r\n"],
]


async def page_traffic(port: int) -> list[bytes]:
    """``PAGE_REQUESTS`` to the stats listener on ``port``: what came back on each connection."""
    answers = []
    for requests in PAGE_REQUESTS:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write("".join(requests).encode())
        answers.append(await until_closed(reader))
        writer.close()
        await writer.wait_closed()
    return answers


async def ask(path: str | tuple, request: str, *, timeout: float = 10.0) -> str:
    """One request on a new connection, as ``echo <request> | socat - UNIX-CONNECT:<path>`` sends it."""
    if isinstance(path, tuple):
        reader, writer = await asyncio.open_connection(*path)
    else:
        reader, writer = await asyncio.open_unix_connection(path)
    writer.write(request.encode() + b"\n")
    data = await asyncio.wait_for(reader.read(-1), timeout)
    writer.close()
    return data.decode()


async def socat(path: Path, request: str) -> str:
    proc = await asyncio.create_subprocess_exec(SOCAT, "-", f"UNIX-CONNECT:{path}", stdin=subprocess.PIPE,
                                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    out, _ = await asyncio.wait_for(proc.communicate(request.encode() + b"\n"), 10)
    return out.decode()


async def traffic(port: int, connections: int, size: int) -> None:
    for _ in range(connections):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"x" * size)
        received = 0
        while received < size:
            data = await asyncio.wait_for(reader.read(1 << 16), 5)
            assert data, "the proxy closed a connection it should have served"
            received += len(data)
        writer.close()
        await writer.wait_closed()


async def until_closed(reader: asyncio.StreamReader) -> bytes:
    """What arrives until the connection ends, by a FIN or a reset (HAProxy resets one it leaves
    with unread bytes, as the kernel does)."""
    data = b""
    try:
        while chunk := await asyncio.wait_for(reader.read(1 << 16), 5):
            data += chunk
    except ConnectionResetError:
        pass
    return data


def table(csv_text: str) -> dict[tuple[str, str], dict[str, str]]:
    lines = csv_text.splitlines()
    names = lines[0][2:].split(",")
    rows = [line.split(",") for line in lines[1:] if line]
    return {(row[0], row[1]): dict(zip(names, row)) for row in rows}


async def until_status(path: Path, row: tuple[str, str], status: str) -> None:
    for _ in range(100):
        if table(await ask(str(path), "show stat")).get(row, {}).get("status") == status:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{row} never became {status}")


@contextlib.asynccontextmanager
async def haproxy_after_traffic(cfg: Path, sock: Path, ports: dict, *,
                                page: bool = False) -> AsyncIterator[None]:
    """The real haproxy on ``cfg`` (``write_config``'s), once s4 is DOWN and the comparisons' traffic
    (and the page's, with ``page``) went through it."""
    async with haproxy_running(str(cfg), str(sock)):
        await until_status(sock, ("be", "s4"), "DOWN")
        await traffic(ports["fe"], 8, 1000)
        await traffic(ports["ls"], 3, 500)
        if page:
            await page_traffic(ports["stats"])
        yield


async def haproxy_answers(cfg: Path, sock: Path, ports: dict, requests: list[str], *,
                          page: bool = False) -> dict[str, str]:
    async with haproxy_after_traffic(cfg, sock, ports, page=page):
        await asyncio.sleep(0.2)
        return {request: await between_checks(sock, request) for request in requests}


async def fastproxy_answers(cfg: Path, sock: Path, ports: dict, pump_class, requests: list[str], *,
                            page: bool = False) -> dict:
    async with running(load([str(cfg)]), pump_class):
        await until_status(sock, ("be", "s4"), "DOWN")
        await traffic(ports["fe"], 8, 1000)
        await traffic(ports["ls"], 3, 500)
        if page:
            await page_traffic(ports["stats"])
        await asyncio.sleep(0.2)
        return {request: await between_checks(sock, request) for request in requests}


def check_under_way(request: str, answer: str) -> bool:
    """Whether ``answer`` shows a check started and not yet ended (``* `` in show stat, the
    CHK_ST_INPROGRESS bit 0x01 of ``srv_check_state``): HAProxy resets the check's result when it
    starts one (``srv_check_result`` 0).  When a read lands is the machine's timing."""
    if request == "show stat":
        return any(row.get(column, "").startswith("* ") for row in table(answer).values()
                   for column in ("check_status", "agent_status"))
    if request == "show servers state":
        return any(int(line.split()[13]) & 0x01 for line in answer.splitlines()[1:]
                   if len(line.split()) > 13 and not line.startswith("#"))
    return False


async def between_checks(sock: Path, request: str) -> str:
    """``request``'s answer, asked again (for at most ~4 s) while it shows a check under way (a check
    every 200 ms that lasts a millisecond, unless the machine is loaded)."""
    for _ in range(200):
        answer = await socat(sock, request)
        if not check_under_way(request, answer):
            break
        await asyncio.sleep(0.02)
    return answer


@needs_haproxy
@pytest.mark.timeout(60)
async def test_show_stat_agrees_with_haproxy_on_the_same_file_and_traffic(tmp_path, pump_class):
    async with serving(echo) as s1, serving(echo) as s2, serving(echo) as s3:
        cfg, ports = write_config(tmp_path, (s1, s2, s3), extra=STATS_LISTEN,
                                  extra_global="    node edge-1\n    description Edge  proxy, rack 4")
        sock = tmp_path / "admin.sock"
        requests = ["show stat", "show servers state", "show backend", "get weight be/s2", "show stat typed",
                    "show stat json", "show info typed", "show info json", "show info"]
        theirs = await haproxy_answers(cfg, sock, ports, requests, page=True)
        ours = await fastproxy_answers(cfg, sock, ports, pump_class, requests, page=True)
    assert ours["show stat"].splitlines()[0] == theirs["show stat"].splitlines()[0]
    mine, haproxy = table(ours["show stat"]), table(theirs["show stat"])
    assert list(mine) == list(haproxy)
    for row, fields in haproxy.items():
        # "* " marks a check under way when read: timing too.
        ignored = TIMING | (PAGE_DIFFERS if row[0] == "stats" else set())
        differ = {name: (mine[row][name], value) for name, value in fields.items()
                  if name not in ignored and mine[row][name].removeprefix("* ") != value.removeprefix("* ")}
        assert not differ, (row, differ)
    # The stats listener's own traffic: 5 connections, 6 requests, the 503 passed to its backend.
    page_fe, page_be = mine[("stats", "FRONTEND")], mine[("stats", "BACKEND")]
    assert (page_fe["stot"], page_fe["req_tot"], page_fe["hrsp_2xx"], page_fe["hrsp_4xx"],
            page_fe["hrsp_5xx"], page_fe["intercepted"]) == ("5", "6", "4", "1", "1", "5")
    assert page_be["stot"] == page_be["hrsp_5xx"] == "1"
    assert int(page_fe["bin"]) == int(page_be["bin"]) == int(haproxy[("stats", "FRONTEND")]["h1_bytes_in"])
    assert int(page_fe["bout"]) == int(page_be["bout"]) > 0
    assert mine[("fe", "FRONTEND")]["stot"] == "8" and mine[("be", "s2")]["bin"] == "6000"
    assert ours["show backend"] == theirs["show backend"] == "# name\nbe\nls\nstats\n\n"
    assert mine[("stats", "FRONTEND")]["mode"] == mine[("stats", "BACKEND")]["mode"] == "http"
    assert ours["get weight be/s2"] == theirs["get weight be/s2"] == "3 (initial 3)\n\n"

    def typed_fields(text: str) -> list[str]:  # the field, its tags and its type: all but the value
        return [line.rsplit(":", 1)[0] for line in text.splitlines()]
    assert typed_fields(ours["show stat typed"]) == typed_fields(theirs["show stat typed"])
    assert typed_fields(ours["show info typed"]) == typed_fields(theirs["show info typed"])
    for line in ("node: edge-1", 'description: "Edge proxy, rack 4"'):  # quoted for its comma
        assert line in theirs["show info"].splitlines() and line in ours["show info"].splitlines()

    def json_fields(text: str) -> list:  # every object but the value's value
        doc = json.loads(text)
        fields = [field for row in doc for field in row] if doc and isinstance(doc[0], list) else doc
        return [{key: value if key != "value" else value["type"] for key, value in field.items()}
                for field in fields]
    for request in ("show stat json", "show info json"):
        assert json_fields(ours[request]) == json_fields(theirs[request]), request
        assert ours[request].endswith("}]\n\n") or ours[request].endswith("}]]\n\n")

    def without_ages(text: str) -> list[list[str]]:
        return [line.split()[:9] + line.split()[10:] for line in text.splitlines()]
    assert without_ages(ours["show servers state"]) == without_ages(theirs["show servers state"])


FASTPROXY_ONLY = ("show fleet",)  # commands of fastproxy's own, not in haproxy's help
HAPROXY_TEXTS = ["foo bar", "zzzzzzzzzzzzzzzz", "help servers", "show\\;cli level", "help show",
                 "set srever", "shw stat", "show stats", "get wieght be/s1", "clear", "disable",
                 "show servers", "enable srv",
                 "set server be/s2", "set server be/s2 state foo", "set server be/s2 health foo",
                 "set weight be/s2 300", "set weight be/s2 x", "set weight be/s2", "get weight be",
                 "get weight nob/s1", "get weight be/nos", "show servers state nosuch", "show stat x y z",
                 "operator -;show cli level", "prompt\nshow cli level\nquit", "user;operator"]


@needs_haproxy
@pytest.mark.timeout(60)
async def test_answers_and_usage_texts_are_haproxys(tmp_path, pump_class):
    """The same requests to both: the same answers.  The usage texts of unknown requests are also
    computed over haproxy's own command table (read from its ``help``), which checks the fuzzy match
    itself, whatever commands fastproxy has."""
    async with serving(echo) as s1, serving(echo) as s2, serving(echo) as s3:
        cfg, ports = write_config(tmp_path, (s1, s2, s3))
        sock = tmp_path / "admin.sock"
        requests = HAPROXY_TEXTS[15:] + ["help"] + HAPROXY_TEXTS[:15]
        theirs = await haproxy_answers(cfg, sock, ports, requests)
        ours = await fastproxy_answers(cfg, sock, ports, pump_class, requests)
    for request in HAPROXY_TEXTS[15:]:
        assert ours[request] == theirs[request], request
    # fastproxy's help is haproxy's, less the commands it does not have, plus its own (show fleet).
    their_help = theirs["help"].splitlines()
    our_help = [line for line in ours["help"].splitlines() if not line.lstrip().startswith(FASTPROXY_ONLY)]
    assert [line for line in their_help if line in our_help] == our_help
    commands = [Command(("help",), None, lambda s, a: ""), Command(("prompt",), None, lambda s, a: ""),
                Command(("quit",), None, lambda s, a: "")]
    for line in their_help[1:-4]:
        usage = line[2:]
        head = re.split(r" : |\]:", usage)[0].split()
        words = tuple(word for word in head[:next((i for i, w in enumerate(head) if w[0] in "[<{(@"),
                                                   len(head))])
        commands.append(Command(words, usage, lambda s, a: ""))
    for request in HAPROXY_TEXTS[:15]:
        args = split_request(request.encode())
        computed = usage_message(commands, args, is_help=args[:1] == ["help"]) + "\n"
        if request.startswith(("set server", "help servers", "enable srv")) and computed != theirs[request]:
            continue  # answered by a command, not a usage text
        assert computed == theirs[request], request


async def test_a_server_drained_through_the_socket_gets_no_new_connection(tmp_path, pump_class):
    async with serving(echo) as s1, serving(echo) as s2, serving(echo) as s3:
        cfg, ports = write_config(tmp_path, (s1, s2, s3))
        sock = str(tmp_path / "admin.sock")
        async with running(load([str(cfg)]), pump_class):
            await until_status(tmp_path / "admin.sock", ("be", "s4"), "DOWN")
            assert await ask(sock, "set server be/s2 state drain") == "\n"
            await traffic(ports["fe"], 6, 10)
            rows = table(await ask(sock, "show stat"))
            assert (rows[("be", "s2")]["status"], rows[("be", "s2")]["stot"]) == ("DRAIN", "0")
            assert (rows[("be", "s1")]["stot"], rows[("be", "s2")]["weight"]) == ("6", "3")  # as haproxy's
            assert rows[("be", "BACKEND")]["weight"] == "1"  # s1's: s4 is down, s2 drained
            assert await ask(sock, "set server be/s2 state ready") == "\n"
            await traffic(ports["fe"], 4, 10)
            assert table(await ask(sock, "show stat"))[("be", "s2")]["stot"] == "3"
            assert await ask(sock, "set weight be/s2 0") == "\n"
            assert await ask(sock, "get weight be/s2") == "0 (initial 3)\n\n"
            await traffic(ports["fe"], 2, 10)
            assert table(await ask(sock, "show stat"))[("be", "s1")]["stot"] == "9"


async def test_haproxyadmin_lists_servers_reads_stats_and_drains(tmp_path, pump_class):
    haproxyadmin = pytest.importorskip("haproxyadmin")
    from haproxyadmin import haproxy
    async with serving(echo) as s1, serving(echo) as s2, serving(echo) as s3:
        cfg, ports = write_config(tmp_path, (s1, s2, s3))
        async with running(load([str(cfg)]), pump_class):
            await traffic(ports["fe"], 2, 100)

            def drive() -> tuple:
                hap = haproxy.HAProxy(socket_file=str(tmp_path / "admin.sock"))
                names = sorted(server.name for server in hap.servers(backend="be"))
                server = hap.server("s2", backend="be")[0]
                drained = server.setstate(haproxyadmin.STATE_DRAIN)
                return (names, [b.name for b in hap.backends()], hap.maxconn, drained, server.status,
                        server.weight, hap.frontend("fe").metric("stot"))
            names, backends, maxconn, drained, status, weight, stot = await asyncio.to_thread(drive)
    assert names == ["s1", "s2", "s3", "s4"] and backends == ["be", "ls"] and maxconn == 1000
    assert (drained, status, int(weight), int(stot)) == (True, "DRAIN", 3, 2)  # weight: as haproxy keeps it


async def test_haproxy_cli_lists_backends_and_servers_and_sets_states(tmp_path, pump_class):
    conn = pytest.importorskip("haproxy.conn")
    cmds = pytest.importorskip("haproxy.cmds")
    async with serving(echo) as s1, serving(echo) as s2, serving(echo) as s3:
        cfg, ports = write_config(tmp_path, (s1, s2, s3))
        async with running(load([str(cfg)]), pump_class):
            path = str(tmp_path / "admin.sock")

            def drive() -> tuple:
                def send(command):
                    return conn.HaPConn(path).sendCmd(command, objectify=True)
                backends = send(cmds.showBackends())
                maint = send(cmds.setServerState(backend="be", server="s1", value="maint"))
                servers = send(cmds.listServers(backend="be"))
                weight = send(cmds.getWeight(backend="be", server="s2"))
                return backends, maint, servers, weight
            backends, maint, servers, weight = await asyncio.to_thread(drive)
    assert backends == ["be", "ls"] and maint == "\n" and weight.startswith("3 (initial 3)")
    assert servers[0].startswith("Name: s1 Status: MAINT Weight: 1 bIn: 0 bOut: 0")


async def test_stats_maxconn_closes_connections_past_it(tmp_path, pump_class):
    cfg, _ = write_config(tmp_path, extra_global="    stats maxconn 2")
    sock = str(tmp_path / "admin.sock")
    async with running(load([str(cfg)]), pump_class):
        held = [await asyncio.open_unix_connection(sock) for _ in range(2)]
        for reader, writer in held:
            writer.write(b"prompt\n")
            assert await reader.readexactly(3) == b"\n> "
        reader, writer = await asyncio.open_unix_connection(sock)
        assert await asyncio.wait_for(reader.read(-1), 5) == b""  # refused: closed at once
        writer.close()
        held[0][1].write(b"quit\n")
        assert await asyncio.wait_for(held[0][0].read(-1), 5) == b""
        await asyncio.sleep(0.05)
        assert await ask(sock, "show cli level") == "admin\n\n"
        held[1][1].close()


async def test_stats_timeout_closes_an_idle_connection(tmp_path, pump_class):
    cfg, _ = write_config(tmp_path)
    cfg.write_text(cfg.read_text().replace("stats timeout 5s", "stats timeout 300ms"))
    sock = str(tmp_path / "admin.sock")
    async with running(load([str(cfg)]), pump_class):
        reader, writer = await asyncio.open_unix_connection(sock)
        writer.write(b"prompt\n")
        assert await reader.readexactly(3) == b"\n> "
        started = asyncio.get_running_loop().time()
        assert await asyncio.wait_for(reader.read(-1), 5) == b""
        assert 0.2 < asyncio.get_running_loop().time() - started < 2
        writer.close()


async def test_bad_clients_disturb_neither_other_clients_nor_traffic(tmp_path, pump_class):
    async with serving(echo) as s1, serving(echo) as s2, serving(echo) as s3:
        cfg, ports = write_config(tmp_path, (s1, s2, s3))
        sock = str(tmp_path / "admin.sock")
        async with running(load([str(cfg)]), pump_class):
            silent = await asyncio.open_unix_connection(sock)  # never sends a newline
            silent[1].write(b"show stat")
            flood = await asyncio.open_unix_connection(sock)  # a 1 MiB line
            flood[1].write(b"a" * (1 << 20))
            garbage = await asyncio.open_unix_connection(sock)
            garbage[1].write(bytes(b for b in range(256) if b not in b"\n;") * 4 + b"\n")
            assert await ask(sock, "show cli level") == "admin\n\n"
            await traffic(ports["fe"], 3, 1000)
            assert await until_closed(flood[0]) == b""  # closed unanswered (reset: its data is unread)
            assert (await until_closed(garbage[0])).startswith(b"Unknown command")
            for _, writer in (silent, flood, garbage):
                writer.close()


async def test_a_tcp_socket_serves_at_its_level(tmp_path, pump_class):
    cfg, _ = write_config(tmp_path)
    port = int(re.search(r"ipv4@127.0.0.1:(\d+)", cfg.read_text())[1])
    async with running(load([str(cfg)]), pump_class):
        assert await ask(("127.0.0.1", port), "show cli level") == "user\n\n"
        assert await ask(("127.0.0.1", port), "set weight be/s2 1") == "Permission denied\n\n"
        assert (await ask(("127.0.0.1", port), "show stat")).startswith("# pxname,svname,")
        assert (await ask(str(tmp_path / "admin.sock"), "show cli sockets")) == (
            f"# socket lvl processes\nunix@{tmp_path}/admin.sock admin all\n"
            f"ipv4@127.0.0.1:{port} user all\n\n")


async def test_the_unix_socket_has_its_mode_and_is_removed_at_stop(tmp_path, pump_class):
    cfg, _ = write_config(tmp_path)
    path = tmp_path / "admin.sock"
    path.write_text("a stale socket of a former run")
    async with running(load([str(cfg)]), pump_class):
        assert stat.S_ISSOCK(path.stat().st_mode) and stat.S_IMODE(path.stat().st_mode) == 0o600
    assert not path.exists()


async def test_show_info_reports_the_process(tmp_path, pump_class):
    async with serving(echo) as s1, serving(echo) as s2, serving(echo) as s3:
        cfg, ports = write_config(tmp_path, (s1, s2, s3))
        async with running(load([str(cfg)]), pump_class):
            await traffic(ports["fe"], 2, 10)
            info = dict(line.split(": ", 1) for line in
                        (await ask(str(tmp_path / "admin.sock"), "show info")).splitlines() if line)
    assert info["Name"] == "HAProxy" and info["Pid"] == str(os.getpid()) and info["Maxconn"] == "1000"
    assert info["CumConns"] == "2" and info["Uptime"].startswith("0d 0h00m")



async def test_shutdown_sessions_cuts_a_servers_connections_and_others_go_on(tmp_path, pump_class):
    async with serving(echo) as s1, serving(echo) as s2, serving(echo) as s3:
        cfg, ports = write_config(tmp_path, (s1, s2, s3))
        sock = str(tmp_path / "admin.sock")
        async with running(load([str(cfg)]), pump_class):
            on_a = await asyncio.open_connection("127.0.0.1", ports["ls"])  # ls has one server: a
            on_a[1].write(b"ping")
            assert await asyncio.wait_for(on_a[0].readexactly(4), 5) == b"ping"
            assert await ask(sock, "shutdown sessions server ls/a") == "\n"
            assert await until_closed(on_a[0]) == b""
            await traffic(ports["ls"], 1, 10)  # new connections still go to it
            assert await ask(sock, "shutdown sessions server ls/nosuch") == "No such server.\n\n"


async def test_health_set_down_and_checks_disabled_through_the_socket(tmp_path, pump_class):
    async with serving(echo) as s1, serving(echo) as s2, serving(echo) as s3:
        cfg, ports = write_config(tmp_path, (s1, s2, s3))
        sock = str(tmp_path / "admin.sock")
        async with running(load([str(cfg)]), pump_class):
            await until_status(tmp_path / "admin.sock", ("be", "s4"), "DOWN")
            await until_status(tmp_path / "admin.sock", ("be", "s1"), "UP")
            assert await ask(sock, "disable health be/s1") == "\n"
            row = table(await ask(sock, "show stat"))[("be", "s1")]
            assert (row["status"], row["check_status"], row["chkfail"]) == ("no check", "", "")
            assert await ask(sock, "set server be/s1 health down") == "\n"
            assert table(await ask(sock, "show stat"))[("be", "s1")]["status"] == "DOWN"
            await traffic(ports["fe"], 3, 10)  # all to s2: s1 is down and no check brings it back
            rows = table(await ask(sock, "show stat"))
            assert (rows[("be", "s1")]["stot"], rows[("be", "s2")]["stot"]) == ("0", "3")
            assert await ask(sock, "enable health be/s1") == "\n"
            await until_status(tmp_path / "admin.sock", ("be", "s1"), "UP")


async def test_clear_counters_all_starts_the_counts_over(tmp_path, pump_class):
    async with serving(echo) as s1, serving(echo) as s2, serving(echo) as s3:
        cfg, ports = write_config(tmp_path, (s1, s2, s3))
        sock = str(tmp_path / "admin.sock")
        async with running(load([str(cfg)]), pump_class):
            await traffic(ports["ls"], 2, 100)
            assert table(await ask(sock, "show stat"))[("ls", "FRONTEND")]["stot"] == "2"
            assert await ask(sock, "clear counters") == "\n"  # the maxima only
            assert table(await ask(sock, "show stat"))[("ls", "FRONTEND")]["stot"] == "2"
            assert await ask(sock, "clear counters all") == "\n"
            rows = table(await ask(sock, "show stat"))
            assert [rows[row][field] for row in (("ls", "FRONTEND"), ("ls", "a"), ("ls", "BACKEND"))
                    for field in ("stot", "bin")] == ["0"] * 6
            await traffic(ports["ls"], 1, 100)
            assert table(await ask(sock, "show stat"))[("ls", "a")]["bout"] == "100"


# --- show sess, shutdown session, session times ---------------------------------------------------------

NO_SUCH_SESSION = ("show sess 0xdeadbeef", "shutdown session 0xdeadbeef", "shutdown session",
                   "shutdown session zz")


def sess_fields(line: str) -> list[tuple[str, str]]:
    """A ``show sess`` line as (key, value) pairs, in order (``rq[...]`` and ``rp[...]`` as one each)."""
    fields = []
    for word in line.split(": ", 1)[1].split():
        key, _, value = word.partition("=")
        fields.append((word.split("[")[0], word) if "[" in key else (key, value))
    return fields


async def held_session_answers(cfg: Path, sock: Path, ports: dict, run) -> dict[str, object]:
    """With one client connected through ``fe`` (and one byte echoed), ``show sess`` and the answers to
    ``shutdown session`` on its id and on ids that are not there; then whether the client was cut."""
    async with run:
        for _ in range(100):
            if sock.exists():
                break
            await asyncio.sleep(0.05)
        reader, writer = await asyncio.open_connection("127.0.0.1", ports["fe"])
        writer.write(b"x")
        assert await asyncio.wait_for(reader.readexactly(1), 5) == b"x"
        listing = await socat(sock, "show sess")
        proxied = next(line for line in listing.splitlines() if " fe=fe " in line)
        ident = proxied.split(":")[0]
        answers: dict[str, object] = {"listing": listing, "proxied": proxied,
                                      "client": writer.get_extra_info("sockname")}
        for request in NO_SUCH_SESSION:
            answers[request] = await socat(sock, request)
        answers["detail"] = await socat(sock, f"show sess {ident}")
        answers["shutdown"] = await socat(sock, f"shutdown session {ident}")
        answers["cut"] = await until_closed(reader) == b""
        writer.close()
        return answers


@needs_haproxy
@pytest.mark.timeout(60)
async def test_show_sess_and_shutdown_session_answer_as_haproxys(tmp_path, pump_class):
    async with serving(echo) as s1, serving(echo) as s2, serving(echo) as s3:
        cfg, ports = write_config(tmp_path, (s1, s2, s3))
        sock = tmp_path / "admin.sock"
        theirs = await held_session_answers(cfg, sock, ports, haproxy_running(str(cfg), str(sock)))
        ours = await held_session_answers(cfg, sock, ports, running(load([str(cfg)]), pump_class))
    for request in NO_SUCH_SESSION:
        assert ours[request] == theirs[request], request
    assert ours["shutdown"] == theirs["shutdown"] == "\n" and ours["cut"] and theirs["cut"]
    mine, haproxy = sess_fields(ours["proxied"]), sess_fields(theirs["proxied"])
    assert [key for key, _ in mine] == [key for key, _ in haproxy]
    same = ("proto", "fe", "be", "ts", "epoch", "cpu", "lat", "rc", "c_exp")
    assert [value for key, value in mine if key in same] == [value for key, value in haproxy if key in same]
    client = ours["client"]
    assert dict(mine)["src"] == f"{client[0]}:{client[1]}" and dict(mine)["srv"] in ("s1", "s2")
    assert dict(mine)["age"] in ("0s", "1s") and dict(mine)["rq"].startswith("rq[f=0h,i=0,an=00h,rx=")
    # The runtime API's own connection is listed too, as haproxy's CLI stream is.
    for listing in (ours["listing"], theirs["listing"]):
        assert any(" fe=GLOBAL be=<NONE> srv=<none> " in line and "proto=unix_stream src=unix:1" in line
                   for line in listing.splitlines())
    assert ours["detail"].splitlines()[0].split("]", 1)[1].split()[1:] == \
        theirs["detail"].splitlines()[0].split("]", 1)[1].split()[1:2] + [f"source={client[0]}:{client[1]}"]
    for text in (ours["detail"], theirs["detail"]):
        assert "  frontend=fe (id=2 mode=tcp)" in text and " total=1)\n" in text


async def test_show_sess_is_for_operators_and_shutdown_session_for_admins(tmp_path, pump_class):
    cfg, _ = write_config(tmp_path)
    port = int(re.search(r"ipv4@127.0.0.1:(\d+)", cfg.read_text())[1])
    async with running(load([str(cfg)]), pump_class):
        assert await ask(("127.0.0.1", port), "show sess") == "Permission denied\n\n"
        assert await ask(str(tmp_path / "admin.sock"), "operator;shutdown session 0x1") == \
            "\nPermission denied\n\n"
        assert "fe=GLOBAL" in await ask(str(tmp_path / "admin.sock"), "operator;show sess")


async def session_times(cfg: Path, sock: Path, ports: dict, run) -> dict[tuple[str, str], dict[str, str]]:
    """Connections of about 150 ms through ``fe``, then show stat."""
    async with run:
        for _ in range(100):
            if sock.exists():
                break
            await asyncio.sleep(0.05)
        for _ in range(4):
            reader, writer = await asyncio.open_connection("127.0.0.1", ports["fe"])
            writer.write(b"x")
            await asyncio.wait_for(reader.readexactly(1), 5)
            await asyncio.sleep(0.15)
            writer.close()
            await until_closed(reader)
        await asyncio.sleep(0.2)
        return table(await socat(sock, "show stat"))


@needs_haproxy
@pytest.mark.timeout(60)
async def test_session_times_read_as_haproxys_on_the_same_traffic(tmp_path, pump_class):
    async with serving(echo) as s1, serving(echo) as s2, serving(echo) as s3:
        cfg, ports = write_config(tmp_path, (s1, s2, s3))
        sock = tmp_path / "admin.sock"
        theirs = await session_times(cfg, sock, ports, haproxy_running(str(cfg), str(sock)))
        ours = await session_times(cfg, sock, ports, running(load([str(cfg)]), pump_class))
    for rows in (ours, theirs):
        for row in (("be", "s1"), ("be", "s2"), ("be", "BACKEND")):
            fields = {name: int(rows[row][name]) for name in ("qtime", "ctime", "rtime", "ttime", "qtime_max",
                                                               "ctime_max", "rtime_max", "ttime_max")}
            # Averages over the connections so far (up to 1024): connections of 150 ms on loopback.
            assert fields["rtime"] == fields["rtime_max"] == 0, (row, fields)
            assert fields["qtime"] <= fields["qtime_max"] < 50 and fields["ctime"] <= fields["ctime_max"] < 50
            assert 140 <= fields["ttime"] <= fields["ttime_max"] < 1500, (row, fields)
        assert rows[("be", "s2")]["ttime"] == rows[("be", "BACKEND")]["ttime"] or \
            abs(int(rows[("be", "s2")]["ttime"]) - int(rows[("be", "BACKEND")]["ttime"])) < 20
    assert ours[("be", "s3")]["ttime"] == theirs[("be", "s3")]["ttime"] == "0"  # in maintenance: none


# --- frontends and experimental-mode --------------------------------------------------------------------

async def served(port: int, timeout: float) -> bool:
    """Whether a client of ``port`` gets its byte echoed within ``timeout`` (False: it is refused,
    reset, or waits)."""
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
    except (ConnectionRefusedError, ConnectionResetError):
        return False
    try:
        writer.write(b"x")
        return await asyncio.wait_for(reader.readexactly(1), timeout) == b"x"
    except (asyncio.TimeoutError, asyncio.IncompleteReadError, ConnectionError):
        return False
    finally:
        writer.close()


async def test_a_disabled_frontend_accepts_nobody_until_enabled_and_a_shut_one_for_good(tmp_path, pump_class):
    async with serving(echo) as s1, serving(echo) as s2, serving(echo) as s3:
        cfg, ports = write_config(tmp_path, (s1, s2, s3))
        sock = str(tmp_path / "admin.sock")
        async with running(load([str(cfg)]), pump_class):
            held = await asyncio.open_connection("127.0.0.1", ports["fe"])
            held[1].write(b"a")
            assert await asyncio.wait_for(held[0].readexactly(1), 5) == b"a"
            assert await ask(sock, "disable frontend fe") == "\n"
            assert await ask(sock, "disable frontend fe") == "All sockets are already disabled.\n\n"
            assert table(await ask(sock, "show stat"))[("fe", "FRONTEND")]["status"] == "PAUSED"
            assert not await served(ports["fe"], 0.5)  # refused, as by haproxy's paused listener
            held[1].write(b"b")  # established connections go on
            assert await asyncio.wait_for(held[0].readexactly(1), 5) == b"b"
            assert await ask(sock, "enable frontend fe") == "\n"
            assert await served(ports["fe"], 5)
            assert await ask(sock, "enable frontend fe") == "All sockets are already enabled.\n\n"
            assert await ask(sock, "shutdown frontend fe") == "\n"
            assert not await served(ports["fe"], 0.5)
            assert table(await ask(sock, "show stat"))[("fe", "FRONTEND")]["status"] == "STOP"
            assert await ask(sock, "shutdown frontend fe") == "Frontend was already shut down.\n\n"
            assert await ask(sock, "enable frontend fe") == \
                "Frontend was previously shut down, cannot enable.\n\n"
            assert await served(ports["ls"], 5)  # the other frontends go on
            held[1].close()


@needs_haproxy
@pytest.mark.timeout(60)
async def test_frontend_and_experimental_mode_texts_are_haproxys(tmp_path, pump_class):
    async with serving(echo) as s1, serving(echo) as s2, serving(echo) as s3:
        cfg, ports = write_config(tmp_path, (s1, s2, s3))
        sock = tmp_path / "admin.sock"
        requests = ["disable frontend", "disable frontend nosuch", "disable frontend be", "enable frontend",
                    "shutdown frontend", "shutdown frontend nosuch", "experimental-mode",
                    "experimental-mode on;experimental-mode;experimental-mode off;experimental-mode",
                    "experimental-mode on; show cli level", "operator;experimental-mode on",
                    "operator;disable frontend fe"]
        theirs = await haproxy_answers(cfg, sock, ports, requests)
        ours = await fastproxy_answers(cfg, sock, ports, pump_class, requests)
    for request in requests:
        assert ours[request] == theirs[request], request


# --- set server addr, set maxconn -----------------------------------------------------------------------

ADDRESS_AND_LIMIT_TEXTS = [
    "set server be/s1 addr", "set server be/s1 addr 127.0.0.2", "set server be/s1 addr 127.0.0.1 port {s2}",
    "set server be/s1 addr 127.0.0.1 port {s1}", "set server be/s1 addr 127.0.0.1 port x",
    "set server be/s1 addr foo", "set server be/s1 addr ::1", "set server be/s1 addr 127.0.0.1 port",
    "set server be/s1 addr 127.0.0.1 port +5", "set server be/s1 addr 127.0.0.1 {s2}",
    "set server be/s1 addr 127.0.0.1 port {s1}", "show servers state be",
    "set maxconn server", "set maxconn server be/s1", "set maxconn server be/s1 x",
    "set maxconn server be/s1 5z", "set maxconn frontend", "set maxconn frontend nosuch 10",
    "set maxconn frontend fe", "set maxconn frontend fe -1", "set maxconn frontend be 10",
    "set maxconn frontend fe 20", "set maxconn global", "set maxconn global 5000", "set maxconn global 500",
    "show info", "set maxconn", "operator;set maxconn global 10", "show stat"]


@needs_haproxy
@pytest.mark.timeout(60)
async def test_set_server_addr_and_set_maxconn_answer_as_haproxys(tmp_path, pump_class):
    async with serving(echo) as s1, serving(echo) as s2, serving(echo) as s3:
        cfg, ports = write_config(tmp_path, (s1, s2, s3))
        sock = tmp_path / "admin.sock"
        requests = [text.format(s1=s1, s2=s2) for text in ADDRESS_AND_LIMIT_TEXTS]
        theirs = await haproxy_answers(cfg, sock, ports, requests)
        ours = await fastproxy_answers(cfg, sock, ports, pump_class, requests)
    for request in requests:
        if request.startswith("show"):
            continue
        assert ours[request] == theirs[request], request

    def info(text: str) -> dict[str, str]:
        return dict(line.split(": ", 1) for line in text.splitlines() if ": " in line)
    assert info(ours["show info"])["Maxconn"] == info(theirs["show info"])["Maxconn"] == "500"
    assert info(ours["show info"])["Hard_maxconn"] == "1000"
    mine, haproxy = table(ours["show stat"]), table(theirs["show stat"])
    assert mine[("fe", "FRONTEND")]["slim"] == haproxy[("fe", "FRONTEND")]["slim"] == "20"
    assert mine[("be", "s1")]["addr"] == haproxy[("be", "s1")]["addr"] == f"127.0.0.1:{s1}"
    state = [line.split()[:5] for line in ours["show servers state be"].splitlines()[2:] if line]
    assert state == [line.split()[:5] for line in theirs["show servers state be"].splitlines()[2:] if line]


async def test_a_server_moved_through_the_socket_gets_new_connections_at_its_new_address(tmp_path,
                                                                                         pump_class):
    async with NamedBackends(["old", "new"]) as backends:
        old, new = backends.ports
        cfg = tmp_path / "haproxy.cfg"
        fe = free_port()
        cfg.write_text(f"global\n    stats socket {tmp_path}/admin.sock level admin\n    nbthread 2\n"
                       "defaults\n    mode tcp\n    timeout connect 2s\n    timeout client 10s\n"
                       f"    timeout server 10s\nfrontend fe\n    bind 127.0.0.1:{fe}\n"
                       "    default_backend be\n"
                       f"backend be\n    server s1 127.0.0.1:{old} check inter 100ms\n")
        sock = str(tmp_path / "admin.sock")
        async with running(load([str(cfg)]), pump_class) as engine:
            held, name = await open_client(("127.0.0.1", fe))
            assert name == "old"
            assert await ask(sock, f"set server be/s1 addr 127.0.0.1 port {new}") == \
                (f"no need to change the addr, port changed from '{old}' to '{new}' by 'stats socket "
                 "command'\n\n")
            for _ in range(6):  # on every worker's copy of the lane
                client, name = await open_client(("127.0.0.1", fe))
                client.close()
                assert name == "new"
            assert table(await ask(sock, "show stat"))[("be", "s1")]["addr"] == f"127.0.0.1:{new}"
            assert engine.backends["be"].servers[0].check.address == ("127.0.0.1", new)  # checks follow
            held.close()


def limited_config(tmp_path: Path, port: int, server_port: int, *, rules: bool) -> Path:
    cfg = tmp_path / "haproxy.cfg"
    rule = "    tcp-request session accept if { src 127.0.0.0/8 }\n" if rules else ""
    cfg.write_text(f"global\n    stats socket {tmp_path}/admin.sock level admin\n    maxconn 100\n"
                   "defaults\n    mode tcp\n    timeout connect 2s\n    timeout client 10s\n"
                   f"    timeout server 10s\n    timeout queue 10s\nfrontend fe\n    bind 127.0.0.1:{port}\n"
                   f"{rule}    default_backend be\nbackend be\n    server s1 127.0.0.1:{server_port}\n")
    return cfg


@pytest.mark.parametrize("rules", [False, True], ids=["lane", "python"])
async def test_maxconn_set_through_the_socket_holds_new_clients_until_raised(tmp_path, pump_class, rules):
    async with NamedBackends(["s1"], hold=True) as backends:
        port = free_port()
        sock = str(tmp_path / "admin.sock")
        async with running(load([str(limited_config(tmp_path, port, backends.ports[0], rules=rules))]),
                           pump_class):
            for limit in ("set maxconn frontend fe 1", "set maxconn global 1"):
                assert await ask(sock, limit) == "\n"
                first, _ = await open_client(("127.0.0.1", port))
                waiting = asyncio.ensure_future(open_client(("127.0.0.1", port)))
                await asyncio.sleep(0.3)
                assert not waiting.done()  # in the backlog
                assert await ask(sock, limit.replace(" 1", " 0")) == "\n"  # none (global: the file's)
                second, _ = await asyncio.wait_for(waiting, 5)
                first.close()
                second.close()
                await wait_until(lambda: backends.open["s1"] == 0)


async def test_a_servers_maxconn_set_through_the_socket_queues_on_the_python_path(tmp_path, pump_class):
    async with NamedBackends(["s1"], hold=True) as backends:
        port = free_port()
        sock = str(tmp_path / "admin.sock")
        async with running(load([str(limited_config(tmp_path, port, backends.ports[0], rules=True))]),
                           pump_class):
            assert await ask(sock, "set maxconn server be/s1 1") == "\n"
            assert table(await ask(sock, "show stat"))[("be", "s1")]["slim"] == "1"
            first, _ = await open_client(("127.0.0.1", port))
            waiting = asyncio.ensure_future(open_client(("127.0.0.1", port)))
            await asyncio.sleep(0.3)
            rows = table(await ask(sock, "show stat"))
            assert not waiting.done(), waiting
            assert (rows[("be", "s1")]["qcur"], rows[("be", "BACKEND")]["qcur"]) == ("0", "1")
            assert await ask(sock, "set maxconn server be/s1 0") == "\n"  # no limit: the queue is served
            second, _ = await asyncio.wait_for(waiting, 5)
            first.close()
            second.close()
        async with running(load([str(limited_config(tmp_path, port, backends.ports[0], rules=False))]),
                           pump_class) as engine:
            if engine.lanes:  # a lane cannot hold a server to a limit: refused, not ignored
                assert (await ask(sock, "set maxconn server be/s1 1")).startswith("fastproxy: a server's")


# --- add server, del server -----------------------------------------------------------------------------

def dynamic_config(tmp_path: Path, port: int, first: int, *, extra: str = "") -> Path:
    cfg = tmp_path / "haproxy.cfg"
    cfg.write_text(f"global\n    stats socket {tmp_path}/admin.sock level admin\n    nbthread 2\n"
                   "defaults\n    mode tcp\n    timeout connect 2s\n    timeout client 10s\n"
                   f"    timeout server 10s\nfrontend fe\n    bind 127.0.0.1:{port}\n    default_backend be\n"
                   f"backend be\n    server s1 127.0.0.1:{first}\n"
                   f"backend bsrr\n    balance static-rr\n    server s1 127.0.0.1:{first}\n"
                   f"backend bsrc\n    balance source\n    server s1 127.0.0.1:{first}\n"
                   f"backend bcons\n    balance source\n    hash-type consistent\n"
                   f"    server s1 127.0.0.1:{first}\n"
                   f"backend bchk\n    server s1 127.0.0.1:{first} check\n{extra}")
    return cfg


DYNAMIC_TEXTS = [
    "add server bsrr/s9 127.0.0.1:{second}", "add server bsrc/s9 127.0.0.1:{second}", "add server be",
    "add server be/", "add server nosuch/s1 1.2.3.4", "add server be/s2",
    "add server be/s2 127.0.0.1:{second} bogus",
    "add server be/s1 127.0.0.1:{second}", "add server be/s2 127.0.0.1:{second} weight 3",
    "add server be/s2 127.0.0.1:{second}", "add server bcons/s2 127.0.0.1:{second}", "show servers state",
    "del server be/s2", "set server be/s2 state ready", "del server be/s2", "del server be",
    "del server nosuch/x",
    "del server be/nosuch", "set server be/s2 state maint", "del server be/s2", "del server be/s2",
    "set server bchk/s1 state maint", "del server bchk/s1", "add server be/s3 127.0.0.1:{second}",
    "show servers state be"]


@needs_haproxy
@pytest.mark.timeout(60)
async def test_add_and_del_server_answer_as_haproxys(tmp_path, pump_class):
    async with serving(echo) as first, serving(echo) as second:
        port = free_port()
        cfg = dynamic_config(tmp_path, port, first)
        sock = tmp_path / "admin.sock"
        requests = [text.format(second=second) for text in DYNAMIC_TEXTS]

        async def answers(run) -> dict[str, str]:
            async with run:
                for _ in range(100):
                    if sock.exists():
                        break
                    await asyncio.sleep(0.05)
                return {request: await socat(sock, request) for request in requests}
        theirs = await answers(haproxy_running(str(cfg), str(sock)))
        ours = await answers(running(load([str(cfg)]), pump_class))
    for request in requests:
        if request.startswith("show"):
            continue
        assert ours[request] == theirs[request], request

    def state(text: str) -> list[list[str]]:  # id, name, address, op and admin states, weights; port
        return [line.split()[:9] + line.split()[18:19] for line in text.splitlines()[2:] if line]
    assert state(ours["show servers state"]) == state(theirs["show servers state"])
    assert state(ours["show servers state be"]) == state(theirs["show servers state be"])


async def test_an_added_server_reaches_the_lanes_once_ready_and_a_deleted_one_vanishes(tmp_path, pump_class):
    async with NamedBackends(["a", "b"]) as backends:
        port = free_port()
        cfg = dynamic_config(tmp_path, port, backends.ports[0])
        sock = str(tmp_path / "admin.sock")

        async def names(count: int) -> list[str]:
            seen = []
            for _ in range(count):
                client, name = await open_client(("127.0.0.1", port))
                client.close()
                seen.append(name)
            return seen
        async with running(load([str(cfg)]), pump_class):
            assert await ask(sock, f"experimental-mode on; add server be/s2 127.0.0.1:{backends.ports[1]} "
                                   "weight 3") == "\nNew server registered.\n\n"
            assert set(await names(4)) == {"a"}  # in maintenance until set ready
            row = table(await ask(sock, "show stat"))[("be", "s2")]
            assert (row["status"], row["sid"], row["weight"]) == ("MAINT", "2", "3")
            assert await ask(sock, "set server be/s2 state ready") == "\n"
            seen = await names(40)
            assert 24 <= seen.count("b") <= 36, seen.count("b")  # its weight's share, over two threads
            assert table(await ask(sock, "show stat"))[("be", "s2")]["stot"] == str(seen.count("b"))
            assert await ask(sock, "set server be/s2 state maint") == "\n"
            assert await ask(sock, "del server be/s2") == "Server deleted.\n"
            assert set(await names(4)) == {"a"}
            rows = table(await ask(sock, "show stat"))
            assert ("be", "s2") not in rows and rows[("be", "BACKEND")]["stot"] == "48"  # its counts stay
            assert "s2" not in await ask(sock, "show servers state be")
            assert await ask(sock, "get weight be/s2") == "No such server.\n\n"
