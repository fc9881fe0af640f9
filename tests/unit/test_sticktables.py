"""Stick tables (``fastproxy.sticktables``), tracking (``fastproxy.tracking``) and persistence
(``fastproxy.persistence``) on a clock the tests drive, held to what HAProxy 2.6 does."""

from __future__ import annotations

import pytest

from fastproxy import sticktables
from fastproxy.acl import ConnInfo, Router
from fastproxy.balance import Balancer, ServerState
from fastproxy.config import parse_text
from fastproxy.config.model import StickTable as TableSpec, StickStore
from fastproxy.errors import ConfigError
from fastproxy.persistence import Persistence
from fastproxy.rate import FreqCounter
from fastproxy.tracking import Tracker

PROLOGUE = "defaults\n mode tcp\n timeout connect 1s\n timeout client 1s\n timeout server 1s\n"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def table(store: str = "", *, size: int = 10, expire=None, nopurge=False, type="ip", length=None,
          clock=None, sticks=False) -> sticktables.StickTable:
    stores = tuple(sticktables.parse_store(store, lambda t: float(t.rstrip("s")))) if store else ()
    spec = TableSpec(name="t", type=type, size=size, length=length, expire=expire, nopurge=nopurge,
                     store=stores)
    return sticktables.StickTable(spec, clock=clock or Clock(), sticks=sticks)


def ip(text: str) -> int:
    return table().parse_key(text)


# --- the table ------------------------------------------------------------------------------------------

def test_entries_expire_after_their_last_touch():
    clock = Clock()
    t = table("gpc0", expire=10.0, clock=clock)
    entry = t.get(ip("10.0.0.1"))
    clock.now += 8
    t.touch(entry)
    clock.now += 8
    assert t.lookup(ip("10.0.0.1")) is entry  # touched 8 s ago: 2 s left
    clock.now += 2
    assert t.lookup(ip("10.0.0.1")) is None
    assert t.used == 0


def test_a_tracked_entry_does_not_expire_until_released():
    clock = Clock()
    t = table("conn_cur", expire=1.0, clock=clock)
    entry = t.get(ip("10.0.0.1"))
    t.hold(entry)
    clock.now += 5
    assert t.lookup(ip("10.0.0.1")) is entry
    t.release(entry)
    clock.now += 0.5
    assert t.lookup(ip("10.0.0.1")) is entry  # the release touched it
    clock.now += 0.6
    assert t.lookup(ip("10.0.0.1")) is None


def test_without_expire_entries_stay():
    clock = Clock()
    t = table("gpc0", clock=clock)
    t.get(ip("10.0.0.1"))
    clock.now += 10**6
    assert t.used == 1


def test_a_full_table_evicts_the_least_recently_touched_unused_entry():
    t = table("gpc0", size=3)
    a, b, c = (t.get(ip(f"10.0.0.{i}")) for i in (1, 2, 3))
    t.touch(a)
    t.hold(b)  # b is the oldest now, but in use
    assert t.get(ip("10.0.0.4")) is not None
    assert [t.key_text(e.key) for e in t] == ["10.0.0.1", "10.0.0.2", "10.0.0.4"]  # c went


def test_a_full_table_of_entries_in_use_refuses_new_keys():
    t = table("conn_cur", size=2)
    for i in (1, 2):
        t.hold(t.get(ip(f"10.0.0.{i}")))
    assert t.get(ip("10.0.0.3")) is None
    assert t.used == 2


def test_nopurge_refuses_new_keys_when_full_and_keeps_the_old_ones():
    t = table("gpc0", size=2, nopurge=True)
    t.get(ip("10.0.0.1"))
    t.get(ip("10.0.0.2"))
    assert t.get(ip("10.0.0.3")) is None
    assert t.get(ip("10.0.0.1")) is not None  # an existing key is still found
    assert (t.used, t.available) == (2, 0)


def test_storing_in_a_full_nopurge_table_is_refused_even_for_a_key_it_holds():
    t = table(size=1, nopurge=True, sticks=True)
    entry = t.store(ip("10.0.0.1"))
    t.set(entry, "server_id", 1)
    assert t.store(ip("10.0.0.1")) is None  # HAProxy allocates the new entry first: the table is full
    assert t.read(t.lookup(ip("10.0.0.1")), "server_id") == 1


