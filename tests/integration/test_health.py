"""Health checks (``fastproxy.health``): the counter, single probes against real listeners, and the
engine with backends that die, refuse, stay silent, answer wrong and flap, while clients keep coming.

Timing bounds are stated where they are asserted: a state changes within ``inter x fall`` (or
``rise``) plus a slack for a loaded 2-core machine.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
import subprocess
import sys
import time

import pytest

from fastproxy.balance import ServerState
from fastproxy.config.model import TcpCheckRule
from fastproxy.health import CheckResult, ServerHealth, run_check
from fastproxy.pump import EndReason

from ..support import (ECHO_PROCESS, config, connect, echo, recv_all, recv_exactly, running, start_backend,
                       wait_until)

SLACK = 1.0  # seconds of scheduling slack on a shared 2-core machine
LOAD = 10_000  # client connections made during each failure


# --- the counter ---------------------------------------------------------------------------------------

def test_a_server_starts_up_and_falls_at_its_first_failure_as_haproxy():
    health = ServerHealth(rise=2, fall=3, inter=2.0)
    assert health.up
    assert health.failed() and not health.up


def test_rise_passes_bring_it_up_and_fall_failures_take_it_down_once_settled():
    health = ServerHealth(rise=2, fall=3, inter=2.0, fastinter=0.5, downinter=5.0)
    health.failed()
    assert health.interval() == 5.0  # down: downinter
    assert not health.passed() and health.interval() == 0.5  # moving: fastinter
    assert health.passed() and health.up and health.interval() == 2.0  # settled: inter
    assert not health.failed() and not health.failed()  # fall - 1 failures: still up
    assert health.up and health.interval() == 0.5
    assert health.failed() and not health.up
    assert health.describe() == "0/2 DOWN"


def test_a_pass_in_between_restores_the_full_count():
    health = ServerHealth(rise=1, fall=2, inter=1.0)
    health.passed()
    health.failed()
    health.passed()
    assert not health.failed() and health.up  # one failure again after a pass: still up


# --- single probes ----------------------------------------------------------------------------------------

async def probe(port: int, rules=(), *, connect_timeout=1.0, read_timeout=1.0, total=None) -> CheckResult:
    return await run_check(socket.AF_INET, ("127.0.0.1", port), rules, connect_timeout=connect_timeout,
                           read_timeout=read_timeout, total_timeout=total)


@contextlib.contextmanager
def listener(backlog: int = 16):
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(backlog)
    try:
        yield sock
    finally:
        sock.close()


def closed_port() -> int:
    with listener() as sock:
        return sock.getsockname()[1]


class Answering:
    """A backend that answers every connection with ``greeting`` then echoes (or stays silent)."""

    def __init__(self, greeting: bytes = b"", *, silent: bool = False, close_after: bool = False) -> None:
        self.greeting, self.silent, self.close_after = greeting, silent, close_after

    async def __call__(self, reader, writer):
        try:
            if self.silent:
                await reader.read()
                return
            if self.greeting:
                writer.write(self.greeting)
                if self.close_after or self.greeting.startswith(b"-"):  # errors end the exchange
                    return
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except OSError:
            pass
        finally:
            writer.close()


async def serve_and_probe(handler, rules, **kwargs) -> CheckResult:
    server, port = await start_backend(handler)
    try:
        return await run_check(socket.AF_INET, ("127.0.0.1", port), rules, **kwargs)
    finally:
        server.close()


async def test_a_connect_passes_at_layer4():
    with listener() as sock:
        result = await probe(sock.getsockname()[1])
    assert (result.status, result.passed) == ("L4OK", True)
    assert result.description == "Layer4 check passed" and 0 <= result.duration < 1


async def test_a_connect_the_kernel_completed_in_time_passes_though_the_loop_woke_late():
    """On a busy machine the loop can wake for the probe's deadline (``inter``, without ``timeout
    check``) before it polls the socket that connected in time: the kernel's state decides, and a
    healthy server does not go down because the proxy was late.  Here the loop stalls right after
    the connect starts, past the deadline."""
    loop = asyncio.get_running_loop()
    with listener() as sock:
        loop.call_soon(lambda: loop.call_soon(time.sleep, 0.3))  # after the probe's first step
        result = await probe(sock.getsockname()[1], connect_timeout=5.0, total=0.1)
    assert (result.status, result.passed, result.info) == ("L4OK", True, "")


async def test_a_refused_connect_is_a_layer4_connection_problem():
    result = await probe(closed_port())
    assert (result.status, result.passed, result.info) == ("L4CON", False, "Connection refused")


async def test_a_connect_that_never_completes_is_a_layer4_timeout():
    with listener(backlog=0) as sock:
        port = sock.getsockname()[1]
        with socket.create_connection(("127.0.0.1", port)):  # fills the accept queue: SYNs get dropped
            result = await probe(port, connect_timeout=0.3)
    assert result.status == "L4TOUT" and 0.25 < result.duration < 1.5


SEND_PING = TcpCheckRule("send", data=b"PING\r\n")


def expect(pattern, match="string", **fields) -> TcpCheckRule:
    return TcpCheckRule("expect", match=match, pattern=pattern, **fields)


TIMEOUTS = dict(connect_timeout=1.0, read_timeout=0.5, total_timeout=None)


async def test_a_sequence_that_gets_its_answer_passes_at_layer7():
    result = await serve_and_probe(Answering(b"+OK ready\r\n"), [expect(b"+OK"), SEND_PING, expect(b"PING")],
                                   **TIMEOUTS)
    assert (result.status, result.info) == ("L7OK", "(tcp-check)")


async def test_a_wrong_answer_is_an_invalid_response_naming_the_step():
    result = await serve_and_probe(Answering(b"-ERR busy\r\n"), [expect(b"+OK")], **TIMEOUTS)
    assert result.status == "L7RSP"
    # HAProxy numbers the configured rules: the implicit connect is no step.
    assert "did not match content '+OK' at step 1" in result.info


async def test_a_wrong_answer_on_a_connection_left_open_waits_for_more_as_haproxy():
    # Without min-recv, a mismatch is final only once the server closes or the buffer is full:
    # until then more data might match, so a server that answers wrong and waits times out.
    waiting = await serve_and_probe(Answering(b"+NO\r\n"), [expect(b"+OK")], **TIMEOUTS)
    conclusive = await serve_and_probe(Answering(b"+NO\r\n"), [expect(b"+OK", min_recv=3)], **TIMEOUTS)
    assert (waiting.status, conclusive.status) == ("L7TOUT", "L7RSP")


async def test_silence_is_a_layer7_timeout():
    result = await serve_and_probe(Answering(silent=True), [SEND_PING, expect(b"+PONG")], **TIMEOUTS)
    assert result.status == "L7TOUT" and 0.4 < result.duration < 2


async def test_a_server_closing_before_the_match_is_an_invalid_response():
    result = await serve_and_probe(Answering(b"+O", close_after=True), [expect(b"+OK")], **TIMEOUTS)
    assert result.status == "L7RSP"


async def test_negation_regexes_binary_and_min_recv():
    greeting = b"\x00\x01OK 42\r\n"
    cases = [
        ([expect(b"ERR", negate=True, min_recv=4)], "L7OK"),  # 4 bytes read and no ERR: conclusive
        ([expect(b"OK", negate=True)], "L7RSP"),
        ([expect(r"OK \d+", match="rstring")], "L7OK"),
        ([expect(r"OK \d{3}", match="rstring", min_recv=8)], "L7RSP"),
        ([expect(bytes.fromhex("0001"), match="binary")], "L7OK"),
        ([expect("^0001", match="rbinary")], "L7OK"),
        ([expect("^01", match="rbinary", min_recv=2)], "L7RSP"),
        ([expect(b"nope", error_status="L4CON", min_recv=1)], "L4CON"),
        ([expect(b"OK", ok_status="L4OK")], "L4OK"),
    ]
    for rules, status in cases:
        result = await serve_and_probe(Answering(greeting), rules, **TIMEOUTS)
        assert result.status == status, (rules, result)


async def test_connect_rules_override_the_port_and_inter_bounds_a_probe_without_timeout_check():
    server, port = await start_backend(Answering(b"+OK\r\n"))
    silent, silent_port = await start_backend(Answering(silent=True))
    try:
        rules = [TcpCheckRule("connect", port=port), expect(b"+OK")]
        passed = await run_check(socket.AF_INET, ("127.0.0.1", closed_port()), rules,
                                 connect_timeout=None, read_timeout=None, total_timeout=1.0)
        bounded = await run_check(socket.AF_INET, ("127.0.0.1", silent_port), [expect(b"+OK")],
                                  connect_timeout=None, read_timeout=None, total_timeout=0.3)
    finally:
        server.close()
        silent.close()
    assert passed.status == "L7OK"
    assert bounded.status == "L7TOUT" and bounded.duration < 1.5


# --- the engine ------------------------------------------------------------------------------------------

class Flappable:
    """An echo backend on a fixed port that can stop listening and come back (refusing meanwhile)."""

    def __init__(self, handler=echo) -> None:
        self.handler = handler
        self.server = None
        self.port = 0

    async def up(self) -> None:
        self.server = await asyncio.start_server(self.handler, "127.0.0.1", self.port, reuse_address=True,
                                                 backlog=4096)
        self.port = self.server.sockets[0].getsockname()[1]

    @classmethod
    async def started(cls, handler=echo) -> "Flappable":
        backend = cls(handler)
        await backend.up()
        return backend

    def down(self) -> None:
        if self.server is not None:
            self.server.close()
            self.server = None


@contextlib.contextmanager
def echo_processes(count: int):
    procs = [subprocess.Popen([sys.executable, "-c", ECHO_PROCESS], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True) for _ in range(count)]
    try:
        yield procs, [int(proc.stdout.readline()) for proc in procs]
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)  # by its own pid
            proc.wait()
            proc.stdin.close()
            proc.stdout.close()


def checked(ports, *, inter=0.1, rise=2, fall=2, retries=3, redispatch=True, server_fields=None, **backend):
    cfg = config(ports, backend=dict(retries=retries, redispatch=redispatch, **backend),
                 timeouts_be=dict(connect=1.0, check=0.5), timeouts_fe=dict(client=10.0))
    cfg.backends["be"].timeouts.server = 10.0
    for server in cfg.backends["be"].servers:
        server.check, server.inter, server.rise, server.fall = True, inter, rise, fall
        for key, value in (server_fields or {}).items():
            setattr(server, key, value)
    return cfg


async def ping(address, payload=b"ping") -> bool:
    try:
        sock = await connect(address)
    except OSError:
        return False
    try:
        loop = asyncio.get_running_loop()
        await loop.sock_sendall(sock, payload)
        sock.shutdown(socket.SHUT_WR)
        return await recv_all(sock, timeout=10) == payload
    except (OSError, asyncio.TimeoutError):
        return False
    finally:
        sock.close()


async def load(address, count: int = LOAD, concurrency: int = 32, exchange=None) -> int:
    """Make ``count`` echo exchanges through the proxy, ``concurrency`` at a time; the failures."""
    failures = 0
    remaining = count
    exchange = exchange or ping

    async def client() -> None:
        nonlocal failures, remaining
        while remaining > 0:
            remaining -= 1
            if not await exchange(address):
                failures += 1
    await asyncio.gather(*(client() for _ in range(concurrency)))
    return failures


async def state_within(engine, server: str, state: ServerState, bound: float) -> float:
    """Wait for the server's state; how long it took (fails past ``bound``)."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    await wait_until(lambda: engine.backends["be"].balancer.slot(server).state is state, timeout=bound)
    return loop.time() - started


