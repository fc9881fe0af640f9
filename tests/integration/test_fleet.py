"""A fleet that agrees: three engines take one backend's servers from a real etcd and, after every
change, hash every key to the same server (the same table digest, the same lookups of 10,000 keys,
the same server for real clients), moving no more keys than the change needs, cutting no connection
but the removed server's; through etcd being killed and restarted, and through a burst of changes."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import subprocess
import sys
import time
from typing import Any, AsyncIterator

import pytest

from fastproxy import fleet as fleet_module
from fastproxy.config import model
from fastproxy.fleet import Fleet, FleetSettings, Member
from fastproxy.ring import HashRing

from ..support import (NamedBackends, config, etcd_server, free_port, open_client, running, source_address,
                       start_fastproxy, stop, wait_listening, wait_until)

pytestmark = pytest.mark.timeout(240)  # etcd is Debian's etcd-server, which .ci/run installs

KEYS = [i.to_bytes(4, "big") for i in range(10_000)]  # what ``balance source`` hashes: IPv4 addresses
CONVERGE = 1.0  # seconds within which every instance applies a change (the bound)


def fleet_config() -> model.Config:
    return config([], backend={"balance": model.Balance("source", hash_type="maglev")})


@contextlib.asynccontextmanager
async def instances(count: int, pump_class: Any, endpoint: str, **settings: Any) -> AsyncIterator[list[Any]]:
    """``count`` engines, each with the fleet over backend ``be``."""
    async with contextlib.AsyncExitStack() as stack:
        engines = []
        for i in range(count):
            engine = await stack.enter_async_context(running(fleet_config(), pump_class))
            fleet = Fleet(engine.operations, FleetSettings(
                endpoints=(fleet_module.parse_endpoint(endpoint),), backends=("be",), instance=f"i{i}",
                lease_ttl=3, retry_delay=0.2, **settings))
            engine.operations.fleet = fleet
            await fleet.start()
            stack.push_async_callback(fleet.stop)
            engines.append(engine)
        yield engines


def balancer(engine: Any) -> Any:
    return engine.state.backends["be"].balancer


def expected_ring(members: dict[str, Member]) -> HashRing:
    usable = {m.name: m.weight for m in members.values() if m.state == "ready" and m.weight}
    return HashRing(usable, "maglev", points_per_weight=1, table_size=65537, seed=0)


def digest(engine: Any) -> int | None:
    ring = balancer(engine).ring  # None while no server is usable
    return None if ring is None else ring.digest()


async def converged(engines: list[Any], members: dict[str, Member], timeout: float) -> float:
    """Seconds until every instance's table is the expected one (its digest), bounded."""
    want = expected_ring(members).digest()
    started = time.monotonic()
    await wait_until(lambda: all(digest(engine) == want for engine in engines), timeout=timeout)
    return time.monotonic() - started


def alive(sock: socket.socket) -> bool:
    try:
        return sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) != b""
    except BlockingIOError:
        return True
    except OSError:
        return False


async def put(endpoint: tuple[str, int], member: Member) -> None:
    await fleet_module.put_member(endpoint, fleet_module.DEFAULT_ROOT, "be", member)


async def remove(endpoint: tuple[str, int], name: str) -> None:
    await fleet_module.remove_member(endpoint, fleet_module.DEFAULT_ROOT, "be", name)


