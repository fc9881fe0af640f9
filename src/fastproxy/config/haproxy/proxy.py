"""Proxy keywords (HAProxy's cfgparse-listen.c): mode, limits, timeouts, ``balance`` and hashing,
``log``, backend switching, ACLs and ``tcp-request`` rules, and the section's own flags.

Each handler sets fields of the ``_Proxy`` being read; the reader folds ``defaults`` in and builds the
model.  The check that SNI rules have an ``inspect-delay`` runs after parsing, registered here.
"""

from __future__ import annotations

import re
from typing import Optional

from ... import acl as acls
from ... import logformat, samples, variables
from ..model import BALANCE_ALGORITHMS, HASH_TYPES, Condition, Sample, TcpRequestRule, UseBackend
from .global_ import _log_target
from .lexer import _Invalid
from .registry import (
    BE,
    FE,
    _FE_TIMEOUTS,
    ProxyHandler,
    ReaderView,
    _Line,
    _Proxy,
    _keyword,
    _names,
    _post_check,
)
from ...c_integers import LONG_MAX, atoi, based, c_int, signed
from .values import _integer, _leading, _none, _one, _time, decimal, shown


@_keyword("mode")
def _mode(line: _Line, proxy: _Proxy, args: list[str]) -> None:
    mode = _one(args, "'tcp' or 'http'")
    if mode == "health":
        raise _Invalid("'mode health' doesn't exist anymore")
    if mode not in ("tcp", "http"):
        raise _Invalid(f"unknown proxy mode '{mode}' (expects 'tcp'; fastproxy is a layer-4 proxy)")
    proxy.mode, proxy.mode_location = mode, line.location


def _proxy_int(attribute: str, what: str, low: int = 0) -> ProxyHandler:
    """A keyword taking one integer of at least ``low`` (HAProxy's ``atol`` reads garbage as 0: we don't)."""
    def handler(line: _Line, proxy: _Proxy, args: list[str]) -> None:
        setattr(proxy, attribute, _integer(_one(args, what), what, low))
    return handler


_keyword("maxconn", caps=FE, hint=" Maybe you want 'fullconn' instead ?")(
    _proxy_int("maxconn", "a number of connections"))
_keyword("backlog", caps=FE)(_proxy_int("backlog", "a queue length"))
_keyword("fullconn", caps=BE, hint=" Maybe you want 'maxconn' instead ?")(
    _proxy_int("fullconn", "a number of connections"))
_keyword("retries", caps=BE)(_proxy_int("retries", "a number of retries"))


_RETRY_CAUSES = ("conn-failure", "empty-response", "response-timeout", "401", "403", "404", "408", "425",
                 "500", "501", "502", "503", "504", "0rtt-rejected", "junk-response", "all-retryable-errors")


@_keyword("retry-on", caps=BE)
def _retry_on(line: _Line, proxy: _Proxy, args: list[str]) -> None:
    """``retry-on <cause>...``: in TCP mode only a failed connect can be retried (HAProxy's L7 retries,
    the other causes, need ``mode http``), so what counts is whether ``conn-failure`` is among them."""
    if not args:
        raise _Invalid("'retry-on' needs at least one keyword to specify when to retry")
    for i, cause in enumerate(args):
        if cause == "none":
            if i != 0 or len(args) > 1:
                raise _Invalid("'retry-on' 'none' keyworld only usable alone")
        elif cause not in _RETRY_CAUSES:
            raise _Invalid(f"'retry-on': unknown keyword '{cause}'")
    proxy.retry_on_conn_failure = "conn-failure" in args or "all-retryable-errors" in args


@_keyword("load-server-state-from-file", caps=BE)
def _load_server_state(line: _Line, proxy: _Proxy, args: list[str]) -> None:
    """Where the servers' states saved before a reload are read from (server_state.py)."""
    value = _one(args, "'global', 'local' or 'none'")
    if value not in ("global", "local", "none"):
        raise _Invalid(f"'load-server-state-from-file' expects 'global', 'local' or 'none'. Got '{value}'")
    proxy.load_server_state = value


@_keyword("server-state-file-name", caps=BE)
def _server_state_file_name(line: _Line, proxy: _Proxy, args: list[str]) -> None:
    """The backend's own state file (``load-server-state-from-file local``); ``use-backend-name``,
    or nothing, names it after the backend."""
    name = _one(args, "a file name or 'use-backend-name'") if args else ""
    proxy.server_state_file_name = None if name in ("", "use-backend-name") else name


@_keyword("rate-limit", caps=FE)
def _rate_limit(line: _Line, proxy: _Proxy, args: list[str]) -> None:
    if not args or args[0] != "sessions":
        raise _Invalid(f"'rate-limit' only supports 'sessions' (got '{args[0] if args else ''}')")
    proxy.rate_limit_sessions = _integer(_leading(line, args[1:], 1, "a number of sessions per second")[0],
                                         "a number of sessions per second", 0)


_TIMEOUTS = {"connect": "connect", "client": "client", "server": "server", "tunnel": "tunnel",
             "client-fin": "client_fin", "server-fin": "server_fin", "queue": "queue", "check": "check"}
_TIMEOUTS_IGNORED = {"http-request", "http-keep-alive", "tarpit"}


