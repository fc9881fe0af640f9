"""Torture, fastproxy beside HAProxy on the same file: what clients see when things go wrong.

    python3 bench/torture.py [--only kill,sigterm,descriptors,soak] [--soak-seconds 60] [--out FILE]

Every scenario runs against each target in turn (``--targets``, default haproxy,fastproxy), with one
configuration per scenario that differs only in ports, and clients that check every byte: a stream
sends random bytes and compares what comes back with what it sent (SHA-256 of the whole, and of the
prefix when it was cut), so a stream ends ``intact``, ``cut`` (a clean error: a reset or an early EOF
after correct bytes), ``wrong`` (bytes that were never sent, or out of order: must stay 0) or ``hung``.

- ``kill``: three echo backends behind ``retries``/``option redispatch``/``check``; streams run while a
  backend process is SIGKILLed every ``--kill-every`` s and started again on its port half a second
  later; then fresh streams, which must all be intact (recovered).
- ``sigterm``: short connections and streams, then SIGTERM to the proxy: how long it takes to exit,
  its exit status, and what the connections in flight saw.
- ``descriptors``: the proxy runs with ``ulimit -n`` at ``--nofile`` (soft and hard) and no maxconn;
  ``--hold`` clients are opened and held (more than the limit has room for), fresh clients probe
  meanwhile; then the held ones close and fresh clients must be served again (how soon).
- ``soak``: ``--soak-seconds`` of mixed traffic (short connections, streams, idle clients opened and
  closed in waves of 200); the proxy's resident memory and descriptor count after a 5 s warm-up of
  the same traffic and at the end, each read once every connection has closed.

Every loop is bounded in count and time; every process started here is stopped by its own pid.
bench/README.md has the latest run.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import pathlib
import resource
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any, Callable, Optional

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from flood import raise_descriptor_limit  # noqa: E402
from reload import ECHO  # noqa: E402
from run import Processes, free_port, rss_kib, wait_listening  # noqa: E402
from tests.support import exchange_line  # noqa: E402  (run.py puts the repository on the path)

DEFAULTS = """\
defaults
    mode tcp
    timeout connect 1s
    timeout client 30s
    timeout server 30s
"""

KILL_CONFIG = """\
global
    maxconn 4000

{defaults}
    retries 2
    option redispatch

listen torture
    bind 127.0.0.1:{port}
    balance {balance}
{servers}
"""

SIMPLE_CONFIG = """\
global
{global_lines}
{defaults}
listen torture
    bind 127.0.0.1:{port}
    balance {balance}
    server echo 127.0.0.1:{backend}
