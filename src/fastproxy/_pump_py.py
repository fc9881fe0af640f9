"""The pure-Python twin of the compiled pump (``fastproxy._pump.Pump``): ``PyPump``.

It keeps the contract written in ``fastproxy.pump.PumpProtocol`` for pairs (bytes both ways, half-close
and reset passed on, idle and fin timeouts, connects in progress, cuts, counter blocks) on the asyncio
event loop with transports (uvloop's when it is the loop): simpler and slower, with the same observable
behaviour, tested by the same suite (tests/test_pump.py drives both).  It has no worker threads
(``threads`` is accepted and ignored) and no lanes (``lanes`` is None): every connection goes through
Python.  Reach it through ``fastproxy.pump`` (``PyPump``, or ``Pump`` with FASTPROXY_NO_EXTENSIONS=1);
this module is laid out as multidict's ``_multidict_py.py``, with what both pumps share in
``_pump_common.py``.
"""

from __future__ import annotations

import asyncio
import errno
import os
import socket
import time
from typing import Callable, Iterable, Optional

from . import _linux
from .config import model
from .sticktables import StickTable
from ._pump_common import (COUNTER_FIELDS, TIME_FIELDS, Counter, DetachedPair, EndReason, OnConnectFailed,
                           OnLaneEnded, OnLaneHandBack, OnPairEnded, PairInfo, fold_times)



class _Side(asyncio.Protocol):
    """One socket of a pair, as an asyncio protocol; bytes it receives go to its peer."""

    __slots__ = ("pair", "is_client", "peer", "transport", "seen", "eof", "lost", "early")

    def __init__(self, pair: "_PyPair", is_client: bool) -> None:
        self.pair = pair
        self.is_client = is_client
        self.peer: _Side
        self.transport: Optional[asyncio.Transport] = None
        self.seen = 0.0  # time.monotonic() of its last bytes (see PyPump.arm)
        self.eof = False  # a FIN came from this side
        self.lost = False
        self.early: list[bytes] = []  # read before the peer's transport existed

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        # What the peer read before this side existed goes first (uvloop starts reading a transport
        # after connection_made, so the first side may receive before the second is made).
        peer = self.peer
        if peer.transport is not None:
            for data in peer.early:
                transport.write(data)  # type: ignore[attr-defined]
            peer.early.clear()
            if peer.eof:
                transport.write_eof()  # type: ignore[attr-defined]
            else:
                peer.transport.resume_reading()
        # One buffer in flight per direction, as in the compiled pump: past it, stop reading the peer.
        transport.set_write_buffer_limits(high=self.pair.pump.bufsize)  # type: ignore[attr-defined]

    def data_received(self, data: bytes) -> None:
        self.pair.forward(self, data)

    def eof_received(self) -> bool:
        self.pair.half_closed(self)
        return True  # keep the other direction open

    def connection_lost(self, exc: Optional[BaseException]) -> None:
        self.lost = True
        self.pair.side_lost(self, exc)

    def pause_writing(self) -> None:
        if self.peer.transport is not None:
            self.peer.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.peer.transport is not None and not self.peer.eof:
            self.peer.transport.resume_reading()


