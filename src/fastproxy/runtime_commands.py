"""The runtime API's commands (HAProxy 2.6's, management.txt §9.3), each at HAProxy's level and with
its answers, errors included, word for word.

``COMMANDS`` is the table ``runtime_api.CliSession`` dispatches on; each handler takes the session
and the request's words and returns the answer.  Handlers read and change the running configuration
only through ``operations.Operations``: server states through ``servers.ServerStates`` (which tells
the balancer, whose ``on_change`` reaches the lanes at once), weights through the balancer, sessions
through the pump; statistics are computed by ``stats`` from the pump's counters when asked.
"""

from __future__ import annotations

import logging
import os
import re
import socket
import time
from typing import Any, Optional

from . import _linux, continued_counters, listener_transfer, server_state, stats, sticktables, streams
from .operations import Operations
from .config.haproxy.servers import runtime_server
from .c_integers import atoi, decimal, signed
from .errors import FastproxyError
from .pump import Counter
from .runtime import AdminState, ServerRuntime
from .servers import change_address, change_weight
from .server import LaneListener
from .runtime_api import (ADMIN, LEVEL_NAMES, MASTER_LINK, OPERATOR, USER, CliSession, Command, CommandError,
                          usage_message)
from .sticktables import StickTable

__all__ = ["COMMANDS", "Operations"]  # Operations lives in ``operations``, shared with the stats page
ULONG_MAX = 2**64 - 1  # where strtoul() stops
MAX_TIMEOUT = 2147483  # seconds: HAProxy's timers hold 2^31-1 ms

log = logging.getLogger("fastproxy")


def _ops(session: CliSession) -> Operations:
    return session.operations


# --- the session's own commands --------------------------------------------------------------------

def show_help(session: CliSession, args: list[str]) -> str:
    return usage_message(session.commands, args, is_help=True)


def toggle_prompt(session: CliSession, args: list[str]) -> str:
    session.interactive = not session.interactive
    return ""


def quit_session(session: CliSession, args: list[str]) -> str:
    session.closed = True
    return ""


def lower_level(level: int):
    def handler(session: CliSession, args: list[str]) -> str:
        if len(args) > 1 and args[1] == "-":
            session.no_newline = True
        session.require(level)
        session.level = level
        return ""
    return handler


def show_cli_level(session: CliSession, args: list[str]) -> str:
    return LEVEL_NAMES.get(session.level, "unknown") + "\n"


def _show_cli_sockets(session: CliSession, args: list[str]) -> str:
    lines = ["# socket lvl processes\n"]
    for config in _ops(session).state.config.global_.stats_sockets:
        lines.append(f"{config.address} {config.level} all\n")
    return "".join(lines)


def _getsocks(session: CliSession, args: list[str]) -> str:
    """``_getsocks``: the listening sockets to a new process started with ``-x`` (listener_transfer),
    on a socket with ``expose-fd listeners`` only; the connection ends either way."""
    session.closed = True
    if session.socket is None or not session.socket.expose_fd_listeners or session.fd < 0:
        return ""
    listening = [listener.sock for listener in _ops(session).state.listeners()]
    connection = socket.socket(fileno=os.dup(session.fd))
    try:
        listener_transfer.send_sockets(connection, listening)
    except (OSError, listener_transfer.TransferError) as exc:
        log.warning("_getsocks: %s", exc)
    finally:
        connection.close()
    return ""


def _from_master(session: CliSession, args: list[str]) -> None:
    """The master's own requests (a reload's), on its link to this worker only: on a stats socket
    they are unknown commands, as HAProxy has none of them."""
    if session.socket is not MASTER_LINK:
        raise CommandError(usage_message(session.commands, args))
    session.require(ADMIN)


def _counters(session: CliSession, args: list[str]) -> str:
    """``_counters``: this worker's totals, for the master to carry to the next (continued_counters)."""
    _from_master(session, args)
    return continued_counters.encode(continued_counters.totals(_ops(session))) + "\n"


def _add_counters(session: CliSession, args: list[str]) -> str:
    """``_addcounters <totals>``: a former worker's totals added to this one's."""
    _from_master(session, args)
    try:
        carried = continued_counters.decode(" ".join(args[1:]))
    except ValueError as exc:
        raise CommandError(f"_addcounters: {exc}\n") from None
    continued_counters.add(_ops(session), carried)
    return ""


def _added_servers(session: CliSession, args: list[str]) -> str:
    """``_addedservers``: the ``add server`` requests of the servers added at run time, one a line
    (their words escaped as the request splitter reads them), for a reload's new worker."""
    _from_master(session, args)
    return "".join("add server " + " ".join(_escaped(word) for word in words) + "\n"
                   for words in _ops(session).added_servers.values())


