"""The spare worker: a process the master starts ahead of a reload, already past its imports, that
becomes the reload's new worker when told to (``master.py``).

Starting a worker afresh costs an interpreter, fastproxy's imports and the engine's modules: about a
second on a loaded machine, during which the former worker goes on serving and a reload is not done.
A spare pays that before the reload: ``python -m fastproxy.spare --link FD`` imports what a worker
needs (``WORKER_MODULES``), freezes what it imported (``gc.freeze()``: the collector never walks it
again), writes ``SPARE`` on its link and waits there.  On a reload the master validates the new
files, then sends the spare its ``Order`` (one message on the link, SOCK_SEQPACKET): the arguments
of ``fastproxy run`` for the new worker, with the descriptors it inherits attached (SCM_RIGHTS); the
spare runs them in the same process, and from then on it is a worker like any other, with its pid.
The master starts the next spare once the reload is done.

A spare ends with its master: the link reads EOF and it exits; the master also stops it by pid when
it stops.  Until it is told, a spare's name (``/proc/<pid>/comm``) is the interpreter's and its
command line ``-m fastproxy.spare``; as it becomes a worker it takes the name ``WORKER_NAME``, so
that a spare can be told from a worker (``is_spare``).  HAProxy has no spare: the master CLI's
``show proc`` does not list it (a spare serves nothing).

The zygote: a spare costs a new interpreter and its imports, a second or more on a loaded machine,
and the next reload may come sooner.  So the master also starts, with its first worker, one process
past the same imports that serves nothing (``python -m fastproxy.spare --zygote --link FD``, named
``ZYGOTE_NAME``) and makes each spare by asking it to fork one (``FORK`` on its link, the new spare's
link attached): a copy of an imported process, ready in milliseconds.  The fork is a double one: the
zygote's child forks the spare and exits at once, so that the spare is re-parented to the master,
which is the child subreaper (prctl(2)) for that instant.  The master is then the spare's parent as it
is a fresh one's, and reaps it, reads its exit status and signals it the same way (``Adopted``).
Without a zygote (it was killed, or it cannot fork), spares start afresh as above.  The zygote ends
with its master (link EOF, or SIGTERM by pid); ``show proc`` does not list it.

``Order`` writes a worker's arguments once for both ways a worker starts: the descriptors are
placeholders that ``resolve`` replaces with the numbers they have in the process that runs the
worker (the master's own for a fresh ``subprocess.Popen``, the received ones in a spare).
"""

from __future__ import annotations

import asyncio
import gc
import importlib
import json
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import time
from typing import Any, Optional, Protocol, Sequence

from . import _linux, lifecycle

log = logging.getLogger("fastproxy")

SPARE_READY = b"SPARE\n"  # spare -> master: imported, waiting for its order
ZYGOTE_READY = b"ZYGOTE\n"  # zygote -> master: imported, forks spares on demand
FORK = b"FORK\n"  # master -> zygote, with the new spare's link attached; the answer is "PID <pid>\n"
WORKER_NAME = "fastproxy"  # a spare's /proc/<pid>/comm once it is a worker
SPARE_NAME = "fastproxy-spare"  # a spare's /proc/<pid>/comm until then
ZYGOTE_NAME = "spare-zygote"  # the zygote's /proc/<pid>/comm
FORK_TIMEOUT = 10.0  # seconds the master waits for the zygote's answer before it gives up on it
MAX_DESCRIPTORS = 253  # per SCM_RIGHTS message (the kernel's SCM_MAX_FD less a margin)
MAX_ORDER = 1 << 20  # bytes of arguments an order may carry
# What a worker imports before it serves: the command line, the service, the engine and the modules it
# loads (the data plane, compiled or its twin, chosen as the worker would), the configuration reader
# and the master-worker link.
WORKER_MODULES = (
    "uvloop", "fastproxy.cli", "fastproxy.service", "fastproxy.engine", "fastproxy.master",
    "fastproxy.config", "fastproxy.config.haproxy", "fastproxy.runtime_commands", "fastproxy.fleet",
)
# A descriptor in an order's arguments: NUL cannot appear in a real argument.
_PLACEHOLDER = re.compile("\0(\\d+)\0")


