"""Layer-4 samples (HAProxy's sample.c): the one table of the fetches and converters fastproxy evaluates.

A sample expression is a fetch followed by converters applied to its value in turn
(``req.ssl_sni,lower``, ``req.payload(0,3),hex``).  This module parses and checks expressions into the
model's ``Sample`` and evaluates them over a description of one connection: any object with the
attributes the fetches read (``src``, ``src_port``, ``dst``, ``dst_port``, ``sni``, ``hello_type``, and
for content fetches ``request``, the bytes the client sent so far, ``hello_pending`` and ``final``), such
as ``acl.ConnInfo`` and ``balance.PickKey``.  What a value is then used for is the caller's business:
ACLs match it against patterns (``acl.py``), ``balance hash`` hashes its bytes (``balance.py``), the
reader checks expressions as it reads them.  Sans-IO: no socket, no file.

Fetches: ``src``, ``dst`` (addresses, as text), ``src_port``, ``dst_port`` (integers),
``req.ssl_sni`` / ``req_ssl_sni`` (the TLS ClientHello's server name), ``req.ssl_hello_type`` /
``req_ssl_hello_type`` (its handshake type), ``always_true``, ``always_false``, and the content fetches
reading the client's first bytes (HAProxy's payload.c, see ``fastproxy.payload``): ``req.len`` /
``req_len``, ``req.payload(<offset>,<length>)`` / ``payload``, ``req.payload_lv(<offset1>,<length>[,
<offset2>])`` / ``payload_lv``, ``req.proto_http`` / ``req_proto_http``, ``method``, ``url``, ``req.ver``
(the request line of an HTTP/1.x request on the TCP stream), ``req.ssl_ver`` / ``req_ssl_ver``,
``req.ssl_alpn``, ``req.ssl_ec_ext``, ``req.rdp_cookie([<name>])`` / ``rdp_cookie`` /
``req_rdp_cookie``, ``req.rdp_cookie_cnt([<name>])`` / ``rdp_cookie_cnt`` / ``req_rdp_cookie_cnt``,
``wait_end``, and ``var(<name>[,<default>])`` (a variable, ``fastproxy.variables``: the connection's
``variables``; its value has the type it was stored with, cast by what reads it).  Converters:
``lower``, ``upper``, ``hex``, ``bytes(<offset>[,<length>])``, ``length``.

Evaluation gives a value (None when the connection has none) and whether more bytes from the client
may still give one or change it (HAProxy's ``SMP_F_MAY_CHANGE``): ``evaluator`` gives both, for ACLs
deciding whether to wait; ``reader`` the value alone.

Stick counter fetches (HAProxy's ``sc_*``, ``sc0_*``..``sc2_*``, ``src_*``, ``table_cnt``,
``table_avl``) read stick tables: the entry a ``track-sc<n>`` rule tracks for the connection
(``sc_conn_cur(<n>[,<table>])``, ``sc0_conn_cur([<table>])``), the entry of the client's address
(``src_conn_rate([<table>])``), or a table's fill.  Their values come from the ``counters`` attribute of
the connection (``tracking.Tracker``), which this module only calls: no counters, no value.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Optional

from . import payload, variables
from .c_integers import LONG_MIN, decimal, signed
from .config.model import Sample
from .errors import ConfigError
from .payload import Read

__all__ = ["CONTENT", "CONVERTERS", "FETCHES", "Converter", "Fetch", "Read", "Sample", "SampleError",
           "check", "check_hashable", "evaluator", "fetch_of", "parse", "reader", "split", "type_of"]

# The types of sample values (HAProxy's SMP_T_*): what a fetch gives and a converter takes.
IP, INT, STR, BOOL, BIN = "ip", "int", "str", "bool", "bin"
ANY = "any"  # a variable's: the type of what was stored (HAProxy's SMP_T_ANY), known per connection

# Argument types of fetches and converters (HAProxy's ARGT_*): a non-negative integer, a signed
# offset kept as written ("+2"), a string.
UINT, OFFSET, TEXT, VARIABLE = "unsigned integer", "offset", "string", "variable"
CONDITION = "condition"  # a set-var condition (``ifexists``...), a string HAProxy checks


class SampleError(ConfigError, ValueError):
    """A sample expression fastproxy cannot evaluate; the message says what it can."""


# How a fetch reads one connection: ``conn`` and the fetch's checked arguments -> a value and whether
# more client bytes may change it.
FetchRead = Callable[[Any, tuple[Any, ...]], Read]


@dataclass(frozen=True)
class Fetch:
    """One sample fetch: the type of its value and where it comes from."""

    name: str
    type: str
    attribute: Optional[str]  # the connection attribute it reads; None: ``read``, or the constant ``value``
    value: Any = None
    hashable: bool = False  # ``balance hash`` may hash it
    client_hello: bool = False  # read from the TLS ClientHello: a rule needs ``inspect-delay`` to see it
    destination: bool = False  # the address the client connected to: one more syscall per connection
    counter: Optional[tuple[str, str]] = None  # a stick counter fetch: (scope, value), see COUNTER_VALUES
    read: Optional[FetchRead] = None  # a content fetch: reads the client's first bytes (``request``)
    arguments: tuple[str, ...] = ()  # the types of its arguments; the first ``required`` are mandatory
    required: int = 0
    constant: bool = False  # ``ipv4(<ip>)``, ``int(<n>)``...: its argument, whatever the connection
    tls: Optional[str] = None  # a fact of the client's terminated TLS (``tls.TlsFacts``), read from ``tls``

    @property
    def content(self) -> bool:
        """Whether it reads what the client sends: a rule using it waits within ``inspect-delay``."""
        return self.client_hello or (self.read is not None and not self.constant)


@dataclass(frozen=True)
class Converter:
    name: str
    inputs: frozenset[str]
    output: Optional[str]  # None: the input's type (the value passes through)
    apply: Callable[..., Any]  # (value, *arguments) -> value
    arguments: tuple[str, ...] = ()
    required: int = 0
    # A converter that changes the connection (``set-var``): (connection, input type, value, *arguments)
    # -> value, in place of ``apply``.
    on_connection: Optional[Callable[..., Any]] = None


def _fetches(*fetches: tuple[tuple[str, ...], Fetch]) -> dict[str, Fetch]:
    return {name: fetch for names, fetch in fetches for name in names}


def _request(conn: Any) -> bytes:
    return getattr(conn, "request", b"")


def _content(name: str, kind: str, parse: Callable[..., Read], arguments: tuple[str, ...] = (),
             required: int = 0) -> Fetch:
    """A fetch of the client's first bytes through a ``fastproxy.payload`` parser."""
    return Fetch(name, kind, None, read=lambda conn, args: parse(_request(conn), *args),
                 arguments=arguments, required=required)


