"""The HAProxy configuration reader: TCP-mode ``haproxy.cfg`` files into the one ``Config`` model.

It reads what HAProxy 2.6 reads, the way it reads it: words split as HAProxy's ``parse_line`` does
(quotes, backslash escapes, ``"${VAR}"`` expansion), ``.if``/``.endif`` blocks, then one section at a
time with a table of keyword handlers per section kind.  ``defaults`` sections are folded into the
proxies that follow them (or name them with ``from``), so the model holds effective values; a
``listen`` becomes a frontend and a backend of the same name.

Every problem is collected with its ``file:line`` and keyword: errors end in one ``ConfigError`` that
carries them all, warnings go to ``Config.warnings``.  Keywords HAProxy knows but fastproxy does not
implement are warnings (the rest runs); unknown keywords, bad values and dangling references are
errors, as are the few HAProxy features that would silently route differently if ignored.

The reader does no network I/O: host names in ``bind`` and ``server`` lines are kept as written and
resolved by the engine when it starts (HAProxy resolves them while parsing).  The only files it
opens are the configuration files themselves and ACL pattern files (``-f``).

Where it deliberately differs from HAProxy 2.6 (``tests/test_config.py`` checks the corpus against
``haproxy -c`` and lists each case): numbers are checked (HAProxy's ``atoi`` reads ``weight x`` as 0)
and sizes take ``k``/``m``/``g``; ``hash-type maglev`` is ours; ``mode http``, UNIX sockets,
``transparent`` binds, servers at the client's destination address (no address, ``0.0.0.0``), port
offsets, dynamic ``use_backend``, criteria other than the layer-4 ones and ``tcp-request`` rules in
backends are errors rather than silently routing differently (so is ``observe layer7``, which needs
HTTP); ``tcp-check`` rules built from log-format strings or check variables are skipped with a warning,
and their regular expressions are Python's; user/group names, host names in ACLs and the arguments of
keywords fastproxy ignores (``stick-table``, ``capture``, skipped sections...) are not checked.
A server without a port gets port 0: the engine uses the client's destination port.
"""

from __future__ import annotations

import copy
import dataclasses
import grp
import ipaddress
import math
import os
import pwd
import re
import socket
from collections.abc import Callable, Iterable, Mapping, MutableMapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from .. import acl as acls
from ..errors import ConfigError
from .model import (
    Acl,
    Backend,
    Balance,
    Bind,
    Condition,
    Config,
    Frontend,
    Global,
    KeepAlive,
    Location,
    Server,
    TcpCheckRule,
    TcpRequestRule,
    Timeouts,
    UseBackend,
    Warning_,
)

__all__ = ["load", "parse_size", "parse_text", "parse_time", "split_words"]

HAPROXY_VERSION = (2, 6)  # the HAProxy whose grammar this reader follows (for .if version_atleast())
MAX_WORDS = 64  # HAProxy's MAX_LINE_ARGS


class _Invalid(Exception):
    """A problem on the line being read; the reader adds the file, the line and the keyword."""

    def __init__(self, message: str, keyword: Optional[str] = None) -> None:
        super().__init__(message)
        self.message = message
        self.keyword = keyword


# --- words -------------------------------------------------------------------------------------------

_ESCAPES = {" ": " ", "\\": "\\", "#": "#", "'": "'", '"': '"', "$": "$", "r": "\r", "n": "\n", "t": "\t"}
_VARIABLE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def split_words(line: str, environ: Mapping[str, str]) -> list[str]:
    """Split one configuration line into words, as HAProxy 2.6's ``parse_line`` does.

    Blanks separate words and ``#`` starts a comment, except inside quotes or after a backslash.
    Single quotes keep everything literally.  Outside them, ``\\ \\\\ \\# \\' \\" \\$`` stand for the
    character, ``\\r \\n \\t \\xHH`` for the control character, and any other backslash stays as is.
    Inside double quotes only, ``$NAME`` and ``${NAME}`` expand from ``environ`` (unset: empty), and
    ``"${NAME[*]}"`` expands to one word per blank-separated part of the value.  An empty word (``""``)
    ends the line's arguments, as it does for HAProxy's keyword parsers.
    """
    words: list[str] = []
    current: list[str] = []
    in_word = False
    quote: Optional[str] = None
    quote_column = 0
    i, n = 0, len(line)
    while i < n:
        c = line[i]
        if quote == "'":
            if c == "'":
                quote = None
            else:
                current.append(c)
            i += 1
            continue
        if quote is None and c in " \t\r\n":
            if in_word:
                words.append("".join(current))
                current, in_word = [], False
            i += 1
            continue
        if quote is None and c == "#":
            break
        in_word = True
        if c == "\\":
            following = line[i + 1:i + 2]
            if following in _ESCAPES:
                current.append(_ESCAPES[following])
                i += 2
            elif following == "x":
                digits = line[i + 2:i + 4]
                if not re.fullmatch(r"[0-9a-fA-F]{2}", digits):
                    raise _Invalid(f"truncated or invalid hexadecimal sequence at column {i + 1}")
                current.append(chr(int(digits, 16)))
                i += 4
            else:
                current.append("\\")
                i += 1
            continue
        if c in "'\"":
            if quote is None:
                quote, quote_column = c, i + 1
            elif quote == c:
                quote = None
            else:
                current.append(c)
            i += 1
            continue
        if c == "$" and quote == '"':
            i = _expand_variable(line, i, environ, words, current)
            continue
        current.append(c)
        i += 1
    if quote is not None:
        raise _Invalid(f"unmatched quote at column {quote_column}")
    if in_word:
        words.append("".join(current))
    if "" in words:
        words = words[:words.index("")]
    if len(words) > MAX_WORDS:
        raise _Invalid(f"too many words ({len(words)}): HAProxy takes at most {MAX_WORDS} on a line")
    return words


def _expand_variable(line: str, i: int, environ: Mapping[str, str], words: list[str],
                     current: list[str]) -> int:
    """Expand the variable at ``line[i] == '$'`` into ``current`` (and ``words``); the next index."""
    braced = line[i + 1:i + 2] == "{"
    start = i + 2 if braced else i + 1
    match = _VARIABLE.match(line, start)
    if not match:
        raise _Invalid(f"forbidden first char in environment variable name at column {start + 1}")
    end = match.end()
    split = False
    if braced:
        if line.startswith("[*]", end):
            split, end = True, end + 3
        if line[end:end + 1] != "}":
            raise _Invalid(f"unmatched brace in environment variable name at column {start}")
        end += 1
    value = environ.get(match.group(), "")
    if not split:
        current.append(value)
        return end
    parts = value.split()
    for index, part in enumerate(parts):
        if index:
            words.append("".join(current))
            current.clear()
        current.append(part)
    return end


# --- values ------------------------------------------------------------------------------------------

_TIME = re.compile(r"([0-9]+)(us|ms|s|m|h|d)?", re.ASCII)
_TIME_UNITS_MS = {"us": 0.001, "ms": 1, None: 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}
_TIME_MAX_MS = 2**31 - 1
_SIZE = re.compile(r"([0-9]+)([kKmMgG]?)", re.ASCII)
_SIZE_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}
_INTEGER = re.compile(r"-?[0-9]+", re.ASCII)


def parse_time(text: str) -> float:
    """``"5s"`` -> 5.0 seconds: HAProxy's time units ``us ms s m h d``, milliseconds by default.

    Rounded up to whole milliseconds and limited to 2^31-1 ms (~24.8 days), as HAProxy does.
    """
    match = _TIME.fullmatch(text)
    if not match:
        raise ValueError(f"expects a time such as 500ms, 5s or 1m (units us, ms, s, m, h, d; "
                         f"milliseconds by default), got '{text}'")
    milliseconds = math.ceil(int(match[1]) * _TIME_UNITS_MS[match[2]])
    if milliseconds > _TIME_MAX_MS:
        raise ValueError(f"timer overflow in '{text}' (maximum value is 2147483647 ms or ~24.8 days)")
    return milliseconds / 1000


def parse_size(text: str) -> int:
    """``"16k"`` -> 16384: a byte count with an optional ``k``, ``m`` or ``g`` (powers of 1024)."""
    match = _SIZE.fullmatch(text)
    if not match:
        raise ValueError(f"expects a size in bytes, optionally with a unit k, m or g, got '{text}'")
    size = int(match[1]) * _SIZE_UNITS[match[2].lower()]
    if size >= 2**63:
        raise ValueError(f"size '{text}' is too large")
    return size


def _integer(text: str, what: str = "an integer", low: Optional[int] = None,
             high: Optional[int] = None) -> int:
    if not _INTEGER.fullmatch(text):
        raise _Invalid(f"expects {what}, got '{text}'")
    value = int(text)
    if (low is not None and value < low) or (high is not None and value > high):
        bounds = (f"between {low} and {high}" if high is not None else f"at least {low}")
        raise _Invalid(f"expects {what} ({bounds}), got '{text}'")
    return value


def _time(text: str) -> float:
    try:
        return parse_time(text)
    except ValueError as exc:
        raise _Invalid(str(exc)) from None


def _size(text: str) -> int:
    try:
        return parse_size(text)
    except ValueError as exc:
        raise _Invalid(str(exc)) from None


def _arguments(args: Sequence[str], count: int, what: str) -> list[str]:
    """Exactly ``count`` arguments; ``what`` describes them for the message."""
    if len(args) < count:
        raise _Invalid(f"expects {what}")
    if len(args) > count:
        raise _Invalid(f"cannot handle unexpected argument '{args[count]}' (expects {what})")
    return list(args)


def _one(args: Sequence[str], what: str) -> str:
    return _arguments(args, 1, what)[0]


def _none(args: Sequence[str]) -> None:
    _arguments(args, 0, "no argument")


def _leading(line: _Line, args: Sequence[str], count: int, what: str) -> list[str]:
    """The first ``count`` arguments; HAProxy ignores extra ones for some keywords, we warn."""
    if len(args) < count:
        raise _Invalid(f"expects {what}")
    if len(args) > count:
        line.warn(f"extra argument '{args[count]}' ignored (HAProxy ignores it too)")
    return list(args[:count])


# --- addresses ---------------------------------------------------------------------------------------

_FAMILY_PREFIXES = {"ipv4@": "ipv4", "ipv6@": "ipv6", "tcp@": None, "tcp4@": "ipv4", "tcp6@": "ipv6"}
_UNSUPPORTED_PREFIXES = ("unix@", "abns@", "fd@", "sockpair@", "udp@", "udp4@", "udp6@", "uxst@",
                         "uxdg@", "quic4@", "quic6@", "rhttp@", "mptcp@", "mptcp4@", "mptcp6@")
_HOST_NAME = re.compile(r"[A-Za-z0-9_]([A-Za-z0-9_.-]*[A-Za-z0-9_.])?", re.ASCII)


@dataclass
class _Address:
    family: Optional[str]  # "ipv4" | "ipv6" | None
    host: str  # "" for "any address"
    port_text: Optional[str]


def _split_address(text: str) -> _Address:
    """``[family@]host[:port]`` in HAProxy's forms: ``[::1]:80``, ``::1:80``, ``ipv6@::1:80``, ``*:80``."""
    family: Optional[str] = None
    for prefix, prefix_family in _FAMILY_PREFIXES.items():
        if text.startswith(prefix):
            family, text = prefix_family, text[len(prefix):]
            break
    else:
        if text.startswith(_UNSUPPORTED_PREFIXES) or text.startswith("/"):
            kind = text.split("@", 1)[0] + "@" if "@" in text else "UNIX socket path"
            raise _Invalid(f"'{kind}' addresses are not supported by fastproxy (TCP over IPv4/IPv6 only)")
        if "@" in text:
            raise _Invalid(f"unknown address family '{text.split('@', 1)[0]}@' in '{text}'")
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise _Invalid(f"missing ']' in address '{text}'")
        host, rest = text[1:end], text[end + 1:]
        if rest and not rest.startswith(":"):
            raise _Invalid(f"expects ':port' after ']' in '{text}'")
        return _Address(family, host, rest[1:] if rest else None)
    if ":" not in text:
        return _Address(family, text, None)
    host, port = text.rsplit(":", 1)  # so "::1:80" is [::1]:80, and "::1" is "::" port 1, as in HAProxy
    return _Address(family, host, port)


