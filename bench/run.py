"""Side-by-side benchmark: a direct connection, HAProxy and fastproxy, in one run, with one config.

    python3 bench/run.py [--quick] [--rounds N] [--only bulk,latency,rps,cps,memory]
                         [--variants default,1thread,tuned,twin,scraped] [--out FILE] [--chart FILE.png]

Every scenario runs its targets in turn, ``--rounds`` times interleaved, and reports the median of
each, the proxy's CPU time per unit of work (per GB moved, per 1,000 requests or connections, from
/proc/PID/stat) and ratios; the machine is small and shared, so only ratios measured side by side mean
anything.  The targets: ``direct``; ``haproxy`` and ``fastproxy`` on the file a user writes (no
``tune.*``, no ``nbthread``: each proxy's defaults); with ``--variants``, the same two with
``nbthread 1`` (``1thread``), fastproxy with ``tune.pipesize 1048576`` (``tuned``), fastproxy's
pure-Python data plane, FASTPROXY_NO_EXTENSIONS=1 (``twin``), and the two proxies with a ``stats
socket`` and a ``mode http`` stats listener serving ``prometheus-exporter``, both read every second
while they are measured (``scraped``: ``show info`` and ``show stat`` on the socket, ``GET /metrics``
on the listener, by a bounded loop in this process).  Every copy of the file differs only in the bind
port and those lines.

Backends: iperf3 (bulk, both directions), sockperf (TCP ping-pong latency, every process pinned to one
CPU), nginx (wrk keep-alive requests/s and ``Connection: close`` connections/s), a sink that accepts and
holds connections (memory per idle proxied connection: the RSS growth of a freshly started proxy over N
open connections, read after ``malloc_trim(0)`` through gdb, N limited by the descriptor limit).  Every
process started here is stopped by its own pid.  bench/README.md has the method and the latest results.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import pathlib
import platform
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Callable, Iterator

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from tests.support import free_port  # noqa: E402  (below the ephemeral range: no outgoing connection takes it)


class Variant:
    """A proxy target: which program, with which global lines added to the shared file; ``scraped``
    adds a stats socket and a Prometheus listener that a ``Scraper`` reads every second."""

    def __init__(self, name: str, program: str, lines: tuple[str, ...] = (), scraped: bool = False) -> None:
        self.name, self.program, self.lines, self.scraped = name, program, lines, scraped


# What a user gets from an unchanged file, then the rows --variants adds.  Ratios pair them up below.
VARIANTS = {
    "default": (Variant("haproxy", "haproxy"), Variant("fastproxy", "fastproxy")),
    "1thread": (Variant("haproxy nbthread 1", "haproxy", ("nbthread 1",)),
                Variant("fastproxy nbthread 1", "fastproxy", ("nbthread 1",))),
    "tuned": (Variant("fastproxy tune.pipesize 1m", "fastproxy", ("tune.pipesize 1048576",)),),
    "twin": (Variant("fastproxy twin", "twin"),),
    "scraped": (Variant("haproxy scraped", "haproxy", scraped=True),
                Variant("fastproxy scraped", "fastproxy", scraped=True)),
    "ceiling": (Variant("C ceiling", "ceiling"),),
    "sockmap": (Variant("C sockmap", "sockmap"),),
}
RATIOS = (("fp/haproxy", "fastproxy", "haproxy"),
          ("fp/haproxy nbthread 1", "fastproxy nbthread 1", "haproxy nbthread 1"),
          ("compiled/twin", "fastproxy", "fastproxy twin"),
          ("fp/haproxy scraped", "fastproxy scraped", "haproxy scraped"),
          ("fp scraped/fp", "fastproxy scraped", "fastproxy"),
          ("ceiling/haproxy", "C ceiling", "haproxy"),
          ("fp/ceiling", "fastproxy", "C ceiling"),
          ("sockmap/haproxy", "C sockmap", "haproxy"))
SELECTED: list[Variant] = []  # set by main from --variants
EXTRA_LINES: tuple[str, ...] = ()  # --pipesize / --nbthread: lines every proxy gets


def targets() -> tuple[str, ...]:
    return ("direct", *(v.name for v in SELECTED))


CONFIG = """\
global
    maxconn {maxconn}
{extra}{log_global}
defaults
    mode tcp
    option splice-auto{log_defaults}
    timeout connect 5s
    timeout client 60s
    timeout server 60s

