"""Old-style reloads without a master, as HAProxy's: ``-sf``/``-st`` tell the former process to finish
or stop once the new one serves, and ``-x <stats socket>`` (with ``expose-fd listeners``) fetches the
former process's listening sockets over HAProxy's ``_getsocks``, so that nothing is refused.  Held to
the real haproxy both ways: fastproxy takes haproxy's sockets, haproxy takes fastproxy's.

``noreuseport`` in these files makes a bind beside the running process fail, so a process that
serves after ``-x`` serves on the socket it fetched.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest

from fastproxy.listener_transfer import TransferError, fetch_sockets

from ..support import (
    alive, echo_listen, echo_process, exchange_line, free_port, start_fastproxy, stop, wait_for,
)

HAPROXY = shutil.which("haproxy")
needs_haproxy = pytest.mark.skipif(HAPROXY is None, reason="the real haproxy is not installed")


def write(path: Path, port: int, backend: int, sock: Path | None = None, *, expose: bool = True,
          reuseport: bool = False) -> Path:
    extra = [] if reuseport else ["    noreuseport"]
    if sock is not None:
        extra.append(f"    stats socket {sock} level admin" + (" expose-fd listeners" if expose else ""))
    path.write_text(echo_listen(port, backend, "\n".join(extra)))
    return path


@pytest.fixture
def backend():
    with echo_process() as port:
        yield port


def roundtrip(port: int, line: bytes = b"ping\n") -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        return exchange_line(sock, line)


def serving(port: int, proc: subprocess.Popen, stats: Path | None = None) -> None:
    """Once ``proc`` answers on ``port`` and, if given, on its ``stats`` socket: a process serves
    traffic a moment before its stats socket exists (``-x`` then finds no file)."""
    def answers() -> bool:
        assert proc.poll() is None, f"exited: {proc.communicate()}"
        try:
            return roundtrip(port) == b"ping\n" and (stats is None or b"\nPid: " in show_info(stats))
        except OSError:
            return False
    wait_for(answers, 20, f"an answer on {port}" + (f" and on {stats}" if stats is not None else ""))


def show_info(stats: Path) -> bytes:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(5)
        sock.connect(str(stats))
        sock.sendall(b"show info\n")
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
        return data


def fastproxy(env: dict, cfg: Path, *args: str) -> subprocess.Popen:
    return start_fastproxy(["run", "-f", str(cfg), *args], env)


def haproxy(cfg: Path, *args: str) -> subprocess.Popen:
    assert HAPROXY is not None
    return subprocess.Popen([HAPROXY, "-db", "-f", str(cfg), *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def finish(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        stop(proc)


class Clients:
    """Connections opened one after the other (bounded in count and time) while a reload happens:
    each must be answered."""

    def __init__(self, port: int, count: int = 4000, seconds: float = 20.0) -> None:
        self.port, self.count, self.seconds = port, count, seconds
        self.done = 0
        self.failures: list[str] = []
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        deadline = time.monotonic() + self.seconds
        while self.done < self.count and time.monotonic() < deadline and not self._stop.is_set():
            try:
                if roundtrip(self.port, b"x\n") != b"x\n":
                    self.failures.append("truncated")
            except OSError as exc:
                self.failures.append(type(exc).__name__)
            self.done += 1

    def stop(self) -> None:
        self._stop.set()
        self.thread.join(30)


def test_getsocks_hands_the_listening_sockets_only_on_a_socket_that_exposes_them(
        implementation_env, tmp_path, backend):
    port, sock = free_port(), tmp_path / "admin.sock"
    proc = fastproxy(implementation_env, write(tmp_path / "a.cfg", port, backend, sock))
    try:
        serving(port, proc, sock)
        transferred = fetch_sockets(str(sock))
        try:
            assert [(t.sock.getsockname(), t.interface, t.namespace) for t in transferred] == \
                [(("127.0.0.1", port), "", "")]
            assert transferred[0].sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN) == 1
        finally:
            for t in transferred:
                t.sock.close()
    finally:
        finish(proc)

    hidden = tmp_path / "hidden.sock"
    proc = fastproxy(implementation_env, write(tmp_path / "b.cfg", port, backend, hidden, expose=False))
    try:
        serving(port, proc, hidden)
        with pytest.raises(TransferError, match="Failed to get the number of sockets to be transferred !"):
            fetch_sockets(str(hidden))
    finally:
        finish(proc)


def test_x_from_a_socket_without_expose_fd_fails_as_haproxy(implementation_env, tmp_path, backend):
    port, sock = free_port(), tmp_path / "hidden.sock"
    old = fastproxy(implementation_env, write(tmp_path / "a.cfg", port, backend, sock, expose=False))
    try:
        serving(port, old, sock)
        new = fastproxy(implementation_env, write(tmp_path / "b.cfg", port, backend), "-x", str(sock))
        assert new.wait(timeout=20) == 1
        err = new.stderr.read()
        assert "[WARNING] Failed to get the number of sockets to be transferred !" in err
        assert "[ALERT] Failed to get the sockets from the old process!" in err
        assert roundtrip(port) == b"ping\n" and old.poll() is None
    finally:
        finish(old)


def test_sf_with_x_moves_the_listeners_to_the_new_process_refusing_nothing(implementation_env, tmp_path,
                                                                           backend):
    port = free_port()
    first_sock, second_sock = tmp_path / "first.sock", tmp_path / "second.sock"
    old = fastproxy(implementation_env, write(tmp_path / "a.cfg", port, backend, first_sock))
    new = None
    try:
        serving(port, old, first_sock)
        established = socket.create_connection(("127.0.0.1", port), timeout=5)
        assert exchange_line(established, b"before\n") == b"before\n"
        clients = Clients(port)
        new = fastproxy(implementation_env, write(tmp_path / "b.cfg", port, backend, second_sock),
                        "-x", str(first_sock), "-sf", str(old.pid))
        serving(port, new)
        # The former process finishes its connection, then exits; the new one serves meanwhile.
        assert exchange_line(established, b"during\n") == b"during\n"
        established.close()
        assert old.wait(timeout=20) == 0
        wait_for(lambda: clients.done >= 200, 20, "clients after the reload")
        clients.stop()
        assert clients.failures == [] and clients.done >= 200
        assert roundtrip(port) == b"ping\n"
    finally:
        finish(old)
        if new is not None:
            finish(new)


def test_sf_without_x_binds_beside_the_running_process_with_so_reuseport(implementation_env, tmp_path,
                                                                        backend):
    port = free_port()
    old = fastproxy(implementation_env, write(tmp_path / "a.cfg", port, backend, reuseport=True))
    new = None
    try:
        serving(port, old)
        established = socket.create_connection(("127.0.0.1", port), timeout=5)
        assert exchange_line(established, b"before\n") == b"before\n"
        new = fastproxy(implementation_env, write(tmp_path / "b.cfg", port, backend, reuseport=True),
                        "-sf", str(old.pid))
        serving(port, new)
        assert exchange_line(established, b"during\n") == b"during\n" and old.poll() is None
        established.close()
        assert old.wait(timeout=20) == 0
        assert roundtrip(port) == b"ping\n"
    finally:
        finish(old)
        if new is not None:
            finish(new)


def test_noreuseport_makes_a_second_bind_fail(implementation_env, tmp_path, backend):
    port = free_port()
    old = fastproxy(implementation_env, write(tmp_path / "a.cfg", port, backend))
    try:
        serving(port, old)
        new = fastproxy(implementation_env, write(tmp_path / "b.cfg", port, backend), "-sf", str(old.pid))
        assert new.wait(timeout=20) == 1
        assert "Address already in use" in new.stderr.read()
        assert old.poll() is None  # told nothing: the new process never served
    finally:
        finish(old)


# A former process that records the signal it gets, and exits.
RECORDER = """\
import signal, sys
def got(signum, frame):
    print(signal.Signals(signum).name[3:], flush=True)
    sys.exit(0)
