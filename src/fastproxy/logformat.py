"""HAProxy's ``log-format`` (configuration manual §8.2.4), compiled once and run by both data paths.

``compile`` turns a format string into nodes with HAProxy 2.6's rules and error texts (``%ci``,
``%{+Q}b``, ``%{+X}Ts``, ``%[src]``, ``%%``, ``%{+Q}o`` setting the options of what follows); a
variable HAProxy reserves for HTTP mode is refused, as HAProxy refuses it in a TCP proxy.  ``render``
writes one line from a ``LogRecord`` for the sessions Python carries.  ``lane_program`` turns the same
nodes into the program the pump's C formatter runs for a lane's pairs (``dataplane/lanelog.pxi``):
what is constant for a lane (its frontend and backend names, the pid, the host name, the fields a lane
never changes) is rendered here once into text, the rest become opcodes; a format that needs Python
per connection (sample fetches, ``%rt``, ``%lc``, a ``unique-id-format``) has no lane program, and its
frontend stays on the Python path.  ``option tcplog`` is the predefined ``TCP_LOG_FORMAT``.

Sans-IO: callers pass the times and the addresses; nothing here reads a clock or a socket.
"""

from __future__ import annotations

import enum
import ipaddress
import struct
import time
from dataclasses import dataclass
from typing import Any, Callable, Optional, Sequence

from . import logs, samples
from .config.model import Sample

__all__ = ["TCP_LOG_FORMAT", "Alias", "Format", "LogFormatError", "LogRecord", "compile", "lane_program",
           "render"]

TCP_LOG_FORMAT = "%ci:%cp [%t] %ft %b/%s %Tw/%Tc/%Tt %B %ts %ac/%fc/%bc/%sc/%rc %sq/%bq"

QUOTE, HEXA, ESCAPE, MANDATORY = 1, 2, 4, 8
_OPTIONS = {"Q": QUOTE, "X": HEXA, "E": ESCAPE, "M": MANDATORY}
# A health check's format (``compile(..., check=True)``): HAProxy parses those without its implied
# LOG_OPT_MANDATORY, so what is not there writes nothing rather than ``-`` (``+M`` brings the ``-``
# back).  Fastproxy's own bit: the pump's C formatter never sees a check format.
ABSENT_EMPTY = 16


class Alias(enum.IntEnum):
    """What a node writes.  The values below ``FRONTEND`` are the pump's opcodes too (``LF_*`` in
    includes/fastproxy.h): keep the two in step."""

    TEXT = 0
    CLIENT_IP = 1  # %ci
    CLIENT_PORT = 2  # %cp
    FRONTEND_IP = 3  # %fi
    FRONTEND_PORT = 4  # %fp
    BACKEND_IP = 5  # %bi: the proxy's own end of the server connection
    BACKEND_PORT = 6  # %bp
    SERVER_IP = 7  # %si
    SERVER_PORT = 8  # %sp
    DATE = 9  # %t: the accept date, local time, with milliseconds
    DATE_GMT = 10  # %T
    DATE_LOCAL = 11  # %Tl
    TIMESTAMP = 12  # %Ts
    MS = 13  # %ms
    SERVER = 14  # %s
    BYTES = 15  # %B: server to client
    BYTES_UP = 16  # %U: client to server
    TC = 17  # %Tc
    TT = 18  # %Tt
    TD = 19  # %Td
    TU = 20  # %Tu
    TERMSTATE = 21  # %ts
    TERMSTATE_CK = 22  # %tsc
    ACTCONN = 23  # %ac
    FECONN = 24  # %fc
    BECONN = 25  # %bc
    SRVCONN = 26  # %sc
    # Constant for a lane (rendered into text for its program), or Python's alone.
    FRONTEND = 64  # %f
    FRONTEND_XPRT = 65  # %ft
    BACKEND = 66  # %b
    TW = 67  # %Tw
    TH = 68  # %Th
    RETRIES = 69  # %rc
    SRVQUEUE = 70  # %sq
    BCKQUEUE = 71  # %bq
    PID = 72  # %pid
    HOSTNAME = 73  # %H
    STATUS = 74  # %ST: 0 in TCP mode
    HEADERS = 75  # %hr %hs %hrl %hsl: the capture slots (``tcp-request content capture``...)
    SSL = 76  # %sslc: the cipher of a TLS connection terminated here (Python's alone: never on a lane)
    UNIQUE_ID = 77  # %ID
    COUNTER = 78  # %rt: the stream's number
    LOG_COUNT = 79  # %lc
    SAMPLE = 80  # %[fetch,converter...]
    SSL_VERSION = 81  # %sslv: its protocol version


