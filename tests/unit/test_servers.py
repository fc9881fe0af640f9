"""Server state with one owner (``servers.ServerStates``): administration times health into what the
balancer sees, HAProxy's state-change lines, session cuts and slowstart ramps.  Sans-IO: a fake clock,
the real balancer and health counters, no socket, no sleep."""

from __future__ import annotations

import heapq
import itertools

import pytest

from fastproxy import logs
from fastproxy.balance import ServerState
from fastproxy.config.model import Backend, Balance, Server
from fastproxy.health import CheckResult, HealthMonitor, ServerCheck
from fastproxy.runtime import AdminState, BackendRuntime
from fastproxy.servers import ServerStates


class FakeClock:
    """``time`` and ``call_later`` as the asyncio loop has them, moved by hand."""

    def __init__(self) -> None:
        self.now = 1000.0
        self._timers: list = []
        self._order = itertools.count()

    def time(self) -> float:
        return self.now

    def call_later(self, delay, callback, *args):
        timer = _Timer(self.now + delay, callback, args)
        heapq.heappush(self._timers, (timer.when, next(self._order), timer))
        return timer

    def advance(self, seconds: float) -> None:
        end = self.now + seconds
        while self._timers and self._timers[0][0] <= end:
            when, _, timer = heapq.heappop(self._timers)
            self.now = when
            if not timer.cancelled:
                timer.callback(*timer.args)
        self.now = end

    @property
    def pending(self) -> int:
        return sum(1 for _, _, timer in self._timers if not timer.cancelled)


class _Timer:
    def __init__(self, when, callback, args) -> None:
        self.when, self.callback, self.args = when, callback, args
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class Harness:
    """One backend's servers, their checks and their state owner, recording what it says and cuts."""

    def __init__(self, *servers: Server, algorithm: str = "roundrobin") -> None:
        self.clock = FakeClock()
        self.check_clock = FakeClock()  # the monitor's own timers: never run, probes are reported by hand
        self.backend = BackendRuntime(Backend("be", servers=list(servers), balance=Balance(algorithm)), 1)
        self.lines: list[tuple[int, str]] = []
        self.cut: list[int] = []
        self.monitor = HealthMonitor(self.check_clock, changed=self._changed,  # type: ignore[arg-type]
                                     established=lambda check: 0)
        self.states = ServerStates(self.clock, self.monitor, cut_sessions=self.cut.append,
                                   write_log=lambda _, severity, line: self.lines.append((severity, line)))
        self._by_check = {}
        for server in self.backend.servers:
            server.check = ServerCheck(server.name, server.slot.server, server.family, server.address, ())
            self._by_check[server.check] = server
            self.monitor.add(server.check)

    def _changed(self, check, result) -> None:
        self.states.health_changed(self._by_check[check], result)

    def server(self, name: str):
        return self.backend.servers[self.backend.balancer.slot(name).index]

    def state(self, name: str) -> ServerState:
        return self.backend.balancer.slot(name).state

    def fail(self, name: str, times: int, status: str = "L4CON") -> None:
        for _ in range(times):
            self.monitor.report(self.server(name).check, CheckResult(status, "Connection refused", 0.002))

    def pass_(self, name: str, times: int) -> None:
        for _ in range(times):
            self.monitor.report(self.server(name).check, CheckResult("L4OK", "", 0.001))


def checked(name: str, **options) -> Server:
    return Server(name, "127.0.0.1", 9000 + int(name[-1]), check=True, rise=2, fall=3, **options)


def test_a_server_is_up_at_start_and_down_at_its_first_failed_check_as_haproxy():
    h = Harness(checked("s1"), checked("s2"))
    assert h.state("s1") is ServerState.UP
    h.fail("s1", 1)
    assert h.state("s1") is ServerState.DOWN


def test_fall_failed_checks_take_a_healthy_server_down_with_haproxys_line():
    h = Harness(checked("s1"), checked("s2"))
    h.pass_("s1", 2)  # the counter at its top: rise + fall - 1
    h.fail("s1", 2)
    assert h.state("s1") is ServerState.UP and not h.lines  # fall 3: not yet
    h.fail("s1", 1)
    assert h.state("s1") is ServerState.DOWN
    assert h.lines == [(logs.ALERT, "Server be/s1 is DOWN, reason: Layer4 connection problem, info: "
                                    '"Connection refused", check duration: 2ms. 1 active and 0 backup '
                                    "servers left. 0 sessions active, 0 requeued, 0 remaining in queue.")]