def _http(part: str) -> FetchRead:
    """``req.proto_http``, ``method``, ``url``, ``req.ver``: the request line of a whole HTTP request."""
    def read(conn: Any, args: tuple[Any, ...]) -> Read:
        request, more = payload.http_request(_request(conn))
        if part == "proto":
            return Read(True, False) if request is not None else Read(None, more)
        return Read(getattr(request, part) if request is not None else None, more)
    return read


def _hello(attribute: str) -> FetchRead:
    """A ClientHello field: the engine parses the hello once (``sni``, ``hello_type``...), and says
    while it is incomplete (``hello_pending``)."""
    def read(conn: Any, args: tuple[Any, ...]) -> Read:
        value = getattr(conn, attribute, None)
        return Read(None if value == () else value, getattr(conn, "hello_pending", False))
    return read


def _hello_has(extension: int) -> FetchRead:
    def read(conn: Any, args: tuple[Any, ...]) -> Read:
        extensions = getattr(conn, "hello_extensions", None)
        if extensions is None:
            return Read(None, getattr(conn, "hello_pending", False))
        return Read(True if extension in extensions else None, False)
    return read


def _wait_end(conn: Any, args: tuple[Any, ...]) -> Read:
    """``wait_end``: true once no more bytes will be waited for, never before."""
    return Read(True, False) if getattr(conn, "final", True) else payload.TOO_SHORT


def _constant(kind: str) -> FetchRead:
    """HAProxy's constant fetches (``ipv4(<ip>)``, ``ipv6(<ip>)``, ``int(<n>)``, ``str(<s>)``): their
    argument, checked when read (``check``)."""
    def read(conn: Any, args: tuple[Any, ...]) -> Read:
        return Read(signed(args[0]) if kind == INT else args[0], False)
    return read


