"""The Prometheus exposition (``fastproxy.promex``), sans-IO: the metrics of a running configuration
(test_show_stat's, after its reference traffic) parsed back with prometheus_client's own parser, held
to HAProxy 2.6.12's names, types, HELP texts and labels (the live comparison with haproxy is
tests/integration/test_promex.py) and to the ``show stat`` and ``show info`` values they come from.
"""

from __future__ import annotations

import math

import pytest
from prometheus_client.parser import text_string_to_metric_families

from fastproxy import promex, stats
from fastproxy.health import CheckResult

from .test_show_stat import Running, after_the_reference_traffic


def info_of(r: Running) -> dict:
    return stats.info(r.state, r.counters, version="0.1.0", started=r.clock.now - 5, started_wall=1.7e9,
                      now=r.clock.now, listeners=2, sampler=r.sampler)


def rows_of(r: Running) -> list[dict]:
    return stats.rows(r.view(), stats.number_proxies(r.state))


def families(r: Running, **options) -> dict:
    text = promex.exposition(info_of(r), rows_of(r), **options).decode()
    return {family.name: family for family in text_string_to_metric_families(text)}


def samples(family) -> dict:
    """{labels as a sorted tuple: value} of a family's samples."""
    return {tuple(sorted(s.labels.items())): s.value for s in family.samples}


def test_the_exposition_parses_and_every_sample_has_haproxys_prefix_and_labels():
    found = families(after_the_reference_traffic())
    assert found
    for family in found.values():
        section = family.name.split("_")[1]
        assert section in ("process", "frontend", "backend", "server"), family.name
        wanted = {"process": set(), "frontend": {"proxy"}, "backend": {"proxy"},
                  "server": {"proxy", "server"}}[section]
        for sample in family.samples:
            assert set(sample.labels) - {"state", "version"} == wanted, (family.name, sample.labels)


def test_names_types_and_help_texts_are_haproxys():
    found = families(after_the_reference_traffic())
    # A few as haproxy 2.6.12 writes them (the integration test compares them all, live).
    assert found["haproxy_frontend_bytes_in"].type == "counter"
    assert found["haproxy_frontend_bytes_in"].documentation == (
        "Total number of request bytes since process started")
    assert found["haproxy_server_check_last_change_seconds"].type == "gauge"
    assert found["haproxy_process_uptime_seconds"].documentation == (
        "How long ago this worker process was started (seconds)")
    assert found["haproxy_backend_status"].documentation == (
        "Current status of the service, per state label value.")
    text = promex.exposition(info_of(after_the_reference_traffic()), []).decode()
    assert "# TYPE haproxy_process_connections_total counter\nhaproxy_process_connections_total " in text
    assert "# TYPE haproxy_process_nbthread gauge\nhaproxy_process_nbthread 1.0\n" in text


def test_each_value_is_the_show_stat_field_it_comes_from():
    r = after_the_reference_traffic()
    found = families(r)
    rows = {(row["pxname"], row["svname"]): row for row in rows_of(r)}
    for field, name, kind, kinds, _ in promex.PROXY:
        if field in ("status", "check_status", "check_code", "check_duration") or field.startswith("agg_"):
            continue
        for section, letter in (("frontend", "F"), ("backend", "B"), ("server", "S")):
            if letter not in kinds:
                continue
            metric = found[f"haproxy_{section}_{name}".removesuffix("_total")]
            for labels, value in samples(metric).items():
                labels = dict(labels)
                svname = labels.get("server", section.upper())
                expected = rows[(labels["proxy"], svname)][field]
                if expected is None:
                    assert math.isnan(value), (name, labels)
                elif field in ("qtime", "ctime", "rtime", "ttime", "qtime_max", "ctime_max", "rtime_max",
                               "ttime_max"):
                    assert value == expected / 1000, (name, labels)
                else:
                    assert value == expected, (name, labels)


def test_the_sessions_and_bytes_after_the_reference_traffic():
    found = families(after_the_reference_traffic())
    assert samples(found["haproxy_frontend_sessions"])[(("proxy", "fe"),)] == 8
    assert samples(found["haproxy_frontend_bytes_out"])[(("proxy", "ls"),)] == 1500
    assert samples(found["haproxy_server_sessions"])[(("proxy", "be"), ("server", "s2"))] == 6
    assert samples(found["haproxy_backend_bytes_in"])[(("proxy", "be"),)] == 8000
    assert samples(found["haproxy_server_weight"])[(("proxy", "be"), ("server", "s2"))] == 3
    assert samples(found["haproxy_backend_weight"])[(("proxy", "be"),)] == 4
    # An empty field is NaN, as promex writes it: s2 has no maxconn, no check counters.
    assert math.isnan(samples(found["haproxy_server_limit_sessions"])[(("proxy", "be"), ("server", "s2"))])
    assert math.isnan(samples(found["haproxy_server_check_failures"])[(("proxy", "be"), ("server", "s2"))])
    assert samples(found["haproxy_server_check_failures"])[(("proxy", "be"), ("server", "s4"))] == 1


