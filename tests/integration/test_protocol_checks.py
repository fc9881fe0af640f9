"""The check kinds built out of tcp-check rules (``option httpchk`` and the ``http-check`` rules...):
a fake agent per protocol speaking the real bytes, answering rightly then wrongly.  The server's state
follows within ``inter x fall`` (plus a slack for a loaded 2-core machine), traffic through the proxy
follows the state, and where the wording is the point the real haproxy runs the same file against the
same agent: the same bytes reach the agent, the same ``check_status``, ``check_code`` and ``last_chk``
come back, the same state-change line is written.
"""

from __future__ import annotations

import asyncio
import logging
import re
import shutil
import socket
import ssl
import subprocess
from pathlib import Path
from typing import Any, Callable

import pytest

from fastproxy.balance import ServerState
from fastproxy.config import load

from ..support import NamedBackends, free_port, open_client, running, serving, serving_raw, wait_until
from .test_stats_socket import ask, table

HAPROXY = shutil.which("haproxy")
needs_haproxy = pytest.mark.skipif(HAPROXY is None, reason="haproxy is not installed")
SLACK = 1.5  # seconds of scheduling slack on a shared 2-core machine
INTER, FALL, RISE = 0.2, 2, 2
TIMING = f"inter {int(INTER * 1000)} fall {FALL} rise {RISE}"


class Agent:
    """A fake server: reads what a check sends (until ``complete(data)`` says it is all there), keeps
    it in ``received``, and answers ``answer`` (bytes, or a function of the request).  ``greeting`` is
    sent on connect, before reading (MySQL, SMTP)."""

    def __init__(self, answer: Any = b"", *, greeting: bytes = b"",
                 complete: Callable[[bytes], bool] = lambda data: b"\r\n\r\n" in data,
                 then: tuple[bytes, ...] = ()) -> None:
        self.answer, self.greeting, self.complete = answer, greeting, complete
        self.then = then  # answers to the requests after the first (SMTP's QUIT)
        self.received: list[bytes] = []

    async def __call__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            if self.greeting:
                writer.write(self.greeting)
            for exchange in range(1 + len(self.then)):
                data = b""
                while not self.complete(data):
                    chunk = await asyncio.wait_for(reader.read(65536), 5)
                    if not chunk:
                        break
                    data += chunk
                if exchange:
                    self.received[-1] += data
                else:
                    self.received.append(data)
                answer = self.answer(data) if callable(self.answer) else self.answer
                writer.write(self.then[exchange - 1] if exchange else answer)
                await writer.drain()
        except (OSError, asyncio.TimeoutError):
            pass
        finally:
            writer.close()


def http(status: int, reason: str, body: bytes = b"") -> bytes:
    return f"HTTP/1.1 {status} {reason}\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body


STATE_HEADERS = b"HTTP/1.1 200 OK\r\nX-State: ready, up\r\nContent-Length: 0\r\n\r\n"


def write_config(tmp_path: Path, checks: str, agent_port: int, traffic_port: int, *, socket: str = "",
                 server_options: str = "") -> Path:
    """A listener with one server, checked through ``port`` on the agent; ``checks`` are the backend's
    check lines."""
    cfg = tmp_path / "checks.cfg"
    stats = f"global\n    stats socket {tmp_path / socket} level admin\n" if socket else ""
    cfg.write_text(f"""{stats}defaults
    mode tcp
    timeout connect 2s
    timeout client 5s
    timeout server 5s
    timeout check 2s
listen fe
    bind 127.0.0.1:{free_port()}
    balance roundrobin
    {checks}
    server s1 127.0.0.1:{traffic_port} check port {agent_port} {TIMING} {server_options}
""")
    return cfg


def checked_config(tmp_path: Path, checks: str, agent_port: int, names: NamedBackends) -> Path:
    cfg = tmp_path / "traffic.cfg"
    cfg.write_text(f"""defaults
    mode tcp
    timeout connect 2s
    timeout client 5s
    timeout server 5s
    timeout check 2s
listen fe
    bind 127.0.0.1:{free_port()}
    balance roundrobin
    {checks}
    server s1 127.0.0.1:{names.ports[0]} check port {agent_port} {TIMING}
    server s2 127.0.0.1:{names.ports[1]}
""")
    return cfg


async def shares(engine, clients: int = 20) -> set[str]:
    """The servers ``clients`` connections through the proxy reached."""
    address = engine.listening_addresses()[0]
    seen = set()
    for _ in range(clients):
        sock, name = await open_client(address)
        sock.close()
        seen.add(name)
    return seen


