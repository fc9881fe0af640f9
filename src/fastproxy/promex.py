"""HAProxy's Prometheus exporter (``http-request use-service prometheus-exporter``, HAProxy 2.6's
addons/promex): the ``haproxy_process_*``, ``haproxy_frontend_*``, ``haproxy_backend_*``,
``haproxy_server_*`` and ``haproxy_sticktable_*`` metrics with HAProxy's names, HELP texts, types and
labels (``proxy``, ``server``, ``state`` for the state sets, ``version`` on ``build_info``, ``name`` and
``type`` of a stick table), as haproxy 2.6.12 writes them.

Sans-IO: ``StatsCollector`` is a ``prometheus_client`` custom collector over ``show info``'s values
(``stats.info``), ``show stat``'s rows (``stats.rows``) and the stick tables (their ``size`` and
``used``, as ``show table`` reads them), read when Prometheus scrapes (``collect`` calls ``read``);
``exposition`` renders them in the text format.  Every metric is the field
``show stat`` or ``show info`` already computes, so the two cannot disagree and nothing is counted for
the metrics; only HAProxy's conventions are applied on the way: an empty field is ``NaN``; milliseconds
become seconds where promex divides (the session and check times); ``status`` and ``check_status``
become state sets (one sample per state, 1 on the current one); the backends' ``agg_*`` state sets
count their servers' states (``show stat`` has 0 there, as HAProxy's has).  A server's
``check_status``, ``check_code`` are written only while its checks run (not paused by maintenance),
``check_duration_seconds`` once a check ended, as HAProxy does (fastproxy's ``show stat`` has no check
duration for a paused server, so neither has this: HAProxy keeps the last one; for the same reason a
server in maintenance counts in no state of ``agg_check_status``, where HAProxy counts its last one).

Left out, because they are about HTTP or DNS, which a layer-4 proxy does not do (HAProxy itself writes
the HTTP ones only for ``mode http`` proxies):

- ``haproxy_{frontend,backend,server}_http_*`` (responses by code, requests, request rate, compression,
  cache) and ``haproxy_frontend_intercepted_requests_total`` (redirects and services);
- ``haproxy_process_http_comp_bytes_in_total``, ``_out_total``, ``limit_http_comp``,
  ``current_zlib_memory``, ``max_zlib_memory`` (HTTP compression);
- ``haproxy_process_failed_resolutions`` (DNS resolvers; fastproxy has none.  It is also the one
  counter HAProxy names without ``_total``, which ``prometheus_client`` cannot write).

What HAProxy writes for a TCP proxy although TCP never moves it (``failed_header_rewriting_total``,
``connection_reuses_total``, the idle connection gauges) is kept, with ``show stat``'s value (0), so that
dashboards and alerts written for HAProxy find every series they query.

fastproxy's own families, which HAProxy has no equivalent of, are named ``fastproxy_*`` so that no
HAProxy dashboard mistakes them for its own (written with the ``backend`` scope, and ``global`` for
the fleet's):

- ``fastproxy_backend_hash_table_digest{proxy, algorithm, digest}`` 1: per backend hashing on a ring
  (``hash-type consistent`` or ``maglev``, ``balance random``), the digest of its table and of its
  servers' addresses (``balance.routing_digest``, 16 hex digits, as ``show fleet`` prints it) as a
  label.  Instances that send every key to the same address have the same one, so a fleet agrees when
  ``count by (proxy) (count by (proxy, digest) (fastproxy_backend_hash_table_digest))`` is 1;
  ``fastproxy_backend_hash_table_servers`` is the count of servers in that table.
- ``fastproxy_fleet_etcd_connected``, ``_etcd_revision``, ``_batches_total``, ``_changes_total``: where
  the fleet is (``run --fleet``), as ``show fleet``'s last line says it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator, Mapping, Optional, Protocol, Sequence

from prometheus_client.exposition import generate_latest
from prometheus_client.metrics_core import Metric

from .stats import TYPE_BACKEND, TYPE_FRONTEND, TYPE_SERVER

Row = Mapping[str, Any]  # a row of ``stats.rows``: HAProxy's field names -> None, int or str
Info = Mapping[str, Any]  # ``stats.info``: show info's names -> values

# The text format prometheus_client's ``generate_latest`` writes (HAProxy's exporter serves the same).
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"



class Table(Protocol):
    """What the exporter reads of a stick table (``sticktables.StickTable`` is one)."""

    @property
    def name(self) -> str: ...
    @property
    def type(self) -> str: ...
    @property
    def size(self) -> int: ...
    @property
    def used(self) -> int: ...


@dataclass(frozen=True)
class RingTable:
    """One backend's hash table as ``show fleet`` and the exporter show it."""

    backend: str
    algorithm: str  # the ring's: "ketama" or "maglev"
    servers: int
    digest: int  # balance.routing_digest: the table and its servers' addresses


