"""The HAProxy configuration reader, as a specification: what each keyword turns into in the model,
which lines are warnings and which are errors (with ``file:line`` and keyword), and that the reader
agrees with the real ``haproxy -c`` (2.6) on the corpus in ``tests/configs``, except where noted in
``HAPROXY_DIFFERS``.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import textwrap
from pathlib import Path

import pytest

from fastproxy.config import load, parse_size, parse_text, parse_time
from fastproxy.config.haproxy import split_words
from fastproxy.config.model import Location, Sample
from fastproxy.errors import ConfigError

from ..support import assert_verdicts, free_port

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
VALID = sorted((CONFIGS / "valid").glob("*.cfg"))
BROKEN = sorted((CONFIGS / "broken").glob("*.cfg"))
HAPROXY = shutil.which("haproxy")

# Where fastproxy deliberately differs from `haproxy -c` on the corpus: file -> {line: why}.
HAPROXY_DIFFERS: dict[str, dict[int, str]] = {
    "http_checks.cfg": {32: "log-format check requests would send what fastproxy cannot evaluate",
                        35: "fastproxy's checks speak HTTP/1.x only"},
    "maglev.cfg": {11: "'hash-type maglev' is fastproxy's extension"},
    "routing_keywords.cfg": {
        10: "switch-mode http needs an HTTP proxy; fastproxy is layer 4 only",
        17: "usesrc: transparent proxying (foreign source addresses) is not done",
        18: "tcp-response content rules: the pump relays what servers send without inspecting it",
        25: "resolvers: fastproxy resolves names once at start (HAProxy fails later: no such section)",
    },
    "mode_http.cfg": {7: "HAProxy proxies HTTP; fastproxy is layer 4 only",
                      11: "HAProxy proxies HTTP; fastproxy is layer 4 only"},
    "sections.cfg": {23: "HAProxy stops reading at the fatal 'from nosuch' of line 22; we read on"},
    "stricter.cfg": {
        5: "HAProxy reads 'maxconn 1k' with atol() as 1",
        6: "HAProxy reads 'maxpipes x' as 0",
        13: "'transparent' binds are refused: fastproxy cannot bind foreign addresses",
        14: "HAProxy reads 'backlog lots' as 0",
        15: "UNIX sockets: fastproxy listens on TCP only",
        16: "HAProxy reads 'maxconn many' as 0",
        17: "HAProxy resolves host names in ACLs; fastproxy's ACLs are sans-IO",
        18: "dynamic use_backend needs sample expressions fastproxy does not evaluate",
        19: "a rule fastproxy cannot evaluate (req.hdr) would route differently if ignored",
        23: "HAProxy reads 'retries x' as 0",
        24: "HAProxy reads 'fullconn -5' with atol()",
        25: "HAProxy reads 'weight x' as 0",
        26: "port offsets are not supported by the engine",
        27: "HAProxy reads 'maxconn lots' as 0",
        28: "HAProxy reads 'port x' as 0",
    },
}
# Errors HAProxy reports after parsing, without a line number, or not at all because an earlier
# error of the file was fatal: we report them with their line.
HAPROXY_UNNUMBERED: dict[str, set[int]] = {
    "balance.cfg": {11},  # "backend 'be' [balance.cfg:6]: failed to parse 'balance hash' expression"
    "references.cfg": {9, 10, 11},  # "Proxy 'fe': unable to find required use_backend: 'missing'"
    "servers.cfg": {19, 22, 28},  # checked after parsing, which stops at the fatal errors above
    "routing_keywords.cfg": {21, 22},  # track is checked after parsing, which stops at the errors above
}

PROLOGUE = """\
defaults
    mode tcp
    timeout connect 5s
    timeout client 30s
    timeout server 30s
