"""Server states kept across a reload through HAProxy's server-state file: what the runtime API set
(maintenance, drain, a weight, checks disabled, a port) comes back in the new process, the
configuration winning where it changed.  The file written by the real haproxy is read by fastproxy
and the reverse, and each is held to what haproxy itself restores from the same file.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path
from typing import Iterator

import pytest

from fastproxy.server_state import StateFileError, parse

from ..support import (echo_process, exchange_line, free_port, start_fastproxy, stop, stop_releasing,
                       unix_request, wait_for)

HAPROXY = shutil.which("haproxy")
needs_haproxy = pytest.mark.skipif(HAPROXY is None, reason="the real haproxy is not installed")

CONFIG = """\
global
    stats socket {sock} level admin
    server-state-base {base}
    server-state-file {file}

defaults
    mode tcp
    timeout connect 5s
    timeout client 30s
    timeout server 30s
    load-server-state-from-file {load}

backend be
    balance roundrobin
    server a 127.0.0.1:{backend} weight 10
    server b 127.0.0.1:{backend} weight {b_weight}
    server c 127.0.0.1:{backend} check inter 1s
    server d 127.0.0.1:{backend} disabled
    server e 127.0.0.1:{backend}

listen echo
    bind 127.0.0.1:{port}
    default_backend be