listen bench
    bind 127.0.0.1:{port}
    server s1 127.0.0.1:{backend}
"""

# What ``scraped`` adds: a stats socket (global) and HAProxy's exporter on a stats listener.
STATS_SOCKET = "stats socket {path} level admin"
METRICS_LISTENER = """
listen stats
    mode http
    bind 127.0.0.1:{port}
    timeout client 10s
    http-request use-service prometheus-exporter if {{ path /metrics }}
"""
MAX_SCRAPES = 3600  # a scraper's bound: an hour of scrapes, whatever happens to the run


class Scraper:
    """Reads a proxy's statistics every second, as a monitoring system would, until ``stop`` (or
    MAX_SCRAPES): ``show info`` and ``show stat`` on the stats socket, ``GET /metrics``.  Each read must
    answer in full; failures are counted and reported, never retried in a loop."""

    def __init__(self, name: str, socket_path: pathlib.Path, metrics_port: int) -> None:
        import threading
        self.name, self.socket_path, self.metrics_port = name, socket_path, metrics_port
        self.scrapes, self.failures, self.seconds = 0, 0, 0.0
        self.last_error = ""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"scraper {name}", daemon=True)
        self._thread.start()

    def _ask(self, request: str) -> bytes:
        with socket.socket(socket.AF_UNIX) as sock:
            sock.settimeout(5)
            sock.connect(str(self.socket_path))
            sock.sendall(request.encode() + b"\n")
            data = b""
            while chunk := sock.recv(65536):
                data += chunk
            return data

    def scrape(self) -> None:
        import urllib.request
        info, stat = self._ask("show info"), self._ask("show stat")
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as answer:
            metrics = answer.read()
        complete = (b"Uptime_sec" in info and stat.startswith(b"# pxname")
                    and b"haproxy_server_sessions" in metrics)
        if not complete:
            raise RuntimeError("an incomplete answer")

    def _run(self) -> None:
        for _ in range(MAX_SCRAPES):
            started = time.monotonic()
            try:
                self.scrape()
                self.scrapes += 1
            except Exception as exc:  # counted and reported: a proxy that fails its scrapes is a finding
                self.failures += 1
                self.last_error = repr(exc)
            self.seconds += time.monotonic() - started
            if self._stop.wait(max(0.0, 1.0 - (time.monotonic() - started))):
                return

    def stop(self) -> dict:
        self._stop.set()
        self._thread.join(10)
        return {"scrapes": self.scrapes, "failures": self.failures, "last_error": self.last_error,
                "mean_scrape_ms": round(self.seconds / max(self.scrapes + self.failures, 1) * 1000, 2)}


SCRAPES: dict[str, list[dict]] = {}  # variant -> what each of its scrapers saw, for the report

# A UDP syslog sink that reads and drops what both proxies log (with --log).
LOG_SINK = r"""
import socket, sys
sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
sock.bind(("127.0.0.1", 0))
print(sock.getsockname()[1], flush=True)
while True:
    sock.recv(65536)
"""
LOG_PORT = 0  # the sink's port when --log is given


def log_lines() -> dict[str, str]:
    """The config lines of --log: every connection logged in HAProxy's tcplog format over UDP."""
    if not LOG_PORT:
        return {"log_global": "", "log_defaults": ""}
    return {"log_global": f"    log 127.0.0.1:{LOG_PORT} local0\n",
            "log_defaults": "\n    log global\n    option tcplog"}


NGINX = """\
daemon off; master_process off; worker_processes 1;
pid {dir}/nginx.pid; error_log {dir}/error.log;
events {{ worker_connections 8192; }}
http {{ access_log off; server {{ listen 127.0.0.1:{port} backlog=4096; location / {{ return 200 "ok"; }} }} }}
"""