def _variable(conn: Any, args: tuple[Any, ...]) -> Read:
    """``var(<name>[,<default>])``: the variable's value, else the default as a string, else none."""
    variables = getattr(conn, "variables", None)
    found = variables.get(args[0]) if variables is not None else None
    if found is not None:
        return Read(found[1], False)
    return Read(args[1] if len(args) > 1 else None, False)


def _captured(conn: Any, args: tuple[Any, ...]) -> Read:
    """``capture.req.hdr(<slot>)``: what a ``tcp-request content capture`` rule kept there."""
    captures = getattr(conn, "captures", None)
    index = args[0]
    return Read(captures[index] if captures is not None and index < len(captures) else None, False)


def _rdp_cookie_count(conn: Any, args: tuple[Any, ...]) -> Read:
    value, more = payload.rdp_cookie(_request(conn), *args)
    return payload.TOO_SHORT if more else Read(0 if value is None else 1, False)


FETCHES: dict[str, Fetch] = _fetches(
    (("src",), Fetch("src", IP, "src", hashable=True)),
    (("dst",), Fetch("dst", IP, "dst", hashable=True, destination=True)),
    (("src_port",), Fetch("src_port", INT, "src_port", hashable=True)),
    (("dst_port",), Fetch("dst_port", INT, "dst_port", hashable=True, destination=True)),
    # HAProxy 2.6 still knows the older underscore names beside the dotted ones.
    (("req.ssl_sni", "req_ssl_sni"), Fetch("req.ssl_sni", STR, None, hashable=True, client_hello=True,
                                           read=_hello("sni"))),
    (("req.ssl_hello_type", "req_ssl_hello_type"),
     Fetch("req.ssl_hello_type", INT, None, client_hello=True, read=_hello("hello_type"))),
    (("req.ssl_alpn",), Fetch("req.ssl_alpn", STR, None, client_hello=True, read=_hello("alpn"))),
    (("req.ssl_ec_ext",), Fetch("req.ssl_ec_ext", BOOL, None, client_hello=True, read=_hello_has(10))),
    # What a ``bind ... ssl`` terminated (HAProxy's ssl_sock.c fetches): known from the session rules on.
    (("ssl_fc",), Fetch("ssl_fc", BOOL, None, tls="ssl_fc")),
    (("ssl_fc_sni",), Fetch("ssl_fc_sni", STR, None, tls="sni")),
    (("ssl_fc_protocol",), Fetch("ssl_fc_protocol", STR, None, tls="protocol")),
    (("ssl_fc_cipher",), Fetch("ssl_fc_cipher", STR, None, tls="cipher")),
    (("ssl_fc_alpn",), Fetch("ssl_fc_alpn", STR, None, tls="alpn")),
    (("ssl_c_used",), Fetch("ssl_c_used", BOOL, None, tls="client_used")),
    (("ssl_c_verify",), Fetch("ssl_c_verify", INT, None, tls="client_verify")),
    (("ssl_c_s_dn",), Fetch("ssl_c_s_dn", STR, None, tls="client_dn")),
    (("always_true",), Fetch("always_true", BOOL, None, True)),
    (("always_false",), Fetch("always_false", BOOL, None, False)),
    (("req.len", "req_len"), _content("req.len", INT, payload.request_length)),
    (("req.payload", "payload"), _content("req.payload", BIN, payload.payload, (UINT, UINT), 2)),
    (("req.payload_lv", "payload_lv"),
     _content("req.payload_lv", BIN, payload.payload_lv, (UINT, UINT, OFFSET), 2)),
    (("req.ssl_ver", "req_ssl_ver"), _content("req.ssl_ver", INT, payload.ssl_version)),
    (("req.rdp_cookie", "req_rdp_cookie", "rdp_cookie"),
     Fetch("req.rdp_cookie", STR, None, hashable=True, arguments=(TEXT,),
           read=lambda conn, args: payload.rdp_cookie(_request(conn), *args))),
    (("req.rdp_cookie_cnt", "req_rdp_cookie_cnt", "rdp_cookie_cnt"),
     Fetch("req.rdp_cookie_cnt", INT, None, read=_rdp_cookie_count, arguments=(TEXT,))),
    (("req.proto_http", "req_proto_http"), Fetch("req.proto_http", BOOL, None, read=_http("proto"))),
    (("method",), Fetch("method", STR, None, read=_http("method"))),
    (("url",), Fetch("url", STR, None, read=_http("url"))),
    (("req.ver", "req_ver"), Fetch("req.ver", STR, None, read=_http("version"))),
    (("wait_end",), Fetch("wait_end", BOOL, None, read=_wait_end)),
    (("var",), Fetch("var", ANY, None, read=_variable, arguments=(VARIABLE, TEXT), required=1)),
    (("capture.req.hdr",),
     Fetch("capture.req.hdr", STR, None, read=_captured, arguments=(UINT,), required=1)),
    *((((name,), Fetch(name, kind, None, read=_constant(kind), arguments=(TEXT,), required=1, constant=True)))
      for name, kind in (("ipv4", IP), ("ipv6", IP), ("int", INT), ("str", STR))),
)
_CONSTANTS = ("ipv4", "ipv6", "int", "str")

