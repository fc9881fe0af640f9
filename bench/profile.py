"""Where a proxy's time goes on one transfer: system calls per MiB, bytes per call, wake-ups, CPU per GB.

    python3 bench/profile.py [--seconds 5] [--targets haproxy,compiled,twin] [--tune ""] [--reverse]
                             [--scenario bulk|cps|rps]

Each target (``haproxy``; ``compiled``: fastproxy's Cython pump; ``twin``: fastproxy with
FASTPROXY_NO_EXTENSIONS=1; ``ceiling``: bench/splice_ref.c, the smallest splicing proxy, which ignores
the file) runs the same HAProxy-format file in turn (``--tune`` adds global lines, e.g. ``"tune.pipesize
1048576"``; ``--nbthread`` sets nbthread, unset by default), and one timed transfer goes through it
while ``perf stat`` counts the proxy's system calls (the syscall tracepoints: no hardware counters
needed, little overhead) and context switches, and /proc/PID/stat gives its CPU time. ``bulk`` is
``iperf3 -t`` (one stream; ``--reverse`` for server->client), ``cps`` and ``rps`` are wrk with and
without ``Connection: close`` against nginx. The figures are per MiB moved (bulk) or per request (cps,
rps). bench/README.md has the findings.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import re
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import run as bench  # noqa: E402

SYSCALLS = ("splice", "recvfrom", "sendto", "read", "write", "epoll_wait", "epoll_pwait", "epoll_ctl", "accept4",
            "socket", "connect", "setsockopt", "getsockopt", "close", "shutdown", "pipe2", "fcntl",
            "getsockname", "futex", "clock_gettime", "recvmsg", "sendmsg", "writev", "readv")

CONFIG = """\
global
    maxconn 4000
{nbthread}{tune}
defaults
    mode tcp
    option splice-auto
    timeout connect 5s
    timeout client 60s
    timeout server 60s

listen profile
    bind 127.0.0.1:{port}
    server s1 127.0.0.1:{backend}
