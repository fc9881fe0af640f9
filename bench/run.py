"""Side-by-side benchmark: a direct connection, HAProxy and fastproxy, in one run, with one config.

    python3 bench/run.py [--quick] [--rounds N] [--only bulk,latency,rps,cps,memory] [--out FILE]

Every scenario runs its targets in turn (direct, haproxy, fastproxy), ``--rounds`` times interleaved,
and reports the median of each and the ratio fastproxy / HAProxy; the machine is small and shared, so
only ratios measured side by side mean anything.  Both proxies read the same HAProxy-format file
(``nbthread 1``, ``option splice-auto``); the two copies differ only in the bind port.

Backends: iperf3 (bulk, both directions), sockperf (TCP ping-pong latency), nginx (wrk keep-alive
requests/s and ``Connection: close`` connections/s), a sink that accepts and holds connections (memory
per idle proxied connection: the proxy's RSS growth over N open connections, N limited by the
descriptor limit).  Every process started here is stopped by its own pid.
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
TARGETS = ("direct", "haproxy", "fastproxy")

CONFIG = """\
global
    nbthread 1
    maxconn {maxconn}
    tune.pipesize {pipesize}

defaults
    mode tcp
    option splice-auto
    timeout connect 5s
    timeout client 60s
    timeout server 60s

listen bench
    bind 127.0.0.1:{port}
    server s1 127.0.0.1:{backend}
"""

NGINX = """\
daemon off; master_process off; worker_processes 1;
pid {dir}/nginx.pid; error_log {dir}/error.log;
events {{ worker_connections 8192; }}
http {{ access_log off; server {{ listen 127.0.0.1:{port} backlog=4096; location / {{ return 200 "ok"; }} }} }}
"""

SINK = r"""
import resource, selectors, socket
resource.setrlimit(resource.RLIMIT_NOFILE, (resource.getrlimit(resource.RLIMIT_NOFILE)[1],) * 2)
listener = socket.socket()
listener.bind(("127.0.0.1", 0))
listener.listen(8192)
listener.setblocking(False)
print(listener.getsockname()[1], flush=True)
selector = selectors.DefaultSelector()
selector.register(listener, selectors.EVENT_READ)
while True:  # hold every connection until its peer closes it
    for key, _ in selector.select():
        if key.fileobj is listener:
            try:
                conn = listener.accept()[0]
            except BlockingIOError:
                continue
            conn.setblocking(False)
            selector.register(conn, selectors.EVENT_READ)
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
"""

CLIENTS = r"""
import resource, socket, sys, time
resource.setrlimit(resource.RLIMIT_NOFILE, (resource.getrlimit(resource.RLIMIT_NOFILE)[1],) * 2)
port, count = int(sys.argv[1]), int(sys.argv[2])
held = [socket.create_connection(("127.0.0.1", port)) for _ in range(count)]
print("open", flush=True)
sys.stdin.read()
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def raise_fd_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


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

    def start(self, args: list[str], **kwargs) -> subprocess.Popen:
        proc = subprocess.Popen(args, preexec_fn=raise_fd_limit, **kwargs)
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


