"""The stats page, sans-IO: what a stats listener answers to one HTTP request, as HAProxy 2.6's
(src/stats.c ``stats_dump_html_*``, src/http_ana.c ``http_handle_stats``), computed from plain data.

``route`` reads a request's URI against a ``StatsPage``: the ``monitor-uri``, the exporter's paths, the
page under its ``stats uri`` prefix with HAProxy's options after it (``;csv``, ``;typed``, ``;json``,
``;norefresh``, ``;up``, ``;no-maint``, ``;st=<code>``, ``scope=<text>``, and fastproxy's ``;history``,
the JSON the charts read), or nothing (HAProxy's 503). ``authorized`` checks Basic credentials against
``stats auth``; ``admin_allowed`` evaluates ``stats admin`` over the client's addresses.
``parse_admin_form`` reads the page's POST as HAProxy does (``b``, ``action``, ``s`` repeated) and
``apply_admin`` returns the ``;st=`` code the redirect carries. ``html`` writes the page from
``stats.rows`` and ``stats.info``: a table per proxy (frontend, servers, backend), servers coloured by
state with HAProxy's classes, the admin form, and a live chart per frontend and backend drawn by inline
script from the history (no external asset). The aiohttp wiring is ``stats_http``'s.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import importlib.resources
import html as html_escape
import json
import os
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Optional
from urllib.parse import parse_qsl

from . import acl as acls
from . import stats
from .config.model import Acl, StatsPage

Row = dict[str, stats.Value]

DEFAULT_REALM = "HAProxy Statistics"  # HAProxy's STATS_DEFAULT_REALM
SCOPE_MAX = 20  # STAT_SCOPE_TXT_MAXLEN

UNAUTHORIZED = ("<html><body><h1>401 Unauthorized</h1>\nYou need a valid user and password to access this "
                "content.\n</body></html>\n")
SERVICE_READY = "<html><body><h1>200 OK</h1>\nService ready.\n</body></html>\n"
BAD_REQUEST = "<html><body><h1>400 Bad request</h1>\nYour browser sent an invalid request.\n</body></html>\n"
UNAVAILABLE = ("<html><body><h1>503 Service Unavailable</h1>\nNo server is available to handle this "
               "request.\n</body></html>\n")


# --- routing a request ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class PageRequest:
    """What the URI asks of the page (the options HAProxy reads after the ``stats uri`` prefix)."""

    format: str = "html"  # "html" | "csv" | "typed" | "json" | "history"
    hide_down: bool = False  # ;up
    hide_maint: bool = False  # ;no-maint
    no_refresh: bool = False  # ;norefresh
    status: Optional[str] = None  # ;st=DONE|PART|NONE|DENY|EXCD|ERRP
    scope: str = ""  # scope=<text>: proxies whose name contains it


@dataclass(frozen=True)
class Route:
    """Which answer a request gets: ``monitor``, ``prometheus``, ``page`` (with its options) or
    ``unavailable``."""

    kind: str
    page: Optional[PageRequest] = None


STATUS_CODES = ("DONE", "PART", "NONE", "DENY", "EXCD", "ERRP")


def route(page: StatsPage, uri: str) -> Route:
    """Where a request for ``uri`` (the raw path and query, as received) goes, in HAProxy's order:
    monitor-uri first, then the exporter's rules, then the stats page."""
    path = uri.split("?", 1)[0]
    if page.monitor_uri is not None and uri == page.monitor_uri:
        return Route("monitor")
    if any(path.startswith(rule.path) if rule.prefix else path == rule.path for rule in page.prometheus):
        return Route("prometheus")
    if page.uri is None or not uri.startswith(page.uri):
        return Route("unavailable")
    rest = uri[len(page.uri):]
    status = None
    match = re.search(r";st=([A-Z]{4})", rest)
    if match and match[1] in STATUS_CODES:
        status = match[1]
    scope = ""
    match = re.search(r"scope=([^&;]*)", rest)
    if match:
        scope = match[1][:SCOPE_MAX]
    # HAProxy tests ;csv, then ;typed, then ;json (its ;json-schema is not served here).
    fmt = "history" if ";history" in rest else "csv" if ";csv" in rest else "typed" if ";typed" in rest \
        else "json" if ";json" in rest and ";json-schema" not in rest else "html"
    return Route("page", PageRequest(format=fmt, hide_down=";up" in rest, hide_maint=";no-maint" in rest,
                                     no_refresh=";norefresh" in rest, status=status, scope=scope))


