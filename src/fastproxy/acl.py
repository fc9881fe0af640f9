"""ACLs and conditions: HAProxy's layer-4 criteria, parsed from words and evaluated over a ``ConnInfo``.

This module is sans-IO: it reads no file and opens no socket.  The configuration reader calls
``parse_acl`` and ``parse_condition`` to turn the words of ``acl`` lines and ``if``/``unless`` clauses
into the model's ``Acl`` and ``Condition`` (raising ``AclError`` with HAProxy-like messages), and the
engine builds one ``Router`` per frontend to decide, for each connection, whether it is accepted
(``tcp-request connection|session|content`` rules) and which backend takes it (``use_backend``,
``default_backend``).

Supported criteria are the samples of ``fastproxy.samples`` (the layer-4 addresses and ports, the
TLS ClientHello, the client's first bytes: ``req.payload``, ``req.len``, ``req.proto_http``...) with
their converters.  Flags: ``-i``, ``-m <method>`` (``str beg end sub reg dom len found bool int ip
bin``), ``-n``, ``-u <id>``, ``--`` (``-f <file>`` is read by the configuration reader, which passes the
values in).  Integer patterns take ``a:b`` ranges and the ``eq ge gt le lt`` operators (``req.ssl_ver``
dotted versions such as ``3.1``); IP patterns take addresses and networks (``/len`` or dotted masks),
IPv4 and IPv6, matching IPv4-mapped IPv6 addresses as HAProxy does; ``-m bin`` patterns are hex.
HAProxy's predefined ACLs that mean something on a TCP stream are known (``TRUE``, ``FALSE``,
``LOCALHOST``, ``HTTP``, ``HTTP_1.0``.., ``METH_*``, ``HTTP_URL_*``, ``RDP_COOKIE``, ``REQ_CONTENT``,
``WAIT_END``); ``HTTP_CONTENT`` (a header's value) is refused.

Evaluation is three-valued as HAProxy's (acl_exec_cond): an ACL passes, fails, or misses when its
sample is not there yet or may still change (``req.len``, a ClientHello cut short) while more bytes
may come (the connection's ``final`` is false).  ``Router.accept_content`` answers None then, and the
engine peeks again until the rules decide or ``tcp-request inspect-delay`` is over; ``!`` keeps a miss
a miss.  ``use_backend`` rules are evaluated once the content rules decided, on what arrived, as final.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import re
import socket
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, Optional, Union

from . import c_integers, logformat, samples, variables
from .config.model import Acl, Backend, Condition, Frontend, Location, Sample, TcpRequestRule
from .errors import ConfigError

__all__ = ["CONTENT_FETCHES", "FAIL", "MISS", "PASS", "AclError", "ConnInfo", "Router",
           "evaluate", "parse_acl", "parse_condition"]


class AclError(ConfigError, ValueError):
    """An ACL or a condition that cannot be parsed; the message says what was expected.

    A ``ConfigError`` (the reader adds the file, line and keyword when it reports it), and still the
    ``ValueError`` it always was, for callers that catch that."""


@dataclass(frozen=True)
class ConnInfo:
    """What a rule may look at for one client connection."""

    src: str
    src_port: int
    dst: str
    dst_port: int
    sni: Optional[str] = None
    hello_type: Optional[int] = None  # the TLS handshake type of the first record: 1 for a ClientHello
    ssl_hello_seen: bool = False  # the engine has looked at the client's first bytes (within inspect-delay)
    request: bytes = b""  # the bytes the client sent so far (peeked: still in its receive queue)
    final: bool = True  # no more bytes will be waited for: samples are final (HAProxy's SMP_OPT_FINAL)
    hello_pending: bool = False  # ``request`` is the start of a ClientHello not whole yet
    alpn: tuple[str, ...] = ()  # the ClientHello's ALPN protocol names, in its order
    hello_extensions: Optional[tuple[int, ...]] = None  # the ClientHello's extension types
    counters: Any = None  # the connection's stick counters (``tracking.Tracker``), read by sc_*/src_*
    tls: Any = None  # what its bind's TLS termination gave (``tls.TlsFacts``), read by ssl_fc_*/ssl_c_*
    # What ``set-src``/``set-dst`` rules changed ({"src": ..., "dst_port": ...}), for the session to take
    # on; shared by the copies of one connection's info (None: nobody takes them on).
    rewritten: Optional[dict] = None
    variables: Any = None  # its variables (``variables.Variables``), shared by the copies of its info
    captures: Optional[list] = None  # its request capture slots (``tcp-request content capture``), shared


# --- samples ------------------------------------------------------------------------------------------
# The fetches and converters are fastproxy.samples'; here, a sample's value as ACLs match it.

_IP, _INT, _STR, _BOOL = samples.IP, samples.INT, samples.STR, samples.BOOL
Address = Union[ipaddress.IPv4Address, ipaddress.IPv6Address]


def _address(text: Optional[str]) -> Optional[Address]:
    if not text:
        return None
    try:
        return ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        return None


CONTENT_FETCHES = samples.CONTENT
"""Fetches that read what the client sends: a rule using one makes the engine peek within inspect-delay."""

# HAProxy's predefined ACLs (its acl.c default_acl_list), each a fetch and its patterns.
PREDEFINED: dict[str, tuple[Sample, tuple[str, ...]]] = {
    "TRUE": (Sample("always_true"), ()),
    "FALSE": (Sample("always_false"), ()),
    "LOCALHOST": (Sample("src"), ("127.0.0.1/8", "::1")),
    "HTTP": (Sample("req.proto_http"), ()),
    "HTTP_1.0": (Sample("req.ver"), ("1.0",)),
    "HTTP_1.1": (Sample("req.ver"), ("1.1",)),
    "HTTP_2.0": (Sample("req.ver"), ("2.0",)),
    "HTTP_3.0": (Sample("req.ver"), ("3.0",)),
    "METH_CONNECT": (Sample("method"), ("CONNECT",)),
    "METH_DELETE": (Sample("method"), ("DELETE",)),
    "METH_GET": (Sample("method"), ("GET", "HEAD")),
    "METH_HEAD": (Sample("method"), ("HEAD",)),
    "METH_OPTIONS": (Sample("method"), ("OPTIONS",)),
    "METH_POST": (Sample("method"), ("POST",)),
    "METH_PUT": (Sample("method"), ("PUT",)),
    "METH_TRACE": (Sample("method"), ("TRACE",)),
    "HTTP_URL_ABS": (Sample("url"), ("-m", "reg", "^[^/:]*://")),
    "HTTP_URL_SLASH": (Sample("url"), ("-m", "beg", "/")),
    "HTTP_URL_STAR": (Sample("url"), ("*",)),
    "RDP_COOKIE": (Sample("req.rdp_cookie_cnt"), ("gt", "0")),
    "REQ_CONTENT": (Sample("req.len"), ("gt", "0")),
    "WAIT_END": (Sample("wait_end"), ()),
}
# Predefined ACLs reading what fastproxy does not parse; ignoring one would change routing.
_PREDEFINED_UNSUPPORTED = {
    "HTTP_CONTENT": "it reads the request's Content-Length header, which fastproxy does not parse",
}


def predefined(name: str, location: Optional[Location] = None) -> Acl:
    """HAProxy's predefined ACL ``name`` (one of PREDEFINED) as an ``Acl``."""
    criterion, words = PREDEFINED[name]
    flags: tuple[str, ...] = ()
    if words[:1] == ("-m",):
        flags, words = words[:2], words[2:]
    return Acl(name=name, criterion=criterion, values=words, flags=flags, location=location or Location())


