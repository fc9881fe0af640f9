"""The check kinds as data (``config/haproxy/checks.py``, the bytes and parsers of ``health``): what the
reader makes of ``option httpchk`` and ``http-check`` lines, the request bytes HAProxy 2.6 sends, and
the HTTP response parser.  The live comparisons with haproxy are in tests/integration/test_protocol_checks.py.
"""

from __future__ import annotations

import pytest

from fastproxy.config import parse_text
from fastproxy.config.model import HttpCheckRequest
from fastproxy.health import CheckResult, http_request, parse_http_response, ssl3_client_hello
from fastproxy import tcplog

PROLOGUE = "defaults\n mode tcp\n timeout connect 1s\n timeout client 1s\n timeout server 1s\n"


def backend(text: str):
    return parse_text(PROLOGUE + "backend be\n" + text + " server s1 127.0.0.1:80 check\n").backends["be"]


def requests(text: str) -> list:
    return [(r.http.method, r.http.uri, r.http.version, r.http.headers, r.http.body)
            for r in backend(text).tcp_check_rules if r.action == "send"]


def test_option_httpchk_alone_sends_options_and_expects_2xx_or_3xx():
    be = backend(" option httpchk\n")
    assert (be.tcp_check, be.check_kind) == (True, "http")
    assert [rule.action for rule in be.tcp_check_rules] == ["send", "expect"]
    assert be.tcp_check_rules[1].pattern == ((200, 399),)
    assert requests(" option httpchk\n") == [("OPTIONS", "/", "HTTP/1.0", [], b"")]
    assert requests(" option httpchk /health\n") == [("OPTIONS", "/health", "HTTP/1.0", [], b"")]


def test_http_check_send_merges_with_the_option_request_in_either_order_as_haproxy():
    after = " option httpchk GET /a\n http-check send ver HTTP/1.1 hdr Host h\n"
    before = " http-check send ver HTTP/1.1 hdr Host h\n option httpchk GET /a\n"
    for text in (after, before):
        assert requests(text) == [("GET", "/a", "HTTP/1.1", [("Host", "h")], b"")], text


def test_the_deprecated_headers_in_the_version_are_read_with_haproxys_warning():
    config = parse_text(PROLOGUE + "backend be\n option httpchk GET / HTTP/1.1\\r\\nHost:\\ www\n"
                        " server s1 127.0.0.1:80 check\n")
    request = config.backends["be"].tcp_check_rules[0].http
    assert (request.version, request.headers) == ("HTTP/1.1", [("Host", "www")])
    assert any("hiding headers or body at the end of the version string is deprecated" in str(w)
               for w in config.warnings)


def test_a_later_option_replaces_the_check_kind_and_http_check_rules_wait_for_their_option():
    assert backend(" option httpchk\n option tcp-check\n").check_kind == "tcp"
    be = backend(" http-check expect status 200\n")
    assert not be.tcp_check  # no option httpchk: a plain connect, as HAProxy
    assert backend(" http-check send-state\n http-check disable-on-404\n option httpchk\n").http_send_state


def test_http_requests_are_written_as_haproxys_h1_mux_writes_them():
    assert http_request(HttpCheckRequest()) == b"OPTIONS / HTTP/1.0\r\n\r\n"
    request = HttpCheckRequest("POST", "/p", "HTTP/1.1", [("Host", "h"), ("X-A", "b")], b"abc")
    assert http_request(request, "UP") == (b"POST /p HTTP/1.1\r\nhost: h\r\nx-a: b\r\n"
                                           b"x-haproxy-server-state: UP\r\ncontent-length: 3\r\n"
                                           b"connection: close\r\n\r\nabc")


@pytest.mark.parametrize("data, final, expected", [
    (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", False, (200, "OK", b"ok", True)),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nok", False, (200, "OK", b"ok", False)),
    (b"HTTP/1.0 503 Service Unavailable\r\n\r\ndown", True, (503, "Service Unavailable", b"down", True)),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n", False,
     (200, "OK", b"ok", True)),
    (b"HTTP/1.1 204\r\n\r\n", False, (204, "", b"", True)),
])
def test_http_responses_are_parsed_for_status_reason_and_body(data, final, expected):
    response = parse_http_response(data, final)
    assert (response.status, response.reason, response.body, response.complete) == expected


def test_a_partial_response_waits_and_garbage_is_invalid():
    assert parse_http_response(b"HTTP/1.1 200 OK\r\nContent-", False) is None
    with pytest.raises(ValueError):
        parse_http_response(b"hello\r\n", False)


def test_the_ssl3_hello_is_haproxys_with_the_time_in_its_random():
    hello = ssl3_client_hello(0x6B0F667E)
    assert hello[:11] == bytes.fromhex("16030000790100007503 00".replace(" ", ""))
    assert hello[11:15] == bytes.fromhex("6B0F667E")
    assert hello[15:43] == b"HAPROXYSSLCHK\nHAPROXYSSLCHK\n" and hello[43:46] == b"\x00\x00\x4e"
    assert len(hello) == 5 + 0x79