def _check_host(address: _Address, original: str) -> str:
    """The host, checked; "" and "*" mean every address of the family."""
    host = address.host
    if host in ("", "*"):
        return "::" if address.family == "ipv6" else "0.0.0.0"
    if re.fullmatch(r"[0-9.]+", host) and address.family != "ipv6":
        host = _inet_aton(host, original)
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        if ":" in host:
            raise _Invalid(f"invalid address: '{host}' in '{original}' (write IPv6 addresses as "
                           "[address]:port, or address:port with the port always present)") from None
        if not _HOST_NAME.fullmatch(host) or re.fullmatch(r"[0-9.]+", host):
            raise _Invalid(f"invalid address: '{host}' in '{original}'") from None
        return host
    if address.family and f"ipv{ip.version}" != address.family:
        raise _Invalid(f"address '{host}' is not an {address.family} address in '{original}'")
    return str(ip)


def _inet_aton(host: str, original: str) -> str:
    """HAProxy reads IPv4 addresses with inet_aton(): "127.1" is 127.0.0.1 and "0" is 0.0.0.0."""
    try:
        return socket.inet_ntoa(socket.inet_aton(host))
    except OSError:
        raise _Invalid(f"invalid address: '{host}' in '{original}'") from None


def _port(text: str, original: str) -> int:
    if not re.fullmatch(r"[0-9]+", text, re.ASCII):
        bad = next((c for c in text if not c.isdigit()), text[:1])
        raise _Invalid(f"invalid character '{bad}' in port number '{text}' in '{original}'")
    port = int(text)
    if not 1 <= port <= 65535:
        raise _Invalid(f"invalid port '{text}' (expects 1 to 65535)")
    return port


def _bind_addresses(text: str) -> list[tuple[Optional[str], str, int]]:
    """One ``bind`` argument (comma-separated addresses, port ranges) -> (family, host, port) each."""
    result = []
    for item in text.split(","):
        if not item:
            raise _Invalid(f"empty address in '{text}'")
        address = _split_address(item)
        host = _check_host(address, item)
        if not address.port_text:
            raise _Invalid(f"missing port specification in '{item}'")
        low_text, _, high_text = address.port_text.partition("-")
        low = _port(low_text, item)
        high = _port(high_text, item) if high_text else low
        if high < low:
            raise _Invalid(f"invalid port range '{address.port_text}'")
        result += [(address.family, host, port) for port in range(low, high + 1)]
    return result


def _server_address(text: str) -> tuple[Optional[str], str, int]:
    """A ``server`` address -> (family, host, port); port 0 when absent (the client's destination port)."""
    address = _split_address(text)
    host = _check_host(address, text)
    if host in ("::", "0.0.0.0"):
        raise _Invalid(f"no address or the unspecified address in '{text}': HAProxy then connects to "
                       "the client's destination address, which fastproxy does not support (IPv6 "
                       "servers are written [addr]:port or addr:port)")
    port_text = address.port_text
    if not port_text:
        return address.family, host, 0
    if port_text[0] in "+-":
        raise _Invalid(f"port offsets ('{port_text}' in '{text}') are not supported by fastproxy; "
                       "write the port, or none to use the client's destination port")
    if "-" in port_text:
        raise _Invalid(f"port range not permitted here in '{text}'")
    if port_text == "0":
        return address.family, host, 0
    return address.family, host, _port(port_text, text)


# --- the proxy being read ----------------------------------------------------------------------------

FE, BE = 1, 2
_KIND_CAPS = {"frontend": FE, "backend": BE, "listen": FE | BE, "defaults": FE | BE}
_FE_TIMEOUTS = ("client", "client_fin")
_BE_TIMEOUTS = ("connect", "server", "tunnel", "server_fin", "queue", "check")


@dataclass
class _Proxy:
    """Everything a proxy section (or a ``defaults``) sets; built into Frontend/Backend at the end."""

    kind: str
    name: str
    location: Location
    mode: str = "tcp"
    mode_location: Optional[Location] = None
    timeouts: Timeouts = field(default_factory=Timeouts)
    maxconn: Optional[int] = None
    backlog: Optional[int] = None
    fullconn: Optional[int] = None
    retries: int = 3
    redispatch: bool = False
    balance: Balance = field(default_factory=Balance)
    client_keepalive: KeepAlive = field(default_factory=KeepAlive)
    server_keepalive: KeepAlive = field(default_factory=KeepAlive)
    log_targets: list[str] = field(default_factory=list)
    tcplog: bool = False
    dontlognull: bool = False
    allbackups: bool = False
    tcp_check: bool = False  # ``option tcp-check`` in effect (the last check option set)
    tcp_check_rules: list[TcpCheckRule] = field(default_factory=list)
    tcp_check_location: Optional[Location] = None  # the first ``tcp-check`` line of the rules in effect
    own_tcp_check_rules: bool = False  # False while the rules are the defaults section's
    rate_limit_sessions: Optional[int] = None
    inspect_delay: Optional[float] = None
    default_backend: Optional[str] = None
    default_backend_location: Optional[Location] = None
    options: dict = field(default_factory=dict)
    default_server: Server = field(default_factory=lambda: Server(name="", host="", port=0))
    acls: dict[str, list[Acl]] = field(default_factory=dict)
    tcp_request_rules: list[TcpRequestRule] = field(default_factory=list)
    use_backends: list[UseBackend] = field(default_factory=list)
    binds: list[Bind] = field(default_factory=list)
    servers: list[Server] = field(default_factory=list)
    disabled: bool = False
    referenced: bool = False  # a defaults section named by some "from"
    used_implicitly: bool = False  # a defaults section some proxy used for following it

    @property
    def caps(self) -> int:
        return _KIND_CAPS[self.kind]

    @property
    def is_defaults(self) -> bool:
        return self.kind == "defaults"

    def derive(self, kind: str, name: str, location: Location) -> _Proxy:
        """A new section starting from this ``defaults``: HAProxy copies every setting."""
        child = copy.deepcopy(self)
        child.kind, child.name, child.location = kind, name, location
        child.binds, child.servers, child.use_backends = [], [], []
        child.disabled = child.referenced = child.used_implicitly = False
        child.own_tcp_check_rules = False  # kept until the section writes a tcp-check rule of its own
        return child

    def describe(self) -> str:
        return f"{self.kind} '{self.name}'" if self.name or not self.is_defaults else "anonymous 'defaults'"


# --- one line as handlers see it ---------------------------------------------------------------------

@dataclass
class _Line:
    reader: _Reader
    file: str
    number: int
    words: list[str]

    @property
    def location(self) -> Location:
        return Location(self.file, self.number)

    @property
    def keyword(self) -> str:
        return _display_keyword(self.words)

    def warn(self, message: str, keyword: Optional[str] = None) -> None:
        self.reader.warn(self.location, keyword or self.keyword, message)


_TWO_WORD_KEYWORDS = {"option", "timeout", "tcp-request", "tcp-response", "tcp-check", "stats",
                      "rate-limit", "http-request", "http-response", "http-after-response", "stick",
                      "monitor"}


def _display_keyword(words: Sequence[str]) -> str:
    if not words:
        return ""
    if words[0] in ("no", "default") and len(words) > 2 and words[1] == "option":
        return " ".join(words[:3])
    if words[0] in _TWO_WORD_KEYWORDS and len(words) > 1:
        return " ".join(words[:2])
    return words[0]


GlobalHandler = Callable[[_Line, Global, list[str]], None]
ProxyHandler = Callable[[_Line, _Proxy, list[str]], None]


def _names(text: str) -> frozenset[str]:
    """A table of keywords written as blank-separated words."""
    return frozenset(text.split())


# --- global ------------------------------------------------------------------------------------------

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


def _global_hard_stop_after(line: _Line, g: Global, args: list[str]) -> None:
    g.hard_stop_after = _time(_leading(line, args, 1, "a time such as 30s")[0])


def _global_log(line: _Line, g: Global, args: list[str]) -> None:
    if args == ["global"]:
        raise _Invalid("'log global' is only valid in proxies")
    g.log_targets.append(_log_target(args))


_LOG_FACILITIES = _names("""
    kern user mail daemon auth syslog lpr news uucp cron auth2 ftp ntp audit alert cron2
    local0 local1 local2 local3 local4 local5 local6 local7
""")
_LOG_LEVELS = _names("emerg alert crit err warning notice info debug")
_LOG_SETTINGS = {"len", "format", "sample"}


_LOG_ADDRESS_PREFIXES = ("ring@", "fd@", "udp@", "udp4@", "udp6@", "unix@", "uxdg@", "abns@", "tcp@",
                         "tcp4@", "tcp6@")


def _check_log_address(text: str) -> None:
    """Log targets are recorded, not used: only check they read as HAProxy addresses."""
    if text in ("stdout", "stderr") or text.startswith("/") or text.startswith(_LOG_ADDRESS_PREFIXES):
        return
    address = _split_address(text)
    if address.host in ("", "*"):
        raise _Invalid(f"invalid address: '{text}'")
    _check_host(address, text)
    if address.port_text:
        _port(address.port_text, text)


def _log_target(args: list[str]) -> str:
    """``<target> [len n] [format f] [sample r:s] <facility> [<level> [<minlevel>]]``, checked."""
    if len(args) < 2:
        raise _Invalid("expects <address> and <facility> as arguments")
    _check_log_address(args[0])
    i = 1
    while i < len(args) - 1 and args[i] in _LOG_SETTINGS:
        i += 2
    facility, levels = args[i], args[i + 1:]
    if facility not in _LOG_FACILITIES:
        raise _Invalid(f"unknown log facility '{facility}'")
    for level in levels[:2]:
        if level not in _LOG_LEVELS:
            raise _Invalid(f"unknown optional log level '{level}'")
    if len(levels) > 2:
        raise _Invalid(f"cannot handle unexpected argument '{levels[2]}'")
    return " ".join(args)


def _global_stats(line: _Line, g: Global, args: list[str]) -> None:
    if not args:
        raise _Invalid("expects 'socket', 'timeout', 'maxconn' or 'bind-process'")
    sub, rest = args[0], args[1:]
    if sub == "socket":
        if not rest:
            raise _Invalid("expects an address (a path or [family@]ip:port) and optional settings",
                           "stats socket")
        g.stats_sockets.append(" ".join(rest))
        line.warn("recorded, but fastproxy does not serve HAProxy's stats socket", "stats socket")
    elif sub == "timeout":
        g.stats_timeout = _time(_leading(line, rest, 1, "a time such as 10s")[0])
    elif sub in ("maxconn", "bind-process"):
        line.warn("not supported by fastproxy; ignored", f"stats {sub}")
    else:
        raise _Invalid(f"'stats' supports 'socket', 'timeout', 'maxconn' and 'bind-process' (got '{sub}')")


def _global_numeric_id(option: str) -> GlobalHandler:
    def handler(line: _Line, g: Global, args: list[str]) -> None:
        g.options[option] = _integer(_one(args, f"a numeric {option}"), f"a numeric {option}", 0)
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


def _global_removed(message: str) -> GlobalHandler:
    def handler(line: _Line, g: Global, args: list[str]) -> None:
        raise _Invalid(message)
    return handler