def _sample_type(sample: Sample) -> str:
    """The type of the ACL's sample, raising AclError for one fastproxy cannot evaluate."""
    try:
        samples.check(sample)
    except samples.SampleError as exc:
        raise AclError(exc.message) from None
    return samples.type_of(sample)


# --- parsing ------------------------------------------------------------------------------------------

_BIN = samples.BIN
_METHODS = {"str", "beg", "end", "sub", "reg", "dom", "len", "found", "bool", "int", "ip", "bin"}
_METHODS_BY_KIND = {
    _IP: {"ip", "found", "str", "beg", "end", "sub", "reg", "dom", "len"},
    _INT: {"int", "found", "bool", "str", "beg", "end", "sub", "reg", "dom", "len"},
    _STR: {"str", "beg", "end", "sub", "reg", "dom", "len", "found", "bin"},
    _BIN: {"bin", "str", "beg", "end", "sub", "reg", "dom", "len", "found"},
    _BOOL: {"bool", "found"},
    samples.ANY: _METHODS,
}
# Fetches whose integer patterns, with their default method, are dotted versions (``3.1``).
_DOTTED_VERSIONS = frozenset({"req.ssl_ver", "req_ssl_ver"})
_FLAGS_WITH_ARGUMENT = {"-m", "-u", "-f", "-M"}


def split_acl_words(words: Sequence[str]) -> tuple[str, list[str], list[str], list[str]]:
    """The words after ``acl <name>`` -> (criterion, flags, values, pattern files).

    Flags come before values, as in HAProxy: a ``-i`` after a value is a value.  ``-f <file>``
    names a pattern file; reading it is the caller's job.
    """
    if not words:
        raise AclError("missing fetch method in ACL expression")
    criterion, rest = words[0], list(words[1:])
    flags: list[str] = []
    files: list[str] = []
    while rest and rest[0].startswith("-"):
        flag = rest.pop(0)
        if flag == "--":
            flags.append(flag)  # kept: it also says "no pattern is intended" (no warning then)
            break
        if flag in _FLAGS_WITH_ARGUMENT:
            if not rest:
                if flag == "-m":
                    raise AclError("unknown matching method '' when parsing ACL expression")
                raise AclError(f"'{flag}' expects an argument")
            argument = rest.pop(0)
            if flag == "-f":
                files.append(argument)
            elif flag == "-M":
                raise AclError("'-M' (map files as patterns) is not supported by fastproxy")
            else:
                flags += [flag, argument]
        elif flag in ("-i", "-n"):
            flags.append(flag)
        else:
            raise AclError(f"'{flag}' is not a valid ACL option. Please use '--' before any pattern "
                           "beginning with a '-'")
    return criterion, flags, rest, files


