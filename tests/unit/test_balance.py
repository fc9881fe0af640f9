"""Server selection (``fastproxy.balance``), sans-IO: a Balancer built from model objects alone.

The algorithms that hash run on both ring implementations (``ring_class``: compiled and Python).
"""

from __future__ import annotations

import random
from collections import Counter

import pytest

from fastproxy import ring
from fastproxy.balance import Balancer, PickKey, ServerState
from fastproxy.config.model import Backend, Balance, Sample, Server

from ..support import IMPLEMENTATIONS, slots

RING_CONFIGS = {  # (algorithm, hash-type) of the algorithms that use a ring
    "random": ("random", "map-based"),
    "source-consistent": ("source", "consistent"),
    "source-maglev": ("source", "maglev"),
}
PLAIN_CONFIGS = {
    "roundrobin": ("roundrobin", "map-based"),
    "static-rr": ("static-rr", "map-based"),
    "leastconn": ("leastconn", "map-based"),
    "first": ("first", "map-based"),
    "source-map-based": ("source", "map-based"),
}
ALL_CONFIGS = {**PLAIN_CONFIGS, **RING_CONFIGS}


def make_backend(algorithm="roundrobin", weights=(1, 1, 1), *, sample=None, draws=None, hash_type="map-based",
                 factor=0, servers=None, **fields):
    if servers is None:
        servers = [Server(name=f"s{i}", host="127.0.0.1", port=9000 + i, weight=weight)
                   for i, weight in enumerate(weights)]
    balance = Balance(algorithm, sample=sample, draws=draws, hash_type=hash_type, hash_balance_factor=factor)
    return Backend(name="be", servers=servers, balance=balance, **fields)


def make(config, weights=(1, 1, 1), ring=None, **kwargs):
    algorithm, hash_type = ALL_CONFIGS[config]
    backend = make_backend(algorithm, weights, hash_type=hash_type,
                           factor=kwargs.pop("factor", 0), servers=kwargs.pop("servers", None))
    return Balancer(backend, ring_class=ring, rng=random.Random(7), table_size=1009, **kwargs)


def client(i):
    return PickKey(src=f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}", src_port=40000 + i % 20000)


def picks(balancer, count, *, hold=False, offset=0):
    """The names picked for ``count`` clients; with ``hold``, their connections stay open."""
    names = []
    for i in range(count):
        slot = balancer.pick(client(offset + i))
        if slot is None:
            names.append(None)
            continue
        balancer.connection_started(slot)
        if not hold:
            balancer.connection_ended(slot)
        names.append(slot.name)
    return names


def shares(names):
    counts = Counter(names)
    return {name: count / len(names) for name, count in counts.items()}


def cases(*configs):
    """Parameters for ``build``: each algorithm of ``configs`` (all by default), the ring-based ones on
    each ring implementation, the others once."""
    chosen = configs or sorted(ALL_CONFIGS)
    return [pytest.param((config, impl), id=f"{config}-{impl}" if config in RING_CONFIGS else config)
            for config in chosen
            for impl in (IMPLEMENTATIONS if config in RING_CONFIGS else ["python"])]


@pytest.fixture
def build(request):
    """A factory of balancers for one algorithm (``build.config``) on one ring implementation."""
    config, impl = request.param
    ring_class = ring.PyHashRing if impl == "python" else ring.CHashRing
    if ring_class is None:
        pytest.fail("the compiled ring (fastproxy._ring) is not importable")

    def factory(weights=(1, 1, 1), **kwargs):
        return make(config, weights, ring_class, **kwargs)
    factory.config = config
    return factory


# --- shares ---------------------------------------------------------------------------------------

# How close a share comes to weight / total weight: exact over each cycle for the round robins;
# otherwise the ring's own imbalance (160 points per server of the common weight) plus sampling error.
TOLERANCE = {"roundrobin": 0.0, "static-rr": 0.0, "random": 0.3, "source-consistent": 0.3,
             "source-maglev": 0.12, "source-map-based": 0.12}


@pytest.mark.parametrize("build", cases(*sorted(TOLERANCE)), indirect=True)
def test_shares_follow_weights(build):
    weights = (1, 2, 3)
    names = picks(build(weights), 6000)
    for i, weight in enumerate(weights):
        assert shares(names)[f"s{i}"] == pytest.approx(weight / 6, rel=TOLERANCE[build.config], abs=1e-9)