# The values stick counter fetches give: the data type they read (or change), and how.  ``read``: the
# stored value; ``inc``/``clr``: count one / reset, giving the value before a reset and after a count;
# ``kbytes``: a byte count in KiB; ``tracked``/``trackers``: whether the counter is tracked, and by how
# many connections its entry is.
COUNTER_VALUES: dict[str, tuple[str, str]] = {
    "conn_cur": ("conn_cur", "read"), "conn_cnt": ("conn_cnt", "read"), "conn_rate": ("conn_rate", "read"),
    "sess_cnt": ("sess_cnt", "read"), "sess_rate": ("sess_rate", "read"),
    "get_gpc0": ("gpc0", "read"), "get_gpc1": ("gpc1", "read"), "get_gpt0": ("gpt0", "read"),
    "gpc0_rate": ("gpc0_rate", "read"), "gpc1_rate": ("gpc1_rate", "read"),
    "inc_gpc0": ("gpc0", "inc"), "inc_gpc1": ("gpc1", "inc"),
    "clr_gpc0": ("gpc0", "clr"), "clr_gpc1": ("gpc1", "clr"),
    "bytes_in_rate": ("bytes_in_rate", "read"), "bytes_out_rate": ("bytes_out_rate", "read"),
    "kbytes_in": ("bytes_in_cnt", "kbytes"), "kbytes_out": ("bytes_out_cnt", "kbytes"),
    "tracked": ("", "tracked"), "trackers": ("", "trackers"),
    # HAProxy 2.6's arrays: ``sc_get_gpc(<idx>,<ctr>[,<table>])``, ``src_get_gpc(<idx>[,<table>])``...
    "get_gpc": ("gpc", "read"), "gpc_rate": ("gpc_rate", "read"), "inc_gpc": ("gpc", "inc"),
    "clr_gpc": ("gpc", "clr"), "get_gpt": ("gpt", "read"),
}
ARRAY_VALUES = frozenset({"get_gpc", "gpc_rate", "inc_gpc", "clr_gpc", "get_gpt"})  # first argument: <idx>
_COUNTER_SCOPES = ("sc", "sc0", "sc1", "sc2", "src")
MAX_TRACKED = 3  # HAProxy's MAX_SESS_STKCTR


def _counter_fetches() -> dict[str, Fetch]:
    fetches = {}
    for scope in _COUNTER_SCOPES:
        for value, (_, how) in COUNTER_VALUES.items():
            if scope == "src" and how in ("tracked", "trackers"):
                continue
            if value in ARRAY_VALUES and scope not in ("sc", "src"):
                continue
            name = f"{scope}_{value}"
            fetches[name] = Fetch(name, BOOL if how == "tracked" else INT, None, counter=(scope, value))
    for value in ("cnt", "avl"):
        fetches[f"table_{value}"] = Fetch(f"table_{value}", INT, None, counter=("table", value))
    return fetches


FETCHES.update(_counter_fetches())


def as_text(value: Any) -> str:
    """A value as a string (a variable's may be of any type: HAProxy casts it)."""
    if isinstance(value, bytes):
        return value.decode("latin-1")
    return str(int(value)) if isinstance(value, (bool, int)) else value


