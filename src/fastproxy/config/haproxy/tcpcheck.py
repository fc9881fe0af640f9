"""``tcp-check`` rules (HAProxy's tcpcheck.c): a backend's check sequence of ``connect``, ``send`` and
``expect`` rules, the variable actions between them (``set-var(check.<name>)``...), and the post-parse
check that drops rules written without ``option tcp-check``.  ``send-lf``, ``send-binary-lf``,
``expect string-lf|binary-lf`` and ``set-var-fmt`` take a health check's log-format
(``logformat.compile(check=True)``), evaluated at each check.

The rules become the model's ``TcpCheckRule``; running them is ``fastproxy.health``'s job.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Optional

from ... import logformat
from ..model import TcpCheckRule, wire_bytes as _wire_bytes
from .lexer import _Invalid
from .proxy import variable_target, variable_value
from .registry import BE, ReaderView, _Line, _Proxy, _keyword, _post_check
from .values import _integer, _ip_address, _leading, _port, _regex


TcpCheckParser = Callable[[_Line, str, list[str]], Optional[TcpCheckRule]]
_TCP_CHECK_VARIABLE_ACTION = re.compile(r"(set-var|set-var-fmt|unset-var)\(.+\)")


@_keyword("tcp-check", caps=BE)
def _tcp_check(line: _Line, proxy: _Proxy, args: list[str]) -> None:
    """One rule of the check sequence; the first rule a section writes replaces the defaults' rules."""
    action = args[0] if args else ""
    parser = _TCP_CHECK_ACTIONS.get(action)
    if parser is None and _TCP_CHECK_VARIABLE_ACTION.fullmatch(action):
        parser = check_variable_rule
    if parser is None:
        raise _Invalid("'tcp-check' only supports 'comment', 'connect', 'send', 'send-binary', 'send-lf', "
                       "'send-binary-lf', 'expect', 'set-var(*)', 'set-var-fmt(*)' and 'unset-var(*)' "
                       f"(got '{action}')")
    rule = parser(line, action, args[1:])
    if not proxy.own_tcp_check_rules:
        proxy.tcp_check_rules, proxy.tcp_check_location = [], line.location
        proxy.own_tcp_check_rules = True
    if rule is not None:
        rule.location = line.location
        proxy.tcp_check_rules.append(rule)


def _tcp_check_settings(args: list[str], settings: Mapping[str, int], expected: str) -> list[tuple[str, str]]:
    """``name [value]`` pairs, each name taking ``settings[name]`` (0 or 1) values."""
    result = []
    i = 0
    while i < len(args):
        name = args[i]
        count = settings.get(name)
        if count is None:
            raise _Invalid(f"expects {expected} but got '{name}' as argument")
        if count and i + 1 >= len(args):
            raise _Invalid(f"'{name}' expects an argument")
        result.append((name, args[i + 1] if count else ""))
        i += 1 + count
    return result


_TCP_CHECK_CONNECT_SETTINGS = {"default": 0, "port": 1, "addr": 1, "linger": 0, "comment": 1,
                               "send-proxy": 0, "via-socks4": 0, "ssl": 0, "sni": 1, "alpn": 1, "proto": 1}


def _tcp_check_connect(line: _Line, action: str, args: list[str]) -> TcpCheckRule:
    rule = TcpCheckRule(action="connect")
    address_port = None
    expected = "'comment', 'port', 'addr', 'send-proxy', 'ssl', 'sni', 'alpn', 'proto', 'via-socks4', " \
               "'linger' or 'default'"
    for name, value in _tcp_check_settings(args, _TCP_CHECK_CONNECT_SETTINGS, expected):
        if name == "port":
            rule.port = _integer(value, "a TCP port for 'port'", 1, 65535)
        elif name == "addr":
            rule.addr, address_port = _tcp_check_address(value)
        elif name == "linger":
            rule.linger = True
        elif name == "comment":
            rule.comment = value
        elif name == "ssl":
            rule.ssl = True
        elif name == "sni":
            rule.sni = value
        elif name == "default":  # the server's check settings: its port, address, check-ssl
            rule.default = True
        elif name == "send-proxy":
            rule.send_proxy = True
        else:
            line.warn(f"connect setting '{name}' is not supported by fastproxy; ignored",
                      f"tcp-check connect {name}")
    if rule.port is None:
        rule.port = address_port
    return rule