async def state_within(engine, state: ServerState, bound: float) -> float:
    loop = asyncio.get_running_loop()
    started = loop.time()
    await wait_until(lambda: engine.backends["fe"].balancer.slot("s1").state is state, timeout=bound)
    return loop.time() - started


def check_of(engine) -> dict:
    return engine.stats()["servers"]["fe/s1"]


# --- HTTP checks: the state follows the answers, traffic follows the state -------------------------

@pytest.mark.timeout(60)
async def test_an_http_check_takes_a_server_down_on_503_and_back_on_200_and_traffic_follows(
        tmp_path, pump_class):
    """Patroni's case: ``option httpchk GET /primary`` on port 8008 decides which node takes writes."""
    agent = Agent(http(200, "OK", b"primary"))
    async with NamedBackends(["s1", "s2"]) as names, serving(agent) as agent_port:
        cfg = checked_config(tmp_path, "option httpchk GET /primary\n    http-check expect status 200",
                             agent_port, names)
        async with running(load([str(cfg)]), pump_class) as engine:
            await wait_until(lambda: agent.received, timeout=INTER + SLACK)
            assert agent.received[0] == b"GET /primary HTTP/1.0\r\n\r\n"
            await wait_until(lambda: check_of(engine)["check_status"] == "L7OK", timeout=INTER + SLACK)
            assert await shares(engine) == {"s1", "s2"}
            agent.answer = http(503, "Service Unavailable")  # a replica now
            took = await state_within(engine, ServerState.DOWN, INTER * FALL + SLACK)
            assert took < INTER * FALL + SLACK
            stats = check_of(engine)
            assert (stats["check_status"], stats["check_info"]) == ("L7STS", "Service Unavailable")
            assert await shares(engine) == {"s2"}  # no write reaches the replica
            agent.answer = http(200, "OK", b"primary")
            await state_within(engine, ServerState.UP, INTER * RISE + SLACK)
            assert await shares(engine) == {"s1", "s2"}


@pytest.mark.timeout(60)
async def test_disable_on_404_drains_the_server_and_a_200_brings_it_back(tmp_path, pump_class, caplog):
    agent = Agent(http(200, "OK"))
    async with NamedBackends(["s1", "s2"]) as names, serving(agent) as agent_port:
        cfg = checked_config(tmp_path, "option httpchk\n    http-check disable-on-404", agent_port, names)
        with caplog.at_level(logging.INFO, logger="fastproxy"):
            async with running(load([str(cfg)]), pump_class) as engine:
                await wait_until(lambda: check_of(engine)["check_status"] == "L7OK", timeout=INTER + SLACK)
                agent.answer = http(404, "Not Found")
                await state_within(engine, ServerState.DRAIN, INTER + SLACK)
                assert check_of(engine)["check_status"] == "L7OKC"
                assert await shares(engine) == {"s2"}
                agent.answer = http(200, "OK")
                await state_within(engine, ServerState.UP, INTER + SLACK)
                assert await shares(engine) == {"s1", "s2"}
    assert any(re.fullmatch(r"Server fe/s1 is stopping, reason: Layer7 check conditionally passed, code: "
                            r"404, check duration: \d+ms\. 1 active and 0 backup "
                            r"servers online\. 0 sessions requeued, 0 total in queue\.", record.getMessage())
               for record in caplog.records), [r.getMessage() for r in caplog.records]


@pytest.mark.timeout(60)
async def test_http_check_send_and_send_state_put_haproxys_bytes_on_the_wire(tmp_path, pump_class):
    agent = Agent(http(200, "OK"), complete=lambda data: data.endswith(b"\r\n\r\nabc"))
    async with NamedBackends(["s1", "s2"]) as names, serving(agent) as agent_port:
        checks = ("option httpchk\n    http-check send-state\n"
                  "    http-check send meth POST uri /p ver HTTP/1.1 hdr Host h hdr X-A b body abc")
        cfg = checked_config(tmp_path, checks, agent_port, names)
        async with running(load([str(cfg)]), pump_class):
            await wait_until(lambda: agent.received, timeout=INTER + SLACK)
    request = agent.received[0]
    head, state, tail = re.fullmatch(rb"(POST /p HTTP/1.1\r\nhost: h\r\nx-a: b\r\n)x-haproxy-server-state: "
                                     rb"([^\r]*)\r\n(.*)", request, re.S).groups()
    assert tail == b"content-length: 3\r\nconnection: close\r\n\r\nabc"
    assert re.fullmatch(rb"UP 1/2; address=127\.0\.0\.1; port=%d; name=fe/s1; node=[^;]+; weight=1/2; "
                        rb"scur=0/0; qcur=0" % names.ports[0], state), state


