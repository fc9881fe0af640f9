"""The path of a routed connection: choose a server, queue, dial, retry, redispatch, pair, end.

HAProxy's ``backend.c`` (``assign_server()``, ``connect_server()``), ``queue.c`` and the connection half
of ``stream.c`` (``back_handle_st_cer()``: retries and redispatch), in one place.  A session arrives here
with its backend known (``proxy.TCPProxy`` routed it); the ``Dispatcher`` asks the director hook or the
balancer for a server, queues the session when every server is full (``timeout queue``), starts a
non-blocking connect and hands the pair to the pump at once with the connect still in progress.  The
pump completes it, or gives the client back (``connect_failed``) for a retry (``retries``), a
redispatch to another server (``option redispatch``), or the error handler.  When a pair ends, the
server's slot goes to the oldest queued connection and the tcplog line is written.

The path is synchronous and allocation-light, because connections per second are won or lost here:
only hooks that return awaitables and the error handler use tasks.
"""

from __future__ import annotations

import asyncio
import collections
import errno
import ipaddress
import logging
import os
import socket
import time
from typing import Callable, Optional

from . import _linux, logformat, payload, tcplog
from .acl import ConnInfo
from .balance import ServerSlot
from .config import model
from .errors import NoServerAvailable, ProxyError, QueueTimeout, UpstreamConnectError
from .pump import Counter, DetachedPair, EndReason
from .persistence import STOPPED
from .queues import Pending
from .runtime import BackendRuntime, FrontendRuntime, PairTimeouts, Runtime
from .server import Connection
from .tlsrelay import PairTls
from .session import Director, ErrorHandler, Session, Target, conn_info, pick_key, proxy_header
from .variables import ProcessVariables, Variables

log = logging.getLogger("fastproxy")

CONNECT_ERROR_KIND = {errno.ECONNREFUSED: "refused", errno.ETIMEDOUT: "timeout"}


async def default_error_handler(conn: Connection, exc: Exception) -> None:
    """Close the client cleanly: what HAProxy does in TCP mode when no server can be reached."""
    conn.close()