def binary(value: Any) -> bytes:
    return value if isinstance(value, bytes) else as_text(value).encode("latin-1", "replace")


def _bytes(value: Any, offset: int, length: Optional[int] = None) -> Optional[bytes]:
    """HAProxy's ``bytes(<offset>[,<length>])``: no value when the offset is past the end."""
    data = binary(value)
    if offset >= len(data):
        return None
    return data[offset:] if not length else data[offset:offset + length]


def _ipmask(value: Any, mask4: str, mask6: Optional[str] = None) -> Optional[str]:
    """HAProxy's ``ipmask(<mask4>[,<mask6>])``: the address with its host bits cleared (a v6 one with
    ``mask6`` only)."""
    try:
        address = ipaddress.ip_address(value)
    except ValueError:
        return None
    mask = mask4 if address.version == 4 else mask6
    if mask is None:
        return None
    network = ipaddress.ip_network(f"{address}/{mask}", strict=False)
    return str(network.network_address)


def _check_ipmask(mask4: str, mask6: Optional[str] = None) -> None:
    for mask, version in ((mask4, "0.0.0.0"), (mask6, "::")):
        if mask is not None:
            try:
                ipaddress.ip_network(f"{version}/{mask}")
            except ValueError:
                raise SampleError(f"converter 'ipmask' : invalid mask '{mask}'") from None


def _store_variable(conn: Any, kind: str, value: Any, name: variables.VariableName, *conditions: str) -> Any:
    """``set-var(<var>[,<cond>...])``: the value into the connection's variable (unless a condition says
    no), passed on unchanged either way (HAProxy 2.6's smp_conv_store)."""
    store = getattr(conn, "variables", None)
    if store is not None:
        store.set(name, variables.sample_type(value) if kind == ANY else kind, value, frozenset(conditions))
    return value


def _clear_variable(conn: Any, kind: str, value: Any, name: variables.VariableName) -> Any:
    """``unset-var(<var>)``: the connection's variable unset, the value passed on (smp_conv_clear)."""
    store = getattr(conn, "variables", None)
    if store is not None:
        store.unset(name)
    return value


_STRINGS = frozenset({STR, BIN})
_EVERY_TYPE = frozenset({IP, INT, STR, BOOL, BIN, ANY})
CONVERTERS: dict[str, Converter] = {
    "lower": Converter("lower", _STRINGS, STR, lambda value: as_text(value).lower()),
    "upper": Converter("upper", _STRINGS, STR, lambda value: as_text(value).upper()),
    "hex": Converter("hex", _STRINGS, STR, lambda value: binary(value).hex().upper()),
    "bytes": Converter("bytes", _STRINGS, BIN, _bytes, (UINT, UINT), 1),
    "length": Converter("length", _STRINGS, INT, lambda value: len(binary(value))),
    "ipmask": Converter("ipmask", frozenset({IP}), IP, _ipmask, (TEXT, TEXT), 1),
    "set-var": Converter("set-var", _EVERY_TYPE, None, lambda value, *args: value,
                         (VARIABLE, CONDITION, CONDITION, CONDITION, CONDITION), 1, _store_variable),
    "unset-var": Converter("unset-var", _EVERY_TYPE, None, lambda value, *args: value, (VARIABLE,), 1,
                           _clear_variable),
}

HASHABLE = frozenset(name for name, fetch in FETCHES.items() if fetch.hashable)
CLIENT_HELLO = frozenset(name for name, fetch in FETCHES.items() if fetch.client_hello)
CONTENT = frozenset(name for name, fetch in FETCHES.items() if fetch.content)
"""Fetches reading the client's first bytes: a rule using one waits for them within inspect-delay."""


def parse(text: str) -> Sample:
    """``"req.ssl_sni,lower"`` -> ``Sample("req.ssl_sni", ("lower",))``, checked with ``check``."""
    sample = split(text)
    check(sample)
    return sample


