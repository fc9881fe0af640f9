"""Routing end to end: ACLs on the client's address, tcp-request rules, and SNI routing of TLS
passthrough with real TLS clients and backends.  Configurations are read from HAProxy-format text."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import socket
import ssl
import subprocess
import time
from typing import Union

import pytest

from fastproxy.config import parse_text

from ..support import connect, free_port, recv_all, running, serving, wait_until


def named_backend(name: bytes):
    async def handler(reader, writer):
        writer.write(name)
        writer.write_eof()
        try:
            await reader.read()
        except ConnectionError:
            pass
        writer.close()
    return handler


async def connect_from(source: str, address: tuple) -> socket.socket:
    """A client bound to ``source`` (any 127.x.y.z is local on Linux)."""
    loop = asyncio.get_running_loop()
    sock = socket.socket()
    sock.setblocking(False)
    sock.bind((source, 0))
    await loop.sock_connect(sock, address)
    return sock


ACL_CONFIG = """
frontend fe
    bind 127.0.0.1:{port}
    acl from_two src 127.0.0.2
    acl from_net src 127.0.1.0/24
    acl blocked src 127.0.0.4
    tcp-request connection reject if blocked
    use_backend two if from_two
    use_backend net if from_net
    default_backend one

backend one
    server s1 127.0.0.1:{one}
backend two
    server s1 127.0.0.1:{two}
backend net
    server s1 127.0.0.1:{net}
"""


async def test_acl_on_source_address_picks_the_backend_and_rejects(pump_class):
    async with contextlib.AsyncExitStack() as backends:
        ports = {name: await backends.enter_async_context(serving(named_backend(name.encode())))
                 for name in ("one", "two", "net")}
        cfg = parse_text(ACL_CONFIG.format(port=free_port(), **ports))
        async with running(cfg, pump_class) as engine:
            address = engine.listening_addresses()[0]
            for source, expected in [("127.0.0.1", b"one"), ("127.0.0.2", b"two"), ("127.0.1.7", b"net"),
                                     ("127.0.0.3", b"one")]:
                sock = await connect_from(source, address)
                assert await recv_all(sock) == expected, source
                sock.close()
            sock = await connect_from("127.0.0.4", address)
            try:
                assert await recv_all(sock) == b""  # rejected: closed without reaching a backend
            except ConnectionResetError:
                pass
            sock.close()
            await wait_until(lambda: engine.frontends["fe"].denied == 1)


# --- SNI routing ------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def certificates(tmp_path_factory):
    """A self-signed certificate per server name, made by openssl."""
    directory = tmp_path_factory.mktemp("certs")
    made = {}
    for name in ("a.example", "b.example", "default.example"):
        key, cert = directory / f"{name}.key", directory / f"{name}.crt"
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key),
                        "-out", str(cert), "-days", "2", "-subj", f"/CN={name}",
                        "-addext", f"subjectAltName=DNS:{name}"],
                       check=True, capture_output=True)
        made[name] = (str(cert), str(key))
    return made


@contextlib.asynccontextmanager
async def tls_backend(name: str, certificates):
    """A TLS server for ``name`` for the length of the block: its port."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(*certificates[name])

    async def handler(reader, writer):
        try:
            await reader.readline()
            writer.write(f"served by {name}\n".encode())
            await writer.drain()
        except (ConnectionError, ssl.SSLError):
            pass
        writer.close()

    server = await asyncio.start_server(handler, "127.0.0.1", 0, ssl=context)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()


SNI_CONFIG = """
defaults
    mode tcp
    timeout connect 5s
    timeout client 30s
    timeout server 30s

frontend tls
    bind 127.0.0.1:{port}
    tcp-request inspect-delay {delay}
    tcp-request content accept if {{ req_ssl_hello_type 1 }}
    use_backend a if {{ req_ssl_sni -i a.example }}
    use_backend b if {{ req.ssl_sni -m end b.example }}
    default_backend fallback

backend a
    server s1 127.0.0.1:{a}
backend b
    server s1 127.0.0.1:{b}
backend fallback
    server s1 127.0.0.1:{fallback}
"""


async def tls_exchange(address: tuple, server_name: str, certificates) -> str:
    context = ssl.create_default_context(cafile=certificates[server_name][0])
    reader, writer = await asyncio.open_connection(*address, ssl=context, server_hostname=server_name)
    writer.write(b"hello\n")
    line = await reader.readline()
    cipher = writer.get_extra_info("cipher")
    writer.close()
    assert cipher is not None  # the TLS session completed end to end
    return line.decode().strip()