class _PyPair:
    __slots__ = (
        "pump", "tag", "client", "server", "bytes_in", "bytes_out", "ended", "timeouts",
        "frontend_block", "server_block", "established", "backend_block", "fds", "accepted", "dialed",
        "connect_time", "connect_timeout", "timer", "timer_due",
    )

    def __init__(self, pump: "PyPump", tag: int, timeouts: tuple, frontend_block: int,
                 server_block: int, backend_block: int = -1) -> None:
        self.pump = pump
        self.tag = tag
        self.timeouts = timeouts  # client, server, client_fin, server_fin; seconds, 0 for none
        self.frontend_block = frontend_block
        self.server_block = server_block
        self.backend_block = backend_block
        self.fds = (-1, -1)  # client, server
        self.accepted = self.dialed = 0.0  # loop times: the client's accept, the connect's start
        self.connect_time = 0.0
        self.connect_timeout = 0.0
        self.client = _Side(self, True)
        self.server = _Side(self, False)
        self.client.peer = self.server
        self.server.peer = self.client
        self.bytes_in = 0
        self.bytes_out = 0
        self.ended = False
        self.established = False
        self.timer: Optional[asyncio.TimerHandle] = None  # one per pair, at its deadline or before
        self.timer_due = 0.0

    def limits(self) -> tuple[float, float]:
        """The client side's and the server side's idle limits now (0: none): the fin ones, when set,
        once a direction is half-closed."""
        client_limit, server_limit, client_fin, server_fin = self.timeouts
        if self.client.eof or self.server.eof:
            return client_fin or client_limit, server_fin or server_limit
        return client_limit, server_limit

    def due(self) -> Optional[float]:
        """When the pair's idle timeout falls due on the loop clock as things stand (None: never);
        a connect in progress has its own (PyPump._connected)."""
        if not self.established:
            return None
        client_limit, server_limit = self.limits()
        dues = [seen + limit for seen, limit in ((self.client.seen, client_limit),
                                                 (self.server.seen, server_limit)) if limit]
        return min(dues) if dues else None

    def forward(self, src: _Side, data: bytes) -> None:
        dst = src.peer
        if dst.transport is None:
            src.early.append(data)
            src.transport.pause_reading()  # type: ignore[union-attr]
        elif dst.transport.is_closing():
            return
        else:
            dst.transport.write(data)
        src.seen = dst.seen = time.monotonic()
        field = Counter.BYTES_IN if src.is_client else Counter.BYTES_OUT
        if src.is_client:
            self.bytes_in += len(data)
        else:
            self.bytes_out += len(data)
        self.pump.count(self.frontend_block, field, len(data))
        self.pump.count(self.server_block, field, len(data))

    def half_closed(self, src: _Side) -> None:
        src.eof = True
        self.pump.arm(self)  # a fin timeout may come sooner than the idle one
        dst = src.peer
        if dst.transport is None:
            return  # passed on when the peer's transport is made
        if dst.transport is not None and not dst.transport.is_closing() and dst.transport.can_write_eof():
            dst.transport.write_eof()
        if src.peer.eof:
            self.end(EndReason.CLOSED)

    def side_lost(self, side: _Side, exc: Optional[BaseException]) -> None:
        if self.ended:
            return
        if exc is None and side.eof and side.peer.eof:
            self.end(EndReason.CLOSED)
        elif side.is_client:
            self.end(EndReason.CLIENT_RESET)
        else:
            self.end(EndReason.SERVER_RESET)

    def end(self, reason: EndReason) -> None:
        if self.ended:
            return
        self.ended = True
        for side in (self.client, self.server):
            transport = side.transport
            if transport is None or side.lost:
                continue
            if reason is EndReason.CLOSED:
                transport.close()  # both FINs were passed on: flush and close
                continue
            failed_side_is_client = reason in (EndReason.CLIENT_RESET,)
            if reason in (EndReason.CLIENT_RESET, EndReason.SERVER_RESET) and (
                side.is_client != failed_side_is_client
            ):
                # A reset is passed on as a reset, never as a clean FIN.
                sock = transport.get_extra_info("socket")
                if sock is not None and sock.fileno() >= 0:
                    _linux.set_linger0(sock.fileno())
            transport.abort()
        self.pump.finished(self, reason)


