"""Limits end to end: queues, rates, descriptors and server states, with real clients and backends.

The backends name themselves to each client and hold the connection until the client closes it, so a
client knows whether (and by whom) it is served, and a served connection keeps its server slot.  Tests
that touch the data plane run against both implementations (``pump_class``).
"""

from __future__ import annotations

import asyncio
import logging
import os
import resource
import socket
import subprocess
import sys
import threading
import time

import pytest

from fastproxy.balance import ServerState
from fastproxy.config import model
from fastproxy.engine import Engine

from ..support import (NamedBackends, config, echo_listen, echo_process, free_port, running, stop,
                       wait_listening, wait_until)


async def waiting_client(address: tuple) -> tuple[socket.socket, asyncio.Task]:
    """A connected client and the task that reads its server's name: the name once served, None if
    the proxy closes the connection first."""
    loop = asyncio.get_running_loop()
    sock = socket.socket()
    sock.setblocking(False)
    await loop.sock_connect(sock, address)

    async def name() -> str | None:
        line = b""
        try:
            while not line.endswith(b"\n"):
                data = await loop.sock_recv(sock, 64)
                if not data:
                    return None
                line += data
        except ConnectionError:
            return None
        return line.decode().strip()
    return sock, loop.create_task(name())


async def clients_in_order(engine: Engine, count: int, clients: list | None = None) -> list:
    """``count`` more clients (appended to ``clients``), each accepted by the proxy before the next one
    connects, so that they queue in that order."""
    address = engine.listening_addresses()[0]
    clients = [] if clients is None else clients
    for _ in range(count):
        clients.append(await waiting_client(address))
        expected = len(clients)
        await wait_until(lambda: engine.current == expected)
    return clients


async def settle() -> None:
    """Time for anything that was going to happen on loopback to happen."""
    await asyncio.sleep(0.1)


async def served_by(clients) -> list[str | None]:
    """What the given clients were served by, once they all were (or were closed)."""
    return list(await asyncio.wait_for(asyncio.gather(*(task for _, task in clients)), 5))


def served(clients) -> list[str | None]:
    return [task.result() if task.done() else "waiting" for _, task in clients]


def limited_config(backends: NamedBackends, algorithm: str = "roundrobin", timeouts_be: dict | None = None,
                   backend: dict | None = None, global_: dict | None = None, **server_fields) -> model.Config:
    """One frontend, backend "be" with a server per named backend (named as it), ``server_fields`` on
    every server."""
    cfg = config(backends.ports, timeouts_be=timeouts_be or {"connect": 5.0}, backend=backend,
                 global_=global_)
    cfg.backends["be"].balance = model.Balance(algorithm)
    for server, name in zip(cfg.backends["be"].servers, backends.names):
        server.name = name
        for key, value in server_fields.items():
            setattr(server, key, value)
    return cfg


def close_all(clients) -> None:
    for sock, task in clients:
        task.cancel()
        sock.close()


# --- queues -------------------------------------------------------------------------------------------

async def test_clients_over_maxconn_wait_in_the_queue_and_are_served_in_order(pump_class):
    async with NamedBackends(["a"], hold=True) as backends:
        async with running(limited_config(backends, maxconn=2), pump_class) as engine:
            clients = await clients_in_order(engine, 6)
            assert await served_by(clients[:2]) == ["a", "a"]
            await settle()
            assert served(clients) == ["a", "a"] + ["waiting"] * 4
            stats = engine.stats()
            assert stats["backends"]["be"]["queue_cur"] == 4  # every server full: the backend's queue
            assert stats["servers"]["be/a"]["queue_cur"] == 0
            for done in range(4):  # each connection that ends lets the oldest waiting one in
                clients[done][0].close()
                await asyncio.wait_for(clients[done + 2][1], 5)
                await settle()
                assert served(clients)[done + 3:] == ["waiting"] * (3 - done)
                assert backends.open["a"] == 2
            stats = engine.stats()["backends"]["be"]
            assert (stats["queue_cur"], stats["queue_max"], stats["queue_expired"]) == (0, 4, 0)
            close_all(clients)
            await wait_until(lambda: backends.open["a"] == 0)


