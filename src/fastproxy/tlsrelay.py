"""The relay of TLS pairs: a client whose bind terminates TLS (``bind ... ssl``), a server spoken to in
TLS (``server ... ssl``), or both, pumped in user space on the event loop, under either data plane.

The compiled pump moves descriptors' bytes without looking at them (splice, or recv/send with the GIL
released), and the kernel here has no kTLS, so TLS records are made and opened by Python's ``ssl``
(OpenSSL) where the bytes pass through Python anyway: the pure-Python twin's pairs (``_pump_py``).
``TlsRelay`` is that twin with a TLS layer between a side and its transport (``TlsLayer``: an
``SSLObject`` over memory BIOs, as asyncio's sslproto, but passing half-closes on: a FIN becomes a
``close_notify`` followed by the FIN, and the other direction keeps flowing), the server's handshake
done once connected (a failure is a failed connect: retried, redispatched or logged as one), and its
counters the engine's pump's, so stats, limits and logs count TLS pairs with the others.

``WithTls`` is the engine's pump when a configuration has TLS: the data plane for plain pairs, the
relay for pairs handed over with ``tls``; cuts, listings and stops reach both.  TLS pairs are not
handed to a new worker at a reload (a TLS session's state cannot move): they end where they are.
"""

from __future__ import annotations

import asyncio
import errno
import socket
import ssl
from typing import Any, Iterable, Optional

from ._pump_common import _U32, TIME_WINDOW, Counter, DetachedPair, PairInfo, Time
from ._pump_py import PyPump, _PyPair, _Side
from .tls import READ_SIZE, Endpoint, HandshakeError, handshake

TLS_FAILED = errno.ECONNABORTED  # the errno a failed server handshake is reported with, as a connect's


class TlsLayer(asyncio.Protocol):
    """TLS between a pair's side and its socket's transport: the transport's protocol, and the
    transport the side writes to."""

    def __init__(self, side: _Side, endpoint: Endpoint) -> None:
        self.side = side
        self.endpoint = endpoint
        self.raw: Optional[asyncio.Transport] = None
        self.closed_by_peer = False  # its close_notify (or FIN) came
        self.shut = False  # ours went

    # --- the protocol of the socket's transport ---------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.raw = transport  # type: ignore[assignment]
        self.side.connection_made(self)  # type: ignore[arg-type]
        self._decrypt()  # what came with the handshake's last reads

    def data_received(self, data: bytes) -> None:
        self.endpoint.incoming.write(data)
        self._decrypt()

    def _decrypt(self) -> None:
        obj, chunks, ended = self.endpoint.obj, [], False
        while True:
            try:
                chunk = obj.read(READ_SIZE)
            except ssl.SSLWantReadError:
                break
            except ssl.SSLZeroReturnError:  # close_notify: the peer's half-close
                ended = True
                break
            except ssl.SSLError:  # a record that does not decrypt: the connection is over (a reset)
                self._flush()  # our alert
                if self.raw is not None:
                    self.raw.abort()  # its connection_lost ends the side
                return
            if not chunk:
                ended = True
                break
            chunks.append(chunk)
        self._flush()  # what reading answered (TLS 1.3 key updates...)
        if chunks:
            self.side.data_received(b"".join(chunks))
        if ended:
            self._peer_closed()

    def eof_received(self) -> bool:
        self._peer_closed()  # a FIN without close_notify ends its side as well
        return True

    def _peer_closed(self) -> None:
        if not self.closed_by_peer:
            self.closed_by_peer = True
            self.side.eof_received()

    def connection_lost(self, exc: Optional[BaseException]) -> None:
        if self.endpoint.on_session is not None:
            self.endpoint.on_session(self.endpoint.obj)
        self.side.connection_lost(exc)

    def pause_writing(self) -> None:
        self.side.pause_writing()

    def resume_writing(self) -> None:
        self.side.resume_writing()

    # --- the transport the side writes to -----------------------------------------------------------

    def write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            written = self.endpoint.obj.write(view)
            view = view[written:]
        self._flush()

    def _flush(self) -> None:
        data = self.endpoint.outgoing.read()
        if data and self.raw is not None and not self.raw.is_closing():
            self.raw.write(data)

    def _close_notify(self) -> None:
        if self.shut:
            return
        self.shut = True
        try:
            self.endpoint.obj.unwrap()
        except ssl.SSLError:  # SSLWantReadError: ours is sent, the peer's is still to come
            pass
        self._flush()

    def write_eof(self) -> None:
        self._close_notify()
        if self.raw is not None and not self.raw.is_closing():
            self.raw.write_eof()

    def can_write_eof(self) -> bool:
        return True

    def close(self) -> None:
        self._close_notify()
        if self.raw is not None:
            self.raw.close()

    def abort(self) -> None:
        if self.raw is not None:
            self.raw.abort()

    def is_closing(self) -> bool:
        return self.raw is None or self.raw.is_closing()

    def pause_reading(self) -> None:
        if self.raw is not None:
            self.raw.pause_reading()

    def resume_reading(self) -> None:
        if self.raw is not None:
            self.raw.resume_reading()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self.raw.get_extra_info(name, default) if self.raw is not None else default

    def get_write_buffer_size(self) -> int:
        return self.raw.get_write_buffer_size() if self.raw is not None else 0

    def set_write_buffer_limits(self, high: Optional[int] = None, low: Optional[int] = None) -> None:
        if self.raw is not None:
            self.raw.set_write_buffer_limits(high=high, low=low)