async def test_sni_routes_each_name_to_its_backend_and_tls_completes(pump_class, certificates):
    async with (tls_backend("a.example", certificates) as a_port,
                tls_backend("b.example", certificates) as b_port,
                serving(named_backend(b"fallback")) as fallback_port):
        cfg = parse_text(SNI_CONFIG.format(port=free_port(), delay="5s", a=a_port, b=b_port,
                                           fallback=fallback_port))
        async with running(cfg, pump_class) as engine:
            address = engine.listening_addresses()[0]
            assert await tls_exchange(address, "a.example", certificates) == "served by a.example"
            assert await tls_exchange(address, "b.example", certificates) == "served by b.example"
            assert await tls_exchange(address, "a.example", certificates) == "served by a.example"


async def test_a_client_without_client_hello_falls_to_the_default_backend_after_the_delay(pump_class):
    async with serving(named_backend(b"fallback")) as fallback_port:
        cfg = parse_text(SNI_CONFIG.format(port=free_port(), delay="300ms", a=1, b=1, fallback=fallback_port))
        async with running(cfg, pump_class) as engine:
            sock = await connect(engine.listening_addresses()[0])
            started = time.monotonic()
            assert await recv_all(sock) == b"fallback"
            assert 0.25 <= time.monotonic() - started < 3
            sock.close()
            # Plain text that is not TLS is decided at once, without waiting for the delay.
            sock = await connect(engine.listening_addresses()[0])
            await asyncio.get_running_loop().sock_sendall(sock, b"GET / HTTP/1.0\r\n\r\n")
            started = time.monotonic()
            assert await recv_all(sock) == b"fallback"
            assert time.monotonic() - started < 0.25
            sock.close()


# --- PROXY protocol ---------------------------------------------------------------------------------

SEND_PROXY_CONFIG = """
listen fe
    bind 127.0.0.1:{port}
    server s1 127.0.0.1:{backend} {option}
"""


@pytest.mark.parametrize("option", ["send-proxy", "send-proxy-v2"])
async def test_send_proxy_gives_the_server_the_client_address_first(pump_class, option):
    from fastproxy.proxyproto import ProxyStatus, parse

    async def tell_what_the_header_says(reader, writer):
        data = b""
        while True:
            result = parse(data)
            if result.status is not ProxyStatus.INCOMPLETE:
                break
            data += await reader.read(1)
        rest = data[result.length:] + await reader.read(5)
        writer.write(f"{result.version} {result.src[0]} {result.dst[1]} {rest.decode()}".encode())
        writer.write_eof()
        writer.close()

    async with serving(tell_what_the_header_says) as backend_port:
        port = free_port()
        cfg = parse_text(SEND_PROXY_CONFIG.format(port=port, backend=backend_port, option=option))
        async with running(cfg, pump_class) as engine:
            sock = await connect_from("127.0.0.5", engine.listening_addresses()[0])
            await asyncio.get_running_loop().sock_sendall(sock, b"hello")
            version = "2" if option.endswith("v2") else "1"
            assert await recv_all(sock) == f"{version} 127.0.0.5 {port} hello".encode()
            sock.close()


ACCEPT_PROXY_CONFIG = """
frontend fe
    bind 127.0.0.1:{port} accept-proxy
    timeout client 2s
    use_backend special if {{ src 127.9.9.9 }}
    default_backend plain
backend special
    server s1 127.0.0.1:{special}
backend plain
    server s1 127.0.0.1:{plain}
"""