def authorized(page: StatsPage, header: Optional[str]) -> bool:
    """Whether an ``Authorization`` header holds one of the ``stats auth`` accounts (any request is,
    without ``stats auth``)."""
    if not page.auth:
        return True
    if not header or not header[:6].lower() == "basic ":
        return False
    try:
        decoded = base64.b64decode(header[6:].strip(), validate=True).decode("latin-1")
        user, colon, password = decoded.partition(":")
    except (binascii.Error, ValueError):
        return False
    if not colon:
        return False
    found = False
    for account in page.auth:  # every account compared, in constant time each
        found |= hmac.compare_digest(account.user.encode("latin-1", "replace"), user.encode("latin-1")) & \
            hmac.compare_digest(account.password.encode("latin-1", "replace"), password.encode("latin-1"))
    return found


def realm(page: StatsPage) -> str:
    return page.realm or DEFAULT_REALM


def admin_allowed(page: StatsPage, acl_table: Mapping[str, Sequence[Acl]], client: acls.ConnInfo) -> bool:
    """``stats admin if|unless <condition>`` for this client (never without the keyword)."""
    if page.admin is None:
        return False
    return acls.evaluate(page.admin, acl_table, client)


def in_scope(page: StatsPage, request: PageRequest, proxy_name: str, own_name: str) -> bool:
    """``stats scope`` (``.`` is the stats proxy itself) and the page's ``scope=`` text (a part of the
    name, any case), as stats.c applies them to every format."""
    if page.scope and not any(proxy_name == (own_name if name == "." else name) for name in page.scope):
        return False
    return not request.scope or request.scope.lower() in proxy_name.lower()


# --- the admin form ----------------------------------------------------------------------------------

ACTIONS = {  # the page's select, in HAProxy's order: value -> label
    "ready": "Set state to READY", "drain": "Set state to DRAIN", "maint": "Set state to MAINT",
    "dhlth": "Health: disable checks", "ehlth": "Health: enable checks", "hrunn": "Health: force UP",
    "hnolb": "Health: force NOLB", "hdown": "Health: force DOWN", "dagent": "Agent: disable checks",
    "eagent": "Agent: enable checks", "arunn": "Agent: force UP", "adown": "Agent: force DOWN",
    "shutdown": "Kill Sessions",
}
# HAProxy's older names for the same actions.
OLD_ACTIONS = {"disable": "maint", "enable": "ready", "stop": "drain", "start": "ready"}


@dataclass
class AdminForm:
    """A POST of the page's form: the backend (``b``: a name or ``#<id>``), the action, the servers."""

    backend: Optional[str] = None
    action: Optional[str] = None
    servers: list[str] = field(default_factory=list)
    valid: bool = True  # False: an unknown action or a malformed parameter (HAProxy's ERRP)


def parse_admin_form(body: str) -> AdminForm:
    """The form's fields as stats.c reads them: the last ``b`` and ``action`` win, every ``s`` counts."""
    form = AdminForm()
    try:
        fields = parse_qsl(body, keep_blank_values=True, strict_parsing=False, errors="strict")
    except (UnicodeDecodeError, ValueError):
        return AdminForm(valid=False)
    for key, value in fields:
        if key == "b":
            form.backend = value
        elif key == "action":
            if value in ACTIONS or value in OLD_ACTIONS:
                form.action = OLD_ACTIONS.get(value, value)
            else:
                form.valid = False
        elif key == "s":
            form.servers.append(value)
    return form