# HAProxy's ``?scope=`` values for the sections written here.
SCOPES = frozenset({"global", "frontend", "backend", "server", "sticktable"})

# --- haproxy_process_*: (show info field, metric name, type, HELP), in HAProxy's order -------------
PROCESS: tuple[tuple[str, str, str, str], ...] = (
    ("Nbthread", "nbthread", "gauge", "Number of started threads (global.nbthread)"),
    ("Nbproc", "nbproc", "gauge", "Number of started worker processes (historical, always 1)"),
    ("Process_num", "relative_process_id", "gauge", "Relative worker process number (1)"),
    ("Uptime_sec", "uptime_seconds", "gauge", "How long ago this worker process was started (seconds)"),
    ("PoolFailed", "pool_failures_total", "counter",
     "Number of failed pool allocations since this worker was started"),
    ("Ulimit-n", "max_fds", "gauge", "Hard limit on the number of per-process file descriptors"),
    ("Maxsock", "max_sockets", "gauge", "Hard limit on the number of per-process sockets"),
    ("Maxconn", "max_connections", "gauge",
     "Hard limit on the number of per-process connections (configured or imposed by Ulimit-n)"),
    ("Hard_maxconn", "hard_max_connections", "gauge",
     "Hard limit on the number of per-process connections (imposed by Memmax_MB or Ulimit-n)"),
    ("CurrConns", "current_connections", "gauge", "Current number of connections on this worker process"),
    ("CumConns", "connections_total", "counter",
     "Total number of connections on this worker process since started"),
    ("CumReq", "requests_total", "counter", "Total number of requests on this worker process since started"),
    ("MaxSslConns", "max_ssl_connections", "gauge",
     "Hard limit on the number of per-process SSL endpoints (front+back), 0=unlimited"),
    ("CurrSslConns", "current_ssl_connections", "gauge",
     "Current number of SSL endpoints on this worker process (front+back)"),
    ("CumSslConns", "ssl_connections_total", "counter",
     "Total number of SSL endpoints on this worker process since started (front+back)"),
    ("Maxpipes", "max_pipes", "gauge", "Hard limit on the number of pipes for splicing, 0=unlimited"),
    ("PipesUsed", "pipes_used_total", "counter", "Current number of pipes in use in this worker process"),
    ("PipesFree", "pipes_free_total", "counter",
     "Current number of allocated and available pipes in this worker process"),
    ("ConnRate", "current_connection_rate", "gauge",
     "Number of front connections created on this worker process over the last second"),
    ("ConnRateLimit", "limit_connection_rate", "gauge", "Hard limit for ConnRate (global.maxconnrate)"),
    ("MaxConnRate", "max_connection_rate", "gauge",
     "Highest ConnRate reached on this worker process since started (in connections per second)"),
    ("SessRate", "current_session_rate", "gauge",
     "Number of sessions created on this worker process over the last second"),
    ("SessRateLimit", "limit_session_rate", "gauge", "Hard limit for SessRate (global.maxsessrate)"),
    ("MaxSessRate", "max_session_rate", "gauge",
     "Highest SessRate reached on this worker process since started (in sessions per second)"),
    ("SslRate", "current_ssl_rate", "gauge",
     "Number of SSL connections created on this worker process over the last second"),
    ("SslRateLimit", "limit_ssl_rate", "gauge", "Hard limit for SslRate (global.maxsslrate)"),
    ("MaxSslRate", "max_ssl_rate", "gauge",
     "Highest SslRate reached on this worker process since started (in connections per second)"),
    ("SslFrontendKeyRate", "current_frontend_ssl_key_rate", "gauge",
     "Number of SSL keys created on frontends in this worker process over the last second"),
    ("SslFrontendMaxKeyRate", "max_frontend_ssl_key_rate", "gauge",
     "Highest SslFrontendKeyRate reached on this worker process since started (in SSL keys per second)"),
    ("SslFrontendSessionReuse_pct", "frontend_ssl_reuse", "gauge",
     "Percent of frontend SSL connections which did not require a new key"),
    ("SslBackendKeyRate", "current_backend_ssl_key_rate", "gauge",
     "Number of SSL keys created on backends in this worker process over the last second"),
    ("SslBackendMaxKeyRate", "max_backend_ssl_key_rate", "gauge",
     "Highest SslBackendKeyRate reached on this worker process since started (in SSL keys per second)"),
    ("SslCacheLookups", "ssl_cache_lookups_total", "counter",
     "Total number of SSL session ID lookups in the SSL session cache on this worker since started"),
    ("SslCacheMisses", "ssl_cache_misses_total", "counter",
     "Total number of SSL session ID lookups that didn't find a session in the SSL session cache on "
     "this worker since started"),
    ("Tasks", "current_tasks", "gauge",
     "Total number of tasks in the current worker process (active + sleeping)"),
    ("Run_queue", "current_run_queue", "gauge",
     "Total number of active tasks+tasklets in the current worker process"),
    ("Idle_pct", "idle_time_percent", "gauge",
     "Percentage of last second spent waiting in the current worker thread"),
    ("Stopping", "stopping", "gauge", "1 if the worker process is currently stopping, otherwise zero"),
    ("Jobs", "jobs", "gauge", "Current number of active jobs on the current worker process (frontend "
     "connections, master connections, listeners)"),
    ("Unstoppable Jobs", "unstoppable_jobs", "gauge",
     "Current number of unstoppable jobs on the current worker process (master connections)"),
    ("Listeners", "listeners", "gauge", "Current number of active listeners on the current worker process"),
    ("ActivePeers", "active_peers", "gauge",
     "Current number of verified active peers connections on the current worker process"),
    ("ConnectedPeers", "connected_peers", "gauge",
     "Current number of peers having passed the connection step on the current worker process"),
    ("DroppedLogs", "dropped_logs_total", "counter",
     "Total number of dropped logs for current worker process since started"),
    ("BusyPolling", "busy_polling_enabled", "gauge",
     "1 if busy-polling is currently in use on the worker process, otherwise zero (config.busy-polling)"),
    ("TotalBytesOut", "bytes_out_total", "counter",
     "Total number of bytes emitted by current worker process since started"),
    ("TotalSplicdedBytesOut", "spliced_bytes_out_total", "counter",
     "Total number of bytes emitted by current worker process through a kernel pipe since started"),
    ("BytesOutRate", "bytes_out_rate", "gauge",
     "Number of bytes emitted by current worker process over the last second"),
    ("CumRecvLogs", "recv_logs_total", "counter",
     "Total number of log messages received by log-forwarding listeners on this worker process since "
     "started"),
    ("Version", "build_info", "gauge", "Build info"),  # 1, the version as a label
    ("Memmax_bytes", "max_memory_bytes", "gauge",
     "Worker process's hard limit on memory usage in byes (-m on command line)"),
    ("PoolAlloc_bytes", "pool_allocated_bytes", "gauge", "Amount of memory allocated in pools (in bytes)"),
    ("PoolUsed_bytes", "pool_used_bytes", "gauge", "Amount of pool memory currently used (in bytes)"),
    ("Start_time_sec", "start_time_seconds", "gauge", "Start time in seconds"),
)

