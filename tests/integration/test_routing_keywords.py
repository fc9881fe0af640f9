"""Keywords that change where traffic goes, on real sockets, each held to the real haproxy 2.6 on the
same file and the same traffic: ``tcp-request connection expect-proxy``, ``set-src``/``set-dst``, ``track``,
``init-addr``, ``source`` (proxy and server), ``retry-on`` and ``non-stick``.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from pathlib import Path

import pytest

from fastproxy.config import load, parse_text
from fastproxy.proxyproto import encode_v1, encode_v2

from ..support import (NamedBackends, compared_prologue, free_port, haproxy_running, open_client, running,
                       serving)
from .test_routing import HAPROXY, Sends, both_ways, named_backend
from .test_routing import haproxy_running as haproxy_listening
from .test_stats_socket import ask, needs_haproxy, table, until_status

needs_reference = pytest.mark.skipif(HAPROXY is None, reason="haproxy is not installed")

PROLOGUE = """
defaults
    mode tcp
    timeout connect 2s
    timeout client 5s
    timeout server 5s
"""

EXPECT_PROXY = PROLOGUE + """
frontend fe
    bind 127.0.0.1:{port}
    tcp-request connection expect-proxy layer4 if {{ src 127.0.0.2 }}
    tcp-request session reject if {{ src 127.7.7.7 }}
    use_backend special if {{ src 127.9.9.9 }}
    default_backend plain
backend special
    server s1 127.0.0.1:{special}
backend plain
    server s1 127.0.0.1:{plain}
"""


@needs_reference
def test_expect_proxy_reads_the_header_of_the_clients_it_matches_as_haproxy(pump_class, tmp_path):
    clients: list[tuple[str, Sends]] = [
        ("127.0.0.2", encode_v1(("127.9.9.9", 1234), ("127.0.0.1", 80)) + b"data"),
        ("127.0.0.2", encode_v2(("127.8.8.8", 1234), ("127.0.0.1", 80)) + b"data"),
        ("127.0.0.2", encode_v2(("127.7.7.7", 1234), ("127.0.0.1", 80)) + b"data"),  # the session rule
        ("127.0.0.2", b"GET / HTTP/1.0\r\n\r\n"),  # no header where one is expected: closed
        ("127.0.0.1", b"data"),  # the rule does not match: no header is read
    ]

    async def main() -> list[bytes]:
        async with contextlib.AsyncExitStack() as stack:
            ports = {name: await stack.enter_async_context(serving(named_backend(name.encode())))
                     for name in ("special", "plain")}
            return await asyncio.to_thread(both_ways, pump_class, EXPECT_PROXY, ports, tmp_path, clients)

    assert asyncio.run(main()) == [b"special", b"plain", b"", b"", b"plain"]


SET_ADDRESSES = PROLOGUE + """
frontend fe
    bind 127.0.0.1:{port}
    tcp-request connection set-src ipv4(127.9.9.9) if {{ src 127.0.0.2 }}
    tcp-request session set-src src,ipmask(16) if {{ src 127.0.0.3 }}
    tcp-request content set-dst-port int({other}) if {{ src 127.0.0.4 }}
    tcp-request content set-src ipv4(127.6.6.6) if {{ src 127.0.0.5 }}
    use_backend special if {{ src 127.9.9.9 }}
    use_backend masked if {{ src 127.0.0.0 }}
    use_backend portless if {{ dst_port {other} }}
    use_backend proxied if {{ src 127.6.6.6 }}
    default_backend plain
backend special
    server s1 127.0.0.1:{special}
backend masked
    server s1 127.0.0.1:{masked}
backend portless
    server s1 127.0.0.1
backend proxied
    server s1 127.0.0.1:{header} send-proxy
backend plain
    server s1 127.0.0.1:{plain}
"""


def replying(answer):
    """A server that answers what ``await answer(reader, writer)`` gives, then waits for the client to
    close."""
    async def handler(reader, writer):
        writer.write(await answer(reader, writer))
        writer.write_eof()
        with contextlib.suppress(ConnectionError):
            await reader.read()
        writer.close()
    return handler


async def proxy_header_start(reader, writer) -> bytes:
    """The start of the PROXY header the server got: the source address."""
    return b" ".join((await reader.readline()).split()[:3])


async def peer_address(reader, writer) -> bytes:
    """The address the connection came from."""
    return writer.get_extra_info("peername")[0].encode()


@needs_reference
def test_set_src_and_set_dst_port_route_balance_and_reach_servers_as_haproxy(pump_class, tmp_path):
    clients: list[tuple[str, Sends]] = [("127.0.0.2", b""), ("127.0.0.3", b""), ("127.0.0.4", b""),
                                        ("127.0.0.5", b""), ("127.0.0.1", b"")]

    async def main() -> list[bytes]:
        async with contextlib.AsyncExitStack() as stack:
            ports = {name: await stack.enter_async_context(serving(named_backend(name.encode())))
                     for name in ("special", "masked", "other", "plain")}
            ports["header"] = await stack.enter_async_context(serving(replying(proxy_header_start)))
            return await asyncio.to_thread(both_ways, pump_class, SET_ADDRESSES, ports, tmp_path, clients)

    assert asyncio.run(main()) == [b"special", b"masked", b"other", b"PROXY TCP4 127.6.6.6", b"plain"]


SOURCE = PROLOGUE + """
frontend fe
    bind 127.0.0.1:{port}
    use_backend own if {{ src 127.0.0.3 }}
    default_backend proxy_wide
