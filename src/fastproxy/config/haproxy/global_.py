"""The ``global`` section's keywords (HAProxy's cfgparse-global.c), ``log`` targets included.

Handlers set fields of the model's ``Global``; ``log`` lines are checked here for ``global`` and for
proxies alike.  Keywords HAProxy knows that fastproxy ignores are listed in ``GLOBAL_IGNORED``.
"""

from __future__ import annotations

import grp
import os
import pwd
import re
import socket
import time
from typing import Any, Optional

from ... import acl, logformat, logs, samples, variables
from ..model import Global, LogTarget, StatsSocket
from . import tls
from .binds import BIND_OPTIONS
from .lexer import _Invalid, env_expand
from .registry import GlobalHandler, _Line, _names
from .values import (_check_host, _integer, _leading, _none, _one, _port, _size, _split_address, _time,
                     decimal, shown)


def _global_int(attribute: str, what: str, low: int = 0, high: Optional[int] = None) -> GlobalHandler:
    def handler(line: _Line, g: Global, args: list[str]) -> None:
        setattr(g, attribute, _integer(_one(args, what), what, low, high))
    return handler


def _global_size(attribute: str) -> GlobalHandler:
    def handler(line: _Line, g: Global, args: list[str]) -> None:
        size = _size(_one(args, "a size in bytes (k, m, g units accepted)"))
        if size <= 0:
            raise _Invalid("expects a positive size")
        setattr(g, attribute, size)
    return handler


def _global_text(attribute: str, what: str) -> GlobalHandler:
    def handler(line: _Line, g: Global, args: list[str]) -> None:
        setattr(g, attribute, _one(args, what))
    return handler


def _global_node(line: _Line, g: Global, args: list[str]) -> None:
    if len(args) != 1 or not re.fullmatch(r"[A-Za-z0-9_.-]+", args[0], re.ASCII):
        raise _Invalid("requires valid node name - non-empty string with digits(0-9), letters(A-Z, a-z), "
                       "dot(.), hyphen(-) or underscode(_).")
    g.node = args[0]


def _global_description(line: _Line, g: Global, args: list[str]) -> None:
    """``description <text>``: every word, joined by one space, as cfgparse-global.c joins them."""
    if not args:
        raise _Invalid("expects a string argument.")
    g.description = " ".join(args)


def _global_account(attribute: str, database: str) -> GlobalHandler:
    """``user`` / ``group``: the name must exist here, as HAProxy checks when it reads the line."""
    def handler(line: _Line, g: Global, args: list[str]) -> None:
        name = _one(args, f"a {attribute} name")
        lookup = pwd.getpwnam if database == "passwd" else grp.getgrnam
        try:
            lookup(name)
        except KeyError:
            raise _Invalid(f"no {attribute} named '{name}' in the {database} database") from None
        setattr(g, attribute, name)
    return handler


def _global_nosplice(line: _Line, g: Global, args: list[str]) -> None:
    _none(args)
    g.splice = False


def _global_daemon(line: _Line, g: Global, args: list[str]) -> None:
    _none(args)
    g.daemon = True
    line.warn("ignored: fastproxy runs in the foreground (use a service manager to daemonize)")


def _global_master_worker(line: _Line, g: Global, args: list[str]) -> None:
    if args and args != ["no-exit-on-failure"]:
        raise _Invalid(f"'master-worker' only takes 'no-exit-on-failure' (got '{' '.join(args)}')")
    if args:
        line.warn("'no-exit-on-failure' ignored: the master exits when its current worker does")
    g.master_worker = True


def _global_hard_stop_after(line: _Line, g: Global, args: list[str]) -> None:
    g.hard_stop_after = _time(_leading(line, args, 1, "a time such as 30s")[0])


def _global_log(line: _Line, g: Global, args: list[str]) -> None:
    if args == ["global"]:
        raise _Invalid("'log global' is only valid in proxies")
    g.log_targets.append(_log_target(line, args))


_LOG_SETTINGS = {"len", "format", "sample"}


_LOG_ADDRESS_PREFIXES = ("ring@", "fd@", "udp@", "udp4@", "udp6@", "unix@", "uxdg@", "abns@", "tcp@",
                         "tcp4@", "tcp6@")