# --- haproxy_{frontend,backend,server}_*: (show stat field, metric name, type, kinds of row, HELP) ---
# Kinds: F frontend, B backend, S server, as HAProxy writes each metric; in HAProxy's order (the
# fields' order in show stat).  One HELP per field, whatever the kind of row.
_F, _B, _S = "F", "B", "S"
PROXY: tuple[tuple[str, str, str, str, str], ...] = (
    ("qcur", "current_queue", "gauge", _B + _S, "Number of current queued connections"),
    ("qmax", "max_queue", "gauge", _B + _S,
     "Highest value of queued connections encountered since process started"),
    ("scur", "current_sessions", "gauge", _F + _B + _S,
     "Number of current sessions on the frontend, backend or server"),
    ("smax", "max_sessions", "gauge", _F + _B + _S,
     "Highest value of current sessions encountered since process started"),
    ("slim", "limit_sessions", "gauge", _F + _B + _S,
     "Frontend/listener/server's maxconn, backend's fullconn"),
    ("stot", "sessions_total", "counter", _F + _B + _S, "Total number of sessions since process started"),
    ("bin", "bytes_in_total", "counter", _F + _B + _S, "Total number of request bytes since process started"),
    ("bout", "bytes_out_total", "counter", _F + _B + _S,
     "Total number of response bytes since process started"),
    ("dreq", "requests_denied_total", "counter", _F + _B,
     "Total number of denied requests since process started"),
    ("dresp", "responses_denied_total", "counter", _F + _B + _S,
     "Total number of denied responses since process started"),
    ("ereq", "request_errors_total", "counter", _F, "Total number of invalid requests since process started"),
    ("econ", "connection_errors_total", "counter", _B + _S,
     "Total number of failed connections to server since the worker process started"),
    ("eresp", "response_errors_total", "counter", _B + _S,
     "Total number of invalid responses since the worker process started"),
    ("wretr", "retry_warnings_total", "counter", _B + _S,
     "Total number of server connection retries since the worker process started"),
    ("wredis", "redispatch_warnings_total", "counter", _B + _S,
     "Total number of server redispatches due to connection failures since the worker process started"),
    ("status", "status", "gauge", _F + _B + _S, "Current status of the service, per state label value."),
    ("weight", "weight", "gauge", _B + _S,
     "Server's effective weight, or sum of active servers' effective weights for a backend"),
    ("act", "active_servers", "gauge", _B, "Total number of active UP servers with a non-zero weight"),
    ("bck", "backup_servers", "gauge", _B, "Total number of backup UP servers with a non-zero weight"),
    ("chkfail", "check_failures_total", "counter", _S,
     "Total number of failed individual health checks per server/backend, since the worker process started"),
    ("chkdown", "check_up_down_total", "counter", _B + _S,
     "Total number of failed checks causing UP to DOWN server transitions, per server/backend, since the "
     "worker process started"),
    ("lastchg", "check_last_change_seconds", "gauge", _B + _S,
     "How long ago the last server state changed, in seconds"),
    ("downtime", "downtime_seconds_total", "counter", _B + _S,
     "Total time spent in DOWN state, for server or backend"),
    ("qlimit", "queue_limit", "gauge", _S,
     "Limit on the number of connections in queue, for servers only (maxqueue argument)"),
    ("throttle", "current_throttle", "gauge", _S,
     "Throttling ratio applied to a server's maxconn and weight during the slowstart period (0 to 100%)"),
    ("lbtot", "loadbalanced_total", "counter", _B + _S,
     "Total number of requests routed by load balancing since the worker process started (ignores queue "
     "pop and stickiness)"),
    ("rate_lim", "limit_session_rate", "gauge", _F,
     "Limit on the number of sessions accepted in a second (frontend only, 'rate-limit sessions' setting)"),
    ("rate_max", "max_session_rate", "gauge", _F + _B + _S,
     "Highest value of sessions per second observed since the worker process started"),
    ("check_status", "check_status", "gauge", _S, "Status of last health check, per state label value."),
    ("check_code", "check_code", "gauge", _S, "layer5-7 code, if available of the last health check."),
    ("check_duration", "check_duration_seconds", "gauge", _S,
     "Total duration of the latest server health check, in seconds."),
    ("cli_abrt", "client_aborts_total", "counter", _B + _S,
     "Total number of requests or connections aborted by the client since the worker process started"),
    ("srv_abrt", "server_aborts_total", "counter", _B + _S,
     "Total number of requests or connections aborted by the server since the worker process started"),
    ("lastsess", "last_session_seconds", "gauge", _B + _S,
     "How long ago some traffic was seen on this object on this worker process, in seconds"),
    ("qtime", "queue_time_average_seconds", "gauge", _B + _S,
     "Avg. queue time for last 1024 successful connections."),
    ("ctime", "connect_time_average_seconds", "gauge", _B + _S,
     "Avg. connect time for last 1024 successful connections."),
    ("rtime", "response_time_average_seconds", "gauge", _B + _S,
     "Avg. response time for last 1024 successful connections."),
    ("ttime", "total_time_average_seconds", "gauge", _B + _S,
     "Avg. total time for last 1024 successful connections."),
    ("conn_rate_max", "connections_rate_max", "gauge", _F,
     "Highest value of connections per second observed since the worker process started"),
    ("conn_tot", "connections_total", "counter", _F,
     "Total number of new connections accepted on this frontend since the worker process started"),
    ("dcon", "denied_connections_total", "counter", _F,
     "Total number of incoming connections blocked on a listener/frontend by a tcp-request connection rule "
     "since the worker process started"),
    ("dses", "denied_sessions_total", "counter", _F,
     "Total number of incoming sessions blocked on a listener/frontend by a tcp-request connection rule "
     "since the worker process started"),
    ("wrew", "failed_header_rewriting_total", "counter", _F + _B + _S,
     "Total number of failed HTTP header rewrites since the worker process started"),
    ("connect", "connection_attempts_total", "counter", _B + _S,
     "Total number of outgoing connection attempts on this backend/server since the worker process started"),
    ("reuse", "connection_reuses_total", "counter", _B + _S,
     "Total number of reused connection on this backend/server since the worker process started"),
    ("srv_icur", "idle_connections_current", "gauge", _S,
     "Current number of idle connections available for reuse on this server"),
    ("src_ilim", "idle_connections_limit", "gauge", _S,
     "Limit on the number of available idle connections on this server (server 'pool_max_conn' directive)"),
    ("qtime_max", "max_queue_time_seconds", "gauge", _B + _S, "Maximum observed time spent in the queue"),
    ("ctime_max", "max_connect_time_seconds", "gauge", _B + _S,
     "Maximum observed time spent waiting for a connection to complete"),
    ("rtime_max", "max_response_time_seconds", "gauge", _B + _S,
     "Maximum observed time spent waiting for a server response"),
    ("ttime_max", "max_total_time_seconds", "gauge", _B + _S,
     "Maximum observed total request+response time (request+queue+connect+response+processing)"),
    ("eint", "internal_errors_total", "counter", _F + _B + _S,
     "Total number of internal errors since process started"),
    ("idle_conn_cur", "unsafe_idle_connections_current", "gauge", _S,
     "Current number of unsafe idle connections"),
    ("safe_conn_cur", "safe_idle_connections_current", "gauge", _S,
     "Current number of safe idle connections"),
    ("used_conn_cur", "used_connections_current", "gauge", _S, "Current number of connections in use"),
    ("need_conn_est", "need_connections_current", "gauge", _S, "Estimated needed number of connections"),
    ("uweight", "uweight", "gauge", _B + _S,
     "Server's user weight, or sum of active servers' user weights for a backend"),
    ("agg_server_status", "agg_server_status", "gauge", _B, "Backend's aggregated gauge of servers' status"),
    ("agg_server_check_status", "agg_server_check_status", "gauge", _B,
     "Backend's aggregated gauge of servers' state check status"),
    ("agg_check_status", "agg_check_status", "gauge", _B,
     "Backend's aggregated gauge of servers' state check status"),
)