async def test_a_hashed_client_waits_for_its_server_and_maxqueue_sends_the_overflow_elsewhere(pump_class):
    async with NamedBackends(["x", "y"], hold=True) as backends:
        # Every client is 127.0.0.1: the hash sends them all to the same server.
        cfg = limited_config(backends, "source", maxconn=1, maxqueue=1)
        async with running(cfg, pump_class) as engine:
            clients = await clients_in_order(engine, 1)
            mine = await asyncio.wait_for(clients[0][1], 5)
            other = "y" if mine == "x" else "x"
            await clients_in_order(engine, 4, clients)
            await settle()
            # 2nd: waits in its server's queue; 3rd: that queue is full, the other server takes it;
            # 4th: both full, it waits in the other server's queue; 5th: every queue full, the backend's.
            assert served(clients) == [mine, "waiting", other, "waiting", "waiting"]
            stats = engine.stats()
            assert [stats["servers"][f"be/{name}"]["queue_cur"] for name in (mine, other)] == [1, 1]
            assert stats["backends"]["be"]["queue_cur"] == 1
            clients[0][0].close()  # the hashed server serves its own queue's client, older than the 5th
            assert await asyncio.wait_for(clients[1][1], 5) == mine
            await settle()
            assert served(clients)[3:] == ["waiting", "waiting"]
            clients[2][0].close()
            assert await asyncio.wait_for(clients[3][1], 5) == other
            clients[1][0].close()
            assert await asyncio.wait_for(clients[4][1], 5) == mine
            close_all(clients)
            await wait_until(lambda: sum(backends.open.values()) == 0)


@pytest.mark.parametrize("timeouts", [{"queue": 0.3, "connect": 5.0}, {"connect": 0.3}],
                         ids=["timeout-queue", "falls-back-to-timeout-connect"])
async def test_a_client_queued_longer_than_timeout_queue_is_closed_and_counted(pump_class, timeouts, caplog):
    with caplog.at_level(logging.INFO, logger="fastproxy"):
        async with NamedBackends(["a"], hold=True) as backends:
            cfg = limited_config(backends, timeouts_be=timeouts, maxconn=1)
            cfg.frontends["fe"].log = cfg.frontends["fe"].tcplog = True
            async with running(cfg, pump_class) as engine:
                clients = await clients_in_order(engine, 2)
                started = time.monotonic()
                assert await asyncio.wait_for(clients[1][1], 5) is None  # closed, never served
                assert 0.25 <= time.monotonic() - started < 2.0
                assert served(clients)[0] == "a"  # the served one goes on
                stats = engine.stats()
                assert stats["backends"]["be"]["queue_expired"] == 1
                assert stats["frontends"]["fe"]["connect_errors"] == 1
                assert engine.current == 1
                close_all(clients)
    assert [r for r in caplog.records if " sQ " in r.getMessage()]  # HAProxy's termination state


async def test_minconn_grows_to_maxconn_as_the_backend_fills_up_to_fullconn(pump_class):
    async with NamedBackends(["a"], hold=True) as backends:
        cfg = limited_config(backends, backend={"fullconn": 12}, minconn=2, maxconn=6)
        async with running(cfg, pump_class) as engine:
            clients = await clients_in_order(engine, 6)
            # 6 connections on the backend: max(minconn, maxconn * 6 / fullconn) = 3 served.
            await wait_until(lambda: backends.open["a"] == 3)
            await settle()
            assert backends.open["a"] == 3 and engine.stats()["backends"]["be"]["queue_cur"] == 3
            await clients_in_order(engine, 6, clients)
            # 12 = fullconn: the full maxconn of 6.
            await wait_until(lambda: backends.open["a"] == 6)
            await settle()
            assert backends.open["a"] == 6 and engine.stats()["backends"]["be"]["queue_cur"] == 6
            close_all(clients)
            await wait_until(lambda: backends.open["a"] == 0)


