"""Real backends, clients and proxies on 127.0.0.1 for the tests: no mocks of sockets."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import fcntl
import os
import shutil
import signal
import random
import socket
import ssl
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, AsyncIterator, Callable, Iterator, Optional

from fastproxy._impl import NO_EXTENSIONS
from fastproxy.config import load, model
from fastproxy.errors import ConfigError
from fastproxy.engine import Engine
from fastproxy.spare import is_spare, is_worker, is_zygote

# The implementations of the extensions this run tests (see conftest.Implementation).
IMPLEMENTATIONS = ["python"] if NO_EXTENSIONS else ["cython", "python"]


async def start_backend(handler: Callable, host: str = "127.0.0.1") -> tuple[asyncio.AbstractServer, int]:
    server = await asyncio.start_server(handler, host, 0, limit=1 << 20)
    return server, server.sockets[0].getsockname()[1]


@contextlib.asynccontextmanager
async def serving(handler: Callable, host: str = "127.0.0.1") -> AsyncIterator[int]:
    """A backend serving connections with ``handler`` for the length of the block: its port.  It stops
    listening when the block ends, however it ends (an assertion that fails leaks no listener)."""
    server, port = await start_backend(handler, host)
    try:
        yield port
    finally:
        server.close()


class RawBackend:
    """A listener whose connections are served as plain non-blocking sockets (no transports)."""

    def __init__(self, serve: Callable[[socket.socket], Any]) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(1024)
        self.sock.setblocking(False)
        self.serve = serve
        self.tasks: set[asyncio.Task] = set()
        self.accepting = asyncio.get_running_loop().create_task(self._accept())

    async def _accept(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            conn, _ = await loop.sock_accept(self.sock)
            conn.setblocking(False)
            task = loop.create_task(self.serve(conn))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

    def close(self) -> None:
        self.accepting.cancel()
        self.sock.close()


@contextlib.asynccontextmanager
async def serving_raw(serve: Callable[[socket.socket], Any]) -> AsyncIterator[int]:
    """A ``RawBackend`` for the length of the block: its port."""
    backend = RawBackend(serve)
    try:
        yield backend.sock.getsockname()[1]
    finally:
        backend.close()


async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Echo until the client half-closes, then half-close back."""
    try:
        while data := await reader.read(1 << 16):
            writer.write(data)
            await writer.drain()
        writer.write_eof()
        await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        writer.close()


ECHO_PROCESS = r"""
import asyncio, sys, uvloop
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
    server = await asyncio.start_server(echo, "127.0.0.1", 0, backlog=4096)
    print(server.sockets[0].getsockname()[1], flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)  # until the test closes stdin
uvloop.run(main())
"""


