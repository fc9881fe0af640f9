"""Server state, with one owner: administration times health into what traffic sees (HAProxy's
``server.c``).

A server has an administrative state (``AdminState``: READY, DRAIN, MAINT; set by ``disabled``, the
runtime API or ``Engine.set_server_state``) and a health (``health.ServerHealth``, moved by checks and
``observe layer4``).  ``ServerStates`` combines the two into the ``ServerState`` the balancer picks by
(MAINT wins, then DOWN, then DRAIN, else UP) and acts on every change as HAProxy does: it writes the
state-change lines (``Server be/s1 is DOWN, reason: ...``), cuts the sessions of a server marked down
(``on-marked-down shutdown-sessions``) or of the backups when an active server comes up
(``on-marked-up shutdown-backup-sessions``), and ramps a server that came back up over ``slowstart``.

Nothing else writes ``ServerRuntime.admin`` or calls ``Balancer.set_state``/``set_ramp``.  The health
monitor reports into ``health_changed``; the pump is reached through one callable (``cut_sessions``),
the logs through another (``write_log``), and time through an injected clock, so that every rule here
is tested without a socket or a sleep.
"""

from __future__ import annotations

import logging
import re
import socket
from typing import Any, Callable, Optional, Protocol

from . import _linux, logs, tcplog
from .c_integers import atoi, decimal, signed
from .balance import ServerState
from .runtime import AdminState, BackendRuntime, ServerRuntime

log = logging.getLogger("fastproxy")


class Clock(Protocol):
    """What the state machine needs of time: an asyncio loop is one."""

    def time(self) -> float: ...

    def call_later(self, delay: float, callback: Callable[..., Any], *args: Any) -> Any: ...


class HealthControl(Protocol):
    """What the state machine asks of the health monitor when an operator changes a server."""

    def pause(self, check: Any) -> None: ...

    def leave_maintenance(self, check: Any) -> None: ...

    def set_up(self, check: Any) -> None: ...

    def set_down(self, check: Any) -> None: ...

    def enable_checks(self, check: Any, enabled: bool) -> None: ...


def usable_counts(backend: BackendRuntime) -> tuple[int, int]:
    """Usable active and backup servers of a backend."""
    usable = [slot for slot in backend.balancer.slots if slot.usable]
    return sum(1 for slot in usable if not slot.backup), sum(1 for slot in usable if slot.backup)


