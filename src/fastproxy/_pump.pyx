# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""The data plane: pairs of sockets pumped by epoll worker threads that run without the GIL.

Python hands a connected (client, server) pair over with ``Pump.add_pair``; from then on no Python code
runs for that pair until it ends: one worker thread owns it, moves bytes both ways, applies the idle and
half-close timeouts, and finally closes both sockets and queues an ``Ended`` record.  Python hears of
ended pairs through an eventfd that its event loop watches, and reads the counters at any time.

Bytes move through recv/send with a worker-wide scratch buffer, so an idle pair holds no buffer at all;
a per-direction buffer is taken from a pool only while the destination will not take what was read.
A read that fills the scratch buffer switches the direction to splice() through a pipe (HAProxy's
splice-auto), pooled and sized by tune.pipesize.  In flight per direction: at most one buffer or one
pipe, never more: the rest waits in the kernel, which is the backpressure.

The pure-Python twin is fastproxy/pump.py; both follow the same semantics and the same test suite.
"""

from libc.errno cimport EAGAIN, EINTR, ETIMEDOUT, errno
from libc.stdint cimport int32_t, int64_t, uint8_t, uint16_t, uint32_t, uint64_t
from cpython.bytes cimport PyBytes_FromStringAndSize
from libc.stdlib cimport calloc, free, malloc, realloc
from libc.string cimport memcpy, memset

from fastproxy.includes.system cimport *
from fastproxy._ring cimport Table, xxh64

import os
import threading
import time


cdef enum:
    MAX_EVENTS = 256
    MAX_LANES = 64
    LANE_BUDGET = 64        # accepts per readiness of a lane before pairs get their turn
    LANE_REST_MS = 100      # how long a lane rests after EMFILE/ENFILE
    LANE_RECHECK_MS = 20    # how often paused lanes look again at the limits
    READ_BUDGET = 16        # reads per direction per turn before other pairs get theirs
    POOL_KEEP = 64          # free buffers and pipes a worker keeps for reuse
    INITIAL_SLOTS = 256

cdef enum Progress:
    P_WAIT = 0              # blocked on the kernel: epoll calls back
    P_MORE = 1              # budget spent with work left: run again after the others
    P_SRC_FAILED = 2
    P_DST_FAILED = 3
    P_NO_MEMORY = 4

cdef uint64_t WAKE_TOKEN = 0xFFFFFFFFFFFFFFFFULL
cdef uint64_t LANE_TOKEN = 1ULL << 62      # epoll token of a lane's listener: LANE_TOKEN | index
cdef uint64_t LANE_TAG = 1ULL << 62        # tags of pairs a lane made: LANE_TAG | sequence


cdef inline uint64_t monotonic_ms() noexcept nogil:
    cdef timespec ts
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts)
    return <uint64_t>ts.tv_sec * 1000 + <uint64_t>(ts.tv_nsec // 1000000)


cdef inline void count(Shared *sh, int32_t block, int field, uint64_t value) noexcept nogil:
    if 0 <= block < sh.counter_blocks:
        fp_atomic_add(&sh.counters[block * CNT_FIELDS + field], value)


cdef inline void count_sub(Shared *sh, int32_t block, int field, uint64_t value) noexcept nogil:
    if 0 <= block < sh.counter_blocks:
        fp_atomic_sub(&sh.counters[block * CNT_FIELDS + field], value)


cdef inline void set_linger0(int fd) noexcept nogil:
    cdef linger lg
    lg.l_onoff = 1
    lg.l_linger = 0
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg))


# --- pools -------------------------------------------------------------------------------------------

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


cdef void release_direction(Worker *w, Direction *d) noexcept nogil:
    if d.buf != NULL:
        give_buffer(w, d.buf)
        d.buf = NULL
        d.buf_len = 0
    give_pipe(w, d)


# --- ended pairs, towards Python -------------------------------------------------------------------

cdef void push_record(Shared *sh, uint64_t tag, int reason, int error, uint64_t bytes_in,
                      uint64_t bytes_out, int32_t frontend_block, int32_t server_block,
                      int32_t client_fd, Pair *logged, uint64_t now_ms) noexcept nogil:
    cdef uint64_t one = 1
    cdef bint was_empty
    cdef Ended *grown
    cdef Ended *record
    pthread_mutex_lock(&sh.ended_lock)
    if sh.ended_len == sh.ended_cap:
        grown = <Ended *>realloc(sh.ended, (sh.ended_cap * 2 + 64) * sizeof(Ended))
        if grown == NULL:
            # Losing the record only loses the report; the sockets are already closed.
            pthread_mutex_unlock(&sh.ended_lock)
            return
        sh.ended = grown
        sh.ended_cap = sh.ended_cap * 2 + 64
    was_empty = sh.ended_len == 0
    record = &sh.ended[sh.ended_len]
    record.tag = tag
    record.bytes_in = bytes_in
    record.bytes_out = bytes_out
    record.reason = reason
    record.error = error
    record.frontend_block = frontend_block
    record.server_block = server_block
    record.client_fd = client_fd
    record.logged = logged != NULL
    if logged != NULL:
        memcpy(record.peer, logged.peer, 28)
        record.duration_ms = now_ms - logged.accepted_ms
        record.connect_ms = logged.connect_ms
    sh.ended_len += 1
    pthread_mutex_unlock(&sh.ended_lock)
    if was_empty:
        write(sh.notify_fd, &one, sizeof(one))


cdef inline void push_ended(Shared *sh, Pair *p, int reason, int error) noexcept nogil:
    push_record(sh, p.tag, reason, error, p.c2s.bytes, p.s2c.bytes, p.frontend_block, p.server_block,
                p.client.fd if reason == END_CONNECT_FAILED and p.lane >= 0 else -1, NULL, 0)


cdef const char *MONTHS[12]
MONTHS[:] = [b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov", b"Dec"]
cdef const char *TERMINATIONS[END_REASONS]  # HAProxy's termination state, by end reason (as engine.py)
TERMINATIONS[:] = [b"--", b"CD", b"SD", b"cD", b"sD", b"PD", b"KD", b"SC", b"DD"]


cdef uint32_t format_address(const uint8_t *address, char *host, size_t size) noexcept nogil:
    """The text of a raw sockaddr's address into ``host``; returns its port."""
    cdef uint16_t family = address[0] | (address[1] << 8)
    host[0] = 0
    if family == AF_INET:
        inet_ntop(AF_INET, &address[4], host, size)
    elif family == AF_INET6:
        inet_ntop(AF_INET6, &address[8], host, size)
    return (address[2] << 8) | address[3]