def split(text: str) -> Sample:
    """The fetch and converters of an expression (each with its parenthesised arguments), not checked
    against the tables."""
    parts, depth, start = [], 0, 0
    for i, char in enumerate(text):
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
            if depth < 0:
                raise SampleError(f"cannot parse the criterion '{text}'")
        elif char == "," and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    parts.append(text[start:])
    if depth or not parts[0] or any(")" in part and not part.endswith(")") for part in parts):
        raise SampleError(f"cannot parse the criterion '{text}'")
    return Sample(parts[0], tuple(part.strip() for part in parts[1:]))


def _call(text: str) -> tuple[str, Optional[list[str]]]:
    """``"name(a,b)"`` -> ``("name", ["a", "b"])``; ``"name"`` -> ``("name", None)``."""
    name, paren, rest = text.partition("(")
    if not paren:
        return text, None
    inner = rest[:-1]
    return name, [arg.strip() for arg in inner.split(",")] if inner.strip() else []


def _arguments(what: str, given: Optional[list[str]], kinds: Sequence[str], required: int) -> tuple[Any, ...]:
    """Arguments checked against their types, as HAProxy's make_arg_list checks them."""
    given = given or []
    if len(given) < required:
        raise SampleError(f"{what} : missing arguments (got {len(given)}/{required}), type "
                          f"'{'string' if kinds[len(given)] in (TEXT, VARIABLE) else 'integer'}' expected")
    if len(given) > len(kinds):
        raise SampleError(f"{what} : end of arguments expected at position {len(kinds) + 1}, but got "
                          f"'{','.join(given[len(kinds):])}'")
    values: list[Any] = []
    for position, (kind, argument) in enumerate(zip(kinds, given), 1):
        if kind == TEXT:
            values.append(argument)
        elif kind == VARIABLE:
            try:
                values.append(variables.parse_name(argument))
            except variables.VariableError as exc:
                raise SampleError(f"{what} : {exc}") from None
        elif kind == CONDITION:
            try:
                values.append(*variables.parse_conditions([argument]))
            except variables.VariableError as exc:
                raise SampleError(f"invalid args in {what} : {exc}") from None
        elif kind == OFFSET:
            if not _SIGNED_DIGITS.fullmatch(argument):
                raise SampleError(f"{what} : payload offset2 is not a number")
            if _wrapped(values[0] + values[1] + signed(argument)) < 0:  # HAProxy's int64 sum
                raise SampleError(f"invalid args in {what} : payload offset2 too negative")
            values.append(argument)
        elif not _DIGITS.fullmatch(argument):
            raise SampleError(f"{what} : failed to parse '{argument}' as type 'integer' at position "
                              f"{position}")
        else:
            values.append(decimal(argument))  # saturated as HAProxy's read_int64()
    return tuple(values)


# HAProxy's integer arguments are ASCII digits (str.isdigit() would take '²', which int() refuses).
_DIGITS = re.compile(r"[0-9]+")
_SIGNED_DIGITS = re.compile(r"[-+]?[0-9]+")


def _wrapped(value: int) -> int:
    """A sum as a C ``long long`` holds it (wrapping past its ends)."""
    return (value - LONG_MIN) % 2**64 + LONG_MIN


def fetch_of(text: str) -> tuple[Fetch, tuple[Any, ...]]:
    """The fetch a sample's fetch text names and its checked arguments (``req.payload(0,3)`` -> the
    fetch, ``(0, 3)``), raising SampleError for one fastproxy does not know or arguments it does not
    take."""
    name, given = _call(text)
    fetch = FETCHES.get(name)
    if fetch is None or (given is not None and not fetch.arguments and fetch.counter is None):
        plain = sorted({fetch.name for fetch in FETCHES.values() if fetch.counter is None})
        raise SampleError(f"fetch method '{text}' is not supported by fastproxy (layer-4 criteria: "
                          f"{', '.join(plain)}, and the stick counters sc_*, sc0_*, sc1_*, sc2_*, src_*, "
                          "table_cnt, table_avl)")
    if fetch.counter is not None:  # checked by counter_arguments
        return fetch, tuple(given or ())
    if fetch.constant and given == []:  # ``str()``: an empty argument, as HAProxy reads it
        given = [""]
    return fetch, _arguments(f"fetch method '{name}'", given, fetch.arguments, fetch.required)