def _escaped(word: str) -> str:
    return "".join("\\" + char if char in " \t\\;" else char for char in word)


def _prepared(session: CliSession, args: list[str]) -> str:
    """``_prepared``: the master has prepared this reload's new worker (the servers the former one
    added at run time added again, their states and the counters carried).  It tells the former
    worker which routes it has (the pairs that fit them move to it, handover.py) and accepts from now
    on (it listened without accepting, service.py); nothing for a worker that is no reload's."""
    _from_master(session, args)
    ops = _ops(session)
    if ops.pairs_from is not None:
        try:
            ops.pairs_from.send_routes()
        except OSError as exc:
            log.warning("handover: cannot send the routes to the former worker: %s", exc)
    if ops.prepared is not None:
        ops.prepared()
    return ""


def _load_state(session: CliSession, args: list[str]) -> str:
    """``_loadstate <file>``: a saved ``show servers state`` applied to the servers added at run
    time (the master's, after it added the former worker's servers again)."""
    _from_master(session, args)
    server_state.carry(_ops(session), " ".join(args[1:]), added_only=True)
    return ""


def _show_version(session: CliSession, args: list[str]) -> str:
    return f"{_ops(session).version}\n"


def _set_timeout(session: CliSession, args: list[str]) -> str:
    if len(args) < 3 or args[2] != "cli":
        raise CommandError("'set timeout' only supports 'cli'.\n")
    if len(args) < 4:
        raise CommandError("Expects an integer value.\n")
    match = re.fullmatch(r"([0-9]+)(us|ms|s|m|h|d)?", args[3])
    if not match:
        raise CommandError("Invalid timeout value.\n")
    scale = {"us": 1e-6, "ms": 1e-3, None: 1, "s": 1, "m": 60, "h": 3600, "d": 86400}[match[2]]
    seconds = decimal(match[1]) * scale
    if not 1 <= seconds <= MAX_TIMEOUT:  # HAProxy's parse_time_err() reports an overflow
        raise CommandError("Invalid timeout value.\n")
    session.timeout = seconds
    return ""


# --- statistics --------------------------------------------------------------------------------------

def _show_info(session: CliSession, args: list[str]) -> str:
    values = _ops(session).info()
    if "json" in args[2:]:
        return stats.info_json(values)
    if "typed" in args[2:]:
        return stats.info_typed(values)
    return stats.info_text(values)[:-1]  # the empty line is the prompt's


def _show_stat(session: CliSession, args: list[str]) -> str:
    ops = _ops(session)
    proxy_id, types, server_id = -1, -1, -1
    rest = args[2:]
    if len(rest) >= 3:
        proxy = ops.proxy(rest[0])
        proxy_id = proxy.uuid if proxy is not None else atoi(rest[0])
        if not proxy_id:
            raise CommandError("No such proxy.\n")
        types, server_id = atoi(rest[1]), atoi(rest[2])
        rest = rest[3:]
    hide_down, hide_maint = "up" in rest, "no-maint" in rest
    view = ops.stats_view(show_addresses=session.level >= OPERATOR)
    rows = stats.rows(view, ops.proxies, proxy_id=proxy_id, types=types, server_id=server_id)
    if hide_down or hide_maint:
        rows = stats.hide_servers(rows, ops.proxies, down=hide_down, maint=hide_maint)
    if "json" in rest:
        return stats.json_stat(rows)
    if "typed" in rest:
        return stats.typed(rows)
    return stats.csv(rows)[:-1]


def _show_backend(session: CliSession, args: list[str]) -> str:
    return "# name\n" + "".join(f"{proxy.name}\n" for proxy in _ops(session).proxies
                                if proxy.backend is not None)


def _show_servers_state(session: CliSession, args: list[str]) -> str:
    ops = _ops(session)
    proxies = ops.proxies
    if len(args) > 3 and args[3]:
        proxy = ops.backend_proxy(args[3])
        if proxy is None:
            raise CommandError("Can't find backend.\n")
        proxies = [proxy]
    return stats.servers_state(proxies, ops.now())[:-1]


def _clear_counters(session: CliSession, args: list[str]) -> str:
    session.require(OPERATOR)
    everything = len(args) > 2 and args[2] == "all"
    if everything:
        session.require(ADMIN)
    ops = _ops(session)
    ops.sampler.clear()
    for queue in _all_queues(ops):
        queue.max = queue.length
    if everything:
        state = ops.state
        blocks = [fe.block for fe in state.frontends.values()] + list(state.servers)
        for block in blocks:
            ops.cleared[block] = tuple(ops.pump.counters(block))
        for block in list(state.servers) + [backend.block for backend in state.backends.values()]:
            ops.pump.clear_times(block)
        for server in state.servers.values():
            server.check.failed_checks = 0
            server.check.went_down = 0
        for backend in state.backends.values():
            backend.went_down = 0
    return ""


