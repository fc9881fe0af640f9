"""Garbage on the live ports of a real fastproxy process: the stats socket answers every request it is
sent, garbage included, and serves the next command in the same session; the stats listener answers
garbage HTTP with a 4xx or a close and serves the next request.  Hypothesis makes the garbage (mutations
of the real commands and requests, random bytes); one process per module and implementation takes all
of it, and must still be serving, with its traffic, at the end.
"""

from __future__ import annotations

import base64
import re
import socket
import time
from pathlib import Path
from typing import Iterator

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fastproxy.runtime_api import MAX_REQUEST, find_command, split_request
from fastproxy.runtime_commands import COMMANDS

from ..support import (OPERATED_CONFIG, EchoThread, cli_requests, exchange_line, free_port, fuzzed,
                       start_fastproxy, stop, wait_for, wait_listening)

ANSWER_TIMEOUT = 10.0  # seconds an answer may take (generous: CI under load)
AUTHORIZATION = "Basic " + base64.b64encode(b"admin:secret").decode()


class Proxy:
    """The running process and its ports."""

    def __init__(self, directory: Path, env: dict) -> None:
        self.echo = EchoThread()
        self.ports = {name: free_port() for name in ("fe", "stats")}
        self.socket = str(directory / "admin.sock")
        cfg = directory / "haproxy.cfg"
        cfg.write_text(OPERATED_CONFIG.format(directory=directory, s1=self.echo.port, s2=self.echo.port,
                                              **self.ports))
        self.log = directory / "stderr.log"  # a file: a pipe nobody reads would block the process
        with open(self.log, "w") as stderr:
            self.proc = start_fastproxy(["run", "-q", "-f", str(cfg)], env, stderr=stderr)
        wait_listening(("127.0.0.1", self.ports["stats"]), self.proc)
        wait_for(lambda: Path(self.socket).exists(), what="the stats socket")

    def still_serving(self) -> None:
        """Traffic flows, once the servers garbage may have moved, weighed or stopped are set back."""
        assert self.proc.poll() is None, "the proxy died"
        with socket.socket(socket.AF_UNIX) as sock:
            sock.settimeout(ANSWER_TIMEOUT)
            sock.connect(self.socket)
            sock.sendall(b"".join(b"set server be/%s addr 127.0.0.1 port %d;set server be/%s state ready;"
                                  b"set weight be/%s 1;" % (name, self.echo.port, name, name)
                                  for name in (b"s1", b"s2")) + b"enable frontend fe\n")
            while sock.recv(1 << 16):
                pass
        with socket.create_connection(("127.0.0.1", self.ports["fe"]), timeout=ANSWER_TIMEOUT) as sock:
            assert exchange_line(sock, b"still here\n") == b"still here\n"
        assert "Traceback" not in self.log.read_text()  # no garbage made a bug show

    def close(self) -> None:
        stop(self.proc)
        self.echo.close()


@pytest.fixture(scope="module")
def proxy(implementation, tmp_path_factory) -> Iterator[Proxy]:
    running = Proxy(tmp_path_factory.mktemp("garbage"), implementation.env)
    try:
        yield running
        running.still_serving()
    finally:
        running.close()
    assert running.proc.returncode == 0


# --- the stats socket ---------------------------------------------------------------------------------

# Commands that change the session itself (its level, its mode, its end), stop what the test uses, or
# answer as the test's own "show cli level" does: garbage that happens to spell one of them is not sent.
NOT_SENT = {("show", "cli", "level"), ("quit",), ("prompt",), ("operator",), ("user",),
            ("experimental-mode",), ("set", "timeout"), ("shutdown", "session"), ("shutdown", "frontend"),
            ("disable", "frontend"), ("set", "maxconn", "frontend"), ("set", "maxconn", "global"),
            ("_getsocks",)}  # ends the session, on a socket with or without expose-fd, as haproxy's
