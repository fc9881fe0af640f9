"""``show table``, ``clear table`` and ``set table`` on the stats socket, answer for answer against the
real haproxy 2.6 on the same file and the same requests (the entries' addresses and remaining
lifetimes aside: they depend on the process and on when the request is read)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from fastproxy.config import load

from ..support import free_port, haproxy_running, running
from .test_stats_socket import ask, needs_haproxy

REQUESTS = [
    "show table",
    "set table fe key 10.0.0.1 data.gpc0 5 data.gpt0 3",
    "set table fe key 10.0.0.2 data.conn_rate 7",
    "set table fe key 10.0.0.3",
    "show table fe",
    "show table fe data.gpc0 gt 1",
    "show table fe data.gpc0 ge 0 data.conn_rate lt 7",
    "show table fe key 10.0.0.2",
    "show table fe key 10.9.9.9",
    "show table fe key",
    "show table fe data.nope gt 1",
    "show table fe data.gpc0 xx 1",
    "show table fe data.gpc0 gt x",
    "show table fe data.bytes_in_cnt gt 1",
    "show table fe data.gpc0 gt 1 key 10.0.0.1",
    "show table fe bogus",
    "show table nope",
    "show table other",
    "set table fe key 10.0.0.4 data.bytes_in_cnt 1",
    "set table fe key 10.0.0.5 data.gpc0 x",
    "set table fe key 10.0.0.6 data.gpc0",
    "set table fe key 10.0.0.7 gpc0 1",
    "set table other key abcdefghijklmnop data.server_id 3",
    "set table fe key 10.0.0.8 data.gpc0 -1",
    "show table other",
    "show table fe",
    "clear table fe key 10.0.0.1",
    "clear table fe data.gpc0 eq 0",
    "show table fe",
    "clear table",
    "clear table fe bogus",
    "clear table other",
    "show table",
    "user; set table fe key 10.0.0.9 data.gpc0 1",
    "user; show table fe",
]


def write_config(tmp_path: Path) -> Path:
    path = tmp_path / "haproxy.cfg"
    path.write_text(f"""\
global
    stats socket {tmp_path}/admin.sock level admin
defaults
    mode tcp
    timeout connect 1s
    timeout client 5s
    timeout server 5s
frontend fe
    bind 127.0.0.1:{free_port()}
    stick-table type ip size 100 expire 1m store gpc0,gpt0,conn_rate(10s)
    default_backend other
backend other
    stick-table type string len 8 size 10 store server_id
    server a 127.0.0.1:{free_port()}
""")
    return path


def masked(answer: str) -> str:
    return re.sub(r"exp=[0-9]+", "exp=?", re.sub(r"^0x[0-9a-f]+:", "0x?:", answer, flags=re.M))


@needs_haproxy
@pytest.mark.timeout(60)
async def test_table_commands_answer_as_haproxys(tmp_path, pump_class):
    cfg, sock = write_config(tmp_path), tmp_path / "admin.sock"
    async with haproxy_running(str(cfg), str(sock)):
        theirs = [masked(await ask(str(sock), request)) for request in REQUESTS]
    async with running(load([str(cfg)]), pump_class):
        ours = [masked(await ask(str(sock), request)) for request in REQUESTS]
    for request, mine, haproxy in zip(REQUESTS, ours, theirs):
        assert mine == haproxy, request
