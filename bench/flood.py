"""A flood of idle connections beside fresh clients: fastproxy and HAProxy side by side, same file.

    python3 bench/flood.py [--idle 9900] [--probes 400] [--rounds 1] [--before SRC] [--out FILE]

Two scenarios, each run against every target in turn on the same configuration (only the bind port
differs), behind one echo backend (a process of its own, holding every connection it is given):

- ``latency``: ``--idle`` connections are opened through the proxy and held idle (each exchanged one
  byte first, so each is a pair in the proxy); then ``--probes`` fresh clients, one at a time every
  ``--gap`` ms, connect, send 64 bytes, read them back and close: p50/p99/max of that time.  The same
  probes run first with nothing else open (``alone``), on the same proxy process.
- ``timeout client 2s``: ``--idle`` connections opened, each exchanges one byte and then stays idle; the
  time from just before that byte was sent to the close the proxy sends (EOF or reset, as the client
  sees it): min, p50, p99, max, and how many were not closed within ``timeout + 10 s``.

With ``--before SRC`` a third target runs fastproxy from another source tree (PYTHONPATH=SRC, its
extensions built in place), to compare two builds in one run.  Idle connections are held by a separate
process (``HOLDER``) so that the probing process does nothing else.  Descriptor limits are raised up to
the hard limit (and the hard one to what the flood needs when running as root); every process started
here is stopped by its own pid.  bench/README.md has the latest results.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from reload import ECHO  # noqa: E402
from run import Processes, free_port, wait_listening  # noqa: E402

CONFIG = """\
global
    maxconn {maxconn}
{extra}
defaults
    mode tcp
    maxconn {maxconn}
    timeout connect 5s
    timeout client {client}
    timeout server 60s

listen flood
    bind 127.0.0.1:{port}
    server echo 127.0.0.1:{backend}
"""

# Opens COUNT connections to PORT, one byte echoed on each, then holds them idle.  Prints "open N"
# (N: how many are open); with WATCH seconds, waits for the proxy to close each (a thread on epoll
# notes the time from the moment before each one's byte was sent to its close, from its first
# moment) and prints them as JSON, else holds them until its standard input closes.  A stall of this
# process can only make a close look later, never earlier.
HOLDER = r"""
import json, resource, select, socket, sys, threading, time
resource.setrlimit(resource.RLIMIT_NOFILE, (resource.getrlimit(resource.RLIMIT_NOFILE)[1],) * 2)
sys.setswitchinterval(0.0005)
port, count, watch = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
poller = select.epoll()
held, echoed, closed, failed = {}, {}, {}, 0
lock = threading.Lock()

def watcher():
    while len(closed) < count - failed:
        for fd, _ in poller.poll(0.5):
            now = time.monotonic()
            with lock:
                if fd in held and fd not in closed:
                    closed[fd] = now - echoed[fd]
                    poller.unregister(fd)
        if time.monotonic() > deadline:
            return

deadline = float("inf")
if watch:
    thread = threading.Thread(target=watcher, daemon=True)
    thread.start()
for _ in range(count):
    try:
        sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        sent = time.monotonic()  # the proxy saw this client's last bytes after this: never early
        sock.sendall(b"x")
        if sock.recv(1) != b"x":
            raise OSError("no echo")
    except OSError:
        failed += 1
        continue
    with lock:
        held[sock.fileno()] = sock
        echoed[sock.fileno()] = sent
        if watch:
            poller.register(sock.fileno(), select.EPOLLIN | select.EPOLLRDHUP)
print("open", len(held), flush=True)
if watch:
    deadline = time.monotonic() + watch
    thread.join()
    print(json.dumps({"closed": list(closed.values()), "open": len(held) - len(closed), "failed": failed}),
          flush=True)
else:
    sys.stdin.read()
