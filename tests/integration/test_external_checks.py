"""``option external-check``: a real script per check (a shell script in the test's directory), the
server's state following its exit status and traffic following the state.  The real haproxy runs the
same file with the same script: the same arguments and environment reach it, the same ``check_status``,
``check_code`` and ``check_desc`` come back; a script that outlives the check is ended by its pid; the
proxy keeps relaying while a script runs.  And the verdicts of ``haproxy -c`` on the keywords.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import time
from pathlib import Path

import pytest

from fastproxy.balance import ServerState
from fastproxy.config import load

from ..support import assert_verdicts, free_port, running, serving, wait_until
from .test_protocol_checks import SLACK, Agent, fastproxy_stat, haproxy_stat

HAPROXY = shutil.which("haproxy")
needs_haproxy = pytest.mark.skipif(HAPROXY is None, reason="haproxy is not installed")
INTER = 0.3


def script(tmp_path: Path, body: str, name: str = "check.sh") -> Path:
    """A check script; it sets its own PATH (a command runs with ``external-check path``, empty here)."""
    path = tmp_path / name
    path.write_text("#!/bin/sh\nPATH=/usr/bin:/bin\n" + body + "\n")
    path.chmod(0o755)
    return path


def external_config(tmp_path: Path, command: str, server_port: int, *, path: str = "",
                    extra: str = "", socket: str = "admin.sock") -> Path:
    cfg = tmp_path / "external.cfg"
    stats = f"stats socket {tmp_path / socket} level admin" if socket else ""
    cfg.write_text(f"""global
    external-check
    insecure-fork-wanted
    {stats}
defaults
    mode tcp
    timeout connect 2s
    timeout client 5s
    timeout server 5s
listen fe
    bind 127.0.0.1:{free_port()}
    option external-check
    external-check command {command}
    {f"external-check path {path}" if path else ""}
    {extra}
    server s1 127.0.0.1:{server_port} check inter {int(INTER * 1000)} fall 1 rise 1 maxconn 9
backend other
    option external-check
    external-check command {command}
    {f"external-check path {path}" if path else ""}
    server s2 127.0.0.2:{server_port} check inter {int(INTER * 1000)}
""")
    return cfg


def settled(row: dict) -> bool:
    return bool(row) and row.get("check_status", "").removeprefix("* ") not in ("", "INI")


ENVIRONMENT = '{{ echo "$@"; env | LC_ALL=C sort; }} > "{out}/$$"'  # a file per call: they run at once


def calls(out: Path) -> set[str]:
    found = {path.read_text() for path in out.iterdir()}
    for path in out.iterdir():
        path.unlink()
    return found


@needs_haproxy
@pytest.mark.timeout(120)
async def test_the_command_gets_haproxys_arguments_and_environment(tmp_path, pump_class, caplog):
    out = tmp_path / "calls"
    out.mkdir()
    check = script(tmp_path, ENVIRONMENT.format(out=out))
    async with serving(Agent()) as port:
        cfg = external_config(tmp_path, check.name, port, path=f"{tmp_path}:/bin")
        both = lambda row: all(any(f"HAPROXY_PROXY_NAME={name}\n" in path.read_text()  # noqa: E731
                                   for path in out.iterdir()) for name in ("fe", "other"))
        await haproxy_stat(cfg, tmp_path / "admin.sock", both)
        theirs = calls(out)
        await fastproxy_stat(cfg, tmp_path / "admin.sock", pump_class, both, caplog)
        ours = calls(out)
    assert ours == theirs
    first = next(call for call in ours if "HAPROXY_PROXY_NAME=fe\n" in call)
    assert first.startswith(f"127.0.0.1 {cfg.read_text().split('bind 127.0.0.1:')[1].split()[0]} "
                            f"127.0.0.1 {port}\n")
    assert "HAPROXY_SERVER_MAXCONN=9\n" in first and "HAPROXY_SERVER_CURCONN=0\n" in first
    backend = next(call for call in ours if "HAPROXY_PROXY_NAME=other\n" in call)
    assert backend.startswith(f"NOT_USED NOT_USED 127.0.0.2 {port}\n")
    assert "HAPROXY_PROXY_ADDR=\n" in backend  # NOT_USED is empty in the environment


CASES = {
    "exit 0": "exit 0",
    "exit 3": "exit 3",
    "killed": "kill -9 $$",
    "timeout": "exec sleep 30",
    "missing": None,
}


@needs_haproxy
@pytest.mark.timeout(120)
@pytest.mark.parametrize("case", list(CASES))
async def test_check_results_agree_with_haproxy(tmp_path, pump_class, caplog, case):
    body = CASES[case]
    command = str(script(tmp_path, body)) if body is not None else str(tmp_path / "no-such-command")
    async with serving(Agent()) as port:
        cfg = external_config(tmp_path, command, port)
        theirs, _ = await haproxy_stat(cfg, tmp_path / "admin.sock", settled)
        ours, _ = await fastproxy_stat(cfg, tmp_path / "admin.sock", pump_class, settled, caplog)
    fields = ("status", "check_status", "check_code", "check_desc")
    assert {name: ours[name].removeprefix("* ") for name in fields} == {
        name: theirs[name].removeprefix("* ") for name in fields}


@pytest.mark.timeout(60)
async def test_the_servers_state_follows_the_commands_exit_status_and_traffic_follows(tmp_path, pump_class):
    flag = tmp_path / "healthy"
    flag.touch()
    check = script(tmp_path, f'test -e "{flag}"')
    async with serving(Agent()) as port:
        cfg = external_config(tmp_path, str(check), port, socket="")
        async with running(load([str(cfg)]), pump_class) as engine:
            slot = lambda: engine.backends["fe"].balancer.slot("s1")  # noqa: E731
            row = lambda: engine.stats()["servers"]["fe/s1"]  # noqa: E731
            await wait_until(lambda: row()["check_status"] == "PROCOK", timeout=INTER + SLACK)
            flag.unlink()
            await wait_until(lambda: slot().state is ServerState.DOWN, timeout=2 * INTER + SLACK)
            assert row()["check_status"] == "PROCERR"
            address = engine.listening_addresses()[0]
            reader, writer = await asyncio.open_connection(*address)
            assert await asyncio.wait_for(reader.read(1), 5) == b""  # no server: the client is closed
            writer.close()
            flag.touch()
            await wait_until(lambda: slot().state is ServerState.UP, timeout=2 * INTER + SLACK)


@pytest.mark.timeout(60)
async def test_a_command_outliving_the_check_is_ended_by_its_pid(tmp_path, pump_class):
    pids = tmp_path / "pids"
    check = script(tmp_path, f'echo $$ >> "{pids}"; exec sleep 30')
    async with serving(Agent()) as port:
        cfg = external_config(tmp_path, str(check), port, socket="")
        async with running(load([str(cfg)]), pump_class) as engine:
            row = lambda: engine.stats()["servers"]["fe/s1"]  # noqa: E731
            await wait_until(lambda: row()["check_status"] == "PROCTOUT", timeout=2 * INTER + SLACK)
            first = int(pids.read_text().split()[0])
            await wait_until(lambda: not _alive(first), timeout=SLACK)
    for pid in map(int, pids.read_text().split()):  # stopping ends the one under way too
        await wait_until(lambda: not _alive(pid), timeout=SLACK)


def _alive(pid: int) -> bool:
    """Whether ``pid`` still runs (a zombie, ended but not reaped, does not)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


