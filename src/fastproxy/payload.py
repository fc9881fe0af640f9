"""The client's first bytes as HAProxy's content fetches read them (its src/payload.c, and the HTTP
request line ``req.proto_http``, ``method``, ``url`` and ``req.ver`` parse on a TCP stream).

Sans-IO: each function takes the bytes the client sent so far (peeked, still in its receive queue) and
answers ``(value, more)``: the value, or None when there is none, and whether more bytes may still give
one or change it (HAProxy's ``SMP_F_MAY_CHANGE``: "too short").  Whether more bytes can still come
(``tcp-request inspect-delay`` not over, the client still sending) is the caller's business: ACLs wait
for ``more`` only then.  None of them raises, whatever the bytes.
"""

from __future__ import annotations

import re
from typing import Any, NamedTuple, Optional

from .c_integers import signed

__all__ = ["HttpRequest", "Read", "http_request", "payload", "payload_lv", "rdp_cookie", "request_length",
           "ssl_version"]

BUFFER_SIZE = 16384  # HAProxy's tune.bufsize: an offset beyond it never matches


class Read(NamedTuple):
    value: Any
    more: bool  # more bytes may give a value, or change this one


TOO_SHORT = Read(None, True)
NOTHING = Read(None, False)


def request_length(data: bytes) -> Read:
    """``req.len``: the bytes waiting, a value that changes as more arrive."""
    return Read(len(data), True)


def payload(data: bytes, offset: int, length: int) -> Read:
    """``req.payload(<offset>,<length>)``: ``length`` bytes at ``offset``; a length of 0 takes the rest
    of what arrived (which more bytes change)."""
    if length > BUFFER_SIZE or offset + length > BUFFER_SIZE:
        return NOTHING
    if offset + length > len(data):
        return TOO_SHORT
    if not length:
        return Read(data[offset:], True)
    return Read(data[offset:offset + length], False)


def payload_lv(data: bytes, offset1: int, length: int, offset2: Optional[str] = None) -> Read:
    """``req.payload_lv(<offset1>,<length>[,<offset2>])``: the block whose big-endian length is the
    ``length`` bytes at ``offset1``; it starts right after them, or at ``offset2`` (absolute, or
    relative to that point when it starts with ``+`` or ``-``)."""
    if offset1 + length > len(data):
        return TOO_SHORT
    size = int.from_bytes(data[offset1:offset1 + length], "big")
    start = offset1 + length
    if offset2:
        start = start + signed(offset2) if offset2[0] in "+-" else signed(offset2)
    if not size or size > BUFFER_SIZE or start + size > BUFFER_SIZE:
        return NOTHING
    if start + size > len(data):
        return TOO_SHORT
    return Read(data[start:start + size], False)


def ssl_version(data: bytes) -> Read:
    """``req.ssl_ver``: the version a TLS ClientHello asks for, as ``(major << 16) | minor`` (SSLv3
    records: the hello's client_version; SSLv2-compatible hellos: their version), once the whole
    first record is there."""
    if not data:
        return TOO_SHORT
    first = data[0]
    if 0x14 <= first <= 0x17 or first == 0xFF:
        if len(data) < 11:
            return TOO_SHORT
        if (data[1] << 16) + data[2] < 0x30000:
            return NOTHING
        record = (data[3] << 8) + data[4]
        if record < 6 or record > (1 << 14) + 2048:
            return NOTHING
        version = (data[9] << 16) + data[10]
        left, needed = len(data) - 5, record
    else:  # SSLv2 header, read for a hello only
        if first & 0x80:
            if len(data) < 3:
                return TOO_SHORT
            record, pad, pos = ((first & 0x7F) << 8) | data[1], 0, 2
        else:
            if len(data) < 4:
                return TOO_SHORT
            record, pad, pos = ((first & 0x3F) << 8) | data[1], data[2], 3
        if data[pos] != 0x01:
            return NOTHING
        pos += 1
        if len(data) < pos + 8:
            return TOO_SHORT
        version = (data[pos] << 16) + data[pos + 1]
        ciphers, session, challenge = (int.from_bytes(data[pos + i:pos + i + 2], "big") for i in (2, 4, 6))
        if ciphers % 3 or (session and session != 16) or not 16 <= challenge <= 32 or \
                record != 9 + ciphers + session + challenge:
            return NOTHING
        left, needed = len(data) - pos - 8, ciphers + session + challenge + pad
    if left < min(needed, BUFFER_SIZE):
        return TOO_SHORT
    return Read(version, False)


