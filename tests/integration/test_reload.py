"""Master-worker mode as a real process: ``fastproxy run -W``, reloads on SIGUSR2/SIGHUP, the
listening sockets kept across them, soft stops, broken reloads, daemon mode, systemd notifications.

Every wait is bounded and waits for something (a log line, a listener, a process gone), not a delay.
"""

from __future__ import annotations

import hashlib
import os
import re
import signal
import socket
import threading
import time
from pathlib import Path

import pytest

from ..support import (alive, assert_cut, command_line, echo_process, exchange_line, free_port, spares,
                       start_fastproxy, stop, wait_for, workers, zygotes)

CONFIG = """\
global
    nbthread 1
{global_extra}
defaults
    mode tcp
    timeout connect 5s
    timeout client 30s
    timeout server 30s

listen echo
{binds}
{listen_extra}
    server e1 127.0.0.1:{backend}
"""

# Keeps the frontend on the Python path (rules), instead of a lane the pump accepts on.
PYTHON_PATH = "    tcp-request session accept if { src 127.0.0.0/8 }"


def write_config(path: Path, backend: int, ports: list[int], *, global_extra: str = "",
                 listen_extra: str = "") -> None:
    binds = "\n".join(f"    bind 127.0.0.1:{port}" for port in ports)
    path.write_text(CONFIG.format(backend=backend, binds=binds, global_extra=global_extra,
                                  listen_extra=listen_extra))


class Master:
    """A ``fastproxy run -W`` process, its stderr in a file read as it runs."""

    def __init__(self, tmp_path: Path, env: dict, cfg: Path, *args: str) -> None:
        self.log_path = tmp_path / "stderr.log"
        self.log_file = open(self.log_path, "w")
        self.proc = start_fastproxy(["run", *args, "-f", str(cfg)], env, stderr=self.log_file)
        self.pid = self.proc.pid

    def log(self) -> str:
        return self.log_path.read_text()

    def wait_log(self, text: str, count: int = 1, timeout: float = 30.0) -> None:
        wait_for(lambda: self.log().count(text) >= count or self.proc.poll() is not None, timeout, text)
        assert self.log().count(text) >= count, f"{text!r} not logged:\n{self.log()}"

    def workers(self) -> list[int]:
        return workers(self.pid)

    def reload(self, number: int, signum: int = signal.SIGUSR2) -> None:
        """Reload, and wait until worker #number serves."""
        os.kill(self.pid, signum)
        self.wait_serving(number)

    def wait_serving(self, number: int = 1) -> None:
        """Until the master says worker #number serves (the listeners accept before: they are the
        master's)."""
        serving = re.compile(rf"worker #{number} \(\d+\) serving")
        wait_for(lambda: serving.search(self.log()) or self.proc.poll() is not None, 30,
                 f"worker #{number} serving")
        assert serving.search(self.log()), self.log()

    def close(self) -> None:
        stop(self.proc)
        self.log_file.close()


@pytest.fixture
def backend():
    with echo_process() as port:
        yield port


