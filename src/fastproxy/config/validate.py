"""Semantic checks of a ``Config``: what must hold for it to run, whoever built it.

The HAProxy reader runs them when it has built the model (their errors join the file's, in line order)
and ``Engine.start`` runs them before opening anything, so that a configuration built through the Python
API fails as a file saying the same thing fails, with the same message.  They look at the model only:
references between proxies, ACLs and conditions, balancing algorithms and their hash samples, the ports
of checked servers.  What needs the network (resolving host names) stays with the engine; what depends
on how a file was written (a keyword in the wrong section, ``mode http``, warnings) stays with the reader.

Each problem is a ``ConfigError`` carrying the file, line and keyword of the model object it concerns
(``<api>`` for objects built without a ``Location``).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Optional

from .. import acl as acls
from .. import samples
from ..errors import ConfigError
from .model import (
    first_check_rule,
    BALANCE_ALGORITHMS,
    HASH_TYPES,
    Acl,
    Backend,
    Condition,
    Config,
    Frontend,
    Location,
    Server,
)

__all__ = ["check", "problems"]


def check(config: Config) -> None:
    """Raise one ``ConfigError`` carrying every problem of ``config`` (nothing if it can run)."""
    found = problems(config)
    if found:
        count = len(found)
        raise ConfigError(f"{count} error{'s' if count > 1 else ''} in the configuration", errors=found)


def problems(config: Config) -> list[ConfigError]:
    """Every problem of ``config``, frontends first, each in model order."""
    found: list[ConfigError] = []
    for frontend in config.frontends.values():
        found += _frontend(frontend, config.backends)
    for backend in config.backends.values():
        found += _backend(backend)
    found += _tables(config)
    found += _tracks(config)
    found += _tls_checks(config)
    return found


def _tls_checks(config: Config) -> Iterator[ConfigError]:
    """HAProxy 2.6 refuses to verify a server's certificate against nothing: a TLS check that verifies
    (``verify required``, or ``ssl-server-verify`` by default) needs a ``ca-file``."""
    for backend in config.backends.values():
        rules = backend.tcp_check_rules if backend.tcp_check else []
        tls_rules = any(rule.ssl for rule in rules)
        for server in backend.servers:
            if not (server.ssl or (server.check and (server.check_ssl or tls_rules))) or server.ca_file:
                continue
            if (server.verify or config.global_.ssl_server_verify) == "required":
                yield _error(server.location, "server", f"server '{backend.name}/{server.name}': verify is "
                             "enabled by default but no CA file specified. If you're running on a LAN where "
                             "you're certain to trust the server's certificate, please set an explicit "
                             "'verify none' statement on the 'server' line, or use 'ssl-server-verify none' "
                             "in the global section to disable server-side verifications by default.")


def tracked_server(config: Config, backend: Backend, server: Server) -> Optional[tuple[Backend, Server]]:
    """The server ``server`` (of ``backend``) tracks (``track [<backend>/]<server>``), if it exists."""
    if server.track is None:
        return None
    backend_name, _, name = server.track.rpartition("/")
    owner = config.backends.get(backend_name) if backend_name else backend
    if owner is None:
        return None
    for candidate in owner.servers:
        if candidate.name == name:
            return owner, candidate
    return None


def _tracks(config: Config) -> Iterator[ConfigError]:
    """HAProxy's srv_apply_track(): the tracked server exists, is checked (or tracks one that is),
    and no chain of tracking loops back.  Servers are linked in order, as HAProxy does: a loop is
    found by the server that closes it."""
    linked: dict[tuple[str, str], tuple[Backend, Server]] = {}
    for backend in config.backends.values():
        for server in backend.servers:
            if server.track is None:
                continue
            backend_name, _, name = server.track.rpartition("/")
            where = f"server '{backend.name}/{server.name}': "
            if backend_name and backend_name not in config.backends:
                yield _error(server.location, "track", f"{where}unable to find required proxy "
                             f"'{backend_name}' for tracking.")
                continue
            found = tracked_server(config, backend, server)
            if found is None:
                yield _error(server.location, "track", f"{where}unable to find required server '{name}' "
                             "for tracking.")
                continue
            owner, target = found
            if not (target.check or target.agent_check or target.track):
                yield _error(server.location, "track", f"{where}unable to use {owner.name}/{target.name} for "
                             "tracking as it does not have any check nor agent enabled.")
                continue
            me = (backend.name, server.name)
            chain: Optional[tuple[Backend, Server]] = found
            while chain is not None and (chain[0].name, chain[1].name) != me:
                chain = linked.get((chain[0].name, chain[1].name))
            if chain is not None:  # HAProxy names the proxy of the tracked server with this one
                yield _error(server.location, "track", f"{where}unable to track {owner.name}/{target.name} "
                             f"as it belongs to a tracking chain looping back to {owner.name}/{server.name}.")
                continue
            linked[me] = found


def _error(location: Optional[Location], keyword: str, message: str) -> ConfigError:
    location = location or Location()
    return ConfigError(message, file=location.file, line=location.line or None, keyword=keyword)


# --- frontends ----------------------------------------------------------------------------------------

def _frontend(frontend: Frontend, backends: Mapping[str, Backend]) -> Iterator[ConfigError]:
    if frontend.default_backend is not None and frontend.default_backend not in backends:
        yield _error(frontend.default_backend_location or frontend.location, "default_backend",
                     f"unable to find required default_backend: '{frontend.default_backend}' "
                     "(no backend or listen of that name)")
    for use in frontend.use_backends:
        if use.backend not in backends:
            yield _error(use.location, "use_backend", f"unable to find required use_backend: "
                         f"'{use.backend}' (no backend or listen of that name)")
    for acl_lines in frontend.acls.values():
        for acl in acl_lines:
            yield from _acl(acl)
    for rule in frontend.tcp_request_rules:
        yield from _condition(rule.condition, frontend.acls, rule.location, "tcp-request")
    for use in frontend.use_backends:
        yield from _condition(use.condition, frontend.acls, use.location, "use_backend")
    yield from _tls_binds(frontend)


def _tls_binds(frontend: Frontend) -> Iterator[ConfigError]:
    """HAProxy's checks of a ``bind ... ssl`` (a certificate; a CA to verify clients against), and
    fastproxy's: rules of such a frontend may not read the client's bytes, which are TLS records here
    (HAProxy reads the decrypted ones, which fastproxy does not inspect)."""
    tls_binds = [bind for bind in frontend.binds if bind.ssl]
    for bind in tls_binds:
        address = f"{bind.host}:{bind.port}"
        if not bind.crt:
            yield _error(bind.location, "bind", f"Proxy '{frontend.name}': no SSL certificate specified for "
                         f"bind '{address}' at [{bind.location}] (use 'crt').")
        if (bind.verify or "none") != "none" and not bind.ca_file:
            yield _error(bind.location, "bind", f"Proxy '{frontend.name}': verify is enabled but no CA file "
                         f"specified for bind '{address}' at [{bind.location}].")
    if not tls_binds:
        return
    conditions = [(rule.condition, rule.location, "tcp-request") for rule in frontend.tcp_request_rules
                  if rule.phase == "content"]
    conditions += [(use.condition, use.location, "use_backend") for use in frontend.use_backends]
    for condition, location, keyword in conditions:
        if acls.condition_uses(condition, frontend.acls, acls.CONTENT_FETCHES):
            yield _error(location, keyword, "this condition reads the client's bytes, which fastproxy "
                         "does not decrypt for rules on a frontend whose bind terminates TLS ('ssl'): "
                         "use the ssl_fc_* fetches, or pass TLS through")


def _acl(acl: Acl) -> Iterator[ConfigError]:
    try:
        acls.compile_acl(acl)
    except acls.AclError as exc:
        yield _error(acl.location, "acl", f"error detected while parsing ACL '{acl.name}' : {exc.message}")


def _condition(condition: Optional[Condition], named: Mapping[str, Sequence[Acl]], location: Location,
               keyword: str) -> Iterator[ConfigError]:
    """A condition's terms: named ACLs must exist (declared in the frontend), anonymous ones compile."""
    if condition is None:
        return
    for group in condition.groups:
        for _, term in group:
            if isinstance(term, Acl):
                yield from _acl(term)
            elif term not in named:
                yield _error(location, keyword, f"no such ACL : '{term}'.")


