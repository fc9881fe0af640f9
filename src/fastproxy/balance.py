"""Server selection for one backend: HAProxy's ``balance`` algorithms over the backend's servers.

A ``Balancer`` holds the runtime view of a backend's servers (``ServerSlot``: effective weight, state,
connections in flight) and picks one per new connection.  It is sans-IO: built from the config model
alone, it is told when a connection to a server starts and ends, and asked for a pick with a
``PickKey`` describing the client.  Changes of weight or state go through ``set_weight`` and
``set_state``; they take effect on the next pick.

The algorithms, as HAProxy's ``balance`` (weights apply wherever HAProxy applies them):

- ``roundrobin``: smooth weighted round robin; weights may change at run time.
- ``static-rr``: HAProxy's static map (servers interleaved by weight, declaration order breaking
  ties); at run time a weight may only be set to 0 or back to its configured value, as in HAProxy.
- ``leastconn``: the fewest connections in flight relative to weight (HAProxy's key,
  ``(inflight + 1) * 256 / weight``, 0 when idle); equal servers take turns.
- ``first``: the first server in id order with a free slot under its ``maxconn``.
- ``source`` and ``hash <sample>`` (``src``, ``dst``, ``src_port``, ``dst_port``, ``req.ssl_sni``,
  optionally ``,lower``/``,upper``): the sample hashed with XXH64, then ``hash-type map-based``
  (HAProxy's map, ``hash % total weight``), ``consistent`` (a ketama ring: 160 points for a server
  of the common weight, where HAProxy has 16 per unit of weight) or ``maglev`` (fastproxy's: a Maglev
  table, ``table_size`` and ``seed`` settable).  Without the sample (no SNI, a UNIX client), round
  robin, as HAProxy does.
- ``random`` / ``random(<draws>)``: ``draws`` (default 2) random points of the consistent ring, the
  least loaded relative to weight wins (power of d choices).
- ``hash-balance-factor <pct>`` bounds the loads of ``consistent``, ``maglev`` and ``random``: a
  server already at its weighted share of ``pct`` percent of the in-flight connections is passed over
  for the next one along the ring.

Servers that are DOWN, in MAINT or DRAIN, or of weight 0 are out of new picks at once, and back in at
once.  A server's place on a ring derives from its identity (``hash_key``, HAProxy 3.0's ``hash-key``):
its name unset (fastproxy's default), its ``id``, its address (``addr``) or its address and port
(``addr-port``), never from the order servers were added; servers of one group sharing an identity are
told apart by their names.  Backup servers are used only when no active server is usable: the first one in
id order, or all of them with ``option allbackups``.  A server at its ``maxconn`` (HAProxy's dynamic one,
see ``minconn`` and ``fullconn``) or with connections waiting in its queue is full: the algorithms that
choose pass it over and pick None when every server is full (the connection then waits in the backend's
queue, ``fastproxy.queues``), while the hashing ones keep the server the hash chose (the connection waits
in that server's queue), as HAProxy does.  ``leastconn`` also picks a full server whose queue is shorter
than its ``maxqueue``.  A server the caller asks to avoid (``exclude``, for a redispatch) is used only
when no other can be.  Hash tables are rebuilt when a server changes, not per pick, and swapped in whole
(``fastproxy.ring``: the compiled build releases the GIL).
"""

from __future__ import annotations

import collections
import contextlib
import enum
import math
import random
import socket
from collections.abc import Callable, Iterable, Iterator, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from typing import Any

from . import ring as ring_module
from . import samples
from .config import model

WEIGHT_MAX = 256  # HAProxy's SRV_UWGHT_MAX
SLOWSTART_SCALE = 16  # HAProxy's BE_WEIGHT_SCALE: steps of a slowstart ramp per unit of weight
POINTS_PER_WEIGHT = 160  # consistent-hash points of a server of the backend's common weight
RANDOM_DRAWS = 2  # HAProxy's default for ``balance random``
HASHED = ("source", "hash")
HASH_KEYS = ("id", "addr", "addr-port")  # HAProxy 3.0's ``hash-key`` (None: the server's name)


class ServerState(enum.Enum):
    UP = "UP"
    DOWN = "DOWN"
    DRAIN = "DRAIN"  # no new connections, existing ones continue
    MAINT = "MAINT"  # checks stop, no traffic


@dataclass
class ServerSlot:
    """One server of a backend as the balancer sees it at run time (change it through the Balancer)."""

    server: model.Server
    index: int  # position in the backend's server list
    weight: int
    state: ServerState = ServerState.UP
    current: int = 0  # connections in flight
    total: int = 0
    queued: int = 0  # connections waiting in this server's queue
    maxconn: int = 0  # HAProxy's effective limits: a minconn alone (or above maxconn) is the maxconn
    minconn: int = 0
    id: int = 0  # HAProxy's server id: the configured ``id``, else the next free one in declaration order
    user_weight: int = 0  # the weight as configured or set at run time (HAProxy's uweight)
    ramp: float | None = None  # during a slowstart: the share of the weight (and maxconn) given now
    deleted: bool = False  # ``del server``: out of every list, its index kept so that none moves
    address: tuple[str, int] = ("", 0)  # where it is now (``set server ... addr`` moves it): ``hash-key``

    @property
    def name(self) -> str:
        return self.server.name

    @property
    def backup(self) -> bool:
        return self.server.backup

    @property
    def usable(self) -> bool:
        return self.state is ServerState.UP and self.weight > 0