# Fields in milliseconds in show stat that promex writes in seconds.
_MILLISECONDS = frozenset({"check_duration", "qtime", "ctime", "rtime", "ttime",
                           "qtime_max", "ctime_max", "rtime_max", "ttime_max"})

# The states of the state sets, in HAProxy's order.
FRONTEND_STATES = ("DOWN", "UP")
BACKEND_STATES = ("DOWN", "UP")
SERVER_STATES = ("DOWN", "UP", "MAINT", "DRAIN", "NOLB")
# HAProxy's check statuses that are a result (check.c, CHK_RES_FAILED and above), in its order.
CHECK_STATES = ("HANA", "SOCKERR", "L4OK", "L4TOUT", "L4CON", "L6OK", "L6TOUT", "L6RSP", "L7TOUT", "L7RSP",
                "L7OK", "L7OKC", "L7STS", "PROCERR", "PROCTOUT", "PROCOK")

_SECTIONS = {TYPE_FRONTEND: ("frontend", _F), TYPE_BACKEND: ("backend", _B), TYPE_SERVER: ("server", _S)}


def frontend_state(row: Row) -> str:
    """promex's frontend state: UP unless the proxy is stopped (``OPEN`` and ``FULL`` are UP)."""
    return "DOWN" if row["status"] == "STOP" else "UP"


