"""TLS in ``mode tcp``, on real sockets, held to the real haproxy 2.6 on the same file and traffic:
``server ... ssl`` (TLS to the servers: verify, ca-file, crt, sni, alpn, verifyhost, versions, session
reuse) and ``bind ... ssl`` (TLS terminated: crt files and directories chosen by SNI, client
certificates, alpn, the ssl_fc_* fetches and %sslv/%sslc), on both implementations; and the verdicts of
``fastproxy check`` beside ``haproxy -c`` on TLS settings.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import subprocess
import threading
import time
from pathlib import Path

import pytest

from fastproxy.config import parse_text
from fastproxy.errors import ConfigError

from ..support import TlsEchoServer, echo, free_port, make_certificate, running, serving
from .test_routing import HAPROXY, haproxy_running, named_backend
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
            server = engine.stats()["servers"]["be/s1"]
    finally:
        backend.close()
    greeting, echoed = answer.split(b"\n", 1)
    assert echoed == data
    # Counted in the server's books as the pump's pairs are: the plaintext both ways, one connection.
    assert (server["bytes_in"], server["bytes_out"], server["conn_total"]) == (len(data), len(answer), 1)


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
    line, valid = CHECKED[case]
    text = ("global\n    ssl-server-verify none\n" if case == "ssl-server-verify none" else "") + PROLOGUE + \
        f"backend be\n    {line}\n"
    assert verdicts(text, tmp_path) == (valid, valid)


def verdicts(text: str, tmp_path: Path) -> tuple[bool, bool]:
    """Whether fastproxy's reader accepts ``text``, and whether ``haproxy -c`` does."""
    path = tmp_path / "t.cfg"
    path.write_text(text)
    # 2: valid, but no listener to start
    theirs = subprocess.run([HAPROXY, "-c", "-f", str(path)], capture_output=True).returncode in (0, 2)
    try:
        parse_text(text)
    except ConfigError:
        return False, theirs
    return True, theirs


@pytest.mark.parametrize("setting", ["ciphersuites TLS_AES_128_GCM_SHA256", "crl-file /dev/null",
                                     "send-proxy-v2-ssl", "npn h2", "allow-0rtt"])
def test_tls_server_settings_fastproxy_cannot_do_are_refused_with_the_line(setting):
    with pytest.raises(ConfigError) as raised:
        parse_text(PROLOGUE + f"backend be\n    server s1 127.0.0.1:1 ssl verify none {setting}\n")
    error = raised.value.errors[0] if getattr(raised.value, "errors", None) else raised.value
    assert error.line == 8 and setting.split()[0] in str(error)


# --- bind ... ssl: TLS terminated -------------------------------------------------------------------

@pytest.fixture(scope="module")
def bind_certs(tmp_path_factory, certs) -> dict[str, Path]:
    """A ``crt`` directory (a default certificate first by name, two names, a wildcard), and the CA
    of client certificates (the client's own self-signed one)."""
    made = tmp_path_factory.mktemp("made")
    directory = tmp_path_factory.mktemp("crt")
    bundle = b""
    for file_name, name, alt in (("0default", "default.example", ()), ("a", "a.example", ()),
                                 ("b", "b.example", ("b2.example",)), ("wild", "*.wild.example", ())):
        cert, _, pem = make_certificate(made, name.replace("*", "star"), alt=alt)
        if name.startswith("*"):  # a wildcard's own name, which openssl's -subj takes as written
            cert, _, pem = make_certificate(made, "star.wild.example", alt=(name,))
        (directory / f"{file_name}.pem").write_bytes(pem.read_bytes())
        bundle += cert.read_bytes()
    (made / "bundle.crt").write_bytes(bundle)
    return {"dir": directory, "bundle": made / "bundle.crt", "default": directory / "0default.pem"}