# HAProxy 2.6's variables (src/log.c logformat_keywords); None: reserved for HTTP mode.
VARIABLES: dict[str, Optional[Alias]] = {
    "B": Alias.BYTES, "H": Alias.HOSTNAME, "ID": Alias.UNIQUE_ID, "ST": Alias.STATUS, "T": Alias.DATE_GMT,
    "Tc": Alias.TC, "Th": Alias.TH, "Tl": Alias.DATE_LOCAL, "Td": Alias.TD, "Ts": Alias.TIMESTAMP,
    "Tt": Alias.TT, "Tu": Alias.TU, "Tw": Alias.TW, "U": Alias.BYTES_UP, "ac": Alias.ACTCONN,
    "b": Alias.BACKEND, "bc": Alias.BECONN, "bi": Alias.BACKEND_IP, "bp": Alias.BACKEND_PORT,
    "bq": Alias.BCKQUEUE, "ci": Alias.CLIENT_IP, "cp": Alias.CLIENT_PORT, "f": Alias.FRONTEND,
    "fc": Alias.FECONN, "fi": Alias.FRONTEND_IP, "fp": Alias.FRONTEND_PORT, "ft": Alias.FRONTEND_XPRT,
    "hr": Alias.HEADERS, "hrl": Alias.HEADERS, "hs": Alias.HEADERS, "hsl": Alias.HEADERS,
    "lc": Alias.LOG_COUNT, "ms": Alias.MS, "pid": Alias.PID, "rc": Alias.RETRIES, "rt": Alias.COUNTER,
    "s": Alias.SERVER, "sc": Alias.SRVCONN, "si": Alias.SERVER_IP, "sp": Alias.SERVER_PORT,
    "sq": Alias.SRVQUEUE, "sslc": Alias.SSL, "sslv": Alias.SSL_VERSION, "t": Alias.DATE,
    "ts": Alias.TERMSTATE,
    "tsc": Alias.TERMSTATE_CK,
    "CC": None, "CS": None, "HM": None, "HP": None, "HPO": None, "HQ": None, "HU": None, "HV": None,
    "Ta": None, "Ti": None, "Tq": None, "TR": None, "Tr": None, "r": None, "tr": None, "trg": None,
    "trl": None,
}
# Variables whose value a lane's pair changes: the opcodes of a lane program.
_DYNAMIC = frozenset(alias for alias in Alias if 0 < alias < Alias.FRONTEND)
FRONTEND_ADDRESS = (Alias.FRONTEND_IP, Alias.FRONTEND_PORT)
BACKEND_ADDRESS = (Alias.BACKEND_IP, Alias.BACKEND_PORT)
# Python's alone: a lane cannot give them.
_PYTHON_ONLY = frozenset({Alias.COUNTER, Alias.LOG_COUNT, Alias.SAMPLE})

# What a health check's format writes as HAProxy 2.6 does (``tcp-check send-lf``...): HAProxy builds
# it over the check's own session, with no stream and no client.  %b and %s are the backend and the
# server, %f HAProxy's checks frontend ``CHECKS-FE``, %si/%sp where the check connected, %bi/%bp its
# own end, %ci/%cp/%fi/%fp nothing, the dates the check's start.  The stream's variables (%ts, %B,
# %rt, %ac...) write HAProxy's placeholders for a stream that is not there; a format using one is
# refused rather than written differently.
CHECK_ALIASES = frozenset({
    Alias.TEXT, Alias.SAMPLE, Alias.BACKEND, Alias.SERVER, Alias.FRONTEND, Alias.HOSTNAME, Alias.PID,
    Alias.SERVER_IP, Alias.SERVER_PORT, Alias.BACKEND_IP, Alias.BACKEND_PORT, Alias.CLIENT_IP,
    Alias.CLIENT_PORT, Alias.FRONTEND_IP, Alias.FRONTEND_PORT, Alias.DATE, Alias.DATE_GMT,
    Alias.DATE_LOCAL, Alias.TIMESTAMP, Alias.MS})
