"""External checks (HAProxy's extcheck.c): ``option external-check`` runs ``external-check command``
once per check, on the event loop (an asyncio subprocess: nothing blocks while it runs).

As HAProxy 2.6: the command gets ``<proxy_address> <proxy_port> <server_address> <server_port>`` (the
proxy's first bind, ``NOT_USED`` twice when it has none), and an environment of its own, nothing
inherited: ``PATH`` (``external-check path``, empty by default), ``HAPROXY_PROXY_ADDR``,
``HAPROXY_PROXY_ID``, ``HAPROXY_PROXY_NAME``, ``HAPROXY_PROXY_PORT``, ``HAPROXY_SERVER_ADDR``,
``HAPROXY_SERVER_CURCONN`` (at each check), ``HAPROXY_SERVER_ID``, ``HAPROXY_SERVER_MAXCONN``,
``HAPROXY_SERVER_NAME``, ``HAPROXY_SERVER_PORT``, ``HAPROXY_SERVER_PROTO`` and ``HAPROXY_SERVER_SSL``
(``NOT_USED`` is empty there).  Exit status 0 is ``PROCOK``, any other (or a signal, code -1) is
``PROCERR`` with the status as the check's code; a command still running after the check's time
(``inter``, or ``timeout connect`` if shorter when ``timeout check`` is set) is ``PROCTOUT`` and is sent
SIGTERM by its pid.  Without ``insecure-fork-wanted`` HAProxy forbids its process to fork
(RLIMIT_NPROC 0, which binds a process that is not root): such a check then fails with SOCKERR and the
error fork() gives, as HAProxy's does.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import signal
import subprocess
from dataclasses import dataclass, field
from typing import Callable

from .health import CheckResult

log = logging.getLogger("fastproxy")

NOT_USED = "NOT_USED"
_REAP_DELAY = 5.0  # seconds a command sent SIGTERM has to exit before SIGKILL (HAProxy sends no more)


@dataclass
class ExternalCheck:
    """One server's external check: the command, its fixed arguments and environment, and what changes
    from one check to the next (the server's address, its current connections)."""

    command: str
    proxy_address: tuple[str, str]  # the first bind's address and port, or NOT_USED twice
    environment: dict[str, str]  # the variables set once (PATH, HAPROXY_PROXY_*, HAPROXY_SERVER_ID...)
    server_address: Callable[[], tuple[str, int]]
    current: Callable[[], int]  # the server's current connections (HAPROXY_SERVER_CURCONN)
    insecure_fork_wanted: bool = True
    reaping: set[asyncio.Task] = field(default_factory=set)

    def arguments(self) -> list[str]:
        host, port = self.server_address()
        return [self.command, *self.proxy_address, host, str(port)]

    def environ(self) -> dict[str, str]:
        host, port = self.server_address()
        variables = dict(self.environment)
        variables.update(HAPROXY_SERVER_ADDR=host, HAPROXY_SERVER_PORT=str(port),
                         HAPROXY_SERVER_CURCONN=str(self.current()))
        return {name: "" if value == NOT_USED else value for name, value in variables.items()}

    async def run(self, timeout: float) -> CheckResult:
        """One check: the command's verdict within ``timeout`` seconds, and how long it took."""
        loop = asyncio.get_running_loop()
        started = loop.time()
        result = await self._verdict(timeout)
        result.duration = loop.time() - started
        return result

    async def _verdict(self, timeout: float) -> CheckResult:
        if not fork_allowed(self.insecure_fork_wanted):
            reason = os.strerror(errno.EAGAIN)
            log.error("Failed to fork process for external health check (likely caused by missing "
                      "'insecure-fork-wanted'): %s. Aborting.", reason)
            return CheckResult("SOCKERR", reason)
        try:
            process = await asyncio.create_subprocess_exec(
                *self.arguments(), env=self.environ(), stdin=subprocess.DEVNULL)
        except OSError as exc:  # HAProxy's child fails its execvp() and exits with -1
            log.error("Failed to exec process for external health check: %s. Aborting.",
                      os.strerror(exc.errno) if exc.errno else exc)
            return CheckResult("PROCERR", code=255)
        try:
            status = await asyncio.wait_for(asyncio.shield(process.wait()), timeout)
        except asyncio.TimeoutError:
            self._end(process)
            return CheckResult("PROCTOUT")
        except asyncio.CancelledError:  # the checks stop: HAProxy's pid_list_del() kills it too
            self._end(process)
            raise
        if status < 0:  # ended by a signal: no exit status
            return CheckResult("PROCERR", code=-1)
        return CheckResult("PROCOK" if status == 0 else "PROCERR", code=status)

    def _end(self, process: asyncio.subprocess.Process) -> None:
        """SIGTERM to the command by its pid, and its exit reaped in the background."""
        if process.returncode is None:
            try:
                os.kill(process.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        task = asyncio.get_running_loop().create_task(self._reap(process))
        self.reaping.add(task)
        task.add_done_callback(self.reaping.discard)

    @staticmethod
    async def _reap(process: asyncio.subprocess.Process) -> None:
        try:
            await asyncio.wait_for(process.wait(), _REAP_DELAY)
        except asyncio.TimeoutError:
            try:
                os.kill(process.pid, signal.SIGKILL)
            except ProcessLookupError:
                return
            await process.wait()


def fork_allowed(insecure_fork_wanted: bool) -> bool:
    """Whether HAProxy's process could fork now: always with ``insecure-fork-wanted``; without it only
    a process RLIMIT_NPROC does not bind (root's: asked at each check, after any privilege drop)."""
    return insecure_fork_wanted or os.geteuid() == 0