def server_stats(engine, server: str) -> dict:
    return engine.stats()["servers"][f"be/{server}"]


async def assert_cut(sock: socket.socket) -> None:
    """The proxy ended the connection without being asked: EOF (or a reset) and nothing else."""
    try:
        assert await recv_all(sock, timeout=5) == b""
    except ConnectionResetError:
        pass
    sock.close()


def served(engine, server: str) -> int:
    """Connections the server got, lanes' included (the pump's books)."""
    return server_stats(engine, server)["conn_total"]


@pytest.mark.timeout(180)
async def test_a_killed_backend_goes_down_and_clients_never_notice(pump_class):
    with echo_processes(2) as (procs, ports):
        async with running(checked(ports), pump_class) as engine:
            address = engine.listening_addresses()[0]
            assert await load(address, 200) == 0
            # Transfers in flight to s1 when it dies: those end (the proxy goes on).
            held = []
            for _ in range(6):
                sock = await connect(address)
                await asyncio.get_running_loop().sock_sendall(sock, b"x" * 1000)
                await recv_exactly(sock, 1000)
                held.append(sock)
            procs[0].send_signal(signal.SIGKILL)
            procs[0].wait()
            # Every connection made from the failure on succeeds, before and after detection.
            loaded = asyncio.ensure_future(load(address))
            took = await state_within(engine, "s1", ServerState.DOWN, 0.1 * 2 + SLACK)
            failures = await loaded
            assert failures == 0
            stats = server_stats(engine, "s1")
            assert stats["check_status"] == "L4CON"
            for sock in held:  # every connection that was on s1 ended; those on s2 still echo
                try:
                    await asyncio.get_running_loop().sock_sendall(sock, b"y")
                    data = await asyncio.wait_for(asyncio.get_running_loop().sock_recv(sock, 10), 5)
                    assert data in (b"y", b"")
                except OSError:
                    pass
                sock.close()
    assert took < 0.2 + SLACK