def backend_state(row: Row) -> str:
    return "UP" if str(row["status"]).startswith("UP") else "DOWN"


def server_state(row: Row) -> str:
    """promex_srv_status() from show stat's word: maintenance first, then NOLB (``health stopping``),
    DRAIN on a running server, UP on a running one (``UP 1/3`` is going down but up; ``no check`` is up),
    else DOWN (``DOWN 1/2`` is coming up but down)."""
    status = str(row["status"])
    for state in ("MAINT", "NOLB", "DRAIN"):
        if status.startswith(state):
            return state
    return "UP" if status.startswith(("UP", "no check")) else "DOWN"


def check_state(row: Row) -> Optional[str]:
    """The last check's status (``* L4OK`` while a check runs), None when checks do not run."""
    status = row.get("check_status")
    return None if status is None else str(status).removeprefix("* ")


def _number(value: Any) -> float:
    if value is None or isinstance(value, str):
        return math.nan
    return float(value)


class StatsCollector:
    """A ``prometheus_client`` custom collector: ``read()`` gives show info's values and show stat's
    rows at each scrape (``stats.info``, ``stats.rows``), ``collect`` turns them into HAProxy's metric
    families; register it in a ``CollectorRegistry`` of your own or render it with ``exposition``.
    ``scopes`` and ``no_maint`` are HAProxy's ``?scope=`` and ``?no-maint``."""

    def __init__(self, read: Callable[[], tuple[Info, Sequence[Row]]], *,
                 tables: Callable[[], Sequence[Table]] = lambda: (),
                 rings: Callable[[], Sequence[RingTable]] = lambda: (),
                 fleet: Callable[[], Optional[Mapping[str, Any]]] = lambda: None,
                 scopes: Iterable[str] = SCOPES, no_maint: bool = False) -> None:
        self.read = read
        self.tables = tables
        self.rings = rings
        self.fleet = fleet
        self.scopes = frozenset(scopes)
        self.no_maint = no_maint

    def collect(self) -> Iterator[Metric]:
        info, rows = self.read()
        if "global" in self.scopes:
            yield from process_metrics(info)
            status = self.fleet()
            if status is not None:
                yield from fleet_metrics(status)
        for kind in (TYPE_FRONTEND, TYPE_BACKEND, TYPE_SERVER):
            section, letter = _SECTIONS[kind]
            if section not in self.scopes:
                continue
            chosen = [row for row in rows if row["type"] == kind]
            if kind == TYPE_SERVER and self.no_maint:
                chosen = [row for row in chosen if server_state(row) != "MAINT"]
            yield from proxy_metrics(section, letter, chosen, rows)
            if kind == TYPE_BACKEND:
                yield from ring_metrics(self.rings())
        if "sticktable" in self.scopes:
            yield from table_metrics(self.tables())