GLOBAL_KEYWORDS: dict[str, GlobalHandler] = {
    "maxconn": _global_int("maxconn", "a positive integer", 1),
    "maxconnrate": _global_int("maxconnrate", "a number of connections per second", 0),
    "nbthread": _global_int("nbthread", "a number of threads", 1, 64),
    "tune.bufsize": _global_size("bufsize"),
    "tune.pipesize": _global_size("pipesize"),
    "maxpipes": _global_int("maxpipes", "a number of pipes", 0),
    "nosplice": _global_nosplice,
    "pidfile": _global_text("pidfile", "a file name"),
    "log": _global_log,
    "stats": _global_stats,
    "daemon": _global_daemon,
    "user": _global_account("user", "passwd"),
    "group": _global_account("group", "group"),
    "uid": _global_numeric_id("uid"),
    "gid": _global_numeric_id("gid"),
    "chroot": _global_text("chroot", "a directory"),
    "hard-stop-after": _global_hard_stop_after,
    "spread-checks": _global_int("spread_checks", "a percentage of the check interval", 0, 50),
    "setenv": _global_setenv,
    "presetenv": _global_setenv,
    "unsetenv": _global_unsetenv,
    "resetenv": _global_resetenv,
    "nbproc": _global_removed("nbproc is not supported any more since HAProxy 2.5 (use nbthread)"),
}

# Global keywords HAProxy 2.6 knows that fastproxy ignores (with a warning).
GLOBAL_IGNORED = _names("""
    ca-base crt-base busy-polling close-spread-time cpu-map default-path description
    expose-experimental-directives external-check fd-hard-limit grace h1-accept-payload-with-any-method
    h1-case-adjust h1-case-adjust-file h2-workaround-bogus-websocket-clients insecure-fork-wanted
    insecure-setuid-wanted issuers-chain-path localpeer log-send-hostname log-tag lua-load
    lua-load-per-thread lua-prepend-path master-worker max-spread-checks maxcompcpuusage maxcomprate
    maxsessrate maxsslconn maxsslrate maxzlibmem mworker-max-reloads no-memory-trimming node noepoll
    noevports nogetaddrinfo nokqueue nopoll noreuseport numa-cpu-mapping pp2-never-send-local
    profiling.tasks quiet server-state-base server-state-file set-dumpable set-var set-var-fmt
    ssl-default-bind-ciphers ssl-default-bind-ciphersuites ssl-default-bind-curves
    ssl-default-bind-options ssl-default-server-ciphers ssl-default-server-ciphersuites
    ssl-default-server-options ssl-dh-param-file ssl-engine ssl-load-extra-del-ext ssl-load-extra-files
    ssl-mode-async ssl-propquery ssl-provider ssl-provider-path ssl-server-verify ssl-skip-self-issued-ca
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
    tune.ssl.lifetime tune.ssl.maxrecord tune.ssl.ssl-ctx-cache-size tune.vars.global-max-size
    tune.vars.proc-max-size tune.vars.reqres-max-size tune.vars.sess-max-size tune.vars.txn-max-size
    tune.zlib.memlevel tune.zlib.windowsize
""")


# --- proxies: keyword specifications ------------------------------------------------------------------

@dataclass(frozen=True)
class _Keyword:
    handler: ProxyHandler
    caps: int = FE | BE  # the proxy capabilities it applies to; elsewhere it is ignored with a warning
    in_defaults: str = "yes"  # "yes" | "no" | "named" (only in named defaults sections)
    missing_cap: str = "warn"  # "warn" | "error": what HAProxy does where it does not apply
    hint: str = ""


PROXY_KEYWORDS: dict[str, _Keyword] = {}


def _keyword(name: str, caps: int = FE | BE, in_defaults: str = "yes", missing_cap: str = "warn",
             hint: str = "") -> Callable[[ProxyHandler], ProxyHandler]:
    def register(handler: ProxyHandler) -> ProxyHandler:
        PROXY_KEYWORDS[name] = _Keyword(handler, caps, in_defaults, missing_cap, hint)
        return handler
    return register


@_keyword("mode")
def _mode(line: _Line, proxy: _Proxy, args: list[str]) -> None:
    mode = _one(args, "'tcp' or 'http'")
    if mode == "health":
        raise _Invalid("'mode health' doesn't exist anymore")
    if mode not in ("tcp", "http"):
        raise _Invalid(f"unknown proxy mode '{mode}' (expects 'tcp'; fastproxy is a layer-4 proxy)")
    proxy.mode, proxy.mode_location = mode, line.location


@_keyword("maxconn", caps=FE, hint=" Maybe you want 'fullconn' instead ?")
def _maxconn(line: _Line, proxy: _Proxy, args: list[str]) -> None:
    proxy.maxconn = _integer(_one(args, "a number of connections"), "a number of connections", 0)


@_keyword("backlog", caps=FE)
def _backlog(line: _Line, proxy: _Proxy, args: list[str]) -> None:
    proxy.backlog = _integer(_one(args, "a queue length"), "a queue length", 0)


@_keyword("fullconn", caps=BE, hint=" Maybe you want 'maxconn' instead ?")
def _fullconn(line: _Line, proxy: _Proxy, args: list[str]) -> None:
    proxy.fullconn = _integer(_one(args, "a number of connections"), "a number of connections", 0)


@_keyword("retries", caps=BE)
def _retries(line: _Line, proxy: _Proxy, args: list[str]) -> None:
    proxy.retries = _integer(_one(args, "a number of retries"), "a number of retries", 0)


@_keyword("rate-limit", caps=FE)
def _rate_limit(line: _Line, proxy: _Proxy, args: list[str]) -> None:
    if not args or args[0] != "sessions":
        raise _Invalid(f"'rate-limit' only supports 'sessions' (got '{args[0] if args else ''}')")
    proxy.rate_limit_sessions = _integer(_leading(line, args[1:], 1, "a number of sessions per second")[0],
                                         "a number of sessions per second", 0)


_TIMEOUTS = {"connect": "connect", "client": "client", "server": "server", "tunnel": "tunnel",
             "client-fin": "client_fin", "server-fin": "server_fin", "queue": "queue", "check": "check"}
_TIMEOUTS_IGNORED = {"http-request", "http-keep-alive", "tarpit"}


@_keyword("timeout")
def _timeout(line: _Line, proxy: _Proxy, args: list[str]) -> None:
    if not args or (args[0] not in _TIMEOUTS and args[0] not in _TIMEOUTS_IGNORED):
        raise _Invalid("'timeout' supports 'client', 'server', 'connect', 'check', 'queue', "
                       "'http-keep-alive', 'http-request', 'tunnel', 'tarpit', 'client-fin' and "
                       f"'server-fin' (got '{args[0] if args else ''}')")
    name = args[0]
    if len(args) < 2:
        raise _Invalid("expects a time such as 5s (milliseconds by default)")
    if len(args) > 2:
        raise _Invalid(f"unexpected extra argument '{args[2]}' after value '{args[1]}'")
    value = _time(args[1])
    if name in _TIMEOUTS_IGNORED:
        line.warn("HTTP timeout: not used by fastproxy (layer 4); ignored")
        return
    attribute = _TIMEOUTS[name]
    needed = FE if attribute in _FE_TIMEOUTS else BE
    if not proxy.caps & needed:
        other = "frontend" if needed == FE else "backend"
        line.warn(f"will be ignored because {proxy.describe()} has no {other} capability")
        return
    setattr(proxy.timeouts, attribute, value or None)  # 0 means "no timeout", as in HAProxy


def _removed_timeout(replacement: str) -> ProxyHandler:
    def handler(line: _Line, proxy: _Proxy, args: list[str]) -> None:
        raise _Invalid(f"the '{line.words[0]}' directive is not supported anymore since HAProxy 2.1. "
                       f"Use '{replacement}'.")
    return handler


for _old, _new in (("contimeout", "timeout connect"), ("clitimeout", "timeout client"),
                   ("srvtimeout", "timeout server")):
    _keyword(_old)(_removed_timeout(_new))


_BALANCE_ALGORITHMS = {"roundrobin", "static-rr", "leastconn", "first", "source", "random", "hash"}
_BALANCE_LAYER7 = ("uri", "url_param", "hdr(", "rdp-cookie")
_HASH_EXPRESSIONS = {"src", "dst", "src_port", "dst_port", "req.ssl_sni", "req_ssl_sni"}


@_keyword("balance", caps=BE)
def _balance(line: _Line, proxy: _Proxy, args: list[str]) -> None:
    algorithm, rest = (args[0], args[1:]) if args else ("roundrobin", [])  # HAProxy's default
    arguments: tuple[str, ...] = ()
    random = re.fullmatch(r"random(?:\((.*)\))?", algorithm)
    if random:
        algorithm = "random"
        if random[1] is not None:
            draws = _integer(random[1], "a number of draws in random(<draws>)")
            if draws < 1:
                raise _Invalid("balance random : number of draws must be at least 1.")
            arguments = (str(draws),)
    elif algorithm == "hash":
        if not rest:
            raise _Invalid("balance hash requires a sample expression.")
        if len(rest) > 1:
            raise _Invalid(f"balance hash takes no other argument (got '{rest[1]}').")
        expression = rest[0]
        fetch = expression.split(",", 1)[0]
        if fetch not in _HASH_EXPRESSIONS:
            raise _Invalid(f"'balance hash {expression}': fastproxy hashes on the layer-4 samples "
                           f"{', '.join(sorted(_HASH_EXPRESSIONS))} only")
        arguments, rest = (expression,), []
    elif algorithm.startswith(_BALANCE_LAYER7):
        line.warn(f"'{algorithm}' needs layer 7 (or RDP cookies), which fastproxy does not read; "
                  "falling back to roundrobin as HAProxy does in TCP mode")
        algorithm, arguments, rest = "roundrobin", (), []
    elif algorithm not in _BALANCE_ALGORITHMS:
        raise _Invalid("balance only supports 'roundrobin', 'static-rr', 'leastconn', 'first', "
                       f"'source', 'random', 'hash', 'uri', 'url_param', 'hdr(name)' and "
                       f"'rdp-cookie(name)' (got '{algorithm}')")
    if rest:
        line.warn(f"extra argument '{rest[0]}' ignored (HAProxy ignores it too)")
    proxy.balance.algorithm, proxy.balance.arguments = algorithm, arguments


_HASH_FUNCTIONS = {"sdbm", "djb2", "crc32", "wt6"}


@_keyword("hash-type", caps=BE)
def _hash_type(line: _Line, proxy: _Proxy, args: list[str]) -> None:
    if not args or args[0] not in ("map-based", "consistent", "maglev"):
        raise _Invalid("'hash-type' supports 'map-based', 'consistent' and (a fastproxy extension) "
                       f"'maglev' (got '{args[0] if args else ''}')")
    function = args[1] if len(args) > 1 else None
    if function is not None and function not in _HASH_FUNCTIONS:
        raise _Invalid("'hash-type' only supports 'sdbm', 'djb2', 'crc32', or 'wt6' hash functions.")
    modifier = args[2] if len(args) > 2 else None
    if modifier not in (None, "avalanche"):
        raise _Invalid(f"unexpected '{modifier}' after the hash function (expects 'avalanche')")
    if len(args) > 3:
        line.warn(f"extra argument '{args[3]}' ignored (HAProxy ignores it too)")
    proxy.balance.hash_type = args[0]
    proxy.balance.hash_function = " ".join(args[1:3]) or None


@_keyword("hash-balance-factor", caps=BE)
def _hash_balance_factor(line: _Line, proxy: _Proxy, args: list[str]) -> None:
    what = "0 or a percentage above 100"
    factor = _integer(_leading(line, args, 1, what)[0], what, 0)
    if 0 < factor <= 100:
        raise _Invalid("'hash-balance-factor' must be 0 or greater than 100.")
    proxy.balance.hash_balance_factor = factor


@_keyword("log")
def _log(line: _Line, proxy: _Proxy, args: list[str]) -> None:
    if args == ["global"]:
        proxy.log_targets += line.reader.global_.log_targets
        return
    proxy.log_targets.append(_log_target(args))


@_keyword("default_backend", caps=FE)
def _default_backend(line: _Line, proxy: _Proxy, args: list[str]) -> None:
    proxy.default_backend = _one(args, "a backend name")
    proxy.default_backend_location = line.location