async def test_three_instances_agree_after_every_change(implementation, tmp_path):
    names = ["a", "b", "c", "d", "e"]
    with etcd_server(str(tmp_path / "etcd")) as etcd:
        endpoint = fleet_module.parse_endpoint(etcd.endpoint)
        async with NamedBackends(names, hold=True) as backends:
            port = dict(zip(names, backends.ports))
            members = {name: Member(name, "127.0.0.1", port[name]) for name in names[:4]}
            for member in members.values():
                await put(endpoint, member)
            async with instances(3, implementation.pump_class, etcd.endpoint) as engines:
                await converged(engines, members, timeout=10)  # the first read, connections included
                frontends = [engine.listening_addresses()[0] for engine in engines]

                # One held connection per server, through the first instance.
                held: dict[str, socket.socket] = {}
                for i in range(200):
                    if len(held) == 4:
                        break
                    sock, name = await open_client(frontends[0], source_address(i))
                    if name in held:
                        sock.close()
                    else:
                        held[name] = sock
                assert set(held) == set(members)

                changes = [
                    ("add e", lambda: put(endpoint, Member("e", "127.0.0.1", port["e"])),
                     {"e": Member("e", "127.0.0.1", port["e"])}, None),
                    ("drain b", lambda: put(endpoint, Member("b", "127.0.0.1", port["b"], state="drain")),
                     {"b": Member("b", "127.0.0.1", port["b"], state="drain")}, None),
                    ("b ready", lambda: put(endpoint, Member("b", "127.0.0.1", port["b"])),
                     {"b": Member("b", "127.0.0.1", port["b"])}, None),
                    ("weight c 2", lambda: put(endpoint, Member("c", "127.0.0.1", port["c"], weight=2)),
                     {"c": Member("c", "127.0.0.1", port["c"], weight=2)}, None),
                    ("maint d", lambda: put(endpoint, Member("d", "127.0.0.1", port["d"], state="maint")),
                     {"d": Member("d", "127.0.0.1", port["d"], state="maint")}, None),
                    ("remove a", lambda: remove(endpoint, "a"), {}, "a"),
                ]
                for label, change, updated, removed in changes:
                    before = expected_ring(members)
                    before_servers = before.lookup_many(KEYS)
                    members.update(updated)
                    if removed:
                        del members[removed]
                    await change()
                    took = await converged(engines, members, timeout=CONVERGE)
                    assert took <= CONVERGE, label

                    # The same table everywhere, so the same lookups: checked on 10,000 keys.
                    lookups = [balancer(engine).ring.lookup_many(KEYS) for engine in engines]
                    assert lookups[0] == lookups[1] == lookups[2] == expected_ring(members).lookup_many(KEYS)
                    # Keys moved: within 1.1 times what the change must move.
                    moved = sum(x != y for x, y in zip(before_servers, lookups[0])) / len(KEYS)
                    before_shares, after_shares = before.shares(), expected_ring(members).shares()
                    ideal = sum(max(after_shares.get(n, 0) - before_shares.get(n, 0), 0)
                                for n in set(before_shares) | set(after_shares))
                    assert moved <= 1.1 * ideal + 0.005, (label, moved, ideal)
                    # Real clients: the same server from every instance for the same address.
                    for i in range(0, 40, 4):
                        seen = set()
                        for frontend in frontends:
                            sock, name = await open_client(frontend, source_address(1000 + i))
                            sock.close()
                            seen.add(name)
                        assert len(seen) == 1, (label, seen)
                    # No established connection cut but the removed server's.
                    for name, sock in held.items():
                        assert alive(sock) == (name in members), (label, name)

                assert all(engine.operations.fleet.connected for engine in engines)  # leases renewed too
                # etcd killed: the instances keep routing with what they knew ...
                etcd.kill()
                await asyncio.sleep(1.0)
                sock, _ = await open_client(frontends[1], source_address(5))
                sock.close()
                assert all(digest(engine) == expected_ring(members).digest() for engine in engines)
                # ... and catch up once it is back.
                etcd.start()
                members["a"] = Member("a", "127.0.0.1", port["a"], weight=3)
                await put(endpoint, members["a"])
                await converged(engines, members, timeout=15)
                assert all(engine.operations.fleet.connected for engine in engines)

                live = await fleet_module.list_instances(endpoint, fleet_module.DEFAULT_ROOT)
                assert sorted(name for name, _ in live) == ["i0", "i1", "i2"]
                for sock in held.values():
                    sock.close()