"""

STREAM_BYTES = 1 << 20
STREAM_CHUNK = 32 << 10


class Outcomes:
    """Counts of what clients saw, under a lock (threads share one)."""

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}
        self.lock = threading.Lock()

    def add(self, key: str) -> None:
        with self.lock:
            self.counts[key] = self.counts.get(key, 0) + 1

    def get(self, key: str) -> int:
        return self.counts.get(key, 0)


def stream(port: int, outcomes: Outcomes, size: int = STREAM_BYTES, seconds: float = 1.0) -> str:
    """Send ``size`` random bytes over about ``seconds`` while reading the echo; what the client saw."""
    payload = os.urandom(size)
    received = bytearray()
    try:
        sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    except OSError:
        outcomes.add("stream refused")
        return "refused"
    failure: list[BaseException] = []

    def read() -> None:
        try:
            while chunk := sock.recv(65536):
                received.extend(chunk)
        except OSError as exc:
            failure.append(exc)

    reader = threading.Thread(target=read, daemon=True)
    with sock:
        reader.start()
        pieces = max(1, size // STREAM_CHUNK)
        try:
            for i in range(pieces):
                sock.sendall(payload[i * STREAM_CHUNK:(i + 1) * STREAM_CHUNK])
                time.sleep(seconds / pieces)
            sock.shutdown(socket.SHUT_WR)
        except OSError as exc:
            failure.append(exc)
        reader.join(15)
        hung = reader.is_alive()
        if hung:
            sock.shutdown(socket.SHUT_RDWR)  # the reader's recv returns; a bounded wait
            reader.join(5)
    got = bytes(received)
    if hashlib.sha256(got).digest() != hashlib.sha256(payload[:len(got)]).digest():
        outcome = "wrong"
    elif len(got) == size and not failure:
        outcome = "intact"
    elif hung and not failure:
        outcome = "hung"
    else:
        outcome = "cut"
    outcomes.add(f"stream {outcome}")
    return outcome


def short(port: int, outcomes: Outcomes) -> str:
    """Connect, a line there and back, close."""
    line = b"%d %s\n" % (time.monotonic_ns(), b"s" * 80)
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            data = exchange_line(sock, line)
        outcome = "complete" if data == line else ("wrong" if data and not line.startswith(data) else "cut")
    except ConnectionRefusedError:
        outcome = "refused"
    except socket.timeout:
        outcome = "hung"
    except OSError:
        outcome = "cut"
    outcomes.add(f"short {outcome}")
    return outcome


class Traffic:
    """Threads that run ``work(port, outcomes)`` in a loop until ``stop`` (or ``limit`` seconds), each at
    most ``rate`` times a second."""

    def __init__(self, port: int, outcomes: Outcomes, work: Callable[[int, Outcomes], Any], threads: int,
                 rate: float = 0.0, limit: float = 300.0) -> None:
        self.done = threading.Event()
        self.deadline = time.monotonic() + limit

        def loop() -> None:
            while not self.done.is_set() and time.monotonic() < self.deadline:
                started = time.monotonic()
                work(port, outcomes)
                if rate:
                    self.done.wait(max(0.0, 1 / rate - (time.monotonic() - started)))

        self.threads = [threading.Thread(target=loop, daemon=True) for _ in range(threads)]
        for thread in self.threads:
            thread.start()

    def stop(self) -> None:
        self.done.set()
        for thread in self.threads:
            thread.join(60)


def start_echo(procs: Processes, port: int = 0) -> tuple[subprocess.Popen, int]:
    echo = procs.start([sys.executable, "-c", ECHO, str(port)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                       text=True)
    return echo, int(echo.stdout.readline())  # type: ignore[union-attr]


def start_proxy(procs: Processes, workdir: pathlib.Path, target: str, text: str, port: int,
                nofile: Optional[int] = None) -> subprocess.Popen:
    cfg = workdir / f"{target}-{port}.cfg"
    cfg.write_text(text)
    log = open(workdir / f"{target}-{port}.log", "w")
    args = (["haproxy", "-db", "-f", str(cfg)] if target == "haproxy"
            else [sys.executable, "-m", "fastproxy", "run", "-q", "-f", str(cfg)])
    if nofile is None:
        proc = procs.start(args, stdout=log, stderr=log)
    else:
        def limited() -> None:
            resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))
        proc = subprocess.Popen(args, stdout=log, stderr=log, preexec_fn=limited)
        procs.procs.append(proc)
    wait_listening(port, proc)
    return proc


def start_behind_echo(procs: Processes, workdir: pathlib.Path, target: str, opts, global_lines: str = "",
                      nofile: Optional[int] = None) -> tuple[subprocess.Popen, subprocess.Popen, int]:
    """An echo backend and the proxy on the one-server file in front of it: (echo, proxy, port)."""
    echo, backend = start_echo(procs)
    port = free_port()
    text = SIMPLE_CONFIG.format(global_lines=global_lines, defaults=DEFAULTS, port=port, backend=backend,
                                balance=opts.balance)
    return echo, start_proxy(procs, workdir, target, text, port, nofile=nofile), port


def descriptors(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def stream_outcomes(outcomes: Outcomes, prefix: str = "stream") -> dict:
    return {f"{prefix} {k}": outcomes.get(f"stream {k}")
            for k in ("intact", "cut", "wrong", "hung", "refused")}


# --- scenarios: each returns {figure: value} for one target ----------------------------------------------

def kill(procs: Processes, workdir: pathlib.Path, target: str, opts) -> dict:
    backends = [start_echo(procs) for _ in range(3)]
    ports = [port for _, port in backends]
    servers = "\n".join(f"    server e{i} 127.0.0.1:{p} check inter 500ms fall 2 rise 1"
                        for i, p in enumerate(ports))
    port = free_port()
    proxy = start_proxy(procs, workdir, target, KILL_CONFIG.format(
        defaults=DEFAULTS, port=port, servers=servers, balance=opts.balance), port)
    outcomes, killed = Outcomes(), 0
    try:
        traffic = Traffic(port, outcomes, stream, threads=opts.streams)
        deadline = time.monotonic() + opts.kill_seconds
        while time.monotonic() < deadline:
            time.sleep(opts.kill_every)
            victim = killed % len(backends)
            proc, victim_port = backends[victim]
            proc.kill()
            proc.wait()
            killed += 1
            time.sleep(0.5)
            backends[victim] = start_echo(procs, victim_port)
        traffic.stop()
        time.sleep(2.0)  # checks see every backend up again
        after = Outcomes()
        for _ in range(opts.after):
            stream(port, after, size=256 << 10, seconds=0.1)
        alive = proxy.poll() is None
    finally:
        procs.stop(proxy)
        for proc, _ in backends:
            procs.stop(proc)
    return {"backends killed": killed, **stream_outcomes(outcomes),
            f"fresh streams intact after (of {opts.after})": after.get("stream intact"), "proxy alive": alive}


def sigterm(procs: Processes, workdir: pathlib.Path, target: str, opts) -> dict:
    echo, proxy, port = start_behind_echo(procs, workdir, target, opts, "    maxconn 4000")
    outcomes = Outcomes()
    try:
        shorts = Traffic(port, outcomes, short, threads=4, rate=100)
        streams = Traffic(port, outcomes, lambda p, o: stream(p, o, seconds=3.0), threads=opts.streams)
        time.sleep(2.0)
        proxy.send_signal(signal.SIGTERM)
        asked = time.monotonic()
        try:
            code: Optional[int] = proxy.wait(60)
        except subprocess.TimeoutExpired:
            code = None
        exited = time.monotonic() - asked
        shorts.stop()
        streams.stop()
    finally:
        procs.stop(proxy)
        procs.stop(echo)
    return {"exit after SIGTERM (s)": round(exited, 2), "exit status": code,
            **{f"short {k}": outcomes.get(f"short {k}") for k in ("complete", "cut", "wrong", "refused")},
            **stream_outcomes(outcomes)}


def descriptor_exhaustion(procs: Processes, workdir: pathlib.Path, target: str, opts) -> dict:
    echo, proxy, port = start_behind_echo(procs, workdir, target, opts, nofile=opts.nofile)
    held: list[socket.socket] = []
    served = waiting = failed = 0
    probes = Outcomes()
    try:
        for _ in range(opts.hold):
            try:
                sock = socket.create_connection(("127.0.0.1", port), timeout=5)
                held.append(sock)
                sock.sendall(b"h")
                sock.settimeout(0.3)
                if sock.recv(1) == b"h":
                    served += 1
                else:
                    failed += 1
            except socket.timeout:
                waiting += 1  # accepted by the kernel, not (yet) by the proxy
            except OSError:
                failed += 1
        for _ in range(20):  # fresh clients while the held ones hold every descriptor
            short(port, probes)
        for sock in held:
            sock.close()
        held.clear()
        closed = time.monotonic()
        recovered = None
        for _ in range(200):
            if short(port, Outcomes()) == "complete":
                recovered = time.monotonic() - closed
                break
            time.sleep(0.05)
        after = Outcomes()
        for _ in range(50):
            short(port, after)
        alive = proxy.poll() is None
    finally:
        for sock in held:
            sock.close()
        procs.stop(proxy)
        procs.stop(echo)
    return {f"held clients served (of {opts.hold})": served, "held clients left waiting": waiting,
            "held clients cut": failed, "fresh while exhausted: served (of 20)": probes.get("short complete"),
            "fresh while exhausted: wrong": probes.get("short wrong"),
            "served again after (s)": None if recovered is None else round(recovered, 2),
            "fresh after: served (of 50)": after.get("short complete"), "proxy alive": alive}


def soak(procs: Processes, workdir: pathlib.Path, target: str, opts) -> dict:
    echo, proxy, port = start_behind_echo(procs, workdir, target, opts, "    maxconn 4000")
    outcomes = Outcomes()
    idle_opened = 0

    def idle_wave(p: int, o: Outcomes) -> None:
        nonlocal idle_opened
        socks = []
        for _ in range(200):
            try:
                socks.append(socket.create_connection(("127.0.0.1", p), timeout=5))
            except OSError:
                o.add("idle refused")
        idle_opened += len(socks)
        time.sleep(3.0)
        for sock in socks:
            sock.close()

    def mixed(seconds: float, into: Outcomes) -> None:
        traffic = [Traffic(port, into, short, threads=2, rate=100, limit=seconds + 30),
                   Traffic(port, into, stream, threads=2, limit=seconds + 30),
                   Traffic(port, into, idle_wave, threads=1, limit=seconds + 30)]
        time.sleep(seconds)
        for t in traffic:
            t.stop()
        time.sleep(2.0)  # every connection closed: both readings see the proxy idle after traffic

    try:
        mixed(5.0, Outcomes())  # a warm-up: pools, tables and caches at their working size
        rss_start, fds_start = rss_kib(proxy.pid), descriptors(proxy.pid)
        idle_opened = 0
        mixed(opts.soak_seconds, outcomes)
        rss_end, fds_end = rss_kib(proxy.pid), descriptors(proxy.pid)
        alive = proxy.poll() is None
    finally:
        procs.stop(proxy)
        procs.stop(echo)
    return {"soak seconds": opts.soak_seconds, "short complete": outcomes.get("short complete"),
            "short wrong": outcomes.get("short wrong"), "short refused or cut": outcomes.get("short refused")
            + outcomes.get("short cut"), **stream_outcomes(outcomes), "idle clients opened": idle_opened,
            "RSS after warm-up (KiB)": rss_start, "RSS at the end (KiB)": rss_end,
            "RSS growth (KiB)": rss_end - rss_start, "descriptors after warm-up": fds_start,
            "descriptors at the end": fds_end, "proxy alive": alive}


SCENARIOS = {"kill": kill, "sigterm": sigterm, "descriptors": descriptor_exhaustion, "soak": soak}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", default=",".join(SCENARIOS))
    parser.add_argument("--targets", default="haproxy,fastproxy")
    parser.add_argument("--streams", type=int, default=4, help="concurrent streams")
    parser.add_argument("--kill-seconds", type=float, default=12.0)
    parser.add_argument("--kill-every", type=float, default=2.0)
    parser.add_argument("--after", type=int, default=20, help="fresh streams after the kills")
    parser.add_argument("--nofile", type=int, default=256, help="ulimit -n of the proxy (descriptors)")
    parser.add_argument("--hold", type=int, default=300, help="clients held (descriptors)")
    parser.add_argument("--soak-seconds", type=float, default=60.0)
    parser.add_argument("--balance", default="roundrobin",
                        help="balance of every file: roundrobin keeps fastproxy's connections in the "
                             "pump's lanes, leastconn in Python")
    parser.add_argument("--logs", help="keep the proxies' files and output in this directory")
    parser.add_argument("--out", help="write the results as JSON here")
    opts = parser.parse_args()
    raise_descriptor_limit(16384)
    targets = opts.targets.split(",")
    results: dict[str, dict[str, dict]] = {}
    procs = Processes()
    with tempfile.TemporaryDirectory(prefix="fastproxy-torture-") as tmp:
        if opts.logs:
            tmp = opts.logs
            pathlib.Path(tmp).mkdir(parents=True, exist_ok=True)
        try:
            for name in opts.only.split(","):
                for target in targets:
                    results.setdefault(name, {})[target] = SCENARIOS[name](
                        procs, pathlib.Path(tmp), target, opts)
                    print(name, target, json.dumps(results[name][target]), flush=True)
        finally:
            procs.stop_all()
    width = max(len(t) for t in targets) + 4
    for name, by_target in results.items():
        print(f"\n{name:52}" + "".join(f"{t:>{width}}" for t in targets))
        for key in by_target[targets[0]]:
            print(f"  {key:50}" + "".join(f"{str(by_target[t].get(key)):>{width}}" for t in targets))
    if opts.out:
        pathlib.Path(opts.out).write_text(json.dumps({"command": " ".join([sys.executable, *sys.argv]),
                                                      "date": time.strftime("%Y-%m-%dT%H:%M:%S"),
                                                      "results": results}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