SINK = r"""
import resource, selectors, socket, sys
resource.setrlimit(resource.RLIMIT_NOFILE, (resource.getrlimit(resource.RLIMIT_NOFILE)[1],) * 2)
listener = socket.socket()
listener.bind(("127.0.0.1", 0))
listener.listen(8192)
listener.setblocking(False)
print(listener.getsockname()[1], flush=True)
selector = selectors.DefaultSelector()
selector.register(listener, selectors.EVENT_READ)
selector.register(sys.stdin, selectors.EVENT_READ)  # a line in: how many connections are held, out
held = 0
while True:  # hold every connection until its peer closes it
    for key, _ in selector.select():
        if key.fileobj is sys.stdin:
            if not sys.stdin.readline():
                raise SystemExit(0)
            print(held, flush=True)
        elif key.fileobj is listener:
            try:
                conn = listener.accept()[0]
            except BlockingIOError:
                continue
            conn.setblocking(False)
            selector.register(conn, selectors.EVENT_READ)
            held += 1
        else:
            try:
                data = key.fileobj.recv(4096)
            except BlockingIOError:
                continue
            except OSError:
                data = b""
            if not data:
                selector.unregister(key.fileobj)
                key.fileobj.close()
                held -= 1
"""

CLIENTS = r"""
import resource, socket, sys, time
resource.setrlimit(resource.RLIMIT_NOFILE, (resource.getrlimit(resource.RLIMIT_NOFILE)[1],) * 2)
port, count = int(sys.argv[1]), int(sys.argv[2])
held = [socket.create_connection(("127.0.0.1", port)) for _ in range(count)]
print("open", flush=True)
sys.stdin.read()
"""


def raise_fd_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def child_setup(cpus: set[int] | None) -> Callable[[], None]:
    """What a child does before exec: raise its descriptor limit and, given ``cpus``, pin itself there."""
    def setup() -> None:
        raise_fd_limit()
        if cpus is not None:
            os.sched_setaffinity(0, cpus)
    return setup


def wait_listening(port: int, proc: subprocess.Popen, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args[0]} exited early ({proc.returncode})")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on port {port}")


class Processes:
    """Everything started here, stopped by pid at the end."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen] = []

    def start(self, args: list[str], cpus: set[int] | None = None, **kwargs) -> subprocess.Popen:
        proc = subprocess.Popen(args, preexec_fn=child_setup(cpus), **kwargs)
        self.procs.append(proc)
        return proc

    def stop(self, proc: subprocess.Popen) -> None:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def stop_all(self) -> None:
        for proc in reversed(self.procs):
            self.stop(proc)


def build_reference(workdir: pathlib.Path, program: str) -> pathlib.Path:
    """One of the reference proxies in C, compiled once per run: bench/splice_ref.c (``ceiling``: the
    smallest splicing proxy) or bench/sockmap_ref.c (``sockmap``: the bytes redirected by BPF)."""
    source = {"ceiling": "splice_ref", "sockmap": "sockmap_ref"}[program]
    binary = workdir / source
    if not binary.exists():
        subprocess.run(["cc", "-O2", "-o", str(binary), str(ROOT / "bench" / f"{source}.c")], check=True)
    return binary


@contextlib.contextmanager
def proxies(procs: Processes, workdir: pathlib.Path, backend: int, *, maxconn: int,
            cpus: set[int] | None = None, only: tuple[str, ...] | None = None) -> Iterator[dict]:
    """Every selected proxy (or those named in ``only``) in front of ``backend``; yields the port of each
    target and, under "pids", the pid of each proxy."""
    ports: dict = {"direct": backend, "pids": {}}
    started = []
    scrapers: list[Scraper] = []
    try:
        for variant in SELECTED:
            if only is not None and variant.name not in only:
                continue
            port = free_port()
            name = f"{variant.name.replace(' ', '-')}-{backend}"
            cfg = workdir / f"{name}.cfg"
            lines, sections = (*EXTRA_LINES, *variant.lines), ""
            socket_path, metrics_port = workdir / f"{name}.sock", free_port()
            if variant.scraped:
                lines += (STATS_SOCKET.format(path=socket_path),)
                sections = METRICS_LISTENER.format(port=metrics_port)
            extra = "".join(f"    {line}\n" for line in lines)
            text = CONFIG.format(port=port, backend=backend, maxconn=maxconn, extra=extra, **log_lines())
            cfg.write_text(text + sections)
            env = dict(os.environ)
            if variant.program == "haproxy":
                args = ["haproxy", "-db", "-f", str(cfg)]
            elif variant.program in ("ceiling", "sockmap"):
                args = [str(build_reference(workdir, variant.program)), str(port), str(backend)]
            else:
                args = [sys.executable, "-m", "fastproxy", "run", "-q", "-f", str(cfg)]
                if variant.program == "twin":
                    env["FASTPROXY_NO_EXTENSIONS"] = "1"
            proc = procs.start(args, cpus=cpus, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
            started.append(proc)
            wait_listening(port, proc)
            if variant.scraped:
                wait_listening(metrics_port, proc)
                scrapers.append(Scraper(variant.name, socket_path, metrics_port))
            ports[variant.name] = port
            ports["pids"][variant.name] = proc.pid
        yield ports
    finally:
        for scraper in scrapers:
            SCRAPES.setdefault(scraper.name, []).append(scraper.stop())
        for proc in started:
            procs.stop(proc)


def cpu_seconds(pid: int) -> float:
    """utime + stime of every thread of ``pid``, in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


