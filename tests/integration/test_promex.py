"""The Prometheus metrics on a running proxy, held to the real haproxy 2.6.12: the same file (the
stats socket test's, with a ``mode http`` stats listener serving ``prometheus-exporter`` on
``/metrics`` and a stick table on ``ls``), the same traffic through real echo backends, the same
``set server be/s2 state drain``, both scraped over HTTP.  Every metric name haproxy exports for the
process, the proxies and the tables is in fastproxy's exposition, with haproxy's type, HELP text,
labels and series, save those ``fastproxy.promex`` leaves out as HTTP or DNS only; fastproxy's values
are those of its own ``show stat`` read on the stats socket at the same moment, and haproxy's for what
does not depend on timing.  ``Engine.metrics()`` gives the same exposition in-process.
"""

from __future__ import annotations

import asyncio
import math
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from fastproxy import promex
from fastproxy.config import load

from ..support import config, echo, free_port, running, serving, wait_until
from .test_stats_socket import (TIMING, ask, haproxy_after_traffic, needs_haproxy, table, traffic,
                                until_status, write_config)

TCP_PROXIES = {"fe", "be", "ls"}

# What promex.py leaves out (its docstring says why), as parsed family names.
LEFT_OUT = {"haproxy_process_http_comp_bytes_in", "haproxy_process_http_comp_bytes_out",
            "haproxy_process_limit_http_comp", "haproxy_process_current_zlib_memory",
            "haproxy_process_max_zlib_memory", "haproxy_process_failed_resolutions"}


# Where fastproxy's show stat differs from haproxy's, and so its metrics: ``lbtot`` counts every
# connection a server took, haproxy's leaves out those its stick table sent there (``ls``'s).
LBTOT_WITH_STICKINESS = {("haproxy_backend_loadbalanced", "ls"), ("haproxy_server_loadbalanced", "ls")}


def with_metrics_listener(cfg: Path) -> int:
    """Adds the stats listener HAProxy's exporter is served on, and a stick table to ``ls`` (its
    clients' addresses: one entry after the traffic); the listener's port."""
    port = free_port()
    text = cfg.read_text().replace("listen ls\n", "listen ls\n    stick-table type ip size 1k expire 1m\n"
                                                  "    stick on src\n")
    cfg.write_text(text + f"""\
listen stats
    mode http
    bind 127.0.0.1:{port}
    http-request use-service prometheus-exporter if {{ path /metrics }}
""")
    return port


async def scrape(port: int) -> tuple[str, str]:
    """GET /metrics: (content type, body)."""
    def get() -> tuple[str, str]:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
            return response.headers["Content-Type"], response.read().decode()
    return await asyncio.to_thread(get)


def parse(text: str) -> dict:
    return {family.name: family for family in text_string_to_metric_families(text)}


def series(family) -> set:
    """Every sample's labels but the version's value."""
    return {tuple(sorted((k, v if k != "version" else "") for k, v in s.labels.items()))
            for s in family.samples}


def values(family) -> dict:
    """{labels: value} of the process's or the TCP proxies' samples."""
    return {tuple(sorted(s.labels.items())): s.value for s in tcp_samples(family)}


def same(a: float, b: float) -> bool:
    return a == b or (math.isnan(a) and math.isnan(b))


def tcp_samples(family) -> list:
    """The samples of the process or of the TCP proxies (not of the stats listener itself)."""
    return [s for s in family.samples if s.labels.get("proxy", s.labels.get("name", "fe")) in TCP_PROXIES]


async def haproxy_scrape(cfg: Path, sock: Path, ports: dict, metrics_port: int) -> dict:
    async with haproxy_after_traffic(cfg, sock, ports):
        assert await ask(str(sock), "set server be/s2 state drain") == "\n"
        await asyncio.sleep(0.2)
        content_type, text = await scrape(metrics_port)
        assert content_type.startswith("text/plain; version=0.0.4")
        return parse(text)


