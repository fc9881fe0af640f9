# Included by _pump.pyx: each worker's idle, half-close and connect timeouts, in a hierarchical timer
# wheel (the classic Linux one, in milliseconds), so that a tick costs what is due, never a walk over
# every pair: a flood of idle connections must not delay anybody's timeout nor anybody's bytes.
#
# A pair is filed in one bucket at a time, linked through its timer_next/timer_prev slots (no memory
# beside the pair table).  Filing is lazy: traffic only moves a deadline later, so bytes never touch the
# wheel; when a pair's bucket comes due its real deadline is computed again (pair_due) and the pair
# either ends or is filed anew.  Only a deadline that moves earlier (a connect done, a direction
# half-closed and a shorter fin timeout) refiles at once (timer_update, after each turn of a pair).
#
# Level 0 has WHEEL0_SLOTS buckets of 1 ms; each upper level WHEELN_SLOTS buckets, each as long as the
# whole level below; an upper bucket is cascaded (its pairs filed again, closer) when the level below
# wraps to it.  Deadlines beyond the wheel's reach (~18.6 h) are filed at its edge and filed again from
# there.  The worker sleeps until the earliest deadline the wheel holds (timer_next_ms: exact for level
# 0, the bucket's cascade for upper ones, which is never later than its pairs' deadlines).

cdef enum:
    WHEEL0_BITS = 8
    WHEELN_BITS = 6
    WHEEL0_SLOTS = 256          # 1 << WHEEL0_BITS
    WHEELN_SLOTS = 64           # 1 << WHEELN_BITS
    WHEEL_LEVELS = 4            # level 0 and three upper levels: 2^26 ms
    WHEEL_REACH_BITS = 26       # WHEEL0_BITS + 3 * WHEELN_BITS
    MAX_WAIT_MS = 3600000       # the longest epoll_wait, whatever the wheel holds

cdef uint64_t NO_TIMER = 0xFFFFFFFFFFFFFFFFULL


cdef inline uint32_t level_shift(int level) noexcept nogil:
    """log2 of the length of one bucket of ``level`` (level >= 1)."""
    return WHEEL0_BITS + (level - 1) * WHEELN_BITS


cdef inline uint32_t level_start(int level) noexcept nogil:
    """Index in Worker.wheel of the first bucket of ``level`` (level >= 1)."""
    return WHEEL0_SLOTS + (level - 1) * WHEELN_SLOTS


cdef void wheel_init(Worker *w) noexcept nogil:
    cdef int i
    for i in range(WHEEL_BUCKETS):
        w.wheel[i] = -1
    w.timers = 0
    w.wheel_clock = 0  # set by the worker as it starts
    w.timer_next_ms = NO_TIMER


cdef uint64_t pair_due(Pair *p) noexcept nogil:
    """When the pair's timeout falls due on the worker clock as things stand; 0 when it has none."""
    cdef uint64_t due = 0, side
    cdef uint32_t limit
    if p.connecting:
        return p.client.seen_ms + p.timeouts.connect if p.timeouts.connect else 0
    limit = client_limit_of(p)
    if limit:
        due = p.client.seen_ms + limit
    limit = server_limit_of(p)
    if limit:
        side = p.server.seen_ms + limit
        if due == 0 or side < due:
            due = side
    return due


cdef void wheel_link(Worker *w, int32_t slot, uint64_t due) noexcept nogil:
    """Link the pair into the bucket of ``due`` (wheel_clock <= due < its reach) as the clock stands."""
    cdef Pair *p = &w.pairs[slot]
    cdef uint64_t distance = due - w.wheel_clock
    cdef uint32_t bucket
    cdef int level
    if distance < WHEEL0_SLOTS:
        bucket = <uint32_t>(due & (WHEEL0_SLOTS - 1))
    else:
        level = 1
        while distance >= (1ULL << (level_shift(level) + WHEELN_BITS)):
            level += 1
        bucket = level_start(level) + <uint32_t>((due >> level_shift(level)) & (WHEELN_SLOTS - 1))
    p.timer_next = w.wheel[bucket]
    p.timer_prev = -1
    if p.timer_next >= 0:
        w.pairs[p.timer_next].timer_prev = slot
    w.wheel[bucket] = slot
    p.timer_bucket = <uint16_t>bucket
    p.timer_due = <uint32_t>due


cdef void timer_file(Worker *w, int32_t slot, uint64_t due) noexcept nogil:
    """File an unfiled pair for ``due`` (a time already past runs on the next tick)."""
    if w.timers == 0 and w.now_ms > w.wheel_clock:
        w.wheel_clock = w.now_ms  # an empty wheel catches up at once rather than tick by tick
    if due < w.wheel_clock:
        due = w.wheel_clock
    if due - w.wheel_clock >= (1ULL << WHEEL_REACH_BITS):
        due = w.wheel_clock + (1ULL << WHEEL_REACH_BITS) - 1  # filed again from the edge
    wheel_link(w, slot, due)
    w.pairs[slot].timer_filed = 1
    w.timers += 1
    if due < w.timer_next_ms:
        w.timer_next_ms = due


