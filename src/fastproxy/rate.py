"""Event rates over a sliding period: HAProxy's ``freq_ctr``, sans-IO (the caller passes the time).

A counter keeps the events of the current period and the count of the previous period; the rate is the
current count plus the previous count weighted by the part of the previous period still inside the
sliding window.  The period is one second unless the caller says otherwise (``period``, in seconds:
HAProxy's ``freq_ctr_period``, which stick tables use for ``conn_rate(10s)`` and the like; the counter
does not keep it, so that a table of a million counters does not store it a million times).
``rate-limit sessions`` and ``maxconnrate`` accept a connection while that rate is under the limit
(``remain``), and otherwise wait until it drops below (``delay``).
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

    def _rotate(self, now: float, period: float) -> None:
        elapsed = now - self.start
        if elapsed < period:
            return
        if elapsed < 2.0 * period:
            self.previous, self.start = self.current, self.start + period
        else:  # a whole period without events: the window starts afresh
            self.previous, self.start = 0, now
        self.current = 0

    def add(self, now: float, count: int = 1, period: float = 1.0) -> None:
        self._rotate(now, period)
        self.current += count

    def rate(self, now: float, period: float = 1.0) -> float:
        """Events over the period before ``now``, as HAProxy estimates them."""
        self._rotate(now, period)
        return self.current + self.previous * (1.0 - (now - self.start) / period)

    def set(self, now: float, count: int) -> None:
        """The rate is ``count`` from now on, with nothing before (``set table ... data.conn_rate``)."""
        self.start, self.current, self.previous = now, count, 0

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
