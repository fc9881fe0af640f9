"""TLS ClientHello reader for routing TLS passthrough by server name (HAProxy's ``req.ssl_sni``).

Sans-IO: ``parse_client_hello(data)`` looks at the bytes a client sent so far and says whether they hold
a whole ClientHello (``OK``, with the server name, versions and ALPN), need more (``INCOMPLETE``), are not
a TLS handshake at all (``NOT_TLS``) or are a TLS handshake that cannot be read (``MALFORMED``).  It never
raises: whatever the bytes, the answer is one of those four.

The hello may be fragmented over several handshake records (RFC 8446 5.1); they are joined.  SSLv2
compatible hellos (first byte with the high bit set) are reported as NOT_TLS, as HAProxy's
``req.ssl_sni`` does not read them either.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Optional

RECORD_HANDSHAKE = 0x16
HANDSHAKE_CLIENT_HELLO = 1
MAX_RECORD = (1 << 14) + 2048  # the largest TLSCiphertext fragment; a hello is plaintext, smaller
MAX_HELLO = 1 << 16  # more than any real ClientHello, small enough to bound the wait
EXT_SERVER_NAME = 0
EXT_ALPN = 16
EXT_SUPPORTED_VERSIONS = 43


class HelloStatus(enum.Enum):
    INCOMPLETE = "incomplete"
    OK = "ok"
    NOT_TLS = "not-tls"
    MALFORMED = "malformed"


@dataclass(frozen=True)
class ClientHelloResult:
    status: HelloStatus
    server_name: Optional[str] = None
    hello_type: Optional[int] = None  # the first handshake message's type: 1 for a ClientHello
    record_version: Optional[int] = None
    client_version: Optional[int] = None
    alpn: tuple[str, ...] = ()
    supported_versions: tuple[int, ...] = ()
    extensions: tuple[int, ...] = ()  # the types of its extensions, in their order
    needed: int = 0  # with INCOMPLETE: the total length needed to go on, when known


def _incomplete(needed: int = 0, **known: object) -> ClientHelloResult:
    return ClientHelloResult(HelloStatus.INCOMPLETE, needed=needed, **known)  # type: ignore[arg-type]


MALFORMED = ClientHelloResult(HelloStatus.MALFORMED)
NOT_TLS = ClientHelloResult(HelloStatus.NOT_TLS)


def parse_client_hello(data: bytes) -> ClientHelloResult:
    """What the first bytes of a client say; never raises."""
    try:
        return _parse(bytes(data))
    except (IndexError, ValueError, UnicodeDecodeError):  # a bound check missed below: still an answer
        return MALFORMED


def _parse(data: bytes) -> ClientHelloResult:
    if not data:
        return _incomplete(5)
    if data[0] != RECORD_HANDSHAKE:
        return NOT_TLS
    if len(data) >= 2 and data[1] != 3:  # SSL 3.0 and every TLS version have major version 3
        return NOT_TLS
    if len(data) < 5:
        return _incomplete(5)
    record_version = (data[1] << 8) | data[2]

    # Join the handshake records until the first handshake message is whole.
    handshake = bytearray()
    offset = 0
    wanted = 4  # the handshake header, then the whole message
    while len(handshake) < wanted:
        if len(data) < offset + 5:
            return _incomplete(offset + 5, record_version=record_version)
        if data[offset] != RECORD_HANDSHAKE:
            return MALFORMED  # another record type in the middle of the hello
        length = (data[offset + 3] << 8) | data[offset + 4]
        if length == 0 or length > MAX_RECORD:
            return MALFORMED
        if len(data) < offset + 5 + length:
            first = handshake[0] if handshake else (data[offset + 5] if len(data) > offset + 5 else None)
            return _incomplete(offset + 5 + length, record_version=record_version, hello_type=first)
        handshake += data[offset + 5:offset + 5 + length]
        offset += 5 + length
        if len(handshake) >= 4 and wanted == 4:
            wanted = 4 + ((handshake[1] << 16) | (handshake[2] << 8) | handshake[3])
            if wanted > MAX_HELLO:
                return MALFORMED
    hello_type = handshake[0]
    if hello_type != HANDSHAKE_CLIENT_HELLO:
        return ClientHelloResult(HelloStatus.OK, hello_type=hello_type, record_version=record_version)
    return _client_hello(bytes(handshake[4:wanted]), record_version)


class _Reader:
    """Bounds-checked reads over one buffer; any overrun is a ValueError."""

    __slots__ = ("data", "pos", "end")

    def __init__(self, data: bytes, pos: int = 0, end: Optional[int] = None) -> None:
        self.data = data
        self.pos = pos
        self.end = len(data) if end is None else end

    def take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > self.end:
            raise ValueError("truncated")
        chunk = self.data[self.pos:self.pos + n]
        self.pos += n
        return chunk

    def u8(self) -> int:
        return self.take(1)[0]

    def u16(self) -> int:
        b = self.take(2)
        return (b[0] << 8) | b[1]

    def vector(self, length_size: int) -> "_Reader":
        n = self.u8() if length_size == 1 else self.u16()
        start = self.pos
        self.take(n)
        return _Reader(self.data, start, start + n)

    @property
    def left(self) -> int:
        return self.end - self.pos


def _client_hello(body: bytes, record_version: int) -> ClientHelloResult:
    r = _Reader(body)
    try:
        client_version = r.u16()
        r.take(32)  # random
        r.vector(1)  # legacy session id
        suites = r.vector(2)
        if suites.left == 0 or suites.left % 2:
            return MALFORMED
        if r.vector(1).left == 0:  # compression methods: at least "null"
            return MALFORMED
        server_name: Optional[str] = None
        alpn: tuple[str, ...] = ()
        versions: tuple[int, ...] = ()
        seen: dict[int, None] = {}  # ordered
        if r.left:
            extensions = r.vector(2)
            if r.left:
                return MALFORMED  # bytes after the extensions
            while extensions.left:
                ext_type = extensions.u16()
                ext = extensions.vector(2)
                if ext_type in seen:
                    return MALFORMED  # RFC 8446 4.2: at most one extension of each type
                seen[ext_type] = None
                if ext_type == EXT_SERVER_NAME:
                    server_name = _server_name(ext)
                elif ext_type == EXT_ALPN:
                    alpn = _alpn(ext)
                elif ext_type == EXT_SUPPORTED_VERSIONS:
                    versions = _versions(ext)
    except ValueError:
        return MALFORMED
    return ClientHelloResult(HelloStatus.OK, server_name=server_name, hello_type=HANDSHAKE_CLIENT_HELLO,
                             record_version=record_version, client_version=client_version, alpn=alpn,
                             supported_versions=versions, extensions=tuple(seen))


def _server_name(ext: _Reader) -> Optional[str]:
    names = ext.vector(2)
    host: Optional[str] = None
    while names.left:
        name_type = names.u8()
        name = names.vector(2)
        value = name.take(name.left)
        if name_type == 0 and host is None:  # host_name; other types are skipped
            if not value:
                raise ValueError("empty host name")
            host = value.decode("ascii")
    return host


def _alpn(ext: _Reader) -> tuple[str, ...]:
    protocols = ext.vector(2)
    found = []
    while protocols.left:
        proto = protocols.vector(1)
        found.append(proto.take(proto.left).decode("latin-1"))
    return tuple(found)


def _versions(ext: _Reader) -> tuple[int, ...]:
    versions = ext.vector(1)
    if versions.left % 2:
        raise ValueError("odd supported_versions")
    return tuple(versions.u16() for _ in range(versions.left // 2))
