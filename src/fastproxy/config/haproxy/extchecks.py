"""External checks (HAProxy's extcheck.c): ``option external-check``, ``external-check command <cmd>``
and ``external-check path <path>``, and the post-parse checks HAProxy 2.6 makes of them (the global
``external-check`` it requires, the command it requires, a command without ``/`` needing a path, the
warning without ``insecure-fork-wanted``).  Running the command is ``fastproxy.extcheck``'s job.
"""

from __future__ import annotations

from .lexer import _Invalid
from .registry import BE, FE, ReaderView, _Line, _Proxy, _keyword, _post_check
from .values import _none


def external_check_option(line: _Line, proxy: _Proxy, enabled: bool, args: list[str]) -> None:
    """``option external-check``: the last check option of the proxy, as any other."""
    _none(args)
    proxy.tcp_check, proxy.check_kind = True, "external"
    proxy.external_location = line.location


@_keyword("external-check")
def _external_check(line: _Line, proxy: _Proxy, args: list[str]) -> None:
    """``external-check command <cmd>`` / ``external-check path <path>`` (HAProxy's messages)."""
    if not args:
        raise _Invalid("missing argument after 'external-check'.")
    if args[0] not in ("command", "path"):
        raise _Invalid(f"'external-check' only supports 'command' and 'path'. but got '{args[0]}'.")
    if len(args) > 2:
        raise _Invalid(f"'external-check' cannot handle unexpected argument '{args[2]}'.")
    if len(args) < 2 or not args[1]:
        raise _Invalid(f"missing argument after '{args[0]}'.")
    if args[0] == "command":
        proxy.external_command = args[1]
    else:
        proxy.external_path = args[1]


def _check_external(reader: ReaderView, proxy: _Proxy) -> None:
    where = proxy.external_location or proxy.location
    if proxy.external_command is not None and not (proxy.caps & BE and proxy.tcp_check
                                                    and proxy.check_kind == "external"):
        reader.warn(proxy.location, "external-check", f"'external-check command' will be ignored for "
                    f"{proxy.describe()} (requires 'option external-check').")
    if proxy.external_command is not None and not proxy.external_command.startswith("/") \
            and proxy.external_path is None:
        reader.error(proxy.location, "external-check", f"Proxy '{proxy.name}': 'external-check command' does "
                     "not have a leading '/' and 'external-check path' is not set.")
    if not (proxy.caps & BE and proxy.tcp_check and proxy.check_kind == "external"):
        return
    if not reader.global_.external_check:
        reader.error(where, "option external-check", f"Proxy '{proxy.name}' : 'option external-check' unable "
                     "to find required 'global.external-check'.")
    if proxy.external_command is None:
        reader.error(where, "option external-check", f"Proxy '{proxy.name}' : 'option external-check' unable "
                     "to find required 'external-check command'.")
    if not reader.global_.insecure_fork_wanted:
        reader.warn(where, "option external-check", f"Proxy '{proxy.name}' : 'insecure-fork-wanted' not "
                    "enabled in the global section, 'option external-check' will likely fail.")


@_post_check(BE)
def _backend_external_check(reader: ReaderView, proxy: _Proxy) -> None:
    _check_external(reader, proxy)


@_post_check(FE)
def _frontend_external_check(reader: ReaderView, proxy: _Proxy) -> None:
    if not proxy.caps & BE:  # a listen section is checked once, as a backend
        _check_external(reader, proxy)