def _check_log_address(text: str) -> None:
    """Check a target reads as one of HAProxy's log addresses (``logs`` reports at start the kinds it
    cannot send to, ``tcp@`` and ``ring@``...)."""
    if text in ("stdout", "stderr") or text.startswith("/") or text.startswith(_LOG_ADDRESS_PREFIXES):
        return
    address = _split_address(text)
    if address.host in ("", "*"):
        raise _Invalid(f"invalid address: '{text}'")
    _check_host(address, text)
    if address.port_text:
        _port(address.port_text, text)


def _log_target(line: _Line, args: list[str]) -> LogTarget:
    """``<target> [len n] [format f] [sample r:s] <facility> [<level> [<minlevel>]]``, checked and read."""
    if len(args) < 2:
        raise _Invalid("expects <address> and <facility> as arguments")
    args = [env_expand(args[0], line.reader.environ), *args[1:]]
    _check_log_address(args[0])
    settings: dict[str, Any] = {}
    i = 1
    while i < len(args) - 1 and args[i] in _LOG_SETTINGS:
        name, value = args[i], args[i + 1]
        if name == "len":
            settings["length"] = _log_length(value)
        elif name == "format":
            if value not in logs.FORMATS:
                raise _Invalid(f"unknown log format '{value}'")
            settings["format"] = value
        else:
            settings["sample"] = _log_sample(value)
        i += 2
    if i >= len(args):  # settings took every word: ``log stdout format raw`` names no facility
        raise _Invalid("unknown log facility ''")  # haproxy -c's words: it reads the next, empty, word
    facility, levels = args[i], args[i + 1:]
    if facility not in logs.FACILITIES:
        raise _Invalid(f"unknown log facility '{facility}'")
    for level in levels[:2]:
        if level not in logs.LEVELS:
            raise _Invalid(f"unknown optional log level '{level}'")
    if len(levels) > 2:
        raise _Invalid(f"cannot handle unexpected argument '{levels[2]}'")
    if levels:
        settings["level"] = logs.LEVELS.index(levels[0])
    if len(levels) > 1:
        settings["minlevel"] = logs.LEVELS.index(levels[1])
    return LogTarget(args[0], logs.FACILITIES.index(facility), location=line.location, **settings)


def _log_length(text: str) -> int:
    if not re.fullmatch(r"[0-9]+", text) or not 80 <= decimal(text) <= 65535:
        raise _Invalid(f"invalid log length '{shown(text)}', must be between 80 and 65535")
    return decimal(text)


def _log_sample(text: str) -> tuple[int, int]:
    """``sample <ranges>:<size>`` as HAProxy checks it; what fastproxy sends is the first message of the
    first range in every ``size`` (``LogTarget.sample``)."""
    ranges_text, colon, size_text = text.partition(":")
    if not colon:
        raise _Invalid("Missing sample size")
    ranges = [item for item in ranges_text.split(",") if item]
    if not ranges:
        raise _Invalid("no sampling ranges given")
    highest = 0
    for item in ranges:
        match = re.fullmatch(r"([0-9]+)(?:-([0-9]+))?", item)
        low, high = (decimal(match[1]), decimal(match[2] or match[1])) if match else (0, 0)
        if not match or low < 1 or high < low:
            raise _Invalid(f"wrong sample range '{item}'")
        highest = max(highest, high)
    if not re.fullmatch(r"[0-9]+", size_text) or decimal(size_text) < 1:
        raise _Invalid(f"wrong sample size '{shown(size_text)}' for sample range '{shown(ranges_text)}'")
    size = decimal(size_text)
    if size < highest:
        raise _Invalid(f"sample size {size} should be greater or equal to {highest} the maximum of the high "
                       "ranges limits")
    return decimal(re.split(r"[-,]", ranges[0])[0]), size