# --- backends -----------------------------------------------------------------------------------------

def _backend(backend: Backend) -> Iterator[ConfigError]:
    yield from _balance(backend)
    yield from _check_ports(backend)
    for rule in backend.tcp_request_rules:
        if rule.phase != "content":
            yield _error(rule.location, "tcp-request", f"tcp-request {rule.phase} is not allowed because "
                         f"backend '{backend.name}' is not a frontend")
        yield from _condition(rule.condition, backend.acls, rule.location, "tcp-request")


def _balance(backend: Backend) -> Iterator[ConfigError]:
    balance, location = backend.balance, backend.location
    if balance.algorithm not in BALANCE_ALGORITHMS:
        yield _error(location, "balance", f"unknown balance algorithm '{balance.algorithm}' (expects one of "
                     f"{', '.join(BALANCE_ALGORITHMS)})")
    if balance.hash_type not in HASH_TYPES:
        yield _error(location, "hash-type", f"unknown hash-type '{balance.hash_type}' (expects one of "
                     f"{', '.join(HASH_TYPES)})")
    if balance.algorithm == "hash":
        if balance.sample is None:
            yield _error(location, "balance", "balance hash requires a sample expression.")
        else:
            try:
                samples.check_hashable(balance.sample)
            except samples.SampleError as exc:
                yield _error(location, "balance", f"'balance hash {balance.sample}': {exc.message}")
    if balance.draws is not None and balance.draws < 1:
        yield _error(location, "balance", "balance random : number of draws must be at least 1.")
    if 0 < balance.hash_balance_factor <= 100 or balance.hash_balance_factor < 0:
        yield _error(location, "hash-balance-factor", "'hash-balance-factor' must be 0 or greater than 100.")