@pytest.mark.timeout(180)
async def test_a_refusing_backend_is_down_at_its_first_failure_and_retries_hide_it(pump_class):
    with echo_processes(1) as (_, ports):
        async with running(checked([closed_port(), ports[0]], inter=0.2), pump_class) as engine:
            loaded = asyncio.ensure_future(load(engine.listening_addresses()[0]))
            took = await state_within(engine, "s1", ServerState.DOWN, 0.2 + SLACK)
            assert await loaded == 0
            assert server_stats(engine, "s1")["check_status"] == "L4CON"
            assert server_stats(engine, "s2")["check_status"] == "L4OK"
    assert took < 0.2 + SLACK


def tcp_check(rules):
    return dict(tcp_check=True, tcp_check_rules=rules)


@pytest.mark.timeout(180)
async def test_a_silent_backend_times_out_its_check_then_gets_no_clients(pump_class):
    silent, silent_port = await start_backend(Answering(silent=True))
    answering, port = await start_backend(Answering(b"+OK\r\n"))
    cfg = checked([silent_port, port], inter=0.2, fall=2,
                  **tcp_check([TcpCheckRule("expect", match="string", pattern=b"+OK")]))
    cfg.backends["be"].timeouts.check = 0.3
    try:
        async with running(cfg, pump_class) as engine:
            # Up at start, down at the first failure: the first check ends at its 0.3 s timeout.
            await state_within(engine, "s1", ServerState.DOWN, 0.2 + 0.3 + SLACK)
            stats = server_stats(engine, "s1")
            assert stats["check_status"] == "L7TOUT" and 250 <= stats["check_duration_ms"] < 1500
            address = engine.listening_addresses()[0]
            # The check has settled: under round robin, half of 200 clients would reach s1 if it
            # were still placed (LOAD's thousands are for failures that happen under traffic).
            assert await load(address, 200, exchange=greeted_ping) == 0
    finally:
        silent.close()
        answering.close()