@_keyword("timeout")
def _timeout(line: _Line, proxy: _Proxy, args: list[str]) -> None:
    if not args or (args[0] not in _TIMEOUTS and args[0] not in _TIMEOUTS_IGNORED):
        raise _Invalid("'timeout' supports 'client', 'server', 'connect', 'check', 'queue', "
                       "'http-keep-alive', 'http-request', 'tunnel', 'tarpit', 'client-fin' and "
                       f"'server-fin' (got '{args[0] if args else ''}')")
    name = args[0]
    if len(args) < 2:
        raise _Invalid("expects a time such as 5s (milliseconds by default)")
    if len(args) > 2:
        raise _Invalid(f"unexpected extra argument '{args[2]}' after value '{args[1]}'")
    value = _time(args[1])
    if name in _TIMEOUTS_IGNORED:
        line.warn("HTTP timeout: not used by fastproxy (layer 4); ignored")
        return
    attribute = _TIMEOUTS[name]
    needed = FE if attribute in _FE_TIMEOUTS else BE
    if not proxy.caps & needed:
        other = "frontend" if needed == FE else "backend"
        line.warn(f"will be ignored because {proxy.describe()} has no {other} capability")
        return
    setattr(proxy.timeouts, attribute, value or None)  # 0 means "no timeout", as in HAProxy


def _removed_timeout(replacement: str) -> ProxyHandler:
    def handler(line: _Line, proxy: _Proxy, args: list[str]) -> None:
        raise _Invalid(f"the '{line.words[0]}' directive is not supported anymore since HAProxy 2.1. "
                       f"Use '{replacement}'.")
    return handler


for _old, _new in (("contimeout", "timeout connect"), ("clitimeout", "timeout client"),
                   ("srvtimeout", "timeout server")):
    _keyword(_old)(_removed_timeout(_new))


_BALANCE_LAYER7 = ("uri", "url_param", "hdr(")


@_keyword("balance", caps=BE)
def _balance(line: _Line, proxy: _Proxy, args: list[str]) -> None:
    algorithm, rest = (args[0], args[1:]) if args else ("roundrobin", [])  # HAProxy's default
    sample: Optional[Sample] = None
    draws: Optional[int] = None
    random = re.fullmatch(r"random(?:\((.*)\))?", algorithm)
    if random:
        algorithm = "random"
        if random[1] is not None:
            draws = _integer(random[1], "a number of draws in random(<draws>)")
            if draws < 1:
                raise _Invalid("balance random : number of draws must be at least 1.")
    elif algorithm == "hash":
        if not rest:
            raise _Invalid("balance hash requires a sample expression.")
        if len(rest) > 1:
            raise _Invalid(f"balance hash takes no other argument (got '{rest[1]}').")
        expression = rest[0]
        try:
            sample = samples.split(expression)
            samples.check_hashable(sample)
        except samples.SampleError as exc:
            raise _Invalid(f"'balance hash {expression}': {exc.message}") from None
        rest = []
    elif rdp := re.fullmatch(r"rdp-cookie(?:\((.*)\))?", algorithm):
        # HAProxy hashes the RDP cookie (mstshash unless named), round robin without one: the hash
        # of that sample.  The cookie is only there once a content rule waited for it.
        algorithm, sample = "hash", Sample(f"req.rdp_cookie({rdp[1] or 'mstshash'})")
    elif algorithm.startswith(_BALANCE_LAYER7):
        line.warn(f"'{algorithm}' needs layer 7 (or RDP cookies), which fastproxy does not read; "
                  "falling back to roundrobin as HAProxy does in TCP mode")
        algorithm, rest = "roundrobin", []
    elif algorithm not in BALANCE_ALGORITHMS:
        raise _Invalid("balance only supports 'roundrobin', 'static-rr', 'leastconn', 'first', "
                       f"'source', 'random', 'hash', 'uri', 'url_param', 'hdr(name)' and "
                       f"'rdp-cookie(name)' (got '{algorithm}')")
    if rest:
        line.warn(f"extra argument '{rest[0]}' ignored (HAProxy ignores it too)")
    proxy.balance.algorithm, proxy.balance.sample, proxy.balance.draws = algorithm, sample, draws
    proxy.balance_set = True


_HASH_FUNCTIONS = {"sdbm", "djb2", "crc32", "wt6"}


@_keyword("hash-type", caps=BE)
def _hash_type(line: _Line, proxy: _Proxy, args: list[str]) -> None:
    if not args or args[0] not in HASH_TYPES:
        raise _Invalid("'hash-type' supports 'map-based', 'consistent' and (a fastproxy extension) "
                       f"'maglev' (got '{args[0] if args else ''}')")
    function = args[1] if len(args) > 1 else None
    if function is not None and function not in _HASH_FUNCTIONS:
        raise _Invalid("'hash-type' only supports 'sdbm', 'djb2', 'crc32', or 'wt6' hash functions.")
    modifier = args[2] if len(args) > 2 else None
    if modifier not in (None, "avalanche"):
        raise _Invalid(f"unexpected '{modifier}' after the hash function (expects 'avalanche')")
    if len(args) > 3:
        line.warn(f"extra argument '{args[3]}' ignored (HAProxy ignores it too)")
    proxy.balance.hash_type = args[0]
    proxy.balance.hash_function = " ".join(args[1:3]) or None
    if function is not None:
        # Not an error: the function only decides which server a key lands on, not what the backend
        # does (a key sticks to one server, consistent hashing stays consistent); but a fleet mixing
        # HAProxy and fastproxy on the same keys would disagree, so say it.
        line.warn(f"hash function '{proxy.balance.hash_function}' is not used: fastproxy hashes with XXH64, "
                  "so a key maps to another server than under HAProxy (still one server per key)")