def connected(port: int) -> socket.socket:
    """A client connection through the proxy, one line echoed already."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    assert exchange_line(sock, b"before\n") == b"before\n"
    return sock


def roundtrip(port: int, line: bytes = b"ping\n") -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        return exchange_line(sock, line)


@pytest.mark.parametrize("how", ["-W", "master-worker"])
def test_the_master_starts_one_worker_holds_the_pidfile_and_stops_with_it(implementation_env, tmp_path,
                                                                         backend, how):
    port, pidfile, cfg = free_port(), tmp_path / "fastproxy.pid", tmp_path / "haproxy.cfg"
    write_config(cfg, backend, [port], global_extra="    master-worker" if how == "master-worker" else "")
    master = Master(tmp_path, implementation_env, cfg, *(["-W"] if how == "-W" else []), "-p", str(pidfile))
    try:
        master.wait_serving()
        assert roundtrip(port) == b"ping\n"
        wait_for(pidfile.exists, 10, "pidfile")
        assert pidfile.read_text().strip() == str(master.pid)
        workers = master.workers()
        assert len(workers) == 1
        master.proc.send_signal(signal.SIGTERM)
        assert master.proc.wait(timeout=20) == 0
        assert not alive(workers[0])
        assert not pidfile.exists()
        assert "all workers exited" in master.log()
    finally:
        master.close()


@pytest.mark.parametrize("signum", [signal.SIGUSR2, signal.SIGHUP], ids=["SIGUSR2", "SIGHUP"])
def test_a_reload_starts_a_worker_on_the_new_file_and_the_former_one_hands_its_connections_over(
        implementation_env, tmp_path, backend, signum):
    port, added, cfg = free_port(), free_port(), tmp_path / "haproxy.cfg"
    write_config(cfg, backend, [port])
    master = Master(tmp_path, implementation_env, cfg, "-W")
    try:
        master.wait_serving()
        [first] = master.workers()
        established = connected(port)

        write_config(cfg, backend, [port, added])  # the new file listens on one more address
        master.reload(2, signum)
        assert roundtrip(added) == b"ping\n" and roundtrip(port) == b"ping\n"
        # The former worker gave its connection to the new one and exited at once...
        wait_for(lambda: not alive(first), 10, "the former worker exits")
        master.wait_log(f"former worker #1 ({first}) exited with code 0")
        # ...which serves it on.
        assert exchange_line(established, b"during\n") == b"during\n"
        assert len(master.workers()) == 1 and master.proc.poll() is None
        established.close()
        assert roundtrip(port) == b"ping\n"
    finally:
        master.close()
    assert master.proc.returncode == 0


def test_hard_stop_after_cuts_the_former_workers_connections(implementation_env, tmp_path, backend):
    port, cfg = free_port(), tmp_path / "haproxy.cfg"
    write_config(cfg, backend, [port], global_extra="    hard-stop-after 1s")
    master = Master(tmp_path, implementation_env, cfg, "-W")
    try:
        master.wait_serving()
        [first] = master.workers()
        established = connected(port)
        # The server is renamed: the connection has no route in the new file and stays.
        cfg.write_text(cfg.read_text().replace("server e1 ", "server e2 "))
        master.reload(2)
        started = time.monotonic()
        wait_for(lambda: not alive(first), 15, "the former worker is cut")
        assert time.monotonic() - started >= 0.5
        assert_cut(established)
        assert roundtrip(port) == b"ping\n"
    finally:
        master.close()


def test_a_broken_configuration_leaves_the_worker_serving(implementation_env, tmp_path, backend):
    port, cfg = free_port(), tmp_path / "haproxy.cfg"
    write_config(cfg, backend, [port])
    master = Master(tmp_path, implementation_env, cfg, "-W")
    try:
        master.wait_serving()
        [worker] = master.workers()
        write_config(cfg, backend, [port], listen_extra="    balance no-such-algorithm")
        os.kill(master.pid, signal.SIGUSR2)
        master.wait_log("[ALERT] reload: configuration errors")
        bad_line = cfg.read_text().splitlines().index("    balance no-such-algorithm") + 1
        assert f"{cfg}:{bad_line}" in master.log()  # file:line of the bad line
        # An address the master cannot bind is a failed reload too.
        taken = socket.socket()
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        write_config(cfg, backend, [port, taken.getsockname()[1]])
        os.kill(master.pid, signal.SIGHUP)
        master.wait_log("[ALERT] reload: cannot listen")
        taken.close()
        assert master.workers() == [worker]
        assert master.proc.poll() is None
        assert roundtrip(port) == b"ping\n"
        # Fixed, it reloads.
        write_config(cfg, backend, [port])
        master.reload(2)
        wait_for(lambda: not alive(worker), 15, "the former worker exits")
        assert roundtrip(port) == b"ping\n"
    finally:
        master.close()


@pytest.mark.timeout(180)
@pytest.mark.parametrize("path", ["lane", "python"])
def test_no_connection_is_refused_or_reset_across_reloads(implementation_env, tmp_path, backend, path):
    """Clients connect in a bounded loop while the master reloads five times: every exchange
    completes, none is refused or reset (the workers share the master's listening sockets)."""
    port, cfg = free_port(), tmp_path / "haproxy.cfg"
    write_config(cfg, backend, [port], listen_extra=PYTHON_PATH if path == "python" else "")
    master = Master(tmp_path, implementation_env, cfg, "-W")
    outcomes: dict[str, int] = {"complete": 0, "refused": 0, "reset": 0, "truncated": 0, "timeout": 0}
    lock = threading.Lock()
    done = threading.Event()
    deadline = time.monotonic() + 120  # bounded in time, whatever happens

    def client(index: int) -> None:
        for n in range(20000):  # and bounded in count
            if done.is_set() or time.monotonic() > deadline:
                return
            line = b"%d-%d %s\n" % (index, n, b"x" * 100)
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
                    outcome = "complete" if exchange_line(sock, line) == line else "truncated"
            except ConnectionRefusedError:
                outcome = "refused"
            except ConnectionResetError:
                outcome = "reset"
            except socket.timeout:
                outcome = "timeout"
            with lock:
                outcomes[outcome] += 1

    try:
        master.wait_serving()
        threads = [threading.Thread(target=client, args=(i,)) for i in range(3)]
        for thread in threads:
            thread.start()
        try:
            for number in range(2, 7):
                before = outcomes["complete"]
                master.reload(number)
                wait_for(lambda: outcomes["complete"] > before + 20, 30, "traffic after the reload")
        finally:
            done.set()
            for thread in threads:
                thread.join(30)
        wait_for(lambda: len(master.workers()) == 1, 20, "the former workers exit")
    finally:
        master.close()
    failed = {key: value for key, value in outcomes.items() if key != "complete" and value}
    assert not failed, f"{failed} of {sum(outcomes.values())} connections"
    assert outcomes["complete"] > 100


def test_the_master_exits_when_its_worker_dies(implementation_env, tmp_path, backend):
    port, cfg = free_port(), tmp_path / "haproxy.cfg"
    write_config(cfg, backend, [port])
    master = Master(tmp_path, implementation_env, cfg, "-W")
    try:
        master.wait_serving()
        [worker] = master.workers()
        os.kill(worker, signal.SIGKILL)
        assert master.proc.wait(timeout=20) == 128 + signal.SIGKILL
        assert "current worker #1" in master.log() and "exited with code 137" in master.log()
    finally:
        master.close()


def test_a_worker_whose_master_is_gone_soft_stops(implementation_env, tmp_path, backend):
    port, cfg = free_port(), tmp_path / "haproxy.cfg"
    write_config(cfg, backend, [port])
    master = Master(tmp_path, implementation_env, cfg, "-W")
    try:
        master.wait_serving()
        [worker] = master.workers()
        master.proc.kill()
        master.proc.wait(timeout=10)
        wait_for(lambda: not alive(worker), 20, "the orphaned worker exits")
    finally:
        master.close()


class NewWorker:
    """A reload's new worker (``run --worker-link FD --handover-from FD``) whose master is the test:
    it holds the link and the pairs' channel, and tells the worker nothing."""

    def __init__(self, tmp_path: Path, env: dict, cfg: Path) -> None:
        self.link, their_link = socket.socketpair()
        self.pairs, their_pairs = socket.socketpair()
        self.log_path = tmp_path / "stderr.log"
        with open(self.log_path, "w") as log_file:
            self.proc = start_fastproxy(
                ["run", "--worker-link", str(their_link.fileno()), "--handover-from",
                 str(their_pairs.fileno()), "-f", str(cfg)], env,
                pass_fds=(their_link.fileno(), their_pairs.fileno()), stderr=log_file)
        their_link.close()
        their_pairs.close()
        self.link.settimeout(30)

    def close(self) -> None:
        self.link.close()
        self.pairs.close()
        stop(self.proc)


def test_a_new_worker_its_master_never_says_prepared_accepts_after_the_prepare_timeout(
        implementation_env, tmp_path, backend):
    port, cfg = free_port(), tmp_path / "haproxy.cfg"
    write_config(cfg, backend, [port])
    worker = NewWorker(tmp_path, implementation_env, cfg)
    try:
        assert worker.link.recv(len(b"READY\n")) == b"READY\n"
        with socket.create_connection(("127.0.0.1", port), timeout=30) as client:
            client.sendall(b"never prepared\n")
            # Deaf until PREPARE_TIMEOUT (service.py), then accepting unprepared: never deaf for good.
            assert exchange_line(client, b"") == b"never prepared\n"
        assert "accepting unprepared" in worker.log_path.read_text()
    finally:
        worker.close()


def test_a_new_worker_whose_master_goes_before_preparing_it_soft_stops(implementation_env, tmp_path,
                                                                      backend):
    port, cfg = free_port(), tmp_path / "haproxy.cfg"
    write_config(cfg, backend, [port])
    worker = NewWorker(tmp_path, implementation_env, cfg)
    try:
        assert worker.link.recv(len(b"READY\n")) == b"READY\n"
        worker.link.close()  # the master is gone
        assert worker.proc.wait(timeout=30) == 0
        assert "accepting unprepared" not in worker.log_path.read_text()
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=5).close()
    finally:
        worker.close()