@contextlib.contextmanager
def echo_process() -> Iterator[int]:
    """An echo server in a process of its own (its descriptors do not count against ours)."""
    proc = subprocess.Popen([sys.executable, "-c", ECHO_PROCESS], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    try:
        port = int(proc.stdout.readline())
        yield port
    finally:
        proc.stdin.close()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def config(ports: list[int], *, bind_host: str = "127.0.0.1", frontend: Optional[dict] = None,
           backend: Optional[dict] = None, timeouts_fe: Optional[dict] = None,
           timeouts_be: Optional[dict] = None, global_: Optional[dict] = None) -> model.Config:
    """A one-frontend, one-backend configuration over servers on 127.0.0.1:<ports>."""
    cfg = model.Config(global_=model.Global(**(global_ or {})))
    servers = [model.Server(f"s{i + 1}", "127.0.0.1", port) for i, port in enumerate(ports)]
    cfg.backends["be"] = model.Backend("be", servers=servers, timeouts=model.Timeouts(**(timeouts_be or {})),
                                       **(backend or {}))
    cfg.frontends["fe"] = model.Frontend("fe", binds=[model.Bind(bind_host, 0)], default_backend="be",
                                         timeouts=model.Timeouts(**(timeouts_fe or {})), **(frontend or {}))
    return cfg


@contextlib.asynccontextmanager
async def running(cfg: model.Config, pump_class: Any, **engine_kwargs: Any) -> AsyncIterator[Engine]:
    engine = Engine(cfg, pump_class=pump_class, **engine_kwargs)
    await engine.start()
    try:
        yield engine
    finally:
        await engine.stop(grace=0.5)


async def connect(address: tuple) -> socket.socket:
    loop = asyncio.get_running_loop()
    family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setblocking(False)
    await loop.sock_connect(sock, address[:2])
    return sock


async def recv_all(sock: socket.socket, timeout: float = 10.0) -> bytes:
    """Everything until EOF."""
    loop = asyncio.get_running_loop()
    chunks = []

    async def read() -> None:
        while data := await loop.sock_recv(sock, 1 << 16):
            chunks.append(data)
    await asyncio.wait_for(read(), timeout)
    return b"".join(chunks)


async def recv_exactly(sock: socket.socket, n: int, timeout: float = 10.0) -> bytes:
    loop = asyncio.get_running_loop()
    buf = bytearray()

    async def read() -> None:
        while len(buf) < n:
            data = await loop.sock_recv(sock, n - len(buf))
            if not data:
                raise EOFError(f"EOF after {len(buf)} of {n} bytes")
            buf.extend(data)
    await asyncio.wait_for(read(), timeout)
    return bytes(buf)


def reset(sock: socket.socket) -> None:
    """Close with a RST."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


async def wait_until(predicate: Callable[[], bool], timeout: float = 5.0, interval: float = 0.01) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(interval)


# --- backends that name themselves, and clients from distinct addresses -------------------------

class NamedBackends:
    """Servers on 127.0.0.1 that send their name, then close (or, with ``hold``, keep the connection
    open until the client closes it).  ``accepted`` counts connections per name, ``open`` those open.
    ``async with NamedBackends(names) as backends`` listens for the length of the block."""

    def __init__(self, names: list[str], *, hold: bool = False) -> None:
        self.names = names
        self.hold = hold
        self.accepted: collections.Counter[str] = collections.Counter()
        self.open: collections.Counter[str] = collections.Counter()
        self.servers: list[asyncio.AbstractServer] = []
        self.ports: list[int] = []

    async def start(self) -> "NamedBackends":
        for name in self.names:
            server = await self._listen(name, 0)
            self.servers.append(server)
            self.ports.append(server.sockets[0].getsockname()[1])
        return self

    def _listen(self, name: str, port: int) -> Any:
        return asyncio.start_server(lambda r, w, name=name: self._serve(name, r, w), "127.0.0.1", port,
                                    backlog=1024, reuse_address=True)

    def stop_server(self, name: str) -> None:
        """``name`` stops listening (connections to it are refused) until ``restart_server``."""
        self.servers[self.names.index(name)].close()

    async def restart_server(self, name: str) -> None:
        """``name`` listens again, on its port."""
        index = self.names.index(name)
        self.servers[index] = await self._listen(name, self.ports[index])

    async def _serve(self, name: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted[name] += 1
        self.open[name] += 1
        try:
            writer.write(name.encode() + b"\n")
            if self.hold:
                await reader.read()  # until the client goes away
        except (ConnectionError, OSError):
            pass
        finally:
            self.open[name] -= 1
            writer.close()

    def close(self) -> None:
        for server in self.servers:
            server.close()

    async def __aenter__(self) -> "NamedBackends":
        try:
            return await self.start()
        except BaseException:
            self.close()  # the listeners started before the one that failed
            raise

    async def __aexit__(self, *exc_info: object) -> None:
        self.close()


def source_address(i: int) -> str:
    """The i-th distinct client address in 127.1.0.0/16 and beyond (never 127.0.0.1)."""
    i += 1 << 16
    return f"127.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}"


async def open_client(address: tuple, source: str | None = None) -> tuple[socket.socket, str]:
    """Connect (from ``source`` if given) and read the server's name line."""
    loop = asyncio.get_running_loop()
    sock = socket.socket()
    sock.setblocking(False)
    if source is not None:
        sock.bind((source, 0))
    await loop.sock_connect(sock, address)
    line = b""
    while not line.endswith(b"\n"):
        data = await asyncio.wait_for(loop.sock_recv(sock, 64), 10)
        if not data:
            raise EOFError(f"the proxy closed after {line!r}")
        line += data
    return sock, line.decode().strip()


# --- the reference: haproxy on the same file ------------------------------------------------------

def compared_prologue(directory: Any, defaults_extra: str = "") -> str:
    """The head of a file fastproxy and haproxy both run in the comparisons through the stats socket:
    one thread, ``directory``/admin.sock at level admin, defaults in mode tcp (1 s to connect, 5 s
    idle) and ``defaults_extra`` lines."""
    return f"""\
global
    nbthread 1
    stats socket {directory}/admin.sock level admin
defaults
    mode tcp
    timeout connect 1s
    timeout client 5s
    timeout server 5s
{defaults_extra}"""


@contextlib.asynccontextmanager
async def haproxy_running(cfg: str, stats_socket: str) -> AsyncIterator[None]:
    """The real haproxy (``-db``) on ``cfg`` until the block ends, once its ``stats socket`` exists."""
    proc = await asyncio.create_subprocess_exec(shutil.which("haproxy") or "haproxy", "-db", "-f", cfg,
                                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(100):
            if os.path.exists(stats_socket) or proc.returncode is not None:
                break
            await asyncio.sleep(0.05)
        yield
    finally:
        if proc.returncode is None:
            proc.terminate()
        await proc.wait()


# --- fastproxy as a process -------------------------------------------------------------------------

# A file both fastproxy and the real haproxy run: one echo service on ``port`` over ``backend``.
ECHO_LISTEN = """\
global
    nbthread 1
{global_extra}
defaults
    mode tcp
    timeout connect 5s
    timeout client 30s
    timeout server 30s

listen echo
    bind 127.0.0.1:{port}
    server e1 127.0.0.1:{backend}
"""


def echo_listen(port: int, backend: int, global_extra: str = "") -> str:
    return ECHO_LISTEN.format(port=port, backend=backend, global_extra=global_extra)


DEFAULT_ADDRESS = ("127.0.0.1", 8080)
# Every suite run on the machine (each worktree's, CI's) takes this lock around the embedded default:
# without it, one run's clients reached another run's proxy on 8080 and its own process was stopped
# before it had set its signal handlers (exit -15).
DEFAULT_ADDRESS_LOCK = "/tmp/fastproxy-tests-127.0.0.1-8080.lock"


@contextlib.contextmanager
def default_address_held(timeout: float = 300.0) -> Iterator[None]:
    """127.0.0.1:8080, the embedded default's address, for this block alone among the test runs on the
    machine (an exclusive ``flock`` on ``DEFAULT_ADDRESS_LOCK``, waited for at most ``timeout`` s)."""
    with open(DEFAULT_ADDRESS_LOCK, "a") as lock:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise AssertionError(f"{DEFAULT_ADDRESS_LOCK} held by another test run for {timeout} s")
                time.sleep(0.1)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def start_fastproxy(args: list[str], env: dict, pass_fds: tuple[int, ...] = (), *,
                    stderr: Any = subprocess.PIPE, umask: int = -1) -> subprocess.Popen:
    """``fastproxy <args>`` as a child process (inheriting the descriptors ``pass_fds``); ``stderr``
    may be a file to read while it runs; ``umask``, when given, is the child's."""
    return subprocess.Popen([sys.executable, "-m", "fastproxy", *args], env=env, pass_fds=pass_fds,
                            stdout=subprocess.PIPE, stderr=stderr, text=True, umask=umask)


def children(pid: int) -> list[int]:
    """The processes ``pid`` started that are still running (or not yet reaped)."""
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(child) for child in f.read().split()]
    except FileNotFoundError:
        return []


def workers(master: int) -> list[int]:
    """The worker processes of the master ``master``: its children started with ``--worker-link``, or
    spares that became workers (spare.py); not its spare, nor a child still starting."""
    return [pid for pid in children(master) if is_worker(pid)]


def spares(master: int) -> list[int]:
    """The master's spare workers still waiting for a reload (one at most)."""
    return [pid for pid in children(master) if is_spare(pid)]


def zygotes(master: int) -> list[int]:
    """The master's spare zygote (spare.py), one at most."""
    return [pid for pid in children(master) if is_zygote(pid)]


def command_line(pid: int) -> list[bytes]:
    """``pid``'s arguments, as /proc has them."""
    with open(f"/proc/{pid}/cmdline", "rb") as f:
        return f.read().split(b"\0")[:-1]


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie does not)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError):  # ESRCH: it went between the open and the read
        return False