"""


def parse(text: str, **kwargs):
    return parse_text(textwrap.dedent(text), filename="t.cfg", **kwargs)


def errors_of(text: str, **kwargs) -> list[str]:
    """Every error of a configuration, each as ``line: 'keyword': message``."""
    with pytest.raises(ConfigError) as info:
        parse_text(textwrap.dedent(text), filename="t.cfg", **kwargs)
    return [str(e).removeprefix("t.cfg:") for e in info.value.errors]


def warnings_of(config) -> list[str]:
    return [f"{w.location.line}: '{w.keyword}': {w.message}" for w in config.warnings]


def load_corpus(name: str):
    return load([str(CONFIGS / "valid" / name)])


# --- words -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("line, words", [
    ("bind :80", ["bind", ":80"]),
    ("  \tbind\t:80  # a comment", ["bind", ":80"]),
    ("acl a b\\ c", ["acl", "a", "b c"]),
    ("x 'a b' \"c d\"", ["x", "a b", "c d"]),
    ("x a\"b c\"d'e f'g", ["x", "ab cde fg"]),
    ("x 'no\\x41 ${HOME} escapes'", ["x", "no\\x41 ${HOME} escapes"]),
    ("x \"\\x41\\t\\\"\\\\\"", ["x", "A\t\"\\"]),
    ("x a\\r\\nb", ["x", "a\r\nb"]),
    ("x a\\qb c\\", ["x", "a\\qb", "c\\"]),
    ("x a\\#b #c", ["x", "a#b"]),
    ("x '#' \"#\"", ["x", "#", "#"]),
    ("x \"it's\" 'say \"hi\"'", ["x", "it's", "say \"hi\""]),
    ("x \"$FOO.$FOO_BAR\"", ["x", "foo."]),
    ("x \"${FOO}x\" ${FOO} $FOO", ["x", "foox", "${FOO}", "$FOO"]),  # unquoted: literal in HAProxy 2.6
    ("x \"\\$FOO\"", ["x", "$FOO"]),
    ("x \"${UNSET}\" y", ["x"]),  # an empty word ends the arguments
    ("x \"a ${LIST[*]} b\"", ["x", "a one", "two", "three b"]),
    ("", []),
    ("   # only a comment", []),
])
def test_words_are_split_as_haproxy_does(line, words):
    assert split_words(line, {"FOO": "foo", "LIST": "one two  three"}) == words


@pytest.mark.parametrize("line, message", [
    ("x \"open", "unmatched quote at column 3"),
    ("x 'open", "unmatched quote at column 3"),
    ("x a\\xZ1", "truncated or invalid hexadecimal sequence"),
    ("x \"${9A}\"", "forbidden first char in environment variable name"),
    ("x \"$\"", "forbidden first char in environment variable name"),
    ("x \"${A\"", "unmatched brace in environment variable name"),
    ("x \"${A:-default}\"", "unmatched brace"),  # no defaults syntax in HAProxy 2.6
    ("x" + " a" * 64, "too many words"),
])
def test_malformed_lines_are_rejected(line, message):
    with pytest.raises(Exception, match=re.escape(message)):
        split_words(line, {})


# --- values ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("text, seconds", [
    ("1500", 1.5), ("0", 0.0), ("1us", 0.001), ("1500us", 0.002), ("250ms", 0.25), ("2s", 2.0),
    ("3m", 180.0), ("1h", 3600.0), ("1d", 86400.0), ("24d", 24 * 86400.0),
])
def test_times_take_haproxy_units_and_default_to_milliseconds(text, seconds):
    assert parse_time(text) == seconds


@pytest.mark.parametrize("text", ["", "s", "5x", "1.5s", "-1", "5 s", "25d", "5S", "٣s"])
def test_malformed_times_are_rejected(text):
    with pytest.raises(ValueError):
        parse_time(text)


@pytest.mark.parametrize("text, size", [("16384", 16384), ("16k", 16384), ("16K", 16384),
                                        ("1m", 1 << 20), ("2g", 2 << 30), ("0", 0)])
def test_sizes_take_k_m_g_units(text, size):
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["", "k", "16kb", "1.5k", "-1", "16t"])
def test_malformed_sizes_are_rejected(text):
    with pytest.raises(ValueError):
        parse_size(text)


# --- the essentials ----------------------------------------------------------------------------------

def test_essentials_corpus_file_loads_with_effective_values():
    config = load_corpus("essentials.cfg")
    g = config.global_
    assert (g.maxconn, g.nbthread, g.bufsize, g.pipesize, g.hard_stop_after) == (
        20000, 2, 32768, 1 << 20, 30.0)
    assert list(config.frontends) == ["www", "db"]
    assert list(config.backends) == ["web", "db"]
    www = config.frontends["www"]
    assert [(b.host, b.port) for b in www.binds] == [
        ("0.0.0.0", 8080), ("127.0.0.1", 8443), ("127.0.0.2", 9000), ("127.0.0.2", 9001), ("127.0.0.2", 9002)]
    assert www.default_backend == "web"
    assert www.mode == "tcp"
    assert www.timeouts.client == 60.0 and www.timeouts.server is None
    web = config.backends["web"]
    assert web.balance.algorithm == "leastconn"
    assert [(s.name, s.host, s.port, s.weight) for s in web.servers] == [
        ("web1", "10.0.0.1", 80, 1), ("web2", "10.0.0.2", 8080, 20)]
    assert (web.timeouts.connect, web.timeouts.server, web.timeouts.client) == (5.0, 120.0, None)
    assert config.warnings == []


def test_listen_is_a_frontend_and_a_backend_whose_default_backend_is_itself():
    config = load_corpus("essentials.cfg")
    db_fe, db_be = config.frontends["db"], config.backends["db"]
    assert db_fe.default_backend == "db"
    assert db_fe.timeouts.client == 600.0
    assert db_be.timeouts.server == 120.0
    assert db_be.balance.algorithm == "roundrobin"  # from defaults
    assert [(s.host, s.port) for s in db_be.servers] == [("10.0.1.1", 5432), ("10.0.1.2", 0)]


def test_parse_text_reads_a_string_as_load_reads_the_file():
    path = CONFIGS / "valid" / "essentials.cfg"
    assert parse_text(path.read_text(), filename=str(path)) == load([str(path)])


def test_locations_name_the_file_and_line():
    config = parse_text((CONFIGS / "valid" / "essentials.cfg").read_text(), filename="x.cfg")
    assert config.frontends["www"].location == Location("x.cfg", 16)
    assert config.backends["web"].servers[1].location == Location("x.cfg", 24)
    assert config.frontends["www"].binds[0].location == Location("x.cfg", 17)


# Lines whose expansion is compared with what haproxy's own `.notice` prints for them (one word each).
_EXPANSIONS = [
    '"a=${UNSET-def}"', '"e=<${EMPTY-def}>"', '"s=${SET-def}"', '"u=${UNSET-}"', '"b=${UNSET-a b}"',
    '"l=${UNSET-$SET}"', '"n=${UNSET-${SET}}"', '"c=${UNSET-a}b}"', '"r=$SET-x"', '"d=${SET}${SET}"',
    '"f=${.FILE} l=${.LINE}"', '"v=${UNSET[*]-d}"', "'q=${SET-x}'", '"t=$SET.$SET_X"', '${SET}',
    '"m=${.LINE-x}"',
]
_ENVIRONMENT = {"SET": "hello", "EMPTY": "", "LIST": "p q"}


@pytest.mark.skipif(HAPROXY is None, reason="haproxy is not installed")
def test_environment_variables_expand_as_haproxy_expands_them(tmp_path):
    # HAProxy 2.6.12 misreads ${SET-default} on a file's first line only (a stale buffer): comment first.
    text = "# expansions\n" + "".join(f".notice {line}\n" for line in _EXPANSIONS)
    (tmp_path / "x.cfg").write_text(text)
    result = subprocess.run([HAPROXY, "-c", "-f", "x.cfg"], cwd=tmp_path, capture_output=True, text=True,
                            timeout=30, check=False, env={**_ENVIRONMENT, "PATH": os.environ["PATH"]})
    theirs = dict(re.findall(r"\[x\.cfg:(\d+)\]: '(.*)'\.$", result.stderr + result.stdout, re.M))
    for number, line in enumerate(_EXPANSIONS, start=2):
        words = split_words(f".notice {line}", _ENVIRONMENT, {".FILE": "x.cfg", ".LINE": str(number)})
        assert words[1:] == [theirs[str(number)]], line


_CONDITIONS = [
    'defined(SET) && defined(NOPE)', 'defined(SET) || defined(NOPE)', 'streq(a b,a b)',
    'streq("a b","a b")', 'streq("$LIST","p q")', 'streq(ab , ab)', 'streq( ab,ab)', '"1"', '0x10',
    '010', '00', '!!1', '! 0', "streq('a(b','a(b')", 'strneq("${SET-z}" , "q")', '(1 || 0) && !0',
    '1 && (0 || 0)', 'version_atleast(2.6.0)', 'version_before(2.7)', 'version_atleast(2.7-dev0)', '',
    'defined(EMPTY)', 'streq("",)',
    # Numbers of any length (strtol saturates, int() would refuse them), the deepest nesting accepted.
    "9" * 5000, "0" * 5000, "0x" + "0" * 4500 + "1", "-" + "9" * 5000, "version_atleast(" + "9" * 5000 + ")",
    "version_before(2." + "9" * 5000 + ")", "(" * 340 + "1" + ")" * 340, "&&".join(["1"] * 1022),
    "||".join(["0"] * 1022),
]


@pytest.mark.skipif(HAPROXY is None, reason="haproxy is not installed")
def test_conditions_are_evaluated_as_haproxy_evaluates_them(tmp_path):
    text = "# conditions\n" + "".join(f".if {condition}\n.notice \"{index} true\"\n.else\n"
                                       f".notice \"{index} false\"\n.endif\n"
                                       for index, condition in enumerate(_CONDITIONS))
    (tmp_path / "x.cfg").write_text(text)
    result = subprocess.run([HAPROXY, "-c", "-f", "x.cfg"], cwd=tmp_path, capture_output=True, text=True,
                            timeout=30, check=False, env={**_ENVIRONMENT, "PATH": os.environ["PATH"]})
    theirs = dict(re.findall(r"'(\d+) (true|false)'", result.stderr + result.stdout))
    assert len(theirs) == len(_CONDITIONS), result.stderr
    ours = parse_text(text, environ=_ENVIRONMENT)
    assert [f"{w.message}" for w in ours.warnings if w.keyword == ".notice"] == []  # notices are not warnings
    from fastproxy.config.haproxy.conditions import _evaluate_condition
    for index, condition in enumerate(_CONDITIONS):
        words = split_words(f".if {condition}", _ENVIRONMENT)
        chosen = _evaluate_condition(" ".join(words[1:]), _ENVIRONMENT)
        assert ("true" if chosen else "false") == theirs[str(index)], condition


@pytest.mark.parametrize("condition, message", [
    ("streq(a,b,c)", "expected ')' before ',c)' in argument 2 of predicate 'streq'"),
    ("streq(a)", "missing arguments (got 1/2), type 'string' expected in argument 2 of predicate 'streq'"),
    ("p q", "unparsable conditional expression 'p q'"),
    ("1 x", "unexpected character 'x' at the end of conditional expression '1 x'"),
    ("(1", "expected ')' after conditional expression"),
    # Past HAProxy's MAX_CFG_RECURSION (the deepest it accepts are in _CONDITIONS, compared with it).
    ("(" * 341 + "1" + ")" * 341, "unparsable conditional sub-expression '1)))"),
    ("&&".join(["1"] * 1100), "unparsable conditional expression '1&&1"),
    ("||".join(["0"] * 1100), "unparsable conditional expression '0||0"),
], ids=lambda value: value[:30])
def test_malformed_conditions_are_errors_worded_as_haproxy_words_them(condition, message):
    assert any(message in error for error in errors_of(f".if {condition}\n.endif\n"))


def test_environment_variables_expand_in_unquoted_addresses_as_in_haproxy():
    config = parse(PROLOGUE + """
        listen app
            bind ${ADDR}:${PORT}
            bind $ADDR:8081,${NOPE}:8082
            server s1 ${ADDR}:${SPORT} check addr ${CHECK}
            server s2 ${SERVER}
    """, environ={"ADDR": "127.0.0.2", "PORT": "8080", "SPORT": "9000", "CHECK": "127.0.0.9",
                  "SERVER": "127.0.0.3:9001"})
    binds = [(b.host, b.port) for b in config.frontends["app"].binds]
    assert binds == [("127.0.0.2", 8080), ("127.0.0.2", 8081), ("0.0.0.0", 8082)]
    s1, s2 = config.backends["app"].servers
    assert (s1.host, s1.port, s1.check_addr) == ("127.0.0.2", 9000, "127.0.0.9")
    assert (s2.host, s2.port) == ("127.0.0.3", 9001)
    # No defaults in addresses: "-8083}" stays, and is a port offset to HAProxy.
    assert errors_of(PROLOGUE + "listen a\n bind 127.0.0.1:${P-8083}\n") == [
        "7: 'bind': port offset not permitted here in '127.0.0.1:-8083}'"]


def test_pseudo_variables_name_the_file_line_and_section():
    config = parse(PROLOGUE + 'backend be\n description "${.FILE}:${.LINE} in ${.SECTION}"\n')
    assert config.backends["be"].options["description"] == "t.cfg:7 in be"


def test_a_file_whose_last_line_has_no_line_feed_is_refused_as_haproxy_refuses_it(tmp_path):
    path = tmp_path / "cut.cfg"
    path.write_text(PROLOGUE + "listen a\n  bind 127.0.0.1:8080\n  server s 127.0.0.1:9999")
    with pytest.raises(ConfigError) as info:
        load([str(path)])
    assert [str(e).replace(str(path), "cut.cfg") for e in info.value.errors] == [
        "cut.cfg:8: Missing LF on last line, file might have been truncated at position 26."]
    path.write_text(PROLOGUE + "listen a\n  bind 127.0.0.1:8080\n  server s 127.0.0.1:9999\n")
    assert load([str(path)]).backends["a"].servers[0].port == 9999


# --- the corpus --------------------------------------------------------------------------------------

@pytest.mark.parametrize("path", VALID, ids=lambda p: p.name)
def test_valid_corpus_file_loads(path):
    config = load([str(path)])
    assert config.frontends or config.backends


@pytest.mark.parametrize("path", BROKEN, ids=lambda p: p.name)
def test_broken_corpus_file_reports_every_error_with_its_line_and_keyword(path):
    expected = path.with_suffix(".expected").read_text().splitlines()
    with pytest.raises(ConfigError) as info:
        load([str(path)])
    reported = [str(e).replace(str(path), path.name).removeprefix(f"{path.name}:") for e in info.value.errors]
    assert reported == expected
    assert all(e.file == str(path) and e.line for e in info.value.errors)
    printed = str(info.value).replace(str(path), path.name).splitlines()
    assert printed == [f"{path.name}:{line}" for line in expected]


def _haproxy_check(path: Path) -> tuple[int, set[int]]:
    """Run ``haproxy -c`` on a corpus file: its exit status and the lines of its ALERTs."""
    result = subprocess.run([HAPROXY, "-c", "-f", path.name], cwd=path.parent, capture_output=True,
                            text=True, timeout=30, check=False)
    lines = set()
    for message in (result.stdout + result.stderr).splitlines():
        match = re.search(rf"\[{re.escape(path.name)}:(\d+)\]", message)
        if "[ALERT]" in message and match:
            lines.add(int(match[1]))
    return result.returncode, lines


@pytest.mark.skipif(HAPROXY is None, reason="haproxy is not installed")
@pytest.mark.parametrize("path", VALID + BROKEN, ids=lambda p: p.name)
def test_corpus_file_is_judged_as_haproxy_judges_it(path):
    try:
        load([str(path)])
        ours: set[int] = set()
    except ConfigError as exc:
        ours = {e.line for e in exc.errors}
    status, theirs = _haproxy_check(path)
    documented = set(HAPROXY_DIFFERS.get(path.name, {})) | HAPROXY_UNNUMBERED.get(path.name, set())
    undocumented = (ours ^ theirs) - documented
    assert not undocumented, f"undocumented differences with haproxy -c on lines {sorted(undocumented)}"
    if not theirs and path.name not in HAPROXY_UNNUMBERED:
        assert status in (0, 2)  # valid, or valid but "no listener"


def test_haproxy_differences_are_still_differences():
    """A line listed in HAPROXY_DIFFERS that we no longer flag must leave the list."""
    for name, lines in HAPROXY_DIFFERS.items():
        path = CONFIGS / ("broken" if (CONFIGS / "broken" / name).exists() else "valid") / name
        try:
            load([str(path)])
            ours: set[int] = set()
        except ConfigError as exc:
            ours = {e.line for e in exc.errors}
        if path.parent.name == "broken":
            assert set(lines) <= ours, name


# --- global ------------------------------------------------------------------------------------------

def test_global_keywords_are_recorded():
    config = load_corpus("global_keywords.cfg")
    g = config.global_
    assert (g.maxconn, g.maxconnrate, g.nbthread, g.bufsize, g.pipesize, g.maxpipes) == (
        50000, 1000, 4, 16384, 262144, 4096)
    assert g.splice is False
    assert g.pidfile == "/run/fastproxy.pid"
    assert [(t.address, t.facility, t.level, t.format) for t in g.log_targets] == [
        ("127.0.0.1:514", 16, 6, "rfc3164"), ("stdout", 17, 7, "raw")]
    assert [(s.path, s.mode, s.level) for s in g.stats_sockets] == [("/run/haproxy.sock", 0o660, "admin")]
    assert g.stats_timeout == 120.0
    assert g.daemon is True
    assert (g.user, g.group, g.chroot, g.hard_stop_after) == ("nobody", "nogroup", "/var/empty", 60.0)
    assert g.spread_checks == 5


def test_daemon_is_ignored_in_the_foreground_with_a_warning():
    config = load_corpus("global_keywords.cfg")
    assert "15: 'daemon': ignored: fastproxy runs in the foreground (use a service manager to " \
           "daemonize)" in warnings_of(config)


def test_global_keywords_haproxy_knows_are_warnings():
    config = load_corpus("global_keywords.cfg")
    assert [w for w in warnings_of(config) if "spread-checks" in w or "tune.maxaccept" in w] == [
        "22: 'tune.maxaccept': not supported by fastproxy; ignored",
    ]


def test_global_defaults_when_nothing_is_set():
    g = parse(PROLOGUE).global_
    assert (g.maxconn, g.nbthread, g.bufsize, g.pipesize, g.splice, g.hard_stop_after) == (
        None, None, 16384, None, True, None)  # nbthread None: one pump thread per CPU, as HAProxy 2.6


def test_several_global_sections_add_up():
    g = parse("global\n maxconn 10\nglobal\n nbthread 3\n").global_
    assert (g.maxconn, g.nbthread) == (10, 3)


def test_global_uid_and_gid_are_read():
    g = parse("global\n uid 100\n gid 200\n").global_
    assert (g.uid, g.gid) == (100, 200)


def test_setenv_presetenv_unsetenv_and_resetenv_change_later_expansions():
    config = parse("""
        global
            setenv PORT 9001
            presetenv PORT 9999
            presetenv HOST 127.0.0.1
            setenv GONE x
            unsetenv GONE
        frontend fe
            bind "${HOST}:${PORT}"
            description "[${GONE}]"
    """, environ={})
    assert [(b.host, b.port) for b in config.frontends["fe"].binds] == [("127.0.0.1", 9001)]
    assert config.frontends["fe"].options["description"] == "[]"
    config = parse("""
        global
            resetenv KEEP
        frontend fe
            bind "127.0.0.1:${KEEP}${DROP}"
    """, environ={"KEEP": "1", "DROP": "2"})
    assert config.frontends["fe"].binds[0].port == 1


def test_environment_comes_from_os_environ_by_default(monkeypatch):
    monkeypatch.setenv("FASTPROXY_TEST_PORT", "9123")
    config = parse('frontend fe\n bind "127.0.0.1:${FASTPROXY_TEST_PORT}"\n')
    assert config.frontends["fe"].binds[0].port == 9123


# --- defaults ----------------------------------------------------------------------------------------

def test_defaults_apply_to_the_proxies_that_follow_them():
    config = load_corpus("defaults_inheritance.cfg")
    fe, be = config.frontends["fe_base"], config.backends["be_base"]
    assert (fe.timeouts.client, fe.maxconn) == (40.0, 300)
    assert (be.timeouts.connect, be.timeouts.server, be.retries, be.balance.algorithm) == (
        4.0, 40.0, 5, "leastconn")
    assert [(s.inter, s.rise, s.fall, s.weight) for s in be.servers] == [(4.0, 4, 4, 40), (4.0, 4, 4, 2)]


def test_a_new_defaults_section_resets_every_setting():
    config = load_corpus("defaults_inheritance.cfg")
    fe, be = config.frontends["fe_plain"], config.backends["be_plain"]
    assert (fe.timeouts.client, fe.maxconn) == (10.0, None)
    assert (be.retries, be.balance.algorithm, be.redispatch) == (3, "roundrobin", False)
    assert [(s.inter, s.rise, s.weight) for s in be.servers] == [(2.0, 2, 1)]


def test_from_names_a_defaults_section_and_defaults_inherit_from_defaults():
    config = load_corpus("defaults_inheritance.cfg")
    tuned = config.backends["be_tuned"]
    assert (tuned.timeouts.connect, tuned.timeouts.server, tuned.redispatch, tuned.retries) == (
        4.0, 90.0, True, 5)
    assert [(s.inter, s.weight) for s in tuned.servers] == [(4.0, 40)]
    assert config.frontends["fe_from_base"].timeouts.client == 40.0


def test_defaults_set_after_a_proxy_do_not_change_it():
    config = parse("""
        defaults
            timeout client 1s
        frontend fe
            bind :1
        defaults
            timeout client 2s
    """)
    assert config.frontends["fe"].timeouts.client == 1.0


def test_a_named_defaults_used_both_implicitly_and_by_from_is_flagged_as_haproxy_does():
    config = parse("""
        defaults base
            mode tcp
        backend one
        backend two from base
    """)
    assert any(w.startswith("5: 'backend': defaults section 'base'") for w in warnings_of(config))


def test_acls_and_tcp_request_rules_are_allowed_in_named_defaults_only():
    config = parse("""
        defaults named
            acl local src 127.0.0.1
            tcp-request connection reject if !local
        frontend fe from named
            bind :1
    """)
    fe = config.frontends["fe"]
    assert fe.tcp_request_rules[0].action == "reject"
    from fastproxy.acl import ConnInfo, evaluate
    local, remote = ConnInfo("127.0.0.1", 1000, "127.0.0.1", 1), ConnInfo("10.0.0.1", 1000, "127.0.0.1", 1)
    condition = fe.tcp_request_rules[0].condition
    assert (evaluate(condition, fe.acls, local), evaluate(condition, fe.acls, remote)) == (False, True)
    assert errors_of("defaults\n acl local src 127.0.0.1\n") == [
        "2: 'acl': 'acl' not allowed in anonymous 'defaults' section."]


def test_a_section_does_not_see_the_acls_of_its_defaults_as_in_haproxy():
    assert errors_of(PROLOGUE + """defaults named
        acl local src 127.0.0.1
        frontend fe from named
        bind :1
        tcp-request content reject if local
    """) == ["10: 'tcp-request content': error detected while parsing the 'if' condition : no such ACL : "
             "'local'."]
    # An ACL of the same name in the section is its own: the defaults' rule keeps its own ACL.
    config = parse("""
        defaults named
            acl local src 127.0.0.1
            tcp-request content reject if !local
        backend be from named
            acl local src 10.0.0.0/8
            tcp-request content accept if local
    """)
    be = config.backends["be"]
    from fastproxy.acl import ConnInfo, evaluate
    inherited, own = be.tcp_request_rules
    remote = ConnInfo("10.0.0.1", 1000, "127.0.0.1", 1)
    assert evaluate(inherited.condition, be.acls, remote) and evaluate(own.condition, be.acls, remote)


@pytest.mark.parametrize("sections, error", [
    ("listen li from base\n bind :1\n", "9: 'listen': a listen section cannot inherit from a defaults "
     "section defining TCP/HTTP rules."),
    ("defaults two from base\n", "9: 'defaults': a defaults section cannot inherit from a defaults "
     "section defining TCP/HTTP rules (defaults section at t.cfg:6)."),
    ("frontend fe from base\n bind :1\nbackend be\n", "11: 'backend': frontends and backends cannot "
     "inherit from the same defaults section if it defines TCP/HTTP rules (defaults section at t.cfg:6)."),
])
def test_what_may_not_inherit_from_a_defaults_section_with_rules(sections, error):
    defaults = "defaults base\n mode tcp\n tcp-request content reject\n"
    assert errors_of(PROLOGUE + defaults + sections) == [error]


def test_a_backend_cannot_inherit_tcp_request_connection_or_session_rules():
    for phase in ("connection", "session"):
        text = PROLOGUE + f"defaults base\n tcp-request {phase} reject\nbackend be from base\n"
        assert errors_of(text) == [
            "8: 'backend': a backend section cannot inherit from a defaults section defining "
            "'tcp-request connection' or 'tcp-request session' rules (defaults section at t.cfg:6)."]
    # http-request rules count too, though fastproxy ignores them.
    assert errors_of(PROLOGUE + "defaults base\n http-request deny\nlisten li from base\n") == [
        "8: 'listen': a listen section cannot inherit from a defaults section defining TCP/HTTP rules."]


# --- bind --------------------------------------------------------------------------------------------

def test_binds_any_address_forms_and_families():
    config = load_corpus("binds.cfg")
    assert [(b.host, b.port, b.family) for b in config.frontends["any4"].binds] == [
        ("0.0.0.0", 10201, None), ("0.0.0.0", 10202, None), ("0.0.0.0", 10203, "ipv4"),
        ("127.0.0.1", 10204, None), ("127.0.0.1", 10205, None), ("127.0.0.1", 10206, None),
        ("127.0.0.1", 10207, None)]
    assert [(b.host, b.port, b.family, b.v6only) for b in config.frontends["any6"].binds] == [
        ("::", 10211, None, True), ("::", 10212, None, False), ("::", 10213, "ipv6", None),
        ("::1", 10214, "ipv6", None), ("::1", 10215, None, None), ("::1", 10216, "ipv6", None)]


def test_a_port_range_expands_to_one_bind_per_port_with_the_same_settings():
    binds = load_corpus("binds.cfg").frontends["any4"].binds[3:]
    assert [b.port for b in binds] == [10204, 10205, 10206, 10207]
    assert {b.name for b in binds} == {"multi"}


def test_bind_settings():
    main, other = load_corpus("binds.cfg").frontends["settings"].binds
    assert (main.name, main.backlog, main.maxconn, main.accept_proxy, main.defer_accept) == (
        "main", 64, 100, True, True)
    assert other.backlog == 2048  # the proxy's "backlog" (from defaults)


def test_bind_settings_fastproxy_lacks_are_warnings():
    assert "27: 'bind tfo': bind setting 'tfo' is not supported by fastproxy; ignored" in warnings_of(
        load_corpus("binds.cfg"))


# Settings that would change what the runtime does are never read and dropped in silence: each of these
# is recorded in the model (for the caller to see) and warned about, saying what fastproxy does instead.
@pytest.mark.parametrize("text, warning", [
    ("frontend fe\n bind :80 maxconn 5\n", "2: 'bind maxconn': not acted on: fastproxy does not limit the "
     "connections of one listener; the frontend's 'maxconn' and the global one apply to it"),
    ("backend be\n hash-type consistent sdbm\n", "2: 'hash-type': hash function 'sdbm' is not used: "
     "fastproxy hashes with XXH64, so a key maps to another server than under HAProxy (still one server "
     "per key)"),
    ("backend be\n hash-type map-based crc32 avalanche\n", "2: 'hash-type': hash function 'crc32 avalanche' "
     "is not used: fastproxy hashes with XXH64, so a key maps to another server than under HAProxy (still "
     "one server per key)"),
    ("backend be\n option redispatch 2\n", "2: 'option redispatch': interval 2 is not used: fastproxy "
     "redispatches on the last retry only, as with -1 (HAProxy's default)"),
])
def test_settings_fastproxy_records_but_does_not_act_on_are_warnings(text, warning):
    assert warning in warnings_of(parse(text))


def test_the_default_hash_function_and_redispatch_interval_are_no_warning():
    config = parse("backend be\n hash-type consistent\n option redispatch -1\n")
    assert not [w for w in warnings_of(config) if "is not used" in w]


def test_a_tls_bind_names_a_certificate_that_is_there():
    assert errors_of(PROLOGUE + "frontend fe\n bind :443 ssl crt /nonexistent/x.pem\n") == [
        "7: 'bind': unable to stat SSL certificate from file '/nonexistent/x.pem' : No such file or "
        "directory."]


def test_transparent_binds_are_refused():
    assert errors_of(PROLOGUE + "frontend fe\n bind :80 transparent\n") == [
        "7: 'bind': 'transparent' (binding foreign addresses) is not supported by fastproxy"]


def test_filters_other_than_spoe_are_warned_and_unknown_ones_refused_as_haproxy():
    config = parse(PROLOGUE + "frontend fe\n bind :1\n filter trace\n filter compression\n"
                   " default_backend be\nbackend be\n server s 127.0.0.1:9\n")
    assert [w.split(":", 1)[0] for w in warnings_of(config)] == ["8", "9"]
    errors = errors_of(PROLOGUE + " filter trace\nfrontend fe\n bind :1\n filter bwlim-in x\n"
                       " default_backend be\nbackend be\n server s 127.0.0.1:9\n")
    assert [e.split(":", 1)[0] for e in errors] == ["6", "9"]
    assert "unknown keyword 'bwlim-in'" in errors[1]


def test_netscaler_client_ip_binds_are_refused():
    """Ignored, the header would reach the server as data, and rules would see the NetScaler's address."""
    assert errors_of(PROLOGUE + "frontend fe\n bind :80 accept-netscaler-cip 1234\n") == [
        "7: 'bind': 'accept-netscaler-cip': fastproxy does not decode NetScaler client IP headers: the "
        "header would be forwarded to the server and the addresses it gives ignored"]