def wait_spare(master: Master, count: int = 1) -> int:
    """The master's spare worker once ready (the ``count``-th one to be), its pid."""
    def ready() -> list[str]:
        return re.findall(r"spare worker \((\d+)\) ready", master.log())
    wait_for(lambda: len(ready()) >= count or master.proc.poll() is not None, 30, f"spare #{count} ready")
    ready = ready()
    assert len(ready) >= count, master.log()
    pid = int(ready[count - 1])
    assert spares(master.pid) == [pid] and pid not in master.workers()
    return pid


class Spared:
    """A master serving on ``port`` with worker ``worker``, and its spare ``spare`` ready."""

    def __init__(self, master: Master, port: int) -> None:
        self.master, self.port = master, port
        master.wait_serving()
        [self.worker] = master.workers()
        self.spare = wait_spare(master)  # started ahead of the reload, past its imports


@pytest.fixture
def spared(implementation_env, tmp_path, backend):
    port, cfg = free_port(), tmp_path / "haproxy.cfg"
    write_config(cfg, backend, [port])
    master = Master(tmp_path, implementation_env, cfg, "-W")
    try:
        yield Spared(master, port)
    finally:
        master.close()


def test_a_reload_makes_the_spare_worker_the_new_worker_and_starts_the_next_spare(spared):
    master, first, spare = spared.master, spared.worker, spared.spare
    established = connected(spared.port)
    master.reload(2)
    wait_for(lambda: first not in master.workers(), 10, "the former worker exits and is reaped")
    assert master.workers() == [spare]  # the spare that existed before SIGUSR2 serves
    assert f"spare worker ({spare}) becomes the new worker" in master.log()
    assert exchange_line(established, b"during\n") == b"during\n"  # its pairs moved to the spare
    assert roundtrip(spared.port) == b"ping\n"
    following = wait_spare(master, 2)  # the next reload's, started once this one is done
    assert following != spare
    master.reload(3)
    wait_for(lambda: spare not in master.workers(), 10, "the second worker exits and is reaped")
    assert master.workers() == [following]
    assert exchange_line(established, b"after\n") == b"after\n"
    established.close()
    last = wait_spare(master, 3)
    master.close()
    assert master.proc.returncode == 0
    wait_for(lambda: not alive(last), 10, "the spare stops with its master")