WARMUP_CONNECTIONS = 20


def run(args: list[str], timeout: float, cpus: set[int] | None = None) -> str:
    return subprocess.run(args, capture_output=True, text=True, timeout=timeout, check=True,
                          preexec_fn=child_setup(cpus)).stdout


# --- scenarios: each returns {target: [values per round]} --------------------------------------------

def interleave(rounds: int, ports: dict, measure: Callable[[int], tuple[float, float]],
               cpu_metric: str | None = None, cpu_scale: float = 1.0) -> dict:
    """``measure(port)`` gives (figure, units of work done); with ``cpu_metric``, the proxy's CPU time
    per unit (times ``cpu_scale``) is recorded beside the figure, under that name."""
    names = [t for t in targets() if t in ports]
    results: dict[str, list[float]] = {t: [] for t in names}
    cpu: dict[str, list[float]] = {t: [] for t in names if t != "direct"}
    for _ in range(rounds):
        for target in names:
            pid = ports["pids"].get(target)
            before = cpu_seconds(pid) if pid else 0.0
            value, units = measure(ports[target])
            if not value > 0:  # a tool that failed quietly must not pass for a measurement
                raise RuntimeError(f"{target}: measured {value}")
            results[target].append(value)
            if pid and cpu_metric:
                cpu[target].append((cpu_seconds(pid) - before) / units * cpu_scale)
    return {"values": results, "cpu_metric": cpu_metric, "cpu": cpu} if cpu_metric else {"values": results}


