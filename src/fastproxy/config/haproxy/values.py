"""Values in keyword arguments: times, sizes, integers, argument counts and addresses (HAProxy's
``str2sa_range``), each checked and turned into Python values or an ``_Invalid`` saying what was expected.

Pure functions over strings: no keyword tables, no model objects beyond what they return.
"""

from __future__ import annotations

import ipaddress
import math
import re
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Optional

from ...c_integers import INT_MAX, LONG_MAX, decimal
from .lexer import _Invalid

if TYPE_CHECKING:
    from .registry import _Line

_TIME = re.compile(r"([0-9]+)(us|ms|s|m|h|d)?", re.ASCII)
_TIME_UNITS_MS = {"us": 0.001, "ms": 1, None: 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}
_TIME_MAX_MS = 2**31 - 1
_SIZE = re.compile(r"([0-9]+)([kKmMgG]?)", re.ASCII)
_SIZE_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}
_INTEGER = re.compile(r"-?[0-9]+", re.ASCII)
def shown(text: str) -> str:
    """``text`` for a message: its start and its length when it is long (a number thousands of digits
    long, a line of a megabyte), so that the message stays readable."""
    return text if len(text) <= 40 else f"{text[:24]}... ({len(text)} characters)"


def parse_time(text: str) -> float:
    """``"5s"`` -> 5.0 seconds: HAProxy's time units ``us ms s m h d``, milliseconds by default.

    Rounded up to whole milliseconds and limited to 2^31-1 ms (~24.8 days), as HAProxy does.
    """
    match = _TIME.fullmatch(text)
    if not match:
        raise ValueError(f"expects a time such as 500ms, 5s or 1m (units us, ms, s, m, h, d; "
                         f"milliseconds by default), got '{shown(text)}'")
    milliseconds = math.ceil(decimal(match[1]) * _TIME_UNITS_MS[match[2]])
    if milliseconds > _TIME_MAX_MS:
        raise ValueError(f"timer overflow in '{shown(text)}' (maximum value is 2147483647 ms or ~24.8 days)")
    return milliseconds / 1000


def parse_size(text: str) -> int:
    """``"16k"`` -> 16384: a byte count with an optional ``k``, ``m`` or ``g`` (powers of 1024)."""
    match = _SIZE.fullmatch(text)
    if not match:
        raise ValueError(f"expects a size in bytes, optionally with a unit k, m or g, got '{shown(text)}'")
    size = decimal(match[1]) * _SIZE_UNITS[match[2].lower()]
    if size >= LONG_MAX:
        raise ValueError(f"size '{shown(text)}' is too large")
    return size


def _integer(text: str, what: str = "an integer", low: Optional[int] = None,
             high: Optional[int] = None) -> int:
    """An integer keyword's value, within ``low`` and ``high`` and in any case within a C int."""
    if not _INTEGER.fullmatch(text):
        raise _Invalid(f"expects {what}, got '{shown(text)}'")
    magnitude = decimal(text.removeprefix("-"))
    value = -magnitude if text.startswith("-") else magnitude
    if (low is not None and value < low) or (high is not None and value > high):
        bounds = (f"between {low} and {high}" if high is not None else f"at least {low}")
        raise _Invalid(f"expects {what} ({bounds}), got '{shown(text)}'")
    if not -INT_MAX - 1 <= value <= INT_MAX:
        # HAProxy's atol() would keep what fits in its C int (9999999999 is 1410065407): refused.
        raise _Invalid(f"expects {what}, got '{shown(text)}': too large (at most {INT_MAX})")
    return value


def _time(text: str) -> float:
    try:
        return parse_time(text)
    except ValueError as exc:
        raise _Invalid(str(exc)) from None


def _size(text: str) -> int:
    try:
        return parse_size(text)
    except ValueError as exc:
        raise _Invalid(str(exc)) from None


def _arguments(args: Sequence[str], count: int, what: str) -> list[str]:
    """Exactly ``count`` arguments; ``what`` describes them for the message."""
    if len(args) < count:
        raise _Invalid(f"expects {what}")
    if len(args) > count:
        raise _Invalid(f"cannot handle unexpected argument '{args[count]}' (expects {what})")
    return list(args)


def _one(args: Sequence[str], what: str) -> str:
    return _arguments(args, 1, what)[0]


def _none(args: Sequence[str]) -> None:
    _arguments(args, 0, "no argument")


def _leading(line: _Line, args: Sequence[str], count: int, what: str) -> list[str]:
    """The first ``count`` arguments; HAProxy ignores extra ones for some keywords, we warn."""
    if len(args) < count:
        raise _Invalid(f"expects {what}")
    if len(args) > count:
        line.warn(f"extra argument '{args[count]}' ignored (HAProxy ignores it too)")
    return list(args[:count])


# --- addresses ---------------------------------------------------------------------------------------

_FAMILY_PREFIXES = {"ipv4@": "ipv4", "ipv6@": "ipv6", "tcp@": None, "tcp4@": "ipv4", "tcp6@": "ipv6"}
_UNSUPPORTED_PREFIXES = ("unix@", "abns@", "fd@", "sockpair@", "udp@", "udp4@", "udp6@", "uxst@",
                         "uxdg@", "quic4@", "quic6@", "rhttp@", "mptcp@", "mptcp4@", "mptcp6@")
_HOST_NAME = re.compile(r"[A-Za-z0-9_]([A-Za-z0-9_.-]*[A-Za-z0-9_.])?", re.ASCII)


@dataclass
class _Address:
    family: Optional[str]  # "ipv4" | "ipv6" | None
    host: str  # "" for "any address"
    port_text: Optional[str]