def _global_stats(line: _Line, g: Global, args: list[str]) -> None:
    if not args:
        raise _Invalid("expects 'socket', 'timeout', 'maxconn' or 'bind-process'")
    sub, rest = args[0], args[1:]
    if sub == "socket":
        g.stats_sockets.append(_stats_socket(line, rest))
    elif sub == "timeout":
        timeout = _time(_leading(line, rest, 1, "a time such as 10s")[0])
        if not timeout:
            raise _Invalid("expects a positive value")
        g.stats_timeout = timeout
    elif sub == "maxconn":
        g.stats_maxconn = _integer(_leading(line, rest, 1, "a positive integer")[0], "a positive integer", 1)
    elif sub == "bind-process":
        line.warn("not supported by fastproxy; ignored", f"stats {sub}")
    else:
        raise _Invalid(f"'stats' supports 'socket', 'timeout', 'maxconn' and 'bind-process' (got '{sub}')")


_STATS_LEVELS = ("user", "operator", "admin")


def _stats_socket(line: _Line, args: list[str]) -> StatsSocket:
    """``stats socket <path>|[ipv4@|ipv6@]<addr:port> [settings]``: the settings are ``bind``'s; those
    of the runtime API are read, the others warned about and ignored."""
    if not args:
        raise _Invalid("expects an address or a path to a UNIX socket")
    target, options = env_expand(args[0], line.reader.environ), args[1:]
    if target.startswith("unix@"):
        target = target[len("unix@"):]
        socket_ = StatsSocket(path=target, location=line.location)
    elif target.startswith("/"):
        socket_ = StatsSocket(path=target, location=line.location)
    else:
        address = _split_address(target)
        if not address.port_text:
            raise _Invalid(f"missing port specification in '{target}'")
        socket_ = StatsSocket(host=_check_host(address, target), port=_port(address.port_text, target),
                              family=address.family, location=line.location)
    i = 0
    while i < len(options):
        name = options[i]
        count = BIND_OPTIONS.get(name)
        if count is None:
            raise _Invalid(f"unknown keyword '{name}'")
        values = options[i + 1:i + 1 + count]
        if len(values) < count:
            raise _Invalid(f"'{name}' expects an argument")
        i += 1 + count
        _stats_socket_option(line, socket_, name, values)
    return socket_


def _stats_socket_option(line: _Line, socket_: StatsSocket, name: str, values: list[str]) -> None:
    value = values[0] if values else ""
    if name == "level":
        if value not in _STATS_LEVELS:
            raise _Invalid(f"'level' only supports 'user', 'operator', and 'admin' (got '{value}')")
        socket_.level = value
    elif name == "mode":
        if not re.fullmatch(r"[0-7]+", value):
            raise _Invalid(f"'mode' : missing or invalid mode '{value}' (octal integer expected)")
        socket_.mode = int(value, 8)
    elif name in ("uid", "gid"):
        setattr(socket_, name, _integer(value, f"a numeric {name}", 0))
    elif name in ("user", "group"):
        try:
            if name == "user":
                socket_.uid = pwd.getpwnam(value).pw_uid
            else:
                socket_.gid = grp.getgrnam(value).gr_gid
        except KeyError:
            raise _Invalid(f"'{name}' : unknown {name} name '{value}'") from None
    elif name == "expose-fd":
        if value != "listeners":
            raise _Invalid(f"'expose-fd' only supports 'listeners' (got '{value}')")
        socket_.expose_fd_listeners = True  # _getsocks answers on it (listener_transfer)
    elif name == "severity-output":
        if value not in ("none", "number", "string"):
            raise _Invalid(f"'severity-output' only supports 'none', 'number', and 'string' (got '{value}')")
        if value != "none":
            line.warn("not supported by fastproxy; answers carry no severity", "stats socket severity-output")
    else:
        line.warn(f"setting '{name}' is not supported on fastproxy's stats socket; ignored",
                  f"stats socket {name}")


def _global_noreuseport(line: _Line, g: Global, args: list[str]) -> None:
    _none(args)
    g.reuseport = False


class _CommandLineReader:
    """The little of a reader a socket given on the command line needs (``-S``): the environment,
    and the warnings, kept for the caller to print."""

    def __init__(self) -> None:
        import os
        self.environ = dict(os.environ)
        self.warnings: list[str] = []

    def warn(self, location: object, keyword: Optional[str], message: str) -> None:
        self.warnings.append(f"-S: '{keyword}': {message}")