async def tls_client(address: tuple, bind_certs, certs, *, server_name: str = "", cert: str = "",
                     alpn: tuple[str, ...] = (), max_version: str = "") -> tuple:
    """A TLS client: (the common name of the certificate the proxy presented, the ALPN protocol chosen,
    what it read until the end), or ("refused",) when the handshake or the session was refused."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.load_verify_locations(bind_certs["bundle"])
    if cert:
        context.load_cert_chain(certs[cert])
    if alpn:
        context.set_alpn_protocols(list(alpn))
    if max_version:
        context.maximum_version = getattr(ssl.TLSVersion, max_version)
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(
            *address, ssl=context, server_hostname=server_name), 10)
    except (OSError, ssl.SSLError, asyncio.TimeoutError):
        return ("refused",)
    try:
        peer = writer.get_extra_info("peercert") or {}
        name = next(value for rdn in peer.get("subject", ()) for key, value in rdn if key == "commonName")
        chosen = writer.get_extra_info("ssl_object").selected_alpn_protocol()
        data = await asyncio.wait_for(reader.read(), 10)
    except (OSError, ssl.SSLError, asyncio.TimeoutError):
        return ("refused",)
    finally:
        writer.close()
    return (name, chosen, data.decode()) if data else ("refused",)


TERMINATING = PROLOGUE + """
frontend fe
    bind 127.0.0.1:{{port}} ssl crt {dir} ca-file {client} verify optional alpn h2,http/1.1
    tcp-request content reject if {{{{ ssl_fc_sni -m str refused.example }}}}
    acl verified ssl_c_verify 0
    use_backend withcert if {{{{ ssl_c_used }}}} {{{{ ssl_c_s_dn -m sub /CN=client.example }}}} verified
    use_backend v12 if {{{{ ssl_fc_protocol TLSv1.2 }}}}
    use_backend h2 if {{{{ ssl_fc_alpn h2 }}}}
    use_backend tls if {{{{ ssl_fc }}}}
backend withcert
    server s1 127.0.0.1:{withcert}
backend v12
    server s1 127.0.0.1:{v12}
backend h2
    server s1 127.0.0.1:{h2}
backend tls
    server s1 127.0.0.1:{tls}
"""

# (SNI, client certificate, ALPN offered, highest version) -> (the certificate's name, ALPN, backend)
TERMINATED_CLIENTS = [
    (("a.example", "", (), ""), ("a.example", None, "tls")),
    (("b2.example", "", (), ""), ("b.example", None, "tls")),
    (("x.wild.example", "", (), ""), ("star.wild.example", None, "tls")),
    (("unknown.example", "", (), ""), ("default.example", None, "tls")),
    (("", "", (), ""), ("default.example", None, "tls")),
    (("refused.example", "", (), ""), ("refused",)),
    (("a.example", "client_pem", (), ""), ("a.example", None, "withcert")),
    (("a.example", "other_pem", (), ""), ("refused",)),
    (("a.example", "", (), "TLSv1_2"), ("a.example", None, "v12")),
    (("a.example", "", ("h2",), ""), ("a.example", "h2", "h2")),
    (("a.example", "", ("spdy/3", "http/1.1"), ""), ("a.example", "http/1.1", "tls")),
]


async def through_both_terminating(text: str, pump_class, tmp_path, clients: list, bind_certs, certs):
    async def run(address: tuple) -> list[tuple]:
        return [await tls_client(address, bind_certs, certs, server_name=sni, cert=cert, alpn=alpn,
                                 max_version=version) for (sni, cert, alpn, version), _ in clients]
    async with running(parse_text(text.format(port=free_port())), pump_class) as engine:
        assert not engine.state.lane_listeners
        ours = await run(engine.listening_addresses()[0])
    port = free_port()
    with haproxy_running(text.format(port=port), ("127.0.0.1", port), tmp_path):
        theirs = await run(("127.0.0.1", port))
    return ours, theirs


@needs_haproxy
@pytest.mark.timeout(60)
async def test_terminated_tls_picks_certificates_by_sni_and_routes_on_ssl_fetches_as_haproxy(
        bind_certs, certs, pump_class, tmp_path):
    names = ("withcert", "v12", "h2", "tls")
    async with contextlib.AsyncExitStack() as stack:
        ports = {name: await stack.enter_async_context(serving(named_backend(name.encode())))
                 for name in names}
        text = TERMINATING.format(dir=bind_certs["dir"], client=certs["client"], **ports)
        ours, theirs = await through_both_terminating(text, pump_class, tmp_path, TERMINATED_CLIENTS,
                                                      bind_certs, certs)
    assert ours == theirs
    assert ours == [expected for _, expected in TERMINATED_CLIENTS]


STRICT = PROLOGUE + """
frontend fe
    bind 127.0.0.1:{{port}} ssl crt {a} crt {b} strict-sni ca-file {ca} verify required ssl-min-ver TLSv1.3
    default_backend tls
backend tls
    server s1 127.0.0.1:{tls}