def _check_ports(backend: Backend) -> Iterator[ConfigError]:
    """A checked server needs a port to check: its own, ``port``, or the tcp-check ``connect`` rules'.

    As HAProxy 2.6 (which reports it after parsing): the first rule must be a ``connect`` with a port,
    and so must every later ``connect``.  Once per line, for ``server-template``.
    """
    rules = backend.tcp_check_rules if backend.tcp_check else []
    reported: set[object] = set()
    for server in backend.servers:
        line = server.location if server.location.line else id(server)  # API-built servers: each
        if not server.check or server.port or server.check_port or line in reported:
            continue
        if not rules:
            problem = "has neither service port nor check port (add 'port <n>' for its checks)"
        elif (first := first_check_rule(rules)) is None or first.action != "connect" or first.port is None:
            problem = ("has neither service port nor check port nor 'tcp-check connect' rule with a port "
                       "as first rule (add 'port <n>' for its checks)")
        elif any(rule.action == "connect" and rule.port is None for rule in rules):
            problem = ("has neither service port nor check port, and a 'tcp-check connect' rule has no "
                       "port (add 'port <n>' to it)")
        else:
            continue
        reported.add(line)
        yield _error(server.location, "server", f"server '{backend.name}/{server.name}': {problem}")


# --- stick tables -------------------------------------------------------------------------------------

def _tables(config: Config) -> Iterator[ConfigError]:
    """The tables that rules and fetches name exist (a rule without ``table`` uses its proxy's own)."""
    tables = config.stick_tables
    for backend in config.backends.values():
        for rule in backend.stick_rules:
            name = rule.table or backend.name
            if name not in tables:
                yield _error(rule.location, "stick", f"Proxy '{backend.name}': unable to find stick-table "
                             f"'{name}'.")
            yield from _condition(rule.condition, backend.acls, rule.location, "stick")
        for persist_rule in backend.persist_rules:
            yield from _condition(persist_rule.condition, backend.acls, persist_rule.location,
                                  "force-persist" if persist_rule.force else "ignore-persist")
    proxies: list[Frontend | Backend] = [*config.frontends.values(), *config.backends.values()]
    for proxy in proxies:
        for request_rule in proxy.tcp_request_rules:
            if request_rule.action == "track-sc":
                name = request_rule.table or proxy.name
                if name not in tables:
                    yield _error(request_rule.location, "tcp-request", f"Proxy '{proxy.name}': unable to "
                                 f"find table '{name}' referenced by track-sc{request_rule.counter}.")
    for frontend in config.frontends.values():
        acl_lines = [acl for lines in frontend.acls.values() for acl in lines]
        conditions = [rule.condition for rule in frontend.tcp_request_rules]
        conditions += [use.condition for use in frontend.use_backends]
        acl_lines += [term for condition in conditions if condition is not None
                      for group in condition.groups for _, term in group if isinstance(term, Acl)]
        for acl in acl_lines:
            yield from _fetch_table(acl, frontend.name, tables)


def _fetch_table(acl: Acl, proxy: str, tables: Mapping[str, object]) -> Iterator[ConfigError]:
    try:
        found = samples.table_of(acl.criterion)
    except samples.SampleError:
        return  # reported with the ACL
    if found is None:
        return
    fetch, table = found
    if table is None and fetch.startswith(("sc_", "sc0_", "sc1_", "sc2_")):
        return  # the table of the tracked entry
    name = table or proxy
    if name not in tables:
        yield _error(acl.location, "acl", f"unable to find table '{name}' referenced in arg 1 of ACL keyword "
                     f"'{fetch}' in proxy '{proxy}'.")
