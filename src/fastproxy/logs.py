"""Traffic logs sent where the configuration's ``log`` lines say, as HAProxy sends them.

A ``log`` line reads ``<target> [len <n>] [format <f>] [sample <r>:<s>] <facility> [<level> [<minlevel>]]``.
Targets: ``ip:port`` / ``udp@ip:port`` (syslog over UDP, port 514 by default), a path or ``unix@path``
(a UNIX datagram socket such as ``/dev/log``), ``stdout`` and ``stderr``.  Formats: ``rfc3164`` (the
default: ``<PRI>Mmm dd hh:mm:ss fastproxy[pid]: message``), ``rfc5424``, ``short`` (``<level>message``),
``raw`` (the message alone).  A message goes to a target when its level is at or above the target's
``level`` in severity (``info`` passes ``info``, ``notice`` passes ``warning``), raised to
``minlevel`` as HAProxy does.  ``sample`` sends one message in ``s`` round-robin.  The reader parses each
line once into the model's ``LogTarget``; the names of facilities, levels and formats are this module's.

Sending never blocks traffic: datagrams go through a non-blocking socket and are dropped when the
socket buffer is full, as HAProxy drops them.  Targets HAProxy reaches over TCP or a ring buffer
(``tcp@``, ``ring@``, ``fd@``) are not supported: they are reported once at start and skipped.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from typing import Any, Optional

from .config.model import LogTarget

__all__ = ["FACILITIES", "FORMATS", "LEVELS", "LogTarget", "ProxyLog", "second_stamp"]

log = logging.getLogger("fastproxy")

FACILITIES = ("kern user mail daemon auth syslog lpr news uucp cron auth2 ftp ntp audit alert cron2 "
              "local0 local1 local2 local3 local4 local5 local6 local7").split()
LEVELS = "emerg alert crit err warning notice info debug".split()  # severity 0 .. 7
# HAProxy's formats; fastproxy writes local, priority, timed and iso as rfc3164.
FORMATS = ("local", "rfc3164", "rfc5424", "priority", "short", "timed", "iso", "raw")
INFO = LEVELS.index("info")
NOTICE = LEVELS.index("notice")
ALERT = LEVELS.index("alert")
EMERG = LEVELS.index("emerg")
SYSLOG_PORT = 514
UNSUPPORTED_PREFIXES = ("tcp@", "tcp4@", "tcp6@", "ring@", "fd@", "abns@")


class _Sender:
    """Where one target's messages go: a datagram socket or a file descriptor."""

    def __init__(self, target: LogTarget) -> None:
        self.target = target
        self.sock: Optional[socket.socket] = None
        self.fd = -1
        self.destination: Any = None  # a path or a sockaddr tuple
        self.connected = False
        self.counter = 0
        address = target.address
        if address in ("stdout", "stderr"):
            self.fd = 1 if address == "stdout" else 2
            return
        for prefix in ("unix@", "uxdg@"):
            address = address.removeprefix(prefix)
        if address.startswith("/"):
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            self.destination = address
        else:
            for prefix in ("udp4@", "udp6@", "udp@"):
                address = address.removeprefix(prefix)
            host, _, port = address.rpartition(":")  # the last colon: "::1:514" is ::1, port 514
            if not host:
                host, port = port, ""
            family, _, _, _, sockaddr = socket.getaddrinfo(host.strip("[]"), int(port or SYSLOG_PORT), 0,
                                                            socket.SOCK_DGRAM)[0]
            self.sock = socket.socket(family, socket.SOCK_DGRAM)
            self.destination = sockaddr
            # Connected once, so that each message is a plain send (no address to pass and route).
            self.sock.connect(sockaddr)
            self.connected = True
        self.sock.setblocking(False)

    def send(self, severity: int, message: str, hostname: str, pid: int, sd: str = "-") -> None:
        target = self.target
        if target.sample is not None:
            first, size = target.sample
            self.counter = self.counter % size + 1
            if self.counter != first:
                return
        severity = max(severity, target.minlevel)
        # As HAProxy, every message ends with a line feed, within the target's ``len``.
        data = _format(target, severity, message, hostname, pid, sd)[:target.length - 1].rstrip(b"\n") + b"\n"
        try:
            if self.fd >= 0:
                os.write(self.fd, data)
            elif self.connected:
                self.sock.send(data)  # type: ignore[union-attr]
            else:
                assert self.sock is not None
                self.sock.sendto(data, self.destination)
        except OSError:
            pass  # a full buffer or a missing syslog daemon drops the message, as in HAProxy

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()


def _format(target: LogTarget, severity: int, message: str, hostname: str, pid: int, sd: str = "-") -> bytes:
    priority = target.facility * 8 + severity
    if target.format == "raw":
        return message.encode()
    if target.format == "short":
        return f"<{severity}>{message}".encode()
    if target.format == "rfc5424":
        now = time.time()
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(now)) + f".{int(now % 1 * 1e6):06d}"
        offset = time.strftime("%z", time.localtime(now))
        stamp += f"{offset[:3]}:{offset[3:]}"
        # As HAProxy without ``log-send-hostname``: no host name ("-").
        return f"<{priority}>1 {stamp} - fastproxy {pid} - {sd} {message}".encode()
    # rfc3164 (HAProxy's default, without the host name unless log-send-hostname)
    return f"<{priority}>{second_stamp('%b %e %H:%M:%S', time.time())} fastproxy[{pid}]: {message}".encode()


_STAMPS: dict[str, tuple[int, str]] = {}


def second_stamp(fmt: str, now: float) -> str:
    """``time.strftime(fmt)`` of the local time's second, made once per second and format: a busy
    proxy logs thousands of lines a second."""
    second = int(now)
    cached = _STAMPS.get(fmt)
    if cached is None or cached[0] != second:
        cached = (second, time.strftime(fmt, time.localtime(second)))
        _STAMPS[fmt] = cached
    return cached[1]


class ProxyLog:
    """The log of one proxy: every target of its ``log`` lines (``log global`` already expanded)."""

    def __init__(self, name: str, targets: list[LogTarget]) -> None:
        self.senders: list[_Sender] = []
        self.hostname = socket.gethostname()
        self.pid = os.getpid()
        for target in targets:
            if target.address.startswith(UNSUPPORTED_PREFIXES):
                log.warning("proxy '%s': log target '%s' is not supported (UDP, UNIX datagram, stdout "
                            "and stderr are); its messages are not sent", name, target.address)
                continue
            try:
                self.senders.append(_Sender(target))
            except OSError as exc:
                log.warning("proxy '%s': log target '%s': %s; its messages are not sent",
                            name, target.address, exc)

    def __bool__(self) -> bool:
        return bool(self.senders)

    def send(self, severity: int, message: str, sd: str = "-") -> None:
        """``sd``: the structured data of ``rfc5424`` targets (``log-format-sd``)."""
        pid = self.pid
        for sender in self.senders:
            if severity <= sender.target.level:
                sender.send(severity, message, self.hostname, pid, sd)

    def close(self) -> None:
        for sender in self.senders:
            sender.close()
        self.senders = []