class Order:
    """A worker's ``fastproxy run`` arguments and the descriptors it inherits."""

    def __init__(self) -> None:
        self.args: list[str] = []
        self.fds: list[int] = []

    def fd(self, sock: socket.socket) -> str:
        """The argument that names ``sock`` in the worker (``--worker-link <fd>``)."""
        self.fds.append(sock.fileno())
        return f"\0{len(self.fds) - 1}\0"

    def resolve(self, numbers: Sequence[int]) -> list[str]:
        """The arguments with each descriptor's number in the worker's process."""
        return [_PLACEHOLDER.sub(lambda match: str(numbers[int(match.group(1))]), arg) for arg in self.args]


def _process(pid: int) -> tuple[list[bytes], str]:
    """``pid``'s command line and name (nothing if it has gone)."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            command = f.read().split(b"\0")
        with open(f"/proc/{pid}/comm") as f:
            return command, f.read().strip()
    except OSError:
        return [], ""


def is_spare(pid: int) -> bool:
    """Whether ``pid`` is a spare still waiting for its order (read from /proc)."""
    command, name = _process(pid)
    return b"fastproxy.spare" in command and name not in (WORKER_NAME, ZYGOTE_NAME)


def is_zygote(pid: int) -> bool:
    """Whether ``pid`` is a master's zygote (read from /proc)."""
    command, name = _process(pid)
    return b"fastproxy.spare" in command and name == ZYGOTE_NAME


def parent_of(pid: int) -> int:
    """``pid``'s parent process (0 if it has gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return int(f.read().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return 0


def is_worker(pid: int) -> bool:
    """Whether ``pid`` is a master's worker: started as one (``--worker-link``), or a spare that
    became one."""
    command, name = _process(pid)
    return b"--worker-link" in command or (b"fastproxy.spare" in command and name == WORKER_NAME)


# --- the master's side --------------------------------------------------------------------------------

def _start_linked(options: list[str], output: Optional[int]) -> tuple[subprocess.Popen, socket.socket]:
    """``python -m fastproxy.spare <options> --link FD``: the process and the master's end of its link."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    try:
        command = [sys.executable, "-m", "fastproxy.spare", *options, "--link", str(theirs.fileno())]
        proc = subprocess.Popen(command, pass_fds=[theirs.fileno()], stdin=subprocess.DEVNULL,
                                stdout=output, stderr=output)
    except BaseException:
        ours.close()
        raise
    finally:
        theirs.close()
    ours.setblocking(False)
    return proc, ours


def _heard(link: socket.socket) -> Optional[bytes]:
    """The message waiting on a link (SOCK_SEQPACKET: one per call), b"" at its end, None if none is."""
    try:
        return link.recv(64)
    except (BlockingIOError, InterruptedError):
        return None
    except OSError:
        return b""


class ChildProcess(Protocol):
    """What the master uses of a child process: ``subprocess.Popen``'s, or ``Adopted``'s."""

    pid: int

    @property
    def returncode(self) -> Optional[int]: ...

    def poll(self) -> Optional[int]: ...

    def wait(self, timeout: Optional[float] = None) -> int: ...

    def kill(self) -> None: ...