def _family(name: str, kind: str, help_text: str) -> tuple[Metric, str]:
    """The family and the name of its samples: prometheus_client names a counter's family without the
    ``_total`` its samples (and its HELP and TYPE lines) carry."""
    if kind == "counter":
        return Metric(name.removesuffix("_total"), help_text, "counter"), name
    return Metric(name, help_text, "gauge"), name


def process_metrics(info: Info) -> Iterator[Metric]:
    for field, name, kind, help_text in PROCESS:
        family, sample = _family("haproxy_process_" + name, kind, help_text)
        if field == "Version":
            family.add_sample(sample, {"version": str(info[field])}, 1.0)
        else:
            family.add_sample(sample, {}, _number(info.get(field)))
        yield family


def proxy_metrics(section: str, letter: str, rows: Sequence[Row],
                  every_row: Sequence[Row]) -> Iterator[Metric]:
    """The families of one section over its rows; ``every_row`` gives the backends their servers."""
    for field, name, kind, kinds, help_text in PROXY:
        if letter not in kinds:
            continue
        family, sample = _family(f"haproxy_{section}_{name}", kind, help_text)
        for row in rows:
            labels = {"proxy": str(row["pxname"])}
            if section == "server":
                labels["server"] = str(row["svname"])
            for extra, value in _samples(section, field, row, every_row):
                family.add_sample(sample, {**labels, **extra}, value)
        if family.samples:
            yield family