def _all_queues(ops: Operations) -> list[Any]:
    queues = []
    for backend in ops.state.backends.values():
        queues.append(backend.queues.backend)
        queues.extend(backend.queues.servers)
    return queues


# --- sessions ----------------------------------------------------------------------------------------

def _streams(ops: Operations) -> list[streams.Stream]:
    """Every connection now: the pump's pairs (lanes' included) and the runtime API's own, oldest
    first, as HAProxy lists its streams."""
    state, now = ops.state, time.time()
    backends_by_block = {backend.block: backend for backend in state.backends.values()}
    found = []
    for info in ops.pump.pairs():
        session = ops.pairs.get(info.tag)
        server = state.servers.get(info.server_block)
        frontend = state.frontend_blocks.get(info.frontend_block)
        backend = server.backend if server is not None else backends_by_block.get(info.backend_block)
        if session is not None:
            backend = session.backend or backend
            peer = session.peername
        else:
            peer = _linux.peer_address(info.peer) if info.peer else ("", 0)
        host, port = (peer[0], peer[1]) if isinstance(peer, tuple) else (str(peer), 0)
        frontend_proxy = ops.proxy(frontend.name) if frontend is not None else None
        backend_proxy = ops.backend_proxy(backend.name) if backend is not None else None
        found.append(streams.Stream(
            ident=info.tag, proto="tcpv6" if ":" in host else "tcpv4", source=f"{host}:{port}",
            frontend=frontend.name if frontend is not None else "?",
            backend=backend.name if backend is not None else None,
            server=server.slot.name if server is not None else None,
            accepted=now - info.age_ms / 1000, client_fd=info.client_fd, server_fd=info.server_fd,
            connecting=info.connecting, client_expires_ms=info.client_expires_ms,
            server_expires_ms=info.server_expires_ms, pending_in=info.pending_in,
            pending_out=info.pending_out, bytes_in=info.bytes_in, bytes_out=info.bytes_out,
            frontend_id=frontend_proxy.uuid if frontend_proxy is not None else 0,
            backend_id=backend_proxy.uuid if backend_proxy is not None else -1,
            server_id=server.slot.id if server is not None else -1,
            server_address=_address_text(server.address) if server is not None else "",
            retries=max(session.attempt - 1, 0) if session is not None else 0))
    for cli in ops.cli_sessions.values():
        left = cli.timeout_left()
        expires = int(left * 1000) if left is not None else -1
        found.append(streams.Stream(ident=cli.ident, proto=cli.proto, source=cli.source, frontend="GLOBAL",
                                    backend=None, server=None, accepted=cli.started, client_fd=cli.fd,
                                    client_expires_ms=expires))
    found.sort(key=lambda stream: stream.accepted)
    return found


def _address_text(address: tuple) -> str:
    host, port = address[0], address[1]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _show_sess(session: CliSession, args: list[str]) -> str:
    """stream.c's cli_parse_show_sess(): every connection in one line each, or one (``show sess
    <id>``) or all (``show sess all``) in the long form."""
    session.require(OPERATOR)
    ops, now = _ops(session), time.time()
    target = args[2] if len(args) > 2 else ""
    found = _streams(ops)
    if target == "all":
        return "".join(streams.long_form(stream, now) for stream in found)
    ident = _strtoul(target)
    if ident:
        stream = next((stream for stream in found if stream.ident == ident), None)
        return streams.long_form(stream, now) if stream is not None else "Session not found.\n"
    return "".join(streams.short_line(stream, now) for stream in found)


def _shutdown_session(session: CliSession, args: list[str]) -> str:
    """stream.c's cli_parse_shutdown_session(): the connection ends as HAProxy's killed ones (KD)."""
    session.require(ADMIN)
    ident = _strtoul(args[2] if len(args) > 2 else "")
    if not ident:
        raise CommandError("Session pointer expected (use 'show sess').\n")
    ops = _ops(session)
    cli = ops.cli_sessions.get(ident)
    if cli is not None:
        cli.abort()
        return ""
    if not any(info.tag == ident for info in ops.pump.pairs()):
        raise CommandError("No such session (use 'show sess').\n")
    ops.pump.cut_pair(ident)
    return ""


def _strtoul(text: str) -> int:
    """C's strtoul(text, NULL, 0): the leading number in base 16 (0x), 8 (0) or 10, else 0."""
    match = re.match(r"\s*[+]?(0[xX][0-9a-fA-F]+|0[0-7]*|[1-9][0-9]*)", text)
    if not match:
        return 0
    number = match[1]
    if number[:2].lower() == "0x":
        return min(int(number, 16), ULONG_MAX)  # (power-of-two bases have no digit limit in Python)
    return min(int(number, 8), ULONG_MAX) if number.startswith("0") else decimal(number, ULONG_MAX)


