"""The runtime API: HAProxy's stats socket (``stats socket`` in ``global``), its protocol and levels.

``CliSession`` is the protocol, sans-IO, as HAProxy 2.6's cli.c speaks it: bytes in, bytes out.  A
request is a line (``\\n``, ``\\r\\n``) or a part of one up to an unescaped ``;``; its words are split
on spaces and tabs, a backslash escapes the next character.  Each answer is followed by an empty line,
or by ``\\n> `` once ``prompt`` made the session interactive.  Without ``prompt`` the session ends
when no request is left to read; ``quit`` ends it at once; a request longer than a buffer (16 kB)
ends it without an answer.  Levels are ``user`` < ``operator`` < ``admin``: the socket's ``level``,
which ``operator`` and ``user`` lower for the session.  Unknown requests get HAProxy's usage text,
with the commands closest to what was typed (cli.c's cli_gen_usage_msg, word fingerprints and all).

``RuntimeApi`` serves the sockets on the event loop: one asyncio server per ``stats socket`` (a UNIX
socket made with its ``mode``/``uid``/``gid``, or TCP), ``stats maxconn`` connections at once over all
of them (past it a connection is closed at once), ``stats timeout`` of silence closes one.  The
commands themselves are in ``runtime_commands``; they reach the runtime through ``Operations``.
Nothing here runs per proxied connection, and a client of the API cannot hold the event loop: every
request is answered from what is in memory.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from dataclasses import dataclass
from typing import Any, Callable, Optional, Sequence

from .config import model
from .handover import STATS_BACKLOG, Opener, bind_listener, stats_socket_bind

log = logging.getLogger("fastproxy")

USER, OPERATOR, ADMIN = 1, 2, 3
LEVELS = {"user": USER, "operator": OPERATOR, "admin": ADMIN}
LEVEL_NAMES = {level: name for name, level in LEVELS.items()}
MAX_REQUEST = 16384 - 1  # a request fits in one buffer (tune.bufsize), less the trailing NUL
MAX_ARGS = 64  # cli.c MAX_CLI_ARGS
PREFIX_WORDS = 5  # cli.c CLI_PREFIX_KW_NB: the words of a command's keyword
MAX_MATCHES = 5  # cli.c CLI_MAX_MATCHES: close commands proposed for an unknown one
PERMISSION_DENIED = "Permission denied\n"
CLI_IDENT = 1 << 61  # ``show sess`` ids of the API's own connections (a pair's tag never has this bit)
ALWAYS_LISTED = (
    "  help [<command>]                        : list matching or all commands\n"
    "  prompt                                  : toggle interactive mode with prompt\n"
    "  quit                                    : disconnect\n")

Handler = Callable[["CliSession", list[str]], str]

# What a worker's connections from its master are served as: admin, as HAProxy's master-worker
# socket pair (the master lowers the level on each request it routes).
MASTER_LINK = model.StatsSocket(path="sockpair@", level="admin")


@dataclass(frozen=True)
class Command:
    """One command: its keyword words, HAProxy's usage line (None: not listed), and its handler,
    which returns the answer (each line ending with ``\\n``, as HAProxy's messages do)."""

    words: tuple[str, ...]
    usage: Optional[str]
    handler: Handler


def split_request(line: bytes) -> list[str]:
    """A request's words as cli.c's cli_parse_request() cuts them: on spaces and tabs, a backslash
    escaping the next character (and dropped), a NUL ending a word (or the request after a blank)."""
    def at(index: int) -> int:
        return line[index] if index < len(line) else 0

    words: list[str] = []
    p, end = 0, len(line)
    while len(words) < MAX_ARGS and p < end:
        while at(p) in (0x20, 0x09):
            p += 1
        if not at(p):
            break
        start = p
        while True:
            while at(p) not in (0x20, 0x09, 0x5C, 0):
                p += 1
            if at(p) != 0x5C:
                break
            p += 1  # past the backslash
            if not at(p):
                break
            p += 1  # past the escaped character
            if not at(p):
                break
        words.append(_unescape(line[start:p]).decode("latin-1"))
        p += 1  # the separator
    return words


def _unescape(raw: bytes) -> bytes:
    out = bytearray()
    k = 0
    while k < len(raw):
        byte = raw[k]
        if byte == 0x5C:
            if k + 1 < len(raw) and raw[k + 1] == 0x5C:
                out.append(0x5C)
                k += 2
                continue
            k += 1
            continue
        out.append(byte)
        k += 1
    return bytes(out)


# --- the usage message: cli.c's cli_gen_usage_msg ----------------------------------------------------

def _fingerprint(words: Sequence[str]) -> list[int]:
    """tools.c's update_word_fingerprint() over several words: letter-to-letter transitions counted
    in a 32x32 table (1..26 letters, 27 digits, 28 anything else and the word's ends)."""
    table = [0] * 1024
    for word in words:
        previous = 28
        for char in word.lower():
            if "a" <= char <= "z":
                current = ord(char) - ord("a") + 1
            elif "0" <= char <= "9":
                current = 27
            else:
                current = 28
            table[current] = 1
            table[32 * previous + current] = (table[32 * previous + current] + 1) & 0xFF
            previous = current
        table[32 * previous + 28] = (table[32 * previous + 28] + 1) & 0xFF
    return table


def _distance(a: list[int], b: list[int]) -> int:
    return sum(abs(x - y) for x, y in zip(a, b))


def usage_message(commands: Sequence[Command], args: Optional[list[str]], *, is_help: bool = False) -> str:
    """HAProxy's answer to ``help [words]`` and to an unknown request: the commands matching the
    words typed, the closest ones by word fingerprint, or all of them, sorted by usage."""
    args = list(args or [])
    if is_help:
        args = args[1:]
    length = 0
    for command in commands:
        for index, word in enumerate(command.words[:PREFIX_WORDS]):
            if index >= len(args) or not args[index] or word != args[index]:
                break
            length = max(length, index + 1)
    if is_help:
        text = "The following commands are valid at this level:\n"
    elif not length and (not args or not args[0]):
        text = "Unknown command. Please enter one of the following commands only:\n"
    else:
        text = "Unknown command, but maybe one of the following ones is a better match:\n"

    def matches_prefix(command: Command) -> bool:
        return len(command.words) >= length and list(command.words[:length]) == args[:length]

    matches: list[tuple[int, Command]] = []
    if length < len(args) and args[length]:
        typed = args[length:PREFIX_WORDS]
        typed = typed[:next((i for i, word in enumerate(typed) if not word), len(typed))]
        typed_print = _fingerprint(typed)
        for command in commands:
            if command.usage is None or not matches_prefix(command):
                continue
            rest = list(command.words[length:PREFIX_WORDS])
            total = sum(len(word) for word in typed) + sum(len(word) for word in rest)
            dist = _distance(typed_print, _fingerprint(rest))
            worst = matches[-1][0] if len(matches) == MAX_MATCHES else None
            if dist < 5 * total // 2 and (worst is None or dist < worst):
                if len(matches) == MAX_MATCHES:
                    matches.pop()
                position = len(matches)
                while position > 0 and matches[position - 1][0] > dist:
                    position -= 1
                matches.insert(position, (dist, command))
    if matches:
        best = matches[0][0]
        entries = [command for dist, command in matches if dist <= 5 * best // 2]
    else:
        entries = [command for command in commands if command.usage is not None and matches_prefix(command)]
    for command in sorted(entries, key=lambda c: c.usage or ""):
        text += f"  {command.usage}\n"
    return text + ALWAYS_LISTED


def find_command(commands: Sequence[Command], args: list[str]) -> Optional[Command]:
    """cli.c's cli_find_kw(): the first command whose words all start the request."""
    for command in commands:
        if len(args) >= len(command.words) and list(command.words) == args[:len(command.words)]:
            return command
    return None


# --- one session -------------------------------------------------------------------------------------

class CliSession:
    """One connection to the runtime API, sans-IO: ``receive`` takes what the client sent and returns
    what to send back; ``closed`` says the connection must end once that is sent."""

    def __init__(self, commands: Sequence[Command], level: int, operations: Any = None,
                 socket_config: Optional[model.StatsSocket] = None) -> None:
        self.commands = commands
        self.level = level
        self.operations = operations  # what the handlers act on (runtime_commands.Operations)
        self.socket = socket_config
        self.interactive = False
        self.no_newline = False  # ``operator -`` / ``user -``: no empty line after this answer
        self.experimental = False  # ``experimental-mode on``
        self.closed = False
        self.timeout: Optional[float] = None  # set by ``set timeout cli``
        self._buffer = bytearray()
        # What ``show sess`` shows of it, set by whoever serves the connection (RuntimeApi).
        self.ident = 0
        self.started = 0.0  # time.time() of the accept
        self.proto, self.source, self.fd = "unix_stream", "unix:1", -1
        self.abort: Callable[[], None] = lambda: None  # ``shutdown session``: cut the connection now
        self.expires_at: Optional[float] = None  # time.monotonic() when ``stats timeout`` ends it

    def timeout_left(self) -> Optional[float]:
        """Seconds before the idle timeout ends the connection (None: unknown)."""
        return None if self.expires_at is None else max(self.expires_at - time.monotonic(), 0.0)

    def receive(self, data: bytes) -> bytes:
        """Handle what arrived; the answers, in order.  Requests after ``quit`` or after the last
        one of a non-interactive session are not read."""
        if self.closed:
            return b""
        self._buffer += data
        out = bytearray()
        while not self.closed:
            line = self._next_request()
            if line is None:
                if len(self._buffer) >= MAX_REQUEST:  # no room left for the rest of the request
                    self.closed = True
                break
            out += self.execute(line).encode("latin-1", "replace")
            if not self.closed and not self.interactive and not self._buffer:
                self.closed = True
        return bytes(out)

    async def receive_async(self, data: bytes) -> bytes:
        """``receive`` for the server's loop (the master CLI's session awaits its workers' answers)."""
        return self.receive(data)

    def end_of_input(self) -> bytes:
        """The client closed its side: what is left unanswered is an incomplete request, dropped."""
        self.closed = True
        return b""

    def _next_request(self) -> Optional[bytes]:
        """The next request (without its ``\\n``, ``\\r\\n`` or ``;``), or None until one is complete."""
        buffer = self._buffer
        i, end = 0, min(len(buffer), MAX_REQUEST)
        while i < end:
            byte = buffer[i]
            if byte == 0x5C:  # an escaped delimiter does not end the request
                i += 2
                continue
            if byte in (0x0A, 0x3B):
                line = bytes(buffer[:i])
                del buffer[:i + 1]
                if byte == 0x0A and line.endswith(b"\r"):
                    line = line[:-1]
                return line
            i += 1
        return None

    def execute(self, line: bytes) -> str:
        """One request: its answer followed by the prompt."""
        self.no_newline = False
        args = split_request(line)
        answer = self.dispatch(args)
        if self.closed:
            return answer
        if self.interactive:
            return answer + "\n> "
        return answer if self.no_newline else answer + "\n"

    def dispatch(self, args: list[str]) -> str:
        command = find_command(self.commands, args) if args else None
        if command is None:
            return usage_message(self.commands, args)
        try:
            return command.handler(self, args)
        except CommandError as error:
            return error.message

    def require(self, level: int) -> None:
        """Stop the command with HAProxy's ``Permission denied`` below ``level``."""
        if self.level < level:
            raise CommandError(PERMISSION_DENIED)


class CommandError(Exception):
    """A command's error answer (HAProxy's cli_err): the message is the whole answer."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


# --- the sockets -------------------------------------------------------------------------------------

class RuntimeApi:
    """Serves the runtime API on every ``stats socket`` of the configuration."""

    def __init__(self, global_: model.Global, commands: Sequence[Command], operations: Any, *,
                 tick: Optional[Callable[[], None]] = None, open_listener: Optional[Opener] = None,
                 sockets: Optional[Sequence[model.StatsSocket]] = None,
                 session_class: type[CliSession] = CliSession) -> None:
        self.global_ = global_
        # The ``stats socket`` lines, or the master CLI's ``-S`` sockets and sessions (master_cli).
        self.sockets = list(global_.stats_sockets if sockets is None else sockets)
        self.session_class = session_class
        self.open_listener: Opener = open_listener or bind_listener  # a TCP socket's (handover.py)
        self.tick = tick  # called every second while serving (the stats' sampler)
        self._ticker: Optional[asyncio.TimerHandle] = None
        self.commands = commands
        self.operations = operations
        self.servers: list[asyncio.AbstractServer] = []
        self.connections: set[asyncio.Task] = set()
        # The socket files this process made, with their inodes: a reload's new worker renames its
        # own over the same path, which the old one must then leave alone when it stops.
        self._paths: list[tuple[str, int]] = []
        self.sessions: dict[int, CliSession] = {}  # the connections being served, by ident
        self._next_ident = 1
        if operations is not None and hasattr(operations, "cli_sessions"):
            operations.cli_sessions = self.sessions

    async def start(self) -> None:
        """Open every socket; on a failure none stays open (ConfigError-like OSError with the path)."""
        try:
            for config in self.sockets:
                self.servers.append(await self._open(config))
        except BaseException:
            await self.stop()
            raise
        if self.tick is not None:
            self._tick()

    def _tick(self) -> None:
        assert self.tick is not None
        try:
            self.tick()
        except Exception:
            log.exception("runtime API: sampling the stats failed")
        self._ticker = asyncio.get_running_loop().call_later(1.0, self._tick)

    async def _open(self, config: model.StatsSocket) -> asyncio.AbstractServer:
        def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            task = asyncio.ensure_future(self._serve(config, reader, writer))
            self.connections.add(task)
            task.add_done_callback(self.connections.discard)

        if config.path is not None:
            sock = unix_listener(config)
            self._paths.append((config.path, os.stat(config.path).st_ino))
        else:
            sock = self.open_listener(stats_socket_bind(config), STATS_BACKLOG)
        sock.setblocking(False)
        if config.path is not None:
            return await asyncio.start_unix_server(serve, sock=sock, limit=MAX_REQUEST + 1)
        return await asyncio.start_server(serve, sock=sock, limit=MAX_REQUEST + 1)

    async def serve_master(self, sock: socket.socket) -> None:
        """One connection from the master CLI (``@1 <command>``, master_cli.py), at the level the
        master lowers it to (it says ``operator -`` or ``user -`` first), counted like the others."""
        reader, writer = await asyncio.open_unix_connection(sock=sock, limit=MAX_REQUEST + 1)
        task = asyncio.current_task()
        assert task is not None
        self.connections.add(task)
        try:
            await self._serve(MASTER_LINK, reader, writer)
        finally:
            self.connections.discard(task)

    async def _serve(self, config: model.StatsSocket, reader: asyncio.StreamReader,
                     writer: asyncio.StreamWriter) -> None:
        session: Optional[CliSession] = None
        try:
            if len(self.connections) > self.global_.stats_maxconn:
                return  # past ``stats maxconn``: closed at once, as HAProxy's full listener refuses
            session = self.session_class(self.commands, LEVELS[config.level], self.operations, config)
            self._describe(session, config, writer)
            self.sessions[session.ident] = session
            while not session.closed:
                timeout = session.timeout or self.global_.stats_timeout
                session.expires_at = time.monotonic() + timeout if timeout else None
                try:
                    data = await asyncio.wait_for(reader.read(65536), timeout)
                except asyncio.TimeoutError:
                    break
                if not data:
                    session.end_of_input()
                    break
                answer = await session.receive_async(data)
                if answer:
                    writer.write(answer)
                    try:
                        await asyncio.wait_for(writer.drain(), timeout)
                    except asyncio.TimeoutError:
                        break
        except (ConnectionError, OSError):
            pass
        except Exception:  # a bug in a command must not take the API down
            log.exception("runtime API session failed")
        finally:
            if session is not None:
                self.sessions.pop(session.ident, None)
            writer.close()

    def _describe(self, session: CliSession, config: model.StatsSocket, writer: asyncio.StreamWriter) -> None:
        session.ident = CLI_IDENT | self._next_ident
        self._next_ident += 1
        session.started = time.time()
        session.fd = _fd_of(writer)
        if config is MASTER_LINK:
            session.source = "sockpair@"
        else:
            session.source = f"unix:{self.sockets.index(config) + 1}"
        if config.path is None:
            peer = writer.get_extra_info("peername")
            session.proto = "tcpv6" if peer and ":" in peer[0] else "tcpv4"
            session.source = f"{peer[0]}:{peer[1]}" if peer else "?"
        session.abort = writer.transport.abort

    async def stop(self) -> None:
        if self._ticker is not None:
            self._ticker.cancel()
            self._ticker = None
        for server in self.servers:
            server.close()
        for task in list(self.connections):
            task.cancel()
        if self.connections:
            await asyncio.gather(*self.connections, return_exceptions=True)
        for server in self.servers:
            await server.wait_closed()
        self.servers.clear()
        for path, inode in self._paths:
            try:
                if os.stat(path).st_ino == inode:
                    os.unlink(path)
            except OSError:
                pass
        self._paths.clear()


def _fd_of(writer: asyncio.StreamWriter) -> int:
    sock = writer.get_extra_info("socket")
    return sock.fileno() if sock is not None else -1


def unix_listener(config: model.StatsSocket) -> socket.socket:
    """A UNIX listener at ``config.path`` with its mode and owner, made as HAProxy makes it: bound
    under a temporary name, then renamed over whatever was there (a stale socket of a former run)."""
    assert config.path is not None
    path = config.path
    temporary = f"{path}.{os.getpid()}.tmp"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        try:
            os.unlink(temporary)
        except FileNotFoundError:
            pass
        sock.bind(temporary)
        # Owner, then mode, as HAProxy's sock_unix_bind_receiver sets them (a chown may clear bits).
        if config.uid is not None or config.gid is not None:
            os.chown(temporary, -1 if config.uid is None else config.uid,
                     -1 if config.gid is None else config.gid)
        if config.mode is not None:
            os.chmod(temporary, config.mode)
        sock.listen(STATS_BACKLOG)
        os.rename(temporary, path)
    except OSError:
        sock.close()
        try:
            os.unlink(temporary)
        except OSError:
            pass
        raise
    return sock
