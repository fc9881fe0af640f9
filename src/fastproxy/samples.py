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


def check(sample: Sample) -> None:
    """Raise SampleError unless fastproxy can evaluate ``sample`` (for models built through the API)."""
    fetch = FETCHES.get(sample.fetch)
    if fetch is None:
        raise SampleError(f"fetch method '{sample.fetch}' is not supported by fastproxy (layer-4 criteria: "
                          f"{', '.join(sorted(FETCHES))})")
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
    kind = FETCHES[sample.fetch].type
    for name in sample.converters:
        kind = CONVERTERS[name].output
    return kind


def reader(sample: Sample) -> Callable[[Any], Any]:
    """A function giving the value of a checked ``sample`` for one connection (None when it has none).

    Built once per rule or backend, called per connection: the converters are bound here.
    """
    fetch = FETCHES[sample.fetch]
    steps = [CONVERTERS[name].apply for name in sample.converters]
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