def test_storing_in_a_full_purging_table_replaces_the_oldest_entry():
    t = table(size=1, sticks=True)
    t.set(t.store(ip("10.0.0.1")), "server_id", 1)
    entry = t.store(ip("10.0.0.1"))
    assert entry is not None and t.read(entry, "server_id") == 0  # written anew
    t.set(t.store(ip("10.0.0.2")), "server_id", 2)
    assert [t.key_text(e.key) for e in t] == ["10.0.0.2"]


def test_rates_slide_over_their_period():
    clock = Clock()
    t = table("conn_rate(10s)", clock=clock)
    entry = t.get(ip("10.0.0.1"))
    for _ in range(20):
        t.add(entry, "conn_rate")
    assert t.read(entry, "conn_rate") == 20
    clock.now += 12.5  # the first period is the previous one, a quarter of it slid out
    assert t.read(entry, "conn_rate") == 15
    clock.now += 10
    assert t.read(entry, "conn_rate") == 0


def test_freq_counter_with_a_period_matches_the_one_second_one_scaled():
    one, ten = FreqCounter(), FreqCounter()
    one.add(0.0, 8)
    ten.add(0.0, 8, period=10.0)
    assert one.rate(1.25) == ten.rate(12.5, period=10.0) == pytest.approx(6.0)


def test_counters_wrap_as_haproxys_unsigned_ones():
    t = table("gpc0,bytes_in_cnt")
    entry = t.get(ip("10.0.0.1"))
    t.set(entry, "gpc0", 2**32 - 1)
    t.add(entry, "gpc0")
    t.add(entry, "bytes_in_cnt", 2**33)
    assert (t.read(entry, "gpc0"), t.read(entry, "bytes_in_cnt")) == (0, 2**33)


def test_a_type_the_table_does_not_store_reads_none():
    t = table("gpc0")
    entry = t.get(ip("10.0.0.1"))
    t.add(entry, "conn_cnt")
    assert t.read(entry, "conn_cnt") is None


@pytest.mark.parametrize("kind, value, sample_type, text", [
    ("ip", "127.0.0.2", "ip", "127.0.0.2"),
    ("ip", "::ffff:127.0.0.2", "ip", "127.0.0.2"),
    ("ipv6", "127.0.0.2", "ip", "::ffff:7f00:2"),
    ("ipv6", "::1", "ip", "::1"),
    ("integer", "10.0.0.1", "ip", "167772161"),
    ("integer", 8080, "int", "8080"),
    ("string", "127.0.0.1", "ip", "127.0.0.1"),
    ("string", "a-very-long-server-name-indeed-and-more", "str", "a-very-long-server-name-indeed-a"),
    ("binary", "ab", "str", "6162" + "00" * 30),
])
def test_sample_values_cast_to_the_table_type_as_haproxy(kind, value, sample_type, text):
    t = table(type=kind)
    assert t.key_text(t.key_of(value, sample_type)) == text


@pytest.mark.parametrize("kind, value, sample_type", [("ip", "::1", "ip"), ("integer", "::1", "ip"),
                                                      ("integer", "x", "str"), ("ip", None, "ip")])
def test_values_without_a_key_of_the_table_type_give_none(kind, value, sample_type):
    assert table(type=kind).key_of(value, sample_type) is None


def test_string_keys_keep_len_characters():
    t = table(type="string", length=8)
    assert t.parse_key("abcdefghijk") == "abcdefgh"


def test_entries_dump_as_show_table_writes_them():
    clock = Clock()
    t = table("gpc0,conn_rate(10s),conn_cur,gpt0", expire=30.0, clock=clock)
    entry = t.get(ip("127.0.0.1"))
    t.add(entry, "conn_rate")
    clock.now += 0.018
    line = t.dump(entry)
    assert line.split(": ", 1)[1] == ("key=127.0.0.1 use=0 exp=29982 gpt0=0 gpc0=0 conn_rate(10000)=1 "
                                      "conn_cur=0")
    assert t.header() == "# table: t, type: ip, size:10, used:1"