class ServerStates:
    """The owner of every server's state in one running configuration."""

    def __init__(self, clock: Clock, health: HealthControl, *, cut_sessions: Callable[[int], None],
                 write_log: Optional[Callable[[BackendRuntime, int, str], None]] = None) -> None:
        self.clock = clock
        self.health = health
        self.cut_sessions = cut_sessions  # the pump's cut_server(counter block)
        self.write_log = write_log or state_log
        self.stopping = False
        self._ramps: dict[ServerRuntime, Any] = {}  # slowstarts under way -> their timer

    # --- what others tell it ---

    def set_state(self, server: ServerRuntime, state: "ServerState | str") -> None:
        """The runtime API's ``set server ... state``: ``MAINT`` (no traffic, checks stop), ``DRAIN``
        (no new connections, checks go on), ``UP`` (ready again: out of MAINT a checked server is up
        but checked at once, and down at its first failure, as HAProxy) or ``DOWN`` (down until a
        check or ``UP`` brings it back)."""
        if isinstance(state, str):
            state = ServerState(state.upper())
        server.admin_changed = True
        check = server.check
        was_up, admin = self.serving(server), server.admin
        if state is ServerState.MAINT:
            server.admin = AdminState.MAINT
            self.health.pause(check)
        elif state is ServerState.DRAIN:
            leaving_maintenance = server.admin is AdminState.MAINT
            server.admin = AdminState.DRAIN
            if leaving_maintenance:
                self.health.leave_maintenance(check)
        elif state is ServerState.UP:
            leaving_maintenance = server.admin is AdminState.MAINT
            server.admin = AdminState.READY
            if leaving_maintenance:
                self.health.leave_maintenance(check)
            else:
                self.health.set_up(check)
        else:
            if server.admin is AdminState.MAINT:
                self.health.leave_maintenance(check)
            server.admin = AdminState.READY
            self.health.set_down(check)
        self._apply(server, was_up, None, admin)

    def set_ready(self, server: ServerRuntime) -> None:
        """The runtime API's ``set server ... state ready``: out of DRAIN or MAINT, health as it is
        (out of MAINT a checked server starts up and is checked at once, as HAProxy does)."""
        if server.admin is AdminState.READY:
            return
        server.admin_changed = True
        was_up, admin = self.serving(server), server.admin
        leaving_maintenance = server.admin is AdminState.MAINT
        server.admin = AdminState.READY
        if leaving_maintenance:
            self.health.leave_maintenance(server.check)
        self._apply(server, was_up, None, admin)

    def set_health(self, server: ServerRuntime, health: str) -> None:
        """The runtime API's ``set server ... health``: ``up`` (checks count from the top again),
        ``stopping`` (up, but no new connections: HAProxy's NOLB) or ``down`` (until checks bring it
        back).  The administrative state stays as it is."""
        if health not in ("up", "stopping", "down"):
            raise ValueError(f"health is 'up', 'stopping' or 'down', got {health!r}")
        was_up = self.serving(server)
        counter = server.check.health
        counter.health = 0 if health == "down" else counter.top
        server.nolb = health == "stopping"
        self._apply(server, was_up, tcplog.FROM_CLI)

    def set_checks(self, server: ServerRuntime, enabled: bool) -> None:
        """The runtime API's ``enable|disable health``: checks of a server that has them stop or start
        again; its health stays as the last checks left it."""
        self.health.enable_checks(server.check, enabled)

    def health_changed(self, server: ServerRuntime, result: Any) -> None:
        """A check (or an observed error) took a server up or down (its counter has flipped), or
        into or out of NOLB (a conditional pass: an HTTP 404 with ``disable-on-404``)."""
        was_up = server.slot.state is ServerState.UP
        stopping = bool(getattr(server.check, "stopping", False))
        if stopping != server.nolb and server.check.health.up:
            server.nolb = stopping
        self._apply(server, was_up, result)

    def agent_reply(self, server: ServerRuntime, reply: Any) -> Optional[str]:
        """An agent's words (``health.AgentReply``), as tcpcheck_agent_expect_reply() applies them:
        the administrative state, then the weight, then the maxconn; the first warning, if any (its
        health word is the health monitor's, which reports the flip to ``health_changed``)."""
        warning = None
        if reply.admin == "drain":
            self.set_state(server, ServerState.DRAIN)
        elif reply.admin == "maint":
            self.set_state(server, ServerState.MAINT)
        elif reply.admin == "ready":
            self.set_ready(server)
        if reply.weight is not None:
            warning = change_weight(server, reply.weight)
        if reply.maxconn is not None:
            message = change_maxconn(server, reply.maxconn)
            warning = warning or message
        return warning.rstrip("\n") if warning else None

    def follow(self, server: ServerRuntime) -> None:
        """At start: a tracking server takes the state of the server it tracks (in maintenance when
        that one is ``disabled``), without a state-change line."""
        server.backend.balancer.set_state(server.slot.name, self.state_of(server))
        server.operational = self.operational(server)

    def stop(self) -> None:
        self.stopping = True
        for timer in self._ramps.values():
            timer.cancel()
        self._ramps.clear()

    # --- the rules ---

    @classmethod
    def healthy(cls, server: ServerRuntime) -> bool:
        """Its check and its agent (when it has one) both say up (HAProxy's check_notify_success());
        a tracking server is as healthy as the server it tracks."""
        if server.tracked is not None:
            return cls.healthy(server.tracked)
        return server.check.health.up and (server.agent is None or server.agent.health.up)

    @classmethod
    def serving(cls, server: ServerRuntime) -> bool:
        return cls.state_of(server) is ServerState.UP

    @classmethod
    def state_of(cls, server: ServerRuntime) -> ServerState:
        """Administration times health: what the balancer sees.  A tracking server follows the one it
        tracks into maintenance and drain too (HAProxy's inherited IMAINT and IDRAIN)."""
        inherited = cls.state_of(server.tracked) if server.tracked is not None else ServerState.UP
        if server.admin is AdminState.MAINT or inherited is ServerState.MAINT:
            return ServerState.MAINT
        if not cls.healthy(server):
            return ServerState.DOWN
        if server.admin is AdminState.DRAIN or server.nolb or inherited is ServerState.DRAIN:
            return ServerState.DRAIN
        return ServerState.UP

    @classmethod
    def operational(cls, server: ServerRuntime) -> str:
        """HAProxy's operational state (whatever the drain): STOPPED (down, or in maintenance),
        STOPPING (NOLB) or RUNNING."""
        state = cls.state_of(server)
        if state in (ServerState.MAINT, ServerState.DOWN):
            return "STOPPED"
        return "STOPPING" if server.nolb else "RUNNING"

    def _apply(self, server: ServerRuntime, was_up: bool, result: Any,
               admin: Optional[AdminState] = None) -> None:
        """Give the balancer the state, and act on a change: log it, cut sessions, start a ramp; then
        the same for the servers tracking this one (``track``), whose state follows.  ``admin``: the
        administrative state before an operator changed it."""
        self._apply_one(server, was_up, result, admin)
        for tracker in server.trackers:
            self._apply(tracker, tracker.slot.state is ServerState.UP, tcplog.Via(server.name))

    def _apply_one(self, server: ServerRuntime, was_up: bool, result: Any,
                   admin: Optional[AdminState]) -> None:
        state = self.state_of(server)
        backend, slot = server.backend, server.slot
        up = state is ServerState.UP
        if not up:
            self._end_ramp(server)
        previous, serving_before = slot.state, sum(usable_counts(backend))
        backend.balancer.set_state(slot.name, state)
        if state is not previous:
            self._book_change(server, state, serving_before)
        self._log_change(server, state, result, admin, serving_before)
        if up == was_up and state is not ServerState.MAINT:
            return
        config = slot.server
        if not up and state is not ServerState.DRAIN:
            if config.on_marked_down == "shutdown-sessions":
                self.cut_sessions(server.block)
        elif up and not was_up:
            if config.on_marked_up == "shutdown-backup-sessions" and not slot.backup:
                for other in backend.servers:
                    if other.slot.backup:
                        self.cut_sessions(other.block)
            if config.slowstart and backend.balancer.ramps and not self.stopping:
                self._ramp(server, self.clock.time())

    def _book_change(self, server: ServerRuntime, state: ServerState, serving_before: int) -> None:
        """Keep the times the stats show (HAProxy's last_change, down_time, down_trans): of the
        server, and of its backend when its last usable server left or the first came back."""
        now = self.clock.time()
        if server.stopped:
            server.down_time += now - server.last_change
        server.stopped = state in (ServerState.DOWN, ServerState.MAINT)
        server.last_change = now
        backend = server.backend
        serving = sum(usable_counts(backend))
        if serving_before and not serving:
            backend.went_down += 1
            backend.last_change = now
        elif serving and not serving_before:
            backend.down_time += now - backend.last_change
            backend.last_change = now

    def _ramp(self, server: ServerRuntime, started: float) -> None:
        """HAProxy's slowstart: the weight (and maxconn) of a server back up grows from one step to
        the full value over ``slowstart`` seconds, recomputed every max(1 s, slowstart / 20)."""
        self._ramps.pop(server, None)
        slowstart = server.slot.server.slowstart or 0.0
        elapsed = self.clock.time() - started
        share = elapsed / slowstart if slowstart else 1.0
        server.backend.balancer.set_ramp(server.slot.name, share if share < 1 else None)
        if share < 1:
            self._ramps[server] = self.clock.call_later(max(1.0, slowstart / 20), self._ramp, server, started)

    def _end_ramp(self, server: ServerRuntime) -> None:
        timer = self._ramps.pop(server, None)
        if timer is not None:
            timer.cancel()
        if server.slot.ramp is not None:
            server.backend.balancer.set_ramp(server.slot.name, None)

    def _log_change(self, server: ServerRuntime, state: ServerState, result: Any, admin: Optional[AdminState],
                    serving_before: int) -> None:
        """HAProxy's lines for a change: an administrative one (an operator's, whatever it did to the
        operational state), else one of the operational state (a check, ``set server ... health``,
        the server tracked), then "remains in forced drain mode" for a drained server."""
        backend, slot = server.backend, server.slot
        before, now = server.operational, self.operational(server)
        server.operational = now
        active, backups = usable_counts(backend)
        if admin is not None and admin is not server.admin:
            running = before == "RUNNING" and admin is AdminState.READY  # HAProxy alerts only then
            severity = logs.ALERT if server.admin is AdminState.MAINT and running else logs.NOTICE
            for line in tcplog.admin_messages(
                    backend.name, slot.name, backup=slot.backup, before=admin.value, after=server.admin.value,
                    was_stopped=before == "STOPPED", stopped=now == "STOPPED", active=active, backups=backups,
                    sessions=slot.current, queued=slot.queued, waiting=backend.queues.waiting):
                self.write_log(backend, severity, line)
            if serving_before and not active and not backups:
                self.write_log(backend, logs.EMERG, tcplog.no_server_message(backend.name))
            return
        if now == before:
            return
        if now == "STOPPED":
            maintenance = state is ServerState.MAINT  # a tracking server, into its server's maintenance
            # An alert for a server that was running and not drained, a notice otherwise (haproxy 2.6).
            stopping = maintenance or before == "STOPPING" or server.admin is AdminState.DRAIN
            self.write_log(backend, logs.NOTICE if stopping else logs.ALERT, tcplog.server_down_message(
                backend.name, slot.name, backup=slot.backup, maintenance=maintenance, result=result,
                active=active, backups=backups, sessions=slot.current, queued=slot.queued))
        elif now == "STOPPING":
            self.write_log(backend, logs.NOTICE, tcplog.server_stopping_message(
                backend.name, slot.name, backup=slot.backup, result=result, active=active, backups=backups,
                queued=backend.queues.waiting))
        else:
            self.write_log(backend, logs.NOTICE, tcplog.server_up_message(
                backend.name, slot.name, backup=slot.backup, result=result, active=active, backups=backups,
                queued=backend.queues.waiting))
        if now != "RUNNING" and not active and not backups:
            self.write_log(backend, logs.EMERG, tcplog.no_server_message(backend.name))
        if server.admin is AdminState.DRAIN:
            self.write_log(backend, logs.NOTICE, tcplog.drain_remains_message(backend.name, slot.name,
                                                                              backup=slot.backup))


