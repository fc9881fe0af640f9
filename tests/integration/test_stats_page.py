"""The stats listener on real sockets, driven by a real HTTP client (aiohttp's): a ``listen stats`` in
``mode http`` beside TCP proxies serves HAProxy's page with its credentials, ``;csv`` (the text of
``show stat``), the admin form (acting as ``set server`` does), ``monitor-uri``, ``stats scope`` and
``stats hide-version``; the page's charts read ``;history``.
"""

from __future__ import annotations

import asyncio
import base64
import json
from pathlib import Path

import aiohttp
import pytest

from fastproxy.config import load

from ..support import echo, free_port, running, serving
from .test_stats_socket import ask, table, traffic

def credentials(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


ADMIN = credentials("admin", "secret")


def write_config(tmp_path: Path, ports: dict, page: str = "") -> Path:
    path = tmp_path / "haproxy.cfg"
    path.write_text(f"""\
global
    nbthread 1
    stats socket {tmp_path}/admin.sock level admin
defaults
    mode tcp
    timeout connect 2s
    timeout client 10s
    timeout server 10s
frontend fe
    bind 127.0.0.1:{ports['fe']}
    default_backend be
backend be
    server s1 127.0.0.1:{ports['s1']}
    server s2 127.0.0.1:{ports['s2']} check inter 200ms
    server s3 127.0.0.1:{ports['s3']} backup
listen other
    bind 127.0.0.1:{ports['other']}
    server o1 127.0.0.1:{ports['s1']}
listen stats
    mode http
    bind 127.0.0.1:{ports['stats']}
    stats enable
    stats uri /stats
    stats realm Fast\\ Stats
    stats auth admin:secret
    stats auth viewer:view
    acl local src 127.0.0.1
    stats admin if local {{ src 127.0.0.1 }}
    monitor-uri /healthz
    http-request use-service prometheus-exporter if {{ path /metrics }}
{page}""")
    return path


@pytest.fixture
def ports():
    return {name: free_port() for name in ("fe", "other", "stats", "s1", "s2", "s3")}


async def get(url: str, **kwargs) -> tuple[int, dict, str]:
    async with aiohttp.ClientSession() as client:
        async with client.get(url, allow_redirects=False, **kwargs) as response:
            return response.status, dict(response.headers), await response.text()


async def test_the_page_asks_for_credentials_and_serves_every_proxy_with_them(tmp_path, ports, pump_class):
    async with serving(echo) as s1, serving(echo) as s2:
        ports.update(s1=s1, s2=s2)
        async with running(load([str(write_config(tmp_path, ports))]), pump_class):
            base = f"http://127.0.0.1:{ports['stats']}"
            status, headers, body = await get(f"{base}/stats")
            assert status == 401 and headers["WWW-Authenticate"] == 'Basic realm="Fast Stats"'
            assert "401 Unauthorized" in body
            status, _, _ = await get(f"{base}/stats", headers=credentials("admin", "wrong"))
            assert status == 401
            viewer = credentials("viewer", "view")
            status, headers, page = await get(f"{base}/stats", headers=viewer)
            assert status == 200 and headers["Content-Type"].startswith("text/html")
            anchors = ("fe/Frontend", "be/s1", "be/s2", "be/s3", "be/Backend", "other/o1", "stats/Frontend")
            for anchor in anchors:
                assert f'<a name="{anchor}">' in page, anchor
            assert 'class="backup_no_check" data-server="be/s3"' in page
            assert "fastproxy version" in page and "Statistics Report for pid" in page
            # A prefix of the uri serves the page too, as HAProxy's; another path is HAProxy's 503.
            assert (await get(f"{base}/stats/anything", headers=ADMIN))[0] == 200
            status, _, body = await get(f"{base}/elsewhere", headers=ADMIN)
            assert status == 503 and "No server is available" in body


async def test_monitor_uri_answers_without_credentials(tmp_path, ports, pump_class):
    async with running(load([str(write_config(tmp_path, ports))]), pump_class):
        status, _, body = await get(f"http://127.0.0.1:{ports['stats']}/healthz")
        assert status == 200 and "Service ready." in body


async def test_csv_is_show_stat_and_the_page_filters_as_haproxy(tmp_path, ports, pump_class):
    async with serving(echo) as s1, serving(echo) as s2:
        ports.update(s1=s1, s2=s2)
        async with running(load([str(write_config(tmp_path, ports))]), pump_class):
            await traffic(ports["fe"], 4, 300)
            base = f"http://127.0.0.1:{ports['stats']}/stats"
            timing = {"lastchg", "downtime", "lastsess", "check_duration", "rate", "rate_max", "conn_rate",
                      "conn_rate_max", "smax", "addr", "algo"}  # addresses: shown with show-legends only

            def comparable(text: str) -> dict:  # the stats proxy counts this very request between the two
                return {row: {k: v for k, v in fields.items() if k not in timing}
                        for row, fields in table(text).items() if row[0] != "stats"}
            # The page asked between two show stat that agree: s2's check running ("* " before its
            # status) or the last client's pair ending between two readings makes them differ.
            for _ in range(50):
                before = await ask(str(tmp_path / "admin.sock"), "show stat")
                status, headers, csv_text = await get(f"{base};csv", headers=ADMIN)
                shown = await ask(str(tmp_path / "admin.sock"), "show stat")
                if comparable(before) == comparable(shown):
                    break
                await asyncio.sleep(0.02)
            assert status == 200 and headers["Content-Type"].startswith("text/plain")
            assert csv_text.splitlines()[0] == shown.splitlines()[0]
            assert comparable(csv_text) == comparable(shown)
            assert table(csv_text)[("fe", "FRONTEND")]["stot"] == "4"
            # ;up leaves out the servers that are down (s2's checks fail: nothing listens on s3's port)
            await asyncio.sleep(0.8)
            up = table((await get(f"{base};csv;up", headers=ADMIN))[2])
            assert ("be", "s1") in up and ("be", "s3") in up and ("be", "s2") in up
            assert up[("be", "BACKEND")]["status"].startswith("UP (")
            scoped = table((await get(f"{base};csv?scope=oth", headers=ADMIN))[2])
            assert {row[0] for row in scoped} == {"other"}


async def test_an_admin_post_drains_a_server_as_set_server_does(tmp_path, ports, pump_class):
    async with running(load([str(write_config(tmp_path, ports))]), pump_class):
        sock = str(tmp_path / "admin.sock")
        url = f"http://127.0.0.1:{ports['stats']}/stats"
        async with aiohttp.ClientSession(headers=ADMIN) as client:
            async with client.post(url, data=[("s", "s1"), ("s", "s3"), ("action", "drain"), ("b", "#3")],
                                   allow_redirects=False) as response:
                assert response.status == 303 and response.headers["Location"] == "/stats;st=DONE"
            rows = table(await ask(sock, "show stat"))
            assert rows[("be", "s1")]["status"] == "DRAIN" and rows[("be", "s3")]["status"] == "DRAIN"
            async with client.post(url, data={"s": "s1", "action": "maint", "b": "be"},
                                   allow_redirects=False) as response:
                assert response.headers["Location"] == "/stats;st=DONE"
            assert table(await ask(sock, "show stat"))[("be", "s1")]["status"] == "MAINT"
            for data, code in (({"s": "nosuch", "action": "ready", "b": "be"}, "ERRP"),
                               ({"s": ["s1", "nosuch"], "action": "ready", "b": "be"}, "PART"),
                               ({"action": "ready", "b": "be"}, "NONE"),
                               ({"s": "s1", "action": "bogus", "b": "be"}, "ERRP"),
                               ({"s": "s1", "action": "ready", "b": "nosuch"}, "ERRP")):
                fields = [(k, v) for k, values in data.items() for v in ([values] if isinstance(values, str)
                                                                          else values)]
                async with client.post(url, data=fields, allow_redirects=False) as response:
                    assert response.headers["Location"] == f"/stats;st={code}", data
            async with client.get(f"{url};st=DONE") as response:
                assert "Action processed successfully." in await response.text()


async def test_an_admin_post_without_the_admin_rule_is_denied(tmp_path, ports, pump_class):
    cfg = write_config(tmp_path, ports).read_text().replace(
        "stats admin if local { src 127.0.0.1 }", "stats admin if FALSE")
    path = tmp_path / "denied.cfg"
    path.write_text(cfg)
    async with running(load([str(path)]), pump_class):
        url = f"http://127.0.0.1:{ports['stats']}/stats"
        async with aiohttp.ClientSession(headers=ADMIN) as client:
            async with client.get(url) as response:
                assert "<select name=action>" not in await response.text()
            async with client.post(url, data={"s": "s1", "action": "maint", "b": "be"},
                                   allow_redirects=False) as response:
                assert response.headers["Location"] == "/stats;st=DENY"
        rows = table(await ask(str(tmp_path / "admin.sock"), "show stat"))
        assert rows[("be", "s1")]["status"] == "no check"


async def test_stats_scope_and_hide_version(tmp_path, ports, pump_class):
    scope = "    stats scope be\n    stats scope .\n    stats hide-version\n"
    path = write_config(tmp_path, ports, page=scope)
    async with running(load([str(path)]), pump_class):
        status, _, page = await get(f"http://127.0.0.1:{ports['stats']}/stats", headers=ADMIN)
        assert status == 200
        assert '<a name="be/s1">' in page and '<a name="stats/Frontend">' in page
        assert '<a name="other/o1">' not in page and '<a name="fe/Frontend">' not in page
        assert "version" not in page and "pid = " not in page
        csv_rows = table((await get(f"http://127.0.0.1:{ports['stats']}/stats;csv", headers=ADMIN))[2])
        assert {row[0] for row in csv_rows} == {"be", "stats"}


async def test_the_history_feeds_the_charts_once_a_second(tmp_path, ports, pump_class):
    async with serving(echo) as s1:
        ports.update(s1=s1)
        async with running(load([str(write_config(tmp_path, ports))]), pump_class):
            await traffic(ports["other"], 2, 2000)
            url = f"http://127.0.0.1:{ports['stats']}/stats;history"
            for _ in range(100):  # two samples, a second apart, the last after the traffic: 2 s, or
                await asyncio.sleep(0.1)  # longer when a loaded machine delays the sampler
                status, headers, body = await get(url, headers=ADMIN)
                assert status == 200 and headers["Content-Type"].startswith("application/json")
                history = json.loads(body)
                points = history.get("fe/other", [])
                if len(points) >= 2 and points[-1][2] == 4000:
                    break
            assert len(points) >= 2 and points[-1][2] == 4000 and points[-1][3] == 4000
            assert [point[0] for point in points] == sorted(point[0] for point in points)
            assert {"fe/fe", "be/be", "be/other", "fe/stats", "be/stats"} <= set(history)


async def test_a_stats_listener_without_a_stats_socket_samples_the_rates(tmp_path, ports, pump_class):
    async with serving(echo) as s1:
        ports.update(s1=s1)
        text = write_config(tmp_path, ports).read_text().replace(
            f"    stats socket {tmp_path}/admin.sock level admin\n", "")
        path = tmp_path / "nosocket.cfg"
        path.write_text(text)
        async with running(load([str(path)]), pump_class) as engine:
            assert engine.runtime_api is None
            await traffic(ports["other"], 3, 100)
            for _ in range(60):  # the sampler's next round (a second, unless the machine is loaded)
                await asyncio.sleep(0.1)
                rows = table((await get(f"http://127.0.0.1:{ports['stats']}/stats;csv", headers=ADMIN))[2])
                if rows[("other", "FRONTEND")]["conn_rate_max"] == "3":
                    break
            assert rows[("other", "FRONTEND")]["conn_rate_max"] == "3"


async def test_the_exporter_is_served_on_its_path_without_the_pages_credentials(tmp_path, ports, pump_class):
    async with serving(echo) as s1:
        ports.update(s1=s1)
        async with running(load([str(write_config(tmp_path, ports))]), pump_class):
            await traffic(ports["other"], 2, 100)
            status, headers, body = await get(f"http://127.0.0.1:{ports['stats']}/metrics")
            assert status == 200 and headers["Content-Type"].startswith("text/plain; version=0.0.4")
            assert 'haproxy_frontend_connections_total{proxy="other"} 2.0' in body
            assert "haproxy_server_status" in body and "haproxy_process_" in body


async def test_json_and_typed_are_show_stats_and_the_page_names_the_node(tmp_path, ports, pump_class):
    path = write_config(tmp_path, ports, page="    stats show-node\n    stats show-desc\n")
    path.write_text(path.read_text().replace("    nbthread 1\n",
                                             "    nbthread 1\n    node edge-1\n    description Rack 4\n"))
    async with running(load([str(path)]), pump_class):
        base = f"http://127.0.0.1:{ports['stats']}/stats"
        status, headers, body = await get(f"{base};json", headers=ADMIN)
        assert status == 200 and headers["Content-Type"].startswith("application/json")
        socket_json = json.loads(await ask(str(tmp_path / "admin.sock"), "show stat json"))
        page_json = json.loads(body)

        def names(doc: list) -> list:  # each row's identity and its name fields (the checks' move on)
            return [[(f["objType"], f["proxyId"], f["id"], f["field"]["name"], f["value"]["value"])
                     for f in row if f["field"]["name"] in ("pxname", "svname")] for row in doc]
        assert names(page_json) == names(socket_json)
        status, headers, typed = await get(f"{base};typed", headers=ADMIN)
        assert headers["Content-Type"].startswith("text/plain")
        assert "F.2.0.1.svname.1:KNS:str:FRONTEND" in typed
        page = (await get(base, headers=ADMIN))[2]
        assert "<title>Statistics Report for HAProxy on edge-1</title>" in page
        assert " on edge-1: Rack 4</h2>" in page
