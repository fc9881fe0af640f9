"""HAProxy's log lines of a TCP proxy, sans-IO: pure functions over plain data.

The traffic lines (``option tcplog``, HAProxy's predefined format of ``logformat``, and the ``Connect
from`` line of a frontend that logs without it),
HAProxy's two-letter termination states, and the messages of server state changes (``Server be/s1 is
DOWN, reason: ...``).  Nothing here sends anything or reads a clock: callers pass the times, and
``FrontendRuntime.traffic_log`` / ``BackendRuntime.write_log`` (with ``logs.py`` framing the syslog
datagram) send the lines.  The pump writes the same lines in C for lanes (``_pump.pyx``); the tests
hold both to these functions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from . import logformat
from .pump import EndReason

# HAProxy's termination state of a TCP session, by how the pump ended it.
TERMINATION = {
    EndReason.CLOSED: "--",
    EndReason.CLIENT_RESET: "CD",
    EndReason.SERVER_RESET: "SD",
    EndReason.CLIENT_TIMEOUT: "cD",
    EndReason.SERVER_TIMEOUT: "sD",
    EndReason.ERROR: "PD",
    EndReason.SHUTDOWN: "KD",
    EndReason.SERVER_DOWN: "DD",
}
CONNECT_FAILED = "SC"  # no server answered the connect
QUEUE_TIMEOUT = "sQ"  # waited longer than ``timeout queue`` for a slot


def address_text(address: Any) -> str:
    """``host:port`` of a socket address (a UNIX path as it is)."""
    if isinstance(address, tuple):
        return f"{address[0]}:{address[1]}"
    return str(address)


def tcplog_line(record: logformat.LogRecord) -> str:
    """HAProxy's ``option tcplog`` line: ``%ci:%cp [%t] %ft %b/%s %Tw/%Tc/%Tt %B %ts
    %ac/%fc/%bc/%sc/%rc %sq/%bq`` (``logformat.TCP_LOG_FORMAT``)."""
    return logformat.TCP_LOG.render(record)


def connect_line(client: str, local: Any, frontend: str) -> str:
    """Without ``option tcplog``, HAProxy logs each accepted connection in one short line."""
    return f"Connect from {client} to {address_text(local)} ({frontend}/TCP)"


# --- server state changes ------------------------------------------------------------------------------

@dataclass(frozen=True)
class Via:
    """What changed a tracking server's state: the server it tracks (``backend/server``)."""

    name: str


class FromCli:
    """What changed a server's health when the runtime API did (``set server ... health``)."""


FROM_CLI = FromCli()


def check_reason(result: Any) -> str:
    """HAProxy's ``, reason: ..., info: "...", check duration: Nms`` of a state change caused by a
    check result (``health.CheckResult``), `` via be/s1`` for a tracking server, or "" when none
    caused it."""
    if result is None:
        return ""
    if isinstance(result, Via):
        return f" via {result.name}"
    if isinstance(result, FromCli):
        return ", changed from CLI"
    text = f", reason: {result.description}"
    if getattr(result, "has_code", False):
        text += f", code: {result.code}"
    if result.info:
        text += f', info: "{ascii_encoded(result.info)}"'
    return text + f", check duration: {round(result.duration * 1000)}ms"


def _left(active: int, backups: int, sessions: int, queued: int) -> str:
    """srv_append_status() of a server that stopped."""
    on_backup = " Running on backup." if backups and not active else ""
    return (f"{active} active and {backups} backup servers left.{on_backup} {sessions} sessions active, "
            f"0 requeued, {queued} remaining in queue.")


def _online(active: int, backups: int, queued: int) -> str:
    """srv_append_status() of a server that runs."""
    on_backup = " Running on backup." if backups and not active else ""
    return (f"{active} active and {backups} backup servers online.{on_backup} 0 sessions requeued, "
            f"{queued} total in queue.")


def _who(backend: str, server: str, backup: bool) -> str:
    return f"{'Backup Server' if backup else 'Server'} {backend}/{server}"