@contextlib.contextmanager
def proxies(procs: Processes, workdir: pathlib.Path, backend: int, *, maxconn: int,
            pipesize: int) -> Iterator[dict[str, int]]:
    """HAProxy and fastproxy in front of ``backend``; yields the port of each target."""
    ports = {"direct": backend, "haproxy": free_port(), "fastproxy": free_port()}
    started = []
    for name in ("haproxy", "fastproxy"):
        cfg = workdir / f"{name}-{backend}.cfg"
        cfg.write_text(CONFIG.format(port=ports[name], backend=backend, maxconn=maxconn, pipesize=pipesize))
        if name == "haproxy":
            args = ["haproxy", "-db", "-f", str(cfg)]
        else:
            args = [sys.executable, "-m", "fastproxy", "run", "-q", "-f", str(cfg)]
        proc = procs.start(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_listening(ports[name], proc)
        started.append(proc)
    try:
        yield ports | {"pids": {"haproxy": started[0].pid, "fastproxy": started[1].pid}}  # type: ignore
    finally:
        for proc in started:
            procs.stop(proc)


def run(args: list[str], timeout: float) -> str:
    return subprocess.run(args, capture_output=True, text=True, timeout=timeout, check=True).stdout


# --- scenarios: each returns {target: [values per round]} --------------------------------------------

def interleave(rounds: int, ports: dict, measure: Callable[[int], float]) -> dict[str, list[float]]:
    results: dict[str, list[float]] = {t: [] for t in TARGETS}
    for _ in range(rounds):
        for target in TARGETS:
            value = measure(ports[target])
            if not value > 0:  # a tool that failed quietly must not pass for a measurement
                raise RuntimeError(f"{target}: measured {value}")
            results[target].append(value)
    return results


def bulk(procs: Processes, workdir: pathlib.Path, opts) -> dict:
    port = free_port()
    server = procs.start(["iperf3", "-s", "-p", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_listening(port, server)
    out = {}
    try:
        with proxies(procs, workdir, port, maxconn=4000, pipesize=opts.pipesize) as ports:
            for direction, extra in (("client->server", []), ("server->client", ["-R"])):
                def measure(p: int) -> float:
                    report = json.loads(run(["iperf3", "-c", "127.0.0.1", "-p", str(p), "-t",
                                             str(opts.seconds), "-J", *extra], timeout=opts.seconds + 30))
                    return report["end"]["sum_received"]["bits_per_second"] / 1e9
                out[f"bulk {direction} (Gbit/s)"] = interleave(opts.rounds, ports, measure)
    finally:
        procs.stop(server)
    return out


def latency(procs: Processes, workdir: pathlib.Path, opts) -> dict:
    port = free_port()
    server = procs.start(["sockperf", "sr", "--tcp", "-i", "127.0.0.1", "-p", str(port)],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_listening(port, server)
    try:
        with proxies(procs, workdir, port, maxconn=4000, pipesize=opts.pipesize) as ports:
            def measure(p: int) -> float:
                text = run(["sockperf", "pp", "--tcp", "-i", "127.0.0.1", "-p", str(p), "-t",
                            str(opts.seconds)], timeout=opts.seconds + 30)
                return float(re.search(r"avg-latency=([\d.]+)", text).group(1))  # type: ignore[union-attr]
            return {"latency, half round trip (us)": interleave(opts.rounds, ports, measure)}
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


def wrk(opts, headers: list[str]) -> Callable[[int], float]:
    def measure(p: int) -> float:
        text = run(["wrk", "-t1", "-c50", f"-d{opts.seconds}s", *headers, f"http://127.0.0.1:{p}/"],
                   timeout=opts.seconds + 30)
        errors = re.search(r"Socket errors: (.*)", text)
        if errors and "connect 0, read 0, write 0, timeout 0" not in errors.group(1):
            raise RuntimeError(f"wrk saw errors through port {p}: {errors.group(1)}")
        return float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))  # type: ignore[union-attr]
    return measure


def requests(procs: Processes, workdir: pathlib.Path, opts) -> dict:
    nginx, port = start_nginx(procs, workdir)
    out = {}
    try:
        with proxies(procs, workdir, port, maxconn=4000, pipesize=opts.pipesize) as ports:
            if "rps" in opts.only:
                out["keep-alive requests/s"] = interleave(opts.rounds, ports, wrk(opts, []))
            if "cps" in opts.only:
                out["new connections/s (Connection: close)"] = interleave(
                    opts.rounds, ports, wrk(opts, ["-H", "Connection: close"]))
    finally:
        procs.stop(nginx)
    return out


def rss_kib(pid: int) -> int:
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for {pid}")


def memory(procs: Processes, workdir: pathlib.Path, opts) -> dict:
    sink = procs.start([sys.executable, "-c", SINK], stdout=subprocess.PIPE, text=True)
    port = int(sink.stdout.readline())  # type: ignore[union-attr]
    count = opts.idle
    out: dict[str, list[float]] = {"haproxy": [], "fastproxy": []}
    try:
        # HAProxy wants about 2.5 descriptors per maxconn from its limit: keep maxconn where it starts.
        with proxies(procs, workdir, port, maxconn=count + 100, pipesize=opts.pipesize) as ports:
            for _ in range(opts.rounds):
                for target in ("haproxy", "fastproxy"):
                    pid = ports["pids"][target]
                    before = rss_kib(pid)
                    clients = procs.start([sys.executable, "-c", CLIENTS, str(ports[target]), str(count)],
                                          stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
                    if clients.stdout.readline().strip() != "open":  # type: ignore[union-attr]
                        raise RuntimeError("the clients could not open their connections")
                    time.sleep(1.0)
                    grown = rss_kib(pid) - before
                    clients.stdin.close()  # type: ignore[union-attr]
                    procs.stop(clients)
                    time.sleep(1.0)
                    out[target].append(max(grown, 0) * 1024 / count)
    finally:
        procs.stop(sink)
    return {f"memory per idle connection, {count} open (bytes)": out}


# --- report --------------------------------------------------------------------------------------------

LOWER_IS_BETTER = ("latency", "memory")


def summarize(results: dict) -> list[dict]:
    rows = []
    for metric, values in results.items():
        med = {t: statistics.median(v) for t, v in values.items()}
        row = {"metric": metric, **{t: round(m, 2) for t, m in med.items()}}
        if metric.startswith("latency"):
            added_h, added_f = med["haproxy"] - med["direct"], med["fastproxy"] - med["direct"]
            row["added haproxy"], row["added fastproxy"] = round(added_h, 2), round(added_f, 2)
            row["ratio"] = round(added_f / added_h, 2) if added_h > 0 else None
        else:
            row["ratio"] = round(med["fastproxy"] / med["haproxy"], 2)
        rows.append(row)
    return rows


def print_table(rows: list[dict]) -> None:
    print(f"\n{'metric':48} {'direct':>10} {'haproxy':>10} {'fastproxy':>10} {'fp/haproxy':>11}")
    for row in rows:
        ratio = row["ratio"]
        note = " (added latency)" if "added haproxy" in row else ""
        print(f"{row['metric']:48} {row.get('direct', '-'):>10} {row['haproxy']:>10} {row['fastproxy']:>10} "
              f"{ratio if ratio is not None else '-':>11}{note}")
        if "added haproxy" in row:
            print(f"{'  added to the direct latency (us)':48} {'':>10} {row['added haproxy']:>10} "
                  f"{row['added fastproxy']:>10}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=5, help="duration of each timed run")
    parser.add_argument("--quick", action="store_true", help="1 round of 2 s runs, 1000 idle connections")
    parser.add_argument("--only", default="bulk,latency,rps,cps,memory")
    parser.add_argument("--idle", type=int, default=7000,
                        help="idle connections for the memory scenario: with a descriptor limit of 20000, "
                             "HAProxy starts with maxconn up to about 7700")
    parser.add_argument("--pipesize", type=int, default=1048576, help="tune.pipesize in the shared config")
    parser.add_argument("--out", help="write the results as JSON here")
    opts = parser.parse_args()
    if opts.quick:
        opts.rounds, opts.seconds, opts.idle = 1, 2, 1000
    opts.only = set(opts.only.split(","))
    for tool in ("haproxy", "iperf3", "sockperf", "nginx", "wrk"):
        if shutil.which(tool) is None:
            parser.error(f"{tool} is not installed")
    raise_fd_limit()
    started = time.time()
    load = os.getloadavg()
    procs = Processes()
    results: dict = {}
    with tempfile.TemporaryDirectory(prefix="fastproxy-bench-") as tmp:
        workdir = pathlib.Path(tmp)
        try:
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
    report = {
        "command": " ".join([sys.executable, *sys.argv]),
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "seconds": round(time.time() - started),
        "load_average_at_start": load,
        "nproc": os.cpu_count(),
        "kernel": platform.release(),
        "haproxy": run(["haproxy", "-v"], 10).splitlines()[0],
        "fastproxy": run([sys.executable, "-m", "fastproxy", "version"], 10).strip(),
        "rounds": opts.rounds, "run_seconds": opts.seconds, "pipesize": opts.pipesize,
        "summary": rows, "raw": results,
    }
    if opts.out:
        pathlib.Path(opts.out).parent.mkdir(parents=True, exist_ok=True)
        pathlib.Path(opts.out).write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
