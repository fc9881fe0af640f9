"""The fleet: backends that take their servers from etcd, so that every instance of a fleet serves the
same servers, learns of each change at the same moment, and, hashing on server names, routes every key
alike without talking to the others.

Where it is declared (README, "A fleet that agrees"): on the command line, ``fastproxy run -f
haproxy.cfg --etcd HOST:PORT --fleet BACKEND``, never in the HAProxy file, which stays one that
``haproxy -c`` accepts.  The keys, under a root prefix (``--etcd-prefix``, ``/fastproxy/`` unset):

- ``<root>backends/<backend>/<server>``: one server, ``Member`` as JSON
  (``{"address": "10.0.0.1", "port": 80, "weight": 1, "state": "ready"|"drain"|"maint"}``), written by
  deployment tooling or by ``fastproxy fleet put|drain|remove``;
- ``<root>instances/<instance>``: a running instance (version, pid, backends, hash-key), under a lease
  that it keeps alive: ``fastproxy fleet instances`` lists the live ones.

``--hash-key id|addr|addr-port`` (HAProxy 3.0's server keyword, which 2.6's ``haproxy -c`` refuses, so
given here rather than in the file) sets what the fleet backends' ring positions derive from: with
``addr-port`` a server that comes back under another name or id, at the same address, takes the same
entries again, whatever order each instance added its servers in.

``Fleet`` reads the servers once (a range read gives their revision), then watches the prefix (etcd v3
watch, resumed from the revision after the last one seen when the connection comes back; a full read
again if that revision was compacted).  Changes are gathered for ``batch_delay`` and applied together,
inside one ``Balancer.batch`` per backend (a burst of a thousand changes rebuilds each table once or
a few times, not a thousand times), each through the runtime API's own commands (``add server``, ``set
server ... addr|weight|state``, ``shutdown sessions server`` and ``del server``), so that a change from
etcd and one from the socket are the same change.  Only a removed server's connections are cut.
While etcd cannot be reached the instance serves the last membership it knew, logs the loss once and
the recovery once, and catches up from where it was.  A partition that drops packets without closing
the connection would leave a watch waiting for ever: the watch's own connection is probed every
``probe_interval`` (a read with the client's timeout), and given up, to be opened again, when the probe
fails.  The first read is applied at once (``synced`` is set then), so that a master's new worker
(``run -W``) says it is ready only once it serves the fleet's membership.

The client is ``aetcd`` (asyncio over etcd's gRPC API: watches and leases on the engine's own loop,
no thread; it runs with current protobuf, where the old ``etcd3`` package does not).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import time
from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Optional

from . import __version__
from .balance import HASH_KEYS
from .errors import FastproxyError
from .runtime_api import ADMIN, CliSession, CommandError
from .runtime_commands import COMMANDS

__all__ = ["DEFAULT_ROOT", "Fleet", "FleetError", "FleetSettings", "Member", "backend_prefix", "get_member",
           "instances_prefix", "list_instances", "list_members", "parse_endpoint", "put_member",
           "remove_member"]

log = logging.getLogger("fastproxy")

DEFAULT_ROOT = "/fastproxy/"
SYNC_TIMEOUT = 10.0  # seconds a master's new worker waits for the fleet's first read before giving up
STATES = ("ready", "drain", "maint")  # as ``set server ... state`` takes them


class FleetError(FastproxyError):
    """A fleet that cannot start (a backend that is not there or cannot take servers at run time, a
    bad endpoint), or a member that cannot be read."""


@dataclass(frozen=True)
class Member:
    """One server of a fleet backend, as its etcd key holds it."""

    name: str
    address: str
    port: int
    weight: int = 1
    state: str = "ready"

    def __post_init__(self) -> None:
        if not self.name or "/" in self.name or any(c.isspace() for c in self.name):
            raise FleetError(f"a server name is a word without '/', got {self.name!r}")
        try:
            socket.inet_pton(socket.AF_INET6 if ":" in self.address else socket.AF_INET, self.address)
        except (OSError, TypeError):
            raise FleetError(f"server {self.name!r}: the address is an IPv4 or IPv6 address, got "
                             f"{self.address!r}") from None
        if not isinstance(self.port, int) or isinstance(self.port, bool) or not 1 <= self.port <= 65535:
            raise FleetError(f"server {self.name!r}: the port is an integer from 1 to 65535, got "
                             f"{self.port!r}")
        if not isinstance(self.weight, int) or isinstance(self.weight, bool) or not 0 <= self.weight <= 256:
            raise FleetError(f"server {self.name!r}: the weight is an integer from 0 to 256, got "
                             f"{self.weight!r}")
        if self.state not in STATES:
            raise FleetError(f"server {self.name!r}: the state is one of {', '.join(STATES)}, got "
                             f"{self.state!r}")

    def to_json(self) -> bytes:
        return json.dumps({"address": self.address, "port": self.port, "weight": self.weight,
                           "state": self.state}, sort_keys=True).encode()

    @classmethod
    def from_json(cls, name: str, data: bytes) -> "Member":
        try:
            fields = json.loads(data)
        except (ValueError, UnicodeDecodeError) as exc:
            raise FleetError(f"server {name!r}: not JSON ({exc})") from None
        if not isinstance(fields, dict):
            raise FleetError(f"server {name!r}: a JSON object is expected")
        unknown = set(fields) - {"address", "port", "weight", "state"}
        if unknown:
            raise FleetError(f"server {name!r}: unknown fields {', '.join(sorted(unknown))}")
        if "address" not in fields or "port" not in fields:
            raise FleetError(f"server {name!r}: 'address' and 'port' are required")
        return cls(name, fields["address"], fields["port"], fields.get("weight", 1),
                   fields.get("state", "ready"))


def backend_prefix(root: str, backend: str) -> str:
    return f"{root}backends/{backend}/"


def instances_prefix(root: str) -> str:
    return f"{root}instances/"


def parse_endpoint(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (``http://`` allowed, as etcdctl's endpoints are written), port 2379 unset."""
    rest = text.split("://", 1)[-1].rstrip("/")
    host, _, port = rest.rpartition(":") if rest.count(":") == 1 or rest.startswith("[") else (rest, "", "")
    host = host.strip("[]") or rest
    if not port:
        return host, 2379
    if not port.isdigit() or not 1 <= int(port) <= 65535:
        raise FleetError(f"an etcd endpoint is HOST:PORT, got {text!r}")
    return host, int(port)