"""

STRICT_CLIENTS = [
    (("a.example", "client_pem", (), ""), ("a.example", None, "tls")),
    (("b.example", "client_pem", (), ""), ("b.example", None, "tls")),
    (("unknown.example", "client_pem", (), ""), ("refused",)),  # strict-sni: no default certificate
    (("a.example", "", (), ""), ("refused",)),  # verify required
    (("a.example", "client_pem", (), "TLSv1_2"), ("refused",)),  # ssl-min-ver TLSv1.3
]


@needs_haproxy
@pytest.mark.timeout(60)
async def test_strict_sni_required_client_certificates_and_versions_refuse_as_haproxy(
        bind_certs, certs, pump_class, tmp_path):
    async with serving(named_backend(b"tls")) as port:
        text = STRICT.format(a=bind_certs["dir"] / "a.pem", b=bind_certs["dir"] / "b.pem",
                             ca=certs["client"], tls=port)
        ours, theirs = await through_both_terminating(text, pump_class, tmp_path, STRICT_CLIENTS, bind_certs,
                                                      certs)
    assert ours == theirs
    assert ours == [expected for _, expected in STRICT_CLIENTS]


GLOBAL_DEFAULTS = """
global
    crt-base {dir}
    ssl-default-bind-options ssl-min-ver TLSv1.3
""" + PROLOGUE + """
frontend fe
    bind 127.0.0.1:{{port}} ssl crt a.pem
    default_backend tls
backend tls
    server s1 127.0.0.1:{tls}
"""


@needs_haproxy
@pytest.mark.timeout(60)
async def test_global_tls_defaults_and_crt_base_apply_to_binds_as_haproxy(bind_certs, certs, pump_class,
                                                                          tmp_path):
    clients = [(("a.example", "", (), ""), ("a.example", None, "tls")),
               (("a.example", "", (), "TLSv1_2"), ("refused",))]  # ssl-default-bind-options
    async with serving(named_backend(b"tls")) as port:
        text = GLOBAL_DEFAULTS.format(dir=bind_certs["dir"], tls=port)
        ours, theirs = await through_both_terminating(text, pump_class, tmp_path, clients, bind_certs, certs)
    assert ours == theirs == [expected for _, expected in clients]


async def test_openssl_s_client_through_a_terminating_bind_to_a_tls_server(bind_certs, certs, pump_class):
    """Both ends TLS: openssl's client, fastproxy terminating, TLS again to the server (re-encryption)."""
    backend = TlsEchoServer(server_context(certs))
    text = PROLOGUE + f"""
frontend fe
    bind 127.0.0.1:{{port}} ssl crt {bind_certs['dir']}
    default_backend be
backend be
    server s1 127.0.0.1:{backend.port} ssl verify required ca-file {certs['localhost']} sni ssl_fc_sni
"""
    try:
        async with running(parse_text(text.format(port=free_port())), pump_class) as engine:
            host, port = engine.listening_addresses()[0]
            proc = await asyncio.create_subprocess_exec(
                "openssl", "s_client", "-connect", f"{host}:{port}", "-servername", "localhost", "-quiet",
                "-verify_quiet", stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.DEVNULL)
            out, _ = await asyncio.wait_for(proc.communicate(b"through openssl\n"), 15)
    finally:
        backend.close()
    # The server saw the SNI the client sent to the proxy (sni ssl_fc_sni), then echoed the line.
    assert out == b"sni=localhost alpn=None client=None resumed=False\nthrough openssl\n"


def test_terminated_tls_log_lines_carry_sslv_sslc_and_the_ft_marker(bind_certs, certs, pump_class, tmp_path,
                                                                      capfd):
    async def main() -> tuple:
        async with serving(named_backend(b"tls")) as backend_port:
            text = PROLOGUE + f"""
frontend fe
    log stdout format raw local0
    log-format "%ft %sslv %sslc %[ssl_fc_sni] %[ssl_c_used] %B"
    bind 127.0.0.1:{{port}} ssl crt {bind_certs['dir']}
    default_backend be
backend be
    server s1 127.0.0.1:{backend_port}
"""
            async with running(parse_text(text.format(port=free_port())), pump_class) as engine:
                context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
                context.load_verify_locations(bind_certs["bundle"])
                reader, writer = await asyncio.open_connection(*engine.listening_addresses()[0], ssl=context,
                                                               server_hostname="a.example")
                obj = writer.get_extra_info("ssl_object")
                await reader.read()
                writer.close()
                await asyncio.sleep(0.3)
                return obj.version(), obj.cipher()[0]
    version, cipher = asyncio.run(main())
    assert capfd.readouterr().out.splitlines()[-1] == f"fe~ {version} {cipher} a.example 0 3"