def master_cli_socket(words: list[str]) -> tuple[StatsSocket, list[str]]:
    """``-S <address>[,<option>[,<value>]...]`` split on its commas: the master CLI's socket, read
    with the ``stats socket`` line's settings, at level admin unless ``level`` lowers it; and the
    warnings.  ValueError with the reader's message."""
    reader = _CommandLineReader()
    line = _Line(reader, "-S", 0, ["stats", "socket", *words])  # type: ignore[arg-type]
    try:
        socket_ = _stats_socket(line, words)
    except _Invalid as exc:
        raise ValueError(exc.message) from None
    if "level" not in words[1:]:
        socket_.level = "admin"
    return socket_, reader.warnings


def _global_numeric_id(option: str) -> GlobalHandler:
    def handler(line: _Line, g: Global, args: list[str]) -> None:
        setattr(g, option, _integer(_one(args, f"a numeric {option}"), f"a numeric {option}", 0))
    return handler


def _global_setenv(line: _Line, g: Global, args: list[str]) -> None:
    name, value = _leading(line, args, 2, "a variable name and a value")
    if line.words[0] == "setenv" or name not in line.reader.environ:
        line.reader.environ[name] = value


def _global_unsetenv(line: _Line, g: Global, args: list[str]) -> None:
    if not args:
        raise _Invalid("expects at least one variable name")
    for name in args:
        line.reader.environ.pop(name, None)


def _global_resetenv(line: _Line, g: Global, args: list[str]) -> None:
    environ = line.reader.environ
    for name in list(environ):
        if name not in args:
            del environ[name]


def _ssl_server_verify(args: list[str]) -> str:
    """``ssl-server-verify none|required``: what a server's TLS (its checks, for fastproxy) verifies
    without a ``verify`` of its own."""
    if len(args) != 1 or args[0] not in ("none", "required"):
        raise _Invalid("'ssl-server-verify' expects 'none' or 'required' as argument.")
    return args[0]


def _tls_defaults(side: str) -> GlobalHandler:
    """``ssl-default-bind-options`` / ``ssl-default-server-options``: the version settings of every
    bind or server; the handshake tuning among them (tickets, cipher preference) is warned about."""
    tuning = ("no-tls-tickets", "prefer-client-ciphers") if side == "bind" else ("no-tls-tickets",)

    def handler(line: _Line, g: Global, args: list[str]) -> None:
        options = getattr(g, f"{side}_tls")
        i = 0
        while i < len(args):
            name = args[i]
            count = tls.SHARED.get(name) if name not in ("alpn", "ciphers") else None
            if name in tuning:
                line.warn(f"'{name}' is not supported by fastproxy; ignored (it tunes the handshake)")
                i += 1
                continue
            if count is None or i + 1 + count > len(args):
                raise _Invalid(f"unknown option '{name}' on global statement '{line.words[0]}'.")
            options = tls.apply(options, name, args[i + 1:i + 1 + count])
            i += 1 + count
        setattr(g, f"{side}_tls", options)
    return handler


def _tls_default_ciphers(side: str) -> GlobalHandler:
    def handler(line: _Line, g: Global, args: list[str]) -> None:
        ciphers = _one(args, "a cipher list")
        setattr(g, f"{side}_tls", tls.apply(getattr(g, f"{side}_tls"), "ciphers", [ciphers]))
    return handler


def _global_refused(message: str) -> GlobalHandler:
    """A keyword refused with ``message``: one HAProxy removed, or one fastproxy cannot do as HAProxy."""
    def handler(line: _Line, g: Global, args: list[str]) -> None:
        raise _Invalid(message)
    return handler


# HAProxy's tune.vars.* limits make a set-var past them fail (the variable stays as it was), which the
# rules reading it then route on; fastproxy does not count variables' memory as HAProxy does (each
# variable's struct plus its bytes, per scope), so it cannot fail the same ones.
_VARIABLE_LIMIT = ("fastproxy does not count variables' memory as HAProxy does: a set-var HAProxy refuses "
                   "past this limit would succeed, and the rules reading the variable could route "
                   "differently")


