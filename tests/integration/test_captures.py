"""``tcp-request content capture <sample> len <n>``, ``declare capture`` and ``capture request|response
header`` on real sockets, held to the real haproxy 2.6 on the same file and clients: the slots the
log-format's %hr, %hrl, %hs, %hsl and ``%[capture.req.hdr(<n>)]`` write, and a ``use_backend`` on a
captured value."""

from __future__ import annotations

import asyncio
import contextlib

from ..support import assert_verdicts, in_a_frontend, serving
from .test_routing import named_backend
from .test_routing_keywords import PROLOGUE
from .test_variables import needs_haproxy, run_both

CAPTURES = PROLOGUE + """
frontend fe
    bind 127.0.0.1:{port}
    log 127.0.0.1:{sink} local0
    declare capture request len 10
    declare capture response len 4
    log-format "hr=%hr hrl=%hrl qhr=%{{+Q}}hr qhrl=%{{+Q}}hrl hs=%hs hsl=%hsl c1=%[capture.req.hdr(1)] \
c2=%[capture.req.hdr(2)]"
    tcp-request inspect-delay 1s
    tcp-request content capture req.payload(0,4) len 3
    tcp-request content capture src len 20 if {{ src 127.0.0.2 }}
    tcp-request content accept if {{ req.len gt 0 }}
    use_backend marked if {{ capture.req.hdr(1) -m beg a }}
    default_backend plain
backend marked
    server s1 127.0.0.1:{marked}
backend plain
    server s1 127.0.0.1:{plain}
"""


@needs_haproxy
def test_captures_log_and_route_as_haproxy(pump_class, tmp_path):
    clients = [("127.0.0.1", b"hello"), ("127.0.0.2", b'a{b|c"'), ("127.0.0.3", b"\x01bc")]

    async def main():
        async with contextlib.AsyncExitStack() as stack:
            ports = {name: await stack.enter_async_context(serving(named_backend(name.encode())))
                     for name in ("marked", "plain")}
            return await asyncio.to_thread(run_both, pump_class, CAPTURES, ports, tmp_path, clients,
                                           len(clients))

    ours, theirs = asyncio.run(main())
    assert ours == theirs
    replies, lines = ours
    assert replies == [b"plain", b"marked", b"plain"]
    assert 'hr={|a#7Bb|127.0.0.2} hrl=- a#7Bb 127.0.0.2 qhr="{|a#7Bb|127.0.0.2}" qhrl="" "a#7Bb" ' \
           '"127.0.0.2" hs={} hsl=- c1=a{b c2=127.0.0.2' in lines


def test_capture_verdicts_are_haproxys(tmp_path):
    cases = {
        " declare capture request len 10\n": True,
        " declare capture request\n": False,
        " declare capture foo len 1\n": False,
        " declare capture response len 4\n": True,
        " declare capture request len x\n": False,
        " capture request header Host len 10\n": True,
        " capture response header Server len 5\n": True,
        " capture request header Host\n": False,
        " capture cookie x len 3\n": True,
        " tcp-request content capture src\n": False,
        " tcp-request content capture src len x\n": False,
        " tcp-request content capture foo len 3\n": False,
        " tcp-request content capture src len 3 if { src 127.0.0.1 }\n": True,
        " tcp-request content reject if { capture.req.hdr(0) -m str x }\n": True,
    }
    texts = {in_a_frontend(line): valid for line, valid in cases.items()}
    texts[PROLOGUE + "backend b\n declare capture request len 10\n server s 127.0.0.1:1\n"] = False
    assert_verdicts(tmp_path, texts)
