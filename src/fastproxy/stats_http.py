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
from typing import Any, Optional

from aiohttp import web

from . import acl as acls
from . import promex, stats, stats_page
from .config import model
from .operations import Operations
from .handover import Opener, backlog_of, bind_listener

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
        self._http = web.Server(self._handle, loop=loop,
                                keepalive_timeout=self.frontend.timeouts.client or IDLE_TIMEOUT)
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

    # --- requests ---

    async def _handle(self, request: web.BaseRequest) -> web.StreamResponse:
        try:
            return await self._answer(request)
        except (ConnectionError, asyncio.CancelledError):
            raise
        except Exception:  # a bug on the page must not take the listener down
            log.exception("stats listener %s: request failed", self.frontend.name)
            return web.Response(status=500, text="500 Internal Server Error\n")

    async def _answer(self, request: web.BaseRequest) -> web.StreamResponse:
        page = self.page
        where = stats_page.route(page, request.raw_path)
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
        if request.format == "history":
            ops = self.operations
            series = {f"{kind}/{proxy.name}": ops.history.series((kind, proxy.name))
                      for proxy in ops.proxies if self._shown(proxy.name, request)
                      for kind, runtime in (("fe", proxy.frontend), ("be", proxy.backend))
                      if runtime is not None}
            return web.Response(text=stats_page.history_json(series), content_type="application/json",
                                headers={"Cache-Control": "no-cache"})
        assert self.page.uri is not None
        context = stats_page.PageContext(page=self.page, request=request, uri=self.page.uri,
                                         rows=self._rows(request), info=self.operations.info(), admin=admin)
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


def _html(text: str, status: int = 200) -> web.Response:
    return web.Response(status=status, text=text, content_type="text/html",
                        headers={"Cache-Control": "no-cache"})