def test_the_last_server_down_says_the_backend_has_none_left():
    h = Harness(checked("s1"))
    h.fail("s1", 3)
    assert h.lines[-1] == (logs.EMERG, "backend be has no server available!")


def test_rise_passed_checks_bring_a_down_server_back_up():
    h = Harness(checked("s1"), checked("s2"))
    h.fail("s1", 3)
    h.pass_("s1", 1)
    assert h.state("s1") is ServerState.DOWN
    h.pass_("s1", 1)
    assert h.state("s1") is ServerState.UP
    assert h.lines[-1] == (logs.NOTICE, "Server be/s1 is UP, reason: Layer4 check passed, check duration: "
                                        "1ms. 2 active and 0 backup servers online. 0 sessions requeued, "
                                        "0 total in queue.")


def test_maintenance_wins_over_health_and_pauses_the_checks():
    h = Harness(checked("s1"), checked("s2"))
    h.states.set_state(h.server("s1"), "maint")
    assert h.state("s1") is ServerState.MAINT and h.server("s1").admin is AdminState.MAINT
    assert h.server("s1").check.paused
    # An alert for a server that was running, as haproxy 2.6 (a notice for a drained one).
    assert h.lines == [(logs.ALERT, "Server be/s1 is going DOWN for maintenance. 1 active and 0 backup "
                                    "servers left. 0 sessions active, 0 requeued, 0 remaining in queue.")]
    h.pass_("s1", 5)  # a probe that was under way: the server stays in maintenance
    assert h.state("s1") is ServerState.MAINT


def test_out_of_maintenance_a_server_is_up_and_checked_at_once():
    h = Harness(checked("s1"), checked("s2"))
    h.states.set_state(h.server("s1"), "MAINT")
    h.states.set_state(h.server("s1"), "UP")
    check = h.server("s1").check
    assert h.state("s1") is ServerState.UP and not check.paused
    assert check.due == h.check_clock.now  # checked at once
    h.fail("s1", 1)  # and down at its first failure, as HAProxy
    assert h.state("s1") is ServerState.DOWN


def test_drain_stops_new_connections_and_checks_go_on_with_haproxys_lines():
    h = Harness(checked("s1"), checked("s2"))
    h.states.set_state(h.server("s1"), ServerState.DRAIN)
    assert h.state("s1") is ServerState.DRAIN and not h.backend.balancer.slot("s1").usable
    assert not h.server("s1").check.paused
    assert h.lines == [(logs.NOTICE, "Server be/s1 enters drain state. 1 active and 0 backup servers online. "
                                     "0 sessions requeued, 0 total in queue.")]
    h.fail("s1", 3)
    assert h.state("s1") is ServerState.DOWN
    down, remains = (line for _, line in h.lines[1:])  # down while drained: said, as haproxy says it
    assert down.startswith("Server be/s1 is DOWN, reason: Layer4 connection problem")
    assert remains == "Server be/s1 remains in forced drain mode."
    h.pass_("s1", 2)
    assert h.state("s1") is ServerState.DRAIN  # health back, still drained
    h.states.set_ready(h.server("s1"))
    assert h.lines[-1][1] == "Server be/s1 is UP (leaving forced drain)."


def test_a_server_disabled_in_the_file_starts_in_maintenance():
    h = Harness(checked("s1", disabled=True), checked("s2"))
    assert h.server("s1").admin is AdminState.MAINT and h.server("s1").check.paused
    assert h.state("s1") is ServerState.MAINT


def test_marked_down_from_outside_stays_down_until_checks_bring_it_back():
    h = Harness(checked("s1"), checked("s2"))
    h.states.set_state(h.server("s1"), "DOWN")
    assert h.state("s1") is ServerState.DOWN
    h.pass_("s1", 2)
    assert h.state("s1") is ServerState.UP


def test_on_marked_down_shutdown_sessions_cuts_the_servers_sessions():
    h = Harness(checked("s1", on_marked_down="shutdown-sessions"), checked("s2"))
    h.fail("s1", 3)
    assert h.cut == [h.server("s1").block]
    h.states.set_state(h.server("s2"), "MAINT")  # s2 has no such option: nothing cut
    assert h.cut == [h.server("s1").block]


