# Included by _pump.pyx: a worker thread's loop (epoll, the ready list, the timer wheel's ticks) and the
# commands others leave for it under its lock: new pairs, cuts, stop, lane changes.

# --- commands: what Python and the other workers ask of a worker ---------------------------------------
#
# A worker owns its pairs alone; others reach it only through the fields of its Worker struct guarded
# by its lock (incoming pairs, cut and stop requests, lane changes), then wake it on its eventfd.  A
# Command is the mutation, applied by ``command`` under the lock; it says whether the worker must wake.

cdef enum CommandResult:
    QUIET = 0               # nothing for the worker to take now (already woken for it, or applied here)
    WAKE = 1
    REFUSED = -1            # no memory: nothing was changed

ctypedef int (*Command)(Worker *w, void *arg) noexcept nogil


cdef inline void wake(Worker *w) noexcept nogil:
    """Make the worker's epoll_wait return and take its commands."""
    cdef uint64_t one = 1
    write(w.wake_fd, &one, sizeof(one))


cdef int command(Worker *w, Command apply, void *arg) noexcept nogil:
    """Apply ``apply(w, arg)`` under the worker's lock, then wake the worker if it asks; its result."""
    cdef int result
    pthread_mutex_lock(&w.lock)
    result = apply(w, arg)
    pthread_mutex_unlock(&w.lock)
    if result == WAKE:
        wake(w)
    return result


cdef int queue_pair(Worker *w, void *arg) noexcept nogil:
    """Command: a new pair (a NewPair, copied) for the worker to register, from Python's add_pair or
    from a lane's accept on another worker."""
    cdef NewPair *grown
    if w.incoming_len == w.incoming_cap:
        grown = <NewPair *>realloc(w.incoming, (w.incoming_cap * 2 + 16) * sizeof(NewPair))
        if grown == NULL:
            return REFUSED
        w.incoming = grown
        w.incoming_cap = w.incoming_cap * 2 + 16
    memcpy(&w.incoming[w.incoming_len], arg, sizeof(NewPair))
    w.incoming_len += 1
    fp_atomic_add_int(&w.handed, 1)
    # Pairs queued behind a first one ride on its wake-up: the worker takes the whole queue.
    return WAKE if w.incoming_len == 1 else QUIET


cdef void command_all(Shared *sh, Command apply, void *arg) noexcept nogil:
    """One command for every worker, in turn."""
    cdef Worker *workers = <Worker *>sh.workers
    cdef int i
    for i in range(sh.nworkers):
        command(&workers[i], apply, arg)


cdef inline bint hand_over(Worker *w, NewPair *np) noexcept nogil:
    """Queue a new pair for ``w``; False if it cannot take it (no memory)."""
    return command(w, queue_pair, np) != REFUSED


# What Pump.cut, stop, cut_server and cut_pair ask of every worker.
cdef struct Requests:
    uint8_t cut             # end every pair (SHUTDOWN)
    uint8_t stop            # and leave the loop
    int32_t server_block    # end this server's pairs (SERVER_DOWN); -1: none
    uint64_t tag            # end the pair of this tag (SHUTDOWN); 0: none (no pair has tag 0)


cdef int take_requests(Worker *w, void *arg) noexcept nogil:
    """Command: the requests of a Requests."""
    cdef Requests *r = <Requests *>arg
    if r.cut:
        w.cut_requested = 1
    if r.stop:
        w.stop_requested = 1
    if r.server_block >= 0:
        if w.cut_servers_len < MAX_CUT_SERVERS:
            w.cut_servers[w.cut_servers_len] = r.server_block
            w.cut_servers_len += 1
        # else: 64 servers already waiting for this worker; the rest of this one's pairs end on their
        # own (their server is down: resets or timeouts), unrelated clients are not cut.
    if r.tag:
        if w.cut_pairs_len == MAX_CUT_PAIRS:
            return QUIET  # an operator's burst beyond 64 within one wake-up: the rest wait for another
        w.cut_pairs[w.cut_pairs_len] = r.tag
        w.cut_pairs_len += 1
    return WAKE


cdef void request_all(Shared *sh, bint cut, bint stop, int32_t server_block, uint64_t tag) noexcept nogil:
    cdef Requests r
    r.cut = cut
    r.stop = stop
    r.server_block = server_block
    r.tag = tag
    command_all(sh, take_requests, &r)


# --- the worker's side -----------------------------------------------------------------------------------

cdef void end_all(Worker *w, int reason) noexcept nogil:
    cdef uint32_t slot
    for slot in range(w.high):
        if w.pairs[slot].active:
            end_pair(w, <int32_t>slot, reason)


cdef bint take_commands(Worker *w) noexcept nogil:
    """Take what others left under the lock (pairs, lane changes, cuts); True when the worker must stop."""
    cdef uint64_t value
    cdef uint32_t i, cut_servers, cut_pairs
    cdef int32_t blocks[MAX_CUT_SERVERS]
    cdef uint64_t tags[MAX_CUT_PAIRS]
    cdef bint cut, stop
    cdef DetachRequest *detach
    read(w.wake_fd, &value, sizeof(value))
    pthread_mutex_lock(&w.lock)
    for i in range(w.incoming_len):
        register_pair(w, &w.incoming[i])
    fp_atomic_add_int(&w.handed, -<int>w.incoming_len)
    w.incoming_len = 0
    if w.lane_commands:
        w.lane_commands = 0
        take_lane_commands(w)
    cut = w.cut_requested
    stop = w.stop_requested
    w.cut_requested = 0
    cut_servers = w.cut_servers_len
    for i in range(cut_servers):
        blocks[i] = w.cut_servers[i]
    w.cut_servers_len = 0
    cut_pairs = w.cut_pairs_len
    for i in range(cut_pairs):
        tags[i] = w.cut_pairs[i]
    w.cut_pairs_len = 0
    detach = w.detach
    w.detach = NULL
    pthread_mutex_unlock(&w.lock)
    if detach != NULL:
        detach_requested(w, detach)  # moves.pxi
    if cut or stop:
        end_all(w, END_SHUTDOWN)
        return stop
    if cut_servers:
        end_servers(w, blocks, cut_servers)
    if cut_pairs:
        end_tagged(w, tags, cut_pairs)
    return stop


