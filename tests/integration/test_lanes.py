"""Lanes: frontends whose connections the compiled pump accepts, balances and dials without Python.

The behaviour must not change with the path a connection takes, so every test here runs on both
implementations (the Python twin has no lanes: the engine serves the same frontends the Python way).
"""

from __future__ import annotations

import asyncio
import socket

import pytest

from fastproxy.balance import PickKey, ServerState
from fastproxy.config.model import Balance
from fastproxy.pump import CPump, EndReason

from ..support import (
    NamedBackends, config, connect, echo, open_client, recv_all, recv_exactly, running, source_address,
    serving, wait_until,
)


async def test_a_plain_frontend_runs_on_a_lane_and_python_sees_no_connection(pump_class):
    async with serving(echo) as port, running(config([port]), pump_class) as engine:
        assert bool(engine.lanes) == (pump_class is CPump)
        loop = asyncio.get_running_loop()
        socks = [await connect(engine.listening_addresses()[0]) for _ in range(20)]
        for sock in socks:
            await loop.sock_sendall(sock, b"ping")
            assert await recv_exactly(sock, 4) == b"ping"
        assert engine.current == 20
        if engine.lanes:
            assert engine.python_current == 0 and not engine.pairs
        assert engine.stats()["frontends"]["fe"]["conn_cur"] == 20
        for sock in socks:
            sock.close()
        await wait_until(lambda: engine.current == 0 and engine.ended_by[EndReason.CLOSED] == 20)
        assert engine.stats()["frontends"]["fe"]["conn_total"] == 20


async def test_frontends_that_need_python_do_not_get_a_lane(pump_class):
    async with serving(echo) as port:
        for change in ({"frontend": {"log": True}}, {"backend": {"balance": Balance("leastconn")}},
                       {"global_": {"maxconnrate": 1000}}, {"frontend": {"lanes": False}}):
            async with running(config([port], **change), pump_class) as engine:
                assert not engine.lanes


