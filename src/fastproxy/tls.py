"""TLS of traffic and checks: the SSL contexts a configuration asks for, the name check HAProxy makes of a
server's certificate, and a handshake over a non-blocking socket.

``server_context`` is a ``server ... ssl`` line's client context (``verify``, ``ca-file``, ``crt``, and
the ``TlsOptions``: alpn, versions, ciphers); ``ServerTls`` holds it with what each connection to that
server needs (the ``sni`` expression, the name to verify, the session to resume).  ``BindTls`` is a
``bind ... ssl`` line's: one server context per certificate of ``crt``, chosen by the client's SNI as
HAProxy chooses (an exact name, then a wildcard, else the first certificate), client certificates
verified per ``verify``/``ca-file``.  A ``Endpoint`` is one connection's TLS state (an ``SSLObject``
over memory BIOs): ``handshake`` completes it on a socket; ``tlsrelay`` then carries its records.
Python's ``ssl`` (OpenSSL) does the cryptography: the bytes are encrypted in user space.
"""

from __future__ import annotations

import asyncio
import os
import socket
import ssl
from dataclasses import dataclass
from typing import Any, Callable, Optional

from . import samples
from .config.model import Bind, Server, TlsOptions

READ_SIZE = 65536

_VERSIONS = {"SSLv3": ssl.TLSVersion.SSLv3, "TLSv1.0": ssl.TLSVersion.TLSv1,
             "TLSv1.1": ssl.TLSVersion.TLSv1_1, "TLSv1.2": ssl.TLSVersion.TLSv1_2,
             "TLSv1.3": ssl.TLSVersion.TLSv1_3}
_NO_VERSION = {"SSLv3": ssl.OP_NO_SSLv3, "TLSv1.0": ssl.OP_NO_TLSv1, "TLSv1.1": ssl.OP_NO_TLSv1_1,
               "TLSv1.2": ssl.OP_NO_TLSv1_2, "TLSv1.3": ssl.OP_NO_TLSv1_3}


def apply_options(context: ssl.SSLContext, options: TlsOptions) -> None:
    """``alpn``, ``ssl-min-ver``/``ssl-max-ver`` (and ``force-*``), ``no-*`` and ``ciphers`` on a
    context.  ssl.SSLError for ciphers OpenSSL does not know."""
    if options.alpn:
        context.set_alpn_protocols(list(options.alpn))
    if options.min_version:
        context.minimum_version = _VERSIONS[options.min_version]
    if options.max_version:
        context.maximum_version = _VERSIONS[options.max_version]
    for version in options.excluded:
        context.options |= _NO_VERSION[version]
    if options.ciphers:
        context.set_ciphers(options.ciphers)


