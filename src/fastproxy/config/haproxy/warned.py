"""The HAProxy 2.6 keywords fastproxy still only warns about, found by reading them: each keyword of
the reader's own tables (global and proxy keywords, ``option``, ``timeout``, ``bind`` and ``server``
settings, ``tcp-request``/``tcp-response`` actions, ``tcp-check``/``http-check`` rules, sections) is
written in a small file and read with ``parse_text``; it is "warned" when that line is accepted with a
warning naming it, and its reason is the warning's.  Keywords acted on read without a warning, refused
ones fail; a keyword whose warning depends on its arguments (``balance uri``) is not listed.

``python -m fastproxy.config.haproxy.warned`` prints the list, grouped; ``--markdown`` writes the
document ``docs/WARNED_KEYWORDS.md`` holds (a test checks that it is this list).  This module reads the
tables and calls the reader; nothing imports it.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator
from typing import Optional

from ...errors import ConfigError
from .. import parse_text
from .binds import BIND_OPTIONS
from .global_ import GLOBAL_IGNORED, GLOBAL_KEYWORDS, GLOBAL_NEGATABLE
from .options import OPTIONS
from .proxy import _TCP_REQUEST_ACTIONS, _TIMEOUTS_IGNORED, FILTERS_IGNORED
from .registry import IGNORED_SECTIONS, PROXY_IGNORED, PROXY_KEYWORDS
from .servers import SERVER_IGNORED, SERVER_OPTIONS
from .tcpcheck import _TCP_CHECK_ACTIONS

__all__ = ["GROUPS", "warned_keywords"]

_PROXY = "defaults\n    mode tcp\nlisten probe\n    bind 127.0.0.1:1\n"
_BACKEND = "backend probe\n    mode tcp\n"

# The groups, in the order the document lists them.
GROUPS = ("global", "proxy", "option", "timeout", "bind", "server", "tcp-request", "tcp-response",
          "tcp-check", "http-check", "section")

# Why what a keyword ignores does not change where traffic goes: (group, keywords matching, reason),
# the first that matches; a keyword matching none is listed with its warning alone.
REASONS: tuple[tuple[str, str, str], ...] = (
    ("global", r"ssl-.*|tune\.ssl\..*|ca-base|crt-base|issuers-chain-path|maxssl.*",
     "TLS library and handshake defaults: they shape TLS handshakes, not which server a connection goes to"),
    ("global", r"lua-.*|tune\.lua\..*", "Lua: fastproxy loads no Lua, so no Lua action or service can route"),
    ("global", r"h1-.*|h2-.*|tune\.h2\..*|tune\.http\..*|httpclient\..*|tune\.comp\..*|tune\.zlib\..*|"
               r"maxcomp.*|maxzlibmem",
     "HTTP, HTTP/2, the HTTP client and compression: nothing is parsed as HTTP in TCP mode"),
    ("global", r"tune\..*|maxsessrate|max-spread-checks|close-spread-time|grace|fd-hard-limit|ulimit-n",
     "buffer, pool, scheduler and pacing tuning: performance and limits, not routing"),
    ("global", r"no.*poll|nokqueue|noevports|nogetaddrinfo|cpu-map|thread-groups?|"
               r"no-memory-trimming",
     "how the process polls, resolves and is placed on CPUs"),
    ("global", r"log-send-hostname|log-tag", "what the syslog header says, not what is logged"),
    ("global", r"(no )?(busy-polling|numa-cpu-mapping|strict-limits)",
     "how the process polls and is placed on CPUs"),
    ("global", r".*", "process management, debugging and security switches of HAProxy's own process"),
    ("proxy", r"filter (cache|compression|fcgi-app)",
     "HTTP-only filters: they need an HTTP stream (filter spoe is refused)"),
    ("proxy", r"filter (opentracing|trace)",
     "tracing: spans sent to a tracer, debugging traces; neither decides where a connection goes"),
    ("proxy", r"error.*|http-.*|redirect|compression|cookie|dynamic-cookie-key|capture|"
              r"unique-id-header|use-fcgi-app|max-keep-alive-queue|max-session-srv-conns|monitor",
     "HTTP-only: HAProxy itself ignores these in TCP mode or they need an HTTP stream"),
    ("proxy", r"bind-process|grace|log-tag|email-alert",
     "process placement (a no-op in 2.6), the stopping delay, the syslog tag and mails on state changes: "
     "none decides where a connection goes"),
    ("option", r"option (http.*|accept-invalid-.*|abortonclose|checkcache|disable-h2-upgrade|forwardfor|"
               r"originalto|h1-case-.*|idle-close-on-response|prefer-last-server)",
     "HTTP-only: HAProxy ignores them in TCP mode too"),
    ("option", r"option (dontlog-normal|log-separate-errors|logasap|contstats|socket-stats)",
     "what or when is logged and counted, not where traffic goes"),
    ("option", r"option (nolinger|tcp-smart-accept|tcp-smart-connect|independent-streams)",
     "socket tweaks at close and connect"),
    ("timeout", r".*", "HTTP timeouts: no HTTP request is parsed in TCP mode"),
    ("bind", r"expose-fd|gid|group|uid|user|mode|level|severity-output|id|name|nice|"
             r"process|thread|shards|mss|tcp-ut|tfo|proto|maxconn",
     "socket options, limits and process placement of a listener: it accepts on the same address and hands "
     "each connection to the same rules"),
    ("bind", r".*", "TLS termination settings: they shape the handshake, not where the connection goes"),
    ("server", r".*", "TLS, HTTP, connection-reuse and socket settings of a server: it is still picked and "
                      "dialed the same way"),
    ("tcp-request", r".* set-log-level", "what the log line says, not where the connection goes"),
    ("tcp-request", r".* set-nice",
     "HAProxy's own task scheduling, which fastproxy's data plane does not have"),
    ("tcp-request", r".* ot-group", "OpenTracing spans, not where the connection goes"),
    ("tcp-response", r".*", "a delay with no tcp-response rule to wait for"),
    ("tcp-check", r".*", "NOT a safe ignore: skipping the rule may change the check's verdict (a gap: "
                         "implement or refuse)"),
    ("http-check", r".*", "NOT a safe ignore: skipping the rule may change the check's verdict (a gap: "
                          "implement or refuse)"),
    ("section", r".*", "sections of features fastproxy does not have; their content is skipped"),
)


def _read(text: str, keyword: str) -> tuple[bool, Optional[str]]:
    """Whether ``text`` is accepted, and the warning of the line naming ``keyword`` (None: none)."""
    try:
        config = parse_text(text)
    except ConfigError:
        return False, None
    for warning in config.warnings:
        if warning.keyword == keyword or warning.keyword.endswith(f" {keyword}"):
            return True, warning.message
    return True, None


def _arguments(count: int) -> str:
    return " 1" * count


def _probes() -> Iterator[tuple[str, str, str, str]]:
    """(group, keyword as listed, configuration, the keyword its warning names)."""
    for name in sorted(set(GLOBAL_KEYWORDS) | GLOBAL_IGNORED):
        yield "global", name, f"global\n    {name}\n", name
        yield "global", name, f"global\n    {name} 1\n", name
    for name in sorted(GLOBAL_NEGATABLE):
        yield "global", f"no {name}", f"global\n    no {name}\n", name
    for name in sorted(set(PROXY_KEYWORDS) | PROXY_IGNORED):
        if name in ("option", "timeout", "tcp-request", "tcp-response", "tcp-check", "http-check", "bind",
                    "server", "no", "default", "filter"):
            continue  # their second words are probed below
        for arguments in ("", " 1"):
            yield "proxy", name, f"{_PROXY}    {name}{arguments}\n", name
    for name in sorted(FILTERS_IGNORED):
        yield "proxy", f"filter {name}", f"{_PROXY}    filter {name}\n", "filter"
    for name in sorted(OPTIONS):
        yield "option", f"option {name}", f"{_PROXY}    option {name}\n", f"option {name}"
    for name in sorted(_TIMEOUTS_IGNORED):
        yield "timeout", f"timeout {name}", f"{_PROXY}    timeout {name} 1s\n", f"timeout {name}"
    for name, count in sorted(BIND_OPTIONS.items()):
        yield "bind", name, f"listen probe\n    mode tcp\n    bind 127.0.0.1:1 {name}{_arguments(count)}\n", \
            f"bind {name}"
    servers = {name: count for name, (count, _) in SERVER_OPTIONS.items()} | SERVER_IGNORED
    for name, count in sorted(servers.items()):
        yield "server", name, f"{_BACKEND}    server s 127.0.0.1:1 {name}{_arguments(count)}\n", \
            f"server {name}"
    for action in sorted(_TCP_REQUEST_ACTIONS):
        for phase in ("connection", "session", "content"):
            line = f"tcp-request {phase} {action}"
            for arguments in ("", " 1", " int(1)"):
                yield "tcp-request", f"tcp-request {phase} {action}", f"{_PROXY}    {line}{arguments}\n", \
                    f"tcp-request {phase}"
    yield "tcp-response", "tcp-response inspect-delay", f"{_BACKEND}    tcp-response inspect-delay 1s\n", \
        "tcp-response inspect-delay"
    check_variables = ["set-var(check.x)", "set-var-fmt(check.x)", "unset-var(check.x)"]
    for action in sorted(_TCP_CHECK_ACTIONS) + check_variables:
        for arguments in ("", " 1", " int(1)", " string 1", " 1 comment 1"):
            yield "tcp-check", f"tcp-check {action}", \
                f"{_BACKEND}    option tcp-check\n    tcp-check {action}{arguments}\n", f"tcp-check {action}"
    for action in ["send-state", "disable-on-404", "connect", "send", "expect", "comment"] + check_variables:
        for arguments in ("", " 1", " int(1)", " status 200"):
            yield "http-check", f"http-check {action}", \
                f"{_BACKEND}    option httpchk\n    http-check {action}{arguments}\n", f"http-check {action}"
    for name in sorted(IGNORED_SECTIONS):
        yield "section", name, f"{name} probe\n", name


def warned_keywords() -> dict[str, dict[str, str]]:
    """By group, each keyword fastproxy only warns about and its warning: the first of its probes
    (fewest arguments first) that the reader accepts decides."""
    found: dict[str, dict[str, str]] = {group: {} for group in GROUPS}
    decided: set[tuple[str, str]] = set()
    for group, listed, text, keyword in _probes():
        if (group, listed) in decided:
            continue
        accepted, message = _read(text, keyword)
        if accepted:
            decided.add((group, listed))
            if message is not None:
                found[group][listed] = message
    return found


def reason(group: str, keyword: str) -> Optional[str]:
    """Why ignoring the keyword does not change where traffic goes (``REASONS``), if written."""
    for where, pattern, text in REASONS:
        if where == group and re.fullmatch(pattern, keyword):
            return text
    return None


def markdown(found: dict[str, dict[str, str]]) -> str:
    lines = ["# HAProxy 2.6 keywords fastproxy only warns about", "",
             "Generated by `python -m fastproxy.config.haproxy.warned --markdown` from the reader's own "
             "tables (`tests/unit/test_warned_keywords.py` checks it is current). Each keyword below is "
             "accepted with a warning and otherwise ignored; every other keyword HAProxy 2.6 knows is acted "
             "on or refused with a reason. Each line gives why ignoring them does not change where traffic "
             "goes; the lines marked NOT are gaps, where it may.", ""]
    for group, keywords in found.items():
        if not keywords:
            continue
        lines += [f"## {group} ({len(keywords)})", ""]
        by_reason: dict[str, list[str]] = {}
        for keyword, message in sorted(keywords.items()):
            by_reason.setdefault(reason(group, keyword) or f"the reader says: {message}", []).append(keyword)
        for why, names in by_reason.items():
            lines.append(f"- {', '.join(f'`{name}`' for name in names)}: {why}.")
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    found = warned_keywords()
    if "--markdown" in argv:
        sys.stdout.write(markdown(found))
        return 0
    for group, keywords in found.items():
        for keyword, message in sorted(keywords.items()):
            print(f"{group}\t{keyword}\t{message}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