# --- the verdicts on bind settings beside haproxy -c ---------------------------------------------------

BIND_CHECKED = {
    "ssl without crt": ("ssl", False),
    "crt": ("ssl crt {a}", True),
    "crt without ssl": ("crt {a}", True),
    "a crt that is not there": ("ssl crt /nonexistent.pem", False),
    "verify without ca-file": ("ssl crt {a} verify required", False),
    "verify optional": ("ssl crt {a} ca-file {client} verify optional", True),
    "unknown verify": ("ssl crt {a} ca-file {client} verify maybe", False),
    "a directory": ("ssl crt {dir} alpn h2 ssl-min-ver TLSv1.2 ciphers HIGH no-tlsv10 strict-sni", True),
}


@needs_haproxy
@pytest.mark.parametrize("case", list(BIND_CHECKED))
def test_tls_bind_settings_get_haproxys_verdict(tmp_path, bind_certs, certs, case):
    words, valid = BIND_CHECKED[case]
    words = words.format(a=bind_certs["dir"] / "a.pem", dir=bind_certs["dir"], client=certs["client"])
    text = PROLOGUE + f"frontend fe\n    bind 127.0.0.1:{free_port()} {words}\n    default_backend be\n" \
        "backend be\n    server s1 127.0.0.1:1\n"
    assert verdicts(text, tmp_path) == (valid, valid)


def test_rules_reading_the_client_bytes_of_a_terminating_bind_are_refused(bind_certs):
    text = PROLOGUE + f"""
frontend fe
    bind 127.0.0.1:1 ssl crt {bind_certs['dir']}
    tcp-request inspect-delay 1s
    use_backend be if {{ req.len gt 0 }}
backend be
    server s1 127.0.0.1:1
"""
    with pytest.raises(ConfigError, match="does not decrypt"):
        parse_text(text)


@needs_haproxy
@pytest.mark.timeout(60)
async def test_a_send_proxy_header_goes_in_the_clear_before_the_server_handshake_as_haproxy(
        certs, pump_class, tmp_path):
    context = server_context(certs)
    headers: list[bytes] = []
    listener = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:  # the clients in turn (and the connection of haproxy's readiness probe)
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            with conn:
                try:
                    conn.settimeout(10)
                    header = b""
                    while not header.endswith(b"\r\n") and (byte := conn.recv(1)):
                        header += byte
                    tls = context.wrap_socket(conn, server_side=True)
                    headers.append(header)
                    tls.sendall(b"hello over tls\n")
                    while tls.recv(65536):
                        pass
                    tls.unwrap()
                except (OSError, ssl.SSLError):
                    pass
    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    text = TO_SERVERS.format(backend=listener.getsockname()[1], options="ssl verify none send-proxy")
    try:
        ours, theirs = await through_both(text, pump_class, tmp_path)
    finally:
        listener.close()
    assert ours == theirs == [b"hello over tls\n"]
    assert len(headers) >= 2  # ours, haproxy's (and its readiness probe's, which haproxy connects too)
    assert {header.rsplit(b" ", 2)[0] for header in headers} == {b"PROXY TCP4 127.0.0.1 127.0.0.1"}


# --- a client's failed handshake: HAProxy's log line ---------------------------------------------------

HANDSHAKE_LOGS = """
global
    log stdout format raw local0
defaults
    mode tcp
    log global
    option tcplog
    timeout connect 2s
    timeout client 1s
    timeout server 2s
frontend fe
    bind 127.0.0.1:{plain_tls} ssl crt {crt}
    bind 127.0.0.1:{required} name strict ssl crt {crt} verify required ca-file {ca}
    default_backend be
frontend quiet
    option dontlognull
    bind 127.0.0.1:{quiet} ssl crt {crt}
    default_backend be
frontend probe
    no log
    bind 127.0.0.1:{probe}
    default_backend be
backend be
    server s1 127.0.0.1:1
"""


