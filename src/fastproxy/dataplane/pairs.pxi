# Included by _pump.pyx: one pair of sockets, from registration to its end: the connect in progress,
# moving bytes both ways (recv/send through the worker's scratch buffer, or splice through a pipe),
# and the end (resets passed on as resets, counters, the record for Python).  Lanes reach in only
# through lane_pair_ended, lane_hand_back and lane_closed (lanes.pxi), lane_untrack (sticktable.pxi)
# and lane_log (lanelog.pxi).

# --- the end of a pair ---------------------------------------------------------------------------------

cdef void end_pair(Worker *w, int32_t slot, int reason) noexcept nogil:
    cdef Pair *p = &w.pairs[slot]
    cdef Shared *sh = w.shared
    cdef uint32_t queue, total
    if not p.active:
        return
    timer_unfile(w, p)
    if p.log_end and w.lanes[p.lane].nlog_sinks:  # before its counts drop: its line counts it, as HAProxy's
        lane_log(w, &w.lanes[p.lane], p, reason)
    # A reset is passed on as a reset, never as a clean FIN.
    if reason == END_CLIENT_RESET:
        fp_set_linger0(p.server.fd)
    elif reason == END_SERVER_RESET:
        fp_set_linger0(p.client.fd)
    close(p.client.fd)
    close(p.server.fd)
    release_direction(w, &p.c2s)
    release_direction(w, &p.s2c)
    if not p.connecting:
        count_sub(sh, p.server_block, CNT_CONN_CUR, 1)
        # Only an established pair has session times (HAProxy skips a stream that never connected).
        queue = elapsed_ms(p.dialed_ms, p.accepted_ms)
        total = elapsed_ms(w.now_ms, p.accepted_ms)
        fold_times(sh, p.server_block, queue, p.connect_ms, total)
        fold_times(sh, p.backend_block, queue, p.connect_ms, total)
    if reason == END_CLIENT_RESET or reason == END_SERVER_RESET:
        count(sh, p.frontend_block, CNT_RESETS, 1)
        count(sh, p.server_block, CNT_RESETS, 1)
    elif reason == END_CLIENT_TIMEOUT or reason == END_SERVER_TIMEOUT:
        count(sh, p.frontend_block, CNT_TIMEOUTS, 1)
        count(sh, p.server_block, CNT_TIMEOUTS, 1)
    if p.lane >= 0:
        lane_pair_ended(w, p, reason)
    else:
        push_pair_record(sh, p, REC_PAIR_ENDED, reason, 0)
    p.active = 0
    w.free_slots[w.free_len] = slot
    w.free_len += 1
    fp_atomic_add_int(&w.active, -1)


cdef inline void count_established(Shared *sh, Pair *p) noexcept nogil:
    count(sh, p.server_block, CNT_CONN_CUR, 1)
    count(sh, p.server_block, CNT_CONN_TOTAL, 1)


cdef void connect_failed(Worker *w, int32_t slot, int error) noexcept nogil:
    """The upstream could not be reached: close it, and give the client back to Python untouched."""
    cdef Pair *p = &w.pairs[slot]
    timer_unfile(w, p)
    epoll_ctl(w.epfd, EPOLL_CTL_DEL, p.client.fd, NULL)
    close(p.server.fd)
    if p.lane >= 0:
        lane_hand_back(w, &w.lanes[p.lane], p.client.fd, p.tag, p.server_block, error, p.peer, p.tracked)
    else:
        push_pair_record(w.shared, p, REC_CONNECT_FAILED, END_CONNECT_FAILED, error)
    p.active = 0
    w.free_slots[w.free_len] = slot
    w.free_len += 1
    fp_atomic_add_int(&w.active, -1)