# --- the same file, the same agent, the real haproxy -----------------------------------------------

def between_checks(row: dict) -> bool:
    """Whether ``row`` was read with no check of s1 under way (``check_status`` without ``* ``): HAProxy
    resets a check's result when it starts one (``srv_check_result`` 0 in show servers state), so a
    row read during the check after the one that settled it is not that check's alone.  Whether a
    read lands between two checks is timing (a loaded machine); the reads go on until one does."""
    return not row.get("check_status", "").startswith("* ")


async def haproxy_stat(cfg: Path, sock: Path, until: Callable[[dict], bool]) -> tuple[dict, str]:
    """Run haproxy on ``cfg`` until its s1 row, read between two checks, satisfies ``until``: the row
    and what it wrote."""
    proc = await asyncio.create_subprocess_exec(HAPROXY, "-db", "-f", str(cfg),
                                                stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.STDOUT)
    try:
        row: dict = {}
        for _ in range(200):
            if sock.exists():
                try:
                    row = table(await ask(str(sock), "show stat")).get(("fe", "s1"), {})
                except (ConnectionRefusedError, UnicodeDecodeError):  # bound, not yet listening
                    row = {}
                if until(row) and between_checks(row):
                    break
            await asyncio.sleep(0.05)
    finally:
        proc.terminate()
        output, _ = await proc.communicate()
    return row, output.decode()


async def fastproxy_stat(cfg: Path, sock: Path, pump_class, until: Callable[[dict], bool],
                         caplog) -> tuple[dict, str]:
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="fastproxy"):
        async with running(load([str(cfg)]), pump_class):
            row: dict = {}
            for _ in range(200):
                row = table(await ask(str(sock), "show stat")).get(("fe", "s1"), {})
                if until(row) and between_checks(row):
                    break
                await asyncio.sleep(0.05)
    return row, "\n".join(record.getMessage() for record in caplog.records)


def state_lines(output: str) -> list[str]:
    """The state-change lines, durations masked (``check duration: Nms``)."""
    return [re.sub(r"check duration: \d+ms", "check duration: Nms", line[line.index("Server "):])
            for line in output.splitlines() if "Server fe/s1 is" in line]


CASES = {
    "503": ("option httpchk GET /health", http(503, "Service Unavailable")),
    "status": ("option httpchk\n    http-check expect status 200 comment hi", http(302, "Found")),
    "rstatus": ("option httpchk\n    http-check expect rstatus ^3", http(302, "Found")),
    "negated": ("option httpchk\n    http-check expect ! status 200", http(200, "OK")),
    "string": ("option httpchk\n    http-check expect string xyz", http(200, "OK", b"ok")),
    "no body": ("option httpchk\n    http-check expect string ok comment hello", http(200, "OK")),
    "not http": ("option httpchk", b"hello\r\n"),
    "404": ("option httpchk\n    http-check disable-on-404", http(404, "Not Found")),
    "http/1.1": ("option httpchk HEAD /x HTTP/1.1\\r\\nHost:\\ www", http(200, "OK")),
    "hdr": ("option httpchk\n    http-check expect hdr name x-state value -m beg read", STATE_HEADERS),
    "hdr missing": ("option httpchk\n    http-check expect hdr name -m beg x-other", STATE_HEADERS),
    "hdr value": ("option httpchk\n    http-check expect hdr name X-State value ready,\\ up", STATE_HEADERS),
    "fhdr": ("option httpchk\n    http-check expect fhdr name x-state value ready,\\ up", STATE_HEADERS),
    "! hdr": ("option httpchk\n    http-check expect ! hdr name -m reg ^x-st value -m sub eady comment no",
              STATE_HEADERS),
    "string-lf": ("option httpchk\n    http-check expect string-lf ok", http(200, "OK", b"ok")),
}


