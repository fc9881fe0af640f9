"""A fleet that agrees: three engines take one backend's servers from a real etcd and, after every
change, hash every key to the same server (the same table digest, in the Prometheus exporter too, the
same lookups of 10,000 keys, the same server for real clients), moving no more keys than the change
needs, cutting no connection but the removed server's; through etcd being killed and restarted, a
partition of one instance, a burst of changes, ``--hash-key addr-port`` over servers added in other
orders, and a master-worker reload."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from typing import Any, AsyncIterator

import pytest

from prometheus_client.parser import text_string_to_metric_families

from fastproxy import fleet as fleet_module
from fastproxy.balance import routing_digest
from fastproxy.config import model
from fastproxy.fleet import Fleet, FleetSettings, Member
from fastproxy.ring import HashRing

from ..support import (NamedBackends, PartitionableRelay, config, etcd_server, free_port,
                       open_client, running, source_address, start_fastproxy, stop, wait_for, wait_listening,
                       wait_until, workers)
from ..support import alive as process_alive

pytestmark = pytest.mark.timeout(240)  # etcd is Debian's etcd-server, which .ci/run installs

KEYS = [i.to_bytes(4, "big") for i in range(10_000)]  # what ``balance source`` hashes: IPv4 addresses
CONVERGE = 1.0  # seconds within which every instance applies a change (the bound)


def fleet_config() -> model.Config:
    return config([], backend={"balance": model.Balance("source", hash_type="maglev")})


@contextlib.asynccontextmanager
async def instances(count: int, pump_class: Any, endpoint: str | list[str], *, roots: list[str] | None = None,
                    **settings: Any) -> AsyncIterator[list[Any]]:
    """``count`` engines, each with the fleet over backend ``be`` (instance ``i`` on ``endpoint[i]`` and
    under ``roots[i]`` when they are lists)."""
    async with contextlib.AsyncExitStack() as stack:
        engines = []
        for i in range(count):
            engine = await stack.enter_async_context(running(fleet_config(), pump_class))
            fleet = Fleet(engine.operations, FleetSettings(
                endpoints=(fleet_module.parse_endpoint(endpoint[i] if isinstance(endpoint, list)
                                                       else endpoint),),
                backends=("be",), instance=f"i{i}", root=roots[i] if roots else fleet_module.DEFAULT_ROOT,
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


def expected_digest(members: dict[str, Member]) -> str:
    """What the exporter and show fleet print for ``members``: their ring and each one's address."""
    digest = routing_digest(expected_ring(members), lambda name: (members[name].address, members[name].port))
    return f"{digest:016x}"


def scraped_digests(engine: Any) -> dict[str, str]:
    """Per backend, the digest label of fastproxy_backend_hash_table_digest, as a Prometheus text parser
    reads the exporter's page (``Operations.metrics``, what the stats listener serves)."""
    families = {family.name: family
                for family in text_string_to_metric_families(engine.operations.metrics().decode())}
    family = families.get("fastproxy_backend_hash_table_digest")
    if family is None:
        return {}
    return {sample.labels["proxy"]: sample.labels["digest"] for sample in family.samples}


def fleet_agrees(engines: list[Any]) -> int:
    """What ``count by (proxy) (count by (proxy, digest) (fastproxy_backend_hash_table_digest))`` gives for
    backend ``be`` over the instances' scrapes: 1 when they agree."""
    return len({scraped_digests(engine).get("be") for engine in engines})


