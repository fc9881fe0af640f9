"""The one configuration model.

Both the HAProxy reader (`fastproxy.config.haproxy`) and the Python API build these objects; the engine
only ever reads them.  Everything here is plain data: no sockets, no event loop.  Times are seconds as
floats (``None`` means "not set", which for a timeout means "never"), sizes are bytes.

Where HAProxy keeps a setting per section kind (``timeout client`` on the frontend, ``timeout server``
on the backend), the model keeps it where HAProxy applies it, after ``defaults`` have been folded in
by the reader.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Optional


@dataclass(frozen=True)
class Location:
    """Where a setting came from, for messages: ``file:line``."""

    file: str = "<api>"
    line: int = 0

    def __str__(self) -> str:
        return f"{self.file}:{self.line}"


@dataclass
class Timeouts:
    """HAProxy's ``timeout`` keywords, in seconds; ``None`` is "not set"."""

    connect: Optional[float] = None
    client: Optional[float] = None
    server: Optional[float] = None
    tunnel: Optional[float] = None
    client_fin: Optional[float] = None
    server_fin: Optional[float] = None
    queue: Optional[float] = None
    check: Optional[float] = None

    def merged(self, other: "Timeouts") -> "Timeouts":
        """A copy where every field left unset here is taken from ``other``."""
        return Timeouts(**{
            f.name: getattr(self, f.name) if getattr(self, f.name) is not None else getattr(other, f.name)
            for f in dataclasses.fields(self)
        })


@dataclass
class KeepAlive:
    """TCP keepalive for one side of a connection (``option clitcpka``/``srvtcpka`` and their tunables).

    ``enabled`` is True by default on both sides (fastproxy's choice: see README); ``idle``,
    ``interval`` and ``count`` of ``None`` keep the kernel's values.
    """

    enabled: bool = True
    idle: Optional[float] = None
    interval: Optional[float] = None
    count: Optional[int] = None


@dataclass(frozen=True)
class LogTarget:
    """Where one ``log`` line sends messages, and which:
    ``<address> [len <n>] [format <f>] [sample <r>:<s>] <facility> [<level> [<minlevel>]]``.

    ``address`` as written (``ip[:port]``, ``udp@...``, a path or ``unix@path``, ``stdout``, ``stderr``;
    ``tcp@``/``ring@``... are recorded and reported at start).  Facilities and levels are syslog's
    numbers (``fastproxy.logs.FACILITIES`` and ``LEVELS`` name them): ``level`` is the least severe level
    sent, messages more severe than ``minlevel`` are sent at ``minlevel``.  ``sample``: (n, size), send
    the n-th of every ``size`` messages.
    """

    address: str
    facility: int
    level: int = 7  # debug: everything
    minlevel: int = 0  # emerg: no change
    format: str = "rfc3164"
    length: int = 1024
    sample: Optional[tuple[int, int]] = None
    location: Location = field(default_factory=Location)


@dataclass(frozen=True)
class TlsOptions:
    """The TLS settings a ``bind ... ssl`` and a ``server ... ssl`` share (HAProxy's ``ssl_bind_conf``
    and ``srv->ssl_ctx`` settings of the same names): ``alpn`` (the protocols offered or accepted, in
    order), ``ssl-min-ver``/``ssl-max-ver`` and ``force-*`` (``min_version``/``max_version``, HAProxy's
    names: ``SSLv3``, ``TLSv1.0`` ... ``TLSv1.3``), ``no-sslv3``/``no-tlsv1x`` (``excluded``), ``ciphers``
    (TLS 1.2 and before).  Frozen: a ``default-server``'s are shared by the servers copied from it."""

    alpn: Optional[tuple[str, ...]] = None
    min_version: Optional[str] = None
    max_version: Optional[str] = None
    excluded: tuple[str, ...] = ()
    ciphers: Optional[str] = None

    def over(self, defaults: "TlsOptions") -> "TlsOptions":
        """These settings, ``defaults``' (the global ``ssl-default-*``) where these set nothing."""
        return TlsOptions(alpn=self.alpn or defaults.alpn,
                          min_version=self.min_version or defaults.min_version,
                          max_version=self.max_version or defaults.max_version,
                          excluded=tuple(sorted({*self.excluded, *defaults.excluded})),
                          ciphers=self.ciphers or defaults.ciphers)