@needs_haproxy
@pytest.mark.timeout(120)
@pytest.mark.parametrize("case", list(CASES))
async def test_http_checks_agree_with_haproxy(tmp_path, pump_class, caplog, case):
    checks, answer = CASES[case]
    agent = Agent(answer)
    async with serving(agent) as agent_port, serving(agent) as traffic_port:
        cfg = write_config(tmp_path, checks, agent_port, traffic_port, socket="admin.sock")
        sock = tmp_path / "admin.sock"
        settled = lambda row: bool(row) and row["check_status"] not in ("", "INI", "* INI") and (  # noqa: E731
            row["status"] in ("DOWN", "NOLB") or row["check_status"].endswith("L7OK"))
        theirs, their_output = await haproxy_stat(cfg, sock, settled)
        their_bytes, agent.received = agent.received, []
        ours, our_output = await fastproxy_stat(cfg, sock, pump_class, settled, caplog)
    assert agent.received[0] == their_bytes[0]
    fields = ("status", "check_status", "check_code", "last_chk", "check_desc")
    assert {name: ours[name].removeprefix("* ") for name in fields} == {
        name: theirs[name].removeprefix("* ") for name in fields}
    assert state_lines(our_output) == state_lines(their_output)


# --- the protocol checks: each agent answering rightly, then wrongly --------------------------------

MYSQL_GREETING = (lambda body: len(body).to_bytes(3, "little") + b"\x00" + body)(
    b"\x0a8.0.36\x00" + b"\x08\x00\x00\x00" + b"abcdefgh\x00" + b"\xff\xf7\x21\x02\x00\xff\xc1\x15"
    + bytes(10) + b"ijklmnopqrst\x00" + b"caching_sha2_password\x00")
MYSQL_OK = b"\x07\x00\x00\x02\x00\x00\x00\x02\x00\x00\x00"
MYSQL_DENIED = (lambda body: len(body).to_bytes(3, "little") + b"\x02" + body)(
    b"\xff\x15\x04#28000Access denied for user 'haproxy'@'localhost'")
PG_OK = b"R\x00\x00\x00\x08\x00\x00\x00\x00"
PG_ERROR = (lambda fields: b"E" + (4 + len(fields)).to_bytes(4, "big") + fields)(
    b"SFATAL\x00VFATAL\x00C28000\x00Mrole \"pgu\" does not exist\x00\x00")
LDAP_SUCCESS = bytes.fromhex("300c02010161070a010004000400")
LDAP_INVALID_CREDENTIALS = bytes.fromhex("300c02010161070a013104000400")


def ends_with(suffix: bytes) -> Callable[[bytes], bool]:
    return lambda data: data.endswith(suffix)


def pg_startup_read(data: bytes) -> bool:
    return len(data) >= 4 and len(data) >= int.from_bytes(data[:4], "big")


PROTOCOLS = {  # case: (check lines, agent, its right answer, its wrong answer)
    "redis": ("option redis-check", dict(complete=ends_with(b"PING\r\n")), b"+PONG\r\n",
              b"-ERR loading the dataset in memory\r\n"),
    "pgsql": ("option pgsql-check user pgu", dict(complete=pg_startup_read), PG_OK, PG_ERROR),
    "mysql": ("option mysql-check", dict(complete=lambda data: True), b"",
              MYSQL_DENIED),
    "mysql user": ("option mysql-check user haproxy", dict(greeting=MYSQL_GREETING,
                   complete=ends_with(b"\x01\x00\x00\x00\x01")), MYSQL_OK, MYSQL_DENIED),
    "smtp": ("option smtpchk EHLO checker.example.com",
             dict(greeting=b"220 mail.example.com ESMTP ready\r\n", complete=ends_with(b"\r\n"),
                  then=(b"221 mail.example.com closing\r\n",)),
             b"250-mail.example.com hello\r\n250 SIZE 1000\r\n", b"550 go away\r\n"),
    "smtp banner": ("option smtpchk", dict(greeting=b"554 no service here\r\n", complete=ends_with(b"\r\n"),
                    then=(b"221 closing\r\n",)), b"250 ok\r\n", b"250 ok\r\n"),
    "ldap": ("option ldap-check", dict(complete=lambda data: len(data) >= 14), LDAP_SUCCESS,
             LDAP_INVALID_CREDENTIALS),
}


def protocol_agent(case: str, right: bool) -> Agent:
    checks, settings, good, bad = PROTOCOLS[case]
    settings = dict(settings)
    if case == "smtp banner":  # a banner answering 554, rightly to a 220 one
        if right:
            settings["greeting"] = b"220 ready\r\n"
        return Agent(good, **settings)
    if case == "mysql":  # without a user, the greeting is the whole exchange: right, or an ERR packet
        settings["greeting"] = MYSQL_GREETING if right else MYSQL_DENIED
        return Agent(b"", **settings)
    if not right:
        # An answer HAProxy needs no more bytes to judge: it closes (a wrong SMTP reply on a connection
        # left open waits for more, as in HAProxy, until the check times out).
        settings.pop("then", None)
    return Agent(good if right else bad, **settings)