async def greeted_ping(address) -> bool:
    """A client of the greeting backends: reads "+OK\\r\\n", then checks the echo."""
    try:
        sock = await connect(address)
    except OSError:
        return False
    try:
        loop = asyncio.get_running_loop()
        if await recv_exactly(sock, 5) != b"+OK\r\n":
            return False
        await loop.sock_sendall(sock, b"ping")
        sock.shutdown(socket.SHUT_WR)
        return await recv_all(sock) == b"ping"
    except (OSError, asyncio.TimeoutError, EOFError):
        return False
    finally:
        sock.close()


@pytest.mark.timeout(180)
async def test_a_wrong_answer_takes_a_server_down_and_a_right_one_brings_it_back(pump_class):
    wrong = Answering(b"-ERR loading\r\n")
    first = await Flappable.started(wrong)
    answering, port = await start_backend(Answering(b"+OK\r\n"))
    rules = [TcpCheckRule("expect", match="string", pattern=b"+OK")]
    try:
        async with running(checked([first.port, port], inter=0.1, rise=2, fall=2, **tcp_check(rules)),
                           pump_class) as engine:
            await state_within(engine, "s1", ServerState.DOWN, 0.1 + SLACK)
            stats = server_stats(engine, "s1")
            assert stats["check_status"] == "L7RSP" and "did not match content '+OK'" in stats["check_info"]
            assert stats["health"] == "0/2 DOWN"
            address = engine.listening_addresses()[0]
            # The check has settled: under round robin, half of 200 clients would reach s1 if it
            # were still placed (LOAD's thousands are for failures that happen under traffic).
            assert await load(address, 200, exchange=greeted_ping) == 0
            wrong.greeting = b"+OK\r\n"  # the server recovers: rise checks bring it up
            took = await state_within(engine, "s1", ServerState.UP, 2 * 0.1 + SLACK)
            assert server_stats(engine, "s1")["check_status"] == "L7OK"
    finally:
        first.down()
        answering.close()
    assert took < 0.2 + SLACK


