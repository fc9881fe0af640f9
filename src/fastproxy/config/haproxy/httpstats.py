"""The keywords of a statistics listener (HAProxy's ``stats`` proxy keywords of cfgparse-listen.c,
``monitor-uri``, and ``http-request use-service prometheus-exporter``): a ``mode http`` proxy whose only
job is statistics, served by ``fastproxy.stats_http``.

Each handler fills the ``StatsPage`` of the ``_Proxy`` being read (``defaults`` may hold every
``stats`` keyword but ``admin`` and ``http-request``, as in HAProxy, and pass them on).  The reader
attaches the page to the frontend of a ``mode http`` proxy (``reader._frontend``); on a ``mode tcp``
proxy the lines written in it are warned about, since HAProxy serves statistics over HTTP only.  An
``http-request`` rule fastproxy cannot apply on such a listener is an error when it decides who sees
what (deny, auth...), a warning otherwise.
"""

from __future__ import annotations

import re
from typing import Optional

from ... import acl as acls
from ..model import DEFAULT_STATS_URI, PrometheusRoute, StatsPage, StatsUser
from .lexer import _Invalid
from .registry import FE, ReaderView, _keyword, _Line, _post_check, _Proxy
from .values import _time

_STATS_KEYWORDS = ("'admin', 'uri', 'realm', 'auth', 'scope', 'enable', 'hide-version', 'show-node', "
                   "'show-desc' or 'show-legends'")
_NODE_NAME = re.compile(r"[A-Za-z0-9_.-]+", re.ASCII)


def _page(line: _Line, proxy: _Proxy) -> StatsPage:
    """The proxy's page.  As in HAProxy, a proxy's first ``stats`` line detaches it from the page of
    its defaults section: its page starts afresh."""
    if not proxy.is_defaults and not proxy.own_stats:
        proxy.stats, proxy.own_stats = None, True
        proxy.stats_location = proxy.stats_location or line.location
    if proxy.stats is None:
        proxy.stats = StatsPage(location=line.location)
    return proxy.stats


@_keyword("stats", in_defaults="yes")
def _stats(line: _Line, proxy: _Proxy, args: list[str]) -> None:
    if not args:
        raise _Invalid(f"missing keyword in 'stats', expects {_STATS_KEYWORDS}.")
    sub, rest = args[0], args[1:]
    value = rest[0] if rest else ""
    if sub == "admin":
        if proxy.is_defaults:
            raise _Invalid("'stats admin' not allowed in 'defaults' section.")
        if value not in ("if", "unless"):
            raise _Invalid("'stats admin' requires either 'if' or 'unless' followed by a condition.")
        condition = line.reader.condition(line, proxy, rest)
        try:
            acls.compile_condition(condition, proxy.acls)  # what it cannot evaluate is refused here
        except acls.AclError as exc:
            raise _Invalid(f"error detected while parsing a 'stats admin' rule : {exc}") from None
        if acls.condition_uses(condition, proxy.acls, acls.CONTENT_FETCHES):
            raise _Invalid("'stats admin' conditions are evaluated on HTTP requests: a condition "
                           "reading the client's bytes (the TLS ClientHello, req.payload, the request "
                           "line...) cannot be evaluated by fastproxy")
        page = _page(line, proxy)
        if page.admin is not None:
            line.warn("fastproxy keeps one 'stats admin' rule per proxy: this one replaces the previous")
        page.admin = condition
    elif sub == "uri":
        if not value:
            raise _Invalid("'uri' needs an URI prefix.")
        _page(line, proxy).uri = value
    elif sub == "realm":
        if not value:
            raise _Invalid("'realm' needs an realm name.")
        _page(line, proxy).realm = value
    elif sub == "refresh":
        _page(line, proxy).refresh = _refresh(value)
    elif sub == "auth":
        if not value:
            raise _Invalid("'auth' needs a user:password account.")
        user, colon, password = value.partition(":")
        if not colon or not user:
            raise _Invalid(f"'stats auth' expects <user>:<password> (got '{value}')")
        _page(line, proxy).auth.append(StatsUser(user, password))
    elif sub == "scope":
        if not value:
            raise _Invalid("'scope' needs a proxy name.")
        _page(line, proxy).scope.append(value)
    elif sub == "enable":
        _page(line, proxy)
    elif sub == "hide-version":
        _page(line, proxy).hide_version = True
    elif sub == "show-legends":
        _page(line, proxy).show_legends = True
    elif sub == "show-node":
        if value and not _NODE_NAME.fullmatch(value):
            raise _Invalid("'stats show-node' invalid node name - should be a stringwith digits(0-9), "
                           "letters(A-Z, a-z), hyphen(-) or underscode(_).")
        _page(line, proxy).show_node = value
    elif sub == "show-desc":
        if not rest and line.reader.global_.description is None:  # shown once the global one is set
            line.warn("'show-desc' requires a parameter or 'desc' to be set in the global section.")
        _page(line, proxy).show_desc = " ".join(rest)
    elif sub in ("http-request", "show-modules"):
        if sub == "http-request" and proxy.is_defaults:
            raise _Invalid("'stats' not allowed in 'defaults' section.")
        raise _Invalid(f"'stats {sub}' is not supported by fastproxy (it would change who may see the "
                       "page or what it shows)")
    else:
        raise _Invalid(f"unknown stats parameter '{sub}', expects {_STATS_KEYWORDS}.")


