"""Queues of a backend (``fastproxy.queues``), sans-IO: order, counts and who serves whom."""

from __future__ import annotations

from fastproxy.balance import Balancer, ServerState
from fastproxy.config.model import Backend, Server
from fastproxy.queues import Queues


def queues(maxconn=1, count=2, **backend_fields):
    servers = [Server(name=f"s{i}", host="h", port=i + 1, maxconn=maxconn) for i in range(count)]
    balancer = Balancer(Backend("be", servers=servers, **backend_fields))
    for slot in balancer.slots:
        balancer.connection_started(slot)  # every server full
    return balancer, Queues(balancer)


def test_lengths_feed_the_balancer():
    balancer, q = queues()
    s0 = balancer.slot("s0")
    q.add("a", s0)
    q.add("b")
    assert (q.length(s0), q.length(), q.waiting, s0.queued, balancer.queued) == (1, 1, 2, 1, 2)
    assert not balancer.available(s0)


def test_a_free_slot_takes_the_oldest_of_its_queue_and_the_backends():
    balancer, q = queues()
    s0 = balancer.slot("s0")
    for item, slot in (("b1", None), ("s1", s0), ("b2", None), ("s2", s0)):
        q.add(item, slot)
    assert q.next_for(s0) is None  # still full
    served = []
    for _ in range(4):
        balancer.connection_ended(s0)
        pending = q.next_for(s0)
        served.append(pending.item)
        balancer.connection_started(s0)
    assert served == ["b1", "s1", "b2", "s2"]
    assert q.waiting == 0 and q.next_for(s0) is None


def test_a_server_out_of_picks_takes_nothing_and_one_back_takes_the_backend_queue():
    balancer, q = queues()
    s0 = balancer.slot("s0")
    q.add("own", s0)
    q.add("any")
    balancer.connection_ended(s0)
    for state in (ServerState.DRAIN, ServerState.MAINT, ServerState.DOWN):
        balancer.set_state("s0", state)
        assert q.next_for(s0) is None
    balancer.set_state("s0", ServerState.UP)
    assert q.next_for(s0).item == "own"


def test_a_backup_takes_the_backend_queue_only_while_it_is_in_use():
    servers = [Server(name="a", host="h", port=1, maxconn=1),
               Server(name="b", host="h", port=2, maxconn=1, backup=True)]
    balancer = Balancer(Backend("be", servers=servers))
    q = Queues(balancer)
    balancer.connection_started(balancer.slot("a"))
    q.add("waiting")
    assert q.next_for(balancer.slot("b")) is None
    balancer.set_state("a", ServerState.DOWN)
    assert q.next_for(balancer.slot("b")).item == "waiting"


def test_removed_entries_leave_the_counts_and_are_skipped():
    balancer, q = queues()
    s0 = balancer.slot("s0")
    first, second = q.add("first"), q.add("second")
    q.remove(first, expired=True)
    q.remove(first, expired=True)  # idempotent
    assert (q.length(), q.backend.expired, q.backend.max) == (1, 1, 2)
    balancer.connection_ended(s0)
    assert q.next_for(s0) is second


def test_take_all_empties_a_server_queue_oldest_first():
    balancer, q = queues()
    s1 = balancer.slot("s1")
    for item in ("x", "y", "z"):
        q.add(item, s1)
    q.remove(list(q)[1])
    assert [p.item for p in q.take_all(s1)] == ["x", "z"]
    assert (s1.queued, balancer.queued, list(q)) == (0, 0, [])
