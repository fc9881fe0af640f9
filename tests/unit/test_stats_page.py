"""The stats page's rules, sans-IO: routes under the ``stats uri`` prefix with HAProxy's options,
Basic credentials, the ``stats admin`` rule, the admin form's ``;st=`` codes as stats.c counts them,
HAProxy's row classes and number and time formats."""

from __future__ import annotations

import base64

from fastproxy import acl as acls
from fastproxy import stats_page
from fastproxy.config.model import PrometheusRoute, StatsPage, StatsUser


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


PAGE = StatsPage(uri="/stats", auth=[StatsUser("admin", "secret"), StatsUser("ro", "")], monitor_uri="/up",
                 prometheus=[PrometheusRoute("/metrics")])


def test_routes_follow_haproxys_order_and_options():
    assert stats_page.route(PAGE, "/up").kind == "monitor"
    assert stats_page.route(PAGE, "/up?x").kind == "unavailable"  # monitor-uri matches the whole URI
    assert stats_page.route(PAGE, "/metrics?x=1").kind == "prometheus"
    assert stats_page.route(PAGE, "/other").kind == "unavailable"
    request = stats_page.route(PAGE, "/stats;csv;up;no-maint;norefresh;st=DONE?scope=web").page
    assert request == stats_page.PageRequest(format="csv", hide_down=True, hide_maint=True, no_refresh=True,
                                             status="DONE", scope="web")
    assert stats_page.route(PAGE, "/statsfoo").page == stats_page.PageRequest()  # a prefix, as HAProxy
    assert stats_page.route(PAGE, "/stats;st=EVIL").page.status is None
    assert stats_page.route(StatsPage(), "/haproxy?stats").kind == "unavailable"  # no page enabled


def test_credentials_are_checked_against_every_account():
    assert stats_page.authorized(PAGE, basic("admin", "secret"))
    assert stats_page.authorized(PAGE, basic("ro", ""))
    for header in (None, "", basic("admin", "wrong"), basic("nobody", "secret"), "Basic !!!", "Bearer x",
                   "Basic " + base64.b64encode(b"nocolon").decode()):
        assert not stats_page.authorized(PAGE, header), header
    assert stats_page.authorized(StatsPage(uri="/"), None)  # no stats auth: open
    assert stats_page.realm(PAGE) == "HAProxy Statistics"


def test_the_admin_rule_is_evaluated_on_the_clients_address():
    condition = acls.parse_condition(["if", "LOCALHOST"], {})
    page = StatsPage(uri="/", admin=condition)
    local = acls.ConnInfo("127.0.0.1", 4000, "127.0.0.1", 80)
    remote = acls.ConnInfo("192.0.2.1", 4000, "127.0.0.1", 80)
    assert stats_page.admin_allowed(page, {}, local) and not stats_page.admin_allowed(page, {}, remote)
    assert not stats_page.admin_allowed(StatsPage(uri="/"), {}, local)  # no stats admin: never


def test_the_admin_form_returns_haproxys_status_codes():
    servers = {"s1": True, "s2": True, "nocheck": False}

    def status(body: str) -> str:
        form = stats_page.parse_admin_form(body)
        return stats_page.admin_status(form, backend_known=lambda name: name in ("be", "#3"),
                                       apply=lambda b, s, a: servers.get(s))
    assert status("s=s1&s=s2&action=drain&b=%233") == "DONE"
    assert status("s=s1&s=nosuch&action=maint&b=be") == "PART"
    assert status("s=nosuch&action=maint&b=be") == "ERRP"
    assert status("s=nocheck&action=dhlth&b=be") == "NONE"  # does not apply: not counted
    assert status("action=maint&b=be") == "NONE"
    assert status("s=s1&action=bogus&b=be") == "ERRP"
    assert status("s=s1&action=&b=be") == "ERRP"
    assert status("s=s1&action=maint&b=nosuch") == "ERRP"
    assert stats_page.parse_admin_form("s=s1&action=disable&b=be").action == "maint"  # HAProxy's old names


def test_server_rows_take_haproxys_classes():
    def cls(status: str, backup: int = 0) -> str:
        return stats_page.row_class({"status": status, "bck": backup})
    assert [cls(s) for s in ("UP", "DOWN", "DOWN 1/2", "UP 2/3", "NOLB", "DRAIN", "no check", "MAINT")] == [
        "active_up", "active_down", "active_going_up", "active_going_down", "active_nolb", "active_draining",
        "active_no_check", "maintain"]
    assert cls("UP", 1) == "backup_up" and cls("MAINT", 1) == "maintain"


def test_numbers_and_times_are_written_as_haproxy_writes_them():
    assert stats_page.u2h(1000) == '<span class="rls">1</span>000'
    assert stats_page.u2h(1234567) == '<span class="rls">1</span><span class="rls">234</span>567'
    assert stats_page.u2h(999) == "999" and stats_page.u2h(None) == ""
    assert [stats_page.human_time(t) for t in (0, 5, 65, 3600, 3661, 90061, -1)] == [
        "0s", "5s", "1m5s", "1h", "1h1m", "1d1h", "?"]


def test_scope_limits_the_proxies_by_name_and_by_the_pages_text():
    page = StatsPage(uri="/", scope=["app", "."])
    everything = stats_page.PageRequest()
    assert stats_page.in_scope(page, everything, "app", "stats")
    assert stats_page.in_scope(page, everything, "stats", "stats")
    assert not stats_page.in_scope(page, everything, "db", "stats")
    assert stats_page.in_scope(StatsPage(uri="/"), stats_page.PageRequest(scope="PP"), "app", "stats")
    assert not stats_page.in_scope(StatsPage(uri="/"), stats_page.PageRequest(scope="x"), "app", "stats")


def test_typed_and_json_are_served_under_the_uri_as_haproxy_serves_them():
    assert stats_page.route(PAGE, "/stats;json").page.format == "json"
    assert stats_page.route(PAGE, "/stats;typed;norefresh").page.format == "typed"
    assert stats_page.route(PAGE, "/stats;json-schema").page.format == "html"  # not served: the page
    assert stats_page.route(PAGE, "/stats;csv;json").page.format == "csv"  # HAProxy's order
