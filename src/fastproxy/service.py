"""The service around an engine: signals, pidfile, privileges, the embedded default (uvicorn's
``server.py``).

``serve`` starts the engine on a configuration (or on the embedded default with its echo backends),
writes the pidfile, then drops privileges (``chroot``, ``user``/``group``) once the listeners are
bound, and runs until SIGUSR1 (HAProxy's soft stop: established connections get the grace period) or
SIGTERM/SIGINT (its hard stop: they are cut at once).  SIGTTOU pauses the listeners (new clients are
refused and the port is free for another process to bind, as HAProxy's protocol_pause_all() leaves
it), SIGTTIN resumes them.
As a master's worker (``master.py``) it listens on the sockets it inherited, writes no pidfile (the
master's is the one), says ``READY`` on its link once it listens (and, with a fleet, once the fleet's
servers are read: a reload's new worker that cannot read them leaves the former one serving), and
soft-stops if the master goes.
``cli.py`` only parses arguments and reads files.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import signal
import socket
import sys
from typing import Callable, Optional

from . import default, implementation, privileges, server_state
from .config import model
from .engine import Engine
from .fleet import SYNC_TIMEOUT, Fleet, FleetError, FleetSettings
from .handover import Opener
from .lifecycle import MasterLink, Ready, notify, write_pidfile

log = logging.getLogger("fastproxy")

# Seconds a reload's new worker waits for its master's ``_prepared`` before it accepts anyway: the
# master's preparation is a few requests on the link, milliseconds even on a loaded machine.
PREPARE_TIMEOUT = 10.0


async def serve(cfg: Optional[model.Config], pidfile: Optional[str], grace: Optional[float], *,
                open_listener: Optional[Opener] = None, worker: Optional[MasterLink] = None,
                ready: Optional[Ready] = None, fleet: Optional[FleetSettings] = None,
                pairs_from: Optional[socket.socket] = None) -> int:
    """Run ``cfg`` (the embedded default for None) until SIGUSR1, SIGTERM or SIGINT (or, as a
    ``worker``, until its master goes away or asks it to hand its pairs over to a new worker); the
    exit status.  With ``fleet``, its backends take their servers from etcd (``fleet.Fleet``); with
    ``pairs_from`` (a reload's new worker), it adopts the former worker's pairs sent on it."""
    loop = asyncio.get_running_loop()
    stopping = asyncio.Event()
    # HAProxy's signals: SIGUSR1 is the soft stop (established connections get the grace period),
    # SIGTERM and SIGINT the hard one (cut at once), also when a soft stop is under way.
    hard = asyncio.Event()
    # The engine once started: a hard stop cuts its soft stop short.  Before, setting ``hard`` is
    # enough: the engine, once started, stops at once without a grace period.
    running: Optional[Engine] = None

    def stop_hard() -> None:
        stopping.set()
        hard.set()
        if running is not None:
            running.stop_now()
    loop.add_signal_handler(signal.SIGUSR1, stopping.set)
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop_hard)
    for signum in (signal.SIGTTOU, signal.SIGTTIN):  # pause and resume, once there are listeners
        signal.signal(signum, signal.SIG_IGN)  # not the default: it would stop the process

    echo_backends = []
    if cfg is None:
        echo_backends = await default.start_echo_backends()
        cfg = default.default_config([(name, port) for name, _, port in echo_backends])

    engine = Engine(cfg, open_listener=open_listener)
    # Nothing is accepted before the states of ``server-state-file`` are applied (a first client
    # would reach a server the file puts in maintenance).  Then a standalone process or a master's
    # first worker accepts; a reload's new worker once its master has prepared it (``_prepared``:
    # the servers the former worker added at run time added again, their states and the counters
    # carried), and a master's worker with a fleet once it serves the fleet's servers.  A worker's
    # clients wait in the backlog meanwhile (a reload's former worker accepts them).
    reloaded = worker is not None and pairs_from is not None
    try:
        identity = privileges.identity_of(cfg.global_)
        await engine.start(accepting=False)
    except (OSError, privileges.PrivilegeError) as exc:
        for _, server, _ in echo_backends:
            server.close()
        print(f"[ALERT] cannot start: {exc}", file=sys.stderr)
        return 1
    assert engine.operations is not None  # started
    running = engine
    # HAProxy's SIGTTOU and SIGTTIN: the listeners pause (clients refused, the port released) and
    # resume; established connections go on either way.
    loop.add_signal_handler(signal.SIGTTOU, functools.partial(engine.pause_listeners,
                                                              master_link=worker is not None))
    loop.add_signal_handler(signal.SIGTTIN, engine.resume_listeners)
    for warning in server_state.load(engine.operations, cfg):  # states saved before a reload
        print(f"[WARNING] {warning}", file=sys.stderr)
    if not reloaded and (fleet is None or worker is None):
        engine.accept()
    running_fleet = None
    if fleet is not None:
        try:
            running_fleet = Fleet(engine.operations, fleet)
        except FleetError as exc:
            print(f"[ALERT] cannot start: {exc}", file=sys.stderr)
            await engine.stop(0)
            return 1
        assert engine.operations is not None  # started
        engine.operations.fleet = running_fleet
        await running_fleet.start()
        if worker is not None:  # a master's new worker serves the fleet's membership, or not at all
            try:
                await asyncio.wait_for(running_fleet.synced.wait(), SYNC_TIMEOUT)
            except asyncio.TimeoutError:
                print(f"[ALERT] cannot start: the fleet's servers could not be read from etcd in "
                      f"{SYNC_TIMEOUT:g} s", file=sys.stderr)
                await running_fleet.stop()
                await engine.stop(0)
                return 1
            if not reloaded:
                engine.accept()
    if worker is None:
        pidfile = pidfile or cfg.global_.pidfile
    if pidfile:
        write_pidfile(pidfile)
    try:
        # Listeners are bound and the pidfile written: now chroot and run as user/group.
        privileges.drop(identity)
    except (OSError, privileges.PrivilegeError) as exc:
        print(f"[ALERT] cannot start: {exc}", file=sys.stderr)
        await engine.stop(0)
        return 1
    if echo_backends:
        print(default.HOW_TO_TRY.format(port=default.DEFAULT_PORT,
                                        backends=", ".join(name for name, _, _ in echo_backends)),
              file=sys.stderr, flush=True)
    for address in engine.listening_addresses():
        log.info("listening on %s:%s (%s data plane, %d pump thread(s))", address[0], address[1],
                 implementation(), engine.pump_threads)
    if pairs_from is not None:
        try:
            engine.receive_pairs(pairs_from)
        except OSError as exc:  # the master gone already: nothing will come
            log.warning("handover: cannot take the former worker's pairs: %s", exc)
            pairs_from.close()
    told = None
    if reloaded:
        engine.operations.prepared = _accept_once_prepared(engine)
    if worker is not None:
        worker.ready(engine)
        told = loop.create_task(worker.stop_requested())
        told.add_done_callback(lambda _: stopping.set())
    if worker is None:
        notify("READY=1")  # a worker's master speaks for the service
    if ready is not None:
        ready()

    await stopping.wait()
    if worker is None:
        notify("STOPPING=1")
    if running_fleet is not None:
        await running_fleet.stop()
    hand_over = None
    if told is not None:
        if told.done() and not told.cancelled() and told.exception() is None:
            hand_over = told.result()  # a reload: the pairs go to the new worker
        else:
            told.cancel()
    if hard.is_set():
        log.info("stopping now: listeners closed, %d connection(s) cut", engine.current)
        await engine.stop(0)
    else:
        log.info("stopping: listeners closed, %d connection(s) to %s", engine.current,
                 "hand over or finish" if hand_over is not None else "finish")
        await engine.stop(grace, hand_over=hand_over)
    if worker is not None:
        worker.stopped(engine)  # its final totals, which the master carries on (continued_counters)
    for _, server, _ in echo_backends:
        server.close()
    if pidfile:
        try:
            os.unlink(pidfile)
        except OSError:
            pass
    log.info("stopped")
    return 0


def _accept_once_prepared(engine: Engine) -> Callable[[], None]:
    """What the master's ``_prepared`` calls on a reload's new worker: accept from now on.  A master
    that never says it (its preparation failed, or it hangs) leaves the worker deaf for at most
    ``PREPARE_TIMEOUT`` seconds: then it accepts unprepared (what the added servers' connections
    miss is less than what a worker that never accepts refuses once the former one has gone).  A
    master that has gone is no such case: the worker soft-stops when its link reads EOF."""
    def prepared() -> None:
        if not timer.cancelled():  # once: the timer's own call, or the master's before it
            timer.cancel()
            engine.accept()

    def not_told() -> None:
        log.warning("the master did not say this new worker was prepared within %g s: accepting "
                    "unprepared", PREPARE_TIMEOUT)
        prepared()
    timer = asyncio.get_running_loop().call_later(PREPARE_TIMEOUT, not_told)
    return prepared
