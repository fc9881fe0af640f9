"""Memory per entry of a stick table of a million entries: fastproxy's (sans-IO ``sticktables``, the
Python path's table, and the compiled pump's, where lanes track clients) beside haproxy 2.6's for the
same ``stick-table`` line.

fastproxy: the growth of the process's traced allocations (tracemalloc) while a million IPv4 keys are
tracked as ``track-sc0 src`` would (``get``, then ``conn_cur``/``conn_cnt``/``conn_rate`` counted).
The pump's table (``Pump.stick_table``, C memory tracemalloc does not see): the growth of the process's
resident memory (VmRSS) while the same keys are tracked in it, the table made first (its arrays are
allocated at its size but only resident once written).
haproxy: the growth of its resident memory (VmRSS) after ``set table`` writes the same keys over the
stats socket, in batches of ``show``-free pipelined requests.

    python bench/sticktable_memory.py [--entries 1000000] [--haproxy /usr/sbin/haproxy]
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import shutil
import socket
import subprocess
import tempfile
import time
import tracemalloc

from fastproxy.config import parse_text
from fastproxy.sticktables import tables_for

LINE = "stick-table type ip size 2m store conn_cur,conn_cnt,conn_rate(10s)"


def fastproxy_bytes_per_entry(entries: int) -> float:
    config = parse_text(f"backend be\n {LINE}\n")
    table = tables_for(config)["be"]
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for i in range(entries):
        entry = table.get(0x0A000000 + i)
        assert entry is not None
        for name in ("conn_cur", "conn_cnt", "conn_rate"):
            table.add(entry, name)
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    return (after - before) / entries


def pump_bytes_per_entry(entries: int) -> float:
    from fastproxy.pump import CPump
    config = parse_text(f"backend be\n {LINE}\n")
    pump = CPump(counter_blocks=1)
    table = pump.stick_table(config.stick_tables["be"])
    keys = [(0xFFFF0A000000 + i).to_bytes(16, "big") for i in range(entries)]  # ::ffff:10.x.y.z
    before = _rss_kib(os.getpid())
    for key in keys:
        assert table.counters.track(key)
        table.counters.untrack(key)
    after = _rss_kib(os.getpid())
    assert table.used == entries
    return (after - before) * 1024 / entries


def _rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def haproxy_bytes_per_entry(binary: str, entries: int) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        sock_path = os.path.join(tmp, "admin.sock")
        cfg = os.path.join(tmp, "haproxy.cfg")
        with open(cfg, "w") as f:
            f.write(f"global\n stats socket {sock_path} level admin\n stats timeout 10m\n"
                    f"defaults\n mode tcp\n timeout connect 1s\n timeout client 1s\n timeout server 1s\n"
                    f"backend be\n {LINE}\n")
        proc = subprocess.Popen([binary, "-db", "-f", cfg], stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        try:
            for _ in range(100):
                if os.path.exists(sock_path):
                    break
                time.sleep(0.05)
            before = _rss_kib(proc.pid)
            batch = 1000
            for start in range(0, entries, batch):
                with socket.socket(socket.AF_UNIX) as sock:
                    sock.connect(sock_path)
                    requests = ";".join(
                        f"set table be key {ipaddress.IPv4Address(0x0A000000 + i)} data.conn_cnt 1"
                        for i in range(start, min(start + batch, entries)))
                    sock.sendall(requests.encode() + b"\n")
                    while sock.recv(65536):
                        pass
            after = _rss_kib(proc.pid)
        finally:
            proc.terminate()
            proc.wait()
    return (after - before) * 1024 / entries


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=1_000_000)
    parser.add_argument("--haproxy", default=shutil.which("haproxy"))
    args = parser.parse_args()
    print(f"{LINE}, {args.entries} entries")
    print(f"fastproxy: {fastproxy_bytes_per_entry(args.entries):.0f} bytes per entry (tracemalloc)")
    print(f"pump:      {pump_bytes_per_entry(args.entries):.0f} bytes per entry (RSS)")
    if args.haproxy:
        print(f"haproxy:   {haproxy_bytes_per_entry(args.haproxy, args.entries):.0f} bytes per entry (RSS)")


if __name__ == "__main__":
    main()