# --- servers -----------------------------------------------------------------------------------------

def _find_server(session: CliSession, text: str) -> ServerRuntime:
    """cli.c's cli_find_server(): ``backend/server``, with HAProxy's three errors."""
    if not text or "/" not in text:
        raise CommandError("Require 'backend/server'.\n")
    backend_name, _, server_name = text.partition("/")
    proxy = _ops(session).backend_proxy(backend_name)
    if proxy is None or proxy.backend is None:
        raise CommandError("No such backend.\n")
    for server in proxy.backend.servers:
        if server.slot.name == server_name and not server.slot.deleted:
            return server
    raise CommandError("No such server.\n")


def _get_weight(session: CliSession, args: list[str]) -> str:
    server = _find_server(session, args[2] if len(args) > 2 else "")
    return f"{server.slot.user_weight} (initial {server.slot.server.weight})\n"


def _set_weight(session: CliSession, args: list[str]) -> str:
    session.require(ADMIN)
    server = _find_server(session, args[2] if len(args) > 2 else "")
    message = change_weight(server, args[3] if len(args) > 3 else "")
    if message is not None:
        raise CommandError(message)
    return ""


# --- frontends ---------------------------------------------------------------------------------------

def _find_frontend(session: CliSession, args: list[str], at: int = 2) -> Any:
    """proxy.c's cli_find_frontend(): the frontend named by the request's word ``at`` (its third by
    default, as the frontend commands; ``set maxconn frontend`` names it fourth)."""
    session.require(ADMIN)
    name = args[at] if len(args) > at else ""
    if not name:
        raise CommandError("A frontend name is expected.\n")
    frontend = _ops(session).state.frontends.get(name)
    if frontend is None:
        raise CommandError("No such frontend.\n")
    return frontend


def _enable_frontend(enable: bool):
    """proxy.c's cli_parse_enable_frontend() / cli_parse_disable_frontend(): accepting pauses (clients
    wait in the backlog) or resumes; established connections go on."""
    def handler(session: CliSession, args: list[str]) -> str:
        frontend = _find_frontend(session, args)
        verb = "enable" if enable else "disable"
        if frontend.state == "STOP":
            raise CommandError(f"Frontend was previously shut down, cannot {verb}.\n")
        if frontend.state == ("OPEN" if enable else "PAUSED"):
            raise CommandError(f"All sockets are already {verb}d.\n")
        try:
            frontend.set_enabled(enable)
        except OSError as exc:
            log.warning("frontend %s: cannot listen again: %s", frontend.name, exc)
            raise CommandError("Failed to resume frontend, check logs for precise cause (port "
                               "conflict?).\n") from None
        return ""
    return handler


def _shutdown_frontend(session: CliSession, args: list[str]) -> str:
    """proxy.c's cli_parse_shutdown_frontend(): its listeners close for good; its connections go on."""
    frontend = _find_frontend(session, args)
    if frontend.state == "STOP":
        raise CommandError("Frontend was already shut down.\n")
    frontend.state = "STOP"
    for listener in frontend.listeners:
        listener.close()
    return ""


def experimental_mode(session: CliSession, args: list[str]) -> str:
    """cli.c's cli_parse_expert_experimental_mode(): fastproxy has no experimental commands, so the
    mode only says what it is (``experimental-mode on; add server ...`` works as in HAProxy)."""
    session.require(ADMIN)
    if len(args) > 2 and args[2] == "-":  # ``experimental-mode on -``: the master CLI routing
        session.no_newline = True
    if len(args) < 2 or not args[1]:
        return f"experimental-mode is {'ON' if session.experimental else 'OFF'}\n"
    session.experimental = args[1] == "on"
    return ""


# --- limits ------------------------------------------------------------------------------------------

def _set_maxconn_server(session: CliSession, args: list[str]) -> str:
    """server.c's cli_parse_set_maxconn_server() (its message without a newline, as HAProxy's)."""
    session.require(ADMIN)
    server = _find_server(session, args[3] if len(args) > 3 else "")
    text = args[4] if len(args) > 4 else ""
    if not text:
        raise CommandError("Require <maxconn>.\n")
    match = re.match(r"\s*([-+]?[0-9]+)", text)
    if not match:
        raise CommandError("maxconn string empty or preceded by garbage")
    if text[match.end():]:
        raise CommandError("Trailing garbage in maxconn string")
    if server.backend.lanes:
        # A lane dials without Python and cannot hold a server to a limit: refused, not ignored.
        raise CommandError("fastproxy: a server's maxconn cannot change on a backend served by lanes "
                           "(give the frontend a rule or 'maxconn' on the server in the file).\n")
    server.backend.balancer.set_maxconn(server.slot.name, atoi(match[1]))
    return ""