def test_status_is_a_state_set_per_kind_of_row():
    r = after_the_reference_traffic()
    r.servers.set_state(r.server("be/s2"), "DRAIN")
    found = families(r)

    def states(name, **labels):
        key = tuple(sorted(labels.items()))
        return {dict(k)["state"]: v for k, v in samples(found[name]).items()
                if tuple(sorted((n, x) for n, x in k if n != "state")) == key}

    assert states("haproxy_frontend_status", proxy="fe") == {"DOWN": 0, "UP": 1}
    assert states("haproxy_backend_status", proxy="be") == {"DOWN": 0, "UP": 1}
    server = {name: states("haproxy_server_status", proxy="be", server=name)
              for name in ("s1", "s2", "s3", "s4")}
    current = [next(k for k, v in s.items() if v == 1) for s in server.values()]
    assert current == ["UP", "DRAIN", "MAINT", "DOWN"]
    assert all(list(s) == ["DOWN", "UP", "MAINT", "DRAIN", "NOLB"] and sum(s.values()) == 1
               for s in server.values())
    assert states("haproxy_backend_agg_server_status", proxy="be") == {
        "DOWN": 1, "UP": 1, "MAINT": 1, "DRAIN": 1, "NOLB": 0}
    assert states("haproxy_backend_agg_check_status", proxy="be")["L4CON"] == 1
    assert states("haproxy_backend_agg_check_status", proxy="be")["L4OK"] == 1


@pytest.mark.parametrize("status, state", [
    ("UP", "UP"), ("UP 1/3", "UP"), ("no check", "UP"), ("DOWN", "DOWN"), ("DOWN 1/2", "DOWN"),
    ("MAINT", "MAINT"), ("DRAIN", "DRAIN"), ("DRAIN 2/3", "DRAIN"), ("NOLB", "NOLB"), ("NOLB 1/3", "NOLB"),
])
def test_a_servers_show_stat_word_gives_promexs_state(status, state):
    assert promex.server_state({"status": status}) == state


def test_check_status_code_and_duration_only_for_servers_whose_checks_run():
    r = after_the_reference_traffic()
    r.monitor.report(r.server("be/s1").check, CheckResult("L4OK", "", 0.0031))
    found = families(r)
    checked = {dict(k)["server"] for k in samples(found["haproxy_server_check_status"])}
    assert checked == {"s1", "s4"}  # s2 has no check, s3's are paused by its maintenance
    s1 = {dict(k)["state"]: v for k, v in samples(found["haproxy_server_check_status"]).items()
          if dict(k)["server"] == "s1"}
    assert list(s1) == list(promex.CHECK_STATES) and s1["L4OK"] == 1 and sum(s1.values()) == 1
    assert samples(found["haproxy_server_check_code"])[(("proxy", "be"), ("server", "s1"))] == 0
    duration = samples(found["haproxy_server_check_duration_seconds"])
    assert duration[(("proxy", "be"), ("server", "s1"))] == pytest.approx(0.003)  # show stat: 3 ms
    assert set(duration) == {(("proxy", "be"), ("server", "s1")), (("proxy", "be"), ("server", "s4"))}


def test_a_check_not_yet_ended_has_a_state_set_of_zeros_and_no_duration():
    r = Running()
    found = families(r)
    s1 = [v for k, v in samples(found["haproxy_server_check_status"]).items() if dict(k)["server"] == "s1"]
    assert len(s1) == len(promex.CHECK_STATES) and not any(s1)  # INI is not one of the states
    assert "haproxy_server_check_duration_seconds" not in found


def test_process_metrics_come_from_show_info():
    r = after_the_reference_traffic()
    info = info_of(r)
    found = families(r)
    for field, name, kind, _ in promex.PROCESS:
        family = found[("haproxy_process_" + name).removesuffix("_total")]
        assert family.type == kind
        (sample,) = family.samples
        if field == "Version":
            assert sample.labels == {"version": "0.1.0"} and sample.value == 1
        else:
            assert sample.value == info[field], name
    assert samples(found["haproxy_process_connections"])[()] == 11
    assert samples(found["haproxy_process_uptime_seconds"])[()] == 5


def test_what_is_http_or_dns_only_is_left_out():
    found = families(after_the_reference_traffic())
    assert not [name for name in found if "_http_" in name or name.endswith("intercepted_requests")
                or "zlib" in name or "resolutions" in name]