async def servers_reached(frontends: list[Any], source: str) -> set[str]:
    """The servers one client (from ``source``) reaches through each instance."""
    reached = set()
    for frontend in frontends:
        sock, name = await open_client(frontend, source)
        sock.close()
        reached.add(name)
    return reached


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

                    # What an operator sees in Prometheus: one digest across the fleet, the expected one.
                    assert fleet_agrees(engines) == 1, label
                    assert scraped_digests(engines[0])["be"] == expected_digest(members), label
                    # The same table everywhere, so the same lookups: checked on 10,000 keys.
                    lookups = [balancer(engine).ring.lookup_many(KEYS) for engine in engines]
                    assert lookups[0] == lookups[1] == lookups[2] == expected_ring(members).lookup_many(KEYS)
                    # Keys moved: within 1.1 times what the change must move.
                    moved = sum(x != y for x, y in zip(before_servers, lookups[0])) / len(KEYS)
                    before_shares, after_shares = before.shares(), expected_ring(members).shares()
                    ideal = sum(max(after_shares.get(n, 0) - before_shares.get(n, 0), 0)
                                for n in set(before_shares) | set(after_shares))
                    assert moved <= 1.1 * ideal + 0.005, (label, moved, ideal)
                    # The figures, for bench/README_fleet.md (pytest -s shows them).
                    print(f"fleet: {label}: all three agree after {took * 1000:.0f} ms; keys moved "
                          f"{moved:.4f}, the change's own {ideal:.4f} ({moved / ideal:.3f}x)")
                    # Real clients: the same server from every instance for the same address.
                    for i in range(0, 40, 4):
                        seen = await servers_reached(frontends, source_address(1000 + i))
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


async def test_with_hash_key_addr_port_instances_agree_whatever_names_ids_and_order(implementation, tmp_path):
    """Two instances whose servers were added in other orders, under other names and so with other ids,
    at the same addresses (under two prefixes, as two deployments may register the same servers):
    with ``--hash-key addr-port`` they build byte-identical tables and route alike; by names they do not."""
    with etcd_server(str(tmp_path / "etcd")) as etcd:
        endpoint = fleet_module.parse_endpoint(etcd.endpoint)
        async with NamedBackends([f"n{i}" for i in range(5)]) as backends:
            for i, port in enumerate(backends.ports):  # each prefix read in key order: a0..a4, b0..b4
                await fleet_module.put_member(endpoint, "/a/", "be", Member(f"a{i}", "127.0.0.1", port))
                await fleet_module.put_member(endpoint, "/b/", "be", Member(f"b{4 - i}", "127.0.0.1", port))
            async with instances(2, implementation.pump_class, etcd.endpoint, roots=["/a/", "/b/"],
                                 hash_key="addr-port") as engines:
                await wait_until(lambda: all(len(balancer(e).ring or ()) == 5 for e in engines), timeout=10)
                ids = [{slot.address: slot.id for slot in balancer(engine).pool} for engine in engines]
                assert ids[0] != ids[1] and set(ids[0]) == set(ids[1])  # other ids, the same addresses
                assert balancer(engines[0]).ring.digest() == balancer(engines[1]).ring.digest()
                assert fleet_agrees(engines) == 1
                addresses = [[balancer(engine).ring_slot(name).address
                              for name in balancer(engine).ring.lookup_many(KEYS)] for engine in engines]
                assert addresses[0] == addresses[1]
                frontends = [engine.listening_addresses()[0] for engine in engines]
                for i in range(0, 60, 3):
                    reached = await servers_reached(frontends, source_address(2000 + i))
                    assert len(reached) == 1, reached
                for engine in engines:  # by names (fastproxy's default): two tables
                    balancer(engine).set_hash_key(None)
                assert balancer(engines[0]).ring.digest() != balancer(engines[1]).ring.digest()
                assert fleet_agrees(engines) == 2