def settled(row: dict) -> bool:
    status = row.get("check_status", "").removeprefix("* ")
    return status not in ("", "INI") and (row["status"] == "DOWN" or status in ("L7OK", "L6OK"))


@needs_haproxy
@pytest.mark.timeout(120)
@pytest.mark.parametrize("right", [True, False], ids=["right", "wrong"])
@pytest.mark.parametrize("case", list(PROTOCOLS))
async def test_protocol_checks_agree_with_haproxy(tmp_path, pump_class, caplog, case, right):
    agent = protocol_agent(case, right)
    async with serving(agent) as agent_port, serving(agent) as traffic_port:
        cfg = write_config(tmp_path, PROTOCOLS[case][0], agent_port, traffic_port, socket="admin.sock")
        sock = tmp_path / "admin.sock"
        theirs, their_output = await haproxy_stat(cfg, sock, settled)
        their_bytes, agent.received = agent.received, []
        ours, our_output = await fastproxy_stat(cfg, sock, pump_class, settled, caplog)
    assert agent.received[0] == their_bytes[0]
    fields = ("status", "check_status", "check_code", "last_chk", "check_desc")
    assert {name: ours[name].removeprefix("* ") for name in fields} == {
        name: theirs[name].removeprefix("* ") for name in fields}
    assert ours["status"] == ("UP" if right else "DOWN")
    assert state_lines(our_output) == state_lines(their_output)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("case", list(PROTOCOLS))
async def test_a_protocol_check_follows_its_agent_and_traffic_follows_the_state(tmp_path, pump_class, case):
    right, wrong = protocol_agent(case, True), protocol_agent(case, False)
    current = {"agent": right}

    async def switch(reader, writer):
        await current["agent"](reader, writer)
    async with NamedBackends(["s1", "s2"]) as names, serving(switch) as agent_port:
        cfg = checked_config(tmp_path, PROTOCOLS[case][0], agent_port, names)
        async with running(load([str(cfg)]), pump_class) as engine:
            await wait_until(lambda: check_of(engine)["check_status"] == "L7OK", timeout=INTER + SLACK)
            assert await shares(engine) == {"s1", "s2"}
            current["agent"] = wrong
            took = await state_within(engine, ServerState.DOWN, INTER * FALL + SLACK)
            assert took < INTER * FALL + SLACK
            assert await shares(engine) == {"s2"}
            current["agent"] = right
            await state_within(engine, ServerState.UP, INTER * RISE + SLACK)
            assert await shares(engine) == {"s1", "s2"}


# --- ssl-hello-chk: a real TLS server (Python's ssl over OpenSSL) and a plain one -----------------

@pytest.fixture(scope="module")
def tls_files(tmp_path_factory) -> dict[str, Path]:
    """A self-signed certificate for localhost and its key, and another one (an unrelated CA)."""
    directory = tmp_path_factory.mktemp("tls")
    files = {}
    for name in ("server", "other"):
        key, cert = directory / f"{name}-key.pem", directory / f"{name}.pem"
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost",
                        "-addext", "subjectAltName=DNS:localhost", "-days", "1", "-keyout", str(key),
                        "-out", str(cert)], check=True, capture_output=True)
        files[name], files[f"{name}-key"] = cert, key
    return files


@pytest.fixture(scope="module")
def tls_context(tls_files):
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tls_files["server"], tls_files["server-key"])
    return context


def tls_server(context: ssl.SSLContext) -> Callable:
    """OpenSSL's answer to a hello, from a blocking handshake in a thread: it refuses HAProxy's SSLv3
    hello with an alert (a record of type 0x15), which is all ssl-hello-chk looks for."""
    def handshake(conn: socket.socket) -> None:
        conn.setblocking(True)
        conn.settimeout(5)
        try:
            context.wrap_socket(conn, server_side=True).close()
        except (ssl.SSLError, OSError):
            conn.close()

    async def serve(conn: socket.socket) -> None:
        await asyncio.get_running_loop().run_in_executor(None, handshake, conn)
    return serve


