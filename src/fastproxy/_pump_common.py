"""What both pumps share and report with: ``EndReason``, ``Counter``, ``COUNTER_FIELDS``, ``Time``,
``PairInfo``, the callbacks, and the rule the session times are folded by (``fold_times``).

Defined apart so that the Python twin (``_pump_py.py``) and the public face (``pump.py``, which
re-exports them and is where everybody else imports them from) need not import each other, as
multidict keeps the twins' shared pieces in ``_abc.py``.  The compiled pump mirrors these numbers in
``_pump.pxd`` (``EndReason``, ``CounterField``, ``TimeField``; ``fold_times`` is dataplane/base.pxi's).
"""

from __future__ import annotations

import enum
import os
from typing import Callable, NamedTuple


class EndReason(enum.IntEnum):
    """Why a pair ended (HAProxy's termination state in brackets)."""

    CLOSED = 0  # both directions finished with a FIN (--)
    CLIENT_RESET = 1  # the client reset or failed; the server was reset too (CD)
    SERVER_RESET = 2  # the server reset or failed; the client was reset too (SD)
    CLIENT_TIMEOUT = 3  # the client side was idle too long (cD)
    SERVER_TIMEOUT = 4  # the server side was idle too long (sD)
    ERROR = 5  # a local failure: registration, resources (PD)
    SHUTDOWN = 6  # cut by the engine when stopping (KD)
    CONNECT_FAILED = 7  # the upstream connect failed: the client descriptor is Python's again
    SERVER_DOWN = 8  # cut because its server was marked down, on-marked-down shutdown-sessions (DD)


class Counter(enum.IntEnum):
    """Fields of a counter block, as returned by ``Pump.counters(block)``."""

    BYTES_IN = 0  # client -> server
    BYTES_OUT = 1  # server -> client
    CONN_CUR = 2
    CONN_TOTAL = 3
    CONNECT_ERRORS = 4
    RESETS = 5
    TIMEOUTS = 6
    DENIED_CONN = 7  # clients ``tcp-request connection reject`` closed (show stat's dcon)


# Eight 8-byte slots: a block is one 64-byte cache line, so the worker threads bumping different blocks
# (a frontend's, a server's) never contend for one line.
COUNTER_FIELDS = 8


class Time(enum.IntEnum):
    """Fields of a block's session times, as returned by ``Pump.times(block)``: HAProxy's sliding
    sums (milliseconds) over the last ``TIME_WINDOW`` pairs and the maxima (show stat's qtime, ctime,
    ttime and their ``_max``), folded when an established pair ends."""

    QUEUE_SUM = 0  # accept -> dial: the queue, on Python's path
    CONNECT_SUM = 1  # dial -> established
    TOTAL_SUM = 2  # accept -> end
    QUEUE_MAX = 3
    CONNECT_MAX = 4
    TOTAL_MAX = 5
    SAMPLES = 6  # pairs folded so far, counted up to TIME_WINDOW + 1


TIME_FIELDS = 8
TIME_WINDOW = 1024  # HAProxy's TIME_STATS_SAMPLES
_U32 = 0xFFFFFFFF