@_keyword("hash-balance-factor", caps=BE)
def _hash_balance_factor(line: _Line, proxy: _Proxy, args: list[str]) -> None:
    what = "0 or a percentage above 100"
    factor = _integer(_leading(line, args, 1, what)[0], what, 0)
    if 0 < factor <= 100:
        raise _Invalid("'hash-balance-factor' must be 0 or greater than 100.")
    proxy.balance.hash_balance_factor = factor


@_keyword("log")
def _log(line: _Line, proxy: _Proxy, args: list[str]) -> None:
    if args == ["global"]:
        proxy.log_targets += line.reader.global_.log_targets
        return
    proxy.log_targets.append(_log_target(line, args))


def _format_argument(line: _Line, args: list[str]) -> str:
    """The one argument of a format keyword (``log-format``...), with HAProxy's messages."""
    if not args:
        raise _Invalid(f"{line.keyword} expects an argument.")
    if len(args) > 1:
        raise _Invalid(f"{line.keyword} expects only one argument, don't forget to escape spaces!")
    return args[0]


# The format keywords are compiled once the section is read (``_check_log_format``): what they may
# hold depends on the proxy's mode.

@_keyword("log-format", caps=FE)
def _log_format(line: _Line, proxy: _Proxy, args: list[str]) -> None:
    text = _format_argument(line, args)
    if proxy.kind == "defaults" and proxy.tcplog and proxy.log_format is None:
        line.warn("'log-format' overrides previous 'option tcplog' in 'defaults' section.")
    proxy.tcplog = True
    proxy.log_format, proxy.log_format_location = text, line.location


@_keyword("unique-id-format", caps=FE)
def _unique_id_format(line: _Line, proxy: _Proxy, args: list[str]) -> None:
    """What ``%ID`` writes: a format of its own, rendered for each session's log line."""
    proxy.unique_id_format, proxy.unique_id_format_location = _format_argument(line, args), line.location


@_keyword("log-format-sd", caps=FE)
def _log_format_sd(line: _Line, proxy: _Proxy, args: list[str]) -> None:
    """The structured-data part of the ``rfc5424`` lines."""
    proxy.log_format_sd, proxy.log_format_sd_location = _format_argument(line, args), line.location


@_keyword("error-log-format", caps=FE)
def _error_log_format(line: _Line, proxy: _Proxy, args: list[str]) -> None:
    text = _format_argument(line, args)
    try:
        logformat.compile(text, http=proxy.mode == "http")
    except logformat.LogFormatError as exc:
        raise _Invalid(f"failed to parse error-log-format : {exc}.") from None
    line.warn("fastproxy writes the line of a failed TLS handshake in HAProxy's default form, not in "
              "this format; ignored")


@_keyword("default_backend", caps=FE)
def _default_backend(line: _Line, proxy: _Proxy, args: list[str]) -> None:
    proxy.default_backend = _one(args, "a backend name")
    proxy.default_backend_location = line.location


@_keyword("use_backend", caps=FE, in_defaults="no")
def _use_backend(line: _Line, proxy: _Proxy, args: list[str]) -> None:
    if not args:
        raise _Invalid("expects a backend name")
    name, rest = args[0], args[1:]
    if "%[" in name:
        raise _Invalid(f"dynamic backend names ('{name}') are not supported by fastproxy; "
                       "write one use_backend rule per backend")
    condition = None
    if rest:
        if rest[0] not in ("if", "unless"):
            raise _Invalid(f"unexpected keyword '{rest[0]}' after switching rule, only 'if' and "
                           "'unless' are allowed.")
        condition = line.reader.condition(line, proxy, rest)
    proxy.use_backends.append(UseBackend(backend=name, condition=condition, location=line.location))


@_keyword("use-server", caps=BE, in_defaults="no")
def _use_server(line: _Line, proxy: _Proxy, args: list[str]) -> None:
    """``use-server <server> if|unless <condition>``: checked against the servers once the section is read."""
    if len(args) < 3 or args[1] not in ("if", "unless"):
        raise _Invalid("'use-server' requires either 'if' or 'unless' followed by a condition.")
    condition = line.reader.condition(line, proxy, args[1:])
    proxy.use_servers.append(UseBackend(backend=args[0], condition=condition, location=line.location))


@_post_check(BE)
def _check_use_servers(reader: ReaderView, proxy: _Proxy) -> None:
    names = {server.name for server in proxy.servers}
    for rule in proxy.use_servers:
        if rule.backend not in names:
            reader.error(rule.location, "use-server", f"{proxy.describe()} : unable to find server "
                         f"'{rule.backend}' referenced in a 'use-server' rule.")


@_keyword("acl", in_defaults="named")
def _acl(line: _Line, proxy: _Proxy, args: list[str]) -> None:
    if len(args) < 2:
        raise _Invalid("expects an ACL name and a criterion")
    name = args[0]
    bad = re.search(r"[^A-Za-z0-9_.:-]", name)
    if bad:
        raise _Invalid(f"character '{bad.group()}' is not permitted in acl name '{name}'")
    try:
        acl = acls.parse_acl(name, args[1:], read_patterns=line.reader.read_patterns, location=line.location)
    except acls.AclError as exc:
        raise _Invalid(f"error detected while parsing ACL '{name}' : {exc}") from None
    if acls.acl_has_no_pattern(acl):
        line.warn("no pattern to match against were provided, so this ACL will never match "
                  "(add '--' to silence this, or use '-m found' to test for existence)")
    proxy.acls.setdefault(name, []).append(acl)


