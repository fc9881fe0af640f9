"""Server states kept across a reload: HAProxy 2.6's server-state file (server_state.c).

The file is what ``show servers state`` writes (``stats.servers_state``, format version 1): a ``1``,
a ``#`` header naming the fields, then one line per server.  An operator (or a reload script) saves
it before a reload; at start, each backend whose ``load-server-state-from-file`` is ``global`` reads
``server-state-file``, one whose setting is ``local`` reads ``server-state-file-name`` (the backend's
own name by default), a relative name being under ``server-state-base``.  A line is applied to the
server of the same backend and name as HAProxy's srv_state_srv_update() applies it: the
configuration wins where it changed (``disabled`` added or removed, another ``weight``), the state
set at run time is kept where it did not (maintenance, drain, the weight, checks disabled, the
health a check had), and a server of the file the configuration no longer has is skipped.

``parse`` is sans-IO (text in, lines by backend and server out); ``load`` reads the files and
applies them through the runtime API's own owners (``operations.Operations``).
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from typing import Any, Optional

from .config import model
from .servers import change_address
from .stats import SERVERS_STATE_HEADER

log = logging.getLogger("fastproxy")

FIELDS = SERVERS_STATE_HEADER[2:].split()  # be_id be_name srv_id srv_name srv_addr srv_op_state ...
MIN_FIELDS = 20  # version 1 lines have 20 to 25 fields (server_state.c SRV_STATE_FILE_*_FIELDS_VERSION_1)

# server-t.h: SRV_ST_STOPPED; SRV_ADMF_FMAINT, CMAINT, FDRAIN; check-t.h CHK_ST_CONFIGURED, ENABLED.
OP_STOPPED = 0
FMAINT, CMAINT, FDRAIN = 0x01, 0x04, 0x08
CHECK_CONFIGURED, CHECK_ENABLED = 0x02, 0x04


class StateFileError(Exception):
    """The file cannot be used at all (not of version 1)."""


@dataclass(frozen=True)
class SavedServer:
    """One line of the file, its fields by name."""

    fields: dict[str, str]

    @property
    def key(self) -> tuple[str, str]:
        return self.fields["be_name"], self.fields["srv_name"]

    def number(self, name: str) -> int:
        return int(self.fields[name])


def parse(text: str) -> dict[tuple[str, str], SavedServer]:
    """The lines of a state file by (backend, server); lines of the wrong shape are skipped, as
    HAProxy skips them.  StateFileError if the version is not 1."""
    lines = text.splitlines()
    if not lines or lines[0].strip() != "1":
        raise StateFileError("Can't get version of the server state file")
    saved: dict[tuple[str, str], SavedServer] = {}
    for line in lines[1:]:
        words = line.split()
        if not words or words[0].startswith("#"):
            continue
        if not MIN_FIELDS <= len(words) <= len(FIELDS):
            continue
        server = SavedServer(dict(zip(FIELDS, words)))
        try:
            for name in ("srv_op_state", "srv_admin_state", "srv_uweight", "srv_iweight",
                         "srv_time_since_last_change", "srv_check_health", "srv_check_state"):
                server.number(name)
        except ValueError:
            continue
        saved.setdefault(server.key, server)
    return saved


def state_file_path(global_: model.Global, backend: model.Backend) -> Optional[str]:
    """The file ``backend`` reads its servers' states from, or None (server_state.c's
    srv_state_get_filepath)."""
    if backend.load_server_state == "global":
        name = global_.server_state_file
    elif backend.load_server_state == "local":
        name = backend.server_state_file_name or backend.name
    else:
        return None
    if name is None:
        return None
    if os.path.isabs(name) or not global_.server_state_base:
        return name
    return os.path.join(global_.server_state_base, name)


def load(operations: Any, config: model.Config) -> list[str]:
    """Read the state files of ``config``'s backends and apply them; the warnings, as HAProxy's."""
    warnings: list[str] = []
    files: dict[str, dict[tuple[str, str], SavedServer]] = {}
    for backend in operations.state.backends.values():
        path = state_file_path(config.global_, backend.model)
        if path is None:
            continue
        if path not in files:
            files[path] = {}
            which = "global server state file" if backend.model.load_server_state == "global" else \
                f"server state file of backend '{backend.name}'"
            try:
                with open(path, encoding="latin-1") as f:
                    files[path] = parse(f.read())
            except OSError as exc:
                warnings.append(f"config: Can't open {which} '{path}': {exc.strerror}")
            except StateFileError:
                warnings.append(f"config: Can't get version of the {which} '{path}'.")
        _apply_backend(operations, backend, files[path])
    return warnings


def carry(operations: Any, path: str, *, added_only: bool = False) -> None:
    """In master-worker mode, the states the former worker had (``show servers state``, saved by the
    master at the reload) on the backends that read no file of their own: without
    ``load-server-state-from-file``, what was set at run time survives the reload.  A backend with
    ``none`` starts as its configuration says; one with ``global`` or ``local`` reads its file.
    ``added_only``: only on the servers added at run time (added again after the worker started)."""
    try:
        with open(path, encoding="latin-1") as f:
            saved = parse(f.read())
    except (OSError, StateFileError) as exc:
        log.warning("the former worker's server states could not be read: %s", exc)
        return
    for backend in operations.state.backends.values():
        if backend.model.load_server_state is None:
            _apply_backend(operations, backend, saved, added_only=added_only)


def _apply_backend(operations: Any, backend: Any, saved: dict[tuple[str, str], SavedServer], *,
                   added_only: bool = False) -> None:
    for server in backend.live_servers:
        if added_only and not server.dynamic:
            continue
        line = saved.get((backend.name, server.slot.name))
        if line is not None:
            apply(operations, server, line)


def apply(operations: Any, server: Any, saved: SavedServer) -> None:
    """srv_state_srv_update(): one saved line on the server of the same name."""
    conf = server.slot.server
    servers = operations.servers
    if conf.check:
        if saved.number("srv_op_state") == OP_STOPPED:
            servers.set_health(server, "down")  # until its check brings it back, as haproxy
        else:
            server.check.health.health = min(max(saved.number("srv_check_health"), 0),
                                             server.check.health.top)
    admin = saved.number("srv_admin_state")
    configured_maint = bool(conf.disabled)
    if server.dynamic:  # added at run time, in maintenance: it was added again for this line
        if not admin & FMAINT:
            operations.set_admin(server, "UP")
    elif bool(admin & CMAINT) == configured_maint:  # the configuration kept its maintenance setting
        if admin & FMAINT and not configured_maint:
            operations.set_admin(server, "MAINT")
        elif not admin & FMAINT and configured_maint:
            operations.set_admin(server, "UP")
    if server.admin.name != "MAINT" and admin & FDRAIN:
        # A drain that came from a configured weight of 0 goes with it; one set at run time stays.
        if saved.number("srv_iweight") > 0 or conf.weight == 0:
            operations.set_admin(server, "DRAIN")
    check_state = saved.number("srv_check_state")
    if conf.check and check_state & CHECK_CONFIGURED and not check_state & CHECK_ENABLED:
        servers.set_checks(server, False)
    if saved.number("srv_iweight") == conf.weight:  # the file's weight unless the configuration's changed
        weight = saved.number("srv_uweight")
        if 0 <= weight <= 256:
            server.backend.balancer.set_weight(server.slot.name, weight)
    port = saved.fields.get("srv_port", "")
    if port.isdigit() and 0 < int(port) <= 65535 and int(port) != server.address[1]:
        # The port set at run time comes back (haproxy's address does not, for a server configured
        # with one: only its init-addr reads the file's, for a name to resolve).
        change_address(server, server.address[0], port)
    server.last_change = time.monotonic() - max(saved.number("srv_time_since_last_change"), 0)