def _set_maxconn_frontend(session: CliSession, args: list[str]) -> str:
    """proxy.c's cli_parse_set_maxconn_frontend()."""
    frontend = _find_frontend(session, args, 3)
    if len(args) < 5 or not args[4]:
        raise CommandError("Integer value expected.\n")
    value = atoi(args[4])
    if value < 0:
        raise CommandError("Value out of range.\n")
    frontend.maxconn, frontend.maxconn_set = value, True
    for listener in frontend.listeners:
        if isinstance(listener, LaneListener):
            _ops(session).pump.lanes.set_maxconn(listener.index, value)
    _limits_changed(_ops(session))
    return ""


def _set_maxconn_global(session: CliSession, args: list[str]) -> str:
    """cli.c's cli_parse_set_maxconn_global(): 0 or less is the hard limit (the file's maxconn)."""
    session.require(ADMIN)
    if len(args) < 4 or not args[3]:
        raise CommandError("Expects an integer value.\n")
    ops = _ops(session)
    hard = ops.state.config.global_.maxconn or 0
    value = atoi(args[3])
    if hard and value > hard:
        raise CommandError("Value out of range.\n")
    ops.state.maxconn = value if value > 0 else hard
    if ops.pump.lanes is not None:
        ops.pump.lanes.maxconn = ops.state.maxconn
    _limits_changed(ops)
    return ""


def _limits_changed(ops: Operations) -> None:
    if ops.admission is not None:
        ops.admission.limits_changed()


# --- add server, del server ----------------------------------------------------------------------

# What a lane cannot do for a server (lanes.lane_backend keeps such backends off the lanes at start).
_NOT_ON_LANES = ("maxconn", "minconn", "maxqueue", "send_proxy", "send_proxy_v2", "slowstart")


def _backend_and_name(session: CliSession, text: str) -> tuple[Any, str]:
    """server.c's parsing of ``<backend>/<server>`` for add and del server (messages without a
    newline where HAProxy writes none)."""
    backend_name, _, name = text.partition("/")
    if not backend_name or not name:
        raise CommandError("Require 'backend/server'.")
    proxy = _ops(session).backend_proxy(backend_name)
    if proxy is None or proxy.backend is None:
        raise CommandError("No such backend.")
    return proxy.backend, name


def _add_server(session: CliSession, args: list[str]) -> str:
    """server.c's cli_parse_add_server(): a new server of a backend with a dynamic algorithm, in
    maintenance until ``set server ... state ready``, with a fresh id."""
    session.require(ADMIN)
    ops = _ops(session)
    backend, name = _backend_and_name(session, args[2] if len(args) > 2 else "")
    balance = backend.model.balance
    if balance.algorithm == "static-rr" or (balance.algorithm in ("source", "hash")
                                            and balance.hash_type == "map-based"):
        raise CommandError("Backend must use a dynamic load balancing to support dynamic servers.")
    if len(args) < 4 or not args[3]:
        raise CommandError("'server' expects <name> and <addr>[:<port>] as arguments.\n")
    try:
        server = runtime_server(name, args[3], args[4:])
    except ValueError as exc:
        raise CommandError(f"{exc}\n") from None
    if any(s.slot.name == name and not s.slot.deleted for s in backend.servers):
        raise CommandError("Already exists a server with the same name in backend.\n")
    if server.id is not None and any(s.slot.id == server.id and not s.slot.deleted for s in backend.servers):
        raise CommandError(f"custom id {server.id} already used.\n")
    if backend.lanes and (not server.port or any(getattr(server, kw) for kw in _NOT_ON_LANES)):
        # Refused rather than ignored: the backend's lanes dial without Python.
        raise CommandError("fastproxy: this server needs Python per connection (maxconn, minconn, "
                           "maxqueue, send-proxy, slowstart or no port), which its backend's lanes "
                           "cannot give.\n")
    if ops.add_server is None:
        raise CommandError("fastproxy: servers cannot be added here.\n")
    try:
        ops.add_server(backend, server)
    except (ValueError, FastproxyError) as exc:
        raise CommandError(f"{exc}\n") from None
    ops.added_servers[f"{backend.name}/{name}"] = args[2:]
    return "New server registered.\n"


