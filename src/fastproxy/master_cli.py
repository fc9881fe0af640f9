"""The master CLI (``fastproxy run -W -S <socket>[,<bind options>]``), as HAProxy 2.6's (management
guide §9.4): the master's own commands (``show proc``, ``reload``, ``help``, ``prompt``...) and a
command prefixed with ``@<n>`` (the current worker is ``@1``), ``@!<pid>`` (any worker, a former one
still finishing too) or ``@master`` routed to that process; a prefix alone routes every following
request of the session there, until ``@`` alone.

A routed request reaches the worker as HAProxy's master sends it: on a connection of its own, handed
to the worker over the master-worker link (``master.WorkerLink``), and preceded by ``user -`` or
``operator -`` (and ``experimental-mode on -``) when the master CLI session is at a lower level or
in that mode, so the worker applies the session's level; its answer comes back as the worker wrote
it.  The requests are split as the runtime API splits them (``runtime_api``: lines and ``;``).
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from typing import Any, Optional, Sequence

from .config import model
from .runtime_api import (
    ADMIN, MAX_REQUEST, OPERATOR, USER, CliSession, Command, CommandError, RuntimeApi, split_request,
)
from .runtime_commands import COMMANDS

log = logging.getLogger("fastproxy")

ROUTED_TIMEOUT = 30.0  # seconds a worker may take to answer a routed request


class MasterSession(CliSession):
    """One connection to the master CLI.  ``target`` is where requests go without a prefix: None
    for the master, else a worker's pid (set by a prefix alone).

    As HAProxy's master (mworker.c's pcli), the session itself handles ``prompt``, ``quit``, the
    ``@`` prefixes, ``operator``, ``user`` and ``experimental-mode`` (unless prefixed: then they are
    the process's): they answer nothing; any other
    request is answered by the master's commands (``MASTER_COMMANDS``) or by the worker it is routed
    to, each answer followed by an empty line.  In prompt mode each request is followed by the prompt
    (``master> ``, ``<pid>> ``, ``master[ReloadFailed]> ``, ``(x)`` with experimental-mode).  A
    routing error or a level the session may not take ends the connection after its message."""

    def __init__(self, commands: Sequence[Command], level: int, master: Any = None,
                 socket_config: Optional[model.StatsSocket] = None) -> None:
        super().__init__(commands, level, master, socket_config)
        self.master = master  # master.Master: its workers, its reloads
        self.target: Optional[int] = None

    async def receive_async(self, data: bytes) -> bytes:
        """As ``CliSession.receive``, with the requests prefixed (or under a prefix) routed."""
        if self.closed:
            return b""
        self._buffer += data
        out = bytearray()
        while not self.closed:
            line = self._next_request()
            if line is None:
                if len(self._buffer) >= MAX_REQUEST:
                    self.closed = True
                break
            out += (await self.execute_routed(line)).encode("latin-1", "replace")
            if not self.closed and not self.interactive and not self._buffer:
                self.closed = True
        return bytes(out)

    async def execute_routed(self, line: bytes) -> str:
        """One request: what to send back (the prompt included in prompt mode)."""
        args = split_request(line)
        target, prefixed = self.target, False
        if args and args[0].startswith("@"):
            try:
                target = self._target(args[0])
            except CommandError as error:
                self.closed = True
                return error.message
            rest = line.lstrip().split(None, 1)[1] if len(args) > 1 else b""
            if len(args) == 1:
                self.target = target  # a prefix alone: where the next requests go
                return self._prompt_after("")
            line, args, prefixed = rest, args[1:], True
        try:
            if not prefixed and self._session_command(args):  # a prefixed request is the process's
                return self._prompt_after("")
        except CommandError as error:
            self.closed = True
            return error.message
        if target is not None:
            return self._prompt_after(await self._route(target, line))
        self.no_newline = False
        answer = self.dispatch(args)
        if self.closed:  # reload, or a command that ends the connection
            return ""
        return self._prompt_after(answer if self.no_newline else answer + "\n")

    def _prompt_after(self, answer: str) -> str:
        return answer + self.prompt() if self.interactive else answer

    def _session_command(self, args: list[str]) -> bool:
        """pcli_parse_request()'s own words: True if ``args`` was one of them (done)."""
        word = args[0] if args else ""
        if word == "prompt":
            self.interactive = not self.interactive
        elif word == "quit":
            self.closed = True  # in prompt mode the prompt is still written, then the connection ends
        elif word in ("operator", "user"):
            level = OPERATOR if word == "operator" else USER
            if self.level < level:
                raise CommandError("Permission denied!\n")
            self.level = level
        elif word == "experimental-mode":
            if self.level < ADMIN:
                raise CommandError("Permission denied!\n")
            self.experimental = len(args) > 1 and args[1] == "on"
        else:
            return False
        return True

    def prompt(self) -> str:
        """``master> ``, ``<pid>> ``; ``master[ReloadFailed]> `` while the last reloads failed;
        ``(x)`` in experimental-mode."""
        if self.target is None:
            name = "master[ReloadFailed]" if self.master.reloads_failed else "master"
        else:
            name = str(self.target)
        return f"{name}{'(x)' if self.experimental else ''}> "

    def _target(self, prefix: str) -> Optional[int]:
        """The pid ``@<n>`` or ``@!<pid>`` designates (None for ``@``, ``@0`` and ``@master``)."""
        text = prefix[1:]
        if text in ("", "0", "master"):
            return None
        if text.startswith("!"):
            pid = _number(text[1:])
            if pid is not None and any(worker.pid == pid for worker in self.master.workers):
                return pid
        elif _number(text) == 1:  # one process per worker: @1 is the current one
            current = self.master.current
            if current is not None and not current.exited.done():
                return current.pid
        raise CommandError(f"Can't find the target PID matching the prefix '{prefix}'\n")

    async def _route(self, pid: int, line: bytes) -> str:
        """The answer of worker ``pid`` to ``line``, asked on a connection of its own."""
        worker = next((w for w in self.master.workers if w.pid == pid), None)
        if worker is None:
            return ""
        prefix = b"experimental-mode on -\n" if self.experimental else b""
        if self.level == USER:
            prefix += b"user -\n"
        elif self.level == OPERATOR:
            prefix += b"operator -\n"
        return await ask_worker(worker, prefix + line + b"\n")


async def ask_worker(worker: Any, request: bytes) -> str:
    """``request`` to ``worker``'s runtime API over the master-worker link; its whole answer ("" if
    the worker has gone or does not answer in ``ROUTED_TIMEOUT``)."""
    ours, theirs = socket.socketpair()
    try:
        socket.send_fds(worker.link, [b"C"], [theirs.fileno()])
    except OSError:
        ours.close()
        return ""
    finally:
        theirs.close()
    ours.setblocking(False)
    reader, writer = await asyncio.open_unix_connection(sock=ours)
    try:
        writer.write(request)
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(), ROUTED_TIMEOUT)
    except (OSError, asyncio.TimeoutError):
        answer = b""
    finally:
        writer.close()
    return answer.decode("latin-1")