@dataclass
class Bind:
    """One listening address of a frontend (one ``bind`` address, after port ranges are expanded)."""

    host: str  # "" or "0.0.0.0" for every IPv4 address, "::" for every IPv6 one
    port: int
    name: Optional[str] = None
    backlog: Optional[int] = None
    maxconn: Optional[int] = None
    reuseport: bool = True  # SO_REUSEPORT, as HAProxy's binds (``noreuseport`` in global: False)
    v6only: Optional[bool] = None  # None: the system default; True: v6only; False: v4v6
    accept_proxy: bool = False
    defer_accept: bool = False
    location: Location = field(default_factory=Location)
    family: Optional[str] = None  # "ipv4" | "ipv6" from an ipv4@/ipv6@ (tcp4@/tcp6@) prefix; None: any
    fd: Optional[int] = None  # ``fd@<n>``: an inherited socket (host and port unused), listening or not
    # ``ssl``: TLS terminated here, with the certificates of ``crt`` (files, or directories of them: the
    # client's SNI picks one by its names, the first is the default); ``verify`` (none | optional |
    # required; None: none) of client certificates against ``ca_file``.
    ssl: bool = False
    crt: tuple[str, ...] = ()
    ca_file: Optional[str] = None
    verify: Optional[str] = None
    strict_sni: bool = False  # ``strict-sni``: a client whose SNI no certificate names is refused
    tls: TlsOptions = field(default_factory=TlsOptions)
    interface: Optional[str] = None  # ``interface``: SO_BINDTODEVICE, only what arrives on that interface


@dataclass
class Server:
    """One ``server`` line of a backend."""

    name: str
    host: str
    port: int
    weight: int = 1
    maxconn: int = 0  # 0: no limit
    maxqueue: int = 0
    minconn: int = 0
    check: bool = False
    inter: float = 2.0
    fastinter: Optional[float] = None
    downinter: Optional[float] = None
    rise: int = 2
    fall: int = 3
    check_port: Optional[int] = None
    check_addr: Optional[str] = None
    backup: bool = False
    disabled: bool = False
    slowstart: Optional[float] = None
    send_proxy: bool = False
    send_proxy_v2: bool = False
    id: Optional[int] = None
    location: Location = field(default_factory=Location)
    family: Optional[str] = None  # "ipv4" | "ipv6" from an ipv4@/ipv6@ prefix: how to resolve ``host``
    # Passive health (HAProxy's ``observe layer4``, ``error-limit``, ``on-error``) and what a change
    # of health does to established connections (``on-marked-down``, ``on-marked-up``).
    observe: Optional[str] = None  # "layer4" (``layer7`` needs HTTP: refused by the reader)
    error_limit: int = 10
    on_error: str = "fail-check"  # fastinter | fail-check | sudden-death | mark-down
    on_marked_down: Optional[str] = None  # "shutdown-sessions"
    on_marked_up: Optional[str] = None  # "shutdown-backup-sessions"
    # HAProxy's agent check: a line read from ``agent_addr`` (else ``addr``, else the server's address)
    # on ``agent_port`` every ``agent_inter``, after sending ``agent_send``; it sets the server's
    # health, administrative state, weight and maxconn.
    agent_check: bool = False
    agent_port: Optional[int] = None
    agent_inter: float = 2.0
    agent_send: Optional[str] = None
    agent_addr: Optional[str] = None
    # ``track [<backend>/]<server>``: the server's state follows that one's checks (it has none).
    track: Optional[str] = None
    non_stick: bool = False  # ``non-stick``: stick rules never store this server
    # ``init-addr``: how the address is found at start, in order ("last", "libc", "none" or an IP);
    # None: HAProxy's default, last then libc.  "none" leaves an unresolved server in maintenance.
    init_addr: Optional[tuple[str, ...]] = None
    source: Optional[tuple[str, int]] = None  # ``source <addr>[:<port>]``: the address dialed from
    # Checks over TLS (``check-ssl``): ``verify`` ("none" | "required"; None: ``ssl-server-verify``,
    # required), ``ca-file`` to verify against, ``crt`` (a PEM with the client certificate and its key),
    # ``check-sni`` (the name sent, and verified), ``verifyhost`` (the name verified without SNI).
    check_ssl: bool = False
    # ``check-send-proxy``: checks start with a PROXY header (LOCAL/UNKNOWN, in the server's version),
    # as those of a ``send-proxy`` server without a check ``port`` or ``addr`` do.
    check_send_proxy: bool = False
    # ``ssl``: TLS to the server, for traffic and, as in HAProxy, for its checks when no check ``port``
    # or ``addr`` is set; ``sni`` (a sample expression: the name sent and verified), ``tls`` (alpn,
    # versions, ciphers), ``ssl_reuse`` (resume the server's last TLS session: HAProxy's default).
    ssl: bool = False
    sni: Optional[str] = None
    tls: TlsOptions = field(default_factory=TlsOptions)
    ssl_reuse: bool = True
    verify: Optional[str] = None
    ca_file: Optional[str] = None
    crt: Optional[str] = None
    check_sni: Optional[str] = None
    verifyhost: Optional[str] = None

    @property
    def address(self) -> tuple[str, int]:
        return (self.host, self.port)