def _del_server(session: CliSession, args: list[str]) -> str:
    """server.c's cli_parse_delete_server(): only a server in maintenance without connections (one a
    ``track`` points to could not be, but fastproxy refuses ``track``)."""
    session.require(ADMIN)
    ops = _ops(session)
    backend, name = _backend_and_name(session, args[2] if len(args) > 2 else "")
    server = next((s for s in backend.servers if s.slot.name == name and not s.slot.deleted), None)
    if server is None:
        raise CommandError("No such server.")
    if server.admin is not AdminState.MAINT:
        raise CommandError("Only servers in maintenance mode can be deleted.")
    counts = ops.pump.counters(server.block)
    if counts[Counter.CONN_CUR] or server.slot.current or server.slot.queued:
        raise CommandError("Server still has connections attached to it, cannot remove it.")
    ops.delete_server(server)
    ops.added_servers.pop(f"{backend.name}/{name}", None)
    return "Server deleted."


_SET_SERVER_USAGE = ("usage: set server <backend>/<server> addr | agent | agent-addr | agent-port | "
                     "agent-send | check-addr | check-port | fqdn | health | ssl | state | weight\n")
_NOT_SUPPORTED = ("agent", "agent-addr", "agent-port", "agent-send", "check-addr", "check-port",
                  "fqdn", "ssl")


def _set_server(session: CliSession, args: list[str]) -> str:
    session.require(ADMIN)
    server = _find_server(session, args[2] if len(args) > 2 else "")
    what = args[3] if len(args) > 3 else ""
    value = args[4] if len(args) > 4 else ""
    ops = _ops(session)
    if what == "addr":
        if not value:
            raise CommandError("set server <b>/<s> addr requires an address and optionally a port.\n")
        port = (args[6] if len(args) > 6 else "") if len(args) > 5 and args[5] == "port" else None
        return change_address(server, value, port)
    if what == "weight":
        message = change_weight(server, value)
        if message is not None:
            raise CommandError(message)
    elif what == "state":
        states = {"ready": "UP", "drain": "DRAIN", "maint": "MAINT"}
        if value not in states:
            raise CommandError("'set server <srv> state' expects 'ready', 'drain' and 'maint'.\n")
        _set_admin(ops, server, states[value])
    elif what == "health":
        if value not in ("up", "stopping", "down"):
            raise CommandError("'set server <srv> health' expects 'up', 'stopping', or 'down'.\n")
        ops.servers.set_health(server, value)
    elif what in _NOT_SUPPORTED:
        raise CommandError(f"'set server <srv> {what}' is not supported by fastproxy.\n")
    else:
        raise CommandError(_SET_SERVER_USAGE)
    return ""


def _set_admin(ops: Operations, server: ServerRuntime, state: str) -> None:
    ops.set_admin(server, state)


def _enable_server(enable: bool):
    def handler(session: CliSession, args: list[str]) -> str:
        session.require(ADMIN)
        server = _find_server(session, args[2] if len(args) > 2 else "")
        _set_admin(_ops(session), server, "UP" if enable else "MAINT")
        return ""
    return handler


def _enable_health(enable: bool):
    def handler(session: CliSession, args: list[str]) -> str:
        session.require(ADMIN)
        server = _find_server(session, args[2] if len(args) > 2 else "")
        _ops(session).servers.set_checks(server, enable)
        return ""
    return handler


def _shutdown_sessions(session: CliSession, args: list[str]) -> str:
    session.require(ADMIN)
    server = _find_server(session, args[3] if len(args) > 3 else "")
    _ops(session).pump.cut_server(server.block)
    return ""


# --- stick tables (show|clear|set table, as HAProxy 2.6's stick_table.c answers them) ---------------

_TABLE_OPERATORS = {"eq": lambda a, b: a == b, "ne": lambda a, b: a != b, "le": lambda a, b: a <= b,
                    "ge": lambda a, b: a >= b, "lt": lambda a, b: a < b, "gt": lambda a, b: a > b}
_TABLE_FILTERS = 4  # HAProxy's STKTABLE_FILTER_LEN
_KEY_ACTIONS = {"show": "Showing keys from", "clear": "Removing keys from", "set": "Inserting keys into"}


def _table_filters(table: StickTable, args: list[str]) -> list[tuple[str, Any, int]]:
    """``data.<type> <op> <value>`` filters from ``args[3]`` on, checked as HAProxy does."""
    filters = []
    i = 0
    for i in range(_TABLE_FILTERS):
        first = 3 + 3 * i
        if i > 0 and not _arg(args, first):
            break
        name = _arg(args, first)[5:]
        if name not in sticktables.DATA_TYPES:
            raise CommandError(f"Filter entry #{i + 1}: Unknown data type\n")
        if not table.stores_legacy(name):  # an array's elements cannot be named here (HAProxy 2.6)
            raise CommandError(f"Filter entry #{i + 1}: Data type not stored in this table\n")
        operator = _TABLE_OPERATORS.get(_arg(args, first + 1))
        if operator is None:
            raise CommandError(f"Filter entry #{i + 1}: Require and operator among \"eq\", \"ne\", \"le\", "
                               "\"ge\", \"lt\", \"gt\"\n")
        value = _arg(args, first + 2)
        if not re.fullmatch(r"-?[0-9]+", value):
            raise CommandError(f"Filter entry #{i + 1}: Require a valid integer value to compare against\n")
        filters.append((name, operator, signed(value)))
    else:
        i = _TABLE_FILTERS
    if _arg(args, 3 + 3 * i):
        raise CommandError(f"Detected extra data in filter, {3 + 3 * i + 1}th word of input, after "
                           f"'{args[2 + 3 * i]}'\n")
    return filters


