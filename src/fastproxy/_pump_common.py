"""What both pumps share and report with: ``EndReason``, ``Counter``, ``COUNTER_FIELDS``, the callbacks.

Defined apart so that the Python twin (``_pump_py.py``) and the public face (``pump.py``, which
re-exports them and is where everybody else imports them from) need not import each other, as
multidict keeps the twins' shared pieces in ``_abc.py``.  The compiled pump mirrors these numbers in
``_pump.pxd`` (``EndReason``, ``CounterField``).
"""

from __future__ import annotations

import enum
import os
from typing import Callable


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


# Eight 8-byte slots for seven fields: a block is one 64-byte cache line, so the worker threads bumping
# different blocks (a frontend's, a server's) never contend for one line.  The eighth slot is spare.
COUNTER_FIELDS = 8


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