PatternReader = Callable[[str], Sequence[str]]
"""Reads a ``-f`` pattern file into its patterns; supplied by the configuration reader (I/O lives there)."""


def parse_acl(name: str, words: Sequence[str], *, read_patterns: Optional[PatternReader] = None,
              location: Optional[Location] = None) -> Acl:
    """Parse and validate ``acl <name> <words...>`` (the words after the name) into an ``Acl``."""
    criterion, flags, values, files = split_acl_words(words)
    for path in files:
        if read_patterns is None:
            raise AclError("'-f' pattern files can only be used when reading configuration files")
        values += read_patterns(path)
    try:
        sample = samples.parse(criterion)
    except samples.SampleError as exc:
        raise AclError(exc.message) from None
    acl = Acl(name=name, criterion=sample, values=tuple(values), flags=tuple(flags),
              location=location or Location())
    compile_acl(acl)
    return acl


def acl_has_no_pattern(acl: Acl) -> bool:
    """True for an ACL that can never match (no pattern, no ``-m found``): HAProxy warns about those."""
    kind = _sample_type(acl.criterion)
    return not acl.values and "--" not in acl.flags and _method_of(acl, kind) not in ("found", "bool")


def _method_of(acl: Acl, kind: str) -> str:
    method = kind  # HAProxy's default matching method of a sample type has the type's name
    flags = list(acl.flags)
    for i, flag in enumerate(flags[:-1]):
        if flag == "-m":
            method = flags[i + 1]
    return method


# --- compiled tests -----------------------------------------------------------------------------------

Test = Callable[[ConnInfo], bool]
# HAProxy's three results (enum acl_test_res), valued so that AND is ``&`` and OR is ``|``.
FAIL, MISS, PASS = 0, 1, 3
Verdict = Callable[[ConnInfo], int]
_NEGATION = {FAIL: PASS, MISS: MISS, PASS: FAIL}
_INT_OPERATORS = {"eq", "ge", "gt", "le", "lt"}
_DOMAIN_DELIMITERS = "/?.:"


def int_patterns(values: Sequence[str]) -> list[tuple[Optional[int], Optional[int]]]:
    """HAProxy's integer patterns: ``n``, ``a:b``, ``a:``, ``:b``, and operators applying to what follows."""
    ranges: list[tuple[Optional[int], Optional[int]]] = []
    operator = "eq"
    for value in values:
        if value in _INT_OPERATORS:
            operator = value
            continue
        if ":" in value and operator == "eq":
            low_text, high_text = value.split(":", 1)
            low = _integer(low_text, value, "is not a valid number range") if low_text else None
            high = _integer(high_text, value, "is not a valid number range") if high_text else None
            if low is not None and high is not None and low > high:
                raise AclError(f"'{value}' is not a valid number range.")
            ranges.append((low, high))
            continue
        number = _integer(value, value)
        ranges.append({
            "eq": (number, number), "ge": (number, None), "gt": (number + 1, None),
            "le": (None, number), "lt": (None, number - 1),
        }[operator])
    return ranges


def _integer(text: str, value: str, outside: str = "is neither a number nor a supported operator") -> int:
    """A pattern's integer: HAProxy's strl2llrc() refuses one past a C ``long long``'s ends (read through
    ``c_integers``: ``int()`` would raise on 4300 digits)."""
    if not re.fullmatch(r"-?[0-9]+", text):
        raise AclError(f"'{value}' is not a number.")
    if not c_integers.within_long(text):
        raise AclError(f"'{value}' {outside}.")
    return c_integers.signed(text)


def _dotted_versions(values: Sequence[str]) -> list[str]:
    """``req.ssl_ver`` patterns: ``major.minor`` versions as the fetch's integers (pat_parse_dotted_ver)."""
    converted = []
    for value in values:
        if value in _INT_OPERATORS:
            converted.append(value)
            continue
        bounds = []
        for bound in value.split(":") if ":" in value else [value]:
            match = re.fullmatch(r"([0-9]+)(?:\.([0-9]+))?", bound)
            if bound and match is None:
                raise AclError(f"'{value}' is not a dotted number.")
            if match is None:
                bounds.append("")
                continue
            # strl2llrc_dotted(): each part below 65536 (read saturated: int() refuses 4300 digits)
            major, minor = c_integers.decimal(match[1]), c_integers.decimal(match[2] or "0")
            for part, number in (("major", major), ("minor", minor)):
                if number >= 65536:
                    raise AclError(f"'{bound}' contains too large a {part} value.")
            bounds.append(str((major << 16) + minor))
        converted.append(":".join(bounds))
    return converted


