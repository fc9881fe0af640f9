"""A check's log-formats and variables (``tcp-check send-lf``, ``send-binary-lf``, ``expect string-lf``,
``binary-lf``, ``set-var(check.x)``, ``set-var-fmt``, ``unset-var``, and ``http-check``'s variable
actions): a line agent records what each check sends and answers per line.  The real haproxy runs the
same file against the same agent: the same bytes reach it, the same ``check_status`` and ``check_desc``
come back.  And the verdicts: what ``haproxy -c`` accepts, fastproxy accepts (or refuses naming the
line where it would check differently: a format writing a stream's variable).
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from typing import Callable

import pytest

from fastproxy.balance import ServerState
from fastproxy.config import load
from fastproxy.errors import ConfigError

from ..support import assert_verdicts, free_port, running, serving, wait_until
from .test_protocol_checks import SLACK, fastproxy_stat, haproxy_stat, write_config

HAPROXY = shutil.which("haproxy")
needs_haproxy = pytest.mark.skipif(HAPROXY is None, reason="haproxy is not installed")


class LineAgent:
    """A fake server answering each line it reads with ``answer(line)``; ``lines`` are all it read.
    With ``close``, it closes after each answer (a check's expect then judges at once)."""

    def __init__(self, answer: Callable[[bytes], bytes] = lambda line: b"OK\n") -> None:
        self.answer = answer
        self.lines: list[bytes] = []
        self.close = False

    async def __call__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while line := await asyncio.wait_for(reader.readline(), 5):
                self.lines.append(line)
                writer.write(self.answer(line))
                await writer.drain()
                if self.close:
                    break
        except (OSError, asyncio.TimeoutError):
            pass
        finally:
            writer.close()


SEQUENCE = """option tcp-check
    tcp-check set-var(check.x) str(hello)
    tcp-check set-var(check.n) int(42)
    tcp-check set-var-fmt(check.f) "f-%[var(check.x)]-%b/%s"
    tcp-check set-var(sess.s) str(session)
    tcp-check send-lf "x=%[var(check.x)] n=%[var(check.n)] f=%[var(check.f)] s=%[var(sess.s)] \
si=%si:%sp ci=%ci q=%{+Q}[var(check.none)] m=%{+M}ci hex=%[var(check.x),hex] fe=%f\\n"
    tcp-check expect string OK
    tcp-check unset-var(check.x)
    tcp-check send-binary-lf "3c%[var(check.x),hex]%[var(check.f),hex]3e0a"
    tcp-check expect string-lf "%[var(check.n)]"
    tcp-check send-lf "%[var(check.missing)]"
    tcp-check send x\\n
    tcp-check expect binary-lf "%[str(OK),hex]"
"""


def settled(row: dict) -> bool:
    return bool(row) and row.get("check_status", "").removeprefix("* ") not in ("", "INI")


@needs_haproxy
@pytest.mark.timeout(120)
async def test_a_check_sequence_with_formats_and_variables_sends_haproxys_bytes(tmp_path, pump_class, caplog):
    agent = LineAgent(lambda line: b"OK 42\n")
    async with serving(agent) as agent_port, serving(agent) as traffic_port:
        cfg = write_config(tmp_path, SEQUENCE, agent_port, traffic_port, socket="admin.sock")
        theirs, _ = await haproxy_stat(cfg, tmp_path / "admin.sock", settled)
        their_lines, agent.lines = agent.lines, []
        ours, _ = await fastproxy_stat(cfg, tmp_path / "admin.sock", pump_class, settled, caplog)
    assert their_lines[:3] == [
        b"x=hello n=42 f=f-hello-fe/s1 s=session si=127.0.0.1:%d ci= q=\"\" m=- hex=68656C6C6F fe=CHECKS-FE\n"
        % agent_port, b"<f-hello-fe/s1>\n", b"x\n"]
    assert agent.lines[:3] == their_lines[:3]
    fields = ("status", "check_status", "check_desc")
    assert {name: ours[name].removeprefix("* ") for name in fields} == {
        name: theirs[name].removeprefix("* ") for name in fields}
    assert ours["check_status"].removeprefix("* ") == "L7OK"


FAILURES = {
    "string-lf mismatch": ('tcp-check send-lf "%[str(hi)]\\n"\n    tcp-check expect string-lf "%[str(NO)]"',
                           b"OK\n"),
    "binary-lf mismatch": ('tcp-check send hi\\n\n    tcp-check expect binary-lf "%[str(NO),hex]" comment c',
                           b"OK\n"),
    "empty pattern": ('tcp-check send hi\\n\n    tcp-check expect string-lf "%[var(check.none)]"', b"OK\n"),
    "not hex to send": ('tcp-check set-var(check.h) str(4)\n    tcp-check send-binary-lf "%[var(check.h)]"\n'
                        '    tcp-check expect string OK', b"OK\n"),
    "not hex to expect": ('tcp-check send hi\\n\n    tcp-check expect binary-lf "%[str(zz)]"', b"OK\n"),
    "unset before expect": ('tcp-check set-var(check.w) str(OK)\n    tcp-check unset-var(check.w)\n'
                            '    tcp-check send hi\\n\n'
                            '    tcp-check expect string-lf "%[var(check.w),lower]x"', b"OK\n"),
}


@needs_haproxy
@pytest.mark.timeout(120)
@pytest.mark.parametrize("case", list(FAILURES))
async def test_check_formats_fail_as_haproxys(tmp_path, pump_class, caplog, case):
    checks, answer = FAILURES[case]
    agent = LineAgent(lambda line: answer)
    async with serving(agent) as agent_port, serving(agent) as traffic_port:
        cfg = write_config(tmp_path, "option tcp-check\n    " + checks, agent_port, traffic_port,
                           socket="admin.sock")
        down = lambda row: settled(row) and row["status"] == "DOWN"  # noqa: E731
        theirs, _ = await haproxy_stat(cfg, tmp_path / "admin.sock", down)
        ours, _ = await fastproxy_stat(cfg, tmp_path / "admin.sock", pump_class, down, caplog)
    fields = ("status", "check_status", "check_desc")
    assert {name: ours[name].removeprefix("* ") for name in fields} == {
        name: theirs[name].removeprefix("* ") for name in fields}
    assert ours["status"] == "DOWN"


@pytest.mark.timeout(60)
async def test_a_variable_the_agent_must_echo_decides_the_servers_state(tmp_path, pump_class):
    """The check sends a token and expects it back: an agent echoing it keeps the server up, one
    answering something else takes it down (a skipped rule would have kept it up)."""
    agent = LineAgent(lambda line: b"other\n" if agent.close else line)
    async with serving(agent) as agent_port, serving(agent) as traffic_port:
        checks = ('option tcp-check\n    tcp-check set-var-fmt(check.token) "tok-%s-%[int(7)]"\n'
                  '    tcp-check send-lf "%[var(check.token)]\\n"\n'
                  '    tcp-check expect string-lf "%[var(check.token)]"')
        cfg = write_config(tmp_path, checks, agent_port, traffic_port)
        async with running(load([str(cfg)]), pump_class) as engine:
            slot = lambda: engine.backends["fe"].balancer.slot("s1")  # noqa: E731
            await wait_until(lambda: agent.lines, timeout=1 + SLACK)
            assert agent.lines[0] == b"tok-s1-7\n"
            assert engine.stats()["servers"]["fe/s1"]["check_status"] in ("INI", "L7OK")
            agent.close = True
            await wait_until(lambda: slot().state is ServerState.DOWN, timeout=4 + SLACK)
            agent.close = False
            await wait_until(lambda: slot().state is ServerState.UP, timeout=4 + SLACK)


def _backend(lines: str, kind: str = "option tcp-check") -> str:
    return ("defaults\n mode tcp\n timeout connect 2s\n timeout client 5s\n timeout server 5s\n"
            "listen l\n bind 127.0.0.1:{port}\n " + kind + "\n" + lines + " server s 127.0.0.1:1 check\n")


def test_check_formats_and_variables_have_haproxys_verdicts(tmp_path):
    assert_verdicts(tmp_path, {
        _backend(' tcp-check send-lf "%[var(check.a)] %b %s %si:%sp %H %pid %t"\n'): True,
        _backend(' tcp-check send-binary-lf "00%[str(3),hex]" comment c\n'): True,
        _backend(' tcp-check send-lf\n'): False,
        _backend(' tcp-check send-lf "%[nosuchfetch]"\n'): False,
        _backend(' tcp-check send-lf "%{+Q"\n'): False,
        _backend(' tcp-check send x\n tcp-check expect string-lf "%[var(check.a)]"\n'): True,
        _backend(' tcp-check send x\n tcp-check expect ! binary-lf "%[str(a),hex]" comment c\n'): True,
        _backend(' tcp-check set-var(check.a) str(x)\n'
                 ' tcp-check set-var(check.b,ifnotexists) int(1)\n'): True,
        _backend(' tcp-check set-var-fmt(check.a) "%[var(check.b)]-%s"\n'
                 ' tcp-check unset-var(check.a)\n'): True,
        _backend(' tcp-check set-var(check.a)\n'): False,
        _backend(' tcp-check set-var(nosuchscope.a) str(x)\n'): False,
        _backend(' tcp-check set-var(check.a,nosuchcond) str(x)\n'): False,
        _backend(' tcp-check unset-var(check.a) str(x)\n'): True,  # extra words: ignored by both
        _backend(' tcp-check set-var(check.a) str(x) y\n'): True,
        _backend(' tcp-check set-var(check.a) nosuchfetch\n'): False,
        _backend(' tcp-check set-var(check.a) str(x) if FALSE\n'): True,  # no condition: ignored
        _backend(' tcp-check set-var(check.a) str(x)\n tcp-check connect port 1\n'): True,
        _backend(' http-check set-var(check.a) str(x)\n http-check send meth GET\n', "option httpchk"): True,
        _backend(' http-check set-var-fmt(check.a) "%s"\n http-check unset-var(check.a)\n',
                 "option httpchk"): True,
        _backend(' http-check set-var(check.a)\n', "option httpchk"): False,
    })


@pytest.mark.parametrize("line, reason", [
    ('tcp-check send-lf "%ts"', "format variable 'ts' describes a stream"),
    ('tcp-check send-lf "%[srv_name]"', "sample expression <srv_name> is not one fastproxy evaluates"),
    ('tcp-check set-var(check.a) srv_id', "fetch method 'srv_id'"),
    ('tcp-check send-lf "%[sc0_conn_cur]"', "is not one fastproxy evaluates in a health check"),
    ('tcp-check set-var(check.a) sc0_conn_cur', "is not one fastproxy evaluates in a health check"),
    ('tcp-check expect string-lf "%B"', "format variable 'B' describes a stream"),
])
def test_a_check_format_fastproxy_would_write_differently_is_refused_naming_the_line(tmp_path, line, reason):
    """``haproxy -c`` takes these; fastproxy refuses them rather than send or match other bytes."""
    path = tmp_path / "check.cfg"
    path.write_text(_backend(f" {line}\n").replace("{port}", str(free_port())))
    if HAPROXY is not None:
        assert subprocess.run([HAPROXY, "-c", "-f", str(path)], capture_output=True).returncode == 0
    with pytest.raises(ConfigError) as caught:
        load([str(path)])
    assert f"check.cfg:9: '{line.split(' ', 2)[0]} {line.split(' ', 2)[1]}'" in str(caught.value)
    assert reason in str(caught.value)