async def test_a_partitioned_instance_routes_with_its_last_view_and_converges_once_healed(implementation,
                                                                                          tmp_path, caplog):
    """One of three instances reaches etcd through a path that the test partitions (bytes dropped both
    ways, no connection closed): it keeps routing with what it knew while the others follow the changes,
    sees the loss (its probe), and agrees with them again within a second of the heal."""
    names = ["a", "b", "c", "d", "e"]
    with etcd_server(str(tmp_path / "etcd")) as etcd:
        endpoint = fleet_module.parse_endpoint(etcd.endpoint)
        async with NamedBackends(names) as backends, PartitionableRelay(endpoint) as relay:
            port = dict(zip(names, backends.ports))
            members = {name: Member(name, "127.0.0.1", port[name]) for name in names[:4]}
            for member in members.values():
                await put(endpoint, member)
            path = f"{relay.address[0]}:{relay.address[1]}"
            async with instances(3, implementation.pump_class, [etcd.endpoint, etcd.endpoint, path],
                                 probe_interval=0.2, timeout=1.0) as engines:
                await converged(engines, members, timeout=10)
                cut = engines[2]
                old_view = dict(members)
                relay.partition()
                await wait_until(lambda: not cut.operations.fleet.connected, timeout=5)  # its probe saw it
                members["e"] = Member("e", "127.0.0.1", port["e"])
                members["b"] = Member("b", "127.0.0.1", port["b"], state="drain")
                await put(endpoint, members["e"])
                await put(endpoint, members["b"])
                await converged(engines[:2], members, timeout=CONVERGE)  # the others go on agreeing
                await asyncio.sleep(0.5)
                assert digest(cut) == expected_ring(old_view).digest()  # the last view, kept
                assert fleet_agrees(engines) == 2
                frontend = cut.listening_addresses()[0]
                before = expected_ring(old_view)
                for i in range(0, 40, 4):
                    sock, name = await open_client(frontend, source_address(3000 + i))
                    sock.close()
                    assert name == before.lookup(socket.inet_aton(source_address(3000 + i))), i

                relay.heal()
                took = await converged(engines, members, timeout=5)
                assert took <= CONVERGE, took  # the one second, from when recovery is possible
                print(f"fleet: partition healed: the cut instance agrees again after {took * 1000:.0f} ms")
                assert fleet_agrees(engines) == 1
                await wait_until(lambda: cut.operations.fleet.connected, timeout=2)
                # The loss and the recovery, logged once each.
                assert caplog.text.count("fleet: i2: etcd unreachable") == 1
                assert caplog.text.count("fleet: i2: etcd reachable again") == 1


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


def operator_config(path: Any, api: int, listen: int, metrics: int) -> str:
    """An ordinary HAProxy file (``haproxy -c`` accepts it): a hashed backend without servers, the
    runtime API, and the Prometheus exporter on a stats listener."""
    path.write_text(f"""global
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
listen stats
    mode http
    bind 127.0.0.1:{metrics}
    http-request use-service prometheus-exporter if {{ path /metrics }}
""")
    return str(path)


