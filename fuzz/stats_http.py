"""atheris target: the HTTP side of the stats listener (``stats_http`` over aiohttp, and the sans-IO
``stats_page`` functions it calls), with real bytes on a running engine's listener.

Property: whatever a client sends, the listener answers with a status line that is no 5xx (but the 503
of a page not served) or closes, and the next well-formed request is served; the sans-IO functions
given the same bytes as a path, a header or a form never raise.
"""

import asyncio
import base64
import sys
from urllib.parse import parse_qsl

import atheris

with atheris.instrument_imports(include=["fastproxy"]):
    from fastproxy import promex, stats_page

    from live import LiveEngine

LIVE = LiveEngine()
PAGE = LIVE.engine.config.frontends["stats"].stats
CSV = (b"GET /stats;csv HTTP/1.1\r\nHost: x\r\nAuthorization: Basic " + base64.b64encode(b"admin:secret") +
       b"\r\nConnection: close\r\n\r\n")


async def _answer(data: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", LIVE.ports["stats"])
    try:
        writer.write(data)
        writer.write_eof()
        return await asyncio.wait_for(reader.read(), 10)
    except ConnectionResetError:
        return b""
    finally:
        writer.close()


def _check_status(answer: bytes) -> None:
    if not answer:
        return
    if not answer.startswith(b"HTTP/"):  # (HTTP/0.9 for a request line without its version)
        raise AssertionError(f"not an HTTP answer: {answer[:100]!r}")
    status = int(answer[9:12])
    if status >= 500 and status != 503:
        raise AssertionError(f"answered {answer[:200]!r}")


def test_one_input(data: bytes) -> None:
    text = data.decode("latin-1")
    stats_page.route(PAGE, text)
    stats_page.authorized(PAGE, text)
    stats_page.parse_admin_form(text)
    try:
        promex.query_options(parse_qsl(text))
    except ValueError:
        pass  # a 400, by contract
    _check_status(LIVE.loop.run_until_complete(_answer(data)))
    served = LIVE.loop.run_until_complete(_answer(CSV))
    if not served.startswith(b"HTTP/1.1 200 "):
        raise AssertionError(f"a well-formed request is answered {served[:200]!r}")


if __name__ == "__main__":
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()