@needs_haproxy
@pytest.mark.timeout(120)
@pytest.mark.parametrize("tls", [True, False], ids=["tls", "plain"])
async def test_ssl_hello_chk_tells_a_tls_server_from_a_plain_one_as_haproxy(tmp_path, pump_class, caplog,
                                                                             tls_context, tls):
    plain = Agent(b"220 not TLS\r\n", complete=lambda data: len(data) >= 5)
    async with (serving_raw(tls_server(tls_context)) if tls else serving(plain)) as port:
        cfg = write_config(tmp_path, "option ssl-hello-chk", port, port, socket="admin.sock")
        sock = tmp_path / "admin.sock"
        theirs, their_output = await haproxy_stat(cfg, sock, settled)
        ours, our_output = await fastproxy_stat(cfg, sock, pump_class, settled, caplog)
    fields = ("status", "check_status", "check_code", "last_chk", "check_desc")
    assert {name: ours[name].removeprefix("* ") for name in fields} == {
        name: theirs[name].removeprefix("* ") for name in fields}
    assert (ours["status"], ours["check_status"].removeprefix("* ")) == (
        ("UP", "L6OK") if tls else ("DOWN", "L6RSP"))
    assert state_lines(our_output) == state_lines(their_output)


# --- agent checks -----------------------------------------------------------------------------------

def agent_config(tmp_path: Path, agent_port: int, traffic_port: int, *, socket: str = "admin.sock",
                 extra: str = "", second: int = 0) -> Path:
    cfg = tmp_path / "agent.cfg"
    stats = f"global\n    stats socket {tmp_path / socket} level admin\n" if socket else ""
    other = f"    server s2 127.0.0.1:{second}\n" if second else ""
    cfg.write_text(f"""{stats}defaults
    mode tcp
    timeout connect 2s
    timeout client 5s
    timeout server 5s
    timeout check 2s
listen fe
    bind 127.0.0.1:{free_port()}
    balance roundrobin
    server s1 127.0.0.1:{traffic_port} weight 10 agent-check agent-port {agent_port} agent-inter 200 {extra}
{other}""")
    return cfg


AGENT_FIELDS = ("status", "weight", "slim", "agent_status", "agent_code", "last_agt", "agent_desc",
                "agent_rise", "agent_fall", "agent_health", "check_status")


ATTEMPTS = 5  # fresh runs of one proxy, at most, until a read lands between two checks


async def agent_rows(run: Callable, sock: Path, agent: Agent) -> dict:
    """Run (haproxy or fastproxy) until the agent answered three checks, then s1's agent columns, read
    once, 0.15 s after an answer.  Once: haproxy looks for the end of an agent's line past the bytes
    the check received, into what its buffer held before, so the output of an earlier ``show stat``
    can make a line without one read as ``up`` (L7OK) or as an unknown word (CHECKED) instead of being
    ignored.  After an answer and before the next check (agent-inter 200): each check's start blanks
    ``last_agt``, and a fourth answer moves ``agent_health`` on.  On a loaded machine the read can miss
    that window; then the agent has seen a fourth check by the time the answer came back (once the
    loop accepted what the kernel queued), and the proxy runs afresh: a new process, with buffers no
    ``show stat`` wrote into."""
    async def read() -> dict | None:
        answered = len(agent.received)
        await wait_until(lambda: len(agent.received) >= answered + 3, timeout=30, interval=0.005)
        await asyncio.sleep(0.15)
        for _ in range(20):
            try:
                found = table(await ask(str(sock), "show stat")).get(("fe", "s1"), {})
            except UnicodeDecodeError:  # stray bytes in haproxy's last_agt (see above): again
                found = {}
            if found:
                await asyncio.sleep(0.02)  # a check connected before the answer: accepted by now
                if len(agent.received) != answered + 3:
                    return None  # read after the fourth check had started
                return {name: value.removeprefix("* ") for name, value in found.items()}
            await asyncio.sleep(0.05)
        return {}
    for _ in range(ATTEMPTS):
        row = await run(read)
        if row is not None:
            return row
    raise AssertionError(f"no read between two agent checks in {ATTEMPTS} runs")


@needs_haproxy
@pytest.mark.timeout(120)
@pytest.mark.parametrize("line", ["up", "down", "drain", "maint", "50%", "up 30% maxconn:7", "stopped",
                                  "fail # disk full", "ready", "DOWN,drain", "up bogus", "75%x",
                                  "no newline"])
async def test_agent_answers_are_applied_as_haproxy_applies_them(tmp_path, pump_class, line):
    agent = Agent((line + "\n").encode() if line != "no newline" else b"up", complete=lambda data: True)
    async with serving(agent) as agent_port, serving(agent) as traffic_port:
        cfg = agent_config(tmp_path, agent_port, traffic_port)
        sock = tmp_path / "admin.sock"

        async def haproxy(read: Callable) -> dict:
            proc = await asyncio.create_subprocess_exec(HAPROXY, "-db", "-f", str(cfg),
                                                        stdout=asyncio.subprocess.DEVNULL,
                                                        stderr=asyncio.subprocess.DEVNULL)
            try:
                return await read()
            finally:
                proc.terminate()
                await proc.wait()

        async def fastproxy(read: Callable) -> dict:
            async with running(load([str(cfg)]), pump_class):
                return await read()
        theirs = await agent_rows(haproxy, sock, agent)
        ours = await agent_rows(fastproxy, sock, agent)
    assert {name: ours[name] for name in AGENT_FIELDS} == {name: theirs[name] for name in AGENT_FIELDS}