def test_roundrobin_is_smooth():
    balancer = make("roundrobin", (5, 1, 1))
    assert "".join(slot.name[1] for slot in (balancer.pick() for _ in range(7))) == "0010200"


def test_static_rr_lays_servers_out_as_haproxys_map():
    # recalc_server_map() for weights 5, 1, 1: s0 first, then s1 and s2 where their scores win.
    balancer = make("static-rr", (5, 1, 1))
    assert "".join(slot.name[1] for slot in (balancer.pick() for _ in range(14))) == "00010020001002"


def test_static_rr_reduces_weights_by_their_common_divisor():
    balancer = make("static-rr", (100, 200))
    assert [balancer.pick().name for _ in range(3)].count("s1") == 2


# --- weights at run time --------------------------------------------------------------------------

def test_a_roundrobin_weight_change_takes_effect_at_once():
    balancer = make("roundrobin", (1, 1))
    picks(balancer, 10)
    balancer.set_weight("s1", 3)
    assert Counter(picks(balancer, 40)) == {"s0": 10, "s1": 30}


@pytest.mark.parametrize("build", cases("leastconn", "random", "source-consistent", "source-maglev"),
                         indirect=True)
def test_dynamic_weight_changes_take_effect(build):
    balancer = build((1, 1))
    balancer.set_weight("s1", 4)
    assert shares(picks(balancer, 4000, hold=True))["s1"] == pytest.approx(0.8, rel=0.15)


@pytest.mark.parametrize("build", cases("static-rr", "source-map-based"), indirect=True)
def test_static_algorithms_accept_only_zero_or_the_configured_weight(build):
    balancer = build((2, 2))
    with pytest.raises(ValueError, match="static LB algorithm"):
        balancer.set_weight("s0", 3)
    balancer.set_weight("s0", 0)
    assert set(picks(balancer, 50)) == {"s1"}
    balancer.set_weight("s0", 2)
    assert set(picks(balancer, 50)) == {"s0", "s1"}


@pytest.mark.parametrize("weight", [-1, 257, 1.5, True])
def test_weights_outside_0_to_256_are_refused(weight):
    with pytest.raises(ValueError):
        make("roundrobin").set_weight("s0", weight)


# --- leastconn, random, first ---------------------------------------------------------------------

def test_leastconn_evens_out_held_connections_by_weight():
    balancer = make("leastconn", (1, 1, 2))
    for i in range(1, 401):
        picks(balancer, 1, hold=True, offset=i)
        loads = [slot.current / slot.weight for slot in balancer.slots]
        assert max(loads) - min(loads) <= 1
    assert [slot.current for slot in balancer.slots] == [100, 100, 200]


def test_leastconn_sends_new_connections_where_connections_ended():
    balancer = make("leastconn", (1, 1, 1))
    picks(balancer, 30, hold=True)
    s1 = balancer.slot("s1")
    for _ in range(5):
        balancer.connection_ended(s1)
    assert picks(balancer, 5, hold=True) == ["s1"] * 5


def test_leastconn_servers_with_equal_loads_take_turns():
    balancer = make("leastconn", (1, 1, 1))
    assert sorted(picks(balancer, 3)) == ["s0", "s1", "s2"]


@pytest.mark.parametrize("seed", range(3))
def test_random_two_choices_even_out_held_connections(ring_class, seed):
    balancer = make("random", (1, 1, 1, 1), ring_class)
    balancer.rng = random.Random(seed)
    picks(balancer, 2000, hold=True)
    currents = [slot.current for slot in balancer.slots]
    assert max(currents) - min(currents) <= 6


def test_random_with_more_draws_evens_out_more(ring_class):
    def spread(draws):
        backend = make_backend("random", (1,) * 8, draws=draws)
        balancer = Balancer(backend, ring_class=ring_class, rng=random.Random(3))
        picks(balancer, 4000, hold=True)
        currents = [slot.current for slot in balancer.slots]
        return max(currents) - min(currents)
    assert spread(3) <= spread(2) < spread(1)