def rdp_cookie(data: bytes, name: str = "") -> Read:
    """``req.rdp_cookie([<name>])``: the value of the ``Cookie: <name>=<value>\\r\\n`` line of an RDP
    connection request (after its 11-byte TPKT and X.224 headers); any cookie without a name."""
    if len(data) <= 11 + 7:
        return TOO_SHORT
    pos = 11
    if data[pos:pos + 7].lower() != b"cookie:":
        return NOTHING
    pos += 7
    while pos < len(data) and data[pos] == 0x20:
        pos += 1
    if name:
        wanted = name.encode("latin-1")
        if len(data) - pos <= len(wanted):
            return TOO_SHORT
        if data[pos + len(wanted)] != 0x3D or data[pos:pos + len(wanted)].lower() != wanted.lower():
            return NOTHING
        pos += len(wanted) + 1
    else:
        while pos < len(data) and data[pos] != 0x3D:
            if data[pos] in (0x0D, 0x0A):
                return NOTHING
            pos += 1
        if pos >= len(data):
            return TOO_SHORT
        pos += 1
    end = data.find(b"\r", pos)
    if end < 0 or end + 2 > len(data):
        return TOO_SHORT
    if data[end + 1] != 0x0A:
        return NOTHING
    return Read(data[pos:end].decode("latin-1"), False)


class HttpRequest(NamedTuple):
    method: str
    url: str
    version: str  # "1.1" for HTTP/1.1


_TOKEN = rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]"
_REQUEST_LINE = re.compile(rb"(" + _TOKEN + rb"+) ([^\x00-\x20\x7f]+) HTTP/([0-9])\.([0-9])\r?")
_HEADER_LINE = re.compile(_TOKEN + rb"+:[^\x00-\x08\x0a-\x1f\x7f]*\r?")
_PARTIAL_LINE = re.compile(rb"(?:" + _TOKEN + rb"*)(?: [^\x00-\x20\x7f]*(?: (?P<version>.*))?)?", re.DOTALL)
_VERSION_TEMPLATE = b"HTTP/0.0\r"  # 0: a digit


def _may_become_request_line(data: bytes) -> bool:
    """Whether ``data``, a first line not ended yet, can still be the start of a request line."""
    match = _PARTIAL_LINE.fullmatch(data)
    if match is None:
        return False
    version = match["version"] or b""
    if len(version) > len(_VERSION_TEMPLATE):
        return False
    return all(chr(c).isdigit() if t == 0x30 else c == t for c, t in zip(version, _VERSION_TEMPLATE))


def http_request(data: bytes) -> Read:
    """The request line of an HTTP/1.x request whose headers have all arrived (``req.proto_http`` is
    true then); None for bytes that cannot be one; too short while they may still become one."""
    end = data.find(b"\n")
    if end < 0:  # no whole line yet: only a prefix of a request line may still become one
        return TOO_SHORT if _may_become_request_line(data) and len(data) < BUFFER_SIZE else NOTHING
    first = _REQUEST_LINE.fullmatch(data, 0, end)
    if first is None:
        return NOTHING
    pos = end + 1
    while True:
        end = data.find(b"\n", pos)
        if end < 0:
            return TOO_SHORT if len(data) < BUFFER_SIZE else NOTHING
        if data[pos:end] in (b"", b"\r"):
            break
        if not _HEADER_LINE.fullmatch(data, pos, end):
            return NOTHING
        pos = end + 1
    method, url, major, minor = (part.decode("latin-1") for part in first.groups())
    return Read(HttpRequest(method, url, f"{major}.{minor}"), False)
