"""The check kinds HAProxy builds out of tcp-check rules (tcpcheck.c): ``option httpchk`` with the
``http-check`` rules, and ``option mysql-check``, ``pgsql-check``, ``redis-check``, ``smtpchk``,
``ldap-check`` and ``ssl-hello-chk``, each its ruleset of HAProxy 2.6 with the same bytes on the wire.

The last check option of a proxy is the one in effect (``option tcp-check`` included): each sets
``_Proxy.check_kind``; ``check_rules`` gives the model the rules of the kind in effect.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable
from typing import Any, Optional

from ..model import SSL3_HELLO, HttpCheckRequest, TcpCheckRule
from .lexer import _Invalid
from .registry import BE, _Line, _Proxy, _keyword
from .values import _regex, decimal
from .tcpcheck import (_TCP_CHECK_EXPECT_SETTINGS, _TCP_CHECK_VARIABLE_ACTION, _expect_pattern,
                       _expect_setting, _expect_word, _tcp_check_comment, _tcp_check_connect, _wire_bytes,
                       check_variable_rule)
from .values import _none

# --- option httpchk and http-check ------------------------------------------------------------------

_LOG_FORMAT = re.compile(r"%[\[{A-Za-z]")  # what makes an HAProxy word a log-format string


def httpchk_option(line: _Line, proxy: _Proxy, enabled: bool, args: list[str]) -> None:
    """``option httpchk [<method>] [<uri>] [<version>]``: one argument is the URI, two the method and
    URI; headers and a body hidden after ``\\r\\n`` in the version are deprecated but read."""
    if len(args) > 3:
        raise _Invalid(f"'option httpchk' cannot handle unexpected argument '{args[3]}'.")
    request = HttpCheckRequest()
    given: set[str] = set()
    if len(args) == 1:
        request.uri = args[0]
        given.add("uri")
    elif len(args) >= 2:
        request.method, request.uri = args[0], args[1]
        given |= {"method", "uri"}
    if len(args) == 3:
        version, headers, body = args[2], "", None
        if "\r\n\r\n" in version:
            version, body = version.split("\r\n\r\n", 1)
        if "\r\n" in version:
            version, headers = version.split("\r\n", 1)
        if headers or body is not None:
            line.warn("'option httpchk' : hiding headers or body at the end of the version string is "
                      "deprecated. Please, consider to use 'http-check send' directive instead.")
        request.version = version
        given.add("version")
        for header in filter(None, headers.split("\r\n")):
            name, colon, value = header.partition(":")
            if not colon or not name.strip():
                raise _Invalid(f"'option httpchk' : unable to parse the request '{header}'.")
            request.headers.append((name.strip(), _literal(value.strip(), "header value")))
        if body:
            request.body = _wire_bytes(body)
            given.add("body")
        if request.headers:
            given.add("headers")
    _check_request(request)
    proxy.tcp_check, proxy.check_kind = True, "http"
    rule = TcpCheckRule(action="send", http=request, location=line.location)
    rules = _own_http_rules(proxy, line)
    # As HAProxy's tcpcheck_add_http_rule(): the option's request merges with the first explicit
    # ``http-check send`` (the option's fields win), else it is the first request sent.
    first = _first_exchange(rules)
    if first is not None and first.http is not None and not proxy.http_option_request:
        _overwrite(first.http, request, given)
        return
    if first is not None and proxy.http_option_request:
        rules.remove(first)
    rules.insert(1 if rules and rules[0].action == "connect" else 0, rule)
    proxy.http_option_request = True


def _first_exchange(rules: list[TcpCheckRule]) -> Optional[TcpCheckRule]:
    """The first rule past the connect that is a step of the exchange (variable actions are not)."""
    return next((r for r in rules if r.action != "connect" and not r.is_variable_action), None)


def _own_http_rules(proxy: _Proxy, line: _Line) -> list[TcpCheckRule]:
    """The section's ``http-check`` rules: its first line replaces what ``defaults`` gave."""
    if not proxy.own_http_check_rules:
        proxy.http_check_rules, proxy.http_option_request = [], False
        proxy.own_http_check_rules = True
    return proxy.http_check_rules


def _overwrite(old: HttpCheckRequest, new: HttpCheckRequest, given: set[str]) -> None:
    for name in ("method", "uri", "version", "headers", "body"):
        if name in given:
            setattr(old, name, getattr(new, name))