cdef void send_log_line(Lane *lane, const char *message) noexcept nogil:
    """One message to each of the lane's log sinks, in the sink's format (as logs._format)."""
    cdef char line[1024]
    cdef timespec now
    cdef time_t seconds
    cdef tm stamp
    cdef uint32_t i
    cdef int m
    cdef LogSink *sink
    clock_gettime(CLOCK_REALTIME, &now)
    seconds = now.tv_sec
    localtime_r(&seconds, &stamp)
    for i in range(lane.nlog_sinks):
        sink = &lane.log_sinks[i]
        if sink.format == 0:  # rfc3164
            m = snprintf(line, sizeof(line), b"%s%s %2d %02d:%02d:%02d fastproxy[%d]: %s", sink.pri,
                         MONTHS[stamp.tm_mon], stamp.tm_mday, stamp.tm_hour, stamp.tm_min, stamp.tm_sec,
                         lane.log_pid, message)
        elif sink.format == 2:  # short
            m = snprintf(line, sizeof(line), b"%s%s", sink.pri, message)
        else:  # raw
            m = snprintf(line, sizeof(line), b"%s", message)
        if m < 0:
            continue
        if <uint32_t>m >= sizeof(line) - 1:
            m = sizeof(line) - 2
        if <uint32_t>m > sink.length:
            m = sink.length
        if sink.stream:
            line[m] = 10  # a newline ends each line on a stream
            write(sink.fd, line, m + 1)
        else:
            send(sink.fd, line, m, MSG_DONTWAIT | MSG_NOSIGNAL)  # a full buffer drops it, as HAProxy


cdef void lane_log_connect(Lane *lane, int fd, const uint8_t *peer) noexcept nogil:
    """HAProxy's line at each accept when the proxy logs without ``option tcplog``."""
    cdef char message[512]
    cdef char host[64]
    cdef char local_host[64]
    cdef uint8_t local[28]
    cdef socklen_t local_len = sizeof(local)
    cdef uint32_t port, local_port = 0
    port = format_address(peer, host, sizeof(host))
    local_host[0] = 0
    if fp_getsockname(fd, local, &local_len) == 0:
        local_port = format_address(local, local_host, sizeof(local_host))
    if snprintf(message, sizeof(message), b"Connect from %s:%u to %s:%u (%s/TCP)", host, port, local_host,
                local_port, lane.log_frontend) >= 0:
        send_log_line(lane, message)


