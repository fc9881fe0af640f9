"""Persistence on stick tables: the ``stick on|match|store-request`` rules of a backend (HAProxy's
``process_sticking_rules()`` and ``process_store_rules()`` in ``stream.c``), sans-IO.

Before the balancer is asked, ``Persistence.lookup`` runs the rules in order over the connection: the
first ``match`` (or ``on``) whose key is in its table and whose server is not stopped (DOWN, MAINT)
chooses the server, and every rule that stores (``on``, ``store-request``; only the first one per
table) gets its entry ready.  ``option persist`` and a matching ``force-persist`` condition send the
client to its server whatever state it is in (unless an ``ignore-persist`` matched first).  Once a
server is dialed, ``Persistence.store`` writes it into those entries (``server_id``, ``server_key``),
as HAProxy does once the server is connected: so a client that the balancer moved (its server went
down) sticks to the new server from then on; a ``non-stick`` server is never written.

Whether the table may take the entry decides the active/passive idiom (``stick on dst`` in a ``size 1``
table): a purging table replaces its one entry with the server now used, a ``nopurge`` one keeps the
first server for good, so clients go back to it when it comes back.  The dispatcher calls both
methods (``dispatch.Dispatcher``); a redispatch (``option redispatch``) does not consult the table
again, as HAProxy's does not.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Callable, Optional

from . import samples
from .acl import ConnInfo, compile_condition
from .balance import Balancer, ServerSlot, ServerState
from .config import model
from .sticktables import StickTable

__all__ = ["Persistence", "Pending"]

STOPPED = (ServerState.DOWN, ServerState.MAINT)  # HAProxy's SRV_ST_STOPPED


@dataclass(frozen=True)
class _Rule:
    matches: bool
    stores: bool
    read: Callable[[Any], Any]
    kind: str  # the sample's type
    table: StickTable
    condition: Callable[[ConnInfo], bool]


Pending = list[tuple[StickTable, Any]]  # the (table, key) pairs a connection will store its server in


class Persistence:
    """The stick rules of one backend, bound to their tables and to the backend's balancer."""

    def __init__(self, backend: model.Backend, tables: Mapping[str, StickTable], balancer: Balancer) -> None:
        self.balancer = balancer
        self.persist = backend.persist
        acls = backend.acls
        self._rules: Sequence[_Rule] = [
            _Rule(rule.kind in ("on", "match"), rule.kind in ("on", "store-request"),
                  samples.reader(rule.sample), samples.type_of(rule.sample),
                  tables[rule.table or backend.name], compile_condition(rule.condition, acls))
            for rule in backend.stick_rules]
        self._persist_rules = [(rule.force, compile_condition(rule.condition, acls))
                               for rule in backend.persist_rules]
        self._by_id = {slot.id: slot for slot in balancer.slots}

    def forced(self, info: ConnInfo) -> bool:
        """Whether a ``force-persist`` rule applies: the first persist rule that matches decides,
        an ``ignore-persist`` one saying no (HAProxy's SF_FORCE_PRST / SF_IGNORE_PRST)."""
        for force, matches in self._persist_rules:
            if matches(info):
                return force
        return False

    def lookup(self, info: ConnInfo) -> tuple[Optional[ServerSlot], Pending]:
        """The server the tables stick the connection to (None: let the balancer choose), and where to
        store the server it will use."""
        chosen: Optional[ServerSlot] = None
        pending: Pending = []
        forced: Optional[bool] = None  # force-persist, evaluated only if a stopped server is found
        for rule in self._rules:
            if rule.stores and any(table is rule.table for table, _ in pending):
                continue  # only the first storing rule of each table applies, its match included
            if not rule.condition(info):
                continue
            key = rule.table.key_of(rule.read(info), rule.kind)
            if key is None:
                continue
            if rule.matches:
                entry = rule.table.lookup(key)
                if entry is not None:
                    if chosen is None:
                        slot = self._by_id.get(rule.table.read(entry, "server_id"))
                        if slot is not None and slot.state in STOPPED and not self.persist:
                            if forced is None:
                                forced = self.forced(info)
                            if not forced:
                                slot = None
                        chosen = slot
                    rule.table.touch(entry)
            if rule.stores:
                pending.append((rule.table, key))
        return chosen, pending

    def store(self, pending: Pending, slot: ServerSlot) -> None:
        """The connection goes to ``slot``: its entries say so (unless a full table refuses them, or
        the server is ``non-stick``)."""
        if slot.server.non_stick:
            return
        for table, key in pending:
            entry = table.store(key)
            if entry is not None:
                table.set(entry, "server_id", slot.id)
                table.set(entry, "server_key", slot.name)
                table.touch(entry)