def server_down_message(backend: str, server: str, *, backup: bool, maintenance: bool, result: Any,
                        active: int, backups: int, sessions: int, queued: int) -> str:
    """``Server be/s1 is DOWN, reason: ... 1 active and 0 backup servers left. ...``"""
    # A tracking server says which server took it into maintenance too (" via be/s1").
    reason = ("is going DOWN for maintenance" + (check_reason(result) if isinstance(result, Via) else "")
              if maintenance else "is DOWN" + check_reason(result))
    return f"{_who(backend, server, backup)} {reason}. {_left(active, backups, sessions, queued)}"


def admin_messages(backend: str, server: str, *, backup: bool, before: str, after: str, was_stopped: bool,
                   stopped: bool, active: int, backups: int, sessions: int, queued: int,
                   waiting: int) -> list[str]:
    """What HAProxy 2.6 writes when an operator (the runtime API, an agent) moves a server from one
    administrative state to another (``READY``, ``DRAIN``, ``MAINT``), the server having been stopped
    (down, or in maintenance) or not before, and being so after: srv_update_status()'s admin lines
    (``queued``: the server's queue, ``waiting``: the backend's)."""
    who = _who(backend, server, backup)
    up = "DOWN" if stopped else "UP"
    if after == "MAINT":
        if was_stopped:
            return [f"{who} was DOWN and now enters maintenance."]
        return [f"{who} is going DOWN for maintenance. {_left(active, backups, sessions, queued)}"]
    if before == "MAINT":
        lines = [f"{who} is {up}/{'DRAIN' if after == 'DRAIN' else 'READY'} (leaving forced maintenance)."]
        if after == "DRAIN" and stopped != was_stopped:
            lines.append(f"{who} remains in forced drain mode.")
        return lines
    if after == "DRAIN":
        status = _left(active, backups, sessions, queued) if stopped else _online(active, backups, waiting)
        return [f"{who} enters drain state. {status}"]
    return [f"{who} is {up} (leaving forced drain)."]


def drain_remains_message(backend: str, server: str, *, backup: bool) -> str:
    """After a drained server went up or down: it is still drained."""
    return f"{_who(backend, server, backup)} remains in forced drain mode."


def server_stopping_message(backend: str, server: str, *, backup: bool, result: Any, active: int,
                            backups: int, queued: int) -> str:
    """``Server be/s1 is stopping, reason: ...``: a conditional pass drained it (NOLB)."""
    return (f"{_who(backend, server, backup)} is stopping{check_reason(result)}. "
            f"{_online(active, backups, queued)}")


def server_up_message(backend: str, server: str, *, backup: bool, result: Any, active: int, backups: int,
                      queued: int) -> str:
    """``Server be/s1 is UP, reason: ... 2 active and 0 backup servers online. 0 sessions requeued, 0
    total in queue.`` (srv_append_status())."""
    return f"{_who(backend, server, backup)} is UP{check_reason(result)}. {_online(active, backups, queued)}"


def ascii_encoded(text: str) -> str:
    """HAProxy's chunk_asciiencode() of a check description in a log line: control characters, the
    double quote and bytes above 0x7E as ``\\xHH``."""
    return "".join(c if " " <= c < "\x7f" and c != '"' else f"\\x{ord(c) & 0xFF:02x}" for c in text)


def no_server_message(backend: str) -> str:
    return f"backend {backend} has no server available!"


def check_log_message(health: Any, result: Any, *, backend: str, server: str, backup: bool,
                      draining: bool) -> str:
    """``option log-health-checks``: HAProxy's line for a check result that counted
    (set_server_check_status()): ``Health check for server be/s1 failed, reason: ..., status: 0/2
    DOWN`` (``health``: the server's ``health.ServerHealth`` after the result)."""
    outcome = "conditionally succeeded" if result.status == "L7OKC" else (
        "succeeded" if result.passed else "failed")
    if health.up:
        status = f"{health.health - health.rise + 1}/{health.fall} {'DRAIN' if draining else 'UP'}"
    else:
        status = f"{health.health}/{health.rise} DOWN"
    return (f"Health check for {'backup ' if backup else ''}server {backend}/{server} {outcome}"
            f"{check_reason(result)}, status: {status}.")
