"""Which ``tcp-request`` rules a lane runs itself (``lanes.lane_rules``): the flood defence over a table
the pump keeps, compiled into the rules the pump reads; everything else keeps the frontend on the
Python path (None)."""

from __future__ import annotations

from typing import Optional

import pytest

from fastproxy import sticktables
from fastproxy.config import parse_text
from fastproxy.lanes import lane_rules
from fastproxy.pump import LaneRule

PROLOGUE = "defaults\n mode tcp\n timeout connect 1s\n timeout client 1s\n timeout server 1s\n"
TABLE = "stick-table type ip size 100 expire 30s store conn_cur,conn_cnt,conn_rate(10s)"
LOW, HIGH = LaneRule.low, LaneRule.high


def counters(*arguments):
    """What the pump's SourceCounters would be built from: the rules name it, nothing more."""
    return ("counters", arguments)


def compiled(rules: str, table: str = TABLE, *, other: str = "") -> Optional[list[LaneRule]]:
    config = parse_text(PROLOGUE + f"frontend fe\n bind :1\n {table}\n {rules}\n default_backend be\n"
                        f"backend be\n server s 127.0.0.1:1\n{other}")
    tables = {name: sticktables.PumpStickTable(t.spec, counters) if sticktables.pump_can_keep(t) else t
              for name, t in sticktables.tables_for(config).items()}
    return lane_rules(config.frontends["fe"], tables)


FE = counters(100, 30000, 10000, False, False, ["conn_cnt", "conn_rate", "conn_cur"])


def test_the_pump_keeps_a_table_of_connection_counters_with_its_size_expiry_and_rate_period():
    assert compiled("tcp-request connection track-sc0 src") == [LaneRule("track", 0, FE)]


def test_a_concurrent_connection_limit_is_a_track_and_a_reject_on_the_tracked_counter():
    assert compiled("tcp-request connection track-sc0 src\n"
                    " tcp-request connection reject if { sc_conn_cur(0) gt 10 }") == [
        LaneRule("track", 0, FE), LaneRule("reject", 0, FE, "sc", "conn_cur", 11, HIGH)]


@pytest.mark.parametrize("condition, scope, data, low, high, negate", [
    ("if { sc1_conn_rate ge 20 }", "sc", "conn_rate", 20, HIGH, False),
    ("if { sc1_conn_cnt lt 3 }", "sc", "conn_cnt", LOW, 2, False),
    ("if { sc1_conn_cnt le 3 }", "sc", "conn_cnt", LOW, 3, False),
    ("if { sc1_conn_cur eq 7 }", "sc", "conn_cur", 7, 7, False),
    ("if { sc1_conn_cur 4:9 }", "sc", "conn_cur", 4, 9, False),
    ("unless { sc1_conn_rate le 20 }", "sc", "conn_rate", LOW, 20, True),
    ("if !{ sc1_conn_rate le 20 }", "sc", "conn_rate", LOW, 20, True),
    ("if { src_conn_rate gt 5 }", "src", "conn_rate", 6, HIGH, False),
    ("if { src_conn_cur(fe) gt 5 }", "src", "conn_cur", 6, HIGH, False),
])
def test_each_threshold_compiles_to_a_range_of_one_counter(condition, scope, data, low, high, negate):
    rules = compiled(f"tcp-request connection track-sc1 src\n tcp-request connection reject {condition}")
    assert rules == [LaneRule("track", 1, FE), LaneRule("reject", 1 if scope == "sc" else 0, FE, scope, data,
                                                         low, high, negate)]


def test_a_named_acl_and_a_table_of_another_proxy():
    other = "backend flood_table\n stick-table type ipv6 size 10 store conn_rate(1s)\n"
    table = counters(10, 0, 1000, False, True, ["conn_rate"])
    assert compiled("acl abuse sc0_conn_rate gt 100\n"
                    " tcp-request connection track-sc0 src table flood_table\n"
                    " tcp-request connection reject if abuse", "", other=other) == [
        LaneRule("track", 0, table), LaneRule("reject", 0, table, "sc", "conn_rate", 101, HIGH)]


@pytest.mark.parametrize("rules", [
    "tcp-request connection track-sc0 src if { src 10.0.0.0/8 }",  # a condition on the track
    "tcp-request connection track-sc0 dst",  # another key than the client's address
    "tcp-request connection track-sc0 src\n tcp-request connection track-sc0 src table be2",
    "tcp-request session track-sc0 src",  # another phase
    "tcp-request content reject if { req.len gt 0 }",
    "tcp-request connection track-sc0 src\n tcp-request connection reject if { sc0_conn_cur gt 3 } "
    "{ sc0_conn_rate gt 3 }",  # two terms
    "tcp-request connection track-sc0 src\n tcp-request connection reject if { sc0_conn_cur gt 3 } || "
    "{ sc0_conn_rate gt 3 }",
    "tcp-request connection track-sc0 src\n tcp-request connection reject if { sc0_get_gpc0 gt 0 }",
    "tcp-request connection track-sc0 src\n tcp-request connection reject if { sc0_conn_cur gt 3 5 }",
    "tcp-request connection track-sc0 src\n tcp-request connection reject if { sc1_conn_cur gt 3 }",
    "tcp-request connection track-sc0 src\n tcp-request connection reject if { sc0_conn_cur(be2) gt 3 }",
    "tcp-request connection track-sc0 src\n tcp-request connection sc-inc-gpc0(0)",
    "tcp-request connection accept if { src_port 1:1024 }",
    "tcp-request connection accept if { src -n 10.0.0.1 }",
    "tcp-request connection accept if { dst 10.0.0.1 }",
])
def test_other_rules_keep_the_frontend_on_the_python_path(rules):
    assert compiled(rules, other="backend be2\n stick-table type ip size 10 store conn_cur\n") is None


def test_a_table_the_pump_cannot_keep_keeps_the_frontend_on_the_python_path():
    for table in ("stick-table type ip size 10 store conn_cur,gpc0", "stick-table type string size 10 "
                  "store conn_cur", "stick-table type ip size 10 store conn_cur,bytes_in_rate(1s)"):
        assert compiled("tcp-request connection track-sc0 src\n"
                        " tcp-request connection reject if { sc0_conn_cur gt 3 }", table) is None


def test_use_backend_keeps_the_frontend_on_the_python_path():
    assert compiled("use_backend be if { src 10.0.0.1 }") is None


def test_an_unconditional_accept_ends_the_rules():
    assert compiled("tcp-request connection accept\n tcp-request connection track-sc0 src") == [
        LaneRule("accept"), LaneRule("track", 0, FE)]


def test_a_whitelist_of_addresses_and_networks_is_an_accept_on_the_clients_address():
    mapped = (0xFFFF0A000000).to_bytes(16, "big")  # ::ffff:10.0.0.0
    assert compiled("tcp-request connection accept if { src 10.0.0.0/8 ::1 }\n"
                    " tcp-request connection track-sc0 src\n"
                    " tcp-request connection reject if { sc0_conn_cur gt 3 }") == [
        LaneRule("accept", scope="address", networks=((mapped, 104), ((1).to_bytes(16, "big"), 128))),
        LaneRule("track", 0, FE), LaneRule("reject", 0, FE, "sc", "conn_cur", 4, HIGH)]
    assert compiled("tcp-request connection reject unless { src 192.168.1.7 }") == [
        LaneRule("reject", scope="address", negate=True,
                 networks=(((0xFFFF << 32 | 0xC0A80107).to_bytes(16, "big"), 128),))]


def test_an_unconditional_reject_rejects_everybody():
    assert compiled("tcp-request connection reject") == [LaneRule("reject")]