cdef bint connect_done(Worker *w, int32_t slot) noexcept nogil:
    """While connecting: True once connected; False while waiting or after a failure was handled."""
    cdef Pair *p = &w.pairs[slot]
    cdef int error = 0
    cdef socklen_t size = sizeof(error)
    if not (p.server.writable or p.server.hup):
        return False
    # Writable without an error or hang-up is a success; only then can we spare the getsockopt.
    if p.server.hup and getsockopt(p.server.fd, SOL_SOCKET, SO_ERROR, &error, &size) < 0:
        error = errno
    if error:
        connect_failed(w, slot, error)
        return False
    p.connecting = 0
    p.client.seen_ms = p.server.seen_ms = w.now_ms
    p.connect_ms = elapsed_ms(w.now_ms, p.dialed_ms)
    count_established(w.shared, p)
    return True


# --- moving bytes ------------------------------------------------------------------------------------

cdef int pump_direction(Worker *w, Pair *p, Direction *d, Direction *other, Side *src, Side *dst,
                        int field) noexcept nogil:
    """Move what can move from src to dst now; say why it stopped."""
    cdef Shared *sh = w.shared
    cdef ssize_t n, m
    cdef int budget = READ_BUDGET
    cdef int err
    while True:
        # 1. What was read already goes out first, in order.
        if d.pipe_len:
            if not dst.writable:
                return P_WAIT
            n = splice(d.pipe_r, NULL, d.dst, NULL, d.pipe_len, SPLICE_F_MOVE | SPLICE_F_NONBLOCK)
            if n < 0:
                err = errno
                if err == EAGAIN:
                    dst.writable = 0
                    return P_WAIT
                if err == EINTR:
                    continue
                return P_DST_FAILED
            d.pipe_len -= <uint32_t>n
            d.bytes += <uint64_t>n
            dst.seen_ms = w.now_ms
            count(sh, p.frontend_block, field, <uint64_t>n)
            count(sh, p.server_block, field, <uint64_t>n)
            if d.pipe_len:
                dst.writable = 0
                return P_WAIT
            continue
        if d.buf_len:
            if not dst.writable:
                return P_WAIT
            n = send(d.dst, d.buf + d.buf_off, d.buf_len, MSG_NOSIGNAL | MSG_DONTWAIT)
            if n < 0:
                err = errno
                if err == EAGAIN:
                    dst.writable = 0
                    return P_WAIT
                if err == EINTR:
                    continue
                return P_DST_FAILED
            d.buf_off += <uint32_t>n
            d.buf_len -= <uint32_t>n
            d.bytes += <uint64_t>n
            dst.seen_ms = w.now_ms
            count(sh, p.frontend_block, field, <uint64_t>n)
            count(sh, p.server_block, field, <uint64_t>n)
            if d.buf_len:
                dst.writable = 0
                return P_WAIT
            drop_buffer(w, d)
            continue

        # 2. Nothing in flight: pass a FIN on, or read more.
        if d.eof:
            if not d.shut:
                # When the other direction is already over, the pair ends now and close() sends this
                # FIN: the shutdown would be a syscall for nothing.  Errors are ignored: a peer that
                # is gone says so on its own read side.
                if not other.shut:
                    shutdown(d.dst, SHUT_WR)
                d.shut = 1
                give_pipe(w, d)
            return P_WAIT
        if not src.readable:
            give_pipe(w, d)  # an idle direction holds no pipe
            return P_WAIT
        if not dst.writable:
            return P_WAIT  # backpressure: leave the bytes in the kernel
        if budget == 0:
            return P_MORE
        budget -= 1

        if d.splicing and (d.pipe_r >= 0 or take_pipe(w, d)):
            n = splice(d.src, NULL, d.pipe_w, NULL, sh.pipesize, SPLICE_F_MOVE | SPLICE_F_NONBLOCK)
            if n < 0:
                err = errno
                if err == EAGAIN:
                    src.readable = 0
                    give_pipe(w, d)
                    return P_WAIT
                if err == EINTR:
                    continue
                return P_SRC_FAILED
            if n == 0:
                d.eof = 1
                continue
            d.pipe_len = <uint32_t>n
            src.seen_ms = w.now_ms
            continue

        n = recv(d.src, w.scratch, sh.bufsize, 0)
        if n < 0:
            err = errno
            if err == EAGAIN:
                src.readable = 0
                return P_WAIT
            if err == EINTR:
                continue
            return P_SRC_FAILED
        if n == 0:
            d.eof = 1
            continue
        src.seen_ms = w.now_ms
        if <uint32_t>n == sh.bufsize:
            # A full read means a stream: from now on this direction goes through a pipe.
            if sh.splice_enabled:
                d.splicing = 1
        elif src.fin:
            # The FIN was queued before this read (RDHUP says so only once every byte before it is),
            # and a short read stops only at the end of the queue: it took the FIN too, so the read
            # that would return 0 is a syscall for nothing (one per direction per connection).
            d.eof = 1
        elif not src.hup:
            # A short read drained the socket; epoll says when more comes (unless a FIN or an error
            # is pending, which only another read can consume).
            src.readable = 0
        m = send(d.dst, w.scratch, <size_t>n, MSG_NOSIGNAL | MSG_DONTWAIT)
        if m < 0:
            err = errno
            if err != EAGAIN and err != EINTR:
                return P_DST_FAILED
            m = 0
        if m > 0:
            d.bytes += <uint64_t>m
            dst.seen_ms = w.now_ms
            count(sh, p.frontend_block, field, <uint64_t>m)
            count(sh, p.server_block, field, <uint64_t>m)
        if m < n:
            d.buf = take_buffer(w)
            if d.buf == NULL:
                return P_NO_MEMORY
            memcpy(d.buf, w.scratch + m, <size_t>(n - m))
            d.buf_off = 0
            d.buf_len = <uint32_t>(n - m)
            dst.writable = 0
            return P_WAIT


