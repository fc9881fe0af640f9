"""The TCP proxy end to end: real clients, the engine, real backends, all on loopback.

Every test runs against both data planes (the ``pump_class`` fixture).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import hashlib
import random
import socket
import struct
import time

import pytest

from fastproxy.pump import Counter, EndReason, PyPump
from fastproxy.server import Connection

from ..support import (config, connect, echo, echo_process, open_fds, recv_all, recv_exactly, reset, running,
                       serving, serving_raw, wait_until)

# --- integrity ----------------------------------------------------------------------------------------

TOTAL_EACH_WAY = 256 * 1024 * 1024
CONNECTIONS = 50


async def send_random_chunks(sock: socket.socket, data: bytes, rng: random.Random) -> None:
    loop = asyncio.get_running_loop()
    view = memoryview(data)
    offset = 0
    while offset < len(data):
        size = rng.randint(1, 256 * 1024)
        await loop.sock_sendall(sock, view[offset:offset + size])
        offset += size
    sock.shutdown(socket.SHUT_WR)


async def hash_until_eof(sock: socket.socket) -> tuple[str, int]:
    loop = asyncio.get_running_loop()
    digest = hashlib.sha256()
    total = 0
    while data := await loop.sock_recv(sock, 1 << 18):
        digest.update(data)
        total += len(data)
    return digest.hexdigest(), total


@pytest.mark.timeout(280)
async def test_integrity_of_256_mib_each_way_over_50_connections(pump_class):
    """Random bytes both ways at once, random write sizes: SHA-256 at each end matches what was sent."""
    per_connection = TOTAL_EACH_WAY // CONNECTIONS
    received_by_backend: dict[int, tuple[str, int]] = {}

    async def source_and_sink(sock: socket.socket) -> None:
        # The backend sends its own stream while it hashes the client's: both directions independent.
        seed, = struct.unpack("!Q", await recv_exactly(sock, 8))
        down = random.Random(seed ^ 0xFFFF).randbytes(per_connection)
        sending = asyncio.get_running_loop().create_task(send_random_chunks(sock, down, random.Random(seed)))
        received_by_backend[seed] = await hash_until_eof(sock)
        await sending
        sock.close()

    async def client(address: tuple, seed: int) -> None:
        sock = await connect(address)
        up = random.Random(seed).randbytes(per_connection)
        loop = asyncio.get_running_loop()
        await loop.sock_sendall(sock, struct.pack("!Q", seed))
        sending = loop.create_task(send_random_chunks(sock, up, random.Random(seed + 1)))
        got_hash, got_len = await hash_until_eof(sock)
        await sending
        sock.close()
        expected_down = random.Random(seed ^ 0xFFFF).randbytes(per_connection)
        assert got_len == per_connection
        assert got_hash == hashlib.sha256(expected_down).hexdigest()
        await wait_until(lambda: seed in received_by_backend)
        assert received_by_backend[seed] == (hashlib.sha256(up).hexdigest(), per_connection)

    async with serving_raw(source_and_sink) as port:
        async with running(config([port], global_={"pipesize": 1 << 20}), pump_class) as engine:
            address = engine.listening_addresses()[0]
            await asyncio.gather(*(client(address, seed) for seed in range(1, CONNECTIONS + 1)))
            await wait_until(lambda: engine.pump.active == 0)
            stats = engine.stats()["frontends"]["fe"]
            assert stats["bytes_in"] == CONNECTIONS * (per_connection + 8)
            assert stats["bytes_out"] == CONNECTIONS * per_connection
            assert engine.ended_by[EndReason.CLOSED] == CONNECTIONS


# --- half-close and reset -------------------------------------------------------------------------------

async def test_client_half_close_keeps_the_response_flowing(pump_class):
    """The client's FIN reaches the backend as a FIN; the backend's answer still arrives in full."""
    answer = b"pong" * 100_000

    async def respond_after_eof(reader, writer):
        request = await reader.read()  # until EOF: the FIN was passed on
        writer.write(request + answer)
        await writer.drain()
        writer.close()

    async with serving(respond_after_eof) as port, running(config([port]), pump_class) as engine:
        sock = await connect(engine.listening_addresses()[0])
        await asyncio.get_running_loop().sock_sendall(sock, b"ping")
        sock.shutdown(socket.SHUT_WR)
        assert await recv_all(sock) == b"ping" + answer
        sock.close()
        await wait_until(lambda: engine.ended_by[EndReason.CLOSED] == 1)


async def test_server_half_close_keeps_the_request_flowing(pump_class):
    """The backend's FIN reaches the client; the client can still send, and the backend gets it all."""
    received = asyncio.Queue()

    async def greet_then_listen(reader, writer):
        writer.write(b"hello")
        writer.write_eof()
        await writer.drain()
        await received.put(await reader.read())
        writer.close()

    async with serving(greet_then_listen) as port, running(config([port]), pump_class) as engine:
        sock = await connect(engine.listening_addresses()[0])
        assert await recv_all(sock) == b"hello"  # EOF seen while our direction is open
        payload = b"x" * 1_000_000
        await asyncio.get_running_loop().sock_sendall(sock, payload)
        sock.shutdown(socket.SHUT_WR)
        assert await asyncio.wait_for(received.get(), 10) == payload
        sock.close()
        await wait_until(lambda: engine.ended_by[EndReason.CLOSED] == 1)


