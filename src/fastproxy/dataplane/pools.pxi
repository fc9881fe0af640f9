# Included by _pump.pyx: each worker's pools of direction buffers and splice pipes.  A direction holds
# a buffer only while its destination will not take what was read, and a pipe only while splicing.

cdef char *take_buffer(Worker *w) noexcept nogil:
    if w.buf_pool_len:
        w.buf_pool_len -= 1
        return w.buf_pool[w.buf_pool_len]
    return <char *>malloc(w.shared.bufsize)


cdef void give_buffer(Worker *w, char *buf) noexcept nogil:
    if w.buf_pool_len < POOL_KEEP:
        w.buf_pool[w.buf_pool_len] = buf
        w.buf_pool_len += 1
    else:
        free(buf)


cdef bint take_pipe(Worker *w, Direction *d) noexcept nogil:
    cdef int fds[2]
    cdef Shared *sh = w.shared
    if w.pipe_pool_len:
        w.pipe_pool_len -= 1
        d.pipe_r = w.pipe_pool[2 * w.pipe_pool_len]
        d.pipe_w = w.pipe_pool[2 * w.pipe_pool_len + 1]
        return True
    if sh.maxpipes > 0 and fp_atomic_load_int(&sh.pipes_in_use) >= sh.maxpipes:
        return False
    if pipe2(fds, O_NONBLOCK | O_CLOEXEC) < 0:
        return False
    # Best effort: a pipe the kernel would not enlarge still works, only with smaller bursts.
    fcntl(fds[1], F_SETPIPE_SZ, <int>sh.pipesize)
    fp_atomic_add_int(&sh.pipes_in_use, 1)
    d.pipe_r = fds[0]
    d.pipe_w = fds[1]
    return True


cdef void give_pipe(Worker *w, Direction *d) noexcept nogil:
    if d.pipe_r < 0:
        return
    if d.pipe_len == 0 and w.pipe_pool_len < POOL_KEEP:
        w.pipe_pool[2 * w.pipe_pool_len] = d.pipe_r
        w.pipe_pool[2 * w.pipe_pool_len + 1] = d.pipe_w
        w.pipe_pool_len += 1
    else:
        # A pipe with bytes still in it cannot serve another pair.
        close(d.pipe_r)
        close(d.pipe_w)
        fp_atomic_add_int(&w.shared.pipes_in_use, -1)
    d.pipe_r = -1
    d.pipe_w = -1
    d.pipe_len = 0


cdef void drop_buffer(Worker *w, Direction *d) noexcept nogil:
    """The direction's buffer is done with: back to the pool, or freed if it is not of the pool's size."""
    if d.buf_own:
        free(d.buf)
        d.buf_own = 0
    else:
        give_buffer(w, d.buf)
    d.buf = NULL
    d.buf_off = 0
    d.buf_len = 0


cdef void release_direction(Worker *w, Direction *d) noexcept nogil:
    if d.buf != NULL:
        drop_buffer(w, d)
    give_pipe(w, d)
