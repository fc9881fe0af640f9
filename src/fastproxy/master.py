"""Master-worker mode (``fastproxy run -W``, ``master-worker`` in ``global``), as HAProxy 2.6's.

The master reads the configuration, binds its listeners (``handover.ListenerPool``) and starts one
worker: a ``fastproxy run`` process of its own that inherits the listening sockets and serves the
traffic.  The master carries no traffic and restarts nothing on its own.

- SIGUSR2 or SIGHUP: reload.  The files are read again; if they are valid, a new worker starts on the
  same listening sockets (plus any new address), and once it is ready the former worker is told to
  stop and hand its established pairs over (``HANDOVER`` on its link, with one end of a UNIX socket
  pair whose other end the new worker got at its start: ``handover.PairSender``/``PairReceiver``).
  It stops accepting, sends every pair the new configuration has a route for, and exits once the
  pairs left (routes removed, ``hard-stop-after`` cuts them) have ended.  A worker the link cannot
  reach gets SIGUSR1, the soft stop without hand-over.  A broken configuration, or a new worker that
  cannot start, leaves the running worker serving; the errors are logged with their ``file:line``
  and the master stays up.
- The spare worker (``spare.py``): once a worker serves, the master keeps the next reload's worker
  ahead, a process past its imports that waits on a link of its own; a reload gives it the new
  worker's arguments and descriptors, and it serves in a fraction of a second instead of the
  second a new interpreter takes.  Spares are forked from the zygote, a process past the same
  imports that the master starts beside its first worker, so the next spare is there milliseconds
  after a reload; without the zygote a spare starts afresh once the reload is done (and the former
  worker gone, or ``SPARE_AFTER``).  Without a ready spare (it was killed, or there are more
  descriptors than one message carries), the reload starts its worker afresh.  Spare and zygote
  stop with the master; ``show proc`` lists neither (HAProxy has none).
- SIGTERM, SIGINT, SIGUSR1: passed to every worker; the master exits once they all have, with the
  exit status of the current worker.  SIGTTOU and SIGTTIN (pause and resume the listeners): passed
  to every worker that serves.
- The current worker exiting on its own (a crash): the former ones are stopped too and the master
  exits with its status (HAProxy's ``exit-on-failure``).

Master and worker are joined by a UNIX socket pair (``--worker-link FD``): the worker writes
``READY`` on it once it listens, ``COUNTERS <totals>`` once it has stopped (the counters a reload
carries on, ``continued_counters``), and a worker whose master has gone (the link reads EOF)
soft-stops.  The master writes two messages, each with one descriptor attached (SCM_RIGHTS):
``HANDOVER`` (stop, and send the established pairs on this channel) and ``C`` (a connection of the
master CLI routed to this worker, ``master_cli.ask_worker``; a former worker still finishing answers
them too).  On a reload the new worker is prepared before it becomes the current one: the former
worker's servers added at run time added again, its server states and counters carried.
With ``NOTIFY_SOCKET`` set (systemd ``Type=notify``), the master sends ``READY=1``, ``RELOADING=1``
and ``STOPPING=1`` (``lifecycle.notify``).
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import subprocess
import shutil
import sys
import tempfile
import time
from typing import Any, Callable, Optional, Sequence

from . import continued_counters, lifecycle, server_state
from .config import model
from .errors import ConfigError
from .handover import ListenerPool
from .runtime_api import RuntimeApi
from .master_cli import ask_worker, master_cli
from .spare import ChildProcess, Order, Spare, Zygote
from . import __version__

log = logging.getLogger("fastproxy")

READY = b"READY\n"
HANDOVER = b"HANDOVER\n"  # master -> former worker, with the channel to the new worker attached
CLI_CONNECTION = b"C"  # master -> worker, with a connection of the master CLI attached
READY_TIMEOUT = 60.0  # seconds a new worker may take to listen before the reload is given up
SPARE_AFTER = 1.0  # seconds at most the next spare waits for the former worker's exit before it starts


class WorkerLink:
    """The worker's end of the socket pair to its master.  Besides EOF (the master has gone), the
    master sends on it the connections of its CLI routed to this worker (``@1 show stat``), one
    socket per message (SCM_RIGHTS), as HAProxy's master sends them on its ``sockpair@`` listener."""

    def __init__(self, fd: int, carried_state: Optional[str] = None) -> None:
        self.sock = socket.socket(fileno=fd)
        self.sock.setblocking(False)
        self.carried_state = carried_state  # the former worker's server states, saved by the master
        self.engine: Any = None
        self.serving: set[asyncio.Task] = set()
        self._told: Optional[asyncio.Future[Optional[socket.socket]]] = None

    def ready(self, engine: Any = None) -> None:
        """The worker serves ``engine``: the former worker's server states applied, the master
        CLI's connections reach its runtime API (from now until the worker exits, a former
        worker's too), and the master may tell it to stop."""
        self.engine = engine
        if self.carried_state is not None and engine is not None and engine.operations is not None:
            server_state.carry(engine.operations, self.carried_state)
        self._told = asyncio.get_running_loop().create_future()
        asyncio.get_running_loop().add_reader(self.sock.fileno(), self._readable)
        self.sock.send(READY)

    def stopped(self, engine: Any) -> None:
        """The worker has stopped: its final totals to the master, which hands the current worker
        what it counted since the reload (continued_counters)."""
        if engine is None or engine.operations is None:
            return
        totals = continued_counters.totals(engine.operations)
        message = b"COUNTERS " + continued_counters.encode(totals).encode()
        try:
            self.sock.setblocking(True)
            self.sock.sendall(message + b"\n")
        except OSError:
            pass

    async def stop_requested(self) -> Optional[socket.socket]:
        """Returns when the worker must stop: the channel to the new worker when the master asks
        for a hand-over (a reload), None when the master has exited (or closed the link)."""
        assert self._told is not None, "ready() first"
        return await asyncio.shield(self._told)

    def _readable(self) -> None:
        try:
            data, fds, _, _ = socket.recv_fds(self.sock, 64, 4)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data, fds = b"", []
        told = self._told
        assert told is not None
        # One message per recv: the kernel never joins two that carry descriptors.
        if data.startswith(HANDOVER) and fds:
            if not told.done():
                told.set_result(socket.socket(fileno=fds.pop(0)))
        elif data.startswith(CLI_CONNECTION):
            for fd in fds:  # the master CLI's connections routed here (master_cli.ask_worker)
                self._serve_master(socket.socket(fileno=fd))
            fds = []
        for fd in fds:
            os.close(fd)
        if not data:
            asyncio.get_running_loop().remove_reader(self.sock.fileno())
            if not told.done():
                told.set_result(None)

    def _serve_master(self, sock: socket.socket) -> None:
        api = self._runtime_api()
        if api is None:
            sock.close()
            return
        sock.setblocking(False)
        task = asyncio.get_running_loop().create_task(api.serve_master(sock))
        self.serving.add(task)
        task.add_done_callback(self.serving.discard)

    def _runtime_api(self) -> Any:
        """The engine's runtime API, or one of the link's own over the engine's operations when the
        configuration has no ``stats socket`` (the master's CLI reaches every worker)."""
        engine = self.engine
        if engine is None or engine.operations is None:
            return None
        if engine.runtime_api is None:
            from .runtime_api import RuntimeApi
            from .runtime_commands import COMMANDS

            engine.operations.start_sampling()  # rates and maxima, as the stats socket's would be
            engine.runtime_api = RuntimeApi(engine.config.global_, COMMANDS, engine.operations)
        return engine.runtime_api