def test_a_frontend_without_bind_is_a_warning_as_in_haproxy():
    config = parse(PROLOGUE + "frontend fe\n default_backend be\nbackend be\n")
    assert "6: 'frontend': frontend 'fe' has no 'bind' directive: it does not listen." in warnings_of(config)


# --- servers -----------------------------------------------------------------------------------------

def test_server_settings_and_default_server():
    servers = {s.name: s for s in load_corpus("servers.cfg").backends["app"].servers}
    a, b, c, d = servers["a"], servers["b"], servers["c"], servers["d"]
    assert (a.weight, a.maxconn, a.maxqueue, a.minconn, a.id) == (50, 100, 10, 5, 11)
    assert (a.check, a.inter, a.fastinter, a.downinter, a.rise, a.fall) == (True, 3.0, 1.0, 10.0, 3, 2)
    assert (b.check_port, b.check_addr, b.slowstart, b.send_proxy, b.send_proxy_v2) == (
        9000, "10.0.0.20", 30.0, True, False)
    assert (c.send_proxy_v2, c.backup, c.check) == (True, True, False)
    assert d.disabled is True


def test_server_addresses_in_every_haproxy_form():
    servers = {s.name: s for s in load_corpus("servers.cfg").backends["app"].servers}
    assert [(servers[n].host, servers[n].port, servers[n].family) for n in
            ("v6a", "v6b", "v6c", "v6d", "named", "v4", "noport")] == [
        ("::1", 8081, "ipv6"), ("::1", 8082, None), ("::1", 8083, None), ("2001:db8::1", 0, None),
        ("localhost", 8084, None), ("127.0.0.1", 8085, "ipv4"), ("10.0.0.5", 0, None)]