class Dispatcher:
    """Every routed connection of one running configuration, until its pair ends."""

    def __init__(self, state: Runtime, *, director: Optional[Director] = None,
                 error_handler: Optional[ErrorHandler] = None,
                 observe_error: Optional[Callable[[int], None]] = None) -> None:
        self.state = state
        self.director = director
        self.error_handler = error_handler
        # A failed connect to a server with ``observe layer4`` (by the server's counter block).
        self.observe_error = observe_error or (lambda block: None)
        self.pairs: dict[int, Session] = {}  # in the pump, by tag
        self.ended_by: collections.Counter[EndReason] = collections.Counter()  # Python's pairs, by reason
        self._next_tag = 1
        self._timeouts: dict[tuple[str, str], PairTimeouts] = {}

    # --- choosing a server --------------------------------------------------------------------------

    def choose_and_dial(self, session: Session) -> None:
        if self.director is not None:
            target = self.director(session, session.backend)  # type: ignore[arg-type]
            if asyncio.iscoroutine(target) or isinstance(target, asyncio.Future):
                task = asyncio.ensure_future(target)
                task.add_done_callback(lambda t: self._directed(session, t))
                return
            self._dial_target(session, target)  # type: ignore[arg-type]
        else:
            self._dial_target(session, None)

    def _directed(self, session: Session, task: "asyncio.Future[Target]") -> None:
        if task.cancelled():
            session.close()
            return
        exc = task.exception()
        if exc is not None:
            log.error("director failed: %r", exc)
            self.fail(session, ProxyError("director", str(exc)))
            return
        self._dial_target(session, task.result())

    def _dial_target(self, session: Session, target: Target) -> None:
        backend = session.backend
        assert backend is not None
        slot: Optional[ServerSlot]
        if target is None and backend.persistence is not None and session.stick_pending is None:
            # The stick tables first, once per session (a redispatch does not look again).
            target, session.stick_pending = backend.persistence.lookup(conn_info(session))
        if target is None and backend.server_rules and not session.excluded:
            target = _ruled_server(backend, session)
        if target is None and backend.model.persist_rdp_cookie is not None and not session.excluded:
            target = rdp_persisted(backend, session)
        if target is None:
            balancer = backend.balancer
            if balancer.queued:  # those waiting get the slots that freed up before a newcomer does
                self.serve_queues(backend)
            slot = balancer.pick(pick_key(session), session.excluded or ())
            if slot is None:
                if not balancer.pool:
                    self.fail(session, NoServerAvailable(
                        "no-server", f"backend '{backend.name}' has no server available"))
                else:  # every server is full
                    self.enqueue(session, None)
                return
            if not balancer.available(slot):  # the hash (or leastconn under maxqueue) chose a full one
                self._wait_for(session, slot)
                return
            address = backend.raw_address_of(slot, session)
        elif isinstance(target, (ServerSlot, model.Server)):
            slot = target if isinstance(target, ServerSlot) else backend.balancer.slot(target.name)
            if not backend.balancer.available(slot):
                self._wait_for(session, slot)
                return
            address = backend.raw_address_of(slot, session)
        else:
            slot, address = None, _linux.sockaddr(tuple(target))
        self.dial(session, slot, address)

    def _wait_for(self, session: Session, slot: ServerSlot) -> None:
        """``slot`` was chosen for the session and is full: wait in its queue.  When that queue is at
        the server's ``maxqueue``, the connection goes to another server instead (the next one the
        balancer would choose), or to the backend's queue when every other is full too, as HAProxy's
        documentation of ``maxqueue`` says."""
        backend = session.backend
        assert backend is not None
        balancer = backend.balancer
        avoid = set(session.excluded or ())
        while slot.server.maxqueue and backend.queues.length(slot) >= slot.server.maxqueue:
            avoid.add(slot.index)
            other = balancer.pick(pick_key(session), avoid)
            if other is None or other.index in avoid:
                self.enqueue(session, None)
                return
            if balancer.available(other):
                self.dial(session, other, backend.raw_address_of(other, session))
                return
            slot = other
        self.enqueue(session, slot)

    # --- queues -------------------------------------------------------------------------------------

    def enqueue(self, session: Session, slot: Optional[ServerSlot]) -> None:
        """``session`` waits for a slot: in ``slot``'s queue, or in its backend's for None.  It waits at
        most ``timeout queue`` (``timeout connect`` when unset, as HAProxy), then is closed (sQ)."""
        backend = session.backend
        assert backend is not None
        # HAProxy's queue key: the priority class, then the arrival (in ms) shifted by the offset.
        arrival = int(self.state.loop.time() * 1000) + session.priority_offset
        pending = backend.queues.add(session, slot, (session.priority_class, arrival))
        timeouts = backend.model.timeouts
        timeout = timeouts.queue if timeouts.queue is not None else timeouts.connect
        if timeout:
            pending.timer = self.state.loop.call_later(timeout, self._queue_expired, backend, pending)
        # Queued connections raise the backend's load, and with it dynamic limits (minconn/fullconn).
        self.serve_queues(backend)

    def serve_queues(self, backend: BackendRuntime, slot: Optional[ServerSlot] = None) -> None:
        """Give free server slots to queued connections, oldest first: ``slot``'s (one of its
        connections ended), or every server's (None: servers changed, or the queues grew)."""
        if backend.serving:  # a dial below ended at once and freed a slot: one more round
            backend.serve_again = True
            return
        backend.serving = True
        queues = backend.queues
        try:
            while queues.waiting:
                backend.serve_again = False
                for candidate in ((slot,) if slot is not None else backend.balancer.slots):
                    while (pending := queues.next_for(candidate)) is not None:
                        self._leave_queue(backend, pending)
                        session = pending.item
                        self.dial(session, candidate, backend.raw_address_of(candidate, session))
                if not backend.serve_again:
                    break
                slot = None
        finally:
            backend.serving = False

    def _leave_queue(self, backend: BackendRuntime, pending: Pending) -> None:
        backend.queues.remove(pending)
        if pending.timer is not None:
            pending.timer.cancel()
            pending.timer = None

    def _queue_expired(self, backend: BackendRuntime, pending: Pending) -> None:
        pending.timer = None
        if not pending.waiting:
            return
        backend.queues.remove(pending, expired=True)
        self.fail(pending.item, QueueTimeout(
            "queue-timeout", f"no slot on backend '{backend.name}' within timeout queue"))

    def servers_changed(self, backend: BackendRuntime) -> None:
        """A server's state or weight changed.  With ``option redispatch``, connections queued for a
        server that is no longer usable are balanced again (HAProxy's pendconn_redistribute());
        without, they wait for it.  Servers that became usable take from the backend's queue."""
        queues = backend.queues
        if not queues.waiting or self.state.stopping:
            return
        if backend.model.redispatch:
            for slot in backend.balancer.slots:
                if slot.queued and not slot.usable:
                    for pending in queues.take_all(slot):
                        self._leave_queue(backend, pending)
                        self.choose_and_dial(pending.item)
        self.serve_queues(backend)

    def drop_queued(self) -> None:
        """Stopping: every connection still waiting for a server is closed."""
        for backend in self.state.backends.values():
            for pending in list(backend.queues):
                self._leave_queue(backend, pending)
                pending.item.close()

    # --- dialing and pairing ------------------------------------------------------------------------

    def dial(self, session: Session, slot: Optional[ServerSlot], address: bytes) -> None:
        """Start a non-blocking connect to ``address`` (a raw sockaddr) and hand the pair over."""
        backend = session.backend
        assert backend is not None
        session.slot = slot
        if slot is not None:
            backend.balancer.connection_started(slot)
            if session.stick_pending:
                backend.persistence.store(session.stick_pending, slot)  # type: ignore[union-attr]
        try:
            dialer = backend.servers[slot.index].dialer if slot is not None else backend.dialer
            server_fd, in_progress = dialer.dial(address)
        except OSError as exc:  # refused at once, or out of descriptors: this connection's failure only
            self.connect_failed(session, exc.errno or errno.EINVAL)
            return
        session.server_address = address
        if session.frontend.log_reads(logformat.BACKEND_ADDRESS):
            session.backend_address = _linux.sockname(server_fd)  # bound by connect() already
        prefix = None
        if slot is not None and (slot.server.send_proxy or slot.server.send_proxy_v2):
            prefix = proxy_header(session, v2=slot.server.send_proxy_v2)
        server_tls = backend.servers[slot.index].tls if slot is not None else None
        if server_tls is not None or session.tls is not None:
            tls = PairTls(session.tls, server_tls.endpoint(conn_info(session)) if server_tls else None)
            self.pair(session, server_fd, connecting=in_progress, prefix=prefix, tls=tls)
            return
        self.pair(session, server_fd, connecting=in_progress, prefix=prefix)

    def timeouts(self, frontend: FrontendRuntime, backend: BackendRuntime) -> PairTimeouts:
        key = (frontend.name, backend.name)
        found = self._timeouts.get(key)
        if found is None:
            found = self._timeouts[key] = PairTimeouts.for_route(frontend.model, backend.model)
        return found

    def pair(self, session: Session, server_fd: int, *, connecting: bool,
             prefix: Optional[bytes] = None, tls: Optional[PairTls] = None) -> None:
        """Hand a client and its upstream (connected, or connecting) to the pump (``tls``: to its TLS
        relay, see ``tlsrelay.WithTls``)."""
        backend = session.backend
        assert backend is not None
        tag = self._next_tag
        self._next_tag += 1
        slot = session.slot
        server_block = backend.blocks[slot.index] if slot is not None else -1
        self.pairs[tag] = session
        timeouts = self.timeouts(session.frontend, backend)
        if session.frontend.log_reads(logformat.FRONTEND_ADDRESS + (logformat.Alias.SAMPLE,)):
            session.sockname  # noqa: B018 -- read while the client is open: the line reads it at the end
        if session.variables is not None:  # the server's side begins: the request's variables are gone
            session.variables.response_started()
        client_fd = session.lent_fd = session.fd  # the pump's now, until it gives it back
        session.fd = -1
        extra = {"tls": tls} if tls is not None else {}
        try:
            self.state.pump.add_pair(
                client_fd, server_fd, client_timeout=timeouts.client, server_timeout=timeouts.server,
                client_fin_timeout=timeouts.client_fin, server_fin_timeout=timeouts.server_fin,
                frontend_block=session.frontend.block, server_block=server_block, tag=tag,
                connecting=connecting, connect_timeout=timeouts.connect, prefix=prefix,
                backend_block=backend.block, waited=time.monotonic() - session.started, **extra)
        except Exception:
            self.pairs.pop(tag, None)
            session.lent_fd = -1
            os.close(client_fd)
            os.close(server_fd)
            if slot is not None:
                backend.balancer.connection_ended(slot)
                self.state.loop.call_soon(self.serve_queues, backend, slot)
            session.finished()
            raise

    def pair_connect_failed(self, tag: int, error: int, client_fd: int) -> None:
        """The pump's report on one of Python's pairs: its connect failed, and the client descriptor
        (``client_fd``, the one lent) is Python's again."""
        session = self.pairs.pop(tag, None)
        if session is None:
            return
        session.fd, session.lent_fd = client_fd, -1
        if self.state.stopping:
            session.close()
        else:
            self.connect_failed(session, error)

    def pair_ended(self, tag: int, reason: int, bytes_in: int, bytes_out: int) -> None:
        """The pump's report on one of Python's pairs: it ended."""
        session = self.pairs.pop(tag, None)
        if session is None:
            return
        self.ended_by[EndReason(reason)] += 1
        if session.tracker is not None:
            session.tracker.ended(bytes_in, bytes_out)
        backend, slot = session.backend, session.slot
        if slot is not None and backend is not None:
            backend.balancer.connection_ended(slot)
            if backend.balancer.queued:
                self.serve_queues(backend, slot)
        fe = session.frontend.model
        if fe.log and fe.tcplog and not (fe.dontlognull and bytes_in == 0):
            self.log_session(session, tcplog.TERMINATION[EndReason(reason)], bytes_in, bytes_out)
        session.finished()

    # --- pairs that move between workers (a reload) ------------------------------------------------

    def pair_moved(self, tag: int) -> Optional[Session]:
        """One of Python's pairs left the pump for another worker (``Pump.detach``): its books close
        as at an end, without a log line (the worker it went to writes it); its session, or None."""
        session = self.pairs.pop(tag, None)
        if session is None:
            return None
        session.lent_fd = -1
        backend, slot = session.backend, session.slot
        if slot is not None and backend is not None:
            backend.balancer.connection_ended(slot)
        session.finished()
        return session

    def adopt(self, session: Session, pair: DetachedPair) -> int:
        """A pair another worker detached, for ``session`` (its frontend, backend and server those of
        this worker, its client counted as open): in the pump under a tag of ours, ended as ours."""
        backend, slot = session.backend, session.slot
        tag = self._next_tag
        self._next_tag += 1
        server_block = backend.blocks[slot.index] if backend is not None and slot is not None else -1
        if backend is not None and slot is not None:
            backend.balancer.connection_started(slot, new=False)
        self.pairs[tag] = session
        session.lent_fd = pair.client_fd
        try:
            self.state.pump.adopt(pair._replace(
                frontend_block=session.frontend.block, server_block=server_block,
                backend_block=backend.block if backend is not None else -1), tag=tag)
        except Exception:
            self.pairs.pop(tag, None)
            session.lent_fd = -1
            os.close(pair.client_fd)
            os.close(pair.server_fd)
            if backend is not None and slot is not None:
                backend.balancer.connection_ended(slot)
            session.finished()
            raise
        return tag

    # --- failures -----------------------------------------------------------------------------------

    def connect_failed(self, session: Session, error: int) -> None:
        """The connect to the session's server failed: retry, redispatch or give up, as HAProxy does
        (``retries`` attempts more; with ``option redispatch`` the last one goes to another server)."""
        backend = session.backend
        assert backend is not None
        slot = session.slot
        if slot is not None:
            backend.balancer.connection_ended(slot)
            block = backend.blocks[slot.index]
            self.state.pump.add_counter(block, Counter.CONNECT_ERRORS, 1)
            if slot.server.observe and not self.state.stopping:
                self.observe_error(block)
        session.attempt += 1
        retries = backend.model.retries
        if session.attempt > retries or session.fd < 0 or not backend.model.retry_on_conn_failure:
            kind = CONNECT_ERROR_KIND.get(error, "unreachable")
            self.fail(session, UpstreamConnectError(kind, f"connect failed: {os.strerror(error)}"))
        elif backend.model.redispatch and session.attempt == retries and slot is not None:
            session.excluded = {slot.index}
            self.choose_and_dial(session)
        elif slot is not None:
            self.dial(session, slot, backend.raw_address_of(slot, session))
        else:
            self.choose_and_dial(session)
        if slot is not None and backend.balancer.queued:
            self.serve_queues(backend, slot)  # the slot this session had may be free now

    def fail(self, session: Session, exc: ProxyError) -> None:
        """No upstream: count it, log it, and let the error handler answer the client."""
        frontend = session.frontend
        self.state.pump.add_counter(frontend.block, Counter.CONNECT_ERRORS, 1)
        if frontend.model.log and frontend.model.tcplog:
            termination = tcplog.QUEUE_TIMEOUT if isinstance(exc, QueueTimeout) else tcplog.CONNECT_FAILED
            self.log_session(session, termination, 0, 0, connected=False)
        if self.error_handler is None or session.fd < 0:
            session.close()
            return
        sock = socket.socket(fileno=session.fd)
        session.fd = -1
        binds = frontend.model.binds
        conn = Connection(sock, frontend.model, binds[0] if binds else None,  # type: ignore[arg-type]
                          session.peername, session._sockname, session.finished)
        conn.context.update(session.context)
        self.state.background(asyncio.ensure_future(self._run_error_handler(conn, exc)))

    async def _run_error_handler(self, conn: Connection, exc: Exception) -> None:
        try:
            result = self.error_handler(conn, exc)  # type: ignore[misc]
            if asyncio.iscoroutine(result):
                await result
        except Exception:
            log.exception("error handler failed")
        finally:
            conn.close()
            conn.finished()

    # --- the log line -------------------------------------------------------------------------------

    def log_session(self, session: Session, termination: str, bytes_in: int, bytes_out: int, *,
                    connected: bool = True) -> None:
        """The log line of a Python session (its frontend's log-format, tcplog's by default).  The
        connect completes in the pump, unseen by Python: %Tc is reported as 0 once the pair was
        established (HAProxy gives milliseconds)."""
        frontend = session.frontend
        assert frontend.log_format is not None
        elapsed = time.monotonic() - session.started
        backend, slot = session.backend, session.slot
        server = session.server_address if connected else None
        self.state.log_count += 1
        record = logformat.LogRecord(
            client=session.peername, frontend_address=session._sockname or None,
            backend_address=session.backend_address if connected else None,
            server_address=_linux.peer_address(server) if server else None,
            accepted=time.time() - elapsed, frontend=frontend.name,
            backend=backend.name if backend else frontend.name, server=slot.name if slot else None,
            ssl=session.tls_facts is not None, tls=session.tls_facts,
            bytes_in=bytes_in, bytes_out=bytes_out, connect_ms=0 if connected and slot is not None else -1,
            total_ms=int(elapsed * 1000), termination=termination, active=self.state.current,
            frontend_current=frontend.current,
            backend_current=sum(s.current for s in backend.balancer.slots) if backend is not None else 0,
            server_current=slot.current if slot is not None else 0, retries=max(session.attempt - 1, 0),
            pid=self.state.pid, hostname=self.state.hostname, counter=session.number,
            log_count=self.state.log_count - 1,
            connection=session.info or _connection(session, self.state.variables),
            request_captures=_captures(session.captures, frontend.model.request_captures),
            response_captures=len(frontend.model.response_captures))
        if frontend.unique_id is not None:
            record.unique_id = frontend.unique_id.render(record)
        frontend.traffic_log(frontend.log_format.render(record), record)