cdef void end_tagged(Worker *w, uint64_t *tags, uint32_t count) noexcept nogil:
    """End the pairs of the given tags, if this worker has them (``shutdown session``)."""
    cdef uint32_t slot, k
    for slot in range(w.high):
        if not w.pairs[slot].active:
            continue
        for k in range(count):
            if w.pairs[slot].tag == tags[k]:
                end_pair(w, <int32_t>slot, END_SHUTDOWN)
                break


cdef void end_servers(Worker *w, int32_t *blocks, uint32_t count) noexcept nogil:
    """End the established pairs of the given servers (connects in progress end too: their server
    is no longer one to wait for)."""
    cdef uint32_t slot, k
    for slot in range(w.high):
        if not w.pairs[slot].active:
            continue
        for k in range(count):
            if w.pairs[slot].server_block == blocks[k]:
                end_pair(w, <int32_t>slot, END_SERVER_DOWN)
                break


cdef inline uint32_t client_limit_of(Pair *p) noexcept nogil:
    """The client side's idle limit now: ``client-fin`` once a direction is half-closed, if set."""
    if (p.c2s.eof or p.s2c.eof) and p.timeouts.client_fin:
        return p.timeouts.client_fin
    return p.timeouts.client


cdef inline uint32_t server_limit_of(Pair *p) noexcept nogil:
    if (p.c2s.eof or p.s2c.eof) and p.timeouts.server_fin:
        return p.timeouts.server_fin
    return p.timeouts.server


cdef (int64_t, int64_t) pair_expiries(Pair *p, uint64_t now) noexcept nogil:
    """Milliseconds before the client side's and the server side's timeout (-1: none), for show sess;
    while connecting, the server side's is the connect timeout."""
    cdef int64_t client_left = -1, server_left = -1
    cdef uint32_t limit
    if p.connecting:
        if p.timeouts.connect:
            server_left = max(<int64_t>p.timeouts.connect - <int64_t>elapsed_ms(now, p.client.seen_ms), 0)
        return client_left, server_left
    limit = client_limit_of(p)
    if limit:
        client_left = max(<int64_t>limit - <int64_t>elapsed_ms(now, p.client.seen_ms), 0)
    limit = server_limit_of(p)
    if limit:
        server_left = max(<int64_t>limit - <int64_t>elapsed_ms(now, p.server.seen_ms), 0)
    return client_left, server_left


cdef void run_worker(Worker *w) noexcept nogil:
    cdef epoll_event events[MAX_EVENTS]
    cdef int n, i, timeout
    cdef uint32_t k, count_ready
    cdef int32_t *swap
    cdef int32_t slot
    cdef uint64_t token
    cdef uint32_t flags
    cdef Pair *p
    cdef Side *side
    w.now_ms = monotonic_ms()
    w.wheel_clock = w.now_ms
    while True:
        # Asleep until the next bytes, command or timeout, whatever else is open: nothing to scan.
        if w.ready_len:
            timeout = 0
        elif w.timer_next_ms != NO_TIMER:
            timeout = <int>min(w.timer_next_ms - w.now_ms, MAX_WAIT_MS) if w.timer_next_ms > w.now_ms else 0
        else:
            timeout = -1
        if w.lanes_paused and (timeout < 0 or timeout > LANE_RECHECK_MS):
            timeout = LANE_RECHECK_MS
        n = epoll_wait(w.epfd, events, MAX_EVENTS, timeout)
        w.now_ms = monotonic_ms()
        for i in range(n):
            token = events[i].data.u64
            if token == WAKE_TOKEN:
                if take_commands(w):
                    return
                continue
            if token & LANE_TOKEN:
                lane_accept(w, <uint32_t>(token & 0xFFFF))
                continue
            slot = <int32_t>(token >> 1)
            p = &w.pairs[slot]
            if not p.active:
                continue
            side = &p.server if token & 1 else &p.client
            flags = events[i].events
            if flags & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR):
                side.readable = 1
            if flags & (EPOLLRDHUP | EPOLLHUP | EPOLLERR):
                side.hup = 1
                if flags & EPOLLRDHUP and not flags & EPOLLERR:
                    side.fin = 1
            if flags & (EPOLLOUT | EPOLLHUP | EPOLLERR):
                side.writable = 1
            progress(w, slot)
        # Pairs that spent their budget, and new ones, run once more after everybody else.
        if w.ready_len:
            swap = w.ready
            w.ready = w.ready_next
            w.ready_next = swap
            count_ready = w.ready_len
            w.ready_len = 0
            for k in range(count_ready):
                slot = w.ready[k]
                w.pairs[slot].queued = 0
                progress(w, slot)
        if w.lanes_paused:
            lanes_resume(w)
        if w.now_ms >= w.timer_next_ms:
            run_timers(w)