def test_tables_used_for_persistence_store_the_server():
    t = table(sticks=True)
    assert t.columns == ["server_id", "server_key"]


@pytest.mark.parametrize("store, message", [
    ("foo", "unknown store option 'foo'."),
    ("conn_rate", "missing argument to store option 'conn_rate'."),
    ("conn_rate(x)", "error when processing store option 'conn_rate'."),
    ("gpc0(1)", "unexpected argument to store option 'gpc0'."),
])
def test_bad_store_options_are_haproxys_errors(store, message):
    with pytest.raises(sticktables.StickTableError, match=message.replace("(", r"\(").replace(")", r"\)")):
        sticktables.parse_store(store, lambda t: float(t.rstrip("s")))


# --- the configuration ------------------------------------------------------------------------------------

def test_stick_table_lines_read_into_the_model():
    config = parse_text(PROLOGUE + "backend be\n stick-table type string len 16 size 1m expire 30s nopurge "
                        "store gpc0,conn_rate(10s)\n server s 127.0.0.1:1\n")
    assert config.stick_tables["be"] == TableSpec(
        name="be", type="string", size=1 << 20, length=16, expire=30.0, nopurge=True,
        store=(StickStore("gpc0"), StickStore("conn_rate", 10.0)),
        location=config.stick_tables["be"].location)


@pytest.mark.parametrize("line, message", [
    ("stick-table type foo size 10", "stick-table: unknown type 'foo'."),
    ("stick-table type ip", "stick-table: missing size."),
    ("stick-table size 10", "stick-table: missing type."),
    ("stick-table type ip size x", "stick-table: unexpected character 'x' in argument of 'size'."),
    ("stick-table type ip size 10 bogus", "stick-table: unknown argument 'bogus'."),
    ("stick-table type ip size 10 store foo", "stick-table: unknown store option 'foo'."),
    ("stick on src", "Proxy 'be': unable to find stick-table 'be'."),
    ("stick-table type ip size 1\n stick on src table nope",
     "Proxy 'be': unable to find stick-table 'nope'."),
    ("stick bogus src", "'stick' expects 'on', 'match', or 'store'."),
    ("stick on", "'stick' expects a fetch method."),
    ("force-persist", "'force-persist' requires either 'if' or 'unless' followed by a condition."),
])
def test_bad_stick_lines_are_errors_as_in_haproxy(line, message):
    with pytest.raises(ConfigError) as caught:
        parse_text(PROLOGUE + f"backend be\n {line}\n server s 127.0.0.1:1\n")
    assert any(message in str(error) for error in caught.value.errors), caught.value.errors


@pytest.mark.parametrize("rules, message", [
    ("tcp-request connection track-sc0 src",
     "Proxy 'fe': unable to find table 'fe' referenced by track-sc0."),
    ("tcp-request connection track-sc3 src", "3 track-sc number exceeding 2 (MAX_SESS_STKCTR-1) value"),
    ("tcp-request connection track-sc0", "missing fetch method"),
    ("tcp-request connection sc-inc-gpc0(5)", "invalid stick table track ID. The max allowed ID is 2"),
    ("tcp-request connection reject if { src_conn_cur(nope) gt 2 }",
     "unable to find table 'nope' referenced in arg 1 of ACL keyword 'src_conn_cur' in proxy 'fe'."),
    ("tcp-request connection reject if { sc_conn_cur gt 2 }",
     "fetch method 'sc_conn_cur' : expected type 'integer' at position 1, but got nothing"),
])
def test_bad_tracking_rules_are_errors_as_in_haproxy(rules, message):
    with pytest.raises(ConfigError) as caught:
        parse_text(PROLOGUE + f"frontend fe\n bind :1\n {rules}\n")
    assert any(message in str(error) for error in caught.value.errors), caught.value.errors


def test_peers_are_a_warning():
    config = parse_text(PROLOGUE + "backend be\n stick-table type ip size 10 peers p\n")
    assert any("fastproxy does not talk to peers" in str(w) for w in config.warnings)


