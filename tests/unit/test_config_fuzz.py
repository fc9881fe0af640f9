"""The configuration reader under fuzzing: whatever a file holds, ``load`` returns a ``Config`` or raises
``ConfigError`` whose every error names the file and the line, never anything else, and within a time
bound.  The inputs are what a hostile or careless hand makes of the corpus in ``tests/configs``: tokens
deleted, duplicated, swapped or replaced, random bytes, numbers thousands of digits long, unicode, very
long lines, deep ``.if`` nesting, directories of many files.

The time bound is a hang detector, generous so that CI under load does not flake: the reader's speed is
measured in bench/, not here.  Longer, coverage-guided runs: ``fuzz/`` (atheris).
"""

from __future__ import annotations

import re
import shutil
import time
from pathlib import Path
from typing import Optional

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fastproxy.config import load, parse_text
from fastproxy.config.haproxy.conditions import MAX_NESTED_BLOCKS
from fastproxy.config.model import Config
from fastproxy.errors import ConfigError

from ..support import fuzzed
from .test_config import BROKEN, HAPROXY, VALID, _haproxy_check

TIME_BOUND = 5.0  # seconds one input may take to be judged (a hang detector; see the module's text)

_CORPUS = {path: path.read_bytes() for path in VALID + BROKEN}
_CORPUS_TEXTS = [data.decode() for data in _CORPUS.values()]
_TOKENS = ["global", "defaults", "frontend", "backend", "listen", "bind", "server", "default-server",
           "timeout", "connect", "client", "mode", "tcp", "http", "balance", "hash", "random(2)", "acl",
           "use_backend", "default_backend", "if", "unless", "!", "||", "or", "{", "}", "src", "dst_port",
           "req.ssl_sni", "-i", "-m", "reg", "dom", "-f", "--", "option", "no", "tcp-request", "content",
           "connection", "accept", "reject", "inspect-delay", "from", ":80", "[::1]:80", "::1", "*:1-3",
           "ipv6@", "1.2.3.4", "0", "-1", "99999999999999999999", "5s", "1d", "16k", '"', "'", "\\",
           "\\x4", "${", "$", "#", ".if", ".endif", ".else", "weight", "check", "port", "addr", "id",
           "server-template", "1-3", "(", ")", "%[src]", ",", ":", "@", "\t", "", "\x00", "é", "\u200b",
           "tcp-check", "expect", "send", "send-binary", "rstring", "binary", "string", "min-recv", "observe",
           "layer4", "on-error", "ff", "0g", "spread-checks", "log", "stdout", "format", "raw", "len",
           "sample", "stats", "socket", "level", "maxconn", "nbthread", "retries", "fullconn", "backlog"]
_NUMBER = re.compile(rb"(?<![0-9A-Za-z])[0-9]+")

# Words a careless or hostile hand puts in a file.
huge_numbers = st.integers(20, 6000).map(lambda digits: "9" * digits) | st.integers(min_value=2**63).map(str)
unicode_words = st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\n"),
                        min_size=1, max_size=12)
words = st.sampled_from(_TOKENS) | huge_numbers | unicode_words


def judged(paths: list[str], texts: dict[str, int]) -> Optional[Config]:
    """``load(paths)``, held to the properties: a Config, or a ConfigError whose errors each name one of
    the files read and a line within it (``texts``: each file's count of lines), in the time bound."""
    started = time.monotonic()
    try:
        config: Optional[Config] = load(paths)
    except ConfigError as exc:
        assert exc.errors
        for error in exc.errors:
            assert error.file in texts, str(error)
            assert error.line is not None and 1 <= error.line <= texts[error.file] + 1, str(error)
        config = None
    assert time.monotonic() - started < TIME_BOUND
    return config


def judged_text(text: str) -> Optional[Config]:
    """``parse_text``, held to the same properties."""
    started = time.monotonic()
    try:
        config: Optional[Config] = parse_text(text, environ={})
    except ConfigError as exc:
        assert exc.errors and all(e.file == "<string>" and e.line for e in exc.errors)
        config = None
    assert time.monotonic() - started < TIME_BOUND
    return config


