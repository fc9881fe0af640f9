"""Event rates over a sliding second: HAProxy's ``freq_ctr``, sans-IO (the caller passes the time).

A counter keeps the events of the current one-second period and the count of the previous period; the
rate is the current count plus the previous count weighted by the part of the previous period still
inside the sliding second.  ``rate-limit sessions`` and ``maxconnrate`` accept a connection while that
rate is under the limit (``remain``), and otherwise wait until it drops below (``delay``).
"""

from __future__ import annotations

MIN_DELAY = 0.001  # HAProxy waits at least one millisecond


class FreqCounter:
    """Events per second, over a sliding one-second window."""

    __slots__ = ("start", "current", "previous")

    def __init__(self) -> None:
        self.start = 0.0  # when the current period began
        self.current = 0  # events in the current period
        self.previous = 0  # events in the period before

    def _rotate(self, now: float) -> None:
        elapsed = now - self.start
        if elapsed < 1.0:
            return
        if elapsed < 2.0:
            self.previous, self.start = self.current, self.start + 1.0
        else:  # a whole period without events: the window starts afresh
            self.previous, self.start = 0, now
        self.current = 0

    def add(self, now: float, count: int = 1) -> None:
        self._rotate(now)
        self.current += count

    def rate(self, now: float) -> float:
        """Events over the second before ``now``, as HAProxy estimates them."""
        self._rotate(now)
        return self.current + self.previous * (1.0 - (now - self.start))

    def remain(self, now: float, limit: int) -> int:
        """How many more events the ``limit`` allows now (0 when it is reached)."""
        return max(limit - int(self.rate(now)), 0)

    def delay(self, now: float, limit: int) -> float:
        """Seconds until the ``limit`` allows one more event (0 if it does now)."""
        if self.remain(now, limit):
            return 0.0
        # The rate falls linearly as the previous period slides out of the window: find when it goes
        # under the limit, in this period or, once this one is the previous, in the next.
        start, current, previous = self.start, self.current, self.previous
        if current < limit:  # previous > 0 here: its share shrinks below limit - current
            at = start + 1.0 - (limit - current) / previous
        else:
            at = start + 2.0 - limit / current
        return max(at - now, 0.0) + MIN_DELAY
