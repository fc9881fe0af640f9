"""HAProxy 2.6's stick-table arrays on real sockets, held to the real haproxy on the same file and
clients: ``store gpc(<n>),gpt(<n>),gpc_rate(<n>,<period>)``, the ``sc-inc-gpc(<idx>,<sc>)`` and
``sc-set-gpt(<idx>,<sc>) <int|expr>`` actions, the legacy ``sc-inc-gpc0`` / ``sc-set-gpt0`` on the
arrays' first elements, and the ``sc_get_gpc``, ``sc_gpc_rate``, ``sc_get_gpt``, ``src_get_gpc``
fetches routing by them; then ``show table`` as both write it.
"""

from __future__ import annotations

import contextlib
import os
import re

import pytest

from fastproxy.config import load

from ..support import assert_verdicts, free_port, haproxy_running, in_a_frontend, running, serving
from .test_routing import HAPROXY, answers, named_backend
from .test_routing_keywords import PROLOGUE
from .test_stats_socket import ask

ARRAYS = """
global
    stats socket {sock} level admin
""" + PROLOGUE + """
frontend fe
    bind 127.0.0.1:{port}
    stick-table type ip size 100 expire 1m store gpc(3),gpt(2),gpc_rate(2,10s),conn_cnt
    tcp-request connection track-sc0 src
    tcp-request connection sc-inc-gpc(1,0)
    tcp-request connection sc-inc-gpc(1,0) if {{ src 127.0.0.2 }}
    tcp-request connection sc-inc-gpc0(0)
    tcp-request connection sc-inc-gpc(5,0)
    tcp-request connection sc-set-gpt(1,0) 3
    tcp-request session sc-set-gpt(1,0) int(42) if {{ src 127.0.0.4 }}
    tcp-request content sc-set-gpt(0,0) dst_port
    tcp-request content sc-set-gpt0(0) 7 if {{ src 127.0.0.3 }}
    tcp-request content sc-inc-gpc(2,0) if {{ sc_get_gpt(0,0) eq 7 }}
    use_backend rated if {{ sc_gpc_rate(0,0) ge 3 }}
    use_backend flagged if {{ sc_get_gpc(1,0) gt 2 }}
    use_backend tagged if {{ sc_get_gpt(1,0) eq 42 }}
    use_backend counted if {{ src_get_gpc(2,fe) eq 2 }}
    default_backend plain
backend flagged
    server s1 127.0.0.1:{flagged}
backend tagged
    server s1 127.0.0.1:{tagged}
backend counted
    server s1 127.0.0.1:{counted}
backend rated
    server s1 127.0.0.1:{rated}
backend plain
    server s1 127.0.0.1:{plain}
"""

CLIENTS = [("127.0.0.1", b""), ("127.0.0.1", b""), ("127.0.0.2", b""), ("127.0.0.2", b""),
           ("127.0.0.4", b""), ("127.0.0.3", b""), ("127.0.0.3", b""), ("127.0.0.1", b"")]


def entries(dump: str) -> list[str]:
    """show table's entries, their address and expiry masked (they differ by nature)."""
    return [re.sub(r"^0x[0-9a-f]+: (.*) exp=\d+", r"\1", line) for line in dump.splitlines()[1:] if line]


@pytest.mark.skipif(HAPROXY is None, reason="haproxy is not installed")
@pytest.mark.timeout(60)
async def test_counter_arrays_route_and_show_as_haproxy(tmp_path, pump_class):
    async with contextlib.AsyncExitStack() as stack:
        ports = {name: await stack.enter_async_context(serving(named_backend(name.encode())))
                 for name in ("flagged", "tagged", "counted", "rated", "plain")}
        sock = str(tmp_path / "admin.sock")
        path = tmp_path / "arrays.cfg"
        port = free_port()
        path.write_text(ARRAYS.format(sock=sock, port=port, **ports))
        async with running(load([str(path)]), pump_class):
            ours = await answers(("127.0.0.1", port), CLIENTS), entries(await ask(sock, "show table fe"))
        with contextlib.suppress(FileNotFoundError):
            os.unlink(sock)  # haproxy_running waits for the socket to exist
        async with haproxy_running(str(path), sock):
            theirs = await answers(("127.0.0.1", port), CLIENTS), entries(await ask(sock, "show table fe"))
    assert ours == theirs
    replies, table = ours
    assert replies == [b"plain", b"plain", b"plain", b"flagged", b"tagged", b"plain", b"counted", b"rated"]
    assert "key=127.0.0.3 use=0 conn_cnt=2 gpt0=7 gpt1=3 gpc0=2 gpc1=2 gpc2=2 gpc0_rate(10000)=2 " \
           "gpc1_rate(10000)=2" in table


def test_counter_array_check_verdicts_are_haproxys(tmp_path):
    table = " stick-table type ip size 10 store {}\n"
    cases = {
        table.format("gpc(3),gpc0"): False,
        table.format("gpc(101)"): False,
        table.format("gpc(0)"): False,
        table.format("gpt(2),gpt0"): False,
        table.format("gpc_rate(2)"): False,
        table.format("gpc_rate(2,10s),gpc0_rate(1s)"): False,
        table.format("gpc(3),gpt(2),gpc_rate(2,10s)"): True,
        " tcp-request content sc-inc-gpc\n": False,
        " tcp-request content sc-inc-gpc(1)\n": False,
        " tcp-request content sc-inc-gpc(1,5)\n": False,
        " tcp-request content sc-inc-gpc(x,0)\n": False,
        " tcp-request content sc-inc-gpc(100,0)\n": True,
        " tcp-request content sc-set-gpt(1,0)\n": True,
        " tcp-request content sc-set-gpt(1,0) foo\n": False,
        " tcp-request content sc-set-gpt(1,0) src\n": True,
        " tcp-request connection sc-set-gpt(1,0) int(42)\n": False,  # haproxy 2.6.12's internal error
        " tcp-request connection sc-set-gpt0(0) 42\n": True,
        " tcp-request session sc-set-gpt0(0) src_port\n": True,
        " tcp-request content sc-set-gpt(1) 5\n": False,
        " tcp-request content reject if { src_get_gpc(2) gt 1 }\n": False,
        " tcp-request content reject if { src_get_gpc(2,fe) gt 1 }\n": True,
        " tcp-request content reject if { sc_get_gpc(1) gt 1 }\n": False,
        " tcp-request content reject if { sc_gpc_rate(1,0) gt 1 }\n": True,
        " tcp-request content reject if { sc0_get_gpc(1) gt 1 }\n": False,
        " tcp-request content reject if { src_get_gpt(x,fe) gt 1 }\n": False,
    }
    default = table.format("gpc(3),gpt(2)")
    assert_verdicts(tmp_path, {in_a_frontend((default if "stick-table" not in line else "") + line): valid
                               for line, valid in cases.items()})
