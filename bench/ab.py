"""Two builds of fastproxy side by side: did a change make the data plane slower?

    python3 bench/ab.py --a /path/to/venv-a/bin/python --b /path/to/venv-b/bin/python [--rounds 5]
                        [--python-path]

Each interpreter runs ``-m fastproxy run`` on the same HAProxy-format file (two copies that differ in
the bind port) in front of one nginx; rounds alternate A, B, A, B... and each runs ``wrk`` (keep-alive
requests, then ``Connection: close`` connections) through one proxy while the other idles.  Besides
the rates it reports **proxy CPU time per 1,000 requests / connections** (utime + stime of the proxy
process over the run, from /proc), which says more than a rate on a shared machine: a busy neighbour
steals wall time from both builds alike but does not add CPU to either.  Medians over the rounds,
ratio B / A.  Every process is stopped by its own pid.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

from run import Processes, free_port, start_nginx, wait_listening  # noqa: E402

CONFIG = """\
global
    maxconn 20000
defaults
    mode tcp
    timeout connect 5s
    timeout client 60s
    timeout server 60s
listen bench
    bind 127.0.0.1:{port}
{rules}    server s1 127.0.0.1:{backend}
"""
# With --python-path: a tcp-request rule keeps the frontend off the lanes, so that each connection is
# accepted, routed, dialed and paired by Python (the path of every frontend with rules or hooks).
RULES = "    acl local src 127.0.0.0/8\n    tcp-request session accept if local\n"


def cpu_seconds(pid: int) -> float:
    fields = pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wrk(port: int, seconds: int, close: bool) -> float:
    args = ["wrk", "-t1", "-c50", f"-d{seconds}s", f"http://127.0.0.1:{port}/"]
    if close:
        args[1:1] = ["-H", "Connection: close"]
    out = subprocess.run(args, capture_output=True, text=True, timeout=seconds + 30, check=True).stdout
    if "Socket errors" in out:
        raise RuntimeError(f"wrk saw socket errors:\n{out}")
    for line in out.splitlines():
        if line.startswith("Requests/sec:"):
            return float(line.split()[1])
    raise RuntimeError(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--a", required=True, help="the interpreter of build A (with fastproxy installed)")
    parser.add_argument("--b", required=True, help="the interpreter of build B")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=int, default=4)
    parser.add_argument("--python-path", action="store_true",
                        help="a rule keeps the frontend on the Python path (no lane)")
    opts = parser.parse_args()
    results: dict[str, dict[str, list[float]]] = {name: {} for name in ("A", "B")}
    procs = Processes()
    try:
        with tempfile.TemporaryDirectory(prefix="fastproxy-ab-") as tmp:
            workdir = pathlib.Path(tmp)
            _, backend = start_nginx(procs, workdir)
            proxies = {}
            for name, python in (("A", opts.a), ("B", opts.b)):
                port = free_port()
                cfg = workdir / f"{name}.cfg"
                rules = RULES if opts.python_path else ""
                cfg.write_text(CONFIG.format(port=port, backend=backend, rules=rules))
                proc = procs.start([python, "-m", "fastproxy", "run", "-q", "-f", str(cfg)],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                wait_listening(port, proc)
                proxies[name] = (proc, port)
            for _ in range(opts.rounds):
                for name in ("A", "B"):
                    proc, port = proxies[name]
                    for metric, close in (("requests", False), ("connections", True)):
                        before = cpu_seconds(proc.pid)
                        rate = wrk(port, opts.seconds, close)
                        used = cpu_seconds(proc.pid) - before
                        row = results[name]
                        row.setdefault(f"{metric}/s", []).append(rate)
                        row.setdefault(f"CPU ms per 1,000 {metric}", []).append(
                            used * 1e6 / (rate * opts.seconds))
    finally:
        procs.stop_all()
    print(f"{'metric':34} {'A':>12} {'B':>12} {'B/A':>7}   (medians of {opts.rounds} rounds)")
    for metric in results["A"]:
        a, b = statistics.median(results["A"][metric]), statistics.median(results["B"][metric])
        print(f"{metric:34} {a:12.1f} {b:12.1f} {b / a:7.2f}")


if __name__ == "__main__":
    main()
