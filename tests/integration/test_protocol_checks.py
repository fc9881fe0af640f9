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
from pathlib import Path
from typing import Any, Callable

import pytest

from fastproxy.balance import ServerState
from fastproxy.config import load

from ..support import NamedBackends, free_port, open_client, running, serving, wait_until
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
                 complete: Callable[[bytes], bool] = lambda data: b"\r\n\r\n" in data) -> None:
        self.answer, self.greeting, self.complete = answer, greeting, complete
        self.received: list[bytes] = []

    async def __call__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            if self.greeting:
                writer.write(self.greeting)
            data = b""
            while not self.complete(data):
                chunk = await asyncio.wait_for(reader.read(65536), 5)
                if not chunk:
                    break
                data += chunk
            self.received.append(data)
            answer = self.answer(data) if callable(self.answer) else self.answer
            writer.write(answer)
            await writer.drain()
        except (OSError, asyncio.TimeoutError):
            pass
        finally:
            writer.close()


def http(status: int, reason: str, body: bytes = b"") -> bytes:
    return f"HTTP/1.1 {status} {reason}\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body


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

async def haproxy_stat(cfg: Path, sock: Path, until: Callable[[dict], bool]) -> tuple[dict, str]:
    """Run haproxy on ``cfg`` until its s1 row satisfies ``until``: the row and what it wrote."""
    proc = await asyncio.create_subprocess_exec(HAPROXY, "-db", "-f", str(cfg),
                                                stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.STDOUT)
    try:
        row: dict = {}
        for _ in range(200):
            if sock.exists():
                row = table(await ask(str(sock), "show stat")).get(("fe", "s1"), {})
                if until(row):
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
                if until(row):
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