class Worker:
    """A worker process as the master sees it."""

    def __init__(self, proc: ChildProcess, number: int, link: socket.socket) -> None:
        self.proc = proc
        self.pid = proc.pid
        self.number = number  # 1 for the first worker, +1 per reload (HAProxy's "reloads" count)
        self.link = link
        self.started = time.time()
        self.born_at = 0  # the master's reload count when it started (show proc: reloads survived)
        self.carried: Optional[continued_counters.Totals] = None  # its totals handed to the next one
        self.said: Optional[Callable[[Worker, bytes], None]] = None  # told each line it writes
        self.serving = False  # it has said READY
        self._heard = bytearray()
        self.exited: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._pidfd = os.pidfd_open(proc.pid)
        asyncio.get_running_loop().add_reader(self._pidfd, self._reap)

    def listen(self, said: Callable[[Worker, bytes], None]) -> None:
        """Once it serves: each line the worker writes on the link, to ``said``."""
        self.said = said
        asyncio.get_running_loop().add_reader(self.link.fileno(), self._hear)

    def _hear(self) -> None:
        while True:
            try:
                data = self.link.recv(65536)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                data = b""
            if not data:
                asyncio.get_running_loop().remove_reader(self.link.fileno())
                self.said = None
                return
            self._heard += data
            while b"\n" in self._heard:
                line, _, rest = bytes(self._heard).partition(b"\n")
                self._heard = bytearray(rest)
                if self.said is not None:
                    self.said(self, line)

    def _reap(self) -> None:
        status = self.proc.poll()
        if status is None:
            return
        loop = asyncio.get_running_loop()
        loop.remove_reader(self._pidfd)
        os.close(self._pidfd)
        if self.said is not None:
            self._hear()  # what it wrote before it exited
            if self.said is not None:
                loop.remove_reader(self.link.fileno())
        self.link.close()
        if not self.exited.done():
            self.exited.set_result(status)

    def hand_over(self, channel: socket.socket) -> bool:
        """Tell the worker to stop and send its established pairs on ``channel`` (a soft stop that
        moves them); False if the link would not take it."""
        if self.exited.done():
            return False
        try:
            return socket.send_fds(self.link, [HANDOVER], [channel.fileno()]) == len(HANDOVER)
        except OSError:
            return False

    def signal(self, signum: int) -> None:
        if not self.exited.done():
            try:
                os.kill(self.pid, signum)
            except ProcessLookupError:
                pass