def _arg(args: list[str], index: int) -> str:
    return args[index] if index < len(args) else ""


def _table_key(table: StickTable, action: str, args: list[str]) -> Any:
    text = _arg(args, 4)
    if not text:
        raise CommandError("Key value expected\n")
    if table.type == "binary":
        raise CommandError(f"{_KEY_ACTIONS[action]} tables of type other than ip, ipv6, string and integer "
                           "is not supported\n")
    key = table.parse_key(text)
    if key is None:
        raise CommandError("Invalid key\n")
    return key


def _matching(table: StickTable, filters: list[tuple[str, Any, int]]) -> list[sticktables.Entry]:
    return [entry for entry in table
            if all(operator(table.read(entry, name), value) for name, operator, value in filters)]


def _table_request(action: str):
    def handler(session: CliSession, args: list[str]) -> str:
        ops = _ops(session)
        name = _arg(args, 2)
        if not name:
            if action == "show":
                return "".join(f"{table.header()}\n" for table in ops.tables())
            if action == "clear":
                raise CommandError("Required arguments: <table> \"data.<store_data_type>\" <operator> "
                                   "<value> or <table> key <key>\n")
            raise CommandError("Required arguments: <table> key <key> [data.<store_data_type> <value>]*\n")
        table = ops.state.tables.get(name)
        if table is None:
            raise CommandError("No such table\n")
        if action == "set":
            session.require(OPERATOR)
        selector = _arg(args, 3)
        if selector == "key":
            return _table_entry(session, table, action, args)
        if action == "set":
            if selector:
                raise CommandError("\"data.<type>\" followed by a value expected\n")
            return ""
        if selector.startswith("data."):
            entries = _matching(table, _table_filters(table, args))
        elif selector:
            if action == "show":
                raise CommandError("Optional argument only supports \"data.<store_data_type>\" <operator> "
                                   "<value> and key <key>\n")
            raise CommandError("Required arguments: <table> \"data.<store_data_type>\" <operator> <value> "
                               "or <table> key <key>\n")
        else:
            entries = list(table)
        if action == "clear":
            for entry in entries:
                table.remove(entry.key)
            return ""
        return "".join([f"{table.header()}\n"] + [f"{table.dump(entry)}\n" for entry in entries])
    return handler


def _table_entry(session: CliSession, table: StickTable, action: str, args: list[str]) -> str:
    """``show|clear|set table <t> key <k> ...``: one entry."""
    key = _table_key(table, action, args)
    if action == "show":
        entry = table.lookup(key)
        return f"{table.header()}\n{table.dump(entry)}\n" if entry is not None else ""
    if action == "clear":
        table.remove(key)
        return ""
    entry = table.get(key)
    if entry is None:
        raise CommandError("Unable to allocate a new entry\n")
    try:
        for index in range(5, len(args), 2):
            word = args[index]
            if not word.startswith("data."):
                raise CommandError("\"data.<type>\" followed by a value expected\n")
            data = word[5:]
            if data not in sticktables.DATA_TYPES:
                raise CommandError("Unknown data type\n")
            if not table.stores_legacy(data) or sticktables.DATA_TYPES[data].kind == "name":
                raise CommandError("Data type not stored in this table\n")
            value = _arg(args, index + 1)
            if not re.fullmatch(r"[-+]?[0-9]+", value):
                raise CommandError("Require a valid integer value to store\n")
            table.set(entry, data, signed(value))
    finally:
        table.touch(entry)
    return ""


# --- show fleet (fastproxy's: the fleet's state and each hashed backend's table digest) ---------------

def _show_fleet(session: CliSession, args: list[str]) -> str:
    """Per backend hashing on a ring, the digest of its table and its servers' addresses
    (``balance.routing_digest``): instances that route every key alike show the same one.  Then, when
    backends take their servers from etcd, where the fleet is."""
    ops = _ops(session)
    lines = ["# backend algorithm servers digest\n"]
    for table in ops.ring_tables():
        lines.append(f"{table.backend} {table.algorithm} {table.servers} {table.digest:016x}\n")
    if ops.fleet is not None:
        status = ops.fleet.status()
        lines.append("# fleet " + " ".join(f"{key} {value}" for key, value in status.items()) + "\n")
    return "".join(lines)