backend proxy_wide
    source 127.0.0.2
    server s1 127.0.0.1:{peer}
backend own
    source 127.0.0.2
    server s1 127.0.0.1:{peer} source 127.0.0.4
"""


@needs_reference
def test_source_binds_the_connections_to_servers_to_its_address_as_haproxy(pump_class, tmp_path):
    async def main() -> list[bytes]:
        async with serving(replying(peer_address)) as peer:
            clients: list[tuple[str, Sends]] = [("127.0.0.1", b""), ("127.0.0.3", b"")]
            return await asyncio.to_thread(both_ways, pump_class, SOURCE, {"peer": peer}, tmp_path, clients)

    assert asyncio.run(main()) == [b"127.0.0.2", b"127.0.0.4"]


RETRY_ON = PROLOGUE + """
frontend fe
    bind 127.0.0.1:{port}
    use_backend never_retried if {{ src 127.0.0.2 }}
    default_backend retried
backend retried
    balance first
    retries 1
    option redispatch
    retry-on conn-failure empty-response
    server refusing 127.0.0.1:{refusing}
    server s2 127.0.0.1:{s2}
backend never_retried
    balance first
    retries 1
    option redispatch
    retry-on none
    server refusing 127.0.0.1:{refusing}
    server s2 127.0.0.1:{s2}
"""


@needs_reference
def test_retry_on_without_conn_failure_gives_up_at_the_first_failed_connect_as_haproxy(pump_class, tmp_path):
    async def main() -> list[bytes]:
        async with serving(named_backend(b"s2")) as s2:
            clients: list[tuple[str, Sends]] = [("127.0.0.1", b""), ("127.0.0.2", b"")]
            ports = {"s2": s2, "refusing": free_port()}  # nothing listens there: refused
            return await asyncio.to_thread(both_ways, pump_class, RETRY_ON, ports, tmp_path, clients)

    assert asyncio.run(main()) == [b"s2", b""]


# --- server state: track and init-addr, compared through the stats socket ----------------------------

def write_config(tmp_path: Path, backends: NamedBackends, servers: str) -> tuple[Path, int]:
    port = free_port()
    ports = dict(zip(backends.names, backends.ports))
    path = tmp_path / "haproxy.cfg"
    path.write_text(f"""{compared_prologue(tmp_path)}frontend fe
    bind 127.0.0.1:{port}
    default_backend be
