"""The PROXY protocol codec: round trips, the spec's limits, and any bytes at all."""

from __future__ import annotations

import ipaddress

from hypothesis import given, settings
from hypothesis import strategies as st

from fastproxy.proxyproto import ProxyStatus, encode_v1, encode_v1_unknown, encode_v2, parse

ipv4 = st.integers(0, 2**32 - 1).map(lambda n: str(ipaddress.IPv4Address(n)))
ipv6 = st.integers(0, 2**128 - 1).map(lambda n: str(ipaddress.IPv6Address(n)))
port = st.integers(0, 65535)


def test_v1_header_as_the_spec_writes_it():
    assert encode_v1(("192.0.2.1", 56324), ("192.0.2.2", 443)) == \
        b"PROXY TCP4 192.0.2.1 192.0.2.2 56324 443\r\n"
    result = parse(b"PROXY TCP6 ::1 2001:db8::1 1 2\r\nGET /")
    assert (result.status, result.version, result.family) == (ProxyStatus.OK, 1, "TCP6")
    assert result.src == ("::1", 1) and result.dst == ("2001:db8::1", 2)
    assert result.length == len(b"PROXY TCP6 ::1 2001:db8::1 1 2\r\n")


def test_v1_unknown_means_use_the_real_addresses():
    result = parse(encode_v1_unknown() + b"rest")
    assert result.status is ProxyStatus.OK and result.command == "LOCAL" and result.src is None


def test_v1_rejects_what_the_spec_rejects():
    for bad in (b"PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n",  # leading zero in a port
                b"PROXY TCP4 1.2.3.4 5.6.7.8 1 65536\r\n",
                b"PROXY TCP4 ::1 ::1 1 2\r\n",  # family mismatch
                b"PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n",
                b"PROXY " + b"x" * 120,  # no CRLF within 107 bytes
                b"GET / HTTP/1.0\r\n"):
        assert parse(bad).status is ProxyStatus.INVALID, bad


def test_v2_local_and_tlvs():
    header = encode_v2(command="LOCAL", tlvs=[(0x01, b"h2")])
    result = parse(header + b"payload")
    assert result.status is ProxyStatus.OK and result.command == "LOCAL"
    assert result.tlvs == ((0x01, b"h2"),) and result.length == len(header)


def test_v2_rejects_a_bad_version_or_command():
    header = bytearray(encode_v2(("10.0.0.1", 1), ("10.0.0.2", 2)))
    header[12] = 0x11  # version 1 in a v2 header
    assert parse(bytes(header)).status is ProxyStatus.INVALID
    header[12] = 0x2F  # command 15
    assert parse(bytes(header)).status is ProxyStatus.INVALID


@settings(max_examples=200, deadline=None)
@given(st.one_of(st.tuples(ipv4, ipv4), st.tuples(ipv6, ipv6)), port, port, st.booleans())
def test_round_trip_and_every_strict_prefix_is_incomplete(hosts, src_port, dst_port, v2):
    src, dst = (hosts[0], src_port), (hosts[1], dst_port)
    header = encode_v2(src, dst) if v2 else encode_v1(src, dst)
    result = parse(header + b"after")
    assert result.status is ProxyStatus.OK
    assert result.src == (str(ipaddress.ip_address(src[0])), src_port)
    assert result.dst == (str(ipaddress.ip_address(dst[0])), dst_port)
    assert result.length == len(header)
    for end in range(len(header)):
        assert parse(header[:end]).status is ProxyStatus.INCOMPLETE


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=300))
def test_any_bytes_get_an_answer(data):
    assert parse(data).status in ProxyStatus
    assert parse(b"\r\n\r\n\x00\r\nQUIT\n" + data).status in ProxyStatus
    assert parse(b"PROXY " + data).status in ProxyStatus


tlvs = st.lists(st.tuples(st.integers(0, 255), st.binary(max_size=40)), max_size=5)


@st.composite
def mutated_headers(draw) -> bytes:
    """A real v1 or v2 header (with TLVs), a few of its bytes changed, inserted or cut, and the
    connection's first bytes after it."""
    src, dst = draw(st.one_of(st.tuples(ipv4, ipv4), st.tuples(ipv6, ipv6), st.tuples(ipv4, ipv6)))
    header = draw(st.sampled_from([
        encode_v1((src, 1), (dst, 2)), encode_v1_unknown(),
        encode_v2((src, draw(port)), (dst, draw(port)), tlvs=draw(tlvs)),
        encode_v2(command="LOCAL", tlvs=draw(tlvs))]))
    data = bytearray(header)
    for _ in range(draw(st.integers(0, 4))):
        at = draw(st.integers(0, len(data)))
        data[at:at + draw(st.integers(0, 3))] = draw(st.binary(max_size=3))
    return bytes(data) + draw(st.binary(max_size=20))


@settings(max_examples=400, deadline=None)
@given(mutated_headers())
def test_mutated_real_headers_get_an_answer_and_an_accepted_one_fits_the_bytes(data):
    result = parse(data)
    assert result.status in ProxyStatus
    if result.status is ProxyStatus.OK:
        assert 0 < result.length <= len(data)
        assert parse(data[:result.length] + b"GET / HTTP/1.1\r\n") == result  # what follows is not header
    elif result.status is ProxyStatus.INCOMPLETE:
        assert parse(data[:-1]).status is not ProxyStatus.OK  # no shorter prefix was a whole header
