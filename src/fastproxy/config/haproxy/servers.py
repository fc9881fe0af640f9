"""``server``, ``server-template`` and ``default-server`` (HAProxy's server.c ``srv_kws``).

A server starts as a copy of the proxy's ``default-server`` settings; ``SERVER_OPTIONS`` set what
fastproxy acts on, ``SERVER_IGNORED`` lists HAProxy's other settings with their argument counts, which
are warnings.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import re
from collections.abc import Callable
from typing import Optional

from ... import samples
from ..model import Server
from . import tls
from .binds import based
from .lexer import _Invalid, env_expand
from .registry import BE, _Line, _Proxy, _keyword
from .values import (INT_MAX, _check_host, _check_name, _integer, _ip_address, _server_address,
                     _split_address, _time, decimal, shown)


MAX_TEMPLATE_SERVERS = 65536  # a bound on what one line may declare (HAProxy allocates any count it reads)
ServerHandler = Callable[[Server, list[str]], None]


def _server_flag(attribute: str, value: bool) -> ServerHandler:
    def handler(server: Server, values: list[str]) -> None:
        setattr(server, attribute, value)
    return handler


def _server_int(attribute: str, what: str, low: int, high: Optional[int] = None) -> ServerHandler:
    def handler(server: Server, values: list[str]) -> None:
        setattr(server, attribute, _integer(values[0], what, low, high))
    return handler


def _server_time(attribute: str, positive: bool = True) -> ServerHandler:
    def handler(server: Server, values: list[str]) -> None:
        value = _time(values[0])
        if positive and value <= 0:
            raise _Invalid(f"invalid value 0 for '{attribute}' (expects a delay above 0)")
        setattr(server, attribute, value)
    return handler


def _server_port(server: Server, values: list[str]) -> None:
    server.check_port = _integer(values[0], "a port for 'port'", 1, 65535)


def _server_observe(server: Server, values: list[str]) -> None:
    mode = values[0]
    if mode == "layer7":
        raise _Invalid("'observe layer7' watches HTTP responses and needs 'mode http'; fastproxy is a "
                       "layer-4 proxy (use 'observe layer4')")
    if mode not in ("none", "layer4"):
        raise _Invalid(f"'observe' expects one of 'none', 'layer4', 'layer7' but got '{mode}'")
    server.observe = None if mode == "none" else mode


def _server_choice(option: str, attribute: str, choices: tuple[str, ...]) -> ServerHandler:
    """A setting taking one of a few words (``on-error``, ``on-marked-down``...)."""
    def handler(server: Server, values: list[str]) -> None:
        if values[0] not in choices:
            names = [f"'{choice}'" for choice in choices]
            expected = names[0] if len(names) == 1 else f"one of {', '.join(names[:-1])} or {names[-1]}"
            raise _Invalid(f"'{option}' expects {expected} but got '{values[0]}'")
        setattr(server, attribute, values[0])
    return handler


def _server_text(attribute: str) -> ServerHandler:
    def handler(server: Server, values: list[str]) -> None:
        setattr(server, attribute, values[0])
    return handler


def _track(server: Server, values: list[str]) -> None:
    """``track [<backend>/]<server>``: checked once every backend is read (``config.validate``)."""
    server.track = values[0]


def _init_addr(server: Server, values: list[str]) -> None:
    """``init-addr {last | libc | none | <ip>},...``: the methods tried in order at start."""
    methods = []
    for method in values[0].split(","):
        if method not in ("last", "libc", "none"):
            try:
                method = str(ipaddress.ip_address(method))
            except ValueError:
                raise _Invalid(f"'init-addr' : unknown init-addr method '{method}', supported methods are "
                               "'libc', 'last', 'none'..") from None
        methods.append(method)
    server.init_addr = tuple(methods)


def _no_resolvers(server: Server, values: list[str]) -> None:
    raise _Invalid(f"'resolvers {values[0]}' asks for DNS resolution while running, which fastproxy does "
                   "not do (it resolves server names once, at start, with the system's resolver): the "
                   "servers would not follow the DNS; name the addresses, or use 'init-addr'")


def _source(server: Server, values: list[str]) -> None:
    server.source = source_address(values[0])


def source_address(text: str) -> tuple[str, int]:
    """``source <addr>[:<port>]``: the local address (and port, 0 for any) connections are bound to."""
    host, port = _ip_address(text, "source")
    return host, _integer(port, "a port", 0, 65535) if port else 0


def _no_socks4(server: Server, values: list[str]) -> None:
    raise _Invalid(f"'socks4 {values[0]}' sends the connections through a SOCKS4 proxy, which fastproxy "
                   "does not do: they would go straight to the server")


def _no_namespace(server: Server, values: list[str]) -> None:
    raise _Invalid(f"'namespace {values[0]}': fastproxy dials servers from its own network namespace only: "
                   "the connection would reach another network's server of that address")


def _no_usesrc(server: Server, values: list[str]) -> None:
    raise _Invalid(f"'usesrc {values[0]}' asks for transparent proxying (connecting from a foreign "
                   "address), which fastproxy does not do: servers would see the proxy's address")


def _agent_addr(server: Server, values: list[str]) -> None:
    address = _split_address(values[0])
    if address.port_text:
        raise _Invalid(f"parsing agent-addr failed. Check if '{values[0]}' is correct address.")
    server.agent_addr = _check_host(address, values[0])


def _server_sni(server: Server, values: list[str]) -> None:
    """``sni <expression>``: the name sent in the ClientHello, evaluated per connection."""
    try:
        samples.parse(values[0])
    except samples.SampleError as exc:
        raise _Invalid(f"error detected while parsing sni expression : {exc}") from None
    server.sni = values[0]


def _server_addr(server: Server, values: list[str]) -> None:
    address = _split_address(values[0])
    if address.port_text:
        raise _Invalid(f"'addr' takes an address without port (use 'port'), got '{values[0]}'")
    server.check_addr = _check_host(address, values[0])


SERVER_OPTIONS: dict[str, tuple[int, ServerHandler]] = {
    "weight": (1, _server_int("weight", "a weight for 'weight'", 0, 256)),
    "maxconn": (1, _server_int("maxconn", "a number of connections for 'maxconn'", 0)),
    "maxqueue": (1, _server_int("maxqueue", "a queue length for 'maxqueue'", 0)),
    "minconn": (1, _server_int("minconn", "a number of connections for 'minconn'", 0)),
    "check": (0, _server_flag("check", True)),
    "check-ssl": (0, _server_flag("check_ssl", True)),
    "no-check-ssl": (0, _server_flag("check_ssl", False)),
    "verify": (1, _server_choice("verify", "verify", ("none", "required"))),
    "ca-file": (1, _server_text("ca_file")),
    "crt": (1, _server_text("crt")),
    "check-sni": (1, _server_text("check_sni")),
    "ssl": (0, _server_flag("ssl", True)),
    "no-ssl": (0, _server_flag("ssl", False)),
    "sni": (1, _server_sni),
    "ssl-reuse": (0, _server_flag("ssl_reuse", True)),
    "no-ssl-reuse": (0, _server_flag("ssl_reuse", False)),
    # What the refused send-proxy-v2-ssl settings would turn on: turning it off is what happens.
    "no-send-proxy-v2-ssl": (0, lambda server, values: None),
    "no-send-proxy-v2-ssl-cn": (0, lambda server, values: None),
    "verifyhost": (1, _server_text("verifyhost")),
    "agent-check": (0, _server_flag("agent_check", True)),
    "no-agent-check": (0, _server_flag("agent_check", False)),
    "agent-port": (1, _server_int("agent_port", "a port for 'agent-port'", 1, 65535)),
    "agent-inter": (1, _server_time("agent_inter")),
    "agent-send": (1, lambda server, values: setattr(server, "agent_send", values[0])),
    "agent-addr": (1, _agent_addr),
    "no-check": (0, _server_flag("check", False)),
    "inter": (1, _server_time("inter")),
    "fastinter": (1, _server_time("fastinter")),
    "downinter": (1, _server_time("downinter")),
    "rise": (1, _server_int("rise", "a count for 'rise'", 1)),
    "fall": (1, _server_int("fall", "a count for 'fall'", 1)),
    "port": (1, _server_port),
    "addr": (1, _server_addr),
    "backup": (0, _server_flag("backup", True)),
    "no-backup": (0, _server_flag("backup", False)),
    "disabled": (0, _server_flag("disabled", True)),
    "enabled": (0, _server_flag("disabled", False)),
    "slowstart": (1, _server_time("slowstart", positive=False)),
    "send-proxy": (0, _server_flag("send_proxy", True)),
    "no-send-proxy": (0, _server_flag("send_proxy", False)),
    "send-proxy-v2": (0, _server_flag("send_proxy_v2", True)),
    "no-send-proxy-v2": (0, _server_flag("send_proxy_v2", False)),
    "check-send-proxy": (0, _server_flag("check_send_proxy", True)),
    "no-check-send-proxy": (0, _server_flag("check_send_proxy", False)),
    "socks4": (1, _no_socks4),
    "id": (1, _server_int("id", "a custom id for 'id'", 1)),
    "observe": (1, _server_observe),
    "error-limit": (1, _server_int("error_limit", "a number of errors for 'error-limit'", 1)),
    "on-error": (1, _server_choice("on-error", "on_error",
                                   ("fastinter", "fail-check", "sudden-death", "mark-down"))),
    "on-marked-down": (1, _server_choice("on-marked-down", "on_marked_down", ("shutdown-sessions",))),
    "on-marked-up": (1, _server_choice("on-marked-up", "on_marked_up", ("shutdown-backup-sessions",))),
    "track": (1, _track),
    "non-stick": (0, _server_flag("non_stick", True)),
    "stick": (0, _server_flag("non_stick", False)),
    "init-addr": (1, _init_addr),
    "resolvers": (1, _no_resolvers),
    "source": (1, _source),
    "usesrc": (1, _no_usesrc),
    "namespace": (1, _no_namespace),
}

# HAProxy 2.6's other server settings and their argument counts (from ``haproxy -dKcfg``): warnings,
# or refusals (``tls.is_refused``).
SERVER_IGNORED: dict[str, int] = {
    "allow-0rtt": 0, "check-alpn": 1, "check-proto": 1,
    "check-via-socks4": 0, "ciphersuites": 1, "cookie": 1,
    "crl-file": 1, "log-proto": 1, "max-reuse": 1,
    "no-tfo": 0, "no-tls-tickets": 0,
    "npn": 1, "pool-low-conn": 1, "pool-max-conn": 1, "pool-purge-delay": 1, "proto": 1,
    "proxy-v2-options": 1, "redir": 1,
    "resolve-net": 1, "resolve-opts": 1, "resolve-prefer": 1, "send-proxy-v2-ssl": 0,
    "send-proxy-v2-ssl-cn": 0, "tcp-ut": 1, "tfo": 0, "tls-tickets": 0,
    "ws": 1,
}


def _server_tls(name: str) -> ServerHandler:
    def handler(server: Server, values: list[str]) -> None:
        server.tls = tls.apply(server.tls, name, values)  # type: ignore[assignment]
    return handler


_ADDRESS_SETTINGS = frozenset({"addr", "source", "socks4", "agent-addr"})


def _apply_server_options(line: _Line, server: Server, options: list[str], *, is_default: bool) -> None:
    i = 0
    while i < len(options):
        name = options[i]
        i += 1
        if name in SERVER_OPTIONS:
            count, handler = SERVER_OPTIONS[name]
        elif name in tls.SHARED:
            count, handler = tls.SHARED[name], _server_tls(name)
        elif name in SERVER_IGNORED:
            count, handler = SERVER_IGNORED[name], None
        else:
            raise _Invalid(f"unknown keyword '{name}'")
        values = options[i:i + count]
        if len(values) < count:
            raise _Invalid(f"'{name}' expects an argument")
        i += count
        if name in _ADDRESS_SETTINGS:  # read by str2sa_range in HAProxy, which expands variables
            values = [env_expand(values[0], line.reader.environ)]
        g = getattr(line.reader, "global_", None)  # the runtime API's ``add server`` has none
        if name in ("crt", "ca-file") and g is not None:
            values = [based(values[0], g.crt_base if name == "crt" else g.ca_base)]
        if is_default and name == "id":
            raise _Invalid("'id' option is not accepted in default-server sections")
        if handler is None and tls.is_refused(name):
            raise tls.refused(name, values)
        if handler is None:
            line.warn(f"server setting '{name}' is not supported by fastproxy; ignored",
                      f"{line.words[0]} {name}")
        else:
            handler(server, values)


@_keyword("server", caps=BE, in_defaults="no", missing_cap="error")
def _server(line: _Line, proxy: _Proxy, args: list[str]) -> None:
    if len(args) < 2:
        raise _Invalid("expects <name> and <address>[:<port>] as arguments")
    name, address = args[0], args[1]
    _check_name("server", name)
    _add_server(line, proxy, name, address, args[2:])


def _add_server(line: _Line, proxy: _Proxy, name: str, address: str, options: list[str]) -> None:
    try:
        _add_named_server(line, proxy, name, address, options)
    except _Invalid as exc:
        raise _Invalid(f"server '{proxy.name}/{name}': {exc.message}") from None


def _add_named_server(line: _Line, proxy: _Proxy, name: str, address: str, options: list[str]) -> None:
    for other in proxy.servers:
        if other.name == name:
            raise _Invalid(f"another server named '{name}' was already defined at {other.location}, "
                           "please use distinct names")
    family, host, port = _server_address(env_expand(address, line.reader.environ))
    server = dataclasses.replace(proxy.default_server, name=name, host=host, port=port, family=family,
                                 location=line.location)
    _apply_server_options(line, server, options, is_default=False)
    if server.check and server.track:
        raise _Invalid("unable to enable checks and tracking at the same time!")
    # HAProxy loads a server's TLS files as it reads the line: one that is not there is the line's error.
    if server.ca_file and not os.path.isfile(server.ca_file):
        raise _Invalid(f"Couldn't open the ca-file '{server.ca_file}' (No such file or directory).")
    if server.crt and not os.path.isfile(server.crt):
        raise _Invalid(f"unable to stat SSL certificate from file '{server.crt}' : No such file or "
                       "directory.")
    if server.agent_check and not server.agent_port:
        raise _Invalid(f"server {name} does not have agent port. Agent check has been disabled.")
    if server.id is not None:
        for other in proxy.servers:
            if other.id == server.id:
                raise _Invalid(f"custom id {server.id} already used at {other.location} "
                               f"('server {other.name}')")
    proxy.servers.append(server)


@_keyword("server-template", caps=BE, in_defaults="no", missing_cap="error")
def _server_template(line: _Line, proxy: _Proxy, args: list[str]) -> None:
    if len(args) < 3:
        raise _Invalid("expects <prefix> <num | range> <fqdn>[:<port>] as arguments")
    prefix, count, address = args[0], args[1], args[2]
    _check_name("server", prefix)
    match = re.fullmatch(r"([0-9]+)(?:-([0-9]+))?", count)
    low, high = (1, decimal(match[1])) if match and not match[2] else (
        (decimal(match[1]), decimal(match[2])) if match else (0, 0))
    if not match or low < 1 or high < low or high > INT_MAX:  # HAProxy's atoi() turns those negative
        raise _Invalid(f"Wrong server-template number or range arg '{shown(count)}'.")
    if high - low >= MAX_TEMPLATE_SERVERS:
        raise _Invalid(f"'{count}' declares {high - low + 1} servers: fastproxy declares at most "
                       f"{MAX_TEMPLATE_SERVERS} with one server-template")
    for number in range(low, high + 1):
        _add_server(line, proxy, f"{prefix}{number}", address, args[3:])


@_keyword("default-server", caps=BE, missing_cap="error")
def _default_server(line: _Line, proxy: _Proxy, args: list[str]) -> None:
    _apply_server_options(line, proxy.default_server, args, is_default=True)


@_keyword("dispatch", caps=BE, in_defaults="no")
def _dispatch(line: _Line, proxy: _Proxy, args: list[str]) -> None:
    """``dispatch <addr>:<port>``: HAProxy's oldest way to name the one place a backend without a
    ``balance`` sends every connection to; the reader turns it into that backend's only server."""
    if not args:
        raise _Invalid("expects <addr:port> as argument.")
    text = env_expand(args[0], line.reader.environ)
    address = _split_address(text)
    if not address.port_text:
        raise _Invalid(f"missing port specification in '{text}'")
    family, host, port = _server_address(text)
    proxy.dispatch = Server(name="dispatch", host=host, port=port, family=family, location=line.location)