@dataclass
class HttpCheckRequest:
    """The HTTP/1.x request of an HTTP check (``option httpchk``, ``http-check send``): HAProxy writes
    header names in lower case, ``connection: close`` for HTTP/1.1, ``content-length`` with a body."""

    method: str = "OPTIONS"
    uri: str = "/"
    version: str = "HTTP/1.0"
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""


@dataclass
class TcpCheckRule:
    """One ``tcp-check`` rule of a backend's check sequence (``option tcp-check``).

    ``action`` is ``connect`` (``port``/``addr`` override the server's check address, ``linger``
    closes with a FIN instead of a reset), ``send`` (``data``: the bytes to send, from ``send`` or
    ``send-binary``) or ``expect`` (``match``: ``string``, ``rstring``, ``binary`` or ``rbinary``;
    ``pattern``: bytes for string/binary, the regular expression's text for the others; ``negate`` for
    ``!``; ``min_recv``: bytes to wait for before matching, -1 for "until it matches or the server
    closes"; ``ok_status``/``error_status``/``tout_status``: the status names reported instead of
    L7OK/L7RSP/L7TOUT).

    The check kinds HAProxy builds from rules (``option httpchk``, ``redis-check``...) add: ``http``,
    the request of an HTTP ``send``; HTTP ``expect`` matches ``status`` (``pattern``: ``(low, high)``
    ranges), ``rstatus``, ``body`` and ``rbody``; ``custom`` (``pattern`` names one of
    ``health.CUSTOM_EXPECTS``: the MySQL, LDAP and agent parsers); ``on_error``/``on_success``, the
    text of the check's description (``%[res.payload(<offset>,<length>)...]`` as HAProxy writes them),
    and ``status_code``, the part of the answer that gives the check's code.
    """

    action: str
    port: Optional[int] = None
    addr: Optional[str] = None
    linger: bool = False
    data: bytes = b""
    match: str = ""
    pattern: Any = b""
    negate: bool = False
    min_recv: int = -1
    ok_status: Optional[str] = None
    error_status: Optional[str] = None
    tout_status: Optional[str] = None
    comment: Optional[str] = None
    location: Location = field(default_factory=Location)
    http: Optional[HttpCheckRequest] = None
    on_error: Optional[str] = None
    on_success: Optional[str] = None
    status_code: Optional[tuple[int, int]] = None  # (offset, length) of the code in the answer
    ssl: bool = False  # ``tcp-check connect ssl``: a TLS handshake once connected
    send_proxy: bool = False  # ``tcp-check connect send-proxy``: a PROXY header first
    sni: Optional[str] = None  # ``tcp-check connect sni <name>``
    default: bool = False  # ``tcp-check connect default``: the server's check settings (check-ssl...)
    # A log-format evaluated at each check (``fastproxy.logformat``, check formats): the data of
    # ``send-lf``, the pattern of ``expect string-lf``, the value of ``set-var-fmt``; ``binary``: the
    # text it gives is hexadecimal, the bytes it spells are sent or matched (``send-binary-lf``,
    # ``expect binary-lf``).
    log_format: Optional[str] = None
    binary: bool = False
    # ``set-var(<variable>[,<cond>...]) <sample>``, ``set-var-fmt(...) <log_format>``,
    # ``unset-var(<variable>)`` (the actions ``set-var``, ``set-var-fmt``, ``unset-var``): a variable
    # of the check (``fastproxy.variables.CheckVariables``) the later rules of the same check read.
    variable: Optional[str] = None
    variable_conditions: tuple[str, ...] = ()
    sample: Optional[Sample] = None

    @property
    def is_variable_action(self) -> bool:
        """A variable action is no step of the exchange: HAProxy neither counts it as the check's
        current step nor takes it for the first rule (get_first_tcpcheck_rule())."""
        return self.action in CHECK_VARIABLE_ACTIONS