def _hex_patterns(values: Sequence[str]) -> set[bytes]:
    """``-m bin`` patterns: hex digits, two per byte (HAProxy's parse_binary)."""
    patterns = set()
    for value in values:
        if len(value) % 2:
            raise AclError(f"'{value}' : an even number of hex digit is expected.")
        try:
            patterns.add(bytes.fromhex(value))
        except ValueError:
            raise AclError(f"'{value}' is not a valid hexadecimal binary string.") from None
    return patterns


def parse_networks(values: Sequence[str]) -> list[Union[ipaddress.IPv4Network, ipaddress.IPv6Network]]:
    networks = []
    for value in values:
        try:
            networks.append(ipaddress.ip_network(value, strict=False))
        except ValueError:
            hint = " (fastproxy does not resolve host names in ACLs)" if re.search(r"[g-zG-Z]", value) else ""
            raise AclError(f"'{value}' is not a valid IPv4 or IPv6 address{hint}.") from None
    return networks


def _address_matches(address: Address, networks: Sequence[Any]) -> bool:
    candidates: list[Address] = [address]
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        candidates.append(address.ipv4_mapped)
    elif isinstance(address, ipaddress.IPv4Address):
        candidates.append(ipaddress.IPv6Address(f"::ffff:{address}"))
    return any(candidate in network for network in networks for candidate in candidates
               if candidate.version == network.version)


def _string_test(method: str, values: Sequence[str], ignore_case: bool) -> Callable[[str], bool]:
    if method == "reg":
        regexes = []
        for value in values:
            try:
                regexes.append(re.compile(value, re.IGNORECASE if ignore_case else 0))
            except (re.error, OverflowError, RecursionError) as exc:  # 10,000 '(' recurse in sre
                raise AclError(f"regex '{value}' is invalid ({exc}).") from None
        return lambda sample: any(regex.search(sample) for regex in regexes)
    if method == "len":
        ranges = int_patterns(values)
        return lambda sample: _in_ranges(len(sample), ranges)
    patterns = [value.lower() for value in values] if ignore_case else list(values)
    fold: Callable[[str], str] = str.lower if ignore_case else (lambda s: s)
    if method == "str":
        wanted = set(patterns)
        return lambda sample: fold(sample) in wanted
    if method == "beg":
        return lambda sample: any(fold(sample).startswith(p) for p in patterns)
    if method == "end":
        return lambda sample: any(fold(sample).endswith(p) for p in patterns)
    if method == "sub":
        return lambda sample: any(p in fold(sample) for p in patterns)
    if method == "dom":
        delimited = [re.compile(rf"(?:^|[{re.escape(_DOMAIN_DELIMITERS)}])"
                                rf"{re.escape(p.strip(_DOMAIN_DELIMITERS))}"
                                rf"(?:$|[{re.escape(_DOMAIN_DELIMITERS)}])") for p in patterns]
        return lambda sample: any(regex.search(fold(sample)) for regex in delimited)
    raise AssertionError(method)


def _in_ranges(number: int, ranges: Sequence[tuple[Optional[int], Optional[int]]]) -> bool:
    return any((low is None or number >= low) and (high is None or number <= high) for low, high in ranges)


def compile_acl(acl: Acl) -> Test:
    """A function telling whether ``acl`` matches a connection; raises AclError if it cannot be built."""
    verdict = compile_acl_verdict(acl)
    return lambda info: verdict(info) == PASS


def compile_acl_verdict(acl: Acl) -> Verdict:
    """``acl``'s three-valued test of a connection (PASS, FAIL, or MISS while its sample may change)."""
    kind = _sample_type(acl.criterion)
    flags = list(acl.flags)
    method = _method_of(acl, kind)
    if kind == samples.ANY and "-m" not in flags:
        raise AclError("matching method must be specified first (using '-m') when using a sample fetch of "
                       f"this type ('{acl.criterion.fetch.partition('(')[0]}').")
    if method not in _METHODS:
        raise AclError(f"unknown matching method '{method}' when parsing ACL expression.")
    if method not in _METHODS_BY_KIND[kind]:
        raise AclError(f"matching method '-m {method}' cannot apply to '{acl.criterion.fetch}' "
                       f"(a {kind} sample) in fastproxy")
    ignore_case = "-i" in flags
    values = acl.values
    if method == "int" and "-m" not in flags and acl.criterion.fetch in _DOTTED_VERSIONS:
        values = tuple(_dotted_versions(values))

    evaluate = samples.evaluator(acl.criterion)
    matches: Callable[[Any], bool]
    if method == "found":
        matches = lambda value: True  # noqa: E731 (a value is all it takes)
    elif method == "bool":
        matches = bool
    else:
        matches = _sample_test(method, values, ignore_case)
    if kind in (_IP, samples.ANY) and method == "ip":  # addresses are matched as ipaddress objects
        value_matches = matches

        def matches(value: Any) -> bool:
            address = _address(value)
            return address is not None and value_matches(address)
    if kind == samples.ANY:  # a variable's value, of the type it was stored with: cast for the method
        matches = _casting(method, matches)

    def verdict(info: ConnInfo) -> int:
        value, more = evaluate(info)
        if value is not None:
            # A fetch giving several values (req.ssl_alpn) matches when one does.
            if any(map(matches, value)) if isinstance(value, tuple) else matches(value):
                return PASS
        return MISS if more else FAIL

    return verdict