def _split_address(text: str) -> _Address:
    """``[family@]host[:port]`` in HAProxy's forms: ``[::1]:80``, ``::1:80``, ``ipv6@::1:80``, ``*:80``."""
    family: Optional[str] = None
    for prefix, prefix_family in _FAMILY_PREFIXES.items():
        if text.startswith(prefix):
            family, text = prefix_family, text[len(prefix):]
            break
    else:
        if text.startswith(_UNSUPPORTED_PREFIXES) or text.startswith("/"):
            kind = text.split("@", 1)[0] + "@" if "@" in text else "UNIX socket path"
            raise _Invalid(f"'{kind}' addresses are not supported by fastproxy (TCP over IPv4/IPv6 only)")
        if "@" in text:
            raise _Invalid(f"unknown address family '{text.split('@', 1)[0]}@' in '{text}'")
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise _Invalid(f"missing ']' in address '{text}'")
        host, rest = text[1:end], text[end + 1:]
        if rest and not rest.startswith(":"):
            raise _Invalid(f"expects ':port' after ']' in '{text}'")
        return _Address(family, host, rest[1:] if rest else None)
    if ":" not in text:
        return _Address(family, text, None)
    host, port = text.rsplit(":", 1)  # so "::1:80" is [::1]:80, and "::1" is "::" port 1, as in HAProxy
    return _Address(family, host, port)


def _check_host(address: _Address, original: str) -> str:
    """The host, checked; "" and "*" mean every address of the family."""
    host = address.host
    if host in ("", "*"):
        return "::" if address.family == "ipv6" else "0.0.0.0"
    if re.fullmatch(r"[0-9.]+", host) and address.family != "ipv6":
        host = _inet_aton(host, original)
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        if ":" in host:
            raise _Invalid(f"invalid address: '{host}' in '{original}' (write IPv6 addresses as "
                           "[address]:port, or address:port with the port always present)") from None
        if not _HOST_NAME.fullmatch(host) or re.fullmatch(r"[0-9.]+", host):
            raise _Invalid(f"invalid address: '{host}' in '{original}'") from None
        return host
    if address.family and f"ipv{ip.version}" != address.family:
        raise _Invalid(f"address '{host}' is not an {address.family} address in '{original}'")
    return str(ip)


def _inet_aton(host: str, original: str) -> str:
    """HAProxy reads IPv4 addresses with inet_aton(): "127.1" is 127.0.0.1 and "0" is 0.0.0.0."""
    try:
        return socket.inet_ntoa(socket.inet_aton(host))
    except OSError:
        raise _Invalid(f"invalid address: '{host}' in '{original}'") from None


def _ip_address(text: str, keyword: str) -> tuple[str, Optional[str]]:
    """``<ip>[:<port>]`` where HAProxy takes an address without resolving it (``tcp-check connect
    addr``, ``source``): the IP and the port as written (None without)."""
    address = _split_address(text)
    host = _check_host(address, text)
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise _Invalid(f"'{keyword}' : invalid address: '{host}' in '{text}' (expects an IP "
                       "address)") from None
    return host, address.port_text


def _port(text: str, original: str) -> int:
    if not re.fullmatch(r"[0-9]+", text, re.ASCII):
        bad = next((c for c in text if not c.isdigit()), text[:1])
        raise _Invalid(f"invalid character '{bad}' in port number '{shown(text)}' in '{shown(original)}'")
    port = decimal(text)
    if not 1 <= port <= 65535:
        raise _Invalid(f"invalid port '{shown(text)}' (expects 1 to 65535)")
    return port


def _bind_addresses(text: str) -> list[tuple[Optional[str], str, int]]:
    """One ``bind`` argument (comma-separated addresses, port ranges) -> (family, host, port) each."""
    result = []
    for item in text.split(","):
        if not item:
            raise _Invalid(f"empty address in '{text}'")
        address = _split_address(item)
        host = _check_host(address, item)
        if not address.port_text:
            raise _Invalid(f"missing port specification in '{item}'")
        if address.port_text[0] in "+-":
            raise _Invalid(f"port offset not permitted here in '{item}'")
        low_text, _, high_text = address.port_text.partition("-")
        low = _port(low_text, item)
        high = _port(high_text, item) if high_text else low
        if high < low:
            raise _Invalid(f"invalid port range '{address.port_text}'")
        result += [(address.family, host, port) for port in range(low, high + 1)]
    return result


def _server_address(text: str) -> tuple[Optional[str], str, int]:
    """A ``server`` address -> (family, host, port); port 0 when absent (the client's destination port)."""
    address = _split_address(text)
    host = _check_host(address, text)
    if host in ("::", "0.0.0.0"):
        raise _Invalid(f"no address or the unspecified address in '{text}': HAProxy then connects to "
                       "the client's destination address, which fastproxy does not support (IPv6 "
                       "servers are written [addr]:port or addr:port)")
    port_text = address.port_text
    if not port_text:
        return address.family, host, 0
    if port_text[0] in "+-":
        raise _Invalid(f"port offsets ('{port_text}' in '{text}') are not supported by fastproxy; "
                       "write the port, or none to use the client's destination port")
    if "-" in port_text:
        raise _Invalid(f"port range not permitted here in '{text}'")
    if port_text == "0":
        return address.family, host, 0
    return address.family, host, _port(port_text, text)


def _check_name(kind: str, name: str) -> None:
    bad = re.search(r"[^A-Za-z0-9_.:-]", name)
    if bad:
        raise _Invalid(f"character '{bad.group()}' is not permitted in {kind} name '{name}'")


def _regex(pattern: str) -> str:
    """A check's regular expression, refused at its line if Python cannot compile it."""
    try:
        re.compile(pattern)
    except (re.error, OverflowError, RecursionError) as exc:
        raise _Invalid(f"regex '{pattern}' is invalid ({exc})") from None
    return pattern