ARGUMENTS = ["be", "be/s1", "be/s2", "be/nope", "/", "fe", "stats", "all", "desc", "json", "typed", "up",
             "key", "data.conn_cnt", "data.gpc0", "127.0.0.1", "::1", "0", "-1", "1" * 30, "9" * 5000, "0x10",
             "+5", "weight", "state", "addr", "port", "maxconn", "drain", "ready", "maint", "health", "agent",
             "é", "\x00", "\t", "\\", "\\\\", "\\;", "%", "'", '"', "*", "-", "--", "ff" * 200]
command_words = st.sampled_from([" ".join(c.words) for c in COMMANDS if c.words not in NOT_SENT])
garbage_bytes = st.binary(max_size=600).map(lambda data: data.replace(b"\n", b" "))
NUMBERS = ["0", "-1", "1", "256", "65536", "9" * 30, "9" * 5000, "-" + "9" * 5000, "0x" + "f" * 40, "1%",
           "9" * 5000 + "%", "5s", "9" * 5000 + "d", "1.5", "+1", ""]
TARGETS = ["be/s1", "be/s2", "fe", "be", "#1", "#" + "9" * 5000, "127.0.0.1", "::1"]
garbage_requests = st.one_of(
    st.tuples(command_words, st.lists(st.sampled_from(ARGUMENTS) | st.text(max_size=8), max_size=6)).map(
        lambda c: " ".join([c[0], *c[1]]).encode("utf-8", "surrogateescape").replace(b"\n", b" ")),
    # A command, what it acts on, then numbers and keywords where its arguments go.
    st.tuples(command_words, st.sampled_from(TARGETS),
              st.lists(st.sampled_from(NUMBERS) | st.sampled_from(ARGUMENTS), max_size=4)).map(
        lambda c: " ".join([c[0], c[1], *c[2]]).encode("utf-8", "surrogateescape").replace(b"\n", b" ")),
    garbage_bytes,
    st.lists(st.sampled_from(ARGUMENTS + ["show", "set", "clear", "table", "stat", "server"]), max_size=8)
    .map(lambda words: " ".join(words).encode()),
)


def read_until(sock: socket.socket, ending: bytes) -> bytes:
    data = b""
    while not data.endswith(ending):
        chunk = sock.recv(1 << 16)
        assert chunk, f"the session ended after {data[-300:]!r}"
        data += chunk
    return data


@fuzzed(100)
@given(st.lists(garbage_requests, min_size=1, max_size=4))
def test_the_stats_socket_answers_garbage_and_serves_the_next_command(proxy, lines):
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(ANSWER_TIMEOUT)
        sock.connect(proxy.socket)
        sock.sendall(b"prompt\n")
        read_until(sock, b"\n> ")
        for line in lines:
            line += b" \n"  # a space, so that the line ends at its LF even after a backslash
            requests = cli_requests(line)
            named = [find_command(COMMANDS, split_request(request)) for request in requests]
            if any(command is not None and command.words in NOT_SENT for command in named):
                continue
            if len(line) > MAX_REQUEST - 64:
                continue  # longer than HAProxy's buffer: the session ends unanswered, as it should
            sock.sendall(line + b"show cli level\n")
            answer = read_until(sock, b"admin\n\n> ")
            assert answer.count(b"\n> ") >= len(requests) + 1, answer[-300:]  # one answer a request
            if not any(named):  # garbage only: HAProxy's usage text for each request
                assert answer.count(b"Unknown command") == len(requests), answer[:300]
                assert answer.endswith(b"  quit                                    : disconnect\n\n> "
                                       b"admin\n\n> "), answer[-300:]
        sock.sendall(b"quit\n")
        assert sock.recv(100) == b""


# --- the stats listener -------------------------------------------------------------------------------

REQUEST = (b"GET /stats;csv HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: " + AUTHORIZATION.encode() +
           b"\r\nConnection: close\r\n\r\n")
