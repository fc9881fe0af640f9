"""The command line, run as a real process: the embedded default, signals, version."""

from __future__ import annotations

import contextlib
import os
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import pytest

from ..support import (DEFAULT_ADDRESS, EchoThread, assert_cut, bindable, default_address_held, echo_listen,
                       exchange_line, free_port, start_fastproxy, stop, stop_releasing, unix_request,
                       wait_for, wait_listening)

needs_haproxy = pytest.mark.skipif(shutil.which("haproxy") is None,
                                   reason="the real haproxy is not installed")

def test_version_names_the_active_implementation(implementation_env):
    out = subprocess.run([sys.executable, "-m", "fastproxy", "version"], env=implementation_env,
                         capture_output=True, text=True, check=True).stdout
    assert f"({implementation_env['FASTPROXY_EXPECT_IMPLEMENTATION']} data plane" in out

def test_embedded_default_balances_over_two_echo_backends(implementation_env):
    with default_address_held():
        proc = start_fastproxy(["run"], implementation_env)
        try:
            wait_listening(DEFAULT_ADDRESS, proc)
            answers = []
            for i in range(4):
                with socket.create_connection(DEFAULT_ADDRESS, timeout=5) as sock:
                    answers.append(exchange_line(sock, b"hello %d\n" % i))
            names = [answer.split(b":")[0] for answer in answers]
            assert sorted(names) == [b"echo1", b"echo1", b"echo2", b"echo2"]
            assert all(answer.endswith(b"hello %d\n" % i) for i, answer in enumerate(answers))
        finally:
            stop(proc)
    assert proc.returncode == 0
    assert "nc 127.0.0.1 8080" in proc.stderr.read()


def test_help_lists_the_commands():
    out = subprocess.run([sys.executable, "-m", "fastproxy", "--help"], capture_output=True, text=True,
                         check=True).stdout
    for command in ("run", "check", "version"):
        assert command in out


# --- with a configuration file ------------------------------------------------------------------------

def config_text(port: int, backend: int, pidfile: Path) -> str:
    """An echo service on ``port`` over ``backend``, writing ``pidfile``."""
    return echo_listen(port, backend, f"    pidfile {pidfile}")


def test_run_with_a_haproxy_file_proxies_and_writes_its_pidfile(implementation_env, tmp_path):
    backend = EchoThread()
    port = free_port()
    pidfile = tmp_path / "fastproxy.pid"
    cfg = tmp_path / "haproxy.cfg"
    cfg.write_text(config_text(port, backend.port, pidfile))
    proc = start_fastproxy(["run", "-f", str(cfg)], implementation_env)
    try:
        wait_listening(("127.0.0.1", port), proc)
        # The pidfile is written once the listeners are open: a moment after they accept, and its
        # line a moment after it is created (an empty file was read under load).
        deadline = time.monotonic() + 10
        while not (pidfile.exists() and pidfile.read_text().strip()) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert pidfile.read_text().strip() == str(proc.pid)
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            assert exchange_line(sock, b"through the file\n") == b"through the file\n"
    finally:
        stop(proc)
        backend.close()
    assert proc.returncode == 0
    assert not pidfile.exists()  # removed on a clean stop


def refused(address: tuple) -> bool:
    """Whether a connect to ``address`` is refused; a connect caught in the backlog as the listener
    closes (reset) says neither, and the caller tries again."""
    try:
        socket.create_connection(address, timeout=2).close()
    except ConnectionRefusedError:
        return True
    except OSError:
        return False
    return False


@pytest.fixture
def echo_file(tmp_path):
    """A file proxying a port of its own to an echo backend (the embedded default's 8080 is shared
    by every run of the suite on the machine): (the file, the proxy's address)."""
    backend = EchoThread()
    port = free_port()
    cfg = tmp_path / "haproxy.cfg"
    cfg.write_text(config_text(port, backend.port, tmp_path / "fastproxy.pid"))
    yield cfg, ("127.0.0.1", port)
    backend.close()


@contextlib.contextmanager
def one_connection_through(env: dict, echo_file: tuple, grace: str) -> Iterator[tuple]:
    """``fastproxy run`` on ``echo_file`` with ``--grace``, and a connection through it that echoed a
    line: (the process, the connection, the listening address); the process stopped at the end."""
    cfg, address = echo_file
    proc = start_fastproxy(["run", "-f", str(cfg), "--grace", grace], env)
    try:
        wait_listening(address, proc)
        established = socket.create_connection(address, timeout=5)
        assert exchange_line(established, b"before\n") == b"before\n"
        yield proc, established, address
    finally:
        stop(proc)


