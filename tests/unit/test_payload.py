"""Content fetches (``fastproxy.payload`` and their rows in ``fastproxy.samples``) and the three-valued
ACLs that wait for them, as HAProxy's payload.c and acl_exec_cond: sans-IO, over bytes."""

from __future__ import annotations

import pytest

from fastproxy import payload
from fastproxy.acl import (FAIL, MISS, PASS, AclError, ConnInfo, Router, compile_acl_verdict, compile_verdict,
                           parse_acl, parse_condition)
from fastproxy.config import parse_text
from fastproxy.errors import ConfigError
from fastproxy.config.model import Sample
from fastproxy.samples import SampleError, evaluator, parse, reader

RDP = (b"\x03\x00\x00\x2a\x25\xe0\x00\x00\x00\x00\x00Cookie: mstshash=alice\r\n"
       b"\x01\x00\x08\x00\x03\x00\x00\x00")


def conn(request: bytes = b"", *, final: bool = False, **known) -> ConnInfo:
    return ConnInfo("127.0.0.1", 40000, "127.0.0.1", 443, request=request, final=final, **known)


def verdict(words: list[str], request: bytes = b"", *, final: bool = False) -> int:
    return compile_acl_verdict(parse_acl("a", words))(conn(request, final=final))


@pytest.mark.parametrize("data, expected", [
    (b"", payload.TOO_SHORT),
    (b"GET / HT", payload.TOO_SHORT),
    (b"GET / HTTP/1.1\r\nHost: x\r\n", payload.TOO_SHORT),  # the headers are not over
    (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", (payload.HttpRequest("GET", "/", "1.1"), False)),
    (b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", (payload.HttpRequest("PRI", "*", "2.0"), False)),
    (b"\x16\x03\x01\x02\x00", payload.NOTHING),  # not a token character: never a request
    (b"SSH-2.0-OpenSSH_9.2\r\n", payload.NOTHING),
    (b"GET / FTP/1.0", payload.NOTHING),
    (b"GET / HTTP/1.1\r\nno colon\r\n\r\n", payload.NOTHING),
])
def test_an_http_request_is_known_once_its_headers_are_in_and_other_bytes_at_once(data, expected):
    assert payload.http_request(data) == expected


def test_payload_takes_fixed_bytes_and_a_zero_length_takes_the_rest_which_may_grow():
    assert payload.payload(b"abcdef", 1, 3) == (b"bcd", False)
    assert payload.payload(b"ab", 1, 3) == payload.TOO_SHORT
    assert payload.payload(b"abcdef", 2, 0) == (b"cdef", True)
    assert payload.payload(b"abc", 0, 20000) == payload.NOTHING  # beyond a buffer: never


def test_payload_lv_reads_a_length_then_the_block_after_it_or_at_an_offset():
    data = b"\x00\x03abcxyz"
    assert payload.payload_lv(data, 0, 2) == (b"abc", False)
    assert payload.payload_lv(data, 0, 2, "+1") == (b"bcx", False)
    assert payload.payload_lv(data, 0, 2, "5") == (b"xyz", False)
    assert payload.payload_lv(b"\x00\x09abc", 0, 2) == payload.TOO_SHORT
    assert payload.payload_lv(b"\x00\x00abc", 0, 2) == payload.NOTHING


def test_ssl_version_is_the_client_hello_version_once_the_record_is_whole():
    record = bytes.fromhex("160301000a" "0100000603030000") + b"\0\0"
    assert payload.ssl_version(record) == ((3 << 16) | 3, False)
    assert payload.ssl_version(record[:-1]) == payload.TOO_SHORT
    assert payload.ssl_version(b"GET / HTTP/1.0\r\n") == payload.NOTHING


def test_rdp_cookie_reads_the_connection_request_cookie_by_name_or_any():
    assert payload.rdp_cookie(RDP) == ("alice", False)
    assert payload.rdp_cookie(RDP, "MSTSHASH") == ("alice", False)
    assert payload.rdp_cookie(RDP, "other") == payload.NOTHING
    assert payload.rdp_cookie(RDP[:20]) == payload.TOO_SHORT


def test_fetch_arguments_and_converters_are_checked_as_haproxy_checks_them():
    assert parse("req.payload(0,3),hex") == Sample("req.payload(0,3)", ("hex",))
    assert parse("payload_lv(0,2,+4),bytes(1,2),lower") == Sample("payload_lv(0,2,+4)",
                                                                  ("bytes(1,2)", "lower"))
    with pytest.raises(SampleError, match=r"missing arguments \(got 1/2\), type 'integer' expected"):
        parse("req.payload(0)")
    with pytest.raises(SampleError, match="failed to parse 'x' as type 'integer' at position 2"):
        parse("req.payload(0,x)")
    with pytest.raises(SampleError, match="is not supported by fastproxy"):
        parse("req.len(1)")


def test_converters_apply_in_turn_to_the_peeked_bytes():
    read = reader(parse("req.payload(0,4),bytes(1,2),hex"))
    assert read(conn(b"GET / HTTP/1.0\r\n")) == "4554"
    assert reader(parse("req.payload(0,0),length"))(conn(b"abcd")) == 4
    assert reader(parse("req.rdp_cookie,upper"))(conn(RDP)) == "ALICE"
    assert evaluator(parse("req.len"))(conn(b"ab")) == (2, True)
    assert evaluator(parse("req.len"))(conn(b"ab", final=True)) == (2, False)


def test_an_acl_misses_while_its_sample_may_still_come_then_fails_once_final():
    tls = ["req.payload(0,3)", "-m", "bin", "160301"]
    assert verdict(tls, b"\x16\x03\x01\x02") == PASS
    assert verdict(tls, b"\x16") == MISS
    assert verdict(tls, b"\x16", final=True) == FAIL
    assert verdict(tls, b"GET") == FAIL  # the bytes are there and differ: no wait
    assert verdict(["req.len", "gt", "3"], b"ab") == MISS  # a value that may still grow
    assert verdict(["req.len", "gt", "3"], b"abcd") == PASS
    assert verdict(["req.payload(0,3)", "-m", "beg", "GE"], b"GET") == PASS
    assert verdict(["req.ssl_ver", "3.3"], bytes.fromhex("160301000a0100000603030000") + b"\0\0") == PASS


def test_a_bin_pattern_needs_pairs_of_hex_digits():
    with pytest.raises(AclError, match="an even number of hex digit is expected"):
        parse_acl("a", ["req.payload(0,3)", "-m", "bin", "160"])
    with pytest.raises(AclError, match="is not a valid hexadecimal binary string"):
        parse_acl("a", ["req.payload(0,3)", "-m", "bin", "zz"])


@pytest.mark.parametrize("name, request_bytes, final, expected", [
    ("WAIT_END", b"data", False, MISS),
    ("WAIT_END", b"data", True, PASS),
    ("REQ_CONTENT", b"", False, MISS),
    ("REQ_CONTENT", b"x", False, PASS),
    ("REQ_CONTENT", b"", True, FAIL),
    ("HTTP", b"GET / HTTP/1.1\r\n", False, MISS),
    ("HTTP", b"GET / HTTP/1.1\r\n\r\n", False, PASS),
    ("HTTP_1.0", b"GET / HTTP/1.1\r\n\r\n", False, FAIL),
    ("METH_GET", b"HEAD / HTTP/1.1\r\n\r\n", False, PASS),
    ("HTTP_URL_ABS", b"GET http://a/ HTTP/1.1\r\n\r\n", False, PASS),
    ("HTTP_URL_SLASH", b"GET http://a/ HTTP/1.1\r\n\r\n", False, FAIL),
    ("RDP_COOKIE", RDP, False, PASS),
    ("RDP_COOKIE", b"\x16\x03\x01" + bytes(20), False, FAIL),
    ("LOCALHOST", b"", False, PASS),
])
def test_predefined_acls_read_the_stream_as_haproxy_defines_them(name, request_bytes, final, expected):
    matches = compile_verdict(parse_condition(["if", name], {}), {})
    assert matches(conn(request_bytes, final=final)) == expected


def test_negation_and_unless_keep_a_miss_a_miss():
    assert compile_verdict(parse_condition(["if", "!REQ_CONTENT"], {}), {})(conn()) == MISS
    assert compile_verdict(parse_condition(["unless", "REQ_CONTENT"], {}), {})(conn()) == MISS
    assert compile_verdict(parse_condition(["if", "FALSE", "REQ_CONTENT"], {}), {})(conn()) == FAIL
    assert compile_verdict(parse_condition(["if", "TRUE", "||", "REQ_CONTENT"], {}), {})(conn()) == PASS


def test_content_rules_wait_while_a_rule_misses_and_use_backend_decides_on_what_arrived():
    config = parse_text("""
frontend fe
    bind 127.0.0.1:1
    tcp-request inspect-delay 1s
    tcp-request content accept if HTTP
    tcp-request content reject if WAIT_END
    use_backend http if METH_GET
    default_backend other
backend http
    server s 127.0.0.1:2
backend other
    server s 127.0.0.1:3
""")
    router = Router.for_frontend(config.frontends["fe"], config.backends)
    assert router.reads_content
    assert router.accept_content(conn(b"GET / HTTP/1.1\r\n")) is None  # wait for more
    assert router.accept_content(conn(b"GET / HTTP/1.1\r\n\r\n")) is True
    assert router.accept_content(conn(b"\x16\x03\x01")) is None  # not HTTP, but WAIT_END waits
    assert router.accept_content(conn(b"\x16\x03\x01", final=True)) is False
    assert router.backend_for(conn(b"GET / HTTP/1.1\r\n\r\n")) == "http"
    assert router.backend_for(conn(b"GET / HTTP/1.1\r\n")) == "other"  # final: an unfinished request is none


def test_http_content_is_refused_with_its_reason():
    with pytest.raises(AclError, match="reads the request's Content-Length header"):
        parse_condition(["if", "HTTP_CONTENT"], {})


def test_balance_rdp_cookie_hashes_the_named_cookie_mstshash_by_default():
    backends = parse_text("backend a\n balance rdp-cookie\n server s 127.0.0.1:1\n"
                          "backend b\n balance rdp-cookie(user)\n server s 127.0.0.1:1\n").backends
    assert (backends["a"].balance.algorithm, backends["a"].balance.sample) == (
        "hash", Sample("req.rdp_cookie(mstshash)"))
    assert backends["b"].balance.sample == Sample("req.rdp_cookie(user)")


def test_use_server_rules_name_a_server_of_their_backend_with_a_condition():
    with pytest.raises(ConfigError) as info:
        parse_text("backend be\n use-server nosuch if TRUE\n use-server s\n server s 127.0.0.1:1\n")
    assert [(error.line, error.message) for error in info.value.errors] == [
        (2, "backend 'be' : unable to find server 'nosuch' referenced in a 'use-server' rule."),
        (3, "'use-server' requires either 'if' or 'unless' followed by a condition.")]
    backend = parse_text("backend be\n use-server s if LOCALHOST\n server s 127.0.0.1:1\n").backends["be"]
    assert [rule.backend for rule in backend.use_servers] == ["s"]