CHECK_VARIABLE_ACTIONS = frozenset({"set-var", "set-var-fmt", "unset-var"})


def wire_bytes(text: str) -> bytes:
    """The bytes HAProxy sends or matches for a word: one byte per character up to U+00FF (what
    ``\\xHH`` escapes give), the file's original bytes for undecodable ones, UTF-8 for the rest."""
    return b"".join(bytes([ord(c)]) if ord(c) < 0x100 else c.encode("utf-8", "surrogateescape")
                    for c in text)


def first_check_rule(rules: Sequence[TcpCheckRule]) -> Optional[TcpCheckRule]:
    """The first rule of a check sequence that is a step of the exchange (variable actions are not)."""
    return next((rule for rule in rules if not rule.is_variable_action), None)


# The data of the send rule of ``option ssl-hello-chk``: HAProxy's SSLv3 CLIENT HELLO, built when sent
# (its random bytes start with the time; ``health.ssl3_client_hello``).
SSL3_HELLO = b"<ssl3 client hello>"

CHECK_KINDS = ("tcp", "http", "mysql", "pgsql", "redis", "smtp", "ldap", "ssl3", "external")

BALANCE_ALGORITHMS = ("roundrobin", "static-rr", "leastconn", "first", "source", "random", "hash")
HASH_TYPES = ("map-based", "consistent", "maglev")  # maglev is fastproxy's


@dataclass(frozen=True)
class Sample:
    """A sample expression: a fetch and the converters applied to its value in turn.

    ``Sample("req.ssl_sni", ("lower",))`` is ``req.ssl_sni,lower``; ``fastproxy.samples`` knows which
    fetches and converters exist (``samples.parse`` reads the text form).
    """

    fetch: str
    converters: tuple[str, ...] = ()

    def __str__(self) -> str:
        return ",".join((self.fetch, *self.converters))


@dataclass
class Balance:
    """``balance <algorithm> [args]`` plus the hashing settings that go with it."""

    algorithm: str = "roundrobin"  # one of BALANCE_ALGORITHMS
    sample: Optional[Sample] = None  # what ``balance hash <sample>`` hashes (``source`` hashes ``src``)
    draws: Optional[int] = None  # ``random(<draws>)``; None: HAProxy's default, 2
    hash_type: str = "map-based"  # one of HASH_TYPES
    hash_function: Optional[str] = None
    hash_balance_factor: int = 0  # 0: unbounded
    # fastproxy's, through the API only: the size of a ``maglev`` table (a prime) and the seed of every
    # hash of the backend (processes balancing the same keys agree when they share both).
    table_size: int = 65537
    seed: int = 0


@dataclass(frozen=True)
class StickStore:
    """One data type a stick table stores (``store conn_rate(10s)``): its name and, for a rate, its
    period in seconds (``fastproxy.sticktables.DATA_TYPES`` lists them)."""

    name: str
    period: Optional[float] = None
    count: Optional[int] = None  # the elements of an array (``gpc(3)``, ``gpc_rate(2,10s)``, ``gpt(2)``)


@dataclass
class StickTable:
    """``stick-table type <type> [len <n>] size <n> [expire <t>] [nopurge] [peers <name>] [store ...]``:
    a table named after the proxy declaring it (``fastproxy.sticktables`` runs it)."""

    name: str
    type: str  # ip | ipv6 | integer | string | binary
    size: int
    length: Optional[int] = None  # of string and binary keys; None: 32
    expire: Optional[float] = None  # None: entries never expire
    nopurge: bool = False  # a full table refuses new keys instead of evicting the oldest
    peers: Optional[str] = None  # recorded: fastproxy does not synchronise tables with peers (warned)
    store: tuple[StickStore, ...] = ()
    location: Location = field(default_factory=Location)