cdef void queue_ready(Worker *w, int32_t slot) noexcept nogil:
    cdef Pair *p = &w.pairs[slot]
    if not p.queued:
        p.queued = 1
        w.ready_next[w.ready_len] = slot
        w.ready_len += 1


cdef void progress(Worker *w, int32_t slot) noexcept nogil:
    cdef Pair *p = &w.pairs[slot]
    cdef int up, down
    if not p.active:
        return
    if p.connecting and not connect_done(w, slot):
        return
    up = pump_direction(w, p, &p.c2s, &p.s2c, &p.client, &p.server, CNT_BYTES_IN)
    if up == P_SRC_FAILED:
        end_pair(w, slot, END_CLIENT_RESET)
        return
    if up == P_DST_FAILED:
        end_pair(w, slot, END_SERVER_RESET)
        return
    if up == P_NO_MEMORY:
        end_pair(w, slot, END_ERROR)
        return
    down = pump_direction(w, p, &p.s2c, &p.c2s, &p.server, &p.client, CNT_BYTES_OUT)
    if down == P_SRC_FAILED:
        end_pair(w, slot, END_SERVER_RESET)
        return
    if down == P_DST_FAILED:
        end_pair(w, slot, END_CLIENT_RESET)
        return
    if down == P_NO_MEMORY:
        end_pair(w, slot, END_ERROR)
        return
    if p.c2s.shut and p.s2c.shut:
        end_pair(w, slot, END_CLOSED)
        return
    if up == P_MORE or down == P_MORE:
        queue_ready(w, slot)
    timer_update(w, slot)  # a connect done or a half-close may bring its deadline closer


# --- registration -------------------------------------------------------------------------------------

cdef bint grow_slots(Worker *w) noexcept nogil:
    cdef uint32_t capacity = w.capacity * 2 if w.capacity else INITIAL_SLOTS
    cdef Pair *pairs = <Pair *>realloc(w.pairs, capacity * sizeof(Pair))
    if pairs == NULL:
        return False
    w.pairs = pairs
    memset(&w.pairs[w.capacity], 0, (capacity - w.capacity) * sizeof(Pair))
    cdef int32_t *free_slots = <int32_t *>realloc(w.free_slots, capacity * sizeof(int32_t))
    if free_slots == NULL:
        return False
    w.free_slots = free_slots
    cdef int32_t *ready = <int32_t *>realloc(w.ready, capacity * sizeof(int32_t))
    if ready == NULL:
        return False
    w.ready = ready
    cdef int32_t *ready_next = <int32_t *>realloc(w.ready_next, capacity * sizeof(int32_t))
    if ready_next == NULL:
        return False
    w.ready_next = ready_next
    w.capacity = capacity
    return True


