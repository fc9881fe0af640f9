"""Server health, as HAProxy's checks: active probes, passive observation, and the state they give.

A server with ``check`` is probed every ``inter``: a connect to its check address (``addr`` and
``port`` when set), or with ``option tcp-check`` its backend's sequence of ``tcp-check connect``,
``send`` and ``expect`` rules.  Each probe ends with one of HAProxy's statuses (``L4OK``, ``L4TOUT``,
``L4CON``, ``L7OK``, ``L7TOUT``, ``L7RSP``...) and its duration.  The results move HAProxy's health
counter (``ServerHealth``): ``rise`` passes in a row bring a server up, ``fall`` failures take it
down; ``fastinter`` paces the probes while the counter moves, ``downinter`` while the server is down.

``observe layer4`` watches the proxied traffic too: ``error-limit`` failed connects in a row to a
server trigger its ``on-error`` action (``fastinter``, ``fail-check``, ``sudden-death``,
``mark-down``).  A success in between (counted by the pump, no Python per connection) starts over.

The parts: ``ServerHealth`` is the counter alone (sans-IO); ``run_check`` runs one probe on the event
loop; ``HealthMonitor`` schedules the probes of an engine, spread in time as HAProxy's start_checks()
and ``spread-checks`` do, and tells the engine when a server goes up or down.  Probes never touch the
pump: traffic is never blocked by them.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import re
import socket
from dataclasses import dataclass
from typing import Any, Callable, Optional, Sequence

from . import _linux
from .config.model import Server, TcpCheckRule

log = logging.getLogger("fastproxy")

# HAProxy's check statuses and their descriptions (check.c's check_statuses).
STATUSES = {
    "L4OK": "Layer4 check passed",
    "L4TOUT": "Layer4 timeout",
    "L4CON": "Layer4 connection problem",
    "L6OK": "Layer6 check passed",
    "L6TOUT": "Layer6 timeout",
    "L6RSP": "Layer6 invalid response",
    "L7OK": "Layer7 check passed",
    "L7OKC": "Layer7 check conditionally passed",
    "L7TOUT": "Layer7 timeout",
    "L7RSP": "Layer7 invalid response",
    "L7STS": "Layer7 wrong status",
    "SOCKERR": "Socket error",
    "HANA": "Health analyze",
}
PASSING = frozenset({"L4OK", "L6OK", "L7OK", "L7OKC"})
READ_BUFFER = 16384  # what HAProxy reads at most per expect (tune.bufsize): a full buffer is final
_IMPLICIT_CONNECT = TcpCheckRule("connect")


@dataclass
class CheckResult:
    """How one probe ended: a status of ``STATUSES``, detail, and how long it took (seconds)."""

    status: str
    info: str = ""
    duration: float = 0.0

    @property
    def passed(self) -> bool:
        return self.status in PASSING

    @property
    def description(self) -> str:
        return STATUSES.get(self.status, self.status)


class ServerHealth:
    """HAProxy's health counter of one server, from 0 to ``rise + fall - 1``: up from ``rise`` on.

    It starts at ``rise`` as HAProxy's does: a server is up at start, but down at its first failure.
    """

    def __init__(self, rise: int, fall: int, inter: float, fastinter: Optional[float] = None,
                 downinter: Optional[float] = None) -> None:
        self.rise, self.fall = rise, fall
        self.inter, self.fastinter, self.downinter = inter, fastinter, downinter
        self.health = rise

    @property
    def top(self) -> int:
        return self.rise + self.fall - 1

    @property
    def up(self) -> bool:
        return self.health >= self.rise

    def passed(self) -> bool:
        """Count a passed check; True if the server just came up."""
        was_up = self.up
        if self.health < self.top:
            self.health += 1
            if self.health >= self.rise:
                self.health = self.top
        return self.up and not was_up

    def failed(self) -> bool:
        """Count a failed check; True if the server just went down."""
        was_up = self.up
        if self.health > 0:
            self.health -= 1
            if self.health < self.rise:
                self.health = 0
        return was_up and not self.up

    def interval(self) -> float:
        """The delay to the next check (HAProxy's srv_getinter())."""
        if self.health == self.top:
            return self.inter
        if self.health == 0:
            return self.downinter or self.inter
        return self.fastinter or self.inter

    def describe(self) -> str:
        """HAProxy's ``x/y UP`` / ``x/y DOWN`` of the stats page."""
        if self.up:
            return f"{self.health - self.rise + 1}/{self.fall} UP"
        return f"{self.health}/{self.rise} DOWN"


# --- one probe ---------------------------------------------------------------------------------------

async def run_check(family: int, address: tuple, rules: Sequence[TcpCheckRule], *,
                    connect_timeout: Optional[float], read_timeout: Optional[float],
                    total_timeout: Optional[float]) -> CheckResult:
    """Run one check against ``address``: the rules in order (an implicit connect first when the
    first rule is not one; no rules is a connect alone).  ``connect_timeout`` bounds each connect,
    ``read_timeout`` what follows a connect, ``total_timeout`` the whole probe (HAProxy's ``inter``
    when ``timeout check`` is unset).  Never raises for what the server does."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    probe = _Probe(family, address, rules, connect_timeout, read_timeout)
    try:
        if total_timeout:
            result = await asyncio.wait_for(probe.run(), total_timeout)
        else:
            result = await probe.run()
    except asyncio.TimeoutError:
        result = CheckResult("L7TOUT" if probe.connected else "L4TOUT",
                             probe.timeout_info() if probe.connected else "")
    except OSError as exc:  # a local failure: socket(), descriptors
        result = CheckResult("SOCKERR", exc.strerror or str(exc))
    finally:
        probe.close()
    result.duration = loop.time() - started
    return result


class _Probe:
    def __init__(self, family: int, address: tuple, rules: Sequence[TcpCheckRule],
                 connect_timeout: Optional[float], read_timeout: Optional[float]) -> None:
        self.family, self.address = family, address
        rules = list(rules) or [_IMPLICIT_CONNECT]
        if rules[0].action != "connect":
            rules.insert(0, _IMPLICIT_CONNECT)
        self.rules = rules
        self.connect_timeout, self.read_timeout = connect_timeout, read_timeout
        self.sock: Optional[socket.socket] = None
        self.linger = False
        self.connected = False
        self.buffer = bytearray()
        self.closed = False  # the server ended its side (or failed): no more data will come
        self.deadline: Optional[float] = None
        self.step = 0
        self.expecting: Optional[TcpCheckRule] = None

    async def run(self) -> CheckResult:
        loop = asyncio.get_running_loop()
        last = self.rules[-1]
        for self.step, rule in enumerate(self.rules, 1):
            if rule.action == "connect":
                failure = await self._connect(loop, rule)
            elif rule.action == "send":
                failure = await self._send(loop, rule)
            elif rule.action == "expect":
                failure = await self._expect(loop, rule)
            else:
                continue
            if failure is not None:
                return failure
        if last.action == "expect":
            return CheckResult(last.ok_status or "L7OK", "(tcp-check)")
        if last.action == "connect":
            return CheckResult("L4OK", "" if last is _IMPLICIT_CONNECT else "(tcp-check)")
        return CheckResult("L7OK", "(tcp-check)")

    async def _connect(self, loop: asyncio.AbstractEventLoop, rule: TcpCheckRule) -> Optional[CheckResult]:
        self.close()
        host, port = self.address[0], self.address[1]
        family = self.family
        if rule.addr:
            host = rule.addr
            family = socket.AF_INET6 if ":" in host else socket.AF_INET
        if rule.port:
            port = rule.port
        self.connected, self.closed, self.linger = False, False, rule.linger
        self.buffer.clear()
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        self.sock.setblocking(False)
        try:
            await asyncio.wait_for(loop.sock_connect(self.sock, (host, port)), self.connect_timeout)
        except asyncio.TimeoutError:
            return CheckResult("L4TOUT", f"at step {self.step} of tcp-check (connect)"
                               if len(self.rules) > 1 else "")
        except OSError as exc:
            return CheckResult("L4CON", _strerror(exc))
        self.connected = True
        self.deadline = loop.time() + self.read_timeout if self.read_timeout else None
        return None

    def _remaining(self, loop: asyncio.AbstractEventLoop) -> Optional[float]:
        if self.deadline is None:
            return None
        return max(self.deadline - loop.time(), 0.0)

    async def _send(self, loop: asyncio.AbstractEventLoop, rule: TcpCheckRule) -> Optional[CheckResult]:
        assert self.sock is not None
        self.buffer.clear()  # as HAProxy: a send starts a new exchange
        try:
            await asyncio.wait_for(loop.sock_sendall(self.sock, rule.data), self._remaining(loop))
        except asyncio.TimeoutError:
            return CheckResult("L7TOUT", f"at step {self.step} of tcp-check (send)")
        except OSError as exc:
            return CheckResult("SOCKERR", f"{_strerror(exc)} at step {self.step} of tcp-check (send)")
        return None

    async def _expect(self, loop: asyncio.AbstractEventLoop, rule: TcpCheckRule) -> Optional[CheckResult]:
        assert self.sock is not None
        self.expecting = rule
        while True:
            verdict = self._evaluate(rule)
            if verdict is not None:
                self.expecting = None
                return None if verdict else self._mismatch(rule)
            try:
                data = await asyncio.wait_for(loop.sock_recv(self.sock, READ_BUFFER - len(self.buffer)),
                                              self._remaining(loop))
            except asyncio.TimeoutError:
                return CheckResult(rule.tout_status or "L7TOUT", self.timeout_info())
            except OSError:
                data = b""  # a reset: nothing more will come, judge what arrived
            if data:
                self.buffer += data
            else:
                self.closed = True

    def _evaluate(self, rule: TcpCheckRule) -> Optional[bool]:
        """True: go on; False: the check fails; None: wait for more data (HAProxy's
        tcpcheck_eval_expect())."""
        final = self.closed or len(self.buffer) >= READ_BUFFER
        if not final:
            if rule.match in ("string", "binary") and len(self.buffer) < len(rule.pattern):
                return None
            if rule.min_recv > 0 and len(self.buffer) < rule.min_recv:
                return None
        matched = _matches(rule, bytes(self.buffer))
        if not matched and not final and rule.min_recv == -1:
            return None
        return matched != rule.negate

    def _mismatch(self, rule: TcpCheckRule) -> CheckResult:
        what = "matched unwanted content" if rule.negate else "did not match content"
        pattern = rule.pattern
        if rule.match == "string":
            shown = f" '{pattern.decode('latin-1')}'"
        elif rule.match == "binary":
            shown = " (binary)"
        else:
            shown = f" (regex '{pattern}')"
        return CheckResult(rule.error_status or "L7RSP", f"TCPCHK {what}{shown} at step {self.step}")

    def timeout_info(self) -> str:
        rule = self.expecting
        if rule is None:
            return ""
        return f"at step {self.step} of tcp-check (expect {rule.match})"

    def close(self) -> None:
        sock, self.sock = self.sock, None
        if sock is None:
            return
        if not self.linger:  # HAProxy closes checks with a reset unless told ``linger``
            try:
                _linux.set_linger0(sock.fileno())
            except OSError:
                pass
        sock.close()


_REGEX_CACHE: dict[tuple[str, str], Any] = {}


def _matches(rule: TcpCheckRule, data: bytes) -> bool:
    if rule.match in ("string", "binary"):
        return rule.pattern in data
    key = (rule.match, rule.pattern)
    regex = _REGEX_CACHE.get(key)
    if regex is None:
        if rule.match == "rstring":
            regex = re.compile(rule.pattern.encode("latin-1"))
        else:  # rbinary: on the hexadecimal dump of the data, as HAProxy's dump_binary()
            regex = re.compile(rule.pattern)
        _REGEX_CACHE[key] = regex
    if rule.match == "rstring":
        return regex.search(data) is not None
    return regex.search(data.hex().upper()) is not None


def _strerror(exc: OSError) -> str:
    if exc.errno:
        return os.strerror(exc.errno)
    return str(exc) or type(exc).__name__


# --- the monitor of an engine ---------------------------------------------------------------------------

class ServerCheck:
    """One server's health while the configuration runs: its counter, its last probe, passive errors,
    and whether its probes are paused (a server in maintenance).  It knows the server by name and
    model only: what the health means for traffic is ``servers.ServerStates``' business."""

    def __init__(self, name: str, server: Server, family: int, address: tuple,
                 rules: Sequence[TcpCheckRule], *, connect_timeout: Optional[float] = None,
                 check_timeout: Optional[float] = None) -> None:
        self.name = name  # backend/server
        self.server = server
        self.family, self.address, self.rules = family, address, rules
        self.connect_timeout, self.check_timeout = connect_timeout, check_timeout
        self.active = server.check  # probes run (unless paused)
        self.paused = server.disabled  # in maintenance: no probes
        self.health = ServerHealth(server.rise, server.fall, server.inter, server.fastinter,
                                   server.downinter)
        if server.disabled:  # as HAProxy: down until out of maintenance, then up (and checked at once)
            self.health.health = 0
        self.last: Optional[CheckResult] = None
        self.timer: Optional[asyncio.TimerHandle] = None
        self.due = 0.0  # when the timer fires (loop time)
        self.task: Optional[asyncio.Task] = None
        self.observed_errors = 0  # failed connects in a row seen on traffic (observe layer4)
        self.seen_total = -1  # the server's established-connection total at the last error
        self.failed_checks = 0
        self.went_down = 0


class HealthMonitor:
    """Runs the checks of every server with ``check`` and the passive observation of servers with
    ``observe layer4``; ``changed(check, result)`` is called when a server goes up or down, and
    ``established(check)`` gives the server's established connections so far (the pump's books)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, *, spread: int = 0,
                 changed: Callable[[ServerCheck, Optional[CheckResult]], None],
                 established: Callable[[ServerCheck], int]) -> None:
        self.loop = loop
        self.spread = spread
        self.changed = changed
        self.established = established
        self.checks: dict[str, ServerCheck] = {}
        self._stopped = False

    def add(self, check: ServerCheck) -> None:
        self.checks[check.name] = check

    def start(self) -> None:
        """First checks spread over the smallest interval, as HAProxy's start_checks(): the i-th of
        n checked servers starts at ``i / n`` of it (with a little randomness)."""
        probed = [check for check in self.checks.values() if check.active]
        if not probed:
            return
        shortest = min(check.health.inter for check in probed)
        for position, check in enumerate(probed):
            delay = shortest * position / len(probed)
            delay += random.random() * shortest / len(probed) / 2
            self._schedule(check, delay)

    def stop(self) -> None:
        self._stopped = True
        for check in self.checks.values():
            if check.timer is not None:
                check.timer.cancel()
                check.timer = None
            if check.task is not None:
                check.task.cancel()

    async def wait_stopped(self) -> None:
        tasks = [check.task for check in self.checks.values() if check.task is not None]
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)

    # --- scheduling ---

    def _schedule(self, check: ServerCheck, delay: float) -> None:
        if self._stopped or not check.active:
            return
        if check.timer is not None:
            check.timer.cancel()
        check.due = self.loop.time() + delay
        check.timer = self.loop.call_later(delay, self._due, check)

    def _next(self, check: ServerCheck) -> None:
        interval = check.health.interval()
        if self.spread:  # HAProxy's spread-checks: +/- spread% of the interval, at random
            spread = interval * self.spread / 100
            interval += spread - 2 * spread * random.random()
        self._schedule(check, interval)

    def hurry(self, check: ServerCheck) -> None:
        """Check within ``fastinter`` if the next one is later (HAProxy on observed errors)."""
        fastinter = check.health.fastinter
        if fastinter and check.timer is not None and check.due > self.loop.time() + fastinter:
            self._schedule(check, fastinter)

    def _due(self, check: ServerCheck) -> None:
        check.timer = None
        if self._stopped or check.paused or check.task is not None:
            return
        check.task = self.loop.create_task(self._probe(check))

    async def _probe(self, check: ServerCheck) -> None:
        connect_timeout, check_timeout = check.connect_timeout, check.check_timeout
        inter = check.health.inter
        if check_timeout:  # HAProxy: connect within min(timeout connect, inter), then timeout check
            connect = min(connect_timeout, inter) if connect_timeout else inter
            read, total = check_timeout, None
        else:  # without timeout check, inter bounds the whole probe
            connect, read, total = None, None, inter
        try:
            result = await run_check(check.family, check.address, check.rules, connect_timeout=connect,
                                     read_timeout=read, total_timeout=total)
        except Exception as exc:  # a bug must not stop this server's checks for good
            log.exception("check of %s failed", check.name)
            result = CheckResult("SOCKERR", f"{type(exc).__name__}: {exc}")
        finally:
            check.task = None
        if self._stopped or check.paused:
            return
        self.report(check, result)
        self._next(check)

    # --- results ---

    def report(self, check: ServerCheck, result: CheckResult) -> None:
        """Count a probe's result (or a simulated one); tell the engine when the server flips."""
        check.last = result
        if result.passed:
            if check.health.passed():
                self.changed(check, result)
        else:
            if check.health.health > 0:  # HAProxy counts the failures of a server not yet down
                check.failed_checks += 1
            if check.health.failed():
                check.went_down += 1
                self.changed(check, result)

    def observe_error(self, check: ServerCheck) -> None:
        """A connect to the server failed in traffic (``observe layer4``).  Errors count in a row:
        a connection established since the last one (the pump's books) starts the count over."""
        server = check.server
        if server.observe != "layer4":
            return
        total = self.established(check)
        if total != check.seen_total:
            check.observed_errors = 0
            check.seen_total = total
        check.observed_errors += 1
        if check.observed_errors < server.error_limit:
            return
        check.observed_errors = 0
        # As HAProxy's health_adjust(): every action checks again within fastinter.
        self.hurry(check)
        action = server.on_error
        if action == "fastinter":
            return
        health = check.health
        if action == "sudden-death" and health.health > health.rise:
            health.health = health.rise + 1  # one failure from down
        elif action == "mark-down":
            health.health = health.rise  # the next failure is fatal
        self.report(check, CheckResult("HANA", f"Detected {server.error_limit} consecutive errors, "
                                               f"last one was: L4 unsuccessful connection"))

    def pause(self, check: ServerCheck) -> None:
        """Into MAINT: no probes until ``leave_maintenance`` (a probe under way is not counted)."""
        check.paused = True
        if check.timer is not None:
            check.timer.cancel()
            check.timer = None

    def leave_maintenance(self, check: ServerCheck) -> None:
        """Out of MAINT: up, but the first failed check takes it down (HAProxy: "start OK but check
        immediately")."""
        check.paused = False
        check.health.health = max(check.health.health, check.health.rise)
        if check.active:
            self._schedule(check, 0.0)

    def enable_checks(self, check: ServerCheck, enabled: bool) -> None:
        """The runtime API's ``enable|disable health``: a server configured with ``check`` is probed
        again (at once) or no more; its health counter stays."""
        if not check.server.check:
            return
        check.active = enabled
        if not enabled:
            if check.timer is not None:
                check.timer.cancel()
                check.timer = None
        elif not check.paused and check.timer is None and check.task is None:
            self._schedule(check, 0.0)

    def set_down(self, check: ServerCheck) -> None:
        """Marked down from outside (the runtime API): down until checks (or the API) bring it up."""
        check.health.health = 0

    def set_up(self, check: ServerCheck) -> None:
        """Marked up from outside: a checked server is up and checked at once; one without checks
        is up for good."""
        if check.active:
            self.leave_maintenance(check)
        else:
            check.health.health = check.health.top