def _casting(method: str, matches: Callable[[Any], bool]) -> Callable[[Any], bool]:
    """``matches`` over a value of any type cast as HAProxy casts it for ``method`` (a string that is
    no integer does not match ``-m int``)."""
    if method == "int":
        def as_integer(value: Any) -> bool:
            if isinstance(value, (bytes, str)):
                text = value.decode("latin-1") if isinstance(value, bytes) else value
                if not re.fullmatch(r"\s*[-+]?[0-9]+", text):
                    return False
                value = c_integers.signed(text.lstrip())
            return matches(int(value))
        return as_integer
    if method == "bool":
        return lambda value: matches(bool(int(value)) if isinstance(value, (bool, int)) else bool(value))
    if method == "found":
        return matches
    if method == "ip":
        return lambda value: matches(samples.as_text(value))
    return lambda value: matches(value if isinstance(value, (bytes, str)) else samples.as_text(value))


def _sample_test(method: str, values: Sequence[str], ignore_case: bool) -> Callable[[Any], bool]:
    """The test of one sample value (an address, an integer, a string or bytes) against the patterns."""
    if method == "ip":
        networks = parse_networks(values)
        return partial(_address_matches, networks=networks)
    if method == "int":
        ranges = int_patterns(values)
        return partial(_in_ranges, ranges=ranges)
    if method == "bin":  # the exact bytes of a hex pattern (pat_match_bin)
        wanted = _hex_patterns(values)
        return lambda value: (value if isinstance(value, bytes) else str(value).encode()) in wanted
    string_test = _string_test(method, values, ignore_case)
    return lambda value: string_test(value.decode("latin-1") if isinstance(value, bytes) else str(value))


# --- conditions ---------------------------------------------------------------------------------------

def parse_condition(words: Sequence[str], acls: Mapping[str, Sequence[Acl]], *,
                    read_patterns: Optional[PatternReader] = None,
                    location: Optional[Location] = None) -> Condition:
    """``if|unless <terms...>`` (the words from ``if``/``unless`` on) into a ``Condition``.

    ``acls`` are the ACLs declared so far in the proxy: as in HAProxy, a rule may only name an ACL
    declared above it.  Anonymous ``{ ... }`` ACLs and the predefined TRUE, FALSE and LOCALHOST are
    stored as ``Acl`` objects in place of a name.
    """
    if not words or words[0] not in ("if", "unless"):
        raise AclError("conditions start with 'if' or 'unless'")
    negate = words[0] == "unless"
    groups: list[list[tuple[bool, Any]]] = []
    current: Optional[list[tuple[bool, Any]]] = None
    i = 1
    while i < len(words):
        word = words[i]
        i += 1
        if word in ("||", "or"):
            current = None  # the next term opens a new group; stray '||' are ignored as in HAProxy
            continue
        negated = False
        while word.startswith("!"):
            negated = not negated
            word = word[1:]
        if not word:
            # A lone '!' negates the next term, as HAProxy allows.
            if i >= len(words):
                break
            word = words[i]
            i += 1
            while word.startswith("!"):
                negated = not negated
                word = word[1:]
        term: Any
        if word == "{":
            try:
                end = words.index("}", i)
            except ValueError:
                raise AclError("missing closing '}' in condition.") from None
            term = parse_acl("", words[i:end], read_patterns=read_patterns, location=location)
            i = end + 1
        elif word in acls:
            term = word
        elif word in PREDEFINED:
            term = predefined(word, location)
        elif word in _PREDEFINED_UNSUPPORTED:
            raise AclError(f"predefined ACL '{word}' is not supported by fastproxy: "
                           f"{_PREDEFINED_UNSUPPORTED[word]}")
        else:
            raise AclError(f"no such ACL : '{word}'.")
        if current is None:
            current = []
            groups.append(current)
        current.append((negated, term))
    return Condition(negate=negate, groups=tuple(tuple(group) for group in groups))


def condition_acls(condition: Condition, acls: Mapping[str, Sequence[Acl]]) -> list[Acl]:
    """Every ACL a condition may evaluate (named ones looked up in ``acls``)."""
    found: list[Acl] = []
    for group in condition.groups:
        for _, term in group:
            found.extend(acls.get(term, ()) if isinstance(term, str) else [term])
    return found


def condition_uses(condition: Optional[Condition], acls: Mapping[str, Sequence[Acl]],
                   fetches: frozenset[str]) -> bool:
    """Whether a condition reads one of ``fetches``."""
    if condition is None:
        return False
    return any(acl.criterion.fetch in fetches for acl in condition_acls(condition, acls))


CompiledCondition = Callable[[ConnInfo], bool]