@pytest.mark.timeout(60)
async def test_traffic_follows_what_the_agent_says(tmp_path, pump_class):
    agent = Agent(b"up\n", complete=lambda data: True)
    async with NamedBackends(["s1", "s2"]) as names, serving(agent) as agent_port:
        cfg = agent_config(tmp_path, agent_port, names.ports[0], socket="", second=names.ports[1])
        async with running(load([str(cfg)]), pump_class) as engine:
            slot = engine.backends["fe"].balancer.slot("s1")
            agents = [server.agent for server in engine.state.servers.values() if server.agent is not None]
            await wait_until(lambda: agents[0].last is not None and agents[0].last.status == "L7OK",
                             timeout=SLACK)
            assert await shares(engine) == {"s1", "s2"}
            for answer, state, reached in ((b"down # maintenance\n", ServerState.DOWN, {"s2"}),
                                           (b"up\n", ServerState.UP, {"s1", "s2"}),
                                           (b"drain\n", ServerState.DRAIN, {"s2"}),
                                           (b"ready 0%\n", ServerState.UP, {"s2"}),
                                           (b"100%\n", ServerState.UP, {"s1", "s2"})):
                agent.answer = answer
                await wait_until(lambda: slot.state is state and (slot.user_weight == 0) == (
                    answer == b"ready 0%\n"), timeout=0.2 + SLACK)
                assert await shares(engine) == reached, answer


@needs_haproxy
@pytest.mark.timeout(120)
async def test_log_health_checks_writes_haproxys_line_per_check_that_counts(tmp_path, pump_class, caplog):
    agent = Agent(http(503, "Service Unavailable"))
    async with serving(agent) as agent_port, serving(agent) as traffic_port:
        cfg = write_config(tmp_path, "option httpchk\n    option log-health-checks", agent_port, traffic_port,
                           socket="admin.sock")
        sock = tmp_path / "admin.sock"
        down = lambda row: bool(row) and row["status"] == "DOWN"  # noqa: E731
        _, their_output = await haproxy_stat(cfg, sock, down)
        _, our_output = await fastproxy_stat(cfg, sock, pump_class, down, caplog)

    def lines(output: str) -> list[str]:
        wanted = [line[line.index("Health check for "):] if "Health check for " in line else
                  line[line.index("Server "):] for line in output.splitlines()
                  if "Health check for " in line or "Server fe/s1 is" in line]
        return [re.sub(r"check duration: \d+ms", "check duration: Nms", line) for line in wanted]
    ours, theirs = lines(our_output), lines(their_output)
    assert ours[:2] == theirs[:2] and len(ours) >= 2, (ours, theirs)
    assert ours[0] == ('Health check for server fe/s1 failed, reason: Layer7 wrong status, code: 503, '
                       'info: "Service Unavailable", check duration: Nms, status: 0/2 DOWN.')


# --- checks over TLS (check-ssl, tcp-check connect ssl): a real TLS server, a plain one -------------