def test_first_fills_servers_in_id_order_up_to_their_maxconn():
    servers = [Server(name="a", host="h", port=1, maxconn=2, id=3),
               Server(name="b", host="h", port=2, maxconn=2, id=1),
               Server(name="c", host="h", port=3, maxconn=2, id=2)]
    balancer = make("first", servers=servers)
    assert picks(balancer, 7, hold=True) == ["b", "b", "c", "c", "a", "a", None]
    balancer.connection_ended(balancer.slot("c"))
    assert picks(balancer, 1, hold=True) == ["c"]


def test_first_without_maxconn_sends_everything_to_the_lowest_id():
    balancer = make("first", (1, 1, 1))
    assert set(picks(balancer, 50, hold=True)) == {"s0"}


def test_server_ids_default_to_the_next_free_one_in_declaration_order():
    servers = [Server(name="x", host="h", port=1), Server(name="y", host="h", port=2, id=1),
               Server(name="z", host="h", port=3)]
    assert [slot.id for slot in make("first", servers=servers).slots] == [2, 1, 3]


# --- hashing --------------------------------------------------------------------------------------

@pytest.mark.parametrize("build", cases("source-map-based", "source-consistent", "source-maglev"),
                         indirect=True)
def test_source_is_sticky_per_address(build):
    balancer = build((1, 2, 3))
    first = picks(balancer, 300)
    assert picks(balancer, 300) == first
    assert set(first) == {"s0", "s1", "s2"}


def test_an_ipv4_mapped_address_is_the_same_client(ring_class):
    balancer = make("source-consistent", (1,) * 8, ring_class)
    for i in range(50):
        address = client(i).src
        assert balancer.pick(PickKey(src=f"::ffff:{address}")) is balancer.pick(PickKey(src=address))


@pytest.mark.parametrize("src", ["", "unix-socket", "not-an-address"])
def test_source_without_an_address_falls_back_to_round_robin(ring_class, src):
    balancer = make("source-consistent", (1, 1, 1), ring_class)
    assert sorted(balancer.pick(PickKey(src=src)).name for _ in range(3)) == ["s0", "s1", "s2"]


@pytest.mark.parametrize("hash_type", ["map-based", "consistent", "maglev"])
def test_hash_on_sni_is_sticky_and_applies_lower(ring_class, hash_type):
    backend = make_backend("hash", (1,) * 6, sample=Sample("req.ssl_sni", ("lower",)), hash_type=hash_type)
    balancer = Balancer(backend, ring_class=ring_class, table_size=1009)
    for i in range(40):
        upper, lower = PickKey(sni=f"Host{i}.Example.COM"), PickKey(sni=f"host{i}.example.com")
        assert balancer.pick(upper) is balancer.pick(lower)
    assert len({balancer.pick(PickKey(sni=f"h{i}.example")).name for i in range(200)}) == 6
    assert sorted(balancer.pick(PickKey()).name for _ in range(6)) == [f"s{i}" for i in range(6)]


@pytest.mark.parametrize("sample", ["dst_port", "src_port", "dst"])
def test_hash_on_other_layer_4_samples_is_sticky(ring_class, sample):
    backend = make_backend("hash", (1,) * 6, sample=Sample(sample), hash_type="consistent")
    balancer = Balancer(backend, ring_class=ring_class)
    keys = [PickKey(src="10.0.0.1", src_port=1000 + i, dst=f"192.168.0.{i}", dst_port=2000 + i)
            for i in range(100)]
    chosen = [balancer.pick(key).name for key in keys]
    assert [balancer.pick(key).name for key in keys] == chosen
    assert len(set(chosen)) > 1


def test_balancers_agree_on_maglev_with_the_same_seed_and_not_with_another(ring_class):
    def choices(seed):
        backend = make_backend("source", (1,) * 10, hash_type="maglev")
        balancer = Balancer(backend, ring_class=ring_class, table_size=2003, seed=seed)
        return [balancer.pick(client(i)).name for i in range(300)]
    assert choices(5) == choices(5)
    assert choices(5) != choices(6)


def test_maglev_table_size_and_seed_come_from_the_backends_balance(ring_class):
    backend = make_backend("source", hash_type="maglev")
    backend.balance.table_size, backend.balance.seed = 101, 9
    balancer = Balancer(backend, ring_class=ring_class)
    assert (balancer.ring.table_size, balancer.ring.seed) == (101, 9)