def scrape(port: int) -> dict[str, Any]:
    """GET /metrics from a stats listener, read by a Prometheus text parser."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    return {family.name: family for family in text_string_to_metric_families(text)}


def test_the_configuration_is_one_haproxy_accepts(tmp_path):
    if shutil.which("haproxy") is None:
        pytest.fail("haproxy is not installed (.ci/run installs it)")
    cfg = operator_config(tmp_path / "haproxy.cfg", free_port(), free_port(), free_port())
    result = subprocess.run(["haproxy", "-c", "-f", cfg], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


async def test_operators_drive_the_fleet_from_the_command_line(implementation_env, tmp_path):
    """fastproxy run --fleet on an ordinary HAProxy file, fastproxy fleet put|list|drain|remove|
    instances, show fleet on the stats socket and the digest in the Prometheus exporter."""
    api, listen, metrics = free_port(), free_port(), free_port()
    cfg = operator_config(tmp_path / "haproxy.cfg", api, listen, metrics)
    with etcd_server(str(tmp_path / "etcd")) as etcd:
        async with NamedBackends(["web1", "web2"]) as backends:
            proc = start_fastproxy(["run", "-f", cfg, "--etcd", etcd.endpoint, "--fleet", "app"],
                                   implementation_env)
            try:
                wait_listening(("127.0.0.1", listen), proc)
                for name, port in zip(backends.names, backends.ports):
                    fleet_cli(etcd, "put", "app", name, f"127.0.0.1:{port}", "--weight", "2")
                assert fleet_cli(etcd, "list", "app").splitlines() == [
                    f"web1 127.0.0.1:{backends.ports[0]} weight 2 ready",
                    f"web2 127.0.0.1:{backends.ports[1]} weight 2 ready"]
                address = dict(zip(backends.names, backends.ports))
                want = routing_digest(HashRing({"web1": 320, "web2": 320}, "ketama", points_per_weight=1),
                                      lambda name: ("127.0.0.1", address[name]))

                def shown() -> str:
                    return runtime_api(api, "show fleet")

                await wait_until(lambda: f"app ketama 2 {want:016x}" in shown(), timeout=5)
                assert "# fleet instance" in shown() and "etcd connected" in shown()
                assert [line.split()[0] for line in fleet_cli(etcd, "instances").splitlines()] == [
                    next(line.split()[3] for line in shown().splitlines() if line.startswith("# fleet"))]
                families = await asyncio.to_thread(scrape, metrics)
                digests = families["fastproxy_backend_hash_table_digest"].samples
                assert [(s.labels, s.value) for s in digests] == [
                    ({"proxy": "app", "algorithm": "ketama", "digest": f"{want:016x}"}, 1.0)]
                assert [s.value for s in families["fastproxy_backend_hash_table_servers"].samples] == [2.0]
                assert families["fastproxy_fleet_etcd_connected"].samples[0].value == 1.0
                assert families["fastproxy_fleet_changes"].samples[0].value >= 2

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


async def test_a_reload_in_master_worker_mode_keeps_the_fleet_membership(implementation_env, tmp_path):
    """run -W --fleet: the worker runs the fleet; on SIGUSR2 the new worker reads etcd again and says it is
    ready only once it serves that membership, so the table and the routes are the same across the
    reload, and the former worker leaves the instances' list."""
    api, listen, metrics = free_port(), free_port(), free_port()
    cfg = operator_config(tmp_path / "haproxy.cfg", api, listen, metrics)
    with etcd_server(str(tmp_path / "etcd")) as etcd:
        async with NamedBackends(["web1", "web2", "web3"]) as backends:
            for name, port in zip(backends.names, backends.ports):
                fleet_cli(etcd, "put", "app", name, f"127.0.0.1:{port}")
            ring = HashRing({f"127.0.0.1:{port}": 160 for port in backends.ports}, "ketama",
                            points_per_weight=1)
            digest = routing_digest(ring, lambda key: ("127.0.0.1", int(key.split(":")[1])))
            want = f"app ketama 3 {digest:016x}"
            proc = start_fastproxy(["run", "-W", "-f", cfg, "--etcd", etcd.endpoint, "--fleet", "app",
                                    "--hash-key", "addr-port"], implementation_env)
            try:
                wait_listening(("127.0.0.1", listen), proc)

                async def routes() -> list[str]:
                    reached = []
                    for i in range(30):
                        sock, name = await open_client(("127.0.0.1", listen), source_address(4000 + i))
                        sock.close()
                        reached.append(name)
                    return reached

                # The worker accepts once it serves the fleet's servers: the first clients reach them.
                before = await routes()
                assert set(before) == set(backends.names)

                def instance() -> str | None:
                    shown = runtime_api(api, "show fleet")
                    if want not in shown:
                        return None
                    return next(line.split()[3] for line in shown.splitlines() if line.startswith("# fleet"))

                first = wait_for(instance, what="the first worker's show fleet")
                [worker] = workers(proc.pid)
                reached: list[str] = []
                reloaded = asyncio.Event()

                async def clients_meanwhile() -> None:  # every one reaches a server, whichever worker
                    while not reloaded.is_set() and len(reached) < 3000:
                        sock, name = await open_client(("127.0.0.1", listen), source_address(5000))
                        sock.close()
                        reached.append(name)
                        await asyncio.sleep(0.01)

                meanwhile = asyncio.ensure_future(clients_meanwhile())
                proc.send_signal(signal.SIGUSR2)
                await asyncio.to_thread(wait_for, lambda: (instance() or first) != first,
                                        30, "the new worker's show fleet")
                await asyncio.to_thread(wait_for, lambda: not process_alive(worker), 30,
                                        "the former worker's exit")
                reloaded.set()
                await meanwhile
                assert reached and len(set(reached)) == 1  # one client, one server, across the reload
                assert await routes() == before
                def listed() -> list[str]:
                    return [line.split()[0] for line in fleet_cli(etcd, "instances").splitlines()]

                await asyncio.to_thread(wait_for, lambda: listed() == [instance()], 10, "one instance listed")
                # The new worker follows etcd: a change applies there.
                fleet_cli(etcd, "drain", "app", "web1")
                await wait_until(lambda: "app ketama 2 " in runtime_api(api, "show fleet"), timeout=5)
                assert "web1" not in set(await routes())
            finally:
                stop(proc)