"""

# What the runtime API changes before the state is saved.
CHANGES = ("set server be/a state maint", "set server be/b state drain", "set server be/b weight 5",
           "disable health be/c", "set server be/e addr 127.0.0.1 port {moved}")

COMPARED = ("be_name", "srv_name", "srv_addr", "srv_op_state", "srv_admin_state", "srv_uweight",
            "srv_iweight", "srv_check_state", "srv_port")


def ask(path: Path, request: str) -> str:
    return unix_request(path, request)


def states(path: Path) -> list[dict[str, str]]:
    """``show servers state`` as rows of the compared fields."""
    text = ask(path, "show servers state")
    lines = text.splitlines()
    names = lines[1][2:].split()
    return [{name: value for name, value in zip(names, line.split()) if name in COMPARED}
            for line in lines[2:] if line.strip()]


@pytest.fixture
def backend() -> Iterator[int]:
    with echo_process() as port:
        yield port


class Files:
    def __init__(self, tmp: Path, backend: int) -> None:
        self.tmp, self.backend = tmp, backend
        self.port, self.moved = free_port(), free_port()
        self.state = tmp / "state" / "servers"
        self.state.parent.mkdir()

    def config(self, name: str, *, load: str = "global", b_weight: int = 10) -> tuple[Path, Path]:
        sock = self.tmp / f"{name}.sock"
        cfg = self.tmp / f"{name}.cfg"
        cfg.write_text(CONFIG.format(sock=sock, base=self.state.parent, file=self.state.name, load=load,
                                     backend=self.backend, port=self.port, b_weight=b_weight))
        return cfg, sock


def started(proc: subprocess.Popen, sock: Path) -> None:
    def answers() -> bool:
        assert proc.poll() is None, proc.communicate()
        try:
            return "be,c," in ask(sock, "show stat")
        except OSError:  # not yet, or the former process's socket file
            return False
    wait_for(answers, 30, "the stats socket")
    time.sleep(1.5)  # c's first check has run: the states are settled


def run_haproxy(cfg: Path) -> subprocess.Popen:
    assert HAPROXY is not None
    return subprocess.Popen([HAPROXY, "-db", "-f", str(cfg)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def run_fastproxy(env: dict, cfg: Path) -> subprocess.Popen:
    return start_fastproxy(["run", "-f", str(cfg)], env)


def change_and_save(sock: Path, files: Files) -> list[dict[str, str]]:
    for change in CHANGES:
        ask(sock, change.format(moved=files.moved))
    files.state.write_text(ask(sock, "show servers state"))
    return states(sock)


def saved_by(proc: subprocess.Popen, sock: Path, files: Files) -> list[dict[str, str]]:
    """The changes made on ``proc`` once started and its state file saved, then ``proc`` stopped:
    the states it had."""
    try:
        started(proc, sock)
        return change_and_save(sock, files)
    finally:
        stop(proc)


def states_after_start(proc: subprocess.Popen, sock: Path) -> list[dict[str, str]]:
    try:
        started(proc, sock)
        return states(sock)
    finally:
        stop(proc)


@needs_haproxy
def test_fastproxy_restores_a_state_file_the_real_haproxy_wrote_as_haproxy_does(
        implementation_env, tmp_path, backend):
    files = Files(tmp_path, backend)
    cfg, sock = files.config("haproxy")
    saved = saved_by(run_haproxy(cfg), sock, files)
    restored_by_haproxy = states_after_start(run_haproxy(cfg), sock)
    ours_cfg, ours_sock = files.config("fastproxy")
    restored_by_us = states_after_start(run_fastproxy(implementation_env, ours_cfg), ours_sock)
    assert restored_by_us == restored_by_haproxy
    by_name = {row["srv_name"]: row for row in restored_by_us}
    assert by_name["a"]["srv_admin_state"] == "1" and by_name["b"]["srv_admin_state"] == "8"
    assert by_name["b"]["srv_uweight"] == "5" and by_name["c"]["srv_check_state"] == "2"
    assert by_name["e"]["srv_port"] == str(files.moved)
    assert [row["srv_admin_state"] for row in saved] == [row["srv_admin_state"] for row in restored_by_us]


@needs_haproxy
def test_the_real_haproxy_restores_a_state_file_fastproxy_wrote(implementation_env, tmp_path, backend):
    files = Files(tmp_path, backend)
    ours_cfg, ours_sock = files.config("fastproxy")
    saved_by_us = saved_by(run_fastproxy(implementation_env, ours_cfg), ours_sock, files)
    cfg, sock = files.config("haproxy")
    restored_by_haproxy = states_after_start(run_haproxy(cfg), sock)
    restored_by_us = states_after_start(run_fastproxy(implementation_env, ours_cfg), ours_sock)
    assert restored_by_haproxy == restored_by_us
    assert [row["srv_admin_state"] for row in restored_by_haproxy] == [row["srv_admin_state"]
                                                                         for row in saved_by_us]


@needs_haproxy
def test_a_weight_changed_in_the_file_wins_over_the_saved_one_and_its_drain_stays(
        implementation_env, tmp_path, backend):
    files = Files(tmp_path, backend)
    cfg, sock = files.config("fastproxy")
    saved_by(run_fastproxy(implementation_env, cfg), sock, files)
    haproxy_cfg, haproxy_sock = files.config("haproxy", b_weight=20)
    ours_cfg, ours_sock = files.config("fastproxy", b_weight=20)
    restored_by_haproxy = states_after_start(run_haproxy(haproxy_cfg), haproxy_sock)
    restored_by_us = states_after_start(run_fastproxy(implementation_env, ours_cfg), ours_sock)
    assert restored_by_us == restored_by_haproxy
    b = next(row for row in restored_by_us if row["srv_name"] == "b")
    assert (b["srv_uweight"], b["srv_iweight"], b["srv_admin_state"]) == ("20", "20", "8")


def test_local_and_none_and_a_missing_file_as_haproxy(implementation_env, tmp_path, backend):
    files = Files(tmp_path, backend)
    cfg, sock = files.config("fastproxy", load="none")
    saved_by(run_fastproxy(implementation_env, cfg), sock, files)
    restored = states_after_start(run_fastproxy(implementation_env, cfg), sock)  # none: nothing read
    assert [row["srv_admin_state"] for row in restored] == ["0", "0", "0", "5", "0"]
    (files.state.parent / "be").write_text(files.state.read_text())  # local: the backend's name
    cfg, sock = files.config("fastproxy", load="local")
    restored = states_after_start(run_fastproxy(implementation_env, cfg), sock)
    assert [row["srv_admin_state"] for row in restored] == ["1", "8", "0", "5", "0"]
    files.state.unlink()
    cfg, sock = files.config("fastproxy", load="global")
    proc = run_fastproxy(implementation_env, cfg)
    restored = states_after_start(proc, sock)
    assert [row["srv_admin_state"] for row in restored] == ["0", "0", "0", "5", "0"]
    warning = (f"[WARNING] config: Can't open global server state file '{files.state}': "
               "No such file or directory")
    assert warning in proc.stderr.read()


STARTING_CONFIG = """\
global
    server-state-file {state}
{global_extra}
defaults
    mode tcp
    timeout connect 5s
    timeout client 30s
    timeout server 30s
    load-server-state-from-file global