@pytest.fixture(scope="module")
def scratch(tmp_path_factory) -> Path:
    """A directory the examples write their files in (Hypothesis runs many examples per test)."""
    return tmp_path_factory.mktemp("fuzz")


def judged_file(scratch: Path, data: bytes) -> Optional[Config]:
    path = scratch / "fuzzed.cfg"
    path.write_bytes(data)
    return judged([str(path)], {str(path): data.count(b"\n") + 1})


# --- text: random, keyword soup, mutated corpus files ---------------------------------------------------

@fuzzed(200)
@given(st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=400))
def test_random_text_only_ever_raises_configerror(text):
    judged_text(text)


@fuzzed(200)
@given(st.lists(st.lists(st.sampled_from(_TOKENS), max_size=8).map(" ".join), max_size=30))
def test_random_keyword_soup_only_ever_raises_configerror(lines):
    judged_text("\n".join(lines))


@st.composite
def mutated_corpus_file(draw) -> bytes:
    """A corpus file with a few of its lines or tokens deleted, duplicated, swapped or replaced."""
    lines = draw(st.sampled_from(_CORPUS_TEXTS)).splitlines()
    for _ in range(draw(st.integers(1, 6))):
        if not lines:
            break
        index = draw(st.integers(0, len(lines) - 1))
        other = draw(st.integers(0, len(lines) - 1))
        tokens, others = lines[index].split(" "), lines[other].split(" ")
        kind = draw(st.sampled_from(["delete_line", "duplicate_line", "swap_lines", "truncate_line",
                                     "delete_token", "duplicate_token", "swap_tokens", "replace_token",
                                     "insert_token"]))
        at = draw(st.integers(0, len(tokens) - 1))
        if kind == "delete_line":
            del lines[index]
        elif kind == "duplicate_line":
            lines.insert(index, lines[index])
        elif kind == "swap_lines":
            lines[index], lines[other] = lines[other], lines[index]
        elif kind == "truncate_line":
            lines[index] = lines[index][:draw(st.integers(0, len(lines[index])))]
        elif kind == "delete_token":
            del tokens[at]
        elif kind == "duplicate_token":
            tokens.insert(at, tokens[at])
        elif kind == "swap_tokens":  # with a token of another line (the same line when other == index)
            there = draw(st.integers(0, len(others) - 1))
            tokens[at], others[there] = others[there], tokens[at]
            if other != index:
                lines[other] = " ".join(others)
        elif kind == "replace_token":
            tokens[at] = draw(words)
        else:
            tokens.insert(at, draw(words))
        if kind.endswith("token") or kind == "swap_tokens":
            lines[index] = " ".join(tokens)
    return ("\n".join(lines) + draw(st.sampled_from(["\n", ""]))).encode("utf-8", "surrogateescape")


@fuzzed(250)
@given(mutated_corpus_file())
def test_mutated_corpus_files_load_or_raise_configerror_naming_file_and_line(scratch, data):
    config = judged_file(scratch, data)
    if config is not None:
        for frontend in config.frontends.values():
            assert all(1 <= b.port <= 65535 for b in frontend.binds)


@fuzzed(100)
@given(st.sampled_from(sorted(_CORPUS)), st.data())
def test_random_bytes_anywhere_in_a_corpus_file(scratch, path, data):
    original = _CORPUS[path]
    at = data.draw(st.integers(0, len(original)))
    cut = data.draw(st.integers(0, 40))
    judged_file(scratch, original[:at] + data.draw(st.binary(max_size=64)) + original[at + cut:])


@fuzzed(100)
@given(st.sampled_from([path for path, data in sorted(_CORPUS.items()) if _NUMBER.search(data)]), st.data())
def test_any_number_of_the_corpus_made_huge(scratch, path, data):
    """Thousands of digits where a number was: a timeout, a port, a weight, an id, a .if condition."""
    original = _CORPUS[path]
    numbers = list(_NUMBER.finditer(original))
    chosen = data.draw(st.lists(st.sampled_from(numbers), min_size=1, max_size=3,
                                unique_by=lambda match: match.start()))
    mutated = original
    for match in sorted(chosen, key=lambda m: m.start(), reverse=True):
        mutated = mutated[:match.start()] + data.draw(huge_numbers).encode() + mutated[match.end():]
    judged_file(scratch, mutated)