def change_address(server: ServerRuntime, addr: str, port: Optional[str]) -> str:
    """server.c's srv_update_addr_port(): the server's new address (and port), HAProxy's report of
    what changed.  New connections go there at once, lanes' included; a check without an ``addr`` or
    ``port`` of its own follows the server, as HAProxy's."""
    host, current_port = server.address[0], server.address[1]
    new_host, new_port, family = host, current_port, server.family
    changed = False
    try:
        packed = socket.inet_pton(socket.AF_INET6 if ":" in addr else socket.AF_INET, addr)
    except OSError:
        return f"Invalid addr '{addr}' by 'stats socket command'\n"
    new_family = socket.AF_INET6 if ":" in addr else socket.AF_INET
    current = socket.inet_pton(server.family, host)
    if (new_family, packed) == (server.family, current):
        message = "no need to change the addr"
    else:
        new_host, family, changed = addr, new_family, True
        message = f"IP changed from '{host}' to '{addr}'"
    if port is not None:
        message += ", "
        match = re.fullmatch(r"[-+]?[0-9]+", port)
        if not match or decimal(port.lstrip("+-")) > 65535:
            message += f"problem converting port '{port}' to an int"
        elif port[0] in "+-":
            if not server.slot.server.check_port:
                message += ("can't change <port> to port map because it is incompatible with current "
                            "health check port configuration (use 'port' statement from the 'server' "
                            "directive.")
            else:  # fastproxy refuses port offsets in the file too: routing would differ
                message += "port offsets are not supported by fastproxy"
        elif decimal(port) != current_port:
            message += f"port changed from '{current_port}' to '{decimal(port)}'"
            new_port, changed = decimal(port), True
        else:
            message += "no need to change the port"
    if changed:
        server.family, server.address = family, (new_host, new_port)
        server.raw_address = _linux.sockaddr(server.address)
        server.check.family, server.check.address = server.check_target()
        server.backend.balancer.set_address(server.slot.name, new_host, new_port)  # hash-key addr moves
        for moved in server.backend.servers_moved:
            moved()
    return message + " by 'stats socket command'\n"