async def test_a_burst_of_changes_is_applied_in_a_few_rebuilds(implementation, tmp_path):
    with etcd_server(str(tmp_path / "etcd")) as etcd:
        endpoint = fleet_module.parse_endpoint(etcd.endpoint)
        async with instances(1, implementation.pump_class, etcd.endpoint) as engines:
            await asyncio.sleep(0.5)  # the first read done
            rebuilds = balancer(engines[0]).rebuilds
            members: dict[str, Member] = {}
            import aetcd  # type: ignore[import-untyped]

            started = time.monotonic()
            async with aetcd.Client(host=endpoint[0], port=endpoint[1]) as client:
                for i in range(1000):  # 200 servers, each written five times (weights 1 to 5)
                    member = Member(f"s{i % 200}", "127.0.0.1", 10000 + i % 200, weight=1 + i // 200)
                    members[member.name] = member
                    await client.put(f"/fastproxy/backends/be/{member.name}".encode(), member.to_json())
            written = time.monotonic() - started
            await converged(engines, members, timeout=10)
            batches = balancer(engines[0]).rebuilds - rebuilds
            # One rebuild per gathered batch (every 50 ms at most), never one per change.
            assert batches <= max(10, int(written / 0.05) + 5), (batches, written)
            assert len(balancer(engines[0]).ring) == 200


async def test_a_bad_member_is_reported_and_changes_nothing(implementation, tmp_path, caplog):
    with etcd_server(str(tmp_path / "etcd")) as etcd:
        endpoint = fleet_module.parse_endpoint(etcd.endpoint)
        async with NamedBackends(["a"]) as backends:
            good = {"a": Member("a", "127.0.0.1", backends.ports[0])}
            await put(endpoint, good["a"])
            async with instances(1, implementation.pump_class, etcd.endpoint) as engines:
                await converged(engines, good, timeout=10)
                import aetcd  # type: ignore[import-untyped]

                async with aetcd.Client(host=endpoint[0], port=endpoint[1]) as client:
                    await client.put(b"/fastproxy/backends/be/a", b'{"address": "nowhere", "port": 1}')
                    await client.put(b"/fastproxy/backends/be/b", b"not json")
                await wait_until(lambda: "not JSON" in caplog.text, timeout=5)
                assert "the address is an IPv4 or IPv6 address" in caplog.text
                assert digest(engines[0]) == expected_ring(good).digest()
                sock, name = await open_client(engines[0].listening_addresses()[0])
                sock.close()
                assert name == "a"


def fleet_cli(etcd: Any, *args: str) -> str:
    result = subprocess.run([sys.executable, "-m", "fastproxy", "fleet", *args, "--etcd", etcd.endpoint],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return result.stdout


def runtime_api(port: int, command: str) -> str:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(command.encode() + b"\n")
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    return data.decode()


async def test_operators_drive_the_fleet_from_the_command_line(implementation_env, tmp_path):
    """fastproxy run --fleet on an ordinary HAProxy file, fastproxy fleet put|list|drain|remove|
    instances, and show fleet on the stats socket."""
    api, listen = free_port(), free_port()
    cfg = tmp_path / "haproxy.cfg"
    cfg.write_text(f"""global
    stats socket 127.0.0.1:{api} level admin
defaults
    mode tcp
    timeout connect 2s
    timeout client 10s
    timeout server 10s
frontend fe
    bind 127.0.0.1:{listen}
    default_backend app
backend app
    balance source
    hash-type consistent
""")
    with etcd_server(str(tmp_path / "etcd")) as etcd:
        async with NamedBackends(["web1", "web2"]) as backends:
            proc = start_fastproxy(["run", "-f", str(cfg), "--etcd", etcd.endpoint, "--fleet", "app"],
                                   implementation_env)
            try:
                wait_listening(("127.0.0.1", listen), proc)
                for name, port in zip(backends.names, backends.ports):
                    fleet_cli(etcd, "put", "app", name, f"127.0.0.1:{port}", "--weight", "2")
                assert fleet_cli(etcd, "list", "app").splitlines() == [
                    f"web1 127.0.0.1:{backends.ports[0]} weight 2 ready",
                    f"web2 127.0.0.1:{backends.ports[1]} weight 2 ready"]
                want = HashRing({"web1": 320, "web2": 320}, "ketama", points_per_weight=1).digest()

                def shown() -> str:
                    return runtime_api(api, "show fleet")

                await wait_until(lambda: f"app ketama 2 {want:016x}" in shown(), timeout=5)
                assert "# fleet instance" in shown() and "etcd connected" in shown()
                assert [line.split()[0] for line in fleet_cli(etcd, "instances").splitlines()] == [
                    next(line.split()[3] for line in shown().splitlines() if line.startswith("# fleet"))]

                fleet_cli(etcd, "drain", "app", "web1")
                await wait_until(lambda: "app ketama 1 " in shown(), timeout=5)
                names = set()
                for i in range(20):
                    sock, name = await open_client(("127.0.0.1", listen), source_address(i))
                    sock.close()
                    names.add(name)
                assert names == {"web2"}
                fleet_cli(etcd, "remove", "app", "web1")
                await wait_until(lambda: "web1" not in runtime_api(api, "show servers state app"), timeout=5)
                assert fleet_cli(etcd, "list", "app").split()[0] == "web2"
            finally:
                stop(proc)