def admin_status(form: AdminForm, *, backend_known: Callable[[str], bool],
                 apply: Callable[[str, str, str], Optional[bool]]) -> str:
    """Apply the form through ``apply(backend, server, action)`` (True: done, False: the action does
    not apply to that server, None: no such server) and return the ``;st=`` code the redirect carries,
    counted as stats.c counts: DONE, PART (some servers unknown), ERRP (invalid form, unknown backend,
    or nothing done), NONE (no server named, or none the action applies to)."""
    if not form.valid or (form.backend is not None and not backend_known(form.backend)):
        return "ERRP"
    if not form.servers or form.backend is None or form.action is None:
        return "NONE"
    total = altered = 0
    for server in form.servers:
        result = apply(form.backend, server, form.action)
        if result is not False:
            total += 1
            altered += bool(result)
    if total == 0:
        return "NONE"
    if altered == 0:
        return "ERRP"
    return "DONE" if altered == total else "PART"


# --- HTML --------------------------------------------------------------------------------------------

def _asset(name: str) -> str:
    return importlib.resources.files(__package__).joinpath(name).read_text(encoding="utf-8")


# HAProxy's style sheet (its classes and colours) and the charts' script, inlined in every page.
STYLE = _asset("stats_page.css")

CHART_SCRIPT = _asset("stats_page.js")


def _e(text: Any) -> str:
    return html_escape.escape(str(text), quote=True)


def u2h(value: stats.Value) -> str:
    """HAProxy's U2H: an integer with its thousands set apart (``<span class="rls">1</span>000``)."""
    if value is None or value == "":
        return ""
    text = str(value)
    if not text.isdigit():
        return _e(text)
    head, groups = text[:len(text) % 3 or 3], []
    rest = text[len(head):]
    while rest:
        groups.append(rest[:3])
        rest = rest[3:]
    if not groups:
        return head
    parts = [head] + groups
    return "".join(f'<span class="rls">{part}</span>' for part in parts[:-1]) + parts[-1]


def human_time(seconds: Optional[int]) -> str:
    """HAProxy's human_time(): two units at most (``1d2h``, ``3m5s``, ``0s``), ``?`` for a negative."""
    if seconds is None:
        return ""
    t = int(seconds)
    if t < 0:
        return "?"
    out, count = "", 2
    if t >= 86400:
        out += f"{t // 86400}d"
        count -= 1
    if count and t % 86400 // 3600:
        out += f"{t % 86400 // 3600}h"
        count -= 1
    if count and t % 3600 // 60:
        out += f"{t % 3600 // 60}m"
        count -= 1
    if (count and t % 60) or not t:
        out += f"{t % 60}s"
    return out


def row_class(row: Row) -> str:
    """A server row's class, as stats.c's stats_dump_fields_html chooses it from the status."""
    status = str(row["status"] or "")
    if status.startswith("MAINT"):
        return "maintain"
    side = "backup" if row["bck"] else "active"
    words = status.split(" ")
    going = len(words) > 1 and "/" in words[1]
    if words[0] == "DOWN":
        style = "going_up" if going else "down"
    elif words[0] in ("UP", "NOLB", "DRAIN") and going:
        style = "going_down"
    elif words[0] == "NOLB":
        style = "nolb"
    elif words[0] == "DRAIN":
        style = "draining"
    elif status == "no check":
        style = "no_check"
    else:
        style = "up"
    return f"{side}_{style}"