@_keyword("tcp-request", caps=FE | BE, in_defaults="named")
def _tcp_request(line: _Line, proxy: _Proxy, args: list[str]) -> None:
    phase = args[0] if args else ""
    if phase == "inspect-delay":
        proxy.inspect_delay = _time(_leading(line, args[1:], 1, "a delay such as 5s")[0])
        return
    if phase not in ("connection", "session", "content"):
        raise _Invalid("expects 'inspect-delay', 'connection', 'session' or 'content' "
                       f"(got '{phase}')")
    if not proxy.caps & FE and phase != "content":
        raise _Invalid(f"tcp-request {phase} is not allowed because {proxy.describe()} is not a frontend")
    action = args[1] if len(args) > 1 else ""
    rest = args[2:]
    _check_phase(proxy, phase, action, rest)
    _warn_rule_order(line, proxy, phase)
    if action in ("accept", "reject", "silent-drop"):
        if action == "silent-drop":
            line.warn("treated as 'reject' (fastproxy closes the connection)")
            action = "reject"
        condition = None
        if rest:
            if rest[0] not in ("if", "unless"):
                raise _Invalid(f"expects 'if' or 'unless' after '{action}' (got '{rest[0]}')")
            condition = line.reader.condition(line, proxy, rest)
            if phase in ("connection", "session") and acls.condition_uses(condition, proxy.acls,
                                                                          acls.CONTENT_FETCHES):
                line.warn(f"this condition reads what the client sends (the TLS ClientHello, its first "
                          f"bytes), which is not available to 'tcp-request {phase}' rules: that part will "
                          "never match")
        proxy.tcp_request_rules.append(TcpRequestRule(phase=phase, action=action, condition=condition,
                                                      location=line.location))
    elif _counter_action(action) is not None:
        proxy.tcp_request_rules.append(_counter_rule(line, proxy, phase, action, rest))
    elif action == "expect-proxy":
        if phase != "connection":
            raise _Invalid(f"'expect-proxy layer4' is not allowed in 'tcp-request {phase}' rules in "
                           f"{proxy.describe()}")
        proxy.tcp_request_rules.append(_expect_proxy_rule(line, proxy, rest))
    elif action in _ADDRESS_ACTIONS:
        proxy.tcp_request_rules.append(_address_rule(line, proxy, phase, action, rest))
    elif action.split("(", 1)[0] in _VARIABLE_ACTIONS:
        proxy.tcp_request_rules.append(_variable_rule(line, proxy, phase, action, rest))
    elif action == "capture":
        proxy.tcp_request_rules.append(_capture_rule(line, proxy, rest))
    elif action in ("set-tos", "set-mark"):
        value, rest = _socket_value(rest), rest[1:]
        condition = _trailing_condition(line, proxy, f"tcp-request {phase} {action}", rest)
        proxy.tcp_request_rules.append(TcpRequestRule(phase=phase, action=action, condition=condition,
                                                      location=line.location, value=value))
    elif action in ("set-priority-class", "set-priority-offset"):
        sample, rest = _rule_sample(rest)
        condition = _trailing_condition(line, proxy, f"tcp-request {phase} {action}", rest)
        proxy.tcp_request_rules.append(TcpRequestRule(phase=phase, action=action, condition=condition,
                                                      location=line.location, sample=sample))
    elif action == "set-nice":
        line.warn("'set-nice' orders HAProxy's own scheduling of its tasks (CPU time between streams); "
                  "fastproxy's data plane has no such scheduler, and where the connection goes does not "
                  "change; rule ignored")
    elif action.split("(", 1)[0] in _REFUSED_TCP_REQUEST_ACTIONS:
        raise _Invalid(f"action '{action}': {_REFUSED_TCP_REQUEST_ACTIONS[action.split('(', 1)[0]]}")
    elif _known_tcp_request_action(action):
        line.warn(f"action '{action}' is not supported by fastproxy; rule ignored")
    else:
        raise _Invalid(f"'tcp-request {phase}' expects 'accept', 'reject' or another HAProxy action "
                       f"(got '{action}')")


def _expect_proxy_rule(line: _Line, proxy: _Proxy, rest: list[str]) -> TcpRequestRule:
    """``tcp-request connection expect-proxy layer4 [if|unless <cond>]``: the client's first bytes
    are a PROXY header (as on an ``accept-proxy`` bind) when the condition matches; the rules after
    it, the balancer and the logs see the addresses it gives."""
    if not rest or rest[0] != "layer4":
        raise _Invalid(f"'tcp-request connection expect-proxy' only supports 'layer4' in {proxy.describe()} "
                       f"(got '{rest[0] if rest else ''}')")
    condition = _trailing_condition(line, proxy, "tcp-request connection expect-proxy layer4", rest[1:])
    return TcpRequestRule(phase="connection", action="expect-proxy", condition=condition,
                          location=line.location)


