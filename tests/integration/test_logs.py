"""Traffic logs reach the ``log`` targets of a configuration: syslog datagrams over UDP and UNIX sockets."""

from __future__ import annotations

import asyncio
import os
import re
import socket

import pytest

from fastproxy.config import parse_text
from fastproxy.config.model import Location, LogTarget
from fastproxy.pump import CPump

from ..support import connect, echo, recv_exactly, running, serving, wait_until

CONFIG = """\
global
    log {target} local0{levels}

defaults
    mode tcp
    log global
    {tcplog}
    timeout connect 5s
    timeout client 30s
    timeout server 30s

listen fe
    bind 127.0.0.1:1
    server s1 127.0.0.1:{port}
"""

def test_a_log_line_is_read_once_into_the_models_log_target():
    config = parse_text("global\n"
                        " log 127.0.0.1:514 len 512 format rfc5424 sample 2-3,5:6 local0 info notice\n"
                        "frontend fe\n log global\n log stderr user\n", filename="t.cfg")
    first, other = config.frontends["fe"].log_targets
    assert first == LogTarget("127.0.0.1:514", facility=16, level=6, minlevel=5, format="rfc5424", length=512,
                              sample=(2, 6), location=Location("t.cfg", 2))
    assert (other.address, other.facility, other.level, other.sample) == ("stderr", 1, 7, None)
    assert config.global_.log_targets == [first]


TCPLOG = re.compile(
    r"<134>\w{3} [ \d]\d \d\d:\d\d:\d\d fastproxy\[(\d+)\]: "
    r"127\.0\.0\.1:(\d+) \[\d\d/\w{3}/\d{4}:\d\d:\d\d:\d\d\.\d{3}\] fe fe/s1 0/\d+/\d+ 5 -- "
    r"\d+/\d+/\d+/\d+/0 0/0$")


def parse(text: str):
    """The configuration, its listener moved to a free port (the reader wants a real port)."""
    cfg = parse_text(text)
    cfg.frontends["fe"].binds[0].port = 0
    return cfg


@pytest.fixture
def receiver():
    """Makes datagram sockets for log lines (UDP, or UNIX at ``path``), closed when the test ends."""
    made: list[socket.socket] = []

    def make(family: int = socket.AF_INET, path: str | None = None) -> socket.socket:
        sock = socket.socket(family, socket.SOCK_DGRAM)
        made.append(sock)
        sock.bind(path if path else ("127.0.0.1", 0))
        sock.setblocking(False)
        return sock
    yield make
    for sock in made:
        sock.close()


async def one_exchange(engine) -> int:
    """A connection through the proxy that sends 5 bytes and reads them back; its client port."""
    sock = await connect(engine.listening_addresses()[0])
    port = sock.getsockname()[1]
    await asyncio.get_running_loop().sock_sendall(sock, b"hello")
    assert await recv_exactly(sock, 5) == b"hello"
    sock.close()
    return port


async def datagrams(sock: socket.socket, count: int, timeout: float = 5.0) -> list[str]:
    loop = asyncio.get_running_loop()
    got = []
    for _ in range(count):
        line = (await asyncio.wait_for(loop.sock_recv(sock, 4096), timeout)).decode()
        assert line.endswith("\n")  # as HAProxy's, every message ends with a line feed
        got.append(line[:-1])
    return got


async def nothing_more(engine, sock: socket.socket, delay: float = 0.2) -> None:
    """Once every connection has ended, ``sock`` received no further line."""
    await wait_until(lambda: engine.current == 0)
    await asyncio.sleep(delay)
    with pytest.raises(BlockingIOError):
        sock.recv(4096)


async def test_tcplog_lines_go_to_a_udp_syslog_target_in_haproxys_format(pump_class, receiver):
    async with serving(echo) as port:
        sink = receiver()
        target = "%s:%d" % sink.getsockname()
        cfg = parse(CONFIG.format(target=target, levels="", tcplog="option tcplog", port=port))
        async with running(cfg, pump_class) as engine:
            client_port = await one_exchange(engine)
            [line] = await datagrams(sink, 1)
        match = TCPLOG.match(line)
        assert match, line
        assert int(match.group(1)) == os.getpid() and int(match.group(2)) == client_port


async def test_without_tcplog_each_connection_is_logged_once_when_accepted(pump_class, receiver, tmp_path):
    async with serving(echo) as port:
        path = str(tmp_path / "log.sock")
        sink = receiver(socket.AF_UNIX, path)
        cfg = parse(CONFIG.format(target=path, levels=" info", tcplog="", port=port))
        async with running(cfg, pump_class) as engine:
            client_port = await one_exchange(engine)
            [line] = await datagrams(sink, 1)
            listen_port = engine.listening_addresses()[0][1]
            await asyncio.sleep(0.2)
            with pytest.raises(BlockingIOError):  # nothing more: no line when the connection ends
                sink.recv(4096)
        assert line.endswith(f"Connect from 127.0.0.1:{client_port} to 127.0.0.1:{listen_port} (fe/TCP)")