def _command(words: str, usage: Optional[str], handler: Any) -> Command:
    return Command(tuple(words.split()), usage, handler)


# In HAProxy's registration order (which breaks ties between equally close suggestions).
COMMANDS: tuple[Command, ...] = (
    _command("help", None, show_help),
    _command("prompt", None, toggle_prompt),
    _command("quit", None, quit_session),
    _command("_getsocks", None, _getsocks),
    _command("_counters", None, _counters),
    _command("_addcounters", None, _add_counters),
    _command("_addedservers", None, _added_servers),
    _command("_loadstate", None, _load_state),
    _command("_prepared", None, _prepared),
    _command("set timeout", "set timeout [cli] <delay>               : change a timeout setting",
             _set_timeout),
    _command("show cli sockets", "show cli sockets                        : dump list of cli sockets",
             _show_cli_sockets),
    _command("show cli level", "show cli level                          : display the level of the "
             "current CLI session", show_cli_level),
    _command("show version", "show version                            : show version of the current "
             "process", _show_version),
    _command("operator", "operator                                : lower the level of the current CLI "
             "session to operator", lower_level(OPERATOR)),
    _command("user", "user                                    : lower the level of the current CLI "
             "session to user", lower_level(USER)),
    _command("clear counters", "clear counters [all]                    : clear max statistics counters "
             "(or all counters)", _clear_counters),
    _command("show info", "show info [desc|json|typed|float]*      : report information about the "
             "running process", _show_info),
    _command("show stat", "show stat [desc|json|no-maint|typed|up]*: report counters for each proxy and "
             "server", _show_stat),
    _command("show servers state", "show servers state [<backend>]          : dump volatile server "
             "information (all or for a single backend)", _show_servers_state),
    _command("show backend", "show backend                            : list backends in the current "
             "running config", _show_backend),
    _command("disable health", "disable health                          : disable health checks",
             _enable_health(False)),
    _command("disable server", "disable server (DEPRECATED)             : disable a server for "
             "maintenance (use 'set server' instead)", _enable_server(False)),
    _command("enable health", "enable health                           : enable health checks",
             _enable_health(True)),
    _command("enable server", "enable server  (DEPRECATED)             : enable a disabled server (use "
             "'set server' instead)", _enable_server(True)),
    _command("get weight", "get weight <bk>/<srv>                   : report a server's current weight",
             _get_weight),
    _command("set server", "set server <bk>/<srv> [opts]            : change a server's state, weight, "
             "address or ssl", _set_server),
    _command("set weight", "set weight <bk>/<srv>  (DEPRECATED)     : change a server's weight (use "
             "'set server' instead)", _set_weight),
    _command("experimental-mode", None, experimental_mode),
    _command("disable frontend", "disable frontend <frontend>             : temporarily disable specific "
             "frontend", _enable_frontend(False)),
    _command("enable frontend", "enable frontend <frontend>              : re-enable specific frontend",
             _enable_frontend(True)),
    _command("shutdown frontend", "shutdown frontend <frontend>            : stop a specific frontend",
             _shutdown_frontend),
    _command("add server", "add server <bk>/<srv>                   : create a new server",
             _add_server),
    _command("del server", "del server <bk>/<srv>                   : remove a dynamically added server",
             _del_server),
    _command("set maxconn frontend", "set maxconn frontend <frontend> <value> : change a frontend's "
             "maxconn setting", _set_maxconn_frontend),
    _command("set maxconn global", "set maxconn global <value>              : change the per-process "
             "maxconn setting", _set_maxconn_global),
    _command("set maxconn server", "set maxconn server <bk>/<srv>           : change a server's maxconn "
             "setting", _set_maxconn_server),
    _command("show sess", "show sess [id]                          : report the list of current sessions "
             "or dump this exact session", _show_sess),
    _command("shutdown session", "shutdown session [id]                   : kill a specific session",
             _shutdown_session),
    _command("shutdown sessions server", "shutdown sessions server <bk>/<srv>     : kill sessions on a "
             "server", _shutdown_sessions),
    # stick tables
    _command("show table", "show table <table> [<filter>]*          : report table usage stats or dump this "
             "table's contents (filter: data/key)", _table_request("show")),
    _command("clear table", "clear table <table> [<filter>]*         : remove an entry from a table (filter: "
             "data/key)", _table_request("clear")),
    _command("set table", "set table <table> key <k> [data.* <v>]* : update or create a table entry's data",
             _table_request("set")),
    _command("show fleet", "show fleet                              : each hashed backend's table "
             "digest, and the etcd fleet's state", _show_fleet),
)