def test_a_reload_without_its_spare_starts_the_worker_afresh(spared):
    master, first, spare = spared.master, spared.worker, spared.spare
    os.kill(spare, signal.SIGKILL)
    master.wait_log(f"spare worker ({spare}) exited")
    established = connected(spared.port)
    master.reload(2)
    wait_for(lambda: first not in master.workers(), 10, "the former worker exits and is reaped")
    [second] = master.workers()
    assert second not in (first, spare)
    assert "becomes the new worker" not in master.log()
    assert exchange_line(established, b"during\n") == b"during\n"
    assert roundtrip(spared.port) == b"ping\n"
    assert wait_spare(master, 2) != spare  # a spare again for the next reload
    master.close()
    assert master.proc.returncode == 0


def test_the_spare_worker_exits_when_its_master_is_killed(spared):
    [zygote] = zygotes(spared.master.pid)
    spared.master.proc.kill()
    spared.master.proc.wait(timeout=10)
    wait_for(lambda: not alive(spared.spare), 10, "the spare exits (its link reads EOF)")
    wait_for(lambda: not alive(zygote), 10, "the zygote exits (its link reads EOF)")
    wait_for(lambda: not alive(spared.worker), 20, "the orphaned worker exits")


def forked(pid: int) -> bool:
    """Whether ``pid`` was forked from the zygote (a copy of it: its command line)."""
    return b"--zygote" in command_line(pid)