@pytest.mark.timeout(180)
async def test_a_flapping_backend_follows_its_checks_and_clients_never_notice(pump_class):
    # The server's health endpoint (its check ``port``) flaps while its traffic port keeps serving:
    # the state follows every flap within inter x fall, and clients see no failure.  (A traffic
    # listener that closes resets the connections queued in it, for HAProxy as for fastproxy: those
    # are established connections, which no retry can take back.)
    health = await Flappable.started()
    try:
        with echo_processes(2) as (_, ports):
            cfg = checked(ports, inter=0.1, rise=1, fall=1)
            cfg.backends["be"].servers[0].check_port = health.port
            async with running(cfg, pump_class) as engine:
                address = engine.listening_addresses()[0]
                loaded = asyncio.ensure_future(load(address))
                states = []
                for cycle in range(3):
                    health.down()
                    await state_within(engine, "s1", ServerState.DOWN, 0.1 + SLACK)
                    states.append("DOWN")
                    await asyncio.sleep(0.2)
                    await health.up()
                    await state_within(engine, "s1", ServerState.UP, 0.1 + SLACK)
                    states.append("UP")
                    await asyncio.sleep(0.2)
                failures = await loaded
                assert states == ["DOWN", "UP"] * 3
                assert server_stats(engine, "s1")["down_transitions"] == 3
                s1, s2 = (served(engine, name) for name in ("s1", "s2"))
                assert s1 and s2 > s1  # s1 served while up, and s2 alone while s1 was down
    finally:
        health.down()
    assert failures == 0


async def test_observed_connect_errors_mark_a_server_down_without_waiting_for_its_check(pump_class):
    with echo_processes(1) as (_, ports):
        cfg = checked([closed_port(), ports[0]], inter=30.0, server_fields=dict(
            observe="layer4", error_limit=3, on_error="mark-down"))
        cfg.backends["be"].servers[0].check = False  # traffic alone tells
        async with running(cfg, pump_class) as engine:
            address = engine.listening_addresses()[0]
            assert await load(address, 50, concurrency=1) == 0  # retries + redispatch hide the errors
            stats = server_stats(engine, "s1")
            assert stats["state"] == "DOWN" and stats["check_status"] == "HANA"
            assert "3 consecutive errors" in stats["check_info"]


async def test_established_connections_of_a_server_marked_down_are_cut_with_shutdown_sessions(pump_class):
    wrong = Answering(b"+OK\r\n")
    backend = await Flappable.started(wrong)
    rules = [TcpCheckRule("expect", match="string", pattern=b"+OK")]
    cfg = checked([backend.port], inter=0.1, fall=1, server_fields=dict(on_marked_down="shutdown-sessions"),
                  **tcp_check(rules))
    try:
        async with running(cfg, pump_class) as engine:
            loop = asyncio.get_running_loop()
            address = engine.listening_addresses()[0]
            held = [await connect(address) for _ in range(5)]
            for sock in held:
                assert await recv_exactly(sock, 5) == b"+OK\r\n"
                await loop.sock_sendall(sock, b"hi")
                assert await recv_exactly(sock, 2) == b"hi"
            wrong.greeting = b"-ERR\r\n"
            await state_within(engine, "s1", ServerState.DOWN, 0.1 + SLACK)
            for sock in held:
                await assert_cut(sock)
            await wait_until(lambda: engine.ended_by[EndReason.SERVER_DOWN] == 5)
    finally:
        backend.down()