def describe_status(status: int) -> str:
    """As HAProxy's master writes a worker's end: ``code 0 (Exit)``, ``code 143 (Terminated)``."""
    if status < 0:
        name = signal.strsignal(-status) or f"signal {-status}"
        return f"code {128 - status} ({name})"
    return f"code {status} (Exit)"


class Master:
    """Runs workers on the configuration read from ``files``, reloading on demand."""

    def __init__(self, files: Sequence[str], *, pidfile: Optional[str], grace: Optional[float],
                 quiet: bool, detach: bool = False, worker_args: Sequence[str] = (),
                 cli: Sequence[model.StatsSocket] = ()) -> None:
        self.files = list(files)
        self.worker_args = list(worker_args)  # given to every worker (``--fleet``: each runs the fleet)
        self.cli_sockets = list(cli)  # ``-S``: the master CLI (master_cli.py)
        self.cli: Optional[RuntimeApi] = None
        self.version = __version__
        self.started = time.time()
        self.reloads_done = 0  # reloads asked for, as show proc counts them
        self.reloads_failed = 0
        self._private: Optional[str] = None  # the master's own directory (the saved server states)
        self._tasks: set[asyncio.Task] = set()
        self.pidfile = pidfile
        self.grace = grace
        self.quiet = quiet
        self.detach = detach  # daemon mode: workers get no terminal
        self._output = subprocess.DEVNULL if detach else None  # the workers' stdout and stderr
        self.spare: Optional[Spare] = None  # the next reload's worker, started ahead (spare.py)
        self.zygote: Optional[Zygote] = None  # what forks the spares (spare.py)
        self._sparing: Optional[asyncio.Task] = None  # the next spare's start, once a reload is done
        self.pool = ListenerPool()
        self.current: Optional[Worker] = None
        self.workers: list[Worker] = []  # every live worker, the current one last
        self.reloads = 0
        self.stopping = False
        self._reloading: Optional[asyncio.Task] = None
        self._pending_reload = False
        self._changed = asyncio.Event()  # a worker was added: the supervisor waits for it too

    # --- lifecycle --------------------------------------------------------------------------------

    async def run(self, cfg: model.Config, ready: Optional[lifecycle.Ready] = None) -> int:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGUSR2, signal.SIGHUP):
            loop.add_signal_handler(signum, self.request_reload)
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1):
            loop.add_signal_handler(signum, self.stop, signum)
        for signum in (signal.SIGTTOU, signal.SIGTTIN):
            loop.add_signal_handler(signum, self.broadcast, signum)
        self._start_zygote()  # importing beside the first worker: the first reload may come soon
        try:
            worker = await self._start_worker(cfg)
        except OSError as exc:
            print(f"[ALERT] cannot start: {exc}", file=sys.stderr)
            self._stop_zygote()
            self.pool.close()
            return 1
        if worker is None:
            self._stop_zygote()
            self.pool.close()
            return 1
        self.current = worker
        if self.cli_sockets:
            self.cli = master_cli(self, self.cli_sockets)
            try:
                await self.cli.start()
            except OSError as exc:
                print(f"[ALERT] cannot start the master CLI: {exc}", file=sys.stderr)
                self.stop(signal.SIGTERM)
        pidfile = self.pidfile or cfg.global_.pidfile
        if pidfile:
            lifecycle.write_pidfile(pidfile)
        log.info("master %d: worker #%d (%d) serving", os.getpid(), worker.number, worker.pid)
        lifecycle.notify("READY=1", f"MAINPID={os.getpid()}")
        if ready is not None:
            ready()
        self._prepare_spare()
        if self._pending_reload:  # asked for while the first worker started
            self.request_reload()
        try:
            status = await self._supervise()
        finally:
            self.pool.close()
            if self._sparing is not None:
                self._sparing.cancel()
            if self.spare is not None:
                self.spare.stop()
                self.spare.reap()
                self.spare = None
            self._stop_zygote()
            if self.cli is not None:
                await self.cli.stop()
            if self._private is not None:
                shutil.rmtree(self._private, ignore_errors=True)
            if pidfile:
                try:
                    os.unlink(pidfile)
                except OSError:
                    pass
        log.info("master %d: all workers exited, exiting (%d)", os.getpid(), status)
        return status

    async def _supervise(self) -> int:
        """Until the current worker exits; then until every other one has."""
        while True:
            current = self.current
            assert current is not None
            self._changed.clear()
            changed = asyncio.ensure_future(self._changed.wait())
            waiting: set[asyncio.Future] = {worker.exited for worker in self.workers} | {changed}
            await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
            changed.cancel()
            for worker in [w for w in self.workers if w.exited.done()]:
                self.workers.remove(worker)
                status = worker.exited.result()
                if worker is self.current:
                    if not self.stopping:
                        log.error("master %d: current worker #%d (%d) exited with %s: stopping the "
                                  "others", os.getpid(), worker.number, worker.pid, describe_status(status))
                        self.stop(signal.SIGTERM)
                    else:
                        log.info("master %d: current worker #%d (%d) exited with %s", os.getpid(),
                                 worker.number, worker.pid, describe_status(status))
                else:
                    log.info("master %d: former worker #%d (%d) exited with %s", os.getpid(),
                             worker.number, worker.pid, describe_status(status))
            if self.current is not None and self.current.exited.done() and not self.workers:
                if self._reloading is not None:
                    self._reloading.cancel()
                status = self.current.exited.result()
                return status if status >= 0 else 128 - status

    def stop(self, signum: int) -> None:
        """Pass ``signum`` to every worker; the master exits once they have all exited."""
        if not self.stopping:
            log.info("master %d: %s: stopping the workers", os.getpid(), signal.Signals(signum).name)
            lifecycle.notify("STOPPING=1")
        self.stopping = True
        if self.spare is not None:
            self.spare.stop()
        if self.zygote is not None:
            self.zygote.stop()
        for worker in self.workers:
            worker.signal(signum)

    def broadcast(self, signum: int) -> None:
        """SIGTTOU and SIGTTIN (pause and resume the listeners), to every worker that serves, as
        HAProxy's mworker_broadcast_signal(); not to a worker still starting, which would take it
        before its handlers are set (it starts unpaused, as HAProxy's new worker does)."""
        for worker in self.workers:
            if worker.serving:
                worker.signal(signum)

    # --- reloads ----------------------------------------------------------------------------------

    def request_reload(self) -> None:
        if self.stopping:
            return
        if self.current is None:
            self._pending_reload = True
            return
        if self._reloading is not None and not self._reloading.done():
            self._pending_reload = True  # one more once this one ends, with the files as they are then
            return
        self._reloading = asyncio.get_running_loop().create_task(self.reload())

    async def reload(self) -> bool:
        """Start a worker on the files as they are now and soft-stop the former one: True if done."""
        while True:
            self._pending_reload = False
            lifecycle.notify("RELOADING=1")
            self.reloads_done += 1
            former = self.current
            done = await self._reload_once()
            self._prepare_spare(former)
            # Failures since the last reload that worked (show proc, the master CLI's prompt).
            self.reloads_failed = 0 if done else self.reloads_failed + 1
            lifecycle.notify("READY=1")
            if not self._pending_reload or self.stopping:
                return done

    async def _reload_once(self) -> bool:
        former = self.current
        assert former is not None
        log.info("master %d: reloading %s", os.getpid(), " ".join(self.files))
        try:
            cfg = _load(self.files)
        except ConfigError as exc:
            print(f"[ALERT] reload: configuration errors (worker #{former.number} ({former.pid}) goes "
                  f"on serving):\n{exc}", file=sys.stderr, flush=True)
            return False
        for warning in cfg.warnings:
            print(f"[WARNING] {warning}", file=sys.stderr)
        added = await ask_worker(former, b"_addedservers\n")
        states = await self._save_states(former)
        # The channel the former worker's established pairs go through to the new one (handover.py).
        ours, theirs = socket.socketpair()
        try:
            try:
                worker = await self._start_worker(cfg, theirs, carried_state=states)
            finally:
                theirs.close()
            if worker is not None and not self.stopping:
                # Made current (what the master CLI's @1 and show proc see) only once prepared.
                await self._add_servers(worker, added, states)
                await self._carry_counters(former, worker)
                # It accepts from now on, and the pairs that fit its routes may move.
                await ask_worker(worker, b"_prepared\n")
                if worker.exited.done():
                    worker = None
            if worker is None:
                print(f"[ALERT] reload: the new worker did not start (worker #{former.number} "
                      f"({former.pid}) goes on serving)", file=sys.stderr, flush=True)
                return False
            if self.stopping:  # stopped while the new worker started
                worker.signal(signal.SIGTERM)
                return False
            self.current = worker
            if not former.hand_over(ours):
                former.signal(signal.SIGUSR1)
        except OSError as exc:
            print(f"[ALERT] reload: cannot listen: {exc} (worker #{former.number} ({former.pid}) goes "
                  "on serving)", file=sys.stderr, flush=True)
            return False
        finally:
            ours.close()
        log.info("master %d: worker #%d (%d) serving, former worker #%d (%d) soft-stopping",
                 os.getpid(), worker.number, worker.pid, former.number, former.pid)
        return True

    # --- the spare worker ------------------------------------------------------------------------------

    def _prepare_spare(self, former: Optional[Worker] = None) -> None:
        """Start the next reload's spare worker, unless one is there or starting: forked from the
        zygote at once, or (no zygote) started afresh once ``former`` (the worker a reload replaced)
        has exited, or ``SPARE_AFTER`` seconds, so that the spare's imports do not take the CPU from
        the reload's end."""
        starting = self._sparing is not None and not self._sparing.done()
        if self.stopping or self.spare is not None or starting:
            return
        self._sparing = asyncio.get_running_loop().create_task(self._start_spare(former))

    def _start_zygote(self) -> None:
        try:
            self.zygote = Zygote.start(self._output)
        except OSError as exc:
            log.warning("master %d: cannot start the spare zygote: %s", os.getpid(), exc)

    def _stop_zygote(self) -> None:
        if self.zygote is not None:
            self.zygote.stop()
            self.zygote.reap()
            self.zygote = None

    async def _start_spare(self, former: Optional[Worker]) -> None:
        zygote = self.zygote
        if zygote is not None and zygote.usable:
            try:
                await asyncio.wait_for(asyncio.shield(zygote.ready), READY_TIMEOUT)
            except asyncio.TimeoutError:
                pass
            spare = await zygote.fork()
            if spare is not None and (self.stopping or self.spare is not None):
                spare.stop()
                spare.reap()
                return
            if spare is not None:
                log.info("master %d: spare worker (%d) forked from the zygote", os.getpid(), spare.pid)
                self.spare = spare
                return
        if former is not None and former is not self.current:
            try:
                await asyncio.wait_for(asyncio.shield(former.exited), SPARE_AFTER)
            except asyncio.TimeoutError:
                pass
        if self.stopping or self.spare is not None:
            return
        try:
            self.spare = Spare.start(self._output)
        except OSError as exc:
            log.warning("master %d: cannot start a spare worker: %s", os.getpid(), exc)

    async def _spare_told(self, order: Order) -> Optional[ChildProcess]:
        """The spare turned into the worker of ``order`` (waiting for it to be ready if it is still
        importing: sooner than a new one); None without a spare, and the master starts the worker."""
        spare, self.spare = self.spare, None
        if spare is None:
            return None
        try:
            await asyncio.wait_for(asyncio.shield(spare.ready), READY_TIMEOUT)
        except asyncio.TimeoutError:
            pass
        proc = spare.order(order)
        if proc is None:
            spare.stop()
            return None
        log.info("master %d: spare worker (%d) becomes the new worker", os.getpid(), proc.pid)
        return proc

    async def _save_states(self, former: Worker) -> Optional[str]:
        """The former worker's ``show servers state`` in a file of the master's own (0600), for the
        new worker to start from (server_state.carry); None if it did not answer."""
        text = await ask_worker(former, b"show servers state\n")
        if not text.startswith("1\n"):
            return None
        if self._private is None:
            self._private = tempfile.mkdtemp(prefix="fastproxy-master-")
        path = os.path.join(self._private, "servers-state")
        with open(path, "w", encoding="latin-1") as f:
            f.write(text)
        return path

    async def _add_servers(self, worker: Worker, added: str, states: Optional[str]) -> None:
        """The servers the former worker had added at run time, added again on the new one (where
        the new configuration has their backend, as ``add server`` accepts them), then given their
        saved states."""
        requests = [line for line in added.splitlines() if line.startswith("add server ")]
        for request in requests:
            answer = await ask_worker(worker, request.encode("latin-1") + b"\n")
            if answer.strip() != "New server registered.":
                log.warning("master %d: reload: '%s' not added again: %s", os.getpid(), request,
                            answer.strip())
        if requests and states is not None:
            await ask_worker(worker, b"_loadstate " + states.encode() + b"\n")

    async def _carry_counters(self, former: Worker, worker: Worker) -> None:
        """The former worker's totals to the new one (continued_counters); what it counts until it
        ends follows when it does (``_heard_from``)."""
        try:
            totals = continued_counters.decode((await ask_worker(former, b"_counters\n")).strip())
        except ValueError:
            return
        former.carried = totals
        await ask_worker(worker, b"_addcounters " + continued_counters.encode(totals).encode() + b"\n")

    def _heard_from(self, worker: Worker, line: bytes) -> None:
        """A worker's line on its link: ``COUNTERS <totals>`` as it ends."""
        if not line.startswith(b"COUNTERS ") or worker.carried is None:
            return
        current = self.current
        if current is None or current is worker or current.exited.done():
            return
        try:
            final = continued_counters.decode(line[len(b"COUNTERS "):].decode())
        except ValueError:
            return
        tail = continued_counters.since(final, worker.carried)
        request = b"_addcounters " + continued_counters.encode(tail).encode() + b"\n"
        task = asyncio.get_running_loop().create_task(ask_worker(current, request))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _start_worker(self, cfg: model.Config, pairs_from: Optional[socket.socket] = None,
                            carried_state: Optional[str] = None) -> Optional[Worker]:
        """A worker on ``cfg``'s listeners, once it is ready; None if it exited first (its errors
        are on stderr), the sockets opened for it closed again.  OSError if a bind fails.  With
        ``pairs_from``, the worker adopts the pairs the former one sends on that channel;
        ``carried_state``: the former worker's server states for it to start from."""
        loop = asyncio.get_running_loop()
        sockets, opened = self.pool.open_for(cfg)
        keys_in_use = set(sockets)
        ours, theirs = socket.socketpair()
        order = Order()
        order.args = ["run", "--worker-link", order.fd(theirs)]
        if pairs_from is not None:
            order.args += ["--handover-from", order.fd(pairs_from)]
        for path in self.files:
            order.args += ["-f", path]
        for key, sock in sockets.items():
            order.args += ["--inherit", f"{order.fd(sock)}={key}"]
        if self.grace is not None:
            order.args += ["--grace", str(self.grace)]
        if carried_state is not None:
            order.args += ["--carried-state", carried_state]
        if self.quiet:
            order.args.append("-q")
        order.args += self.worker_args
        proc: Optional[ChildProcess]
        try:
            proc = await self._spare_told(order)
            if proc is None:
                proc = subprocess.Popen([sys.executable, "-m", "fastproxy", *order.resolve(order.fds)],
                                        pass_fds=order.fds, stdin=subprocess.DEVNULL,
                                        stdout=self._output, stderr=self._output)
        except BaseException:
            ours.close()
            self.pool.close(opened)
            raise
        finally:
            theirs.close()
        self.reloads += 1
        worker = Worker(proc, self.reloads, ours)
        worker.born_at = self.reloads_done
        self.workers.append(worker)
        ours.setblocking(False)
        self._changed.set()
        answer, timed_out = b"", False
        try:
            answer = await asyncio.wait_for(loop.sock_recv(ours, len(READY)), READY_TIMEOUT)
        except asyncio.TimeoutError:
            timed_out = True
        except OSError:
            pass
        if answer != READY:
            worker.signal(signal.SIGKILL if timed_out else signal.SIGTERM)
            await worker.exited
            if worker in self.workers:  # unless the supervisor saw it go first
                self.workers.remove(worker)
            self.pool.close(opened)
            return None
        # Sockets the configuration no longer names close here; the former worker keeps its copies
        # until it stops accepting.
        self.pool.keep_only(keys_in_use)
        worker.serving = True
        worker.listen(self._heard_from)
        return worker


def _load(files: Sequence[str]) -> model.Config:
    from .config import load

    return load(files)