def test_the_ring_in_use_is_exposed_for_lookups_at_c_level(ring_class):
    balancer = make("source-consistent", (1, 1, 1, 1), ring_class)
    for i in range(100):
        address = bytes(int(part) for part in client(i).src.split("."))
        assert balancer.ring.lookup(address) == balancer.pick(client(i)).name


@pytest.mark.parametrize("build", cases("source-consistent", "source-maglev"), indirect=True)
def test_a_server_going_down_moves_only_its_clients_and_back_up_restores_them(build):
    balancer = build((1,) * 6)
    before = picks(balancer, 600)
    balancer.set_state("s2", ServerState.DOWN)
    during = picks(balancer, 600)
    moved_elsewhere = sum(1 for old, new in zip(before, during) if old != new and old != "s2")
    if build.config == "source-consistent":
        assert moved_elsewhere == 0
    else:  # Maglev rebuilds its table: a few other clients move too
        assert moved_elsewhere <= 0.1 * len(before)
    balancer.set_state("s2", ServerState.UP)
    assert picks(balancer, 600) == before


@pytest.mark.parametrize("build", cases("source-consistent", "source-maglev", "random"), indirect=True)
def test_hash_balance_factor_caps_every_load(build):
    balancer = build((1, 1, 2, 4), factor=150)
    hot = PickKey(src="10.9.9.9")
    weights = [slot.weight for slot in balancer.slots]
    for _ in range(500):
        slot = balancer.pick(hot)
        assert slot.current < slots(weights, slot.index, balancer.in_flight, 150)
        balancer.connection_started(slot)
    assert sum(1 for slot in balancer.slots if slot.current) > 1


# --- server states, backups, limits ---------------------------------------------------------------

@pytest.mark.parametrize("build", cases(), indirect=True)
@pytest.mark.parametrize("change", ["DOWN", "DRAIN", "MAINT", "weight 0"])
def test_unusable_servers_are_out_of_picks_at_once_and_come_back(build, change):
    balancer = build((1, 1, 1))
    target = "s0"

    def take_out():
        if change == "weight 0":
            balancer.set_weight(target, 0)
        else:
            balancer.set_state(target, ServerState[change])

    take_out()
    assert target not in picks(balancer, 300)
    if change == "weight 0":
        balancer.set_weight(target, 1)
    else:
        balancer.set_state(target, ServerState.UP)
    assert target in picks(balancer, 300, offset=1000)


def test_disabled_servers_start_in_maintenance():
    servers = [Server(name="a", host="h", port=1, disabled=True), Server(name="b", host="h", port=2)]
    balancer = make("roundrobin", servers=servers)
    assert balancer.slot("a").state is ServerState.MAINT
    assert set(picks(balancer, 20)) == {"b"}


def backup_servers():
    return [Server(name="a1", host="h", port=1), Server(name="a2", host="h", port=2),
            Server(name="b1", host="h", port=3, backup=True, id=9),
            Server(name="b2", host="h", port=4, backup=True, id=5)]


@pytest.mark.parametrize("build", cases(), indirect=True)
def test_backups_only_when_no_active_server_is_usable(build):
    balancer = build(servers=backup_servers())
    assert set(picks(balancer, 200)) <= {"a1", "a2"}
    balancer.set_state("a1", ServerState.DOWN)
    assert set(picks(balancer, 200)) == {"a2"}
    balancer.set_state("a2", ServerState.MAINT)
    assert set(picks(balancer, 200)) == {"b2"}  # the first backup in id order
    balancer.set_state("b2", ServerState.DOWN)
    assert set(picks(balancer, 200)) == {"b1"}
    balancer.set_state("a1", ServerState.UP)
    assert set(picks(balancer, 200)) == {"a1"}


def test_allbackups_uses_every_backup(ring_class):
    backend = make_backend("roundrobin", servers=backup_servers(), allbackups=True)
    balancer = Balancer(backend, ring_class=ring_class)
    for name in ("a1", "a2"):
        balancer.set_state(name, ServerState.DOWN)
    assert set(picks(balancer, 20)) == {"b1", "b2"}


