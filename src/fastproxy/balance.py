"""Server selection for one backend: HAProxy's ``balance`` algorithms over the backend's servers.

A ``Balancer`` holds the runtime view of a backend's servers (``ServerSlot``: effective weight, state,
connections in flight) and picks one per new connection.  It is sans-IO: the engine tells it when a
connection to a server starts and ends, and asks it for a pick with a ``PickKey`` describing the client.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Iterable, Optional

from .config import model


class ServerState(enum.Enum):
    UP = "UP"
    DOWN = "DOWN"
    DRAIN = "DRAIN"  # no new connections, existing ones continue
    MAINT = "MAINT"  # checks stop, no traffic


@dataclass
class ServerSlot:
    """One server of a backend as the balancer sees it at run time."""

    server: model.Server
    index: int
    weight: int
    state: ServerState = ServerState.UP
    current: int = 0  # connections in flight
    total: int = 0

    @property
    def name(self) -> str:
        return self.server.name

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
    sni: Optional[str] = None


class Balancer:
    """Smooth weighted round robin for now; the other algorithms come with the balancing issue."""

    def __init__(self, backend: model.Backend) -> None:
        self.backend = backend
        self.slots: list[ServerSlot] = [
            ServerSlot(server=s, index=i, weight=s.weight,
                       state=ServerState.MAINT if s.disabled else ServerState.UP)
            for i, s in enumerate(backend.servers)
        ]
        self._current_weights = [0] * len(self.slots)

    def slot(self, name: str) -> ServerSlot:
        for slot in self.slots:
            if slot.name == name:
                return slot
        raise KeyError(name)

    def pick(self, key: PickKey = PickKey(), exclude: Iterable[int] = ()) -> Optional[ServerSlot]:
        """The server for a new connection, or None when none can take it."""
        excluded = set(exclude)
        best: Optional[ServerSlot] = None
        total = 0
        for slot in self.slots:
            if not slot.usable or slot.index in excluded:
                continue
            self._current_weights[slot.index] += slot.weight
            total += slot.weight
            if best is None or self._current_weights[slot.index] > self._current_weights[best.index]:
                best = slot
        if best is not None:
            self._current_weights[best.index] -= total
        return best

    def connection_started(self, slot: ServerSlot) -> None:
        slot.current += 1
        slot.total += 1

    def connection_ended(self, slot: ServerSlot) -> None:
        slot.current -= 1

    def set_weight(self, name: str, weight: int) -> None:
        self.slot(name).weight = weight

    def set_state(self, name: str, state: ServerState) -> None:
        self.slot(name).state = state