"""

PROBE_BYTES = b"p" * 64


def maxconn(idle: int) -> int:
    """The flood and the probes, with a little room: HAProxy asks for 2 descriptors per maxconn and
    17 more here, and refuses to start past the hard limit."""
    return idle + 50


def raise_descriptor_limit(want: int) -> None:
    """Soft limit up to the hard one; as root, both up to ``want`` (children inherit them)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, want), max(hard, want)))
    except (ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def probe(port: int) -> float:
    """One fresh client: connect, 64 bytes there and back, close; the seconds it took."""
    started = time.perf_counter()
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.sendall(PROBE_BYTES)
        got = b""
        while len(got) < len(PROBE_BYTES):
            chunk = sock.recv(65536)
            if not chunk:
                raise OSError("closed before the echo")
            got += chunk
    return time.perf_counter() - started


def probes(port: int, count: int, gap: float) -> dict:
    times, errors = [], 0
    for _ in range(count):
        try:
            times.append(probe(port))
        except OSError:
            errors += 1
        time.sleep(gap)
    return {**spread(times), "errors": errors}


def spread(values: list[float]) -> dict:
    """min, p50, p99 and max in milliseconds."""
    if not values:
        return {"n": 0}
    ordered = sorted(values)
    at = lambda q: ordered[min(int(q * len(ordered)), len(ordered) - 1)]  # noqa: E731
    return {"n": len(ordered), "min_ms": round(ordered[0] * 1000, 2),
            "p50_ms": round(statistics.median(ordered) * 1000, 2), "p99_ms": round(at(0.99) * 1000, 2),
            "max_ms": round(ordered[-1] * 1000, 2)}


def start_proxy(procs: Processes, workdir: pathlib.Path, target: str, backend: int, client: str,
                opts) -> tuple[subprocess.Popen, int]:
    port = free_port()
    cfg = workdir / f"{target.replace(' ', '-')}-{port}.cfg"
    extra = f"    nbthread {opts.nbthread}\n" if opts.nbthread else ""
    cfg.write_text(CONFIG.format(port=port, backend=backend, client=client, maxconn=maxconn(opts.idle),
                                 extra=extra))
    env = dict(os.environ)
    if target == "haproxy":
        args = ["haproxy", "-db", "-f", str(cfg)]
    else:
        args = [sys.executable, "-m", "fastproxy", "run", "-q", "-f", str(cfg)]
        if target == "fastproxy before":
            env["PYTHONPATH"] = opts.before
    proc = procs.start(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    wait_listening(port, proc)
    return proc, port


def hold(procs: Processes, port: int, count: int, watch: float = 0.0) -> tuple[subprocess.Popen, int]:
    holder = procs.start([sys.executable, "-c", HOLDER, str(port), str(count), str(watch)],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    line = holder.stdout.readline().split()  # type: ignore[union-attr]
    if not line or line[0] != "open":
        raise RuntimeError("the holder could not open its connections")
    return holder, int(line[1])


def latency(procs: Processes, workdir: pathlib.Path, target: str, backend: int, opts) -> dict:
    proxy, port = start_proxy(procs, workdir, target, backend, "60s", opts)
    try:
        alone = probes(port, opts.probes, opts.gap / 1000)
        holder, held = hold(procs, port, opts.idle)
        try:
            time.sleep(1.0)  # the flood settled: what follows measures holding it, not opening it
            flooded = probes(port, opts.probes, opts.gap / 1000)
        finally:
            holder.stdin.close()  # type: ignore[union-attr]
            procs.stop(holder)
        return {"alone": alone, "flooded": flooded, "held": held}
    finally:
        procs.stop(proxy)


def timeouts(procs: Processes, workdir: pathlib.Path, target: str, backend: int, opts) -> dict:
    proxy, port = start_proxy(procs, workdir, target, backend, "2s", opts)
    try:
        holder, held = hold(procs, port, opts.idle, watch=12.0)
        try:
            report = json.loads(holder.stdout.readline())  # type: ignore[union-attr]
        finally:
            procs.stop(holder)
        return {**spread(report["closed"]), "held": held, "not_closed": report["open"],
                "failed": report["failed"]}
    finally:
        procs.stop(proxy)


def print_table(results: dict, targets: list[str]) -> None:
    rows = [("connect+echo alone, p50 (ms)", "latency", "alone", "p50_ms"),
            ("connect+echo alone, p99 (ms)", "latency", "alone", "p99_ms"),
            ("connect+echo, {idle} idle open, p50 (ms)", "latency", "flooded", "p50_ms"),
            ("connect+echo, {idle} idle open, p99 (ms)", "latency", "flooded", "p99_ms"),
            ("connect+echo, {idle} idle open, max (ms)", "latency", "flooded", "max_ms"),
            ("idle held of {idle}", "latency", None, "held"),
            ("timeout client 2s: close after, min (ms)", "timeouts", None, "min_ms"),
            ("timeout client 2s: close after, p50 (ms)", "timeouts", None, "p50_ms"),
            ("timeout client 2s: close after, p99 (ms)", "timeouts", None, "p99_ms"),
            ("timeout client 2s: close after, max (ms)", "timeouts", None, "max_ms"),
            ("timeout client 2s: not closed", "timeouts", None, "not_closed")]
    idle = results["idle"]
    width = max(len(t) for t in targets) + 2
    print(f"\n{'':44}" + "".join(f"{t:>{width}}" for t in targets) + "  fp/haproxy")
    for label, scenario, part, key in rows:
        cells = []
        for target in targets:
            runs = results["runs"][target][scenario]
            values = [(run[part] if part else run).get(key) for run in runs]
            values = [v for v in values if v is not None]
            cells.append(statistics.median(values) if values else None)
        ratio = ""
        if "fastproxy" in targets and "haproxy" in targets:
            fp, ha = cells[targets.index("fastproxy")], cells[targets.index("haproxy")]
            if fp is not None and ha and "ms" in label:
                ratio = f"{fp / ha:.2f}"
        print(f"{label.format(idle=idle):44}" + "".join(
            f"{'-' if c is None else round(c, 2):>{width}}" for c in cells) + f"  {ratio:>10}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--idle", type=int, default=9900,
                        help="idle connections held open (each proxy holds two descriptors per connection: "
                             "9900 fits a hard limit of 20000)")
    parser.add_argument("--probes", type=int, default=400, help="fresh clients timed per measurement")
    parser.add_argument("--gap", type=float, default=10.0, help="milliseconds between two probes")
    parser.add_argument("--rounds", type=int, default=1, help="times each target runs each scenario")
    parser.add_argument("--only", default="latency,timeouts")
    parser.add_argument("--nbthread", type=int, default=0, help="nbthread for every proxy (0: not set)")
    parser.add_argument("--before", help="a source tree whose fastproxy runs as 'fastproxy before'")
    parser.add_argument("--out", help="write the results as JSON here")
    opts = parser.parse_args()
    raise_descriptor_limit(4 * opts.idle + 4096)
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if 2 * maxconn(opts.idle) + 64 > hard:
        parser.error(f"--idle {opts.idle} needs {2 * maxconn(opts.idle) + 64} descriptors in each proxy; "
                     f"the hard limit is {hard} (lower --idle, or raise the limit)")
    targets = ["haproxy", "fastproxy"] + (["fastproxy before"] if opts.before else [])
    results: dict = {"command": " ".join([sys.executable, *sys.argv]), "idle": opts.idle,
                     "date": time.strftime("%Y-%m-%dT%H:%M:%S"), "load_average_at_start": os.getloadavg(),
                     "haproxy": subprocess.run(["haproxy", "-v"], capture_output=True,
                                               text=True).stdout.split("\n")[0],
                     "runs": {t: {"latency": [], "timeouts": []} for t in targets}}
    procs = Processes()
    with tempfile.TemporaryDirectory(prefix="fastproxy-flood-") as tmp:
        workdir = pathlib.Path(tmp)
        try:
            echo = procs.start([sys.executable, "-c", ECHO], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                               text=True)
            backend = int(echo.stdout.readline())  # type: ignore[union-attr]
            for _ in range(opts.rounds):
                for target in targets:
                    if "latency" in opts.only:
                        results["runs"][target]["latency"].append(
                            latency(procs, workdir, target, backend, opts))
                    if "timeouts" in opts.only:
                        results["runs"][target]["timeouts"].append(
                            timeouts(procs, workdir, target, backend, opts))
                    print(target, json.dumps({k: v[-1] for k, v in results["runs"][target].items() if v}),
                          flush=True)
        finally:
            procs.stop_all()
    print_table(results, targets)
    if opts.out:
        pathlib.Path(opts.out).write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