def test_scopes_and_no_maint_select_as_haproxys_query_string():
    r = after_the_reference_traffic()
    options = promex.query_options([("scope", "server"), ("scope", "backend"), ("no-maint", "")])
    found = families(r, **options)
    assert {name.split("_")[1] for name in found} == {"backend", "server"}
    assert {dict(k)["server"] for k in samples(found["haproxy_server_status"])} == {"s1", "s2", "s4", "a"}
    assert promex.query_options([]) == {"scopes": promex.SCOPES, "no_maint": False}
    assert promex.query_options([("scope", "*")])["scopes"] == promex.SCOPES
    assert promex.query_options([("scope", "global"), ("scope", "")])["scopes"] == frozenset()
    assert families(r, scopes=()) == {}
    with pytest.raises(ValueError):
        promex.query_options([("scope", "nonsense")])


def test_the_collector_reads_at_each_scrape():
    r = after_the_reference_traffic()
    reads = []

    def read():
        reads.append(1)
        return info_of(r), rows_of(r)

    collector = promex.StatsCollector(read)
    first = {m.name: m for m in collector.collect()}
    r.count(r.state.frontends["fe"].block, conn_total=9, bytes_in=9000, bytes_out=9000)
    second = {m.name: m for m in collector.collect()}
    assert len(reads) == 2
    assert first["haproxy_frontend_sessions"].samples[0].value == 8
    assert second["haproxy_frontend_sessions"].samples[0].value == 9


def test_every_field_read_is_a_show_stat_or_show_info_field():
    assert {field for field, *_ in promex.PROXY} <= set(stats.FIELDS)
    assert {field for field, *_ in promex.PROCESS} <= set(stats.INFO_FIELDS)
    assert promex.CONTENT_TYPE.startswith("text/plain; version=0.0.4")


def test_stick_tables_give_their_size_and_entries_last_declared_first():
    from fastproxy import sticktables
    from fastproxy.config import parse_text

    config = parse_text("defaults\n    mode tcp\nbackend first\n    stick-table type ip size 1k\n"
                        "backend second\n    stick-table type string len 32 size 200\n"
                        "backend none\n    server s 127.0.0.1:1\n", filename="t.cfg")
    tables = sticktables.tables_for(config)
    first = tables["first"]
    for address in ("10.0.0.1", "10.0.0.2"):
        first.store(first.parse_key(address))
    in_order = list(reversed(list(tables.values())))  # as Operations.tables() gives them
    text = promex.exposition({}, [], tables=in_order, scopes={"sticktable"}).decode()
    assert text == (
        "# HELP haproxy_sticktable_size Stick table size.\n# TYPE haproxy_sticktable_size gauge\n"
        'haproxy_sticktable_size{name="second",type="string"} 200.0\n'
        'haproxy_sticktable_size{name="first",type="ip"} 1024.0\n'
        "# HELP haproxy_sticktable_used Number of entries used in this stick table.\n"
        "# TYPE haproxy_sticktable_used gauge\n"
        'haproxy_sticktable_used{name="second",type="string"} 0.0\n'
        'haproxy_sticktable_used{name="first",type="ip"} 2.0\n')
    assert promex.exposition({}, [], tables=in_order, scopes={"server"}) == b""


def test_each_hashed_backends_table_digest_is_a_fastproxy_family_an_operator_counts():
    rings = [promex.RingTable("app", "maglev", 12, 0x0123456789ABCDEF),
             promex.RingTable("db", "ketama", 3, 7)]
    fleet = {"instance": "i1", "etcd": "connected", "revision": 42, "batches": 5, "changes": 17, "pending": 0}
    found = families(after_the_reference_traffic(), rings=rings, fleet=fleet)
    digests = found["fastproxy_backend_hash_table_digest"]
    assert digests.type == "gauge" and "fastproxy" in digests.documentation
    assert samples(digests) == {
        (("algorithm", "maglev"), ("digest", "0123456789abcdef"), ("proxy", "app")): 1.0,
        (("algorithm", "ketama"), ("digest", "0000000000000007"), ("proxy", "db")): 1.0}
    assert samples(found["fastproxy_backend_hash_table_servers"]) == {
        (("algorithm", "maglev"), ("proxy", "app")): 12.0, (("algorithm", "ketama"), ("proxy", "db")): 3.0}
    assert samples(found["fastproxy_fleet_etcd_connected"]) == {(): 1.0}
    assert samples(found["fastproxy_fleet_etcd_revision"]) == {(): 42.0}
    assert found["fastproxy_fleet_changes"].type == "counter"
    assert samples(found["fastproxy_fleet_changes"]) == {(): 17.0}
    # Written with the backends (and the fleet with the process), as ?scope= selects them.
    only_servers = families(after_the_reference_traffic(), rings=rings, fleet=fleet, scopes={"server"})
    assert not [name for name in only_servers if name.startswith("fastproxy_")]
    unreachable = families(after_the_reference_traffic(), fleet={**fleet, "etcd": "unreachable"})
    assert samples(unreachable["fastproxy_fleet_etcd_connected"]) == {(): 0.0}
    assert "fastproxy_backend_hash_table_digest" not in unreachable  # no hashed backend, no family
