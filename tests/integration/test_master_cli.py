"""The master CLI (``fastproxy run -W -S <socket>[,options]``), answer for answer as ``haproxy -W -S``
on the same file: ``help``, the usage text, ``show proc``, prompt mode and its prompts, the ``@``
prefixes routing a request to a worker (a former one still finishing too), ``reload``, levels.

Pids, uptimes and versions differ between the two and are masked; everything else is compared as is.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import urllib.request
from pathlib import Path
from typing import Iterator

import pytest
from prometheus_client.parser import text_string_to_metric_families

from ..support import (echo_listen, echo_process, exchange_line, free_port, spares, start_fastproxy, stop,
                       wait_for, workers)

HAPROXY = shutil.which("haproxy")
needs_haproxy = pytest.mark.skipif(HAPROXY is None, reason="the real haproxy is not installed")


def ask(path: Path, text: str, timeout: float = 10.0) -> str:
    """What the master CLI at ``path`` answers to ``text`` (sent, then our side shut, as socat does)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(str(path))
        sock.sendall(text.encode())
        sock.shutdown(socket.SHUT_WR)
        data = b""
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                return data.decode("latin-1")
            data += chunk


class Running:
    """A master (fastproxy's or haproxy's) with its master CLI sockets at ``admin`` and ``user``."""

    def __init__(self, proc: subprocess.Popen, tmp: Path, name: str) -> None:
        self.proc, self.pid = proc, proc.pid
        self.admin, self.user = tmp / f"{name}-admin.sock", tmp / f"{name}-user.sock"
        wait_for(lambda: (self.admin.exists() and self.user.exists()) or proc.poll() is not None, 30,
                 f"{name}'s master CLI")
        assert proc.poll() is None, proc.communicate()
        wait_for(self._started, 30, f"{name}'s worker")

    def _started(self) -> list[int]:
        try:
            return self.workers()
        except OSError:  # haproxy's socket exists a moment before its master answers on it
            return []

    def workers(self) -> list[int]:
        """The current workers' pids, as show proc lists them."""
        text = ask(self.admin, "show proc\n")
        current = text.split("# workers\n", 1)[1].split("#", 1)[0]
        return [int(line.split()[0]) for line in current.splitlines() if line.strip()]


@pytest.fixture
def backend() -> Iterator[int]:
    with echo_process() as port:
        yield port


def write(path: Path, port: int, backend: int, extra: str = "", listen_extra: str = "") -> Path:
    path.write_text(echo_listen(port, backend, extra) + listen_extra)
    return path


@contextlib.contextmanager
def fastproxy_master(env: dict, tmp: Path, backend: int, listen_extra: str = "") -> Iterator[Running]:
    port = free_port()
    cfg = write(tmp / "fastproxy.cfg", port, backend, listen_extra=listen_extra)
    admin, user = tmp / "fastproxy-admin.sock", tmp / "fastproxy-user.sock"
    proc = start_fastproxy(["run", "-W", "-S", str(admin), "-S", f"{user},level,user", "-f", str(cfg)],
                           env, stderr=subprocess.DEVNULL)
    try:
        running = Running(proc, tmp, "fastproxy")
        running.port, running.cfg = port, cfg  # type: ignore[attr-defined]
        yield running
    finally:
        stop(proc)