def test_check_reasons_carry_the_code_of_an_answer_as_haproxy():
    assert tcplog.check_reason(CheckResult("L7STS", "Service Unavailable", 0.001, 503)) == (
        ', reason: Layer7 wrong status, code: 503, info: "Service Unavailable", check duration: 1ms')
    assert tcplog.check_reason(CheckResult("L7RSP", 'a "b"', 0.0)) == (
        ', reason: Layer7 invalid response, info: "a \\x22b\\x22", check duration: 0ms')


def test_protocol_options_build_haproxys_rulesets_and_the_last_check_option_wins():
    be = backend(" option httpchk\n option redis-check\n")
    assert (be.check_kind, [rule.action for rule in be.tcp_check_rules]) == ("redis", ["send", "expect"])
    assert be.tcp_check_rules[0].data == b"*1\r\n$4\r\nPING\r\n"
    assert backend(" option redis-check\n option httpchk\n").check_kind == "http"
    pre41 = backend(" option mysql-check user haproxy pre-41\n").tcp_check_rules[1].data
    # HAProxy's example packet of a 4.0 login, then COM_QUIT
    assert pre41 == b"\x0e\x00\x00\x01\x00\x80\x00\x00\x01haproxy\x00\x00\x01\x00\x00\x00\x01"
    startup = backend(" option pgsql-check user pgu\n").tcp_check_rules[1].data
    assert startup == b"\x00\x00\x00\x12\x00\x03\x00\x00user\x00pgu\x00\x00"
    smtp = [rule.data for rule in backend(" option smtpchk EHLO mx.example\n").tcp_check_rules
            if rule.action == "send"]
    assert smtp == [b"EHLO mx.example\r\n", b"QUIT\r\n"]


def test_tls_check_settings_are_read_for_the_checks(tmp_path):
    from fastproxy.config import parse_text
    (tmp_path / "ca.pem").write_text("")
    (tmp_path / "c.pem").write_text("")
    config = parse_text(PROLOGUE + "backend be\n option tcp-check\n"
                        " tcp-check connect port 443 ssl sni a.example\n"
                        f" server s0 127.0.0.1:443 check check-ssl verify required ca-file {tmp_path}/ca.pem"
                        f" crt {tmp_path}/c.pem check-sni b.example verifyhost c.example\n")
    backend_model = config.backends["be"]
    server = backend_model.servers[0]
    settings = (server.check_ssl, server.verify, server.ca_file, server.crt, server.check_sni,
                server.verifyhost)
    assert settings == (True, "required", f"{tmp_path}/ca.pem", f"{tmp_path}/c.pem", "b.example", "c.example")
    connect = backend_model.tcp_check_rules[0]
    assert (connect.ssl, connect.sni, connect.port) == (True, "a.example", 443)


def test_agent_replies_are_read_word_by_word_as_haproxy():
    from fastproxy.health import parse_agent_reply
    reply = parse_agent_reply("up 75%, maxconn:30 drain # all good ")
    assert (reply.health, reply.admin, reply.weight, reply.maxconn, reply.description) == (
        "up", "drain", "75%", "30", "all good")
    assert (reply.status, reply.describe(None)) == ("L7OK", "via agent : up (all good)")
    down = parse_agent_reply("DOWN#disk full")
    assert (down.status, down.describe(None)) == ("L7STS", "via agent : DOWN (disk full)")
    odd = parse_agent_reply("bogus 50%")
    assert (odd.status, odd.describe(None)) == ("CHECKED", "agent reports an error : bogus")
    assert parse_agent_reply("50%").describe("Trailing garbage in weight string") == (
        "agent warns : Trailing garbage in weight string")


def test_http_check_expect_hdr_and_fhdr_read_name_and_value_patterns():
    rule = backend(" option httpchk\n http-check expect hdr name -m beg x-st value -m sub eady\n") \
        .tcp_check_rules[-1]
    assert (rule.match, rule.pattern) == ("hdr", ("beg", "x-st", "sub", "eady"))
    rule = backend(" option httpchk\n http-check expect ! fhdr name x-state\n").tcp_check_rules[-1]
    assert (rule.match, rule.negate, rule.pattern) == ("fhdr", True, ("str", "x-state", None, None))
    rule = backend(" option httpchk\n http-check expect string-lf ok%%\n").tcp_check_rules[-1]
    assert (rule.match, rule.pattern) == ("body", b"ok%")
    with pytest.raises(Exception, match="log-format directives"):
        backend(" option httpchk\n http-check expect string-lf %[date]\n")
    with pytest.raises(Exception, match="cannot be used with the regex matching method"):
        backend(" option httpchk\n http-check expect hdr name-lf -m reg x\n")


@pytest.mark.parametrize("pattern, full, matches", [
    (("str", "x-state", None, None), False, True),
    (("str", "X-STATE", "str", "up"), False, True),  # names fold case, values are comma lists
    (("str", "x-state", "str", "ready, up"), False, False),
    (("str", "x-state", "str", "ready, up"), True, True),  # fhdr: the whole value
    (("beg", "x-", "end", "dy"), False, True),
    (("reg", "^x-s", "reg", "^u"), False, True),
    (("sub", "other", None, None), False, False),
])
def test_header_patterns_match_as_haproxys_http_check(pattern, full, matches):
    from fastproxy.health import header_matches
    headers = (("content-length", "0"), ("x-state", "ready, up"))
    assert header_matches(headers, pattern, full=full) is matches