def compile_condition(condition: Optional[Condition], acls: Mapping[str, Sequence[Acl]]) -> CompiledCondition:
    """A function over ConnInfo: groups are OR-ed, terms AND-ed, a named ACL ORs its lines; a sample
    still missing counts as no match."""
    verdict = compile_verdict(condition, acls)
    return lambda info: verdict(info) == PASS


def compile_verdict(condition: Optional[Condition], acls: Mapping[str, Sequence[Acl]]) -> Verdict:
    """The three-valued ``compile_condition`` (HAProxy's acl_exec_cond): MISS while a sample the
    outcome depends on may still change; ``unless`` and ``!`` keep a MISS."""
    if condition is None:
        return lambda info: PASS
    groups: list[list[tuple[bool, list[Verdict]]]] = []
    for group in condition.groups:
        terms = []
        for negated, term in group:
            if isinstance(term, str):
                if term not in acls:
                    raise AclError(f"no such ACL : '{term}'.")
                tests = [compile_acl_verdict(acl) for acl in acls[term]]
            else:
                tests = [compile_acl_verdict(term)]
            terms.append((negated, tests))
        groups.append(terms)
    negate = condition.negate

    def verdict(info: ConnInfo) -> int:
        result = FAIL
        for group in groups:
            suite = PASS
            for negated, tests in group:
                term = FAIL
                for test in tests:
                    term |= test(info)
                    if term == PASS:
                        break
                suite &= _NEGATION[term] if negated else term
                if suite == FAIL:
                    break
            result |= suite
            if result == PASS:
                break
        return _NEGATION[result] if negate else result

    return verdict


def evaluate(condition: Optional[Condition], acls: Mapping[str, Sequence[Acl]], info: ConnInfo) -> bool:
    """Evaluate a condition once (compile it first when evaluating many times)."""
    return compile_condition(condition, acls)(info)


# --- the router ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Rule:
    accept: bool
    matches: Verdict
    # An action that goes on to the next rule (track-sc...); ``set-src`` and friends return the change.
    run: Optional[Callable[[ConnInfo], Any]] = None


def EXPECT_PROXY(info: ConnInfo) -> None:
    """The action of ``expect-proxy layer4``: a mark the router reads (``screen_connection``)."""


def _rule_action(rule: TcpRequestRule, proxy: str,
                 tables: Mapping[str, Any]) -> Optional[Callable[[ConnInfo], Any]]:
    """What a ``tcp-request`` rule other than accept/reject does to the connection's stick counters
    (``proxy``: the name of the proxy holding the rule, whose table is the default)."""
    number = rule.counter
    if rule.action == "track-sc":
        table = tables[rule.table or proxy]
        assert rule.sample is not None
        read, kind, phase = samples.reader(rule.sample), samples.type_of(rule.sample), rule.phase

        def track(info: ConnInfo) -> None:
            if info.counters is not None:
                info.counters.track(number, table, table.key_of(read(info), kind), phase)
        return track
    if rule.action in ("sc-inc-gpc0", "sc-inc-gpc1", "sc-inc-gpc"):
        array = rule.index is not None
        which = rule.index if rule.index is not None else int(rule.action[-1])
        return lambda info: info.counters.increment_gpc(number, which, array) if info.counters is not None \
            else None
    if rule.action in ("sc-set-gpt0", "sc-set-gpt"):
        return _set_gpt_action(rule)
    if rule.action in ("set-var", "set-var-fmt", "unset-var"):
        return _variable_action(rule, proxy)
    if rule.action in SESSION_SETTINGS:
        return _session_setting(rule)
    if rule.action == "capture":
        return _capture_action(rule)
    if rule.action in _ADDRESS_FIELDS:
        assert rule.sample is not None
        field, read = _ADDRESS_FIELDS[rule.action], samples.reader(rule.sample)

        def rewrite(info: ConnInfo) -> Optional[dict]:
            value = _address_value(read(info), port=field.endswith("port"))
            if value is None:  # no value, or none of that type: the address stays, as in HAProxy
                return None
            change = {field: value}
            if info.rewritten is not None:
                info.rewritten.update(change)
            return change
        return rewrite
    return None


# What ``set-tos`` and ``set-mark`` (the client socket's IP_TOS and SO_MARK from then on) and
# ``set-priority-class``/``-offset`` (the connection's place in a queue, within HAProxy's bounds) set:
# recorded in the info's ``rewritten`` under these keys, for the session to take on.
SESSION_SETTINGS = {"set-tos": "tos", "set-mark": "mark", "set-priority-class": "priority_class",
                    "set-priority-offset": "priority_offset"}
_PRIORITY_BOUNDS = {"set-priority-class": 2047, "set-priority-offset": 524287}


def _session_setting(rule: TcpRequestRule) -> Callable[[ConnInfo], None]:
    key = SESSION_SETTINGS[rule.action]
    if rule.sample is None:
        value = rule.value

        def record(info: ConnInfo) -> None:
            if info.rewritten is not None:
                info.rewritten[key] = value
        return record
    read, bound = samples.reader(rule.sample), _PRIORITY_BOUNDS[rule.action]

    def record_sample(info: ConnInfo) -> None:
        value = _integer_value(read(info))
        if value is not None and info.rewritten is not None:  # a sample that fails sets nothing
            info.rewritten[key] = max(-bound, min(bound, value))
    return record_sample