async def test_with_several_pump_threads_every_worker_accepts_on_the_lane(pump_class):
    async with NamedBackends(["a", "b"]) as backends:
        async with running(config(backends.ports, global_={"nbthread": 2}), pump_class) as engine:
            assert bool(engine.lanes) == (pump_class is CPump)
            address = engine.listening_addresses()[0]
            balancer = engine.backends["be"].balancer

            async def names(count, concurrency=8):
                seen = []

                async def client(n):
                    for _ in range(n):
                        sock, name = await open_client(address)
                        sock.close()
                        seen.append(name)
                await asyncio.gather(*(client(count // concurrency) for _ in range(concurrency)))
                return seen
            # Each worker balances its own clients by smooth weighted round robin: shares follow
            # the weights over all of them, to within a client per worker.
            balancer.set_weight("s2", 3)
            seen = await names(400)
            assert len(seen) == 400 and abs(seen.count("b") - 300) <= 4, seen.count("b")
            balancer.set_state("s2", ServerState.DOWN)  # reaches every worker's copy
            assert set(await names(64)) == {"a"}
            if engine.lanes:
                held = [await connect(address) for _ in range(32)]
                await wait_until(lambda: sum(engine.pump.loads) == 32)
                # A worker that accepts more than its share hands new clients to the lighter one.
                assert min(engine.pump.loads) >= 12, engine.pump.loads
                for sock in held:
                    sock.close()
            await wait_until(lambda: engine.current == 0)
            assert engine.stats()["frontends"]["fe"]["conn_total"] == 400 + 64 + (32 if engine.lanes else 0)


async def test_state_and_weight_changes_reach_the_lane_at_once(pump_class):
    async with NamedBackends(["a", "b"]) as backends, running(config(backends.ports), pump_class) as engine:
        address = engine.listening_addresses()[0]
        balancer = engine.backends["be"].balancer

        async def names(count):
            seen = []
            for _ in range(count):
                sock, name = await open_client(address)
                sock.close()
                seen.append(name)
            return seen
        assert sorted(await names(4)) == ["a", "a", "b", "b"]
        balancer.set_state("s1", ServerState.DOWN)
        assert await names(6) == ["b"] * 6
        balancer.set_state("s1", ServerState.UP)
        balancer.set_weight("s2", 3)
        assert sorted(await names(8)) == ["a"] * 2 + ["b"] * 6
        balancer.set_weight("s2", 0)
        assert await names(3) == ["a"] * 3


async def test_the_pump_threads_share_one_round_robin(pump_class):
    """HAProxy's threads pick from one round robin: whichever thread accepts, sequential clients go
    a, b, a, b... (with a position per thread, two threads in turn would each start at a)."""
    async with NamedBackends(["a", "b"]) as backends:
        cfg = config(backends.ports)
        cfg.global_.nbthread = 2
        async with running(cfg, pump_class) as engine:
            address = engine.listening_addresses()[0]
            seen = []
            for _ in range(24):
                sock, name = await open_client(address)
                sock.close()
                seen.append(name)
    assert all(first != second for first, second in zip(seen, seen[1:])), seen


async def test_with_no_active_server_left_the_client_goes_to_a_backup_or_is_closed(pump_class):
    async with NamedBackends(["active", "spare"]) as backends:
        cfg = config(backends.ports)
        cfg.backends["be"].servers[1].backup = True
        async with running(cfg, pump_class) as engine:
            address = engine.listening_addresses()[0]
            balancer = engine.backends["be"].balancer
            sock, name = await open_client(address)
            sock.close()
            assert name == "active"
            balancer.set_state("s1", ServerState.MAINT)
            sock, name = await open_client(address)
            sock.close()
            assert name == "spare"
            balancer.set_state("s2", ServerState.MAINT)
            sock = await connect(address)
            assert await recv_all(sock) == b""  # no server at all: closed, as HAProxy does
            sock.close()
            await wait_until(lambda: engine.current == 0)
            assert engine.stats()["frontends"]["fe"]["connect_errors"] == 1


async def test_a_refused_connect_is_retried_the_python_way_and_redispatched(pump_class):
    async with NamedBackends(["alive"]) as backends:
        with socket.socket() as dead:
            dead.bind(("127.0.0.1", 0))  # bound, never listening: connects are refused
            ports = [dead.getsockname()[1], backends.ports[0]]
            cfg = config(ports, backend={"retries": 2, "redispatch": True})
            async with running(cfg, pump_class) as engine:
                address = engine.listening_addresses()[0]
                for _ in range(6):
                    sock, name = await open_client(address)
                    sock.close()
                    assert name == "alive"
                await wait_until(lambda: engine.current == 0)
                assert engine.stats()["servers"]["be/s1"]["connect_errors"] >= 3


async def test_stop_closes_the_lane_first_and_gives_its_pairs_the_grace_period(pump_class):
    async with serving(echo) as port, running(config([port]), pump_class) as engine:
        address = engine.listening_addresses()[0]
        sock = await connect(address)
        loop = asyncio.get_running_loop()
        await loop.sock_sendall(sock, b"x")
        assert await recv_exactly(sock, 1) == b"x"
        stopping = asyncio.ensure_future(engine.stop(grace=5))
        await asyncio.sleep(0.2)
        assert not stopping.done()  # the established pair keeps the engine waiting
        try:
            await connect(address)
            raise AssertionError("the listener still accepts")
        except ConnectionRefusedError:
            pass
        await loop.sock_sendall(sock, b"y")
        assert await recv_exactly(sock, 1) == b"y"  # and it still works during the grace period
        sock.close()
        await asyncio.wait_for(stopping, 5)


@pytest.mark.parametrize("hash_type", ["map-based", "consistent", "maglev"])
async def test_a_lane_hashing_the_source_picks_what_the_balancer_picks(pump_class, hash_type):
    async with NamedBackends(["a", "b", "c"]) as backends:
        cfg = config(backends.ports, backend={"balance": Balance("source", hash_type=hash_type)})
        for server, weight in zip(cfg.backends["be"].servers, [1, 2, 3]):
            server.weight = weight
        async with running(cfg, pump_class) as engine:
            assert bool(engine.lanes) == (pump_class is CPump)
            address = engine.listening_addresses()[0]
            balancer = engine.backends["be"].balancer
            names = {"s1": "a", "s2": "b", "s3": "c"}

            async def check(sources):
                reached = {}
                for source in sources:
                    sock, name = await open_client(address, source)
                    sock.close()
                    reached[source] = name
                    assert name == names[balancer.pick(PickKey(src=source)).name], source
                return reached
            sources = [source_address(i * 977) for i in range(60)]
            before = await check(sources)
            assert len(set(before.values())) == 3
            balancer.set_state("s2", ServerState.DOWN)  # the lane follows the balancer's new table
            after = await check(sources)
            assert "b" not in after.values()
            if hash_type == "consistent":  # only the clients of the server that left move
                assert all(after[s] == before[s] for s in sources if before[s] != "b")
            await wait_until(lambda: engine.current == 0)
            if engine.lanes:  # and no connection took the Python path
                assert sum(engine.ended_by.values()) == 120 and not engine.dispatcher.ended_by