@_keyword("use_backend", caps=FE, in_defaults="no")
def _use_backend(line: _Line, proxy: _Proxy, args: list[str]) -> None:
    if not args:
        raise _Invalid("expects a backend name")
    name, rest = args[0], args[1:]
    if "%[" in name:
        raise _Invalid(f"dynamic backend names ('{name}') are not supported by fastproxy; "
                       "write one use_backend rule per backend")
    condition = None
    if rest:
        if rest[0] not in ("if", "unless"):
            raise _Invalid(f"unexpected keyword '{rest[0]}' after switching rule, only 'if' and "
                           "'unless' are allowed.")
        condition = line.reader.condition(line, proxy, rest)
    proxy.use_backends.append(UseBackend(backend=name, condition=condition, location=line.location))


@_keyword("acl", in_defaults="named")
def _acl(line: _Line, proxy: _Proxy, args: list[str]) -> None:
    if len(args) < 2:
        raise _Invalid("expects an ACL name and a criterion")
    name = args[0]
    bad = re.search(r"[^A-Za-z0-9_.:-]", name)
    if bad:
        raise _Invalid(f"character '{bad.group()}' is not permitted in acl name '{name}'")
    try:
        acl = acls.parse_acl(name, args[1:], read_patterns=line.reader.read_patterns, location=line.location)
    except acls.AclError as exc:
        raise _Invalid(f"error detected while parsing ACL '{name}' : {exc}") from None
    if acls.acl_has_no_pattern(acl):
        line.warn("no pattern to match against were provided, so this ACL will never match "
                  "(add '--' to silence this, or use '-m found' to test for existence)")
    proxy.acls.setdefault(name, []).append(acl)


@_keyword("tcp-request", caps=FE | BE, in_defaults="named")
def _tcp_request(line: _Line, proxy: _Proxy, args: list[str]) -> None:
    phase = args[0] if args else ""
    if phase == "inspect-delay":
        delay = _time(_leading(line, args[1:], 1, "a delay such as 5s")[0])
        if not proxy.caps & FE:
            line.warn("ignored: fastproxy inspects content in frontends only")
            return
        proxy.inspect_delay = delay
        return
    if phase not in ("connection", "session", "content"):
        raise _Invalid("expects 'inspect-delay', 'connection', 'session' or 'content' "
                       f"(got '{phase}')")
    if not proxy.caps & FE:
        raise _Invalid("tcp-request rules in a backend are not supported by fastproxy (it evaluates "
                       "them in frontends only); move the rule to the frontend")
    action = args[1] if len(args) > 1 else ""
    rest = args[2:]
    _warn_rule_order(line, proxy, phase)
    if action in ("accept", "reject", "silent-drop"):
        if action == "silent-drop":
            line.warn("treated as 'reject' (fastproxy closes the connection)")
            action = "reject"
        condition = None
        if rest:
            if rest[0] not in ("if", "unless"):
                raise _Invalid(f"expects 'if' or 'unless' after '{action}' (got '{rest[0]}')")
            condition = line.reader.condition(line, proxy, rest)
            if phase in ("connection", "session") and acls.condition_uses(condition, proxy.acls,
                                                                          acls.SNI_FETCHES):
                line.warn(f"this condition reads the TLS ClientHello, which is not available to "
                          f"'tcp-request {phase}' rules: that part will never match")
        proxy.tcp_request_rules.append(TcpRequestRule(phase=phase, action=action, condition=condition,
                                                      location=line.location))
    elif _known_tcp_request_action(action):
        line.warn(f"action '{action}' is not supported by fastproxy; rule ignored")
    else:
        raise _Invalid(f"'tcp-request {phase}' expects 'accept', 'reject' or another HAProxy action "
                       f"(got '{action}')")


_PHASE_ORDER = {"connection": 0, "session": 1, "content": 2}


def _warn_rule_order(line: _Line, proxy: _Proxy, phase: str) -> None:
    """HAProxy evaluates rule sets in a fixed order, whatever the order of the lines: say so."""
    if proxy.use_backends:
        line.warn("a 'tcp-request' rule placed after a 'use_backend' rule will still be processed before.")
    later = [rule.phase for rule in proxy.tcp_request_rules if _PHASE_ORDER[rule.phase] > _PHASE_ORDER[phase]]
    if later:
        line.warn(f"a 'tcp-request {phase}' rule placed after a 'tcp-request {later[0]}' rule will still "
                  "be processed before.")


_TCP_REQUEST_ACTIONS = _names("""
    capture do-resolve expect-netscaler-cip expect-proxy ot-group sc-inc-gpc sc-inc-gpc0 sc-inc-gpc1
    sc-set-gpt sc-set-gpt0 send-spoe-group set-dst set-dst-port set-log-level set-mark set-nice
    set-priority-class set-priority-offset set-src set-src-port set-tos set-var set-var-fmt switch-mode
    track-sc0 track-sc1 track-sc2 unset-var use-service
""")


def _known_tcp_request_action(action: str) -> bool:
    return action.split("(", 1)[0] in _TCP_REQUEST_ACTIONS


@_keyword("bind", caps=FE, in_defaults="no")
def _bind(line: _Line, proxy: _Proxy, args: list[str]) -> None:
    if not args:
        raise _Invalid("expects [address]:port[-port][,...] and optional settings")
    settings: dict = {}
    options = args[1:]
    i = 0
    while i < len(options):
        name = options[i]
        i += 1
        count = BIND_OPTIONS.get(name)
        if count is None:
            raise _Invalid(f"unknown keyword '{name}' in 'bind {args[0]}'")
        values = options[i:i + count]
        if len(values) < count:
            raise _Invalid(f"'{name}' expects an argument in 'bind {args[0]}'")
        i += count
        _bind_option(line, settings, name, values)
    for family, host, port in _bind_addresses(args[0]):
        bind = Bind(host=host, port=port, family=family, location=line.location, **settings)
        proxy.binds.append(bind)


def _bind_option(line: _Line, settings: dict, name: str, values: list[str]) -> None:
    if name == "name":
        settings["name"] = values[0]
    elif name in ("backlog", "maxconn"):
        settings[name] = _integer(values[0], f"a number for '{name}'", 1)
    elif name == "accept-proxy":
        settings["accept_proxy"] = True
    elif name == "defer-accept":
        settings["defer_accept"] = True
    elif name in ("v4v6", "v6only"):
        settings["v6only"] = name == "v6only"
    elif name == "transparent":
        raise _Invalid("'transparent' (binding foreign addresses) is not supported by fastproxy")
    else:
        line.warn(f"bind setting '{name}' is not supported by fastproxy; ignored"
                  + (" (TLS passes through untouched)" if name == "ssl" else ""), f"bind {name}")


# HAProxy 2.6's bind settings and how many arguments each takes (from ``haproxy -dKcfg``).
BIND_OPTIONS: dict[str, int] = {
    "accept-netscaler-cip": 1, "accept-proxy": 0, "backlog": 1, "defer-accept": 0, "expose-fd": 1,
    "gid": 1, "group": 1, "id": 1, "interface": 1, "level": 1, "maxconn": 1, "mode": 1, "mss": 1,
    "name": 1, "namespace": 1, "nice": 1, "process": 1, "proto": 1, "severity-output": 1, "shards": 1,
    "tcp-ut": 1, "tfo": 0, "thread": 1, "transparent": 0, "uid": 1, "user": 1, "v4v6": 0, "v6only": 0,
    "ssl": 0, "allow-0rtt": 0, "alpn": 1, "ca-file": 1, "ca-ignore-err": 1, "ca-sign-file": 1,
    "ca-sign-pass": 1, "ca-verify-file": 1, "ciphers": 1, "ciphersuites": 1, "crl-file": 1, "crt": 1,
    "crt-ignore-err": 1, "crt-list": 1, "curves": 1, "ecdhe": 1, "force-sslv3": 0, "force-tlsv10": 0,
    "force-tlsv11": 0, "force-tlsv12": 0, "force-tlsv13": 0, "generate-certificates": 0,
    "no-ca-names": 0, "no-sslv3": 0, "no-tls-tickets": 0, "no-tlsv10": 0, "no-tlsv11": 0,
    "no-tlsv12": 0, "no-tlsv13": 0, "npn": 1, "prefer-client-ciphers": 0, "ssl-max-ver": 1,
    "ssl-min-ver": 1, "strict-sni": 0, "tls-ticket-keys": 1, "verify": 1,
}


# --- servers -----------------------------------------------------------------------------------------

ServerHandler = Callable[[Server, list[str]], None]


def _server_flag(attribute: str, value: bool) -> ServerHandler:
    def handler(server: Server, values: list[str]) -> None:
        setattr(server, attribute, value)
    return handler


def _server_int(attribute: str, what: str, low: int, high: Optional[int] = None) -> ServerHandler:
    def handler(server: Server, values: list[str]) -> None:
        setattr(server, attribute, _integer(values[0], what, low, high))
    return handler


def _server_time(attribute: str, positive: bool = True) -> ServerHandler:
    def handler(server: Server, values: list[str]) -> None:
        value = _time(values[0])
        if positive and value <= 0:
            raise _Invalid(f"invalid value 0 for '{attribute}' (expects a delay above 0)")
        setattr(server, attribute, value)
    return handler


def _server_port(server: Server, values: list[str]) -> None:
    server.check_port = _integer(values[0], "a port for 'port'", 1, 65535)


def _server_observe(server: Server, values: list[str]) -> None:
    mode = values[0]
    if mode == "layer7":
        raise _Invalid("'observe layer7' watches HTTP responses and needs 'mode http'; fastproxy is a "
                       "layer-4 proxy (use 'observe layer4')")
    if mode not in ("none", "layer4"):
        raise _Invalid(f"'observe' expects one of 'none', 'layer4', 'layer7' but got '{mode}'")
    server.observe = None if mode == "none" else mode


def _server_choice(option: str, attribute: str, choices: tuple[str, ...]) -> ServerHandler:
    """A setting taking one of a few words (``on-error``, ``on-marked-down``...)."""
    def handler(server: Server, values: list[str]) -> None:
        if values[0] not in choices:
            names = [f"'{choice}'" for choice in choices]
            expected = names[0] if len(names) == 1 else f"one of {', '.join(names[:-1])} or {names[-1]}"
            raise _Invalid(f"'{option}' expects {expected} but got '{values[0]}'")
        setattr(server, attribute, values[0])
    return handler


def _server_addr(server: Server, values: list[str]) -> None:
    address = _split_address(values[0])
    if address.port_text:
        raise _Invalid(f"'addr' takes an address without port (use 'port'), got '{values[0]}'")
    server.check_addr = _check_host(address, values[0])


SERVER_OPTIONS: dict[str, tuple[int, ServerHandler]] = {
    "weight": (1, _server_int("weight", "a weight for 'weight'", 0, 256)),
    "maxconn": (1, _server_int("maxconn", "a number of connections for 'maxconn'", 0)),
    "maxqueue": (1, _server_int("maxqueue", "a queue length for 'maxqueue'", 0)),
    "minconn": (1, _server_int("minconn", "a number of connections for 'minconn'", 0)),
    "check": (0, _server_flag("check", True)),
    "no-check": (0, _server_flag("check", False)),
    "inter": (1, _server_time("inter")),
    "fastinter": (1, _server_time("fastinter")),
    "downinter": (1, _server_time("downinter")),
    "rise": (1, _server_int("rise", "a count for 'rise'", 1)),
    "fall": (1, _server_int("fall", "a count for 'fall'", 1)),
    "port": (1, _server_port),
    "addr": (1, _server_addr),
    "backup": (0, _server_flag("backup", True)),
    "no-backup": (0, _server_flag("backup", False)),
    "disabled": (0, _server_flag("disabled", True)),
    "enabled": (0, _server_flag("disabled", False)),
    "slowstart": (1, _server_time("slowstart", positive=False)),
    "send-proxy": (0, _server_flag("send_proxy", True)),
    "no-send-proxy": (0, _server_flag("send_proxy", False)),
    "send-proxy-v2": (0, _server_flag("send_proxy_v2", True)),
    "no-send-proxy-v2": (0, _server_flag("send_proxy_v2", False)),
    "id": (1, _server_int("id", "a custom id for 'id'", 1)),
    "observe": (1, _server_observe),
    "error-limit": (1, _server_int("error_limit", "a number of errors for 'error-limit'", 1)),
    "on-error": (1, _server_choice("on-error", "on_error",
                                   ("fastinter", "fail-check", "sudden-death", "mark-down"))),
    "on-marked-down": (1, _server_choice("on-marked-down", "on_marked_down", ("shutdown-sessions",))),
    "on-marked-up": (1, _server_choice("on-marked-up", "on_marked_up", ("shutdown-backup-sessions",))),
}