# The fetches a check's sample reads: its variables and constants; the addresses of the client it
# does not have give nothing, as in HAProxy.
CHECK_FETCHES = frozenset({"var", "str", "int", "ipv4", "ipv6", "always_true", "always_false", "src", "dst",
                           "src_port", "dst_port"})
CHECK_FRONTEND = "CHECKS-FE"  # HAProxy's checks_fe, the frontend of every check's session


class LogFormatError(ValueError):
    """A format HAProxy refuses; the message is HAProxy's."""


@dataclass(frozen=True)
class Node:
    alias: Alias
    options: int = 0
    text: str = ""  # the literal of a TEXT node
    sample: Optional[Sample] = None


@dataclass(frozen=True)
class Format:
    """A compiled format: render it with ``render`` (or ``Format.render``)."""

    source: str
    nodes: tuple[Node, ...]
    warnings: tuple[str, ...] = ()  # what the reader should say about it (samples fastproxy lacks)

    def render(self, record: "LogRecord") -> str:
        return render(self, record)

    @property
    def uses_unique_id(self) -> bool:
        return any(node.alias is Alias.UNIQUE_ID for node in self.nodes)


def compile(text: str, *, http: bool = False, check: bool = False) -> Format:
    """The nodes of a format string, or ``LogFormatError`` with HAProxy's message.  ``http``: the
    format of a ``mode http`` proxy, where HTTP's variables are allowed (such a proxy carries no
    traffic through fastproxy: they write nothing).  A sample fetch fastproxy does not have is logged
    as ``-``, with a warning: a log line does not route.  ``check``: a health check's format, which
    decides the check's verdict: only ``CHECK_ALIASES`` and ``CHECK_FETCHES``, anything else refused."""
    nodes: list[Node] = []
    warnings: list[str] = []
    literal: list[str] = []
    options = ABSENT_EMPTY if check else 0
    i, n = 0, len(text)

    def flush() -> None:
        if literal:
            nodes.append(Node(Alias.TEXT, text="".join(literal)))
            literal.clear()

    while i < n:
        char = text[i]
        if char != "%":
            literal.append(char)
            i += 1
            continue
        i += 1
        if i >= n:
            raise LogFormatError("truncated line after '%'")
        char = text[i]
        if char == "%":
            literal.append("%")
            i += 1
            continue
        arguments = None
        if char == "{":
            end = text.find("}", i + 1)
            if end < 0:
                raise LogFormatError(f"truncated line after '{text[i + 1:]}'")
            arguments = text[i + 1:end]
            i = end + 1
            if i >= n or not (text[i].isalnum() or text[i] == "["):
                raise LogFormatError(f"parse argument modifier without variable name near '%{{{arguments}}}'")
            char = text[i]
        node_options = _parse_options(arguments, options) if arguments is not None else options
        if char == "[":
            end = _sample_end(text, i + 1)
            expression = text[i + 1:end]
            sample: Optional[Sample] = None
            try:
                sample = samples.parse(expression)
                samples.check(sample)
            except samples.SampleError as exc:
                if check:
                    raise LogFormatError(f"sample expression <{expression}> is not one fastproxy evaluates "
                                         f"({exc})") from None
                warnings.append(f"sample expression <{expression}> is not one fastproxy evaluates ({exc}); "
                                "it is logged as '-'")
                sample = None
            if check and sample is not None and samples.fetch_of(sample.fetch)[0].name not in CHECK_FETCHES:
                raise LogFormatError(f"sample expression <{expression}> is not one fastproxy evaluates in a "
                                     f"health check (it reads there: {', '.join(sorted(CHECK_FETCHES))})")
            flush()
            nodes.append(Node(Alias.SAMPLE, node_options, sample=sample))
            i = end + 1
            continue
        if char.isdigit() or char in " \t":
            raise LogFormatError(f"unexpected variable name near '{char}' at position {i} line : '{text}'. "
                                 "Maybe you want to write a single '%', use the syntax '%%'")
        if not char.isalpha():
            literal.append(char)  # HAProxy keeps other characters after a lone '%' as text
            i += 1
            continue
        start = i
        while i < n and text[i].isalnum():
            i += 1
        name = text[start:i]
        if name == "o":
            options = node_options
            continue
        if name not in VARIABLES:
            raise LogFormatError(f"no such format variable '{name}'. If you wanted to emit the '%' "
                                 "character verbatim, you need to use '%%'")
        alias = VARIABLES[name]
        if alias is None:
            if not http:
                raise LogFormatError(f"format variable '{name}' is reserved for HTTP mode")
            alias = Alias.HEADERS
        if check and alias not in CHECK_ALIASES:
            raise LogFormatError(f"format variable '{name}' describes a stream, which a health check does "
                                 "not have: fastproxy does not write it in a check's format")
        flush()
        nodes.append(Node(alias, node_options, text=name))
    flush()
    return Format(text, tuple(nodes), tuple(warnings))