backend be
{servers.format(**ports)}
""")
    return path, port


async def visits(port: int, count: int) -> list[str]:
    names = []
    for _ in range(count):
        try:
            sock, name = await open_client(("127.0.0.1", port))
        except (EOFError, ConnectionError):
            name = ""
        else:
            sock.close()
        names.append(name)
    return names


async def statuses(sock: Path) -> dict[str, str]:
    return {name: row["status"] for (proxy, name), row in table(await ask(str(sock), "show stat")).items()
            if proxy == "be" and name not in ("FRONTEND", "BACKEND")}


async def on_both(tmp_path: Path, pump_class, servers: str, names: list[str], scenario) -> tuple[list, list]:
    """``scenario(port, sock, backends)`` through haproxy, then through fastproxy, on the same file."""
    sock = tmp_path / "admin.sock"
    results = []
    for side in ("haproxy", "fastproxy"):
        async with NamedBackends(names) as backends:
            cfg, port = write_config(tmp_path, backends, servers)
            if side == "haproxy":
                async with haproxy_running(str(cfg), str(sock)):
                    results.append(await scenario(port, sock, backends))
            else:
                async with running(load([str(cfg)]), pump_class):
                    results.append(await scenario(port, sock, backends))
    return results[0], results[1]


TRACK = """\
    server a 127.0.0.1:{a} check inter 100ms fall 1 rise 1
    server b 127.0.0.1:{b} track a
    server c 127.0.0.1:{c}"""


@needs_haproxy
@pytest.mark.timeout(60)
async def test_a_tracking_server_goes_down_and_up_with_the_server_it_tracks_as_haproxy(tmp_path, pump_class):
    async def scenario(port: int, sock: Path, backends: NamedBackends) -> list:
        await until_status(sock, ("be", "a"), "UP")
        seen: list = [await visits(port, 3), await statuses(sock)]
        backends.stop_server("a")
        await until_status(sock, ("be", "a"), "DOWN")
        seen += [await visits(port, 2), await statuses(sock)]
        await backends.restart_server("a")
        await until_status(sock, ("be", "a"), "UP")
        seen += [await statuses(sock), await ask(str(sock), "disable server be/a"), await statuses(sock),
                 await visits(port, 2)]
        return seen

    theirs, ours = await on_both(tmp_path, pump_class, TRACK, ["a", "b", "c"], scenario)
    assert ours == theirs
    assert theirs[0] == ["a", "b", "c"] and theirs[2] == ["c", "c"]
    assert theirs[3] == {"a": "DOWN", "b": "DOWN", "c": "no check"}
    assert theirs[6]["b"].startswith("MAINT")  # maintenance is followed too


INIT_ADDR = """\
    server a nosuch.invalid:{a} init-addr last,libc,none
    server b 127.0.0.1:{b}"""


@needs_haproxy
@pytest.mark.timeout(60)
async def test_init_addr_none_starts_an_unresolved_server_in_maintenance_as_haproxy(tmp_path, pump_class):
    async def scenario(port: int, sock: Path, backends: NamedBackends) -> list:
        await until_status(sock, ("be", "b"), "no check")
        return [await visits(port, 3), (await statuses(sock))["a"]]

    theirs, ours = await on_both(tmp_path, pump_class, INIT_ADDR, ["a", "b"], scenario)
    assert ours == theirs == [["b", "b", "b"], "MAINT (resolution)"]


NON_STICK = """\
    stick-table type ip size 10
    stick on src
    server a 127.0.0.1:{a} non-stick
    server b 127.0.0.1:{b}"""


@needs_haproxy
@pytest.mark.timeout(60)
async def test_a_non_stick_server_takes_clients_without_keeping_them_as_haproxy(tmp_path, pump_class):
    async def scenario(port: int, sock: Path, backends: NamedBackends) -> list:
        await until_status(sock, ("be", "b"), "no check")
        return [await visits(port, 4), (await ask(str(sock), "show table be")).count("server_id")]

    theirs, ours = await on_both(tmp_path, pump_class, NON_STICK, ["a", "b"], scenario)
    assert ours == theirs
    assert theirs[0] == ["a", "b", "b", "b"]


# --- bind ... interface: SO_BINDTODEVICE ---------------------------------------------------------------

INTERFACES = PROLOGUE + """
frontend on_lo
    bind 127.0.0.1:{port} interface lo
    default_backend lo
frontend elsewhere
    bind 127.0.0.1:{other} interface {other_device}
    default_backend lo
backend lo
    server s1 127.0.0.1:{lo}
"""


@pytest.fixture
def other_interface() -> str:
    """A network interface other than the loopback (this host's own): a listener bound to it receives
    nothing that arrives on the loopback, whatever its state."""
    names = [name for _, name in socket.if_nameindex() if name != "lo"]
    if not names:
        pytest.skip("this host has no network interface but the loopback")
    return names[0]


async def _reply(address: tuple) -> bytes:
    """What a client connecting to ``address`` reads to the end; b"refused" when nobody accepts."""
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(*address), 5)
    except ConnectionRefusedError:
        return b"refused"
    try:
        return await asyncio.wait_for(reader.read(), 5)
    finally:
        writer.close()


@needs_reference
def test_a_bind_on_an_interface_takes_only_the_connections_arriving_on_it_as_haproxy(
        pump_class, tmp_path, other_interface):
    async def replies(port: int, other: int) -> list[bytes]:
        return [await _reply(("127.0.0.1", port)), await _reply(("127.0.0.1", other))]

    async def through_fastproxy(lo: int) -> list[bytes]:
        port, other = free_port(), free_port()
        text = INTERFACES.format(port=port, other=other, other_device=other_interface, lo=lo)
        async with running(parse_text(text), pump_class):
            return await replies(port, other)

    async def scenario() -> tuple[list[bytes], list[bytes]]:
        async with serving(named_backend(b"lo")) as lo:
            ours = await through_fastproxy(lo)
            port, other = free_port(), free_port()
            text = INTERFACES.format(port=port, other=other, other_device=other_interface, lo=lo)
            with haproxy_listening(text, ("127.0.0.1", port), tmp_path):
                theirs = await replies(port, other)
        return ours, theirs

    ours, theirs = asyncio.run(scenario())
    assert ours == theirs == [b"lo", b"refused"]