def _rule_sample(rest: list[str]) -> tuple[Sample, list[str]]:
    """The sample expression an action takes first (``track-sc0 <expr>``, ``set-var(...) <expr>``...),
    and the words after it."""
    if not rest or rest[0] in ("if", "unless"):
        raise _Invalid("missing fetch method")
    try:
        return samples.parse(rest[0]), rest[1:]
    except samples.SampleError as exc:
        raise _Invalid(exc.message) from None


def _trailing_condition(line: _Line, proxy: _Proxy, what: str, rest: list[str]) -> Optional[Condition]:
    """The ``if|unless <condition>`` ending a rule's words, if any."""
    if not rest:
        return None
    if rest[0] not in ("if", "unless"):
        raise _Invalid(f"'{what}' only accepts 'if' or 'unless', in {proxy.describe()} (got '{rest[0]}')")
    return line.reader.condition(line, proxy, rest)


@_keyword("tcp-response", caps=BE, in_defaults="named")
def _tcp_response(line: _Line, proxy: _Proxy, args: list[str]) -> None:
    """``tcp-response inspect-delay`` alone changes nothing (a warning); ``tcp-response content`` rules
    judge what the server sends, which the pump relays without Python: refused, not ignored."""
    phase = args[0] if args else ""
    if phase == "inspect-delay":
        _time(_leading(line, args[1:], 1, "a delay such as 5s")[0])
        line.warn("fastproxy has no 'tcp-response content' rule for it to delay; ignored")
        return
    if phase != "content":
        raise _Invalid(f"expects 'inspect-delay' or 'content' (got '{phase}')")
    if not proxy.caps & BE:
        return  # ignored with HAProxy's warning where there is no backend
    raise _Invalid("fastproxy does not inspect what servers send (the pump relays it without looking): "
                   "'tcp-response content' rules would never accept, reject or close anything")


_ADDRESS_ACTIONS = ("set-src", "set-dst", "set-src-port", "set-dst-port")


def _address_rule(line: _Line, proxy: _Proxy, phase: str, action: str, rest: list[str]) -> TcpRequestRule:
    """``set-src|set-dst <expr>``, ``set-src-port|set-dst-port <expr>`` [if|unless <cond>]: the address
    (or port) the rules after it, the balancer, the stick tables and the logs see from then on; a
    server without port is dialed at the destination port it sets.  A value that is no address (or
    port) when the rule runs changes nothing, as in HAProxy."""
    sample, rest = _rule_sample(rest)
    condition = _trailing_condition(line, proxy, f"tcp-request {phase} {action}", rest)
    return TcpRequestRule(phase=phase, action=action, condition=condition, location=line.location,
                          sample=sample)


_VARIABLE_ACTIONS = ("set-var", "set-var-fmt", "unset-var")

# The actions of each rule set, as HAProxy 2.6 registers them (``haproxy -dKall``) beside its built-in
# ones: another known action in a set is refused, as HAProxy refuses it.
_SESSION_ACTIONS = _names("""
    accept reject track-sc0 track-sc1 track-sc2 sc-inc-gpc sc-inc-gpc0 sc-inc-gpc1 sc-set-gpt sc-set-gpt0
    set-dst set-dst-port set-mark set-src set-src-port set-tos set-var set-var-fmt silent-drop unset-var
""")
_PHASE_ACTIONS = {
    "connection": _SESSION_ACTIONS | {"expect-proxy", "expect-netscaler-cip"},
    "session": _SESSION_ACTIONS,
    "content": _SESSION_ACTIONS | _names("""
        capture do-resolve ot-group send-spoe-group set-log-level set-nice set-priority-class
        set-priority-offset switch-mode use-service
    """),
}


def _check_phase(proxy: _Proxy, phase: str, action: str, rest: list[str]) -> None:
    kind = action.split("(", 1)[0]
    if kind == "capture" and (phase != "content" or not proxy.caps & FE):
        if phase == "content":
            raise _Invalid(f"'tcp-request content capture' : proxy '{proxy.name}' has no frontend capability")
        where = f"'tcp-request {phase}' rules in {proxy.describe()}"
        raise _Invalid(f"'capture {rest[0] if rest else ''}' is not allowed in {where}")
    if _known_tcp_request_action(action) and kind not in _PHASE_ACTIONS[phase] and kind != "expect-proxy":
        allowed = ", ".join(f"'{name}'" for name in sorted(_PHASE_ACTIONS[phase]))
        raise _Invalid(f"'tcp-request {phase}' expects {allowed} in {proxy.describe()} (got '{action}').")


def _capture_rule(line: _Line, proxy: _Proxy, rest: list[str]) -> TcpRequestRule:
    """``tcp-request content capture <sample> len <n>``: the sample's text, cut at ``n`` bytes, into a
    new request capture slot (%hr, %hrl, ``capture.req.hdr(<slot>)``)."""
    sample, rest = _rule_sample(rest)
    if rest[:1] != ["len"] or len(rest) < 2:
        raise _Invalid("'tcp-request content capture' : a positive 'len' argument is mandatory")
    length = atoi(rest[1])  # as HAProxy reads it: "12abc" is 12, a number past a C int wraps
    if length <= 0:
        raise _Invalid("'tcp-request content capture' : length must be > 0")
    condition = _trailing_condition(line, proxy, "tcp-request content capture", rest[2:])
    proxy.request_captures.append(length)
    return TcpRequestRule(phase="content", action="capture", condition=condition, location=line.location,
                          sample=sample, value=length, index=len(proxy.request_captures) - 1)