@_keyword("source", caps=BE)
def _proxy_source(line: _Line, proxy: _Proxy, args: list[str]) -> None:
    """``source <addr>[:<port>]``: the address the backend's connections (and checks) leave from,
    unless a server names its own."""
    if not args:
        raise _Invalid("'source' expects <addr>[:<port>], and optionally 'usesrc' <addr>, and "
                       "'interface' <name>.")
    text = env_expand(args[0], line.reader.environ)
    address = source_address(text)
    rest = args[1:]
    if rest[:1] == ["usesrc"]:
        _no_usesrc(proxy.default_server, rest[1:2] or [""])
    if rest[:1] == ["interface"]:
        raise _Invalid("'source ... interface' binds to a network interface, which fastproxy does not do")
    if rest:
        raise _Invalid(f"unexpected '{rest[0]}' after the source address (expects 'usesrc' or "
                       "'interface')")
    proxy.source = address


class _RuntimeReader:
    """The little of a reader ``runtime_server`` needs: the environment, and the warnings, which at
    run time are refusals (a keyword fastproxy would not act on is never silently ignored)."""

    def __init__(self) -> None:
        import os
        self.environ = dict(os.environ)
        self.ignored: list[str] = []

    def warn(self, location: object, keyword: Optional[str], message: str) -> None:
        self.ignored.append((keyword or "").split()[-1])