@needs_haproxy
@pytest.mark.timeout(60)
async def test_every_tcp_metric_haproxy_exports_is_there_with_its_values_from_show_stat(tmp_path, pump_class):
    async with serving(echo) as s1, serving(echo) as s2, serving(echo) as s3:
        cfg, ports = write_config(tmp_path, (s1, s2, s3))
        sock = tmp_path / "admin.sock"
        metrics_port = with_metrics_listener(cfg)
        theirs = await haproxy_scrape(cfg, sock, ports, metrics_port)
        async with running(load([str(cfg)]), pump_class):
            await until_status(sock, ("be", "s4"), "DOWN")
            await until_status(sock, ("be", "s1"), "UP")
            await traffic(ports["fe"], 8, 1000)
            await traffic(ports["ls"], 3, 500)
            assert await ask(str(sock), "set server be/s2 state drain") == "\n"
            await asyncio.sleep(0.2)
            content_type, text = await scrape(metrics_port)
            rows = table(await ask(str(sock), "show stat"))
    assert content_type == promex.CONTENT_TYPE
    ours = parse(text)

    # Every name haproxy exports for the process and the TCP proxies, with its type, HELP and labels.
    wanted = {name: family for name, family in theirs.items() if tcp_samples(family)}
    missing = set(wanted) - set(ours) - LEFT_OUT
    assert not missing
    assert not set(ours) - set(wanted)
    for name, family in ours.items():
        haproxy = wanted[name]
        assert (family.type, family.documentation) == (haproxy.type, haproxy.documentation), name
        # The same series: the same proxies (the stats listener's too), servers and states (check
        # states only on checked servers), the same label names.
        assert series(family) == series(haproxy), name

    # The stick table's size and entries (one client address), as haproxy's.
    assert values(ours["haproxy_sticktable_used"]) == values(theirs["haproxy_sticktable_used"]) == {
        (("name", "ls"), ("type", "ip")): 1}

    # fastproxy's values are its show stat's.
    def value(name: str, **labels: str) -> float:
        (sample,) = [s for s in ours[name].samples if s.labels == labels]
        return sample.value

    for (proxy, svname), row in rows.items():
        if rows[(proxy, svname)]["mode"] == "http":
            continue  # the stats listener counts the scrape itself, in the middle of it
        section = {"FRONTEND": "frontend", "BACKEND": "backend"}.get(svname, "server")
        labels = {"proxy": proxy} if section != "server" else {"proxy": proxy, "server": svname}
        for field, metric in (("stot", "sessions"), ("bin", "bytes_in"), ("bout", "bytes_out"),
                              ("scur", "current_sessions"), ("weight", "weight"), ("uweight", "uweight"),
                              ("econ", "connection_errors"), ("chkfail", "check_failures"),
                              ("lbtot", "loadbalanced"), ("act", "active_servers")):
            name = f"haproxy_{section}_{metric}"
            if name not in ours:
                continue
            got = value(name, **labels)
            assert (math.isnan(got) if row[field] == "" else got == int(row[field])), (name, labels)
        status = value(f"haproxy_{section}_status", **labels, state=promex.server_state(row)
                       if section == "server" else ("UP" if row["status"] in ("OPEN", "UP") else "DOWN"))
        assert status == 1, (proxy, svname, row["status"])
        if row.get("check_status") and section == "server":
            check = row["check_status"].removeprefix("* ")
            assert value("haproxy_server_check_status", **labels, state=check) == 1
    assert value("haproxy_frontend_sessions", proxy="fe") == 8
    assert value("haproxy_server_bytes_in", proxy="be", server="s2") == 6000
    assert value("haproxy_server_status", proxy="be", server="s2", state="DRAIN") == 1
    assert value("haproxy_server_weight", proxy="be", server="s2") == 3  # drained, as haproxy's
    assert value("haproxy_backend_weight", proxy="be") == 1  # s1's alone

    # And they are haproxy's for the same traffic, but for what depends on timing (as show stat's).
    timing = {f"haproxy_{section}_{name}".removesuffix("_total") for field, name, _, _, _ in promex.PROXY
              if field in TIMING for section in ("frontend", "backend", "server")}
    for name, family in ours.items():
        if name.startswith("haproxy_process_") or name in timing:
            continue
        differ = {labels: (value, their) for labels, value in values(family).items()
                  if not same(value, their := values(wanted[name])[labels])
                  and (name, dict(labels).get("proxy")) not in LBTOT_WITH_STICKINESS}
        assert not differ, (name, differ)


async def test_an_embedding_program_reads_the_metrics_from_the_engine(pump_class):
    """``Engine.metrics()``: the same exposition in-process, without any stats section, valued from the
    pump's counters when asked (``Engine.stats()`` reads the same)."""
    async with serving(echo) as port:
        async with running(config([port]), pump_class) as engine:
            address = engine.state.frontends["fe"].listeners[0].sock.getsockname()
            await traffic(address[1], 3, 700)
            await wait_until(lambda: engine.stats()["servers"]["be/s1"]["conn_cur"] == 0)
            found = parse(engine.metrics().decode())
            only_servers = parse(engine.metrics(scopes={"server"}).decode())
            counters = engine.stats()
    sessions = found["haproxy_frontend_sessions"].samples[0].value
    assert sessions == counters["frontends"]["fe"]["conn_total"] == 3
    (s1,) = [s for s in found["haproxy_server_bytes_in"].samples
             if s.labels == {"proxy": "be", "server": "s1"}]
    assert s1.value == counters["servers"]["be/s1"]["bytes_in"] == 2100
    assert {name.split("_")[1] for name in only_servers} == {"server"}