def wait_for(predicate: Callable[[], Any], timeout: float = 15.0, what: str = "condition") -> Any:
    """Poll ``predicate`` (every 20 ms, for at most ``timeout`` s) until it returns something true."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"{what}: not met within {timeout} s")


def wait_listening(address: tuple, proc: subprocess.Popen, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"fastproxy exited early: {proc.communicate()}")
        try:
            socket.create_connection(address, timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise AssertionError(f"nothing listens on {address}")


class EchoThread:
    """A blocking echo backend in a thread of the test process."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._echo, args=(conn,), daemon=True).start()

    @staticmethod
    def _echo(conn: socket.socket) -> None:
        with conn:
            while data := conn.recv(65536):
                conn.sendall(data)

    def close(self) -> None:
        self.sock.close()


def assert_cut(established: socket.socket) -> None:
    """The proxy ended the connection without being asked: EOF (or a reset) and nothing else; closed."""
    established.settimeout(5)
    try:
        assert established.recv(100) == b""
    except ConnectionResetError:
        pass
    established.close()


def exchange_line(sock: socket.socket, line: bytes) -> bytes:
    sock.sendall(line)
    data = b""
    while not data.endswith(b"\n"):
        chunk = sock.recv(1024)
        if not chunk:
            break
        data += chunk
    return data