@fuzzed(20)
@given(st.sampled_from(sorted(_CORPUS)), st.data(), st.integers(10_000, 1_000_000),
       st.sampled_from(["x", "9", "é", "(", "\\", '"', " ", "${A}"]))
def test_very_long_lines(scratch, path, data, length, unit):
    lines = _CORPUS[path].split(b"\n")
    index = data.draw(st.integers(0, len(lines) - 1))
    lines[index] += b" " + (unit * (length // len(unit))).encode()
    judged_file(scratch, b"\n".join(lines))


# --- .if nesting ----------------------------------------------------------------------------------------

conditions = st.sampled_from(["1", "0", "defined(HOME)", "!0", "streq(a,a)", "1 && 0", "(1 || 0)",
                              "version_atleast(2.6)", "9" * 5000, "(" * 300 + "1" + ")" * 300])


@fuzzed(60)
@given(st.lists(conditions, min_size=1, max_size=150), st.sampled_from([".endif", ".else\n.endif"]))
def test_nested_if_blocks_up_to_haproxys_limit(conditions, closing):
    """HAProxy (cfgparse.c, MAXNESTEDCONDS) refuses the 100th '.if' open at once and reads no further."""
    text = "".join(f".if {condition}\n" for condition in conditions) + "frontend fe\n" + \
        "".join(f"{closing}\n" for _ in conditions) + "global\n    bogus\n"
    started = time.monotonic()
    with pytest.raises(ConfigError) as info:
        parse_text(text, environ={})
    assert time.monotonic() - started < TIME_BOUND
    errors = [str(e) for e in info.value.errors]
    if len(conditions) >= MAX_NESTED_BLOCKS:
        assert errors[0] == f"<string>:{MAX_NESTED_BLOCKS}: '.if': too many nested '.if', max is 100."
        assert not any("bogus" in error for error in errors)  # the rest of the file is not read
    else:
        assert not any("nested" in error for error in errors)
        assert any("unknown keyword 'bogus'" in error for error in errors)


def test_ten_thousand_nested_if_blocks_stop_at_the_hundredth():
    text = ".if 1\n" * 10_000 + ".endif\n" * 10_000
    started = time.monotonic()
    with pytest.raises(ConfigError) as info:
        parse_text(text, environ={})
    assert time.monotonic() - started < TIME_BOUND
    assert [str(e) for e in info.value.errors] == [
        "<string>:100: '.if': too many nested '.if', max is 100."]


@pytest.mark.skipif(HAPROXY is None, reason="haproxy is not installed")
@pytest.mark.parametrize("depth, skipped", [(99, False), (100, False), (100, True), (150, False)])
def test_nesting_is_judged_as_haproxy_judges_it(tmp_path, depth, skipped):
    path = tmp_path / "nested.cfg"
    outer = ".if 0\n" if skipped else ""
    path.write_text(outer + ".if 1\n" * (depth - bool(skipped)) + ".endif\n" * depth + "global\n    bogus\n")
    status, theirs = _haproxy_check(path)
    try:
        load([str(path)])
        ours: set[int] = set()
    except ConfigError as exc:
        ours = {e.line or 0 for e in exc.errors}
    assert ours == theirs and status != 0


# --- directories of many files ---------------------------------------------------------------------------

def _sections(text: str) -> list[str]:
    """A file cut before each section header (a line starting in column 0 that is not a comment)."""
    parts: list[list[str]] = [[]]
    for line in text.splitlines(keepends=True):
        if line[:1].isalpha() and parts[-1]:
            parts.append([])
        parts[-1].append(line)
    return ["".join(part) for part in parts]


# Corpus files that read the same cut into pieces: no .if block or pseudo-variable spans the cuts.
_CUTTABLE = [path for path in VALID if not re.search(r"\.FILE|\.LINE|^\s*\.if", path.read_text(), re.M)]


def _summary(config: Config) -> tuple:
    return ({name: [(b.host, b.port) for b in fe.binds] for name, fe in config.frontends.items()},
            {name: [(s.name, s.host, s.port, s.weight) for s in be.servers]
             for name, be in config.backends.items()})


@fuzzed(25)
@given(st.sampled_from(_CUTTABLE), st.integers(0, 200), st.data())
def test_a_directory_of_many_files_reads_as_the_file_they_were_cut_from(scratch, path, padding, data):
    """A valid corpus file cut into one file per section, with empty and comment-only files, hidden and
    non-.cfg files of garbage between them: the directory reads as the file did."""
    directory = scratch / "many"
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir()
    parts = _sections(path.read_text())
    fillers = padding // max(len(parts), 1)
    texts: dict[str, int] = {}
    number = 0
    for part in parts:
        for _ in range(fillers):
            filler = directory / f"{number:05d}.cfg"
            filler.write_text(data.draw(st.sampled_from(["", "# nothing\n", "\n\n"])))
            texts[str(filler)] = 3
            number += 1
        part_path = directory / f"{number:05d}.cfg"
        part_path.write_text(part)
        texts[str(part_path)] = part.count("\n") + 1
        number += 1
    garbage = data.draw(st.binary(min_size=1, max_size=200))
    (directory / ".hidden.cfg").write_bytes(garbage)
    (directory / "notes.txt").write_bytes(garbage)
    (directory / "sub.cfg").mkdir()  # a directory named *.cfg is no file to read
    whole = load([str(path)])
    config = judged([str(directory)], texts)
    assert config is not None and _summary(config) == _summary(whole)
    assert len(config.files) == len(texts)


@fuzzed(25)
@given(st.lists(st.binary(max_size=100) | mutated_corpus_file(), min_size=1, max_size=60))
def test_a_directory_of_fuzzed_files_names_the_file_of_each_error(scratch, contents):
    directory = scratch / "fuzzed"
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir()
    texts = {}
    for index, content in enumerate(contents):
        path = directory / f"{index:03d}.cfg"
        path.write_bytes(content)
        texts[str(path)] = content.count(b"\n") + 1
    judged([str(directory)], texts)


# --- crashes found, kept as examples ---------------------------------------------------------------------

def test_a_log_line_whose_settings_take_every_word_names_no_facility_and_is_an_error():
    # Found by the corpus mutation test: it raised IndexError instead of a ConfigError.  The words are
    # haproxy -c's ("parsing [t.cfg:2] : log : unknown log facility ''").
    with pytest.raises(ConfigError) as info:
        parse_text("global\n    log stdout format raw\n", filename="t.cfg")
    assert [str(e) for e in info.value.errors] == ["t.cfg:2: 'log': unknown log facility ''"]


def test_a_condition_thousands_of_digits_long_is_read_as_haproxy_reads_it():
    # int() refuses more than 4300 digits (ValueError); HAProxy's strtol() saturates, and only "is it
    # zero" matters to a condition.
    for digits, chosen in (("9" * 5000, True), ("0" * 5000, False), ("0x" + "0" * 5000 + "1", True)):
        config = parse_text(f".if {digits}\nglobal\n    maxconn 7\n.endif\n", environ={})
        assert (config.global_.maxconn == 7) is chosen


_HUGE = "9" * 5000
_BASE = """\
defaults
    mode tcp
    timeout connect 5s
    timeout client 5s
    timeout server 5s
frontend fe
    bind 127.0.0.1:12801
    default_backend be
backend be
    server s1 127.0.0.1:20001
"""
# Each keyword given a number thousands of digits long, in a section of its own after _BASE; {n} is the
# number.  Python's int() refuses more than 4300 digits (ValueError: Exceeds the limit): it must be a
# ConfigError at its line.
_HUGE_SECTIONS = {
    "global": "global\n    {line}\n",
    "frontend": "frontend f2\n    bind 127.0.0.1:12802\n    {line}\n    default_backend be\n",
    "backend": "backend b2\n    {line}\n    server s2 127.0.0.1:20002\n",
    "server": "backend b2\n    server s2 127.0.0.1:20002 {line}\n",
}
_HUGE_LINES = [
    ("global", "maxconn {n}"), ("global", "maxconnrate {n}"), ("global", "nbthread {n}"),
    ("global", "maxpipes {n}"), ("global", "spread-checks {n}"), ("global", "hard-stop-after {n}"),
    ("global", "stats timeout {n}"), ("global", "stats maxconn {n}"), ("global", "uid {n}"),
    ("global", "log 127.0.0.1:514 len {n} local0"),
    ("frontend", "maxconn {n}"), ("frontend", "backlog {n}"), ("frontend", "timeout client {n}"),
    ("frontend", "rate-limit sessions {n}"), ("frontend", "bind 127.0.0.1:{n}"),
    ("frontend", "bind 127.0.0.1:12803 backlog {n}"), ("frontend", "id {n}"),
    ("backend", "retries {n}"), ("backend", "fullconn {n}"), ("backend", "timeout server {n}"),
    ("backend", "hash-balance-factor {n}"), ("backend", "id {n}"),
    ("backend", "server-template t {n} 127.0.0.1:20003"),
    ("backend", "server-template t 1-{n} 127.0.0.1:20003"), ("backend", "stick-table type ip size {n}"),
    ("server", "weight {n}"), ("server", "id {n}"), ("server", "maxconn {n}"), ("server", "maxqueue {n}"),
    ("server", "check port {n}"), ("server", "check inter {n}"), ("server", "check rise {n}"),
    ("server", "slowstart {n}"), ("server", "agent-port {n}"),
]
# Lines haproxy -c accepts (its atol() keeps what fits in a C int: -1 here, or strtol's saturated
# maximum), where fastproxy refuses a number it cannot hold.  Both accept "log ... sample 1:<n>" and
# "stick-table type string len <n>" (the fuzzing properties cover them: no crash).
_HAPROXY_TAKES_HUGE = {
    ("global", "maxconn {n}"), ("global", "maxconnrate {n}"), ("global", "maxpipes {n}"),
    ("global", "uid {n}"), ("frontend", "maxconn {n}"), ("frontend", "backlog {n}"),
    ("frontend", "rate-limit sessions {n}"), ("backend", "retries {n}"), ("backend", "fullconn {n}"),
    ("server", "maxconn {n}"), ("server", "maxqueue {n}"), ("server", "check port {n}"),
    ("server", "agent-port {n}")}


@pytest.mark.parametrize("section, line", _HUGE_LINES, ids=lambda value: value.split(" {")[0])
def test_a_number_thousands_of_digits_long_is_an_error_on_its_line(tmp_path, section, line):
    path = tmp_path / "huge.cfg"
    path.write_text(_BASE + _HUGE_SECTIONS[section].format(line=line.format(n=_HUGE)))
    number = _BASE.count("\n") + (3 if section == "frontend" else 2)
    with pytest.raises(ConfigError) as info:
        load([str(path)])
    assert [e.line for e in info.value.errors] == [number], str(info.value)
    assert len(str(info.value.errors[0])) < 400  # the number is not printed whole
    if HAPROXY is not None:
        _, theirs = _haproxy_check(path)
        assert (number in theirs) == ((section, line) not in _HAPROXY_TAKES_HUGE), theirs


# Every number of content_inspection.cfg in turn made 5000 digits long: its sample arguments
# (req.payload(0,3)), its patterns (-m bin 160301, gt 1024, req_ssl_ver's 3.1), its ports and times.
# Each is judged as haproxy -c judges it: a fetch's argument is read saturated (read_int64) and the
# file is valid, a pattern or a time past its type is an error at that line (and at the rules naming
# the ACL) -- never Python's ValueError of int() past 4300 digits.
_INSPECTION = Path(__file__).parent.parent / "configs" / "valid" / "content_inspection.cfg"
_INSPECTION_TEXT = _INSPECTION.read_text()
_INSPECTION_NUMBERS = [(_INSPECTION_TEXT[:match.start()].count("\n") + 1, match.start(), match.end())
                       for match in re.finditer(r"(?<![0-9A-Za-z])[0-9]+", _INSPECTION_TEXT)
                       if not _INSPECTION_TEXT[:match.start()].rsplit("\n", 1)[-1].lstrip().startswith("#")]
_INSPECTION_TAKES_HUGE = {12, 17, 19, 20, 21}  # the lines whose number is a fetch's argument or a bin pattern


@pytest.mark.parametrize("number, start, end", _INSPECTION_NUMBERS,
                         ids=[f"line{number}-at{start}" for number, start, _ in _INSPECTION_NUMBERS])
def test_each_number_of_content_inspection_made_huge_is_judged_as_haproxy(tmp_path, number, start, end):
    path = tmp_path / "huge.cfg"
    path.write_text(_INSPECTION_TEXT[:start] + _HUGE + _INSPECTION_TEXT[end:])
    try:
        load([str(path)])
        ours: set[int] = set()
    except ConfigError as exc:
        ours = {error.line for error in exc.errors if error.line is not None}
    assert (number in ours) == (number not in _INSPECTION_TAKES_HUGE), ours
    if HAPROXY is not None:
        assert ours == _haproxy_check(path)[1]


# Rule and sample arguments read as numbers, each given 5000 digits in a frontend: haproxy -c's
# verdict (None: valid; else the message's start), fastproxy's the same.
_HUGE_RULE_LINES = [
    ("tcp-request content set-tos {n}", None),
    ("tcp-request content set-mark 0x{n}", None),
    ("tcp-request content set-tos -{n}", None),
    ("acl a int({n}) -m found", None),
    ("acl a req.payload(0,{n}) -m found", None),
    ("acl a req.payload({n},1) -m found", None),
    ("acl a req.payload_lv(3,{n}) -m found", None),
    ("acl a sc_get_gpc({n},0) -m found", None),
    ("acl a req.payload_lv(3,2,{n}) -m found", "payload offset2 too negative"),
    ("acl a req.len gt {n}", "is neither a number nor a supported operator"),
    ("acl a req.len 1:{n}", "is not a valid number range"),
    ("acl a req_ssl_ver ge {n}.1", "contains too large a major value"),
    ("acl a req_ssl_ver ge 3.{n}", "contains too large a minor value"),
    ("tcp-request content capture src len {n}", "length must be > 0"),
]


@pytest.mark.parametrize("line, refusal", _HUGE_RULE_LINES, ids=[line for line, _ in _HUGE_RULE_LINES])
def test_a_rule_argument_thousands_of_digits_long_is_read_as_haproxy_reads_it(tmp_path, line, refusal):
    path = tmp_path / "huge.cfg"
    path.write_text("defaults\n mode tcp\n timeout connect 2s\n timeout client 5s\n timeout server 5s\n"
                    "frontend fe\n bind 127.0.0.1:12801\n tcp-request inspect-delay 1s\n"
                    f" {line.format(n=_HUGE)}\n default_backend b\nbackend b\n server s 127.0.0.1:1\n")
    try:
        load([str(path)])
        errors: list[str] = []
    except ConfigError as exc:
        assert [error.line for error in exc.errors] == [9], str(exc)
        errors = [str(error) for error in exc.errors]
    assert (errors == []) == (refusal is None), errors
    if refusal is not None:
        assert refusal in errors[0]
    if HAPROXY is not None:
        assert _haproxy_check(path)[1] == ({9} if refusal else set())


@pytest.mark.parametrize("argument, value", [(_HUGE, -1), ("-" + _HUGE, 0), ("0x" + "f" * 5000, -1),
                                             ("0x100000001", 1), ("010", 8)])
def test_set_tos_keeps_what_haproxys_strtol_hands_the_socket_as_a_c_int(argument, value):
    config = parse_text("defaults\n mode tcp\nfrontend fe\n bind 127.0.0.1:12801\n"
                        f" tcp-request connection set-tos {argument}\n default_backend b\n"
                        "backend b\n server s 127.0.0.1:1\n", environ={})
    assert [rule.value for rule in config.frontends["fe"].tcp_request_rules] == [value]