_HEADERS = (
    '<tr class="titre"><th rowspan=2>{check_all}</th><th rowspan=2></th><th colspan=3>Queue</th>'
    '<th colspan=3>Session rate</th><th colspan=6>Sessions</th><th colspan=2>Bytes</th>'
    '<th colspan=2>Denied</th><th colspan=3>Errors</th><th colspan=2>Warnings</th>'
    '<th colspan=9>Server</th></tr>\n<tr class="titre">'
    + "".join(f"<th>{name}</th>" for name in (
        "Cur Max Limit Cur Max Limit Cur Max Limit Total LbTot Last In Out Req Resp Req Conn Resp Retr Redis "
        "Status LastChk Wght Act Bck Chk Dwn Dwntme Thrtle").split())
    + "\n</tr>")

_MESSAGES = {
    "DONE": ("active_up", "Action processed successfully."),
    "PART": ("active_going_down", "Action partially processed.<br>Some server names are probably unknown "
             "or ambiguous (duplicated names in the backend)."),
    "NONE": ("active_going_down", "Nothing has changed."),
    "DENY": ("active_down", "<b>Action denied.</b>"),
    "EXCD": ("active_down", "<b>Action not processed : the buffer couldn't store all the data.<br>You "
             "should retry with less servers at a time.</b>"),
    "ERRP": ("active_down", "Action not processed because of invalid parameters.<ul><li>The action is "
             "maybe unknown.</li><li>Invalid key parameter (empty or too long).</li><li>The backend name "
             "is probably unknown or ambiguous (duplicated names).</li><li>Some server names are probably "
             "unknown or ambiguous (duplicated names in the backend).</li></ul>"),
}


@dataclass
class PageContext:
    """Everything ``html`` writes the page from."""

    page: StatsPage
    request: PageRequest
    uri: str  # the ``stats uri`` prefix
    rows: list[Row]
    info: dict[str, stats.Value]
    admin: bool
    node: str = field(default_factory=lambda: os.uname().nodename)  # the global ``node``, or the host's
    description: str = ""  # the global ``description``


def html(ctx: PageContext) -> str:
    """The whole page."""
    page, request, uri = ctx.page, ctx.request, ctx.uri
    node = page.show_node or ctx.node
    out = ['<!DOCTYPE HTML PUBLIC "-//W3C//DTD HTML 4.01 Transitional//EN"\n'
           '"http://www.w3.org/TR/html4/loose.dtd">\n<html><head>'
           f'<title>Statistics Report for HAProxy{" on " + _e(node) if page.show_node is not None else ""}'
           '</title>\n<link rel="icon" href="data:,">\n'
           '<meta http-equiv="content-type" content="text/html; charset=iso-8859-1">\n'
           f'<style type="text/css"><!--\n{STYLE}--></style></head>\n<body>']
    out.append(_summary(ctx, node))
    if request.status in _MESSAGES:
        style, message = _MESSAGES[request.status]
        out.append(f'<p><div class={style}><a class=lfsb href="{_e(uri)};norefresh" '
                   f'title="Remove this message">[X]</a> {message}</div>\n')
    for proxy_rows in _by_proxy(ctx.rows):
        out.append(_proxy_table(ctx, proxy_rows))
    history_uri = json.dumps(f"{uri};history").replace("<", "\\u003c")
    out.append(f"<script>var HISTORY_URI = {history_uri};\n{CHART_SCRIPT}</script>\n</body></html>\n")
    return "".join(out)


