"""``log-format`` lines, written by fastproxy and by the real HAProxy for the same file and traffic.

One format runs on a lane where the compiled pump has lanes (the pump writes the line in C) and on
the Python path with the twin; the other holds a sample fetch, so it always runs through Python.  Both
proxies log to one UDP receiver; once the fields that differ by nature (ports the kernel picks, dates,
pids) are masked, the lines are the same."""

from __future__ import annotations

import asyncio
import math
import re
import shutil
import socket
from pathlib import Path

import pytest

from fastproxy.config import load
from fastproxy.pump import CPump
from fastproxy.server import LaneListener

from ..support import connect, echo, free_port, recv_exactly, running, serving

HAPROXY = shutil.which("haproxy")
needs_haproxy = pytest.mark.skipif(HAPROXY is None, reason="haproxy is not installed")

# What the two formats write (%Tw, %Tt and the like depend on timing and are left out; %Tc and %Th,
# 0 ms on loopback unless the machine is loaded, are held to the time the exchange took, then masked).
LANE_FORMAT = ("%ci|%cp|%fi|%fp|%bi|%bp|%si|%sp|%ft|%f|%b|%s|%B|%U|%Tc|%Th|%ts|%tsc|%ac|%fc|%bc|%sc|%rc|%sq|"
               "%bq|%ID|%ST|%{+Q}b|%{+X}ci|%{+X}fp|%hr|%sslv|%{+Q}sslv|%%|%T|%Tl|%Ts|%pid|%H|%{+Q}o%b %{-Q}s")
PYTHON_FORMAT = "%[src]|%[dst_port]|%ci|%fp|%si|%sp|%b/%s|%B|%U|%{+Q}ts|%ac/%fc/%bc/%sc/%rc"

CONFIG = """\
global
    log 127.0.0.1:{sink} local0

defaults
    mode tcp
    log global
    timeout connect 5s
    timeout client 30s
    timeout server 30s

frontend lane
    bind 127.0.0.1:{lane}
    log-format "{lane_format}"
    default_backend be

frontend python
    bind 127.0.0.1:{python}
    log-format "{python_format}"
    default_backend be

frontend uid
    bind 127.0.0.1:{uid}
    unique-id-format "%{{+X}}o%ci:%fp"
    log-format "%ID|%{{+Q}}ID|%ci"
    default_backend be

frontend sd
    bind 127.0.0.1:{sd}
    log 127.0.0.1:{sink} format rfc5424 local0
    log-format "%ci %b"
    log-format-sd "[x@1 a=\\"%ci\\" b=\\"%{{+E}}b\\"]"
    default_backend be

backend be
    server s1 127.0.0.1:{server}
"""

MASKS = [
    (re.compile(r"^<134>\w{3} [ \d]\d \d\d:\d\d:\d\d \w+\[\d+\]: "), "<134>DATE PROXY[PID]: "),
    (re.compile(r"^<134>1 \S+ - \w+ \d+ - "), "<134>1 DATE - PROXY PID - "),  # rfc5424
    (re.compile(r"\d\d/\w{3}/\d{4}:\d\d:\d\d:\d\d [+-]\d{4}"), "DATE"),
    (re.compile(r"\|\d{10}\|\d+\|"), "|SECONDS|PID|"),
]


FRONTENDS = ("lane", "python", "uid", "sd")
LINES = {"lane": 1, "python": 1, "uid": 1, "sd": 2}  # sd logs to the global target and to its own


def masked(line: str, ports: dict[str, int]) -> str:
    """The line with the kernel's choices (client and source ports) and the clock replaced by names."""
    for pattern, name in MASKS:
        line = pattern.sub(name, line)
    for name, port in ports.items():
        line = line.replace(f"|{port}|", f"|{name}|").replace(f"{port:04X}", name.upper())
    return line