cdef void lane_log(Worker *w, Lane *lane, Pair *p, int reason) noexcept nogil:
    """HAProxy's tcplog line of a lane's pair, written to the lane's log sinks from here: no Python
    per connection.  Same format as engine._tcplog (the tests match both against one pattern)."""
    cdef Shared *sh = w.shared
    cdef char message[768]
    cdef char host[64]
    cdef const char *server_name = b"-"
    cdef timespec now
    cdef time_t seconds
    cdef tm accepted
    cdef uint64_t elapsed_ms, wall_ms, backend_current = 0
    cdef uint32_t i, port
    if lane.log_dontlognull and p.c2s.bytes == 0:
        return
    port = format_address(p.peer, host, sizeof(host))
    for i in range(lane.nservers):
        if lane.servers[i].block == p.server_block:
            server_name = lane.servers[i].log_name
        backend_current += fp_atomic_load(&sh.counters[lane.servers[i].block * CNT_FIELDS + CNT_CONN_CUR])
    elapsed_ms = w.now_ms - p.accepted_ms
    clock_gettime(CLOCK_REALTIME, &now)
    wall_ms = <uint64_t>now.tv_sec * 1000 + <uint64_t>now.tv_nsec // 1000000 - elapsed_ms
    seconds = <time_t>(wall_ms // 1000)
    localtime_r(&seconds, &accepted)
    if snprintf(message, sizeof(message),
                b"%s:%u [%02d/%s/%04d:%02d:%02d:%02d.%03u] %s %s 0/%u/%llu %llu %s %d/%llu/%llu/%llu/0 0/0",
                host, port, accepted.tm_mday, MONTHS[accepted.tm_mon], accepted.tm_year + 1900,
                accepted.tm_hour, accepted.tm_min, accepted.tm_sec, <uint32_t>(wall_ms % 1000),
                lane.log_frontend, server_name, p.connect_ms, <unsigned long long>elapsed_ms,
                <unsigned long long>p.s2c.bytes, TERMINATIONS[reason], fp_atomic_load_int(&sh.open_total),
                <unsigned long long>fp_atomic_load(&sh.counters[p.frontend_block * CNT_FIELDS + CNT_CONN_CUR]),
                <unsigned long long>backend_current,
                <unsigned long long>fp_atomic_load(&sh.counters[p.server_block * CNT_FIELDS + CNT_CONN_CUR])) >= 0:
        send_log_line(lane, message)


cdef void end_pair(Worker *w, int32_t slot, int reason) noexcept nogil:
    cdef Pair *p = &w.pairs[slot]
    cdef Shared *sh = w.shared
    if not p.active:
        return
    if p.log_end and w.lanes[p.lane].nlog_sinks:  # logged before its counts drop, as HAProxy does
        lane_log(w, &w.lanes[p.lane], p, reason)
    # A reset is passed on as a reset, never as a clean FIN.
    if reason == END_CLIENT_RESET:
        set_linger0(p.server.fd)
    elif reason == END_SERVER_RESET:
        set_linger0(p.client.fd)
    close(p.client.fd)
    close(p.server.fd)
    release_direction(w, &p.c2s)
    release_direction(w, &p.s2c)
    if not p.connecting and 0 <= p.server_block < sh.counter_blocks:
        fp_atomic_sub(&sh.counters[p.server_block * CNT_FIELDS + CNT_CONN_CUR], 1)
    if reason == END_CLIENT_RESET or reason == END_SERVER_RESET:
        count(sh, p.frontend_block, CNT_RESETS, 1)
        count(sh, p.server_block, CNT_RESETS, 1)
    elif reason == END_CLIENT_TIMEOUT or reason == END_SERVER_TIMEOUT:
        count(sh, p.frontend_block, CNT_TIMEOUTS, 1)
        count(sh, p.server_block, CNT_TIMEOUTS, 1)
    if p.lane >= 0:
        # Python is not told of each pair a lane made: the books are kept here.
        lane_closed(w, &w.lanes[p.lane], p.frontend_block)
        fp_atomic_add(&sh.lane_ended[reason], 1)
        if p.log_end and not w.lanes[p.lane].nlog_sinks:  # one record: Python writes the log line
            push_record(sh, p.tag, reason, 0, p.c2s.bytes, p.s2c.bytes, p.frontend_block, p.server_block,
                        -1, p, w.now_ms)
    else:
        push_ended(sh, p, reason, 0)
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
    epoll_ctl(w.epfd, EPOLL_CTL_DEL, p.client.fd, NULL)
    close(p.server.fd)
    if p.lane >= 0:
        lane_closed(w, &w.lanes[p.lane], p.frontend_block)
    push_ended(w.shared, p, END_CONNECT_FAILED, error)
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
    if p.log_end:
        p.connect_ms = <uint32_t>(w.now_ms - p.accepted_ms)
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
            give_buffer(w, d.buf)
            d.buf = NULL
            d.buf_off = 0
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
        elif not src.hup:
            # A short read drained the socket; epoll says when more comes (unless a FIN is pending,
            # which only a read that returns 0 can consume).
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


# --- the worker --------------------------------------------------------------------------------------

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
    """Take a new pair; False when there was no room (both descriptors closed, nothing counted)."""
    cdef int32_t slot
    cdef Pair *p
    cdef uint8_t queued
    cdef epoll_event ev
    cdef uint32_t limits[5]
    cdef int i
    if w.free_len:
        w.free_len -= 1
        slot = w.free_slots[w.free_len]
    else:
        if w.high == w.capacity and not grow_slots(w):
            close(np.client_fd)
            close(np.server_fd)
            free(np.prefix)
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
    if np.log_end:
        memcpy(p.peer, np.peer, 28)
        p.accepted_ms = np.accepted_ms
    p.frontend_block = np.frontend_block
    p.server_block = np.server_block
    p.client_timeout = np.client_timeout
    p.server_timeout = np.server_timeout
    p.client_fin_timeout = np.client_fin_timeout
    p.server_fin_timeout = np.server_fin_timeout
    p.client.fd = np.client_fd
    p.server.fd = np.server_fd
    p.client.readable = p.client.writable = 1
    p.connecting = np.connecting
    p.connect_timeout = np.connect_timeout
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
        np.prefix = NULL
    p.active = 1
    fp_atomic_add_int(&w.active, 1)
    if not p.connecting:
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
    # Timeouts are checked by a periodic scan whose period follows the shortest timeout seen.
    limits[0] = np.client_timeout
    limits[1] = np.server_timeout
    limits[2] = np.client_fin_timeout
    limits[3] = np.server_fin_timeout
    limits[4] = np.connect_timeout
    for i in range(5):
        if limits[i] and limits[i] // 8 < w.scan_interval_ms:
            w.scan_interval_ms = max(limits[i] // 8, 5)
    # Try at once: the client has often sent its first bytes already.
    queue_ready(w, slot)
    return True


# --- lanes: accepting, balancing and dialing in the pump ----------------------------------------------
#
# A lane is a listener whose frontend needs no Python per connection (no rules, hooks, logs or queues;
# its backend balanced by round robin).  Worker 0 polls it: it accepts a batch, tunes each client,
# picks a server by smooth weighted round robin over the weights Python sets (0 for a server out of
# picks), starts the connect and registers the pair, all without the GIL.  What needs Python goes back
# to it as CONNECT_FAILED with the client descriptor: a refused connect (retries, redispatch), no server
# with a weight (backups, <NOSRV>).  Limits (the lane's maxconn, the global one over lanes and Python)
# are kept with atomic counts; a lane at a limit stops being polled, and the kernel backlog holds the
# clients, as HAProxy does.

cdef inline bint lane_full(Shared *sh, Lane *lane) noexcept nogil:
    if lane.maxconn and fp_atomic_load_int(lane.open_count) >= lane.maxconn:
        return True
    return sh.maxconn and fp_atomic_load_int(&sh.open_total) >= sh.maxconn


cdef void lane_pause(Worker *w, Lane *lane, uint64_t resume_at_ms) noexcept nogil:
    if not lane.paused:
        epoll_ctl(w.epfd, EPOLL_CTL_DEL, lane.fd, NULL)
        lane.paused = 1
    lane.resume_at_ms = resume_at_ms
    w.lanes_paused = 1


cdef void lanes_resume(Worker *w) noexcept nogil:
    """Poll again the lanes whose limit has room or whose rest is over."""
    cdef uint32_t i
    cdef Lane *lane
    cdef bint still = False
    cdef epoll_event ev
    for i in range(w.nlanes):
        lane = &w.lanes[i]
        if not lane.paused or lane.state != LANE_ON:
            continue
        if (lane.resume_at_ms and w.now_ms < lane.resume_at_ms) or lane_full(w.shared, lane):
            still = True
            continue
        ev.events = EPOLLIN | (EPOLLEXCLUSIVE if w.exclusive else 0)
        ev.data.u64 = LANE_TOKEN | i
        if epoll_ctl(w.epfd, EPOLL_CTL_ADD, lane.fd, &ev) == 0:
            lane.paused = 0
            lane.resume_at_ms = 0
        else:
            still = True
    w.lanes_paused = still


cdef inline void lane_closed(Worker *w, Lane *lane, int32_t frontend_block) noexcept nogil:
    """A client of the lane is closed, or handed to Python (which counts it from then on)."""
    fp_atomic_add_int(lane.open_count, -1)
    fp_atomic_add_int(&w.shared.open_total, -1)
    count_sub(w.shared, frontend_block, CNT_CONN_CUR, 1)
    if lane.paused:
        w.lanes_paused = 1


cdef LaneServer *lane_pick(Lane *lane) noexcept nogil:
    """Smooth weighted round robin (nginx's): every weighted server gains its weight, the richest is
    picked and pays the total.  Over a cycle, each server gets exactly its weight's share."""
    cdef LaneServer *best = NULL
    cdef LaneServer *server
    cdef int64_t total = 0
    cdef uint32_t i
    for i in range(lane.nservers):
        server = &lane.servers[i]
        if server.weight <= 0:
            continue
        server.current += server.weight
        total += server.weight
        if best == NULL or server.current > best.current:
            best = server
    if best != NULL:
        best.current -= total
    return best


cdef LaneServer *lane_pick_hashed(Lane *lane, const uint8_t *addr) noexcept nogil:
    """The server for the client's address (4 bytes for IPv4, also when IPv4-mapped; 16 for IPv6, as
    HAProxy hashes ``src``), on the lane's map or ring table; NULL when there is none."""
    cdef const unsigned char *data
    cdef size_t length
    cdef uint64_t h
    cdef int32_t index
    cdef uint16_t family = addr[0] | (addr[1] << 8)
    if family == AF_INET:
        data = addr + 4
        length = 4
    else:
        data = addr + 8
        length = 16
        if is_v4_mapped(data):
            data += 12
            length = 4
    if lane.hash_kind == LANE_MAP:
        if lane.map_len == 0:
            return NULL
        return &lane.servers[lane.map[xxh64(data, length, lane.hash_seed) % lane.map_len]]
    if lane.table == NULL:
        return NULL
    h = (<Table>lane.table).key_hash(data, length)
    index = (<Table>lane.table).server_of(h)
    if index < 0:
        return NULL
    return &lane.servers[lane.table_servers[index]]


cdef inline bint is_v4_mapped(const unsigned char *a) noexcept nogil:
    cdef int i
    for i in range(10):
        if a[i] != 0:
            return False
    return a[10] == 0xFF and a[11] == 0xFF


cdef void lane_hand_back(Worker *w, Lane *lane, int fd, uint64_t tag, int32_t server_block,
                         int error) noexcept nogil:
    lane_closed(w, lane, lane.frontend_block)
    push_record(w.shared, tag, END_CONNECT_FAILED, error, 0, 0, lane.frontend_block, server_block, fd, NULL, 0)


cdef void lane_accept(Worker *w, uint32_t index) noexcept nogil:
    cdef Lane *lane = &w.lanes[index]
    cdef Shared *sh = w.shared
    cdef LaneServer *server
    cdef NewPair np
    cdef int fd, server_fd, err
    cdef int budget = LANE_BUDGET
    cdef uint64_t tag
    cdef uint8_t connecting
    cdef bint registered
    cdef Worker *target
    cdef uint8_t address[28]
    cdef socklen_t address_len
    if lane.state != LANE_ON or lane.paused:
        return
    while budget > 0:
        if lane_full(sh, lane):
            lane_pause(w, lane, 0)
            return
        address_len = sizeof(address)
        fd = fp_accept_addr(lane.fd, address, &address_len)
        if fd < 0:
            err = errno
            if err == EINTR or err == ECONNABORTED:
                continue
            if err == EMFILE or err == ENFILE or err == ENOBUFS or err == ENOMEM:
                # Out of descriptors: rest a moment rather than spin; Python reads the count and logs.
                fp_atomic_add(&sh.accept_errors, 1)
                lane_pause(w, lane, w.now_ms + LANE_REST_MS)
            return
        budget -= 1
        if lane.tune_clients and fp_tune_tcp(fd, lane.client_tcp) != 0:
            close(fd)  # already reset by the client: its loss only
            continue
        if lane.log_connect:
            lane_log_connect(lane, fd, address)
        fp_atomic_add_int(lane.open_count, 1)
        fp_atomic_add_int(&sh.open_total, 1)
        count(sh, lane.frontend_block, CNT_CONN_CUR, 1)
        count(sh, lane.frontend_block, CNT_CONN_TOTAL, 1)
        w.lane_seq += 1
        tag = LANE_TAG | (<uint64_t>w.index << 40) | (w.lane_seq & 0xFFFFFFFFFFULL)
        if lane.hash_kind == LANE_WRR:
            server = lane_pick(lane)
        else:
            server = lane_pick_hashed(lane, address)
        if server == NULL:
            lane_hand_back(w, lane, fd, tag, -1, EHOSTUNREACH)
            continue
        server_fd = fp_socket_nb(server.family)
        if server_fd < 0:
            lane_hand_back(w, lane, fd, tag, server.block, errno)
            continue
        fp_tune_tcp(server_fd, lane.server_tcp)
        connecting = 0
        if fp_connect_raw(server_fd, server.addr, server.addrlen) < 0:
            err = errno
            if err != EINPROGRESS:
                close(server_fd)
                lane_hand_back(w, lane, fd, tag, server.block, err)
                continue
            connecting = 1
        memset(&np, 0, sizeof(NewPair))
        np.client_fd = fd
        np.server_fd = server_fd
        np.connecting = connecting
        np.connect_timeout = lane.connect_timeout
        np.client_timeout = lane.client_timeout
        np.server_timeout = lane.server_timeout
        np.client_fin_timeout = lane.client_fin_timeout
        np.server_fin_timeout = lane.server_fin_timeout
        np.frontend_block = lane.frontend_block
        np.server_block = server.block
        np.lane = <int32_t>index
        np.tag = tag
        if lane.log_ends:
            np.log_end = 1
            memcpy(np.peer, address, 28)
            np.accepted_ms = w.now_ms
        target = lightest_worker(w) if sh.nworkers > 1 else w
        if target != w and hand_over(target, &np):
            continue
        # Under the worker's lock, as for Python's pairs: connections() reads the pair table with it
        # held, and registering may grow (move) the table.
        pthread_mutex_lock(&w.lock)
        registered = register_pair(w, &np)
        pthread_mutex_unlock(&w.lock)
        if not registered:
            lane_closed(w, lane, lane.frontend_block)


cdef Worker *lightest_worker(Worker *w) noexcept nogil:
    """The worker with the fewest pairs (taken or on their way), this one on a tie: the kernel wakes
    an idle worker for a new client, but a busy one may accept a burst alone."""
    cdef Worker *workers = <Worker *>w.shared.workers
    cdef Worker *best = w
    cdef int k, load
    cdef int best_load = fp_atomic_load_int(&w.active) + fp_atomic_load_int(&w.handed)
    for k in range(w.shared.nworkers):
        load = fp_atomic_load_int(&workers[k].active) + fp_atomic_load_int(&workers[k].handed)
        if load + 1 < best_load:  # a margin: handing over costs the other worker a wake-up
            best = &workers[k]
            best_load = load
    return best


cdef bint hand_over(Worker *t, NewPair *np) noexcept nogil:
    """Queue a new pair for another worker, as Python's add_pair does; False if it cannot take it."""
    cdef NewPair *grown
    cdef uint64_t one = 1
    cdef bint wake
    pthread_mutex_lock(&t.lock)
    if t.incoming_len == t.incoming_cap:
        grown = <NewPair *>realloc(t.incoming, (t.incoming_cap * 2 + 16) * sizeof(NewPair))
        if grown == NULL:
            pthread_mutex_unlock(&t.lock)
            return False
        t.incoming = grown
        t.incoming_cap = t.incoming_cap * 2 + 16
    memcpy(&t.incoming[t.incoming_len], np, sizeof(NewPair))
    t.incoming_len += 1
    fp_atomic_add_int(&t.handed, 1)
    wake = t.incoming_len == 1
    pthread_mutex_unlock(&t.lock)
    if wake:
        write(t.wake_fd, &one, sizeof(one))
    return True


cdef void lane_commands(Worker *w) noexcept nogil:
    """With the worker's lock held: start polling new lanes, stop polling closing ones, take new weights."""
    cdef uint32_t i, k
    cdef Lane *lane
    cdef epoll_event ev
    for i in range(w.nlanes):
        lane = &w.lanes[i]
        if lane.state == LANE_NEW:
            # With several workers each polls the listener; EPOLLEXCLUSIVE wakes one per connection
            # (or a few), not all of them.
            ev.events = EPOLLIN | (EPOLLEXCLUSIVE if w.exclusive else 0)
            ev.data.u64 = LANE_TOKEN | i
            if epoll_ctl(w.epfd, EPOLL_CTL_ADD, lane.fd, &ev) == 0:
                lane.state = LANE_ON
            else:
                fp_atomic_store_int(&lane.state, LANE_OFF)
        elif lane.state == LANE_CLOSING:
            if not lane.paused:
                epoll_ctl(w.epfd, EPOLL_CTL_DEL, lane.fd, NULL)
            lane.paused = 0
            fp_atomic_store_int(&lane.state, LANE_OFF)
        if lane.weights_dirty:
            lane.weights_dirty = 0
            for k in range(lane.nservers):
                lane.servers[k].weight = lane.servers[k].pending_weight
                lane.servers[k].current = 0
        if lane.picks_dirty:
            lane.picks_dirty = 0
            swap_picks(lane)


cdef void swap_picks(Lane *lane) noexcept nogil:
    """Take the map or table Python set; the old arrays are freed here, where nobody reads them."""
    free(lane.map)
    lane.map = lane.pending_map
    lane.map_len = lane.pending_map_len
    lane.pending_map = NULL
    lane.pending_map_len = 0
    free(lane.table_servers)
    lane.table = lane.pending_table
    lane.table_servers = lane.pending_table_servers
    lane.pending_table = NULL
    lane.pending_table_servers = NULL



cdef void end_all(Worker *w, int reason) noexcept nogil:
    cdef uint32_t slot
    for slot in range(w.high):
        if w.pairs[slot].active:
            end_pair(w, <int32_t>slot, reason)


cdef bint take_commands(Worker *w) noexcept nogil:
    """Register the pairs Python handed over; True when the worker must stop."""
    cdef uint64_t value
    cdef uint32_t i, cut_servers
    cdef int32_t blocks[MAX_CUT_SERVERS]
    cdef bint cut, stop
    read(w.wake_fd, &value, sizeof(value))
    pthread_mutex_lock(&w.lock)
    for i in range(w.incoming_len):
        if w.incoming[i].lane >= 0:
            fp_atomic_add_int(&w.handed, -1)
            if not register_pair(w, &w.incoming[i]):  # no room: closed, the lane's books too
                lane_closed(w, &w.lanes[w.incoming[i].lane], w.incoming[i].frontend_block)
        else:
            register_pair(w, &w.incoming[i])
    w.incoming_len = 0
    if w.lane_commands:
        w.lane_commands = 0
        lane_commands(w)
    cut = w.cut_requested
    stop = w.stop_requested
    w.cut_requested = 0
    cut_servers = w.cut_servers_len
    for i in range(cut_servers):
        blocks[i] = w.cut_servers[i]
    w.cut_servers_len = 0
    pthread_mutex_unlock(&w.lock)
    if cut or stop:
        end_all(w, END_SHUTDOWN)
    elif cut_servers:
        end_servers(w, blocks, cut_servers)
    return stop


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


cdef void scan_timeouts(Worker *w) noexcept nogil:
    cdef uint32_t slot
    cdef Pair *p
    cdef uint32_t client_limit, server_limit
    cdef bint half_closed
    for slot in range(w.high):
        p = &w.pairs[slot]
        if not p.active:
            continue
        if p.connecting:
            if p.connect_timeout and w.now_ms - p.client.seen_ms >= p.connect_timeout:
                connect_failed(w, <int32_t>slot, ETIMEDOUT)
            continue
        half_closed = p.c2s.eof or p.s2c.eof
        client_limit = p.client_timeout
        server_limit = p.server_timeout
        if half_closed and p.client_fin_timeout:
            client_limit = p.client_fin_timeout
        if half_closed and p.server_fin_timeout:
            server_limit = p.server_fin_timeout
        if client_limit and w.now_ms - p.client.seen_ms >= client_limit:
            end_pair(w, <int32_t>slot, END_CLIENT_TIMEOUT)
        elif server_limit and w.now_ms - p.server.seen_ms >= server_limit:
            end_pair(w, <int32_t>slot, END_SERVER_TIMEOUT)


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
    w.next_scan_ms = w.now_ms + w.scan_interval_ms
    while True:
        timeout = 0 if w.ready_len else <int>w.scan_interval_ms
        if w.lanes_paused and timeout > LANE_RECHECK_MS:
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
        if w.now_ms >= w.next_scan_ms:
            scan_timeouts(w)
            w.next_scan_ms = w.now_ms + w.scan_interval_ms


# --- the Python face -----------------------------------------------------------------------------------

cdef inline uint32_t to_ms(object seconds) except? 0:
    if seconds is None or seconds <= 0:
        return 0
    return max(<uint32_t>(seconds * 1000.0 + 0.5), 1)


cdef class Pump:
    """Worker threads that pump connected socket pairs; see the module docstring."""

    def __cinit__(self):
        self.workers = NULL
        self.nworkers = 0
        self.shared.counters = NULL
        self.shared.ended = NULL
        self.shared.notify_fd = -1
        self._started = False
        self._stopped = False
        self._next_worker = 0
        self.lanes = NULL
        self.nlanes = 0
        self._lane_tables = {}

    def __init__(self, *, int threads=1, int bufsize=16384, pipesize=None, int maxpipes=0,
                 bint splice=True, int counter_blocks=64, on_end=None):
        cdef int i
        cdef Worker *w
        cdef epoll_event ev
        if threads < 1:
            raise ValueError("threads must be at least 1")
        if bufsize < 1024:
            raise ValueError("bufsize must be at least 1024 bytes")
        self._on_end = on_end
        self._threads = []
        self.shared.bufsize = <uint32_t>bufsize
        self.shared.pipesize = <uint32_t>(pipesize or 65536)
        self.shared.maxpipes = maxpipes
        self.shared.pipes_in_use = 0
        self.shared.splice_enabled = splice
        self.shared.counter_blocks = counter_blocks
        self.shared.counters = <uint64_t *>calloc(max(counter_blocks, 1) * CNT_FIELDS, sizeof(uint64_t))
        pthread_mutex_init(&self.shared.ended_lock, NULL)
        self.shared.ended_len = 0
        self.shared.ended_cap = 0
        self.shared.notify_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)
        if self.shared.counters == NULL or self.shared.notify_fd < 0:
            raise OSError(errno, "cannot set up the pump")
        self.workers = <Worker *>calloc(threads, sizeof(Worker))
        self.lanes = <Lane *>calloc(MAX_LANES * threads, sizeof(Lane))  # a copy per worker
        if self.workers == NULL or self.lanes == NULL:
            raise MemoryError()
        self.nworkers = threads
        self.shared.workers = <void *>self.workers
        self.shared.nworkers = threads
        for i in range(threads):
            w = &self.workers[i]
            w.shared = &self.shared
            pthread_mutex_init(&w.lock, NULL)
            w.epfd = epoll_create1(EPOLL_CLOEXEC)
            w.wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)
            w.scratch = <char *>malloc(bufsize)
            w.buf_pool = <char **>calloc(POOL_KEEP, sizeof(char *))
            w.pipe_pool = <int *>calloc(2 * POOL_KEEP, sizeof(int))
            w.scan_interval_ms = 1000
            w.lanes = &self.lanes[i * MAX_LANES]
            w.index = i
            w.exclusive = threads > 1
            if (w.epfd < 0 or w.wake_fd < 0 or w.scratch == NULL or w.buf_pool == NULL
                    or w.pipe_pool == NULL or not grow_slots(w)):
                raise OSError(errno, "cannot set up a pump worker")
            ev.events = EPOLLIN
            ev.data.u64 = WAKE_TOKEN
            if epoll_ctl(w.epfd, EPOLL_CTL_ADD, w.wake_fd, &ev) < 0:
                raise OSError(errno, "cannot set up a pump worker")

    @property
    def notify_fd(self) -> int:
        """Readable when ended pairs wait for ``drain_ended()``."""
        return self.shared.notify_fd

    @property
    def threads(self) -> int:
        return self.nworkers

    @property
    def pipes_in_use(self) -> int:
        return fp_atomic_load_int(&self.shared.pipes_in_use)

    def start(self, loop=None):
        """Start the worker threads; with ``loop``, ended pairs are reported through it."""
        if self._started:
            raise RuntimeError("pump already started")
        self._started = True
        self._loop = loop
        if loop is not None:
            loop.add_reader(self.shared.notify_fd, self.drain_ended)
        for i in range(self.nworkers):
            thread = threading.Thread(target=self._run, args=(i,), name=f"fastproxy-pump-{i}", daemon=True)
            self._threads.append(thread)
            thread.start()

    def _run(self, int index):
        cdef Worker *w = &self.workers[index]
        with nogil:
            run_worker(w)

    def add_pair(self, int client_fd, int server_fd, *, client_timeout=None, server_timeout=None,
                 client_fin_timeout=None, server_fin_timeout=None, int frontend_block=-1,
                 int server_block=-1, unsigned long long tag=0, bint connecting=False,
                 connect_timeout=None, bytes prefix=None):
        """Hand a pair over: from now on the pump owns both descriptors and closes them.

        With ``connecting``, the server socket has a non-blocking connect in progress: the pump waits
        for it (up to ``connect_timeout``) and, if it fails, closes the server socket and reports
        CONNECT_FAILED with the errno, leaving the client descriptor open and Python's again.
        ``prefix`` (at most bufsize bytes) is sent to the server before anything from the client.
        Timeouts are in seconds (None or 0: none).  ``tag`` comes back with the ended record.
        """
        cdef Worker *w
        cdef NewPair *np
        cdef NewPair *grown
        cdef uint64_t one = 1
        cdef int i, k, best = -1, best_active = 0, active
        cdef bint wake
        cdef char *prefix_copy = NULL
        if not self._started or self._stopped:
            raise RuntimeError("pump is not running")
        if prefix:
            if len(prefix) > self.shared.bufsize:
                raise ValueError("prefix larger than the buffer size")
            # A buffer like any other (bufsize bytes), so that it goes back to the pool once sent.
            prefix_copy = <char *>malloc(self.shared.bufsize)
            if prefix_copy == NULL:
                raise MemoryError()
            memcpy(prefix_copy, <char *>prefix, len(prefix))
        # The least loaded worker takes the pair; ties go round robin.
        for i in range(self.nworkers):
            k = (self._next_worker + i) % self.nworkers
            active = fp_atomic_load_int(&self.workers[k].active)
            if best < 0 or active < best_active:
                best = k
                best_active = active
        self._next_worker = (best + 1) % self.nworkers
        w = &self.workers[best]
        pthread_mutex_lock(&w.lock)
        if w.incoming_len == w.incoming_cap:
            grown = <NewPair *>realloc(w.incoming, (w.incoming_cap * 2 + 16) * sizeof(NewPair))
            if grown == NULL:
                pthread_mutex_unlock(&w.lock)
                free(prefix_copy)
                raise MemoryError()
            w.incoming = grown
            w.incoming_cap = w.incoming_cap * 2 + 16
        np = &w.incoming[w.incoming_len]
        np.client_fd = client_fd
        np.server_fd = server_fd
        np.client_timeout = to_ms(client_timeout)
        np.server_timeout = to_ms(server_timeout)
        np.client_fin_timeout = to_ms(client_fin_timeout)
        np.server_fin_timeout = to_ms(server_fin_timeout)
        np.frontend_block = frontend_block
        np.server_block = server_block
        np.tag = tag
        np.lane = -1
        np.log_end = 0  # the queue's memory is not zeroed: every field is set here
        np.connecting = connecting
        np.connect_timeout = to_ms(connect_timeout)
        np.prefix = prefix_copy
        np.prefix_len = len(prefix) if prefix else 0
        w.incoming_len += 1
        wake = w.incoming_len == 1
        pthread_mutex_unlock(&w.lock)
        # Pairs queued behind a first one ride on its wake-up: the worker takes the whole queue.
        if wake:
            write(w.wake_fd, &one, sizeof(one))
        return best

    def _signal(self, bint cut, bint stop):
        cdef uint64_t one = 1
        cdef int i
        for i in range(self.nworkers):
            pthread_mutex_lock(&self.workers[i].lock)
            if cut:
                self.workers[i].cut_requested = 1
            if stop:
                self.workers[i].stop_requested = 1
            pthread_mutex_unlock(&self.workers[i].lock)
            write(self.workers[i].wake_fd, &one, sizeof(one))

    def cut(self):
        """End every established pair now (reason SHUTDOWN); the pump keeps running."""
        if self._started and not self._stopped:
            self._signal(True, False)

    def cut_server(self, int block):
        """End every pair of the server counted in ``block`` (reason SERVER_DOWN), in every worker."""
        cdef uint64_t one = 1
        cdef int i
        if not self._started or self._stopped or block < 0:
            return
        for i in range(self.nworkers):
            pthread_mutex_lock(&self.workers[i].lock)
            if self.workers[i].cut_servers_len < MAX_CUT_SERVERS:
                self.workers[i].cut_servers[self.workers[i].cut_servers_len] = block
                self.workers[i].cut_servers_len += 1
            # else: 64 servers already waiting for this worker; the rest of this one's pairs end on
            # their own (their server is down: resets or timeouts), unrelated clients are not cut.
            pthread_mutex_unlock(&self.workers[i].lock)
            write(self.workers[i].wake_fd, &one, sizeof(one))

    def stop(self):
        """End every pair, stop the workers and report what ended.  Idempotent."""
        if self._stopped:
            return
        self._stopped = True
        if self._started:
            self._signal(True, True)
            for thread in self._threads:
                thread.join()
            if self._loop is not None:
                self._loop.remove_reader(self.shared.notify_fd)
        self.drain_ended()

    @property
    def active(self) -> int:
        """Pairs being pumped right now, over every worker."""
        cdef int i, total = 0
        for i in range(self.nworkers):
            total += fp_atomic_load_int(&self.workers[i].active)
        return total

    @property
    def loads(self):
        """Pairs each worker pumps now (a tuple, one entry per worker)."""
        cdef int i
        return tuple([fp_atomic_load_int(&self.workers[i].active) for i in range(self.nworkers)])

    def connections(self):
        """Every pair being pumped now, as ``(tag, bytes_in, bytes_out, connecting)``, read live.

        The worker only reallocates its pair table while holding its lock (new pairs are registered
        under it), so holding the same lock makes the read safe; the byte counts are single aligned
        64-bit words, read whole.
        """
        cdef int i
        cdef uint32_t slot
        cdef Worker *w
        cdef Pair *p
        result = []
        for i in range(self.nworkers):
            w = &self.workers[i]
            pthread_mutex_lock(&w.lock)
            try:
                for slot in range(w.high):
                    p = &w.pairs[slot]
                    if p.active:
                        result.append((p.tag, p.c2s.bytes, p.s2c.bytes, bool(p.connecting)))
            finally:
                pthread_mutex_unlock(&w.lock)
        return result

    def drain_ended(self):
        """Report every ended pair to ``on_end(tag, reason, bytes_in, bytes_out, error)``; returns how many."""
        cdef uint64_t value
        cdef Ended *records
        cdef uint32_t n, i
        read(self.shared.notify_fd, &value, sizeof(value))
        pthread_mutex_lock(&self.shared.ended_lock)
        records = self.shared.ended
        n = self.shared.ended_len
        self.shared.ended = NULL
        self.shared.ended_len = 0
        self.shared.ended_cap = 0
        pthread_mutex_unlock(&self.shared.ended_lock)
        try:
            if self._on_end is not None:
                for i in range(n):
                    if records[i].logged:  # a lane's pair ended: what its log line needs
                        self._on_end(records[i].tag, records[i].reason, records[i].bytes_in,
                                     records[i].bytes_out, records[i].error, -1,
                                     records[i].frontend_block, records[i].server_block,
                                     PyBytes_FromStringAndSize(<char *>records[i].peer, 28),
                                     records[i].duration_ms, records[i].connect_ms)
                    elif records[i].client_fd >= 0:  # a lane's client, Python's now
                        self._on_end(records[i].tag, records[i].reason, records[i].bytes_in,
                                     records[i].bytes_out, records[i].error, records[i].client_fd,
                                     records[i].frontend_block, records[i].server_block)
                    else:
                        self._on_end(records[i].tag, records[i].reason, records[i].bytes_in,
                                     records[i].bytes_out, records[i].error)
        finally:
            free(records)
        return n

    def counters(self, int block):
        """The counter block as a tuple indexed by fastproxy.pump.Counter."""
        if not 0 <= block < self.shared.counter_blocks:
            raise IndexError(block)
        cdef uint64_t *base = &self.shared.counters[block * CNT_FIELDS]
        cdef int i
        return tuple([fp_atomic_load(&base[i]) for i in range(<int>CNT_FIELDS)])

    def add_counter(self, int block, int field, long long delta):
        """Add ``delta`` (may be negative) to one counter: for what Python counts itself."""
        if not 0 <= block < self.shared.counter_blocks or not 0 <= field < CNT_FIELDS:
            raise IndexError((block, field))
        cdef uint64_t *slot = &self.shared.counters[block * CNT_FIELDS + field]
        if delta >= 0:
            fp_atomic_add(slot, <uint64_t>delta)
        else:
            fp_atomic_sub(slot, <uint64_t>(-delta))

    # --- lanes ---------------------------------------------------------------------------------------

    def add_lane(self, int listen_fd, *, int frontend_block, servers, client_timeout=None,
                 server_timeout=None, client_fin_timeout=None, server_fin_timeout=None,
                 connect_timeout=None, client_tcp=None, server_tcp=(1, 0, 0, 0), int maxconn=0,
                 str hashing=None, unsigned long long hash_seed=0, bint log_ends=False,
                 log_sinks=None, str log_frontend="", log_servers=None, bint log_dontlognull=False,
                 bint log_connect=False):
        """Let worker 0 accept the listener's connections and pair them itself; returns the lane's index.

        ``servers`` is a sequence of ``(raw_sockaddr, counter_block, weight)``.  ``hashing`` None picks
        by smooth weighted round robin over the weights; ``"map"`` or ``"table"`` hashes the client's
        address instead, on what ``set_lane_picks`` gives.  The listener must stay open until
        ``remove_lane`` returns.  Clients the lane cannot place come back through ``on_end``
        as CONNECT_FAILED with a sixth argument, the client descriptor (Python's from then on).
        """
        cdef Lane *lane
        cdef Lane *copy
        cdef Worker *w
        cdef uint64_t one = 1
        cdef uint32_t i
        cdef int j, k
        cdef bytes address
        if not self._started or self._stopped:
            raise RuntimeError("pump is not running")
        if self.nlanes >= MAX_LANES:
            raise RuntimeError(f"at most {MAX_LANES} lanes")
        servers = list(servers)
        lane = &self.lanes[self.nlanes]
        memset(lane, 0, sizeof(Lane))
        lane.servers = <LaneServer *>calloc(max(len(servers), 1), sizeof(LaneServer))
        if lane.servers == NULL:
            raise MemoryError()
        for i, (address, block, weight) in enumerate(servers):
            if len(address) > 28:
                raise ValueError("a raw sockaddr is at most 28 bytes")
            memcpy(lane.servers[i].addr, <char *>address, len(address))
            lane.servers[i].addrlen = len(address)
            lane.servers[i].family = address[0] | (address[1] << 8)
            lane.servers[i].block = block
            lane.servers[i].weight = lane.servers[i].pending_weight = weight
        lane.nservers = len(servers)
        lane.fd = listen_fd
        lane.frontend_block = frontend_block
        lane.client_timeout = to_ms(client_timeout)
        lane.server_timeout = to_ms(server_timeout)
        lane.client_fin_timeout = to_ms(client_fin_timeout)
        lane.server_fin_timeout = to_ms(server_fin_timeout)
        lane.connect_timeout = to_ms(connect_timeout)
        # client_tcp None: the listener carries the options and accepted sockets inherit them.
        lane.tune_clients = client_tcp is not None
        for i in range(4):
            lane.client_tcp[i] = client_tcp[i] if client_tcp is not None else 0
            lane.server_tcp[i] = server_tcp[i]
        lane.maxconn = maxconn
        lane.hash_kind = {None: LANE_WRR, "map": LANE_MAP, "table": LANE_TABLE}[hashing]
        lane.hash_seed = hash_seed
        lane.log_ends = log_ends
        if (log_ends or log_connect) and log_sinks:
            # The lane writes its tcplog lines itself: ``log_sinks`` is a list of (fd, stream,
            # format 0/1/2, length, b"<PRI>"); the descriptors stay Python's and open while the lane is.
            lane.log_sinks = <LogSink *>calloc(len(log_sinks), sizeof(LogSink))
            if lane.log_sinks == NULL:
                free(lane.servers)
                raise MemoryError()
            for i, (fd, stream, kind, length, pri) in enumerate(log_sinks):
                lane.log_sinks[i].fd = fd
                lane.log_sinks[i].stream = stream
                lane.log_sinks[i].format = kind
                lane.log_sinks[i].length = length
                memcpy(lane.log_sinks[i].pri, <char *>pri, min(len(pri), 7))
            lane.nlog_sinks = len(log_sinks)
            lane.log_dontlognull = log_dontlognull
            lane.log_connect = log_connect
            lane.log_pid = os.getpid()
            name = log_frontend.encode()[:63]
            memcpy(lane.log_frontend, <char *>name, len(name))
            for i, server_name in enumerate(log_servers or ()):
                if i < lane.nservers:
                    name = server_name.encode()[:95]
                    memcpy(lane.servers[i].log_name, <char *>name, len(name))
        lane.open_count = &lane.open
        lane.state = LANE_NEW
        # Every worker accepts on the lane, with a copy of its own (its round robin, its pause state);
        # the count of open clients is the first copy's, shared.
        for k in range(1, self.nworkers):
            copy = &self.lanes[k * MAX_LANES + self.nlanes]
            memcpy(copy, lane, sizeof(Lane))
            copy.servers = <LaneServer *>calloc(max(lane.nservers, 1), sizeof(LaneServer))
            if copy.servers == NULL:
                for j in range(1, k):
                    free(self.lanes[j * MAX_LANES + self.nlanes].servers)
                free(lane.servers)
                raise MemoryError()
            memcpy(copy.servers, lane.servers, max(lane.nservers, 1) * sizeof(LaneServer))
        self.nlanes += 1
        for k in range(self.nworkers):
            w = &self.workers[k]
            pthread_mutex_lock(&w.lock)
            w.nlanes = self.nlanes
            w.lane_commands = 1
            pthread_mutex_unlock(&w.lock)
            write(w.wake_fd, &one, sizeof(one))
        return self.nlanes - 1

    def remove_lane(self, int index):
        """Stop accepting on the lane; once this returns, the pump no longer touches its listener."""
        cdef Worker *w
        cdef Lane *lane
        cdef uint64_t one = 1
        cdef int k
        if not 0 <= index < <int>self.nlanes:
            raise IndexError(index)
        for k in range(self.nworkers):
            w = &self.workers[k]
            lane = &w.lanes[index]
            pthread_mutex_lock(&w.lock)
            if lane.state == LANE_NEW or not self._started or self._stopped:
                lane.state = LANE_OFF  # never polled, or no worker left to poll it
            elif lane.state == LANE_ON:
                lane.state = LANE_CLOSING
                w.lane_commands = 1
            pthread_mutex_unlock(&w.lock)
            if fp_atomic_acquire_int(&lane.state) != LANE_OFF:
                write(w.wake_fd, &one, sizeof(one))
        deadline = time.monotonic() + 5.0
        for k in range(self.nworkers):
            lane = &self.workers[k].lanes[index]
            while fp_atomic_acquire_int(&lane.state) != LANE_OFF:
                if time.monotonic() > deadline:
                    raise RuntimeError("the pump did not let go of a lane")
                time.sleep(0.0002)

    def set_lane_weights(self, int index, weights):
        """New effective weights for the lane's servers (0: out of picks), taken by the next accept."""
        cdef Worker *w
        cdef Lane *lane
        cdef uint64_t one = 1
        cdef uint32_t i
        cdef int k
        if not 0 <= index < <int>self.nlanes:
            raise IndexError(index)
        weights = list(weights)
        if len(weights) != self.lanes[index].nservers:
            raise ValueError("one weight per server of the lane")
        for k in range(self.nworkers):
            w = &self.workers[k]
            lane = &w.lanes[index]
            pthread_mutex_lock(&w.lock)
            for i in range(lane.nservers):
                lane.servers[i].pending_weight = weights[i]
            lane.weights_dirty = 1
            w.lane_commands = 1
            pthread_mutex_unlock(&w.lock)
            if self._started and not self._stopped:
                write(w.wake_fd, &one, sizeof(one))
            else:
                for i in range(lane.nservers):
                    lane.servers[i].weight = lane.servers[i].pending_weight

    def set_lane_picks(self, int index, server_map=None, table=None, table_servers=None):
        """What a hashing lane picks on: HAProxy's map (a list of server indexes, ``hash % len``), or a
        ring ``Table`` with the lane server index of each of its servers.  None: no server (the lane
        gives its clients to Python)."""
        cdef Worker *w
        cdef Lane *lane
        cdef uint64_t one = 1
        cdef int32_t *new_map = NULL
        cdef int32_t *new_servers = NULL
        cdef Table new_table = table
        cdef uint32_t i, nservers
        cdef int k
        if not 0 <= index < <int>self.nlanes:
            raise IndexError(index)
        nservers = self.lanes[index].nservers
        if server_map:
            for i in range(len(server_map)):
                if not 0 <= server_map[i] < nservers:
                    raise ValueError("a map names the lane's servers by index")
        if new_table is not None:
            # A worker may read the previous table until it takes this one (within a wake-up);
            # changes come at the pace of health checks and operators, so a few kept suffice.
            kept = self._lane_tables.setdefault(index, [])
            kept.append(new_table)
            del kept[:-4]
        for k in range(self.nworkers):
            # Each worker frees the arrays it replaces: every copy gets arrays of its own.
            new_map = NULL
            new_servers = NULL
            if server_map:
                new_map = <int32_t *>malloc(len(server_map) * sizeof(int32_t))
                if new_map == NULL:
                    raise MemoryError()
                for i in range(len(server_map)):
                    new_map[i] = server_map[i]
            if new_table is not None:
                new_servers = <int32_t *>malloc(max(len(table_servers), 1) * sizeof(int32_t))
                if new_servers == NULL:
                    free(new_map)
                    raise MemoryError()
                for i in range(len(table_servers)):
                    new_servers[i] = table_servers[i]
            w = &self.workers[k]
            lane = &w.lanes[index]
            pthread_mutex_lock(&w.lock)
            free(lane.pending_map)
            free(lane.pending_table_servers)
            lane.pending_map = new_map
            lane.pending_map_len = len(server_map) if server_map else 0
            lane.pending_table = <void *>new_table if new_table is not None else NULL
            lane.pending_table_servers = new_servers
            lane.picks_dirty = 1
            w.lane_commands = 1
            if not self._started or self._stopped:
                lane.picks_dirty = 0
                swap_picks(lane)
            pthread_mutex_unlock(&w.lock)
            if self._started and not self._stopped:
                write(w.wake_fd, &one, sizeof(one))

    def lane_open(self, int index=-1) -> int:
        """Clients of one lane (or of every lane) open now."""
        cdef uint32_t i
        cdef int total = 0
        if index >= 0:
            if index >= <int>self.nlanes:
                raise IndexError(index)
            return fp_atomic_load_int(&self.lanes[index].open)
        for i in range(self.nlanes):
            total += fp_atomic_load_int(&self.lanes[i].open)
        return total

    def lane_ended(self):
        """Pairs made by lanes that ended, as a tuple indexed by EndReason."""
        cdef int i
        return tuple([fp_atomic_load(&self.shared.lane_ended[i]) for i in range(END_REASONS)])

    @property
    def accept_errors(self) -> int:
        """Accepts of lanes that failed for lack of descriptors or memory (each followed by a rest)."""
        return fp_atomic_load(&self.shared.accept_errors)

    @property
    def maxconn(self) -> int:
        return self.shared.maxconn

    @maxconn.setter
    def maxconn(self, int value):
        """The global connection limit lanes respect (0: none); Python's own clients count against it
        through ``open_delta``."""
        self.shared.maxconn = value

    @property
    def open_total(self) -> int:
        """Client connections open now: the lanes' and those Python declared with ``open_delta``."""
        return fp_atomic_load_int(&self.shared.open_total)

    def open_delta(self, int delta):
        fp_atomic_add_int(&self.shared.open_total, delta)

    def __dealloc__(self):
        cdef int i, j
        cdef Worker *w
        cdef Lane *lane
        if self._started and not self._stopped:
            return  # workers may still run: leak rather than free under them
        if self.workers != NULL:
            for i in range(self.nworkers):
                w = &self.workers[i]
                for j in range(w.incoming_len):
                    close(w.incoming[j].client_fd)
                    close(w.incoming[j].server_fd)
                    free(w.incoming[j].prefix)
                if w.epfd > 0:
                    close(w.epfd)
                if w.wake_fd > 0:
                    close(w.wake_fd)
                for j in range(w.buf_pool_len):
                    free(w.buf_pool[j])
                for j in range(w.pipe_pool_len):
                    close(w.pipe_pool[2 * j])
                    close(w.pipe_pool[2 * j + 1])
                free(w.buf_pool)
                free(w.pipe_pool)
                free(w.scratch)
                free(w.pairs)
                free(w.free_slots)
                free(w.ready)
                free(w.ready_next)
                free(w.incoming)
                pthread_mutex_destroy(&w.lock)
            free(self.workers)
        if self.lanes != NULL:
            for j in range(self.nworkers):
                for i in range(<int>self.nlanes):
                    lane = &self.lanes[j * MAX_LANES + i]
                    free(lane.servers)
                    if j == 0:
                        free(lane.log_sinks)  # the copies share worker 0's
                    free(lane.map)
                    free(lane.pending_map)
                    free(lane.table_servers)
                    free(lane.pending_table_servers)
            free(self.lanes)
        if self.shared.notify_fd >= 0:
            close(self.shared.notify_fd)
        free(self.shared.counters)
        free(self.shared.ended)
