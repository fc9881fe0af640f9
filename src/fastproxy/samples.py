"""Layer-4 samples (HAProxy's sample.c): the one table of the fetches and converters fastproxy evaluates.

A sample expression is a fetch followed by converters applied to its value in turn
(``req.ssl_sni,lower``).  This module parses and checks expressions into the model's ``Sample`` and
evaluates them over a description of one connection: any object with the attributes the fetches read
(``src``, ``src_port``, ``dst``, ``dst_port``, ``sni``, ``hello_type``), such as ``acl.ConnInfo`` and
``balance.PickKey``.  What a value is then used for is the caller's business: ACLs match it against
patterns (``acl.py``), ``balance hash`` hashes its bytes (``balance.py``), the reader checks expressions
as it reads them.  Sans-IO: no socket, no file.

Fetches: ``src``, ``dst`` (addresses, as text), ``src_port``, ``dst_port`` (integers),
``req.ssl_sni`` / ``req_ssl_sni`` (the TLS ClientHello's server name), ``req.ssl_hello_type`` /
``req_ssl_hello_type`` (its handshake type), ``always_true``, ``always_false``.  Converters: ``lower``,
``upper``, on strings.  A fetch without a value for the connection (no SNI) gives None.

Stick counter fetches (HAProxy's ``sc_*``, ``sc0_*``..``sc2_*``, ``src_*``, ``table_cnt``,
``table_avl``) read stick tables: the entry a ``track-sc<n>`` rule tracks for the connection
(``sc_conn_cur(<n>[,<table>])``, ``sc0_conn_cur([<table>])``), the entry of the client's address
(``src_conn_rate([<table>])``), or a table's fill.  Their values come from the ``counters`` attribute of
the connection (``tracking.Tracker``), which this module only calls: no counters, no value.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Optional

from .config.model import Sample
from .errors import ConfigError

__all__ = ["CONVERTERS", "FETCHES", "Converter", "Fetch", "Sample", "SampleError", "check",
           "check_hashable", "parse", "reader", "split", "type_of"]

# The types of sample values (HAProxy's SMP_T_*): what a fetch gives and a converter takes.
IP, INT, STR, BOOL = "ip", "int", "str", "bool"


class SampleError(ConfigError, ValueError):
    """A sample expression fastproxy cannot evaluate; the message says what it can."""


@dataclass(frozen=True)
class Fetch:
    """One sample fetch: the type of its value and where it comes from."""

    name: str
    type: str
    attribute: Optional[str]  # the connection attribute it reads; None: the constant ``value``
    value: Any = None
    hashable: bool = False  # ``balance hash`` may hash it
    client_hello: bool = False  # read from the TLS ClientHello: a rule needs ``inspect-delay`` to see it
    destination: bool = False  # the address the client connected to: one more syscall per connection
    counter: Optional[tuple[str, str]] = None  # a stick counter fetch: (scope, value), see COUNTER_VALUES


@dataclass(frozen=True)
class Converter:
    name: str
    input: str
    output: str
    apply: Callable[[Any], Any]


def _fetches(*fetches: tuple[tuple[str, ...], Fetch]) -> dict[str, Fetch]:
    return {name: fetch for names, fetch in fetches for name in names}


FETCHES: dict[str, Fetch] = _fetches(
    (("src",), Fetch("src", IP, "src", hashable=True)),
    (("dst",), Fetch("dst", IP, "dst", hashable=True, destination=True)),
    (("src_port",), Fetch("src_port", INT, "src_port", hashable=True)),
    (("dst_port",), Fetch("dst_port", INT, "dst_port", hashable=True, destination=True)),
    # HAProxy 2.6 still knows the older underscore names beside the dotted ones.
    (("req.ssl_sni", "req_ssl_sni"), Fetch("req.ssl_sni", STR, "sni", hashable=True, client_hello=True)),
    (("req.ssl_hello_type", "req_ssl_hello_type"),
     Fetch("req.ssl_hello_type", INT, "hello_type", client_hello=True)),
    (("always_true",), Fetch("always_true", BOOL, None, True)),
    (("always_false",), Fetch("always_false", BOOL, None, False)),
)

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
}
_COUNTER_SCOPES = ("sc", "sc0", "sc1", "sc2", "src")
MAX_TRACKED = 3  # HAProxy's MAX_SESS_STKCTR


def _counter_fetches() -> dict[str, Fetch]:
    fetches = {}
    for scope in _COUNTER_SCOPES:
        for value, (_, how) in COUNTER_VALUES.items():
            if scope == "src" and how in ("tracked", "trackers"):
                continue
            name = f"{scope}_{value}"
            fetches[name] = Fetch(name, BOOL if how == "tracked" else INT, None, counter=(scope, value))
    for value in ("cnt", "avl"):
        fetches[f"table_{value}"] = Fetch(f"table_{value}", INT, None, counter=("table", value))
    return fetches


FETCHES.update(_counter_fetches())

CONVERTERS: dict[str, Converter] = {
    "lower": Converter("lower", STR, STR, str.lower),
    "upper": Converter("upper", STR, STR, str.upper),
}

HASHABLE = frozenset(name for name, fetch in FETCHES.items() if fetch.hashable)
CLIENT_HELLO = frozenset(name for name, fetch in FETCHES.items() if fetch.client_hello)


# A fetch (its parenthesised arguments kept in its name, so that a message names what was written:
# fastproxy's fetches take none) and comma-separated converters.
_EXPRESSION = re.compile(r"([^,(]*)(\([^)]*\))?((?:,[^,]*)*)")


def parse(text: str) -> Sample:
    """``"req.ssl_sni,lower"`` -> ``Sample("req.ssl_sni", ("lower",))``, checked with ``check``."""
    sample = split(text)
    check(sample)
    return sample


def split(text: str) -> Sample:
    """The fetch and converters of an expression, not checked against the tables."""
    match = _EXPRESSION.fullmatch(text)
    if not match:
        raise SampleError(f"cannot parse the criterion '{text}'")
    return Sample(match[1] + (match[2] or ""), tuple(part.strip() for part in match[3].split(",")[1:]))


def fetch_of(text: str) -> tuple[Fetch, list[str]]:
    """The fetch a sample's fetch text names, and its arguments (``sc_conn_cur(0,t)`` -> the fetch,
    ``["0", "t"]``), raising SampleError for one fastproxy does not know or arguments it does not take."""
    fetch = FETCHES.get(text)
    if fetch is not None:
        return fetch, []
    name, _, rest = text.partition("(")
    fetch = FETCHES.get(name)
    if fetch is None or fetch.counter is None or not rest.endswith(")"):
        plain = sorted(n for n, f in FETCHES.items() if f.counter is None)
        raise SampleError(f"fetch method '{text}' is not supported by fastproxy (layer-4 criteria: "
                          f"{', '.join(plain)}, and the stick counters sc_*, sc0_*, sc1_*, sc2_*, src_*, "
                          "table_cnt, table_avl)")
    return fetch, [arg.strip() for arg in rest[:-1].split(",")] if rest[:-1].strip() else []


def counter_arguments(fetch: Fetch, args: list[str]) -> tuple[Optional[int], Optional[str]]:
    """A stick counter fetch's (counter number, table name) from its arguments, checked as HAProxy does:
    ``sc_*`` take the number then maybe a table, the others maybe a table."""
    assert fetch.counter is not None
    scope = fetch.counter[0]
    number: Optional[int] = int(scope[2]) if scope in ("sc0", "sc1", "sc2") else None
    if scope == "sc":
        if not args:
            raise SampleError(f"fetch method '{fetch.name}' : expected type 'integer' at position 1, but "
                              "got nothing")
        if not args[0].isdigit() or int(args[0]) >= MAX_TRACKED:
            raise SampleError(f"fetch method '{fetch.name}': the stick counter number '{args[0]}' is not "
                              f"one of 0 to {MAX_TRACKED - 1}")
        number, args = int(args[0]), args[1:]
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
    kind = fetch.type
    for name in sample.converters:
        converter = CONVERTERS.get(name)
        if converter is None:
            raise SampleError(f"converter '{name}' is not supported by fastproxy "
                              f"(only {' and '.join(repr(c) for c in CONVERTERS)})")
        if kind != converter.input:
            what = "strings" if converter.input == STR else f"{converter.input} samples"
            raise SampleError(f"converter '{name}' applies to {what}, and '{sample.fetch}' is not one")
        kind = converter.output


def check_hashable(sample: Sample) -> None:
    """``check``, and that ``balance hash`` can hash the sample."""
    fetch = FETCHES.get(sample.fetch)
    if fetch is None or not fetch.hashable:
        raise SampleError(f"fastproxy hashes on the layer-4 samples {', '.join(sorted(HASHABLE))} only")
    check(sample)


def type_of(sample: Sample) -> str:
    """The type of a checked sample's value, after its converters."""
    kind = fetch_of(sample.fetch)[0].type
    for name in sample.converters:
        kind = CONVERTERS[name].output
    return kind


def reader(sample: Sample) -> Callable[[Any], Any]:
    """A function giving the value of a checked ``sample`` for one connection (None when it has none).

    Built once per rule or backend, called per connection: the converters are bound here.
    """
    fetch, args = fetch_of(sample.fetch)
    steps = [CONVERTERS[name].apply for name in sample.converters]
    if fetch.counter is not None:
        scope, value = fetch.counter
        number, table = counter_arguments(fetch, args)

        def count(conn: Any) -> Any:
            counters = getattr(conn, "counters", None)
            return None if counters is None else counters.fetch(scope, value, number, table, conn)
        return count
    if fetch.attribute is None:
        constant = fetch.value
        return lambda conn: constant
    attribute = fetch.attribute
    if not steps:
        return lambda conn: getattr(conn, attribute)

    def read(conn: Any) -> Any:
        value = getattr(conn, attribute)
        if value is not None:
            for step in steps:
                value = step(value)
        return value
    return read
