"""TLS termination, fastproxy beside haproxy in one run, on one file: throughput and the proxy's CPU per
GB, handshakes per second and the proxy's CPU per handshake.

    python3 bench/tls.py [--gigabytes 1] [--handshakes 400] [--clients 4] [--rounds 3] [--out FILE]

The file (``bind ... ssl crt <pem>`` to a plain backend, no ``nbthread``, no ``tune.*``: each proxy's
defaults) is written once with a certificate openssl makes (RSA 2048, TLS 1.3 is what the clients
negotiate) and run by both proxies in turn, ``--rounds`` times interleaved; medians are reported.
Throughput: one TLS client (Python's ssl, blocking, in a thread of this process) sends ``--gigabytes``
through the proxy to a sink that discards them and answers their count.  Handshakes: ``--clients``
threads open ``--handshakes`` TLS connections in all, each a full handshake (no resumption), one byte
sent and counted, a close.  The proxy's CPU is utime+stime of its process from /proc for
the length of each measure.  Every process started here is stopped by its own pid.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import shutil
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from run import cpu_seconds, free_port  # noqa: E402  (run puts the repository on the path)
from tests.support import EchoThread, make_certificate  # noqa: E402

CONFIG = """\
defaults
    mode tcp
    timeout connect 5s
    timeout client 60s
    timeout server 60s

listen tls
    bind 127.0.0.1:{port} ssl crt {pem}
    server s1 127.0.0.1:{backend}
"""
CHUNK = 1 << 20


class Sink(EchoThread):
    """A plain backend: reads a length (8 bytes), then that many bytes, and answers the count it read
    (8 bytes); then waits for the client to close."""

    @staticmethod
    def _echo(conn: socket.socket) -> None:
        buffer, total = bytearray(CHUNK), 0
        with conn:
            try:
                size = int.from_bytes(_read_exactly(conn, 8), "big")
                while total < size and (n := conn.recv_into(buffer, min(CHUNK, size - total))):
                    total += n
                conn.sendall(total.to_bytes(8, "big"))
                conn.recv(1)
            except (OSError, EOFError):
                pass


def client_context() -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def bulk(port: int, size: int) -> float:
    """Seconds to send ``size`` bytes over TLS through the proxy and read the sink's count."""
    data = os.urandom(CHUNK)
    started = time.perf_counter()
    with socket.create_connection(("127.0.0.1", port)) as raw:
        with client_context().wrap_socket(raw, server_hostname="bench.example") as tls:
            tls.sendall(size.to_bytes(8, "big"))
            sent = 0
            while sent < size:
                tls.sendall(data)
                sent += len(data)
            counted = int.from_bytes(_read_exactly(tls, 8), "big")
    assert counted == sent, (counted, sent)
    return time.perf_counter() - started


def _read_exactly(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise EOFError(f"the proxy closed after {len(data)} bytes of the count")
        data += chunk
    return data


def handshakes(port: int, count: int, clients: int) -> float:
    """Seconds for ``clients`` threads to make ``count`` full handshakes in all, one byte sent each."""
    context = client_context()
    left = [count]
    lock = threading.Lock()
    errors: list[BaseException] = []

    def work() -> None:
        while True:
            with lock:
                if not left[0]:
                    return
                left[0] -= 1
            try:
                with socket.create_connection(("127.0.0.1", port)) as raw:
                    with context.wrap_socket(raw, server_hostname="bench.example") as tls:
                        tls.sendall((1).to_bytes(8, "big") + b"x")
                        _read_exactly(tls, 8)
            except (OSError, ssl.SSLError, EOFError) as exc:
                errors.append(exc)
                return
    started = time.perf_counter()
    threads = [threading.Thread(target=work) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise RuntimeError(f"{len(errors)} handshakes failed: {errors[0]!r}")
    return time.perf_counter() - started


def start(program: str, cfg: pathlib.Path, port: int) -> subprocess.Popen:
    args = ([shutil.which("haproxy") or "haproxy", "-db", "-f", str(cfg)] if program == "haproxy"
            else [sys.executable, "-m", "fastproxy", "run", "-q", "-f", str(cfg)])
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 20
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return proc
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise RuntimeError(f"{program} did not start") from None
            time.sleep(0.05)


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def measure(program: str, workdir: pathlib.Path, pem: pathlib.Path, sink: Sink,
            args: argparse.Namespace) -> dict:
    port = free_port()
    cfg = workdir / f"{program}.cfg"
    cfg.write_text(CONFIG.format(port=port, pem=pem, backend=sink.port))
    proc = start(program, cfg, port)
    try:
        handshakes(port, 20, 2)  # warm up
        size = int(args.gigabytes * 1e9) // CHUNK * CHUNK
        before = cpu_seconds(proc.pid)
        seconds = bulk(port, size)
        bulk_cpu = cpu_seconds(proc.pid) - before
        before = cpu_seconds(proc.pid)
        hs_seconds = handshakes(port, args.handshakes, args.clients)
        hs_cpu = cpu_seconds(proc.pid) - before
    finally:
        stop(proc)
    return {"gbit_s": size * 8 / seconds / 1e9, "cpu_s_per_gb": bulk_cpu / (size / 1e9),
            "handshakes_s": args.handshakes / hs_seconds,
            "cpu_ms_per_handshake": hs_cpu / args.handshakes * 1000}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--gigabytes", type=float, default=1.0)
    parser.add_argument("--handshakes", type=int, default=400)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=pathlib.Path)
    args = parser.parse_args()
    results: dict[str, list[dict]] = {"haproxy": [], "fastproxy": []}
    sink = Sink()
    with tempfile.TemporaryDirectory() as tmp:
        workdir = pathlib.Path(tmp)
        pem = make_certificate(workdir, "bench.example")[2]
        for round_number in range(args.rounds):
            for program in results:
                results[program].append(measure(program, workdir, pem, sink, args))
                print(f"round {round_number + 1} {program}: {results[program][-1]}", flush=True)
    medians = {program: {key: statistics.median(run[key] for run in runs) for key in runs[0]}
               for program, runs in results.items()}
    print(f"{'':12} {'Gbit/s':>8} {'CPU s/GB':>9} {'handshakes/s':>13} {'CPU ms/handshake':>17}")
    for program, row in medians.items():
        print(f"{program:12} {row['gbit_s']:8.2f} {row['cpu_s_per_gb']:9.2f} {row['handshakes_s']:13.0f} "
              f"{row['cpu_ms_per_handshake']:17.2f}")
    fp, hap = medians["fastproxy"], medians["haproxy"]
    print(f"fastproxy/haproxy: throughput {fp['gbit_s'] / hap['gbit_s']:.2f}x, CPU per GB "
          f"{fp['cpu_s_per_gb'] / hap['cpu_s_per_gb']:.2f}x, handshakes/s "
          f"{fp['handshakes_s'] / hap['handshakes_s']:.2f}x, CPU per handshake "
          f"{fp['cpu_ms_per_handshake'] / hap['cpu_ms_per_handshake']:.2f}x")
    if args.out:
        args.out.write_text(json.dumps({"runs": results, "medians": medians}, indent=2))


if __name__ == "__main__":
    main()