def fold_times(times: list[int], start: int, queue: int, connect: int, total: int) -> None:
    """Fold one ended pair's times (ms) into ``times[start:start + TIME_FIELDS]``, as HAProxy's
    stream_update_time_stats(): without decay until more than ``TIME_WINDOW`` pairs were seen, then
    each sample takes its average share's place (freq_ctr.h's swrate_add_dynamic); 32-bit, as there.
    The compiled pump does the same in C (dataplane/base.pxi)."""
    seen = times[start + Time.SAMPLES]
    if seen <= TIME_WINDOW:
        seen += 1
        times[start + Time.SAMPLES] = seen
    window = TIME_WINDOW if seen > TIME_WINDOW else 0
    for field, value in ((Time.QUEUE_SUM, queue), (Time.CONNECT_SUM, connect), (Time.TOTAL_SUM, total)):
        value = min(max(value, 0), _U32)
        old = times[start + field]
        times[start + field] = (old - ((old + window - 1) // window if window else 0) + value) & _U32
        maximum = start + field + Time.QUEUE_MAX
        times[maximum] = max(times[maximum], value)


class PairInfo(NamedTuple):
    """One pair as ``Pump.pairs()`` reads it (for ``show sess``)."""

    tag: int
    worker: int
    frontend_block: int
    backend_block: int
    server_block: int
    client_fd: int
    server_fd: int
    bytes_in: int
    bytes_out: int
    connecting: bool
    age_ms: int  # since the client was accepted
    client_expires_ms: int  # before the client side's timeout; -1: none
    server_expires_ms: int  # before the server side's (the connect timeout while connecting); -1: none
    pending_in: int  # bytes read from the client, not yet written to the server
    pending_out: int
    peer: bytes  # a lane's client as a raw sockaddr; b"": a pair Python handed over (Python knows it)


class DetachedPair(NamedTuple):
    """A pair a pump let go of (``Pump.detach``), or one for a pump to take (``Pump.adopt``): its two
    descriptors, open and the holder's, and where the pair stood (a reload moves it to the new worker).
    Idle and age times are how long ago, so that they mean the same in another process."""

    tag: int
    client_fd: int
    server_fd: int
    frontend_block: int
    backend_block: int
    server_block: int
    peer: bytes  # a lane's client as a raw sockaddr; b"": a pair Python handed over (Python knows it)
    timeouts_ms: tuple[int, int, int, int, int]  # client, server, client_fin, server_fin, connect; 0: none
    client_idle_ms: int  # since the client side was last active (its timeout goes on from there)
    server_idle_ms: int
    age_ms: int  # since the client was accepted
    queue_ms: int  # from the accept to the connect's start
    connect_ms: int
    bytes_in: int  # moved so far, client -> server
    bytes_out: int
    in_eof: bool  # the client's FIN was read...
    in_shut: bool  # ...and passed on to the server
    out_eof: bool
    out_shut: bool
    pending_in: bytes  # read from the client, not yet written to the server: written first
    pending_out: bytes


# The pump's reports, one callback each (see fastproxy.pump.PumpProtocol.drain_ended).
OnPairEnded = Callable[[int, int, int, int], None]  # tag, reason, bytes_in, bytes_out
OnConnectFailed = Callable[[int, int, int], None]  # tag, error, client_fd
OnLaneHandBack = Callable[[int, int, int, int], None]  # frontend_block, server_block, client_fd, error
# frontend_block, server_block, reason, bytes_in, bytes_out, peer, duration_ms, connect_ms
OnLaneEnded = Callable[[int, int, int, int, int, bytes, int, int], None]


DEFAULT_PIPESIZE = 1 << 20  # a splice pipe when tune.pipesize is unset (see bench/README.md: "Findings")


def default_pipesize() -> int:
    """The pipe size of an unset ``tune.pipesize``: 1 MiB, or the system's limit when lower.

    Measured on loopback, 1 MiB pipes move a stream with 8x fewer splice calls than the kernel's
    64 KiB and take about half the CPU per GB; a pipe costs its pages only while bytes are in it.
    Above ``/proc/sys/fs/pipe-max-size`` an unprivileged process cannot enlarge a pipe at all.
    """
    try:
        with open("/proc/sys/fs/pipe-max-size") as f:
            limit = int(f.read())
    except (OSError, ValueError):
        return DEFAULT_PIPESIZE
    return max(min(DEFAULT_PIPESIZE, limit), 4096)


def default_threads() -> int:
    """Pump threads when ``nbthread`` is unset: one per CPU the process may run on (its affinity mask),
    HAProxy 2.6's rule, so that a file without ``nbthread`` gets the same parallelism from both."""
    try:
        return max(len(os.sched_getaffinity(0)), 1)
    except (AttributeError, OSError):
        return max(os.cpu_count() or 1, 1)