@contextlib.contextmanager
def haproxy_master(tmp: Path, backend: int) -> Iterator[Running]:
    assert HAPROXY is not None
    cfg = write(tmp / "haproxy.cfg", free_port(), backend)
    admin, user = tmp / "haproxy-admin.sock", tmp / "haproxy-user.sock"
    proc = subprocess.Popen([HAPROXY, "-W", "-S", str(admin), "-S", f"{user},level,user", "-f", str(cfg)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        yield Running(proc, tmp, "haproxy")
    finally:
        stop(proc)


@pytest.fixture
def fastproxy(implementation_env, tmp_path, backend) -> Iterator[Running]:
    with fastproxy_master(implementation_env, tmp_path, backend) as running:
        yield running


@pytest.fixture(scope="module")
def compared(implementation, tmp_path_factory) -> Iterator[tuple[Running, Running]]:
    """fastproxy's master and haproxy's on the same file, for the requests that change nothing."""
    if HAPROXY is None:
        pytest.skip("the real haproxy is not installed")
    tmp = tmp_path_factory.mktemp("compared")
    with echo_process() as backend, fastproxy_master(implementation.env, tmp, backend) as ours, \
            haproxy_master(tmp, backend) as theirs:
        yield ours, theirs


def masked(text: str, running: Running) -> str:
    """Pids as <master>/<worker>, uptimes and versions as <uptime>/<version>."""
    for worker in running.workers():
        text = text.replace(str(worker), "<worker>")
    text = text.replace(str(running.pid), "<master>")
    text = re.sub(r"\d+d\d\dh\d\dm\d\ds", "<uptime>    ", text)
    text = re.sub(r"(?m)(<uptime> +)\S+ *$", r"\1<version>", text)
    return re.sub(r"(?m)^(#<PID>.*<version>) *$", r"\1", text)


@needs_haproxy
@pytest.mark.parametrize("request_", [
    "help\n", "help show\n", "foo\n", "show\n", "show cli level\n", "show cli sockets\n",
    "prompt\nshow cli level\n@1\nshow cli level\n@\noperator\nshow cli level\nquit\n",
    "prompt\nexperimental-mode on\n@1\nexperimental-mode\n@1 experimental-mode\n",
    "experimental-mode on;@1 experimental-mode\n", "operator;@1 show cli level\n", "@1 operator -\n",
    "@1;show cli level;@;show cli level\n", "@master show cli level\n", "@0 show cli level\n",
    "@5 show cli level\n", "@!99999 show cli level\n", "prompt\n@7\nshow cli level\n", "@1\n",
    "show proc\n", "prompt\nshow proc\n",
], ids=lambda r: r.strip().replace("\n", "|"))
def test_the_master_cli_answers_as_haproxys(compared, request_):
    ours, theirs = compared
    assert masked(ask(ours.admin, request_), ours) == masked(ask(theirs.admin, request_), theirs)


@needs_haproxy
@pytest.mark.parametrize("request_", [
    "help\n", "show cli level\n", "@1 show cli level\n", "prompt\n@1 show cli level\n", "reload\n",
    "experimental-mode on\n", "prompt\nexperimental-mode on\n", "operator\n",
], ids=lambda r: r.strip().replace("\n", "|"))
def test_a_master_cli_socket_at_level_user_answers_as_haproxys(compared, request_):
    ours, theirs = compared
    assert masked(ask(ours.user, request_), ours) == masked(ask(theirs.user, request_), theirs)


def test_a_request_routed_to_the_worker_is_answered_by_it(fastproxy):
    [worker] = fastproxy.workers()
    info = ask(fastproxy.admin, "@1 show info\n")
    assert f"\nPid: {worker}\n" in info and info.endswith("\n\n")
    assert ask(fastproxy.admin, f"@!{worker} show info\n") .count(f"\nPid: {worker}\n") == 1
    stat = ask(fastproxy.admin, "@1 show stat\n")  # a file without a stats socket: the worker answers
    assert stat.startswith("# pxname,svname,") and "echo,e1," in stat


def test_show_proc_does_not_list_the_spare_worker(fastproxy):
    """HAProxy has no spare: its show proc (held to haproxy's above) lists the serving worker only."""
    [spare] = wait_for(lambda: spares(fastproxy.pid), 30, "the spare worker")
    listed = ask(fastproxy.admin, "show proc\n")
    assert f"\n{spare} " not in listed
    assert fastproxy.workers() == workers(fastproxy.pid) and spare not in fastproxy.workers()


def test_show_proc_lists_the_former_worker_while_it_finishes_and_routes_to_it(fastproxy):
    [first] = fastproxy.workers()
    established = socket.create_connection(("127.0.0.1", fastproxy.port), timeout=5)  # type: ignore[attr-defined]
    try:
        assert exchange_line(established, b"before\n") == b"before\n"
        # Its server renamed in the new file, the connection has no route there: it stays with the
        # former worker (one whose route stays moves to the new worker, which lets the former go).
        cfg: Path = fastproxy.cfg  # type: ignore[attr-defined]
        cfg.write_text(cfg.read_text().replace("server e1 ", "server e2 "))
        assert ask(fastproxy.admin, "reload\n") == ""
        wait_for(lambda: fastproxy.workers() != [first], 30, "a new worker")
        [second] = fastproxy.workers()
        text = ask(fastproxy.admin, "show proc\n")
        lines = text.splitlines()
        assert lines[1].split()[1:4] == ["master", "1", "[failed:"] and lines[1].split()[4] == "0]"
        assert lines[2:4] == ["# workers", lines[3]] and lines[3].split()[:3] == [str(second), "worker", "0"]
        assert lines[4] == "# old workers" and lines[5].split()[:3] == [str(first), "worker", "1"]
        assert lines[6:] == ["# programs", ""]
        assert f"\nPid: {first}\n" in ask(fastproxy.admin, f"@!{first} show info\n")
        assert f"\nPid: {second}\n" in ask(fastproxy.admin, "@1 show info\n")
        assert exchange_line(established, b"after\n") == b"after\n"  # served by the former worker
    finally:
        established.close()
    former_workers_gone(fastproxy)


def test_a_failed_reload_is_counted_and_shown_in_the_prompt_until_one_works(fastproxy, backend):
    [worker] = fastproxy.workers()
    cfg: Path = fastproxy.cfg  # type: ignore[attr-defined]
    good = cfg.read_text()
    cfg.write_text(good + "    garbage here\n")
    os.kill(fastproxy.pid, signal.SIGUSR2)
    wait_for(lambda: "[failed: 1]" in ask(fastproxy.admin, "show proc\n"), 30, "the failed reload")
    text = ask(fastproxy.admin, "show proc\n").splitlines()
    assert text[1].split()[2:5] == ["1", "[failed:", "1]"]
    assert text[3].split()[:3] == [str(worker), "worker", "1"]
    assert ask(fastproxy.admin, "prompt\n") == "master[ReloadFailed]> "
    cfg.write_text(good)
    os.kill(fastproxy.pid, signal.SIGUSR2)
    wait_for(lambda: fastproxy.workers() not in ([], [worker]), 30, "a new worker")
    # The reload is over (counted, its failures reset) a moment after the new worker shows.
    wait_for(lambda: ask(fastproxy.admin, "show proc\n").splitlines()[1].split()[2:5]
             == ["2", "[failed:", "0]"], 10, "the reload counted as done")
    assert ask(fastproxy.admin, "prompt\n") == "master> "


def test_reload_from_a_user_level_socket_is_refused(fastproxy):
    workers = fastproxy.workers()
    assert ask(fastproxy.user, "reload\n") == "Permission denied\n\n"
    assert fastproxy.workers() == workers


def test_a_bad_master_cli_socket_is_refused_with_its_reason(implementation_env, tmp_path, backend):
    cfg = write(tmp_path / "bad.cfg", free_port(), backend)
    proc = start_fastproxy(["run", "-W", "-S", f"{tmp_path / 'm.sock'},level,root", "-f", str(cfg)],
                           implementation_env)
    assert proc.wait(timeout=20) == 1
    assert "'level' only supports 'user', 'operator', and 'admin' (got 'root')" in proc.stderr.read()
    proc = start_fastproxy(["run", "-S", str(tmp_path / "m.sock"), "-f", str(cfg)], implementation_env)
    assert proc.wait(timeout=20) == 1
    assert "-S (the master CLI) needs master-worker mode (-W)" in proc.stderr.read()


# --- what a reload keeps: run-time server states and counters, carried by the master ---------------

def stat(running: Running, proxy: str, name: str) -> dict[str, str]:
    """One row of the current worker's ``show stat``, asked through the master."""
    lines = ask(running.admin, "@1 show stat\n").splitlines()
    header = lines[0][2:].split(",")
    for line in lines[1:]:
        values = line.split(",")
        if values[:2] == [proxy, name]:
            return dict(zip(header, values))
    raise AssertionError(f"no row {proxy},{name} in {lines}")


def former_workers_gone(running: Running) -> None:
    wait_for(lambda: "# old workers" not in ask(running.admin, "show proc\n"), 30, "the former workers exit")


def reloaded(running: Running) -> int:
    [before] = running.workers()
    os.kill(running.pid, signal.SIGUSR2)
    wait_for(lambda: running.workers() not in ([], [before]), 30, "a new worker")
    [after] = running.workers()
    return after


def test_server_states_set_at_run_time_survive_a_reload(fastproxy):
    ask(fastproxy.admin, "@1 set server echo/e1 state drain\n")
    ask(fastproxy.admin, "@1 set server echo/e1 weight 5\n")
    reloaded(fastproxy)
    row = stat(fastproxy, "echo", "e1")
    assert (row["status"], row["weight"]) == ("DRAIN", "5")
    state = ask(fastproxy.admin, "@1 show servers state\n").splitlines()[2].split()
    assert (state[3], state[6], state[7]) == ("e1", "8", "5")
    ask(fastproxy.admin, "@1 set server echo/e1 state ready\n")
    reloaded(fastproxy)
    row = stat(fastproxy, "echo", "e1")
    assert (row["status"], row["weight"]) == ("no check", "5")  # ready again: haproxy's word for it


def test_counters_continue_across_a_reload_with_the_connections_that_moved(fastproxy):
    port = fastproxy.port  # type: ignore[attr-defined]
    for _ in range(5):
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            assert exchange_line(sock, b"0123456789\n") == b"0123456789\n"
    held = socket.create_connection(("127.0.0.1", port), timeout=5)
    try:
        assert exchange_line(held, b"held\n") == b"held\n"
        wait_for(lambda: stat(fastproxy, "echo", "FRONTEND")["bin"] == str(5 * 11 + 5), 10,
                 "the bytes counted")
        before = {name: stat(fastproxy, "echo", name) for name in ("FRONTEND", "e1", "BACKEND")}
        [first] = fastproxy.workers()
        reloaded(fastproxy)
        after = {name: stat(fastproxy, "echo", name) for name in ("FRONTEND", "e1", "BACKEND")}
        for name in before:
            for column in ("stot", "bin", "bout"):
                assert after[name][column] == before[name][column], (name, column)
        # The held connection moves to the new worker (a lane's on the compiled pump, Python's on the
        # twin): the former one goes, and the new one counts it as open, not as a new session.
        former_workers_gone(fastproxy)
        assert first not in fastproxy.workers()
        assert [stat(fastproxy, "echo", name)["scur"] for name in ("FRONTEND", "e1", "BACKEND")] == ["1"] * 3
        assert exchange_line(held, b"after the reload\n") == b"after the reload\n"
    finally:
        held.close()
    wait_for(lambda: stat(fastproxy, "echo", "FRONTEND")["bin"] == str(5 * 11 + 5 + 17), 10,
             "the moved connection's last bytes")
    assert stat(fastproxy, "echo", "FRONTEND")["stot"] == "6"
    wait_for(lambda: stat(fastproxy, "echo", "FRONTEND")["scur"] == "0", 10, "the connection ended")


def test_servers_added_at_run_time_are_added_again_by_the_next_worker(fastproxy, backend):
    assert ask(fastproxy.admin, f"@1 add server echo/dyn 127.0.0.1:{backend} weight 7\n") == \
        "New server registered.\n\n"
    ask(fastproxy.admin, "@1 set server echo/dyn state drain\n")
    reloaded(fastproxy)
    row = stat(fastproxy, "echo", "dyn")
    assert (row["status"], row["weight"]) == ("DRAIN", "7")
    assert ask(fastproxy.admin, "@1 set server echo/dyn state maint; @1 del server echo/dyn\n") == \
        "\nServer deleted.\n"
    reloaded(fastproxy)
    with pytest.raises(AssertionError, match="no row echo,dyn"):
        stat(fastproxy, "echo", "dyn")


def test_a_connection_to_a_server_added_at_run_time_moves_to_the_next_worker(fastproxy, backend):
    added = ask(fastproxy.admin, f"@1 add server echo/dyn 127.0.0.1:{backend}\n")
    assert added == "New server registered.\n\n"
    ask(fastproxy.admin, "@1 set server echo/dyn state ready; @1 set server echo/e1 state maint\n")
    held = socket.create_connection(("127.0.0.1", fastproxy.port), timeout=5)  # type: ignore[attr-defined]
    try:
        assert exchange_line(held, b"before\n") == b"before\n"
        assert stat(fastproxy, "echo", "dyn")["scur"] == "1"
        [first] = fastproxy.workers()
        reloaded(fastproxy)
        # The new worker had the server again before the pairs moved: this one moved with them, and
        # the former worker, left with nothing, goes while the connection stays open.
        former_workers_gone(fastproxy)
        assert exchange_line(held, b"after\n") == b"after\n"
        assert stat(fastproxy, "echo", "dyn")["scur"] == "1"
    finally:
        held.close()
    assert first not in fastproxy.workers()


@pytest.mark.parametrize("path", ["lane", "python"])
def test_a_reloads_new_worker_sends_its_first_connections_to_the_servers_added_at_run_time(
        implementation_env, tmp_path, backend, path):
    """The new worker accepts only once the master has added the former worker's servers again: the
    clients waiting in the backlog when it starts are its very first connections, and they reach the
    added server, not e1 (in maintenance, and nothing listens at its address anyway)."""
    dead = free_port()
    python_path = "    tcp-request session accept if { src 127.0.0.0/8 }\n" if path == "python" else ""
    with fastproxy_master(implementation_env, tmp_path, dead, listen_extra=python_path) as running:
        port = running.port  # type: ignore[attr-defined]
        assert ask(running.admin, f"@1 add server echo/dyn 127.0.0.1:{backend}\n") == \
            "New server registered.\n\n"
        ask(running.admin, "@1 set server echo/dyn state ready; @1 set server echo/e1 state maint\n")
        held = socket.create_connection(("127.0.0.1", port), timeout=10)
        waiting: list[socket.socket] = []
        try:
            assert exchange_line(held, b"before\n") == b"before\n"
            # The former worker at its frontend's maxconn accepts nobody else: the next clients wait
            # in the listening socket's backlog, for the new worker to accept them.
            assert ask(running.admin, "@1 set maxconn frontend echo 1\n") == "\n"
            for number in range(5):
                client = socket.create_connection(("127.0.0.1", port), timeout=10)
                waiting.append(client)
                client.sendall(b"first %d\n" % number)
            reloaded(running)
            for number, client in enumerate(waiting):
                assert exchange_line(client, b"") == b"first %d\n" % number
            assert stat(running, "echo", "dyn")["stot"] == "6"  # the held one's carried, and these
        finally:
            held.close()
            for client in waiting:
                client.close()


# Totals of the exporter that a reload carries on (those of show stat's stot, bin and bout).
PROMETHEUS_TOTALS = {"haproxy_frontend_sessions_total", "haproxy_frontend_bytes_in_total",
                     "haproxy_frontend_bytes_out_total", "haproxy_backend_sessions_total",
                     "haproxy_backend_bytes_in_total", "haproxy_server_sessions_total",
                     "haproxy_server_bytes_in_total", "haproxy_server_bytes_out_total"}


def echo_totals(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """The exporter's PROMETHEUS_TOTALS of the echo proxy, scraped from ``port``."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples
            if sample.name in PROMETHEUS_TOTALS and sample.labels.get("proxy") == "echo"}


def test_prometheus_totals_continue_across_a_reload(fastproxy):
    metrics = free_port()
    cfg: Path = fastproxy.cfg  # type: ignore[attr-defined]
    cfg.write_text(cfg.read_text() + f"""
listen stats
    mode http
    bind 127.0.0.1:{metrics}
    http-request use-service prometheus-exporter if {{ path /metrics }}
""")
    reloaded(fastproxy)  # a worker with the exporter
    for _ in range(3):
        with socket.create_connection(("127.0.0.1", fastproxy.port), timeout=5) as sock:  # type: ignore[attr-defined]
            assert exchange_line(sock, b"0123456789\n") == b"0123456789\n"
    wait_for(lambda: stat(fastproxy, "echo", "FRONTEND")["bin"] == "33", 10, "the bytes counted")
    before = echo_totals(metrics)
    assert before[("haproxy_frontend_sessions_total", (("proxy", "echo"),))] == 3
    assert before[("haproxy_server_bytes_in_total", (("proxy", "echo"), ("server", "e1")))] == 33
    reloaded(fastproxy)
    former_workers_gone(fastproxy)  # the former one, which might still answer, scraped no more
    assert echo_totals(metrics) == before
    with socket.create_connection(("127.0.0.1", fastproxy.port), timeout=5) as sock:  # type: ignore[attr-defined]
        assert exchange_line(sock, b"0123456789\n") == b"0123456789\n"
    wait_for(lambda: echo_totals(metrics)[("haproxy_frontend_sessions_total", (("proxy", "echo"),))] == 4,
             10, "one more session counted on")