def _ruled_server(backend: BackendRuntime, session: Session) -> Optional[ServerSlot]:
    """The server of the first ``use-server`` rule that matches, if it is not down (or ``option
    persist``), as HAProxy's server_rules; None lets persistence and the balancer choose."""
    info = conn_info(session)
    for name, matches in backend.server_rules:
        if matches(info):
            slot = backend.balancer.slot(name)
            if slot.state not in STOPPED or backend.model.persist:
                return slot
            return None
    return None


def rdp_persisted(backend: BackendRuntime, session: Session) -> Optional[ServerSlot]:
    """``persist rdp-cookie``: the server the client's RDP cookie names, if it may take the client (up,
    or any state with ``option persist``), as HAProxy's tcp_persist_rdp_cookie.  A session broker writes
    the cookie ``msts=<IPv4 address>.<port>.0000``, both numbers as the little-endian integers of the
    address's bytes in network order; servers are matched by the address they are written with."""
    info = session.info
    name = backend.model.persist_rdp_cookie
    assert name is not None
    value, _ = payload.rdp_cookie(info.request if info is not None else b"", name)
    parts = value.split(".") if value else []
    if len(parts) < 2 or not parts[0].isdigit() or not parts[1].isdigit() or int(parts[0]) >= 1 << 32:
        return None
    address = str(ipaddress.IPv4Address(int(parts[0]).to_bytes(4, "little")))
    swapped = int(parts[1]) & 0xFFFF
    port = ((swapped & 0xFF) << 8) | (swapped >> 8)
    for slot in backend.balancer.slots:
        if slot.server.host == address and slot.server.port == port and (
                slot.state not in STOPPED or backend.model.persist):
            return slot
    return None


def _captures(captured: Optional[list], slots: tuple[int, ...]) -> Optional[list]:
    """What %hr writes: the slots as rules filled them, None for a frontend without slots."""
    if not slots:
        return None
    return captured if captured is not None else [None] * len(slots)


def _connection(session: Session, variables: ProcessVariables) -> ConnInfo:
    """What log-format samples read of a session no rule looked at (the process's variables)."""
    src, dst = session.peername, session._sockname
    return ConnInfo(src=src[0], src_port=src[1], dst=dst[0] if dst else "", dst_port=dst[1] if dst else 0,
                    variables=session.variables or Variables(variables),
                    tls=session.tls_facts)