# --- tracking -----------------------------------------------------------------------------------------------

def frontend_router(rules: str, clock: Clock):
    config = parse_text(PROLOGUE + f"frontend fe\n bind :1\n {rules}\n default_backend be\n"
                        "backend be\n server s 127.0.0.1:1\n")
    tables = sticktables.tables_for(config, clock)
    return Router.for_frontend(config.frontends["fe"], config.backends, tables), tables


def connect(router, tables, src):
    tracker = Tracker(tables, "fe")
    info = ConnInfo(src=src, src_port=1, dst="127.0.0.1", dst_port=2, counters=tracker)
    return router.accept_connection(info), tracker


def test_a_source_over_its_concurrent_connections_is_rejected_and_another_is_not():
    clock = Clock()
    router, tables = frontend_router(
        "stick-table type ip size 100 store conn_cur\n tcp-request connection track-sc0 src\n"
        " tcp-request connection reject if { sc_conn_cur(0) gt 3 }", clock)
    held = [connect(router, tables, "127.0.0.2") for _ in range(5)]
    assert [accepted for accepted, _ in held] == [True, True, True, False, False]
    for accepted, tracker in held:
        if not accepted:
            tracker.release()  # a rejected connection ends at once
    assert connect(router, tables, "127.0.0.3")[0]
    held[0][1].release()
    assert connect(router, tables, "127.0.0.2")[0]  # one left: room for one more


def test_a_source_over_its_connection_rate_is_rejected_until_the_rate_falls():
    clock = Clock()
    router, tables = frontend_router(
        "stick-table type ip size 100 store conn_rate(1s)\n tcp-request connection track-sc1 src\n"
        " tcp-request connection reject if { sc1_conn_rate gt 5 }", clock)
    results = []
    for _ in range(8):
        accepted, tracker = connect(router, tables, "127.0.0.2")
        tracker.release()
        results.append(accepted)
    assert results == [True] * 5 + [False] * 3
    assert connect(router, tables, "127.0.0.3")[0]
    clock.now += 2.5
    assert connect(router, tables, "127.0.0.2")[0]


def test_tracking_counts_connections_sessions_and_gpc():
    clock = Clock()
    router, tables = frontend_router(
        "stick-table type ip size 100 store conn_cnt,conn_cur,sess_cnt,gpc0,gpt0\n"
        " tcp-request connection track-sc0 src\n tcp-request connection sc-inc-gpc0(0)\n"
        " tcp-request connection sc-set-gpt0(0) 7 if { src_get_gpc0 gt 1 }", clock)
    for _ in range(3):
        connect(router, tables, "10.0.0.1")[1].release()
    t = tables["fe"]
    entry = t.lookup(t.parse_key("10.0.0.1"))
    assert [t.read(entry, n) for n in ("conn_cnt", "conn_cur", "sess_cnt", "gpc0", "gpt0")] == [3, 0, 3, 3, 7]


def test_fetches_without_a_tracked_counter_give_no_value():
    clock = Clock()
    router, tables = frontend_router(
        "stick-table type ip size 100 store conn_cur\n"
        " tcp-request connection reject if !{ sc_conn_cur(0) ge 0 }", clock)
    assert not connect(router, tables, "10.0.0.1")[0]  # no value: the ACL is false, its negation true


def test_table_cnt_and_avl():
    clock = Clock()
    router, tables = frontend_router(
        "stick-table type ip size 3 store conn_cur\n tcp-request connection track-sc0 src\n"
        " tcp-request connection reject if { table_avl lt 1 }", clock)
    assert [connect(router, tables, f"10.0.0.{i}")[0] for i in range(1, 5)] == [True, True, False, False]


# --- persistence ------------------------------------------------------------------------------------------

def backend_persistence(lines: str, clock: Clock):
    config = parse_text(PROLOGUE + "backend be\n" + lines + "\n server a 127.0.0.1:1\n"
                        " server b 127.0.0.1:2 backup\n")
    backend = config.backends["be"]
    tables = sticktables.tables_for(config, clock)
    balancer = Balancer(backend)
    return Persistence(backend, tables, balancer), balancer, tables["be"]