def converter_of(text: str) -> tuple[Converter, tuple[Any, ...]]:
    name, given = _call(text)
    converter = CONVERTERS.get(name)
    if converter is None or (given is not None and not converter.arguments):
        raise SampleError(f"converter '{name}' is not supported by fastproxy "
                          f"(only {', '.join(repr(c) for c in CONVERTERS)})")
    return converter, _arguments(f"converter '{name}'", given, converter.arguments, converter.required)


def array_index(fetch: Fetch, args: Sequence[str]) -> tuple[Optional[int], Sequence[str]]:
    """An array fetch's ``<idx>`` (``sc_get_gpc(<idx>,...)``) and the arguments after it; (None, args)
    for the other fetches."""
    assert fetch.counter is not None
    if fetch.counter[1] not in ARRAY_VALUES:
        return None, args
    if args and not _DIGITS.fullmatch(args[0]):
        raise SampleError(f"fetch method '{fetch.name}' : failed to parse '{args[0]}' as type 'integer' at "
                          "position 1")
    if len(args) < 2:  # src_*: the table is not optional here (haproxy 2.6)
        expected = "table" if fetch.counter[0] == "src" else "integer"
        raise SampleError(f"fetch method '{fetch.name}' : missing arguments (got {len(args)}/2), type "
                          f"'{expected}' expected")
    return decimal(args[0]), args[1:]


def counter_arguments(fetch: Fetch, args: Sequence[str]) -> tuple[Optional[int], Optional[str]]:
    """A stick counter fetch's (counter number, table name) from its arguments, checked as HAProxy does:
    ``sc_*`` take the number then maybe a table, the others maybe a table (an array fetch takes its
    index first, ``array_index``)."""
    assert fetch.counter is not None
    scope = fetch.counter[0]
    args = array_index(fetch, args)[1]
    number: Optional[int] = int(scope[2]) if scope in ("sc0", "sc1", "sc2") else None
    if scope == "sc":
        if not args:
            raise SampleError(f"fetch method '{fetch.name}' : expected type 'integer' at position 1, but "
                              "got nothing")
        if not _SIGNED_DIGITS.fullmatch(args[0]):
            raise SampleError(f"fetch method '{fetch.name}' : failed to parse '{args[0]}' as type "
                              "'integer' at position 1")
        # HAProxy reads an int64 and keeps it as a C unsigned int: a number past the last counter
        # (sc_get_gpc0(5), -1) is valid, its counter is never tracked, and the fetch has no value.
        number, args = signed(args[0]) % 2**32, args[1:]
    if len(args) > 1:
        raise SampleError(f"fetch method '{fetch.name}' : expected ')' before ',{','.join(args[1:])})'")
    return number, args[0] if args else None


def table_of(sample: Sample) -> Optional[tuple[str, Optional[str]]]:
    """For a stick counter fetch, (its name, the table it names or None for the proxy's own); None
    for other fetches."""
    fetch, args = fetch_of(sample.fetch)
    if fetch.counter is None:
        return None
    return fetch.name, counter_arguments(fetch, args)[1]


def check(sample: Sample) -> None:
    """Raise SampleError unless fastproxy can evaluate ``sample`` (for models built through the API)."""
    fetch, args = fetch_of(sample.fetch)
    if fetch.counter is not None:
        counter_arguments(fetch, args)
    if fetch.name in _CONSTANTS:
        _check_constant(fetch.name, args[0])
    kind = fetch.type
    for text in sample.converters:
        converter, cargs = converter_of(text)
        if converter.name == "ipmask":
            _check_ipmask(*cargs)
        if kind not in converter.inputs and kind != ANY:  # a variable's value is cast when read
            what = "strings" if STR in converter.inputs else f"{'/'.join(converter.inputs)} samples"
            raise SampleError(f"converter '{converter.name}' applies to {what}, and '{sample.fetch}' is not "
                              "one")
        kind = converter.output or kind


def _check_constant(name: str, text: str) -> None:
    try:
        if name == "int":
            if not _SIGNED_DIGITS.fullmatch(text):
                raise ValueError(text)
        elif name != "str":
            if ipaddress.ip_address(text).version != (4 if name == "ipv4" else 6):
                raise ValueError(text)
    except ValueError:
        kind = {"int": "integer", "ipv4": "IPv4 address", "ipv6": "IPv6 address"}[name]
        raise SampleError(f"fetch method '{name}' : failed to parse '{text}' as type '{kind}' at "
                          "position 1") from None


