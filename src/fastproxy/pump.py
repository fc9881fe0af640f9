"""The data plane's public face: ``Pump``, ``EndReason``, ``Counter`` and the contract, ``PumpProtocol``.

``Pump`` is the compiled epoll/splice pump of ``_pump.pyx`` (``CPump``) when it can be imported, and its
pure-Python twin ``PyPump`` (``_pump_py.py``) otherwise, or with FASTPROXY_NO_EXTENSIONS=1.  Both
satisfy ``PumpProtocol``: they take a connected (client, server) pair of descriptors with ``add_pair``
and from then on own them: they move bytes both ways, pass half-closes and resets on, apply the idle
and half-closed timeouts, close both sockets, and report the end.  What happens before a pair exists
(accepting, balancing, dialing, retrying) is the engine's, except on lanes (``Pump.lanes``, described
by a ``LaneSpec``), which only the compiled pump has: the twin's ``lanes`` is None.
tests/test_pump.py is the contract as tests, run on both.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterable, Optional, Protocol, Sequence

from ._impl import load_extension
from ._pump_common import (COUNTER_FIELDS, DEFAULT_PIPESIZE, TIME_FIELDS, TIME_WINDOW, Counter, DetachedPair,
                           EndReason, OnConnectFailed, OnLaneEnded, OnLaneHandBack, OnPairEnded, PairInfo,
                           Time, default_pipesize, default_threads)
from ._pump_py import PyPump

__all__ = ["COMPILED", "COUNTER_FIELDS", "CPump", "Counter", "DEFAULT_PIPESIZE", "DetachedPair", "EndReason",
           "LaneRule", "LaneSpec",
           "OnConnectFailed", "OnLaneEnded", "OnLaneHandBack", "OnPairEnded", "PairInfo", "Pump",
           "PumpProtocol", "PyPump", "TIME_FIELDS", "TIME_WINDOW", "Time", "Timeouts", "default_pipesize",
           "default_threads"]


class Timeouts(Protocol):
    """The timeouts of a pair, in seconds (None or 0: none); ``runtime.PairTimeouts`` is one."""

    @property
    def client(self) -> Optional[float]: ...
    @property
    def server(self) -> Optional[float]: ...
    @property
    def client_fin(self) -> Optional[float]: ...
    @property
    def server_fin(self) -> Optional[float]: ...
    @property
    def connect(self) -> Optional[float]: ...


@dataclass(frozen=True)
class LaneRule:
    """One ``tcp-request connection`` rule a lane runs at accept (``lanes.lane_rules`` compiles them):
    ``track`` (``track-sc<counter> src`` in ``table``), or ``reject`` / ``accept`` (which end the
    rules) when their test holds, or does not with ``negate``: the ``data`` (conn_cur, conn_cnt or
    conn_rate) of the entry counter ``counter`` tracks (``scope`` "sc") or of the client's entry in
    ``table`` (``scope`` "src") within [low, high]; the client's address in one of ``networks``
    (``scope`` "address": 16-byte IPv6 addresses, IPv4 mapped, with their prefix lengths); always
    (``scope`` "always").  ``table`` is the ``counters`` of a table the pump keeps."""

    kind: str  # "track" | "reject" | "accept"
    counter: int = 0
    table: Any = None
    scope: str = "always"
    data: str = ""
    low: int = -(1 << 63)
    high: int = (1 << 63) - 1
    negate: bool = False
    networks: tuple[tuple[bytes, int], ...] = ()


@dataclass(frozen=True)
class LaneSpec:
    """One lane, as ``Pump.lanes.add`` takes it: a listener the compiled pump accepts on itself, the
    servers it dials, how it picks them, and where it logs."""

    listen_fd: int  # stays open, and the caller's, until ``lanes.remove`` returns
    frontend_block: int
    servers: Sequence[tuple[bytes, int, int]]  # (raw sockaddr, counter block, weight), in balancer order
    timeouts: Timeouts  # of the pairs it makes
    client_tcp: Optional[tuple[int, int, int, int]] = None  # keepalive, idle, interval, count; None:
    #                                                         what the accepted sockets inherit
    server_tcp: tuple[int, int, int, int] = (1, 0, 0, 0)
    maxconn: int = 0  # clients of this lane open at once (0: no limit of its own)
    hashing: Optional[str] = None  # None: smooth weighted round robin; "map" or "table": the client
    #                                address hashed, on what ``lanes.set_picks`` gives
    hash_seed: int = 0
    log_ends: bool = False  # a tcplog line per ended pair (option tcplog)
    log_connect: bool = False  # HAProxy's "Connect from" line at each accept (log without tcplog)
    log_sinks: Optional[Sequence[tuple[int, bool, int, int, bytes]]] = None  # where the lane writes
    #   its lines itself: (fd, stream, format 0 rfc3164 / 1 raw / 2 short, length, b"<PRI>"); None:
    #   each ended pair is reported to ``on_lane_ended`` instead
    log_frontend: str = ""
    log_servers: Sequence[str] = ()  # the servers' names, one per server (%s)
    log_dontlognull: bool = False
    log_program: Optional[bytes] = None  # the log line's format, as ``logformat.lane_program`` makes it
    log_needs: int = 0  # LOG_NEEDS_FRONTEND | LOG_NEEDS_BACKEND: the addresses the format reads
    backend_block: int = -1  # where the session times of its pairs are folded besides each server's
    disabled: bool = False  # accepts nobody before ``lanes.set_enabled`` (clients wait in the backlog)
    rules: Sequence[LaneRule] = ()  # its tcp-request connection rules, run at accept


LOG_NEEDS_FRONTEND, LOG_NEEDS_BACKEND = 1, 2  # as LogNeeds in _pump.pxd


class PumpProtocol(Protocol):
    """What the engine may rely on from a pump, compiled or Python.

    Built with keyword arguments only: ``threads`` (worker threads; the twin has one loop),
    ``bufsize`` (bytes a direction may hold in user space, at least 1024), ``pipesize`` (bytes of a
    splice pipe, None: ``default_pipesize()``, 1 MiB), ``maxpipes`` (0: no limit), ``splice`` (False:
    recv/send only),
    ``counter_blocks`` (how many blocks ``counters`` has) and the callbacks of ``drain_ended``:
    ``on_pair_ended``, ``on_connect_failed``, ``on_lane_hand_back``, ``on_lane_ended`` (the last two
    are lanes', which the twin has not).  Descriptors handed over must be non-blocking stream
    sockets; the pump closes them (except a client given back after a failed connect).  Timeouts are
    in seconds, None or 0 for none.
    """

    @property
    def lanes(self) -> Any:
        """The compiled pump's ``Lanes`` (add, remove, set_weights, set_picks, open_clients, ended,
        accept_errors, maxconn, open_total, open_delta), or None: no lanes in this pump."""
        ...

    @property
    def notify_fd(self) -> Optional[int]:
        """A descriptor readable when ended pairs wait for ``drain_ended`` (None: reports come
        through the event loop of ``start``)."""
        ...

    @property
    def threads(self) -> int:
        """How many worker threads pump pairs."""
        ...

    @property
    def pipes_in_use(self) -> int:
        """Splice pipes open now (pooled ones included)."""
        ...

    @property
    def active(self) -> int:
        """Pairs being pumped now, connecting ones included."""
        ...

    @property
    def loads(self) -> tuple[int, ...]:
        """Pairs each worker pumps now."""
        ...

    def start(self, loop: Any = None) -> None:
        """Start pumping; with ``loop``, ended pairs are reported from that event loop."""
        ...

    def add_pair(self, client_fd: int, server_fd: int, *, client_timeout: Optional[float] = None,
                 server_timeout: Optional[float] = None, client_fin_timeout: Optional[float] = None,
                 server_fin_timeout: Optional[float] = None, frontend_block: int = -1,
                 server_block: int = -1, tag: int = 0, connecting: bool = False,
                 connect_timeout: Optional[float] = None, prefix: Optional[bytes] = None,
                 backend_block: int = -1, waited: float = 0.0) -> int:
        """Hand a pair over; returns the worker that took it.

        The ``*_fin_timeout`` replaces the side's idle timeout once either direction is half-closed.
        With ``connecting`` the server socket has a non-blocking connect in progress: the pump waits
        for it (up to ``connect_timeout``); if it fails, the server socket is closed, the client
        descriptor is left open and Python's again, and the end is CONNECT_FAILED with the errno.
        ``prefix`` (at most ``bufsize`` bytes) goes to the server before anything of the client's.
        Bytes are counted in both blocks (-1: none); the server block also counts the connection
        (CONN_CUR, CONN_TOTAL) once established.  When an established pair ends, its session times
        (``waited``: seconds from the client's accept to this call, the queue included; the connect;
        the whole) are folded into the server block's and ``backend_block``'s ``times``.
        RuntimeError when the pump is not running.
        """
        ...

    def detach(self, tags: Iterable[int]) -> list[DetachedPair]:
        """Let go of the established pairs of ``tags`` (lanes' too) at a clean point, without ending
        them: their descriptors, open and the caller's, and where each stood (``DetachedPair``).
        Nothing is half-written: the compiled pump copies a pair's bytes in flight (its buffer, or
        what its pipe holds) into the record; the twin moves a pair only once its transports hold
        none (it pauses their reads; a pair not clean yet is left for a next call).  The pump's books
        drop a detached pair as at an end, without a report; pairs connecting, ended or unknown are
        left out."""
        ...

    def adopt(self, pair: DetachedPair, *, tag: int = 0) -> int:
        """Take a pair another pump detached, its descriptors and blocks this pump's (``_replace``
        them): pumped from where it stood, its bytes in flight written first, its half-closes, byte
        counts, idle times (its timeouts go on from them) and age as they were; counted as open in
        its server block, not as a new connection.  ``tag`` names it from now on (its end is
        reported as a pair of ``add_pair``'s).  The worker that took it."""
        ...

    def cut(self) -> None:
        """End every pair now (SHUTDOWN); the pump keeps running."""
        ...

    def cut_server(self, block: int) -> None:
        """End every pair counted in server ``block`` (SERVER_DOWN), connecting ones too."""
        ...

    def cut_pair(self, tag: int) -> None:
        """End the pair of ``tag`` (SHUTDOWN), a lane's too; nothing when there is none."""
        ...

    def stop(self) -> None:
        """End every pair (SHUTDOWN), stop pumping and report what ended.  Idempotent."""
        ...

    def connections(self) -> list[tuple[int, int, int, bool]]:
        """Every pair now, as ``(tag, bytes_in, bytes_out, connecting)``."""
        ...

    def pairs(self) -> list[PairInfo]:
        """Every pair now, lanes' included, with what ``show sess`` shows of it."""
        ...

    def drain_ended(self) -> int:
        """Report what ended since the last call, each to its callback; returns how many (the twin
        reports from its loop as things end, and returns 0).

        ``on_pair_ended(tag, reason, bytes_in, bytes_out)``: a pair Python handed over ended (any
        reason but CONNECT_FAILED).  ``on_connect_failed(tag, error, client_fd)``: its connect failed
        (``error`` the errno); ``client_fd``, the descriptor Python handed over, is Python's again.
        ``on_lane_hand_back(frontend_block, server_block, client_fd, error)``: a client a lane could
        not place (the connect to ``server_block`` failed, or -1: no server to pick), Python's now.
        ``on_lane_ended(frontend_block, server_block, reason, bytes_in, bytes_out, peer, duration_ms,
        connect_ms)``: a lane's pair ended, for a log line the lane does not write itself.
        """
        ...

    def counters(self, block: int) -> tuple[int, ...]:
        """The block's ``COUNTER_FIELDS`` counters, indexed by ``Counter``; IndexError outside."""
        ...

    def add_counter(self, block: int, field: int, delta: int) -> None:
        """Add ``delta`` (may be negative) to one counter: what Python counts itself."""
        ...

    def stick_table(self, spec: Any) -> Any:
        """The running table of a ``config.model.StickTable`` that ``sticktables.pump_can_keep``
        accepts: a ``sticktables.PumpStickTable`` kept by the compiled pump (where lanes track
        clients in it), a ``sticktables.StickTable`` in the twin; the same surface."""
        ...

    def times(self, block: int) -> tuple[int, ...]:
        """The block's ``TIME_FIELDS`` session times, indexed by ``Time``; IndexError outside."""
        ...

    def clear_times(self, block: int) -> None:
        """Start the block's session times over."""
        ...


_compiled = load_extension("_pump")
COMPILED = _compiled is not None
CPump = _compiled.Pump if _compiled is not None else None
Pump: Any = CPump if CPump is not None else PyPump

if TYPE_CHECKING:
    def _twin_keeps_the_contract(pump: PyPump) -> PumpProtocol:
        return pump