class PyPump:
    """The pure-Python twin of ``fastproxy._pump.Pump``: same interface, same behaviour."""

    def __init__(self, *, threads: int = 1, bufsize: int = 16384, pipesize: Optional[int] = None,
                 maxpipes: int = 0, splice: bool = True, counter_blocks: int = 64,
                 on_pair_ended: Optional[OnPairEnded] = None,
                 on_connect_failed: Optional[OnConnectFailed] = None,
                 on_lane_hand_back: Optional[OnLaneHandBack] = None,
                 on_lane_ended: Optional[OnLaneEnded] = None) -> None:
        if threads < 1:
            raise ValueError("threads must be at least 1")
        if bufsize < 1024:
            raise ValueError("bufsize must be at least 1024 bytes")
        self.bufsize = bufsize
        self._on_pair_ended = on_pair_ended
        self._on_connect_failed = on_connect_failed  # (the lanes' callbacks are accepted, never called)
        self._counter_blocks = counter_blocks
        self._counters = [0] * (max(counter_blocks, 1) * COUNTER_FIELDS)
        self._times = [0] * (max(counter_blocks, 1) * TIME_FIELDS)
        self._pairs: set[_PyPair] = set()
        self._started = False
        self._stopped = False
        self.loop: asyncio.AbstractEventLoop

    notify_fd = None
    lanes = None  # no lanes: every connection goes through Python
    threads = 1
    pipes_in_use = 0

    def start(self, loop: Optional[asyncio.AbstractEventLoop] = None) -> None:
        if self._started:
            raise RuntimeError("pump already started")
        self._started = True
        self.loop = loop or asyncio.get_event_loop()

    def add_pair(self, client_fd: int, server_fd: int, *, client_timeout: Optional[float] = None,
                 server_timeout: Optional[float] = None, client_fin_timeout: Optional[float] = None,
                 server_fin_timeout: Optional[float] = None, frontend_block: int = -1,
                 server_block: int = -1, tag: int = 0, connecting: bool = False,
                 connect_timeout: Optional[float] = None, prefix: Optional[bytes] = None,
                 backend_block: int = -1, waited: float = 0.0) -> int:
        if not self._started or self._stopped:
            raise RuntimeError("pump is not running")
        if prefix and len(prefix) > self.bufsize:
            raise ValueError("prefix larger than the buffer size")
        timeouts = tuple(t if t and t > 0 else 0 for t in
                         (client_timeout, server_timeout, client_fin_timeout, server_fin_timeout))
        pair = self._new_pair(tag, timeouts, frontend_block, server_block, backend_block)
        pair.fds = (client_fd, server_fd)
        pair.dialed = self.loop.time()
        pair.accepted = pair.dialed - max(waited, 0.0)
        pair.connect_timeout = connect_timeout or 0.0
        if prefix:
            pair.client.early.append(prefix)  # written to the server first, as it connects
            pair.bytes_in += len(prefix)
            self.count(frontend_block, Counter.BYTES_IN, len(prefix))
            self.count(server_block, Counter.BYTES_IN, len(prefix))
        pair.client.seen = pair.server.seen = time.monotonic()
        self._pairs.add(pair)
        client_sock = socket.socket(fileno=client_fd)
        server_sock = socket.socket(fileno=server_fd)
        self.loop.create_task(self._register(pair, client_sock, server_sock, connecting, connect_timeout))
        return 0

    def _new_pair(self, tag: int, timeouts: tuple, frontend_block: int, server_block: int,
                  backend_block: int) -> _PyPair:
        return _PyPair(self, tag, timeouts, frontend_block, server_block, backend_block)

    def detach(self, tags: Iterable[int]) -> list[DetachedPair]:
        """As the compiled pump's, at the clean point the twin has: a pair moves once neither transport
        holds bytes to write (their contents cannot be taken out), so both its reads are paused first
        and a pair not yet clean is left for a next call (its reads resume if none comes)."""
        wanted = {tag for tag in tags if tag}
        result: list[DetachedPair] = []
        now, clock = self.loop.time(), time.monotonic()
        for pair in list(self._pairs):
            if pair.tag not in wanted or not pair.established or pair.ended:
                continue
            client, server = pair.client.transport, pair.server.transport
            if (client is None or server is None or pair.client.lost or pair.server.lost
                    or client.is_closing() or server.is_closing()):
                continue
            client.pause_reading()
            server.pause_reading()
            if client.get_write_buffer_size() or server.get_write_buffer_size():
                self.loop.call_later(self.RESUME_AFTER, self._resume_left, pair)
                continue
            fds = [os.dup(transport.get_extra_info("socket").fileno()) for transport in (client, server)]
            connect_timeout = pair.connect_timeout
            result.append(DetachedPair(
                pair.tag, fds[0], fds[1], pair.frontend_block, pair.backend_block, pair.server_block, b"",
                tuple(_ms(t) for t in (*pair.timeouts, connect_timeout)),  # type: ignore[arg-type]
                _ms(clock - pair.client.seen), _ms(clock - pair.server.seen), _ms(now - pair.accepted),
                _ms(pair.dialed - pair.accepted), _ms(pair.connect_time), pair.bytes_in, pair.bytes_out,
                pair.client.eof, pair.client.eof, pair.server.eof, pair.server.eof, b"", b""))
            pair.ended = True  # silently: it goes on elsewhere
            self._pairs.discard(pair)
            if pair.timer is not None:
                pair.timer.cancel()
                pair.timer = None
            self.count(pair.server_block, Counter.CONN_CUR, -1)
            client.abort()  # closes this process's descriptors only: the duplicates keep the connections
            server.abort()
        return result

    RESUME_AFTER = 0.25  # seconds a pair paused for a detach waits for the next call

    def _resume_left(self, pair: _PyPair) -> None:
        if pair.ended:
            return
        for side in (pair.client, pair.server):
            transport = side.transport
            if (transport is not None and not side.eof and not transport.is_closing()
                    and side.peer.transport is not None
                    and side.peer.transport.get_write_buffer_size() <= self.bufsize):
                transport.resume_reading()

    def adopt(self, pair: DetachedPair, *, tag: int = 0) -> int:
        """As the compiled pump's: the pair goes on from where it stood."""
        if not self._started or self._stopped:
            raise RuntimeError("pump is not running")
        client_ms, server_ms, client_fin_ms, server_fin_ms, connect_ms = pair.timeouts_ms
        seconds = tuple(t / 1000 for t in (client_ms, server_ms, client_fin_ms, server_fin_ms))
        adopted = _PyPair(self, tag, seconds,
                          pair.frontend_block, pair.server_block, pair.backend_block)
        now = self.loop.time()
        adopted.fds = (pair.client_fd, pair.server_fd)
        adopted.accepted = now - pair.age_ms / 1000
        adopted.dialed = adopted.accepted + pair.queue_ms / 1000
        adopted.connect_time = pair.connect_ms / 1000
        adopted.connect_timeout = connect_ms / 1000
        adopted.bytes_in, adopted.bytes_out = pair.bytes_in, pair.bytes_out
        if pair.pending_in:  # to the server first, as it is registered
            adopted.client.early.append(pair.pending_in)
            adopted.bytes_in += len(pair.pending_in)
            self.count(pair.frontend_block, Counter.BYTES_IN, len(pair.pending_in))
            self.count(pair.server_block, Counter.BYTES_IN, len(pair.pending_in))
        adopted.client.eof, adopted.server.eof = pair.in_eof, pair.out_eof
        self._pairs.add(adopted)
        self.loop.create_task(self._register_adopted(adopted, pair))
        return 0

    async def _register_adopted(self, pair: _PyPair, carried: DetachedPair) -> None:
        client_sock = socket.socket(fileno=carried.client_fd)
        server_sock = socket.socket(fileno=carried.server_fd)
        self.count(pair.server_block, Counter.CONN_CUR, 1)  # open here; its former pump counted it as new
        pair.established = True
        clock = time.monotonic()
        pair.client.seen = clock - carried.client_idle_ms / 1000
        pair.server.seen = clock - carried.server_idle_ms / 1000
        self.arm(pair)  # its timeouts go on from where they stood

        def write_pending_out(client: asyncio.Transport) -> None:
            if carried.pending_out:  # before anything of the server's
                client.write(carried.pending_out)
                pair.bytes_out += len(carried.pending_out)
                self.count(pair.frontend_block, Counter.BYTES_OUT, len(carried.pending_out))
                self.count(pair.server_block, Counter.BYTES_OUT, len(carried.pending_out))
            if carried.out_eof and not carried.out_shut:
                client.write_eof()
        await self._open_transports(pair, client_sock, server_sock, write_pending_out)

    async def _connected(self, sock: socket.socket, timeout: Optional[float]) -> int:
        """Wait for a connect in progress to end; its errno (0: connected)."""
        ready: asyncio.Future[None] = self.loop.create_future()
        fd = sock.fileno()

        def writable() -> None:
            if not ready.done():
                ready.set_result(None)
        self.loop.add_writer(fd, writable)
        try:
            await asyncio.wait_for(ready, timeout if timeout and timeout > 0 else None)
        except asyncio.TimeoutError:
            return errno.ETIMEDOUT
        finally:
            self.loop.remove_writer(fd)
        return sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)

    async def _register(self, pair: _PyPair, client_sock: socket.socket, server_sock: socket.socket,
                        connecting: bool, connect_timeout: Optional[float]) -> None:
        error = await self._connected(server_sock, connect_timeout) if connecting else 0
        if not error and not pair.ended:
            error = await self._established(pair, server_sock)  # fails as a connect would
        if error:
            server_sock.close()
            client_fd = client_sock.detach()  # the client is Python's again
            pair.ended = True
            self._pairs.discard(pair)
            if self._on_connect_failed is not None:
                self.loop.call_soon(self._on_connect_failed, pair.tag, error, client_fd)
            return
        if pair.ended:  # cut while connecting
            client_sock.close()
            server_sock.close()
            return
        self.count(pair.server_block, Counter.CONN_CUR, 1)
        self.count(pair.server_block, Counter.CONN_TOTAL, 1)
        pair.established = True
        now = self.loop.time()
        pair.client.seen = pair.server.seen = time.monotonic()
        pair.connect_time = now - pair.dialed
        self.arm(pair)
        await self._open_transports(pair, client_sock, server_sock)

    async def _established(self, pair: _PyPair, server_sock: socket.socket) -> int:
        """What a connected server socket needs before the pair is pumped (the TLS relay's handshake);
        an errno to fail the pair as a connect would, or 0."""
        return 0

    def _protocol(self, side: _Side) -> asyncio.Protocol:
        """The protocol of a side's transport: the side itself (the TLS relay puts TLS between)."""
        return side

    async def _open_transports(self, pair: _PyPair, client_sock: socket.socket, server_sock: socket.socket,
                               client_opened: Optional[Callable[[asyncio.Transport], None]] = None) -> None:
        """Both sides' transports, the client's first (``client_opened`` is called with it before the
        server's exists); the pair ends if they cannot be made, or was cut meanwhile."""
        try:
            await self.loop.connect_accepted_socket(lambda: self._protocol(pair.client), client_sock)
            if client_opened is not None:
                assert pair.client.transport is not None
                client_opened(pair.client.transport)
            await self.loop.connect_accepted_socket(lambda: self._protocol(pair.server), server_sock)
        except (OSError, RuntimeError):
            client_sock.close()
            server_sock.close()
            pair.end(EndReason.ERROR)
            return
        if pair.ended:  # cut while registering
            pair.ended = False
            pair.end(EndReason.SHUTDOWN)

    def finished(self, pair: _PyPair, reason: EndReason) -> None:
        self._pairs.discard(pair)
        if pair.timer is not None:
            pair.timer.cancel()
            pair.timer = None
        if pair.established:
            self.count(pair.server_block, Counter.CONN_CUR, -1)
            queue = _ms(pair.dialed - pair.accepted)
            connect, total = _ms(pair.connect_time), _ms(self.loop.time() - pair.accepted)
            for block in (pair.server_block, pair.backend_block):
                if 0 <= block < self._counter_blocks:
                    fold_times(self._times, block * TIME_FIELDS, queue, connect, total)
        if reason in (EndReason.CLIENT_RESET, EndReason.SERVER_RESET):
            self.count(pair.frontend_block, Counter.RESETS, 1)
            self.count(pair.server_block, Counter.RESETS, 1)
        elif reason in (EndReason.CLIENT_TIMEOUT, EndReason.SERVER_TIMEOUT):
            self.count(pair.frontend_block, Counter.TIMEOUTS, 1)
            self.count(pair.server_block, Counter.TIMEOUTS, 1)
        if self._on_pair_ended is not None:
            # Reported from the loop, never from inside the pump's own call stack, as the compiled one does.
            self.loop.call_soon(self._on_pair_ended, pair.tag, int(reason), pair.bytes_in, pair.bytes_out)

    # Timeouts: one loop timer per pair (asyncio's heap, libuv's under uvloop: O(log n) each), armed
    # lazily as in the compiled pump's wheel: traffic only moves a deadline later, so it never touches
    # the timer; when the timer fires the deadline is computed again and the pair ends or waits anew.
    # Only a deadline that comes closer (a half-close with a shorter fin timeout) re-arms at once.
    # Deadlines are on time.monotonic(): uvloop's loop.time() is the millisecond its iteration began,
    # which would date traffic early and end pairs before their time.

    def arm(self, pair: _PyPair) -> None:
        """Set the pair's timer for its deadline, unless it is set for that deadline or before."""
        due = pair.due()
        if pair.ended or due is None:
            return
        if pair.timer is not None:
            if pair.timer_due <= due:
                return
            pair.timer.cancel()
        pair.timer = self.loop.call_later(max(due - time.monotonic(), 0.0), self._expired, pair)
        pair.timer_due = due

    def _expired(self, pair: _PyPair) -> None:
        pair.timer = None
        due = pair.due()
        if pair.ended or due is None:
            return
        now = time.monotonic()
        if due > now:  # early: libuv rounds its timers to the millisecond
            self.arm(pair)
            return
        client_limit, _ = pair.limits()
        if client_limit and now - pair.client.seen >= client_limit:
            pair.end(EndReason.CLIENT_TIMEOUT)
        else:
            pair.end(EndReason.SERVER_TIMEOUT)

    def cut(self) -> None:
        for pair in list(self._pairs):
            pair.end(EndReason.SHUTDOWN)

    def cut_pair(self, tag: int) -> None:
        """End the pair of ``tag`` (reason SHUTDOWN), if there is one."""
        for pair in list(self._pairs):
            if pair.tag == tag and tag:
                pair.end(EndReason.SHUTDOWN)

    def cut_server(self, block: int) -> None:
        """End every pair of the server counted in ``block`` (reason SERVER_DOWN)."""
        for pair in list(self._pairs):
            if pair.server_block == block and block >= 0:
                pair.end(EndReason.SERVER_DOWN)

    def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        self.cut()

    @property
    def active(self) -> int:
        return len(self._pairs)

    @property
    def loads(self) -> tuple[int, ...]:
        """Pairs per worker: the twin has one (the event loop)."""
        return (len(self._pairs),)

    def connections(self) -> list[tuple[int, int, int, bool]]:
        return [(p.tag, p.bytes_in, p.bytes_out, not p.established) for p in self._pairs]

    def pairs(self) -> list[PairInfo]:
        now, clock = self.loop.time(), time.monotonic()
        return [self._info(pair, now, clock) for pair in self._pairs]

    def _info(self, pair: _PyPair, now: float, clock: float) -> PairInfo:
        client_left = server_left = -1
        if not pair.established:
            if pair.connect_timeout:
                server_left = max(_ms(pair.connect_timeout - (now - pair.dialed)), 0)
        else:
            client_limit, server_limit = pair.limits()
            if client_limit:
                client_left = max(_ms(client_limit - (clock - pair.client.seen)), 0)
            if server_limit:
                server_left = max(_ms(server_limit - (clock - pair.server.seen)), 0)
        pending = [_buffered(side.peer) + sum(map(len, side.early)) for side in (pair.client, pair.server)]
        return PairInfo(pair.tag, 0, pair.frontend_block, pair.backend_block, pair.server_block, pair.fds[0],
                        pair.fds[1], pair.bytes_in, pair.bytes_out, not pair.established,
                        _ms(now - pair.accepted), client_left, server_left, pending[0], pending[1], b"")

    def drain_ended(self) -> int:
        return 0

    def count(self, block: int, field: int, value: int) -> None:
        if 0 <= block < self._counter_blocks:
            self._counters[block * COUNTER_FIELDS + field] += value

    def counters(self, block: int) -> tuple[int, ...]:
        if not 0 <= block < self._counter_blocks:
            raise IndexError(block)
        start = block * COUNTER_FIELDS
        return tuple(self._counters[start:start + COUNTER_FIELDS])

    def add_counter(self, block: int, field: int, delta: int) -> None:
        if not 0 <= block < self._counter_blocks or not 0 <= field < COUNTER_FIELDS:
            raise IndexError((block, field))
        self._counters[block * COUNTER_FIELDS + field] += delta

    def stick_table(self, spec: model.StickTable) -> StickTable:
        """The twin keeps no table itself: the sans-IO one, which its Python path tracks in."""
        return StickTable(spec)

    def times(self, block: int) -> tuple[int, ...]:
        if not 0 <= block < self._counter_blocks:
            raise IndexError(block)
        return tuple(self._times[block * TIME_FIELDS:(block + 1) * TIME_FIELDS])

    def clear_times(self, block: int) -> None:
        if not 0 <= block < self._counter_blocks:
            raise IndexError(block)
        self._times[block * TIME_FIELDS:(block + 1) * TIME_FIELDS] = [0] * TIME_FIELDS


def _ms(seconds: float) -> int:
    return max(int(seconds * 1000), 0)


def _buffered(side: _Side) -> int:
    """Bytes written to ``side``'s transport and not yet sent."""
    transport = side.transport
    return transport.get_write_buffer_size() if transport is not None and not transport.is_closing() else 0
