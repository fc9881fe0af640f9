"""Every keyword HAProxy 2.6 knows is known to the reader: the real binary lists its registered
keywords (``haproxy -dKall``), its configuration manual lists the others (the global keywords of
section 3 and the proxy keyword matrix of section 4.1, keywords HAProxy parses without registering
them), and the binary itself says which of the documented ones it was built with.  Each must be in one
of the reader's tables: acted on, warned about, or refused with a reason, never "unknown keyword".
"""

from __future__ import annotations

import gzip
import re
import shutil
import subprocess
from functools import cache
from pathlib import Path

import pytest

from fastproxy.config import parse_text
from fastproxy.config.haproxy.binds import BIND_OPTIONS
from fastproxy.config.haproxy.global_ import GLOBAL_IGNORED, GLOBAL_KEYWORDS
from fastproxy.config.haproxy.options import OPTIONS
from fastproxy.config.haproxy.proxy import _known_tcp_request_action
from fastproxy.config.haproxy.registry import PROXY_IGNORED, PROXY_KEYWORDS
from fastproxy.config.haproxy.servers import SERVER_IGNORED, SERVER_OPTIONS
from fastproxy.config.haproxy.tls import SHARED as TLS_SHARED

HAPROXY = shutil.which("haproxy")
MANUAL = Path("/usr/share/doc/haproxy/configuration.txt.gz")  # shipped with the haproxy package

pytestmark = pytest.mark.skipif(HAPROXY is None or not MANUAL.exists(),
                                reason="needs the haproxy binary and its configuration manual")


@cache
def _registered() -> dict[str, list[str]]:
    """``haproxy -dKall``'s configuration keywords, by section (``global``, ``listen``...)."""
    output = subprocess.run([HAPROXY, "-dKall", "-q", "-c", "-f", "/dev/null"], capture_output=True,
                            text=True, timeout=30, check=False).stdout
    text = output.split("# List of registered configuration keywords:", 1)[1].split("\n# ", 1)[0]
    sections: dict[str, list[str]] = {}
    current: list[str] = []
    for line in text.splitlines():
        if line and not line.startswith("\t"):
            current = sections.setdefault(line.strip(), [])
        elif line.strip():
            current.append(line.strip())
    return sections


@cache
def _manual() -> str:
    return gzip.decompress(MANUAL.read_bytes()).decode()


def _documented_global() -> set[str]:
    section = _manual().split("\n3. Global parameters\n", 1)[1].split("\n3.1. ", 1)[0]
    return set(re.findall(r"^   - ([a-z0-9][^ \n]*)", section, re.M))


def _documented_proxy() -> set[str]:
    """The rows of the proxy keyword matrix, as written (``option httpchk``, ``timeout client``...)."""
    section = _manual().split("\n4.1. Proxy keywords matrix\n", 1)[1].split("\n4.2. ", 1)[0]
    table = section.split("-+---------\n", 1)[1]
    rows = re.findall(r"^([a-z][a-z0-9_.-]*(?: [a-z][a-z0-9_.-]*)*)(?: \(\*\)| \(deprecated\))* {2,}[X-]",
                      table, re.M)
    return set(rows)


def _unknown_to_haproxy(section: str, lines: list[str], pattern: str) -> set[str]:
    """The lines the binary calls unknown (``pattern`` formats the message with the line's keyword).

    HAProxy stops after 50 fatal errors, so the lines go in small files."""
    unknown: set[str] = set()
    for start in range(0, len(lines), 20):
        chunk = lines[start:start + 20]
        text = "# keywords\n" + section + "\n" + "".join(f"    {line}\n" for line in chunk)
        result = subprocess.run([HAPROXY, "-c", "-f", "/dev/stdin"], input=text, capture_output=True,
                                text=True, timeout=30, check=False)
        unknown |= {line for line in chunk if pattern.format(line.split()[-1]) in result.stderr}
    return unknown


def test_haproxy_global_keywords_are_all_in_the_global_table():
    candidates = _documented_global() | {word.split()[0] for word in _registered()["global"]}
    known = candidates - _unknown_to_haproxy("global", sorted(candidates),
                                             "unknown keyword '{}' in 'global' section")
    assert len(known) > 140
    ours = set(GLOBAL_KEYWORDS) | GLOBAL_IGNORED
    assert sorted(known - ours) == []


def test_haproxy_proxy_keywords_are_all_in_the_proxy_table():
    rows = _documented_proxy()
    registered = {line.split()[0] for line in _registered()["listen"]}
    candidates = {row.split()[0] for row in rows} | registered
    known = candidates - _unknown_to_haproxy("listen x", sorted(candidates),
                                             "unknown keyword '{}' in 'listen' section")
    assert len(known) > 70
    ours = set(PROXY_KEYWORDS) | PROXY_IGNORED
    assert sorted(known - ours) == []


def test_haproxy_options_are_all_in_the_option_table():
    documented = {row.split()[1] for row in _documented_proxy() if row.startswith("option ")}
    registered = {line.split()[1] for line in _registered()["listen"] if line.startswith("option ")}
    candidates = documented | registered
    lines = sorted(f"option {name}" for name in candidates)
    known = {line.split()[1] for line in set(lines) - _unknown_to_haproxy("listen x", lines,
                                                                          "unknown option '{}'")}
    assert len(known) > 45
    assert sorted(known - set(OPTIONS)) == []


def test_haproxy_bind_and_server_settings_are_all_known_with_their_argument_counts():
    listen = _registered()["listen"]
    binds = {m[1]: int(m[2] or 0) for line in listen
             if (m := re.match(r"bind <addr> (\S+)(?: \+(\d+))?$", line))}
    servers = {m[1]: int(m[2] or 0) for line in listen
               if (m := re.match(r"server <name> <addr> (\S+)(?: \+(\d+))?$", line))}
    assert len(binds) > 25 and len(servers) > 90
    assert {name: count for name, count in binds.items() if BIND_OPTIONS.get(name) != count} == {}
    ours = {name: count for name, (count, _) in SERVER_OPTIONS.items()} | SERVER_IGNORED | TLS_SHARED
    # HAProxy lists 'usesrc' without its argument: it only follows 'source', whose parser reads it.
    assert {name: count for name, count in servers.items() if ours.get(name) != count} == {"usesrc": 0}


def test_haproxy_tcp_request_actions_are_all_known():
    actions = {line.split()[2].rstrip("*") for line in _registered()["listen"]
               if line.startswith("tcp-request ")}
    assert len(actions) > 20
    assert sorted(action for action in actions if action not in ("accept", "reject", "silent-drop")
                  and not _known_tcp_request_action(action)) == []


def test_global_keywords_haproxy_takes_with_no_are_read_with_no():
    config = parse_text("global\n no strict-limits\n no busy-polling\n no set-dumpable\n"
                        " no insecure-fork-wanted\n no numa-cpu-mapping\n httpclient.resolvers.prefer ipv4\n")
    assert [w.keyword for w in config.warnings] == ["strict-limits", "busy-polling", "set-dumpable",
                                                    "numa-cpu-mapping", "httpclient.resolvers.prefer"]
    assert config.global_.insecure_fork_wanted is False  # acted on: external checks may not fork
    assert parse_text("global\n insecure-fork-wanted\n").global_.insecure_fork_wanted is True
    with pytest.raises(Exception, match="negation/default currently supported only for"):
        parse_text("global\n no maxconn 10\n")