"""


def cpu_seconds(pid: int) -> float:
    """utime + stime of every thread of ``pid``, in seconds."""
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def start_target(procs: bench.Processes, workdir: pathlib.Path, spec: str, backend: int, opts):
    """``spec`` is a target name, optionally followed by ``:`` and global lines of its own (``;``-separated)."""
    target, _, tune = spec.partition(":")
    port = bench.free_port()
    cfg = workdir / "target.cfg"
    lines = [line.strip() for line in f"{opts.tune};{tune}".split(";") if line.strip()]
    cfg.write_text(CONFIG.format(port=port, backend=backend,
                                 nbthread=f"    nbthread {opts.nbthread}\n" if opts.nbthread else "",
                                 tune="".join(f"    {line}\n" for line in lines)))
    env = dict(os.environ)
    if target == "haproxy":
        args = ["haproxy", "-db", "-f", str(cfg)]
    elif target in ("ceiling", "sockmap"):  # bench/splice_ref.c, bench/sockmap_ref.c (run.py's rows)
        args = [str(bench.build_reference(workdir, target)), str(port), str(backend)]
    else:
        args = [sys.executable, "-m", "fastproxy", "run", "-q", "-f", str(cfg)]
        if target == "twin":
            env["FASTPROXY_NO_EXTENSIONS"] = "1"
        elif target == "before":  # the compiled pump of another build, side by side (--before)
            env["PYTHONPATH"] = opts.before
    proc = procs.start(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    bench.wait_listening(port, proc)
    return proc, port


def machine_busy() -> tuple[float, float]:
    """Seconds of CPU the whole machine spent busy and idle (every CPU, /proc/stat)."""
    fields = [int(v) for v in open("/proc/stat").readline().split()[1:]]
    idle = fields[3] + fields[4]
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK"), idle / os.sysconf("SC_CLK_TCK")


def measured(pid: int, work) -> dict:
    """Run ``work()`` while perf counts ``pid``'s system calls; returns the counts, CPU and work's result."""
    events = ",".join(["context-switches"] + [f"syscalls:sys_enter_{name}" for name in SYSCALLS])
    out = tempfile.NamedTemporaryFile(suffix=".perf", delete=False)
    perf = subprocess.Popen(["perf", "stat", "-x", ",", "-o", out.name, "-e", events, "-p", str(pid)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.3)
    cpu = cpu_seconds(pid)
    busy, idle = machine_busy()
    result = work()
    cpu = cpu_seconds(pid) - cpu
    busy, idle = machine_busy()[0] - busy, machine_busy()[1] - idle
    perf.send_signal(2)
    perf.wait(10)
    counts = {}
    for line in open(out.name):
        parts = line.strip().split(",")
        if len(parts) > 2 and parts[0].replace(".", "").isdigit():
            counts[parts[2].replace("syscalls:sys_enter_", "")] = int(float(parts[0]))
    os.unlink(out.name)
    return {"cpu": cpu, "counts": counts, "result": result, "busy": busy, "idle": idle}


def bulk(procs, workdir, opts) -> dict:
    port = bench.free_port()
    server = procs.start(["iperf3", "-s", "-p", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    bench.wait_listening(port, server)
    rows = {}
    for target in opts.targets:
        proc, pport = start_target(procs, workdir, target, port, opts)

        def work() -> tuple[float, int]:
            report = json.loads(bench.run(["iperf3", "-c", "127.0.0.1", "-p", str(pport), "-t", str(opts.seconds),
                                           "-J", *(["-R"] if opts.reverse else [])], timeout=opts.seconds + 30))
            s = report["end"]["sum_received"]
            return s["bits_per_second"] / 1e9, s["bytes"]
        m = measured(proc.pid, work)
        procs.stop(proc)
        gbit, nbytes = m["result"]
        mib = nbytes / 2**20
        rows[target] = {"Gbit/s": round(gbit, 2), "CPU s/GB": round(m["cpu"] / (nbytes / 1e9), 3),
                        "machine CPU s/GB": round(m["busy"] / (nbytes / 1e9), 3),
                        "machine idle %": round(100 * m["idle"] / (m["idle"] + m["busy"]), 1),
                        **{f"{k}/MiB": round(v / mib, 2) for k, v in sorted(m["counts"].items()) if v},
                        "bytes/read call": round(nbytes / max(1, reads(m["counts"]))),
                        }
    procs.stop(server)
    return rows


def reads(counts: dict) -> int:
    """Calls that read from a socket: recvfrom/read/recvmsg, and half of the splices (in and out)."""
    return counts.get("recvfrom", 0) + counts.get("read", 0) + counts.get("recvmsg", 0) + counts.get("splice", 0) // 2


def requests(procs, workdir, opts) -> dict:
    nginx, port = bench.start_nginx(procs, workdir)
    rows = {}
    headers = ["-H", "Connection: close"] if opts.scenario == "cps" else []
    for target in opts.targets:
        proc, pport = start_target(procs, workdir, target, port, opts)

        def work() -> int:
            text = bench.run(["wrk", "-t1", "-c50", f"-d{opts.seconds}s", *headers, f"http://127.0.0.1:{pport}/"],
                             timeout=opts.seconds + 30)
            return int(re.search(r"(\d+) requests in", text).group(1))  # type: ignore[union-attr]
        m = measured(proc.pid, work)
        procs.stop(proc)
        n = m["result"]
        rows[target] = {"requests/s": round(n / opts.seconds), "CPU ms/1000 req": round(m["cpu"] / n * 1e6, 1),
                        **{f"{k}/req": round(v / n, 2) for k, v in sorted(m["counts"].items()) if v}}
    procs.stop(nginx)
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--targets", default="haproxy,compiled,twin",
                        help="comma-separated: haproxy, compiled, twin, before, each optionally with ':global lines'")
    parser.add_argument("--tune", default="", help="global lines, ';'-separated (e.g. 'tune.pipesize 1048576')")
    parser.add_argument("--nbthread", type=int, default=0, help="nbthread (0: not set)")
    parser.add_argument("--before", default="", help="a `pip install --target` directory of another build: "
                        "the target 'before' runs its compiled pump")
    parser.add_argument("--reverse", action="store_true", help="bulk server->client")
    parser.add_argument("--scenario", default="bulk", choices=("bulk", "cps", "rps"))
    opts = parser.parse_args()
    opts.targets = opts.targets.split(",")
    bench.raise_fd_limit()
    procs = bench.Processes()
    with tempfile.TemporaryDirectory(prefix="fastproxy-profile-") as tmp:
        try:
            rows = (bulk if opts.scenario == "bulk" else requests)(procs, pathlib.Path(tmp), opts)
        finally:
            procs.stop_all()
    keys = sorted({k for r in rows.values() for k in r}, key=lambda k: (k not in ("Gbit/s", "requests/s"), k))
    for i, t in enumerate(rows):
        print(f"  [{i}] {t}")
    print(f"{'':24}" + "".join(f"{'[' + str(i) + ']':>14}" for i in range(len(rows))))
    for k in keys:
        print(f"{k:24}" + "".join(f"{rows[t].get(k, '-'):>14}" for t in rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
