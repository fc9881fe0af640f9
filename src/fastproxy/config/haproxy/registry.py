"""The keyword registry: what a keyword handler sees of the reader, and how keyword families register
their handlers and post-parse checks.

Each family module (``global_``, ``proxy``, ``binds``, ``servers``, ``options``, ``tcpcheck``) registers
its proxy keywords with ``@_keyword(name, caps, in_defaults, missing_cap, hint)`` (HAProxy's
``cfg_kw_list``: the capabilities a keyword applies to, whether ``defaults`` may hold it, what HAProxy
does where it does not apply), and the checks to run on each proxy once the files are read with
``@_post_check(FE | BE)`` (HAProxy's ``REGISTER_POST_PROXY_CHECK``).  The tables of what HAProxy knows
but fastproxy skips live here too.  A handler receives the ``_Line`` being read (its words, location and
``ReaderView``, the part of the reader handlers may use) and the ``_Proxy`` being built.  The reader
(``reader.py``) looks keywords up; this module calls nothing.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, MutableMapping, Sequence
from dataclasses import dataclass, field
from typing import Optional, Protocol

from ..model import (
    Acl,
    Balance,
    Bind,
    Condition,
    Global,
    KeepAlive,
    Location,
    LogTarget,
    PersistRule,
    Server,
    StatsPage,
    StickRule,
    StickTable,
    TcpCheckRule,
    TcpRequestRule,
    Timeouts,
    UseBackend,
)

FE, BE = 1, 2  # a proxy's capabilities: its frontend half, its backend half
_FE_TIMEOUTS = ("client", "client_fin")
_BE_TIMEOUTS = ("connect", "server", "tunnel", "server_fin", "queue", "check")



class ReaderView(Protocol):
    """What handlers and post-parse checks use of the reader (``reader._Reader``)."""

    environ: MutableMapping[str, str]  # for ${VAR}, changed by setenv and friends
    global_: Global  # what ``log global`` copies

    def error(self, location: Location, keyword: Optional[str], message: str) -> None: ...

    def warn(self, location: Location, keyword: Optional[str], message: str) -> None: ...

    def read_patterns(self, path: str) -> list[str]: ...

    def condition(self, line: _Line, proxy: _Proxy, words: list[str]) -> Condition: ...


# --- what a handler receives: the proxy section being read, the line being read ------------------------

_KIND_CAPS = {"frontend": FE, "backend": BE, "listen": FE | BE, "defaults": FE | BE}


@dataclass
class _Proxy:
    """Everything a proxy section (or a ``defaults``) sets; built into Frontend/Backend at the end."""

    kind: str
    name: str
    location: Location
    mode: str = "tcp"
    mode_location: Optional[Location] = None
    timeouts: Timeouts = field(default_factory=Timeouts)
    maxconn: Optional[int] = None
    backlog: Optional[int] = None
    fullconn: Optional[int] = None
    load_server_state: Optional[str] = None
    server_state_file_name: Optional[str] = None
    retries: int = 3
    retry_on_conn_failure: bool = True
    source: Optional[tuple[str, int]] = None
    redispatch: bool = False
    balance: Balance = field(default_factory=Balance)
    client_keepalive: KeepAlive = field(default_factory=KeepAlive)
    server_keepalive: KeepAlive = field(default_factory=KeepAlive)
    log_targets: list[LogTarget] = field(default_factory=list)
    tcplog: bool = False
    log_format: Optional[str] = None  # ``log-format``; None with ``tcplog``: the tcplog format
    log_format_location: Optional[Location] = None
    unique_id_format: Optional[str] = None  # ``unique-id-format``: what %ID writes
    log_format_sd: Optional[str] = None  # ``log-format-sd``: the structured data of rfc5424 lines
    log_format_sd_location: Optional[Location] = None
    unique_id_format_location: Optional[Location] = None
    dontlognull: bool = False
    allbackups: bool = False
    tcp_check: bool = False  # ``option tcp-check`` in effect (the last check option set)
    tcp_check_rules: list[TcpCheckRule] = field(default_factory=list)
    tcp_check_location: Optional[Location] = None  # the first ``tcp-check`` line of the rules in effect
    own_tcp_check_rules: bool = False  # False while the rules are the defaults section's
    check_kind: str = "tcp"  # the kind of the last check option (model.CHECK_KINDS), when tcp_check
    external_command: Optional[str] = None  # ``external-check command`` (inherited from defaults)
    external_path: Optional[str] = None  # ``external-check path``
    external_location: Optional[Location] = None  # where ``option external-check`` was written
    protocol_check_rules: list[TcpCheckRule] = field(default_factory=list)  # mysql-check, redis-check...
    http_check_rules: list[TcpCheckRule] = field(default_factory=list)  # ``http-check`` and the option's
    own_http_check_rules: bool = False
    http_option_request: bool = False  # the first request of http_check_rules is ``option httpchk``'s
    http_send_state: bool = False
    http_disable_on_404: bool = False
    log_health_checks: bool = False
    rate_limit_sessions: Optional[int] = None
    inspect_delay: Optional[float] = None
    default_backend: Optional[str] = None
    default_backend_location: Optional[Location] = None
    id: Optional[int] = None
    options: dict = field(default_factory=dict)
    default_server: Server = field(default_factory=lambda: Server(name="", host="", port=0))
    acls: dict[str, list[Acl]] = field(default_factory=dict)
    tcp_request_rules: list[TcpRequestRule] = field(default_factory=list)
    use_backends: list[UseBackend] = field(default_factory=list)
    binds: list[Bind] = field(default_factory=list)
    servers: list[Server] = field(default_factory=list)
    stick_table: Optional[StickTable] = None
    stick_rules: list[StickRule] = field(default_factory=list)
    persist: bool = False  # ``option persist``
    persist_rules: list[PersistRule] = field(default_factory=list)  # force-persist, ignore-persist
    persist_rdp_cookie: Optional[str] = None  # ``persist rdp-cookie[(<name>)]``
    use_servers: list[UseBackend] = field(default_factory=list)  # ``use-server`` (``backend``: its server)
    disabled: bool = False
    stats: Optional[StatsPage] = None  # the ``stats`` lines in effect (a defaults section's too)
    monitor: Optional[StatsPage] = None  # ``monitor-uri`` and the exporter's ``use-service`` routes
    stats_location: Optional[Location] = None  # the section's own first line of those
    own_stats: bool = False  # the section wrote a ``stats`` line (its page no longer the defaults')
    http_access_rules: list[Location] = field(default_factory=list)  # ``http-request deny|auth|...``
    referenced: bool = False  # a defaults section named by some "from"
    used_implicitly: bool = False  # a defaults section some proxy used for following it
    # TCP/HTTP rules written in this section (tcp-request, tcp-response, http-request...; fastproxy
    # ignores some of them, HAProxy's inheritance rules count them all), and the frontend- and
    # backend-capable proxies inheriting from it: HAProxy's rules for defaults with rules.
    rule_keywords: set[str] = field(default_factory=set)
    inherited_by: int = 0
    balance_set: bool = False  # a ``balance`` line applies (here or in the defaults): ``dispatch`` is ignored
    dispatch: Optional[Server] = None  # ``dispatch <addr>``, as the server it stands for
    request_captures: list[int] = field(default_factory=list)  # the capture slots, by length
    response_captures: list[int] = field(default_factory=list)

    @property
    def caps(self) -> int:
        return _KIND_CAPS[self.kind]

    @property
    def is_defaults(self) -> bool:
        return self.kind == "defaults"

    def derive(self, kind: str, name: str, location: Location) -> _Proxy:
        """A new section starting from this ``defaults``: HAProxy copies every setting."""
        child = copy.deepcopy(self)
        child.kind, child.name, child.location = kind, name, location
        child.binds, child.servers, child.use_backends = [], [], []
        child.stats_location, child.http_access_rules, child.own_stats = None, [], False
        child.disabled = child.referenced = child.used_implicitly = False
        child.own_tcp_check_rules = False  # kept until the section writes a tcp-check rule of its own
        child.own_http_check_rules = False
        child.rule_keywords, child.inherited_by = set(), 0
        # A section does not see the ACLs of its defaults (HAProxy: "no such ACL"); the defaults' own
        # rules still evaluate them, under names no section can write ('/' is not allowed in names).
        hidden = {name: f"{self.location}/{name}" for name in self.acls}
        child.acls = {hidden[name]: acls for name, acls in child.acls.items()}
        for rule in child.tcp_request_rules:
            rule.condition = _renamed(rule.condition, hidden)
        return child

    def describe(self) -> str:
        return f"{self.kind} '{self.name}'" if self.name or not self.is_defaults else "anonymous 'defaults'"


def _renamed(condition: Optional[Condition], names: dict[str, str]) -> Optional[Condition]:
    if condition is None:
        return None
    groups = tuple(tuple((negated, names.get(term, term) if isinstance(term, str) else term)
                         for negated, term in group) for group in condition.groups)
    return Condition(negate=condition.negate, groups=groups)


# --- one line as handlers see it ---------------------------------------------------------------------

@dataclass
class _Line:
    reader: ReaderView
    file: str
    number: int
    words: list[str]

    @property
    def location(self) -> Location:
        return Location(self.file, self.number)

    @property
    def keyword(self) -> str:
        return _display_keyword(self.words)

    def warn(self, message: str, keyword: Optional[str] = None) -> None:
        self.reader.warn(self.location, keyword or self.keyword, message)


_TWO_WORD_KEYWORDS = {"option", "timeout", "tcp-request", "tcp-response", "tcp-check", "http-check", "stats",
                      "rate-limit", "http-request", "http-response", "http-after-response", "stick",
                      "monitor"}


def _display_keyword(words: Sequence[str]) -> str:
    if not words:
        return ""
    if words[0] in ("no", "default") and len(words) > 2 and words[1] == "option":
        return " ".join(words[:3])
    if words[0] in _TWO_WORD_KEYWORDS and len(words) > 1:
        return " ".join(words[:2])
    return words[0]


# --- the registries ----------------------------------------------------------------------------------

GlobalHandler = Callable[[_Line, Global, list[str]], None]
ProxyHandler = Callable[[_Line, _Proxy, list[str]], None]


@dataclass(frozen=True)
class _Keyword:
    handler: ProxyHandler
    caps: int = FE | BE  # the proxy capabilities it applies to; elsewhere it is ignored with a warning
    in_defaults: str = "yes"  # "yes" | "no" | "named" (only in named defaults sections)
    missing_cap: str = "warn"  # "warn" | "error": what HAProxy does where it does not apply
    hint: str = ""


PROXY_KEYWORDS: dict[str, _Keyword] = {}


def _keyword(name: str, caps: int = FE | BE, in_defaults: str = "yes", missing_cap: str = "warn",
             hint: str = "") -> Callable[[ProxyHandler], ProxyHandler]:
    def register(handler: ProxyHandler) -> ProxyHandler:
        PROXY_KEYWORDS[name] = _Keyword(handler, caps, in_defaults, missing_cap, hint)
        return handler
    return register


PostCheck = Callable[[ReaderView, _Proxy], None]
POST_CHECKS: dict[int, list[PostCheck]] = {FE: [], BE: []}


def _post_check(half: int) -> Callable[[PostCheck], PostCheck]:
    """Register a check of every proxy with that half (FE or BE), run once all files are read and the
    half is built: it reports through the reader (``reader.error``, ``reader.warn``)."""
    def register(check: PostCheck) -> PostCheck:
        POST_CHECKS[half].append(check)
        return check
    return register


def _names(text: str) -> frozenset[str]:
    """A table of keywords written as blank-separated words."""
    return frozenset(text.split())


# Proxy keywords HAProxy 2.6 knows that fastproxy ignores with a warning (the proxy still runs).
PROXY_IGNORED = _names("""
    bind-process compression cookie dynamic-cookie-key email-alert errorfile errorfiles
    errorloc errorloc302 errorloc303 grace http-after-response
    http-error http-response http-reuse http-send-name-header
    log-tag max-keep-alive-queue
    max-session-srv-conns monitor redirect
    unique-id-header use-fcgi-app
   
""")

# Sections HAProxy knows that fastproxy skips (their content is not read).
IGNORED_SECTIONS = _names("""
    userlist peers resolvers mailers program http-errors ring cache fcgi-app
""")
PROXY_SECTIONS = ("defaults", "frontend", "backend", "listen")
_SKIPPED = "<skipped>"