@dataclass
class StickRule:
    """``stick on|match|store-request <sample> [table <t>] [if|unless <cond>]`` of a backend."""

    kind: str  # "on" (match, then store) | "match" | "store-request"
    sample: Sample
    table: Optional[str] = None  # None: the backend's own table
    condition: Optional[Condition] = None
    location: Location = field(default_factory=Location)


@dataclass
class PersistRule:
    """``force-persist|ignore-persist if|unless <condition>`` of a backend."""

    force: bool  # False: ``ignore-persist``
    condition: Condition
    location: Location = field(default_factory=Location)


@dataclass
class Backend:
    """A ``backend`` (or the backend half of a ``listen``)."""

    name: str
    servers: list[Server] = field(default_factory=list)
    mode: str = "tcp"
    balance: Balance = field(default_factory=Balance)
    timeouts: Timeouts = field(default_factory=Timeouts)
    retries: int = 3
    # ``retry-on``: whether a failed connect is retried (``conn-failure``, HAProxy's default); the
    # other causes are for HTTP responses, which HAProxy only retries in ``mode http``.
    retry_on_conn_failure: bool = True
    redispatch: bool = False
    server_keepalive: KeepAlive = field(default_factory=KeepAlive)
    source: Optional[tuple[str, int]] = None  # ``source <addr>[:<port>]``: what servers are dialed from
    fullconn: Optional[int] = None
    # ``load-server-state-from-file global|local|none`` (None: not set, as none) and the local file's
    # name (``server-state-file-name``; None: the backend's name), read at start (server_state.py).
    load_server_state: Optional[str] = None
    server_state_file_name: Optional[str] = None
    id: Optional[int] = None  # HAProxy's proxy id (``id``), shown by the stats; None: numbered in order
    options: dict[str, Any] = field(default_factory=dict)  # recorded, not acted on: splice-*, description...
    location: Location = field(default_factory=Location)
    allbackups: bool = False  # ``option allbackups``: use every backup server at once, not the first
    tcp_check: bool = False  # ``option tcp-check``: checks run ``tcp_check_rules`` (none: a connect)
    tcp_check_rules: list[TcpCheckRule] = field(default_factory=list)
    # Which of HAProxy's check kinds the rules implement (``CHECK_KINDS``): ``option tcp-check`` is
    # "tcp", ``option httpchk`` "http"...  It decides the wording of the check descriptions.
    check_kind: str = "tcp"
    # ``option external-check`` (``check_kind`` "external"): the command each check runs
    # (``external-check command``), and the PATH it runs with (``external-check path``; HAProxy's
    # default is empty).
    external_command: Optional[str] = None
    external_path: Optional[str] = None
    http_send_state: bool = False  # ``http-check send-state``: the X-Haproxy-Server-State header
    http_disable_on_404: bool = False  # ``http-check disable-on-404``: a 404 drains the server
    log_health_checks: bool = False  # ``option log-health-checks``: a line per check result that counts
    log_targets: list[LogTarget] = field(default_factory=list)  # where server state changes go
    # ``tcp-request content`` rules of the backend: run once the backend is chosen, before a server is
    # (HAProxy's AN_REQ_INSPECT_BE), waiting up to its own ``tcp-request inspect-delay``.
    tcp_request_rules: list[TcpRequestRule] = field(default_factory=list)
    acls: dict[str, list[Acl]] = field(default_factory=dict)
    inspect_delay: Optional[float] = None
    # Persistence: the stick rules in order, ``option persist`` (a stuck client goes to its server even
    # when it is down) and the ``force-persist`` conditions (the same, for the clients they match, even
    # to a server in maintenance).  Their conditions name ``acls``.
    stick_rules: list[StickRule] = field(default_factory=list)
    persist: bool = False
    # ``force-persist`` and ``ignore-persist`` in order: the first whose condition matches decides
    # (HAProxy's persist_rules); in TCP mode an ``ignore-persist`` only keeps a later force-persist
    # from applying, as HAProxy's SF_IGNORE_PRST acts on HTTP cookies alone.
    persist_rules: list[PersistRule] = field(default_factory=list)
    # ``persist rdp-cookie[(<name>)]``: the server the client's RDP cookie names (``msts`` by default).
    persist_rdp_cookie: Optional[str] = None
    # ``use-server <server> if|unless <condition>``: the first that matches picks the server (HAProxy's
    # server_rules, before persistence and balancing); ``UseBackend`` rules naming a server.
    use_servers: list[UseBackend] = field(default_factory=list)

    def server(self, name: str) -> Server:
        for server in self.servers:
            if server.name == name:
                return server
        raise KeyError(name)