def _tcp_check_address(text: str) -> tuple[str, Optional[int]]:
    """``addr <ip>[:port]``: an IP address (HAProxy does not resolve names here)."""
    host, port = _ip_address(text, "addr")
    return host, _port(port, text) if port else None


def _tcp_check_send(line: _Line, action: str, args: list[str]) -> Optional[TcpCheckRule]:
    if not args:
        raise _Invalid(f"'{action}' expects the data to send as argument")
    data, settings = args[0], _tcp_check_settings(args[1:], {"comment": 1}, "'comment'")
    if action.endswith("-lf"):
        rule = TcpCheckRule(action="send", log_format=check_format(action, data),
                            binary=action == "send-binary-lf")
    else:
        rule = TcpCheckRule(action="send", data=_wire_bytes(data) if action == "send" else _hex_bytes(data))
    for _, value in settings:
        rule.comment = value
    return rule


def _hex_bytes(text: str) -> bytes:
    bad = re.search(r"[^0-9A-Fa-f]", text)
    if bad:
        raise _Invalid(f"'{text}' is not a valid binary string: hex digits expected (found '{bad.group()}')")
    if len(text) % 2:
        raise _Invalid(f"'{text}' is not a valid binary string: an even number of hex digits expected")
    return bytes.fromhex(text)


_TCP_CHECK_PATTERNS = ("string", "rstring", "binary", "rbinary", "string-lf", "binary-lf")
_TCP_CHECK_EXPECT_SETTINGS = ("min-recv", "comment", "ok-status", "error-status", "tout-status",
                              "on-success", "on-error", "status-code")
_TCP_CHECK_STATUSES = {
    "ok-status": ("L7OK", "L7OKC", "L6OK", "L4OK"),
    "error-status": ("L7RSP", "L7STS", "L6RSP", "L4CON", "L7OKC"),  # HAProxy takes L7OKC, undocumented
    "tout-status": ("L7TOUT", "L6TOUT", "L4TOUT"),
}


def _tcp_check_expect(line: _Line, action: str, args: list[str]) -> Optional[TcpCheckRule]:
    if not args:
        raise _Invalid("expects at least a matching pattern as arguments")
    rule = TcpCheckRule(action="expect")
    match: Optional[str] = None
    pattern = ""
    i = 0
    while i < len(args):
        word, negated_here, i = _expect_word(rule, args, i)
        if word in _TCP_CHECK_PATTERNS:
            _expect_pattern(match, word, args, i)
            match, pattern = word, args[i + 1]
        elif word in _TCP_CHECK_EXPECT_SETTINGS:
            _expect_setting(line, rule, word, negated_here, args, i)
        else:
            raise _Invalid("only supports 'min-recv', '[!]string', '[!]rstring', '[!]binary', '[!]rbinary', "
                           "'[!]string-lf', '[!]binary-lf', 'comment', 'ok-status', 'error-status', "
                           f"'tout-status', 'on-success', 'on-error' or 'status-code' but got '{word}' as "
                           "argument")
        i += 2
    if match is None:
        raise _Invalid("pattern not found: expects 'string', 'rstring', 'binary' or 'rbinary' and a pattern")
    if match.endswith("-lf"):  # matched as string or binary once the check has evaluated it
        rule.match, rule.binary = match[:-3], match == "binary-lf"
        rule.log_format = check_format(match, pattern)
        return rule
    rule.match = match
    if match == "string":
        rule.pattern = _wire_bytes(pattern)
    elif match == "binary":
        rule.pattern = _hex_bytes(pattern)
    else:
        rule.pattern = _regex(pattern)
    return rule


def _expect_word(rule: TcpCheckRule, args: list[str], i: int) -> tuple[str, bool, int]:
    """The word at ``i`` of a tcp-check or http-check expect, its leading '!'s taken off: "!", "! !" and
    "!string" each toggle the rule's negation, as in HAProxy.  (The word, whether a '!' came with it,
    where it is.)"""
    word, negated_here = args[i], False
    while word.startswith("!"):
        rule.negate, negated_here, word = not rule.negate, True, word[1:]
        if not word:
            i += 1
            word = args[i] if i < len(args) else ""
    return word, negated_here, i


