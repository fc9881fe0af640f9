"""What the operator's interfaces act on: the running configuration, the owners of its state, and the
statistics' memory (``Operations``), shared by the runtime API (``runtime_commands``) and the stats
listener (``stats_http``) so that neither imports the other.

The pump keeps counts, never rates nor maxima: ``Operations.sample`` reads every row's counts once a
second (``start_sampling``, run by the engine whenever a stats socket or a stats listener is
configured) for ``stats.Sampler`` (``smax``, the rates) and for ``History``, the last minutes of each
frontend's and backend's sessions and bytes that the stats page draws.  A few dozen counter reads a
second, nothing per connection.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Optional

from . import __version__, stats
from .c_integers import decimal
from .pump import Counter
from .runtime import Runtime, ServerRuntime
from .servers import ServerStates
from .sticktables import StickTable

if TYPE_CHECKING:  # pragma: no cover
    from . import promex

log = logging.getLogger("fastproxy")

HISTORY_SECONDS = 300  # what the page's charts show: the last five minutes, one point a second


class History:
    """The last ``seconds`` readings of every frontend and backend: (time, current sessions, bytes in,
    bytes out), oldest first, bounded in memory whatever runs.  Keys are ``("fe", name)`` and
    ``("be", name)``, as ``stats.Sampler``'s."""

    def __init__(self, seconds: int = HISTORY_SECONDS) -> None:
        self.seconds = seconds
        self.points: dict[tuple[str, str], collections.deque[tuple[float, int, int, int]]] = {}

    def add(self, now: float, key: tuple[str, str], current: int, bytes_in: int, bytes_out: int) -> None:
        points = self.points.get(key)
        if points is None:
            points = self.points[key] = collections.deque(maxlen=self.seconds)
        points.append((now, current, bytes_in, bytes_out))

    def series(self, key: tuple[str, str]) -> list[tuple[float, int, int, int]]:
        return list(self.points.get(key, ()))