def test_spares_are_forked_from_the_zygote_and_the_master_reaps_them_as_its_own(spared):
    master, first, spare = spared.master, spared.worker, spared.spare
    [zygote] = zygotes(master.pid)
    assert zygote not in spares(master.pid) and zygote not in master.workers()
    assert forked(spare) and not forked(first)  # the first worker starts before the zygote is ready
    assert f"spare worker ({spare}) forked from the zygote" in master.log()
    master.reload(2)
    wait_for(lambda: first not in master.workers(), 10, "the former worker exits and is reaped")
    assert master.workers() == [spare]
    assert roundtrip(spared.port) == b"ping\n"
    following = wait_spare(master, 2)
    assert forked(following) and zygotes(master.pid) == [zygote]
    # The master is the forked worker's parent: its end is seen with its status, as a worker the
    # master started itself (the current worker's crash stops the master with its status).
    os.kill(spare, signal.SIGKILL)
    master.proc.wait(timeout=20)
    assert master.proc.returncode == 128 + signal.SIGKILL
    assert f"current worker #2 ({spare}) exited with code 137 (Killed)" in master.log()
    wait_for(lambda: not alive(following) and not alive(zygote), 10, "the spare and the zygote stop")


def test_without_its_zygote_the_master_starts_spares_afresh(spared):
    master, first, spare = spared.master, spared.worker, spared.spare
    [zygote] = zygotes(master.pid)
    os.kill(zygote, signal.SIGKILL)
    master.wait_log(f"spare zygote ({zygote}) exited")
    established = connected(spared.port)
    master.reload(2)  # the spare forked before goes on to serve
    wait_for(lambda: first not in master.workers(), 10, "the former worker exits and is reaped")
    assert master.workers() == [spare]
    following = wait_spare(master, 2)
    assert not forked(following)  # a new interpreter, as without a zygote
    master.reload(3)
    wait_for(lambda: master.workers() == [following], 10, "the second worker exits and is reaped")
    assert exchange_line(established, b"after\n") == b"after\n"
    assert roundtrip(spared.port) == b"ping\n"
    master.close()
    assert master.proc.returncode == 0


def test_daemon_mode_goes_to_the_background_once_serving(implementation_env, tmp_path, backend):
    port, pidfile, cfg = free_port(), tmp_path / "fastproxy.pid", tmp_path / "haproxy.cfg"
    write_config(cfg, backend, [port])
    launcher = start_fastproxy(["run", "-W", "-D", "-p", str(pidfile), "-f", str(cfg)], implementation_env)
    daemon = None
    try:
        assert launcher.wait(timeout=30) == 0  # only once the worker serves
        daemon = int(pidfile.read_text())
        assert daemon != launcher.pid and alive(daemon)
        assert roundtrip(port) == b"ping\n"
        [first] = workers(daemon)  # read before the reload: the new worker may be up at once
        os.kill(daemon, signal.SIGUSR2)
        wait_for(lambda: not alive(first), 30, "the former worker exits")
        assert roundtrip(port) == b"ping\n"
        os.kill(daemon, signal.SIGTERM)
        wait_for(lambda: not alive(daemon), 20, "the daemon exits")
        daemon = None
    finally:
        if daemon is not None and alive(daemon):
            os.kill(daemon, signal.SIGKILL)
        stop(launcher)