@pytest.mark.timeout(60)
async def test_traffic_is_relayed_while_a_command_runs(tmp_path, pump_class):
    """The command runs beside the event loop: a slow one delays no connection."""
    started = tmp_path / "started"
    check = script(tmp_path, f'touch "{started}"; sleep 2; exit 0')
    async with serving(Agent(b"pong", complete=lambda data: data.endswith(b"ping"))) as port:
        cfg = external_config(tmp_path, str(check), port, socket="",
                              extra="timeout check 5s")
        async with running(load([str(cfg)]), pump_class) as engine:
            await wait_until(started.exists, timeout=INTER + SLACK)
            begun = time.monotonic()
            reader, writer = await asyncio.open_connection(*engine.listening_addresses()[0])
            writer.write(b"ping")
            assert await asyncio.wait_for(reader.read(4), 5) == b"pong"
            writer.close()
            assert time.monotonic() - begun < 1.5  # well within the command's 2 s
            assert os.path.exists(started)


def _listen(lines: str, global_: str = " external-check\n insecure-fork-wanted\n") -> str:
    return ("global\n" + global_ + "defaults\n mode tcp\n timeout connect 2s\n timeout client 5s\n"
            " timeout server 5s\nlisten l\n bind 127.0.0.1:{port}\n" + lines
            + " server s 127.0.0.1:1 check\n")


def test_external_check_keywords_have_haproxys_verdicts(tmp_path):
    assert_verdicts(tmp_path, {
        _listen(" option external-check\n external-check command /bin/true\n"): True,
        _listen(" option external-check\n external-check command true\n external-check path /bin\n"): True,
        _listen(" option external-check\n external-check command true\n"): False,  # no path, no '/'
        _listen(" option external-check\n"): False,  # no command
        _listen(" option external-check\n external-check command /bin/true\n", ""): False,  # no global
        _listen(" option external-check\n external-check command /bin/true\n",
                " external-check\n"): True,  # a warning: it "will likely fail"
        _listen(" option external-check\n external-check command /bin/true x\n"): False,
        _listen(" option external-check\n external-check nosuch /bin/true\n"): False,
        _listen(" option external-check\n external-check command\n"): False,
        _listen(" option external-check x\n external-check command /bin/true\n"): False,
        _listen(" external-check command /bin/true\n"): True,  # ignored without the option: a warning
        _listen(" option external-check\n external-check command /bin/true\n",
                " external-check x\n insecure-fork-wanted\n"): False,
        _listen(" option external-check\n external-check command /bin/true\n option tcp-check\n"): True,
        ("global\n external-check\n insecure-fork-wanted\ndefaults\n mode tcp\n timeout connect 2s\n"
         " timeout client 5s\n timeout server 5s\n option external-check\n external-check command /bin/true\n"
         "listen l\n bind 127.0.0.1:{port}\n server s 127.0.0.1:1 check\n"): True,  # from defaults
    })