@_keyword("declare")
def _declare(line: _Line, proxy: _Proxy, args: list[str]) -> None:
    """``declare capture request|response len <n>``: a capture slot (rules fill request ones)."""
    if proxy.kind not in ("frontend", "listen"):
        raise _Invalid("'declare' only available in frontend or listen section")
    if args[:1] != ["capture"]:
        raise _Invalid("'declare' only supports 'capture'")
    direction = args[1] if len(args) > 1 else ""
    if direction not in ("request", "response"):
        raise _Invalid("'declare capture' requires a direction ('request' or 'response')")
    if args[2:3] != ["len"] or len(args) < 4:
        raise _Invalid("'declare capture' requires a capture length ('len')")
    if not args[3].isdigit() or decimal(args[3]) <= 0:
        raise _Invalid("'declare capture': cannot parse the length 'len'.")
    (proxy.request_captures if direction == "request" else proxy.response_captures).append(decimal(args[3]))


@_keyword("capture", caps=FE)
def _capture(line: _Line, proxy: _Proxy, args: list[str]) -> None:
    """``capture request|response header <name> len <n>``: a slot HTTP headers would fill, which stays
    empty on a TCP stream (as in HAProxy's TCP mode); ``capture cookie`` needs HTTP mode."""
    direction = args[0] if args else ""
    if direction not in ("request", "response"):
        line.warn(f"'capture' statement ignored for {proxy.describe()} as it requires HTTP mode.")
        return
    if len(args) < 5 or args[1] != "header" or args[3] != "len":
        raise _Invalid(f"'capture {direction}' expects 'header' <header_name> 'len' <len>.")
    if not args[4].isdigit() or decimal(args[4]) <= 0:
        raise _Invalid(f"'capture {direction}' : length must be > 0")
    (proxy.request_captures if direction == "request" else proxy.response_captures).append(decimal(args[4]))


def _socket_value(rest: list[str]) -> int:
    """``set-tos`` / ``set-mark``'s value, read as strtol() reads it in base 0 (``0x`` hexadecimal, a
    leading ``0`` octal)."""
    if not rest or rest[0] in ("if", "unless"):
        raise _Invalid("expects exactly 1 argument (integer/hex value)")
    match = re.match(r"\s*([-+]?)(0[xX][0-9a-fA-F]+|0[0-7]*|[1-9][0-9]*)", rest[0])
    end = match.end() if match else 0
    if not match or end < len(rest[0]):
        raise _Invalid(f"invalid character starting at '{rest[0][end:]}' (integer/hex value expected)")
    digits, negative = match[2], match[1] == "-"
    base = 16 if digits[:2].lower() == "0x" else 8 if digits.startswith("0") else 10
    value = based(digits[2:] if base == 16 else digits, base, LONG_MAX + negative)
    # strtol() saturates a long, which HAProxy then hands to the socket call as a C int.
    return c_int(-value if negative else value)

def _variable_rule(line: _Line, proxy: _Proxy, phase: str, action: str, rest: list[str]) -> TcpRequestRule:
    """``set-var(<name>[,<cond>...]) <expr>``, ``set-var-fmt(<name>[,<cond>...]) <format>``,
    ``unset-var(<name>)`` [if|unless <cond>]: the variable the following rules, ``use_backend`` and
    the log line read with ``var()`` (``fastproxy.variables``: its scope says how long it lives)."""
    kind, name, conditions = variable_target(action)
    sample, text, rest = variable_value(line, kind, action, rest)
    condition = _trailing_condition(line, proxy, f"tcp-request {phase} {kind}", rest)
    return TcpRequestRule(phase=phase, action=kind, condition=condition, location=line.location,
                          sample=sample, variable=name, variable_conditions=conditions, log_format=text)


def variable_target(action: str) -> tuple[str, str, tuple[str, ...]]:
    """``set-var(<name>[,<cond>...])``, ``set-var-fmt(...)``, ``unset-var(<name>)``: (the action, the
    variable's name, set-var's conditions), checked as HAProxy's vars.c checks them."""
    kind, paren, inner = action.partition("(")
    if not paren or not inner.endswith(")"):
        raise _Invalid(f"invalid variable '{action}'. Expects '{kind}(<var-name>)'")
    words = [word.strip() for word in inner[:-1].split(",")]
    try:
        variables.parse_name(words[0])
        if kind == "unset-var" and len(words) > 1:
            raise _Invalid(f"'{kind}' expects only the variable name (got '{','.join(words[1:])}')")
        conditions = tuple(sorted(variables.parse_conditions(words[1:])))
    except variables.VariableError as exc:
        raise _Invalid(str(exc)) from None
    return kind, words[0], conditions


def variable_value(line: _Line, kind: str, action: str, rest: list[str], *,
                   check: bool = False) -> tuple[Optional[Sample], Optional[str], list[str]]:
    """What a variable action sets: set-var's sample expression, set-var-fmt's format (``check``: a
    health check's, ``logformat.compile(check=True)``), unset-var's nothing; and the words after it."""
    sample, text = None, None
    if kind == "set-var":
        sample, rest = _rule_sample(rest)
        if check and samples.fetch_of(sample.fetch)[0].name not in logformat.CHECK_FETCHES:
            raise _Invalid(f"fetch method '{sample.fetch}' is not one fastproxy evaluates in a health check "
                           f"(it reads there: {', '.join(sorted(logformat.CHECK_FETCHES))})")
    elif kind == "set-var-fmt":
        if not rest or rest[0] in ("if", "unless"):
            raise _Invalid(f"'{kind}' expects a log-format string")
        try:
            fmt = logformat.compile(rest[0], check=check)
        except logformat.LogFormatError as exc:
            raise _Invalid(f"failed to parse the format of '{action}' : {exc}.") from None
        for warning in fmt.warnings:
            line.warn(warning)
        text, rest = rest[0], rest[1:]
    return sample, text, rest