for s in (signal.SIGUSR1, signal.SIGTERM):
    signal.signal(s, got)
print('ready', flush=True)
signal.pause()
"""


def test_st_sends_sigterm_and_sf_sigusr1_once_serving(implementation_env, tmp_path, backend):
    """The signals, seen by a process that records them (a former process that is not fastproxy)."""
    for option, expected in (("-sf", "USR1"), ("-st", "TERM")):
        port = free_port()
        recorder = subprocess.Popen(["python3", "-c", RECORDER], stdout=subprocess.PIPE, text=True)
        new = None
        try:
            assert recorder.stdout.readline() == "ready\n"
            new = fastproxy(implementation_env, write(tmp_path / "b.cfg", port, backend), option,
                            str(recorder.pid))
            serving(port, new)
            assert recorder.wait(timeout=10) == 0
            assert recorder.stdout.read().strip() == expected
        finally:
            if recorder.poll() is None:
                recorder.kill()
                recorder.wait()
            if new is not None:
                finish(new)


def takes_over(old: subprocess.Popen, port: int, sock: Path, start_new) -> None:
    """``start_new(sock)`` (a process run with ``-x sock -sf <old>``) takes ``old``'s listeners while
    clients connect: ``old`` exits, no client is refused, reset or cut short."""
    new = None
    try:
        serving(port, old, sock)
        clients = Clients(port)
        new = start_new(sock)
        serving(port, new)
        assert old.wait(timeout=20) == 0
        wait_for(lambda: clients.done >= 200, 20, "clients after the reload")
        clients.stop()
        assert clients.failures == []
        assert roundtrip(port) == b"ping\n"
    finally:
        finish(old)
        if new is not None:
            finish(new)


@needs_haproxy
def test_fastproxy_takes_the_real_haproxys_listeners(implementation_env, tmp_path, backend):
    port, sock = free_port(), tmp_path / "haproxy.sock"
    old = haproxy(write(tmp_path / "haproxy.cfg", port, backend, sock))
    takes_over(old, port, sock, lambda sock: fastproxy(implementation_env, write(
        tmp_path / "fastproxy.cfg", port, backend), "-x", str(sock), "-sf", str(old.pid)))


@needs_haproxy
def test_the_real_haproxy_takes_fastproxys_listeners(implementation_env, tmp_path, backend):
    port, sock = free_port(), tmp_path / "fastproxy.sock"
    old = fastproxy(implementation_env, write(tmp_path / "fastproxy.cfg", port, backend, sock))
    takes_over(old, port, sock, lambda sock: haproxy(
        write(tmp_path / "haproxy.cfg", port, backend), "-x", str(sock), "-sf", str(old.pid)))


def test_sockets_the_new_file_does_not_bind_are_closed(implementation_env, tmp_path, backend):
    kept, dropped, sock = free_port(), free_port(), tmp_path / "a.sock"
    two = tmp_path / "a.cfg"
    text = write(tmp_path / "tmp.cfg", kept, backend, sock).read_text()
    binds = f"    bind 127.0.0.1:{kept}\n"
    two.write_text(text.replace(binds, f"{binds}    bind 127.0.0.1:{dropped}\n"))
    old = fastproxy(implementation_env, two)
    new = None
    try:
        serving(dropped, old, sock)
        new = fastproxy(implementation_env, write(tmp_path / "b.cfg", kept, backend), "-x", str(sock),
                        "-sf", str(old.pid))
        serving(kept, new)
        assert old.wait(timeout=20) == 0
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", dropped), timeout=2)
        assert alive(new.pid) and roundtrip(kept) == b"ping\n"
    finally:
        finish(old)
        if new is not None:
            finish(new)


def test_st_and_sf_take_no_pid_as_haproxy(implementation_env, tmp_path, backend):
    port = free_port()
    new = fastproxy(implementation_env, write(tmp_path / "b.cfg", port, backend), "-sf")
    try:
        serving(port, new)
    finally:
        finish(new)