@dataclass
class Acl:
    """``acl <name> <criterion> [flags] <values...>``: a named test on the connection."""

    name: str
    criterion: Sample  # src, dst, src_port, dst_port, req.ssl_sni,lower, req_ssl_hello_type, ...
    values: tuple[str, ...]
    flags: tuple[str, ...] = ()  # e.g. ("-i",)
    location: Location = field(default_factory=Location)


@dataclass
class Condition:
    """``if|unless <terms>``: terms are OR-ed groups of AND-ed ACL names, each maybe negated with '!'.

    ``groups`` is a tuple of groups; each group a tuple of ``(negated, acl_name_or_Acl)``.
    Anonymous ``{ ... }`` ACLs appear as ``Acl`` objects in place of a name.
    """

    negate: bool  # True for "unless"
    groups: tuple[tuple[tuple[bool, Any], ...], ...]


@dataclass
class UseBackend:
    """``use_backend <name> if|unless <condition>``."""

    backend: str
    condition: Optional[Condition] = None
    location: Location = field(default_factory=Location)


@dataclass
class TcpRequestRule:
    """``tcp-request connection|session|content <action> [if|unless cond]``.

    Actions: ``accept`` and ``reject`` end the rule set; ``track-sc<n> <sample> [table <t>]`` tracks
    the sample's entry in a stick table as counter ``n`` (``counter``, ``sample``, ``table``: None for
    the frontend's own table), ``sc-inc-gpc0(<n>)`` / ``sc-inc-gpc1(<n>)`` count one in the tracked
    entry, ``sc-set-gpt0(<n>) <value>`` writes ``value`` there; these go on to the next rule, as
    ``expect-proxy`` (``layer4``, a connection rule) does: the client's first bytes are then a PROXY
    header whose addresses stand for the client's own; ``set-src``, ``set-dst`` and their ``-port``
    forms change the addresses the following rules, the balancer, the tables and the logs see;
    ``set-var``, ``set-var-fmt`` and ``unset-var`` change a variable (``fastproxy.variables``) the
    following rules, ``use_backend`` and the log line may read with ``var()``."""

    phase: str  # "connection" | "session" | "content"
    # "accept" | "reject" | "track-sc" | "sc-inc-gpc0" | "sc-inc-gpc1" | "sc-set-gpt0" | "sc-inc-gpc"
    # | "sc-set-gpt" (``value``, or ``sample`` for an expression) | "expect-proxy"
    # | "set-src" | "set-src-port" | "set-dst" | "set-dst-port" (``sample``: the new value)
    # | "set-var" | "set-var-fmt" | "unset-var" | "set-tos" | "set-mark" (``value``) | "set-priority-class"
    # | "set-priority-offset" (``sample``) | "capture" (``sample`` into the slot ``index``, ``value`` long)
    action: str
    condition: Optional[Condition] = None
    location: Location = field(default_factory=Location)
    counter: int = 0
    sample: Optional[Sample] = None
    table: Optional[str] = None
    value: int = 0
    index: Optional[int] = None  # ``sc-inc-gpc(<index>,<n>)``, ``sc-set-gpt(<index>,<n>)``: an array's
    # ``set-var(<variable>[,<cond>...]) <sample>``, ``set-var-fmt(<variable>...) <log_format>``,
    # ``unset-var(<variable>)``: a scoped name (``txn.x``) and set-var's conditions (``ifnotexists``...)
    variable: Optional[str] = None
    variable_conditions: tuple[str, ...] = ()
    log_format: Optional[str] = None


@dataclass(frozen=True)
class StatsUser:
    """One ``stats auth <user>:<password>`` account of a stats page (the password in clear, as
    HAProxy's ``stats auth`` takes it)."""

    user: str
    password: str


@dataclass(frozen=True)
class PrometheusRoute:
    """``http-request use-service prometheus-exporter if { path <path> }``: which requests of a stats
    listener get the Prometheus exporter.  ``prefix`` for ``path_beg`` (or ``path -m beg``)."""

    path: str
    prefix: bool = False
    location: Location = field(default_factory=Location)