def _capture_action(rule: TcpRequestRule) -> Callable[[ConnInfo], None]:
    """``capture <sample> len <n>``: the sample as text (bytes as they are), cut at ``n`` bytes, in its
    slot (a sample that fails captures nothing)."""
    assert rule.sample is not None and rule.index is not None
    read, slot, length = samples.reader(rule.sample), rule.index, rule.value

    def capture(info: ConnInfo) -> None:
        value = read(info)
        if value is not None and info.captures is not None:
            info.captures[slot] = samples.binary(value)[:length].decode("latin-1")
    return capture


def _set_gpt_action(rule: TcpRequestRule) -> Callable[[ConnInfo], None]:
    """``sc-set-gpt0(<n>)`` / ``sc-set-gpt(<idx>,<n>)`` with an integer or an expression, whose value is
    cast to an integer (an address as its 32 bits; nothing set when it cannot be)."""
    number, array = rule.counter, rule.index is not None
    which = rule.index or 0
    read = samples.reader(rule.sample) if rule.sample is not None else None
    constant = rule.value

    def set_gpt(info: ConnInfo) -> None:
        if info.counters is None:
            return
        value = constant if read is None else _integer_value(read(info))
        if value is not None:
            info.counters.set_gpt(number, which, value, array)
    return set_gpt


def _integer_value(value: Any) -> Optional[int]:
    """A sample's value cast to an integer as HAProxy casts it (None when it cannot be)."""
    if isinstance(value, (bool, int)):
        return int(value)
    text = value.decode("latin-1") if isinstance(value, bytes) else str(value) if value is not None else ""
    match = re.match(r"\s*[-+]?[0-9]+", text)
    if match and match.end() == len(text):
        return c_integers.signed(match[0].lstrip())
    address = _address(text)
    return int(address) if address is not None and address.version == 4 else None


def _variable_action(rule: TcpRequestRule, proxy: str) -> Callable[[ConnInfo], None]:
    """``set-var``, ``set-var-fmt``, ``unset-var``: the connection's ``variables`` change (a value
    that is not there sets nothing, as HAProxy's failed sample)."""
    assert rule.variable is not None
    name, phase = variables.parse_name(rule.variable), rule.phase
    conditions = frozenset(rule.variable_conditions)
    if rule.action == "unset-var":
        return lambda info: info.variables.unset(name, phase) if info.variables is not None else None
    if rule.action == "set-var-fmt":
        assert rule.log_format is not None
        fmt, host = logformat.compile(rule.log_format), socket.gethostname()

        def set_formatted(info: ConnInfo) -> None:
            if info.variables is not None:
                info.variables.set(name, samples.STR, fmt.render(rule_record(info, proxy, host)), conditions,
                                   phase)
        return set_formatted
    assert rule.sample is not None
    read, kind = samples.reader(rule.sample), samples.type_of(rule.sample)

    def set_value(info: ConnInfo) -> None:
        value = read(info)
        if value is not None and info.variables is not None:
            info.variables.set(name, variables.sample_type(value) if kind == samples.ANY else kind, value,
                               conditions, phase)
    return set_value


def rule_record(info: ConnInfo, proxy: str, hostname: str) -> logformat.LogRecord:
    """What a log-format evaluated by a rule (``set-var-fmt``) knows of the connection: its addresses,
    the proxy, the samples; the rest is not there yet."""
    return logformat.LogRecord(client=(info.src, info.src_port), frontend_address=(info.dst, info.dst_port),
                               accepted=time.time(), frontend=proxy, backend=proxy, pid=os.getpid(),
                               hostname=hostname, connection=info)


def _address_value(value: Any, *, port: bool) -> Any:
    """A sample's value as the address (text) or port (int) ``set-src`` and friends set; None when it
    is none (HAProxy's failed sample cast)."""
    if isinstance(value, bytes):
        value = value.decode("latin-1")
    try:
        if port:
            number = c_integers.signed(value.strip()) if isinstance(value, str) and \
                re.fullmatch(r"\s*[-+]?[0-9]+\s*", value) else int(value)
            return number if 0 <= number <= 65535 else None
        return str(ipaddress.ip_address(str(value).strip()))
    except (TypeError, ValueError):
        return None


_ADDRESS_FIELDS = {"set-src": "src", "set-src-port": "src_port", "set-dst": "dst", "set-dst-port": "dst_port"}