async def exchange(port: int) -> tuple[dict[str, int], int]:
    """Five bytes each way: the kernel's ports of the connection, by name, and the milliseconds the
    connection lasted at most (what the proxy's %Tc and %Th are parts of)."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    sock = await connect(("127.0.0.1", port))
    client_port = sock.getsockname()[1]
    await loop.sock_sendall(sock, b"hello")
    assert await recv_exactly(sock, 5) == b"hello"
    sock.close()
    return {"client": client_port}, math.ceil((loop.time() - started) * 1000) + 1  # + a tick's rounding


# %Tc (the connection to the server) and %Th (the client's handshake) in the lane format's fields.
LANE_TIMERS = {LANE_FORMAT.split("|").index("%Tc"): "TC", LANE_FORMAT.split("|").index("%Th"): "TH"}


def timers_masked(line: str, frontend: str, lasted: int) -> str:
    """The lane line with %Tc and %Th named, once each is a count of milliseconds within the
    ``lasted`` ms the client saw the connection open (0 unless a loaded machine delayed a step)."""
    if frontend != "lane":
        return line
    fields = line.split("|")
    for index, name in LANE_TIMERS.items():
        assert fields[index].isdigit() and int(fields[index]) <= lasted, (name, fields[index], lasted, line)
        fields[index] = name
    return "|".join(fields)


async def lines(sink: socket.socket, count: int) -> list[str]:
    loop = asyncio.get_running_loop()
    return [(await asyncio.wait_for(loop.sock_recv(sink, 4096), 10)).decode() for _ in range(count)]


def source_ports(line: str) -> dict[str, int]:
    """%bp: the proxy's source port toward the server, the 6th field of the lane format."""
    fields = line.split("|")
    return {"source": int(fields[5])} if len(fields) > 5 and fields[5].isdigit() else {}


async def run_both(tmp_path: Path, pump_class, server: int) -> tuple[list[str], list[str], bool]:
    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sink.bind(("127.0.0.1", 0))
    sink.setblocking(False)
    ports = {**{name: free_port() for name in FRONTENDS}, "server": server}
    path = tmp_path / "log-format.cfg"
    path.write_text(CONFIG.format(sink=sink.getsockname()[1], lane_format=LANE_FORMAT.replace('"', '\\"'),
                                  python_format=PYTHON_FORMAT, **ports))
    names = dict(ports)
    try:
        ours = []
        async with running(load([str(path)]), pump_class) as engine:
            on_lane = any(isinstance(listener, LaneListener)
                          for listener in engine.state.frontends["lane"].listeners)
            for frontend in FRONTENDS:
                kernel, lasted = await exchange(ports[frontend])
                for line in sorted(await lines(sink, LINES[frontend])):
                    line = timers_masked(line, frontend, lasted)
                    ours.append(masked(line, {**names, **kernel, **source_ports(line)}))
        proc = await asyncio.create_subprocess_exec(HAPROXY, "-db", "-f", str(path),
                                                    stdout=asyncio.subprocess.DEVNULL,
                                                    stderr=asyncio.subprocess.DEVNULL)
        theirs = []
        try:
            for frontend in FRONTENDS:
                for _ in range(100):
                    try:
                        kernel, lasted = await exchange(ports[frontend])
                        break
                    except ConnectionRefusedError:
                        await asyncio.sleep(0.05)
                for line in sorted(await lines(sink, LINES[frontend])):
                    line = timers_masked(line, frontend, lasted)
                    theirs.append(masked(line, {**names, **kernel, **source_ports(line)}))
        finally:
            proc.terminate()
            await proc.wait()
        return ours, theirs, on_lane
    finally:
        sink.close()


@needs_haproxy
@pytest.mark.timeout(60)
async def test_log_format_lines_are_haproxys_on_lanes_and_through_python(tmp_path, pump_class):
    async with serving(echo) as server:
        ours, theirs, on_lane = await run_both(tmp_path, pump_class, server)
    assert on_lane == (pump_class is CPump)  # the C formatter is what the compiled pump ran
    assert ours == theirs
    assert all(line.endswith("\n") for line in ours)  # HAProxy ends each datagram with a line feed
    lane_line, python_line, uid_line, sd_line, _ = (line.rstrip("\n") for line in ours)
    assert lane_line.endswith('|lane|lane|be|s1|5|5|TC|TH|--|----|1|1|0|0|0|0|0|-|0|"be"|7F000001|LANE||-|'
                              '""|%|DATE|DATE|SECONDS|PID|vm|"be" s1'.replace("vm", socket.gethostname()))
    # +Q quotes no termination state, in HAProxy as here.
    assert python_line.endswith('127.0.0.1|python|127.0.0.1|python|127.0.0.1|server|be/s1|5|5|--|1/1/0/0/0')
    assert uid_line.endswith('7F000001:UID|"7F000001:UID"|127.0.0.1')  # unique-id-format, at its options
    assert sd_line == '<134>1 DATE - PROXY PID - [x@1 a="127.0.0.1" b="be"] 127.0.0.1 be'  # log-format-sd