async def test_fullconn_defaults_to_a_tenth_of_the_frontends_maxconn():
    cfg = config([9], frontend={"maxconn": 95})
    cfg.backends["be"].servers[0].minconn = 1
    cfg.backends["be"].servers[0].maxconn = 5
    cfg.frontends["other"] = model.Frontend("other", binds=[model.Bind("127.0.0.1", 0)],
                                            default_backend="be", maxconn=100)
    async with running(cfg, None) as engine:
        assert engine.backends["be"].balancer.fullconn == (95 + 100 + 9) // 10


async def test_first_fills_each_server_to_its_maxconn_then_queues(pump_class):
    async with NamedBackends(["a", "b"], hold=True) as backends:
        async with running(limited_config(backends, "first", maxconn=2), pump_class) as engine:
            clients = await clients_in_order(engine, 5)
            await served_by(clients[:4])
            await settle()
            assert served(clients) == ["a", "a", "b", "b", "waiting"]
            clients[3][0].close()  # the server whose connection ended takes the waiting one
            assert await asyncio.wait_for(clients[4][1], 5) == "b"
            close_all(clients)
            await wait_until(lambda: sum(backends.open.values()) == 0)


# --- rates --------------------------------------------------------------------------------------------

async def served_times(address: tuple, count: int, deadline: float) -> list[float]:
    """Start ``count`` clients at once; when each was served (seconds from the start), in order."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    clients = [await waiting_client(address) for _ in range(count)]
    times = []
    try:
        for coro in asyncio.as_completed([task for _, task in clients], timeout=deadline):
            assert await coro is not None, "a client was refused"
            times.append(loop.time() - start)
    finally:
        close_all(clients)
    return times


async def test_rate_limit_sessions_spreads_accepts_and_refuses_none(pump_class):
    async with NamedBackends(["a"], hold=True) as backends:
        cfg = limited_config(backends)
        cfg.frontends["fe"].rate_limit_sessions = 20
        async with running(cfg, pump_class) as engine:
            times = await served_times(engine.listening_addresses()[0], 45, deadline=8.0)
        # A sliding second: a burst of 20 at once, then 20 per second.
        assert sum(1 for t in times if t < 1.5) <= 20 * 1.5 + 5
        assert sum(1 for t in times if t < 0.9) <= 20 + 2
        assert len(times) == 45 and times[-1] < 4.0


async def test_maxconnrate_limits_every_frontend_together(pump_class):
    async with NamedBackends(["a"], hold=True) as backends:
        cfg = limited_config(backends, global_={"maxconnrate": 20})
        cfg.frontends["fe2"] = model.Frontend("fe2", binds=[model.Bind("127.0.0.1", 0)], default_backend="be")
        async with running(cfg, pump_class) as engine:
            first, second = engine.listening_addresses("fe")[0], engine.listening_addresses("fe2")[0]
            times = await asyncio.gather(served_times(first, 15, 8.0), served_times(second, 15, 8.0))
        merged = sorted(times[0] + times[1])
        assert sum(1 for t in merged if t < 0.9) <= 20 + 2
        assert len(merged) == 30 and merged[-1] < 3.0


# --- running out of descriptors ----------------------------------------------------------------------

FD_LIMIT = 64


def cpu_seconds(pid: int) -> float:
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def echo_once(port: int, payload: bytes, timeout: float = 2.0) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
            sock.sendall(payload)
            return sock.recv(64) == payload
    except OSError:
        return False


def test_out_of_descriptors_pauses_accepting_logs_once_and_recovers(implementation_env, tmp_path):
    port = free_port()
    with echo_process() as backend:
        cfg = tmp_path / "haproxy.cfg"
        cfg.write_text(echo_listen(port, backend))
        proc = subprocess.Popen(
            [sys.executable, "-m", "fastproxy", "run", "-f", str(cfg)], env=implementation_env,
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
            preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (FD_LIMIT, FD_LIMIT)))
        lines: list[str] = []

        def read_stderr() -> None:
            for line in proc.stderr:  # type: ignore[union-attr]
                lines.append(line)
        threading.Thread(target=read_stderr, daemon=True).start()
        clients = []
        try:
            wait_listening(("127.0.0.1", port), proc)
            assert echo_once(port, b"before\n")
            for _ in range(3 * FD_LIMIT):  # many more clients than the proxy has descriptors
                clients.append(socket.create_connection(("127.0.0.1", port), timeout=5))
            deadline = time.monotonic() + 10
            while not any("pausing accepts" in line for line in lines):
                assert time.monotonic() < deadline, f"no report of the shortage: {lines}"
                time.sleep(0.05)
            # Saturated: the proxy waits rather than spins, and says so once, not per accept.
            before, started = cpu_seconds(proc.pid), time.monotonic()
            time.sleep(1.5)
            used = cpu_seconds(proc.pid) - before
            assert used < 0.25 * (time.monotonic() - started), f"{used:.2f} s of CPU while saturated"
            assert proc.poll() is None
            assert sum("pausing accepts" in line for line in lines) == 1, lines
            for sock in clients:
                sock.close()
            clients.clear()
            deadline = time.monotonic() + 10
            while not echo_once(port, b"after\n"):
                assert time.monotonic() < deadline, "no connection proxied once descriptors were free"
                time.sleep(0.1)
        finally:
            for sock in clients:
                sock.close()
            stop(proc)
    assert proc.returncode == 0
    assert sum("pausing accepts" in line for line in lines) == 1


# --- server states ------------------------------------------------------------------------------------

def backup_config(ports: list[int], names: list[str], backups: set[str], **backend_fields) -> model.Config:
    cfg = config(ports, timeouts_be={"connect": 5.0}, backend=backend_fields or None)
    for server, name in zip(cfg.backends["be"].servers, names):
        server.name = name
        server.backup = name in backups
    return cfg


async def names_of(engine: Engine, count: int) -> set[str]:
    clients = [await waiting_client(engine.listening_addresses()[0]) for _ in range(count)]
    try:
        return {await asyncio.wait_for(task, 5) for _, task in clients}
    finally:
        close_all(clients)


async def test_a_backup_takes_over_when_every_active_is_down_and_gives_back_when_one_returns(pump_class):
    names = ["a1", "a2", "b1", "b2"]
    async with NamedBackends(names, hold=True) as backends:
        cfg = backup_config(backends.ports, names, {"b1", "b2"})
        async with running(cfg, pump_class) as engine:
            assert await names_of(engine, 8) == {"a1", "a2"}
            held, _ = await waiting_client(engine.listening_addresses()[0])
            await wait_until(lambda: backends.open["a1"] + backends.open["a2"] == 1)
            engine.set_server_state("be", "a1", ServerState.DOWN)
            engine.set_server_state("be", "a2", "maint")
            assert await names_of(engine, 8) == {"b1"}  # the first backup only
            assert backends.open["a1"] + backends.open["a2"] == 1  # established ones go on
            engine.set_server_state("be", "a2", ServerState.UP)
            assert await names_of(engine, 8) == {"a2"}
            held.close()


async def test_allbackups_uses_every_backup_and_disabled_servers_get_nothing(pump_class):
    names = ["a1", "off", "b1", "b2"]
    async with NamedBackends(names, hold=True) as backends:
        cfg = backup_config(backends.ports, names, {"b1", "b2"}, allbackups=True)
        cfg.backends["be"].servers[1].disabled = True
        async with running(cfg, pump_class) as engine:
            assert engine.stats()["servers"]["be/off"]["state"] == "MAINT"
            assert await names_of(engine, 8) == {"a1"}
            engine.set_server_state("be", "a1", ServerState.DOWN)
            assert await names_of(engine, 8) == {"b1", "b2"}
        assert backends.accepted["off"] == 0


@pytest.mark.parametrize("state", [ServerState.DRAIN, ServerState.MAINT])
async def test_drain_and_maintenance_take_no_new_connections_and_keep_established_ones(pump_class, state):
    async with NamedBackends(["a", "b"], hold=True) as backends:
        # One pump thread: on a lane each thread keeps its own round-robin position, so with two the
        # first two clients may both go to "a" (HAProxy's threads share one; see the README).
        async with running(limited_config(backends, global_={"nbthread": 1}), pump_class) as engine:
            address = engine.listening_addresses()[0]
            held = [await waiting_client(address) for _ in range(2)]
            assert {await task for _, task in held} == {"a", "b"}
            engine.set_server_state("be", "a", state)
            assert await names_of(engine, 6) == {"b"}
            assert backends.open["a"] == 1  # the established connection goes on
            engine.set_server_state("be", "a", ServerState.UP)
            assert await names_of(engine, 6) == {"a", "b"}
            close_all(held)


async def test_a_server_out_of_picks_gets_no_queued_client_until_it_is_back(pump_class):
    async with NamedBackends(["a", "b"], hold=True) as backends:
        async with running(limited_config(backends, maxconn=1), pump_class) as engine:
            clients = await clients_in_order(engine, 3)
            holder_of_a = (await served_by(clients[:2])).index("a")
            engine.set_server_state("be", "a", ServerState.DRAIN)
            clients[holder_of_a][0].close()
            await wait_until(lambda: backends.open["a"] == 0)
            await settle()
            assert served(clients)[2] == "waiting"  # a has a free slot, but drains
            engine.set_server_state("be", "a", ServerState.UP)  # back: it takes from the queue
            assert await asyncio.wait_for(clients[2][1], 5) == "a"
            close_all(clients)


async def test_a_backup_coming_into_use_serves_the_backend_queue(pump_class):
    names = ["a", "b"]
    async with NamedBackends(names, hold=True) as backends:
        cfg = backup_config(backends.ports, names, {"b"})
        cfg.backends["be"].servers[0].maxconn = 1
        async with running(cfg, pump_class) as engine:
            clients = await clients_in_order(engine, 2)
            assert await served_by(clients[:1]) == ["a"]
            await settle()
            assert served(clients) == ["a", "waiting"]
            engine.set_server_state("be", "a", ServerState.MAINT)
            assert await asyncio.wait_for(clients[1][1], 5) == "b"
            close_all(clients)


@pytest.mark.parametrize("redispatch", [True, False])
async def test_clients_queued_for_a_server_taken_out_are_rebalanced_with_redispatch_only(pump_class,
                                                                                         redispatch):
    async with NamedBackends(["x", "y"], hold=True) as backends:
        cfg = limited_config(backends, "source", backend={"redispatch": redispatch}, maxconn=1)
        async with running(cfg, pump_class) as engine:
            clients = await clients_in_order(engine, 2)
            mine = await asyncio.wait_for(clients[0][1], 5)
            other = "y" if mine == "x" else "x"
            engine.set_server_state("be", mine, ServerState.MAINT)
            await settle()
            if redispatch:
                assert await asyncio.wait_for(clients[1][1], 5) == other
            else:  # it waits for its server
                assert served(clients)[1] == "waiting"
                assert engine.stats()["servers"][f"be/{mine}"]["queue_cur"] == 1
                engine.set_server_state("be", mine, ServerState.UP)
                clients[0][0].close()
                assert await asyncio.wait_for(clients[1][1], 5) == mine
            close_all(clients)


async def test_stop_closes_the_clients_still_queued(pump_class):
    async with NamedBackends(["a"], hold=True) as backends:
        engine = Engine(limited_config(backends, maxconn=1), pump_class=pump_class)
        await engine.start()
        try:
            clients = await clients_in_order(engine, 3)
        finally:
            await engine.stop(grace=0.2)
        assert served(clients)[0] == "a"
        assert [await asyncio.wait_for(task, 5) for _, task in clients[1:]] == [None, None]
        assert engine.backends["be"].queues.waiting == 0
        close_all(clients)