# Actions that would change where traffic goes or what the client gets, which fastproxy does not do:
# refused with the reason (ignoring them would route differently from HAProxy).
_REFUSED_TCP_REQUEST_ACTIONS = {
    "use-service": "a service (the Prometheus exporter, Lua, SPOP...) would answer the client in place "
                   "of a server; fastproxy runs no service in a TCP proxy",
    "switch-mode": "it turns the stream into HTTP, which fastproxy (a layer-4 proxy) does not process",
    "expect-netscaler-cip": "fastproxy does not decode NetScaler client IP headers: the header would be "
                            "forwarded to the server and the addresses it gives ignored",
    "do-resolve": "fastproxy resolves no name while a connection runs (it reads no 'resolvers' section): "
                  "the variable the rules after it route on would stay unset",
    "send-spoe-group": "fastproxy runs no SPOE agent: the variables its answers set, which the rules "
                       "after it route on, would stay unset",
}


# ``filter <name>``: the filters HAProxy 2.6 registers.  SPOE changes routing (its agents' answers set
# the variables rules read), so it is refused; the others do not decide where a connection goes.
FILTERS_IGNORED = {
    "cache": "an HTTP cache: it needs an HTTP stream",
    "compression": "HTTP compression: it needs an HTTP stream",
    "fcgi-app": "a FastCGI application: it needs an HTTP stream",
    "opentracing": "OpenTracing spans sent to a tracer, not where the connection goes",
    "trace": "debugging traces of the stream's events",
}


@_keyword("filter", in_defaults="no")
def _filter(line: _Line, proxy: _Proxy, args: list[str]) -> None:
    name = args[0] if args else ""
    if name == "spoe":
        raise _Invalid("'filter spoe': fastproxy runs no SPOE agent: the variables its answers set, which "
                       "rules route on, would stay unset")
    if name not in FILTERS_IGNORED:
        known = ", ".join(sorted({*FILTERS_IGNORED, "spoe"}))
        raise _Invalid(f"'filter' : unknown keyword '{shown(name)}'. Registered keywords : {known}")
    line.warn(f"filter '{name}' is not supported by fastproxy ({FILTERS_IGNORED[name]}); ignored")


MAX_TRACKED = samples.MAX_TRACKED  # track-sc0, track-sc1, track-sc2


def _counter_action(action: str) -> Optional[tuple[str, int, Optional[int]]]:
    """``track-sc1`` -> ("track-sc", 1, None), ``sc-inc-gpc0(2)`` -> ("sc-inc-gpc0", 2, None),
    ``sc-inc-gpc(5,1)`` -> ("sc-inc-gpc", 1, 5): the kind, the stick counter, an array's index; None
    for other actions."""
    match = re.fullmatch(r"track-sc([0-9]+)", action)
    if match:
        counter = decimal(match[1])
        if counter >= MAX_TRACKED:
            raise _Invalid(f"{counter} track-sc number exceeding {MAX_TRACKED - 1} (MAX_SESS_STKCTR-1) value")
        return "track-sc", counter, None
    match = re.fullmatch(r"(sc-inc-gpc[01]|sc-set-gpt0)(?:\(([0-9]+)\))?", action)
    if match:
        counter = decimal(match[2] or "0")
        if counter >= MAX_TRACKED:
            raise _Invalid(f"invalid stick table track ID. The max allowed ID is {MAX_TRACKED - 1}")
        return match[1], counter, None
    kind = action.split("(", 1)[0]
    if kind in ("sc-inc-gpc", "sc-set-gpt"):
        what = "gpc" if kind == "sc-inc-gpc" else "gpt"
        expects = f"Expects {kind}(<{what.upper()} ID>,<Track ID>)"
        if "(" not in action:
            raise _Invalid(f"invalid {what} ID '{action}'. {expects}")
        match = re.fullmatch(r"sc-(?:inc-gpc|set-gpt)\(([0-9]+),([0-9]+)\)", action)
        if not match:
            raise _Invalid(f"Missing {what} ID '{action}'. {expects}")
        counter = decimal(match[2])
        if counter >= MAX_TRACKED:
            raise _Invalid(f"invalid stick table track ID '{action}'. The max allowed ID is "
                           f"{MAX_TRACKED - 1}")
        return kind, counter, decimal(match[1])
    return None