async def test_accept_proxy_takes_the_client_address_from_the_header(pump_class):
    from fastproxy.proxyproto import encode_v1, encode_v2

    def echo_as(name: bytes):
        async def handler(reader, writer):
            writer.write(name + b":" + await reader.read(100))
            writer.write_eof()
            writer.close()
        return handler

    async with serving(echo_as(b"special")) as special_port, serving(echo_as(b"plain")) as plain_port:
        cfg = parse_text(ACCEPT_PROXY_CONFIG.format(port=free_port(), special=special_port, plain=plain_port))
        async with running(cfg, pump_class) as engine:
            address = engine.listening_addresses()[0]
            loop = asyncio.get_running_loop()
            cases = [(encode_v1(("127.9.9.9", 1234), ("127.0.0.1", 80)), b"special:data"),
                     (encode_v2(("127.9.9.9", 1234), ("127.0.0.1", 80)), b"special:data"),
                     (encode_v2(("127.8.8.8", 1234), ("127.0.0.1", 80)), b"plain:data")]
            for header, expected in cases:
                sock = await connect(address)
                await loop.sock_sendall(sock, header + b"data")
                assert await recv_all(sock) == expected
                sock.close()
            # No header: the connection is closed without reaching a backend.
            sock = await connect(address)
            await loop.sock_sendall(sock, b"GET / HTTP/1.0\r\n\r\n")
            try:  # closed with the client's bytes unread: the kernel may turn the FIN into a reset
                assert await recv_all(sock) == b""
            except ConnectionResetError:
                pass
            sock.close()
            assert engine.stats()["servers"]["plain/s1"]["conn_total"] == 1


# --- the same file on fastproxy and on the real haproxy ---------------------------------------------

HAPROXY = shutil.which("haproxy")