def _samples(section: str, field: str, row: Row,
             every_row: Sequence[Row]) -> Iterator[tuple[dict[str, str], float]]:
    """(extra labels, value) of one row's samples for one field, as promex writes them."""
    if field == "status":
        state = {"frontend": frontend_state, "backend": backend_state, "server": server_state}[section](row)
        states = {"frontend": FRONTEND_STATES, "backend": BACKEND_STATES, "server": SERVER_STATES}[section]
        for name in states:
            yield {"state": name}, float(name == state)
    elif field == "check_status":
        current = check_state(row)
        if current is not None:
            for name in CHECK_STATES:
                yield {"state": name}, float(name == current)
    elif field == "check_code":
        if check_state(row) is not None:
            yield {}, float(row["check_code"] or 0)
    elif field == "check_duration":
        if row["check_duration"] is not None:
            yield {}, row["check_duration"] / 1000.0
    elif field in ("agg_server_status", "agg_server_check_status", "agg_check_status"):
        servers = [r for r in every_row if r["type"] == TYPE_SERVER and r["iid"] == row["iid"]]
        if not servers:
            return  # HAProxy writes no aggregate for a backend without servers
        if field == "agg_check_status":
            states, found = CHECK_STATES, [check_state(server) for server in servers]
        else:
            states, found = SERVER_STATES, [server_state(server) for server in servers]
        for name in states:
            yield {"state": name}, float(found.count(name))
    elif field in _MILLISECONDS:
        value = row[field]
        yield {}, math.nan if value is None else value / 1000.0
    else:
        yield {}, _number(row[field])