def fuzzed(examples: int) -> Any:
    """Hypothesis' settings for a fuzzing property: ``examples`` inputs (times ``FUZZ_SCALE`` from the
    environment, for a longer run by hand), no per-example deadline (a property checks its own time
    bound, generous for CI under load), and no complaint about slow or large inputs: they are the point."""
    from hypothesis import HealthCheck, settings
    return settings(max_examples=examples * int(os.environ.get("FUZZ_SCALE", "1")), deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                           HealthCheck.function_scoped_fixture])


def cli_requests(data: bytes) -> list[bytes]:
    """The complete requests in what a client of the stats socket sends: cut on LF and unescaped ';'
    (a backslash escapes the byte after it), as the runtime API cuts them."""
    requests, start, i = [], 0, 0
    while i < len(data):
        if data[i] == 0x5C:
            i += 2
            continue
        if data[i] in (0x0A, 0x3B):
            requests.append(data[start:i])
            start = i + 1
        i += 1
    return requests


# A file with every part the runtime API and the stats listener act on, for the fuzzing of both (the
# live tests in tests/integration/test_garbage_on_the_ports.py, the atheris targets through fuzz/live.py):
# a stats socket in ``directory``, a frontend over two servers and a stick table, a stats page with its
# admin form and monitor-uri.
OPERATED_CONFIG = """\
global
    stats socket {directory}/admin.sock level admin mode 600
    stats timeout 10s
defaults
    mode tcp
    timeout connect 2s
    timeout client 10s
    timeout server 10s
frontend fe
    bind 127.0.0.1:{fe}
    default_backend be
backend be
    balance roundrobin
    stick-table type ip size 100 expire 1m store conn_cnt
    tcp-request content track-sc0 src
    server s1 127.0.0.1:{s1}
    server s2 127.0.0.1:{s2} weight 3
listen stats
    mode http
    bind 127.0.0.1:{stats}
    stats enable
    stats uri /stats
    stats auth admin:secret
    stats admin if TRUE
    monitor-uri /healthz
"""


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def bindable(address: tuple) -> bool:
    """Whether another process could bind and listen on ``address`` now (with SO_REUSEADDR, as a
    proxy's listener binds)."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(address)
            sock.listen()
        except OSError:
            return False
    return True


def stop_releasing(proc: subprocess.Popen, address: tuple) -> None:
    """``stop(proc)`` and the processes it started (killed by their pids after 15 s), then wait until
    ``address`` can be bound again: ``haproxy -W``'s master can exit before its worker, whose listener,
    still in the SO_REUSEPORT group, would take and reset clients of the next process bound there."""
    started = children(proc.pid)
    stop(proc)
    deadline = time.monotonic() + 15
    while any(alive(pid) for pid in started) and time.monotonic() < deadline:
        time.sleep(0.005)
    for pid in filter(alive, started):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    wait_for(lambda: bindable(address), what=f"{address} released")


_HANDED_OUT: set[int] = set()


def _ephemeral_low() -> int:
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def assert_verdicts(tmp_path: Any, texts: dict[str, bool]) -> None:
    """Each configuration text (``{port}`` in it replaced by a free port) is valid or not as said, for
    fastproxy (what ``fastproxy check`` runs) and for ``haproxy -c`` when it is installed."""
    haproxy = shutil.which("haproxy")
    for text, valid in texts.items():
        path = tmp_path / "check.cfg"
        path.write_text(text.replace("{port}", str(free_port())))
        try:
            load([str(path)])
            ours = True
        except ConfigError:
            ours = False
        if haproxy is not None:
            theirs = subprocess.run([haproxy, "-c", "-f", str(path)], capture_output=True,
                                    check=False).returncode == 0
            assert theirs == valid, text
        assert ours == valid, text


def in_a_frontend(lines: str, before: str = "") -> str:
    """A file whose TCP frontend ``fe`` (on ``{port}``) holds ``lines``, ``before`` ahead of it (a
    ``global`` section): what the verdict tests write each keyword in."""
    return (before + "defaults\n mode tcp\n timeout connect 2s\n timeout client 5s\n timeout server 5s\n"
            "frontend fe\n bind 127.0.0.1:{port}\n default_backend b\n" + lines
            + "backend b\n server s 127.0.0.1:1\n")


def free_port() -> int:
    """A loopback port nothing listens on, taken below the kernel's ephemeral range: a port from
    bind(0) is in that range, where any outgoing connection of the tests may take it before its use."""
    low = _ephemeral_low()
    for _ in range(500):
        port = random.randrange(10000, low)
        if port in _HANDED_OUT:
            continue
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        _HANDED_OUT.add(port)
        return port
    with socket.socket() as sock:  # the range is crowded: what the kernel gives
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# --- the consistent-hash references -----------------------------------------------------------------

def slots(weights, rank, in_flight, factor):
    """HAProxy's chash_server_is_eligible(): the connections a server may have before this one."""
    total_slots = ((in_flight + 1) * factor + 99) // 100
    total_weight = sum(weights)
    per_weight, remainder = divmod(total_slots, total_weight)
    cumulative, weight = sum(weights[:rank]), weights[rank]
    count = (weight * per_weight + (cumulative + weight) * remainder // total_weight
             - cumulative * remainder // total_weight)
    return count or 1


# --- a real etcd ---------------------------------------------------------------------------------------

class Etcd:
    """A real etcd (Debian's ``etcd-server``) on free loopback ports with a temporary data directory,
    started and stopped by its own pid.  ``kill()`` stops it at once (SIGKILL, as a crash), ``start()``
    brings it back on the same ports and data."""

    def __init__(self, data_dir: str) -> None:
        self.data_dir = data_dir
        self.port, self.peer_port = free_port(), free_port()
        self.endpoint = f"127.0.0.1:{self.port}"
        self.proc: Optional[subprocess.Popen] = None

    def start(self, timeout: float = 20.0) -> None:
        url, peer = f"http://127.0.0.1:{self.port}", f"http://127.0.0.1:{self.peer_port}"
        log_path = f"{self.data_dir}.log"  # a file, not a pipe nobody reads while etcd runs
        with open(log_path, "a") as log_file:
            self.proc = subprocess.Popen(
                ["etcd", "--name", "test", "--data-dir", self.data_dir, "--listen-client-urls", url,
                 "--advertise-client-urls", url, "--listen-peer-urls", peer,
                 "--initial-advertise-peer-urls", peer, "--initial-cluster", f"test={peer}",
                 "--log-level", "error"],
                stdout=subprocess.DEVNULL, stderr=log_file)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                with open(log_path) as log_file:
                    raise AssertionError(f"etcd exited early: {log_file.read()[-2000:]}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                    sock.sendall(b"GET /health HTTP/1.0\r\n\r\n")
                    if b'"health":"true"' in sock.recv(4096).replace(b" ", b""):
                        return
            except OSError:
                pass
            time.sleep(0.1)
        raise AssertionError("etcd did not become healthy in time")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self.proc = None

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None


@contextlib.contextmanager
def etcd_server(data_dir: str) -> Iterator[Etcd]:
    etcd = Etcd(data_dir)
    etcd.start()
    try:
        yield etcd
    finally:
        etcd.stop()


# --- a path that can be partitioned -------------------------------------------------------------------

class PartitionableRelay:
    """A TCP relay on loopback to ``target`` that a test partitions: ``partition()`` stops carrying
    bytes both ways while every connection stays open (packets dropped on a path: nothing tells either
    end), new connections included; ``heal()`` carries what waited and what follows.  Use it as an
    async context manager; ``address`` is where to connect."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.flowing = asyncio.Event()
        self.flowing.set()
        self.server: Optional[asyncio.AbstractServer] = None
        self.address: tuple[str, int] = ("127.0.0.1", 0)
        self._tasks: set[asyncio.Task] = set()
        self._writers: list[asyncio.StreamWriter] = []

    def partition(self) -> None:
        self.flowing.clear()

    def heal(self) -> None:
        self.flowing.set()

    async def _connected(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.close()
            return
        self._writers += [writer, upstream_writer]
        for source, sink in ((reader, upstream_writer), (upstream_reader, writer)):
            task = asyncio.ensure_future(self._carry(source, sink))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _carry(self, source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        try:
            while True:
                await self.flowing.wait()
                data = await source.read(65536)
                if not data:
                    break
                await self.flowing.wait()  # what was read as the partition began waits for the heal too
                sink.write(data)
                await sink.drain()
        except OSError:
            pass
        finally:
            sink.close()

    async def __aenter__(self) -> "PartitionableRelay":
        self.server = await asyncio.start_server(self._connected, "127.0.0.1", 0)
        self.address = self.server.sockets[0].getsockname()[:2]
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        assert self.server is not None
        self.server.close()
        for task in list(self._tasks):
            task.cancel()
        for writer in self._writers:
            writer.close()
        await self.server.wait_closed()


# --- TLS: certificates made by openssl, and a TLS echo server ----------------------------------------

def make_certificate(directory: Path, name: str, *, alt: tuple[str, ...] = ()) -> tuple[Path, Path, Path]:
    """A self-signed certificate for ``name`` (and the DNS names ``alt``), made by openssl: its file,
    its key's, and both in one PEM (what HAProxy's ``crt`` takes)."""
    cert, key, both = directory / f"{name}.crt", directory / f"{name}.key", directory / f"{name}.pem"
    names = ",".join(f"DNS:{host}" for host in (name, *alt))
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={name}",
                    "-addext", f"subjectAltName={names}", "-days", "2", "-keyout", str(key),
                    "-out", str(cert)], check=True, capture_output=True)
    both.write_bytes(cert.read_bytes() + key.read_bytes())
    return cert, key, both


class TlsEchoServer(EchoThread):
    """A TLS server on 127.0.0.1 (Python's ssl, blocking sockets, a thread per client): it first writes
    one line of what the handshake gave (``sni=<name> alpn=<protocol> client=<common name>
    resumed=<bool>``), then echoes until the client's close_notify, and closes with its own.  A
    handshake it refuses closes the connection."""

    def __init__(self, context: ssl.SSLContext) -> None:
        self.context = context
        self.names: dict[int, Optional[str]] = {}
        context.sni_callback = self._sni
        self.handshakes = 0
        super().__init__()

    def _sni(self, obj: Any, name: Optional[str], context: ssl.SSLContext) -> None:
        self.names[id(obj)] = name

    def _echo(self, conn: socket.socket) -> None:  # type: ignore[override]
        conn.settimeout(10)
        try:
            tls = self.context.wrap_socket(conn, server_side=True)
            self.handshakes += 1
            peer = tls.getpeercert() or {}
            client = next((value for rdn in peer.get("subject", ()) for key, value in rdn
                           if key == "commonName"), None)
            tls.sendall(f"sni={self.names.pop(id(tls), None)} alpn={tls.selected_alpn_protocol()} "
                        f"client={client} resumed={tls.session_reused}\n".encode())
            while data := tls.recv(65536):
                tls.sendall(data)
            tls.unwrap()
        except (OSError, ssl.SSLError, ValueError):
            pass
        finally:
            conn.close()


def unix_request(path, request: str) -> str:
    """One request on a UNIX stats socket (HAProxy's runtime API): the whole answer, once it closes."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(10)
        sock.connect(str(path))
        sock.sendall(request.encode() + b"\n")
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    return data.decode()