def test_server_template_declares_numbered_servers():
    names = [s.name for s in load_corpus("servers.cfg").backends["app"].servers]
    assert names[-5:] == ["pool1", "pool2", "pool3", "extra1", "extra2"]


def test_server_settings_fastproxy_lacks_are_warnings_naming_the_setting():
    config = load_corpus("warned.cfg")
    assert "29: 'server cookie': server setting 'cookie' is not supported by fastproxy; ignored" in \
        warnings_of(config)


def test_server_errors_name_the_server():
    assert errors_of(PROLOGUE + "backend be\n server web 10.0.0.1:80 weight 1000\n") == [
        "7: 'server': server 'be/web': expects a weight for 'weight' (between 0 and 256), got '1000'"]


def test_no_variants_undo_default_server_settings():
    config = parse(PROLOGUE + """
        backend be
            default-server check backup send-proxy
            server s 10.0.0.1:80 no-check no-backup no-send-proxy
    """)
    s = config.backends["be"].servers[0]
    assert (s.check, s.backup, s.send_proxy) == (False, False, False)


def test_a_disabled_backend_keeps_its_servers_disabled():
    config = parse(PROLOGUE + "backend be\n disabled\n server s 10.0.0.1:80\n")
    assert config.backends["be"].servers[0].disabled is True


# --- timeouts and proxy settings ----------------------------------------------------------------------

def test_timeouts_land_where_haproxy_applies_them():
    config = load_corpus("timeouts.cfg")
    fe, be = config.frontends["fe"], config.backends["be"]
    assert (fe.timeouts.client, fe.timeouts.client_fin) == (2.0, 0.5)
    assert (fe.timeouts.connect, fe.timeouts.server, fe.timeouts.tunnel) == (None, None, None)
    assert (be.timeouts.connect, be.timeouts.server, be.timeouts.tunnel, be.timeouts.server_fin,
            be.timeouts.queue) == (1.5, 180.0, 3600.0, 0.25, 86400.0)
    assert be.timeouts.client is None
    assert be.timeouts.check is None  # "timeout check 0": never
    both_fe, both_be = config.frontends["both"], config.backends["both"]
    assert (both_fe.timeouts.client, both_be.timeouts.server) == (7.0, 8.0)


def test_a_frontend_timeout_in_a_backend_is_ignored_with_a_warning():
    config = parse("backend be\n timeout client 5s\nfrontend fe\n timeout server 5s\n")
    assert warnings_of(config)[:2] == [
        "2: 'timeout client': will be ignored because backend 'be' has no frontend capability",
        "4: 'timeout server': will be ignored because frontend 'fe' has no backend capability"]


def test_missing_timeouts_are_a_warning_as_in_haproxy():
    config = parse("frontend fe\n bind :1\n")
    assert warnings_of(config) == [("1: 'frontend': missing timeouts for frontend 'fe': set 'client', "
                                   "'connect' and 'server' (unset timeouts never expire)")]


def test_the_pre_2_1_timeout_keywords_are_errors_as_in_haproxy():
    assert errors_of("defaults\n contimeout 5s\n") == [
        ("2: 'contimeout': the 'contimeout' directive is not supported anymore since HAProxy 2.1. "
        "Use 'timeout connect'.")]


def test_balance_algorithms_and_hash_settings():
    backends = load_corpus("balance.cfg").backends
    balances = [(n, b.balance.algorithm, b.balance.sample, b.balance.draws) for n, b in backends.items()]
    assert balances == [
        ("rr", "roundrobin", None, None), ("srr", "static-rr", None, None), ("lc", "leastconn", None, None),
        ("first", "first", None, None), ("src", "source", None, None), ("rnd", "random", None, None),
        ("rnd3", "random", None, 3), ("hsni", "hash", Sample("req.ssl_sni"), None),
        ("consistent", "source", None, None), ("factor", "hash", Sample("src"), None)]
    assert (backends["hsni"].balance.hash_type, backends["hsni"].balance.hash_function) == (
        "consistent", "djb2 avalanche")
    assert backends["src"].balance.hash_type == "map-based"
    assert (backends["factor"].balance.hash_function, backends["factor"].balance.hash_balance_factor) == (
        "crc32", 150)


def test_hash_type_maglev_is_our_extension():
    lb = load_corpus("maglev.cfg").backends["lb"]
    balance = lb.balance
    assert (balance.algorithm, balance.hash_type, balance.hash_balance_factor) == ("source", "maglev", 125)


def test_layer7_balance_falls_back_to_roundrobin_with_a_warning_as_haproxy_does():
    config = load_corpus("warned.cfg")
    assert config.backends["be"].balance.algorithm == "roundrobin"
    assert any(w.startswith("24: 'balance': 'uri' needs layer 7") for w in warnings_of(config))


def test_options():
    config = load_corpus("options.cfg")
    fe, quiet, be = config.frontends["fe"], config.frontends["quiet"], config.backends["be"]
    assert fe.options == {"splice-auto": True, "splice-request": True}
    assert be.options == {"splice-auto": True, "splice-response": True}
    assert (fe.maxconn, fe.rate_limit_sessions) == (5000, 200)
    assert (fe.log, [(t.address, t.facility) for t in fe.log_targets], fe.tcplog, fe.dontlognull) == (
        True, [("127.0.0.1:514", 16)], True, False)
    assert (quiet.log, quiet.log_targets, quiet.dontlognull) == (False, [], True)
    assert (fe.client_keepalive.enabled, fe.client_keepalive.idle, fe.client_keepalive.interval,
            fe.client_keepalive.count) == (True, 30.0, 5.0, 4)
    assert quiet.client_keepalive.enabled is False
    assert (be.server_keepalive.enabled, be.server_keepalive.idle, be.server_keepalive.interval,
            be.server_keepalive.count) == (False, 60.0, 10.0, 3)
    assert (be.redispatch, be.allbackups, be.retries, be.fullconn) == (True, True, 2, 1000)