def _parse_options(arguments: str, options: int) -> int:
    """``+Q,-X``...: HAProxy ignores names it does not know."""
    for word in arguments.split(","):
        flag = _OPTIONS.get(word[1:])
        if flag is None:
            continue
        if word.startswith("+"):
            options |= flag
        elif word.startswith("-"):
            options &= ~flag
    return options


def _sample_end(text: str, start: int) -> int:
    """The ``]`` closing a sample expression, past the brackets and parentheses it holds."""
    depth = 0
    for index in range(start, len(text)):
        char = text[index]
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        elif char == "]" and depth <= 0:
            return index
    raise LogFormatError(f"missing ']' after '{text[start:]}'")


TCP_LOG = compile(TCP_LOG_FORMAT)


# --- rendering ------------------------------------------------------------------------------------------

@dataclass
class LogRecord:
    """One ended (or failed) session, as a log line sees it.  Addresses are ``(host, port)`` tuples,
    None where there is none (no server connection: %bi, %si... read ``-``)."""

    client: Optional[tuple] = None
    frontend_address: Optional[tuple] = None
    backend_address: Optional[tuple] = None
    server_address: Optional[tuple] = None
    accepted: float = 0.0  # epoch seconds
    frontend: str = ""
    backend: str = ""
    server: Optional[str] = None  # None: <NOSRV>
    ssl: bool = False
    tls: Any = None  # the client's TLS (``tls.TlsFacts``) when its bind terminated it
    bytes_out: int = 0  # server to client (%B)
    bytes_in: int = 0  # client to server (%U)
    queue_ms: int = 0
    connect_ms: int = -1  # -1: no server connection was established
    total_ms: int = 0
    handshake_ms: int = 0
    termination: str = "--"
    active: int = 0
    frontend_current: int = 0
    backend_current: int = 0
    server_current: int = 0
    retries: int = 0
    server_queue: int = 0
    backend_queue: int = 0
    pid: int = 0
    hostname: str = ""
    unique_id: Optional[str] = None
    counter: int = 0
    log_count: int = 0
    connection: Any = None  # what sample fetches read (acl.ConnInfo); None: they give nothing
    # What %hr/%hrl write: the request capture slots (None: the frontend has none); %hs/%hsl: how many
    # response slots it has (always empty on a TCP stream)
    request_captures: Optional[Sequence[Optional[str]]] = None
    response_captures: int = 0


MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def _date(when: time.struct_time) -> str:
    return f"{when.tm_mday:02d}/{MONTHS[when.tm_mon - 1]}/{when.tm_year:04d}:" \
           f"{when.tm_hour:02d}:{when.tm_min:02d}:{when.tm_sec:02d}"


def _offset(when: time.struct_time) -> str:
    minutes = (when.tm_gmtoff or 0) // 60
    sign = "-" if minutes < 0 else "+"
    return f"{sign}{abs(minutes) // 60:02d}{abs(minutes) % 60:02d}"


def accept_parts(accepted: float) -> tuple[int, int]:
    """Whole seconds and milliseconds of an accept date (a microsecond more: 0.123 s is not
    0.12299999 s)."""
    return divmod(int(accepted * 1000 + 1e-3), 1000)  # type: ignore[return-value]


def accept_stamp(accepted: float) -> str:
    """HAProxy's ``%t``: the accept date, ``01/Dec/2026:21:59:36.123`` in local time."""
    second, ms = accept_parts(accepted)
    return logs.second_stamp("%d/%b/%Y:%H:%M:%S", second) + f".{ms:03d}"