def test_sigusr1_closes_listeners_first_and_lets_established_connections_finish(implementation_env,
                                                                                echo_file):
    # HAProxy's soft stop.
    with one_connection_through(implementation_env, echo_file, "5") as (proc, established, address):
        proc.send_signal(signal.SIGUSR1)
        wait_for(lambda: refused(address), timeout=5, what="the listener closed")
        # The established connection still works during the grace period...
        assert exchange_line(established, b"during\n") == b"during\n"
        assert proc.poll() is None
        established.close()
        # ...and once it ended, the process exits 0 without waiting for the whole grace period.
        assert proc.wait(timeout=4) == 0


def test_connections_still_open_after_the_grace_period_are_cut(implementation_env, echo_file):
    with one_connection_through(implementation_env, echo_file, "0.5") as (proc, established, _):
        started = time.monotonic()
        proc.send_signal(signal.SIGUSR1)
        assert proc.wait(timeout=10) == 0
        assert 0.4 <= time.monotonic() - started < 5
        assert_cut(established)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_sigterm_and_sigint_stop_at_once_cutting_established_connections_as_haproxy(
        implementation_env, signum, echo_file):
    # HAProxy's hard stop ("-st" sends it): no grace, however long the grace period is.
    with one_connection_through(implementation_env, echo_file, "30") as (proc, established, _):
        proc.send_signal(signum)
        assert proc.wait(timeout=10) == 0
        assert_cut(established)


def test_sigterm_during_a_soft_stop_cuts_what_is_left(implementation_env, echo_file):
    with one_connection_through(implementation_env, echo_file, "30") as (proc, established, address):
        proc.send_signal(signal.SIGUSR1)
        wait_for(lambda: refused(address), timeout=5, what="the listener closed")
        assert exchange_line(established, b"during\n") == b"during\n"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
        assert_cut(established)


