"""An engine running in the fuzzing process, for the targets that drive the runtime API and the stats
listener with their real operations: a stats socket, a ``listen stats`` page, a frontend over two
servers and a stick table, all on 127.0.0.1 (a directory of its own for the socket)."""

from __future__ import annotations

import asyncio
import socket
import tempfile

from fastproxy.config import parse_text
from fastproxy.engine import Engine

CONFIG = """\
global
    stats socket {directory}/admin.sock level admin mode 600
defaults
    mode tcp
    timeout connect 2s
    timeout client 10s
    timeout server 10s
frontend fe
    bind 127.0.0.1:{fe}
    default_backend be
backend be
    balance roundrobin
    stick-table type ip size 100 expire 1m store conn_cnt
    tcp-request content track-sc0 src
    server s1 127.0.0.1:{s1}
    server s2 127.0.0.1:{s2} weight 3
listen stats
    mode http
    bind 127.0.0.1:{stats}
    stats enable
    stats uri /stats
    stats auth admin:secret
    stats admin if TRUE
    monitor-uri /healthz
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class LiveEngine:
    """``loop`` runs the engine; ``ports`` are its frontend's and its stats listener's."""

    def __init__(self) -> None:
        self.directory = tempfile.mkdtemp(prefix="fastproxy-fuzz-")
        self.ports = {name: _free_port() for name in ("fe", "s1", "s2", "stats")}
        config = parse_text(CONFIG.format(directory=self.directory, **self.ports), "live.cfg")
        self.loop = asyncio.new_event_loop()
        self.engine = Engine(config)
        self.loop.run_until_complete(self.engine.start())
        assert self.engine.operations is not None
        self.operations = self.engine.operations