def _summary(ctx: PageContext, node: str) -> str:
    page, info, uri = ctx.page, ctx.info, ctx.uri
    out = []
    if not page.hide_version:
        out.append(f'<h1>fastproxy version {_e(info["Version"])} (HAProxy 2.6 compatible)</h1>\n')
    else:
        out.append("<h1>Statistics Report</h1>\n")
    shown_desc = page.show_desc or ctx.description if page.show_desc is not None else ""
    desc = f": {_e(shown_desc)}" if shown_desc else ""
    on_node = f" on {_e(node)}" if page.show_node is not None else ""
    pid = f" for pid {_e(info['Pid'])}" if not page.hide_version else ""
    out.append(f"<h2>Statistics Report{pid}{on_node}{desc}</h2>\n")
    out.append('<hr width="100%" class="hr">\n<h3>&gt; General process information</h3>\n'
               '<table border=0><tr><td align="left" nowrap width="1%">\n')
    if not page.hide_version:
        out.append(f"<p><b>pid = </b> {_e(info['Pid'])} (process #1, nbproc = 1, nbthread = "
                   f"{_e(info['Nbthread'])})<br>\n<b>uptime = </b> {_e(info['Uptime'])}<br>\n")
    else:
        out.append(f"<p><b>uptime = </b> {_e(info['Uptime'])}<br>\n")
    out.append(f"<b>system limits:</b> memmax = unlimited; ulimit-n = {_e(info['Ulimit-n'])}<br>\n"
               f"<b>maxsock = </b> {_e(info['Maxsock'])}; <b>maxconn = </b> {_e(info['Maxconn'])}; "
               f"<b>maxpipes = </b> {_e(info['Maxpipes'])}<br>\n"
               f"current conns = {_e(info['CurrConns'])}; current pipes = {_e(info['PipesUsed'])}/"
               f"{_e(info['PipesFree'])}; conn rate = {_e(info['ConnRate'])}/sec<br>\n"
               "</td><td align=\"center\" nowrap>\n")
    if page.show_legends:
        out.append(_LEGEND)
    out.append('</td><td align="left" valign="top" nowrap width="1%"><b>Display option:</b>'
               '<ul style="margin-top: 0.25em;">'
               f'<li><form method="GET">Scope : <input value="{_e(ctx.request.scope)}" name="scope" size="8" '
               'maxlength="20" tabindex="1"/></form>\n')
    hide = ";up" if not ctx.request.hide_down else ""
    out.append(f'<li><a href="{_e(uri)}{hide}">{"Hide" if hide else "Show all"} \'DOWN\' servers</a><br>\n')
    if page.refresh:
        out.append(f'<li><a href="{_e(uri)};norefresh">Disable refresh</a><br>\n')
    out.append(f'<li><a href="{_e(uri)}">Refresh now</a><br>\n'
               f'<li><a href="{_e(uri)};csv;norefresh">CSV export</a><br>\n'
               f'<li><a href="{_e(uri)};history">History (JSON)</a><br>\n</ul></td></tr></table>\n')
    return "".join(out)


_LEGEND = _asset("stats_page_legend.html")


def _by_proxy(rows: Iterable[Row]) -> list[list[Row]]:
    groups: list[list[Row]] = []
    for row in rows:
        if not groups or groups[-1][0]["iid"] != row["iid"]:
            groups.append([])
        groups[-1].append(row)
    return groups


def _proxy_table(ctx: PageContext, rows: list[Row]) -> str:
    name = str(rows[0]["pxname"])
    kinds = {row["type"] for row in rows}
    cap = "proxy" if {stats.TYPE_FRONTEND, stats.TYPE_BACKEND} <= kinds else \
        "frontend" if stats.TYPE_FRONTEND in kinds else "backend"
    servers = [row for row in rows if row["type"] == stats.TYPE_SERVER]
    admin = ctx.admin and stats.TYPE_BACKEND in kinds and bool(servers)
    out = []
    if admin:
        out.append('<form method="post">')
    out.append(f'<table class="tbl" width="100%">\n<tr class="titre"><th class="pxname" width="10%">'
               f'<a name="{_e(name)}"></a><u><a class=px href="#{_e(name)}">{_e(name)}</a>'
               f'<div class=tips>cap: {cap}, mode: {_e(rows[0]["mode"])}, id: {_e(rows[0]["iid"])}</div>'
               '</u></th>'
               '<th class="empty" width="90%"></th></tr>\n</table>\n')
    out.append(_charts(name, kinds))
    check_all = ""
    if admin:
        boxes = f"document.getElementsByClassName('{_e(name)}-checkbox')"
        check_all = (f'<input type="checkbox" onclick="for(c in {boxes}) {boxes}.item(c).checked = '
                     'this.checked">')
    out.append('<table class="tbl" width="100%">\n' + _HEADERS.replace("{check_all}", check_all))
    for row in rows:
        if row["type"] == stats.TYPE_FRONTEND:
            out.append(_frontend_row(row))
        elif row["type"] == stats.TYPE_SERVER:
            out.append(_server_row(row, admin, ctx.page.show_legends))
        else:
            out.append(_backend_row(row))
    out.append("</table>")
    if admin:
        options = '<option value=""></option>' + "".join(
            f'<option value="{value}">{label}</option>' for value, label in ACTIONS.items())
        out.append(f'Choose the action to perform on the checked servers : <select name=action>{options}'
                   f'</select><input type="hidden" name="b" value="#{_e(rows[0]["iid"])}">&nbsp;'
                   '<input type="submit" value="Apply"></form>')
    out.append("<p>\n")
    return "".join(out)