def test_option_redispatch_interval_is_recorded():
    config = parse("backend be\n option redispatch -1\nbackend off\n option redispatch 0\n")
    be = config.backends["be"]
    assert (be.redispatch, be.options["redispatch-interval"]) == (True, -1)
    assert config.backends["off"].redispatch is False


def test_options_fastproxy_lacks_are_warnings_and_httplog_falls_back_to_tcplog():
    config = load_corpus("warned.cfg")
    assert config.frontends["fe"].tcplog is True
    assert not any("httpchk" in warning for warning in warnings_of(config))  # HTTP checks run
    assert (config.backends["be"].check_kind, config.backends["be"].tcp_check_rules[0].http.method) == (
        "http", "GET")


def test_unknown_options_are_errors():
    assert errors_of("defaults\n option nosuchoption\n") == [
        "2: 'option nosuchoption': unknown option 'nosuchoption'."]


def test_keywords_out_of_their_proxy_kind_are_ignored_with_haproxy_warnings():
    config = parse("backend be\n maxconn 5\n option clitcpka\n"
                   "frontend fe\n balance first\n option allbackups\n")
    assert warnings_of(config)[:4] == [
        ("2: 'maxconn': 'maxconn' ignored because backend 'be' has no frontend capability. "
        "Maybe you want 'fullconn' instead ?"),
        "3: 'option clitcpka': 'clitcpka' ignored because backend 'be' has no frontend capability.",
        "5: 'balance': 'balance' ignored because frontend 'fe' has no backend capability.",
        "6: 'option allbackups': 'allbackups' ignored because frontend 'fe' has no backend capability."]


LAYER4_ONLY = ("fastproxy is a layer-4 proxy and carries 'mode tcp' traffic only (a 'mode http' proxy may "
               "only serve statistics: 'stats', 'monitor-uri', the Prometheus exporter)")


def test_mode_http_on_a_proxy_carrying_traffic_is_an_error_and_elsewhere_a_warning():
    config = parse(PROLOGUE + "backend unused\n mode http\n")
    assert warnings_of(config) == ["7: 'mode': backend 'unused' is in 'mode http' but carries no traffic"]
    assert errors_of(PROLOGUE + "listen web\n mode http\n bind :80\n server s1 127.0.0.1:81\n") == [
        f"7: 'mode': listen 'web' is in 'mode http': {LAYER4_ONLY}"]
    assert errors_of(PROLOGUE + "frontend web\n mode http\n bind :80\n default_backend app\n"
                     "backend app\n server s1 127.0.0.1:81\n") == [
        f"7: 'mode': frontend 'web' is in 'mode http': {LAYER4_ONLY}"]


def test_mode_http_inherited_from_defaults_is_reported_at_the_defaults_line():
    assert errors_of("defaults\n mode http\nfrontend fe\n bind :80\n default_backend be\n"
                     "backend be\n server s1 127.0.0.1:81\n") == [
        f"2: 'mode': frontend 'fe' is in 'mode http': {LAYER4_ONLY}",
        f"2: 'mode': backend 'be' is in 'mode http': {LAYER4_ONLY}"]


def test_a_mode_http_listener_serving_statistics_only_is_a_stats_page():
    config = parse(PROLOGUE + "listen stats\n mode http\n bind 127.0.0.1:80\n stats enable\n"
                   " stats uri /st\n stats auth a:b\n stats admin if LOCALHOST\n monitor-uri /up\n")
    page = config.frontends["stats"].stats
    assert (page.uri, page.monitor_uri) == ("/st", "/up")
    assert [(u.user, u.password) for u in page.auth] == [("a", "b")]
    assert page.admin is not None and config.backends["stats"].servers == []
    assert config.frontends["stats"].mode == config.backends["stats"].mode == "http"


def test_stats_enable_alone_serves_haproxys_default_uri_and_a_proxys_stats_lines_start_afresh():
    config = parse(PROLOGUE.replace("mode tcp", "mode http") + " stats enable\n stats auth d:d\n"
                   "listen inherits\n bind 127.0.0.1:80\nlisten own\n bind 127.0.0.1:81\n stats realm R\n")
    assert config.frontends["inherits"].stats.uri == "/haproxy?stats"
    assert [u.user for u in config.frontends["inherits"].stats.auth] == ["d"]
    own = config.frontends["own"].stats
    assert (own.uri, own.realm, own.auth) == ("/haproxy?stats", "R", [])


def test_stats_lines_on_a_tcp_proxy_are_warned_about():
    config = parse(PROLOGUE + "listen tcp\n bind 127.0.0.1:80\n server s1 127.0.0.1:81\n stats enable\n")
    assert warnings_of(config) == [
        "9: 'stats': listen 'tcp' is in 'mode tcp': the stats page, monitor-uri and exporter are served by "
        "'mode http' proxies only; ignored"]
    assert config.frontends["tcp"].stats is None


def test_stats_admin_conditions_fastproxy_cannot_evaluate_are_errors():
    message = ("9: 'stats admin': 'stats admin' conditions are evaluated on HTTP requests: a condition "
               "reading the client's bytes (the TLS ClientHello, req.payload, the request line...) cannot be "
               "evaluated by fastproxy")
    assert errors_of(PROLOGUE + "listen st\n mode http\n bind :80\n stats admin if { req.ssl_sni x }\n") == [
        message]
    assert errors_of(PROLOGUE + "listen st\n mode http\n bind :80\n stats admin if METH_POST\n") == [message]


def test_http_access_rules_on_a_stats_listener_are_errors_and_other_http_rules_warnings():
    text = PROLOGUE + ("listen st\n mode http\n bind :80\n stats enable\n"
                       " http-request deny unless LOCALHOST\n http-request set-header X y\n"
                       " option forwardfor\n")
    assert errors_of(text) == [
        "10: 'http-request': this rule decides who gets an answer, and fastproxy does not evaluate HTTP "
        "rules: remove it, or protect the page with 'stats auth' and 'stats admin'"]
    config = parse(text.replace(" http-request deny unless LOCALHOST\n", ""))
    assert [w.split(":")[0] for w in warnings_of(config)] == ["10", "11"]


def test_disabled_frontends_do_not_listen():
    config = parse(PROLOGUE + "frontend fe\n bind :1\n disabled\n")
    assert config.frontends == {}


# --- routing -----------------------------------------------------------------------------------------

def test_acls_rules_and_switching_are_read_in_order():
    fe = load_corpus("routing.cfg").frontends["tls"]
    assert fe.inspect_delay == 5.0
    assert [(a.criterion, a.flags, a.values) for a in fe.acls["blocked"]] == [
        (Sample("src"), (), ("203.0.113.0/24",)), (Sample("src"), (), ("198.51.100.7",))]
    assert [(a.criterion, a.flags, a.values) for a in fe.acls["api"]] == [
        (Sample("req.ssl_sni"), ("-i",), ("api.example.com", "API2.example.com"))]
    assert fe.acls["wild"][0].flags == ("-m", "reg", "-i")
    assert [(r.phase, r.action) for r in fe.tcp_request_rules] == [
        ("connection", "reject"), ("connection", "accept"), ("content", "reject"), ("content", "accept")]
    assert [u.backend for u in fe.use_backends] == ["api", "legacy", "regex", "nosni"]
    assert fe.default_backend == "web"


def test_conditions_keep_or_groups_negations_and_anonymous_acls():
    fe = load_corpus("routing.cfg").frontends["tls"]
    api = fe.use_backends[0].condition
    assert api.negate is False
    assert len(api.groups) == 2
    assert api.groups[0] == ((False, "api"),)
    (negated, anonymous), internal = api.groups[1]
    assert (negated, anonymous.criterion, anonymous.values, internal) == (
        False, Sample("req.ssl_sni"), ("admin.",), (False, "internal"))
    assert fe.tcp_request_rules[2].condition.groups == (((True, "clienthello"), (True, "internal")),)
    assert fe.use_backends[3].condition.negate is True


def test_quoting_and_environment_in_a_whole_file():
    config = load_corpus("quoting.cfg")
    fe = config.frontends["fe"]
    assert [(b.host, b.port) for b in fe.binds] == [("127.0.0.1", 10901)]
    assert fe.options["description"] == "it's \"quoted\""
    assert fe.acls["sni"][0].values == ("a b", 'c"d', "e f", "g#h", "${NOT_EXPANDED}")
    assert [(s.host, s.port) for s in config.backends["be"].servers] == [
        ("127.0.0.1", 20001), ("127.0.0.1", 20002)]


def test_conditional_blocks():
    config = load_corpus("conditional.cfg")
    assert [b.port for b in config.frontends["fe"].binds] == [11001]
    assert config.frontends["fe"].default_backend == "be"
    assert [s.name for s in config.backends["be"].servers] == ["s1"]


def test_conditional_directive_errors():
    assert errors_of(".if\n.endif\n.else\n.endif\n.foo\n.if bogus(\n") == [
        "3: '.else': lone '.else' with no matching '.if'.",
        "5: '.foo': unknown directive '.foo'",
        "6: '.if': unparsable conditional expression 'bogus('",
        "6: '.if': non-terminated '.if' block (missing '.endif' at end of file)"]
    assert errors_of(".if 1\n.else x\n.endif y\n") == [
        "2: '.else': Unexpected argument 'x' for '.else'.",
        "3: '.endif': Unexpected argument 'y' for '.endif'."]
    assert errors_of(".alert stop here\n") == ["1: '.alert': stop here"]


def test_directives_in_a_skipped_block_are_not_read():
    config = parse(".if 0\n.nosuchdirective\n.alert never\n.if bogus(\n.endif\n.endif\n" + PROLOGUE)
    assert config.warnings == []


@pytest.mark.parametrize("condition, chosen", [
    ("1", "a"), ("0", "c"), ("defined(SET)", "a"), ("defined(UNSET)", "c"), ("streq(x,x)", "a"),
    ("strneq(x,x)", "c"), ("!0", "a"), ("1 && 0", "c"), ("0 || 1", "a"), ("!(1 && 0)", "a"),
    ("version_atleast(2.6)", "a"), ("version_before(2.6)", "c"), ("feature(OPENSSL)", "c"),
])
def test_conditional_expressions(condition, chosen):
    config = parse(f"""
        .if {condition}
        backend a
        .elif 1
        backend c
        .else
        backend never
        .endif
    """, environ={"SET": ""})
    assert list(config.backends) == [chosen]