cdef void timer_unfile(Worker *w, Pair *p) noexcept nogil:
    if not p.timer_filed:
        return
    if p.timer_prev >= 0:
        w.pairs[p.timer_prev].timer_next = p.timer_next
    else:
        w.wheel[p.timer_bucket] = p.timer_next
    if p.timer_next >= 0:
        w.pairs[p.timer_next].timer_prev = p.timer_prev
    p.timer_filed = 0
    w.timers -= 1


cdef void timer_update(Worker *w, int32_t slot) noexcept nogil:
    """After a turn of the pair: file it if it has a deadline and is not filed, or file it again if its
    deadline moved before the one it is filed for (later ones wait for their bucket: lazy)."""
    cdef Pair *p = &w.pairs[slot]
    cdef uint64_t due = pair_due(p)
    if due == 0:
        timer_unfile(w, p)
        return
    if p.timer_filed:
        # Wrap-aware: every filed deadline is within the wheel's reach of the clock.
        if <int32_t>(<uint32_t>due - p.timer_due) >= 0:
            return
        timer_unfile(w, p)
    timer_file(w, slot, due)


cdef void timer_expired(Worker *w, int32_t slot) noexcept nogil:
    """The pair's bucket came due (it is unfiled now): end it if its deadline passed, else file it anew."""
    cdef Pair *p = &w.pairs[slot]
    cdef uint64_t due
    cdef uint32_t limit
    if not p.active:
        return
    due = pair_due(p)
    if due == 0:
        return
    if due > w.now_ms:
        timer_file(w, slot, due)
        return
    if p.connecting:
        connect_failed(w, slot, ETIMEDOUT)
        return
    limit = client_limit_of(p)
    if limit and w.now_ms - p.client.seen_ms >= limit:
        end_pair(w, slot, END_CLIENT_TIMEOUT)
    else:
        end_pair(w, slot, END_SERVER_TIMEOUT)


cdef void cascade(Worker *w, int level, uint32_t index) noexcept nogil:
    """File again, closer, the pairs of an upper bucket whose time has come (the clock is its start)."""
    cdef uint32_t bucket = level_start(level) + index
    cdef int32_t slot = w.wheel[bucket], next_slot
    w.wheel[bucket] = -1
    while slot >= 0:
        next_slot = w.pairs[slot].timer_next
        # The full deadline from its low 32 bits: filed within the wheel's reach of the clock.
        wheel_link(w, slot, w.wheel_clock + <uint32_t>(w.pairs[slot].timer_due - <uint32_t>w.wheel_clock))
        slot = next_slot


cdef void run_timers(Worker *w) noexcept nogil:
    """Run every tick of the wheel up to now: cascades, then the pairs of each level-0 bucket."""
    cdef uint32_t index
    cdef int level
    cdef int32_t slot, next_slot
    while w.wheel_clock <= w.now_ms:
        if w.timers == 0:
            w.wheel_clock = w.now_ms + 1
            break
        index = <uint32_t>(w.wheel_clock & (WHEEL0_SLOTS - 1))
        if index == 0:
            for level in range(1, WHEEL_LEVELS):
                cascade(w, level, <uint32_t>((w.wheel_clock >> level_shift(level)) & (WHEELN_SLOTS - 1)))
                if (w.wheel_clock >> level_shift(level)) & (WHEELN_SLOTS - 1):
                    break
        # Taken whole before the clock moves: a pair filed again lands in a later tick's bucket.
        slot = w.wheel[index]
        w.wheel[index] = -1
        w.wheel_clock += 1
        while slot >= 0:
            next_slot = w.pairs[slot].timer_next
            w.pairs[slot].timer_filed = 0
            w.timers -= 1
            timer_expired(w, slot)
            slot = next_slot
    w.timer_next_ms = next_due(w)


cdef uint64_t next_due(Worker *w) noexcept nogil:
    """The earliest time the wheel has work: a level-0 pair's deadline, or the cascade of the first
    non-empty upper bucket (its pairs fall due then or later); NO_TIMER when it holds nothing."""
    cdef uint64_t clock = w.wheel_clock, best = NO_TIMER, at, span
    cdef uint32_t i, index, shift
    cdef int level
    if w.timers == 0:
        return NO_TIMER
    for i in range(<uint32_t>(clock & (WHEEL0_SLOTS - 1)), WHEEL0_SLOTS):
        if w.wheel[i] >= 0:
            return (clock & ~(<uint64_t>WHEEL0_SLOTS - 1)) + i
    for i in range(<uint32_t>(clock & (WHEEL0_SLOTS - 1))):
        if w.wheel[i] >= 0:  # the next round of level 0
            best = (clock & ~(<uint64_t>WHEEL0_SLOTS - 1)) + WHEEL0_SLOTS + i
            break
    for level in range(1, WHEEL_LEVELS):
        shift = level_shift(level)
        span = 1ULL << shift
        at = (clock + span - 1) & ~(span - 1)  # the level's first cascade from now on
        if at >= best:
            break
        for i in range(WHEELN_SLOTS):
            index = <uint32_t>(((at >> shift) + i) & (WHEELN_SLOTS - 1))
            if w.wheel[level_start(level) + index] >= 0:
                if at + i * span < best:
                    best = at + i * span
                break
    return best