GLOBAL_KEYWORDS: dict[str, GlobalHandler] = {
    "maxconn": _global_int("maxconn", "a positive integer", 1),
    "maxconnrate": _global_int("maxconnrate", "a number of connections per second", 0),
    "nbthread": _global_int("nbthread", "a number of threads", 1, 64),
    "tune.bufsize": _global_size("bufsize"),
    "tune.pipesize": _global_size("pipesize"),
    "maxpipes": _global_int("maxpipes", "a number of pipes", 0),
    "nosplice": _global_nosplice,
    "pidfile": _global_text("pidfile", "a file name"),
    "node": _global_node,
    "description": _global_description,
    "log": _global_log,
    "stats": _global_stats,
    "daemon": _global_daemon,
    "user": _global_account("user", "passwd"),
    "group": _global_account("group", "group"),
    "uid": _global_numeric_id("uid"),
    "gid": _global_numeric_id("gid"),
    "chroot": _global_text("chroot", "a directory"),
    "hard-stop-after": _global_hard_stop_after,
    "master-worker": _global_master_worker,
    "noreuseport": _global_noreuseport,
    "server-state-file": _global_text("server_state_file", "a file path"),
    "server-state-base": _global_text("server_state_base", "a directory path"),
    "spread-checks": _global_int("spread_checks", "a percentage of the check interval", 0, 50),
    "ssl-server-verify": lambda line, g, args: setattr(g, "ssl_server_verify", _ssl_server_verify(args)),
    "ssl-default-bind-options": _tls_defaults("bind"),
    "ssl-default-server-options": _tls_defaults("server"),
    "ssl-default-bind-ciphers": _tls_default_ciphers("bind"),
    "ssl-default-server-ciphers": _tls_default_ciphers("server"),
    "crt-base": _global_text("crt_base", "a directory path"),
    "ca-base": _global_text("ca_base", "a directory path"),
    "setenv": _global_setenv,
    "presetenv": _global_setenv,
    "unsetenv": _global_unsetenv,
    "resetenv": _global_resetenv,
    "set-var": lambda line, g, args: _global_set_var(line, g, args),
    "set-var-fmt": lambda line, g, args: _global_set_var(line, g, args),
    "external-check": lambda line, g, args: _global_switch(line, g, args, "external_check"),
    "insecure-fork-wanted": lambda line, g, args: _global_switch(line, g, args, "insecure_fork_wanted"),
    "nbproc": _global_refused("nbproc is not supported any more since HAProxy 2.5 (use nbthread)"),
    **{f"tune.vars.{scope}-max-size": _global_refused(f"'tune.vars.{scope}-max-size': {_VARIABLE_LIMIT}")
       for scope in ("check", "global", "proc", "reqres", "sess", "txn")},
}

def _global_switch(line: _Line, g: Global, args: list[str], attribute: str) -> None:
    """``external-check``, ``insecure-fork-wanted``: on (``no insecure-fork-wanted``: off again)."""
    if args:
        raise _Invalid(f"'{line.words[0]}' cannot handle unexpected argument '{args[0]}'.")
    setattr(g, attribute, True)


