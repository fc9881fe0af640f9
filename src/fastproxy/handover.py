"""Listening sockets that outlive a worker: the master opens them, every worker inherits them.

In master-worker mode (``master.py``) the master binds each ``bind`` of the configuration once and
keeps the socket open for as long as a configuration names its address.  A worker started by the
master inherits the descriptors (``pass_fds``; the command line says which descriptor is which
address, as ``--inherit FD=KEY``) and listens on them instead of binding its own.  Old and new
workers of a reload therefore accept from the *same* kernel socket, the same accept queue: nothing
is refused while the new worker starts, and a connection queued when the old worker stops accepting
is accepted by the new one, with no need for ``net.ipv4.tcp_migrate_req`` (which only moves requests
between the distinct sockets of a ``SO_REUSEPORT`` group).

A key names an address as the configuration writes it, normalized as ``server.open_listener``
resolves it, so ``*:80`` and ``0.0.0.0:80`` share a socket.  Options that can change on a listening
socket (``backlog``, ``defer-accept``) are applied again by each worker; the others (``v6only``,
``reuseport``) are those of the configuration that first bound the address.
"""

from __future__ import annotations

import socket
from typing import Callable, Iterable, Optional

from .config import model
from .server import open_listener

# How a worker gets a listening socket for a bind (``Engine(open_listener=...)``).
Opener = Callable[[model.Bind, int], socket.socket]

STATS_BACKLOG = 16  # a stats socket's: few operators at once


def bind_listener(bind: model.Bind, backlog: int) -> socket.socket:
    """The default opener: a socket of this process's own."""
    return open_listener(bind, backlog=backlog)


def bind_key(bind: model.Bind) -> str:
    """The address of ``bind`` as one string: ``ipv4@0.0.0.0:80``, ``@[::1]:8080``..."""
    host = bind.host
    if host in ("", "*"):
        host = "::" if bind.family == "ipv6" else "0.0.0.0"
    if ":" in host:
        host = f"[{host}]"
    return f"{bind.family or ''}@{host}:{bind.port}"


def backlog_of(frontend: model.Frontend) -> int:
    return frontend.maxconn or socket.SOMAXCONN


def stats_socket_bind(config: model.StatsSocket) -> model.Bind:
    """A TCP ``stats socket`` as the bind it listens like."""
    return model.Bind(config.host, config.port, family=config.family, location=config.location)


def listening_binds(config: model.Config) -> list[tuple[model.Bind, int]]:
    """Every TCP address the configuration listens on, with its default backlog: the frontends'
    binds (stats listeners' too) and the TCP ``stats socket`` lines."""
    binds = [(bind, backlog_of(frontend))
             for frontend in config.frontends.values() for bind in frontend.binds]
    binds += [(stats_socket_bind(stats), STATS_BACKLOG) for stats in config.global_.stats_sockets
              if stats.path is None]
    return binds


class ListenerPool:
    """The master's listening sockets, by ``bind_key``."""

    def __init__(self) -> None:
        self.sockets: dict[str, socket.socket] = {}

    def open_for(self, config: model.Config) -> tuple[dict[str, socket.socket], list[str]]:
        """The sockets ``config`` listens on, opening those not open yet: ``(by key, keys opened
        now)``.  On a failure (an address in use...) the ones opened now are closed and it raises."""
        wanted: dict[str, socket.socket] = {}
        opened: list[str] = []
        try:
            for bind, backlog in listening_binds(config):
                key = bind_key(bind)
                if key in wanted:
                    continue
                sock = self.sockets.get(key)
                if sock is None:
                    sock = open_listener(bind, backlog=backlog)
                    self.sockets[key] = sock
                    opened.append(key)
                wanted[key] = sock
        except BaseException:
            self.close(opened)
            raise
        return wanted, opened

    def keep_only(self, keys: Iterable[str]) -> None:
        """Close the sockets no configuration in use names any more."""
        keep = set(keys)
        self.close([key for key in self.sockets if key not in keep])

    def close(self, keys: Optional[Iterable[str]] = None) -> None:
        for key in list(self.sockets if keys is None else keys):
            sock = self.sockets.pop(key, None)
            if sock is not None:
                sock.close()


def parse_inherited(values: Iterable[str]) -> dict[str, int]:
    """``--inherit FD=KEY`` arguments: descriptor by key."""
    inherited: dict[str, int] = {}
    for value in values:
        fd, _, key = value.partition("=")
        inherited[key] = int(fd)
    return inherited


def inheriting_opener(inherited: dict[str, int]) -> Opener:
    """An opener that listens on the inherited socket of a bind's address (its backlog and
    ``defer-accept`` set again for this configuration), and binds one for an address it was not
    given (the master always gives them all; a frontend built at run time may not be)."""
    remaining = dict(inherited)

    def open_(bind: model.Bind, backlog: int) -> socket.socket:
        fd = remaining.pop(bind_key(bind), None)
        if fd is None:
            return bind_listener(bind, backlog)
        sock = socket.socket(fileno=fd)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_DEFER_ACCEPT, int(bind.defer_accept))
            sock.listen(bind.backlog or backlog)  # listen() again only changes the backlog
            sock.setblocking(False)
        except BaseException:
            sock.close()
            raise
        return sock
    return open_
