"""Server health, as HAProxy's checks: active probes, passive observation, and the state they give.

A server with ``check`` is probed every ``inter``: a connect to its check address (``addr`` and
``port`` when set), or with ``option tcp-check`` its backend's sequence of ``tcp-check connect``,
``send`` and ``expect`` rules.  Each probe ends with one of HAProxy's statuses (``L4OK``, ``L4TOUT``,
``L4CON``, ``L7OK``, ``L7TOUT``, ``L7RSP``...) and its duration.  The results move HAProxy's health
counter (``ServerHealth``): ``rise`` passes in a row bring a server up, ``fall`` failures take it
down; ``fastinter`` paces the probes while the counter moves, ``downinter`` while the server is down.

``observe layer4`` watches the proxied traffic too: ``error-limit`` failed connects in a row to a
server trigger its ``on-error`` action (``fastinter``, ``fail-check``, ``sudden-death``,
``mark-down``).  A success in between (counted by the pump, no Python per connection) starts over.

The parts: ``ServerHealth`` is the counter alone (sans-IO); ``run_check`` runs one probe on the event
loop; ``HealthMonitor`` schedules the probes of an engine, spread in time as HAProxy's start_checks()
and ``spread-checks`` do, and tells the engine when a server goes up or down.  Probes never touch the
pump: traffic is never blocked by them.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
import os
import random
import re
import select
import socket
import ssl
import time
from dataclasses import dataclass
from typing import Any, Callable, Optional, Protocol, Sequence

from . import _linux, logformat, proxyproto, samples, variables
from .tls import certificate_names, server_context, unverified_tls_context
from .config.model import SSL3_HELLO, HttpCheckRequest, Server, TcpCheckRule, first_check_rule, wire_bytes

log = logging.getLogger("fastproxy")

# HAProxy's check statuses and their descriptions (check.c's check_statuses).
STATUSES = {
    "L4OK": "Layer4 check passed",
    "L4TOUT": "Layer4 timeout",
    "L4CON": "Layer4 connection problem",
    "L6OK": "Layer6 check passed",
    "L6TOUT": "Layer6 timeout",
    "L6RSP": "Layer6 invalid response",
    "L7OK": "Layer7 check passed",
    "L7OKC": "Layer7 check conditionally passed",
    "L7TOUT": "Layer7 timeout",
    "L7RSP": "Layer7 invalid response",
    "L7STS": "Layer7 wrong status",
    "SOCKERR": "Socket error",
    "CHECKED": "No status change",
    "INI": "Initializing",
    "HANA": "Health analyze",
    "PROCERR": "External check error",
    "PROCTOUT": "External check timeout",
    "PROCOK": "External check passed",
}
PASSING = frozenset({"L4OK", "L6OK", "L7OK", "L7OKC", "PROCOK"})
READ_BUFFER = 16384  # what HAProxy reads at most per expect (tune.bufsize): a full buffer is final
_IMPLICIT_CONNECT = TcpCheckRule("connect")


# Statuses at or above HAProxy's L57DATA carry a code (an external check's: the command's exit status).
_L57DATA = frozenset({"L7OK", "L7OKC", "L7STS", "PROCERR", "PROCTOUT", "PROCOK"})


@dataclass
class CheckResult:
    """How one probe ended: a status of ``STATUSES``, detail, how long it took (seconds), and the
    code an answer gave (an HTTP status, a MySQL error...; 0 when none, as HAProxy)."""

    status: str
    info: str = ""
    duration: float = 0.0
    code: int = 0
    reply: Optional["AgentReply"] = None  # what an agent said, for the server's state to follow

    def __post_init__(self) -> None:
        # HAProxy copies a description into a 128-byte C string (HCHK_DESC_LEN): to its first NUL.
        self.info = self.info.split("\0", 1)[0][:127]

    @property
    def has_code(self) -> bool:
        """HAProxy shows ``code`` for the statuses of an answer that was read (L7OK, L7OKC, L7STS)."""
        return self.status in _L57DATA

    @property
    def passed(self) -> bool:
        return self.status in PASSING

    @property
    def description(self) -> str:
        return STATUSES.get(self.status, self.status)


class ServerHealth:
    """HAProxy's health counter of one server, from 0 to ``rise + fall - 1``: up from ``rise`` on.

    It starts at ``rise`` as HAProxy's does: a server is up at start, but down at its first failure.
    """

    def __init__(self, rise: int, fall: int, inter: float, fastinter: Optional[float] = None,
                 downinter: Optional[float] = None) -> None:
        self.rise, self.fall = rise, fall
        self.inter, self.fastinter, self.downinter = inter, fastinter, downinter
        self.health = rise

    @property
    def top(self) -> int:
        return self.rise + self.fall - 1

    @property
    def up(self) -> bool:
        return self.health >= self.rise

    def passed(self) -> bool:
        """Count a passed check; True if the server just came up."""
        was_up = self.up
        if self.health < self.top:
            self.health += 1
            if self.health >= self.rise:
                self.health = self.top
        return self.up and not was_up

    def failed(self) -> bool:
        """Count a failed check; True if the server just went down."""
        was_up = self.up
        if self.health > 0:
            self.health -= 1
            if self.health < self.rise:
                self.health = 0
        return was_up and not self.up

    def interval(self) -> float:
        """The delay to the next check (HAProxy's srv_getinter())."""
        if self.health == self.top:
            return self.inter
        if self.health == 0:
            return self.downinter or self.inter
        return self.fastinter or self.inter

    def describe(self) -> str:
        """HAProxy's ``x/y UP`` / ``x/y DOWN`` of the stats page."""
        if self.up:
            return f"{self.health - self.rise + 1}/{self.fall} UP"
        return f"{self.health}/{self.rise} DOWN"


# --- one probe ---------------------------------------------------------------------------------------

@dataclass
class ProbeContext:
    """What a probe knows of its server and backend beyond the rules: the check kind (``CHECK_KINDS``
    of the model: it decides the wording), whether the server is up (``disable-on-404`` only drains
    a server that is up), and the ``X-Haproxy-Server-State`` value of ``http-check send-state``."""

    kind: str = "tcp"
    server_up: bool = True
    disable_on_404: bool = False
    state_header: Optional[Callable[[], str]] = None
    source: Optional[tuple[str, int]] = None  # ``source``: the address checks leave from, as traffic
    # ``check-ssl`` (the server's TLS settings for checks: ``verify``, ``ca-file``, ``crt``): the
    # context a TLS connect uses, and the ``check-sni`` it sends; None: no TLS unless a ``tcp-check
    # connect ssl`` rule asks (then with an unverified context).
    tls: Optional[ssl.SSLContext] = None
    sni: Optional[str] = None
    tls_default: bool = False  # the default connect (implicit or ``default``) speaks TLS: check-ssl
    verifyhost: Optional[str] = None  # the name verified when no SNI is sent (``verifyhost``)
    # The version of the PROXY header a check sends first (the server's: 2 with ``send-proxy-v2``), and
    # whether the default connect sends it (``check-send-proxy``, a ``send-proxy`` server's own checks).
    proxy_version: int = 1
    proxy_default: bool = False
    # What a check's formats and variables know: the backend and server names (%b, %s), and the
    # process's ``proc.`` variables (a check reads and sets them as any rule does).
    backend: str = ""
    server: str = ""
    proc_variables: Optional[variables.ProcessVariables] = None


@dataclass
class CheckSamples:
    """What a sample fetch reads in a check (``samples``' connection): the check's variables; no client,
    so ``src``, ``dst`` and their ports give nothing, as in HAProxy."""

    variables: variables.CheckVariables
    src: Optional[str] = None
    dst: Optional[str] = None
    src_port: Optional[int] = None
    dst_port: Optional[int] = None
    final: bool = True


@functools.lru_cache(maxsize=256)
def _check_format(text: str) -> logformat.Format:
    return logformat.compile(text, check=True)


@functools.lru_cache(maxsize=256)
def _check_sample(sample: Any) -> tuple[Callable[[Any], Any], str]:
    return samples.reader(sample), samples.type_of(sample)


def _spelled_bytes(text: str) -> Optional[bytes]:
    """The bytes a hexadecimal text spells (``send-binary-lf``, ``expect binary-lf``); None when it
    is not an even number of hex digits (HAProxy's parse_binary() fails)."""
    if len(text) % 2 or re.search(r"[^0-9A-Fa-f]", text):
        return None
    return bytes.fromhex(text)


async def run_check(family: int, address: tuple, rules: Sequence[TcpCheckRule], *,
                    connect_timeout: Optional[float], read_timeout: Optional[float],
                    total_timeout: Optional[float], context: Optional[ProbeContext] = None) -> CheckResult:
    """Run one check against ``address``: the rules in order (an implicit connect first when the
    first rule is not one; no rules is a connect alone).  ``connect_timeout`` bounds each connect,
    ``read_timeout`` what follows a connect, ``total_timeout`` the whole probe (HAProxy's ``inter``
    when ``timeout check`` is unset).  Never raises for what the server does."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    probe = _Probe(family, address, rules, connect_timeout, read_timeout, context or ProbeContext())
    try:
        if total_timeout:
            result = await asyncio.wait_for(probe.run(), total_timeout)
        else:
            result = await probe.run()
    except asyncio.TimeoutError:
        result = probe.timeout_result()
    except OSError as exc:  # a local failure: socket(), descriptors
        result = CheckResult("SOCKERR", exc.strerror or str(exc))
    finally:
        probe.close()
    result.duration = loop.time() - started
    return result


# A deadline is judged by the kernel's state, not by when the event loop got round to it: on a busy
# machine the loop can wake for the timer before it polls the socket that was ready in time, and a
# healthy server must not go down because the proxy was late.

def _connected_now(sock: socket.socket) -> bool:
    """Whether a non-blocking connect has completed (and succeeded) by now."""
    _, writable, _ = select.select([], [sock], [], 0)
    return bool(writable) and sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0


def _received_now(sock: socket.socket, size: int) -> Optional[bytes]:
    """What the server has sent by now (b"" once it closed), or None if nothing arrived."""
    try:
        return sock.recv(size)
    except BlockingIOError:
        return None
    except OSError:
        return b""


class _Probe:
    def __init__(self, family: int, address: tuple, rules: Sequence[TcpCheckRule],
                 connect_timeout: Optional[float], read_timeout: Optional[float],
                 context: ProbeContext) -> None:
        self.family, self.address = family, address
        self.context = context
        self.tcp = context.kind == "tcp"  # HAProxy names steps in the descriptions of tcp-checks only
        self.explicit_rules = bool(rules)
        rules = list(rules)
        first = first_check_rule(rules)
        if first is None or first.action != "connect":
            rules.insert(0, _IMPLICIT_CONNECT)
        self.rules = rules
        self.variables = variables.CheckVariables(context.proc_variables)  # new at each check, as HAProxy's
        self.samples = CheckSamples(self.variables)
        self.started = time.time()  # the dates of a check's formats
        self.peer: Optional[tuple] = None  # where the connection of the check goes (%si, %sp)
        self.code = 0
        self.note = ""  # what an expect that saw the end of the data had to say, for its timeout
        self.connect_timeout, self.read_timeout = connect_timeout, read_timeout
        self.sock: Optional[socket.socket] = None
        self.tls: Optional[ssl.SSLObject] = None  # the TLS session over ``sock``, for a TLS connect
        self.tls_in, self.tls_out = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.linger = False
        self.connected = False
        self.buffer = bytearray()
        self.closed = False  # the server ended its side (or failed): no more data will come
        self.deadline: Optional[float] = None
        self.step = 0
        self.expecting: Optional[TcpCheckRule] = None
        self.last: Optional[TcpCheckRule] = None  # the step that ends the probe (run() finds it)

    async def run(self) -> CheckResult:
        loop = asyncio.get_running_loop()
        # HAProxy judges the end by the last step run: a variable action is none.
        last = self.last = next(rule for rule in reversed(self.rules) if not rule.is_variable_action)
        for self.step, rule in enumerate(self.rules, 1):
            if rule.is_variable_action:
                self._set_variable(rule)
                continue
            if rule.action == "connect":
                failure = await self._connect(loop, rule)
            elif rule.action == "send":
                failure = await self._send(loop, rule)
            elif rule.action == "expect":
                failure = await self._expect(loop, rule)
            else:
                continue
            if failure is not None:
                return failure
        done = self._done()
        if last.action == "expect":
            info = _format(last.on_success, self.buffer) if last.on_success else done
            return CheckResult(last.ok_status or "L7OK", info, code=self.code)
        if last.action == "connect":  # a TLS connect is established at layer 6
            return CheckResult("L6OK" if self.tls is not None else "L4OK", done)
        return CheckResult("L7OK", done)

    def _done(self) -> str:
        return "(tcp-check)" if self.tcp and self.explicit_rules else ""

    def _connect_alone(self, rule: TcpCheckRule) -> bool:
        """Whether ``rule`` is a connect with nothing of its own after the connection (no PROXY
        header, no TLS handshake)."""
        default = rule is _IMPLICIT_CONNECT or rule.default
        return rule.action == "connect" and not (
            rule.send_proxy or (self.context.proxy_default and default) or rule.ssl
            or (self.context.tls_default and default))

    async def _connect(self, loop: asyncio.AbstractEventLoop, rule: TcpCheckRule) -> Optional[CheckResult]:
        self.close()
        host, port = self.address[0], self.address[1]
        family = self.family
        if rule.addr:
            host = rule.addr
            family = socket.AF_INET6 if ":" in host else socket.AF_INET
        if rule.port:
            port = rule.port
        self.connected, self.closed, self.linger = False, False, rule.linger
        self.buffer.clear()
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        self.sock.setblocking(False)
        self.peer = (host, port)
        if self.context.source is not None:
            _linux.bind_source(self.sock, self.context.source)
        try:
            await asyncio.wait_for(loop.sock_connect(self.sock, (host, port)), self.connect_timeout)
        except asyncio.TimeoutError:
            if not _connected_now(self.sock):
                return CheckResult("L4TOUT", self._where(rule))
        except OSError as exc:
            return CheckResult("L4CON", _strerror(exc) + self._where(rule))
        self.connected = True
        self.deadline = loop.time() + self.read_timeout if self.read_timeout else None
        default = rule is _IMPLICIT_CONNECT or rule.default
        if rule.send_proxy or (self.context.proxy_default and default):
            # Before any TLS; HAProxy's v1 line names the check's own connection, its v2 header is LOCAL.
            header = proxyproto.encode_v2(command="LOCAL") if self.context.proxy_version == 2 else \
                proxyproto.encode_v1(self.sock.getsockname()[:2], (host, port))
            try:
                await asyncio.wait_for(loop.sock_sendall(self.sock, header), self._remaining(loop))
            except (OSError, asyncio.TimeoutError):
                return CheckResult("L4CON", self._where(rule))
        if rule.ssl or (self.context.tls_default and (rule is _IMPLICIT_CONNECT or rule.default)):
            return await self._handshake(loop, rule)
        return None

    async def _handshake(self, loop: asyncio.AbstractEventLoop, rule: TcpCheckRule) -> Optional[CheckResult]:
        """The TLS handshake of a TLS connect (``check-ssl``, ``tcp-check connect ssl``), as HAProxy's
        layer 6: a failure is L6RSP "SSL handshake failure", running out of time L6TOUT."""
        assert self.sock is not None
        context = self.context.tls or unverified_tls_context()
        self.tls_in, self.tls_out = ssl.MemoryBIO(), ssl.MemoryBIO()
        sni = rule.sni or self.context.sni
        self.tls = context.wrap_bio(self.tls_in, self.tls_out, server_hostname=sni)
        failure = CheckResult("L6RSP", "SSL handshake failure" + self._where(rule))
        # As HAProxy's ssl_sock_srv_verifycbk(): a verified certificate must name the SNI sent, else
        # ``verifyhost``; with neither, any name will do.
        expected = (sni or self.context.verifyhost) if context.verify_mode == ssl.CERT_REQUIRED else None
        while True:
            try:
                self.tls.do_handshake()
                done = True
                if expected and not certificate_names(self.tls.getpeercert(), expected):
                    # HAProxy's CO_ER_SSL_MISMATCH_SNI and CO_ER_SSL_MISMATCH
                    other = "expected" if sni else "configured"
                    return CheckResult("L6RSP", f"Server presented an SSL certificate different from the "
                                                f"{other} one" + self._where(rule))
            except ssl.SSLWantReadError:
                done = False
            except (ssl.SSLError, ssl.CertificateError):
                return failure
            try:
                pending = self.tls_out.read()
                if pending:
                    await asyncio.wait_for(loop.sock_sendall(self.sock, pending), self._remaining(loop))
                if done:
                    return None
                data = await asyncio.wait_for(loop.sock_recv(self.sock, READ_BUFFER), self._remaining(loop))
            except asyncio.TimeoutError:
                late = _received_now(self.sock, READ_BUFFER)
                if not late:
                    return CheckResult("L6TOUT", self._where(rule)) if late is None else failure
                data = late
            except OSError:
                return failure
            if not data:
                return failure
            self.tls_in.write(data)

    async def _sendall(self, loop: asyncio.AbstractEventLoop, data: bytes) -> None:
        assert self.sock is not None
        if self.tls is not None:
            self.tls.write(data)
            data = self.tls_out.read()
        await asyncio.wait_for(loop.sock_sendall(self.sock, data), self._remaining(loop))

    async def _recv(self, loop: asyncio.AbstractEventLoop, size: int) -> bytes:
        """What the server sends next (b"" once it closed), decrypted on a TLS connect; TimeoutError
        past the deadline."""
        assert self.sock is not None
        while True:
            if self.tls is not None:
                plain = self._decrypted(size)
                if plain is not None:
                    return plain
            try:
                data = await asyncio.wait_for(loop.sock_recv(self.sock, READ_BUFFER if self.tls else size),
                                              self._remaining(loop))
            except asyncio.TimeoutError:
                late = _received_now(self.sock, READ_BUFFER if self.tls else size)
                if late is None:
                    raise
                data = late
            if self.tls is None or not data:
                return data
            self.tls_in.write(data)

    def _decrypted(self, size: int) -> Optional[bytes]:
        """Plain bytes the TLS session holds (b"" when it ended), None until more arrive."""
        assert self.tls is not None
        try:
            return self.tls.read(size)
        except ssl.SSLWantReadError:
            return None
        except (ssl.SSLZeroReturnError, ssl.SSLError):
            return b""

    def _remaining(self, loop: asyncio.AbstractEventLoop) -> Optional[float]:
        if self.deadline is None:
            return None
        return max(self.deadline - loop.time(), 0.0)

    async def _send(self, loop: asyncio.AbstractEventLoop, rule: TcpCheckRule) -> Optional[CheckResult]:
        assert self.sock is not None
        self.buffer.clear()  # as HAProxy: a send starts a new exchange
        data = rule.data
        if rule.log_format is not None:  # send-lf, send-binary-lf
            formatted = self._formatted(rule)
            if formatted is None:
                return CheckResult("L7RSP", "tcp-check send : failed to build log-format string at step "
                                            f"{self.step_id}")
            if not formatted:
                return None  # HAProxy sends nothing and goes on
            data = formatted
        elif rule.http is not None:
            state = self.context.state_header() if self.context.state_header else None
            data = http_request(rule.http, state)
        elif rule.data is SSL3_HELLO:
            data = ssl3_client_hello()
        try:
            await self._sendall(loop, data)
        except asyncio.TimeoutError:
            return CheckResult("L7TOUT", self._where(rule))
        except OSError as exc:
            return CheckResult("SOCKERR", _strerror(exc) + self._where(rule))
        return None

    def _render(self, text: str) -> str:
        """A check's format as HAProxy writes it over the check's session (``logformat.CHECK_ALIASES``)."""
        local = None
        if self.sock is not None:
            try:
                local = self.sock.getsockname()[:2]
            except OSError:
                pass
        record = logformat.LogRecord(
            server_address=self.peer, backend_address=local, accepted=self.started,
            frontend=logformat.CHECK_FRONTEND, backend=self.context.backend, server=self.context.server,
            pid=os.getpid(), hostname=_hostname(), connection=self.samples)
        return logformat.render(_check_format(text), record)

    def _formatted(self, rule: TcpCheckRule) -> Optional[bytes]:
        """The bytes of a rule's format: its text, or with ``binary`` the bytes its hex spells (None
        when it spells none)."""
        assert rule.log_format is not None
        text = self._render(rule.log_format)
        return _spelled_bytes(text) if rule.binary else wire_bytes(text)

    def _set_variable(self, rule: TcpCheckRule) -> None:
        """``set-var``, ``set-var-fmt``, ``unset-var``: a sample with no value sets nothing."""
        assert rule.variable is not None
        name = variables.parse_name(rule.variable)
        conditions = frozenset(rule.variable_conditions)
        if rule.action == "unset-var":
            self.variables.unset(name)
        elif rule.action == "set-var-fmt":
            assert rule.log_format is not None
            self.variables.set(name, samples.STR, self._render(rule.log_format), conditions)
        else:
            read, kind = _check_sample(rule.sample)
            value = read(self.samples)
            if value is not None:
                self.variables.set(name, variables.sample_type(value) if kind == samples.ANY else kind, value,
                                   conditions)

    @property
    def step_id(self) -> int:
        """HAProxy's step number: the rule's rank among the configured ones (an implicit connect is
        not one)."""
        return self.step - (self.rules[0] is _IMPLICIT_CONNECT)

    def _where(self, rule: TcpCheckRule) -> str:
        """HAProxy's `` at step 2 of tcp-check (connect port 1) comment: '...'`` of a tcp-check's
        connection errors and timeouts (chk_report_conn_err()); other check kinds say nothing."""
        if not self.tcp or not self.explicit_rules:
            return ""
        if rule is _IMPLICIT_CONNECT:
            return " at initial connection step of tcp-check"
        text = f" at step {self.step_id} of tcp-check"
        if rule.action == "connect":
            text += f" (connect port {rule.port})" if rule.port else " (connect)"
        elif rule.action == "expect":
            text += f" ({_EXPECT_NAMES.get(rule.match, 'expect ' + rule.match)}"
            if rule.log_format is not None:
                text = text.replace("expect ", "expect log-format ", 1)
            elif rule.match == "string":
                text += f" '{rule.pattern.decode('latin-1')}'"
            elif rule.match == "binary":
                text += f" '{rule.pattern.hex().upper()}'"
            text += ")"
        elif rule.action == "send":
            text += " (send)"
        if rule.comment:
            text += f" comment: '{rule.comment}'"
        return text

    async def _expect(self, loop: asyncio.AbstractEventLoop, rule: TcpCheckRule) -> Optional[CheckResult]:
        assert self.sock is not None
        if rule.log_format is not None:  # expect string-lf, binary-lf: the pattern of this check
            text = self._render(rule.log_format)
            if not text:
                return CheckResult("L7RSP", "log-format string evaluated to an empty string" + _comment(rule))
            pattern = _spelled_bytes(text) if rule.binary else wire_bytes(text)
            if pattern is None:
                return CheckResult("L7RSP", "Failed to parse hexastring resulting of eval of a log-format "
                                            "string" + _comment(rule))
            rule = dataclasses.replace(rule, pattern=pattern)
        self.expecting = rule
        evaluate = self._evaluate_http if rule.match in _HTTP_MATCHES else (
            self._evaluate_custom if rule.match == "custom" else None)
        while True:
            if evaluate is not None:
                outcome = evaluate(rule)
                if outcome is _STALL:  # nothing more will come, yet HAProxy waits for its timeout
                    remaining = self._remaining(loop)
                    await asyncio.sleep(remaining if remaining is not None else 3600.0)
                    return self.timeout_result()
                if outcome is not _WAIT:
                    self.expecting = None
                    return outcome  # type: ignore[return-value]
            elif self.closed and not self.buffer:
                return self._empty(rule)
            else:
                verdict = self._evaluate(rule)
                if verdict is not None:
                    self.expecting = None
                    return self._matched(rule) if verdict else self._mismatch(rule)
            try:
                data = await self._recv(loop, READ_BUFFER - len(self.buffer))
            except asyncio.TimeoutError:
                return self.timeout_result()
            except OSError:
                data = b""  # a reset: nothing more will come, judge what arrived
            if data:
                self.buffer += data
            else:
                self.closed = True

    def _empty(self, rule: TcpCheckRule) -> CheckResult:
        """The server closed without a byte (tcpcheck_eval_expect())."""
        return CheckResult(rule.error_status or "L7RSP",
                           f"TCPCHK got an empty response at step {self.step_id}{_comment(rule)}")

    def _evaluate(self, rule: TcpCheckRule) -> Optional[bool]:
        """True: go on; False: the check fails; None: wait for more data (HAProxy's
        tcpcheck_eval_expect())."""
        final = self.closed or len(self.buffer) >= READ_BUFFER
        if not final:
            if rule.match in ("string", "binary") and len(self.buffer) < len(rule.pattern):
                return None
            if rule.min_recv > 0 and len(self.buffer) < rule.min_recv:
                return None
        matched = _matches(rule, bytes(self.buffer))
        if not matched and not final and rule.min_recv == -1:
            return None
        return matched != rule.negate

    def _matched(self, rule: TcpCheckRule) -> Optional[CheckResult]:
        """A match goes on to the next rule; the code of the answer is kept (``status-code``)."""
        if rule.status_code is not None:
            self.code = _payload_code(self.buffer, rule.status_code)
        return None

    def _mismatch(self, rule: TcpCheckRule) -> CheckResult:
        if rule.status_code is not None:
            self.code = _payload_code(self.buffer, rule.status_code)
        status = rule.error_status or "L7RSP"
        if rule.on_error is not None:  # a protocol check's own words (or a comment alone)
            return CheckResult(status, _format(rule.on_error, self.buffer) + _comment(rule), code=self.code)
        if not self.tcp:
            return CheckResult(status, _comment(rule).lstrip(), code=self.code)
        what = "matched unwanted content" if rule.negate else "did not match content"
        pattern = rule.pattern
        if rule.log_format is not None:
            shown = f" (log-format {rule.match})"
        elif rule.match == "string":
            shown = f" '{pattern.decode('latin-1')}'"
        elif rule.match == "binary":
            shown = " (binary)"
        else:
            shown = f" (regex '{pattern}')"
        return CheckResult(status, f"TCPCHK {what}{shown} at step {self.step_id}{_comment(rule)}",
                           code=self.code)

    def timeout_result(self) -> CheckResult:
        """How a probe that ran out of time ends: at layer 4 before the connect, else at layer 7 (or
        the expect's ``tout-status``), described as chk_report_conn_err() does."""
        if not self.connected:
            rule = self.rules[min(self.step, len(self.rules)) - 1] if self.step else None
            if (rule is not None and rule is self.last and self._connect_alone(rule)
                    and self.sock is not None and _connected_now(self.sock)):
                # The probe's last step, connected in time by the kernel's word: the loop woke for
                # the deadline (inter, without timeout check) before it polled the socket.
                return CheckResult("L4OK", self._done())
            return CheckResult("L4TOUT", self._where(rule) if rule is not None else "")
        rule = self.expecting
        if rule is None:
            return CheckResult("L7TOUT", "")
        return CheckResult(rule.tout_status or "L7TOUT", self.note or self._where(rule))

    # --- HTTP and the custom parsers ---

    def _evaluate_http(self, rule: TcpCheckRule) -> Any:
        """HAProxy's tcpcheck_eval_expect_http(): _WAIT, None (go on) or the probe's result."""
        final = self.closed or len(self.buffer) >= READ_BUFFER
        try:
            response = parse_http_response(bytes(self.buffer), final)
        except ValueError:
            return CheckResult(rule.error_status or "L7RSP", "")
        if response is None:
            if final:
                return CheckResult(rule.error_status or "L7RSP", "")
            return _WAIT
        self.code = response.status
        if self.context.disable_on_404 and self.context.server_up and response.status == 404:
            return CheckResult("L7OKC", "", code=404)
        if rule.match in ("hdr", "fhdr"):
            matched = header_matches(response.headers, rule.pattern, full=rule.match == "fhdr")
            failure = CheckResult(rule.error_status or "L7STS", response.reason + _comment(rule),
                                  code=response.status)
        elif rule.match in ("status", "rstatus"):
            if rule.match == "status":
                matched = any(low <= response.status <= high for low, high in rule.pattern)
            else:
                matched = _regex(rule).search(str(response.status).encode()) is not None
            failure = CheckResult(rule.error_status or "L7STS", response.reason + _comment(rule),
                                  code=response.status)
        else:
            if not response.complete and not final:
                return _WAIT
            if not response.body:
                return CheckResult(rule.error_status or "L7RSP",
                                   "HTTP content check could not find a response body" + _comment(rule),
                                   code=response.status)
            if rule.match == "body":
                matched = rule.pattern in response.body
            else:
                matched = _regex(rule).search(response.body) is not None
            failure = CheckResult(rule.error_status or "L7RSP", ("HTTP check matched unwanted content"
                                  if rule.negate else "HTTP content check did not match") + _comment(rule),
                                  code=response.status)
        return None if matched != rule.negate else failure

    def _evaluate_custom(self, rule: TcpCheckRule) -> Any:
        final = self.closed or len(self.buffer) >= READ_BUFFER
        if rule.pattern == "agent":
            end = re.search(rb"[\r\n\0]", self.buffer)
            if end is None:  # HAProxy 2.6 waits for the end of the line, until the check times out
                if final:
                    self.note = "Ignoring incomplete line from agent"
                    return _STALL
                return _WAIT
            reply = parse_agent_reply(self.buffer[:end.start()].decode("latin-1"))
            return CheckResult(reply.status, "", reply=reply)
        outcome = CUSTOM_EXPECTS[rule.pattern](bytes(self.buffer), final)
        if outcome is _WAIT or outcome is None:
            return outcome
        status, info, code = outcome
        self.code = code
        last = rule is self.rules[-1]
        if status in PASSING and not last:
            return None
        if status in PASSING:  # HAProxy 2.6 keeps no description of a custom expect that passed
            return CheckResult(rule.ok_status or status, "", code=code)
        return CheckResult(status, info + _comment(rule), code=code)

    def close(self) -> None:
        sock, self.sock = self.sock, None
        self.tls = None
        if sock is None:
            return
        if not self.linger:  # HAProxy closes checks with a reset unless told ``linger``
            try:
                _linux.set_linger0(sock.fileno())
            except OSError:
                pass
        sock.close()


def check_tls_context(server: Server, default_verify: str = "required") -> ssl.SSLContext:
    """The TLS context of a server's checks (``check-ssl``): the server's ``verify``, ``ca-file`` and
    ``crt`` (the name checked is ``check-sni``, else ``verifyhost``, as HAProxy checks the SNI);
    ``default_verify`` (``ssl-server-verify``) for a server without ``verify``.  OSError/ssl.SSLError
    for files it cannot read."""
    return server_context(server, default_verify, options=False)


def _text_matches(method: str, pattern: str, text: str, *, fold: bool = False) -> bool:
    """HAProxy's str/beg/end/sub/reg matching of a header name (``fold``: case-insensitive) or value."""
    if method == "reg":
        return re.search(pattern, text, re.IGNORECASE if fold else 0) is not None
    if fold:
        pattern, text = pattern.lower(), text.lower()
    if method == "beg":
        return text.startswith(pattern)
    if method == "end":
        return text.endswith(pattern)
    if method == "sub":
        return pattern in text
    return text == pattern


def header_matches(headers: Sequence[tuple[str, str]], pattern: Any, *, full: bool) -> bool:
    """``http-check expect hdr|fhdr``: a header whose name matches (and, with a value pattern, one of
    its comma-separated values, or its whole value for ``fhdr``, matches) is there."""
    name_method, name, value_method, value = pattern
    for header, text in headers:
        if not _text_matches(name_method, name, header, fold=True):
            continue
        if value is None:
            return True
        values = [text] if full else [part.strip() for part in text.split(",")]
        if any(_text_matches(value_method, value, candidate) for candidate in values):
            return True
    return False


_REGEX_CACHE: dict[tuple[str, str], Any] = {}
_HTTP_MATCHES = ("status", "rstatus", "body", "rbody", "hdr", "fhdr")
_EXPECT_NAMES = {"string": "expect string", "binary": "expect binary", "rstring": "expect regex",
                 "rbinary": "expect binary regex", "custom": "expect custom function",
                 "status": "expect HTTP status codes", "rstatus": "expect HTTP status regex",
                 "body": "expect HTTP body content", "rbody": "expect HTTP body regex",
                 "hdr": "expect HTTP header pattern", "fhdr": "expect HTTP header pattern"}
_WAIT = object()  # an expect that needs more data
_STALL = object()  # an expect that needs more data after the server closed: it times out


def _comment(rule: TcpCheckRule) -> str:
    return f" comment: {rule.comment}" if rule.comment else ""


def _regex(rule: TcpCheckRule) -> Any:
    key = ("bytes", rule.pattern)
    regex = _REGEX_CACHE.get(key)
    if regex is None:
        regex = _REGEX_CACHE[key] = re.compile(rule.pattern.encode("latin-1"))
    return regex


def _matches(rule: TcpCheckRule, data: bytes) -> bool:
    if rule.match in ("string", "binary"):
        return rule.pattern in data
    key = (rule.match, rule.pattern)
    regex = _REGEX_CACHE.get(key)
    if regex is None:
        if rule.match == "rstring":
            regex = re.compile(rule.pattern.encode("latin-1"))
        else:  # rbinary: on the hexadecimal dump of the data, as HAProxy's dump_binary()
            regex = re.compile(rule.pattern)
        _REGEX_CACHE[key] = regex
    if rule.match == "rstring":
        return regex.search(data) is not None
    return regex.search(data.hex().upper()) is not None


# --- the bytes of the check kinds ------------------------------------------------------------------

def ssl3_client_hello(now: Optional[float] = None) -> bytes:
    """The SSLv3 CLIENT HELLO of ``option ssl-hello-chk``, as HAProxy 2.6 sends it: the time in its
    first four random bytes, then ``HAPROXYSSLCHK\nHAPROXYSSLCHK\n``, 39 RSA/DH cipher suites."""
    ciphers = list(range(0x01, 0x1C)) + list(range(0x2F, 0x3B))
    stamp = int(time.time() if now is None else now) & 0xFFFFFFFF
    body = (b"\x03\x00" + stamp.to_bytes(4, "big") + b"HAPROXYSSLCHK\nHAPROXYSSLCHK\n" + b"\x00"
            + (2 * len(ciphers)).to_bytes(2, "big") + b"".join(c.to_bytes(2, "big") for c in ciphers)
            + b"\x01\x00")
    handshake = b"\x01" + len(body).to_bytes(3, "big") + body
    return b"\x16\x03\x00" + len(handshake).to_bytes(2, "big") + handshake


def http_request(request: HttpCheckRequest, state: Optional[str] = None) -> bytes:
    """The bytes of an HTTP check's request as HAProxy's H1 mux writes them: header names in lower
    case, ``x-haproxy-server-state`` after the configured headers, ``content-length`` with a body,
    ``connection: close`` for HTTP/1.1."""
    lines = [f"{request.method} {request.uri} {request.version}"]
    lines += [f"{name.lower()}: {value}" for name, value in request.headers]
    if state is not None:
        lines.append(f"x-haproxy-server-state: {state}")
    if request.body:
        lines.append(f"content-length: {len(request.body)}")
    if request.version.upper() == "HTTP/1.1":
        lines.append("connection: close")
    return "\r\n".join(lines).encode("latin-1", "replace") + b"\r\n\r\n" + request.body


@dataclass
class HttpResponse:
    status: int
    reason: str
    body: bytes
    complete: bool  # the whole body is in (by content-length, chunks, or the server's close)
    headers: tuple[tuple[str, str], ...] = ()  # (name in lower case, value), every one in order


_STATUS_LINE = re.compile(rb"HTTP/1\.[0-9] ([0-9]{3})(?: ([^\r\n]*))?\r?\n")


def parse_http_response(data: bytes, final: bool) -> Optional[HttpResponse]:
    """An HTTP/1.x response from its first bytes: None while the headers are not all in, ValueError
    for what is not HTTP.  ``final``: nothing more will come (the server closed, or the buffer is
    full), so what arrived of the body is the body."""
    end = data.find(b"\r\n\r\n")
    head_end = end + 4
    if end < 0:
        end = data.find(b"\n\n")
        head_end = end + 2
    if end < 0:
        complete_line = b"\n" in data or len(data) >= 12
        if not _STATUS_LINE.match(data) and complete_line and not data.startswith(b"HTTP/1."):
            raise ValueError("not an HTTP response")
        return None
    status_line = _STATUS_LINE.match(data)
    if status_line is None:
        raise ValueError("not an HTTP response")
    status, reason = int(status_line[1]), (status_line[2] or b"").decode("latin-1").strip()
    fields = []
    for raw in data[status_line.end():end].split(b"\n"):
        if not raw.rstrip(b"\r"):
            continue
        name, colon, value = raw.rstrip(b"\r").partition(b":")
        if not colon:
            raise ValueError("malformed header")
        fields.append((name.strip().lower().decode("latin-1"), value.strip().decode("latin-1")))
    headers, listed = dict(fields), tuple(fields)
    rest = data[head_end:]
    if status < 200 or status in (204, 304):
        return HttpResponse(status, reason, b"", True, listed)
    if "chunked" in headers.get("transfer-encoding", "").lower():
        body, complete = _dechunk(rest)
        return HttpResponse(status, reason, body, complete, listed)
    if "content-length" in headers:
        try:
            length = int(headers["content-length"])
        except ValueError:
            raise ValueError("bad content-length") from None
        return HttpResponse(status, reason, rest[:length], len(rest) >= length, listed)
    return HttpResponse(status, reason, rest, final, listed)


def _dechunk(data: bytes) -> tuple[bytes, bool]:
    body = bytearray()
    while True:
        line_end = data.find(b"\r\n")
        if line_end < 0:
            return bytes(body), False
        try:
            size = int(data[:line_end].split(b";")[0], 16)
        except ValueError:
            raise ValueError("bad chunk size") from None
        if size == 0:
            return bytes(body), True
        chunk = data[line_end + 2:line_end + 2 + size]
        body += chunk
        if len(chunk) < size:
            return bytes(body), False
        data = data[line_end + 4 + size:]


_PAYLOAD = re.compile(r"%\[res\.payload\(([0-9]+),([0-9]+)\)((?:,[a-z_]+(?:\('[^']*'\))?)*)\]")


def _format(template: str, data: bytes | bytearray) -> str:
    """The texts of HAProxy's protocol checks (``on-error``/``on-success``): literal text and
    ``%[res.payload(<offset>,<length>)]`` with the ``cut_crlf`` and ``ltrim('<c>')`` converters."""
    def expand(match: Any) -> str:
        offset, length = int(match[1]), int(match[2])
        value = data[offset:offset + length] if length else data[offset:]
        for converter in filter(None, match[3].split(",")):
            if converter == "cut_crlf":
                value = re.split(rb"[\r\n]", value, maxsplit=1)[0]
            elif converter.startswith("ltrim("):
                value = value.lstrip(converter[7:-2].encode("latin-1"))
        return value.decode("latin-1")
    return _PAYLOAD.sub(expand, template)


def _payload_code(data: bytes | bytearray, where: tuple[int, int]) -> int:
    """``status-code "res.payload(<offset>,<length>)"``: the answer's digits as the check's code."""
    text = data[where[0]:where[0] + where[1]]
    return int(text) if text.isdigit() else 0


@functools.lru_cache(maxsize=1)
def _hostname() -> str:
    return socket.gethostname()


def _strerror(exc: OSError) -> str:
    if exc.errno:
        return os.strerror(exc.errno)
    return str(exc) or type(exc).__name__


CustomExpect = Callable[[bytes, bool], Any]  # (data, final) -> _WAIT | None | (status, info, code)
CUSTOM_EXPECTS: dict[str, CustomExpect] = {}


class CommandCheck(Protocol):
    """A check that runs a command in place of rules (``extcheck.ExternalCheck``)."""

    async def run(self, timeout: float) -> CheckResult: ...


# --- the monitor of an engine ---------------------------------------------------------------------------

class ServerCheck:
    """One server's health while the configuration runs: its counter, its last probe, passive errors,
    and whether its probes are paused (a server in maintenance).  It knows the server by name and
    model only: what the health means for traffic is ``servers.ServerStates``' business."""

    def __init__(self, name: str, server: Server, family: int, address: tuple,
                 rules: Sequence[TcpCheckRule], *, connect_timeout: Optional[float] = None,
                 check_timeout: Optional[float] = None, kind: str = "tcp", disable_on_404: bool = False,
                 state_header: Optional[Callable[[], str]] = None,
                 health: Optional[ServerHealth] = None, source: Optional[tuple[str, int]] = None,
                 tls: Optional[ssl.SSLContext] = None, tls_default: bool = False,
                 proxy_version: int = 1, proxy_default: bool = False,
                 proc_variables: Optional[variables.ProcessVariables] = None,
                 external: Optional[CommandCheck] = None) -> None:
        self.name = name  # backend/server
        self.external = external  # ``option external-check``: a command runs in place of the rules
        self.proc_variables = proc_variables  # the process's, which the check's rules read and set
        self.server = server
        self.family, self.address, self.rules = family, address, rules
        self.kind, self.disable_on_404, self.state_header = kind, disable_on_404, state_header
        self.source = source
        self.tls, self.tls_default = tls, tls_default  # check-ssl and the server's TLS settings
        self.proxy_version, self.proxy_default = proxy_version, proxy_default  # check-send-proxy
        self.stopping = False  # a check passed conditionally (HTTP 404 with disable-on-404): NOLB
        self.connect_timeout, self.check_timeout = connect_timeout, check_timeout
        self.active = server.check or kind == "agent"  # probes run (unless paused)
        self.paused = server.disabled and kind != "agent"  # in maintenance: no probes (the agent goes on)
        self.health = health or ServerHealth(server.rise, server.fall, server.inter, server.fastinter,
                                             server.downinter)
        # As HAProxy: down until out of maintenance, then up (and checked at once).
        if server.disabled and kind != "agent":
            self.health.health = 0
        self.last: Optional[CheckResult] = None
        self.timer: Optional[asyncio.TimerHandle] = None
        self.due = 0.0  # when the timer fires (loop time)
        self.task: Optional[asyncio.Task] = None
        self.observed_errors = 0  # failed connects in a row seen on traffic (observe layer4)
        self.seen_total = -1  # the server's established-connection total at the last error
        self.failed_checks = 0
        self.went_down = 0


class HealthMonitor:
    """Runs the checks of every server with ``check`` and the passive observation of servers with
    ``observe layer4``; ``changed(check, result)`` is called when a server goes up or down, and
    ``established(check)`` gives the server's established connections so far (the pump's books)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, *, spread: int = 0,
                 changed: Callable[[ServerCheck, Optional[CheckResult]], None],
                 established: Callable[[ServerCheck], int],
                 counted: Optional[Callable[[ServerCheck, CheckResult], None]] = None,
                 agent_replied: Optional[Callable[[ServerCheck, AgentReply], Optional[str]]] = None) -> None:
        self.loop = loop
        self.spread = spread
        self.changed = changed
        self.established = established
        self.counted = counted  # a result that moved the health counter or changed the status
        self.agent_replied = agent_replied  # applies an agent's words; the first warning, if any
        self.checks: dict[str, ServerCheck] = {}
        self._stopped = False

    def add(self, check: ServerCheck) -> None:
        self.checks[check.name] = check

    def start(self) -> None:
        """First checks spread over the smallest interval, as HAProxy's start_checks(): the i-th of
        n checked servers starts at ``i / n`` of it (with a little randomness)."""
        probed = [check for check in self.checks.values() if check.active]
        if not probed:
            return
        shortest = min(check.health.inter for check in probed)
        for position, check in enumerate(probed):
            delay = shortest * position / len(probed)
            delay += random.random() * shortest / len(probed) / 2
            self._schedule(check, delay)

    def stop(self) -> None:
        self._stopped = True
        for check in self.checks.values():
            if check.timer is not None:
                check.timer.cancel()
                check.timer = None
            if check.task is not None:
                check.task.cancel()

    async def wait_stopped(self) -> None:
        tasks = [check.task for check in self.checks.values() if check.task is not None]
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)

    # --- scheduling ---

    def _schedule(self, check: ServerCheck, delay: float) -> None:
        if self._stopped or not check.active:
            return
        if check.timer is not None:
            check.timer.cancel()
        check.due = self.loop.time() + delay
        check.timer = self.loop.call_later(delay, self._due, check)

    def _next(self, check: ServerCheck) -> None:
        interval = check.health.interval()
        if self.spread:  # HAProxy's spread-checks: +/- spread% of the interval, at random
            spread = interval * self.spread / 100
            interval += spread - 2 * spread * random.random()
        self._schedule(check, interval)

    def hurry(self, check: ServerCheck) -> None:
        """Check within ``fastinter`` if the next one is later (HAProxy on observed errors)."""
        fastinter = check.health.fastinter
        if fastinter and check.timer is not None and check.due > self.loop.time() + fastinter:
            self._schedule(check, fastinter)

    def _due(self, check: ServerCheck) -> None:
        check.timer = None
        if self._stopped or check.paused or check.task is not None:
            return
        check.task = self.loop.create_task(self._probe(check))

    async def _probe(self, check: ServerCheck) -> None:
        connect_timeout, check_timeout = check.connect_timeout, check.check_timeout
        inter = check.health.inter
        if check_timeout:  # HAProxy: connect within min(timeout connect, inter), then timeout check
            connect = min(connect_timeout, inter) if connect_timeout else inter
            read, total = check_timeout, None
        else:  # without timeout check, inter bounds the whole probe
            connect, read, total = None, None, inter
        backend, _, server = check.name.split(" ", 1)[0].partition("/")
        try:
            if check.external is not None:  # HAProxy allows inter, or timeout connect if timeout check
                limit = min(inter, connect_timeout) if check_timeout and connect_timeout else inter
                result = await check.external.run(limit)
            else:
                context = ProbeContext(check.kind, check.health.up, check.disable_on_404, check.state_header,
                                       check.source, check.tls, check.server.check_sni, check.tls_default,
                                       check.server.verifyhost, check.proxy_version, check.proxy_default,
                                       backend, server, check.proc_variables)
                result = await run_check(check.family, check.address, check.rules, connect_timeout=connect,
                                         read_timeout=read, total_timeout=total, context=context)
        except Exception as exc:  # a bug must not stop this server's checks for good
            log.exception("check of %s failed", check.name)
            result = CheckResult("SOCKERR", f"{type(exc).__name__}: {exc}")
        finally:
            check.task = None
        if self._stopped or check.paused:
            return
        self.report(check, result)
        self._next(check)

    # --- results ---

    def report(self, check: ServerCheck, result: CheckResult) -> None:
        """Count a probe's result (or a simulated one); tell the engine when the server flips."""
        if check.kind == "agent":
            self._agent_report(check, result)
            return
        previous, check.last = check.last, result
        before = check.health.health
        flipped = self._count(check, result)
        # HAProxy writes the check's line (log-health-checks) before the state change it causes.
        if self.counted is not None and (check.health.health != before or previous is None
                                         or previous.status != result.status):
            self.counted(check, result)
        if flipped:
            self.changed(check, result)

    def _agent_report(self, check: ServerCheck, result: CheckResult) -> None:
        """An agent's answer: administration, weight and maxconn first, then its health word (up:
        at once up, down/stopped/fail: at once down).  Not reaching the agent changes nothing."""
        health, was_up = check.health, check.health.up
        reply = result.reply
        if reply is not None:
            warning = self.agent_replied(check, reply) if self.agent_replied is not None else None
            result.info = reply.describe(warning)
            if reply.health is not None:
                health.health = health.top if reply.health.lower() == "up" else 0
        check.last = result
        if health.up != was_up:
            self.changed(check, result)

    def _count(self, check: ServerCheck, result: CheckResult) -> bool:
        """Move the counter; True when the server flipped (or its NOLB changed)."""
        if result.passed:
            # A conditional pass (L7OKC) drains a server that is up; a full one ends that.
            stopping = result.status == "L7OKC"
            flipped = check.health.passed()
            changed, check.stopping = check.stopping != stopping, stopping
            if flipped or (changed and check.health.up):
                return True
        else:
            if check.health.health > 0:  # HAProxy counts the failures of a server not yet down
                check.failed_checks += 1
            if check.health.failed():
                check.went_down += 1
                return True
        return False

    def observe_error(self, check: ServerCheck) -> None:
        """A connect to the server failed in traffic (``observe layer4``).  Errors count in a row:
        a connection established since the last one (the pump's books) starts the count over."""
        server = check.server
        if server.observe != "layer4":
            return
        total = self.established(check)
        if total != check.seen_total:
            check.observed_errors = 0
            check.seen_total = total
        check.observed_errors += 1
        if check.observed_errors < server.error_limit:
            return
        check.observed_errors = 0
        # As HAProxy's health_adjust(): every action checks again within fastinter.
        self.hurry(check)
        action = server.on_error
        if action == "fastinter":
            return
        health = check.health
        if action == "sudden-death" and health.health > health.rise:
            health.health = health.rise + 1  # one failure from down
        elif action == "mark-down":
            health.health = health.rise  # the next failure is fatal
        self.report(check, CheckResult("HANA", f"Detected {server.error_limit} consecutive errors, "
                                               f"last one was: L4 unsuccessful connection"))

    def pause(self, check: ServerCheck) -> None:
        """Into MAINT: no probes until ``leave_maintenance`` (a probe under way is not counted)."""
        check.paused = True
        if check.timer is not None:
            check.timer.cancel()
            check.timer = None

    def leave_maintenance(self, check: ServerCheck) -> None:
        """Out of MAINT: up, but the first failed check takes it down (HAProxy: "start OK but check
        immediately")."""
        check.paused = False
        check.health.health = max(check.health.health, check.health.rise)
        if check.active:
            self._schedule(check, 0.0)

    def enable_checks(self, check: ServerCheck, enabled: bool) -> None:
        """The runtime API's ``enable|disable health``: a server configured with ``check`` is probed
        again (at once) or no more; its health counter stays."""
        if not check.server.check:
            return
        check.active = enabled
        if not enabled:
            if check.timer is not None:
                check.timer.cancel()
                check.timer = None
        elif not check.paused and check.timer is None and check.task is None:
            self._schedule(check, 0.0)

    def set_down(self, check: ServerCheck) -> None:
        """Marked down from outside (the runtime API): down until checks (or the API) bring it up."""
        check.health.health = 0

    def set_up(self, check: ServerCheck) -> None:
        """Marked up from outside: a checked server is up and checked at once; one without checks
        is up for good."""
        if check.active:
            self.leave_maintenance(check)
        else:
            check.health.health = check.health.top




# --- agent checks ------------------------------------------------------------------------------------

@dataclass
class AgentReply:
    """An agent's line (tcpcheck_agent_expect_reply()): words among ``up``, ``down``, ``stopped``,
    ``fail`` (health), ``ready``, ``drain``, ``maint`` (administration), ``<n>%`` (weight),
    ``maxconn:<n>``, in any order (the last of a kind wins), then ``#`` and a description."""

    health: Optional[str] = None
    admin: Optional[str] = None
    weight: Optional[str] = None
    maxconn: Optional[str] = None
    error: Optional[str] = None  # the first word it did not know
    description: str = ""

    @property
    def status(self) -> str:
        if self.health is None:
            return "CHECKED"
        return "L7OK" if self.health.lower() == "up" else "L7STS"

    def describe(self, warning: Optional[str]) -> str:
        """The check's description, as HAProxy words it (``via agent : down (the reason)``)."""
        if self.health is not None:
            message = self.description
            if not message or self.health.lower() == "up":
                message = self.error or warning or message
            return f"via agent : {self.health}" + (f" ({message})" if message else "")
        if self.error:
            return f"agent reports an error : {self.error}"
        if warning:
            return f"agent warns : {warning}"
        return ""


def parse_agent_reply(line: str) -> AgentReply:
    reply = AgentReply()
    words, _, description = line.partition("#")
    reply.description = description.lstrip(" \t").rstrip(" \n")
    for word in re.split(r"[ \t,]+", words):
        lower = word.lower()
        if not word:
            continue
        if lower in ("up", "down", "stopped", "fail"):
            reply.health = word
        elif lower in ("ready", "drain", "maint"):
            reply.admin = lower
        elif word[0].isdigit() and "%" in word:
            reply.weight = word
        elif lower.startswith("maxconn:"):
            reply.maxconn = word[len("maxconn:"):]
        elif reply.error is None:
            reply.error = word
    return reply


# --- the custom expects of the protocol checks (tcpcheck.c's tcpcheck_*_expect_*()) ------------------

def _mysql_packet(data: bytes, final: bool, offset: int) -> Any:
    """A MySQL packet at ``offset``: an ERR packet (0xFF) is L7STS with its error code and message,
    anything else passes with the server's version (the handshake's NUL-terminated string at 5)."""
    if len(data) < offset + 4:
        return _WAIT if not final else ("L7RSP", "", 0)
    length = int.from_bytes(data[offset:offset + 3], "little")
    if len(data) < offset + length + 4:
        return _WAIT if not final else ("L7RSP", "", 0)
    if data[offset + 4] == 0xFF:
        code = int.from_bytes(data[offset + 5:offset + 7], "little")
        return ("L7STS", data[offset + 7:].split(b"\x00", 1)[0].decode("latin-1"), code)
    return ("L7OK", data[5:].split(b"\x00", 1)[0].decode("latin-1"), 0)


def _mysql_handshake(data: bytes, final: bool) -> Any:
    return _mysql_packet(data, final, 0)


def _mysql_ok(data: bytes, final: bool) -> Any:
    return _mysql_packet(data, final, 4 + int.from_bytes(data[0:3], "little"))


def _ldap_bind(data: bytes, final: bool) -> Any:
    """An LDAPv3 bindResponse (RFC 4511 4.2.2): its resultCode is the check's code, 0 passes."""
    not_ldap = ("L7RSP", "Not LDAPv3 protocol", 0)
    size = data[1] & 0x7F if data[1] & 0x80 else 0
    if size > 2 or data[2 + size:6 + size] != b"\x02\x01\x01\x61":
        return not_ldap
    size += data[size + 6] & 0x7F if data[size + 6] & 0x80 else 0
    if size > 4 or data[7 + size:9 + size] != b"\x0a\x01" or len(data) <= size + 9:
        return not_ldap
    code = data[size + 9]
    if code:
        return ("L7STS", "See RFC: http://tools.ietf.org/html/rfc4511#section-4.1.9", code)
    return ("L7OK", "Success", 0)


CUSTOM_EXPECTS.update({"mysql-handshake": _mysql_handshake, "mysql-ok": _mysql_ok, "ldap-bind": _ldap_bind})
