"""The Python API builds the same model as the HAProxy reader, and runs it from asyncio."""

from __future__ import annotations

import asyncio
import dataclasses
import importlib.util
import os
import socket
import subprocess
import sys
import textwrap

import fastproxy
from fastproxy import Backend, Bind, Config, Engine, Frontend, Server, Timeouts

from ..support import connect, echo, recv_all, serving

TEXT = """
defaults
    mode tcp
    timeout connect 2s
    timeout client 30s
    timeout server 30s

frontend web
    bind 127.0.0.1:8443
    default_backend app

backend app
    balance leastconn
    server a1 127.0.0.1:9001 weight 3
    server a2 127.0.0.1:9002 backup
"""


def without_locations(value):
    """The model with every ``location`` blanked: where a setting came from is not what it is."""
    if dataclasses.is_dataclass(value):
        return {f.name: (None if f.name == "location" else without_locations(getattr(value, f.name)))
                for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {k: without_locations(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [without_locations(v) for v in value]
    return value


def test_the_reader_and_the_api_build_the_same_model():
    parsed = fastproxy.parse_text(TEXT)
    timeouts_fe = Timeouts(connect=2.0, client=30.0, server=30.0)
    built_backend = Backend("app", servers=[Server("a1", "127.0.0.1", 9001, weight=3),
                                            Server("a2", "127.0.0.1", 9002, backup=True)],
                            timeouts=Timeouts(connect=2.0, client=30.0, server=30.0))
    built_backend.balance.algorithm = "leastconn"
    assert without_locations(parsed.backends["app"].servers) == without_locations(built_backend.servers)
    assert parsed.backends["app"].balance.algorithm == "leastconn"
    frontend = parsed.frontends["web"]
    assert isinstance(frontend, Frontend) and isinstance(parsed, Config)
    assert without_locations(frontend.binds) == without_locations([Bind("127.0.0.1", 8443)])
    assert frontend.default_backend == "app"
    assert frontend.timeouts.client == timeouts_fe.client


async def test_an_api_built_configuration_runs_from_asyncio(pump_class):
    async with serving(echo) as port:
        cfg = Config()
        cfg.backends["app"] = Backend("app", servers=[Server("a1", "127.0.0.1", port)])
        cfg.frontends["web"] = Frontend("web", binds=[Bind("127.0.0.1", 0)], default_backend="app")
        engine = Engine(cfg, pump_class=pump_class)
        await engine.start()
        try:
            sock = await connect(engine.listening_addresses()[0])
            await asyncio.get_running_loop().sock_sendall(sock, b"api")
            sock.shutdown(socket.SHUT_WR)
            assert await recv_all(sock) == b"api"
            sock.close()
        finally:
            await engine.stop()


def test_a_half_built_install_says_mixed_and_which_extension_fell_back():
    # The compiled pump made unimportable (as when its build failed), the compiled ring left in place.
    code = textwrap.dedent("""
        import importlib.abc, sys
        class NoPump(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name == "fastproxy._pump":
                    raise ImportError("not built")
        sys.meta_path.insert(0, NoPump())
        import fastproxy
        print(fastproxy.implementation(), sorted(fastproxy.extensions().items()))
    """)
    env = {k: v for k, v in os.environ.items() if k != "FASTPROXY_NO_EXTENSIONS"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env=env).stdout
    if importlib.util.find_spec("fastproxy._ring") is None:  # an install built without extensions
        assert out.strip() == "python [('pump', 'python'), ('ring', 'python')]"
    else:
        assert out.strip() == "mixed [('pump', 'python'), ('ring', 'cython')]"
