"""Counters that continue across a reload in master-worker mode: ``show stat`` and Prometheus totals
(sessions, bytes in and out, connection errors, resets, timeouts) do not restart from zero.

The master asks the former worker for its totals (``_counters``) once the new worker serves, and
hands them to the new one (``_addcounters``), which adds them to its own; when the former worker
ends, it tells the master its final totals over their link, and what it counted since (the
connections it finished) is handed to the current worker too.  A total is known by what it counts
(``f:<frontend>``, ``b:<backend>``, ``s:<backend>/<server>``): a proxy or server the new
configuration no longer has takes its totals with it.  What is carried is what the pump counts;
gauges (current sessions) and the maxima and rates start again, as they describe the process.

Counts are the ones shown (net of ``clear counters all``), as JSON without blanks, so that they
pass as one word of a runtime API request.
"""

from __future__ import annotations

import json
from typing import Any

from .pump import Counter

CARRIED = (Counter.BYTES_IN, Counter.BYTES_OUT, Counter.CONN_TOTAL, Counter.CONNECT_ERRORS, Counter.RESETS,
           Counter.TIMEOUTS)

Totals = dict[str, list[int]]


def _blocks(operations: Any) -> dict[str, int]:
    state = operations.state
    blocks = {f"f:{name}": frontend.block for name, frontend in state.frontends.items()}
    for name, backend in state.backends.items():
        blocks[f"b:{name}"] = backend.block
        for server in backend.live_servers:
            blocks[f"s:{server.name}"] = server.block
    return blocks


def totals(operations: Any) -> Totals:
    """Every counter block's carried totals, as ``show stat`` shows them."""
    found: Totals = {}
    for key, block in _blocks(operations).items():
        counts = list(operations.pump.counters(block))
        base = operations.cleared.get(block)
        found[key] = [counts[field] - (base[field] if base else 0) for field in CARRIED]
    return found


def add(operations: Any, carried: Totals) -> None:
    """Add ``carried`` to the blocks of the same names."""
    blocks = _blocks(operations)
    for key, values in carried.items():
        block = blocks.get(key)
        if block is None or len(values) != len(CARRIED):
            continue
        for field, value in zip(CARRIED, values):
            if value > 0:
                operations.pump.add_counter(block, field, int(value))


def since(final: Totals, earlier: Totals) -> Totals:
    """What was counted between two readings of one worker."""
    return {key: [max(a - b, 0) for a, b in zip(values, earlier.get(key, [0] * len(values)))]
            for key, values in final.items()}


def encode(carried: Totals) -> str:
    return json.dumps(carried, separators=(",", ":"))


def decode(text: str) -> Totals:
    """ValueError on anything but an object of lists of integers."""
    value = json.loads(text)
    if not isinstance(value, dict) or not all(isinstance(v, list) and all(isinstance(n, int) for n in v)
                                              for v in value.values()):
        raise ValueError("expects {name: [counts...]}")
    return value
