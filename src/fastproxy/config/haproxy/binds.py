"""``bind`` and its settings (HAProxy's ``bind_kws``): one ``Bind`` per address and port of the line.

``BIND_OPTIONS`` lists every setting HAProxy 2.6 knows with its argument count, so that the ones
fastproxy does not act on are skipped with a warning rather than misread.
"""

from __future__ import annotations

import os
import socket

from ..model import Bind, TlsOptions
from . import tls
from .lexer import _Invalid, env_expand
from .registry import FE, _Line, _Proxy, _keyword
from .values import _bind_addresses, _integer, decimal, shown


@_keyword("bind", caps=FE, in_defaults="no")
def _bind(line: _Line, proxy: _Proxy, args: list[str]) -> None:
    if not args:
        raise _Invalid("expects [address]:port[-port][,...] and optional settings")
    settings: dict = {}
    options = args[1:]
    i = 0
    while i < len(options):
        name = options[i]
        i += 1
        count = BIND_OPTIONS.get(name)
        if count is None:
            raise _Invalid(f"unknown keyword '{name}' in 'bind {args[0]}'")
        values = options[i:i + count]
        if len(values) < count:
            raise _Invalid(f"'{name}' expects an argument in 'bind {args[0]}'")
        i += count
        _bind_option(line, settings, name, values)
    text = env_expand(args[0], line.reader.environ)
    if text.startswith(_INHERITED_PREFIXES):
        prefix, _, number = text.partition("@")
        fd = _inherited_socket(number, text)
        if prefix == "sockpair":
            raise _Invalid(f"'{text}': a socket pair handing accepted connections over is not supported by "
                           "fastproxy; hand the listening socket itself over with 'fd@<n>'")
        proxy.binds.append(Bind(host="", port=0, fd=fd, location=line.location, **settings))
        return
    for family, host, port in _bind_addresses(text):
        bind = Bind(host=host, port=port, family=family, location=line.location, **settings)
        proxy.binds.append(bind)


_INHERITED_PREFIXES = ("fd@", "sockpair@")


def _inherited_socket(number: str, text: str) -> int:
    """The descriptor of ``fd@<n>``, checked as HAProxy checks it when it reads the line: a TCP socket
    this process holds (systemd's socket activation and test harnesses hand listeners over so)."""
    if not number.isdigit():
        raise _Invalid(f"file descriptor '{number}' is not a valid integer in '{text}'")
    fd = decimal(number)
    try:
        sock = socket.socket(fileno=os.dup(fd))
    except OverflowError:  # past a C int: no descriptor of this process
        raise _Invalid(f"cannot use file descriptor '{shown(number)}' : Bad file descriptor.") from None
    except OSError as exc:
        raise _Invalid(f"cannot use file descriptor '{fd}' : {os.strerror(exc.errno or 0)}.") from None
    with sock:
        if sock.family not in (socket.AF_INET, socket.AF_INET6) or sock.type != socket.SOCK_STREAM:
            raise _Invalid(f"file descriptor '{fd}' is not a TCP socket: fastproxy listens on TCP only")
    return fd