def test_systemd_is_told_ready_reloading_and_stopping(implementation_env, tmp_path, backend):
    port, cfg = free_port(), tmp_path / "haproxy.cfg"
    write_config(cfg, backend, [port])
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(tmp_path / "notify"))
    notify.settimeout(30)
    env = dict(implementation_env, NOTIFY_SOCKET=str(tmp_path / "notify"))
    master = Master(tmp_path, env, cfg, "-W")
    try:
        assert notify.recv(4096).split(b"\n")[0] == b"READY=1"
        master.reload(2)
        assert notify.recv(4096) == b"RELOADING=1"
        assert notify.recv(4096) == b"READY=1"
        master.proc.send_signal(signal.SIGTERM)
        assert notify.recv(4096) == b"STOPPING=1"
        assert master.proc.wait(timeout=20) == 0
    finally:
        master.close()
        notify.close()


def show_info_pid(address: "str | tuple[str, int]") -> int:
    family = socket.AF_UNIX if isinstance(address, str) else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.settimeout(10)
        sock.connect(address)
        sock.sendall(b"show info\n")
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    return int(answer.decode().split("\nPid: ", 1)[1].split("\n", 1)[0])


def test_the_stats_sockets_pass_to_the_new_worker(tmp_path, backend):
    """A UNIX stats socket is renamed over by the new worker and left alone by the former one; a TCP
    one is the master's, as the frontends' listeners are."""
    port, stats_port, cfg = free_port(), free_port(), tmp_path / "haproxy.cfg"
    unix = str(tmp_path / "stats.sock")
    stats = f"    stats socket {unix} level admin\n    stats socket ipv4@127.0.0.1:{stats_port} level admin"
    write_config(cfg, backend, [port], global_extra=stats)
    master = Master(tmp_path, dict(os.environ), cfg, "-W")
    try:
        master.wait_serving()
        [first] = master.workers()
        assert show_info_pid(unix) == show_info_pid(("127.0.0.1", stats_port)) == first
        master.reload(2)
        # Gone, and reaped by the master (a zombie is not alive, but still its child).
        wait_for(lambda: first not in master.workers(), 15, "the former worker exits")
        [second] = master.workers()
        assert show_info_pid(unix) == show_info_pid(("127.0.0.1", stats_port)) == second
    finally:
        master.close()


# --- established pairs move to the new worker --------------------------------------------------------

STATS_GLOBAL = "    stats socket {path} level admin"


def stats_command(path: str, command: str) -> str:
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(10)
        sock.connect(path)
        sock.sendall(command.encode() + b"\n")
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    return answer.decode()