async def test_client_reset_reaches_the_backend_as_a_reset(pump_class):
    outcome = asyncio.Queue()

    async def wait_for_data(reader, writer):
        try:
            await reader.read(100)  # "x"
            data = await reader.read(100)
            await outcome.put(("eof", data))
        except ConnectionResetError:
            await outcome.put(("reset", b""))
        writer.close()

    async with serving(wait_for_data) as port, running(config([port]), pump_class) as engine:
        sock = await connect(engine.listening_addresses()[0])
        await asyncio.get_running_loop().sock_sendall(sock, b"x")
        await wait_until(lambda: engine.stats()["frontends"]["fe"]["bytes_in"] == 1)
        reset(sock)
        assert (await asyncio.wait_for(outcome.get(), 10))[0] == "reset"
        await wait_until(lambda: engine.ended_by[EndReason.CLIENT_RESET] == 1)
        assert engine.stats()["frontends"]["fe"]["resets"] == 1


async def test_server_reset_reaches_the_client_as_a_reset(pump_class):
    async def reset_after_first_bytes(reader, writer):
        await reader.read(100)
        writer.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                                   struct.pack("ii", 1, 0))
        writer.transport.abort()

    async with serving(reset_after_first_bytes) as port, running(config([port]), pump_class) as engine:
        sock = await connect(engine.listening_addresses()[0])
        await asyncio.get_running_loop().sock_sendall(sock, b"x")
        with pytest.raises(ConnectionResetError):
            await recv_all(sock)
        sock.close()
        await wait_until(lambda: engine.ended_by[EndReason.SERVER_RESET] == 1)
        assert engine.stats()["servers"]["be/s1"]["resets"] == 1


# --- connect failures -------------------------------------------------------------------------------------

def unused_port() -> int:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    return port


async def test_connect_refused_closes_the_client_and_counts_the_error(pump_class):
    cfg = config([unused_port()], backend={"retries": 0})
    async with running(cfg, pump_class) as engine:
        sock = await connect(engine.listening_addresses()[0])
        assert await recv_all(sock) == b""
        sock.close()
        stats = engine.stats()
        assert stats["frontends"]["fe"]["connect_errors"] == 1
        assert stats["servers"]["be/s1"]["connect_errors"] == 1
        assert stats["servers"]["be/s1"]["conn_total"] == 0


async def test_connect_timeout_closes_the_client_and_counts_the_error(pump_class):
    # A listener whose accept queue is full drops SYNs: a connect to it never completes.
    with socket.socket() as black_hole, contextlib.ExitStack() as fillers:
        black_hole.bind(("127.0.0.1", 0))
        black_hole.listen(0)
        for _ in range(3):
            filler = fillers.enter_context(socket.socket())
            filler.setblocking(False)
            filler.connect_ex(black_hole.getsockname())
        await asyncio.sleep(0.2)
        cfg = config([black_hole.getsockname()[1]], backend={"retries": 0}, timeouts_be={"connect": 0.3})
        async with running(cfg, pump_class) as engine:
            sock = await connect(engine.listening_addresses()[0])
            started = time.monotonic()
            assert await recv_all(sock) == b""
            elapsed = time.monotonic() - started
            sock.close()
            assert 0.25 <= elapsed < 3.0
            assert engine.stats()["servers"]["be/s1"]["connect_errors"] == 1


