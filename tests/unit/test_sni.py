"""The ClientHello reader on real hellos made by Python's ssl module, and on any bytes at all."""

from __future__ import annotations

import ssl

from hypothesis import given, settings
from hypothesis import strategies as st

from fastproxy.sni import HelloStatus, parse_client_hello


def client_hello(server_name: str, *, alpn=("h2", "http/1.1"), maximum=ssl.TLSVersion.TLSv1_3) -> bytes:
    """The first flight of a real TLS client, as it would arrive on the wire."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.maximum_version = maximum
    if alpn:
        context.set_alpn_protocols(list(alpn))
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = context.wrap_bio(incoming, outgoing, server_hostname=server_name)
    try:
        tls.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return outgoing.read()


def fragment(hello: bytes, size: int) -> bytes:
    """The same handshake message cut into records of at most ``size`` bytes (RFC 8446 5.1)."""
    header, body = hello[:5], hello[5:]
    records = b""
    for i in range(0, len(body), size):
        chunk = body[i:i + size]
        records += header[:3] + len(chunk).to_bytes(2, "big") + chunk
    return records


def test_tls13_hello_gives_name_versions_and_alpn():
    result = parse_client_hello(client_hello("a.example"))
    assert result.status is HelloStatus.OK
    assert result.server_name == "a.example"
    assert result.hello_type == 1
    assert result.client_version == 0x0303
    assert 0x0304 in result.supported_versions
    assert result.alpn == ("h2", "http/1.1")


def test_tls12_hello_is_read_too():
    result = parse_client_hello(client_hello("b.example", alpn=(), maximum=ssl.TLSVersion.TLSv1_2))
    assert result.status is HelloStatus.OK
    assert result.server_name == "b.example"
    assert 0x0304 not in result.supported_versions


def test_the_name_keeps_its_case():
    assert parse_client_hello(client_hello("MiXeD.Example")).server_name == "MiXeD.Example"


def test_every_strict_prefix_is_incomplete():
    hello = client_hello("prefix.example")
    for end in range(len(hello)):
        result = parse_client_hello(hello[:end])
        assert result.status is HelloStatus.INCOMPLETE, end
        assert result.needed == 0 or result.needed > end


def test_a_hello_fragmented_over_records_is_joined():
    hello = client_hello("fragments.example")
    for size in (1, 7, 100):
        data = fragment(hello, size)
        assert parse_client_hello(data).server_name == "fragments.example"
        assert parse_client_hello(data[:-1]).status is HelloStatus.INCOMPLETE


def test_plain_text_and_sslv2_are_not_tls():
    assert parse_client_hello(b"GET / HTTP/1.1\r\n").status is HelloStatus.NOT_TLS
    assert parse_client_hello(b"\x80\x2e\x01\x03\x01").status is HelloStatus.NOT_TLS
    assert parse_client_hello(b"\x16\x04").status is HelloStatus.NOT_TLS


def test_a_hello_without_server_name_is_ok_with_no_name():
    hello = client_hello("x.example")
    # Rename the server_name extension (type 0) to an unknown type: same length, no SNI.
    index = hello.index(b"x.example") - 9
    assert hello[index:index + 2] == b"\x00\x00"
    result = parse_client_hello(hello[:index] + b"\xfa\xfa" + hello[index + 2:])
    assert result.status is HelloStatus.OK and result.server_name is None


def test_oversized_and_inconsistent_lengths_are_malformed():
    assert parse_client_hello(b"\x16\x03\x01\xff\xff").status is HelloStatus.MALFORMED
    hello = bytearray(client_hello("len.example"))
    hello[6] = 0x01  # the handshake message claims more than 64 KiB
    assert parse_client_hello(bytes(hello)).status is HelloStatus.MALFORMED
    hello = bytearray(client_hello("len.example"))
    hello[43] = 0xFF  # the session id length no longer fits the message
    assert parse_client_hello(bytes(hello)).status is HelloStatus.MALFORMED


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=600))
def test_any_bytes_get_an_answer(data):
    assert parse_client_hello(data).status in HelloStatus


REAL_HELLO = client_hello("fuzz.example")


@settings(max_examples=400, deadline=None)
@given(st.lists(st.tuples(st.integers(0, len(REAL_HELLO) - 1), st.integers(0, 255)), max_size=8),
       st.integers(0, len(REAL_HELLO)))
def test_mutated_real_hellos_get_an_answer(changes, cut):
    data = bytearray(REAL_HELLO)
    for index, value in changes:
        data[index] = value
    assert parse_client_hello(bytes(data[:cut])).status in HelloStatus


@settings(max_examples=300, deadline=None)
@given(st.integers(0, len(REAL_HELLO)), st.binary(max_size=64), st.integers(0, 64), st.binary(max_size=40))
def test_real_hellos_with_bytes_inserted_or_cut_get_an_answer(at, inserted, cut, after):
    data = REAL_HELLO[:at] + inserted + REAL_HELLO[at + cut:] + after
    result = parse_client_hello(data)
    assert result.status in HelloStatus
    if result.status is HelloStatus.INCOMPLETE and result.needed:
        assert result.needed > len(data)  # it asks for more than it had