@dataclass
class StatsPage:
    """What a ``mode http`` proxy whose only job is statistics serves on its ``bind`` lines (HAProxy's
    ``stats`` keywords, ``monitor-uri`` and the Prometheus exporter service).

    ``uri`` is the page's prefix (``stats uri``; ``stats enable`` alone gives HAProxy's default,
    ``/haproxy?stats``), ``None`` when the proxy serves no page (only ``monitor-uri`` or the exporter).
    ``refresh`` in seconds; ``auth`` empty means no authentication; ``admin`` is the ``stats admin``
    condition (over the proxy's ``acls``), ``None`` for no admin rule.  ``show_node`` and
    ``show_desc``: ``None`` when not shown, ``""`` for the host name / the global description.
    ``scope``: the proxy names shown, every proxy when empty (``.`` names the stats proxy itself)."""

    uri: Optional[str] = None
    refresh: Optional[float] = None
    realm: Optional[str] = None
    auth: list[StatsUser] = field(default_factory=list)
    admin: Optional[Condition] = None
    hide_version: bool = False
    show_legends: bool = False
    show_node: Optional[str] = None
    show_desc: Optional[str] = None
    scope: list[str] = field(default_factory=list)
    monitor_uri: Optional[str] = None
    prometheus: list[PrometheusRoute] = field(default_factory=list)
    location: Location = field(default_factory=Location)


DEFAULT_STATS_URI = "/haproxy?stats"  # HAProxy's STATS_DEFAULT_URI


@dataclass
class Frontend:
    """A ``frontend`` (or the frontend half of a ``listen``)."""

    name: str
    binds: list[Bind] = field(default_factory=list)
    mode: str = "tcp"
    default_backend: Optional[str] = None
    use_backends: list[UseBackend] = field(default_factory=list)
    acls: dict[str, list[Acl]] = field(default_factory=dict)
    tcp_request_rules: list[TcpRequestRule] = field(default_factory=list)
    inspect_delay: Optional[float] = None
    timeouts: Timeouts = field(default_factory=Timeouts)
    maxconn: Optional[int] = None
    rate_limit_sessions: Optional[int] = None
    client_keepalive: KeepAlive = field(default_factory=KeepAlive)
    log: bool = False
    tcplog: bool = False  # a line per session (``option tcplog`` or ``log-format``), not one per accept
    log_format: Optional[str] = None  # ``log-format``; None with ``tcplog``: HAProxy's tcplog format
    unique_id_format: Optional[str] = None  # what %ID writes (``unique-id-format``); None: "-"
    log_format_sd: Optional[str] = None  # the structured data of ``rfc5424`` lines; None: "-"
    dontlognull: bool = False
    # The capture slots (``declare capture``, ``capture request|response header``, each ``tcp-request
    # content capture``), by the length they keep, in HAProxy's order: what %hr/%hrl and %hs/%hsl write.
    request_captures: tuple[int, ...] = ()
    response_captures: tuple[int, ...] = ()
    id: Optional[int] = None  # HAProxy's proxy id (``id``), shown by the stats; None: numbered in order
    options: dict[str, Any] = field(default_factory=dict)  # recorded, not acted on: splice-*, description...
    location: Location = field(default_factory=Location)
    log_targets: list[LogTarget] = field(default_factory=list)  # in effect (``log global`` expanded)
    # fastproxy's, through the API only: False keeps the frontend off the pump's lanes (every
    # connection through Python); None or True let it run on one whenever it qualifies.
    lanes: Optional[bool] = None
    default_backend_location: Optional[Location] = None  # its ``default_backend`` line, for messages
    # A ``mode http`` frontend that only serves statistics: its page, monitor-uri and exporter (served
    # by ``stats_http`` on the binds, never by the TCP proxy).  None for every traffic frontend.
    stats: Optional[StatsPage] = None


