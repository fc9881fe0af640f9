"""An engine running in the fuzzing process, for the targets that drive the runtime API and the stats
listener with their real operations: a stats socket, a ``listen stats`` page, a frontend over two
servers and a stick table, all on 127.0.0.1 (a directory of its own for the socket)."""

from __future__ import annotations

import asyncio
import sys
import tempfile
from pathlib import Path

from fastproxy.config import parse_text
from fastproxy.engine import Engine

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.support import OPERATED_CONFIG, free_port  # noqa: E402  (the file the live tests fuzz too)


class LiveEngine:
    """``loop`` runs the engine; ``ports`` are its frontend's and its stats listener's."""

    def __init__(self) -> None:
        self.directory = tempfile.mkdtemp(prefix="fastproxy-fuzz-")
        self.ports = {name: free_port() for name in ("fe", "s1", "s2", "stats")}
        config = parse_text(OPERATED_CONFIG.format(directory=self.directory, **self.ports), "live.cfg")
        self.loop = asyncio.new_event_loop()
        self.engine = Engine(config)
        self.loop.run_until_complete(self.engine.start())
        assert self.engine.operations is not None
        self.operations = self.engine.operations
