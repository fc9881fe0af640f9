"""Tracking stick counters on real sockets: a flood from one source address (127.0.0.2) is rejected
while another (127.0.0.3) is served, for the concurrent-connection rule and for the rate rule, on the
same file as the real haproxy 2.6, with the same verdicts, the same ``show table`` and the same denied
connections in ``show stat``.  With the compiled pump these frontends run on a lane (the pump tracks
the clients in its own table and rejects them at accept, without Python); the Python twin runs them
on the Python path, and so does a frontend kept off the lanes, reading the pump's table."""

from __future__ import annotations

import asyncio
import dataclasses
import re
import socket
from pathlib import Path
from typing import Any, Awaitable, Callable

import pytest

from fastproxy.config import load, parse_text as load_text
from fastproxy.pump import CPump
from fastproxy.sticktables import StickTable

from ..support import NamedBackends, compared_prologue, free_port, haproxy_running, open_client, running
from .test_stats_socket import ask, needs_haproxy, table as stat_table, until_status

LIMIT = 5


TABLE = "stick-table type ip size 100 expire 30s store conn_cur,conn_cnt,conn_rate(10s)"


def write_config(tmp_path: Path, backends: NamedBackends, rules: str, table: str = TABLE) -> tuple[Path, int]:
    port = free_port()
    path = tmp_path / "haproxy.cfg"
    path.write_text(f"""{compared_prologue(tmp_path)}frontend fe
    bind 127.0.0.1:{port}
    {table}
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


async def sessions_reach(sock_path: Path, count: int) -> None:
    """Until the frontend holds ``count`` sessions (``scur``): the connections a client closed have
    ended in the proxy, however long a loaded machine took."""
    for _ in range(200):
        if stat_table(await ask(str(sock_path), "show stat"))[("fe", "FRONTEND")]["scur"] == str(count):
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"the frontend never held {count} sessions")


async def concurrent_flood(port: int, sock_path: Path) -> list[bool]:
    held, verdicts = [], []
    for _ in range(LIMIT * 2):
        served, sock = await attempt(port, "127.0.0.2")
        verdicts.append(served)
        if sock is not None:
            held.append(sock)
    verdicts.append((await attempt(port, "127.0.0.3"))[0])
    for sock in held[:2]:  # two of the flood's connections end: room for two more
        sock.close()
    await sessions_reach(sock_path, len(held) - 2)
    for _ in range(3):
        served, sock = await attempt(port, "127.0.0.2")
        verdicts.append(served)
        if sock is not None:
            held.append(sock)
    for sock in held:
        sock.close()
    return verdicts


async def rate_flood(port: int, sock_path: Path) -> list[bool]:
    verdicts = []
    for _ in range(LIMIT * 2):
        served, sock = await attempt(port, "127.0.0.2")
        verdicts.append(served)
        if sock is not None:
            sock.close()
    verdicts.append((await attempt(port, "127.0.0.3"))[0])
    return verdicts


@dataclasses.dataclass
class Run:
    """What one proxy did with a flood."""

    verdicts: list[bool]
    table: str  # ``show table fe``, entry addresses and expiry left out (they differ by nature)
    denied: dict[str, Any]  # the frontend's row of ``show stat``: dcon, conn_tot, stot
    lane: bool = False  # fastproxy served the frontend on a lane (no Python per connection)


def masked_table(text: str) -> str:
    return re.sub(r"0x[0-9a-f]+:", "<entry>:", re.sub(r" exp=[0-9]+", "", text))


async def observe(sock_path: Path, port: int, flood: Callable[[int, Path], Awaitable[list[bool]]]) -> Run:
    verdicts = await flood(port, sock_path)
    await sessions_reach(sock_path, 0)  # the flood's last connections end (their entries released)
    row = stat_table(await ask(str(sock_path), "show stat"))[("fe", "FRONTEND")]
    return Run(verdicts, masked_table(await ask(str(sock_path), "show table fe")),
               {field: row[field] for field in ("dcon", "conn_tot", "stot")})


async def compare(tmp_path: Path, pump_class, rules: str, flood, *, table: str = TABLE,
                  lanes: bool = True) -> tuple[Run, Run]:
    """The flood through haproxy, then through fastproxy, on the same file (``lanes`` False keeps
    fastproxy's frontend off the lanes: its Python path then reads the pump's table)."""
    sock_path = tmp_path / "admin.sock"
    runs = []
    for side in ("haproxy", "fastproxy"):
        async with NamedBackends(["a"], hold=True) as backends:
            cfg, port = write_config(tmp_path, backends, rules, table)
            if side == "haproxy":
                async with haproxy_running(str(cfg), str(sock_path)):
                    await until_status(sock_path, ("be", "a"), "UP")
                    runs.append(await observe(sock_path, port, flood))
            else:
                config = load([str(cfg)])
                if not lanes:
                    config.frontends["fe"].lanes = False
                async with running(config, pump_class) as engine:
                    await until_status(sock_path, ("be", "a"), "UP")
                    run = await observe(sock_path, port, flood)
                    run.lane = bool(engine.lanes)
                    # The exporter reads the same table: as many entries as show table lists.
                    used = [line.rsplit(" ", 1) for line in engine.metrics().decode().splitlines()
                            if line.startswith("haproxy_sticktable_used{")]
                    assert [(name, float(value)) for name, value in used] == [
                        ('haproxy_sticktable_used{name="fe",type="ip"}', run.table.count(" key="))], used
                    if run.lane:
                        assert not engine.pairs  # no connection took the Python path
                    runs.append(run)
    return runs[0], runs[1]


def assert_same(theirs: Run, ours: Run, pump_class, *, lane: bool = True) -> None:
    assert ours.verdicts == theirs.verdicts
    assert ours.table == theirs.table
    assert ours.denied == theirs.denied
    assert ours.lane == (lane and pump_class is CPump)


@needs_haproxy
@pytest.mark.timeout(60)
async def test_a_flood_of_concurrent_connections_from_one_source_is_rejected_and_others_served(
        tmp_path, pump_class):
    theirs, ours = await compare(tmp_path, pump_class, f"""\
    tcp-request connection track-sc0 src
    tcp-request connection reject if {{ sc_conn_cur(0) gt {LIMIT} }}""", concurrent_flood)
    assert theirs.verdicts == [True] * LIMIT + [False] * LIMIT + [True] + [True, True, False]
    assert theirs.denied["dcon"] == str(LIMIT + 1) and " key=127.0.0.2 use=0 " in theirs.table
    assert_same(theirs, ours, pump_class)


@needs_haproxy
@pytest.mark.timeout(60)
async def test_a_flood_of_connections_over_a_rate_from_one_source_is_rejected_and_others_served(
        tmp_path, pump_class):
    theirs, ours = await compare(tmp_path, pump_class, f"""\
    tcp-request connection track-sc1 src
    tcp-request connection reject if {{ sc1_conn_rate gt {LIMIT} }}""", rate_flood)
    assert theirs.verdicts == [True] * LIMIT + [False] * LIMIT + [True]
    assert f" conn_rate(10000)={2 * LIMIT}" in theirs.table
    assert_same(theirs, ours, pump_class)


@needs_haproxy
@pytest.mark.timeout(60)
async def test_src_fetches_without_tracking_read_the_table(tmp_path, pump_class):
    """``src_conn_rate`` reads the client's entry without tracking it; another rule tracks."""
    theirs, ours = await compare(tmp_path, pump_class, f"""\
    tcp-request connection reject if {{ src_conn_rate ge {LIMIT} }}
    tcp-request connection track-sc2 src""", rate_flood)
    assert theirs.verdicts == [True] * LIMIT + [False] * LIMIT + [True]
    # The reject comes first: the rejected connections were never tracked.
    assert " key=127.0.0.2 use=0 " in theirs.table and f" conn_cnt={LIMIT} " in theirs.table
    assert_same(theirs, ours, pump_class)


@needs_haproxy
@pytest.mark.timeout(60)
async def test_a_frontend_off_the_lanes_reads_and_counts_in_the_pumps_table(tmp_path, pump_class):
    """The Python path tracks in the same table the lanes use (the pump's, with the compiled pump)."""
    theirs, ours = await compare(tmp_path, pump_class, f"""\
    acl flood sc0_conn_cur gt {LIMIT}
    tcp-request connection track-sc0 src
    tcp-request connection reject if flood""", concurrent_flood, lanes=False)
    assert theirs.verdicts == [True] * LIMIT + [False] * LIMIT + [True] + [True, True, False]
    assert_same(theirs, ours, pump_class, lane=False)


@needs_haproxy
@pytest.mark.timeout(60)
async def test_a_counter_number_past_the_last_is_valid_and_never_tracked_as_haproxy(tmp_path, pump_class):
    """``sc_*(<n>)`` reads an int64 kept as a C unsigned int: 5 and -1 are counters never tracked (no
    value; sc_tracked false), 4294967296 is counter 0 again."""
    theirs, ours = await compare(tmp_path, pump_class, f"""\
    tcp-request connection track-sc0 src
    tcp-request connection reject if {{ sc_conn_cur(5) ge 0 }} || {{ sc_tracked(-1) }}
    tcp-request connection reject if {{ sc_conn_cur(4294967296) gt {LIMIT} }}""", concurrent_flood,
                                 lanes=False)
    assert theirs.verdicts == [True] * LIMIT + [False] * LIMIT + [True] + [True, True, False]
    assert_same(theirs, ours, pump_class, lane=False)


async def expiring_flood(port: int, sock_path: Path) -> list[bool]:
    """A rate flood, then the same source once its entry expired (a second later): served again."""
    verdicts = await rate_flood(port, sock_path)
    await asyncio.sleep(1.5)
    served, sock = await attempt(port, "127.0.0.2")
    if sock is not None:
        sock.close()
    return verdicts + [served]


@needs_haproxy
@pytest.mark.timeout(60)
async def test_an_entry_expires_and_its_counts_with_it(tmp_path, pump_class):
    theirs, ours = await compare(tmp_path, pump_class, f"""\
    tcp-request connection track-sc0 src
    tcp-request connection reject if {{ sc0_conn_rate gt {LIMIT} }}""", expiring_flood,
                                 table="stick-table type ip size 100 expire 1s store conn_rate(10s)")
    assert theirs.verdicts == [True] * LIMIT + [False] * LIMIT + [True] + [True]
    assert " key=127.0.0.2 use=0 conn_rate(10000)=1" in theirs.table  # the new entry only
    assert_same(theirs, ours, pump_class)


async def full_table_flood(port: int, sock_path: Path) -> list[bool]:
    """A rate flood from 127.0.0.2, then 127.0.0.3 (a second key in a table of one), then 127.0.0.2."""
    verdicts = await rate_flood(port, sock_path)
    for _ in range(2):
        await sessions_reach(sock_path, 0)  # the connection before has ended: its entry is tracked by nobody
        served, sock = await attempt(port, "127.0.0.2")
        verdicts.append(served)
        if sock is not None:
            sock.close()
    return verdicts


@needs_haproxy
@pytest.mark.timeout(60)
@pytest.mark.parametrize("nopurge", ["", " nopurge"])
async def test_a_full_table_evicts_its_oldest_entry_or_with_nopurge_refuses_the_new_key(
        tmp_path, pump_class, nopurge):
    theirs, ours = await compare(tmp_path, pump_class, f"""\
    tcp-request connection track-sc0 src
    tcp-request connection reject if {{ sc0_conn_rate gt {LIMIT} }}""", full_table_flood,
                                 table=f"stick-table type ip size 1{nopurge} store conn_cnt,conn_rate(10s)")
    if nopurge:  # 127.0.0.3 was never tracked: 127.0.0.2 keeps its entry, and is refused again
        assert theirs.verdicts == [True] * LIMIT + [False] * LIMIT + [True] + [False, False]
        assert "key=127.0.0.2" in theirs.table and "127.0.0.3" not in theirs.table
    else:  # 127.0.0.3 took the place of 127.0.0.2, whose new entry then took it back
        assert theirs.verdicts == [True] * LIMIT + [False] * LIMIT + [True] + [True, True]
        assert " key=127.0.0.2 use=0 conn_cnt=2 conn_rate(10000)=2" in theirs.table
    assert_same(theirs, ours, pump_class)


def table_run(table) -> list:
    """The same changes to a table of two entries, and what it shows after each."""
    seen = []
    two = table.parse_key("127.0.0.2")
    three, four = table.parse_key("127.0.0.3"), table.parse_key("127.0.0.4")
    first = table.track(two)
    table.track(two)
    table.untrack(first)
    table.untrack(first)
    held = table.track(three)
    seen.append([masked_table(table.dump(entry)) for entry in table])
    assert table.track(four) is not None  # the table is full: 127.0.0.2, tracked by nobody, goes
    seen.append([masked_table(table.dump(entry)) for entry in table])
    entry = table.lookup(three)
    table.set(entry, "conn_cnt", 7)
    seen.append((table.read(entry, "conn_cnt"), table.read(entry, "conn_cur"), table.remove(three)))
    table.untrack(held)
    seen.append((table.read(entry, "conn_cur"), table.remove(three), table.used, table.available))
    assert table.lookup(three) is None and table.get(three) is not None
    seen.append(table.header())
    return seen


def test_the_pumps_table_keeps_entries_as_the_sans_io_table_does(pump_class):
    spec = load_text(f"backend be\n {TABLE.replace('size 100', 'size 2')}\n").stick_tables["be"]
    pump = pump_class(counter_blocks=1)
    theirs = table_run(StickTable(spec))
    assert theirs[1] == ["<entry>: key=127.0.0.3 use=1 conn_cnt=1 conn_rate(10000)=1 conn_cur=1",
                         "<entry>: key=127.0.0.4 use=1 conn_cnt=1 conn_rate(10000)=1 conn_cur=1"]
    assert table_run(pump.stick_table(spec)) == theirs
    nopurge = dataclasses.replace(spec, size=1, nopurge=True)
    table = pump.stick_table(nopurge)
    assert table.track(table.parse_key("127.0.0.2")) is not None
    assert table.track(table.parse_key("127.0.0.3")) is None
    assert [entry.key for entry in table] == [table.parse_key("127.0.0.2")]


@needs_haproxy
@pytest.mark.timeout(60)
async def test_a_whitelisted_source_is_never_tracked_nor_rejected(tmp_path, pump_class):
    whitelist = tmp_path / "whitelist.lst"
    whitelist.write_text("# trusted\n127.0.0.2\n10.0.0.0/8\n")
    theirs, ours = await compare(tmp_path, pump_class, f"""\
    tcp-request connection accept if {{ src -f {whitelist} }}
    tcp-request connection track-sc0 src
    tcp-request connection reject if {{ sc0_conn_rate gt {LIMIT} }}""", rate_flood)
    assert theirs.verdicts == [True] * (2 * LIMIT + 1)
    assert "127.0.0.2" not in theirs.table and " key=127.0.0.3 use=0 " in theirs.table
    assert_same(theirs, ours, pump_class)