@needs_haproxy
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGUSR1])
def test_haproxy_cuts_at_sigterm_and_lets_connections_finish_at_sigusr1(tmp_path, signum, echo_file):
    """The reference for the two tests above: the same file, the real haproxy."""
    cfg, address = echo_file
    proc = subprocess.Popen(["haproxy", "-f", str(cfg)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        wait_listening(address, proc)
        established = socket.create_connection(address, timeout=5)
        assert exchange_line(established, b"before\n") == b"before\n"
        proc.send_signal(signum)
        if signum == signal.SIGTERM:
            proc.wait(timeout=10)
            assert_cut(established)
        else:
            wait_for(lambda: refused(address), timeout=5, what="the listener closed")
            assert exchange_line(established, b"during\n") == b"during\n"
            established.close()
            proc.wait(timeout=10)
    finally:
        stop(proc)


def eventually(condition, timeout: float = 5.0) -> bool:
    """Whether ``condition()`` holds within ``timeout`` seconds (polled)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def served(address: tuple) -> bool:
    try:
        with socket.create_connection(address, timeout=5) as sock:
            return exchange_line(sock, b"served\n") == b"served\n"
    except OSError:
        return False


def signalled_until(proc: subprocess.Popen, signum: int, condition, timeout: float = 10.0) -> bool:
    """Send ``signum`` until ``condition()`` holds (at most ``timeout`` seconds): a master serving
    already may not handle signals yet (haproxy's blocks them until its loop runs), and a process
    given SIGTTOU and SIGTTIN at once may take them in either order (the lower number first)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        proc.send_signal(signum)
        if eventually(condition, 0.5):
            return True
    return False


def paused_and_resumed(proc: subprocess.Popen, address: tuple, log: Path) -> dict[str, object]:
    """What SIGTTOU then SIGTTIN do to the process ``proc`` serving ``address`` (its stderr in ``log``),
    with a connection established before: whether new clients are refused while paused, the port
    bindable by another process, the established connection still served; after SIGTTIN, whether
    new clients are served again; and the Paused/Resumed lines logged."""
    wait_listening(address, proc)
    established = socket.create_connection(address, timeout=15)
    try:
        assert exchange_line(established, b"before\n") == b"before\n"
        seen: dict[str, object] = {"served before": served(address)}
        seen["refused when paused"] = signalled_until(proc, signal.SIGTTOU, lambda: refused(address))
        seen["bindable when paused"] = bindable(address)
        seen["established served when paused"] = exchange_line(established, b"during\n") == b"during\n"
        seen["served when resumed"] = signalled_until(proc, signal.SIGTTIN, lambda: served(address))
        seen["established served when resumed"] = exchange_line(established, b"after\n") == b"after\n"
        seen["alive"] = proc.poll() is None
    finally:
        established.close()
        stop_releasing(proc, address)  # fastproxy binds it next
    # Each line once: a signal sent again (signalled_until) logs nothing, or the same lines again.
    seen["logged"] = list(dict.fromkeys(line.split(": ", 1)[-1] for line in log.read_text().splitlines()
                                        if "Paused" in line or "Resumed" in line))
    return seen


@needs_haproxy
@pytest.mark.parametrize("mode", ["standalone", "master-worker"])
def test_sigttou_pauses_the_listeners_and_sigttin_resumes_them_as_haproxy(implementation_env, tmp_path,
                                                                          echo_file, mode):
    """HAProxy's protocol_pause_all()/protocol_resume_all(): paused listeners refuse new clients
    and release the port for another process, established connections go on; a master passes both
    signals to its workers (mworker_broadcast_signal)."""
    cfg, address = echo_file
    master_worker = ["-W"] if mode == "master-worker" else []
    with open(tmp_path / "haproxy.log", "w") as log:
        haproxy = subprocess.Popen(["haproxy", "-db", *master_worker, "-f", str(cfg)],
                                   stdout=subprocess.DEVNULL, stderr=log)
    theirs = paused_and_resumed(haproxy, address, tmp_path / "haproxy.log")
    with open(tmp_path / "fastproxy.log", "w") as log:
        fastproxy = start_fastproxy(["run", *master_worker, "-f", str(cfg)], implementation_env, stderr=log)
    ours = paused_and_resumed(fastproxy, address, tmp_path / "fastproxy.log")
    assert theirs == {"served before": True, "refused when paused": True, "bindable when paused": True,
                      "established served when paused": True, "served when resumed": True,
                      "established served when resumed": True, "alive": True,
                      # A worker's link to its master is a CLI listener too (frontend GLOBAL).
                      "logged": ["Paused proxy echo.", "Paused frontend GLOBAL.", "Resumed proxy echo.",
                                 "Resumed frontend GLOBAL."] if master_worker else
                      ["Paused proxy echo.", "Resumed proxy echo."]}
    assert ours == theirs


def stats_request(path: Path, request: str) -> str:
    return unix_request(path, request)


@needs_haproxy
def test_sigttin_resumes_a_frontend_disabled_at_run_time_as_haproxy(implementation_env, tmp_path):
    """protocol_resume_all() resumes every paused listener, those ``disable frontend`` paused too."""
    backend = EchoThread()
    address = ("127.0.0.1", free_port())
    admin = tmp_path / "admin.sock"
    cfg = tmp_path / "haproxy.cfg"
    cfg.write_text(echo_listen(address[1], backend.port, f"    stats socket {admin} level admin"))
    try:
        seen = []
        for command in (["haproxy", "-db", "-f", str(cfg)], [sys.executable, "-m", "fastproxy", "run", "-f",
                                                           str(cfg)]):
            proc = subprocess.Popen(command, env=implementation_env, stdout=subprocess.DEVNULL,
                                    stderr=subprocess.DEVNULL)
            try:
                wait_listening(address, proc)
                wait_for(admin.exists, 10, "the stats socket")
                disabled = stats_request(admin, "disable frontend echo")
                refused_when_disabled = eventually(lambda: refused(address))
                served_again = signalled_until(proc, signal.SIGTTIN, lambda: served(address))
                status = [line.split(",")[17] for line in stats_request(admin, "show stat").splitlines()
                          if line.startswith("echo,FRONTEND,")]
                seen.append((disabled, refused_when_disabled, served_again, status))
            finally:
                stop(proc)
                admin.unlink(missing_ok=True)
        assert seen[0] == ("\n", True, True, ["OPEN"])
        assert seen[1] == seen[0]
    finally:
        backend.close()


INHERITED = """
defaults
    mode tcp
    timeout connect 2s
    timeout client 5s
    timeout server 5s
frontend fe
    bind fd@{fd}
    default_backend be
backend be
    server e1 127.0.0.1:{backend}
"""


def stderr_until(proc: subprocess.Popen, text: str, timeout: float = 30.0) -> str:
    """The child's standard error up to the line holding ``text``."""
    seen = ""
    deadline = time.monotonic() + timeout
    with selectors.DefaultSelector() as selector:
        selector.register(proc.stderr, selectors.EVENT_READ)
        while text not in seen:
            if not selector.select(deadline - time.monotonic()):
                raise AssertionError(f"no {text!r} in time: {seen}")
            # os.read, not readline: a line left in readline's buffer would be hidden from select
            chunk = os.read(proc.stderr.fileno(), 4096)
            if not chunk:
                raise AssertionError(f"fastproxy exited: {seen}")
            seen += chunk.decode(errors="replace")
    return seen


@pytest.mark.parametrize("listening", [True, False], ids=["listening", "bound"])
def test_a_socket_handed_over_as_fd_n_is_the_frontend_listener(implementation_env, tmp_path, listening):
    """``bind fd@<n>``, as systemd's socket activation hands a listener over: the child listens on the
    socket it inherited (on one only bound, it starts listening), and closing it leaves ours alone."""
    backend = EchoThread()
    handed = socket.socket()
    handed.bind(("127.0.0.1", 0))
    if listening:
        handed.listen()
    address = handed.getsockname()
    cfg = tmp_path / "haproxy.cfg"
    cfg.write_text(INHERITED.format(fd=handed.fileno(), backend=backend.port))
    proc = start_fastproxy(["run", "-f", str(cfg)], implementation_env, pass_fds=(handed.fileno(),))
    handed.close()  # the child's copy is the only one left
    try:
        # A listening socket takes connections before the child runs: wait for it to say it listens.
        assert f"listening on {address[0]}:{address[1]}" in stderr_until(proc, "listening on")
        for i in range(3):
            with socket.create_connection(address, timeout=5) as sock:
                assert exchange_line(sock, b"through fd %d\n" % i) == b"through fd %d\n" % i
    finally:
        stop(proc)
        backend.close()
    assert proc.returncode == 0, proc.stderr.read()


def test_check_accepts_a_valid_file(tmp_path):
    cfg = tmp_path / "ok.cfg"
    cfg.write_text(config_text(8443, 9000, tmp_path / "x.pid"))
    result = subprocess.run([sys.executable, "-m", "fastproxy", "check", "-f", str(cfg)], capture_output=True,
                            text=True)
    assert result.returncode == 0, result.stderr
    assert "valid" in result.stdout


def test_check_reports_every_error_with_file_line_and_keyword(tmp_path):
    cfg = tmp_path / "bad.cfg"
    cfg.write_text("frontend fe\n    bind 127.0.0.1:80\n    timeout client 10parsecs\n"
                   "    default_backend nowhere\n    frobnicate yes\n")
    result = subprocess.run([sys.executable, "-m", "fastproxy", "check", "-f", str(cfg)], capture_output=True,
                            text=True)
    assert result.returncode == 1
    for line, keyword in [(3, "timeout"), (5, "frobnicate")]:
        assert f"{cfg}:{line}" in result.stderr and keyword in result.stderr, result.stderr
    assert "nowhere" in result.stderr


def test_run_refuses_a_broken_file_and_starts_nothing(tmp_path):
    cfg = tmp_path / "bad.cfg"
    port = free_port()
    cfg.write_text(f"listen x\n    bind 127.0.0.1:{port}\n    mode http\n    server s 127.0.0.1:1\n")
    result = subprocess.run([sys.executable, "-m", "fastproxy", "run", "-f", str(cfg)], capture_output=True,
                            text=True, timeout=30)
    assert result.returncode == 1
    assert f"{cfg}:3" in result.stderr and "mode" in result.stderr


def test_run_chroots_and_drops_to_user_and_group_once_listening(implementation_env, tmp_path):
    """As HAProxy: bind first, then chroot and take ``group`` and ``user``; without root that is an error."""
    import grp
    import pwd

    user, group = pwd.getpwuid(65534).pw_name, grp.getgrgid(65534).gr_name  # nobody, nogroup
    jail = tmp_path / "jail"
    jail.mkdir()
    backend = EchoThread()
    port = free_port()
    cfg = tmp_path / "haproxy.cfg"
    cfg.write_text(config_text(port, backend.port, tmp_path / "fastproxy.pid")
                   .replace("global\n", f"global\n    user {user}\n    group {group}\n    chroot {jail}\n"))
    proc = start_fastproxy(["run", "-f", str(cfg)], implementation_env)
    try:
        if os.geteuid() != 0:
            assert proc.wait(timeout=30) == 1
            assert "needs to be started as root" in proc.communicate()[1]
            return
        wait_listening(("127.0.0.1", port), proc)
        deadline = time.monotonic() + 10
        while os.stat(f"/proc/{proc.pid}").st_uid != 65534 and time.monotonic() < deadline:
            time.sleep(0.02)
        status = dict(line.split(":", 1) for line in open(f"/proc/{proc.pid}/status").read().splitlines())
        assert status["Uid"].split() == ["65534"] * 4 and status["Gid"].split() == ["65534"] * 4
        assert status["Groups"].split() == []
        assert os.readlink(f"/proc/{proc.pid}/root") == str(jail)
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            assert exchange_line(sock, b"from the jail\n") == b"from the jail\n"
    finally:
        stop(proc)
        backend.close()
    assert proc.returncode == 0, proc.communicate()[1]