def text_value(value: Optional[str], options: int) -> str:
    """HAProxy's ``lf_text``: ``-`` for nothing (``""`` when quoted), ``"`` ``\\`` ``]`` escaped with
    ``+E``."""
    if options & ESCAPE and value:
        value = "".join("\\" + char if char in '"\\]' else char for char in value)
    if options & QUOTE:
        return f'"{value or ""}"'
    if value:
        return value
    return "" if options & ABSENT_EMPTY and not options & MANDATORY else "-"


def _ip(address: Optional[tuple], options: int) -> str:
    if address is None:
        return text_value(None, options)
    host = address[0]
    if options & HEXA:
        return ipaddress.ip_address(host).packed.hex().upper()
    return text_value(host, options)


def _port(address: Optional[tuple], options: int) -> str:
    if address is None:
        return text_value(None, options)
    return f"{address[1]:04X}" if options & HEXA else str(address[1])


def _sample_value(node: Node, record: LogRecord) -> Optional[str]:
    if record.connection is None or node.sample is None:
        return None
    value = samples.reader(node.sample)(record.connection)
    if value is None:
        return None
    if isinstance(value, bool):
        return "1" if value else "0"
    return samples.as_text(value) if isinstance(value, bytes) else str(value)


def _times(record: LogRecord) -> tuple[int, int]:
    """%Td and %Tu of a TCP session: data time after the connect, and the total less the idle time
    (none in TCP)."""
    data = record.total_ms - record.handshake_ms - max(record.queue_ms, 0) - record.connect_ms \
        if record.connect_ms >= 0 else -1
    return data, record.total_ms


_Renderer = Callable[[Node, LogRecord], str]


def _number(value: Callable[[LogRecord], int]) -> _Renderer:
    return lambda node, record: str(value(record))


def _hexable(value: Callable[[LogRecord], int]) -> _Renderer:
    """A number HAProxy writes in hexadecimal with +X (at least 4 digits)."""
    return lambda node, record: f"{value(record):04X}" if node.options & HEXA else str(value(record))


_RENDER: dict[Alias, _Renderer] = {
    Alias.TEXT: lambda node, record: node.text,
    Alias.CLIENT_IP: lambda node, record: _ip(record.client, node.options),
    Alias.CLIENT_PORT: lambda node, record: _port(record.client, node.options),
    Alias.FRONTEND_IP: lambda node, record: _ip(record.frontend_address, node.options),
    Alias.FRONTEND_PORT: lambda node, record: _port(record.frontend_address, node.options),
    Alias.BACKEND_IP: lambda node, record: _ip(record.backend_address, node.options),
    Alias.BACKEND_PORT: lambda node, record: _port(record.backend_address, node.options),
    Alias.SERVER_IP: lambda node, record: _ip(record.server_address, node.options),
    Alias.SERVER_PORT: lambda node, record: _port(record.server_address, node.options),
    Alias.DATE: lambda node, record: accept_stamp(record.accepted),
    Alias.DATE_GMT: lambda node, record: _date(time.gmtime(accept_parts(record.accepted)[0])) + " +0000",
    Alias.DATE_LOCAL: lambda node, record: _local_date(accept_parts(record.accepted)[0]),
    Alias.TIMESTAMP: _hexable(lambda r: accept_parts(r.accepted)[0]),
    Alias.MS: lambda node, record: f"{accept_parts(record.accepted)[1]:02X}" if node.options & HEXA
    else f"{accept_parts(record.accepted)[1]:03d}",
    Alias.SERVER: lambda node, record: text_value(record.server or "<NOSRV>", node.options),
    Alias.BYTES: _number(lambda r: r.bytes_out),
    Alias.BYTES_UP: _number(lambda r: r.bytes_in),
    Alias.TC: _number(lambda r: r.connect_ms),
    Alias.TT: _number(lambda r: r.total_ms),
    Alias.TD: _number(lambda r: _times(r)[0]),
    Alias.TU: _number(lambda r: _times(r)[1]),
    Alias.TERMSTATE: lambda node, record: record.termination,
    Alias.TERMSTATE_CK: lambda node, record: record.termination + "--",
    Alias.ACTCONN: _number(lambda r: r.active),
    Alias.FECONN: _number(lambda r: r.frontend_current),
    Alias.BECONN: _number(lambda r: r.backend_current),
    Alias.SRVCONN: _number(lambda r: r.server_current),
    Alias.FRONTEND: lambda node, record: text_value(record.frontend, node.options),
    Alias.FRONTEND_XPRT: lambda node, record: _quoted(record.frontend + ("~" if record.ssl else ""),
                                                      node.options),
    Alias.BACKEND: lambda node, record: text_value(record.backend, node.options),
    Alias.TW: _number(lambda r: r.queue_ms),
    Alias.TH: _number(lambda r: r.handshake_ms),
    Alias.RETRIES: _number(lambda r: r.retries),
    Alias.SRVQUEUE: _number(lambda r: r.server_queue),
    Alias.BCKQUEUE: _number(lambda r: r.backend_queue),
    Alias.PID: _hexable(lambda r: r.pid),
    Alias.HOSTNAME: lambda node, record: text_value(record.hostname, node.options),
    Alias.STATUS: lambda node, record: "0",
    Alias.HEADERS: lambda node, record: _captures(node, record),
    Alias.SSL: lambda node, record: text_value(record.tls.cipher if record.tls else None, node.options),
    Alias.SSL_VERSION: lambda node, record: text_value(record.tls.protocol if record.tls else None,
                                                       node.options),
    Alias.UNIQUE_ID: lambda node, record: text_value(record.unique_id, node.options),
    Alias.COUNTER: _hexable(lambda r: r.counter),
    Alias.LOG_COUNT: _hexable(lambda r: r.log_count),
    Alias.SAMPLE: lambda node, record: text_value(_sample_value(node, record), node.options),
}