cdef bint register_pair(Worker *w, NewPair *np) noexcept nogil:
    """Take a new pair; False when there was no room: both descriptors closed, the pair reported as
    an ERROR to Python (or closed in its lane's books)."""
    cdef int32_t slot
    cdef Pair *p
    cdef uint8_t queued
    cdef epoll_event ev
    if w.free_len:
        w.free_len -= 1
        slot = w.free_slots[w.free_len]
    else:
        if w.high == w.capacity and not grow_slots(w):
            close(np.client_fd)
            close(np.server_fd)
            free(np.prefix)
            free(np.pending_out)
            if np.lane >= 0:
                lane_closed(w, &w.lanes[np.lane], np.frontend_block)
                lane_untrack(&w.lanes[np.lane], np.peer, np.tracked, w.now_ms)
            else:
                push_record(w.shared, REC_PAIR_ENDED, np.tag, END_ERROR, 0, 0, 0, np.frontend_block,
                            np.server_block, -1, NULL, 0)
            return False
        slot = <int32_t>w.high
        w.high += 1
    p = &w.pairs[slot]
    queued = p.queued  # a stale entry of the ready list may still name this slot
    memset(p, 0, sizeof(Pair))
    p.queued = queued
    p.tag = np.tag
    p.lane = np.lane
    p.log_end = np.log_end
    p.tracked = np.tracked
    if np.lane >= 0:
        memcpy(p.peer, np.peer, 28)
    p.accepted_ms = np.accepted_ms
    p.dialed_ms = np.dialed_ms
    p.frontend_block = np.frontend_block
    p.server_block = np.server_block
    p.backend_block = np.backend_block
    p.timeouts = np.timeouts
    p.client.fd = np.client_fd
    p.server.fd = np.server_fd
    p.client.readable = p.client.writable = 1
    p.connecting = np.connecting
    # A connecting socket is neither readable nor writable until epoll says the connect ended.
    p.server.readable = p.server.writable = 0 if np.connecting else 1
    p.client.seen_ms = p.server.seen_ms = w.now_ms
    p.c2s.src = np.client_fd
    p.c2s.dst = np.server_fd
    p.s2c.src = np.server_fd
    p.s2c.dst = np.client_fd
    p.c2s.pipe_r = p.c2s.pipe_w = p.s2c.pipe_r = p.s2c.pipe_w = -1
    if np.prefix != NULL:
        # The prefix goes first: it is what the client->server buffer holds before any read.
        p.c2s.buf = np.prefix
        p.c2s.buf_len = np.prefix_len
        p.c2s.buf_own = np.prefix_len > w.shared.bufsize
        np.prefix = NULL
    p.active = 1
    fp_atomic_add_int(&w.active, 1)
    if np.adopted:
        resume_adopted(w, p, np)  # moves.pxi
    elif not p.connecting:
        count_established(w.shared, p)
    ev.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET
    ev.data.u64 = (<uint64_t>slot) << 1
    if epoll_ctl(w.epfd, EPOLL_CTL_ADD, np.client_fd, &ev) < 0:
        end_pair(w, slot, END_ERROR)
        return True
    ev.data.u64 = ((<uint64_t>slot) << 1) | 1
    if epoll_ctl(w.epfd, EPOLL_CTL_ADD, np.server_fd, &ev) < 0:
        end_pair(w, slot, END_ERROR)
        return True
    timer_update(w, slot)
    # Try at once: the client has often sent its first bytes already.
    queue_ready(w, slot)
    return True
