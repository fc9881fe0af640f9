"""Stick tables and persistence keywords (HAProxy's ``stick_table.c`` parser and the ``stick`` rules of
``cfgparse-listen.c``): ``stick-table``, ``stick on|match|store-request``, ``force-persist``.

``option persist`` is in ``options``; the ``track-sc*`` and ``sc-*`` actions of ``tcp-request`` in
``proxy``.  That the tables rules name exist is checked on the model (``config.validate``), since a rule
may name a table declared further down.
"""

from __future__ import annotations

import re

from ... import samples
from ...sticktables import KEY_TYPES, StickTableError, check_stores, parse_store
from ..model import PersistRule, StickRule, StickTable
from .lexer import _Invalid
from .registry import BE, _Line, _Proxy, _keyword
from .values import _size, decimal, parse_time


@_keyword("stick-table", in_defaults="no")
def _stick_table(line: _Line, proxy: _Proxy, args: list[str]) -> None:
    table_type, size, length, expire, nopurge, peers = None, 0, None, None, False, None
    stores = []
    i = 0
    while i < len(args):
        word = args[i]
        value = args[i + 1] if i + 1 < len(args) else None
        if word in ("size", "expire", "peers", "type", "store", "srvkey", "write-to") and value is None:
            raise _Invalid(f"stick-table: missing argument after '{word}'.")
        if word == "size":
            size = _table_value(_size, value, word)
            i += 2
        elif word == "expire":
            expire = _table_value(parse_time, value, word)
            i += 2
        elif word == "peers":
            peers = value
            i += 2
        elif word == "nopurge":
            nopurge = True
            i += 1
        elif word == "type":
            if value not in KEY_TYPES:
                raise _Invalid(f"stick-table: unknown type '{value}'.")
            table_type = value
            i += 2
            if table_type in ("string", "binary") and i < len(args) and args[i] == "len":
                if i + 1 >= len(args) or not args[i + 1].isdigit() or decimal(args[i + 1]) < 1:
                    raise _Invalid(f"stick-table: unknown type '{args[i + 1] if i + 1 < len(args) else ''}'.")
                length = decimal(args[i + 1])
                i += 2
        elif word == "store":
            try:
                stores += parse_store(value or "", parse_time)
                check_stores(stores)
            except StickTableError as exc:
                raise _Invalid(f"stick-table: {exc}") from None
            i += 2
        elif word in ("srvkey", "write-to", "recv-only"):
            raise _Invalid(f"stick-table: '{word}' is not supported by fastproxy (HAProxy 2.8 and later)")
        else:
            raise _Invalid(f"stick-table: unknown argument '{word}'.")
    if table_type is None:
        raise _Invalid("stick-table: missing type.")
    if not size:
        raise _Invalid("stick-table: missing size.")
    if proxy.stick_table is not None:
        raise _Invalid(f"only one stick-table per proxy (the one of {proxy.describe()} is at "
                       f"{proxy.stick_table.location})")
    if peers is not None:
        line.warn(f"peers '{peers}' not synchronised: fastproxy does not talk to peers; the table is local "
                  "to this process")
    layer7 = [store.name for store in stores if store.name.startswith("http_")]
    if layer7:
        line.warn(f"{', '.join(layer7)}: HTTP counters, which stay 0 at layer 4 (as in HAProxy's TCP mode)")
    proxy.stick_table = StickTable(name=proxy.name, type=table_type, size=size, length=length,
                                   expire=expire or None, nopurge=nopurge, peers=peers, store=tuple(stores),
                                   location=line.location)


def _table_value(parse, value, word):  # type: ignore[no-untyped-def]
    try:
        return parse(value)
    except (ValueError, _Invalid):
        bad = next((c for c in value if not c.isdigit()), value[:1])
        raise _Invalid(f"stick-table: unexpected character '{bad}' in argument of '{word}'.") from None


_STICK_KINDS = {"on": "on", "match": "match", "store-request": "store-request"}


@_keyword("stick", caps=BE, in_defaults="no")
def _stick(line: _Line, proxy: _Proxy, args: list[str]) -> None:
    kind = args[0] if args else ""
    if kind == "store-response":
        raise _Invalid("'stick store-response' stores what the server answers, which fastproxy does not read "
                       "(layer 4); use 'stick on' or 'stick store-request'")
    if kind not in _STICK_KINDS:
        raise _Invalid("'stick' expects 'on', 'match', or 'store'.")
    rest = args[1:]
    if not rest or rest[0] in ("if", "unless", "table"):
        raise _Invalid("'stick' expects a fetch method.")
    expression, rest = rest[0], rest[1:]
    try:
        sample = samples.parse(expression)
    except samples.SampleError as exc:
        raise _Invalid(f"'stick': {exc.message}") from None
    table = None
    if rest[:1] == ["table"]:
        if len(rest) < 2:
            raise _Invalid("'stick' expects a table name after 'table'.")
        table, rest = rest[1], rest[2:]
    condition = None
    if rest:
        if rest[0] not in ("if", "unless"):
            raise _Invalid(f"'stick {kind}' only accepts 'table', 'if' or 'unless' after the fetch method "
                           f"(got '{rest[0]}')")
        condition = line.reader.condition(line, proxy, rest)
    proxy.stick_rules.append(StickRule(kind=_STICK_KINDS[kind], sample=sample, table=table,
                                       condition=condition, location=line.location))


@_keyword("force-persist", caps=BE, in_defaults="no")
@_keyword("ignore-persist", caps=BE, in_defaults="no")
def _persist_rule(line: _Line, proxy: _Proxy, args: list[str]) -> None:
    """``force-persist|ignore-persist if|unless <condition>``: kept in order, the first that matches
    decides (``persistence.Persistence``)."""
    if not args or args[0] not in ("if", "unless") or len(args) < 2:
        raise _Invalid(f"'{line.words[0]}' requires either 'if' or 'unless' followed by a condition.")
    proxy.persist_rules.append(PersistRule(force=line.words[0] == "force-persist",
                                           condition=line.reader.condition(line, proxy, args),
                                           location=line.location))


@_keyword("persist", caps=BE)
def _persist(line: _Line, proxy: _Proxy, args: list[str]) -> None:
    """``persist rdp-cookie[(<name>)]``: a client whose RDP cookie (``msts`` unless named) names one of
    the backend's servers goes to it (``dispatch.rdp_persisted``)."""
    if not args:
        raise _Invalid("missing persist method.")
    method = re.fullmatch(r"rdp-cookie(?:\((.*)\))?", args[0])
    if method is None:
        raise _Invalid("unknown persist method.")
    proxy.persist_rdp_cookie = method[1] or "msts"