@contextlib.contextmanager
def haproxy_running(text: str, address: tuple, tmp_path):
    """The real haproxy on the configuration ``text``, listening on ``address``, for the block."""
    path = tmp_path / "haproxy.cfg"
    path.write_text(text)
    proc = subprocess.Popen([HAPROXY, "-db", "-f", str(path)], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(address, timeout=1).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(f"haproxy did not start: {proc.communicate()[0]}") from None
                time.sleep(0.05)
        yield proc
    finally:
        proc.terminate()
        proc.wait(timeout=10)


Sends = Union[bytes, list[Union[bytes, float]]]  # what a client sends: bytes, or chunks and pauses (s)


async def answers(address: tuple, clients: list[tuple[str, Sends]]) -> list[bytes]:
    """What each client (a source address and its first bytes, or its chunks of bytes and pauses in
    seconds) reads back: b"" when it was refused."""
    replies = []
    for source, first in clients:
        sock = await connect_from(source, address)
        try:
            for part in first if isinstance(first, list) else [first]:
                if isinstance(part, float):
                    await asyncio.sleep(part)
                elif part:
                    await asyncio.get_running_loop().sock_sendall(sock, part)
            replies.append(await recv_all(sock))
        except ConnectionResetError:
            replies.append(b"")
        finally:
            sock.close()
    return replies


def both_ways(pump_class, text: str, ports: dict, tmp_path, clients: list[tuple[str, Sends]]) -> list[bytes]:
    """Run ``clients`` through fastproxy and through haproxy on the same file: the same answers."""
    async def through_fastproxy(text: str) -> list[bytes]:
        async with running(parse_text(text), pump_class) as engine:
            return await answers(engine.listening_addresses()[0], clients)

    async def through_haproxy(text: str, address: tuple) -> list[bytes]:
        with haproxy_running(text, address, tmp_path):
            return await answers(address, clients)

    ours = asyncio.run(through_fastproxy(text.format(port=free_port(), **ports)))
    port = free_port()
    theirs = asyncio.run(through_haproxy(text.format(port=port, **ports), ("127.0.0.1", port)))
    assert ours == theirs
    return ours


BACKEND_RULES = """
defaults
    mode tcp
    timeout connect 2s
    timeout client 5s
    timeout server 5s
frontend fe
    bind 127.0.0.1:{port}
    use_backend filtered if {{ src 127.0.0.2 127.0.0.3 }}
    default_backend open
backend filtered
    acl trusted src 127.0.0.2
    tcp-request content reject unless trusted
    server s1 127.0.0.1:{filtered}
backend open
    tcp-request content accept if {{ src 127.0.0.3 }}
    server s1 127.0.0.1:{open}
"""


@pytest.mark.skipif(HAPROXY is None, reason="haproxy is not installed")
def test_tcp_request_content_rules_in_a_backend_filter_after_it_is_chosen_as_in_haproxy(pump_class, tmp_path):
    async def main() -> list[bytes]:
        async with contextlib.AsyncExitStack() as stack:
            ports = {name: await stack.enter_async_context(serving(named_backend(name.encode())))
                     for name in ("filtered", "open")}
            clients = [("127.0.0.1", b""), ("127.0.0.2", b""), ("127.0.0.3", b""), ("127.0.0.4", b"")]
            return await asyncio.to_thread(both_ways, pump_class, BACKEND_RULES, ports, tmp_path, clients)

    assert asyncio.run(main()) == [b"open", b"filtered", b"", b"open"]


# --- content inspection: one port split by protocol -------------------------------------------------

PROTOCOL_SPLIT = """
defaults
    mode tcp
    timeout connect 2s
    timeout client 5s
    timeout server 5s
frontend mux
    bind 127.0.0.1:{port}
    tcp-request inspect-delay 500ms
    acl tls req.payload(0,3) -m bin 160301 160303
    acl h2 req.ssl_alpn h2
    tcp-request content accept if tls
    tcp-request content accept if HTTP
    tcp-request content accept if RDP_COOKIE
    use_backend tls_h2 if tls h2
    use_backend tls if tls
    use_backend http11 if HTTP_1.1 METH_GET
    use_backend http if HTTP
    use_backend rdp if {{ req.rdp_cookie(mstshash),lower -m str bob }}
    default_backend ssh
backend tls_h2
    server s1 127.0.0.1:{tls_h2}
backend tls
    server s1 127.0.0.1:{tls}
backend http11
    server s1 127.0.0.1:{http11}
backend http
    server s1 127.0.0.1:{http}
backend rdp
    server s1 127.0.0.1:{rdp}
backend ssh
    server s1 127.0.0.1:{ssh}
"""


def client_hello(alpn: Union[list[str], None] = None) -> bytes:
    """The ClientHello a real TLS client (Python's ssl) sends first."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    if alpn:
        context.set_alpn_protocols(alpn)
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = context.wrap_bio(incoming, outgoing, server_hostname="a.example")
    with contextlib.suppress(ssl.SSLWantReadError):
        tls.do_handshake()
    return outgoing.read()


def rdp_request(cookie: bytes) -> bytes:
    """An RDP connection request (TPKT, X.224) carrying ``Cookie: <cookie>``, as mstsc sends it."""
    body = b"Cookie: " + cookie + b"\r\n" + bytes.fromhex("0100080003000000")
    x224 = bytes([6 + len(body), 0xE0, 0, 0, 0, 0, 0]) + body
    return bytes([3, 0]) + (4 + len(x224)).to_bytes(2, "big") + x224


@pytest.mark.skipif(HAPROXY is None, reason="haproxy is not installed")
def test_one_port_split_by_protocol_routes_each_client_as_haproxy(pump_class, tmp_path):
    hello = client_hello(["h2", "http/1.1"])
    clients: list[tuple[str, Sends]] = [
        ("127.0.0.1", hello),                                            # TLS offering h2
        ("127.0.0.1", client_hello()),                                   # TLS without ALPN
        ("127.0.0.1", [hello[:3], 0.15, hello[3:]]),                    # decided on the first 3 bytes
        ("127.0.0.1", [b"GET / HT", 0.15, b"TP/1.1\r\nHost: x\r\n\r\n"]),  # waits for the headers
        ("127.0.0.1", b"POST /form HTTP/1.0\r\n\r\n"),
        ("127.0.0.1", rdp_request(b"mstshash=Bob")),
        ("127.0.0.1", rdp_request(b"msts=bob")),                        # another cookie: not that one
        ("127.0.0.1", b"SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n"),           # a client that speaks first
        ("127.0.0.1", b""),                                              # SSH: waits for the banner
    ]

    async def main() -> list[bytes]:
        async with contextlib.AsyncExitStack() as stack:
            names = ("tls_h2", "tls", "http11", "http", "rdp", "ssh")
            ports = {name: await stack.enter_async_context(serving(named_backend(name.encode())))
                     for name in names}
            return await asyncio.to_thread(both_ways, pump_class, PROTOCOL_SPLIT, ports, tmp_path, clients)

    assert asyncio.run(main()) == [b"tls_h2", b"tls", b"tls", b"http11", b"http", b"rdp", b"ssh", b"ssh",
                                   b"ssh"]


WAITING_RULES = """
defaults
    mode tcp
    timeout connect 2s
    timeout client 5s
    timeout server 5s
frontend fe
    bind 127.0.0.1:{port}
    tcp-request inspect-delay 400ms
    tcp-request content accept if {{ src 127.0.0.2 }} WAIT_END
    tcp-request content accept if REQ_CONTENT !{{ src 127.0.0.2 }}
    tcp-request content reject
    default_backend one
backend one
    server s1 127.0.0.1:{one}
"""


@pytest.mark.skipif(HAPROXY is None, reason="haproxy is not installed")
def test_req_content_accepts_on_the_first_byte_and_wait_end_waits_the_whole_delay_as_haproxy(
        pump_class, tmp_path):
    async def timed(address: tuple, source: str, first: bytes) -> tuple[bytes, float]:
        started = time.monotonic()
        (reply,) = await answers(address, [(source, first)])
        return reply, time.monotonic() - started

    async def main() -> list[tuple[bytes, float]]:
        async with serving(named_backend(b"one")) as one:
            cases = [("127.0.0.1", b"x"), ("127.0.0.1", b""), ("127.0.0.2", b"x")]
            results = []
            cfg = parse_text(WAITING_RULES.format(port=free_port(), one=one))
            async with running(cfg, pump_class) as engine:
                for source, first in cases:
                    results.append(await timed(engine.listening_addresses()[0], source, first))
            port = free_port()
            with haproxy_running(WAITING_RULES.format(port=port, one=one), ("127.0.0.1", port), tmp_path):
                for source, first in cases:
                    results.append(await timed(("127.0.0.1", port), source, first))
            return results

    results = asyncio.run(main())
    for offset in (0, 3):  # fastproxy's three clients, then haproxy's
        (sent, sent_time), (silent, silent_time), (waiting, waiting_time) = results[offset:offset + 3]
        assert (sent, silent, waiting) == (b"one", b"", b"one")
        assert sent_time < 0.3  # accepted on its first byte
        assert silent_time >= 0.35  # rejected once the delay is over
        assert waiting_time >= 0.35  # WAIT_END: accepted once the delay is over, bytes or not


RDP_FARM = """
defaults
    mode tcp
    timeout connect 2s
    timeout client 5s
    timeout server 5s
listen rdp
    bind 127.0.0.1:{port}
    tcp-request inspect-delay 2s
    tcp-request content accept if RDP_COOKIE
    balance rdp-cookie
    server ts1 127.0.0.1:{ts1}
    server ts2 127.0.0.1:{ts2}
    server ts3 127.0.0.1:{ts3}
"""


@pytest.mark.skipif(HAPROXY is None, reason="haproxy is not installed")
def test_balance_rdp_cookie_sends_a_user_back_to_the_same_server_and_others_round_robin_as_haproxy(
        pump_class, tmp_path):
    """Which server a cookie hashes to differs (fastproxy hashes with XXH64), not the behaviour: every
    connection of a user lands where its first did, and clients without a cookie take turns."""
    users = [b"alice", b"bob", b"carol", b"dave"]
    clients: list[tuple[str, Sends]] = [("127.0.0.1", rdp_request(b"mstshash=" + user)) for user in users * 3]
    clients += [("127.0.0.1", b"\x03\x00\x00\x13" + bytes(15))] * 3  # a request without a cookie

    async def main() -> tuple[list[bytes], list[bytes]]:
        async with contextlib.AsyncExitStack() as stack:
            ports = {name: await stack.enter_async_context(serving(named_backend(name.encode())))
                     for name in ("ts1", "ts2", "ts3")}
            return await asyncio.to_thread(both_ways_apart, pump_class, RDP_FARM, ports, tmp_path, clients)

    for replies in asyncio.run(main()):  # fastproxy's, then haproxy's
        by_user = [replies[i::len(users)][:3] for i in range(len(users))]
        assert all(len(set(servers)) == 1 and servers[0] for servers in by_user)
        assert sorted(replies[-3:]) == [b"ts1", b"ts2", b"ts3"]


def both_ways_apart(pump_class, text: str, ports: dict, tmp_path,
                    clients: list[tuple[str, Sends]]) -> tuple[list[bytes], list[bytes]]:
    """``clients`` through fastproxy, then through haproxy, on the same file: both answers."""
    async def through_fastproxy() -> list[bytes]:
        async with running(parse_text(text.format(port=free_port(), **ports)), pump_class) as engine:
            return await answers(engine.listening_addresses()[0], clients)

    async def through_haproxy(port: int) -> list[bytes]:
        with haproxy_running(text.format(port=port, **ports), ("127.0.0.1", port), tmp_path):
            return await answers(("127.0.0.1", port), clients)

    return asyncio.run(through_fastproxy()), asyncio.run(through_haproxy(free_port()))


RDP_BROKER = """
defaults
    mode tcp
    timeout connect 2s
    timeout client 5s
    timeout server 5s
listen rdp
    bind 127.0.0.1:{port}
    tcp-request inspect-delay 2s
    tcp-request content accept if RDP_COOKIE
    persist rdp-cookie
    balance roundrobin
    server ts1 127.0.0.1:{ts1}
    server ts2 127.0.0.1:{ts2}
    server ts3 127.0.0.1:{ts3}
"""


def broker_cookie(port: int, host: str = "127.0.0.1") -> bytes:
    """The ``msts`` cookie a session broker writes for a server: its address and port as the
    little-endian integers of their bytes in network order."""
    address = int.from_bytes(socket.inet_aton(host), "little")
    return b"msts=%d.%d.0000" % (address, int.from_bytes(port.to_bytes(2, "big"), "little"))


@pytest.mark.skipif(HAPROXY is None, reason="haproxy is not installed")
def test_persist_rdp_cookie_sends_a_client_to_the_server_its_broker_cookie_names_as_haproxy(
        pump_class, tmp_path):
    async def main() -> tuple[list[bytes], list[bytes]]:
        async with contextlib.AsyncExitStack() as stack:
            ports = {name: await stack.enter_async_context(serving(named_backend(name.encode())))
                     for name in ("ts1", "ts2", "ts3")}
            clients: list[tuple[str, Sends]] = [
                ("127.0.0.1", rdp_request(broker_cookie(ports["ts3"]))),
                ("127.0.0.1", rdp_request(broker_cookie(ports["ts3"]))),
                ("127.0.0.1", rdp_request(broker_cookie(ports["ts2"]))),
                ("127.0.0.1", rdp_request(broker_cookie(1))),  # names no server: round robin
                ("127.0.0.1", rdp_request(b"mstshash=bob")),  # no broker cookie: round robin
            ]
            return await asyncio.to_thread(both_ways_apart, pump_class, RDP_BROKER, ports, tmp_path, clients)

    # Where the round robin stands after persisted clients differs (haproxy 2.6.12 sends the next two
    # to ts2 and ts3, fastproxy to ts1 and ts2): only the persisted clients are compared.
    for replies in asyncio.run(main()):  # fastproxy's, then haproxy's
        assert replies[:3] == [b"ts3", b"ts3", b"ts2"]
        assert len(set(replies[3:])) == 2 and all(replies[3:])  # round robin: two turns, two servers


USE_SERVER = """
defaults
    mode tcp
    timeout connect 2s
    timeout client 5s
    timeout server 5s
listen tls
    bind 127.0.0.1:{port}
    tcp-request inspect-delay 2s
    tcp-request content accept if {{ req.ssl_hello_type 1 }}
    use-server s2 if {{ req.ssl_sni -i b.example }}
    use-server s3 if {{ src 127.0.0.3 }}
    balance roundrobin
    server s1 127.0.0.1:{s1}
    server s2 127.0.0.1:{s2}
    server s3 127.0.0.1:{s3}
"""


@pytest.mark.skipif(HAPROXY is None, reason="haproxy is not installed")
def test_use_server_picks_the_server_of_the_first_matching_rule_as_haproxy(pump_class, tmp_path):
    def hello(name: str) -> bytes:
        context = ssl.create_default_context()
        incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        tls = context.wrap_bio(incoming, outgoing, server_hostname=name)
        with contextlib.suppress(ssl.SSLWantReadError):
            tls.do_handshake()
        return outgoing.read()

    clients: list[tuple[str, Sends]] = [
        ("127.0.0.1", hello("b.example")), ("127.0.0.3", hello("a.example")),
        ("127.0.0.1", hello("b.example")), ("127.0.0.3", hello("b.example")),  # the first match decides
    ]

    async def main() -> list[bytes]:
        async with contextlib.AsyncExitStack() as stack:
            ports = {name: await stack.enter_async_context(serving(named_backend(name.encode())))
                     for name in ("s1", "s2", "s3")}
            return await asyncio.to_thread(both_ways, pump_class, USE_SERVER, ports, tmp_path, clients)

    assert asyncio.run(main()) == [b"s2", b"s3", b"s2", b"s2"]
