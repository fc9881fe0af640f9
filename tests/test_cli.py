"""The command line, run as a real process: the embedded default, signals, version."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

import pytest

DEFAULT_ADDRESS = ("127.0.0.1", 8080)


def start_fastproxy(args: list[str], env: dict) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "fastproxy", *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


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


def exchange_line(sock: socket.socket, line: bytes) -> bytes:
    sock.sendall(line)
    data = b""
    while not data.endswith(b"\n"):
        chunk = sock.recv(1024)
        if not chunk:
            break
        data += chunk
    return data


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_version_names_the_active_implementation(implementation_env):
    out = subprocess.run([sys.executable, "-m", "fastproxy", "version"], env=implementation_env,
                         capture_output=True, text=True, check=True).stdout
    assert f"({implementation_env['FASTPROXY_EXPECT_IMPLEMENTATION']} data plane" in out


def test_embedded_default_balances_over_two_echo_backends(implementation_env):
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


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_closes_listeners_first_and_lets_established_connections_finish(implementation_env, signum):
    proc = start_fastproxy(["run", "--grace", "5"], implementation_env)
    try:
        wait_listening(DEFAULT_ADDRESS, proc)
        established = socket.create_connection(DEFAULT_ADDRESS, timeout=5)
        assert exchange_line(established, b"before\n").endswith(b"before\n")
        proc.send_signal(signum)
        time.sleep(0.5)
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(DEFAULT_ADDRESS, timeout=2)
        # The established connection still works during the grace period...
        assert exchange_line(established, b"during\n").endswith(b"during\n")
        assert proc.poll() is None
        established.close()
        # ...and once it ended, the process exits 0 without waiting for the whole grace period.
        assert proc.wait(timeout=4) == 0
    finally:
        stop(proc)


def test_connections_still_open_after_the_grace_period_are_cut(implementation_env):
    proc = start_fastproxy(["run", "--grace", "0.5"], implementation_env)
    try:
        wait_listening(DEFAULT_ADDRESS, proc)
        established = socket.create_connection(DEFAULT_ADDRESS, timeout=5)
        assert exchange_line(established, b"hi\n").endswith(b"hi\n")
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
        assert 0.4 <= time.monotonic() - started < 5
        established.settimeout(5)
        try:
            assert established.recv(100) == b""
        except ConnectionResetError:
            pass
        established.close()
    finally:
        stop(proc)


def test_help_lists_the_commands():
    out = subprocess.run([sys.executable, "-m", "fastproxy", "--help"], capture_output=True, text=True,
                         check=True).stdout
    for command in ("run", "check", "version"):
        assert command in out