def _expect_pattern(match: Optional[str], word: str, args: list[str], i: int) -> None:
    """A pattern keyword of an expect at ``i``: the rule's only one, followed by its pattern."""
    if match is not None:
        raise _Invalid(f"only one pattern expected (got '{match}' and '{word}')")
    if i + 1 >= len(args):
        raise _Invalid(f"'{word}' expects a <pattern> as argument")


def _expect_setting(line: _Line, rule: TcpCheckRule, word: str, negated_here: bool, args: list[str],
                    i: int) -> None:
    """A setting of an expect (``min-recv``, ``comment``, the statuses...) at ``i``, with its value."""
    if negated_here:
        raise _Invalid(f"[!] not supported with '{word}'")
    if i + 1 >= len(args):
        raise _Invalid(f"'{word}' expects an argument")
    _tcp_check_expect_setting(line, rule, word, args[i + 1])


def _tcp_check_expect_setting(line: _Line, rule: TcpCheckRule, name: str, value: str) -> None:
    if name == "min-recv":
        rule.min_recv = _integer(value, "-1 or a number of bytes for 'min-recv'", -1, 2**31 - 1)
    elif name == "comment":
        rule.comment = value
    elif name in _TCP_CHECK_STATUSES:
        statuses = _TCP_CHECK_STATUSES[name]
        if value.upper() not in statuses:
            raise _Invalid(f"'{name}' only supports {', '.join(repr(s) for s in statuses[:-1])} or "
                           f"'{statuses[-1]}' status (got '{value}')")
        setattr(rule, name.replace("-", "_"), value.upper())
    else:
        line.warn(f"expect setting '{name}' is not used by fastproxy (its check reports carry no custom "
                  "message or code); ignored", f"tcp-check expect {name}")


def _tcp_check_comment(line: _Line, action: str, args: list[str]) -> None:
    _leading(line, args, 1, "a string as argument")


def check_format(keyword: str, text: str) -> str:
    """A log-format argument of a check rule, checked as a health check's (``logformat``)."""
    try:
        logformat.compile(text, check=True)
    except logformat.LogFormatError as exc:
        raise _Invalid(f"'{keyword}' : failed to parse log-format string '{text}' : {exc}") from None
    return text


def check_variable_rule(line: _Line, action: str, args: list[str]) -> TcpCheckRule:
    """``set-var(<name>[,<cond>...]) <expr>``, ``set-var-fmt(<name>[,<cond>...]) <fmt>``,
    ``unset-var(<name>)`` of a ``tcp-check`` or ``http-check``: set at its place in the sequence, read
    by the rules after it (``var()`` in a format), gone at the next check."""
    kind, name, conditions = variable_target(action)
    if kind != "unset-var" and not args:
        what = "a sample expression" if kind == "set-var" else "a format string"
        raise _Invalid(f"'{kind}' expects {what}")
    sample, text, rest = variable_value(line, kind, action, args, check=True)
    if rest:  # HAProxy reads no further, a condition included: the action always runs
        line.warn(f"'{' '.join(rest)}' ignored: HAProxy reads nothing after a check action's "
                  f"{'variable' if kind == 'unset-var' else 'value'} (a condition included)")
    return TcpCheckRule(action=kind, variable=name, variable_conditions=conditions, sample=sample,
                        log_format=text)


_TCP_CHECK_ACTIONS: dict[str, TcpCheckParser] = {
    "connect": _tcp_check_connect,
    "send": _tcp_check_send,
    "send-binary": _tcp_check_send,
    "send-lf": _tcp_check_send,
    "send-binary-lf": _tcp_check_send,
    "expect": _tcp_check_expect,
    "comment": _tcp_check_comment,
}


@_post_check(BE)
def _rules_without_option(reader: ReaderView, proxy: _Proxy) -> None:
    """Rules written without ``option tcp-check`` in effect are not run: HAProxy warns and drops them."""
    if proxy.tcp_check_location is not None and not (proxy.tcp_check and proxy.check_kind == "tcp"):
        reader.warn(proxy.tcp_check_location, "tcp-check", f"{proxy.describe()} uses tcp-check rules "
                    "without 'option tcp-check', so the rules are ignored.")
        proxy.tcp_check_rules = []