class Adopted:
    """A child the master did not start itself (a spare forked by the zygote and re-parented to the
    master), with the part of ``subprocess.Popen``'s surface the master uses: the exit status as Popen
    gives it (negative: the signal that killed it), read with waitpid."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self._status: Optional[int] = None

    @property
    def returncode(self) -> Optional[int]:
        return self._status

    def poll(self) -> Optional[int]:
        if self._status is None:
            try:
                pid, status = os.waitpid(self.pid, os.WNOHANG)
            except ChildProcessError:  # reaped by someone else: its status is lost
                self._status = 255
                return self._status
            if pid == self.pid:
                self._status = os.waitstatus_to_exitcode(status)
        return self._status

    def wait(self, timeout: Optional[float] = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.poll() is None:
            if deadline is not None and time.monotonic() >= deadline:
                raise subprocess.TimeoutExpired(f"pid {self.pid}", timeout or 0)
            time.sleep(0.005)
        assert self._status is not None
        return self._status

    def kill(self) -> None:
        if self.poll() is None:
            try:
                os.kill(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

class Spare:
    """A spare as the master sees it: ``ready`` once it has imported, ``exited`` when it ends
    (killed, or its start failed) without having been told."""

    def __init__(self, proc: ChildProcess, link: socket.socket) -> None:
        self.proc = proc
        self.pid = proc.pid
        self.link = link
        self.stopped = False  # stopped by the master (its end is no news)
        loop = asyncio.get_running_loop()
        self.ready: asyncio.Future[bool] = loop.create_future()  # True once imported, False if it ended
        self._pidfd = os.pidfd_open(proc.pid)
        loop.add_reader(self._pidfd, self._reap)
        loop.add_reader(link.fileno(), self._hear)

    @classmethod
    def start(cls, output: Optional[int]) -> Spare:
        """A spare started (``output``: its stdout and stderr, None for the master's); OSError if it
        cannot be."""
        return cls(*_start_linked([], output))

    def _hear(self) -> None:
        data = _heard(self.link)
        if data is None:
            return
        if data == SPARE_READY and not self.ready.done():
            log.info("master %d: spare worker (%d) ready", os.getpid(), self.pid)
            self.ready.set_result(True)
        elif not data:
            self._forget()

    def _reap(self) -> None:
        if self.proc.poll() is None:
            return
        if not self.stopped:
            log.warning("master %d: spare worker (%d) exited with status %s: the next reload starts its "
                        "worker afresh", os.getpid(), self.pid, self.proc.returncode)
        self._forget()

    def _forget(self) -> None:
        """No longer the master's to use: its readers and link closed (its pidfd too once reaped)."""
        loop = asyncio.get_running_loop()
        if self.link.fileno() >= 0:
            loop.remove_reader(self.link.fileno())
            self.link.close()
        if not self.ready.done():
            self.ready.set_result(False)
        if self.proc.returncode is not None:
            self._close_pidfd()

    def _close_pidfd(self) -> None:
        if self._pidfd >= 0:
            asyncio.get_running_loop().remove_reader(self._pidfd)
            os.close(self._pidfd)
            self._pidfd = -1

    def order(self, order: Order) -> Optional[ChildProcess]:
        """Tell the spare to become a worker on ``order``: its process (now the worker's), or None
        if it cannot be told (gone, not ready, too many descriptors), and the master starts one."""
        usable = self.ready.done() and self.ready.result() and self.link.fileno() >= 0 and \
            self.proc.poll() is None
        if not usable or len(order.fds) > MAX_DESCRIPTORS:
            return None
        body = json.dumps(order.args).encode()
        if len(body) > MAX_ORDER:
            return None
        try:
            self.link.setblocking(True)
            sent = socket.send_fds(self.link, [body], order.fds)
        except OSError:
            sent = 0
        self._close_pidfd()  # the worker watches its process from now on (master.Worker)
        self._forget()
        if sent != len(body):  # half told: of no use as a spare or as a worker
            self.proc.kill()
            self.proc.wait()
            return None
        return self.proc

    def stop(self) -> None:
        """The master stops: so does its spare (by pid)."""
        self.stopped = True
        if self.proc.returncode is None:
            try:
                os.kill(self.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass

    def reap(self) -> None:
        """Wait for the stopped spare's end (it has no state to flush: an instant)."""
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._forget()


class Zygote:
    """The zygote as the master sees it: ``ready`` once it has imported; ``fork`` makes a spare."""

    def __init__(self, proc: subprocess.Popen, link: socket.socket) -> None:
        self.proc = proc
        self.pid = proc.pid
        self.link = link
        self.stopped = False
        loop = asyncio.get_running_loop()
        self.ready: asyncio.Future[bool] = loop.create_future()  # True once imported, False if it ended
        self._answer: Optional[asyncio.Future[int]] = None  # the pid of the spare being forked
        self._heard = b""
        self._forking = asyncio.Lock()  # one fork at a time: answers come in order
        loop.add_reader(link.fileno(), self._hear)

    @classmethod
    def start(cls, output: Optional[int]) -> Zygote:
        """A zygote started (``output`` as ``Spare.start``'s); OSError if it cannot be."""
        return cls(*_start_linked(["--zygote"], output))

    @property
    def usable(self) -> bool:
        return self.link.fileno() >= 0 and self.proc.poll() is None and \
            not (self.ready.done() and not self.ready.result())

    def _hear(self) -> None:
        data = _heard(self.link)
        if data is None:
            return
        if data == ZYGOTE_READY and not self.ready.done():
            log.info("master %d: spare zygote (%d) ready", os.getpid(), self.pid)
            self.ready.set_result(True)
        elif data.startswith(b"PID ") and self._answer is not None and not self._answer.done():
            try:
                self._answer.set_result(int(data[4:]))
            except ValueError:
                self._answer.set_result(-1)
        elif not data:
            if not self.stopped:
                log.warning("master %d: spare zygote (%d) exited: spares start afresh", os.getpid(),
                            self.pid)
            self._forget()

    def _forget(self) -> None:
        if self.link.fileno() >= 0:
            asyncio.get_running_loop().remove_reader(self.link.fileno())
            self.link.close()
        if not self.ready.done():
            self.ready.set_result(False)
        if self._answer is not None and not self._answer.done():
            self._answer.set_result(-1)
        self.proc.poll()  # reaped if it has exited

    async def fork(self) -> Optional[Spare]:
        """A new spare, forked from the zygote and re-parented to the master; None if the zygote
        could not make one (the master then starts a spare afresh)."""
        async with self._forking:
            if not self.usable or not self.ready.done():
                return None
            ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
            self._answer = asyncio.get_running_loop().create_future()
            pid = -1
            _linux.set_child_subreaper(True)  # for the instant the spare's first parent exits
            try:
                try:
                    socket.send_fds(self.link, [FORK], [theirs.fileno()])
                except OSError:
                    self._forget()
                    return None
                finally:
                    theirs.close()
                try:
                    pid = await asyncio.wait_for(asyncio.shield(self._answer), FORK_TIMEOUT)
                except asyncio.TimeoutError:
                    log.warning("master %d: spare zygote (%d) did not answer: stopped", os.getpid(),
                                self.pid)
                    self.stop()
            finally:
                _linux.set_child_subreaper(False)
                self._answer = None
                if pid <= 0:
                    ours.close()
            if pid <= 0:
                return None
            if parent_of(pid) != os.getpid():  # not ours to reap: of no use
                log.warning("master %d: spare (%d) from the zygote is not the master's child", os.getpid(),
                            pid)
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                ours.close()
                return None
            ours.setblocking(False)
            return Spare(Adopted(pid), ours)

    def stop(self) -> None:
        """The master stops: so does its zygote (by pid)."""
        self.stopped = True
        if self.proc.poll() is None:
            try:
                os.kill(self.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        self._forget()

    def reap(self) -> None:
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


# --- the spare's side --------------------------------------------------------------------------------

def _name(name: str) -> None:
    try:
        with open("/proc/self/comm", "w") as f:
            f.write(name)
    except OSError:
        pass


def _wait_for_order(link: socket.socket) -> Optional[tuple[list[str], list[int]]]:
    """The order's arguments (placeholders resolved) or None when the master has gone."""
    try:
        body, fds, _, _ = socket.recv_fds(link, MAX_ORDER, MAX_DESCRIPTORS)
    except OSError:
        return None
    if not body:
        return None
    return json.loads(body), fds


def _import_worker_modules() -> None:
    for module in WORKER_MODULES:
        importlib.import_module(module)
    gc.freeze()  # what the imports made is never collected: the collector skips it from now on


def _serve_as_spare(link: socket.socket) -> int:
    """Say the spare is ready, wait for its order and run it: the worker's exit status."""
    _name(SPARE_NAME)
    try:
        link.sendall(SPARE_READY)
    except OSError:
        return 0
    told = _wait_for_order(link)
    link.close()
    if told is None:
        return 0  # the master has gone (or stopped the spare): nothing to serve
    arguments, fds = told
    _name(WORKER_NAME)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    resolved = Order()
    resolved.args = arguments
    worker_args = resolved.resolve(fds)
    for fd in fds:
        os.set_inheritable(fd, False)
    sys.argv = [sys.argv[0], *worker_args]
    cli: Any = importlib.import_module("fastproxy.cli")
    return int(cli.main(worker_args))


def _single_threaded() -> bool:
    """Whether this process has one thread (a fork copies only the caller's: with others, a lock
    one of them held would stay held in the copy forever)."""
    try:
        return len(os.listdir("/proc/self/task")) == 1
    except OSError:
        return False


def _fork_spare(zygote_link: socket.socket, spare_link: int) -> int:
    """Fork a spare on ``spare_link`` through a child that exits at once (the spare is re-parented to
    the master, the subreaper); its pid, or -1."""
    reader, writer = os.pipe()
    try:
        child = os.fork()
    except OSError:
        os.close(reader)
        os.close(writer)
        return -1
    if child == 0:  # the zygote's child: fork the spare, tell its pid, exit
        status = 0
        try:
            os.close(reader)
            spare = os.fork()
            if spare == 0:
                os.close(writer)
                zygote_link.close()
                _run_forked_spare(socket.socket(fileno=spare_link))
            os.write(writer, str(spare).encode())
        except BaseException:
            status = 1
        finally:
            os._exit(status)
    os.close(writer)
    try:
        os.waitpid(child, 0)
        answer = os.read(reader, 32)
    finally:
        os.close(reader)
    try:
        return int(answer)
    except ValueError:
        return -1


def _run_forked_spare(link: socket.socket) -> None:
    """The forked spare's whole life: it never returns into the zygote's loop."""
    status = 1
    try:
        status = _serve_as_spare(link)
    except SystemExit as exc:
        status = exc.code if isinstance(exc.code, int) else 1
    except BaseException:
        import traceback

        traceback.print_exc()
    finally:
        lifecycle.exit_now(status)


def _zygote(link: socket.socket) -> int:
    """Fork a spare for each ``FORK`` the master sends, until its link reads EOF."""
    _name(ZYGOTE_NAME)
    _import_worker_modules()
    if not _single_threaded():
        print("[WARNING] spare zygote: the imports started threads: it cannot fork", file=sys.stderr)
        return 1
    try:
        link.sendall(ZYGOTE_READY)
    except OSError:
        return 0
    while True:
        try:
            body, fds, _, _ = socket.recv_fds(link, 64, 1)
        except InterruptedError:
            continue
        except OSError:
            return 0
        if not body:
            return 0  # the master has gone
        pid = -1
        if body == FORK and len(fds) == 1:
            pid = _fork_spare(link, fds[0])
        for fd in fds:
            os.close(fd)
        try:
            link.sendall(b"PID %d\n" % pid)
        except OSError:
            return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    zygote = args[:1] == ["--zygote"]
    if zygote:
        args = args[1:]
    if len(args) != 2 or args[0] != "--link":
        print("usage: python -m fastproxy.spare [--zygote] --link FD (started by the master)",
              file=sys.stderr)
        return 2
    # The master stops its spare by pid; a Ctrl-C at the terminal is the master's to pass on.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    link = socket.socket(fileno=int(args[1]))
    if zygote:
        return _zygote(link)
    _import_worker_modules()
    return _serve_as_spare(link)


if __name__ == "__main__":
    sys.exit(main())
