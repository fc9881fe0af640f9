"""The stats listener: aiohttp's HTTP server on the engine's event loop, one per ``mode http`` proxy
that serves statistics, on that proxy's ``bind`` lines.  Off the data path: it reads the counters
when a page is asked for, as the runtime API does.

This module only wires HTTP to the sans-IO parts: ``stats_page`` decides what a request gets (routes,
credentials, the admin rule, the form, the HTML), ``stats`` computes the rows and the CSV (the same
text as ``show stat``), ``operations.Operations`` holds the sampler, the history and the actions on
servers, and the Prometheus exporter's text comes from ``promex``.  The HTTP
protocol itself is aiohttp's; nothing here parses HTTP.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any, Optional

from aiohttp import HttpVersion10, web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.web_protocol import RequestHandler

from . import acl as acls
from . import promex, stats, stats_page
from .config import model
from .operations import Operations
from .handover import Opener, backlog_of, bind_listener
from .pump import Counter
from .runtime import FrontendRuntime

log = logging.getLogger("fastproxy")

IDLE_TIMEOUT = 10.0  # seconds an idle keep-alive connection stays, without ``timeout client``
MAX_FORM = 16384  # bytes of a POSTed form (HAProxy's limit is its buffer: EXCD past it)


class StatsListener:
    """Serves one frontend's ``StatsPage`` on its binds: ``await start()``, then ``await stop()``."""

    def __init__(self, frontend: model.Frontend, operations: Operations, *,
                 open_listener: Optional[Opener] = None) -> None:
        assert frontend.stats is not None
        self.frontend = frontend
        self.open_listener: Opener = open_listener or bind_listener
        self.page: model.StatsPage = frontend.stats
        self.operations = operations
        self.servers: list[asyncio.AbstractServer] = []
        self._http: Optional[web.Server] = None

    @property
    def addresses(self) -> list[tuple]:
        return [sock.getsockname() for server in self.servers
                for sock in getattr(server, "sockets", None) or ()]

    async def start(self) -> None:
        """Listen on every bind; on a failure none stays open."""
        loop = asyncio.get_running_loop()
        # lingering_time=0: once answered, a request's unread body is not waited for (aiohttp's 10 s
        # lingering held a client that had closed its side, the answer sent, for those 10 s).
        self._http = _CountingServer(self._handle, self._count_connection, loop=loop,
                                     keepalive_timeout=self.frontend.timeouts.client or IDLE_TIMEOUT,
                                     lingering_time=0.0)
        try:
            for bind in self.frontend.binds:
                sock = self.open_listener(bind, backlog_of(self.frontend))
                try:
                    self.servers.append(await loop.create_server(self._http, sock=sock))
                except BaseException:
                    sock.close()
                    raise
        except BaseException:
            await self.stop()
            raise

    async def stop(self) -> None:
        for server in self.servers:
            server.close()
        if self._http is not None:
            await self._http.shutdown(1.0)
        for server in self.servers:
            await server.wait_closed()
        self.servers.clear()

    # --- the listener's own traffic, counted as HAProxy counts its stats proxy's ---

    @property
    def _runtime(self) -> FrontendRuntime:
        return self.operations.state.frontends[self.frontend.name]

    def _count_connection(self, opened: bool) -> None:
        pump, block = self.operations.pump, self._runtime.block
        pump.add_counter(block, Counter.CONN_CUR, 1 if opened else -1)
        if opened:
            pump.add_counter(block, Counter.CONN_TOTAL, 1)

    def _count_request(self, request: web.BaseRequest, response: web.StreamResponse,
                       intercepted: bool) -> None:
        runtime = self._runtime
        assert runtime.http is not None
        runtime.http.count(response.status, intercepted=intercepted)
        pump = self.operations.pump
        pump.add_counter(runtime.block, Counter.BYTES_IN, _request_size(request))
        pump.add_counter(runtime.block, Counter.BYTES_OUT, request.writer.output_size)

    # --- requests ---

    async def _handle(self, request: web.BaseRequest) -> web.StreamResponse:
        where = stats_page.route(self.page, request.raw_path)
        try:
            response: web.StreamResponse
            if request.version < HttpVersion10:  # a request line without its version: HAProxy's 400
                response = _html(stats_page.BAD_REQUEST, status=400)
                response.force_close()
            else:
                response = await self._answer(request, where)
        except (ConnectionError, asyncio.CancelledError):
            raise
        except Exception:  # a bug on the page must not take the listener down
            log.exception("stats listener %s: request failed", self.frontend.name)
            response = web.Response(status=500, text="500 Internal Server Error\n")
        # Written here rather than by aiohttp after this returns, so that its bytes are counted.
        try:
            await response.prepare(request)
            await response.write_eof()
        finally:
            self._count_request(request, response, intercepted=where.kind != "unavailable")
        return response

    async def _answer(self, request: web.BaseRequest, where: stats_page.Route) -> web.StreamResponse:
        page = self.page
        if where.kind == "monitor":
            return _html(stats_page.SERVICE_READY)
        if where.kind == "prometheus":
            return self._metrics(request)
        if where.kind == "unavailable" or where.page is None:
            return _html(stats_page.UNAVAILABLE, status=503)
        if not stats_page.authorized(page, request.headers.get("Authorization")):
            return web.Response(status=401, text=stats_page.UNAUTHORIZED, content_type="text/html",
                                headers={"Cache-Control": "no-cache",
                                         "WWW-Authenticate": f'Basic realm="{stats_page.realm(page)}"'})
        assert page.uri is not None
        admin = stats_page.admin_allowed(page, self.frontend.acls, self._client(request))
        if request.method == "POST":
            status = await self._post(request, admin)
            return web.Response(status=303, headers={"Location": f"{page.uri};st={status}",
                                                     "Cache-Control": "no-cache"}, content_type="text/plain")
        return self._page(where.page, admin)

    def _client(self, request: web.BaseRequest) -> acls.ConnInfo:
        transport = request.transport
        peer = transport.get_extra_info("peername") if transport is not None else None
        local = transport.get_extra_info("sockname") if transport is not None else None
        return acls.ConnInfo(src=peer[0] if peer else "", src_port=peer[1] if peer else 0,
                             dst=local[0] if local else "", dst_port=local[1] if local else 0)

    async def _post(self, request: web.BaseRequest, admin: bool) -> str:
        if not admin:
            return "DENY"
        body = await request.content.read(MAX_FORM + 1)
        if len(body) > MAX_FORM:
            return "EXCD"
        form = stats_page.parse_admin_form(body.decode("latin-1"))
        ops = self.operations

        def in_scope(name: str) -> bool:
            proxy = ops.backend_proxy(name)
            return proxy is not None and self._shown(proxy.name, stats_page.PageRequest())

        def apply(backend: str, server: str, action: str) -> Optional[bool]:
            proxy = ops.backend_proxy(backend)
            assert proxy is not None and proxy.backend is not None
            target = next((s for s in proxy.backend.servers if s.slot.name == server), None)
            return None if target is None else ops.page_action(target, action)

        return stats_page.admin_status(form, backend_known=in_scope, apply=apply)

    def _shown(self, proxy_name: str, request: stats_page.PageRequest) -> bool:
        return stats_page.in_scope(self.page, request, proxy_name, self.frontend.name)

    def _rows(self, request: stats_page.PageRequest) -> list[dict[str, Any]]:
        ops = self.operations
        proxies = [proxy for proxy in ops.proxies if self._shown(proxy.name, request)]
        # Addresses and algorithms with ``stats show-legends``, as HAProxy's STAT_SHLGNDS.
        rows = stats.rows(ops.stats_view(show_addresses=self.page.show_legends), proxies)
        if request.hide_down or request.hide_maint:
            rows = stats.hide_servers(rows, ops.proxies, down=request.hide_down, maint=request.hide_maint)
        return rows

    def _page(self, request: stats_page.PageRequest, admin: bool) -> web.Response:
        headers = {"Cache-Control": "no-cache"}
        if self.page.refresh and not request.no_refresh:
            headers["Refresh"] = str(int(self.page.refresh))
        if request.format == "csv":
            return web.Response(text=stats.csv(self._rows(request)), content_type="text/plain",
                                headers=headers)
        if request.format == "typed":  # show stat typed, show stat json: the same texts as the socket's
            return web.Response(text=stats.typed(self._rows(request)), content_type="text/plain",
                                headers=headers)
        if request.format == "json":
            return web.Response(text=stats.json_stat(self._rows(request)), content_type="application/json",
                                headers=headers)
        if request.format == "history":
            ops = self.operations
            series = {f"{kind}/{proxy.name}": ops.history.series((kind, proxy.name))
                      for proxy in ops.proxies if self._shown(proxy.name, request)
                      for kind, runtime in (("fe", proxy.frontend), ("be", proxy.backend))
                      if runtime is not None}
            return web.Response(text=stats_page.history_json(series), content_type="application/json",
                                headers={"Cache-Control": "no-cache"})
        assert self.page.uri is not None
        info = self.operations.info()
        context = stats_page.PageContext(page=self.page, request=request, uri=self.page.uri,
                                         rows=self._rows(request), info=info, admin=admin,
                                         node=str(info["node"]), description=str(info["description"] or ""))
        return web.Response(text=stats_page.html(context), content_type="text/html", headers=headers)

    def _metrics(self, request: web.BaseRequest) -> web.Response:
        """The Prometheus exporter (``promex``) over the same rows as ``show stat``, with its query
        options (``?scope=...``, ``no-maint``)."""
        try:
            options = promex.query_options(request.query.items())
        except ValueError as exc:
            return web.Response(status=400, text=f"{exc}\n", headers={"Cache-Control": "no-cache"})
        return web.Response(body=self.operations.metrics(**options),
                            headers={"Content-Type": promex.CONTENT_TYPE, "Cache-Control": "no-cache"})