def visit(persistence, balancer, dst="10.0.0.9"):
    """One connection: the tables first, then the balancer, then the server is stored."""
    info = ConnInfo(src="127.0.0.1", src_port=1, dst=dst, dst_port=2)
    slot, pending = persistence.lookup(info)
    if slot is None:
        slot = balancer.pick(info)
    persistence.store(pending, slot)
    return slot.name


@pytest.mark.parametrize("nopurge, after_recovery", [(False, "b"), (True, "a")])
def test_active_passive_clients_return_to_the_first_server_only_with_nopurge(nopurge, after_recovery):
    persistence, balancer, _ = backend_persistence(
        f" stick-table type ip size 1{' nopurge' if nopurge else ''}\n stick on dst", Clock())
    assert visit(persistence, balancer) == "a"
    balancer.set_state("a", ServerState.DOWN)
    assert visit(persistence, balancer) == "b"
    balancer.set_state("a", ServerState.UP)
    assert visit(persistence, balancer) == after_recovery


def test_a_stuck_client_goes_to_a_draining_server_but_not_to_a_down_one_without_persist():
    persistence, balancer, _ = backend_persistence(" stick-table type ip size 10\n stick on dst", Clock())
    visit(persistence, balancer)
    balancer.set_state("a", ServerState.DRAIN)
    assert visit(persistence, balancer) == "a"
    balancer.set_state("a", ServerState.DOWN)
    assert visit(persistence, balancer) == "b"


@pytest.mark.parametrize("lines", [" option persist", " force-persist if { dst 10.0.0.9 }"])
def test_persist_sends_a_stuck_client_to_its_down_server(lines):
    persistence, balancer, _ = backend_persistence(
        " stick-table type ip size 10\n stick on dst\n" + lines, Clock())
    visit(persistence, balancer)
    balancer.set_state("a", ServerState.DOWN)
    assert visit(persistence, balancer) == "a"


@pytest.mark.parametrize("lines, forced", [
    (" ignore-persist if { dst 10.0.0.9 }\n force-persist if { dst 10.0.0.9 }", False),
    (" force-persist if { dst 10.0.0.9 }\n ignore-persist if { dst 10.0.0.9 }", True),
    (" ignore-persist if { dst 10.0.0.1 }\n force-persist if { dst 10.0.0.9 }", True),
])
def test_the_first_persist_rule_that_matches_decides_so_an_earlier_ignore_persist_cancels_forcing(
        lines, forced):
    persistence, balancer, _ = backend_persistence(
        " stick-table type ip size 10\n stick on dst\n" + lines, Clock())
    visit(persistence, balancer)
    balancer.set_state("a", ServerState.DOWN)
    assert visit(persistence, balancer) == ("a" if forced else "b")


def test_a_non_stick_server_is_never_stored():
    config = parse_text(PROLOGUE + "backend be\n stick-table type ip size 10\n stick on dst\n"
                        " server a 127.0.0.1:1 non-stick\n server b 127.0.0.1:2\n")
    backend = config.backends["be"]
    tables = sticktables.tables_for(config, Clock())
    balancer = Balancer(backend)
    persistence = Persistence(backend, tables, balancer)
    assert [visit(persistence, balancer) for _ in range(4)] == ["a", "b", "b", "b"]
    assert [tables["be"].read(e, "server_key") for e in tables["be"]] == ["b"]


def test_stick_match_alone_stores_nothing():
    persistence, balancer, t = backend_persistence(" stick-table type ip size 10\n stick match dst", Clock())
    visit(persistence, balancer)
    assert t.used == 0


def test_store_request_then_match_on_another_key():
    persistence, balancer, t = backend_persistence(
        " stick-table type ip size 10\n stick store-request src\n stick match src", Clock())
    visit(persistence, balancer)
    assert [t.key_text(e.key) for e in t] == ["127.0.0.1"]
    assert t.read(next(iter(t)), "server_key") == "a"
