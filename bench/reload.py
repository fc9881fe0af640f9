"""Reloads under load, fastproxy -W beside haproxy -W: refused, reset or truncated connections.

    python3 bench/reload.py --reloads 50 [--targets fastproxy,haproxy] [--out results.json]
    python3 bench/reload.py --reloads 50 --targets baseline,fastproxy,haproxy --baseline /path/to/src

``baseline`` is fastproxy from another tree's ``src`` (``PYTHONPATH``, its extensions built there), run
by the same interpreter: a change and the code before it, side by side in the same run.

For each target: one echo backend (a process of its own), the same HAProxy file, the proxy in
master-worker mode, and while it runs

- short connections from ``--clients`` threads (connect, send a 100-byte line, read it back, close),
  as many as they can up to ``--rate`` per second in all;
- long streams from ``--streams`` threads: each sends ``--stream-size`` bytes of random data in
  ``--stream-chunk`` pieces spread over ``--stream-seconds`` and checks the SHA-256 of what comes back;

and the master gets SIGUSR2 ``--reloads`` times; the next reload comes once the new worker answers
``show info`` on the stats socket (its Pid changed).  Every loop is bounded in count and time.  The
report counts each outcome, the streams intact, and how long each former worker lived: from its
reload's SIGUSR2, and from the moment the new worker answered (a watcher thread polls every former
worker's pid every 5 ms).  fastproxy's former worker hands its established pairs to the new one and
exits; HAProxy's keeps its connections until they end (or hard-stop-after cuts them).  Every process
started is stopped by its own pid.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Optional

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from tests.support import alive, echo_listen, free_port  # noqa: E402  (free_port: below the ephemeral range)

HAPROXY = "/usr/sbin/haproxy"


ECHO = r"""
import asyncio, sys
async def echo(reader, writer):
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
        writer.write_eof()
    except OSError:
        pass
    writer.close()
async def main():
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 0  # a port of its own, or one given (a restart)
    server = await asyncio.start_server(echo, "127.0.0.1", port, backlog=4096)
    print(server.sockets[0].getsockname()[1], flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
asyncio.run(main())
"""


def show_info_pid(path: str) -> Optional[int]:
    try:
        with socket.socket(socket.AF_UNIX) as sock:
            sock.settimeout(5)
            sock.connect(path)
            sock.sendall(b"show info\n")
            answer = b""
            while chunk := sock.recv(65536):
                answer += chunk
        return int(answer.decode().split("\nPid: ", 1)[1].split("\n", 1)[0])
    except (OSError, IndexError, ValueError):
        return None


def next_worker(stats: str, current: int) -> Optional[int]:
    """The pid answering on the stats socket if it is not ``current``'s."""
    pid = show_info_pid(stats)
    return pid if pid not in (None, current) else None


def wait(predicate: Any, timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.02)
    return None


class Load:
    """Short connections and long streams until ``stop``; outcomes counted."""

    def __init__(self, port: int, args: argparse.Namespace) -> None:
        self.port, self.args = port, args
        self.outcomes = {"complete": 0, "refused": 0, "reset": 0, "truncated": 0, "timeout": 0}
        self.streams = {"intact": 0, "broken": 0}
        self.lock = threading.Lock()
        self.done = threading.Event()
        self.deadline = time.monotonic() + args.max_seconds
        self.threads = [threading.Thread(target=self.short, args=(i,)) for i in range(args.clients)]
        self.threads += [threading.Thread(target=self.stream) for _ in range(args.streams)]

    def running(self) -> bool:
        return not self.done.is_set() and time.monotonic() < self.deadline

    def count(self, table: dict, key: str) -> None:
        with self.lock:
            table[key] += 1

    def short(self, index: int) -> None:
        interval = self.args.clients / self.args.rate
        for n in range(10_000_000):
            if not self.running():
                return
            started = time.monotonic()
            line = b"%d-%d %s\n" % (index, n, b"x" * 90)
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=10) as sock:
                    sock.sendall(line)
                    data = b""
                    while not data.endswith(b"\n"):
                        chunk = sock.recv(1024)
                        if not chunk:
                            break
                        data += chunk
                outcome = "complete" if data == line else "truncated"
            except ConnectionRefusedError:
                outcome = "refused"
            except ConnectionResetError:
                outcome = "reset"
            except socket.timeout:
                outcome = "timeout"
            self.count(self.outcomes, outcome)
            time.sleep(max(0.0, interval - (time.monotonic() - started)))

    def stream(self) -> None:
        args = self.args
        pieces = max(1, args.stream_size // args.stream_chunk)
        pause = args.stream_seconds / pieces
        while self.running():
            payload = os.urandom(args.stream_chunk * pieces)
            received = hashlib.sha256()
            got = 0
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=10) as sock:
                    reader_error: list[BaseException] = []

                    def read() -> None:
                        nonlocal got
                        try:
                            while chunk := sock.recv(65536):
                                received.update(chunk)
                                got += len(chunk)
                        except OSError as exc:
                            reader_error.append(exc)
                    reader = threading.Thread(target=read)
                    reader.start()
                    for i in range(pieces):
                        sock.sendall(payload[i * args.stream_chunk:(i + 1) * args.stream_chunk])
                        time.sleep(pause)
                    sock.shutdown(socket.SHUT_WR)
                    reader.join(30)
                intact = got == len(payload) and received.digest() == hashlib.sha256(payload).digest()
            except OSError:
                intact = False
            self.count(self.streams, "intact" if intact else "broken")

    def start(self) -> None:
        for thread in self.threads:
            thread.start()

    def stop(self) -> None:
        self.done.set()
        for thread in self.threads:
            thread.join(60)