def table_metrics(tables: Sequence[Table]) -> Iterator[Metric]:
    """``haproxy_sticktable_size`` and ``_used`` of every table (in HAProxy's order, the last declared
    first); a table of size 0 is left out, as HAProxy does."""
    for field, help_text in (("size", "Stick table size."),
                             ("used", "Number of entries used in this stick table.")):
        family = Metric(f"haproxy_sticktable_{field}", help_text, "gauge")
        for table in tables:
            if table.size:
                family.add_sample(family.name, {"name": table.name, "type": table.type},
                                  float(getattr(table, field)))
        if family.samples:
            yield family


def ring_metrics(rings: Sequence[RingTable]) -> Iterator[Metric]:
    """fastproxy's: each hashed backend's table digest (a label: the value is 1) and its servers."""
    digests = Metric("fastproxy_backend_hash_table_digest",
                     "fastproxy: the digest of the backend's hash table and its servers' addresses, in "
                     "the label 'digest'; equal on every instance that routes every key alike", "gauge")
    servers = Metric("fastproxy_backend_hash_table_servers",
                     "fastproxy: the number of servers in the backend's hash table", "gauge")
    for ring in rings:
        labels = {"proxy": ring.backend, "algorithm": ring.algorithm}
        digests.add_sample(digests.name, {**labels, "digest": f"{ring.digest:016x}"}, 1.0)
        servers.add_sample(servers.name, labels, float(ring.servers))
    if digests.samples:
        yield digests
        yield servers


# fastproxy's fleet families: (key of ``Fleet.status()``, metric name, type, HELP).
FLEET: tuple[tuple[str, str, str, str], ...] = (
    ("etcd", "etcd_connected", "gauge", "fastproxy: 1 while the fleet's etcd watch is connected"),
    ("revision", "etcd_revision", "gauge", "fastproxy: the last etcd revision the fleet has seen"),
    ("batches", "batches_total", "counter", "fastproxy: batches of etcd changes applied since started"),
    ("changes", "changes_total", "counter", "fastproxy: etcd changes applied since started"),
)


def fleet_metrics(status: Mapping[str, Any]) -> Iterator[Metric]:
    """``status`` is ``Fleet.status()``: ``etcd`` is "connected" or "unreachable", the others counts."""
    for key, name, kind, help_text in FLEET:
        family, sample = _family("fastproxy_fleet_" + name, kind, help_text)
        value = status[key]
        family.add_sample(sample, {}, float(value == "connected" if key == "etcd" else value))
        yield family


def exposition(info: Info, rows: Sequence[Row], *, tables: Sequence[Table] = (),
               rings: Sequence[RingTable] = (), fleet: Optional[Mapping[str, Any]] = None,
               scopes: Iterable[str] = SCOPES, no_maint: bool = False) -> bytes:
    """The metrics in Prometheus's text format (serve it with ``CONTENT_TYPE``)."""
    collector = StatsCollector(lambda: (info, rows), tables=lambda: tables, rings=lambda: rings,
                               fleet=lambda: fleet, scopes=scopes, no_maint=no_maint)
    return generate_latest(collector)  # type: ignore[arg-type]


def query_options(pairs: Iterable[tuple[str, str]]) -> dict[str, Any]:
    """``exposition``'s keywords from a scrape's query (``?scope=backend&scope=server&no-maint``), as
    HAProxy reads it: without ``scope`` every section, with it only those named (``*`` all; an empty
    one drops those named before it).  An unknown scope is a ValueError (HAProxy answers 400)."""
    scopes: Optional[set[str]] = None
    no_maint = False
    for key, value in pairs:
        if key == "scope":
            scopes = set() if scopes is None else scopes
            if value == "":
                scopes = set()
            elif value == "*":
                scopes |= SCOPES
            elif value in SCOPES:
                scopes.add(value)
            elif value == "listener":
                continue  # a section of later HAProxy versions (2.6.12 answers it with nothing)
            else:
                raise ValueError(f"unknown scope {value!r}")
        elif key == "no-maint":
            no_maint = True
    return {"scopes": SCOPES if scopes is None else frozenset(scopes), "no_maint": no_maint}