async def failing_clients(ports: dict[str, int], certs) -> None:
    """Clients whose handshakes fail, each its own way, one after the other."""
    async def raw(port: int, data: bytes, then: str = "read", pause: float = 0.0) -> None:
        """``data``, then: read until the proxy closes, or close at once, or after ``pause``."""
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        if data:
            writer.write(data)
            await writer.drain()
        await asyncio.sleep(pause)
        if then == "read":
            with contextlib.suppress(asyncio.TimeoutError, OSError):
                await asyncio.wait_for(reader.read(), 3)
        writer.close()

    async def tls_with(port: int, cert: str) -> None:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
        if cert:
            context.load_cert_chain(certs[cert])
        with contextlib.suppress(OSError, ssl.SSLError, asyncio.TimeoutError):
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection("127.0.0.1", port, ssl=context), 5)
            await asyncio.wait_for(reader.read(), 3)  # TLS 1.3: the refusal comes after the handshake
            writer.close()

    await raw(ports["plain_tls"], b"GET / HTTP/1.0\r\n\r\n")  # no TLS at all
    await raw(ports["plain_tls"], b"", "close", 0.2)  # closes before sending anything
    await raw(ports["plain_tls"], bytes.fromhex("160301002c01000028030300"), "close", 0.2)  # half a hello
    await tls_with(ports["required"], "")  # no certificate where one is required
    await tls_with(ports["required"], "other_pem")  # one its CA did not sign
    await raw(ports["quiet"], b"", "close", 0.2)  # dontlognull: not logged
    await raw(ports["quiet"], b"", "read", 1.5)  # nor its timeout
    await raw(ports["quiet"], b"GET / HTTP/1.0\r\n\r\n")  # dontlognull still logs this one
    await raw(ports["plain_tls"], b"", "read", 1.5)  # past timeout client


def _handshake_lines(output: str) -> list[str]:
    """The lines of failed handshakes, without the client's port and the date."""
    return [line.split("] ", 1)[1] for line in output.splitlines()
            if line.startswith("127.0.0.1:") and "] " in line]


@needs_haproxy
@pytest.mark.timeout(90)
def test_a_failed_client_handshake_is_logged_as_haproxy_logs_it(bind_certs, certs, pump_class, tmp_path,
                                                                capfd):
    def text() -> tuple[str, dict[str, int]]:
        ports = {name: free_port() for name in ("plain_tls", "required", "quiet", "probe")}
        return HANDSHAKE_LOGS.format(crt=bind_certs["default"], ca=certs["client"], **ports), ports

    async def ours() -> None:
        config, ports = text()
        async with running(parse_text(config), pump_class):
            await failing_clients(ports, certs)
            await asyncio.sleep(0.3)

    asyncio.run(ours())
    mine = _handshake_lines(capfd.readouterr().out)
    config, ports = text()
    with haproxy_running(config, ("127.0.0.1", ports["probe"]), tmp_path) as proc:
        asyncio.run(failing_clients(ports, certs))
        time.sleep(0.3)
        proc.terminate()
        theirs = _handshake_lines(proc.communicate(timeout=10)[0])
    assert mine == theirs, (mine, theirs)
    assert mine == ["fe/1: SSL handshake failure", "fe/1: Connection closed during SSL handshake",
                    "fe/1: Connection closed during SSL handshake", "fe/strict: SSL handshake failure",
                    "fe/strict: SSL client certificate not trusted", "quiet/1: SSL handshake failure",
                    "fe/1: Timeout during SSL handshake"]


NO_SSL = PROLOGUE + """
frontend fe
    bind 127.0.0.1:{{port}}
    default_backend be
backend be
    default-server ssl verify none sni str(localhost) alpn h2 check inter 100ms fall 1 rise 1
    server s1 127.0.0.1:{backend} no-ssl
"""


@needs_haproxy
@pytest.mark.timeout(60)
async def test_no_ssl_after_default_server_ssl_speaks_and_checks_in_the_clear_as_haproxy(pump_class,
                                                                                          tmp_path):
    """``no-ssl`` undoes the defaults' ``ssl``: the traffic and the checks to that server go in the clear,
    its TLS settings unused (a TLS check against this plain server would fail it, and the client be
    refused)."""
    async def exchange_after_checks(address: tuple) -> bytes:
        await asyncio.sleep(0.6)  # a few checks: one failed would have taken the server down
        return await plain_exchange(address)

    async with serving(echo) as backend:
        text = NO_SSL.format(backend=backend)
        async with running(parse_text(text.format(port=free_port())), pump_class) as engine:
            ours = await exchange_after_checks(engine.listening_addresses()[0])
        port = free_port()
        with haproxy_running(text.format(port=port), ("127.0.0.1", port), tmp_path):
            theirs = await exchange_after_checks(("127.0.0.1", port))
    assert ours == theirs == b"ping\n"