# HAProxy 2.6's other server settings and their argument counts (from ``haproxy -dKcfg``): warnings.
SERVER_IGNORED: dict[str, int] = {
    "agent-addr": 1, "agent-check": 0, "agent-inter": 1, "agent-port": 1, "agent-send": 1,
    "allow-0rtt": 0, "alpn": 1, "ca-file": 1, "check-alpn": 1, "check-proto": 1, "check-send-proxy": 0,
    "check-sni": 1, "check-ssl": 0, "check-via-socks4": 0, "ciphers": 1, "ciphersuites": 1, "cookie": 1,
    "crl-file": 1, "crt": 1, "force-sslv3": 0, "force-tlsv10": 0, "force-tlsv11": 0,
    "force-tlsv12": 0, "force-tlsv13": 0, "init-addr": 1, "log-proto": 1, "max-reuse": 1, "namespace": 1,
    "no-agent-check": 0, "no-check-send-proxy": 0, "no-check-ssl": 0, "no-send-proxy-v2-ssl": 0,
    "no-send-proxy-v2-ssl-cn": 0, "no-ssl": 0, "no-ssl-reuse": 0, "no-sslv3": 0, "no-tfo": 0,
    "no-tls-tickets": 0, "no-tlsv10": 0, "no-tlsv11": 0, "no-tlsv12": 0, "no-tlsv13": 0, "non-stick": 0,
    "npn": 1, "pool-low-conn": 1, "pool-max-conn": 1, "pool-purge-delay": 1, "proto": 1,
    "proxy-v2-options": 1, "redir": 1,
    "resolve-net": 1, "resolve-opts": 1, "resolve-prefer": 1, "resolvers": 1, "send-proxy-v2-ssl": 0,
    "send-proxy-v2-ssl-cn": 0, "sni": 1, "socks4": 1, "source": 1, "ssl": 0, "ssl-max-ver": 1,
    "ssl-min-ver": 1, "ssl-reuse": 0, "stick": 0, "tcp-ut": 1, "tfo": 0, "tls-tickets": 0, "track": 1,
    "usesrc": 1, "verify": 1, "verifyhost": 1, "ws": 1,
}


def _apply_server_options(line: _Line, server: Server, options: list[str], *, is_default: bool) -> None:
    i = 0
    while i < len(options):
        name = options[i]
        i += 1
        if name in SERVER_OPTIONS:
            count, handler = SERVER_OPTIONS[name]
        elif name in SERVER_IGNORED:
            count, handler = SERVER_IGNORED[name], None
        else:
            raise _Invalid(f"unknown keyword '{name}'")
        values = options[i:i + count]
        if len(values) < count:
            raise _Invalid(f"'{name}' expects an argument")
        i += count
        if is_default and name == "id":
            raise _Invalid("'id' option is not accepted in default-server sections")
        if handler is None:
            line.warn(f"server setting '{name}' is not supported by fastproxy; ignored",
                      f"{line.words[0]} {name}")
        else:
            handler(server, values)


def _check_name(kind: str, name: str) -> None:
    bad = re.search(r"[^A-Za-z0-9_.:-]", name)
    if bad:
        raise _Invalid(f"character '{bad.group()}' is not permitted in {kind} name '{name}'")


@_keyword("server", caps=BE, in_defaults="no", missing_cap="error")
def _server(line: _Line, proxy: _Proxy, args: list[str]) -> None:
    if len(args) < 2:
        raise _Invalid("expects <name> and <address>[:<port>] as arguments")
    name, address = args[0], args[1]
    _check_name("server", name)
    _add_server(line, proxy, name, address, args[2:])


def _add_server(line: _Line, proxy: _Proxy, name: str, address: str, options: list[str]) -> None:
    try:
        _add_named_server(line, proxy, name, address, options)
    except _Invalid as exc:
        raise _Invalid(f"server '{proxy.name}/{name}': {exc.message}") from None


def _add_named_server(line: _Line, proxy: _Proxy, name: str, address: str, options: list[str]) -> None:
    for other in proxy.servers:
        if other.name == name:
            raise _Invalid(f"another server named '{name}' was already defined at {other.location}, "
                           "please use distinct names")
    family, host, port = _server_address(address)
    server = dataclasses.replace(proxy.default_server, name=name, host=host, port=port, family=family,
                                 location=line.location)
    _apply_server_options(line, server, options, is_default=False)
    if server.id is not None:
        for other in proxy.servers:
            if other.id == server.id:
                raise _Invalid(f"custom id {server.id} already used at {other.location} "
                               f"('server {other.name}')")
    proxy.servers.append(server)


@_keyword("server-template", caps=BE, in_defaults="no", missing_cap="error")
def _server_template(line: _Line, proxy: _Proxy, args: list[str]) -> None:
    if len(args) < 3:
        raise _Invalid("expects <prefix> <num | range> <fqdn>[:<port>] as arguments")
    prefix, count, address = args[0], args[1], args[2]
    _check_name("server", prefix)
    match = re.fullmatch(r"([0-9]+)(?:-([0-9]+))?", count)
    low, high = (1, int(match[1])) if match and not match[2] else (
        (int(match[1]), int(match[2])) if match else (0, 0))
    if not match or low < 1 or high < low:
        raise _Invalid(f"Wrong server-template number or range arg '{count}'.")
    for number in range(low, high + 1):
        _add_server(line, proxy, f"{prefix}{number}", address, args[3:])


@_keyword("default-server", caps=BE, missing_cap="error")
def _default_server(line: _Line, proxy: _Proxy, args: list[str]) -> None:
    _apply_server_options(line, proxy.default_server, args, is_default=True)


@_keyword("dispatch", caps=BE, in_defaults="no")
def _dispatch(line: _Line, proxy: _Proxy, args: list[str]) -> None:
    raise _Invalid("'dispatch' is not supported by fastproxy; declare a 'server' instead")


# --- options -----------------------------------------------------------------------------------------

OptionHandler = Callable[[_Line, _Proxy, bool, list[str]], None]


@dataclass(frozen=True)
class _Option:
    handler: Optional[OptionHandler]  # None: known to HAProxy, ignored by fastproxy with a warning
    caps: int = FE | BE
    message: str = "not supported by fastproxy; ignored"
    negatable: bool = True  # "no option <name>" is valid


def _flag(attribute: str) -> OptionHandler:
    def handler(line: _Line, proxy: _Proxy, enabled: bool, args: list[str]) -> None:
        _none(args)
        setattr(proxy, attribute, enabled)
    return handler


def _recorded(line: _Line, proxy: _Proxy, enabled: bool, args: list[str]) -> None:
    _none(args)
    proxy.options[line.words[2] if line.words[0] == "no" else line.words[1]] = enabled


def _keepalive(*sides: str) -> OptionHandler:
    def handler(line: _Line, proxy: _Proxy, enabled: bool, args: list[str]) -> None:
        _none(args)
        for side in sides:
            if side == "client" and proxy.caps & FE:
                proxy.client_keepalive.enabled = enabled
            if side == "server" and proxy.caps & BE:
                proxy.server_keepalive.enabled = enabled
    return handler


def _redispatch(line: _Line, proxy: _Proxy, enabled: bool, args: list[str]) -> None:
    if len(args) > 1:
        line.warn(f"extra argument '{args[1]}' ignored (HAProxy ignores it too)")
    if args:
        interval = _integer(args[0], "a retry interval (a non-zero integer)")
        if interval == 0:
            enabled = False
        proxy.options["redispatch-interval"] = interval
    proxy.redispatch = enabled


def _tcplog(line: _Line, proxy: _Proxy, enabled: bool, args: list[str]) -> None:
    _none(args)
    if not proxy.caps & FE:
        line.warn(f"{proxy.describe()} : 'option tcplog' directive is ignored in backends.")
        return
    proxy.tcplog = enabled


def _httplog(line: _Line, proxy: _Proxy, enabled: bool, args: list[str]) -> None:
    line.warn("needs 'mode http'; falling back to 'option tcplog' as HAProxy does in TCP mode")
    if proxy.caps & FE:
        proxy.tcplog = enabled


def _other_check_option(line: _Line, proxy: _Proxy, enabled: bool, args: list[str]) -> None:
    """``option httpchk``, ``mysql-check``...: not implemented, but they replace ``option tcp-check``
    as in HAProxy, where the last check option of a proxy is the one in effect."""
    line.warn(f"'{line.words[1]}' health checks are not implemented by fastproxy; its checks are TCP "
              "connects or 'tcp-check' sequences (option tcp-check)")
    proxy.tcp_check = False


def _removed_option(line: _Line, proxy: _Proxy, enabled: bool, args: list[str]) -> None:
    raise _Invalid(f"option '{line.words[-1] if not args else args[0]}' is not supported any more since "
                   "HAProxy 2.5")


OPTIONS: dict[str, _Option] = {
    "redispatch": _Option(_redispatch, BE),
    "splice-auto": _Option(_recorded),
    "splice-request": _Option(_recorded),
    "splice-response": _Option(_recorded),
    "tcpka": _Option(_keepalive("client", "server"), negatable=False),
    "clitcpka": _Option(_keepalive("client"), FE),
    "srvtcpka": _Option(_keepalive("server"), BE),
    "tcplog": _Option(_tcplog, negatable=False),
    "dontlognull": _Option(_flag("dontlognull"), FE),
    "allbackups": _Option(_flag("allbackups"), BE),
    "httplog": _Option(_httplog, negatable=False),
    "httpslog": _Option(_httplog, negatable=False),
    "forwardfor": _Option(None, negatable=False),
    "originalto": _Option(None, negatable=False),
    "http-restrict-req-hdr-names": _Option(None, negatable=False),
    "http_proxy": _Option(_removed_option),
    **{name: _Option(None) for name in _names("""
        abortonclose accept-invalid-http-request accept-invalid-http-response checkcache contstats
        disable-h2-upgrade dontlog-normal h1-case-adjust-bogus-client
        h1-case-adjust-bogus-server http-buffer-request http-ignore-probes http-keep-alive http-no-delay
        http-pretend-keepalive http-server-close http-use-proxy-header httpclose idle-close-on-response
        independent-streams log-health-checks log-separate-errors logasap nolinger persist prefer-last-server
        socket-stats tcp-smart-accept tcp-smart-connect transparent
    """)},
    "tcp-check": _Option(_flag("tcp_check"), BE, negatable=False),
    **{name: _Option(_other_check_option, BE, negatable=False) for name in _names("""
        external-check httpchk ldap-check mysql-check pgsql-check redis-check smtpchk spop-check
        ssl-hello-chk
    """)},
}


# Options HAProxy checks for arguments even where it ignores them (the check options take some).
_NO_ARGUMENT_HANDLERS = {option.handler for name, option in OPTIONS.items()
                         if name not in ("redispatch", "http_proxy")
                         and option.handler is not _other_check_option}


@_keyword("option")
def _option(line: _Line, proxy: _Proxy, args: list[str]) -> None:
    _set_option(line, proxy, args, enabled=True)