def test_tcp_request_content_rules_in_backends_are_read_and_other_phases_refused_as_in_haproxy():
    be = parse(PROLOGUE + "backend be\n acl bad src 10.0.0.0/8\n tcp-request inspect-delay 2s\n"
                          " tcp-request content reject if bad\n").backends["be"]
    assert [(r.phase, r.action) for r in be.tcp_request_rules] == [("content", "reject")]
    assert be.inspect_delay == 2.0 and list(be.acls) == ["bad"]
    text = PROLOGUE + "backend be\n tcp-request connection reject\n tcp-request session reject\n"
    assert errors_of(text) == [
        "7: 'tcp-request connection': tcp-request connection is not allowed because backend 'be' is not a "
        "frontend",
        "8: 'tcp-request session': tcp-request session is not allowed because backend 'be' is not a frontend"]


def test_unsupported_tcp_request_actions_are_warnings_and_silent_drop_rejects():
    config = parse(PROLOGUE + """
        frontend fe
            bind :1
            tcp-request content set-log-level silent
            tcp-request connection silent-drop if { src 10.0.0.1 }
    """)
    rules = config.frontends["fe"].tcp_request_rules
    assert [(r.phase, r.action) for r in rules] == [("connection", "reject")]
    assert warnings_of(config) == [
        "9: 'tcp-request content': action 'set-log-level' is not supported by fastproxy; rule ignored",
        "10: 'tcp-request connection': treated as 'reject' (fastproxy closes the connection)"]


def test_rule_order_warnings_as_in_haproxy():
    config = parse(PROLOGUE + """
        frontend fe
            bind :1
            tcp-request content accept
            tcp-request connection accept
            use_backend be if { src 1.2.3.4 }
            tcp-request content reject
        backend be
    """)
    assert warnings_of(config) == [
        ("10: 'tcp-request connection': a 'tcp-request connection' rule placed after a 'tcp-request "
        "content' rule will still be processed before."),
        ("12: 'tcp-request content': a 'tcp-request' rule placed after a 'use_backend' rule will still be "
        "processed before.")]


def test_sni_in_connection_rules_is_a_warning_as_in_haproxy():
    config = parse(PROLOGUE + "frontend fe\n bind :1\n tcp-request connection reject if { req.ssl_sni x }\n")
    assert "will never match" in warnings_of(config)[0]


def test_acl_pattern_files(tmp_path):
    patterns = tmp_path / "allow.lst"
    patterns.write_text("# allowed networks\n10.0.0.0/8\n\n  192.168.1.1  \n")
    config = parse(PROLOGUE + f"frontend fe\n bind :1\n acl allowed src -f {patterns} 172.16.0.1\n")
    assert config.frontends["fe"].acls["allowed"][0].values == ("172.16.0.1", "10.0.0.0/8", "192.168.1.1")
    assert errors_of(PROLOGUE + f"frontend fe\n bind :1\n acl a src -f {tmp_path}/missing\n") == [
        (f"8: 'acl': error detected while parsing ACL 'a' : failed to open pattern file <{tmp_path}/missing> "
        "(not a regular file)")]


def test_an_acl_without_patterns_is_a_warning_as_in_haproxy():
    config = parse(PROLOGUE + "frontend fe\n bind :1\n acl never src\n acl fine req.ssl_sni -m found\n"
                   " acl intended src --\n")
    assert [w.split(":")[0] for w in warnings_of(config)] == ["8"]


def test_a_rule_may_only_name_acls_declared_above_it():
    assert errors_of(PROLOGUE + "frontend fe\n bind :1\n use_backend be if later\n acl later src 1.2.3.4\n"
                     "backend be\n") == [
        "8: 'use_backend': error detected while parsing the 'if' condition : no such ACL : 'later'."]


# --- where HAProxy is lenient or strict -------------------------------------------------------------

@pytest.mark.parametrize("line", [
    "global\n hard-stop-after 1s extra\n", "global\n stats timeout 1s extra\n", "global\n setenv A b extra\n",
    "backend be\n hash-type consistent sdbm avalanche extra\n",
    "backend be\n hash-balance-factor 150 extra\n",
    "backend be\n balance roundrobin extra\n", "backend be\n option redispatch 1 extra\n",
    "frontend fe\n rate-limit sessions 10 extra\n", "frontend fe\n tcp-request inspect-delay 1s extra\n",
    "frontend fe\n clitcpka-cnt 3 extra\n", "defaults name extra\n",
])
def test_extra_arguments_haproxy_ignores_are_warnings(line):
    config = parse(line)
    assert any("extra argument" in w and "ignored" in w for w in warnings_of(config))


@pytest.mark.parametrize("line, message", [
    ("global\n maxconn 10 extra\n", "cannot handle unexpected argument 'extra'"),
    ("frontend fe\n default_backend be extra\n", "cannot handle unexpected argument 'extra'"),
    ("backend be\n option allbackups extra\n", "expects no argument"),
    ("backend be\n balance hash src extra\n", "balance hash takes no other argument (got 'extra')."),
    ("frontend fe\n option tcplog clf\n", "cannot handle unexpected argument 'clf'"),
    ("frontend fe\n no option tcpka\n", "negation/default is not supported for option 'tcpka'."),
    ("frontend fe\n no option tcplog\n", "negation/default is not supported for option 'tcplog'."),
    ("frontend fe\n no log extra\n", "'no log' does not expect arguments"),
    ("frontend fe\n option http_proxy\n", "option 'http_proxy' is not supported any more since HAProxy 2.5"),
    ("frontend fe\n description\n", "expects a string argument"),
    ("frontend fe\n default-server check\n",
     "'default-server' not allowed because frontend 'fe' has no backend"),
    ("frontend fe\n balance nosuch\n", "balance only supports"),  # checked even where it is ignored
    ("backend be\n bind :0\n", "invalid port '0'"),
    ("frontend fe extra\n bind :80\n", "please use the 'bind' keyword for listening addresses."),
    ("global\n log 127.0.0.1 local9\n", "unknown log facility 'local9'"),
    ("global\n log 127.0.0.1 local0 loud\n", "unknown optional log level 'loud'"),
    ("global\n log 127.0.0.1 local0 info notice debug\n", "cannot handle unexpected argument 'debug'"),
    ("global\n log .nowhere local0\n", "invalid address: '.nowhere'"),
    ("frontend fe\n log global extra\n", "unknown log facility 'extra'"),
])
def test_what_haproxy_rejects_we_reject(line, message):
    (error,) = errors_of(line)
    assert message in error


def test_log_targets_in_haproxy_forms_are_recorded():
    g = parse("""
        global
            log 10.0.0.1:514 len 512 format rfc5424 local0 info notice
            log /dev/log daemon
            log ring@buffer local1
            log stderr format raw user
    """).global_
    assert len(g.log_targets) == 4


def test_balance_without_algorithm_is_roundrobin_as_in_haproxy():
    assert parse("backend be\n balance first\n balance\n").backends["be"].balance.algorithm == "roundrobin"


def test_ipv4_shorthand_addresses_are_read_as_inet_aton_does():
    config = parse(PROLOGUE + "frontend fe\n bind 127.1:80\nbackend be\n server s 10.1:80\n")
    assert config.frontends["fe"].binds[0].host == "127.0.0.1"
    assert config.backends["be"].servers[0].host == "10.0.0.1"


@pytest.mark.parametrize("address", [":80", "0", "0.0.0.0:80", "*:80", "[::]:80"])
def test_servers_at_the_clients_destination_address_are_refused(address):
    (error,) = errors_of(f"backend be\n server s {address}\n")
    assert "HAProxy then connects to the client's destination address, which fastproxy does not " \
           "support" in error


def test_default_option_is_a_warning():
    config = parse("frontend fe\n default option dontlognull\n")
    assert warnings_of(config)[0].startswith("2: 'default option dontlognull': 'default option'")


def test_a_global_section_with_an_argument_is_an_error_but_still_read():
    assert errors_of("global extra\n nbthread x\n") == [
        "1: 'global': 'global' cannot handle unexpected argument 'extra'.",
        "2: 'nbthread': expects a number of threads, got 'x'"]


def test_rules_reading_the_clienthello_without_inspect_delay_are_a_warning():
    config = parse(PROLOGUE + "frontend fe\n bind :1\n use_backend be if { req.ssl_sni x }\nbackend be\n")
    assert any("no 'tcp-request inspect-delay'" in w for w in warnings_of(config))


def test_node_and_description_are_read_for_show_info_and_the_page():
    config = parse("global\n node edge-1.rack4\n description Edge   proxy,  rack 4\n")
    assert (config.global_.node, config.global_.description) == ("edge-1.rack4", "Edge proxy, rack 4")
    assert parse("global\n").global_.node is None
    assert "requires valid node name" in errors_of("global\n node a/b\n")[0]
    assert "expects a string argument" in errors_of("global\n description\n")[0]


def test_only_newlines_end_lines_and_crlf_files_read_the_same():
    assert parse("global\r\n nbthread 2\r\n").global_.nbthread == 2
    assert errors_of("global\n description a\x0cb\n maxconn x\n") == [
        "3: 'maxconn': expects a positive integer, got 'x'"]


# --- health checks -----------------------------------------------------------------------------------

def test_tcp_check_rules_are_read_in_order_with_their_settings():
    config = load_corpus("health_checks.cfg")
    own = config.backends["own"]
    assert own.tcp_check is True
    assert [(r.action, r.location.line) for r in own.tcp_check_rules] == [
        ("connect", 26), ("send", 27), ("expect", 28), ("expect", 29), ("expect", 30), ("send", 31),
        ("set-var", 32)]
    connect, send, regex, binary, negated, send_lf, set_var = own.tcp_check_rules
    assert (send_lf.log_format, send_lf.binary, send_lf.data) == ("%[src]", False, b"")
    assert (set_var.variable, set_var.sample) == ("check.port", Sample("int(8000)"))
    assert (connect.port, connect.addr, connect.linger) == (8000, "10.0.0.9", True)
    assert (send.data, send.comment) == (b"\x0a\x0b\xff", "hello")
    assert (regex.match, regex.pattern, regex.negate, regex.min_recv) == ("rstring", "^ERR", True, 4)
    assert (regex.ok_status, regex.error_status, regex.tout_status) == ("L6OK", "L6RSP", "L4TOUT")
    assert (binary.match, binary.pattern, binary.negate, binary.comment) == (
        "binary", b"\x00\xff", False, "binary reply")
    assert (negated.match, negated.pattern, negated.negate) == ("rbinary", "^DEAD", True)


