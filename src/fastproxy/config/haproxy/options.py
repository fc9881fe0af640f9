"""``option``, ``no option`` and ``default option`` (HAProxy's ``proxy_opts``), and the TCP keepalive
tunables (``clitcpka-*``, ``srvtcpka-*``).

``OPTIONS`` says for each option HAProxy 2.6 knows what fastproxy does with it: a handler that sets the
``_Proxy`` being read, or ``None`` for a warning.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Optional

from .checks import PROTOCOL_CHECKS, httpchk_option, protocol_check_option
from .extchecks import external_check_option
from .lexer import _Invalid
from .registry import BE, FE, ProxyHandler, _Line, _Proxy, _keyword, _names
from .values import _integer, _leading, _none, _time


OptionHandler = Callable[[_Line, _Proxy, bool, list[str]], None]


@dataclass(frozen=True)
class _Option:
    handler: Optional[OptionHandler]  # None: known to HAProxy, ignored by fastproxy with a warning
    caps: int = FE | BE
    message: str = "not supported by fastproxy; ignored"
    negatable: bool = True  # "no option <name>" is valid


def _flag(attribute: str) -> OptionHandler:
    def handler(line: _Line, proxy: _Proxy, enabled: bool, args: list[str]) -> None:
        _none(args)
        setattr(proxy, attribute, enabled)
    return handler


def _http_mode_option(line: _Line, proxy: _Proxy, enabled: bool, args: list[str]) -> None:
    """An option HAProxy 2.6 clears in TCP mode with this warning (``prefer-last-server``: the last
    server only matters to HTTP keep-alive), so nothing changes where connections go."""
    _none(args)
    if enabled:
        line.warn(f"'option {line.words[1]}' ignored for {proxy.describe()} as it requires HTTP mode.")


def _recorded(line: _Line, proxy: _Proxy, enabled: bool, args: list[str]) -> None:
    _none(args)
    proxy.options[line.words[2] if line.words[0] == "no" else line.words[1]] = enabled


def _keepalive(*sides: str) -> OptionHandler:
    def handler(line: _Line, proxy: _Proxy, enabled: bool, args: list[str]) -> None:
        _none(args)
        for side in sides:
            if side == "client" and proxy.caps & FE:
                proxy.client_keepalive.enabled = enabled
            if side == "server" and proxy.caps & BE:
                proxy.server_keepalive.enabled = enabled
    return handler


def _redispatch(line: _Line, proxy: _Proxy, enabled: bool, args: list[str]) -> None:
    if len(args) > 1:
        line.warn(f"extra argument '{args[1]}' ignored (HAProxy ignores it too)")
    if args:
        interval = _integer(args[0], "a retry interval (a non-zero integer)")
        if interval == 0:
            enabled = False
        elif interval != -1:  # which retries go to another server: routing, so never silently
            line.warn(f"interval {interval} is not used: fastproxy redispatches on the last retry only, "
                      "as with -1 (HAProxy's default)")
        proxy.options["redispatch-interval"] = interval
    proxy.redispatch = enabled


def _tcplog(line: _Line, proxy: _Proxy, enabled: bool, args: list[str]) -> None:
    _none(args)
    if not proxy.caps & FE:
        line.warn(f"{proxy.describe()} : 'option tcplog' directive is ignored in backends.")
        return
    proxy.tcplog = enabled
    proxy.log_format = proxy.log_format_location = None  # the predefined format replaces a log-format


def _httplog(line: _Line, proxy: _Proxy, enabled: bool, args: list[str]) -> None:
    line.warn("needs 'mode http'; falling back to 'option tcplog' as HAProxy does in TCP mode")
    if proxy.caps & FE:
        proxy.tcplog = enabled
        proxy.log_format = proxy.log_format_location = None


def _tcp_check_option(line: _Line, proxy: _Proxy, enabled: bool, args: list[str]) -> None:
    _none(args)
    proxy.tcp_check, proxy.check_kind = True, "tcp"


def _spop_check_option(line: _Line, proxy: _Proxy, enabled: bool, args: list[str]) -> None:
    """``option spop-check``: HAProxy checks the server as an SPOE agent (an SPOP HELLO handshake, the
    check passing on the agent's AGENT-HELLO); fastproxy speaks no SPOP, and a plain connect in its
    place would keep up a server HAProxy takes down: refused."""
    raise _Invalid("'option spop-check' checks servers as SPOE agents (the SPOP HELLO handshake), and "
                   "fastproxy has no SPOE: it cannot run these checks, and a plain TCP connect in their "
                   "place could keep up a server HAProxy would mark down")


def _removed_option(line: _Line, proxy: _Proxy, enabled: bool, args: list[str]) -> None:
    raise _Invalid(f"option '{line.words[-1] if not args else args[0]}' is not supported any more since "
                   "HAProxy 2.5")


OPTIONS: dict[str, _Option] = {
    "redispatch": _Option(_redispatch, BE),
    "splice-auto": _Option(_recorded),
    "splice-request": _Option(_recorded),
    "splice-response": _Option(_recorded),
    "tcpka": _Option(_keepalive("client", "server"), negatable=False),
    "clitcpka": _Option(_keepalive("client"), FE),
    "srvtcpka": _Option(_keepalive("server"), BE),
    "tcplog": _Option(_tcplog, negatable=False),
    "dontlognull": _Option(_flag("dontlognull"), FE),
    "allbackups": _Option(_flag("allbackups"), BE),
    "persist": _Option(_flag("persist"), BE),
    "httplog": _Option(_httplog, negatable=False),
    "httpslog": _Option(_httplog, negatable=False),
    "forwardfor": _Option(None, negatable=False),
    "originalto": _Option(None, negatable=False),
    "http-restrict-req-hdr-names": _Option(None, negatable=False),
    "http_proxy": _Option(_removed_option),
    # HAProxy 2.6 clears it in TCP mode, with this warning (the last server only matters to HTTP
    # keep-alive): nothing changes where connections go.
    "prefer-last-server": _Option(_http_mode_option, BE),
    **{name: _Option(None) for name in _names("""
        abortonclose accept-invalid-http-request accept-invalid-http-response checkcache contstats
        disable-h2-upgrade dontlog-normal h1-case-adjust-bogus-client
        h1-case-adjust-bogus-server http-buffer-request http-ignore-probes http-keep-alive http-no-delay
        http-pretend-keepalive http-server-close http-use-proxy-header httpclose idle-close-on-response
        independent-streams log-separate-errors logasap nolinger
        socket-stats tcp-smart-accept tcp-smart-connect
    """)},
    "tcp-check": _Option(_tcp_check_option, BE, negatable=False),
    "httpchk": _Option(httpchk_option, BE, negatable=False),
    "log-health-checks": _Option(_flag("log_health_checks"), BE),
    "transparent": _Option(_recorded, BE),  # refused where it would route: a backend without servers
    **{name: _Option(protocol_check_option, BE, negatable=False) for name in PROTOCOL_CHECKS},
    "external-check": _Option(external_check_option, BE, negatable=False),
    "spop-check": _Option(_spop_check_option, BE, negatable=False),
}


# Options HAProxy checks for arguments even where it ignores them (the check options take some).
_NO_ARGUMENT_HANDLERS = {option.handler for name, option in OPTIONS.items()
                         if name not in ("redispatch", "http_proxy")
                         and option.handler not in (httpchk_option, protocol_check_option,
                                                    _spop_check_option)}


@_keyword("option")
def _option(line: _Line, proxy: _Proxy, args: list[str]) -> None:
    _set_option(line, proxy, args, enabled=True)


def _set_option(line: _Line, proxy: _Proxy, args: list[str], *, enabled: bool) -> None:
    name = args[0] if args else ""
    spec = OPTIONS.get(name)
    if spec is None:
        raise _Invalid(f"unknown option '{name}'.")
    if not enabled and not spec.negatable:
        raise _Invalid(f"negation/default is not supported for option '{name}'.")
    if not proxy.caps & spec.caps:
        other = "frontend" if spec.caps == FE else "backend"
        line.warn(f"'{name}' ignored because {proxy.describe()} has no {other} capability.")
        if spec.handler in _NO_ARGUMENT_HANDLERS:
            _none(args[1:])  # HAProxy still checks there are no arguments
        return
    if spec.handler is None:
        line.warn(spec.message)
        return
    spec.handler(line, proxy, enabled, args[1:])


@_keyword("no")
def _no(line: _Line, proxy: _Proxy, args: list[str]) -> None:
    if args[:1] == ["option"]:
        _set_option(line, proxy, args[1:], enabled=False)
    elif args[:1] == ["log"]:
        if len(args) > 1:
            raise _Invalid("'no log' does not expect arguments")
        proxy.log_targets = []
    else:
        raise _Invalid("'no' applies to 'option <name>' and 'log' only")


@_keyword("default")
def _default(line: _Line, proxy: _Proxy, args: list[str]) -> None:
    if args[:1] != ["option"] or len(args) < 2:
        raise _Invalid("'default' applies to 'option <name>' only")
    spec = OPTIONS.get(args[1])
    if spec is None:
        raise _Invalid(f"unknown option '{args[1]}'.")
    if not spec.negatable:
        raise _Invalid(f"negation/default is not supported for option '{args[1]}'.")
    line.warn("'default option' (back to the defaults section's value) is not supported by fastproxy; "
              "ignored")


def _keepalive_setting(side: str, setting: str) -> ProxyHandler:
    def handler(line: _Line, proxy: _Proxy, args: list[str]) -> None:
        keepalive = proxy.client_keepalive if side == "client" else proxy.server_keepalive
        if setting == "count":
            value: float = _integer(_leading(line, args, 1, "a number of probes")[0], "a number of probes", 0)
        else:
            value = _time(_leading(line, args, 1, "a time such as 30s")[0])
        setattr(keepalive, setting, value)
    return handler


for _prefix, _side, _cap in (("clitcpka", "client", FE), ("srvtcpka", "server", BE)):
    for _suffix, _setting in (("idle", "idle"), ("intvl", "interval"), ("cnt", "count")):
        _keyword(f"{_prefix}-{_suffix}", caps=_cap)(_keepalive_setting(_side, _setting))
