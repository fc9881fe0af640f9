"""TLS in ``mode tcp``, on real sockets, held to the real haproxy 2.6 on the same file and traffic:
``server ... ssl`` (TLS to the servers: verify, ca-file, crt, sni, alpn, verifyhost, versions, session
reuse) and ``bind ... ssl`` (TLS terminated: crt files and directories chosen by SNI, client
certificates, alpn, the ssl_fc_* fetches and %sslv/%sslc), on both implementations; and the verdicts of
``fastproxy check`` beside ``haproxy -c`` on TLS settings.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from pathlib import Path

import pytest

from fastproxy.config import parse_text
from fastproxy.errors import ConfigError

from ..support import TlsEchoServer, free_port, make_certificate, running
from .test_routing import HAPROXY, haproxy_running
from .test_routing_keywords import PROLOGUE, needs_reference as needs_haproxy


@pytest.fixture(scope="module")
def certs(tmp_path_factory) -> dict[str, Path]:
    """Certificates made by openssl: ``localhost``'s (the servers'), a client's, and an unrelated one."""
    directory = tmp_path_factory.mktemp("tls")
    files: dict[str, Path] = {}
    for key, name in (("localhost", "localhost"), ("client", "client.example"), ("other", "other.example")):
        files[key], files[f"{key}_key"], files[f"{key}_pem"] = make_certificate(directory, name)
    return files


def server_context(certs: dict[str, Path], *, client_ca: str = "",
                   alpn: tuple[str, ...] = ()) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(certs["localhost"], certs["localhost_key"])
    if client_ca:
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_verify_locations(certs[client_ca])
    if alpn:
        context.set_alpn_protocols(list(alpn))
    return context


async def plain_exchange(address: tuple, data: bytes = b"ping\n") -> bytes:
    """A plain client: ``data``, its half-close, then everything it reads (b"" when it was refused)."""
    loop = asyncio.get_running_loop()
    sock = socket.socket()
    sock.setblocking(False)
    try:
        await loop.sock_connect(sock, address)
        await loop.sock_sendall(sock, data)
        sock.shutdown(socket.SHUT_WR)
        received = b""
        while chunk := await asyncio.wait_for(loop.sock_recv(sock, 65536), 10):
            received += chunk
        return received
    except ConnectionResetError:
        return b""
    finally:
        sock.close()


async def through_both(text: str, pump_class, tmp_path, clients: int = 1) -> tuple[list[bytes], list[bytes]]:
    """``clients`` plain clients in turn through fastproxy, then through haproxy, on the same file."""
    port = free_port()
    async with running(parse_text(text.format(port=port)), pump_class) as engine:
        ours = [await plain_exchange(engine.listening_addresses()[0]) for _ in range(clients)]
    port = free_port()
    with haproxy_running(text.format(port=port), ("127.0.0.1", port), tmp_path):
        theirs = [await plain_exchange(("127.0.0.1", port)) for _ in range(clients)]
    return ours, theirs


TO_SERVERS = PROLOGUE + """
frontend fe
    bind 127.0.0.1:{{port}}
    default_backend be
backend be
    server s1 127.0.0.1:{backend} {options}
"""

# What the server line says, the TLS server's settings, what the client reads first (None: refused).
SERVER_CASES = {
    "verify none": ("ssl verify none", {}, "sni=None alpn=None client=None resumed=False"),
    "verify required, sni": ("ssl verify required ca-file {localhost} sni str(localhost)", {},
                             "sni=localhost alpn=None client=None resumed=False"),
    "verifyhost": ("ssl verify required ca-file {localhost} verifyhost localhost", {},
                   "sni=None alpn=None client=None resumed=False"),
    "client certificate": ("ssl verify none crt {client_pem}", {"client_ca": "client"},
                           "sni=None alpn=None client=client.example resumed=False"),
    "alpn": ("ssl verify none alpn h2,http/1.1", {"alpn": ("http/1.1",)},
             "sni=None alpn=http/1.1 client=None resumed=False"),
    "default-server ssl": ("verify none", {}, "sni=None alpn=None client=None resumed=False"),
    "unknown CA": ("ssl verify required ca-file {other}", {}, None),
    "another name": ("ssl verify required ca-file {localhost} sni str(other.example)", {}, None),
    "verifyhost mismatch": ("ssl verify required ca-file {localhost} verifyhost other.example", {}, None),
    "no client certificate": ("ssl verify none", {"client_ca": "client"}, None),
}


@needs_haproxy
@pytest.mark.timeout(60)
@pytest.mark.parametrize("case", list(SERVER_CASES))
async def test_tls_to_servers_answers_as_haproxy(certs, pump_class, tmp_path, case):
    options, settings, first_line = SERVER_CASES[case]
    backend = TlsEchoServer(server_context(certs, **settings))
    files = {name: str(path) for name, path in certs.items()}
    text = TO_SERVERS.format(backend=backend.port, options=options.format(**files))
    if case == "default-server ssl":
        text = text.replace("\nbackend be\n", "\nbackend be\n    default-server ssl\n")
    try:
        ours, theirs = await through_both(text, pump_class, tmp_path)
    finally:
        backend.close()
    assert ours == theirs
    assert ours == [b"" if first_line is None else f"{first_line}\nping\n".encode()]


