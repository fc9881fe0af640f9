"""The PROXY protocol, versions 1 and 2 (HAProxy's proxy-protocol.txt), sans-IO.

``encode_v1`` / ``encode_v2`` build the header a server with ``send-proxy`` / ``send-proxy-v2`` receives
before any byte of the client; ``parse`` reads the header a client of a ``bind ... accept-proxy`` must
send first, and says how many bytes it took so that the rest can be forwarded.  ``parse`` never raises.
"""

from __future__ import annotations

import enum
import ipaddress
import struct
from dataclasses import dataclass
from typing import Optional, Sequence

V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
V1_PREFIX = b"PROXY "
V1_MAX = 107  # the longest v1 line, CRLF included
V2_FAMILIES = {0x11: ("TCP4", 12), 0x21: ("TCP6", 36), 0x12: ("UDP4", 12), 0x22: ("UDP6", 36)}


class ProxyStatus(enum.Enum):
    INCOMPLETE = "incomplete"
    OK = "ok"
    INVALID = "invalid"


@dataclass(frozen=True)
class ProxyHeaderResult:
    status: ProxyStatus
    version: Optional[int] = None
    command: Optional[str] = None  # "PROXY" or "LOCAL" (v1 UNKNOWN reads as LOCAL: use the real peer)
    family: Optional[str] = None  # "TCP4", "TCP6", "UDP4", "UDP6", "UNKNOWN"
    src: Optional[tuple[str, int]] = None
    dst: Optional[tuple[str, int]] = None
    tlvs: tuple[tuple[int, bytes], ...] = ()
    length: int = 0  # bytes the header took


INCOMPLETE = ProxyHeaderResult(ProxyStatus.INCOMPLETE)
INVALID = ProxyHeaderResult(ProxyStatus.INVALID)


def _family_of(host: str) -> int:
    return ipaddress.ip_address(host).version


def encode_v1(src: tuple[str, int], dst: tuple[str, int]) -> bytes:
    """``PROXY TCP4|TCP6 src dst sport dport\\r\\n``; UNKNOWN when the two families differ."""
    version = _family_of(src[0])
    if version != _family_of(dst[0]):
        return encode_v1_unknown()
    family = "TCP4" if version == 4 else "TCP6"
    src_ip = ipaddress.ip_address(src[0]).compressed
    dst_ip = ipaddress.ip_address(dst[0]).compressed
    return f"PROXY {family} {src_ip} {dst_ip} {src[1]} {dst[1]}\r\n".encode("ascii")


def encode_v1_unknown() -> bytes:
    return b"PROXY UNKNOWN\r\n"


def encode_v2(src: Optional[tuple[str, int]] = None, dst: Optional[tuple[str, int]] = None, *,
              command: str = "PROXY", tlvs: Sequence[tuple[int, bytes]] = ()) -> bytes:
    """A v2 header: PROXY over TCP4/TCP6 with the two addresses, or LOCAL (no addresses)."""
    extra = b"".join(struct.pack("!BH", kind, len(value)) + value for kind, value in tlvs)
    if command == "LOCAL" or src is None or dst is None:
        return V2_SIGNATURE + struct.pack("!BBH", 0x20, 0x00, len(extra)) + extra
    if command != "PROXY":
        raise ValueError(f"unknown PROXY command {command!r}")
    src_ip, dst_ip = ipaddress.ip_address(src[0]), ipaddress.ip_address(dst[0])
    if src_ip.version != dst_ip.version:  # mixed families: present both as IPv6
        src_ip = src_ip if src_ip.version == 6 else ipaddress.IPv6Address(f"::ffff:{src_ip}")
        dst_ip = dst_ip if dst_ip.version == 6 else ipaddress.IPv6Address(f"::ffff:{dst_ip}")
    family = 0x11 if src_ip.version == 4 else 0x21
    addresses = src_ip.packed + dst_ip.packed + struct.pack("!HH", src[1], dst[1])
    body = addresses + extra
    return V2_SIGNATURE + struct.pack("!BBH", 0x21, family, len(body)) + body