_CAPTURE_ESCAPED = frozenset('"#{|}')


def _capture_text(text: str) -> str:
    """HAProxy's hdr_encode_map: control characters, bytes from 0x7F on and '"#{|}' as ``#XX``."""
    return "".join(f"#{ord(c) & 0xFF:02X}" if c < " " or c >= "\x7f" or c in _CAPTURE_ESCAPED else c
                   for c in text)


def _captures(node: Node, record: LogRecord) -> str:
    """%hr ``{a|b}``, %hrl ``a b`` (``-`` for an empty slot, none with +Q, which quotes each), and
    the same of the response's slots for %hs/%hsl (empty on a TCP stream)."""
    slots: Sequence[Optional[str]]
    if node.text.startswith("hr"):
        slots = record.request_captures or ()
    else:
        slots = [None] * record.response_captures
    if not slots:
        return ""
    quote = node.options & QUOTE
    if node.text in ("hr", "hs"):
        text = "{" + "|".join(_capture_text(value) if value is not None else "" for value in slots) + "}"
        return f'"{text}"' if quote else text
    if quote:
        return " ".join(f'"{_capture_text(value)}"' if value is not None else '""' for value in slots)
    return " ".join(_capture_text(value) if value is not None else "-" for value in slots)


def _quoted(text: str, options: int) -> str:
    """%ft: the name as it is, quoted with +Q (no escaping, never ``-``)."""
    return f'"{text}"' if options & QUOTE else text


def _local_date(seconds: int) -> str:
    when = time.localtime(seconds)
    return f"{_date(when)} {_offset(when)}"


def render(fmt: Format, record: LogRecord) -> str:
    return "".join(_RENDER[node.alias](node, record) for node in fmt.nodes)


# --- the pump's program ---------------------------------------------------------------------------------

_NODE = struct.Struct("<BBH")  # opcode, options, length of the text that follows


def lane_program(fmt: Format, constants: LogRecord) -> Optional[bytes]:
    """The program the pump runs for each of a lane's pairs: ``(opcode, options, length)`` then
    ``length`` bytes of text, node after node; what does not change on a lane is rendered from
    ``constants`` into text.  None: the format needs Python per connection."""
    out = bytearray()
    text: list[str] = []

    def flush() -> None:
        if text:
            encoded = "".join(text).encode()
            for start in range(0, len(encoded), 0xFFFF):
                chunk = encoded[start:start + 0xFFFF]
                out.extend(_NODE.pack(Alias.TEXT, 0, len(chunk)) + chunk)
            text.clear()

    for node in fmt.nodes:
        if node.alias in _PYTHON_ONLY:
            return None
        if node.alias in _DYNAMIC:
            flush()
            out.extend(_NODE.pack(node.alias, node.options, 0))
        else:
            text.append(_RENDER[node.alias](node, constants))
    flush()
    return bytes(out)


def needs(fmt: Format, aliases: Sequence[Alias]) -> bool:
    return any(node.alias in aliases for node in fmt.nodes)