def _global_set_var(line: _Line, g: Global, args: list[str]) -> None:
    """``set-var proc.<name> <expr>`` / ``set-var-fmt proc.<name> <format>``: evaluated now, from what
    needs no connection (``int()``, ``str()``, other ``proc.`` variables...), into the value the
    process starts with."""
    keyword = line.words[0]
    if len(args) != 2:
        raise _Invalid(f"'{keyword}' expects a variable name and "
                       f"{'a sample expression' if keyword == 'set-var' else 'a format string'}.")
    try:
        name = variables.parse_name(args[0])
    except variables.VariableError as exc:
        raise _Invalid(f"'{keyword}': {exc}") from None
    if name.scope != "proc":
        raise _Invalid(f"'{keyword}': cannot set variable '{args[0]}', only scope 'proc' is permitted in the "
                       "global section.")
    proc = variables.ProcessVariables()
    proc.values = g.variables  # earlier ones are read, this one is written there
    at_start = acl.ConnInfo(src="", src_port=0, dst="", dst_port=0, variables=variables.Variables(proc))
    try:
        if keyword == "set-var":
            sample = samples.parse(args[1])
            fetch = samples.fetch_of(sample.fetch)[0]
            if not fetch.constant and fetch.name != "var":
                raise _Invalid(f"fetch method '{sample.fetch}' extracts information from the connection, "
                               "none of which is available here")
            value = samples.reader(sample)(at_start)
            if value is not None:
                kind = samples.type_of(sample)
                kind = variables.sample_type(value) if kind == samples.ANY else kind
                at_start.variables.set(name, kind, value)
        else:
            fmt = logformat.compile(args[1])
            record = logformat.LogRecord(accepted=time.time(), pid=os.getpid(), hostname=socket.gethostname(),
                                         connection=at_start)
            at_start.variables.set(name, samples.STR, fmt.render(record))
    except (samples.SampleError, logformat.LogFormatError) as exc:
        raise _Invalid(f"'{keyword}': {exc}") from None


# The global keywords HAProxy 2.6 takes with "no" (cfgparse-global.c), all ignored by fastproxy; and
# "no log", which forgets the global log targets.
GLOBAL_NEGATABLE = frozenset({"busy-polling", "set-dumpable", "strict-limits", "insecure-fork-wanted",
                              "numa-cpu-mapping"})

# Global keywords HAProxy 2.6 knows that fastproxy ignores (with a warning).
GLOBAL_IGNORED = _names("""
    busy-polling close-spread-time cluster-secret cpu-map default-path
    expose-experimental-directives fd-hard-limit grace h1-accept-payload-with-any-method
    h1-case-adjust h1-case-adjust-file h2-workaround-bogus-websocket-clients httpclient.resolvers.id
    httpclient.resolvers.prefer httpclient.ssl.ca-file httpclient.ssl.verify
    insecure-setuid-wanted issuers-chain-path localpeer log-send-hostname log-tag lua-load
    lua-load-per-thread lua-prepend-path max-spread-checks maxcompcpuusage maxcomprate
    maxsessrate maxsslconn maxsslrate maxzlibmem mworker-max-reloads no-memory-trimming noepoll
    noevports nogetaddrinfo nokqueue nopoll numa-cpu-mapping pp2-never-send-local
    profiling.tasks quiet set-dumpable
    ssl-default-bind-ciphersuites ssl-default-bind-curves ssl-default-server-ciphersuites
    ssl-dh-param-file ssl-engine ssl-load-extra-del-ext ssl-load-extra-files
    ssl-mode-async ssl-propquery ssl-provider ssl-provider-path ssl-skip-self-issued-ca
    strict-limits thread-group thread-groups ulimit-n unix-bind zero-warning
    tune.buffers.limit tune.buffers.reserve tune.chksize tune.comp.maxlevel tune.fail-alloc
    tune.fd.edge-triggered tune.h2.header-table-size tune.h2.initial-window-size
    tune.h2.max-concurrent-streams tune.h2.max-frame-size tune.http.cookielen tune.http.logurilen
    tune.http.maxhdr tune.idle-pool.shared tune.idletimer tune.listener.multi-queue tune.lua.forced-yield
    tune.lua.maxmem tune.lua.service-timeout tune.lua.session-timeout tune.lua.task-timeout
    tune.maxaccept tune.maxpollevents tune.maxrewrite tune.pattern.cache-size
    tune.peers.max-updates-at-once tune.pool-high-fd-ratio tune.pool-low-fd-ratio tune.rcvbuf.client
    tune.rcvbuf.server tune.recv_enough tune.runqueue-depth tune.sched.low-latency tune.sndbuf.client
    tune.sndbuf.server tune.ssl.cachesize tune.ssl.capture-buffer-size tune.ssl.capture-cipherlist-size
    tune.ssl.default-dh-param tune.ssl.force-private-cache tune.ssl.hard-maxrecord tune.ssl.keylog
    tune.ssl.lifetime tune.ssl.maxrecord tune.ssl.ssl-ctx-cache-size
    tune.zlib.memlevel tune.zlib.windowsize
""")