TLS_CASES = {
    # name: (check lines, server options, what the agent speaks, its answer, the state it ends in)
    "handshake": ("", "check-ssl verify none", "tls", b"", "UP"),
    "plain server": ("", "check-ssl verify none", "plain", b"220 not TLS\r\n", "DOWN"),
    "verified": ("", "check-ssl verify required ca-file {server} check-sni localhost", "tls", b"", "UP"),
    "wrong ca": ("", "check-ssl verify required ca-file {other}", "tls", b"", "DOWN"),
    "wrong sni": ("", "check-ssl verify required ca-file {server} check-sni other.example", "tls", b"",
                  "DOWN"),
    "verifyhost": ("", "check-ssl verify required ca-file {server} verifyhost localhost", "tls", b"", "UP"),
    "wrong verifyhost": ("", "check-ssl verify required ca-file {server} verifyhost x.example", "tls", b"",
                         "DOWN"),
    "client certificate": ("", "check-ssl verify none crt {client}", "mutual", b"", "UP"),
    "no client certificate": ("option tcp-check\n    tcp-check connect ssl\n    tcp-check send PING\\r\\n\n"
                              "    tcp-check expect string +PONG", "verify none", "mutual", b"+PONG\r\n",
                              "DOWN"),
    "httpchk": ("option httpchk GET /health", "check-ssl verify none", "tls", http(200, "OK"), "UP"),
    "httpchk 503": ("option httpchk GET /health", "check-ssl verify none", "tls",
                    http(503, "Service Unavailable"), "DOWN"),
    "connect ssl": ("option tcp-check\n    tcp-check connect ssl\n    tcp-check send PING\\r\\n\n"
                    "    tcp-check expect string +PONG", "verify none", "tls", b"+PONG\r\n", "UP"),
    # Not TLS, but the same harness: the PROXY header a check sends first, compared byte for byte.
    "check-send-proxy": ("option httpchk GET /health", "check-send-proxy", "plain", http(200, "OK"), "UP"),
    "check-send-proxy v2": ("option httpchk GET /health", "check-send-proxy send-proxy-v2", "plain",
                            http(200, "OK"), "UP"),
    "connect send-proxy": ("option tcp-check\n    tcp-check connect send-proxy\n"
                           "    tcp-check send PING\\r\\n\n    tcp-check expect string +PONG", "", "plain",
                           b"+PONG\r\n", "UP"),
}


@pytest.fixture(scope="module")
def mutual_tls_context(tls_files):
    """A TLS server that wants a client certificate signed by the "other" one (the client's)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tls_files["server"], tls_files["server-key"])
    context.verify_mode = ssl.CERT_REQUIRED
    context.load_verify_locations(tls_files["other"])
    return context


@needs_haproxy
@pytest.mark.timeout(120)
@pytest.mark.parametrize("case", list(TLS_CASES))
async def test_tls_checks_agree_with_haproxy(tmp_path, pump_class, caplog, tls_context, mutual_tls_context,
                                            tls_files, case):
    checks, options, speaks, answer, state = TLS_CASES[case]
    # A whole request: a PROXY v2 header holds "\r\n\r\n" too, so the end of the data decides.
    agent = Agent(answer, complete=lambda data: data.endswith((b"\r\n\r\n", b"PING\r\n")))
    context = {"tls": tls_context, "mutual": mutual_tls_context, "plain": None}[speaks]
    server = await asyncio.start_server(agent, "127.0.0.1", 0, ssl=context)
    client = tmp_path / "client.pem"  # HAProxy's crt: the certificate and its key in one file
    client.write_bytes(tls_files["other"].read_bytes() + tls_files["other-key"].read_bytes())
    files = {name: str(path) for name, path in tls_files.items()} | {"client": str(client)}
    try:
        port = server.sockets[0].getsockname()[1]
        cfg = write_config(tmp_path, checks, port, port, socket="admin.sock",
                           server_options=options.format(**files))
        sock = tmp_path / "admin.sock"
        theirs, their_output = await haproxy_stat(cfg, sock, settled_tls)
        their_bytes, agent.received = agent.received, []
        ours, our_output = await fastproxy_stat(cfg, sock, pump_class, settled_tls, caplog)
    finally:
        server.close()
    def masked(sent: list[bytes]) -> list[bytes]:  # the check's own source port differs, naturally
        return [re.sub(rb"^(PROXY TCP[46] \S+ \S+ )\d+", rb"\1N", data) for data in sent[:1]]
    assert masked(agent.received) == masked(their_bytes)  # what the first check sent
    assert ours["status"] == theirs["status"] == state
    if case in RACING_CASES:
        # The server refuses the handshake with the check's PING unread: whether the check reads its
        # alert and FIN first (L7RSP, empty response) or its RST (SOCKERR) is the kernel's timing, on
        # haproxy as here; both are failures of that step.
        assert {ours["check_status"].removeprefix("* "), theirs["check_status"].removeprefix("* ")} <= {
            "L7RSP", "SOCKERR"}
        return
    fields = ("status", "check_status", "check_code", "last_chk", "check_desc")
    assert {name: ours[name].removeprefix("* ") for name in fields} == {
        name: theirs[name].removeprefix("* ") for name in fields}
    assert state_lines(our_output) == state_lines(their_output)


RACING_CASES = {"no client certificate"}


def settled_tls(row: dict) -> bool:
    status = row.get("check_status", "").removeprefix("* ")
    return status not in ("", "INI") and (row["status"] == "DOWN" or status in ("L7OK", "L6OK", "L4OK"))