@dataclass
class Operations:
    """What the commands and the page act on: the running configuration and the owners of its state."""

    state: Runtime
    servers: ServerStates
    pump: Any
    version: str = __version__  # the package's, without importlib.metadata (60 ms of a worker's start)
    started: float = 0.0  # event loop time at start
    started_wall: float = field(default_factory=time.time)
    sampler: stats.Sampler = field(default_factory=stats.Sampler)
    history: History = field(default_factory=History)
    cleared: dict[int, tuple[int, ...]] = field(default_factory=dict)  # ``clear counters all``
    proxies: list[stats.Proxy] = field(default_factory=list)
    pairs: dict[int, Any] = field(default_factory=dict)  # Python's sessions in the pump, by tag
    cli_sessions: dict[int, Any] = field(default_factory=dict)  # the runtime API's, by ident (show sess)
    admission: Any = None  # limits.AdmissionControl: told when a maxconn changes
    add_server: Any = None  # the engine's: (backend runtime, model.Server) -> ServerRuntime
    delete_server: Any = None  # the engine's: (ServerRuntime) -> None
    # The ``add server`` requests of the servers added at run time and not deleted, by
    # ``<backend>/<server>``: a reload's new worker adds them again (``_addedservers``, master.py).
    added_servers: dict[str, list[str]] = field(default_factory=dict)
    fleet: Any = None  # fleet.Fleet, when backends take their servers from etcd (show fleet)
    pairs_from: Any = None  # handover.PairReceiver of a reload's new worker: its routes sent on _prepared
    prepared: Optional[Callable[[], None]] = None  # a reload's new worker: accepts on _prepared (service.py)

    def __post_init__(self) -> None:
        if not self.proxies:
            self.proxies = stats.number_proxies(self.state)
        if not self.started:
            self.started = self.now()
        self._ticker: Optional[asyncio.TimerHandle] = None

    def now(self) -> float:
        return self.state.loop.time()

    def stats_view(self, *, show_addresses: bool) -> stats.StatsView:
        return stats.StatsView(self.state, self.pump.counters, self.now(), show_addresses=show_addresses,
                               sampler=self.sampler, cleared=self.cleared, times=self.pump.times)

    def info(self) -> dict[str, stats.Value]:
        """``show info``'s values now."""
        state = self.state
        listeners = len(state.listeners()) + len(state.config.global_.stats_sockets)
        return stats.info(state, self.pump.counters, version=self.version, started=self.started,
                          started_wall=self.started_wall, now=self.now(), listeners=listeners,
                          threads=self.pump.threads, pipes_in_use=getattr(self.pump, "pipes_in_use", 0),
                          sampler=self.sampler)

    def tables(self) -> list[StickTable]:
        """The stick tables as HAProxy lists them (``show table``, the exporter): the last declared first."""
        return list(reversed(list(self.state.tables.values())))

    def metrics(self, **options: Any) -> bytes:
        """The Prometheus exposition now (``promex.exposition``, options ``scopes`` and ``no_maint``):
        show info's values, every row of show stat and the stick tables, read at this moment."""
        from . import promex  # prometheus_client: loaded by the first scrape, not by a worker's start

        rows = stats.rows(self.stats_view(show_addresses=True), self.proxies)
        return promex.exposition(self.info(), rows, tables=self.tables(), rings=self.ring_tables(),
                                 fleet=self.fleet.status() if self.fleet is not None else None, **options)

    def ring_tables(self) -> list[promex.RingTable]:
        """Each backend hashing on a ring, its table now (``show fleet``, the exporter): instances that
        route every key alike show the same digest (``balance.routing_digest``)."""
        from . import promex

        found = []
        for proxy in self.proxies:
            if proxy.backend is None:
                continue
            balancer = proxy.backend.balancer
            ring, digest = balancer.ring, balancer.table_digest()
            if ring is not None and digest is not None:
                found.append(promex.RingTable(proxy.backend.name, ring.algorithm, len(ring), digest))
        return found

    def sample(self) -> None:
        """Read every row's counts for the rates, the maxima and the page's history."""
        now = self.now()
        counts = self.pump.counters
        self.sampler.take(now, stats.readings(self.state, counts))
        for frontend in self.state.frontends.values():
            c = counts(frontend.block)
            self.history.add(now, ("fe", frontend.name), c[Counter.CONN_CUR], c[Counter.BYTES_IN],
                             c[Counter.BYTES_OUT])
        for backend in self.state.backends.values():
            per_server = [counts(server.block) for server in backend.servers]
            self.history.add(now, ("be", backend.name), sum(c[Counter.CONN_CUR] for c in per_server),
                             sum(c[Counter.BYTES_IN] for c in per_server),
                             sum(c[Counter.BYTES_OUT] for c in per_server))

    def start_sampling(self) -> None:
        """Sample now and then every second until ``stop_sampling``."""
        if self._ticker is None:
            self._tick()

    def _tick(self) -> None:
        try:
            self.sample()
        except Exception:  # a bug here must not stop the ticks, nor the proxy
            log.exception("stats: sampling the counters failed")
        self._ticker = self.state.loop.call_later(1.0, self._tick)

    def stop_sampling(self) -> None:
        if self._ticker is not None:
            self._ticker.cancel()
            self._ticker = None

    def set_admin(self, server: ServerRuntime, state: str) -> None:
        """``UP`` (ready), ``DRAIN`` or ``MAINT``: what ``set server ... state`` and the page's actions
        set, the health left as it is."""
        if state == "UP":
            self.servers.set_ready(server)
        else:
            self.servers.set_state(server, state)

    def page_action(self, server: ServerRuntime, action: str) -> bool:
        """One action of the stats page's admin form on one server (``stats_page.ACTIONS``), through
        the same owners as the runtime API's commands; False where it does not apply (checks on a
        server without them, agent actions: fastproxy runs no agent checks), as stats.c counts them."""
        if action in ("ready", "drain", "maint"):
            self.set_admin(server, {"ready": "UP", "drain": "DRAIN", "maint": "MAINT"}[action])
        elif action in ("dhlth", "ehlth"):
            if not server.slot.server.check:
                return False
            self.servers.set_checks(server, action == "ehlth")
        elif action in ("hrunn", "hnolb", "hdown"):
            self.servers.set_health(server, {"hrunn": "up", "hnolb": "stopping", "hdown": "down"}[action])
        elif action == "shutdown":
            self.pump.cut_server(server.block)
        else:
            return False
        return True

    def proxy(self, name: str) -> Optional[stats.Proxy]:
        return next((proxy for proxy in self.proxies if proxy.name == name), None)

    def backend_proxy(self, name: str) -> Optional[stats.Proxy]:
        """A backend by name, or by ``#<id>`` as HAProxy's proxy_be_by_name() also takes it."""
        if name.startswith("#") and name[1:].isdigit():
            return next((proxy for proxy in self.proxies if proxy.uuid == decimal(name[1:])
                         and proxy.backend is not None), None)
        return next((proxy for proxy in self.proxies if proxy.name == name and proxy.backend is not None),
                    None)