PARTS = [b"GET", b"POST", b"HEAD", b"PUT", b"BREW", b"/", b"/stats", b"/stats;csv", b"/stats;up;norefresh",
         b"/healthz", b"/stats?scope=be", b";st=DONE", b"HTTP/1.1", b"HTTP/1.0", b"HTTP/2.0", b"HTTP/9",
         b"\r\n", b"\n", b" ", b":", b"Host: x", b"Content-Length: 5", b"Content-Length: -1",
         b"Content-Length: " + b"9" * 40, b"Transfer-Encoding: chunked", b"Transfer-Encoding: gzip, chunked",
         b"0\r\n\r\n", b"ffffffffffffffff\r\n", b"Authorization: Basic", b"Authorization: Basic !!!",
         b"Authorization: " + AUTHORIZATION.encode(), b"Expect: 100-continue", b"\x00", b"\xff\xfe",
         b"action=maint&s=s1&b=be", b"b=" + b"x" * 3000, b"%", b"%zz", b"X" * 9000]


@st.composite
def garbage_http(draw) -> bytes:
    kind = draw(st.sampled_from(["mutated", "parts", "bytes"]))
    if kind == "bytes":
        return draw(st.binary(min_size=1, max_size=2000))
    if kind == "parts":
        return b"".join(draw(st.lists(st.sampled_from(PARTS), min_size=1, max_size=20)))
    data = bytearray(REQUEST)
    for _ in range(draw(st.integers(1, 5))):
        at = draw(st.integers(0, len(data)))
        cut = draw(st.integers(0, 12))
        data[at:at + cut] = draw(st.sampled_from(PARTS) | st.binary(max_size=8))
    return bytes(data)


def answer_to(proxy: Proxy, data: bytes) -> bytes:
    """What the stats listener sends back for ``data``, sent whole, until it closes (the client's
    side closed for writing: an incomplete request cannot wait for more)."""
    with socket.create_connection(("127.0.0.1", proxy.ports["stats"]), timeout=ANSWER_TIMEOUT) as sock:
        try:
            sock.sendall(data)
            sock.shutdown(socket.SHUT_WR)
        except (BrokenPipeError, ConnectionResetError):
            pass  # refused before it was all sent: the answer (if any) is still there to read
        answer = b""
        try:
            while chunk := sock.recv(1 << 16):
                answer += chunk
        except ConnectionResetError:
            pass
        return answer


@fuzzed(100)
@given(garbage_http())
def test_the_stats_listener_answers_garbage_with_a_4xx_or_a_close_and_serves_the_next_request(proxy, data):
    answer = answer_to(proxy, data)
    statuses = [int(code) for code in re.findall(rb"^HTTP/\d\.\d (\d{3}) ", answer, re.M)]
    if answer:
        assert answer.startswith(b"HTTP/"), answer[:200]
        assert statuses and all(status < 500 or status == 503 for status in statuses), answer[:300]
    # A well-formed request on a new connection is served as ever.
    served = answer_to(proxy, REQUEST)
    assert served.startswith(b"HTTP/1.1 200 ") and b"# pxname,svname," in served, served[:300]


@pytest.mark.parametrize("data", [
    # Found by fuzz/stats_http.py: aiohttp lingered 10 s for the rest of a body the client, having
    # closed its side, could never send.
    b"GET /s$tats HTTP/1.1\r\nHost:  x\r\nContent-Length: 22\r\n\r\ns=s1&b=bx\r\n\r\n",
    b"POST /stats HTTP/1.1\r\nHost: x\r\nAuthorization: " + AUTHORIZATION.encode() +
    b"\r\nContent-Length: 40\r\n\r\ns=s1&b=be",
], ids=["unavailable", "post"])
def test_a_request_whose_body_a_half_close_cuts_short_is_answered_and_closed_at_once(proxy, data):
    started = time.monotonic()
    answer = answer_to(proxy, data)
    assert answer.startswith(b"HTTP/1.1 503 ") or answer.startswith(b"HTTP/1.1 303 "), answer[:100]
    assert time.monotonic() - started < ANSWER_TIMEOUT / 2