def _literal(text: str, what: str) -> str:
    """A word HAProxy reads as a log-format string: only literal text is supported."""
    if _LOG_FORMAT.search(text):
        raise _Invalid(f"log-format {what} '{text}' is not supported by fastproxy (write the literal "
                       "text; '%%' stands for '%')")
    return text.replace("%%", "%")


def _check_request(request: HttpCheckRequest) -> None:
    if not re.fullmatch(r"HTTP/1\.[01]", request.version, re.IGNORECASE):
        raise _Invalid(f"fastproxy sends HTTP/1.0 or HTTP/1.1 checks, not '{request.version}'")
    if not re.fullmatch(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+", request.method):
        raise _Invalid(f"invalid HTTP method '{request.method}'")


@_keyword("http-check", caps=BE)
def _http_check(line: _Line, proxy: _Proxy, args: list[str]) -> None:
    action = args[0] if args else ""
    if action in ("disable-on-404", "send-state"):
        _none(args[1:])
        setattr(proxy, "http_disable_on_404" if action == "disable-on-404" else "http_send_state", True)
        return
    rule: Optional[TcpCheckRule]
    if action == "connect":
        rule = _tcp_check_connect(line, action, args[1:])
    elif action == "send":
        rule = _http_check_send(args[1:])
    elif action == "expect":
        rule = _http_check_expect(line, args[1:])
    elif action == "comment":
        _tcp_check_comment(line, action, args[1:])
        rule = None
    elif _TCP_CHECK_VARIABLE_ACTION.fullmatch(action):
        rule = check_variable_rule(line, action, args[1:])
    else:
        raise _Invalid("'http-check' only supports 'disable-on-404', 'send-state', 'comment', 'connect', "
                       "'send', 'expect', 'set-var(*)', 'set-var-fmt(*)', 'unset-var(*)'. but got "
                       f"'{action}'")
    rules = _own_http_rules(proxy, line)
    if rule is None:
        return
    rule.location = line.location
    _add_http_rule(proxy, rules, rule)


def _add_http_rule(proxy: _Proxy, rules: list[TcpCheckRule], rule: TcpCheckRule) -> None:
    """HAProxy's order checks (tcpcheck_add_http_rule()); a ``send`` merges into the option's request."""
    if rule.is_variable_action or not (proxy.tcp_check and proxy.check_kind == "http"):
        rules.append(rule)  # HAProxy checks the order once ``option httpchk`` uses the rules
        return
    last = next((r for r in reversed(rules) if not r.is_variable_action), None)
    step = len(rules) + 1 - proxy.http_option_request  # the option's request is no step of its own
    option_last = last is not None and last.http is not None and proxy.http_option_request and \
        last is _first_exchange(rules)
    if last is not None and not option_last:
        if rule.action == "send" and last.action != "connect":
            raise _Invalid(f"unable to add http-check send rule at step {step} (missing connect rule).")
        if rule.action == "expect" and last.action not in ("send", "expect"):
            raise _Invalid(f"unable to add http-check expect rule at step {step} (missing send rule).")
        if rule.action == "connect" and last.action != "expect":
            raise _Invalid(f"unable to add http-check connect rule at step {step} (missing expect rule).")
    if rule.action == "send" and proxy.http_option_request:
        first = _first_exchange(rules)
        assert first is not None
        assert first.http is not None and rule.http is not None
        given = {name for name in ("method", "uri", "version", "headers", "body")
                 if getattr(rule.http, name) != getattr(HttpCheckRequest(), name)}
        _overwrite(first.http, rule.http, given)
        rules.remove(first)
        proxy.http_option_request = False
        rule = first
    rules.append(rule)


def _http_check_send(args: list[str]) -> TcpCheckRule:
    request = HttpCheckRequest()
    settings = {"meth": 1, "uri": 1, "uri-lf": 1, "ver": 1, "hdr": 2, "body": 1, "body-lf": 1, "comment": 1}
    rule = TcpCheckRule(action="send", http=request)
    i = 0
    while i < len(args):
        name = args[i]
        count = settings.get(name)
        if count is None:
            raise _Invalid("'send' only supports 'comment', 'meth', 'uri', 'uri-lf', 'ver', 'hdr', 'body' or "
                           f"'body-lf' but got '{name}' as argument.")
        values = args[i + 1:i + 1 + count]
        if len(values) < count:
            raise _Invalid(f"'{name}' expects {'<name> and <value>' if count == 2 else 'an argument'}.")
        if name == "meth":
            request.method = values[0]
        elif name in ("uri", "uri-lf"):
            request.uri = _literal(values[0], "URI") if name == "uri-lf" else values[0]
        elif name == "ver":
            request.version = values[0]
        elif name == "hdr":
            request.headers.append((values[0], _literal(values[1], "header value")))
        elif name in ("body", "body-lf"):
            request.body = _wire_bytes(_literal(values[0], "body") if name == "body-lf" else values[0])
        else:
            rule.comment = values[0]
        i += 1 + count
    _check_request(request)
    return rule


_HTTP_MATCHES = {"status": "status", "rstatus": "rstatus", "string": "body", "rstring": "rbody",
                 "string-lf": "body", "hdr": "hdr", "fhdr": "fhdr"}
_HEADER_METHODS = ("str", "beg", "end", "sub", "reg")


def _literal_format(keyword: str, text: str) -> str:
    """A log-format argument of a check rule: fastproxy evaluates none in checks, so only one without
    any ``%`` directive (a constant string) is taken; others are refused (they would match wrongly)."""
    if "%" in text.replace("%%", ""):
        raise _Invalid(f"'{keyword}' with log-format directives ('{text}') is not supported by fastproxy: "
                       "its checks evaluate no sample; write the constant string")
    return text.replace("%%", "%")


def _header_pattern(args: list[str], i: int, keyword: str) -> tuple[Any, int]:
    """``hdr|fhdr { name | name-lf } [-m <meth>] <name> [{ value | value-lf } [-m <meth>] <value>]``:
    ((name method, name, value method or None, value or None), the index after it)."""
    def part(i: int, what: str) -> tuple[str, str, int]:
        if i >= len(args) or args[i] not in (what, f"{what}-lf"):
            got = args[i] if i < len(args) else ""
            raise _Invalid(f"'{keyword}' expects '{what}' or '{what}-lf' (got '{got}')")
        lf = args[i].endswith("-lf")
        i += 1
        method = "str"
        if i < len(args) and args[i] == "-m":
            if i + 1 >= len(args) or args[i + 1] not in _HEADER_METHODS:
                raise _Invalid(f"'{keyword}' : '-m' expects 'str', 'beg', 'end', 'sub' or 'reg' (got "
                               f"'{args[i + 1] if i + 1 < len(args) else ''}')")
            method, i = args[i + 1], i + 2
        if i >= len(args):
            raise _Invalid(f"'{keyword}' : '{what}' expects a pattern")
        pattern = args[i]
        if lf:
            if method == "reg":
                raise _Invalid(f"'{keyword}' : '{what}-lf' cannot be used with the regex matching method")
            pattern = _literal_format(f"{what}-lf", pattern)
        elif method == "reg":
            pattern = _regex(pattern)
        return method, pattern, i + 1
    name_method, name, i = part(i, "name")
    value_method: Optional[str] = None
    value: Optional[str] = None
    if i < len(args) and args[i] in ("value", "value-lf"):
        value_method, value, i = part(i, "value")
    return (name_method, name, value_method, value), i


def _http_check_expect(line: _Line, args: list[str]) -> TcpCheckRule:
    rule = TcpCheckRule(action="expect")
    match: Optional[str] = None
    pattern = ""
    header: Any = None
    i = 0
    while i < len(args):
        word, negated_here, i = _expect_word(rule, args, i)
        if word in _HTTP_MATCHES:
            _expect_pattern(match, word, args, i)
            if word in ("hdr", "fhdr"):
                match = word
                header, i = _header_pattern(args, i + 1, word)
                continue
            match, pattern = word, args[i + 1]
        elif word in _TCP_CHECK_EXPECT_SETTINGS:
            _expect_setting(line, rule, word, negated_here, args, i)
        else:
            raise _Invalid("only supports 'min-recv', 'comment', 'ok-status', 'error-status', 'tout-status', "
                           "'on-success', 'on-error', 'status-code', '!' followed by 'status', 'rstatus', "
                           f"'hdr', 'fhdr', 'string', 'rstring', 'string-lf' but got '{word}' as argument")
        i += 2
    if match is None:
        raise _Invalid("expects at least a matching pattern as arguments")
    rule.match = _HTTP_MATCHES[match]
    if match == "status":
        rule.pattern = _status_codes(pattern)
    elif match in ("hdr", "fhdr"):
        rule.pattern = header
    elif match == "string-lf":
        rule.pattern = _literal_format("string-lf", pattern).encode("latin-1")
    elif match == "string":
        rule.pattern = _wire_bytes(pattern)
    else:
        rule.pattern = _regex(pattern)
    return rule


def _status_codes(text: str) -> tuple[tuple[int, int], ...]:
    """``200``, ``200-399``, ``200,302``: HAProxy's list of codes and ranges."""
    ranges = []
    for part in text.split(","):
        match = re.fullmatch(r"([0-9]+)(?:-([0-9]+))?", part.strip())
        if not match:
            raise _Invalid(f"invalid HTTP status code or range '{part}' (expects 'NNN' or 'NNN-MMM')")
        low = decimal(match[1])
        ranges.append((low, decimal(match[2]) if match[2] else low))
    return tuple(ranges)


DEFAULT_HTTP_EXPECT = TcpCheckRule(action="expect", match="status", pattern=((200, 399),))


def check_rules(proxy: _Proxy) -> list[TcpCheckRule]:
    """The rules of the check kind in effect (HAProxy's check_proxy_tcpcheck() completes HTTP ones:
    the default request when none is sent, a ``status 200-399`` expect after a last ``send``)."""
    if proxy.check_kind == "tcp":
        return list(proxy.tcp_check_rules)
    if proxy.check_kind != "http":
        return list(proxy.protocol_check_rules)
    rules = list(proxy.http_check_rules)
    if not any(rule.action == "send" for rule in rules):
        rules.insert(1 if rules and rules[0].action == "connect" else 0,
                     TcpCheckRule(action="send", http=HttpCheckRequest()))
    last = next((r for r in reversed(rules) if not r.is_variable_action), None)
    if last is not None and last.action == "send":
        rules.append(DEFAULT_HTTP_EXPECT)
    return rules


# --- the protocol checks: HAProxy 2.6's rulesets, rule for rule -----------------------------------

def _expect(match: str, pattern: Any, **settings: Any) -> TcpCheckRule:
    return TcpCheckRule(action="expect", match=match, pattern=pattern, **settings)


_LINGER = TcpCheckRule(action="connect", linger=True)  # "tcp-check connect default linger"
_CODE = (0, 3)  # status-code "res.payload(0,3)"
_REPLY = "%[res.payload(4,0),ltrim(' '),cut_crlf]"


def _redis_rules(args: list[str]) -> list[TcpCheckRule]:
    _no_arguments(args)
    return [TcpCheckRule(action="send", data=b"*1\r\n$4\r\nPING\r\n"),
            _expect("string", b"+PONG\r\n", error_status="L7STS", on_error="%[res.payload(0,0),cut_crlf]",
                    on_success="Redis server is ok")]


def _ldap_rules(args: list[str]) -> list[TcpCheckRule]:
    _no_arguments(args)
    return [TcpCheckRule(action="send", data=bytes.fromhex("300C020101600702010304008000")),
            _expect("rbinary", "^30", min_recv=14, on_error="Not LDAPv3 protocol"),
            _expect("custom", "ldap-bind")]


def _ssl3_rules(args: list[str]) -> list[TcpCheckRule]:
    _no_arguments(args)
    return [TcpCheckRule(action="send", data=SSL3_HELLO),
            _expect("rbinary", "^1[56]", min_recv=5, ok_status="L6OK", error_status="L6RSP",
                    tout_status="L6TOUT")]


def _smtp_rules(args: list[str]) -> list[TcpCheckRule]:
    if len(args) > 2:
        raise _Invalid(f"'option smtpchk' cannot handle unexpected argument '{args[2]}'.")
    command = f"{args[0]} {args[1]}" if len(args) == 2 and args[0] in ("EHLO", "HELO") else "HELO localhost"
    return [_LINGER,
            _expect("rstring", "^[0-9]{3}[ \r]", min_recv=4, error_status="L7RSP",
                    on_error="%[res.payload(0,0),cut_crlf]"),
            _expect("rstring", "^2[0-9]{2}[ \r]", min_recv=4, error_status="L7STS", on_error=_REPLY,
                    status_code=_CODE),
            TcpCheckRule(action="send", data=_wire_bytes(command) + b"\r\n"),
            _expect("rstring", "^2[0-9]{2}[- \r]", error_status="L7STS", on_error=_REPLY, status_code=_CODE),
            TcpCheckRule(action="send", data=b"QUIT\r\n"),  # HAProxy 2.6 says goodbye
            _expect("rstring", "^2[0-9]{2}[- \r]", min_recv=4, error_status="L7STS", on_error=_REPLY,
                    on_success=_REPLY, status_code=_CODE)]


def _pgsql_rules(args: list[str]) -> list[TcpCheckRule]:
    if len(args) < 2:
        raise _Invalid("'option pgsql-check' expects 'user <username>' as argument.")
    if args[0] != "user":
        raise _Invalid("'option pgsql-check' only supports optional values: 'user'.")
    if len(args) > 2:
        raise _Invalid(f"'option pgsql-check' cannot handle unexpected argument '{args[2]}'.")
    user = _wire_bytes(args[1])
    startup = (15 + len(user)).to_bytes(4, "big") + b"\x00\x03\x00\x00user\x00" + user + b"\x00\x00"
    return [_LINGER, TcpCheckRule(action="send", data=startup),
            _expect("rstring", "^E", negate=True, min_recv=5, error_status="L7RSP",
                    on_error="%[res.payload(6,0)]"),
            _expect("rbinary", "^52000000(08|0A|0C)000000(00|02|03|04|05|06)", min_recv=9,
                    error_status="L7STS", on_success="PostgreSQL server is ok",
                    on_error="PostgreSQL unknown error")]


def _mysql_rules(args: list[str]) -> list[TcpCheckRule]:
    if len(args) > 3:
        raise _Invalid(f"'option mysql-check' cannot handle unexpected argument '{args[3]}'.")
    if not args:
        return [_LINGER, _expect("custom", "mysql-handshake")]
    if args[0] != "user":
        raise _Invalid(f"'option mysql-check' only supports optional values: 'user' (got '{args[0]}').")
    if len(args) < 2:
        raise _Invalid("'option mysql-check user' expects <username> as argument.")
    user = _wire_bytes(args[1])
    if len(args) < 3 or args[2] == "post-41":  # HAProxy 2.6 sends the 4.1 packet unless told pre-41
        body = b"\x00\x82\x00\x00" + b"\x00\x80\x00\x01" + b"\x21" + bytes(23)
    elif args[2] == "pre-41":
        body = b"\x00\x80" + b"\x00\x00\x01"
    else:
        raise _Invalid(f"keyword 'user' only supports 'post-41' and 'pre-41' (got '{args[2]}').")
    body += user + b"\x00\x00"
    login = len(body).to_bytes(3, "little") + b"\x01" + body + b"\x01\x00\x00\x00\x01"  # then COM_QUIT
    return [_LINGER, TcpCheckRule(action="send", data=login), _expect("custom", "mysql-handshake"),
            _expect("custom", "mysql-ok")]


def _no_arguments(args: list[str]) -> None:
    if args:
        raise _Invalid(f"cannot handle unexpected argument '{args[0]}'.")


PROTOCOL_CHECKS: dict[str, tuple[str, Callable[[list[str]], list[TcpCheckRule]]]] = {
    "redis-check": ("redis", _redis_rules),
    "ldap-check": ("ldap", _ldap_rules),
    "ssl-hello-chk": ("ssl3", _ssl3_rules),
    "smtpchk": ("smtp", _smtp_rules),
    "pgsql-check": ("pgsql", _pgsql_rules),
    "mysql-check": ("mysql", _mysql_rules),
}


def protocol_check_option(line: _Line, proxy: _Proxy, enabled: bool, args: list[str]) -> None:
    """``option redis-check``, ``mysql-check [user <name> [post-41|pre-41]]``...: the kind's ruleset."""
    name = line.words[1]
    kind, rules = PROTOCOL_CHECKS[name]
    try:
        built = rules(args)
    except _Invalid as exc:
        message = exc.message
        raise _Invalid(message if message.startswith(("'", "keyword")) else f"'option {name}' {message}") \
            from None
    proxy.tcp_check, proxy.check_kind = True, kind
    proxy.protocol_check_rules = [dataclasses.replace(rule, location=line.location) for rule in built]