async def test_retries_with_redispatch_reach_a_live_server(pump_class):
    async with serving(echo) as port:
        cfg = config([unused_port(), port], backend={"retries": 1, "redispatch": True})
        async with running(cfg, pump_class) as engine:
            for _ in range(4):
                sock = await connect(engine.listening_addresses()[0])
                await asyncio.get_running_loop().sock_sendall(sock, b"hi")
                sock.shutdown(socket.SHUT_WR)
                assert await recv_all(sock) == b"hi"
                sock.close()


# --- timeouts -----------------------------------------------------------------------------------------------

async def idle_backend(reader, writer):
    try:
        await reader.read()
    except ConnectionError:
        pass
    writer.close()


async def time_until_closed(engine, prepare=None) -> float:
    sock = await connect(engine.listening_addresses()[0])
    if prepare is not None:
        await prepare(sock)
    started = time.monotonic()
    try:
        await recv_all(sock, timeout=10)
    except ConnectionResetError:
        pass
    sock.close()
    return time.monotonic() - started


@pytest.mark.parametrize("side, timeouts_fe, timeouts_be, reason", [
    ("client", {"client": 0.3}, {"server": 30}, EndReason.CLIENT_TIMEOUT),
    ("server", {"client": 30}, {"server": 0.3}, EndReason.SERVER_TIMEOUT),
])
async def test_idle_timeout_closes_the_pair(pump_class, side, timeouts_fe, timeouts_be, reason):
    async with serving(idle_backend) as port:
        cfg = config([port], timeouts_fe=timeouts_fe, timeouts_be=timeouts_be)
        async with running(cfg, pump_class) as engine:
            elapsed = await time_until_closed(engine)
            assert 0.25 <= elapsed < 2.0, elapsed
            await wait_until(lambda: engine.ended_by[reason] == 1)
            assert engine.stats()["frontends"]["fe"]["timeouts"] == 1


async def test_tunnel_timeout_supersedes_client_and_server_timeouts(pump_class):
    async with serving(echo) as port:
        cfg = config([port], timeouts_fe={"client": 0.2}, timeouts_be={"server": 0.2, "tunnel": 1.0})
        async with running(cfg, pump_class) as engine:
            sock = await connect(engine.listening_addresses()[0])
            loop = asyncio.get_running_loop()
            await asyncio.sleep(0.6)  # idle longer than client and server timeouts
            await loop.sock_sendall(sock, b"still here")
            assert await recv_exactly(sock, 10) == b"still here"
            started = time.monotonic()
            assert await recv_all(sock) == b""  # the tunnel timeout ends it
            assert 0.9 <= time.monotonic() - started < 3.0
            sock.close()


async def hold_open(reader, writer):
    """Read until the client's FIN, then neither answer nor close."""
    await reader.read()
    await asyncio.sleep(30)


async def half_close_then_hold(reader, writer):
    writer.write_eof()
    await asyncio.sleep(30)


@pytest.mark.parametrize("who_half_closes, timeouts_fe, timeouts_be, reason", [
    ("client", {"client": 30, "client_fin": 0.3}, {"server": 30}, EndReason.CLIENT_TIMEOUT),
    ("server", {"client": 30}, {"server": 30, "server_fin": 0.3}, EndReason.SERVER_TIMEOUT),
])
async def test_fin_timeout_applies_once_a_side_half_closed(pump_class, who_half_closes, timeouts_fe,
                                                           timeouts_be, reason):
    async with serving(hold_open if who_half_closes == "client" else half_close_then_hold) as port:
        cfg = config([port], timeouts_fe=timeouts_fe, timeouts_be=timeouts_be)
        async with running(cfg, pump_class) as engine:
            sock = await connect(engine.listening_addresses()[0])
            loop = asyncio.get_running_loop()
            if who_half_closes == "client":
                sock.shutdown(socket.SHUT_WR)
            else:
                assert await loop.sock_recv(sock, 10) == b""  # the backend's FIN, passed on
            started = time.monotonic()
            await wait_until(lambda: engine.ended_by[reason] == 1, timeout=5)
            assert 0.2 <= time.monotonic() - started < 2.0
            assert await recv_all(sock) == b""  # and the client's socket was closed
            sock.close()


# --- scale and resources ----------------------------------------------------------------------------------