def parse(data: bytes) -> ProxyHeaderResult:
    """Read a v1 or v2 header at the start of ``data``; never raises."""
    try:
        data = bytes(data)
        if len(data) < len(V2_SIGNATURE) and V2_SIGNATURE.startswith(data):
            return INCOMPLETE  # so far a prefix of the v2 signature (or nothing at all)
        if data.startswith(V2_SIGNATURE):
            return _parse_v2(data)
        if V1_PREFIX.startswith(data[:len(V1_PREFIX)]):
            return _parse_v1(data)
        return INVALID
    except (ValueError, IndexError, struct.error, UnicodeDecodeError):
        return INVALID


def _port(text: str) -> int:
    if not text.isdigit() or (len(text) > 1 and text[0] == "0") or int(text) > 65535:
        raise ValueError(f"bad port {text!r}")
    return int(text)


def _parse_v1(data: bytes) -> ProxyHeaderResult:
    if len(data) < len(V1_PREFIX):
        return INCOMPLETE
    end = data.find(b"\r\n", 0, V1_MAX)
    if end < 0:
        return INCOMPLETE if len(data) < V1_MAX else INVALID
    words = data[:end].decode("ascii").split(" ")
    if words[0] != "PROXY" or len(words) < 2:
        return INVALID
    length = end + 2
    if words[1] == "UNKNOWN":
        return ProxyHeaderResult(ProxyStatus.OK, 1, "LOCAL", "UNKNOWN", length=length)
    if words[1] not in ("TCP4", "TCP6") or len(words) != 6:
        return INVALID
    expected = 4 if words[1] == "TCP4" else 6
    src_ip, dst_ip = ipaddress.ip_address(words[2]), ipaddress.ip_address(words[3])
    if src_ip.version != expected or dst_ip.version != expected:
        return INVALID
    return ProxyHeaderResult(ProxyStatus.OK, 1, "PROXY", words[1], (str(src_ip), _port(words[4])),
                             (str(dst_ip), _port(words[5])), length=length)


def _parse_v2(data: bytes) -> ProxyHeaderResult:
    if len(data) < 16:
        return INCOMPLETE
    version_command, family_byte, body_length = struct.unpack("!BBH", data[12:16])
    if version_command >> 4 != 2:
        return INVALID
    command = {0: "LOCAL", 1: "PROXY"}.get(version_command & 0x0F)
    if command is None:
        return INVALID
    if len(data) < 16 + body_length:
        return INCOMPLETE
    body = data[16:16 + body_length]
    length = 16 + body_length
    if command == "LOCAL" or family_byte == 0x00:
        # LOCAL, or PROXY over an unspecified family: the receiver uses the real connection's addresses.
        return ProxyHeaderResult(ProxyStatus.OK, 2, "LOCAL", "UNKNOWN", tlvs=_tlvs(body, 0), length=length)
    if family_byte not in V2_FAMILIES:
        return INVALID
    family, size = V2_FAMILIES[family_byte]
    if body_length < size:
        return INVALID
    width = 4 if size == 12 else 16
    src_ip = ipaddress.ip_address(body[:width])
    dst_ip = ipaddress.ip_address(body[width:2 * width])
    src_port, dst_port = struct.unpack("!HH", body[2 * width:2 * width + 4])
    return ProxyHeaderResult(ProxyStatus.OK, 2, "PROXY", family, (str(src_ip), src_port),
                             (str(dst_ip), dst_port), _tlvs(body, size), length)


def _tlvs(body: bytes, start: int) -> tuple[tuple[int, bytes], ...]:
    found = []
    offset = start
    while offset < len(body):
        if offset + 3 > len(body):
            raise ValueError("truncated TLV")
        kind, size = struct.unpack("!BH", body[offset:offset + 3])
        if offset + 3 + size > len(body):
            raise ValueError("truncated TLV")
        found.append((kind, body[offset + 3:offset + 3 + size]))
        offset += 3 + size
    return tuple(found)