def _counter_rule(line: _Line, proxy: _Proxy, phase: str, action: str, rest: list[str]) -> TcpRequestRule:
    """``track-sc<n> <sample> [table <t>]``, ``sc-inc-gpc0(<n>)``, ``sc-inc-gpc(<idx>,<n>)``,
    ``sc-set-gpt0(<n>) <int|expr>``, ``sc-set-gpt(<idx>,<n>) <int|expr>``, each with an optional
    condition."""
    found = _counter_action(action)
    assert found is not None
    kind, counter, index = found
    sample, table, value = None, None, 0
    if kind == "track-sc":
        sample, rest = _rule_sample(rest)
        if rest[:1] == ["table"]:
            if len(rest) < 2:
                raise _Invalid("missing table name")
            table, rest = rest[1], rest[2:]
    elif kind in ("sc-set-gpt0", "sc-set-gpt"):
        # An integer, or a sample expression (whose value is cast to one when the rule runs); no value
        # at all is 0, as HAProxy's strtol() reads an empty word.
        if rest and rest[0] not in ("if", "unless"):
            if re.fullmatch(r"[-+]?[0-9]+", rest[0]):
                value = signed(rest[0])
            else:
                if phase == "connection":
                    # haproxy 2.6 fails such a rule ("internal error, unexpected rule->from=0"), which
                    # would make a file fastproxy runs refused by haproxy: refused the same way.
                    raise _Invalid(f"'{action}' takes an integer in 'tcp-request connection' rules: HAProxy "
                                   "2.6 refuses a sample expression there (internal error, unexpected "
                                   "rule->from=0)")
                sample = _rule_sample(rest)[0]
            rest = rest[1:]
    condition = _trailing_condition(line, proxy, f"tcp-request {phase} {action}", rest)
    return TcpRequestRule(phase=phase, action=kind, condition=condition, location=line.location,
                          counter=counter, sample=sample, table=table, value=value, index=index)


_PHASE_ORDER = {"connection": 0, "session": 1, "content": 2}


def _warn_rule_order(line: _Line, proxy: _Proxy, phase: str) -> None:
    """HAProxy evaluates rule sets in a fixed order, whatever the order of the lines: say so."""
    if proxy.use_backends:
        line.warn("a 'tcp-request' rule placed after a 'use_backend' rule will still be processed before.")
    later = [rule.phase for rule in proxy.tcp_request_rules if _PHASE_ORDER[rule.phase] > _PHASE_ORDER[phase]]
    if later:
        line.warn(f"a 'tcp-request {phase}' rule placed after a 'tcp-request {later[0]}' rule will still "
                  "be processed before.")


_TCP_REQUEST_ACTIONS = _names("""
    capture do-resolve expect-netscaler-cip expect-proxy ot-group sc-inc-gpc sc-inc-gpc0 sc-inc-gpc1
    sc-set-gpt sc-set-gpt0 send-spoe-group set-dst set-dst-port set-log-level set-mark set-nice
    set-priority-class set-priority-offset set-src set-src-port set-tos set-var set-var-fmt switch-mode
    track-sc0 track-sc1 track-sc2 unset-var use-service
""")


def _known_tcp_request_action(action: str) -> bool:
    return action.split("(", 1)[0] in _TCP_REQUEST_ACTIONS


@_keyword("disabled")
def _disabled(line: _Line, proxy: _Proxy, args: list[str]) -> None:
    _none(args)
    proxy.disabled = True


@_keyword("enabled")
def _enabled(line: _Line, proxy: _Proxy, args: list[str]) -> None:
    _none(args)
    proxy.disabled = False


@_keyword("description", in_defaults="no")
def _description(line: _Line, proxy: _Proxy, args: list[str]) -> None:
    if not args:
        raise _Invalid("expects a string argument")
    proxy.options["description"] = " ".join(args)


@_keyword("id", in_defaults="no")
def _id(line: _Line, proxy: _Proxy, args: list[str]) -> None:
    proxy.id = _integer(_one(args, "a numeric id"), "a numeric id above 0", 1)


@_post_check(FE)
def _check_log_format(reader: ReaderView, proxy: _Proxy) -> None:
    """HAProxy compiles a ``log-format`` (and ``unique-id-format``) once the proxy's mode is known, and
    reports it at its line."""
    for keyword, what, text, location in (
            ("log-format", "log-format", proxy.log_format, proxy.log_format_location),
            ("unique-id-format", "unique-id", proxy.unique_id_format, proxy.unique_id_format_location),
            ("log-format-sd", "log-format-sd", proxy.log_format_sd, proxy.log_format_sd_location)):
        if text is None:
            continue
        location = location or proxy.location
        try:
            fmt = logformat.compile(text, http=proxy.mode == "http")
        except logformat.LogFormatError as exc:
            reader.error(location, keyword, f"failed to parse {what} : {exc}.")
            continue
        for warning in fmt.warnings:
            reader.warn(location, keyword, warning)


@_post_check(FE)
def _check_inspection(reader: ReaderView, proxy: _Proxy) -> None:
    """Rules reading what the client sends only see it if a content rule waits for it (inspect-delay)."""
    content = [rule.condition for rule in proxy.tcp_request_rules if rule.phase == "content"]
    conditions = content + [use.condition for use in proxy.use_backends]
    if not any(acls.condition_uses(condition, proxy.acls, acls.CONTENT_FETCHES) for condition in conditions):
        return
    if proxy.inspect_delay is None:
        reader.warn(proxy.location, proxy.kind, f"{proxy.describe()} has rules reading what the client "
                    "sends but no 'tcp-request inspect-delay': they only see what arrived with the "
                    "connection, as in HAProxy (usually nothing)")
    elif not content:
        reader.warn(proxy.location, proxy.kind, f"{proxy.describe()} has 'use_backend' rules reading what "
                    "the client sends but no 'tcp-request content' rule to wait for it: as in HAProxy, "
                    "they only see what arrived with the connection (usually nothing)")