def _refresh(text: str) -> float:
    """``stats refresh <delay>``: seconds by default (HAProxy's TIME_UNIT_S), at least one."""
    match = re.fullmatch(r"([0-9]+)(.*)", text)
    if not match:
        raise _Invalid(f"unexpected character '{text[:1]}' in argument to stats refresh interval.")
    if not match[2]:
        seconds = float(match[1])
    else:
        try:
            seconds = _time(text)
        except _Invalid:
            raise _Invalid(f"unexpected character '{match[2][0]}' in argument to stats refresh "
                           "interval.") from None
    if 0 < seconds < 1:
        raise _Invalid(f"timer underflow in argument <{text}> to stats refresh interval, minimum non-null "
                       "value is 1 s.")
    return seconds


@_keyword("monitor-uri", caps=FE)
def _monitor_uri(line: _Line, proxy: _Proxy, args: list[str]) -> None:
    if not args or not args[0]:
        raise _Invalid("'monitor-uri' expects an URI.")
    page = proxy.monitor or StatsPage(location=line.location)
    page.monitor_uri = args[0]
    proxy.monitor = page
    if not proxy.is_defaults and proxy.stats_location is None:
        proxy.stats_location = line.location


# http-request actions that decide who gets an answer: never ignored on a stats listener.
_ACCESS_ACTIONS = frozenset("allow deny auth reject tarpit silent-drop redirect return".split())


@_keyword("http-request", caps=FE, in_defaults="named")
def _http_request(line: _Line, proxy: _Proxy, args: list[str]) -> None:
    action = args[0] if args else ""
    if action == "use-service":
        service = args[1] if len(args) > 1 else ""
        if service != "prometheus-exporter":
            raise _Invalid(f"error detected in {proxy.describe()} while parsing 'http-request use-service' "
                           f"rule : '{service}' unknown service name.")
        route = _prometheus_route(line, args[2:])
        page = proxy.monitor or StatsPage(location=line.location)
        page.prometheus.append(route)
        proxy.monitor = page
        if not proxy.is_defaults and proxy.stats_location is None:
            proxy.stats_location = line.location
        return
    if action.split("(", 1)[0] in _ACCESS_ACTIONS:
        # An error on a stats listener (checked once the mode is known), a warning elsewhere.
        proxy.http_access_rules.append(line.location)
    line.warn("HTTP rule: fastproxy is a layer-4 proxy and does not evaluate it; ignored")


def _prometheus_route(line: _Line, words: list[str]) -> PrometheusRoute:
    """The ``if { path <p> }`` (or ``path_beg``, ``path -m beg``) condition of the exporter: the only
    HTTP condition fastproxy evaluates, since it decides which path gets the metrics."""
    if not words:
        return PrometheusRoute("", prefix=True, location=line.location)  # every request
    text = " ".join(words)
    match = re.fullmatch(r"if \{ (path|path_beg)(?: -m (str|beg))? (\S+) \}", text)
    if match is None:
        raise _Invalid("fastproxy serves 'use-service prometheus-exporter' on a path only: write "
                       f"'if {{ path /metrics }}' or 'if {{ path_beg /metrics }}' (got '{text}')")
    prefix = match[1] == "path_beg" or match[2] == "beg"
    return PrometheusRoute(match[3], prefix=prefix, location=line.location)


def stats_page(reader: ReaderView, proxy: _Proxy) -> Optional[StatsPage]:
    """The statistics a ``mode http`` proxy serves: its ``stats`` settings, ``monitor-uri`` and
    exporter routes in one ``StatsPage`` (``uri`` None when no ``stats`` line enabled the page)."""
    if proxy.stats is None and proxy.monitor is None:
        return None
    page = StatsPage(location=proxy.stats_location or proxy.location)
    if proxy.stats is not None:
        stats = proxy.stats
        page = StatsPage(uri=stats.uri or DEFAULT_STATS_URI, refresh=stats.refresh, realm=stats.realm,
                         auth=list(stats.auth), admin=stats.admin, hide_version=stats.hide_version,
                         show_legends=stats.show_legends, show_node=stats.show_node,
                         show_desc=stats.show_desc, scope=list(stats.scope), location=page.location)
    if proxy.monitor is not None:
        page.monitor_uri = proxy.monitor.monitor_uri
        page.prometheus = list(proxy.monitor.prometheus)
    return page


@_post_check(FE)
def _check_stats_mode(reader: ReaderView, proxy: _Proxy) -> None:
    """Statistics are served over HTTP: on a ``mode tcp`` proxy its own stats lines do nothing; on a
    ``mode http`` one, an access rule fastproxy does not evaluate would show the page to others."""
    if proxy.mode != "http":
        if proxy.stats_location is not None:
            reader.warn(proxy.stats_location, "stats", f"{proxy.describe()} is in 'mode tcp': the stats "
                        "page, monitor-uri and exporter are served by 'mode http' proxies only; ignored")
        return
    for location in proxy.http_access_rules:
        reader.error(location, "http-request", "this rule decides who gets an answer, and fastproxy "
                     "does not evaluate HTTP rules: remove it, or protect the page with 'stats auth' "
                     "and 'stats admin'")

