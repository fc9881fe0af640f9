"""Admission: how many connections the listeners may accept now (HAProxy's ``maxconn``,
``maxconnrate`` and ``rate-limit sessions``).

``AdmissionControl`` answers each listener's "how many may I accept?" before it accepts, counts every
connection Python opens and closes, and pauses listeners at a limit: the global ``maxconn`` pauses
every listener, a frontend's ``maxconn`` its own, and a rate limit the listeners it covers until the
sliding second (``rate.FreqCounter``) has room again.  Clients wait in the kernel's backlog meanwhile,
as with HAProxy.  Lanes keep their own count in the pump, which enforces ``maxconn`` for them; a
frontend with a rate limit is never a lane.
"""

from __future__ import annotations

import asyncio
from typing import Optional

from .pump import Counter
from .rate import FreqCounter
from .runtime import FrontendRuntime, Runtime


class AdmissionControl:
    """The limits on accepting, for every frontend of one running configuration."""

    def __init__(self, state: Runtime) -> None:
        self.state = state
        g = state.config.global_
        self.accept_rate = FreqCounter()  # for ``maxconnrate``
        # Some rate limit applies: accepts are counted.
        self.rate_limited = bool(g.maxconnrate or any(fe.rate_limit_sessions
                                                      for fe in state.config.frontends.values()))
        self._rate_timers: dict[Optional[str], asyncio.TimerHandle] = {}  # frontend (None: all) -> resume
        self._paused_for_maxconn = False

    def admit(self, frontend: FrontendRuntime) -> int:
        """How many connections ``frontend`` may accept now; at 0 its listeners (or all) pause."""
        room = 1 << 30
        limit = self.state.maxconn
        if limit:
            room = limit - self.state.current
            if room <= 0:
                self._pause_all()
                return 0
        if frontend.maxconn:
            frontend_room = frontend.maxconn - frontend.current
            if frontend_room <= 0:
                for listener in frontend.listeners:
                    listener.pause()
                return 0
            room = min(room, frontend_room)
        if self.rate_limited:
            room = min(room, self._rate_room(frontend))
        return room

    def opened(self, frontend: FrontendRuntime) -> None:
        """A connection Python accepted."""
        state = self.state
        state.python_current += 1
        if state.lane_listeners:  # the pump counts every open connection against the global maxconn
            state.pump.lanes.open_delta(1)
        frontend.current += 1
        state.pump.add_counter(frontend.block, Counter.CONN_CUR, 1)
        state.pump.add_counter(frontend.block, Counter.CONN_TOTAL, 1)
        if self.rate_limited:
            now = state.loop.time()
            self.accept_rate.add(now)
            frontend.session_rate.add(now)

    def adopted(self, frontend: FrontendRuntime) -> None:
        """A connection accepted (and counted) elsewhere is Python's from now on: a lane's, or one
        a reload moved from the former worker."""
        state = self.state
        state.python_current += 1
        frontend.current += 1
        state.pump.add_counter(frontend.block, Counter.CONN_CUR, 1)
        if state.lane_listeners:
            state.pump.lanes.open_delta(1)

    def closed(self, frontend: FrontendRuntime) -> None:
        """A connection Python held has ended: a slot is free again."""
        state = self.state
        state.python_current -= 1
        if state.lane_listeners:
            state.pump.lanes.open_delta(-1)
        frontend.current -= 1
        state.pump.add_counter(frontend.block, Counter.CONN_CUR, -1)
        if state.stopping:
            if not state.current:
                state.idle.set()
            return
        # Listeners paused by a limit accept once more.
        limit = state.maxconn
        if self._paused_for_maxconn and (not limit or state.current < limit):
            self._paused_for_maxconn = False
            for runtime in state.frontends.values():
                if not runtime.maxconn or runtime.current < runtime.maxconn:
                    for listener in runtime.listeners:
                        listener.resume()
        elif frontend.maxconn and frontend.current < frontend.maxconn:
            if not self._paused_for_maxconn:
                for listener in frontend.listeners:
                    listener.resume()

    def limits_changed(self) -> None:
        """``set maxconn global|frontend``: listeners paused at a former limit look again (each asks
        ``admit`` before accepting, so one still at a limit pauses again)."""
        self._paused_for_maxconn = False
        for runtime in self.state.frontends.values():
            for listener in runtime.listeners:
                listener.resume()

    def stop(self) -> None:
        for timer in self._rate_timers.values():
            timer.cancel()
        self._rate_timers.clear()

    def _rate_room(self, frontend: FrontendRuntime) -> int:
        """How many connections ``maxconnrate`` and the frontend's ``rate-limit sessions`` let in now.
        At 0 the listeners they cover pause until the rate allows one more."""
        now = self.state.loop.time()
        room = 1 << 30
        limits = ((self.accept_rate, self.state.config.global_.maxconnrate, None),
                  (frontend.session_rate, frontend.model.rate_limit_sessions, frontend))
        for counter, limit, runtime in limits:
            if limit:
                remain = counter.remain(now, limit)
                if not remain:
                    self._pause_for_rate(runtime, counter.delay(now, limit))
                    return 0
                room = min(room, remain)
        return room

    def _pause_for_rate(self, frontend: Optional[FrontendRuntime], delay: float) -> None:
        """Pause ``frontend``'s listeners (every listener for None) for ``delay`` seconds."""
        runtimes = [frontend] if frontend is not None else list(self.state.frontends.values())
        for runtime in runtimes:
            for listener in runtime.listeners:
                listener.pause()
        key = frontend.name if frontend is not None else None
        if key not in self._rate_timers:
            self._rate_timers[key] = self.state.loop.call_later(delay, self._rate_allows, key)

    def _rate_allows(self, key: Optional[str]) -> None:
        # Resumed listeners ask admit() again before accepting: any limit still reached pauses them.
        self._rate_timers.pop(key, None)
        for runtime in self.state.frontends.values():
            if key is None or runtime.name == key:
                for listener in runtime.listeners:
                    listener.resume()

    def _pause_all(self) -> None:
        self._paused_for_maxconn = True
        for runtime in self.state.frontends.values():
            for listener in runtime.listeners:
                listener.pause()