@dataclass(frozen=True)
class FleetSettings:
    endpoints: tuple[tuple[str, int], ...]
    backends: tuple[str, ...]
    root: str = DEFAULT_ROOT
    instance: str = field(default_factory=lambda: f"{socket.gethostname()}-{os.getpid()}")
    hash_key: Optional[str] = None  # HAProxy 3.0's hash-key for the fleet backends (None: names)
    lease_ttl: int = 10  # seconds an instance stays listed after it stopped renewing
    batch_delay: float = 0.05  # changes arriving within this are applied together
    retry_delay: float = 0.5  # between two attempts to reach etcd
    probe_interval: float = 1.0  # between two reads that check the watch's connection still carries
    timeout: float = 2.0  # of each call to etcd (a probe that takes longer fails)

    def __post_init__(self) -> None:
        if self.hash_key is not None and self.hash_key not in HASH_KEYS:
            raise FleetError(f"--hash-key is one of {', '.join(HASH_KEYS)}, got {self.hash_key!r}")


def _client(endpoint: tuple[str, int], timeout: float = 2.0) -> Any:
    try:
        import aetcd  # type: ignore[import-untyped]
    except ImportError:
        raise FleetError("the fleet needs the 'aetcd' package (pip install 'fastproxy[fleet]')") from None
    return aetcd.Client(host=endpoint[0], port=endpoint[1], timeout=timeout)