listen echo
    bind 127.0.0.1:{port}
    balance roundrobin
    server s1 127.0.0.1:{dead}
    server s2 127.0.0.1:{backend}
"""

# s1 in maintenance (srv_admin_state 1, SRV_ADMF_FMAINT), s2 running: as show servers state writes them.
STARTING_STATE = """\
1
# be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state srv_uweight srv_iweight \
srv_time_since_last_change srv_check_status srv_check_result srv_check_health srv_check_state \
srv_agent_state bk_f_forced_id srv_f_forced_id srv_fqdn srv_port srvrecord srv_use_ssl srv_check_port \
srv_check_addr srv_agent_addr srv_agent_port
1 echo 1 s1 127.0.0.1 0 1 1 1 100 1 0 0 0 0 0 0 - {dead} - 0 0 - - 0
1 echo 2 s2 127.0.0.1 2 0 1 1 100 1 0 0 0 0 0 0 - {backend} - 0 0 - - 0
"""


def first_clients(proc: subprocess.Popen, port: int, count: int = 5) -> list[bytes]:
    """What ``count`` clients get back for their line, connecting from the moment ``proc``'s port
    listens (in master-worker mode the master's: they wait in its backlog for the worker)."""
    try:
        deadline = time.monotonic() + 30
        clients: list[socket.socket] = []
        while len(clients) < count:
            assert proc.poll() is None, proc.communicate()
            try:
                client = socket.create_connection(("127.0.0.1", port), timeout=10)
            except ConnectionRefusedError:
                assert time.monotonic() < deadline, "the port never listened"
                time.sleep(0.005)
                continue
            clients.append(client)
            client.sendall(b"first %d\n" % len(clients))
        answers = []
        for client in clients:
            with client:
                answers.append(exchange_line(client, b""))
        return answers
    finally:
        stop_releasing(proc, ("127.0.0.1", port))  # fastproxy binds it next


@needs_haproxy
@pytest.mark.parametrize("mode", ["standalone", "master-worker"])
def test_the_first_clients_reach_only_the_servers_the_state_file_leaves_up_as_haproxys(
        implementation_env, tmp_path, backend, mode):
    """The file's states are applied before anything is accepted: s1 (in maintenance in the file,
    and nothing listens at its address) serves none of the first clients, for fastproxy as for
    haproxy on the same file."""
    port, dead = free_port(), free_port()
    state = tmp_path / "servers.state"
    state.write_text(STARTING_STATE.format(dead=dead, backend=backend))
    cfg = tmp_path / "haproxy.cfg"
    global_extra = "    master-worker" if mode == "master-worker" else ""
    cfg.write_text(STARTING_CONFIG.format(state=state, port=port, dead=dead, backend=backend,
                                          global_extra=global_extra))
    assert HAPROXY is not None
    theirs = first_clients(subprocess.Popen([HAPROXY, "-db", "-f", str(cfg)], stdout=subprocess.DEVNULL,
                                            stderr=subprocess.DEVNULL), port)
    ours = first_clients(start_fastproxy(["run", "-f", str(cfg)], implementation_env,
                                         stderr=subprocess.DEVNULL), port)
    expected = [b"first %d\n" % number for number in range(1, 6)]
    assert theirs == expected
    assert ours == expected


def test_a_state_file_of_another_version_is_refused_and_bad_lines_skipped():
    with pytest.raises(StateFileError):
        parse("2\n# be_id be_name\n")
    header = "# be_id be_name srv_id srv_name\n"
    good = "2 be 1 a 127.0.0.1 0 1 10 10 0 1 0 0 0 0 0 0 - 80 - 0 0 - - 0\n"
    saved = parse("1\n" + header + good + "2 be 2 b too few\n" + good.replace(" 0 1 10", " x 1 10"))
    assert list(saved) == [("be", "a")] and saved[("be", "a")].number("srv_admin_state") == 1