class _ConnectionHandler(RequestHandler):
    """aiohttp's connection handler, with two differences.  A client that closes its side once its
    request is sent (``printf 'GET /stats;csv ...' | nc -N``) still gets its answer, as HAProxy gives
    it, then the connection ends (aiohttp would drop the request).  A malformed request gets aiohttp's
    400 and is logged at debug level, not as an error with its traceback: garbage is the client's
    error, and a flood of it must not flood the log."""

    def log_exception(self, *args: Any, **kwargs: Any) -> None:
        if isinstance(kwargs.get("exc_info"), HttpProcessingError):
            self.logger.debug(*args, **kwargs)
        else:
            super().log_exception(*args, **kwargs)

    def eof_received(self) -> Optional[bool]:  # type: ignore[override]
        # From aiohttp's state: a request is in hand once one was read and the handler's loop is not
        # waiting for the next one (``_waiter``), or one is queued.
        if not self._messages and (self._waiter is not None or not self._request_count):
            return None  # no whole request: the connection closes at once (a partial one is dropped)
        self.close()  # no further request: the connection ends once this one is answered
        self._lingering_time = 0.0  # nor more of a body: no lingering for its unread rest
        for _, payload in self._messages:
            payload.feed_eof()  # a body cut short reads as what came, not as a wait for ever
        asyncio.get_running_loop().call_soon(self._end_body)  # once the request's handler has started
        return True  # the transport stays open for the answer

    def _end_body(self) -> None:
        if self._current_request is not None:
            self._current_request.content.feed_eof()


