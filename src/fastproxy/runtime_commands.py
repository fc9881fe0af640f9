"""The runtime API's commands (HAProxy 2.6's, management.txt §9.3), each at HAProxy's level and with
its answers, errors included, word for word.

``COMMANDS`` is the table ``runtime_api.CliSession`` dispatches on; each handler takes the session
and the request's words and returns the answer.  Handlers read and change the running configuration
only through ``operations.Operations``: server states through ``servers.ServerStates`` (which tells
the balancer, whose ``on_change`` reaches the lanes at once), weights through the balancer, sessions
through the pump; statistics are computed by ``stats`` from the pump's counters when asked.
"""

from __future__ import annotations

import re
from typing import Any, Optional

from . import stats, sticktables
from .operations import Operations
from .runtime import ServerRuntime
from .servers import change_weight
from .runtime_api import ADMIN, LEVEL_NAMES, OPERATOR, USER, CliSession, Command, CommandError, usage_message
from .sticktables import StickTable

__all__ = ["COMMANDS", "Operations"]  # Operations lives in ``operations``, shared with the stats page


def _ops(session: CliSession) -> Operations:
    return session.operations


# --- the session's own commands --------------------------------------------------------------------

def _help(session: CliSession, args: list[str]) -> str:
    return usage_message(session.commands, args, is_help=True)


def _prompt(session: CliSession, args: list[str]) -> str:
    session.interactive = not session.interactive
    return ""


def _quit(session: CliSession, args: list[str]) -> str:
    session.closed = True
    return ""


def _lower_level(level: int):
    def handler(session: CliSession, args: list[str]) -> str:
        if len(args) > 1 and args[1] == "-":
            session.no_newline = True
        session.require(level)
        session.level = level
        return ""
    return handler


def _show_cli_level(session: CliSession, args: list[str]) -> str:
    return LEVEL_NAMES.get(session.level, "unknown") + "\n"


def _show_cli_sockets(session: CliSession, args: list[str]) -> str:
    lines = ["# socket lvl processes\n"]
    for config in _ops(session).state.config.global_.stats_sockets:
        lines.append(f"{config.address} {config.level} all\n")
    return "".join(lines)


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
    seconds = int(match[1]) * scale
    if seconds < 1:
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
        proxy_id = proxy.uuid if proxy is not None else _atoi(rest[0])
        if not proxy_id:
            raise CommandError("No such proxy.\n")
        types, server_id = _atoi(rest[1]), _atoi(rest[2])
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


def _atoi(text: str) -> int:
    match = re.match(r"\s*([-+]?[0-9]+)", text)
    return int(match[1]) if match else 0


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
        if server.slot.name == server_name:
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


_SET_SERVER_USAGE = ("usage: set server <backend>/<server> addr | agent | agent-addr | agent-port | "
                     "agent-send | check-addr | check-port | fqdn | health | ssl | state | weight\n")
_NOT_SUPPORTED = ("addr", "agent", "agent-addr", "agent-port", "agent-send", "check-addr", "check-port",
                  "fqdn", "ssl")


def _set_server(session: CliSession, args: list[str]) -> str:
    session.require(ADMIN)
    server = _find_server(session, args[2] if len(args) > 2 else "")
    what = args[3] if len(args) > 3 else ""
    value = args[4] if len(args) > 4 else ""
    ops = _ops(session)
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
        if not table.stores(name):
            raise CommandError(f"Filter entry #{i + 1}: Data type not stored in this table\n")
        operator = _TABLE_OPERATORS.get(_arg(args, first + 1))
        if operator is None:
            raise CommandError(f"Filter entry #{i + 1}: Require and operator among \"eq\", \"ne\", \"le\", "
                               "\"ge\", \"lt\", \"gt\"\n")
        value = _arg(args, first + 2)
        if not re.fullmatch(r"-?[0-9]+", value):
            raise CommandError(f"Filter entry #{i + 1}: Require a valid integer value to compare against\n")
        filters.append((name, operator, int(value)))
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
            if not table.stores(data) or sticktables.DATA_TYPES[data].kind == "name":
                raise CommandError("Data type not stored in this table\n")
            value = _arg(args, index + 1)
            if not re.fullmatch(r"[-+]?[0-9]+", value):
                raise CommandError("Require a valid integer value to store\n")
            table.set(entry, data, int(value))
    finally:
        table.touch(entry)
    return ""


def _command(words: str, usage: Optional[str], handler: Any) -> Command:
    return Command(tuple(words.split()), usage, handler)


# In HAProxy's registration order (which breaks ties between equally close suggestions).
COMMANDS: tuple[Command, ...] = (
    _command("help", None, _help),
    _command("prompt", None, _prompt),
    _command("quit", None, _quit),
    _command("set timeout", "set timeout [cli] <delay>               : change a timeout setting",
             _set_timeout),
    _command("show cli sockets", "show cli sockets                        : dump list of cli sockets",
             _show_cli_sockets),
    _command("show cli level", "show cli level                          : display the level of the "
             "current CLI session", _show_cli_level),
    _command("show version", "show version                            : show version of the current "
             "process", _show_version),
    _command("operator", "operator                                : lower the level of the current CLI "
             "session to operator", _lower_level(OPERATOR)),
    _command("user", "user                                    : lower the level of the current CLI "
             "session to user", _lower_level(USER)),
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
    _command("shutdown sessions server", "shutdown sessions server <bk>/<srv>     : kill sessions on a "
             "server", _shutdown_sessions),
    # stick tables
    _command("show table", "show table <table> [<filter>]*          : report table usage stats or dump this "
             "table's contents (filter: data/key)", _table_request("show")),
    _command("clear table", "clear table <table> [<filter>]*         : remove an entry from a table (filter: "
             "data/key)", _table_request("clear")),
    _command("set table", "set table <table> key <k> [data.* <v>]* : update or create a table entry's data",
             _table_request("set")),
)