async def test_backups_take_over_when_every_active_server_is_down_and_hand_back(pump_class):
    primary = await Flappable.started()
    try:
        with echo_processes(1) as (_, ports):
            cfg = checked([primary.port, ports[0]], inter=0.1, rise=1, fall=1,
                          server_fields=dict(on_marked_up="shutdown-backup-sessions"))
            cfg.backends["be"].servers[1].backup = True
            async with running(cfg, pump_class) as engine:
                address = engine.listening_addresses()[0]
                assert await load(address, 100) == 0
                assert served(engine, "s2") == 0  # the backup takes nothing while s1 is up
                primary.down()
                await state_within(engine, "s1", ServerState.DOWN, 0.1 + SLACK)
                assert await load(address, 100) == 0
                assert served(engine, "s2") == 100
                held = await connect(address)  # on the backup
                await asyncio.get_running_loop().sock_sendall(held, b"x")
                assert await recv_exactly(held, 1) == b"x"
                await primary.up()
                await state_within(engine, "s1", ServerState.UP, 0.1 + SLACK)
                await assert_cut(held)  # on-marked-up shutdown-backup-sessions
                before = served(engine, "s1")
                assert await load(address, 100) == 0
                assert served(engine, "s1") - before == 100
    finally:
        primary.down()


async def test_maintenance_stops_checks_and_leaving_it_checks_at_once(pump_class):
    backend = await Flappable.started()
    try:
        with echo_processes(1) as (_, ports):
            cfg = checked([backend.port, ports[0]], inter=0.2, rise=2, fall=2)
            async with running(cfg, pump_class) as engine:
                await asyncio.sleep(0.5)
                engine.set_server_state("be", "s1", "MAINT")
                backend.down()  # a check would fail now, but none runs in maintenance
                await asyncio.sleep(0.6)
                stats = server_stats(engine, "s1")
                assert stats["state"] == "MAINT" and stats["check_status"] == "L4OK"
                engine.set_server_state("be", "s1", "UP")
                # Up on leaving maintenance, checked at once: down at the first failure.
                took = await state_within(engine, "s1", ServerState.DOWN, SLACK)
                assert server_stats(engine, "s1")["check_status"] == "L4CON"
                engine.set_server_state("be", "s1", "DRAIN")
                await backend.up()
                await asyncio.sleep(2 * 0.2 + SLACK)  # checks go on while draining: healthy again,
                assert server_stats(engine, "s1")["health"] == "2/2 UP"
                assert engine.backends["be"].balancer.slot("s1").state is ServerState.DRAIN  # still draining
    finally:
        backend.down()
    assert took < SLACK


async def test_slowstart_ramps_a_returning_server_up_over_its_delay(pump_class):
    with echo_processes(2) as (_, ports):
        cfg = checked(ports, inter=5.0, server_fields=dict(slowstart=3.0))
        async with running(cfg, pump_class) as engine:
            balancer = engine.backends["be"].balancer
            address = engine.listening_addresses()[0]
            s2 = balancer.slot("s2")
            engine.set_server_state("be", "s2", "MAINT")
            engine.set_server_state("be", "s2", "UP")
            before = served(engine, "s2")
            assert await load(address, 320, concurrency=4) == 0
            early = (served(engine, "s2") - before) / 320
            assert s2.ramp is not None
            await asyncio.sleep(3.0 + SLACK + 0.5)
            assert s2.ramp is None
            before = served(engine, "s2")
            assert await load(address, 320, concurrency=4) == 0
            late = (served(engine, "s2") - before) / 320
    # Weights 1:1 in steps of 1/16: about 6% at first (a little more as the ramp moves on), 50% after.
    assert early < 0.25, early
    assert 0.4 < late < 0.6, late


async def test_first_checks_are_spread_over_the_interval_not_fired_at_once(pump_class):
    with listener() as sock:
        port = sock.getsockname()[1]
        cfg = checked([port] * 8, inter=2.0)
        async with running(cfg, pump_class) as engine:
            now = asyncio.get_running_loop().time()
            offsets = sorted(check.due - now for check in engine.health.checks.values())
    # HAProxy's start_checks(): the i-th of n servers starts at i/n of the smallest inter.
    assert len(offsets) == 8 and -0.1 < offsets[0] < 0.25 and 1.5 < offsets[-1] < 2.0
    assert all(later - earlier > 0.05 for earlier, later in zip(offsets, offsets[1:]))