def _bind_option(line: _Line, settings: dict, name: str, values: list[str]) -> None:
    if name == "name":
        settings["name"] = values[0]
    elif name in ("backlog", "maxconn"):
        settings[name] = _integer(values[0], f"a number for '{name}'", 1)
        if name == "maxconn":  # recorded in Bind.maxconn; the engine limits frontends, not listeners
            line.warn("not acted on: fastproxy does not limit the connections of one listener; the "
                      "frontend's 'maxconn' and the global one apply to it", "bind maxconn")
    elif name == "accept-proxy":
        settings["accept_proxy"] = True
    elif name == "defer-accept":
        settings["defer_accept"] = True
    elif name in ("v4v6", "v6only"):
        settings["v6only"] = name == "v6only"
    elif name == "interface":
        settings["interface"] = values[0]
    elif name == "namespace":
        raise _Invalid("'namespace': fastproxy listens in its own network namespace only: this listener "
                       "would receive another namespace's clients")
    elif name == "transparent":
        raise _Invalid("'transparent' (binding foreign addresses) is not supported by fastproxy")
    elif name == "accept-netscaler-cip":
        # Ignoring it would forward the header to the server as data and route by the NetScaler's address.
        raise _Invalid("'accept-netscaler-cip': fastproxy does not decode NetScaler client IP headers: the "
                       "header would be forwarded to the server and the addresses it gives ignored")
    elif name in ("ssl", "strict-sni"):
        settings[name.replace("-", "_")] = True
    elif name == "crt":
        path = based(values[0], line.reader.global_.crt_base)
        settings["crt"] = (*settings.get("crt", ()), _certificates(path))
    elif name == "ca-file":
        path = based(values[0], line.reader.global_.ca_base)
        if not os.path.isfile(path):
            raise _Invalid(f"'ca-file' : unable to load {path}")
        settings["ca_file"] = path
    elif name == "verify":
        if values[0] not in ("none", "optional", "required"):
            raise _Invalid(f"'verify' : unknown verify method '{values[0]}', only 'none', 'optional', and "
                           "'required' are supported")
        settings["verify"] = values[0]
    elif name in tls.SHARED:
        settings["tls"] = tls.apply(settings.get("tls", TlsOptions()), name, values)
    elif tls.is_refused(name):
        raise tls.refused(name, values)
    else:
        line.warn(f"bind setting '{name}' is not supported by fastproxy; ignored", f"bind {name}")


def based(path: str, base: "str | None") -> str:
    """A TLS file's name: under ``crt-base`` or ``ca-base`` (``base``) unless it starts with '/'."""
    return os.path.join(base, path) if base and not path.startswith("/") else path


def _certificates(path: str) -> str:
    """``crt <file or directory>``: loaded as HAProxy loads them when it reads the line, so that one it
    cannot load is this line's error."""
    import ssl

    from ... import tls as runtime_tls
    if not os.path.exists(path):
        raise _Invalid(f"unable to stat SSL certificate from file '{path}' : No such file or directory.")
    files = runtime_tls.bind_certificates(Bind(host="", port=0, crt=(path,)))
    for name in files:
        try:
            runtime_tls.load_certificate(ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER), name)
        except (OSError, ssl.SSLError):
            raise _Invalid(f"unable to load certificate from file '{name}'.") from None
    return path


# HAProxy 2.6's bind settings and how many arguments each takes (from ``haproxy -dKcfg``).
BIND_OPTIONS: dict[str, int] = {
    "accept-netscaler-cip": 1, "accept-proxy": 0, "backlog": 1, "defer-accept": 0, "expose-fd": 1,
    "gid": 1, "group": 1, "id": 1, "interface": 1, "level": 1, "maxconn": 1, "mode": 1, "mss": 1,
    "name": 1, "namespace": 1, "nice": 1, "process": 1, "proto": 1, "severity-output": 1, "shards": 1,
    "tcp-ut": 1, "tfo": 0, "thread": 1, "transparent": 0, "uid": 1, "user": 1, "v4v6": 0, "v6only": 0,
    "ssl": 0, "allow-0rtt": 0, "alpn": 1, "ca-file": 1, "ca-ignore-err": 1, "ca-sign-file": 1,
    "ca-sign-pass": 1, "ca-verify-file": 1, "ciphers": 1, "ciphersuites": 1, "crl-file": 1, "crt": 1,
    "crt-ignore-err": 1, "crt-list": 1, "curves": 1, "ecdhe": 1, "force-sslv3": 0, "force-tlsv10": 0,
    "force-tlsv11": 0, "force-tlsv12": 0, "force-tlsv13": 0, "generate-certificates": 0,
    "no-ca-names": 0, "no-sslv3": 0, "no-tls-tickets": 0, "no-tlsv10": 0, "no-tlsv11": 0,
    "no-tlsv12": 0, "no-tlsv13": 0, "npn": 1, "prefer-client-ciphers": 0, "ssl-max-ver": 1,
    "ssl-min-ver": 1, "strict-sni": 0, "tls-ticket-keys": 1, "verify": 1,
}