def _number(text: str) -> Optional[int]:
    return int(text) if text.isdigit() else None


# --- the master's commands -----------------------------------------------------------------------------

def _uptime(seconds: float) -> str:
    up = max(int(seconds), 0)
    return f"{up // 86400}d{(up % 86400) // 3600:02d}h{(up % 3600) // 60:02d}m{up % 60:02d}s"


def _show_proc(session: CliSession, args: list[str]) -> str:
    """mworker.c's cli_io_handler_show_proc(): the master, its current worker, the former ones still
    finishing; a worker's reloads are the master's since it started."""
    master = session.operations
    now = time.time()

    def row(pid: object, kind: str, reloads: object, started: float) -> str:
        return f"{pid!s:<15} {kind:<15} {reloads!s:<15} {_uptime(now - started):<15} {master.version:<15}\n"

    text = f"#{'<PID>':<14} {'<type>':<15} {'<reloads>':<15} {'<uptime>':<15} {'<version>':<15}\n"
    reloads = f"{master.reloads_done} [failed: {master.reloads_failed}]"
    text += row(os.getpid(), "master", reloads, master.started)
    former = [worker for worker in master.workers if worker is not master.current]
    text += "# workers\n"
    for worker in master.workers:
        if worker is master.current:
            text += row(worker.pid, "worker", master.reloads_done - worker.born_at, worker.started)
    if former:
        text += "# old workers\n"
        for worker in former:
            text += row(worker.pid, "worker", master.reloads_done - worker.born_at, worker.started)
    return text + "# programs\n"


def _reload(session: CliSession, args: list[str]) -> str:
    """As SIGUSR2 to the master; the connection ends (HAProxy's master re-executes itself)."""
    session.require(OPERATOR)
    session.operations.request_reload()
    session.closed = True
    return ""


def _routed(session: CliSession, args: list[str]) -> str:
    return ""  # never called: a request starting with '@' is routed before the table is looked at


def _command(words: str, usage: Optional[str], handler: Any = _routed) -> Command:
    return Command(tuple(words.split()), usage, handler)


def _show_cli_sockets(session: CliSession, args: list[str]) -> str:
    return ""  # HAProxy 2.6's master lists none (its -S sockets are not a stats socket's)


# The master's commands (ACCESS_MASTER in HAProxy), in its registration order (cli.c's, then
# mworker.c's), which breaks ties between equally close suggestions.  The '@' prefixes, prompt,
# quit, operator, user and experimental-mode are the session's own (MasterSession); they are here
# for help and the usage text.
_SHARED = {command.words: command for command in COMMANDS}  # the runtime API's, the same on the master

MASTER_COMMANDS: tuple[Command, ...] = (
    *(_SHARED[tuple(words.split())]
      for words in ("help", "prompt", "quit", "experimental-mode", "show cli level")),
    _command("show cli sockets", "show cli sockets                        : dump list of cli sockets",
             _show_cli_sockets),
    *(_SHARED[tuple(words.split())] for words in ("show version", "operator", "user")),
    Command(("@<relative pid>",), "@<relative pid>                         : send a command to the "
            "<relative pid> process", _routed),
    Command(("@!<pid>",), "@!<pid>                                 : send a command to the <pid> "
            "process", _routed),
    Command(("@master",), "@master                                 : send a command to the master "
            "process", _routed),
    _command("reload", "reload                                  : reload haproxy", _reload),
    _command("show proc", "show proc                               : show processes status", _show_proc),
)


# --- the sockets ---------------------------------------------------------------------------------------

def parse_master_socket(text: str) -> tuple[model.StatsSocket, list[str]]:
    """``-S <address>[,<option>,<value>...]``: a UNIX path or ``[ipv4@|ipv6@]host:port``, then bind
    options separated by commas (``mode``, ``uid``, ``gid``, ``user``, ``group``, ``level``), read as
    the ``stats socket`` line's; the socket and the warnings.  ValueError on bad input."""
    from .config.haproxy.global_ import master_cli_socket

    return master_cli_socket(text.split(","))


def master_cli(master: Any, sockets: Sequence[model.StatsSocket]) -> RuntimeApi:
    """The server of the ``-S`` sockets: the runtime API's, with the master's sessions and commands."""
    return RuntimeApi(model.Global(), MASTER_COMMANDS, master, sockets=sockets, session_class=MasterSession)