@pytest.mark.parametrize("build", cases(), indirect=True)
def test_no_usable_server_picks_none(build):
    balancer = build((1, 1))
    for name in ("s0", "s1"):
        balancer.set_state(name, ServerState.DOWN)
    assert balancer.pick(client(1)) is None


@pytest.mark.parametrize("build", cases(), indirect=True)
def test_an_excluded_server_is_avoided_unless_it_is_the_only_one(build):
    balancer = build((1, 1, 1))
    for i in range(100):
        first = balancer.pick(client(i))
        again = balancer.pick(client(i), exclude={first.index})
        assert again is not first
    for name in ("s1", "s2"):
        balancer.set_state(name, ServerState.DOWN)
    assert balancer.pick(client(1), exclude=[0]) is balancer.slot("s0")


def limited_servers(count=3, **fields):
    return [Server(name=f"s{i}", host="h", port=i + 1, **fields) for i in range(count)]


@pytest.mark.parametrize("build", cases("roundrobin", "static-rr", "leastconn", "first"), indirect=True)
def test_a_full_server_is_passed_over_and_none_when_all_are_full(build):
    balancer = build(servers=limited_servers(maxconn=3))
    assert sorted(Counter(picks(balancer, 9, hold=True)).values()) == [3, 3, 3]
    assert balancer.pick(client(99)) is None
    balancer.connection_ended(balancer.slot("s1"))
    assert balancer.pick(client(99)) is balancer.slot("s1")


@pytest.mark.parametrize("build", cases("roundrobin", "static-rr", "first"), indirect=True)
def test_a_server_with_connections_queued_for_it_counts_as_full(build):
    balancer = build(servers=limited_servers(maxconn=3))
    balancer.slot("s0").queued = 1
    assert "s0" not in picks(balancer, 6, hold=True)


@pytest.mark.parametrize("build", cases("source-map-based", "source-consistent", "source-maglev"),
                         indirect=True)
def test_a_hash_keeps_its_server_when_it_is_full(build):
    balancer = build(servers=limited_servers(maxconn=1))
    chosen = balancer.pick(client(5))
    balancer.connection_started(chosen)
    assert not balancer.available(chosen)
    assert balancer.pick(client(5)) is chosen  # it waits in that server's queue, as with HAProxy
    other = balancer.pick(client(5), exclude={chosen.index})  # a redispatch goes elsewhere
    assert other is not chosen


@pytest.mark.parametrize("build", cases("random"), indirect=True)
def test_random_picks_none_rather_than_a_full_server(build):
    balancer = build(servers=limited_servers(maxconn=1))
    for i in range(30):
        slot = balancer.pick(client(i))
        if slot is not None:
            assert balancer.available(slot)
            balancer.connection_started(slot)
    assert all(slot.current == 1 for slot in balancer.slots)
    assert balancer.pick(client(99)) is None


def test_leastconn_queues_on_a_full_server_while_its_queue_is_under_maxqueue():
    balancer = make("leastconn", servers=limited_servers(2, maxconn=1, maxqueue=2))
    for slot in balancer.slots:
        balancer.connection_started(slot)
    chosen = balancer.pick(client(1))
    assert chosen is not None and not balancer.available(chosen)
    chosen.queued = 2  # its queue is at maxqueue: the other one
    assert balancer.pick(client(2)) is not chosen
    for slot in balancer.slots:
        slot.queued = 2
    assert balancer.pick(client(3)) is None


def test_minconn_rises_to_maxconn_with_the_backend_load_up_to_fullconn():
    backend = make_backend("roundrobin", servers=limited_servers(1, minconn=2, maxconn=6), fullconn=12)
    balancer = Balancer(backend)
    slot = balancer.slot("s0")
    limits = {}
    for load in (0, 4, 6, 9, 12, 20):
        balancer.in_flight, balancer.queued = load // 2, load - load // 2
        limits[load] = balancer._dynamic_maxconn(slot, slot.maxconn)
    assert limits == {0: 2, 4: 2, 6: 3, 9: 4, 12: 6, 20: 6}  # max(minconn, maxconn * load / fullconn)


def test_a_minconn_alone_is_a_maxconn():
    balancer = make("roundrobin", servers=limited_servers(1, minconn=2))
    assert picks(balancer, 3, hold=True) == ["s0", "s0", None]


