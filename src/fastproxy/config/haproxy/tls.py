"""The TLS settings ``bind`` and ``server`` lines share (HAProxy's ssl_sock.c keywords of both lists), read
into a ``model.TlsOptions``, and those of either that fastproxy refuses.

Refused settings change what is accepted or sent on the wire in ways fastproxy cannot do with Python's
``ssl`` module (TLS 1.3 cipher suites, CRLs, 0-RTT, NPN, certificate generation): ignoring them would
make a handshake succeed or fail where HAProxy's would not, so they are errors with the reason.
Settings that only tune a handshake (curves, tickets) are the caller's warnings.
"""

from __future__ import annotations

import dataclasses
from typing import Optional

from ..model import TlsOptions
from .lexer import _Invalid

VERSIONS = ("SSLv3", "TLSv1.0", "TLSv1.1", "TLSv1.2", "TLSv1.3")  # HAProxy's names, oldest first
_NO_VERSION = {"no-sslv3": "SSLv3", "no-tlsv10": "TLSv1.0", "no-tlsv11": "TLSv1.1", "no-tlsv12": "TLSv1.2",
               "no-tlsv13": "TLSv1.3"}
_FORCE_VERSION = {"force-sslv3": "SSLv3", "force-tlsv10": "TLSv1.0", "force-tlsv11": "TLSv1.1",
                  "force-tlsv12": "TLSv1.2", "force-tlsv13": "TLSv1.3"}

# Settings of both lists and their argument counts: what ``apply`` reads.
SHARED: dict[str, int] = {"alpn": 1, "ssl-min-ver": 1, "ssl-max-ver": 1, "ciphers": 1,
                          **dict.fromkeys(_NO_VERSION, 0), **dict.fromkeys(_FORCE_VERSION, 0)}

_WHY = {
    "ciphersuites": "sets the TLS 1.3 cipher suites, which Python's ssl module cannot choose",
    "crl-file": "checks certificates against revocation lists, which fastproxy does not load",
    "allow-0rtt": "accepts or sends TLS 1.3 early data, which Python's ssl module does not do",
    "npn": "negotiates protocols with NPN, which Python's ssl module no longer offers (use 'alpn')",
    "ca-ignore-err": "accepts client certificates failing verification, which fastproxy does not do",
    "crt-ignore-err": "accepts client certificates failing verification, which fastproxy does not do",
    "ca-verify-file": "verifies client certificates against a CA it does not name to them, which "
                      "Python's ssl module does not do",
    "ca-sign-file": "generates certificates, which fastproxy does not do",
    "ca-sign-pass": "generates certificates, which fastproxy does not do",
    "generate-certificates": "generates certificates, which fastproxy does not do",
    "crt-list": "reads a certificate list with per-certificate settings, which fastproxy does not do "
                "(name the certificates with 'crt <file or directory>')",
    "send-proxy-v2-ssl": "adds the client's TLS details to the PROXY header, which fastproxy does not do",
    "send-proxy-v2-ssl-cn": "adds the client's TLS details to the PROXY header, which fastproxy does not do",
}


def refused(name: str, values: list[str]) -> _Invalid:
    """The error for a TLS setting fastproxy does not act on, with its reason."""
    shown = f"'{name} {values[0]}'" if values else f"'{name}'"
    return _Invalid(f"{shown} {_WHY[name]}")


def is_refused(name: str) -> bool:
    return name in _WHY


def apply(options: TlsOptions, name: str, values: list[str]) -> Optional[TlsOptions]:
    """``options`` with the shared setting ``name`` applied, or None when ``name`` is not one of them."""
    if name == "alpn":
        if not values[0]:
            raise _Invalid("'alpn' : missing the comma-delimited ALPN protocol suite.")
        protocols = tuple(protocol for protocol in values[0].split(",") if protocol)
        return dataclasses.replace(options, alpn=protocols)
    if name in ("ssl-min-ver", "ssl-max-ver"):
        if values[0] not in VERSIONS:
            raise _Invalid(f"'{values[0]}' : unknown ssl/tls version.")
        if name == "ssl-min-ver":
            return dataclasses.replace(options, min_version=values[0])
        return dataclasses.replace(options, max_version=values[0])
    if name == "ciphers":
        return dataclasses.replace(options, ciphers=values[0])
    if name in _NO_VERSION:
        return dataclasses.replace(options, excluded=tuple(sorted({*options.excluded, _NO_VERSION[name]})))
    if name in _FORCE_VERSION:
        version = _FORCE_VERSION[name]
        return dataclasses.replace(options, min_version=version, max_version=version)
    return None
