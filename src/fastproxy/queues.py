"""Connections waiting for a server slot: HAProxy's queues (``queue.c``), sans-IO.

A backend has one queue per server and one of its own.  A connection whose server was chosen for it
(a hashing algorithm, a director, ``leastconn`` under ``maxqueue``) and is full waits in that server's
queue; a connection that found every server full waits in the backend's queue.  When a server has a
free slot it takes the first connection of its own queue and of the backend's queue, the latter only
while picks may choose the server (HAProxy's ``process_srv_queue()`` / ``pendconn_grab_from_px()``).
First means, as in HAProxy 2.6, the lowest priority class (``set-priority-class``), then the earliest
arrival shifted by the priority offset (``set-priority-offset``, in milliseconds), then arrival.

``Queues`` only keeps the order and the counts (the lengths feed the balancer: a server with a queue is
full, and queued connections count in the backend load of ``minconn``/``fullconn``); the engine owns
the connections, their timers and what happens to them.
"""

from __future__ import annotations

import heapq
import itertools
from typing import Any, Iterator, Optional

from .balance import Balancer, ServerSlot


class Pending:
    """One connection waiting in a queue."""

    __slots__ = ("item", "order", "slot", "waiting", "timer")

    def __init__(self, item: Any, order: tuple[int, int, int], slot: Optional[ServerSlot]) -> None:
        self.item = item  # what waits (the engine's session)
        # (priority class, arrival time shifted by the priority offset, arrival order) across the
        # backend's queues: the lowest is served first
        self.order = order
        self.slot = slot  # the server whose queue it is in, None for the backend's queue
        self.waiting = True
        self.timer: Any = None  # the owner's (``timeout queue``)

    def __lt__(self, other: "Pending") -> bool:
        return self.order < other.order


class _Queue:
    """One queue in priority order (a heap); entries that left early (expired) are dropped when they
    reach the head."""

    __slots__ = ("entries", "length", "max", "expired")

    def __init__(self) -> None:
        self.entries: list[Pending] = []
        self.length = 0
        self.max = 0  # the longest it has been (HAProxy's qmax)
        self.expired = 0  # connections that waited longer than ``timeout queue``

    def head(self) -> Optional[Pending]:
        entries = self.entries
        while entries and not entries[0].waiting:
            heapq.heappop(entries)
        return entries[0] if entries else None


class Queues:
    """The queues of one backend, over its balancer's servers."""

    def __init__(self, balancer: Balancer) -> None:
        self.balancer = balancer
        self.backend = _Queue()
        self.servers = [_Queue() for _ in balancer.slots]
        self._order = itertools.count()

    @property
    def waiting(self) -> int:
        """Connections waiting in any queue of the backend."""
        return self.balancer.queued

    def server_added(self) -> None:
        """A server was added at the end of the balancer's: its queue."""
        self.servers.append(_Queue())

    def queue_of(self, slot: Optional[ServerSlot]) -> _Queue:
        return self.backend if slot is None else self.servers[slot.index]

    def length(self, slot: Optional[ServerSlot] = None) -> int:
        """How many wait in ``slot``'s queue (the backend's queue for None)."""
        return self.queue_of(slot).length

    def add(self, item: Any, slot: Optional[ServerSlot] = None,
            priority: tuple[int, int] = (0, 0)) -> Pending:
        """Queue ``item`` on ``slot``'s queue, or on the backend's for None (no check of maxqueue);
        ``priority``: its class and its arrival time in milliseconds shifted by its offset (the same
        for all: arrival order)."""
        pending = Pending(item, (*priority, next(self._order)), slot)
        queue = self.queue_of(slot)
        heapq.heappush(queue.entries, pending)
        queue.length += 1
        queue.max = max(queue.max, queue.length)
        if slot is not None:
            slot.queued += 1
        self.balancer.queued += 1
        return pending

    def remove(self, pending: Pending, *, expired: bool = False) -> None:
        """Take ``pending`` out of its queue (it leaves early: expired, or given back)."""
        if not pending.waiting:
            return
        pending.waiting = False
        queue = self.queue_of(pending.slot)
        queue.length -= 1
        if expired:
            queue.expired += 1
        if pending.slot is not None:
            pending.slot.queued -= 1
        self.balancer.queued -= 1

    def next_for(self, slot: ServerSlot) -> Optional[Pending]:
        """The connection ``slot`` should serve now, taken out of its queue: the older of the heads of
        its own queue and of the backend's (only while picks may choose it); None when it has no free
        slot, is not usable, or nobody waits for it."""
        balancer = self.balancer
        if not balancer.queued or not slot.usable or not balancer.has_room(slot):
            return None
        own = self.servers[slot.index].head() if slot.queued else None
        shared = self.backend.head() if self.backend.length and balancer.in_pool(slot) else None
        chosen = own if shared is None or (own is not None and own.order < shared.order) else shared
        if chosen is not None:
            self.remove(chosen)
        return chosen

    def take_all(self, slot: ServerSlot) -> list[Pending]:
        """Every connection waiting in ``slot``'s queue, taken out, in their order (a redispatch)."""
        queue = self.servers[slot.index]
        taken = sorted(pending for pending in queue.entries if pending.waiting)
        for pending in taken:
            self.remove(pending)
        queue.entries.clear()
        return taken

    def __iter__(self) -> Iterator[Pending]:
        """Every waiting connection, in no particular order."""
        for queue in (self.backend, *self.servers):
            for pending in queue.entries:
                if pending.waiting:
                    yield pending