def test_connection_counts_are_kept():
    balancer = make("roundrobin", (1, 1))
    slot = balancer.pick()
    balancer.connection_started(slot)
    balancer.connection_started(slot)
    balancer.connection_ended(slot)
    assert (slot.current, slot.total, balancer.in_flight) == (1, 2, 1)


# --- servers added and deleted at run time (add server, del server) ----------------------------------

DYNAMIC_CONFIGS = [name for name, (algorithm, hash_type) in ALL_CONFIGS.items()  # HAProxy's dynamic ones
                   if algorithm != "static-rr" and not (algorithm == "source" and hash_type == "map-based")]


@pytest.mark.parametrize("config", DYNAMIC_CONFIGS)
def test_an_added_server_starts_in_maintenance_and_takes_its_share_once_up(config, ring_class):
    balancer = make(config, (1, 1), ring=ring_class)
    changes = []
    balancer.on_change.append(lambda: changes.append(1))
    slot = balancer.add_server(Server(name="new", host="127.0.0.1", port=9100, weight=2))
    assert (slot.index, slot.id, slot.state) == (2, 3, ServerState.MAINT) and not changes  # announced later
    balancer.changed(slot)
    assert changes and "new" not in set(picks(balancer, 50))
    balancer.set_state("new", ServerState.UP)
    if config == "first":  # the lowest id with room: the others first
        assert balancer.pool[-1] is slot
    else:
        assert picks(balancer, 400).count("new") > 100


@pytest.mark.parametrize("config", DYNAMIC_CONFIGS)
def test_a_deleted_server_leaves_its_name_and_id_free_and_no_index_moves(config, ring_class):
    balancer = make(config, (1, 1, 1), ring=ring_class)
    with pytest.raises(ValueError):
        balancer.delete_server("s1")  # not in maintenance
    balancer.set_state("s1", ServerState.MAINT)
    deleted = balancer.delete_server("s1")
    assert deleted.deleted and [slot.index for slot in balancer.slots] == [0, 1, 2]
    again = balancer.add_server(Server(name="s1", host="127.0.0.1", port=9200))
    assert (again.index, again.id) == (3, 2)  # the lowest id free, as HAProxy gives it
    balancer.changed(again)
    balancer.set_state("s1", ServerState.UP)
    assert balancer.slot("s1") is again and again in balancer.pool
    if config != "first":
        assert set(picks(balancer, 300)) == {"s0", "s1", "s2"}


# --- batches (the fleet applies a burst of etcd changes in one) -------------------------------------

@pytest.mark.parametrize("config", sorted(ALL_CONFIGS))
def test_a_batch_of_changes_rebuilds_once_and_ends_where_one_by_one_does(config, ring_class):
    one_by_one, batched = make(config, (1,) * 8, ring=ring_class), make(config, (1,) * 8, ring=ring_class)
    told = []
    batched.on_change.append(lambda: told.append(batched.pool_group))

    def change(balancer):
        for i in range(8):
            if i % 3 == 0:
                balancer.set_state(f"s{i}", ServerState.DRAIN)
            elif not balancer._algorithm.static:
                balancer.set_weight(f"s{i}", 1 + i % 4)

    change(one_by_one)
    before = batched.rebuilds
    with batched.batch():
        change(batched)
        assert not told  # nothing announced inside: picks see the state from before
    assert batched.rebuilds - before == 1 and len(told) == 1
    assert [s.name for s in batched.pool] == [s.name for s in one_by_one.pool]
    assert picks(batched, 300) == picks(one_by_one, 300)
    if batched.ring is not None:
        assert batched.ring.digest() == one_by_one.ring.digest()


# --- hash-key: what ring positions derive from (HAProxy 3.0's) --------------------------------------

def hashed_backend(servers, algorithm="source-maglev"):
    balance, hash_type = ALL_CONFIGS[algorithm]
    return make_backend(balance, hash_type=hash_type, servers=servers)


def added_in_order(order, names, ids, hash_key, ring_class, algorithm="source-maglev"):
    """A balancer whose servers (ports 9000 + i) were added at run time in ``order``, with these names and
    ids, as two instances of a fleet may have added the same servers."""
    balancer = Balancer(hashed_backend([], algorithm), ring_class=ring_class, table_size=1009,
                        hash_key=hash_key)
    for i in order:
        slot = balancer.add_server(Server(name=names[i], host="10.0.0.1", port=9000 + i, id=ids[i]))
        balancer.changed(slot)
        balancer.set_state(names[i], ServerState.UP)
    return balancer