@dataclass(frozen=True)
class PickKey:
    """What a balancing algorithm may look at for one connection."""

    src: str = ""
    src_port: int = 0
    dst: str = ""
    dst_port: int = 0
    sni: str | None = None
    request: bytes = b""  # what the client sent first, when rules peeked at it (``balance rdp-cookie``)


_NO_AVOID: frozenset[int] = frozenset()


class Balancer:
    """Picks a server of one backend per new connection, with the backend's ``balance`` algorithm.

    Keyword arguments, all optional: ``ring_class`` (the HashRing implementation; the compiled one
    when built), ``rng`` (a ``random.Random``, for ``random``), ``table_size`` and ``seed`` (the Maglev
    table, and the seed of every hash; the backend's ``balance.table_size`` and ``balance.seed`` when
    not given), ``points_per_weight`` (consistent-ring points of
    a server of the backend's common weight, see ``_GroupRings``), ``hash_key`` (what a server's ring
    positions derive from: None for its name, or one of ``HASH_KEYS``; ``set_hash_key`` changes it).
    """

    def __init__(self, backend: model.Backend, *, ring_class: type | None = None,
                 rng: random.Random | None = None, table_size: int | None = None,
                 seed: int | None = None, points_per_weight: int = POINTS_PER_WEIGHT,
                 hash_key: str | None = None) -> None:
        _check_hash_key(hash_key)
        self.backend = backend
        self.hash_key = hash_key
        self.algorithm = backend.balance.algorithm
        # Weights are kept in finer steps where a slowstart may ramp them (dynamic algorithms only,
        # as HAProxy): every weight times SLOWSTART_SCALE, so that a server of weight 1 ramps too.
        self.weight_scale = SLOWSTART_SCALE if (any(s.slowstart for s in backend.servers)
                                                and not _static_algorithm(backend.balance)) else 1
        self.slots: list[ServerSlot] = [
            ServerSlot(server=s, index=i, weight=s.weight * self.weight_scale, user_weight=s.weight,
                       state=ServerState.MAINT if s.disabled else ServerState.UP, address=(s.host, s.port))
            for i, s in enumerate(backend.servers)
        ]
        for slot, server_id in zip(self.slots, _server_ids(backend.servers)):
            slot.id = server_id
            slot.maxconn = max(slot.server.maxconn, slot.server.minconn)
            slot.minconn = slot.server.minconn if slot.server.minconn < slot.maxconn else 0
        self._by_name = {slot.name: slot for slot in self.slots}
        self._by_id = sorted(self.slots, key=lambda slot: slot.id)
        self.all_backups = backend.allbackups
        self.balance_factor = backend.balance.hash_balance_factor
        self.in_flight = 0  # connections in flight to any server of the backend
        self.queued = 0  # connections waiting in the backend's queues (kept by fastproxy.queues)
        # The backend load at which servers reach their maxconn (``fullconn``); the engine sets
        # HAProxy's default when unset (10% of the maxconn of the frontends that use the backend).
        self.fullconn = backend.fullconn or 0
        self.rng = rng if rng is not None else random.Random()
        self.ring_class = ring_class if ring_class is not None else ring_module.HashRing
        self.table_size = table_size if table_size is not None else backend.balance.table_size
        self.seed = seed if seed is not None else backend.balance.seed
        self.points_per_weight = points_per_weight
        self.pool: list[ServerSlot] = []  # the servers picks choose from
        self.pool_group = "active"  # "active", "backup" (all usable backups) or "first-backup"
        self._cumulative: dict[int, int] = {}  # per pool server: weight of the pool servers before it
        self._pool_weight = 0
        self._algorithm = _make_algorithm(self)
        # Whether picks need the address the client connected to (one more syscall per connection).
        sample = hashed_sample(backend.balance)
        self.needs_destination = sample is not None and samples.fetch_of(sample.fetch)[0].destination
        self.on_change: list[Callable[[], None]] = []  # told after every change of weight or state
        self._batched: dict[int, ServerSlot] | None = None  # inside ``batch()``: the changed servers
        self.rebuilds = 0  # changes the algorithm was told of (a ``batch()`` counts once)
        self._refresh()

    # --- the engine's interface ---

    def slot(self, name: str) -> ServerSlot:
        try:
            return self._by_name[name]
        except KeyError:
            raise KeyError(name) from None

    def pick(self, key: PickKey = PickKey(), exclude: Iterable[int] = ()) -> ServerSlot | None:
        """The server for a new connection, or None when none can take it (no usable server, see
        ``pool``, or every server is full).  A hashing algorithm returns the server of the hash even
        when it is full (``available`` says so): the connection waits in that server's queue.

        ``exclude``: indexes of servers to avoid (HAProxy's redispatch), used only if no other can be.
        """
        if not self.pool:
            return None
        avoid: AbstractSet[int]
        if not exclude:
            avoid = _NO_AVOID
        else:
            avoid = exclude if isinstance(exclude, (set, frozenset)) else frozenset(exclude)
        return self._algorithm.pick(key, avoid)

    def connection_started(self, slot: ServerSlot, *, new: bool = True) -> None:
        """A connection to ``slot`` began; ``new`` False: one that began in another worker (a
        reload moved it here), open now but not counted again."""
        slot.current += 1
        slot.total += new
        self.in_flight += 1
        self._algorithm.load_changed(slot)

    def connection_ended(self, slot: ServerSlot) -> None:
        slot.current -= 1
        self.in_flight -= 1
        self._algorithm.load_changed(slot)

    def set_weight(self, name: str, weight: int) -> None:
        """Change a server's weight at run time (0 takes it out of new picks)."""
        slot = self.slot(name)
        if not isinstance(weight, int) or isinstance(weight, bool) or not 0 <= weight <= WEIGHT_MAX:
            raise ValueError(f"a weight is an integer from 0 to {WEIGHT_MAX}, got {weight!r}")
        if self._algorithm.static and weight not in (0, slot.server.weight):
            raise ValueError("Backend is using a static LB algorithm and only accepts weights '0%' and "
                             "'100%'.")
        slot.user_weight = weight
        self._apply_weight(slot)

    def add_server(self, server: model.Server) -> ServerSlot:
        """``add server``: a new server at the end (its index after every other, deleted ones
        included), in MAINT, with its ``id`` or the lowest one free, as HAProxy gives it."""
        if server.name in self._by_name:
            raise ValueError(f"a server named {server.name!r} exists already")
        taken = {slot.id for slot in self.slots if not slot.deleted}
        server_id = server.id if server.id is not None else next(i for i in range(1, len(taken) + 2)
                                                                 if i not in taken)
        slot = ServerSlot(server=server, index=len(self.slots), weight=server.weight * self.weight_scale,
                          user_weight=server.weight, state=ServerState.MAINT, id=server_id,
                          maxconn=max(server.maxconn, server.minconn), address=(server.host, server.port))
        slot.minconn = server.minconn if server.minconn < slot.maxconn else 0
        self.slots.append(slot)
        self._by_name[slot.name] = slot
        self._by_id = sorted((s for s in self.slots if not s.deleted), key=lambda s: s.id)
        self._algorithm.slot_added(slot)
        return slot  # the caller announces it (``changed``) once the rest of its runtime exists

    def delete_server(self, name: str) -> ServerSlot:
        """``del server``: a server in MAINT (out of every pick already) leaves for good; its name
        and id are free again."""
        slot = self.slot(name)
        if slot.state is not ServerState.MAINT:
            raise ValueError("only a server in maintenance can be deleted")
        slot.deleted = True
        del self._by_name[name]
        self._by_id = [s for s in self._by_id if s is not slot]
        self._changed(slot)
        return slot

    def changed(self, slot: ServerSlot) -> None:
        """Tell the algorithm and ``on_change`` that ``slot`` changed (after ``add_server``)."""
        self._changed(slot)

    def set_address(self, name: str, host: str, port: int) -> None:
        """``set server ... addr``: the server is there now; with ``hash-key addr`` or ``addr-port`` its
        ring positions move with it."""
        slot = self.slot(name)
        if slot.address != (host, port):
            slot.address = (host, port)
            if self.hash_key in ("addr", "addr-port"):
                self._changed(slot)

    def set_hash_key(self, hash_key: str | None) -> None:
        """What every server's ring positions derive from from now on (see ``ring_identity``)."""
        _check_hash_key(hash_key)
        if hash_key != self.hash_key:
            self.hash_key = hash_key
            with self.batch():
                for slot in self.slots:
                    if not slot.deleted:
                        self._changed(slot)

    def ring_identity(self, slot: ServerSlot) -> str:
        """What ``slot``'s ring positions derive from (HAProxy 3.0's ``hash-key``): its name (unset), its
        id, its address, or its address and port, so that instances agree whatever order their servers
        were added in (``id``: as long as the ids are the same)."""
        key = self.hash_key
        if key is None:
            return slot.name
        if key == "id":
            return f"id {slot.id}"
        host, port = slot.address
        host = f"[{host}]" if ":" in host else host
        return host if key == "addr" else f"{host}:{port}"

    def ring_slot(self, identity: str) -> ServerSlot:
        """The server a ring entry names (``ring.lookup`` and ``table.names`` give identities)."""
        return self._algorithm.ring_slot(identity)

    def table_digest(self) -> int | None:
        """What instances compare (``show fleet``, the exporter): ``routing_digest`` of the current ring
        and its servers' addresses; None without a ring."""
        ring = self.ring
        if ring is None:
            return None
        return routing_digest(ring, lambda identity: self.ring_slot(identity).address)

    def set_maxconn(self, name: str, maxconn: int) -> None:
        """``set maxconn server``: the server's maxconn from now on (0 or less: none), as HAProxy's
        server_parse_maxconn_change_request(): a minconn that was the maxconn follows it."""
        slot = self.slot(name)
        slot.maxconn = max(maxconn, 0)
        if slot.minconn >= slot.maxconn:
            slot.minconn = 0
        self._changed(slot)  # those waiting may fit now

    @property
    def ramps(self) -> bool:
        """Whether slowstart ramps apply here (dynamic algorithms only, as HAProxy)."""
        return self.weight_scale > 1

    def set_ramp(self, name: str, share: float | None) -> None:
        """During a slowstart: give the server ``share`` (0 to 1) of its weight, and of its maxconn;
        None ends the ramp.  The weight never drops below one step while it ramps."""
        slot = self.slot(name)
        slot.ramp = None if share is None or share >= 1 else max(share, 0.0)
        self._apply_weight(slot)

    def _apply_weight(self, slot: ServerSlot) -> None:
        weight = slot.user_weight * self.weight_scale
        if slot.ramp is not None and weight:
            weight = max(1, math.ceil(weight * slot.ramp))
        if weight != slot.weight:
            slot.weight = weight
            self._changed(slot)

    def set_state(self, name: str, state: ServerState) -> None:
        """Change a server's state at run time: only UP servers receive new connections."""
        slot = self.slot(name)
        state = ServerState(state)
        if state is not slot.state:
            slot.state = state
            self._changed(slot)

    @property
    def hash_map(self) -> list[int] | None:
        """HAProxy's map of ``hash-type map-based`` (server indexes, a server once per unit of weight;
        a hash picks entry ``hash % len``), or None for the other algorithms."""
        algorithm = self._algorithm
        return [slot.index for slot in algorithm.map] if isinstance(algorithm, _MapHash) else None

    @property
    def ring(self) -> Any:
        """The hash ring picks use now (``consistent``, ``maglev`` and ``random``), else None.

        Its compiled ``table`` is what an extension looks servers up in at C level (``_ring.pxd``);
        it changes when servers do, so fetch it again after a change.
        """
        return self._algorithm.current_ring()

    # --- shared by the algorithms ---

    def available(self, slot: ServerSlot) -> bool:
        """Whether a new connection may go to the server now: under its maxconn, nobody queued for it."""
        maxconn = slot.maxconn
        return not maxconn or (not slot.queued and slot.current < self._dynamic_maxconn(slot, maxconn))

    def has_room(self, slot: ServerSlot) -> bool:
        """Whether the server has a free connection slot (for a connection waiting in a queue)."""
        maxconn = slot.maxconn
        return not maxconn or slot.current < self._dynamic_maxconn(slot, maxconn)

    def in_pool(self, slot: ServerSlot) -> bool:
        """Whether picks may choose the server now (so it may serve the backend's queue)."""
        return slot.index in self._cumulative

    def _dynamic_maxconn(self, slot: ServerSlot, maxconn: int) -> int:
        """HAProxy's srv_dynamic_maxconn(): from minconn up to maxconn as the backend's load (its
        connections in flight and waiting) goes up to fullconn."""
        minconn, fullconn = slot.minconn, self.fullconn
        if slot.ramp is not None:  # HAProxy ramps the maxconn of a starting server too
            maxconn = max(1, int(maxconn * slot.ramp))
            minconn = min(minconn, maxconn)
        load = self.in_flight + self.queued
        if not minconn or not fullconn or load >= fullconn:
            return maxconn
        return max(minconn, load * maxconn // fullconn)

    def within_bound(self, slot: ServerSlot) -> bool:
        """Whether the server is under its share of the in-flight connections (hash-balance-factor)."""
        if not self.balance_factor:
            return True
        return ring_module.bounded_eligible(slot.current, slot.weight, self._cumulative[slot.index],
                                             self._pool_weight, self.in_flight, self.balance_factor)

    def first_fit(self, candidates: Iterable[ServerSlot], avoid: AbstractSet[int],
                  bounded: bool = False, full_too: bool = False) -> ServerSlot | None:
        """The first candidate that is not full (or any, with ``full_too``) and under its bound, the
        avoided ones last."""
        avoided = None
        for slot in candidates:
            if (not full_too and not self.available(slot)) or (bounded and not self.within_bound(slot)):
                continue
            if slot.index in avoid:
                avoided = avoided or slot
                continue
            return slot
        return avoided

    @contextlib.contextmanager
    def batch(self) -> Iterator[None]:
        """Many changes, one rebuild: inside, changes are only recorded; on leaving, the algorithm
        sees them all at once (a hash ring is rebuilt once, not once per server), then the pool, then
        ``on_change``.  Picks made inside see the state from before (the fleet applies a burst of
        etcd changes in one batch)."""
        if self._batched is not None:  # nested: the outer batch applies
            yield
            return
        self._batched = {}
        try:
            yield
        finally:
            changed, self._batched = self._batched, None
            if changed:
                self._algorithm.servers_changed(list(changed.values()))
                self.rebuilds += 1
                self._refresh()
                for callback in self.on_change:
                    callback()

    def _changed(self, slot: ServerSlot) -> None:
        if self._batched is not None:
            self._batched[slot.index] = slot
            return
        self._algorithm.server_changed(slot)
        self.rebuilds += 1
        self._refresh()
        for callback in self.on_change:
            callback()

    def _refresh(self) -> None:
        """Recompute the pool: the usable active servers, else the usable backups (all of them with
        ``option allbackups``, else the first in id order)."""
        pool = [slot for slot in self.slots if slot.usable and not slot.backup]
        group = "active"
        if not pool:
            pool = [slot for slot in self._by_id if slot.usable and slot.backup]
            group = "backup"
            if pool and not self.all_backups:
                pool, group = pool[:1], "first-backup"
            else:
                pool.sort(key=lambda slot: slot.index)
        self.pool, self.pool_group = pool, group
        self._cumulative.clear()
        total = 0
        for slot in pool:
            self._cumulative[slot.index] = total
            total += slot.weight
        self._pool_weight = total
        self._algorithm.pool_changed()


def ring_names(servers: Sequence[tuple[str, str]]) -> list[str]:
    """The ring name of each ``(identity, server name)``: the identity, or, for servers sharing one,
    ``"<identity> <server name>"``, the same on every instance whatever the order."""
    shared = collections.Counter(identity for identity, _ in servers)
    return [identity if shared[identity] == 1 else f"{identity} {name}" for identity, name in servers]


def routing_digest(ring: Any, address_of: Callable[[str], tuple[str, int]]) -> int:
    """XXH64 of the ring's ``digest()`` (its table, by server identity) and of the address each of its
    servers is at, in table order: equal on two instances exactly when they send every key to the same
    address (with ``hash-key id``, the same ids at other addresses make the same ring, not the same
    routing)."""
    parts = [ring.digest().to_bytes(8, "little")]
    for identity in ring:
        host, port = address_of(identity)
        parts.append(f"{host} {port}\n".encode())
    return ring_module.xxh64(b"".join(parts))


def _check_hash_key(hash_key: str | None) -> None:
    if hash_key is not None and hash_key not in HASH_KEYS:
        raise ValueError(f"hash-key is one of {', '.join(HASH_KEYS)}, got {hash_key!r}")


def _static_algorithm(balance: model.Balance) -> bool:
    """HAProxy's static algorithms: weights are laid out once (no slowstart, no free weights)."""
    return balance.algorithm == "static-rr" or (balance.algorithm in HASHED
                                                 and balance.hash_type == "map-based")


# --- the algorithms -------------------------------------------------------------------------------

class _Algorithm:
    """One ``balance`` algorithm over ``balancer.pool``."""

    static = False  # HAProxy's static algorithms accept only weight 0 or the configured one at run time

    def __init__(self, balancer: Balancer) -> None:
        self.balancer = balancer

    def pick(self, key: PickKey, avoid: AbstractSet[int]) -> ServerSlot | None:
        raise NotImplementedError

    def server_changed(self, slot: ServerSlot) -> None:
        """A server's weight or state changed (the pool is recomputed next)."""

    def pool_changed(self) -> None:
        """``balancer.pool`` was recomputed."""

    def load_changed(self, slot: ServerSlot) -> None:
        """A connection to ``slot`` started or ended."""

    def slot_added(self, slot: ServerSlot) -> None:
        """A server was added (``add server``), in MAINT: room for its state."""

    def servers_changed(self, slots: list[ServerSlot]) -> None:
        """Several servers changed at once (``Balancer.batch``)."""
        for slot in slots:
            self.server_changed(slot)

    def current_ring(self) -> Any:
        return None

    def ring_slot(self, identity: str) -> ServerSlot:
        raise KeyError(identity)


class _RoundRobin(_Algorithm):
    """Smooth weighted round robin (nginx's): each pick adds every candidate's weight to its score
    and takes the highest, which then pays the total back; weights can change between picks."""

    def __init__(self, balancer: Balancer) -> None:
        super().__init__(balancer)
        self.scores = [0] * len(balancer.slots)

    def slot_added(self, slot: ServerSlot) -> None:
        self.scores.append(0)

    def pick(self, key: PickKey, avoid: AbstractSet[int]) -> ServerSlot | None:
        balancer, scores = self.balancer, self.scores
        best = avoided = None
        total = 0
        for slot in balancer.pool:
            if slot.maxconn and not balancer.available(slot):
                continue
            if slot.index in avoid:
                avoided = avoided or slot
                continue
            scores[slot.index] += slot.weight
            total += slot.weight
            if best is None or scores[slot.index] > scores[best.index]:
                best = slot
        if best is None:
            return avoided
        scores[best.index] -= total
        return best


class _StaticRoundRobin(_Algorithm):
    """HAProxy's map-based round robin: the pool laid out once in a map by weight, walked in turn."""

    static = True

    def __init__(self, balancer: Balancer) -> None:
        super().__init__(balancer)
        self.map: list[ServerSlot] = []
        self.position = 0

    def pool_changed(self) -> None:
        self.map = _server_map(self.balancer)
        if self.position >= len(self.map):
            self.position = 0

    def pick(self, key: PickKey, avoid: AbstractSet[int]) -> ServerSlot | None:
        length = len(self.map)
        if not length:
            return None
        avoided, avoided_next = None, 0
        index = self.position
        for _ in range(length):
            slot = self.map[index]
            index = index + 1 if index + 1 < length else 0
            if self.balancer.available(slot):
                if slot.index not in avoid:
                    self.position = index
                    return slot
                avoided, avoided_next = avoided or slot, index
        if avoided is not None:
            self.position = avoided_next
        return avoided


class _LeastConn(_Algorithm):
    """HAProxy's leastconn: the lowest ``(inflight + 1) * 256 / weight`` (0 when idle, queued
    connections counting as in flight); among equals, the one whose load changed longest ago, so that
    equal servers take turns.  A full server stays a candidate while its queue is under its
    ``maxqueue`` (the connection then waits in that queue), as HAProxy does."""

    def __init__(self, balancer: Balancer) -> None:
        super().__init__(balancer)
        self.clock = len(balancer.slots)
        self.moved = list(range(len(balancer.slots)))  # when each server last changed load

    def slot_added(self, slot: ServerSlot) -> None:
        self.clock += 1
        self.moved.append(self.clock)

    def load_changed(self, slot: ServerSlot) -> None:
        self.clock += 1
        self.moved[slot.index] = self.clock

    server_changed = load_changed  # requeued at the end of its equals, as HAProxy does

    def pick(self, key: PickKey, avoid: AbstractSet[int]) -> ServerSlot | None:
        balancer, moved = self.balancer, self.moved
        best = avoided = None
        best_rank: tuple[int, int] = (0, 0)
        for slot in balancer.pool:
            load = slot.current + slot.queued
            maxconn = slot.maxconn
            if maxconn and load >= balancer._dynamic_maxconn(slot, maxconn) + slot.server.maxqueue:
                continue
            if slot.index in avoid:
                avoided = avoided or slot
                continue
            rank = ((load + 1) * 256 // slot.weight if load else 0, moved[slot.index])
            if best is None or rank < best_rank:
                best, best_rank = slot, rank
        return best if best is not None else avoided


class _First(_Algorithm):
    """HAProxy's first: the lowest id with a free slot under its maxconn."""

    def pool_changed(self) -> None:
        self.order = sorted(self.balancer.pool, key=lambda slot: slot.id)

    def pick(self, key: PickKey, avoid: AbstractSet[int]) -> ServerSlot | None:
        return self.balancer.first_fit(self.order, avoid)


class _GroupRings:
    """The hash rings of the ring-based algorithms: one per server group (active, backup), each kept
    to its group's usable servers, so that a change rebuilds one ring, once.

    On a ketama ring a server of weight ``w`` has ``ceil(points_per_weight * w / g)`` points, ``g``
    being the greatest common divisor of the configured weights: equal weights of any size give every
    server ``points_per_weight`` points (160, as libketama), and weights keep their proportions.
    HAProxy gives 16 points per unit of weight, which leaves servers of weight 1 with shares up to
    twice their due; the points of a server do not depend on the others', so consistency is the same.

    A ring names servers by their identity (``Balancer.ring_identity``); ``owners`` maps each back.
    """

    def __init__(self, balancer: Balancer, algorithm: str) -> None:
        self.balancer = balancer
        self.algorithm = algorithm
        common = math.gcd(*(slot.server.weight for slot in balancer.slots)) or 1
        self.divisor = common * balancer.weight_scale
        self.members: dict[bool, dict[str, int]] = {}
        self.owners: dict[bool, dict[str, ServerSlot]] = {}
        for backup in (False, True):
            self.members[backup], self.owners[backup] = self.wanted(backup)
        self.rings = {
            backup: balancer.ring_class(members, algorithm, points_per_weight=1,
                                        table_size=balancer.table_size, seed=balancer.seed)
            for backup, members in self.members.items()
        }

    def ring_weight(self, weight: int) -> int:
        if self.algorithm == "maglev":
            return weight
        return -(-self.balancer.points_per_weight * weight // self.divisor)

    def wanted(self, backup: bool) -> tuple[dict[str, int], dict[str, ServerSlot]]:
        """The ring a group should have: its usable servers by identity, with their ring weights, and
        the server of each identity.  Servers sharing an identity (``hash-key addr`` and two ports of
        one host) are told apart by their names, the same on every instance."""
        balancer = self.balancer
        slots = [slot for slot in balancer.slots if slot.usable and slot.backup == backup]
        names = ring_names([(balancer.ring_identity(slot), slot.name) for slot in slots])
        return ({name: self.ring_weight(slot.weight) for name, slot in zip(names, slots)},
                dict(zip(names, slots)))

    def servers_changed(self, slots: list[ServerSlot]) -> None:
        """Several servers at once: each group's ring rebuilt once, from its members, and swapped in
        (``balancer.ring`` is read again by whoever is told of the change)."""
        balancer = self.balancer
        for backup in {slot.backup for slot in slots}:
            members, owners = self.wanted(backup)
            self.owners[backup] = owners
            if members != self.members[backup]:
                self.members[backup] = members
                self.rings[backup] = balancer.ring_class(members, self.algorithm, points_per_weight=1,
                                                         table_size=balancer.table_size, seed=balancer.seed)

    def server_changed(self, slot: ServerSlot) -> None:
        """One server: the ring changed in place where only that server's entry differs (the Python
        ring keeps the other servers' ketama points), else rebuilt."""
        backup = slot.backup
        members, owners = self.wanted(backup)
        current, ring = self.members[backup], self.rings[backup]
        self.owners[backup] = owners
        if members == current:
            return
        gone = [name for name in current if name not in members]
        changed = [name for name, weight in members.items() if current.get(name) != weight]
        if len(gone) + len(changed) == 1:
            for name in gone:
                ring.remove(name)
            for name in changed:
                ring.add(name, members[name])
            self.members[backup] = members
        else:
            self.servers_changed([slot])

    def current(self) -> Any:
        """The ring of the pool's group; None when the pool is the first backup alone (or empty)."""
        balancer = self.balancer
        if balancer.pool_group == "first-backup" or not balancer.pool:
            return None
        return self.rings[balancer.pool_group == "backup"]

    def ring_slot(self, identity: str) -> ServerSlot:
        return self.owners[self.balancer.pool_group == "backup"][identity]

    def pick(self, key: Any, avoid: AbstractSet[int]) -> ServerSlot | None:
        """The server for ``key`` (bytes, or an int for a random point): the first along its walk on
        the current ring that is under its bound, full or not, the avoided ones last."""
        balancer = self.balancer
        ring = self.current()
        if ring is None:
            return balancer.first_fit(balancer.pool, avoid, full_too=True)
        owners = self.owners[balancer.pool_group == "backup"]
        if not avoid and not balancer.balance_factor:
            return owners[ring.lookup(key)]
        return balancer.first_fit((owners[name] for name in ring.walk(key)), avoid,
                                  bounded=bool(balancer.balance_factor), full_too=True)


class _Random(_Algorithm):
    """HAProxy's random(<draws>): draws random points of the consistent ring and keeps the server with
    the fewest connections relative to weight (later draws win ties); None if that one is full, so
    that the connection waits in the backend's queue."""

    def __init__(self, balancer: Balancer) -> None:
        super().__init__(balancer)
        self.draws = balancer.backend.balance.draws or RANDOM_DRAWS
        self.rings = _GroupRings(balancer, "ketama")
        self.server_changed = self.rings.server_changed  # type: ignore[method-assign]
        self.servers_changed = self.rings.servers_changed  # type: ignore[method-assign]
        self.current_ring = self.rings.current  # type: ignore[method-assign]
        self.ring_slot = self.rings.ring_slot  # type: ignore[method-assign]

    def pick(self, key: PickKey, avoid: AbstractSet[int]) -> ServerSlot | None:
        balancer = self.balancer
        getrandbits = balancer.rng.getrandbits
        current: ServerSlot | None = None
        for _ in range(max(min(self.draws, len(balancer.pool)), 1)):
            previous = current
            current = self.rings.pick(getrandbits(64), avoid)
            if current is None:
                break
            if (previous is not None and previous is not current
                    and current.current * previous.weight > previous.current * current.weight):
                current = previous
        if current is not None and not balancer.available(current):
            return None
        return current


class _Hashed(_Algorithm):
    """``source`` and ``hash <sample>``: the sample's bytes hashed on the backend's ``hash-type``
    (``map-based``, ``consistent`` or ``maglev``), and round robin for a connection without them."""

    def __init__(self, balancer: Balancer) -> None:
        super().__init__(balancer)
        sample = hashed_sample(balancer.backend.balance)
        assert sample is not None
        self.sample = _sample(sample)
        self.fallback = _RoundRobin(balancer)
        self.slot_added = self.fallback.slot_added  # type: ignore[method-assign]

    def pick(self, key: PickKey, avoid: AbstractSet[int]) -> ServerSlot | None:
        data = self.sample(key)
        if data is None:
            return self.fallback.pick(key, avoid)
        return self.pick_hashed(data, avoid)

    def pick_hashed(self, data: bytes, avoid: AbstractSet[int]) -> ServerSlot | None:
        raise NotImplementedError


class _MapHash(_Hashed):
    """``hash-type map-based``: HAProxy's map, ``hash % total weight``; a server to avoid passes the
    connection to the next one in the map."""

    static = True

    def pool_changed(self) -> None:
        self.map = _server_map(self.balancer)

    def pick_hashed(self, data: bytes, avoid: AbstractSet[int]) -> ServerSlot | None:
        length = len(self.map)
        if not length:
            return None
        start = ring_module.xxh64(data, self.balancer.seed) % length
        if not avoid:
            return self.map[start]
        return self.balancer.first_fit((self.map[(start + k) % length] for k in range(length)), avoid,
                                       full_too=True)


class _RingHash(_Hashed):
    """``hash-type consistent`` (ketama) or ``maglev``: the sample looked up on the group's ring."""

    def __init__(self, balancer: Balancer) -> None:
        super().__init__(balancer)
        self.rings = _GroupRings(balancer, "maglev" if balancer.backend.balance.hash_type == "maglev"
                                 else "ketama")
        self.server_changed = self.rings.server_changed  # type: ignore[method-assign]
        self.servers_changed = self.rings.servers_changed  # type: ignore[method-assign]
        self.current_ring = self.rings.current  # type: ignore[method-assign]
        self.ring_slot = self.rings.ring_slot  # type: ignore[method-assign]

    def pick_hashed(self, data: bytes, avoid: AbstractSet[int]) -> ServerSlot | None:
        return self.rings.pick(data, avoid)


def _make_algorithm(balancer: Balancer) -> _Algorithm:
    algorithm = balancer.algorithm
    backend = balancer.backend
    if algorithm in HASHED:
        if backend.balance.hash_type == "map-based":
            return _MapHash(balancer)
        return _RingHash(balancer)
    simple = {"roundrobin": _RoundRobin, "static-rr": _StaticRoundRobin, "leastconn": _LeastConn,
              "first": _First, "random": _Random}
    return simple[algorithm](balancer)  # config.validate has checked the algorithm


# --- helpers --------------------------------------------------------------------------------------

def _server_ids(servers: list[model.Server]) -> list[int]:
    """HAProxy's server ids: the configured ones, and for the others the next id not taken, in
    declaration order, from 1."""
    taken = {server.id for server in servers if server.id is not None}
    ids, next_id = [], 1
    for server in servers:
        if server.id is not None:
            ids.append(server.id)
            continue
        while next_id in taken:
            next_id += 1
        taken.add(next_id)
        ids.append(next_id)
    return ids


def _server_map(balancer: Balancer) -> list[ServerSlot]:
    """HAProxy's recalc_server_map(): the pool laid out over ``total weight`` entries, each entry going
    to the server whose score (growing by its weight) is highest, declaration order breaking ties.
    Weights are divided by their greatest common divisor first, as HAProxy does."""
    pool = balancer.pool
    divisor = math.gcd(*(slot.server.weight for slot in balancer.slots)) or 1
    weights = [max(slot.weight // divisor, 1) for slot in pool]
    total = sum(weights)
    if total == 1 or len(pool) == 1:
        return list(pool) * total
    scores = [0] * len(pool)
    laid: list[ServerSlot] = []
    for _ in range(total):
        best, best_value = -1, 0
        for i, weight in enumerate(weights):
            scores[i] += weight
            value = (scores[i] + total) // total
            if best < 0 or value > best_value:
                best, best_value = i, value
        laid.append(pool[best])
        scores[best] -= total
    return laid


def hashed_sample(balance: model.Balance) -> model.Sample | None:
    """What a hashing algorithm hashes: ``src`` for ``source``, the sample of ``hash <sample>``."""
    if balance.algorithm == "source":
        return _SOURCE
    return balance.sample if balance.algorithm == "hash" else None


_SOURCE = model.Sample("src")


def _sample(sample: model.Sample) -> Callable[[PickKey], bytes | None]:
    """The bytes ``balance hash <sample>`` hashes for a connection (a sample ``config.validate`` has
    checked), None when it has none."""
    read = samples.reader(sample)
    kind = samples.type_of(sample)
    if kind == samples.IP:
        return lambda key: _address_bytes(read(key))
    if kind == samples.INT:
        return lambda key: value.to_bytes(8, "big") if (value := read(key)) else None
    return lambda key: value.encode("utf-8", "surrogateescape") if (value := read(key)) else None


_V4_MAPPED = b"\0" * 10 + b"\xff\xff"


def _address_bytes(address: str) -> bytes | None:
    """An IP address as HAProxy hashes it: 4 bytes for IPv4 (also when IPv4-mapped), 16 for IPv6."""
    if not address:
        return None
    try:
        if ":" in address:
            packed = socket.inet_pton(socket.AF_INET6, address.split("%", 1)[0])
            return packed[12:] if packed[:12] == _V4_MAPPED else packed
        return socket.inet_pton(socket.AF_INET, address)
    except OSError:
        return None