def test_on_marked_up_shutdown_backup_sessions_cuts_the_backups():
    h = Harness(checked("s1", on_marked_up="shutdown-backup-sessions"), checked("s2", backup=True),
                checked("s3", backup=True))
    h.fail("s1", 3)
    assert h.cut == []
    h.pass_("s1", 2)
    assert h.cut == [h.server("s2").block, h.server("s3").block]


@pytest.mark.parametrize("algorithm", ["roundrobin", "leastconn"])
def test_slowstart_ramps_the_weight_over_the_delay_in_steps(algorithm):
    h = Harness(checked("s1", slowstart=20.0, weight=10), checked("s2", weight=10), algorithm=algorithm)
    slot = h.backend.balancer.slot("s1")
    full = slot.weight
    h.fail("s1", 3)
    h.pass_("s1", 2)
    assert h.state("s1") is ServerState.UP
    weights = [slot.weight]
    for _ in range(20):  # recomputed every max(1 s, 20 s / 20)
        h.clock.advance(1.0)
        weights.append(slot.weight)
    assert weights[0] == 1  # one step at first
    assert weights == sorted(weights) and weights[-1] == full
    assert weights[10] == pytest.approx(full / 2, abs=1)  # halfway through, half the weight
    assert slot.ramp is None and h.clock.pending == 0  # ramp over: no timer left


def test_a_server_going_down_during_its_slowstart_ends_the_ramp():
    h = Harness(checked("s1", slowstart=20.0, weight=10), checked("s2", weight=10))
    h.fail("s1", 3)
    h.pass_("s1", 2)
    h.clock.advance(5.0)
    assert h.backend.balancer.slot("s1").ramp is not None
    h.fail("s1", 3)
    assert h.backend.balancer.slot("s1").ramp is None and h.clock.pending == 0


def test_stop_cancels_the_ramps_under_way():
    h = Harness(checked("s1", slowstart=20.0, weight=10), checked("s2", weight=10))
    h.fail("s1", 3)
    h.pass_("s1", 2)
    h.states.stop()
    assert h.clock.pending == 0


def test_a_tracking_server_follows_the_tracked_one_with_haproxys_via_lines():
    h = Harness(checked("s1"), Server("s2", "127.0.0.1", 9002, track="s1"), Server("s3", "127.0.0.1", 9003))
    tracked, tracker = h.server("s1"), h.server("s2")
    tracker.tracked = tracked
    tracked.trackers.append(tracker)
    h.fail("s1", 1)
    assert (h.state("s1"), h.state("s2")) == (ServerState.DOWN, ServerState.DOWN)
    assert h.lines[1] == (logs.ALERT, "Server be/s2 is DOWN via be/s1. 1 active and 0 backup servers left. "
                                      "0 sessions active, 0 requeued, 0 remaining in queue.")
    h.pass_("s1", 2)
    assert h.lines[-1] == (logs.NOTICE, "Server be/s2 is UP via be/s1. 3 active and 0 backup servers online. "
                                        "0 sessions requeued, 0 total in queue.")
    h.states.set_state(tracked, ServerState.MAINT)
    assert h.state("s2") is ServerState.MAINT
    assert h.lines[-1][1] == ("Server be/s2 is going DOWN for maintenance via be/s1. 1 active and 0 backup "
                              "servers left. 0 sessions active, 0 requeued, 0 remaining in queue.")


@pytest.mark.parametrize("host, init_addr, found", [
    ("127.0.0.5", ("none",), ("127.0.0.5", 9001)),  # an address as written needs no method
    ("localhost", None, ("127.0.0.1", 9001)),  # last (no state file: skipped), then libc
    ("nosuch.invalid", ("last", "libc", "none"), None),  # none: in maintenance
    ("nosuch.invalid", ("libc", "10.0.0.7"), ("10.0.0.7", 9001)),  # the IP stands for the server's
])
def test_init_addr_methods_are_tried_in_order_at_start_as_haproxy(host, init_addr, found):
    from fastproxy.runtime import initial_address
    result = initial_address(Server("s1", host, 9001, init_addr=init_addr, family="ipv4"))
    assert (result[1] if result else None) == found


def test_a_server_no_init_addr_method_resolves_is_an_error_at_start():
    from fastproxy.runtime import initial_address
    with pytest.raises(OSError):
        initial_address(Server("s1", "nosuch.invalid", 9001, init_addr=("last", "libc")))
    h = Harness(checked("s1"), Server("s2", "nosuch.invalid", 9002, init_addr=("none",)))
    assert h.state("s2") is ServerState.MAINT and h.server("s2").unresolved