def routes(balancer, count=2000):
    """The address each of ``count`` clients goes to."""
    return [balancer.pick(client(i)).address for i in range(count)]


@pytest.mark.parametrize("algorithm", ["source-maglev", "source-consistent"])
def test_hash_key_addr_port_builds_the_same_table_whatever_the_order_names_and_ids(algorithm, ring_class):
    first = added_in_order(range(6), [f"a{i}" for i in range(6)], [1, 2, 3, 4, 5, 6], "addr-port", ring_class,
                           algorithm)
    second = added_in_order(reversed(range(6)), [f"web-{9 - i}" for i in range(6)], [16, 15, 14, 13, 12, 11],
                            "addr-port", ring_class, algorithm)
    assert first.ring.digest() == second.ring.digest()  # byte-identical tables
    assert first.table_digest() == second.table_digest()
    assert routes(first) == routes(second)
    # By names (fastproxy's default) or by ids, the same servers make other tables.
    by_name = [added_in_order(range(6), [f"a{i}" for i in range(6)], [1, 2, 3, 4, 5, 6], None, ring_class,
                              algorithm),
               added_in_order(reversed(range(6)), [f"web-{9 - i}" for i in range(6)],
                              [16, 15, 14, 13, 12, 11], None, ring_class, algorithm)]
    assert by_name[0].table_digest() != by_name[1].table_digest()
    by_id = [added_in_order(range(6), ["a", "b", "c", "d", "e", "f"], [1, 2, 3, 4, 5, 6], "id", ring_class),
             added_in_order(range(6), ["a", "b", "c", "d", "e", "f"], [6, 5, 4, 3, 2, 1], "id", ring_class)]
    # The same ids make the same ring, but at other addresses: the routing digest tells them apart.
    assert by_id[0].ring.digest() == by_id[1].ring.digest()
    assert by_id[0].table_digest() != by_id[1].table_digest()
    assert routes(by_id[0]) != routes(by_id[1])


def test_a_server_back_under_another_name_takes_its_entries_again_with_hash_key_addr_port(ring_class):
    balancer = added_in_order(range(8), [f"s{i}" for i in range(8)], [None] * 8, "addr-port", ring_class)
    before, digest = routes(balancer), balancer.table_digest()
    balancer.set_state("s3", ServerState.MAINT)
    balancer.delete_server("s3")
    assert balancer.table_digest() != digest
    again = balancer.add_server(Server(name="s3-restarted", host="10.0.0.1", port=9003))
    balancer.changed(again)
    balancer.set_state("s3-restarted", ServerState.UP)
    assert balancer.table_digest() == digest and routes(balancer) == before


def test_hash_key_addr_tells_servers_of_one_host_apart_by_name(ring_class):
    balancer = added_in_order(range(3), ["x", "y", "z"], [None] * 3, "addr", ring_class)
    assert sorted(balancer.ring) == ["10.0.0.1 x", "10.0.0.1 y", "10.0.0.1 z"]
    assert {slot.name for slot in (balancer.pick(client(i)) for i in range(300))} == {"x", "y", "z"}


def test_a_server_moved_at_run_time_moves_its_positions_with_hash_key_addr_port(ring_class):
    balancer = added_in_order(range(4), ["a", "b", "c", "d"], [None] * 4, "addr-port", ring_class)
    digest = balancer.table_digest()
    rebuilds = balancer.rebuilds
    balancer.set_address("b", "10.0.0.2", 9001)
    assert balancer.rebuilds == rebuilds + 1 and "10.0.0.2:9001" in set(balancer.ring)
    assert balancer.table_digest() != digest
    balancer.set_address("b", "10.0.0.1", 9001)
    assert balancer.table_digest() == digest
    balancer.set_hash_key(None)  # by names: a move changes nothing on the ring
    named = balancer.ring.digest()
    balancer.set_address("b", "10.0.0.3", 9001)
    assert balancer.ring.digest() == named and balancer.table_digest() != digest
    with pytest.raises(ValueError):
        balancer.set_hash_key("port")