def _charts(name: str, kinds: set[Any]) -> str:
    charts = []
    for kind, key in ((stats.TYPE_FRONTEND, "fe"), (stats.TYPE_BACKEND, "be")):
        if kind in kinds:
            label = "Frontend" if key == "fe" else "Backend"
            charts.append(f'<div class="chart" data-key="{key}/{_e(name)}"><b>{label}</b> '
                          '<span></span><br><svg width="240" height="36" viewBox="0 0 240 36"></svg></div>')
    return "<div>" + "".join(charts) + "</div>\n"


def _td(value: stats.Value) -> str:
    return f"<td>{u2h(value)}</td>"


def _limit(value: stats.Value) -> str:
    return f"<td>{u2h(value) if value else '-'}</td>"


def _frontend_row(row: Row) -> str:
    name = _e(row["pxname"])
    return (f'<tr class="frontend"><td></td><td class=ac><a name="{name}/Frontend"></a>'
            f'<a class=lfsb href="#{name}/Frontend">Frontend</a></td><td colspan=3></td>'
            f'{_td(row["rate"])}{_td(row["rate_max"])}{_limit(row["rate_lim"])}'
            f'{_td(row["scur"])}{_td(row["smax"])}{_limit(row["slim"])}{_td(row["stot"])}<td></td><td></td>'
            f'{_td(row["bin"])}{_td(row["bout"])}{_td(row["dreq"])}{_td(row["dresp"])}{_td(row["ereq"])}'
            '<td></td><td></td><td></td><td></td>'
            f'<td class=ac data-status="{_e(row["status"])}">{_e(row["status"])}</td>'
            '<td class=ac colspan=8></td></tr>')


