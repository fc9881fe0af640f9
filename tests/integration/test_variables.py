"""Variables (``set-var``, ``set-var-fmt``, ``unset-var``, ``var()``, ``set-var`` in ``global``) on real
sockets, held to the real haproxy 2.6 on the same file and clients: where traffic goes (a variable
deciding a ``use_backend``) and what the log line reads of each scope once the connection ended.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import subprocess
import time
from collections.abc import Iterator

import pytest

from fastproxy.config import parse_text

from ..support import assert_verdicts, free_port, in_a_frontend, running, serving
from .test_routing import HAPROXY, answers, named_backend
from .test_routing_keywords import PROLOGUE

needs_haproxy = pytest.mark.skipif(HAPROXY is None, reason="haproxy is not installed")

# Each scope's lifetime: sess from the connection rules on; txn only once the stream exists (a
# connection or session rule cannot set one); req gone once the server answered (the log line does
# not see it); res never set by request rules; proc shared by every connection (the third client sets
# what the following ones route by) and set at start by the global section.  set-var's conditions:
# ifgt/iflt compare with the value held (10 > 3 sets 3, 3 < 4 sets 4), ifempty/ifnotempty the new one.
VARIABLES = """
global
    set-var proc.n int(5)
    set-var-fmt proc.m "x%[var(proc.n)]y"
""" + PROLOGUE + """
frontend fe
    bind 127.0.0.1:{port}
    log 127.0.0.1:{sink} local0
    log-format "m=%[var(proc.m)] s=%[var(sess.s)] t=%[var(txn.t)] r=%[var(req.r)] \
rs=%[var(res.r)] c=%[var(txn.c)] d=%[var(txn.none,dflt)] f=%[var(txn.f)] u=%[var(txn.u)] g=%[var(txn.g)] \
e=%[var(txn.e)]"
    tcp-request inspect-delay 1s
    tcp-request connection set-var(sess.s) str(conn) if {{ src 127.0.0.2 }}
    tcp-request connection set-var(txn.c) str(conn)
    tcp-request session set-var(txn.ss) str(sess)
    tcp-request content set-var(txn.t) src
    tcp-request content set-var(req.r) int(7)
    tcp-request content set-var(res.r) int(8)
    tcp-request content set-var-fmt(txn.f) "%[src]:x"
    tcp-request content set-var(proc.n) int(9) if {{ src 127.0.0.3 }}
    tcp-request content set-var(sess.s,ifnotexists) str(content)
    tcp-request content set-var(txn.u) str(gone)
    tcp-request content unset-var(txn.u) if {{ src 127.0.0.4 }}
    tcp-request content set-var(txn.g) int(10)
    tcp-request content set-var(txn.g,ifgt) int(3)
    tcp-request content set-var(txn.g,iflt) int(4)
    tcp-request content set-var(txn.e,ifnotempty) str()
    tcp-request content set-var(txn.e,ifempty) req.payload(0,2)
    tcp-request content accept if {{ req.len gt 0 }}
    use_backend sessions if {{ var(sess.s) -m str conn }}
    use_backend streams if {{ var(txn.ss) -m found }}
    use_backend requests if {{ var(req.r) -m int 7 }} {{ var(proc.n) -m int 9 }}
    default_backend plain
backend sessions
    server s1 127.0.0.1:{sessions}
backend streams
    server s1 127.0.0.1:{streams}
backend requests
    server s1 127.0.0.1:{requests}
backend plain
    server s1 127.0.0.1:{plain}