def unverified_tls_context() -> ssl.SSLContext:
    """A TLS client context that verifies nothing (HAProxy's ``verify none``)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def server_context(server: Server, default_verify: str = "required", *,
                   options: bool = True) -> ssl.SSLContext:
    """A server's TLS client context: ``verify none`` or ``required`` against ``ca-file`` (the name is
    checked by ``Endpoint.verify_name``, as HAProxy checks it), ``crt`` as the client certificate;
    ``default_verify`` (``ssl-server-verify``) for a server without ``verify``; its ``TlsOptions``
    unless ``options`` is false (its checks').  OSError/ssl.SSLError for files it cannot read."""
    if (server.verify or default_verify) == "none":
        context = unverified_tls_context()
    else:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False  # the name HAProxy checks (the SNI, verifyhost) is checked after
        if server.ca_file:
            context.load_verify_locations(server.ca_file)
    if server.crt:
        context.load_cert_chain(server.crt)
    if options:
        apply_options(context, server.tls)
    return context


def certificate_names(certificate: Any, name: str) -> bool:
    """Whether a verified peer certificate (``SSLObject.getpeercert()``) is for ``name``: one of its
    DNS subject alternative names (else its common name), a leading ``*.`` standing for one label."""
    wanted = name.lower().rstrip(".")
    for candidate in _names(certificate):
        candidate = candidate.lower().rstrip(".")
        if candidate == wanted:
            return True
        if candidate.startswith("*.") and "." in wanted and wanted.split(".", 1)[1] == candidate[2:]:
            return True
    return False


def _names(certificate: Any) -> list[str]:
    names = [value for kind, value in (certificate or {}).get("subjectAltName", ()) if kind == "DNS"]
    if not names:
        names = [value for rdn in (certificate or {}).get("subject", ()) for key, value in rdn
                 if key == "commonName"]
    return names


class Endpoint:
    """One connection's TLS: an ``SSLObject`` over two memory BIOs, the name its peer's certificate
    must carry (None: any), and what ``handshake`` saw."""

    __slots__ = ("obj", "incoming", "outgoing", "expected", "server_side", "on_session")

    def __init__(self, context: ssl.SSLContext, *, server_side: bool, server_hostname: Optional[str] = None,
                 session: Optional[ssl.SSLSession] = None, expected: Optional[str] = None,
                 on_session: Optional[Callable[[ssl.SSLObject], None]] = None) -> None:
        self.incoming, self.outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.obj = context.wrap_bio(self.incoming, self.outgoing, server_side=server_side,
                                    server_hostname=server_hostname, session=session)
        self.expected = expected
        self.server_side = server_side
        self.on_session = on_session  # told of the session once established and at the end (reuse)

    def verify_name(self) -> Optional[str]:
        """HAProxy's ssl_sock_srv_verifycbk(): a verified certificate must name the SNI sent, else
        ``verifyhost``; with neither any name will do.  The failure's text, or None."""
        if self.expected and not certificate_names(self.obj.getpeercert(), self.expected):
            return "Server presented an SSL certificate different from the expected one"
        return None


class ServerTls:
    """What connecting to one ``ssl`` server needs: its context, its ``sni`` expression, the name to
    verify, and its last session (resumed unless ``no-ssl-reuse``)."""

    def __init__(self, server: Server, default_verify: str) -> None:
        self.context = server_context(server, default_verify)
        self.sni = samples.reader(samples.parse(server.sni)) if server.sni else None
        self.verifies = self.context.verify_mode == ssl.CERT_REQUIRED
        self.verifyhost = server.verifyhost
        self.reuse = server.ssl_reuse
        self.session: Optional[ssl.SSLSession] = None

    def endpoint(self, conn: Any) -> Endpoint:
        """A new connection's TLS, its SNI evaluated on ``conn`` (an ``acl.ConnInfo``)."""
        sni = self.sni(conn) if self.sni is not None else None
        sni = str(sni) if sni not in (None, "") else None
        expected = (sni or self.verifyhost) if self.verifies else None
        return Endpoint(self.context, server_side=False, server_hostname=sni,
                        session=self.session if self.reuse else None, expected=expected,
                        on_session=self._remember if self.reuse else None)

    def _remember(self, obj: ssl.SSLObject) -> None:
        # Told after the handshake and again at the end: a TLS 1.3 server's ticket comes after it.
        if obj.session is not None:
            self.session = obj.session


def load_certificate(context: ssl.SSLContext, path: str) -> None:
    """A PEM holding a certificate chain and its key, or the certificate with its key beside it in
    ``<path>.key`` (HAProxy's ssl-load-extra-files default)."""
    key = path + ".key"
    context.load_cert_chain(path, key if os.path.exists(key) else None)


# Files of a ``crt`` directory HAProxy does not load as certificates (its ssl-load-extra-files).
_EXTRA_FILES = (".key", ".ocsp", ".issuer", ".sctl")


def bind_certificates(bind: Bind) -> list[str]:
    """The certificate files of a bind's ``crt`` settings, directories expanded in name order."""
    files: list[str] = []
    for path in bind.crt:
        if os.path.isdir(path):
            files += [os.path.join(path, name) for name in sorted(os.listdir(path))
                      if not name.startswith(".") and not name.endswith(_EXTRA_FILES)
                      and os.path.isfile(os.path.join(path, name))]
        else:
            files.append(path)
    return files


@dataclass
class _Certificate:
    context: ssl.SSLContext
    names: list[str]


class _ClientHello(ssl.SSLObject):
    """A server side's TLS that keeps the name its client asked for (Python's server side gives no
    other way to read the SNI than the callback that sets this)."""

    asked: Optional[str] = None


@dataclass(frozen=True)
class TlsFacts:
    """What the fetches and the log line read of a terminated TLS connection (HAProxy's ``ssl_fc``,
    ``ssl_fc_sni``, ``ssl_fc_protocol``, ``ssl_fc_cipher``, ``ssl_fc_alpn``, ``ssl_c_used``,
    ``ssl_c_verify``, ``ssl_c_s_dn``; ``%sslv``, ``%sslc``); ``NO_TLS`` for a plain one."""

    ssl_fc: bool = True
    sni: Optional[str] = None
    protocol: Optional[str] = None
    cipher: Optional[str] = None
    alpn: Optional[str] = None
    client_used: Optional[bool] = None
    client_verify: Optional[int] = None
    client_dn: Optional[str] = None

    @classmethod
    def of(cls, obj: ssl.SSLObject) -> "TlsFacts":
        presented = obj.getpeercert(binary_form=True) is not None
        cipher = obj.cipher()
        return cls(sni=getattr(obj, "asked", None), protocol=obj.version(),
                   cipher=cipher[0] if cipher else None, alpn=obj.selected_alpn_protocol(),
                   # X509_V_OK: OpenSSL's verify result of every handshake that completes here, since a
                   # certificate failing it fails the handshake (crt-ignore-err, ca-ignore-err, which
                   # HAProxy needs to let one through, are refused) and none presented is X509_V_OK too
                   client_used=presented, client_verify=0,
                   client_dn=distinguished_name(obj.getpeercert()) if presented else None)


# OpenSSL's short names of the attributes Python names in full, for HAProxy's one-line DNs.
_SHORT_NAMES = {"countryName": "C", "stateOrProvinceName": "ST", "localityName": "L", "organizationName": "O",
                "organizationalUnitName": "OU", "commonName": "CN", "emailAddress": "emailAddress",
                "domainComponent": "DC", "serialNumber": "serialNumber"}


def distinguished_name(certificate: Any) -> Optional[str]:
    """A certificate's subject as HAProxy writes it (ssl_sock_get_dn_oneline): ``/C=FR/O=x/CN=name``."""
    subject = (certificate or {}).get("subject")
    if not subject:
        return None
    return "".join(f"/{_SHORT_NAMES.get(key, key)}={value}" for rdn in subject for key, value in rdn)


class BindTls:
    """A ``bind ... ssl`` line's TLS: a context per certificate, the client's SNI choosing one."""

    def __init__(self, bind: Bind, listener: str = "?") -> None:
        self.listener = listener  # the listener's name in log lines: its ``name``, else its number
        self.certificates: list[_Certificate] = []
        self.strict_sni = bind.strict_sni
        for path in bind_certificates(bind):
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.sslobject_class = _ClientHello
            load_certificate(context, path)
            verify = bind.verify or "none"
            if verify != "none":
                context.verify_mode = ssl.CERT_REQUIRED if verify == "required" else ssl.CERT_OPTIONAL
                if bind.ca_file:
                    context.load_verify_locations(bind.ca_file)
            apply_options(context, bind.tls)
            names = _certificate_file_names(path)
            self.certificates.append(_Certificate(context, names))
        if not self.certificates:
            raise ssl.SSLError("no certificate")
        self.default = self.certificates[0].context
        for certificate in self.certificates:
            certificate.context.sni_callback = self._chosen

    def pick(self, server_name: Optional[str]) -> Optional[ssl.SSLContext]:
        """HAProxy's ssl_sock_switchctx_cbk(): the certificate naming ``server_name`` exactly, else one
        whose wildcard covers it, else the default (the first); with ``strict-sni``, None instead of
        the default (the handshake is refused)."""
        if server_name:
            wanted = server_name.lower().rstrip(".")
            for certificate in self.certificates:
                if wanted in certificate.names:
                    return certificate.context
            parent = wanted.split(".", 1)[1] if "." in wanted else None
            for certificate in self.certificates:
                if parent is not None and f"*.{parent}" in certificate.names:
                    return certificate.context
        return None if self.strict_sni else self.default

    def _chosen(self, obj: ssl.SSLObject, server_name: Optional[str],
                context: ssl.SSLContext) -> Optional[int]:
        obj.asked = server_name  # type: ignore[attr-defined]
        chosen = self.pick(server_name)
        if chosen is None:
            return ssl.ALERT_DESCRIPTION_HANDSHAKE_FAILURE
        if chosen is not context:
            obj.context = chosen
        return None

    def endpoint(self) -> Endpoint:
        return Endpoint(self.default, server_side=True)


def _certificate_file_names(path: str) -> list[str]:
    """The DNS names and common name of the first certificate of a PEM file, in lower case."""
    # The one reader of a certificate file's names in the standard library (no third-party parser).
    info = ssl._ssl._test_decode_cert(path)  # type: ignore[attr-defined]
    names = {value.lower() for kind, value in info.get("subjectAltName", ()) if kind == "DNS"}
    names |= {value.lower() for rdn in info.get("subject", ()) for key, value in rdn if key == "commonName"}
    return sorted(names)


# --- the handshake over a socket ----------------------------------------------------------------------

# Why a client's handshake failed, in HAProxy's words (conn_err_code_str()): its log line says it.
HANDSHAKE_FAILURE = "SSL handshake failure"
HANDSHAKE_CLOSED = "Connection closed during SSL handshake"  # before the handshake began
HANDSHAKE_TIMEOUT = "Timeout during SSL handshake"
CERTIFICATE_NOT_TRUSTED = "SSL client certificate not trusted"
# ``option dontlognull`` logs none of these: HAProxy sees no error code yet on a timeout when it checks.
QUIET_FAILURES = frozenset({HANDSHAKE_CLOSED, HANDSHAKE_TIMEOUT})


class HandshakeError(Exception):
    """A TLS handshake that failed: the peer's alert, a certificate refused, a close, the time;
    ``reason``: HAProxy's words for it."""

    def __init__(self, text: str, reason: str = HANDSHAKE_FAILURE) -> None:
        super().__init__(text)
        self.reason = reason


async def handshake(sock: socket.socket, endpoint: Endpoint, timeout: Optional[float]) -> None:
    """Complete ``endpoint``'s handshake over the non-blocking ``sock``, within ``timeout`` seconds
    (None: no limit); HandshakeError when it fails.  What the peer sent after its last handshake
    message stays in ``endpoint.incoming``."""
    loop = asyncio.get_running_loop()
    deadline = None if not timeout else loop.time() + timeout
    obj = endpoint.obj
    began = False  # a handshake message went out: a close is no longer one before it began
    while True:
        try:
            obj.do_handshake()
            done = True
        except ssl.SSLWantReadError:
            done = False
        except (ssl.SSLError, ssl.CertificateError) as exc:
            await _flush(loop, sock, endpoint, deadline, quiet=True)  # the alert, for the peer to see
            untrusted = isinstance(exc, ssl.SSLCertVerificationError) or \
                getattr(exc, "reason", None) == "CERTIFICATE_VERIFY_FAILED"
            raise HandshakeError(str(exc), CERTIFICATE_NOT_TRUSTED if untrusted and endpoint.server_side
                                 else HANDSHAKE_FAILURE) from None
        began = await _flush(loop, sock, endpoint, deadline) or began
        if done:
            break
        if not await _wait(loop, sock, deadline, loop.add_reader, loop.remove_reader):
            raise HandshakeError("timeout", HANDSHAKE_TIMEOUT)
        try:
            data = sock.recv(READ_SIZE)
        except (BlockingIOError, InterruptedError):
            continue
        except OSError as exc:
            raise HandshakeError(os.strerror(exc.errno or 0)) from None
        if not data:
            raise HandshakeError("connection closed during the handshake",
                                 HANDSHAKE_FAILURE if began else HANDSHAKE_CLOSED)
        endpoint.incoming.write(data)
    if not endpoint.server_side:
        failure = endpoint.verify_name()
        if failure is not None:
            raise HandshakeError(failure)
    if endpoint.on_session is not None:
        endpoint.on_session(obj)


async def _flush(loop: asyncio.AbstractEventLoop, sock: socket.socket, endpoint: Endpoint,
                 deadline: Optional[float], *, quiet: bool = False) -> bool:
    """Send what the handshake wrote; whether there was anything."""
    data = endpoint.outgoing.read()
    wrote = bool(data)
    while data:
        try:
            sent = sock.send(data)
            data = data[sent:]
        except (BlockingIOError, InterruptedError):
            if not await _wait(loop, sock, deadline, loop.add_writer, loop.remove_writer):
                if quiet:
                    return wrote
                raise HandshakeError("timeout", HANDSHAKE_TIMEOUT) from None
        except OSError as exc:
            if quiet:
                return wrote
            raise HandshakeError(os.strerror(exc.errno or 0)) from None
    return wrote


async def _wait(loop: asyncio.AbstractEventLoop, sock: socket.socket, deadline: Optional[float],
                add: Callable, remove: Callable) -> bool:
    """Whether ``sock`` became readable (or writable) before ``deadline``."""
    ready: asyncio.Future[None] = loop.create_future()
    fd = sock.fileno()

    def wake() -> None:
        if not ready.done():
            ready.set_result(None)
    add(fd, wake)
    try:
        await asyncio.wait_for(ready, None if deadline is None else max(deadline - loop.time(), 0))
        return True
    except asyncio.TimeoutError:
        return False
    finally:
        remove(fd)


def in_traffic(config: Any) -> bool:
    """Whether a configuration's traffic speaks TLS anywhere: a ``bind ... ssl`` or a ``server ... ssl``."""
    return (any(bind.ssl for frontend in config.frontends.values() for bind in frontend.binds)
            or any(server.ssl for backend in config.backends.values() for server in backend.servers))