def change_weight(server: ServerRuntime, text: str) -> Optional[str]:
    """server.c's server_parse_weight_change_request(): None, or HAProxy's message (two of which end
    without a newline, as HAProxy writes them).  ``set weight``, ``set server ... weight`` and agents."""
    if not text:
        return "Require <weight> or <weight%>.\n"
    match = re.match(r"\s*([-+]?[0-9]+)", text)
    if not match:
        return "Empty weight string empty or preceded by garbage"
    weight, end = signed(match[1]), text[match.end():]
    initial = server.slot.server.weight
    if end == "%":
        if weight < 0:
            return "Relative weight must be positive.\n"
        weight = min(initial * min(weight, 25600) // 100, 256)
    elif weight < 0 or weight > 256:
        return "Absolute weight can only be between 0 and 256 inclusive.\n"
    elif end:
        return "Trailing garbage in weight string"
    try:
        server.backend.balancer.set_weight(server.slot.name, weight)
    except ValueError as exc:
        return f"{exc}\n"
    return None


def change_maxconn(server: ServerRuntime, text: str) -> Optional[str]:
    """server.c's server_parse_maxconn_change_request() (an agent's ``maxconn:<n>``)."""
    match = re.match(r"\s*([-+]?[0-9]+)", text)
    if not match:
        return "maxconn string empty"
    if text[match.end():]:
        return "Trailing garbage in maxconn string"
    slot = server.slot
    if slot.maxconn == slot.minconn:
        slot.minconn = atoi(match[1])
    slot.maxconn = atoi(match[1])
    return None


def state_log(backend: BackendRuntime, severity: int, message: str) -> None:
    """A server state change: on stderr as HAProxy's warnings, and to the backend's ``log`` targets
    at HAProxy's levels (alert when a server goes down, emerg when none is left)."""
    if severity <= logs.ALERT:
        log.error("%s", message)
    else:
        log.warning("%s", message)
    backend.write_log(severity, message)