async def test_a_target_whose_level_is_above_info_gets_no_traffic_lines(pump_class, receiver):
    async with serving(echo) as port:
        quiet, loud = receiver(), receiver()
        text = CONFIG.format(target="%s:%d" % quiet.getsockname(), levels=" notice", tcplog="option tcplog",
                             port=port)
        text = text.replace("global\n", "global\n    log %s:%d local0 debug\n" % loud.getsockname(), 1)
        async with running(parse(text), pump_class) as engine:
            await one_exchange(engine)
            await datagrams(loud, 1)
            await asyncio.sleep(0.1)
            with pytest.raises(BlockingIOError):
                quiet.recv(4096)


async def test_raw_and_short_formats_and_sampling(pump_class, receiver):
    async with serving(echo) as port:
        raw, short = receiver(), receiver()
        text = CONFIG.format(target="%s:%d format raw" % raw.getsockname(), levels="", tcplog="", port=port)
        text = text.replace("global\n", "global\n    log %s:%d format short sample 1:2 local0\n"
                            % short.getsockname(), 1)
        async with running(parse(text), pump_class) as engine:
            for _ in range(4):
                await one_exchange(engine)
            raw_lines = await datagrams(raw, 4)
            short_lines = await datagrams(short, 2)  # one message in two
            await nothing_more(engine, short, 0.1)
        assert all(line.startswith("Connect from 127.0.0.1:") for line in raw_lines)
        assert all(line.startswith("<6>Connect from 127.0.0.1:") for line in short_lines)


async def test_tcplog_frontends_run_on_lanes_and_log_every_connection_with_dontlognull(pump_class, receiver):
    async with serving(echo) as port:
        sink = receiver()
        tcplog = "option tcplog\n    option dontlognull"
        cfg = parse(CONFIG.format(target="%s:%d" % sink.getsockname(), levels="", tcplog=tcplog, port=port))
        async with running(cfg, pump_class) as engine:
            assert bool(engine.lanes) == (pump_class is CPump)  # no Python per connection
            ports = [await one_exchange(engine) for _ in range(20)]
            silent = await connect(engine.listening_addresses()[0])  # sends nothing: not logged
            silent.close()
            lines = await datagrams(sink, 20)
            await nothing_more(engine, sink)
            if engine.lanes:
                assert engine.python_current == 0 and not engine.pairs
        matches = [TCPLOG.match(line) for line in lines]
        assert all(matches), lines
        assert sorted(int(m.group(2)) for m in matches) == sorted(ports)


async def test_server_state_changes_go_to_the_backends_log_targets_at_haproxys_levels(pump_class, receiver):
    async with serving(echo) as port:
        sink = receiver()
        text = CONFIG.format(target="%s:%d" % sink.getsockname(), levels="", tcplog="", port=port)
        async with running(parse(text), pump_class) as engine:
            engine.set_server_state("fe", "s1", "DOWN")
            down, empty = await datagrams(sink, 2)
            engine.set_server_state("fe", "s1", "UP")
            [up] = await datagrams(sink, 1)
        # local0 is facility 16: alert 16*8+1, emerg 16*8+0, notice 16*8+5.
        assert down.startswith("<129>") and down.endswith(
            "Server fe/s1 is DOWN. 0 active and 0 backup servers left. 0 sessions active, "
            "0 requeued, 0 remaining in queue.")
        assert empty.startswith("<128>") and empty.endswith("backend fe has no server available!")
        assert up.startswith("<133>") and up.endswith(
            "Server fe/s1 is UP. 1 active and 0 backup servers online. 0 sessions requeued, 0 total in "
            "queue.")


async def test_tcplog_lines_to_stdout_in_raw_format(pump_class, capfd):
    async with serving(echo) as port:
        cfg = parse(CONFIG.format(target="stdout format raw", levels="", tcplog="option tcplog", port=port))
        async with running(cfg, pump_class) as engine:
            ports = [await one_exchange(engine) for _ in range(3)]
            await wait_until(lambda: engine.current == 0)
            await asyncio.sleep(0.1)
    lines = [line for line in capfd.readouterr().out.splitlines() if " fe fe/s1 " in line]
    body = re.compile(r"127\.0\.0\.1:(\d+) \[\d\d/\w{3}/\d{4}:\d\d:\d\d:\d\d\.\d{3}\] fe fe/s1 "
                      r"0/\d+/\d+ 5 -- \d+/\d+/\d+/\d+/0 0/0$")
    assert sorted(int(body.match(line).group(1)) for line in lines) == sorted(ports), lines


async def test_connect_lines_from_a_lane_over_udp(pump_class, receiver):
    async with serving(echo) as port:
        sink = receiver()
        cfg = parse(CONFIG.format(target="%s:%d" % sink.getsockname(), levels="", tcplog="", port=port))
        async with running(cfg, pump_class) as engine:
            assert bool(engine.lanes) == (pump_class is CPump)
            client_ports = [await one_exchange(engine) for _ in range(3)]
            lines = await datagrams(sink, 3)
            listen_port = engine.listening_addresses()[0][1]
            await nothing_more(engine, sink, 0.1)  # one line per connection, at accept
        for line, client_port in zip(lines, client_ports):
            assert re.match(r"<134>\w{3} [ \d]\d \d\d:\d\d:\d\d fastproxy\[\d+\]: ", line), line
            assert line.endswith(f"Connect from 127.0.0.1:{client_port} to 127.0.0.1:{listen_port} (fe/TCP)")