class _CountingServer(web.Server):
    """aiohttp's server, telling ``counted(opened)`` of each connection it opens and closes."""

    def __init__(self, handler: Any, counted: Callable[[bool], None], **kwargs: Any) -> None:
        super().__init__(handler, **kwargs)
        self._counted = counted
        self._open: set[RequestHandler] = set()

    def __call__(self) -> RequestHandler:
        return _ConnectionHandler(self, loop=self._loop, **self._kwargs)

    def connection_made(self, handler: RequestHandler, transport: asyncio.Transport) -> None:
        super().connection_made(handler, transport)
        self._open.add(handler)
        self._counted(True)

    def connection_lost(self, handler: RequestHandler, exc: Optional[BaseException] = None) -> None:
        super().connection_lost(handler, exc)
        if handler in self._open:
            self._open.discard(handler)
            self._counted(False)


def _request_size(request: web.BaseRequest) -> int:
    """The bytes of a request as it came on the wire: its request line, headers and body."""
    line = len(request.method) + len(request.raw_path) + len("  HTTP/1.1\r\n")
    headers = sum(len(name) + len(value) + 4 for name, value in request.raw_headers) + 2
    return line + headers + (request.content_length or 0)


def _html(text: str, status: int = 200) -> web.Response:
    return web.Response(status=status, text=text, content_type="text/html",
                        headers={"Cache-Control": "no-cache"})