class Router:
    """A frontend's decisions for one connection: accept it, and which backend takes it."""

    def __init__(self, *, connection_rules: Sequence[_Rule], session_rules: Sequence[_Rule],
                 content_rules: Sequence[_Rule], switching: Sequence[tuple[str, CompiledCondition]],
                 default_backend: Optional[str], reads_content: bool) -> None:
        self._connection_rules = list(connection_rules)
        self._session_rules = list(session_rules)
        self._content_rules = list(content_rules)
        self._switching = list(switching)
        self.default_backend = default_backend
        self.reads_content = reads_content

    @classmethod
    def for_frontend(cls, frontend: Frontend, backends: Mapping[str, Any],
                     tables: Optional[Mapping[str, Any]] = None) -> Router:
        """Compile a frontend's rules.  The frontend is one ``config.validate`` has passed: its rules
        name ACLs, backends and stick tables (``sticktables.StickTable`` by name) that exist."""
        acls = frontend.acls
        rules: dict[str, list[_Rule]] = {"connection": [], "session": [], "content": []}
        reads_content = False
        for rule in frontend.tcp_request_rules:
            matches = compile_verdict(rule.condition, acls)
            run = EXPECT_PROXY if rule.action == "expect-proxy" else _rule_action(rule, frontend.name,
                                                                                   tables or {})
            rules[rule.phase].append(_Rule(rule.action == "accept", matches, run))
            if rule.phase == "content":
                reads_content |= condition_uses(rule.condition, acls, CONTENT_FETCHES)
        switching = []
        for use in frontend.use_backends:
            switching.append((use.backend, compile_condition(use.condition, acls)))
            reads_content |= condition_uses(use.condition, acls, CONTENT_FETCHES)
        return cls(connection_rules=rules["connection"], session_rules=rules["session"],
                   content_rules=rules["content"], switching=switching,
                   default_backend=frontend.default_backend, reads_content=reads_content)

    @classmethod
    def for_backend(cls, backend: Backend, tables: Optional[Mapping[str, Any]] = None) -> Router:
        """A backend's ``tcp-request content`` rules (it has no other rule and picks no backend)."""
        rules = [_Rule(rule.action == "accept", compile_verdict(rule.condition, backend.acls),
                       _rule_action(rule, backend.name, tables or {}))
                 for rule in backend.tcp_request_rules]
        reads_content = any(condition_uses(rule.condition, backend.acls, CONTENT_FETCHES)
                        for rule in backend.tcp_request_rules)
        return cls(connection_rules=[], session_rules=[], content_rules=rules, switching=[],
                   default_backend=None, reads_content=reads_content)

    def accept_connection(self, info: ConnInfo) -> bool:
        """``tcp-request connection`` then ``tcp-request session`` rules: the first accept or reject
        that matches decides for its set (the actions before it ran); no match accepts.  Once both
        sets accept, the connection is a session for the stick counters tracked so far."""
        return self.screen_connection(info)[0] and self.accept_session(info)

    def screen_connection(self, info: ConnInfo) -> tuple[bool, bool]:
        """The ``tcp-request connection`` rules alone: (accepted, a PROXY header is expected).  An
        ``expect-proxy layer4`` that matches goes on to the next rule, as in HAProxy; the header is
        read once the rules accepted, and the session rules see its addresses."""
        final = info if info.final else dataclasses.replace(info, final=True)
        expect_proxy = False
        for rule in self._connection_rules:
            if rule.matches(final) != PASS:
                continue
            if rule.run is EXPECT_PROXY:
                expect_proxy = True
            elif rule.run is None:
                return rule.accept, expect_proxy
            else:
                final = _ran(rule, final)
        return True, expect_proxy

    def accept_session(self, info: ConnInfo) -> bool:
        """The ``tcp-request session`` rules; once they accept, the connection is a session for the
        stick counters tracked so far."""
        final = info if info.final else dataclasses.replace(info, final=True)
        accepted = bool(_first_match(self._session_rules, final))
        if accepted and info.counters is not None:
            info.counters.session_started()
        return accepted

    @property
    def has_content_rules(self) -> bool:
        return bool(self._content_rules)

    def accept_content(self, info: ConnInfo) -> Optional[bool]:
        """``tcp-request content`` rules on what the client sent so far: accept or not, or None to
        wait for more bytes (a rule's condition misses a sample that may still come, while
        ``info.final`` is false), as HAProxy's tcp_inspect_request."""
        return _first_match(self._content_rules, info)

    def backend_for(self, info: ConnInfo) -> Optional[str]:
        """The first ``use_backend`` whose condition matches, else ``default_backend`` (maybe None).
        Evaluated as final, on what arrived (HAProxy's process_switching_rules)."""
        if not info.final:
            info = dataclasses.replace(info, final=True)
        for backend, matches in self._switching:
            if matches(info):
                return backend
        return self.default_backend


def _first_match(rules: Sequence[_Rule], info: ConnInfo) -> Optional[bool]:
    for rule in rules:
        verdict = rule.matches(info)
        if verdict == MISS:  # wait for more bytes (the actions before it ran: they run once)
            return None
        if verdict == PASS:
            if rule.run is None:
                return rule.accept
            info = _ran(rule, info)
    return True


def _ran(rule: _Rule, info: ConnInfo) -> ConnInfo:
    """Run a rule's action: the connection as the rules after it see it (``set-src`` changes it)."""
    assert rule.run is not None
    change = rule.run(info)
    return dataclasses.replace(info, **change) if isinstance(change, dict) else info