@pytest.mark.timeout(240)
async def test_5000_concurrent_connections(pump_class):
    count = 5000
    with echo_process() as port:  # 5,000 pairs are 20,000 descriptors: the backend lives apart
        async with running(config([port]), pump_class) as engine:
            address = engine.listening_addresses()[0]
            loop = asyncio.get_running_loop()
            socks = []
            for batch in range(0, count, 500):
                socks += await asyncio.gather(*(connect(address) for _ in range(min(500, count - batch))))
            for i, sock in enumerate(socks):
                await loop.sock_sendall(sock, struct.pack("!I", i))
            for i, sock in enumerate(socks):
                assert await recv_exactly(sock, 4) == struct.pack("!I", i)
            await wait_until(lambda: engine.pump.active == count, timeout=20)
            assert engine.stats()["frontends"]["fe"]["conn_cur"] == count
            for sock in socks:
                sock.close()
            await wait_until(lambda: engine.pump.active == 0, timeout=30)
            assert engine.current == 0
            assert engine.ended_by[EndReason.CLOSED] == count


async def test_no_descriptor_is_left_open_once_every_connection_ended(pump_class):
    async with serving(echo) as port:
        cfg = config([port, unused_port()], backend={"retries": 0}, timeouts_fe={"client": 0.2})
        engine_cm = running(cfg, pump_class)
        engine = await engine_cm.__aenter__()
        try:
            address = engine.listening_addresses()[0]
            loop = asyncio.get_running_loop()
            gc.collect()  # sockets of earlier tests waiting for the collector are not ours to count
            await asyncio.sleep(0.1)
            baseline = open_fds()
            for i in range(40):
                sock = await connect(address)
                kind = i % 4
                if kind == 0:  # a normal exchange (or a refused server: every other pick)
                    await loop.sock_sendall(sock, b"abc")
                    sock.shutdown(socket.SHUT_WR)
                    await recv_all(sock)
                    sock.close()
                elif kind == 1:  # the client resets
                    await loop.sock_sendall(sock, b"abc")
                    reset(sock)
                elif kind == 2:  # left idle until the client timeout
                    await recv_all(sock)
                    sock.close()
                else:  # the client closes at once
                    sock.close()
            await wait_until(lambda: engine.current == 0 and engine.pump.active == 0, timeout=10)
            await asyncio.sleep(0.2)  # the backend closes its side
            assert open_fds() == baseline
        finally:
            await engine_cm.__aexit__(None, None, None)


# --- listeners, hooks and handlers -----------------------------------------------------------------------

async def test_ipv6_listener_and_several_binds(pump_class):
    async with serving(echo) as port:
        cfg = config([port], bind_host="::1")
        from fastproxy.config import model
        cfg.frontends["fe"].binds.append(model.Bind("127.0.0.1", 0))
        async with running(cfg, pump_class) as engine:
            addresses = engine.listening_addresses()
            assert len(addresses) == 2
            for address in addresses:
                sock = await connect(address)
                await asyncio.get_running_loop().sock_sendall(sock, b"v6?")
                sock.shutdown(socket.SHUT_WR)
                assert await recv_all(sock) == b"v6?"
                sock.close()


def named_backend(name: bytes):
    async def handler(reader, writer):
        writer.write(name)
        writer.write_eof()
        await reader.read()
        writer.close()
    return handler


async def test_director_hook_chooses_the_server(pump_class):
    async with serving(named_backend(b"one")) as port1, serving(named_backend(b"two")) as port2:
        seen = []

        def director(conn: Connection, backend):
            seen.append(conn.peername[0])
            return backend.model.server("s2")

        async with running(config([port1, port2]), pump_class, director=director) as engine:
            for _ in range(3):
                sock = await connect(engine.listening_addresses()[0])
                assert await recv_all(sock) == b"two"
                sock.close()
        assert seen == ["127.0.0.1"] * 3


async def test_error_handler_hook_decides_what_the_client_sees(pump_class):
    errors = []

    async def error_handler(conn: Connection, exc: Exception):
        errors.append(type(exc).__name__)
        await asyncio.get_running_loop().sock_sendall(conn.sock, b"no backend\n")
        conn.close()

    cfg = config([unused_port()], backend={"retries": 0})
    async with running(cfg, pump_class, error_handler=error_handler) as engine:
        sock = await connect(engine.listening_addresses()[0])
        assert await recv_all(sock) == b"no backend\n"
        sock.close()
    assert errors == ["UpstreamConnectError"]