def _set_option(line: _Line, proxy: _Proxy, args: list[str], *, enabled: bool) -> None:
    name = args[0] if args else ""
    spec = OPTIONS.get(name)
    if spec is None:
        raise _Invalid(f"unknown option '{name}'.")
    if not enabled and not spec.negatable:
        raise _Invalid(f"negation/default is not supported for option '{name}'.")
    if not proxy.caps & spec.caps:
        other = "frontend" if spec.caps == FE else "backend"
        line.warn(f"'{name}' ignored because {proxy.describe()} has no {other} capability.")
        if spec.handler in _NO_ARGUMENT_HANDLERS:
            _none(args[1:])  # HAProxy still checks there are no arguments
        return
    if spec.handler is None:
        line.warn(spec.message)
        return
    spec.handler(line, proxy, enabled, args[1:])


@_keyword("no")
def _no(line: _Line, proxy: _Proxy, args: list[str]) -> None:
    if args[:1] == ["option"]:
        _set_option(line, proxy, args[1:], enabled=False)
    elif args[:1] == ["log"]:
        if len(args) > 1:
            raise _Invalid("'no log' does not expect arguments")
        proxy.log_targets = []
    else:
        raise _Invalid("'no' applies to 'option <name>' and 'log' only")


@_keyword("default")
def _default(line: _Line, proxy: _Proxy, args: list[str]) -> None:
    if args[:1] != ["option"] or len(args) < 2:
        raise _Invalid("'default' applies to 'option <name>' only")
    spec = OPTIONS.get(args[1])
    if spec is None:
        raise _Invalid(f"unknown option '{args[1]}'.")
    if not spec.negatable:
        raise _Invalid(f"negation/default is not supported for option '{args[1]}'.")
    line.warn("'default option' (back to the defaults section's value) is not supported by fastproxy; "
              "ignored")


def _keepalive_setting(side: str, setting: str) -> ProxyHandler:
    def handler(line: _Line, proxy: _Proxy, args: list[str]) -> None:
        keepalive = proxy.client_keepalive if side == "client" else proxy.server_keepalive
        if setting == "count":
            value: float = _integer(_leading(line, args, 1, "a number of probes")[0], "a number of probes", 0)
        else:
            value = _time(_leading(line, args, 1, "a time such as 30s")[0])
        setattr(keepalive, setting, value)
    return handler


for _prefix, _side, _cap in (("clitcpka", "client", FE), ("srvtcpka", "server", BE)):
    for _suffix, _setting in (("idle", "idle"), ("intvl", "interval"), ("cnt", "count")):
        _keyword(f"{_prefix}-{_suffix}", caps=_cap)(_keepalive_setting(_side, _setting))


@_keyword("disabled")
def _disabled(line: _Line, proxy: _Proxy, args: list[str]) -> None:
    _none(args)
    proxy.disabled = True


@_keyword("enabled")
def _enabled(line: _Line, proxy: _Proxy, args: list[str]) -> None:
    _none(args)
    proxy.disabled = False


@_keyword("description")
def _description(line: _Line, proxy: _Proxy, args: list[str]) -> None:
    if not args:
        raise _Invalid("expects a string argument")
    proxy.options["description"] = " ".join(args)


@_keyword("id", in_defaults="no")
def _id(line: _Line, proxy: _Proxy, args: list[str]) -> None:
    proxy.options["id"] = _integer(_one(args, "a numeric id"), "a numeric id above 0", 1)


# --- tcp-check -----------------------------------------------------------------------------------------

TcpCheckParser = Callable[[_Line, str, list[str]], Optional[TcpCheckRule]]
_TCP_CHECK_VARIABLE_ACTION = re.compile(r"(set-var|set-var-fmt|unset-var)\(.+\)")


@_keyword("tcp-check", caps=BE)
def _tcp_check(line: _Line, proxy: _Proxy, args: list[str]) -> None:
    """One rule of the check sequence; the first rule a section writes replaces the defaults' rules."""
    action = args[0] if args else ""
    parser = _TCP_CHECK_ACTIONS.get(action)
    if parser is None and _TCP_CHECK_VARIABLE_ACTION.fullmatch(action):
        parser = _tcp_check_variable
    if parser is None:
        raise _Invalid("'tcp-check' only supports 'comment', 'connect', 'send', 'send-binary', 'send-lf', "
                       "'send-binary-lf', 'expect', 'set-var(*)', 'set-var-fmt(*)' and 'unset-var(*)' "
                       f"(got '{action}')")
    rule = parser(line, action, args[1:])
    if not proxy.own_tcp_check_rules:
        proxy.tcp_check_rules, proxy.tcp_check_location = [], line.location
        proxy.own_tcp_check_rules = True
    if rule is not None:
        rule.location = line.location
        proxy.tcp_check_rules.append(rule)


def _tcp_check_settings(args: list[str], settings: Mapping[str, int], expected: str) -> list[tuple[str, str]]:
    """``name [value]`` pairs, each name taking ``settings[name]`` (0 or 1) values."""
    result = []
    i = 0
    while i < len(args):
        name = args[i]
        count = settings.get(name)
        if count is None:
            raise _Invalid(f"expects {expected} but got '{name}' as argument")
        if count and i + 1 >= len(args):
            raise _Invalid(f"'{name}' expects an argument")
        result.append((name, args[i + 1] if count else ""))
        i += 1 + count
    return result


_TCP_CHECK_CONNECT_SETTINGS = {"default": 0, "port": 1, "addr": 1, "linger": 0, "comment": 1,
                               "send-proxy": 0, "via-socks4": 0, "ssl": 0, "sni": 1, "alpn": 1, "proto": 1}


def _tcp_check_connect(line: _Line, action: str, args: list[str]) -> TcpCheckRule:
    rule = TcpCheckRule(action="connect")
    address_port = None
    expected = "'comment', 'port', 'addr', 'send-proxy', 'ssl', 'sni', 'alpn', 'proto', 'via-socks4', " \
               "'linger' or 'default'"
    for name, value in _tcp_check_settings(args, _TCP_CHECK_CONNECT_SETTINGS, expected):
        if name == "port":
            rule.port = _integer(value, "a TCP port for 'port'", 1, 65535)
        elif name == "addr":
            rule.addr, address_port = _tcp_check_address(value)
        elif name == "linger":
            rule.linger = True
        elif name == "comment":
            rule.comment = value
        elif name != "default":  # "default": the server's check settings, which is what fastproxy uses
            line.warn(f"connect setting '{name}' is not supported by fastproxy; ignored",
                      f"tcp-check connect {name}")
    if rule.port is None:
        rule.port = address_port
    return rule


def _tcp_check_address(text: str) -> tuple[str, Optional[int]]:
    """``addr <ip>[:port]``: an IP address (HAProxy does not resolve names here)."""
    address = _split_address(text)
    host = _check_host(address, text)
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise _Invalid(f"'addr' : invalid address: '{host}' in '{text}' (expects an IP address)") from None
    return host, _port(address.port_text, text) if address.port_text else None


def _tcp_check_send(line: _Line, action: str, args: list[str]) -> Optional[TcpCheckRule]:
    if not args:
        raise _Invalid(f"'{action}' expects the data to send as argument")
    data, settings = args[0], _tcp_check_settings(args[1:], {"comment": 1}, "'comment'")
    if action.endswith("-lf"):
        line.warn("log-format data is not supported by fastproxy; this rule is skipped")
        return None
    rule = TcpCheckRule(action="send", data=_wire_bytes(data) if action == "send" else _hex_bytes(data))
    for _, value in settings:
        rule.comment = value
    return rule


def _wire_bytes(text: str) -> bytes:
    """The bytes HAProxy sends or matches for a word: one byte per character up to U+00FF (what
    ``\\xHH`` escapes give), the file's original bytes for undecodable ones, UTF-8 for the rest."""
    return b"".join(bytes([ord(c)]) if ord(c) < 0x100 else c.encode("utf-8", "surrogateescape")
                    for c in text)


def _hex_bytes(text: str) -> bytes:
    bad = re.search(r"[^0-9A-Fa-f]", text)
    if bad:
        raise _Invalid(f"'{text}' is not a valid binary string: hex digits expected (found '{bad.group()}')")
    if len(text) % 2:
        raise _Invalid(f"'{text}' is not a valid binary string: an even number of hex digits expected")
    return bytes.fromhex(text)


_TCP_CHECK_PATTERNS = ("string", "rstring", "binary", "rbinary", "string-lf", "binary-lf")
_TCP_CHECK_EXPECT_SETTINGS = ("min-recv", "comment", "ok-status", "error-status", "tout-status",
                              "on-success", "on-error", "status-code")
_TCP_CHECK_STATUSES = {
    "ok-status": ("L7OK", "L7OKC", "L6OK", "L4OK"),
    "error-status": ("L7RSP", "L7STS", "L6RSP", "L4CON", "L7OKC"),  # HAProxy takes L7OKC, undocumented
    "tout-status": ("L7TOUT", "L6TOUT", "L4TOUT"),
}


def _tcp_check_expect(line: _Line, action: str, args: list[str]) -> Optional[TcpCheckRule]:
    if not args:
        raise _Invalid("expects at least a matching pattern as arguments")
    rule = TcpCheckRule(action="expect")
    match: Optional[str] = None
    pattern = ""
    i = 0
    while i < len(args):
        word, negated_here = args[i], False
        while word.startswith("!"):  # "!", "! !" and "!string" each toggle, as in HAProxy
            rule.negate, negated_here, word = not rule.negate, True, word[1:]
            if not word:
                i += 1
                word = args[i] if i < len(args) else ""
        if word in _TCP_CHECK_PATTERNS:
            if match is not None:
                raise _Invalid(f"only one pattern expected (got '{match}' and '{word}')")
            if i + 1 >= len(args):
                raise _Invalid(f"'{word}' expects a <pattern> as argument")
            match, pattern = word, args[i + 1]
        elif word in _TCP_CHECK_EXPECT_SETTINGS:
            if negated_here:
                raise _Invalid(f"[!] not supported with '{word}'")
            if i + 1 >= len(args):
                raise _Invalid(f"'{word}' expects an argument")
            _tcp_check_expect_setting(line, rule, word, args[i + 1])
        else:
            raise _Invalid("only supports 'min-recv', '[!]string', '[!]rstring', '[!]binary', '[!]rbinary', "
                           "'[!]string-lf', '[!]binary-lf', 'comment', 'ok-status', 'error-status', "
                           f"'tout-status', 'on-success', 'on-error' or 'status-code' but got '{word}' as "
                           "argument")
        i += 2
    if match is None:
        raise _Invalid("pattern not found: expects 'string', 'rstring', 'binary' or 'rbinary' and a pattern")
    if match.endswith("-lf"):
        line.warn("log-format patterns are not supported by fastproxy; this rule is skipped")
        return None
    rule.match = match
    if match == "string":
        rule.pattern = _wire_bytes(pattern)
    elif match == "binary":
        rule.pattern = _hex_bytes(pattern)
    else:
        try:
            re.compile(pattern)
        except (re.error, OverflowError, RecursionError) as exc:
            raise _Invalid(f"regex '{pattern}' is invalid ({exc})") from None
        rule.pattern = pattern
    return rule


def _tcp_check_expect_setting(line: _Line, rule: TcpCheckRule, name: str, value: str) -> None:
    if name == "min-recv":
        rule.min_recv = _integer(value, "-1 or a number of bytes for 'min-recv'", -1, 2**31 - 1)
    elif name == "comment":
        rule.comment = value
    elif name in _TCP_CHECK_STATUSES:
        statuses = _TCP_CHECK_STATUSES[name]
        if value.upper() not in statuses:
            raise _Invalid(f"'{name}' only supports {', '.join(repr(s) for s in statuses[:-1])} or "
                           f"'{statuses[-1]}' status (got '{value}')")
        setattr(rule, name.replace("-", "_"), value.upper())
    else:
        line.warn(f"expect setting '{name}' is not used by fastproxy (its check reports carry no custom "
                  "message or code); ignored", f"tcp-check expect {name}")


def _tcp_check_comment(line: _Line, action: str, args: list[str]) -> None:
    _leading(line, args, 1, "a string as argument")