class ExitWatcher:
    """Former workers' pids, polled until each exits: how long after its reload (and after the new
    worker answered) it was gone."""

    def __init__(self) -> None:
        self.watched: dict[int, tuple[float, float]] = {}  # pid -> (SIGUSR2 sent, new worker answered)
        self.lived: list[tuple[float, float]] = []
        self.lock = threading.Lock()
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._poll)
        self.thread.start()

    def watch(self, pid: int, asked: float, served: float) -> None:
        with self.lock:
            self.watched[pid] = (asked, served)

    def _poll(self) -> None:
        for _ in range(100_000_000):  # bounded; ends with ``stop``
            if self.done.is_set():
                return
            with self.lock:
                for pid, (asked, served) in list(self.watched.items()):
                    if not alive(pid):
                        now = time.monotonic()
                        self.lived.append((now - asked, now - served))
                        del self.watched[pid]
            time.sleep(0.005)

    def stop(self, timeout: float) -> None:
        """Once every watched pid is gone (or ``timeout``)."""
        wait(lambda: not self.watched, timeout)
        self.done.set()
        self.thread.join(10)


def median(values: list[float]) -> Optional[float]:
    return round(sorted(values)[len(values) // 2], 2) if values else None


def run_target(name: str, args: argparse.Namespace, backend: int, workdir: Path) -> dict[str, Any]:
    port = free_port()
    env = None
    stats, pidfile, cfg = str(workdir / f"{name}.sock"), workdir / f"{name}.pid", workdir / f"{name}.cfg"
    lines = f"    hard-stop-after 30s\n    stats socket {stats} level admin\n    pidfile {pidfile}"
    cfg.write_text(echo_listen(port, backend, lines))
    if name == "haproxy":
        command = [HAPROXY, "-W", "-f", str(cfg)]
    else:
        command = [sys.executable, "-m", "fastproxy", "run", "-W", "-q", "-f", str(cfg)]
        if name == "baseline":  # the master and every worker it starts import the baseline's tree
            env = dict(os.environ, PYTHONPATH=os.path.abspath(args.baseline))
    log = open(workdir / f"{name}.log", "w")
    proc = subprocess.Popen(command, stdout=log, stderr=log, stdin=subprocess.DEVNULL, env=env)
    result: dict[str, Any] = {"target": name, "reloads_asked": args.reloads}
    try:
        current = wait(lambda: show_info_pid(stats), 30)
        if current is None:
            raise SystemExit(f"{name} did not start: see {workdir / (name + '.log')}")
        load = Load(port, args)
        load.start()
        watcher = ExitWatcher()
        done = 0
        serving: list[float] = []  # seconds from each SIGUSR2 to the new worker's answer
        started = time.monotonic()
        try:
            for _ in range(args.reloads):
                if time.monotonic() - started > args.max_seconds - 30:
                    break
                time.sleep(args.pause)
                os.kill(proc.pid, signal.SIGUSR2)
                asked = time.monotonic()
                new = wait(lambda: next_worker(stats, current), 60)
                if new is None:
                    break
                answered = time.monotonic()
                watcher.watch(current, asked, answered)
                serving.append(answered - asked)
                current, done = new, done + 1
        finally:
            load.stop()
            watcher.stop(40)
        since_reload = [lived for lived, _ in watcher.lived]
        since_new = [lived for _, lived in watcher.lived]
        result.update(reloads_done=done, seconds=round(time.monotonic() - started, 1), **load.outcomes,
                      streams_intact=load.streams["intact"], streams_broken=load.streams["broken"],
                      new_worker_serving_median_s=median(serving),
                      new_worker_serving_max_s=round(max(serving), 2) if serving else None,
                      former_worker_lived_median_s=median(since_reload),
                      former_worker_lived_max_s=round(max(since_reload), 2) if since_reload else None,
                      former_workers_gone_within_1s=sum(1 for value in since_reload if value <= 1.0),
                      after_new_worker_median_s=median(since_new),
                      after_new_worker_max_s=round(max(since_new), 2) if since_new else None,
                      gone_within_1s_of_new_worker=sum(1 for value in since_new if value <= 1.0),
                      former_workers_still_alive=len(watcher.watched),
                      # What the figures above sum up: per reload, and per former worker as it exited.
                      new_worker_serving_s=[round(value, 3) for value in serving],
                      former_worker_lived_s=[round(value, 3) for value in since_reload])
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=40)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        log.close()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reloads", type=int, default=50)
    parser.add_argument("--targets", default="fastproxy,haproxy")
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--rate", type=float, default=1000.0, help="short connections per second, at most")
    parser.add_argument("--streams", type=int, default=2)
    parser.add_argument("--stream-size", type=int, default=4 << 20)
    parser.add_argument("--stream-chunk", type=int, default=64 << 10)
    parser.add_argument("--stream-seconds", type=float, default=3.0)
    parser.add_argument("--pause", type=float, default=0.5, help="seconds between a reload and the next")
    parser.add_argument("--max-seconds", type=float, default=600.0, help="bound of each target's run")
    parser.add_argument("--baseline", metavar="SRC", help="the src directory the baseline target runs from")
    parser.add_argument("--out", help="write the results as JSON")
    args = parser.parse_args()
    if "baseline" in args.targets.split(",") and not args.baseline:
        parser.error("the baseline target needs --baseline SRC")
    echo = subprocess.Popen([sys.executable, "-c", ECHO], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            text=True)
    results = []
    try:
        backend = int(echo.stdout.readline())  # type: ignore[union-attr]
        with tempfile.TemporaryDirectory(prefix="reload-bench-") as tmp:
            for name in args.targets.split(","):
                results.append(run_target(name, args, backend, Path(tmp)))
                print(json.dumps(results[-1]), flush=True)
    finally:
        echo.stdin.close()  # type: ignore[union-attr]
        try:
            echo.wait(timeout=10)
        except subprocess.TimeoutExpired:
            echo.kill()
            echo.wait()
    keys = [key for key, value in results[0].items() if key != "target" and not isinstance(value, list)] \
        if results else []
    print(f"\n{'':32}" + "".join(f"{r['target']:>14}" for r in results))
    for key in keys:
        print(f"{key:32}" + "".join(f"{str(r.get(key)):>14}" for r in results))
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
