"""HAProxy's ``show sess``: the connections of a running configuration as HAProxy 2.6 lists its streams
(src/stream.c, ``cli_io_handler_dump_sess``), in its short form (one line each) and its long one.

Sans-IO: ``Stream`` is one connection as the runtime API gathered it, from the pump's ``PairInfo`` and
what Python knows of its own sessions (``from_pair``), or from a runtime API connection; the functions
here only format.  Ids are the pump's tags written as HAProxy writes stream pointers (``0x...``);
HAProxy's internals that fastproxy has no counterpart for (task flags, calls, channel analysers, CPU)
read as HAProxy writes them when they are zero or unset.  What the pump knows is real: the client, the
frontend, backend and server, the age, the descriptors, the bytes buffered (``i=``) and moved
(``total=``), the time left before each side's timeout (``rx=``) or the connect's (``c_exp``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Optional

from . import logs

EST, CON = 8, 5  # HAProxy's stream connector states: SC_ST_EST, SC_ST_CON


@dataclass
class Stream:
    """One connection as ``show sess`` shows it."""

    ident: int
    proto: str  # tcpv4, tcpv6, unix_stream
    source: str  # ``host:port`` or ``unix:<listener id>``
    frontend: str
    backend: Optional[str]  # None: HAProxy's ``<NONE>``
    server: Optional[str]  # None: ``<none>``
    accepted: float  # epoch seconds
    client_fd: int = -1
    server_fd: int = -1
    connecting: bool = False
    client_expires_ms: int = -1  # -1: no timeout
    server_expires_ms: int = -1
    pending_in: int = 0
    pending_out: int = 0
    bytes_in: int = 0
    bytes_out: int = 0
    frontend_id: int = 0
    backend_id: int = -1
    server_id: int = -1
    server_address: str = ""
    listener_address: str = ""
    retries: int = 0


def human_time(seconds: int) -> str:
    """tools.c's human_time(): at most two units, ``0s``, ``59s``, ``1m3s``, ``2h5m``, ``3d4h``."""
    if seconds < 0:
        return "?"
    parts = []
    count = 2
    if seconds >= 86400:
        parts.append(f"{seconds // 86400}d")
        count -= 1
    if count and seconds % 86400 // 3600:
        parts.append(f"{seconds % 86400 // 3600}h")
        count -= 1
    if count and seconds % 3600 // 60:
        parts.append(f"{seconds % 3600 // 60}m")
        count -= 1
    if (count and seconds % 60) or not seconds:
        parts.append(f"{seconds % 60}s")
    return "".join(parts)


def _expiry(ms: int) -> str:
    """A channel's or task's expiry as HAProxy writes it: seconds left, or empty when unset."""
    return "" if ms < 0 else human_time(ms // 1000)


def short_line(stream: Stream, now: float) -> str:
    """The one-line form of ``show sess``."""
    age = human_time(max(int(now) - int(stream.accepted), 0))
    backend = stream.backend if stream.backend is not None else "<NONE>"
    server = stream.server if stream.server is not None else "<none>"
    expiries = [ms for ms in (stream.client_expires_ms, stream.server_expires_ms) if ms >= 0]
    task_expiry = _expiry(min(expiries)) if expiries else ""
    connect = _expiry(stream.server_expires_ms) if stream.connecting else ""
    request_rx = "" if stream.connecting else _expiry(stream.client_expires_ms)
    response_rx = "" if stream.connecting else _expiry(stream.server_expires_ms)
    back_state = CON if stream.connecting else EST
    return (f"0x{stream.ident:x}: proto={stream.proto} src={stream.source} fe={stream.frontend} be={backend} "
            f"srv={server} ts=00 epoch=0 age={age} calls=0 rate=0 cpu=0 lat=0 "
            f"rq[f=0h,i={stream.pending_in},an=00h,rx={request_rx},wx=,ax=] "
            f"rp[f=0h,i={stream.pending_out},an=00h,rx={response_rx},wx=,ax=] "
            f"scf=[{EST},0h,fd={stream.client_fd}] scb=[{back_state},1h,fd={stream.server_fd}] "
            f"exp={task_expiry} rc=0 c_exp={connect}\n")


def long_form(stream: Stream, now: float) -> str:
    """``show sess <id>``: HAProxy's detailed dump, with the parts fastproxy has."""
    whole = int(stream.accepted)
    micro = int((stream.accepted - whole) * 1e6)
    stamp = logs.second_stamp("%d/%b/%Y:%H:%M:%S", whole) + f".{micro:06d}"
    age = human_time(max(int(now) - whole, 0))
    backend = (f"backend={stream.backend} (id={stream.backend_id} mode=tcp)" if stream.backend is not None
               else "backend=<NONE> (id=-1 mode=-)")
    server = (f"server={stream.server} (id={stream.server_id}) addr={stream.server_address}"
              if stream.server is not None else "server=<NONE> (id=-1)")
    state = "CON" if stream.connecting else "EST"
    listener = f" addr={stream.listener_address}" if stream.listener_address else ""
    connect_expiry = stream.server_expires_ms if stream.connecting else -1
    return (f"0x{stream.ident:x}: [{stamp}] id={stream.ident & 0xFFFFFFFFFF} proto={stream.proto} "
            f"source={stream.source}\n"
            f"  flags=0x0, conn_retries={stream.retries}, conn_exp={_never(connect_expiry)} "
            f"conn_et=0x000 srv_conn=(nil), pend_pos=(nil) waiting=0 epoch=0\n"
            f"  frontend={stream.frontend} (id={stream.frontend_id} mode=tcp), listener=? (id=1){listener}\n"
            f"  {backend}\n"
            f"  {server}\n"
            f"  task=0x{stream.ident:x} (state=0x00 nice=0 calls=0 rate=0 exp={_never(_soonest(stream))} "
            f"tmask=0x1 age={age})\n"
            f"  scf=0x{stream.ident:x} flags=0x00000000 state=EST endp=CONN sub=1\n"
            f"      fd={stream.client_fd}\n"
            f"  scb=0x{stream.ident:x} flags=0x00000001 state={state} endp=CONN sub=1\n"
            f"      fd={stream.server_fd}\n"
            f"  req=0x{stream.ident:x} (f=0x0 an=0x0 pipe=0 tofwd=-1 total={stream.bytes_in})\n"
            f"      an_exp=<NEVER> rex={_never(stream.client_expires_ms)} wex=<NEVER>\n"
            f"  res=0x{stream.ident:x} (f=0x0 an=0x0 pipe=0 tofwd=-1 total={stream.bytes_out})\n"
            f"      an_exp=<NEVER> rex={_never(stream.server_expires_ms)} wex=<NEVER>\n")


def _soonest(stream: Stream) -> int:
    expiries = [ms for ms in (stream.client_expires_ms, stream.server_expires_ms) if ms >= 0]
    return min(expiries) if expiries else -1


def _never(ms: int) -> str:
    return "<NEVER>" if ms < 0 else human_time(ms // 1000)


def wall_clock() -> float:
    return time.time()
