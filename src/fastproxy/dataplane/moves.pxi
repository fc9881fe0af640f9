# Included by _pump.pyx: pairs that move between pumps (a reload hands established pairs to the new
# worker process).  A worker detaches a pair at a clean point, between two of its turns: both sockets
# leave its epoll set, still open; the bytes in flight (a direction's buffer, or what its pipe holds)
# are copied out, so nothing is half-written; the books drop the pair as if it had ended, without a
# record.  Another pump adopts the pair: registered like a new one, already established, with its
# bytes in flight written first, its half-closes, counts and idle times as they were.

cdef bint take_in_flight(Direction *d, char **out, uint32_t *out_len) noexcept nogil:
    """Copy what the direction has read and not written yet into a buffer of its own (``*out``,
    NULL when nothing); a pipe is emptied into it.  False: no memory, or a pipe that would not give
    its bytes back."""
    cdef uint32_t length = d.buf_len if d.buf_len else d.pipe_len
    cdef uint32_t got = 0
    cdef ssize_t n
    out[0] = NULL
    out_len[0] = 0
    if length == 0:
        return True
    out[0] = <char *>malloc(length)
    if out[0] == NULL:
        return False
    if d.buf_len:
        memcpy(out[0], d.buf + d.buf_off, length)
    else:
        while got < length:
            n = read(d.pipe_r, out[0] + got, length - got)
            if n < 0 and errno == EINTR:
                continue
            if n <= 0:
                free(out[0])
                out[0] = NULL
                return False
            got += <uint32_t>n
        d.pipe_len = 0
    out_len[0] = length
    return True


cdef uint8_t carried_flags(Pair *p) noexcept nogil:
    return ((CARRIED_IN_EOF if p.c2s.eof else 0) | (CARRIED_IN_SHUT if p.c2s.shut else 0)
            | (CARRIED_OUT_EOF if p.s2c.eof else 0) | (CARRIED_OUT_SHUT if p.s2c.shut else 0))


cdef bint detach_pair(Worker *w, int32_t slot, Detached *out) noexcept nogil:
    """Let go of the pair in ``slot`` into ``out``; False if it cannot move (not established yet, or
    no memory for its bytes in flight: it goes on here)."""
    cdef Pair *p = &w.pairs[slot]
    cdef Shared *sh = w.shared
    cdef bint had_pipe
    if not p.active or p.connecting:
        return False
    memset(out, 0, sizeof(Detached))
    had_pipe = p.c2s.pipe_len != 0 or p.s2c.pipe_len != 0
    if not (take_in_flight(&p.c2s, &out.pending_in, &out.pending_in_len)
            and take_in_flight(&p.s2c, &out.pending_out, &out.pending_out_len)):
        free(out.pending_in)
        if had_pipe:  # bytes a pipe gave up may be lost: the pair cannot go on whole
            end_pair(w, slot, END_ERROR)
        return False
    epoll_ctl(w.epfd, EPOLL_CTL_DEL, p.client.fd, NULL)
    epoll_ctl(w.epfd, EPOLL_CTL_DEL, p.server.fd, NULL)
    timer_unfile(w, p)  # its deadline goes with it
    out.client_fd = p.client.fd
    out.server_fd = p.server.fd
    out.tag = p.tag
    out.frontend_block = p.frontend_block
    out.server_block = p.server_block
    out.backend_block = p.backend_block
    out.lane = p.lane
    memcpy(out.peer, p.peer, 28)
    out.timeouts = p.timeouts
    out.client_idle_ms = elapsed_ms(w.now_ms, p.client.seen_ms)
    out.server_idle_ms = elapsed_ms(w.now_ms, p.server.seen_ms)
    out.age_ms = elapsed_ms(w.now_ms, p.accepted_ms)
    out.queue_ms = elapsed_ms(p.dialed_ms, p.accepted_ms)
    out.connect_ms = p.connect_ms
    out.bytes_in = p.c2s.bytes
    out.bytes_out = p.s2c.bytes
    out.flags = carried_flags(p)
    # The books as at an end, without its counts of resets or timeouts, times or record: the pair
    # goes on elsewhere.
    count_sub(sh, p.server_block, CNT_CONN_CUR, 1)
    if p.lane >= 0:
        lane_closed(w, &w.lanes[p.lane], p.frontend_block)
        lane_untrack(&w.lanes[p.lane], p.peer, p.tracked, w.now_ms)  # its entries stay with this table
    release_direction(w, &p.c2s)
    release_direction(w, &p.s2c)
    p.active = 0
    w.free_slots[w.free_len] = slot
    w.free_len += 1
    fp_atomic_add_int(&w.active, -1)
    return True


cdef void detach_requested(Worker *w, DetachRequest *r) noexcept nogil:
    """Detach this worker's pairs among ``r.tags`` into ``r.out``, then say it is done."""
    cdef uint32_t slot, k
    for slot in range(w.high):
        if not w.pairs[slot].active:
            continue
        for k in range(r.ntags):
            if w.pairs[slot].tag == r.tags[k]:
                if detach_pair(w, <int32_t>slot, &r.out[r.out_len]):
                    r.out_len += 1
                break
    fp_atomic_store_int(&r.done, 1)


cdef void resume_adopted(Worker *w, Pair *p, NewPair *np) noexcept nogil:
    """Registration's part for an adopted pair: where it stood when its former pump let it go."""
    p.c2s.bytes = np.bytes_in
    p.s2c.bytes = np.bytes_out
    p.c2s.eof = (np.carried_flags & CARRIED_IN_EOF) != 0
    p.c2s.shut = (np.carried_flags & CARRIED_IN_SHUT) != 0
    p.s2c.eof = (np.carried_flags & CARRIED_OUT_EOF) != 0
    p.s2c.shut = (np.carried_flags & CARRIED_OUT_SHUT) != 0
    p.connect_ms = np.connect_ms
    p.client.seen_ms = w.now_ms - min(<uint64_t>np.client_idle_ms, w.now_ms)
    p.server.seen_ms = w.now_ms - min(<uint64_t>np.server_idle_ms, w.now_ms)
    if np.pending_out != NULL:
        p.s2c.buf = np.pending_out
        p.s2c.buf_len = np.pending_out_len
        p.s2c.buf_own = np.pending_out_len > w.shared.bufsize
        np.pending_out = NULL
    # Counted as open here, not as a new connection: its former pump counted that.
    count(w.shared, p.server_block, CNT_CONN_CUR, 1)