class Fleet:
    """Keeps the fleet backends of one running instance in step with etcd (see the module's docstring).

    ``operations`` is the engine's ``operations.Operations``: the fleet changes servers only through
    the runtime API's commands run on it."""

    def __init__(self, operations: Any, settings: FleetSettings) -> None:
        self.operations = operations
        self.settings = settings
        self.session = CliSession(COMMANDS, ADMIN, operations)
        self.view: dict[tuple[str, str], Member] = {}  # what etcd said last, applied or being applied
        self.pending: dict[tuple[str, str], Optional[Member]] = {}  # changes not applied yet
        self.to_delete: set[tuple[str, str]] = set()  # removed servers whose connections are ending
        self.revision = 0  # the last etcd revision seen
        self.connected = False
        self.lost = False  # logged as lost, not yet as recovered
        self.batches = 0  # batches applied
        self.changes = 0  # changes applied
        self.synced = asyncio.Event()  # the first read is applied
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._endpoint = 0
        self._prefix = f"{settings.root}backends/".encode()
        for name in settings.backends:
            proxy = operations.backend_proxy(name)
            if proxy is None or proxy.backend is None:
                raise FleetError(f"--fleet {name}: no such backend")
            balance = proxy.backend.model.balance
            if balance.algorithm == "static-rr" or (balance.algorithm in ("source", "hash")
                                                    and balance.hash_type == "map-based"):
                raise FleetError(f"--fleet {name}: the backend's servers change at run time, which its "
                                 f"static algorithm cannot do (use a dynamic one, or hash-type "
                                 f"consistent|maglev)")
        for name in settings.backends:
            operations.backend_proxy(name).backend.balancer.set_hash_key(settings.hash_key)

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._watch()), loop.create_task(self._apply()),
                       loop.create_task(self._register())]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            try:
                await task
            except (asyncio.CancelledError, Exception):
                pass
        self._tasks = []

    # --- what the runtime API shows (``show fleet``) ---

    def status(self) -> dict[str, Any]:
        return {"instance": self.settings.instance, "etcd": "connected" if self.connected else "unreachable",
                "revision": self.revision, "batches": self.batches, "changes": self.changes,
                "pending": len(self.pending) + len(self.to_delete)}

    # --- reading etcd ---

    @contextlib.asynccontextmanager
    async def _session(self) -> AsyncIterator[Any]:
        """A client of the next endpoint, closed within the timeout (a partitioned connection would
        not answer a graceful close)."""
        endpoints = self.settings.endpoints
        endpoint = endpoints[self._endpoint % len(endpoints)]
        self._endpoint += 1
        client = _client(endpoint, self.settings.timeout)
        await client.connect()
        try:
            yield client
        finally:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(client.close(), self.settings.timeout)

    async def _watch(self) -> None:
        while True:
            try:
                async with self._session() as client:
                    if not self.revision:
                        await self._read_all(client)
                        if not self.synced.is_set():  # the first membership: served at once
                            self.apply_pending()
                            self.synced.set()
                    await self._follow(client)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - etcd unreachable, whatever the client raised
                self._disconnected(exc)
            await asyncio.sleep(self.settings.retry_delay)

    async def _read_all(self, client: Any) -> None:
        """Every member now, and the changes from the view this instance had (all of it at start)."""
        result = await client.get_prefix(self._prefix)
        seen: dict[tuple[str, str], Member] = {}
        for kv in result:
            found = self._member(kv.key, kv.value)
            if found is not None:
                seen[found[0]] = found[1]
        for key in set(self.view) - set(seen):
            self._changed(key, None)
        for key, member in seen.items():
            if self.view.get(key) != member:
                self._changed(key, member)
        self.revision = result.header.revision
        self._connected()

    async def _follow(self, client: Any) -> None:
        """The changes from the revision after the last one seen, until the connection fails (or its
        probe does: a partition may drop packets without closing anything)."""
        import aetcd  # type: ignore[import-untyped]

        try:
            watch = await client.watch_prefix(self._prefix, start_revision=self.revision + 1)
        except aetcd.exceptions.RevisionCompactedError:
            self.revision = 0  # what happened since is gone: read everything again
            return
        self._connected()
        events = asyncio.ensure_future(self._events(watch))
        probe = asyncio.ensure_future(self._probe(client))
        try:
            done, _ = await asyncio.wait((events, probe), return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                task.result()  # the error that ended it, if one did
        finally:
            for task in (events, probe):
                task.cancel()
            try:
                await asyncio.wait_for(watch.cancel(), self.settings.timeout)
            except Exception:  # noqa: BLE001 - the connection is gone already
                pass

    async def _events(self, watch: Any) -> None:
        import aetcd  # type: ignore[import-untyped]

        try:
            async for event in watch:
                key = event.kv.key
                self.revision = max(self.revision, event.kv.mod_revision)
                if event.kind == aetcd.rtypes.EventKind.DELETE:
                    parsed = self._key(key)
                    if parsed is not None:
                        self._changed(parsed, None)
                    continue
                member = self._member(key, event.kv.value)
                if member is not None:
                    self._changed(*member)
        except aetcd.exceptions.RevisionCompactedError:
            self.revision = 0  # read everything again, on a new connection

    async def _probe(self, client: Any) -> None:
        """Returns never; raises once a read on the watch's connection fails or takes too long."""
        key = f"{instances_prefix(self.settings.root)}{self.settings.instance}".encode()
        while True:
            await asyncio.sleep(self.settings.probe_interval)
            await asyncio.wait_for(client.get(key), self.settings.timeout)

    def _key(self, key: bytes) -> Optional[tuple[str, str]]:
        """``(backend, server)`` of a member key of a fleet backend, else None."""
        text = key[len(self._prefix):].decode("utf-8", "replace")
        backend, _, name = text.partition("/")
        if backend not in self.settings.backends or not name:
            return None
        return backend, name

    def _member(self, key: bytes, value: bytes) -> Optional[tuple[tuple[str, str], Member]]:
        parsed = self._key(key)
        if parsed is None:
            return None
        try:
            return parsed, Member.from_json(parsed[1], value)
        except FleetError as exc:
            # Bad input loses nothing: the server keeps what it had, the key is reported.
            log.warning("fleet: %s: %s (ignored, the server keeps its last good value)",
                        key.decode("utf-8", "replace"), exc)
            return None

    def _changed(self, key: tuple[str, str], member: Optional[Member]) -> None:
        if member is None:
            self.view.pop(key, None)
        else:
            self.view[key] = member
        self.pending[key] = member
        self._wake.set()

    def _connected(self) -> None:
        if not self.connected:
            self.connected = True
            if self.lost:
                log.warning("fleet: %s: etcd reachable again at revision %d, catching up",
                            self.settings.instance, self.revision)
                self.lost = False

    def _disconnected(self, exc: BaseException) -> None:
        self.connected = False
        if not self.lost:
            log.warning("fleet: %s: etcd unreachable (%s): serving the last known membership (revision %d)",
                        self.settings.instance, type(exc).__name__ if not str(exc) else exc, self.revision)
            self.lost = True

    # --- applying ---

    async def _apply(self) -> None:
        while True:
            await self._wake.wait()
            await asyncio.sleep(self.settings.batch_delay)  # a burst: gather it
            self._wake.clear()
            self.apply_pending()
            if self.to_delete:  # connections of removed servers still ending: look again soon
                loop = asyncio.get_running_loop()
                loop.call_later(0.1, self._wake.set)

    def apply_pending(self) -> None:
        """Apply the gathered changes, one balancer batch per backend."""
        pending, self.pending = self.pending, {}
        for key in self.to_delete:
            pending.setdefault(key, None)
        self.to_delete = set()
        by_backend: dict[str, list[tuple[str, Optional[Member]]]] = {}
        for (backend, name), member in pending.items():
            by_backend.setdefault(backend, []).append((name, member))
        for backend_name, changes in by_backend.items():
            backend = self.operations.backend_proxy(backend_name).backend
            with backend.balancer.batch():
                for name, member in changes:
                    self._apply_one(backend, name, member)
            self.changes += len(changes)
        if by_backend:
            self.batches += 1

    def _run(self, *words: str) -> Optional[str]:
        """One runtime API command, as an admin on the socket would type it; its error, or None."""
        try:
            self.session.dispatch(list(words))
        except CommandError as exc:
            return str(exc).strip()
        return None

    def _apply_one(self, backend: Any, name: str, member: Optional[Member]) -> None:
        path = f"{backend.name}/{name}"
        server = next((s for s in backend.live_servers if s.slot.name == name), None)
        if member is None:
            if server is None or not server.dynamic:
                return  # gone already, or the file's own: the file owns it
            self._run("set", "server", path, "state", "maint")
            self._run("shutdown", "sessions", "server", path)
            if self._run("del", "server", path) is not None:
                self.to_delete.add((backend.name, name))  # its connections are ending: again soon
            return
        errors = []
        if server is None:
            errors.append(self._run("add", "server", path, _address(member), "weight", str(member.weight)))
        else:
            if (server.address[0], server.address[1]) != (member.address, member.port):
                message = self._run("set", "server", path, "addr", member.address, "port", str(member.port))
                errors.append(message)
            if server.slot.user_weight != member.weight:
                errors.append(self._run("set", "server", path, "weight", str(member.weight)))
        errors.append(self._run("set", "server", path, "state", member.state))
        for error in errors:
            if error is not None:
                log.warning("fleet: %s: %s", path, error)

    # --- this instance, listed under a lease ---

    async def _register(self) -> None:
        key = f"{instances_prefix(self.settings.root)}{self.settings.instance}".encode()
        value = json.dumps({"version": __version__, "pid": os.getpid(), "started": time.time(),
                            "backends": list(self.settings.backends),
                            "hash_key": self.settings.hash_key}).encode()
        ttl = self.settings.lease_ttl
        while True:
            try:
                async with self._session() as client:
                    lease = await client.lease(ttl)
                    try:
                        await client.put(key, value, lease=lease)
                        while True:
                            await asyncio.sleep(ttl / 3)
                            response = await client.refresh_lease(lease.id)
                            if not getattr(response, "TTL", 1):  # expired while etcd was away: again
                                break
                    except asyncio.CancelledError:  # stopping: off the list now, not in ``ttl``
                        with contextlib.suppress(Exception):
                            await asyncio.wait_for(client.revoke_lease(lease.id), self.settings.timeout)
                        raise
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - etcd unreachable: the watch says it (once)
                log.debug("fleet: registering %s: %s", self.settings.instance, exc)
            await asyncio.sleep(self.settings.retry_delay)


def _address(member: Member) -> str:
    return f"[{member.address}]:{member.port}" if ":" in member.address else f"{member.address}:{member.port}"


# --- the operators' commands (``fastproxy fleet ...``) ---------------------------------------------

async def list_members(endpoint: tuple[str, int], root: str, backend: str) -> list[Member]:
    async with _client(endpoint) as client:
        prefix = backend_prefix(root, backend).encode()
        members = []
        for kv in await client.get_prefix(prefix):
            try:
                members.append(Member.from_json(kv.key[len(prefix):].decode(), kv.value))
            except FleetError as exc:
                log.warning("fleet: %s: %s", kv.key.decode("utf-8", "replace"), exc)
        return sorted(members, key=lambda member: member.name)


async def get_member(endpoint: tuple[str, int], root: str, backend: str, name: str) -> Optional[Member]:
    async with _client(endpoint) as client:
        kv = await client.get(f"{backend_prefix(root, backend)}{name}".encode())
        return None if kv is None else Member.from_json(name, kv.value)


async def put_member(endpoint: tuple[str, int], root: str, backend: str, member: Member) -> None:
    async with _client(endpoint) as client:
        await client.put(f"{backend_prefix(root, backend)}{member.name}".encode(), member.to_json())


async def remove_member(endpoint: tuple[str, int], root: str, backend: str, name: str) -> bool:
    async with _client(endpoint) as client:
        result = await client.delete(f"{backend_prefix(root, backend)}{name}".encode())
        return bool(getattr(result, "deleted", 1))


async def list_instances(endpoint: tuple[str, int], root: str) -> list[tuple[str, dict[str, Any]]]:
    async with _client(endpoint) as client:
        prefix = instances_prefix(root).encode()
        found = []
        for kv in await client.get_prefix(prefix):
            try:
                found.append((kv.key[len(prefix):].decode(), json.loads(kv.value)))
            except ValueError:
                continue
        return sorted(found)