def _tcp_check_variable(line: _Line, action: str, args: list[str]) -> None:
    if not action.startswith("unset-var") and not args:
        raise _Invalid(f"'{action.split('(', 1)[0]}' expects an expression")
    line.warn("check variables are not supported by fastproxy; this rule is skipped")


_TCP_CHECK_ACTIONS: dict[str, TcpCheckParser] = {
    "connect": _tcp_check_connect,
    "send": _tcp_check_send,
    "send-binary": _tcp_check_send,
    "send-lf": _tcp_check_send,
    "send-binary-lf": _tcp_check_send,
    "expect": _tcp_check_expect,
    "comment": _tcp_check_comment,
}


# Proxy keywords HAProxy 2.6 knows that fastproxy ignores with a warning (the proxy still runs).
PROXY_IGNORED = _names("""
    bind-process capture compression cookie declare dynamic-cookie-key email-alert errorfile errorfiles
    errorloc errorloc302 errorloc303 external-check filter force-persist grace http-after-response
    http-check http-error http-request http-response http-reuse http-send-name-header ignore-persist
    load-server-state-from-file log-format log-format-sd log-tag max-keep-alive-queue
    max-session-srv-conns monitor monitor-uri persist redirect retry-on server-state-file-name source
    stats stick stick-table tcp-response unique-id-format unique-id-header use-fcgi-app
    use-server
""")

# Sections HAProxy knows that fastproxy skips (their content is not read).
IGNORED_SECTIONS = _names("""
    userlist peers resolvers mailers program http-errors ring cache fcgi-app
""")
PROXY_SECTIONS = ("defaults", "frontend", "backend", "listen")
_SKIPPED = "<skipped>"


# --- .if / .elif / .else / .endif ----------------------------------------------------------------

def _evaluate_condition(text: str, environ: Mapping[str, str]) -> bool:
    """HAProxy 2.6's ``.if`` expressions: predicates, integers, ``! && || ( )``."""
    tokens = re.findall(r"\s*(\|\||&&|!|\(|\)|[A-Za-z_]+\([^)]*\)|[^\s()!&|]+)", text)
    if "".join(t.strip() for t in tokens) != re.sub(r"\s+", "", text):
        raise _Invalid(f"cannot parse the condition '{text}'")
    position = 0

    def term() -> bool:
        nonlocal position
        if position >= len(tokens):
            raise _Invalid(f"missing term in the condition '{text}'")
        token = tokens[position].strip()
        position += 1
        if token == "!":
            return not term()
        if token == "(":
            value = expression()
            if position >= len(tokens) or tokens[position].strip() != ")":
                raise _Invalid(f"missing ')' in the condition '{text}'")
            position += 1
            return value
        call = re.fullmatch(r"([A-Za-z_]+)\(([^)]*)\)", token)
        if call:
            return _predicate(call[1], [a.strip() for a in call[2].split(",")] if call[2] else [], environ)
        if re.fullmatch(r"-?[0-9]+", token):
            return int(token) != 0
        raise _Invalid(f"unparsable term '{token}' in the condition '{text}'")

    def conjunction() -> bool:
        nonlocal position
        value = term()
        while position < len(tokens) and tokens[position].strip() == "&&":
            position += 1
            value = term() and value
        return value

    def expression() -> bool:
        nonlocal position
        value = conjunction()
        while position < len(tokens) and tokens[position].strip() == "||":
            position += 1
            value = conjunction() or value
        return value

    if not tokens:
        return False
    result = expression()
    if position != len(tokens):
        raise _Invalid(f"unexpected '{tokens[position].strip()}' in the condition '{text}'")
    return result


@dataclass
class _Block:
    """One ``.if`` block being read."""

    active: bool  # the lines of its current branch are read
    taken: bool  # a branch was chosen (or none can be): the later ones are skipped
    seen_else: bool = False


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"[0-9]+", text))


def _predicate(name: str, args: list[str], environ: Mapping[str, str]) -> bool:
    def unquote(text: str) -> str:
        return text[1:-1] if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"" else text

    args = [unquote(arg) for arg in args]
    if name == "defined" and len(args) == 1:
        return args[0] in environ
    if name == "feature" and len(args) == 1:
        return False  # fastproxy is not built with HAProxy's optional features
    if name in ("streq", "strneq") and len(args) == 2:
        return (args[0] == args[1]) == (name == "streq")
    if name == "version_atleast" and len(args) == 1:
        return HAPROXY_VERSION >= _version(args[0])
    if name == "version_before" and len(args) == 1:
        return HAPROXY_VERSION < _version(args[0])
    raise _Invalid(f"unknown or misused predicate '{name}({', '.join(args)})'")


# --- the reader --------------------------------------------------------------------------------------