def _server_row(row: Row, admin: bool, show_legends: bool) -> str:
    proxy, name = _e(row["pxname"]), _e(row["svname"])
    box = "<td></td>"
    if admin:
        box = f"<td><input class='{proxy}-checkbox' type=\"checkbox\" name=\"s\" value=\"{name}\"></td>"
    tips = f"<div class=tips>{_e(row['addr'])}, id: {_e(row['sid'])}</div>" if show_legends and row["addr"] \
        else f"<div class=tips>id: {_e(row['sid'])}</div>"
    status = str(row["status"] or "")
    if status == "no check":
        status_cell = "<i>no check</i>"
    else:
        status_cell = f"{human_time(_int(row['lastchg']))} {_e(status)}"
    check = ""
    if row["check_status"] is not None:
        info = f": {_e(row['last_chk'])}" if row["last_chk"] else ""
        desc = f"<div class=tips>{_e(row['check_desc'] or '')}{info}</div>"
        duration = f" in {row['check_duration']}ms" if row["check_duration"] is not None else ""
        check = f"<u> {_e(row['check_status'])}{duration}{desc}</u>"
    checks = "<td colspan=3></td>"
    if row["chkfail"] is not None:
        checks = (f"<td><u>{u2h(row['chkfail'])}<div class=tips>Failed Health Checks</div></u></td>"
                  f"{_td(row['chkdown'])}<td>{human_time(_int(row['downtime']))}</td>")
    throttle = f"{row['throttle']} %" if row["throttle"] is not None else "-"
    return (f'<tr class="{row_class(row)}" data-server="{proxy}/{name}">{box}<td class=ac>'
            f'<a name="{proxy}/{name}"></a><u><a class=lfsb href="#{proxy}/{name}">{name}</a>{tips}</u></td>'
            f'{_td(row["qcur"])}{_td(row["qmax"])}{_limit(row["qlimit"])}'
            f'{_td(row["rate"])}{_td(row["rate_max"])}<td></td>'
            f'{_td(row["scur"])}{_td(row["smax"])}{_limit(row["slim"])}{_td(row["stot"])}{_td(row["lbtot"])}'
            f'<td>{human_time(_int(row["lastsess"]))}</td>'
            f'{_td(row["bin"])}{_td(row["bout"])}<td></td>{_td(row["dresp"])}<td></td>{_td(row["econ"])}'
            f'<td><u>{u2h(row["eresp"])}<div class=tips>Connection resets during transfers: '
            f'{row["cli_abrt"]} client, {row["srv_abrt"]} server</div></u></td>'
            f'{_td(row["wretr"])}{_td(row["wredis"])}'
            f'<td class=ac data-status="{_e(status)}">{status_cell}</td><td class=ac>{check}</td>'
            f'<td class=ac>{row["weight"]}/{row["uweight"]}</td>'
            f'<td class=ac>{"-" if row["bck"] else "Y"}</td><td class=ac>{"Y" if row["bck"] else "-"}</td>'
            f'{checks}<td class=ac>{throttle}</td></tr>\n')


def _backend_row(row: Row) -> str:
    name = _e(row["pxname"])
    algo = f"<div class=tips>balancing: {_e(row['algo'])}</div>" if row["algo"] else ""
    return (f'<tr class="backend"><td></td><td class=ac><u><a name="{name}/Backend"></a>'
            f'<a class=lfsb href="#{name}/Backend">Backend</a>{algo}</u></td>'
            f'{_td(row["qcur"])}{_td(row["qmax"])}<td></td>{_td(row["rate"])}{_td(row["rate_max"])}<td></td>'
            f'{_td(row["scur"])}{_td(row["smax"])}{_limit(row["slim"])}{_td(row["stot"])}{_td(row["lbtot"])}'
            f'<td>{human_time(_int(row["lastsess"]))}</td>'
            f'{_td(row["bin"])}{_td(row["bout"])}{_td(row["dreq"])}{_td(row["dresp"])}<td></td>{_td(row["econ"])}'
            f'{_td(row["eresp"])}{_td(row["wretr"])}{_td(row["wredis"])}'
            f'<td class=ac data-status="{_e(row["status"])}">{human_time(_int(row["lastchg"]))} '
            f'{_e(row["status"])}</td>'
            f'<td class=ac>&nbsp;</td><td class=ac>{row["weight"]}/{row["uweight"]}</td>'
            f'<td class=ac>{row["act"]}</td><td class=ac>{row["bck"]}</td><td class=ac>&nbsp;</td>'
            f'{_td(row["chkdown"])}<td>{human_time(_int(row["downtime"])) or "&nbsp;"}</td><td></td></tr>')


def _int(value: stats.Value) -> Optional[int]:
    return value if isinstance(value, int) else None


def history_json(series: Mapping[str, Sequence[tuple[float, int, int, int]]]) -> str:
    """The charts' data: ``{"fe/<name>": [[t, sessions, bytes in, bytes out], ...], "be/<name>": ...}``."""
    return json.dumps({key: [[round(t, 3), cur, bytes_in, bytes_out]
                             for t, cur, bytes_in, bytes_out in points]
                       for key, points in series.items()}, separators=(",", ":"))