async def test_a_user_handler_serves_connections_and_the_server_closes_them(pump_class):
    class Greeter:
        async def serve_tcp(self, conn: Connection) -> None:
            await asyncio.get_running_loop().sock_sendall(conn.sock, b"hello from python\n")
            # returning without closing: the server closes what it opened

    async with running(config([unused_port()]), pump_class, handlers={"fe": Greeter()}) as engine:
        sock = await connect(engine.listening_addresses()[0])
        assert await recv_all(sock) == b"hello from python\n"
        sock.close()
        await wait_until(lambda: engine.current == 0)


async def test_round_robin_spreads_connections_over_servers(pump_class):
    async with serving(named_backend(b"one")) as port1, serving(named_backend(b"two")) as port2:
        async with running(config([port1, port2]), pump_class) as engine:
            answers = []
            for _ in range(6):
                sock = await connect(engine.listening_addresses()[0])
                answers.append(await recv_all(sock))
                sock.close()
            assert answers.count(b"one") == 3 and answers.count(b"two") == 3
            await wait_until(lambda: engine.pump.active == 0)
            stats = engine.stats()["servers"]
            assert stats["be/s1"]["conn_total"] == 3 and stats["be/s2"]["conn_total"] == 3
            assert stats["be/s1"][Counter.BYTES_OUT.name.lower()] == 9


async def test_per_connection_counters_are_readable_while_the_pair_lives(pump_class):
    async with serving(echo) as port, running(config([port]), pump_class) as engine:
        sock = await connect(engine.listening_addresses()[0])
        loop = asyncio.get_running_loop()
        await loop.sock_sendall(sock, b"z" * 1000)
        await recv_exactly(sock, 1000)
        await wait_until(lambda: [c[1:] for c in engine.pump.connections()] == [(1000, 1000, False)])
        sock.close()
        await wait_until(lambda: engine.pump.connections() == [])


async def test_several_pump_threads_carry_connections_correctly(pump_class):
    async def client(address, i):
        sock = await connect(address)
        payload = random.Random(i).randbytes(200_000)
        loop = asyncio.get_running_loop()
        sending = loop.create_task(loop.sock_sendall(sock, payload))
        received = await recv_exactly(sock, len(payload))
        await sending
        sock.close()
        assert received == payload

    async with serving(echo) as port, running(config([port], global_={"nbthread": 2}), pump_class) as engine:
        assert engine.pump.threads == (2 if pump_class.__name__ == "Pump" else 1)
        address = engine.listening_addresses()[0]
        await asyncio.gather(*(client(address, i) for i in range(20)))


def _socket_options_of_peer(peer: tuple) -> tuple:
    """(TCP_NODELAY, SO_KEEPALIVE, TCP_KEEPIDLE, TCP_KEEPINTVL, TCP_KEEPCNT) of this process's TCP socket
    connected to ``peer``: the proxy runs in the test's process, so its sockets are ours to inspect."""
    import os
    for name in os.listdir("/proc/self/fd"):
        try:
            sock = socket.socket(fileno=os.dup(int(name)))
        except OSError:
            continue
        with sock:
            try:
                if sock.type != socket.SOCK_STREAM or sock.getpeername()[:2] != peer[:2]:
                    continue
            except OSError:
                continue
            return (sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0,
                    sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) != 0,
                    sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE),
                    sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL),
                    sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT))
    raise AssertionError(f"no socket of ours is connected to {peer}")


@pytest.mark.parametrize("rules", [False, True])
async def test_both_sides_get_nodelay_and_the_configured_keepalive(pump_class, rules):
    from fastproxy.config.model import KeepAlive, TcpRequestRule

    async with serving(echo) as port:
        cfg = config([port], frontend={"client_keepalive": KeepAlive(True, 33.0, 7.0, 4)},
                     backend={"server_keepalive": KeepAlive(True, 44.0, 9.0, 5)})
        if rules:  # a frontend with rules takes the Python path, a plain one may run on a lane
            cfg.frontends["fe"].tcp_request_rules.append(TcpRequestRule("session", "accept"))
        async with running(cfg, pump_class) as engine:
            assert bool(engine.lanes) == (pump_class is not PyPump and not rules)
            sock = await connect(engine.listening_addresses()[0])
            await asyncio.get_running_loop().sock_sendall(sock, b"hello")
            assert await recv_exactly(sock, 5) == b"hello"
            assert _socket_options_of_peer(sock.getsockname()) == (True, True, 33, 7, 4)
            assert _socket_options_of_peer(("127.0.0.1", port)) == (True, True, 44, 9, 5)
            sock.close()