class _Reader:
    """Reads files one after the other into one configuration; ``finish()`` builds the Config."""

    def __init__(self, environ: Optional[Mapping[str, str]] = None) -> None:
        self.environ: MutableMapping[str, str] = dict(os.environ if environ is None else environ)
        self.errors: list[ConfigError] = []
        self.warnings: list[Warning_] = []
        self.global_ = Global()
        self.proxies: list[_Proxy] = []
        self.defaults = _Proxy(kind="defaults", name="", location=Location())
        self.named_defaults: dict[str, list[_Proxy]] = {}
        self.files: list[str] = []
        self.base_directory = Path(".")

    # --- messages ---

    def error(self, location: Location, keyword: Optional[str], message: str) -> None:
        self.errors.append(ConfigError(message, file=location.file, line=location.line or None,
                                       keyword=keyword or None))

    def warn(self, location: Location, keyword: Optional[str], message: str) -> None:
        self.warnings.append(Warning_(location, keyword or "", message))

    # --- input ---

    def read_file(self, path: str) -> None:
        try:
            with open(path, encoding="utf-8", errors="surrogateescape") as f:
                text = f.read()
        except OSError as exc:
            self.error(Location(path, 0), None, f"cannot open configuration file: {exc.strerror}")
            return
        self.read_text(text, path)

    def read_text(self, text: str, filename: str) -> None:
        self.files.append(filename)
        section: Optional[object] = None  # Global, _Proxy, a skipped section's name, or None
        blocks: list[_Block] = []  # the .if blocks open at this line
        lines = text.split("\n")  # only "\n" ends a line, as for HAProxy (not "\f", "\x85"...)
        for number, raw in enumerate(lines, start=1):
            raw = raw.removesuffix("\r")
            if "\0" in raw:
                self.error(Location(filename, number), None, "NUL character in the line")
                continue
            try:
                words = split_words(raw, self.environ)
            except _Invalid as exc:
                self.error(Location(filename, number), raw.split(None, 1)[0], exc.message)
                continue
            if not words:
                continue
            location = Location(filename, number)
            if words[0].startswith("."):
                self._directive(location, words, blocks)
                continue
            if not all(block.active for block in blocks):
                continue
            line = _Line(self, filename, number, words)
            try:
                section = self._line(line, section)
            except _Invalid as exc:
                self.error(location, exc.keyword or line.keyword, exc.message)
                if words[0] in PROXY_SECTIONS:
                    section = _SKIPPED  # a section with a broken header: its body is not read
        if blocks:
            last = len(text.rstrip("\n").split("\n"))
            self.error(Location(filename, last), ".if", "non-terminated '.if' block (missing '.endif' at "
                       "end of file)")

    def _directive(self, location: Location, words: list[str], blocks: list[_Block]) -> None:
        """``.if/.elif/.else/.endif`` and ``.diag/.notice/.warning/.alert``, as HAProxy 2.6 reads them."""
        name, text = words[0], " ".join(words[1:])
        active = all(block.active for block in blocks)
        try:
            if name in (".else", ".endif") and text:
                self.error(location, name, f"Unexpected argument '{words[1]}' for '{name}'.")
            if name == ".if":
                # In a skipped region the condition is not evaluated and no branch is ever taken.
                blocks.append(_Block(active=False, taken=True))  # what stays if the condition is wrong
                chosen = active and _evaluate_condition(text, self.environ)
                blocks[-1] = _Block(active=chosen, taken=chosen or not active)
            elif name in (".elif", ".else"):
                if not blocks or blocks[-1].seen_else:
                    blocks.append(_Block(active=active, taken=True, seen_else=True))  # its .endif closes it
                    raise _Invalid(f"lone '{name}' with no matching '.if'.")
                block = blocks[-1]
                chosen = not block.taken and (name == ".else" or _evaluate_condition(text, self.environ))
                block.active, block.taken = chosen, block.taken or chosen
                block.seen_else = name == ".else"
            elif name == ".endif":
                if not blocks:
                    raise _Invalid("lone '.endif' with no matching '.if'.")
                blocks.pop()
            elif not active:
                pass  # other directives in a skipped block are not read, as in HAProxy
            elif name == ".warning":
                self.warn(location, name, text)
            elif name == ".alert":
                self.error(location, name, text)
            elif name not in (".diag", ".notice"):
                raise _Invalid(f"unknown directive '{name}'")
        except _Invalid as exc:
            self.error(location, name, exc.message)

    def read_patterns(self, path: str) -> list[str]:
        """An ACL pattern file (``-f``): one pattern per line, blank lines and ``#`` comments skipped."""
        if not os.path.isfile(path):
            raise acls.AclError(f"failed to open pattern file <{path}> (not a regular file)")
        try:
            with open(path, encoding="utf-8", errors="surrogateescape") as f:
                lines = f.read().splitlines()
        except OSError as exc:
            raise acls.AclError(f"failed to open pattern file <{path}> ({exc.strerror})") from None
        return [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]

    def condition(self, line: _Line, proxy: _Proxy, words: list[str]) -> Condition:
        try:
            return acls.parse_condition(words, proxy.acls, read_patterns=self.read_patterns,
                                        location=line.location)
        except acls.AclError as exc:
            raise _Invalid(f"error detected while parsing the '{words[0]}' condition : {exc}") from None

    # --- sections ---

    def _line(self, line: _Line, section: Optional[object]) -> Optional[object]:
        keyword, args = line.words[0], line.words[1:]
        if keyword == "global":
            if args:
                self.error(line.location, keyword, f"'global' cannot handle unexpected argument '{args[0]}'.")
            return self.global_
        if keyword in PROXY_SECTIONS:
            return self._open_proxy(line, keyword, args)
        if keyword in IGNORED_SECTIONS:
            line.warn(f"'{keyword}' sections are not supported by fastproxy; this section is skipped")
            return keyword
        if section is None:
            raise _Invalid(f"unknown keyword '{keyword}' out of section")
        if isinstance(section, str):
            return section  # inside a skipped section
        if isinstance(section, Global):
            self._global_line(line, section, keyword, args)
        else:
            assert isinstance(section, _Proxy)
            self._proxy_line(line, section, keyword, args)
        return section

    def _global_line(self, line: _Line, g: Global, keyword: str, args: list[str]) -> None:
        handler = GLOBAL_KEYWORDS.get(keyword)
        if handler is not None:
            handler(line, g, args)
        elif keyword in GLOBAL_IGNORED:
            line.warn("not supported by fastproxy; ignored")
        else:
            raise _Invalid(f"unknown keyword '{keyword}' in 'global' section")

    def _open_proxy(self, line: _Line, kind: str, args: list[str]) -> Optional[_Proxy]:
        name = ""
        if args and not (kind == "defaults" and args[0] == "from"):
            name, args = args[0], args[1:]
        elif kind != "defaults":
            raise _Invalid(f"'{kind}' expects an <id> argument")
        if name and kind != "defaults":  # HAProxy does not check the names of defaults sections
            _check_name(kind, name)
        parent = self.defaults
        if kind == "defaults" and args and args[0] != "from":
            line.warn(f"extra argument '{args[0]}' ignored (HAProxy ignores it too)")
            args = []
        if args:
            if args[0] != "from" or len(args) != 2:
                if kind in ("frontend", "listen"):
                    raise _Invalid("please use the 'bind' keyword for listening addresses.")
                raise _Invalid(f"'{kind}' expects 'from <defaults name>' after the name (got "
                               f"'{' '.join(args)}')")
            # Errors from here on still read the section's body, to report its errors too.
            candidates = self.named_defaults.get(args[1], [])
            if not candidates:
                self.error(line.location, kind, f"defaults section '{args[1]}' not found for {kind} "
                           f"'{name}'.")
            elif len(candidates) > 1:
                self.error(line.location, kind, f"ambiguous defaults section name '{args[1]}' referenced "
                           f"by {kind} '{name}' exists at least at {candidates[0].location} and "
                           f"{candidates[1].location}.")
            parent = candidates[0] if candidates else self.defaults
        elif kind == "defaults":
            parent = _Proxy(kind="defaults", name="", location=Location())  # a new defaults resets all
        if parent.name and (parent.used_implicitly if args else parent.referenced):
            line.warn(f"defaults section '{parent.name}' (declared at {parent.location}) is both "
                      "referenced with 'from' and implicitly used by the proxies that follow it; HAProxy "
                      "flags this mix as ambiguous (add a last defaults section, or always use 'from')")
        if args:
            parent.referenced = True
        else:
            parent.used_implicitly = True
        proxy = parent.derive(kind, name, line.location)
        if kind == "defaults":
            self.defaults = proxy
            if name:
                self.named_defaults.setdefault(name, []).append(proxy)
            return proxy
        for other in self.proxies:
            if other.name == name and (other.caps & proxy.caps):
                self.error(line.location, kind, f"{kind} '{name}' has the same name as {other.kind} "
                           f"'{name}' declared at {other.location}.")
                return proxy  # read, but not kept
        self.proxies.append(proxy)
        return proxy

    def _proxy_line(self, line: _Line, proxy: _Proxy, keyword: str, args: list[str]) -> None:
        spec = PROXY_KEYWORDS.get(keyword)
        if spec is None:
            if keyword in PROXY_IGNORED:
                line.warn("not supported by fastproxy; ignored")
                return
            raise _Invalid(f"unknown keyword '{keyword}' in '{proxy.kind}' section")
        if proxy.is_defaults:
            if spec.in_defaults == "no":
                raise _Invalid(f"'{keyword}' not allowed in 'defaults' section.")
            if spec.in_defaults == "named" and not proxy.name:
                raise _Invalid(f"'{keyword}' not allowed in anonymous 'defaults' section.")
        elif not proxy.caps & spec.caps:
            other = "frontend" if spec.caps == FE else "backend"
            message = f"'{keyword}' {{}} because {proxy.describe()} has no {other} capability.{spec.hint}"
            if spec.missing_cap == "error":
                raise _Invalid(message.format("not allowed"))
            line.warn(message.format("ignored"))
            spec.handler(line, copy.deepcopy(proxy), args)  # HAProxy still checks the arguments
            return
        spec.handler(line, proxy, args)

    # --- the model ---

    def finish(self) -> Config:
        frontends: dict[str, Frontend] = {}
        backends: dict[str, Backend] = {}
        for proxy in self.proxies:
            if proxy.caps & BE:
                backends[proxy.name] = self._backend(proxy)
        for proxy in self.proxies:
            if proxy.caps & FE:
                frontend = self._frontend(proxy, backends)
                if frontend is not None:
                    frontends[proxy.name] = frontend
        self._check_modes(frontends, backends)
        order = {name: index for index, name in enumerate(self.files)}
        self.errors.sort(key=lambda e: (order.get(e.file or "", -1), e.line or 0))
        if self.errors:
            count = len(self.errors)
            raise ConfigError(f"{count} error{'s' if count > 1 else ''} in the configuration",
                              errors=self.errors)
        return Config(global_=self.global_, frontends=frontends, backends=backends,
                      warnings=self.warnings, files=tuple(self.files))

    def _backend(self, proxy: _Proxy) -> Backend:
        timeouts = Timeouts(**{name: getattr(proxy.timeouts, name) for name in _BE_TIMEOUTS})
        servers = proxy.servers
        if proxy.disabled:
            self.warn(proxy.location, proxy.kind, f"{proxy.describe()} is disabled: its servers take "
                      "no traffic")
            servers = [dataclasses.replace(server, disabled=True) for server in servers]
        if proxy.kind == "backend" and not (proxy.timeouts.connect and proxy.timeouts.server):
            self._missing_timeouts(proxy)
        rules = list(proxy.tcp_check_rules)
        if proxy.tcp_check_location is not None and not proxy.tcp_check:
            self.warn(proxy.tcp_check_location, "tcp-check", f"{proxy.describe()} uses tcp-check rules "
                      "without 'option tcp-check', so the rules are ignored.")
            rules = []
        self._check_ports(proxy, rules)
        return Backend(name=proxy.name, servers=servers, mode=proxy.mode, balance=proxy.balance,
                       timeouts=timeouts, retries=proxy.retries, redispatch=proxy.redispatch,
                       server_keepalive=proxy.server_keepalive, fullconn=proxy.fullconn,
                       options=dict(proxy.options), location=proxy.location, allbackups=proxy.allbackups,
                       tcp_check=proxy.tcp_check, tcp_check_rules=rules,
                       log_targets=list(proxy.log_targets))

    def _check_ports(self, proxy: _Proxy, rules: list[TcpCheckRule]) -> None:
        """A checked server needs a port to check: its own, ``port``, or the tcp-check ``connect`` rules'.

        As HAProxy 2.6 (which reports it after parsing): the first rule must be a ``connect`` with a port,
        and so must every later ``connect``.  Once per line, for ``server-template``.
        """
        reported: set[Location] = set()
        for server in proxy.servers:
            if not server.check or server.port or server.check_port or server.location in reported:
                continue
            if not rules:
                problem = "has neither service port nor check port (add 'port <n>' for its checks)"
            elif rules[0].action != "connect" or rules[0].port is None:
                problem = ("has neither service port nor check port nor 'tcp-check connect' rule with a port "
                           "as first rule (add 'port <n>' for its checks)")
            elif any(rule.action == "connect" and rule.port is None for rule in rules):
                problem = ("has neither service port nor check port, and a 'tcp-check connect' rule has no "
                           "port (add 'port <n>' to it)")
            else:
                continue
            reported.add(server.location)
            self.error(server.location, "server", f"server '{proxy.name}/{server.name}': {problem}")

    def _missing_timeouts(self, proxy: _Proxy) -> None:
        self.warn(proxy.location, proxy.kind, f"missing timeouts for {proxy.describe()}: set 'client', "
                  "'connect' and 'server' (unset timeouts never expire)")

    def _frontend(self, proxy: _Proxy, backends: Mapping[str, Backend]) -> Optional[Frontend]:
        if proxy.disabled:
            self.warn(proxy.location, proxy.kind, f"{proxy.describe()} is disabled: it does not listen")
            return None
        default_backend = proxy.default_backend
        if proxy.kind == "listen":
            if default_backend is None:
                default_backend = proxy.name
            elif proxy.servers:
                self.warn(proxy.default_backend_location or proxy.location, "default_backend",
                          f"In proxy '{proxy.name}', the 'default_backend' rule always has precedence "
                          "over the servers, which will never be used.")
        if not proxy.binds:
            self.warn(proxy.location, proxy.kind, f"{proxy.describe()} has no 'bind' directive: it does "
                      "not listen.")
        elif not (proxy.timeouts.client and (proxy.kind != "listen" or
                                             (proxy.timeouts.connect and proxy.timeouts.server))):
            self._missing_timeouts(proxy)
        if proxy.default_backend is not None and default_backend not in backends:
            self.error(proxy.default_backend_location or proxy.location, "default_backend",
                       f"unable to find required default_backend: '{default_backend}' "
                       f"(no backend or listen of that name)")
        for use in proxy.use_backends:
            if use.backend not in backends:
                self.error(use.location, "use_backend", f"unable to find required use_backend: "
                           f"'{use.backend}' (no backend or listen of that name)")
        binds = [dataclasses.replace(bind, backlog=bind.backlog or proxy.backlog) for bind in proxy.binds]
        timeouts = Timeouts(**{name: getattr(proxy.timeouts, name) for name in _FE_TIMEOUTS})
        self._check_inspection(proxy)
        return Frontend(
            name=proxy.name, binds=binds, mode=proxy.mode, default_backend=default_backend,
            use_backends=list(proxy.use_backends), acls=proxy.acls,
            tcp_request_rules=list(proxy.tcp_request_rules),
            inspect_delay=proxy.inspect_delay, timeouts=timeouts, maxconn=proxy.maxconn,
            rate_limit_sessions=proxy.rate_limit_sessions, client_keepalive=proxy.client_keepalive,
            log=bool(proxy.log_targets), tcplog=proxy.tcplog, dontlognull=proxy.dontlognull,
            options=dict(proxy.options), location=proxy.location, log_targets=list(proxy.log_targets))

    def _check_inspection(self, proxy: _Proxy) -> None:
        """Rules reading the ClientHello only see it if the engine waits for it (inspect-delay)."""
        conditions = [rule.condition for rule in proxy.tcp_request_rules if rule.phase == "content"]
        conditions += [use.condition for use in proxy.use_backends]
        if proxy.inspect_delay is None and any(acls.condition_uses(condition, proxy.acls, acls.SNI_FETCHES)
                                               for condition in conditions):
            self.warn(proxy.location, proxy.kind, f"{proxy.describe()} has rules reading the TLS "
                      "ClientHello but no 'tcp-request inspect-delay': they only see what arrived with "
                      "the connection, as in HAProxy (usually nothing)")

    def _check_modes(self, frontends: Mapping[str, Frontend], backends: Mapping[str, Backend]) -> None:
        """``mode http`` is an error on any proxy that carries traffic: fastproxy is layer 4 only."""
        used: set[str] = set()
        for frontend in frontends.values():
            if frontend.binds:
                if frontend.default_backend:
                    used.add(frontend.default_backend)
                used.update(use.backend for use in frontend.use_backends)
        for proxy in self.proxies:
            if proxy.mode != "http":
                continue
            carries = (proxy.caps & FE and proxy.name in frontends and frontends[proxy.name].binds) or \
                      (proxy.caps & BE and proxy.name in used)
            location = proxy.mode_location or proxy.location
            if carries:
                self.error(location, "mode", f"{proxy.describe()} is in 'mode http': fastproxy is a "
                           "layer-4 proxy and carries 'mode tcp' traffic only")
            else:
                self.warn(location, "mode", f"{proxy.describe()} is in 'mode http' but carries no traffic")


# --- entry points ------------------------------------------------------------------------------------

def _expand_paths(paths: Iterable[str]) -> list[str]:
    files: list[str] = []
    for path in paths:
        if os.path.isdir(path):
            # As HAProxy: regular files named *.cfg, hidden ones skipped, in lexical order.
            entries = sorted(entry for entry in os.listdir(path) if entry.endswith(".cfg")
                             and not entry.startswith(".") and os.path.isfile(os.path.join(path, entry)))
            files += [os.path.join(path, entry) for entry in entries]
        else:
            files.append(path)
    return files


def load(paths: Sequence[str], *, environ: Optional[Mapping[str, str]] = None) -> Config:
    """Read HAProxy configuration files and directories, in order, into one Config.

    A directory stands for its ``*.cfg`` files in alphabetical order, as with ``haproxy -f``.  Raises
    ``ConfigError`` carrying every error found; warnings are in ``Config.warnings``.  ``environ``
    replaces ``os.environ`` for ``"${VAR}"`` expansion.
    """
    if isinstance(paths, (str, os.PathLike)):
        paths = [os.fspath(paths)]
    reader = _Reader(environ)
    files = _expand_paths([os.fspath(p) for p in paths])
    if not files:
        raise ConfigError("no configuration file to read")
    for path in files:
        reader.read_file(path)
    return reader.finish()


def parse_text(text: str, filename: str = "<string>", *,
               environ: Optional[Mapping[str, str]] = None) -> Config:
    """Read a configuration from a string, as ``load`` reads a file."""
    reader = _Reader(environ)
    reader.read_text(text, filename)
    return reader.finish()