class PairTls:
    """How one pair speaks TLS: the client's endpoint, handshaken already (``bind ... ssl``), and the
    server's TLS (``server ... ssl``) with the connection's own SNI, each None when that side is plain."""

    __slots__ = ("client", "server", "proxy_header")

    def __init__(self, client: Optional[Endpoint] = None, server: Optional[Endpoint] = None) -> None:
        self.client = client
        self.server = server
        self.proxy_header = b""  # a send-proxy header, sent in the clear before the server's handshake


class _TlsPair(_PyPair):
    __slots__ = ("tls",)
    tls: PairTls


class TlsRelay(PyPump):
    """The pure-Python pump with TLS on the sides that speak it, counting in ``counted_in``'s blocks."""

    def __init__(self, counted_in: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.counted_in = counted_in
        self._next_tls: Optional[PairTls] = None

    def add_tls_pair(self, client_fd: int, server_fd: int, tls: PairTls, **kwargs: Any) -> int:
        if tls.server is not None and kwargs.get("prefix"):  # HAProxy's PROXY header precedes TLS
            tls.proxy_header, kwargs["prefix"] = kwargs["prefix"], None
        self._next_tls = tls
        try:
            return self.add_pair(client_fd, server_fd, **kwargs)
        finally:
            self._next_tls = None

    def _new_pair(self, tag: int, timeouts: tuple, frontend_block: int, server_block: int,
                  backend_block: int) -> _PyPair:
        pair = _TlsPair(self, tag, timeouts, frontend_block, server_block, backend_block)
        pair.tls = self._next_tls or PairTls()
        return pair

    async def _established(self, pair: _PyPair, server_sock: socket.socket) -> int:
        endpoint = pair.tls.server  # type: ignore[attr-defined]
        if endpoint is None:
            return 0
        remaining = pair.connect_timeout - (self.loop.time() - pair.dialed) if pair.connect_timeout else None
        header = pair.tls.proxy_header  # type: ignore[attr-defined]
        try:
            if header:
                await self.loop.sock_sendall(server_sock, header)
                pair.bytes_in += len(header)
                self.count(pair.frontend_block, Counter.BYTES_IN, len(header))
                self.count(pair.server_block, Counter.BYTES_IN, len(header))
            await handshake(server_sock, endpoint, max(remaining, 0.001) if remaining is not None else None)
        except (HandshakeError, OSError):
            return TLS_FAILED
        return 0

    def _protocol(self, side: _Side) -> asyncio.Protocol:
        tls: PairTls = side.pair.tls  # type: ignore[attr-defined]
        endpoint = tls.client if side.is_client else tls.server
        return side if endpoint is None else TlsLayer(side, endpoint)

    def count(self, block: int, field: int, value: int) -> None:
        if block >= 0:
            self.counted_in.add_counter(block, field, value)


class WithTls:
    """The engine's pump for a configuration with TLS: ``plain`` (the data plane) and a ``TlsRelay``
    counting in its blocks; ``add_pair(..., tls=PairTls)`` goes to the relay."""

    def __init__(self, plain: Any, **kwargs: Any) -> None:
        self.plain = plain
        self.relay = TlsRelay(plain, **kwargs)

    def __getattr__(self, name: str) -> Any:  # counters, lanes, stick tables...: the data plane's
        return getattr(self.plain, name)

    def start(self, loop: Any = None) -> None:
        self.plain.start(loop)
        self.relay.start(loop)

    def add_pair(self, client_fd: int, server_fd: int, *, tls: Optional[PairTls] = None,
                 **kwargs: Any) -> int:
        if tls is None:
            return int(self.plain.add_pair(client_fd, server_fd, **kwargs))
        return self.relay.add_tls_pair(client_fd, server_fd, tls, **kwargs)

    def detach(self, tags: Iterable[int]) -> list[DetachedPair]:
        return list(self.plain.detach(tags))

    def cut(self) -> None:
        self.plain.cut()
        self.relay.cut()

    def cut_server(self, block: int) -> None:
        self.plain.cut_server(block)
        self.relay.cut_server(block)

    def cut_pair(self, tag: int) -> None:
        self.plain.cut_pair(tag)
        self.relay.cut_pair(tag)

    def stop(self) -> None:
        self.plain.stop()
        self.relay.stop()

    @property
    def active(self) -> int:
        return int(self.plain.active) + self.relay.active

    def connections(self) -> list[tuple[int, int, int, bool]]:
        return list(self.plain.connections()) + self.relay.connections()

    def pairs(self) -> list[PairInfo]:
        return list(self.plain.pairs()) + self.relay.pairs()

    def times(self, block: int) -> tuple[int, ...]:
        """The block's session times over both: the sliding sums and sample counts added, the maxima
        the larger (exact while either has fewer than TIME_WINDOW samples, close past it)."""
        plain, relay = tuple(self.plain.times(block)), self.relay.times(block)
        if not relay[Time.SAMPLES] or not plain[Time.SAMPLES]:
            return relay if relay[Time.SAMPLES] else plain
        maxima = (Time.QUEUE_MAX, Time.CONNECT_MAX, Time.TOTAL_MAX)
        return tuple(max(a, b) if field in maxima else min(a + b, _U32) if field != Time.SAMPLES
                     else min(a + b, TIME_WINDOW + 1) for field, (a, b) in enumerate(zip(plain, relay)))

    def clear_times(self, block: int) -> None:
        self.plain.clear_times(block)
        self.relay.clear_times(block)