def test_a_proxy_without_tcp_check_rules_of_its_own_uses_those_of_its_defaults():
    config = load_corpus("health_checks.cfg")
    inherited = config.backends["inherited"]
    assert inherited.tcp_check is True
    assert [(r.action, r.port, r.data, r.match, r.pattern, r.comment, r.location.line)
            for r in inherited.tcp_check_rules] == [
        ("connect", 6379, b"", "", b"", "redis port", 11),
        ("send", None, b"PING\r\n", "", b"", None, 12),
        ("expect", None, b"", "string", b"+PONG", None, 13)]
    assert config.backends["own"].tcp_check_rules[0].location.line == 26  # its own rules only


def test_passive_health_server_settings_and_default_server():
    servers = {s.name: s for s in load_corpus("health_checks.cfg").backends["passive"].servers}
    p1, p2 = servers["p1"], servers["p2"]
    assert (p1.observe, p1.error_limit, p1.on_error, p1.on_marked_down, p1.on_marked_up) == (
        "layer4", 5, "mark-down", "shutdown-sessions", "shutdown-backup-sessions")
    assert (p2.observe, p2.error_limit, p2.on_error, p2.on_marked_down, p2.on_marked_up) == (
        None, 5, "sudden-death", None, None)
    r1 = load_corpus("health_checks.cfg").backends["inherited"].servers[0]
    assert (r1.observe, r1.error_limit, r1.on_error) == (None, 10, "fail-check")  # HAProxy's defaults


def test_spread_checks_is_a_percentage_from_0_to_50():
    assert load_corpus("health_checks.cfg").global_.spread_checks == 20
    assert parse("global\n spread-checks 0\n").global_.spread_checks == 0


def test_tcp_check_features_fastproxy_lacks_are_warnings_and_their_rules_are_skipped():
    assert [w for w in warnings_of(load_corpus("health_checks.cfg")) if "tcp-check" in w] == [
        "26: 'tcp-check connect alpn': connect setting 'alpn' is not supported by fastproxy; ignored",
        "30: 'tcp-check expect on-success': expect setting 'on-success' is not used by fastproxy (its check "
        "reports carry no custom message or code); ignored",
        "40: 'tcp-check': backend 'passive' uses tcp-check rules without 'option tcp-check', so the rules "
        "are ignored.",
    ]


def test_tcp_check_rules_without_option_tcp_check_are_ignored_with_a_warning():
    passive = load_corpus("health_checks.cfg").backends["passive"]
    assert (passive.tcp_check, passive.tcp_check_rules) == (False, [])


SPOP_CHECKED = ("defaults\n mode tcp\n timeout connect 2s\n timeout client 5s\n timeout server 5s\n"
                "listen l\n bind 127.0.0.1:{port}\n option spop-check\n server s 127.0.0.1:1 check\n")


def test_option_spop_check_is_refused_naming_the_line_where_haproxy_takes_it(tmp_path):
    """``haproxy -c`` takes it in a TCP backend, whose checks would then speak SPOP: fastproxy has no
    SPOE, and a plain connect in their place could keep up a server HAProxy marks down."""
    path = tmp_path / "check.cfg"
    path.write_text(SPOP_CHECKED.replace("{port}", str(free_port())))
    if HAPROXY is not None:
        assert subprocess.run([HAPROXY, "-c", "-f", str(path)], capture_output=True).returncode == 0
    with pytest.raises(ConfigError) as caught:
        load([str(path)])
    assert "check.cfg:8: 'option spop-check'" in str(caught.value)
    assert "fastproxy has no SPOE" in str(caught.value)


def test_option_spop_check_in_a_frontend_is_ignored_with_a_warning_by_both(tmp_path):
    frontend = ("frontend f\n mode tcp\n bind 127.0.0.1:{port}\n option spop-check\n default_backend b\n"
                "backend b\n mode tcp\n server s 127.0.0.1:1\n")
    assert_verdicts(tmp_path, {frontend: True})


def test_a_later_check_option_replaces_option_tcp_check_as_in_haproxy():
    config = parse(PROLOGUE + "backend be\n option tcp-check\n option httpchk GET /\n tcp-check connect\n")
    be = config.backends["be"]
    assert (be.tcp_check, be.check_kind, [rule.action for rule in be.tcp_check_rules]) == (
        True, "http", ["send", "expect"])
    assert warnings_of(config) == [
        "9: 'tcp-check': backend 'be' uses tcp-check rules without 'option tcp-check', so the rules are "
        "ignored."]
    be = parse(PROLOGUE + "backend be\n option httpchk\n option tcp-check\n").backends["be"]
    assert (be.tcp_check, be.check_kind, be.tcp_check_rules) == (True, "tcp", [])


def test_tcp_check_in_a_frontend_is_ignored_with_a_warning_but_still_checked():
    config = parse(PROLOGUE + "frontend fe\n bind :1\n tcp-check connect port 80\n option tcp-check\n")
    assert warnings_of(config) == [
        "8: 'tcp-check connect': 'tcp-check' ignored because frontend 'fe' has no backend capability.",
        "9: 'option tcp-check': 'tcp-check' ignored because frontend 'fe' has no backend capability."]
    assert errors_of(PROLOGUE + "frontend fe\n tcp-check connect port 0\n") == [
        "7: 'tcp-check connect': expects a TCP port for 'port' (between 1 and 65535), got '0'"]


def test_the_first_tcp_check_line_of_a_section_drops_the_rules_of_its_defaults():
    config = parse(PROLOGUE + """
        option tcp-check
        tcp-check connect port 81
        backend be
            tcp-check comment "nothing else"
    """)
    assert (config.backends["be"].tcp_check, config.backends["be"].tcp_check_rules) == (True, [])


@pytest.mark.parametrize("rules, error", [
    ("", "has neither service port nor check port (add 'port <n>' for its checks)"),
    (" option tcp-check\n", "has neither service port nor check port (add 'port <n>' for its checks)"),
    (" option tcp-check\n tcp-check connect port 80\n", None),
    (" option tcp-check\n tcp-check connect addr 10.0.0.9:80\n", None),
    (" tcp-check connect port 80\n", "has neither service port nor check port (add"),  # no option tcp-check
    (" option tcp-check\n tcp-check send x\n tcp-check connect port 80\n",
     "nor 'tcp-check connect' rule with a port as first rule"),
    (" option tcp-check\n tcp-check connect port 80\n tcp-check connect\n",
     "and a 'tcp-check connect' rule has no port"),
])
def test_a_checked_server_without_port_needs_a_tcp_check_connect_with_one_as_in_haproxy(rules, error):
    text = PROLOGUE + "backend be\n" + rules + " server-template s 2 10.0.0.1 check\n"
    if error is None:
        assert [s.check for s in parse(text).backends["be"].servers] == [True, True]
    else:
        (message,) = errors_of(text)  # once for the line, not once per server of the template
        assert message.startswith(f"{text.count(chr(10))}: 'server': server 'be/s1': ")
        assert error in message


def test_a_port_in_defaults_tcp_check_rules_is_enough_for_servers_without_port():
    config = parse(PROLOGUE + " option tcp-check\n tcp-check connect port 81\n"
                   "backend be\n server s 10.0.0.1 check\n")
    assert config.backends["be"].tcp_check_rules[0].port == 81


@pytest.mark.parametrize("line, field, value", [
    ('tcp-check send "\\x80\\x00"', "data", b"\x80\x00"),  # \xHH escapes are bytes
    ("tcp-check send caf\u00e9\u20ac", "data", b"caf\xe9\xe2\x82\xac"),  # beyond latin-1: UTF-8
    ("tcp-check send-binary DEADbeef", "data", b"\xde\xad\xbe\xef"),
    ("tcp-check expect ! ! string x", "negate", False),  # each '!' toggles, as in HAProxy
    ("tcp-check expect !!string x", "negate", False),
    ("tcp-check expect !string x", "negate", True),
    ("tcp-check expect ok-status l7okc string x", "ok_status", "L7OKC"),  # statuses ignore case
    ("tcp-check expect min-recv -1 rstring a+", "min_recv", -1),
])
def test_tcp_check_values(line, field, value):
    config = parse(PROLOGUE + f"backend be\n option tcp-check\n {line}\n")
    assert getattr(config.backends["be"].tcp_check_rules[0], field) == value


# --- files and directories ---------------------------------------------------------------------------

def test_load_reads_files_and_directories_in_order(tmp_path):
    directory = tmp_path / "conf.d"
    directory.mkdir()
    (tmp_path / "00-global.cfg").write_text("global\n nbthread 2\ndefaults\n timeout client 7s\n")
    (directory / "20-backend.cfg").write_text("backend be\n server s 10.0.0.1:80\n")
    (directory / "10-frontend.cfg").write_text("frontend fe\n bind :1\n default_backend be\n")
    (directory / "ignored.conf").write_text("this is not read\n")
    (directory / ".hidden.cfg").write_text("nor is this\n")
    config = load([str(tmp_path / "00-global.cfg"), str(directory)])
    assert config.files == (str(tmp_path / "00-global.cfg"), str(directory / "10-frontend.cfg"),
                            str(directory / "20-backend.cfg"))
    assert config.global_.nbthread == 2
    assert config.frontends["fe"].timeouts.client == 7.0  # defaults carry across files
    assert config.frontends["fe"].default_backend == "be"  # references resolve across files


def test_each_file_starts_outside_any_section(tmp_path):
    (tmp_path / "a.cfg").write_text("global\n")
    (tmp_path / "b.cfg").write_text("nbthread 2\n")
    with pytest.raises(ConfigError) as info:
        load([str(tmp_path)])
    assert str(info.value) == f"{tmp_path}/b.cfg:1: 'nbthread': unknown keyword 'nbthread' out of section"


def test_errors_of_several_files_are_all_reported_in_order(tmp_path):
    (tmp_path / "a.cfg").write_text("global\n maxconn x\n")
    (tmp_path / "b.cfg").write_text("global\n nbthread y\n")
    with pytest.raises(ConfigError) as info:
        load([str(tmp_path / "b.cfg"), str(tmp_path / "a.cfg")])
    assert [(os.path.basename(e.file), e.line, e.keyword) for e in info.value.errors] == [
        ("b.cfg", 2, "nbthread"), ("a.cfg", 2, "maxconn")]