@needs_haproxy
@pytest.mark.timeout(60)
@pytest.mark.parametrize("reuse", [True, False], ids=["ssl-reuse", "no-ssl-reuse"])
async def test_tls_sessions_to_a_server_are_resumed_unless_no_ssl_reuse_as_haproxy(
        certs, pump_class, tmp_path, reuse):
    backend = TlsEchoServer(server_context(certs))
    options = "ssl verify none" + ("" if reuse else " no-ssl-reuse")
    text = TO_SERVERS.format(backend=backend.port, options=options)
    try:
        ours, theirs = await through_both(text, pump_class, tmp_path, clients=3)
    finally:
        backend.close()
    def resumed(answers: list[bytes]) -> list[bool]:
        return [answer.split(b"resumed=")[1][:4] == b"True" for answer in answers]
    # The first is a full handshake; by the third the session (its ticket, which the server sends after
    # the handshake) is resumed.  Whether haproxy's second is depends on when it read that ticket.
    assert resumed(ours) == [False, reuse, reuse]
    assert resumed(theirs)[0] is False and resumed(theirs)[2] is reuse
    assert [answer.split(b" resumed=")[0] for answer in ours] == [
        answer.split(b" resumed=")[0] for answer in theirs]


async def test_a_large_stream_crosses_tls_both_ways_with_half_closes(certs, pump_class):
    backend = TlsEchoServer(server_context(certs))
    text = TO_SERVERS.format(backend=backend.port, options="ssl verify none")
    data = bytes(range(256)) * 8192  # 2 MiB
    try:
        async with running(parse_text(text.format(port=free_port())), pump_class) as engine:
            answer = await plain_exchange(engine.listening_addresses()[0], data)
            assert not engine.state.lane_listeners  # TLS is made in Python: never on a lane
    finally:
        backend.close()
    assert answer.split(b"\n", 1)[1] == data


async def test_a_failed_handshake_is_a_failed_connect_retried_then_logged_as_one(certs, pump_class):
    backend = TlsEchoServer(server_context(certs))
    text = TO_SERVERS.format(backend=backend.port, options=f"ssl verify required ca-file {certs['other']}")
    text = text.replace("\nbackend be\n", "\nbackend be\n    retries 2\n")
    try:
        async with running(parse_text(text.format(port=free_port())), pump_class) as engine:
            assert await plain_exchange(engine.listening_addresses()[0]) == b""
            stats = engine.stats()
    finally:
        backend.close()
    assert backend.handshakes == 0
    assert stats["servers"]["be/s1"]["connect_errors"] == 3  # the first attempt and two retries


# --- the verdicts of the reader beside haproxy -c ----------------------------------------------------

CHECKED = {
    "ssl without verify or ca-file": ("server s1 127.0.0.1:1 ssl", False),
    "verify none": ("server s1 127.0.0.1:1 ssl verify none", True),
    "ssl-server-verify none": ("server s1 127.0.0.1:1 ssl", True),
    "unknown version": ("server s1 127.0.0.1:1 ssl verify none ssl-min-ver TLSv9", False),
    "empty alpn": ("server s1 127.0.0.1:1 ssl verify none alpn \"\"", False),
    "unknown sni fetch": ("server s1 127.0.0.1:1 ssl verify none sni foo(bar)", False),
    "every shared setting": ("server s1 127.0.0.1:1 ssl verify none sni str(a) alpn h2 ssl-min-ver TLSv1.2 "
                             "ssl-max-ver TLSv1.3 no-sslv3 no-tlsv10 force-tlsv12 ciphers HIGH "
                             "no-ssl-reuse", True),
}


@needs_haproxy
@pytest.mark.parametrize("case", list(CHECKED))
def test_tls_server_settings_get_haproxys_verdict(tmp_path, case):
    import subprocess
    line, valid = CHECKED[case]
    text = ("global\n    ssl-server-verify none\n" if case == "ssl-server-verify none" else "") + PROLOGUE + \
        f"backend be\n    {line}\n"
    path = tmp_path / "t.cfg"
    path.write_text(text)
    # 2: valid, but no listener to start
    theirs = subprocess.run([HAPROXY, "-c", "-f", str(path)], capture_output=True).returncode in (0, 2)
    try:
        parse_text(text)
        ours = True
    except ConfigError:
        ours = False
    assert ours == theirs == valid


@pytest.mark.parametrize("setting", ["ciphersuites TLS_AES_128_GCM_SHA256", "crl-file /dev/null",
                                     "send-proxy-v2-ssl", "npn h2", "allow-0rtt"])
def test_tls_server_settings_fastproxy_cannot_do_are_refused_with_the_line(setting):
    with pytest.raises(ConfigError) as raised:
        parse_text(PROLOGUE + f"backend be\n    server s1 127.0.0.1:1 ssl verify none {setting}\n")
    error = raised.value.errors[0] if getattr(raised.value, "errors", None) else raised.value
    assert error.line == 8 and setting.split()[0] in str(error)