def check_hashable(sample: Sample) -> None:
    """``check``, and that ``balance hash`` can hash the sample."""
    fetch = FETCHES.get(sample.fetch.partition("(")[0])
    if fetch is None or not fetch.hashable:
        names = sorted({FETCHES[name].name for name in HASHABLE})
        raise SampleError(f"fastproxy hashes on the layer-4 samples {', '.join(names)} only")
    check(sample)


def type_of(sample: Sample) -> str:
    """The type of a checked sample's value, after its converters."""
    kind = fetch_of(sample.fetch)[0].type
    for text in sample.converters:
        kind = converter_of(text)[0].output or kind
    return kind


_PLAIN = {"ssl_fc": False, "client_used": False}  # a connection without TLS: ssl_fc and ssl_c_used false


def _fetch_reader(fetch: Fetch, args: tuple[Any, ...]) -> FetchRead:
    """How ``fetch`` reads a connection, whatever it reads: stick counters, the client's bytes, an
    attribute, or a constant."""
    if fetch.counter is not None:
        scope, value = fetch.counter
        number, table = counter_arguments(fetch, args)
        index = array_index(fetch, args)[0]

        def count(conn: Any, args: tuple[Any, ...]) -> Read:
            counters = getattr(conn, "counters", None)
            found = None if counters is None else counters.fetch(scope, value, number, table, conn, index)
            return Read(found, False)
        return count
    if fetch.read is not None:
        return fetch.read
    if fetch.tls is not None:
        fact = fetch.tls

        def tls_fact(conn: Any, args: tuple[Any, ...]) -> Read:
            facts = getattr(conn, "tls", None)
            return Read(getattr(facts, fact) if facts is not None else _PLAIN.get(fact), False)
        return tls_fact
    if fetch.attribute is not None:
        attribute = fetch.attribute
        return lambda conn, args: Read(getattr(conn, attribute), False)
    constant = Read(fetch.value, False)
    return lambda conn, args: constant


def _step(converter: Converter, arguments: tuple[Any, ...], kind: str) -> Callable[[Any, Any], Any]:
    """One converter bound to its arguments: (connection, value) -> value (``kind``: its input's type)."""
    on_connection, apply = converter.on_connection, converter.apply
    if on_connection is not None:
        return lambda conn, value: on_connection(conn, kind, value, *arguments)
    return lambda conn, value: apply(value, *arguments)


def evaluator(sample: Sample) -> Callable[[Any], Read]:
    """A function giving, for one connection, the value of a checked ``sample`` (None when it has
    none) and whether more bytes may still change it: never once the connection's ``final`` is true
    (no more waiting).  Built once per rule or backend, called per connection."""
    fetch, args = fetch_of(sample.fetch)
    kind = fetch.type
    steps = []
    for converter, cargs in map(converter_of, sample.converters):
        steps.append(_step(converter, cargs, kind))
        kind = converter.output or kind
    fetch_read = _fetch_reader(fetch, args)

    def convert(conn: Any, value: Any) -> Any:
        for step in steps:
            value = step(conn, value)
            if value is None:
                break
        return value

    def evaluate(conn: Any) -> Read:
        value, more = fetch_read(conn, args)
        if value is not None and steps:
            value = tuple(v for v in (convert(conn, v) for v in value) if v is not None) or None \
                if isinstance(value, tuple) else convert(conn, value)
        return Read(value, more and not getattr(conn, "final", True))
    return evaluate


def reader(sample: Sample) -> Callable[[Any], Any]:
    """A function giving the value of a checked ``sample`` for one connection (None when it has none).

    Built once per rule or backend, called per connection: the converters are bound here.  A fetch
    giving several values (``req.ssl_alpn``, a tuple for ``evaluator``) gives its first.
    """
    fetch = fetch_of(sample.fetch)[0]
    if fetch.attribute is not None and not sample.converters:
        attribute = fetch.attribute
        return lambda conn: getattr(conn, attribute)
    evaluate = evaluator(sample)

    def read(conn: Any) -> Any:
        value = evaluate(conn).value
        return value[0] if isinstance(value, tuple) else value
    return read
