"""A connection flood rejected by ``tcp-request connection reject``: connections per second and proxy CPU
per thousand rejections, side by side in one run, for haproxy 2.6, fastproxy on a lane (the compiled
pump tracks the source and rejects at accept, without Python) and fastproxy on the Python path (the same
file, the frontend kept off the lanes through the API).

The file: one frontend with ``stick-table type ip size 100k expire 30s store conn_cur,conn_rate(10s)``,
``tcp-request connection track-sc0 src`` and ``reject if { sc0_conn_rate gt 10 }``, one server (a
listener of this script that closes what it accepts).  The flood: ``--clients`` processes, each
connecting from 127.0.0.2 in a loop for ``--seconds`` (at most ``--max`` connections each) and reading
until the proxy closes; past the first ten every connection is rejected.  Rounds are interleaved
(each round runs every target in turn) and the table gives medians.

    python bench/lane_flood.py [--rounds 3] [--seconds 4] [--clients 2] [--haproxy /usr/sbin/haproxy]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

CONFIG = """\
global
    nbthread {threads}
    maxconn 1000
defaults
    mode tcp
    timeout connect 1s
    timeout client 5s
    timeout server 5s
frontend fe
    bind 127.0.0.1:{port}
    stick-table type ip size 100k expire 30s store conn_cur,conn_rate(10s)
    tcp-request connection track-sc0 src
    tcp-request connection reject if {{ sc0_conn_rate gt 10 }}
    default_backend be
backend be
    server s 127.0.0.1:{backend}
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def closing_backend() -> tuple[socket.socket, int]:
    """A listener that closes each connection it accepts (the few the proxies let through)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)

    def serve() -> None:
        while True:
            try:
                conn, _ = sock.accept()
            except OSError:
                return
            conn.close()
    threading.Thread(target=serve, daemon=True).start()
    return sock, sock.getsockname()[1]


def flood(port: int, seconds: float, limit: int, results: "multiprocessing.Queue[tuple[int, int]]") -> None:
    """Connect from 127.0.0.2 until ``seconds`` pass (or ``limit`` connections); count how many the
    proxy reset or closed without a byte (rejected) and how many got elsewhere."""
    rejected = other = 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and rejected + other < limit:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.settimeout(2.0)
        try:
            sock.bind(("127.0.0.2", 0))
            sock.connect(("127.0.0.1", port))
            data = sock.recv(1)
            rejected += not data
            other += bool(data)
        except ConnectionError:
            rejected += 1
        except OSError:
            other += 1
        finally:
            sock.close()
    results.put((rejected, other))


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wait_listening(port: int, proc: subprocess.Popen) -> None:
    for _ in range(200):
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args[:3]} exited ({proc.returncode})")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5, source_address=("127.0.0.2", 0)).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("the proxy never listened")


def measure(command: list[str], env: dict, port: int, args: argparse.Namespace) -> tuple[float, float]:
    """(rejected connections per second, proxy CPU seconds per 1000 rejected) for one target."""
    proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_listening(port, proc)
        time.sleep(0.3)
        results: multiprocessing.Queue = multiprocessing.Queue()
        clients = [multiprocessing.Process(target=flood, args=(port, args.seconds, args.max, results))
                   for _ in range(args.clients)]
        cpu = cpu_seconds(proc.pid)
        start = time.monotonic()
        for client in clients:
            client.start()
        counts = [results.get(timeout=args.seconds + 30) for _ in clients]
        elapsed = time.monotonic() - start
        cpu = cpu_seconds(proc.pid) - cpu
        for client in clients:
            client.join()
        rejected = sum(r for r, _ in counts)
        return rejected / elapsed, cpu * 1000 / max(rejected, 1)
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def serve_python_path(path: str) -> None:
    """Run the file with every frontend kept off the lanes (the Python path), until SIGTERM."""
    import signal

    import uvloop

    from fastproxy.config import load
    from fastproxy.engine import Engine

    async def main() -> None:
        config = load([path])
        for frontend in config.frontends.values():
            frontend.lanes = False
        engine = Engine(config)
        await engine.start()
        stopped = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stopped.set)
        await stopped.wait()
        await engine.stop(0)
    uvloop.run(main())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--clients", type=int, default=2)
    parser.add_argument("--max", type=int, default=200_000, help="connections per client at most")
    parser.add_argument("--threads", type=int, default=1, help="nbthread of both proxies")
    parser.add_argument("--haproxy", default=shutil.which("haproxy"))
    parser.add_argument("--serve-python-path", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_python_path:
        serve_python_path(args.serve_python_path)
        return
    backend, backend_port = closing_backend()
    env = dict(os.environ)
    env.pop("FASTPROXY_NO_EXTENSIONS", None)
    figures: dict[str, list[tuple[float, float]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(args.rounds):
            for target in ("haproxy", "fastproxy lane", "fastproxy python path"):
                if target == "haproxy" and not args.haproxy:
                    continue
                port = free_port()
                path = os.path.join(tmp, f"{target.replace(' ', '_')}.cfg")
                with open(path, "w") as f:
                    f.write(CONFIG.format(threads=args.threads, port=port, backend=backend_port))
                command = {"haproxy": [args.haproxy or "haproxy", "-db", "-f", path],
                           "fastproxy lane": [sys.executable, "-m", "fastproxy", "run", "-q", "-f", path],
                           "fastproxy python path": [sys.executable, os.path.abspath(__file__),
                                                     "--serve-python-path", path]}[target]
                figures.setdefault(target, []).append(measure(command, env, port, args))
    backend.close()
    print(f"{args.clients} flooding clients from 127.0.0.2, {args.seconds:g} s each, "
          f"nbthread {args.threads}, median of {args.rounds} rounds")
    print(f"{'target':<24}{'rejected/s':>12}{'CPU ms/1000':>14}")
    base = None
    for target, runs in figures.items():
        rate = statistics.median(r for r, _ in runs)
        cpu = statistics.median(c for _, c in runs)
        base = base or (rate, cpu)
        print(f"{target:<24}{rate:>12.0f}{cpu * 1000:>14.1f}   x{rate / base[0]:.2f} rate, "
              f"x{cpu / base[1]:.2f} CPU (vs {next(iter(figures))})")


if __name__ == "__main__":
    main()