def bulk(procs: Processes, workdir: pathlib.Path, opts) -> dict:
    port = free_port()
    server = procs.start(["iperf3", "-s", "-p", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_listening(port, server)
    out = {}
    try:
        with proxies(procs, workdir, port, maxconn=4000) as ports:
            for direction, extra in (("client->server", []), ("server->client", ["-R"])):
                def measure(p: int) -> tuple[float, float]:
                    report = json.loads(run(["iperf3", "-c", "127.0.0.1", "-p", str(p), "-t",
                                             str(opts.seconds), "-J", *extra], timeout=opts.seconds + 30))
                    received = report["end"]["sum_received"]
                    return received["bits_per_second"] / 1e9, received["bytes"] / 1e9
                out[f"bulk {direction} (Gbit/s)"] = interleave(opts.rounds, ports, measure,
                                                               f"proxy CPU per GB, {direction} (s)")
    finally:
        procs.stop(server)
    return out


def latency(procs: Processes, workdir: pathlib.Path, opts) -> dict:
    """sockperf TCP ping-pong, one message in flight; the median one-way latency of each run.

    The sockperf server, both proxies and the sockperf client all run pinned to one CPU (``--latency-cpu``).
    On this kind of virtual machine waking a process on the other, idle vCPU is expensive (a direct
    ping-pong: ~6.4 us one way on one CPU, ~33 us across two), so unpinned figures measure where the
    scheduler happened to put each process rather than the proxy: direct came out slower than fastproxy.  On one CPU every target pays the
    same kind of wakeups, and the added latency is the proxy's own work per message.
    """
    cpus = {opts.latency_cpu}
    port = free_port()
    server = procs.start(["sockperf", "sr", "--tcp", "-i", "127.0.0.1", "-p", str(port)], cpus=cpus,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_listening(port, server)
    try:
        with proxies(procs, workdir, port, maxconn=4000, cpus=cpus) as ports:
            def measure(p: int) -> tuple[float, float]:
                text = run(["sockperf", "pp", "--tcp", "-i", "127.0.0.1", "-p", str(p), "-t",
                            str(opts.seconds)], timeout=opts.seconds + 30, cpus=cpus)
                return float(re.search(r"percentile 50\.000 =\s*([\d.]+)", text).group(1)), 1  # type: ignore[union-attr]
            return {"latency, half round trip, median (us)": interleave(opts.rounds, ports, measure)}
    finally:
        procs.stop(server)


def start_nginx(procs: Processes, workdir: pathlib.Path) -> tuple[subprocess.Popen, int]:
    port = free_port()
    ndir = workdir / "nginx"
    ndir.mkdir(exist_ok=True)
    (ndir / "nginx.conf").write_text(NGINX.format(dir=ndir, port=port))
    proc = procs.start(["nginx", "-c", str(ndir / "nginx.conf"), "-p", str(ndir)],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_listening(port, proc)
    return proc, port


def wrk(opts, headers: list[str]) -> Callable[[int], tuple[float, float]]:
    def measure(p: int) -> tuple[float, float]:
        text = run(["wrk", "-t1", "-c50", f"-d{opts.seconds}s", *headers, f"http://127.0.0.1:{p}/"],
                   timeout=opts.seconds + 30)
        errors = re.search(r"Socket errors: (.*)", text)
        if errors and "connect 0, read 0, write 0, timeout 0" not in errors.group(1):
            raise RuntimeError(f"wrk saw errors through port {p}: {errors.group(1)}")
        done = int(re.search(r"(\d+) requests in", text).group(1))  # type: ignore[union-attr]
        return float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1)), done  # type: ignore[union-attr]
    return measure


def requests(procs: Processes, workdir: pathlib.Path, opts) -> dict:
    nginx, port = start_nginx(procs, workdir)
    out = {}
    try:
        with proxies(procs, workdir, port, maxconn=4000) as ports:
            if "rps" in opts.only:
                out["keep-alive requests/s"] = interleave(opts.rounds, ports, wrk(opts, []),
                                                          "proxy CPU per 1,000 keep-alive requests (ms)", 1e6)
            if "cps" in opts.only:
                out["new connections/s (Connection: close)"] = interleave(
                    opts.rounds, ports, wrk(opts, ["-H", "Connection: close"]),
                    "proxy CPU per 1,000 connections (ms)", 1e6)
    finally:
        procs.stop(nginx)
    return out


def rss_kib(pid: int) -> int:
    """Resident memory of ``pid`` in KiB, counted page by page (smaps_rollup): VmRSS in /proc/PID/status
    comes from per-CPU counters that recent kernels only approximate."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Rss:"):
                    return int(line.split()[1])
    except FileNotFoundError:
        pass
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError(f"no RSS for {pid}")


def release_free_memory(pid: int) -> None:
    """Have ``pid`` hand its allocator's free pages back to the kernel: ``malloc_trim(0)``, called through gdb.

    Without it RSS growth says little about what connections hold: a fresh fastproxy carries megabytes of
    heap that its start-up freed but glibc kept resident, its pair table grows into them, and a realloc
    that frees the old table can even shrink RSS while connections open.
    """
    result = subprocess.run(["gdb", "-p", str(pid), "-batch", "-nx", "-ex", "call (int)malloc_trim(0)"],
                            capture_output=True, text=True, timeout=60)
    if not re.search(r"^\$1 = [01]$", result.stdout, re.MULTILINE):
        raise RuntimeError(f"gdb could not call malloc_trim in pid {pid}: {result.stderr.strip()[-300:]}")


def settled_rss_kib(pid: int, timeout: float = 10.0) -> int:
    """RSS once the allocator's free pages are released and two reads 0.5 s apart agree (or after
    ``timeout``)."""
    release_free_memory(pid)
    last = rss_kib(pid)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        time.sleep(0.5)
        now = rss_kib(pid)
        if now == last:
            return now
        release_free_memory(pid)
        last = rss_kib(pid)
    return last


def open_clients(procs: Processes, port: int, count: int) -> subprocess.Popen:
    clients = procs.start([sys.executable, "-c", CLIENTS, str(port), str(count)],
                          stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    if clients.stdout.readline().strip() != "open":  # type: ignore[union-attr]
        raise RuntimeError("the clients could not open their connections")
    return clients


def close_clients(procs: Processes, clients: subprocess.Popen) -> None:
    clients.stdin.close()  # type: ignore[union-attr]
    procs.stop(clients)


def wait_held(sink: subprocess.Popen, count: int, timeout: float = 30.0) -> int:
    """Wait until the sink holds exactly ``count`` connections; returns what it holds."""
    deadline = time.monotonic() + timeout
    while True:
        sink.stdin.write("\n")  # type: ignore[union-attr]
        sink.stdin.flush()  # type: ignore[union-attr]
        held = int(sink.stdout.readline())  # type: ignore[union-attr]
        if held == count or time.monotonic() > deadline:
            return held
        time.sleep(0.1)


def memory(procs: Processes, workdir: pathlib.Path, opts) -> dict:
    """RSS growth of each proxy while it holds ``opts.idle`` idle connections, per connection.

    Every round starts both proxies afresh: a process that has held connections before keeps the freed
    memory (allocator arenas, HAProxy's pools, fastproxy's pair table) and would hold the next ones for
    nothing.  A few connections opened and closed first page in the code paths, so that only what grows
    with the number of connections is counted.  RSS is read after ``malloc_trim(0)`` in the proxy (see
    ``release_free_memory``), once the sink holds every connection and the proxy holds both sockets of
    each.  Kernel memory (socket buffers) is not counted: it is the same for both proxies.
    """
    sink = procs.start([sys.executable, "-c", SINK], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    port = int(sink.stdout.readline())  # type: ignore[union-attr]
    count = opts.idle
    out: dict[str, list[float]] = {"haproxy": [], "fastproxy": []}  # the default files only
    try:
        for _ in range(opts.rounds):
            # HAProxy wants about 2.5 descriptors per maxconn from its limit: keep maxconn where it starts.
            with proxies(procs, workdir, port, maxconn=count + 100, only=("haproxy", "fastproxy")) as ports:
                for target in ("haproxy", "fastproxy"):
                    pid = ports["pids"][target]
                    close_clients(procs, open_clients(procs, ports[target], WARMUP_CONNECTIONS))
                    if wait_held(sink, 0) != 0:
                        raise RuntimeError(f"{target}: the warm-up connections were not closed")
                    before = settled_rss_kib(pid)
                    clients = open_clients(procs, ports[target], count)
                    try:
                        held = wait_held(sink, count)
                        if held != count:
                            raise RuntimeError(f"{target}: {held} of {count} connections reached the sink")
                        sockets = sum(os.readlink(f"/proc/{pid}/fd/{fd}").startswith("socket:")
                                      for fd in os.listdir(f"/proc/{pid}/fd"))
                        if sockets < 2 * count:
                            raise RuntimeError(f"{target}: pid {pid} holds {sockets} sockets, not 2 x {count}")
                        grown = settled_rss_kib(pid) - before
                    finally:
                        close_clients(procs, clients)
                    if wait_held(sink, 0) != 0:
                        raise RuntimeError(f"{target}: connections still held after the clients closed")
                    out[target].append(max(grown, 0) * 1024 / count)
    finally:
        sink.stdin.close()  # type: ignore[union-attr]
        procs.stop(sink)
    return {f"memory per idle connection, {count} open (bytes)": {"values": out}}


# --- report --------------------------------------------------------------------------------------------

LOWER_IS_BETTER = ("latency", "memory", "proxy CPU")


def summarize(results: dict) -> list[dict]:
    """One row per figure (and per CPU figure): the median of each target and the ratios of RATIOS.
    For latency the ratios compare the latency each proxy adds to the direct one."""
    rows = []
    for metric, measured in results.items():
        figures = [(metric, measured["values"])]
        if measured.get("cpu_metric"):
            figures.append((measured["cpu_metric"], measured["cpu"]))
        for name, values in figures:
            med = {t: statistics.median(v) for t, v in values.items() if v}
            row: dict = {"metric": name, **{t: round(m, 3 if name.startswith("proxy CPU per GB") else 2)
                                            for t, m in med.items()}}
            if name.startswith("latency") and "direct" in med:
                base = med["direct"]
                added = {t: m - base for t, m in med.items() if t != "direct"}
                row["added"] = {t: round(a, 2) for t, a in added.items()}
                med = added
            row["ratios"] = {label: round(med[a] / med[b], 2)
                             for label, a, b in RATIOS if a in med and b in med and med[b] > 0}
            rows.append(row)
    return rows


def print_table(rows: list[dict]) -> None:
    names = [t for t in targets() if any(t in row for row in rows)]
    labels = [label for label, _, _ in RATIOS if any(label in row["ratios"] for row in rows)]
    widths = [max(len(n), 7) + 2 for n in names + labels]
    print("\n" + f"{'metric':46}" + "".join(f"{n:>{w}}" for n, w in zip(names + labels, widths)))
    for row in rows:
        cells = [row.get(n, "-") for n in names] + [row["ratios"].get(lb, "-") for lb in labels]
        print(f"{row['metric'][:46]:46}" + "".join(f"{c:>{w}}" for c, w in zip(cells, widths)))
        if "added" in row:
            cells = [row["added"].get(n, "-") for n in names]
            print(f"{'  added to the direct latency (us)':46}" + "".join(f"{c:>{w}}" for c, w in zip(cells, widths)))


def draw_chart(rows: list[dict], path: str) -> None:
    """The table as bar charts, one panel per figure, one bar per target; each panel's title says
    whether higher or lower is better and gives the fp/haproxy ratio."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    names = [t for t in targets() if any(t in row for row in rows)]
    colors = {"direct": "#999999", "haproxy": "#1f77b4", "haproxy nbthread 1": "#9ecae1",
              "fastproxy": "#d62728", "fastproxy nbthread 1": "#fc9272",
              "fastproxy tune.pipesize 1m": "#ff7f0e", "fastproxy twin": "#2ca02c", "C ceiling": "#7f7f7f",
              "C sockmap": "#bcbd22"}
    panels = [row for row in rows]
    columns = 3
    lines = (len(panels) + columns - 1) // columns
    fig, axes = plt.subplots(lines, columns, figsize=(6 * columns, 3.6 * lines), squeeze=False)
    for ax, row in zip(axes.flat, panels):
        shown = [n for n in names if n in row]
        values = [row["added"][n] if "added" in row and n != "direct" else row[n] for n in shown]
        bars = ax.bar(range(len(shown)), values, color=[colors.get(n, "#555555") for n in shown])
        ax.bar_label(bars, fmt="%.3g", fontsize=7)
        ax.set_xticks(range(len(shown)), [n.replace("fastproxy", "fp").replace(" ", "\n", 1) for n in shown],
                      fontsize=7)
        better = "lower" if row["metric"].startswith(LOWER_IS_BETTER) else "higher"
        ratio = row["ratios"].get("fp/haproxy")
        title = row["metric"] + (" (added)" if "added" in row else "")
        ax.set_title(f"{title}\n{better} is better" + (f"; fp/haproxy {ratio}" if ratio is not None else ""),
                     fontsize=8)
        ax.tick_params(axis="y", labelsize=7)
    for ax in list(axes.flat)[len(panels):]:
        ax.set_visible(False)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> int:
    global SELECTED, EXTRA_LINES
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=5, help="duration of each timed run")
    parser.add_argument("--quick", action="store_true", help="1 round of 2 s runs, 1000 idle connections")
    parser.add_argument("--only", default="bulk,latency,rps,cps,memory")
    parser.add_argument("--variants", default="default,1thread,tuned,twin",
                        help="targets beside direct: default (both proxies on an unchanged file), 1thread "
                             "(both with nbthread 1), tuned (fastproxy with tune.pipesize 1048576), twin "
                             "(fastproxy's Python data plane), scraped (both with a stats socket and a "
                             "Prometheus listener, read every second), ceiling (bench/splice_ref.c: "
                             "the smallest C proxy that splices through 1 MiB pipes, what the machine allows), sockmap "
                             "(bench/sockmap_ref.c: a C proxy whose bytes a BPF sockmap redirects in the kernel)")
    parser.add_argument("--idle", type=int, default=7000,
                        help="idle connections for the memory scenario: with a descriptor limit of 20000, "
                             "HAProxy starts with maxconn up to about 7700")
    parser.add_argument("--latency-cpu", type=int, default=0,
                        help="the CPU that the latency scenario pins every process to")
    parser.add_argument("--pipesize", type=int, default=0, help="tune.pipesize for every proxy (0: not set)")
    parser.add_argument("--nbthread", type=int, default=0, help="nbthread for every proxy (0: not set)")
    parser.add_argument("--log", action="store_true",
                        help="both proxies log every connection (option tcplog) to a UDP syslog sink")
    parser.add_argument("--out", help="write the results as JSON here")
    parser.add_argument("--chart", help="draw the table as a bar chart into this PNG (needs matplotlib)")
    opts = parser.parse_args()
    if opts.quick:
        opts.rounds, opts.seconds, opts.idle = 1, 2, 1000
    opts.only = set(opts.only.split(","))
    variants = opts.variants.split(",")
    if "default" not in variants or not set(variants) <= set(VARIANTS):
        parser.error(f"--variants: 'default' and any of {', '.join(VARIANTS)}")
    SELECTED = [v for name in VARIANTS if name in variants for v in VARIANTS[name]]
    EXTRA_LINES = tuple(([f"nbthread {opts.nbthread}"] if opts.nbthread else [])
                        + ([f"tune.pipesize {opts.pipesize}"] if opts.pipesize else []))
    for tool in ("haproxy", "iperf3", "sockperf", "nginx", "wrk") + (("gdb",) if "memory" in opts.only else ()):
        if shutil.which(tool) is None:
            parser.error(f"{tool} is not installed")
    if opts.chart:
        import matplotlib  # noqa: F401  (fail now rather than after the run)
    raise_fd_limit()
    started = time.time()
    load = os.getloadavg()
    procs = Processes()
    results: dict = {}
    with tempfile.TemporaryDirectory(prefix="fastproxy-bench-") as tmp:
        workdir = pathlib.Path(tmp)
        try:
            if opts.log:
                global LOG_PORT
                sink = procs.start([sys.executable, "-c", LOG_SINK], stdout=subprocess.PIPE, text=True)
                LOG_PORT = int(sink.stdout.readline())
            if "bulk" in opts.only:
                results |= bulk(procs, workdir, opts)
            if "latency" in opts.only:
                results |= latency(procs, workdir, opts)
            if opts.only & {"rps", "cps"}:
                results |= requests(procs, workdir, opts)
            if "memory" in opts.only:
                results |= memory(procs, workdir, opts)
        finally:
            procs.stop_all()
    rows = summarize(results)
    print_table(rows)
    for name, runs in SCRAPES.items():
        scrapes, failures = sum(r["scrapes"] for r in runs), sum(r["failures"] for r in runs)
        mean = statistics.mean(r["mean_scrape_ms"] for r in runs)
        print(f"{name}: {scrapes} scrapes, {failures} failed, {mean:.1f} ms each on average")
    if opts.chart:
        draw_chart(rows, opts.chart)
    report = {
        "command": " ".join([sys.executable, *sys.argv]),
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "seconds": round(time.time() - started),
        "load_average_at_start": load,
        "nproc": os.cpu_count(),
        "affinity": len(os.sched_getaffinity(0)),
        "kernel": platform.release(),
        "haproxy": run(["haproxy", "-v"], 10).splitlines()[0],
        "fastproxy": run([sys.executable, "-m", "fastproxy", "version"], 10).strip(),
        "rounds": opts.rounds, "run_seconds": opts.seconds, "extra_lines": list(EXTRA_LINES),
        "variants": {v.name: list(v.lines) for v in SELECTED}, "log": opts.log,
        "idle_connections": opts.idle, "latency_cpu": opts.latency_cpu,
        "summary": rows, "raw": results, "scrapes": SCRAPES,
    }
    if opts.out:
        pathlib.Path(opts.out).parent.mkdir(parents=True, exist_ok=True)
        pathlib.Path(opts.out).write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