class Stream:
    """A long stream through the proxy: random chunks sent at a steady pace until ``finish``, the echo
    read back by a thread of its own; SHA-256 of what was sent and of what came back."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        self.port = self.sock.getsockname()[1]
        self.sent, self.received = hashlib.sha256(), hashlib.sha256()
        self.sent_bytes = self.received_bytes = 0
        self.error: list[BaseException] = []
        self.stopping = threading.Event()
        self.writer = threading.Thread(target=self._write)
        self.reader = threading.Thread(target=self._read)
        self.writer.start()
        self.reader.start()

    def _write(self) -> None:
        deadline = time.monotonic() + 120
        try:
            for _ in range(100_000):  # bounded in count and in time
                if self.stopping.is_set() or time.monotonic() > deadline:
                    break
                chunk = os.urandom(16 * 1024)
                self.sock.sendall(chunk)
                self.sent.update(chunk)
                self.sent_bytes += len(chunk)
                time.sleep(0.005)
            self.sock.shutdown(socket.SHUT_WR)
        except OSError as exc:
            self.error.append(exc)

    def _read(self) -> None:
        try:
            while chunk := self.sock.recv(65536):
                self.received.update(chunk)
                self.received_bytes += len(chunk)
        except OSError as exc:
            self.error.append(exc)

    def finish(self) -> bool:
        """Stop sending, read the rest: True if every byte came back, in order, once."""
        self.stopping.set()
        self.writer.join(30)
        self.reader.join(30)
        self.sock.close()
        return (not self.error and self.received_bytes == self.sent_bytes > 0
                and self.received.digest() == self.sent.digest())


@pytest.mark.timeout(180)
@pytest.mark.parametrize("path", ["lane", "python"])
def test_a_long_stream_moves_to_each_new_worker_byte_exact(implementation_env, tmp_path, backend, path):
    """A stream runs across three reloads: each time its pair moves to the new worker (``show sess``
    on the stats socket, answered by the new worker, lists it) and the former worker exits without
    waiting for it; what comes back is what was sent, SHA-256 checked."""
    port, cfg, stats = free_port(), tmp_path / "haproxy.cfg", str(tmp_path / "stats.sock")
    write_config(cfg, backend, [port], global_extra=STATS_GLOBAL.format(path=stats),
                 listen_extra=PYTHON_PATH if path == "python" else "")
    master = Master(tmp_path, implementation_env, cfg, "-W")
    stream = None
    try:
        master.wait_serving()
        stream = Stream(port)
        wait_for(lambda: stream.received_bytes > 100_000, 20, "the stream flows")
        for number in range(2, 5):
            [former] = master.workers()
            master.reload(number)
            wait_for(lambda: not alive(former), 10, f"worker #{number - 1} exits, its stream moved")
            wait_for(lambda: len(master.workers()) == 1, 10, "the master reaps it")  # a zombie a moment
            [current] = master.workers()
            assert show_info_pid(stats) == current
            assert f"src=127.0.0.1:{stream.port} " in stats_command(stats, "show sess")
            flowing = stream.received_bytes
            wait_for(lambda: stream.received_bytes > flowing + 100_000, 20, "the stream flows on")
        assert "connection(s) moved to the new worker" in master.log()
        assert stream.finish(), (stream.sent_bytes, stream.received_bytes, stream.error)
        stream = None
    finally:
        if stream is not None:
            stream.finish()
        master.close()


def test_a_pair_whose_server_was_removed_stays_in_the_former_worker_until_it_ends(
        implementation_env, tmp_path, backend):
    port, cfg = free_port(), tmp_path / "haproxy.cfg"
    write_config(cfg, backend, [port])
    master = Master(tmp_path, implementation_env, cfg, "-W")
    try:
        master.wait_serving()
        [first] = master.workers()
        staying = connected(port)
        cfg.write_text(cfg.read_text().replace("server e1 ", "server e2 "))  # e1 is gone
        master.reload(2)
        assert roundtrip(port) == b"ping\n"  # new connections: the new worker, on e2
        # The former worker keeps the pair whose server the new file no longer has, and serves it.
        time.sleep(1.0)
        assert alive(first)
        assert exchange_line(staying, b"during\n") == b"during\n"
        staying.close()
        wait_for(lambda: not alive(first), 15, "the former worker exits once its pair ended")
        assert "0 connection(s) moved to the new worker, 1 left here" in master.log()
    finally:
        master.close()


def test_handover_frames_carry_their_header_payload_and_sockets_in_order():
    from fastproxy.handover import FrameReader, send_frame

    ours, theirs = socket.socketpair()
    carried = [socket.socketpair() for _ in range(3)]
    try:
        big = os.urandom(300_000)  # more than a socket buffer: the reader drains as the sender writes
        sender = threading.Thread(target=lambda: [
            send_frame(ours, {"n": 0}),
            send_frame(ours, {"n": 1, "payload": len(big), "fds": 2}, (carried[0][0].fileno(),
                                                                        carried[1][0].fileno()), big),
            send_frame(ours, {"n": 2, "payload": 3, "fds": 1}, (carried[2][0].fileno(),), b"end"),
            ours.shutdown(socket.SHUT_WR)])
        sender.start()
        reader = FrameReader(theirs)
        frames = []
        while (frame := reader.next()) is not None:
            frames.append(frame)
        sender.join(10)
        assert [(header["n"], len(fds), payload[:3]) for header, fds, payload in frames] == [
            (0, 0, b""), (1, 2, big[:3]), (2, 1, b"end")]
        assert frames[1][2] == big
        # Each descriptor received is the socket that was sent: what goes in one end comes out of its peer.
        for fd, (_, far) in zip(frames[1][1] + frames[2][1], carried):
            with socket.socket(fileno=fd) as received:
                received.sendall(b"x")
                assert far.recv(1) == b"x"
    finally:
        ours.close()
        theirs.close()
        for a, b in carried:
            a.close()
            b.close()