def runtime_server(name: str, address: str, options: list[str]) -> Server:
    """``add server <backend>/<name> <address> [options]``: a server from the runtime API's words, read
    with the keywords of a ``server`` line as HAProxy 2.6's cli_parse_add_server() does (without the
    ``default-server`` settings, which dynamic servers do not take), in maintenance.  ValueError with
    HAProxy's message (``unknown keyword 'x'.``), or fastproxy's for a keyword it does not act on."""
    from ..model import Location
    reader = _RuntimeReader()
    line = _Line(reader, "stats socket", 0, ["server", name, address, *options])  # type: ignore[arg-type]
    try:
        _check_name("server", name)
        family, host, port = _server_address(env_expand(address, reader.environ))
        server = Server(name=name, host=host, port=port, family=family, location=Location("stats socket", 0))
        _apply_server_options(line, server, options, is_default=False)
    except _Invalid as exc:
        raise ValueError(f"{exc.message}.") from None
    # What a server added at run time would not get wired to: refused, as the ignored keywords are.
    unwired = [keyword for keyword, value in (("track", server.track), ("check-ssl", server.check_ssl),
                                              ("ssl", server.ssl),
                                              ("check-send-proxy", server.check_send_proxy),
                                              ("init-addr", server.init_addr)) if value]
    if reader.ignored or unwired:
        raise ValueError(f"'{(reader.ignored or unwired)[0]}' is not supported by fastproxy on a server "
                         "added at run time.")
    return dataclasses.replace(server, disabled=True)