"""

CLIENTS = [("127.0.0.1", b"hi"), ("127.0.0.2", b"hi"), ("127.0.0.3", b"hi"), ("127.0.0.1", b"hi"),
           ("127.0.0.4", b"hi")]


def drained(sink: socket.socket, expected: int) -> list[str]:
    """The lines the sink received, without the syslog header (pid and date differ by nature): the
    ``expected`` ones, each waited for as long as a loaded machine may take to end a connection and
    write its line, then any more arriving within 0.3 s (a line too many is a difference too)."""
    lines = []
    sink.settimeout(10)
    with contextlib.suppress(socket.timeout):
        while True:
            if len(lines) >= expected:
                sink.settimeout(0.3)
            lines.append(sink.recv(4096).decode().split(": ", 1)[1].rstrip("\n"))
    return sorted(lines)  # the order lines arrive in is timing


@contextlib.contextmanager
def haproxy_listening(text: str, port: int, tmp_path) -> Iterator[subprocess.Popen]:
    """The real haproxy on ``text`` once it listens on ``port``, known without a connection (which
    would run the rules and write a line): the port can no longer be bound."""
    path = tmp_path / "haproxy.cfg"
    path.write_text(text)
    assert HAPROXY is not None
    proc = subprocess.Popen([HAPROXY, "-db", "-f", str(path)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and proc.poll() is None:
            with socket.socket() as probe:
                try:
                    probe.bind(("127.0.0.1", port))
                except OSError:
                    break
            time.sleep(0.05)
        yield proc
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def run_both(pump_class, text: str, ports: dict, tmp_path, clients, logged: int) -> tuple[tuple, tuple]:
    """(replies, log lines) of fastproxy, then of haproxy, on the same file and clients (``logged``
    lines expected of each: one a connection where the frontend logs)."""
    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sink.bind(("127.0.0.1", 0))
    ports = {**ports, "sink": sink.getsockname()[1]}
    try:
        async def through_fastproxy() -> list[bytes]:
            async with running(parse_text(text.format(port=free_port(), **ports)), pump_class) as engine:
                return await answers(engine.listening_addresses()[0], clients)

        ours = asyncio.run(through_fastproxy()), drained(sink, logged)
        port = free_port()
        with haproxy_listening(text.format(port=port, **ports), port, tmp_path):
            theirs = asyncio.run(answers(("127.0.0.1", port), clients)), drained(sink, logged)
        return ours, theirs
    finally:
        sink.close()


async def _backends(stack: contextlib.AsyncExitStack, names: tuple[str, ...]) -> dict[str, int]:
    return {name: await stack.enter_async_context(serving(named_backend(name.encode()))) for name in names}


@needs_haproxy
def test_variables_route_and_log_by_scope_as_haproxy(pump_class, tmp_path):
    async def main():
        async with contextlib.AsyncExitStack() as stack:
            ports = await _backends(stack, ("sessions", "streams", "requests", "plain"))
            return await asyncio.to_thread(run_both, pump_class, VARIABLES, ports, tmp_path, CLIENTS,
                                           len(CLIENTS))

    ours, theirs = asyncio.run(main())
    assert ours == theirs
    replies, lines = ours
    assert replies == [b"plain", b"sessions", b"requests", b"requests", b"requests"]
    assert "m=x5y s=content t=127.0.0.1 r=- rs=- c=- d=dflt f=127.0.0.1:x u=gone g=4 e=-" in lines
    assert "m=x5y s=conn t=127.0.0.2 r=- rs=- c=- d=dflt f=127.0.0.2:x u=gone g=4 e=-" in lines
    assert "m=x5y s=content t=127.0.0.4 r=- rs=- c=- d=dflt f=127.0.0.4:x u=- g=4 e=-" in lines  # unset-var


def test_variables_check_verdicts_are_haproxys(tmp_path):
    """``fastproxy check`` and ``haproxy -c`` on each line: the same verdict."""
    cases = {
        " tcp-request connection set-var(txn.x) src\n": True,
        " tcp-request connection set-var(foo) src\n": False,
        " tcp-request connection set-var(sess.a-b) src\n": False,
        " tcp-request content set-var(sess.x,ifexists,ifgt) src\n": True,
        " tcp-request content set-var(sess.x,bogus) src\n": False,
        " tcp-request content set-var(sess.x)\n": False,
        " tcp-request content set-var-fmt(txn.x) %[src]:%[src_port]\n": True,
        " tcp-request content unset-var(txn.x) if { src 127.0.0.1 }\n": True,
        " acl a var(sess.x) 1\n tcp-request content reject if a\n": False,
        " acl a var(sess.x) -m str 1\n tcp-request content reject if a\n": True,
        " acl a var(sess.x,dflt) -m beg d\n tcp-request content reject if a\n": True,
    }
    globals_ = {
        "global\n set-var proc.x int(3)\n": True,
        "global\n set-var proc.x src\n": False,
        "global\n set-var sess.x int(3)\n": False,
        'global\n set-var-fmt proc.x "%pid|%[var(proc.q)]"\n': True,
    }
    texts = {in_a_frontend(line): valid for line, valid in cases.items()}
    texts.update({in_a_frontend("", before=prologue): valid for prologue, valid in globals_.items()})
    assert_verdicts(tmp_path, texts)


# The set-var and unset-var converters (HAProxy 2.6): the sample passes through unchanged while it is
# stored (under set-var's conditions) or its variable unset; what the rules after them route on.
CONVERTERS = PROLOGUE + """
frontend fe
    bind 127.0.0.1:{port}
    tcp-request inspect-delay 1s
    tcp-request content set-var(txn.x) str(held)
    tcp-request content set-var(txn.net) src,set-var(sess.who),ipmask(24)
    tcp-request content set-var(txn.other) str(other),set-var(sess.who,ifnotexists)
    tcp-request content set-var(txn.y) str(z),unset-var(txn.x) if {{ src 127.0.0.2 }}
    use_backend unset if !{{ var(txn.x) -m found }}
    use_backend seen if {{ var(sess.who) -m ip 127.0.0.3 }} {{ var(txn.net) -m ip 127.0.0.0 }}
    default_backend plain
backend unset
    server s1 127.0.0.1:{unset}
backend seen
    server s1 127.0.0.1:{seen}
backend plain
    server s1 127.0.0.1:{plain}
"""


@needs_haproxy
def test_the_set_var_and_unset_var_converters_route_as_haproxy(pump_class, tmp_path):
    async def main():
        async with contextlib.AsyncExitStack() as stack:
            ports = await _backends(stack, ("unset", "seen", "plain"))
            clients = [("127.0.0.1", b"hi"), ("127.0.0.2", b"hi"), ("127.0.0.3", b"hi")]
            return await asyncio.to_thread(run_both, pump_class, CONVERTERS, ports, tmp_path, clients, 0)

    ours, theirs = asyncio.run(main())
    assert ours == theirs
    assert ours[0] == [b"plain", b"unset", b"seen"]


def test_the_variable_converters_check_verdicts_are_haproxys(tmp_path):
    cases = {
        " tcp-request content set-var(txn.a) src,set-var(sess.b),unset-var(txn.c),ipmask(24)\n": True,
        " tcp-request content set-var(txn.a) src,set-var(sess.b,ifexists,ifgt)\n": True,
        " tcp-request content set-var(txn.a) src,set-var(b)\n": False,
        " tcp-request content set-var(txn.a) src,set-var(sess.b,bogus)\n": False,
        " tcp-request content set-var(txn.a) src,unset-var(txn.b,ifexists)\n": False,
        " tcp-request content set-var(txn.a) src,set-var()\n": False,
    }
    assert_verdicts(tmp_path, {in_a_frontend(line): valid for line, valid in cases.items()})