@dataclass
class StatsSocket:
    """One ``stats socket`` of ``global``: where the runtime API listens, and who may do what.

    ``path`` for a UNIX socket, else ``host``/``port`` (``family`` from an ``ipv4@``/``ipv6@``
    prefix).  ``mode``/``uid``/``gid`` apply to the socket file (``user``/``group`` names are turned
    into ``uid``/``gid`` when read).  ``expose_fd_listeners``: ``_getsocks`` hands the listening sockets to a
    new process started with ``-x`` (``listener_transfer``)."""

    path: Optional[str] = None
    host: str = ""
    port: int = 0
    family: Optional[str] = None
    level: str = "operator"  # "user" | "operator" | "admin"
    mode: Optional[int] = None  # permission bits of the socket file
    uid: Optional[int] = None
    gid: Optional[int] = None
    expose_fd_listeners: bool = False
    location: Location = field(default_factory=Location)

    @property
    def address(self) -> str:
        """As ``show cli sockets`` writes it: ``unix@/path``, ``ipv4@1.2.3.4:80``, ``ipv6@[::1]:80``."""
        if self.path is not None:
            return f"unix@{self.path}"
        if ":" in self.host:
            return f"ipv6@[{self.host}]:{self.port}"
        return f"ipv4@{self.host}:{self.port}"


@dataclass
class Global:
    """The ``global`` section."""

    maxconn: Optional[int] = None
    maxconnrate: Optional[int] = None
    nbthread: Optional[int] = None  # None: one pump thread per CPU the process may use (pump.default_threads)
    bufsize: int = 16384  # tune.bufsize
    pipesize: Optional[int] = None  # tune.pipesize; None: 1 MiB (pump.default_pipesize)
    maxpipes: Optional[int] = None
    splice: bool = True  # False with "nosplice"
    pidfile: Optional[str] = None
    node: Optional[str] = None  # show info's node and the page's ``stats show-node``; None: the host name
    description: Optional[str] = None  # show info's description and the page's ``stats show-desc``
    daemon: bool = False
    master_worker: bool = False  # run as a master and its worker, as ``-W`` (master.py)
    hard_stop_after: Optional[float] = None
    log_targets: list[LogTarget] = field(default_factory=list)  # what ``log global`` in a proxy stands for
    stats_sockets: list[StatsSocket] = field(default_factory=list)
    stats_timeout: float = 10.0  # idle time after which the runtime API closes a connection
    stats_maxconn: int = 10  # runtime API connections at once, over all its sockets
    user: Optional[str] = None
    group: Optional[str] = None
    uid: Optional[int] = None  # ``uid``/``gid``: numeric ids; ``user``/``group`` names win when both are set
    gid: Optional[int] = None
    chroot: Optional[str] = None
    spread_checks: int = 0  # percent of random spread around each check interval (0 to 50)
    external_check: bool = False  # ``external-check``: ``option external-check`` may run commands
    insecure_fork_wanted: bool = False  # without it HAProxy forbids its process to fork once started
    ssl_server_verify: str = "required"  # ``ssl-server-verify``: a server's ``verify`` when it has none
    # ``ssl-default-bind-options``/``-ciphers`` and ``ssl-default-server-*``: what binds and servers use
    # where their own lines set nothing; ``crt-base``/``ca-base``: where relative file names are.
    bind_tls: TlsOptions = field(default_factory=TlsOptions)
    server_tls: TlsOptions = field(default_factory=TlsOptions)
    crt_base: Optional[str] = None
    ca_base: Optional[str] = None
    # ``set-var proc.<name> <expr>`` / ``set-var-fmt``: the values the process starts with, by name
    # without its scope (``x`` -> (type, value)); other ``proc.`` variables start unset.
    variables: dict[str, tuple[str, Any]] = field(default_factory=dict)
    server_state_file: Optional[str] = None  # ``server-state-file``: the global state file
    server_state_base: Optional[str] = None  # ``server-state-base``: where relative state files are
    reuseport: bool = True  # False with ``noreuseport``: the binds' SO_REUSEPORT (a -sf reload binds beside)


@dataclass
class Warning_:
    """A non-fatal remark on the configuration (a keyword HAProxy knows that fastproxy ignores...)."""

    location: Location
    keyword: str
    message: str

    def __str__(self) -> str:
        return f"{self.location}: '{self.keyword}': {self.message}"


@dataclass
class Config:
    """A whole configuration: what ``fastproxy run`` runs."""

    global_: Global = field(default_factory=Global)
    frontends: dict[str, Frontend] = field(default_factory=dict)
    backends: dict[str, Backend] = field(default_factory=dict)
    stick_tables: dict[str, StickTable] = field(default_factory=dict)  # by name (their proxy's)
    warnings: list[Warning_] = field(default_factory=list)
    files: tuple[str, ...] = ()