def test_a_missing_file_is_an_error_naming_it(tmp_path):
    with pytest.raises(ConfigError, match=r"missing\.cfg: cannot open configuration file"):
        load([str(tmp_path / "missing.cfg")])


def test_no_file_at_all_is_an_error(tmp_path):
    with pytest.raises(ConfigError, match="no configuration file"):
        load([str(tmp_path)])


def test_keywords_of_sections_fastproxy_skips_are_not_read():
    config = parse("resolvers dns\n nameserver ns 1.1.1.1:53\n bogus\n" + PROLOGUE)
    assert warnings_of(config) == [("1: 'resolvers': 'resolvers' sections are not supported by fastproxy; "
                                   "this section is skipped")]


def test_environment_corpus_file_reads_defaults_pseudo_variables_and_conditions():
    config = load_corpus("environment.cfg")
    assert config.global_.maxconn == 2000
    postgres = config.frontends["postgres"]
    assert [(b.host, b.port) for b in postgres.binds] == [("127.0.0.1", 15432), ("0.0.0.0", 15433),
                                                          ("0.0.0.0", 15434)]
    assert postgres.options["description"].startswith("postgres at ") and \
        postgres.options["description"].endswith("environment.cfg:13")
    assert [(s.name, s.port) for s in config.backends["postgres"].servers] == [("pg1", 5432), ("pg2", 5433)]


def test_dispatch_sends_every_connection_to_its_address_without_balance_as_haproxy():
    config = parse(PROLOGUE + "listen li\n bind :1\n dispatch 127.0.0.1:9000\n server s 127.0.0.1:9001\n")
    assert [(s.name, s.port) for s in config.backends["li"].servers] == [("dispatch", 9000)]
    config = parse(PROLOGUE + "listen li\n bind :1\n balance leastconn\n dispatch 127.0.0.1:9000\n"
                   " server s 127.0.0.1:9001\n")
    assert [s.name for s in config.backends["li"].servers] == ["s"]
    assert "dispatch address of proxy 'li' will be ignored in balance mode." in warnings_of(config)[-1]
    assert errors_of(PROLOGUE + "listen li\n bind :1\n dispatch 127.0.0.1\n") == [
        "8: 'dispatch': missing port specification in '127.0.0.1'"]
    assert errors_of(PROLOGUE + "backend be\n option transparent\n") == [
        "6: 'backend': backend 'be' has 'option transparent' and no server: HAProxy then connects to the "
        "client's original destination, which fastproxy does not do"]


# --- keywords that change routing: acted on, or refused (never only warned about) -------------------

def test_expect_proxy_and_address_rewrites_are_rules_and_services_are_refused():
    config = parse(PROLOGUE + "frontend fe\n bind :1\n"
                   " tcp-request connection expect-proxy layer4 if { src 127.0.0.2 }\n"
                   " default_backend be\nbackend be\n server s 127.0.0.1:9\n")
    rule = config.frontends["fe"].tcp_request_rules[0]
    assert (rule.phase, rule.action, rule.condition is not None) == ("connection", "expect-proxy", True)
    assert not warnings_of(config)
    errors = errors_of(PROLOGUE + "frontend fe\n bind :1\n"
                       " tcp-request connection expect-proxy\n"
                       " tcp-request content expect-proxy layer4\n"
                       " tcp-request content use-service prometheus-exporter\n"
                       " tcp-request content switch-mode http\n"
                       " tcp-request connection set-src\n"
                       " tcp-request content set-dst-port int(x)\n"
                       " default_backend be\nbackend be\n server s 127.0.0.1:9\n")
    assert [e.split(":", 1)[0] for e in errors] == ["8", "9", "10", "11", "12", "13"]
    assert "'tcp-request connection expect-proxy' only supports 'layer4' in frontend 'fe' (got '')" \
        in errors[0]
    assert "'expect-proxy layer4' is not allowed in 'tcp-request content' rules in frontend 'fe'" in errors[1]
    assert "runs no service in a TCP proxy" in errors[2]
    assert "does not process" in errors[3]
    assert errors[4].endswith("missing fetch method")
    assert "failed to parse 'x' as type 'integer'" in errors[5]
    refused = errors_of("resolvers dns\n nameserver a 127.0.0.1:53\n" + PROLOGUE + "frontend fe\n bind :1\n"
                        " tcp-request inspect-delay 1s\n"
                        " tcp-request content do-resolve(txn.ip,dns,ipv4) req.ssl_sni\n"
                        " tcp-request content send-spoe-group engine group\n"
                        " filter spoe engine engine config spoe.conf\n"
                        " default_backend be\nbackend be\n server s 127.0.0.1:9\n")
    assert [e.split(":", 1)[0] for e in refused] == ["11", "12", "13"]
    assert "resolves no name while a connection runs" in refused[0]
    assert "runs no SPOE agent" in refused[1] and "runs no SPOE agent" in refused[2]
    config = parse(PROLOGUE + "frontend fe\n bind :1\n tcp-request session set-src src,ipmask(24)\n"
                   " default_backend be\nbackend be\n server s 127.0.0.1:9\n")
    rule = config.frontends["fe"].tcp_request_rules[0]
    assert (rule.action, str(rule.sample)) == ("set-src", "src,ipmask(24)")


def test_track_names_a_checked_server_and_excludes_checks_as_haproxy_does():
    config = parse(PROLOGUE + "backend be\n server s1 127.0.0.1:9 check\n server s2 127.0.0.1:10 track s1\n"
                   "backend other\n server t 127.0.0.1:11 track be/s2\n")
    assert config.backends["be"].servers[1].track == "s1"
    assert config.backends["other"].servers[0].track == "be/s2"
    errors = errors_of(PROLOGUE + "backend be\n server s1 127.0.0.1:9 check\n"
                       " server s2 127.0.0.1:10 track s1 check\n"
                       " server s3 127.0.0.1:10 track s9\n"
                       " server s4 127.0.0.1:10 track s5\n"
                       " server s5 127.0.0.1:10\n"
                       " server s6 127.0.0.1:10 track nobe/s1\n"
                       " server s7 127.0.0.1:10 track s8\n"
                       " server s8 127.0.0.1:10 track s7\n")
    assert [e.split(":", 1)[0] for e in errors] == ["8", "9", "10", "12", "14"]
    assert "unable to enable checks and tracking at the same time!" in errors[0]
    assert "unable to find required server 's9' for tracking." in errors[1]
    assert "unable to use be/s5 for tracking as it does not have any check nor agent enabled." in errors[2]
    assert "unable to find required proxy 'nobe' for tracking." in errors[3]
    assert "unable to track be/s7 as it belongs to a tracking chain looping back to be/s8." in errors[4]


def test_server_settings_that_route_are_read_or_refused():
    config = parse(PROLOGUE + "backend be\n source 127.0.0.2\n"
                   " server s1 127.0.0.1:9 non-stick init-addr last,libc,none source 127.0.0.3:0\n"
                   " server s2 127.0.0.1:9 init-addr 10.0.0.1\n")
    backend = config.backends["be"]
    s1, s2 = backend.servers
    assert backend.source == ("127.0.0.2", 0)
    assert (s1.non_stick, s1.init_addr, s1.source) == (True, ("last", "libc", "none"), ("127.0.0.3", 0))
    assert s2.init_addr == ("10.0.0.1",)
    assert not warnings_of(config)
    errors = errors_of(PROLOGUE + "backend be\n"
                       " server s1 127.0.0.1:9 init-addr bogus\n"
                       " server s2 127.0.0.1:9 resolvers dns\n"
                       " server s3 127.0.0.1:9 source 127.0.0.2 usesrc clientip\n"
                       " source 127.0.0.2 usesrc client\n"
                       " source\n")
    assert [e.split(":", 1)[0] for e in errors] == ["7", "8", "9", "10", "11"]
    assert "unknown init-addr method 'bogus'" in errors[0]
    assert "DNS resolution while running" in errors[1]
    assert "transparent proxying" in errors[2] and "transparent proxying" in errors[3]


def test_retry_on_decides_whether_a_failed_connect_is_retried():
    def backend(line: str):
        return parse(PROLOGUE + f"backend be\n {line}\n server s 127.0.0.1:9\n").backends["be"]
    assert backend("retries 3").retry_on_conn_failure
    assert backend("retry-on conn-failure empty-response").retry_on_conn_failure
    assert backend("retry-on all-retryable-errors").retry_on_conn_failure
    assert not backend("retry-on none").retry_on_conn_failure
    assert not backend("retry-on empty-response 503").retry_on_conn_failure
    assert errors_of(PROLOGUE + "backend be\n retry-on none conn-failure\n retry-on bogus\n retry-on\n") == [
        "7: 'retry-on': 'retry-on' 'none' keyworld only usable alone",
        "8: 'retry-on': 'retry-on': unknown keyword 'bogus'",
        "9: 'retry-on': 'retry-on' needs at least one keyword to specify when to retry"]


def test_tcp_response_content_rules_are_refused_and_persist_rules_kept_in_order():
    errors = errors_of(PROLOGUE + "backend be\n tcp-response content accept if { src 1.2.3.4 }\n")
    assert errors[0].startswith("7: 'tcp-response content': fastproxy does not inspect what servers send")
    config = parse(PROLOGUE + "backend be\n ignore-persist if { src 1.2.3.4 }\n"
                   " force-persist if { src 1.2.3.0/24 }\n server s 127.0.0.1:9\n")
    assert [rule.force for rule in config.backends["be"].persist_rules] == [False, True]


def test_tls_files_of_a_server_must_exist_when_read_as_in_haproxy(tmp_path):
    ca = tmp_path / "ca.pem"
    ca.write_text("not checked here: loaded at start")
    config = parse(PROLOGUE + f"backend be\n server s1 127.0.0.1:9 check check-ssl ca-file {ca}\n")
    assert config.backends["be"].servers[0].ca_file == str(ca)
    assert errors_of(PROLOGUE + "backend be\n"
                     " server s1 127.0.0.1:9 check check-ssl ca-file /nonexistent.pem\n"
                     " server s2 127.0.0.1:9 check check-ssl verify none crt /nonexistent.pem\n") == [
        "7: 'server': server 'be/s1': Couldn't open the ca-file '/nonexistent.pem' (No such file or "
        "directory).",
        "8: 'server': server 'be/s2': unable to stat SSL certificate from file '/nonexistent.pem' : No "
        "such file or directory."]
