# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""The data plane: pairs of sockets pumped by epoll worker threads that run without the GIL.

Python hands a connected (client, server) pair over with ``Pump.add_pair``; from then on no Python code
runs for that pair until it ends: one worker thread owns it, moves bytes both ways, applies the idle and
half-close timeouts, and finally closes both sockets and queues an ``Ended`` record.  Python hears of
ended pairs through an eventfd that its event loop watches, and reads the counters at any time.

Bytes move through recv/send with a worker-wide scratch buffer, so an idle pair holds no buffer at all;
a per-direction buffer is taken from a pool only while the destination will not take what was read.
A read that fills the scratch buffer switches the direction to splice() through a pipe (HAProxy's
splice-auto), pooled and sized by tune.pipesize (unset: 1 MiB, see _pump_common.default_pipesize).  In flight per direction: at most one buffer or one
pipe, never more: the rest waits in the kernel, which is the backpressure.

This file is the Python face (``Pump``); the C-level code is one extension built from the files it
includes (uvloop's layout), one concern each: dataplane/pools.pxi (buffers, pipes), records.pxi (the
ended queue to Python), pairs.pxi (a pair from registration to its end), worker.pxi (the loop and the
commands others leave for a worker), timers.pxi (the timeouts' wheel), sticktable.pxi (the stick
tables lanes track clients in, and their tcp-request connection rules), lanes.pxi (listeners the pump
accepts on itself), lanelog.pxi (the log lines lanes write), moves.pxi (pairs detached from a pump and
adopted by another).  Structs are declared in _pump.pxd.  The pure-Python twin is
fastproxy/_pump_py.py; both keep fastproxy.pump.PumpProtocol and pass tests/test_pump.py.
"""

from libc.errno cimport EAGAIN, EINTR, ETIMEDOUT, errno
from libc.stdint cimport int32_t, int64_t, uint8_t, uint16_t, uint32_t, uint64_t
from cpython.bytes cimport PyBytes_FromStringAndSize
from libc.stdlib cimport calloc, free, malloc, realloc
from libc.string cimport memcmp, memcpy, memset, strlen

from fastproxy.includes.system cimport *
from fastproxy._ring cimport Table, xxh64

import os
import threading
import time

from fastproxy._pump_common import DetachedPair, PairInfo, default_pipesize


include "dataplane/base.pxi"
include "dataplane/pools.pxi"
include "dataplane/records.pxi"
include "dataplane/pairs.pxi"
include "dataplane/moves.pxi"
include "dataplane/worker.pxi"
include "dataplane/timers.pxi"
include "dataplane/sticktable.pxi"
include "dataplane/lanes.pxi"
include "dataplane/lanelog.pxi"


# --- the Python face -----------------------------------------------------------------------------------

def log_line(bytes program, dict values):
    """A line of a lane's log-format program (``logformat.lane_program``) from the C formatter the
    lanes run, over ``values`` (``client``, ``frontend``, ``backend``, ``server``: raw sockaddrs or
    None; ``accepted``: epoch seconds; the counts by their ``LogValues`` names): the tests hold it to
    logformat.render byte for byte."""
    cdef char out[1024]
    cdef LogValues v
    cdef bytes termination = values.get("termination", "--").encode()
    cdef bytes server_name = values["server_name"].encode() if values.get("server_name") else None
    memset(&v, 0, sizeof(LogValues))
    set_address(v.client, values.get("client"))
    set_address(v.frontend, values.get("frontend"))
    set_address(v.backend, values.get("backend"))
    set_address(v.server, values.get("server"))
    v.accepted_ms = <uint64_t>(values.get("accepted", 0.0) * 1000 + 1e-3)
    v.connect_ms = values.get("connect_ms", -1)
    v.total_ms = values.get("total_ms", 0)
    v.bytes_in, v.bytes_out = values.get("bytes_in", 0), values.get("bytes_out", 0)
    v.termination = termination
    if server_name is not None:
        v.server_name = server_name
    v.active = values.get("active", 0)
    v.frontend_current = values.get("frontend_current", 0)
    v.backend_current = values.get("backend_current", 0)
    v.server_current = values.get("server_current", 0)
    cdef size_t n = format_log(out, sizeof(out), program, len(program), &v)
    return out[:n].decode()


cdef void set_address(uint8_t *field, object address):
    if address:
        memcpy(field, <char *>address, min(len(address), 28))


def connect_line(str client_host, int port, str local_host, int local_port, str frontend):
    """The ``Connect from`` line the lanes write, from the C formatter (for the tests)."""
    cdef char out[512]
    cdef bytes host_b = client_host.encode(), local_b = local_host.encode(), frontend_b = frontend.encode()
    cdef int n = format_connect(out, sizeof(out), host_b, port, local_b, local_port, frontend_b)
    return out[:n].decode()


def termination_states():
    """The C table of HAProxy's termination states, by end reason (for the tests)."""
    cdef int i
    return [(<bytes>TERMINATIONS[i]).decode() for i in range(<int>END_REASONS)]


cdef inline uint32_t to_ms(object seconds) except? 0:
    if seconds is None or seconds <= 0:
        return 0
    return max(<uint32_t>(seconds * 1000.0 + 0.5), 1)


cdef int set_timeouts(PairTimeouts *t, object client, object server, object client_fin,
                      object server_fin, object connect) except -1:
    t.client = to_ms(client)
    t.server = to_ms(server)
    t.client_fin = to_ms(client_fin)
    t.server_fin = to_ms(server_fin)
    t.connect = to_ms(connect)
    return 0


cdef char *copy_in_flight(bytes data, uint32_t bufsize) noexcept:
    """``data`` in a buffer of the pool's size, or of its own when larger (see Direction.buf_own);
    NULL for none (or no memory)."""
    cdef char *copy
    if not data:
        return NULL
    copy = <char *>malloc(max(<uint32_t>len(data), bufsize))
    if copy != NULL:
        memcpy(copy, <char *>data, len(data))
    return copy


cdef int ask_detach(Worker *w, void *arg) noexcept nogil:
    """Command: a DetachRequest for the worker to answer at its next turn."""
    w.detach = <DetachRequest *>arg
    return WAKE


cdef class Pump:
    """Worker threads that pump connected socket pairs; see the module docstring."""

    def __cinit__(self):
        self.workers = NULL
        self.nworkers = 0
        self.shared.counters = NULL
        self.shared.times = NULL
        self.shared.ended = NULL
        self.shared.notify_fd = -1
        self._started = False
        self._stopped = False
        self._next_worker = 0
        self.lane_copies = NULL

    def __init__(self, *, int threads=1, int bufsize=16384, pipesize=None, int maxpipes=0,
                 bint splice=True, int counter_blocks=64, on_pair_ended=None, on_connect_failed=None,
                 on_lane_hand_back=None, on_lane_ended=None):
        """See fastproxy.pump.PumpProtocol; the four callbacks are called from ``drain_ended``."""
        cdef int i
        cdef Worker *w
        cdef epoll_event ev
        if threads < 1:
            raise ValueError("threads must be at least 1")
        if bufsize < 1024:
            raise ValueError("bufsize must be at least 1024 bytes")
        self._on_pair_ended = on_pair_ended
        self._on_connect_failed = on_connect_failed
        self._on_lane_hand_back = on_lane_hand_back
        self._on_lane_ended = on_lane_ended
        self._threads = []
        self.shared.bufsize = <uint32_t>bufsize
        self.shared.pipesize = <uint32_t>(pipesize or default_pipesize())
        self.shared.maxpipes = maxpipes
        self.shared.pipes_in_use = 0
        self.shared.splice_enabled = splice
        self.shared.counter_blocks = counter_blocks
        # Aligned on a cache line, so that each block is exactly one (see CNT_FIELDS).
        if posix_memalign(<void **>&self.shared.counters, 64,
                          max(counter_blocks, 1) * CNT_FIELDS * sizeof(uint64_t)) != 0:
            self.shared.counters = NULL
        else:
            memset(self.shared.counters, 0, max(counter_blocks, 1) * CNT_FIELDS * sizeof(uint64_t))
        self.shared.times = <uint32_t *>calloc(max(counter_blocks, 1) * TM_FIELDS, sizeof(uint32_t))
        pthread_mutex_init(&self.shared.ended_lock, NULL)
        self.shared.ended_len = 0
        self.shared.ended_cap = 0
        self.shared.notify_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)
        if self.shared.counters == NULL or self.shared.times == NULL or self.shared.notify_fd < 0:
            raise OSError(errno, "cannot set up the pump")
        self.workers = <Worker *>calloc(threads, sizeof(Worker))
        self.lane_copies = <Lane *>calloc(MAX_LANES * threads, sizeof(Lane))  # a copy per worker
        if self.workers == NULL or self.lane_copies == NULL:
            raise MemoryError()
        self.lanes = Lanes(self)
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
            wheel_init(w)
            w.lanes = &self.lane_copies[i * MAX_LANES]
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
        self.shared.running = 1
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
                 connect_timeout=None, bytes prefix=None, int backend_block=-1, double waited=0.0):
        """Hand a pair over: from now on the pump owns both descriptors and closes them.

        With ``connecting``, the server socket has a non-blocking connect in progress: the pump waits
        for it (up to ``connect_timeout``) and, if it fails, closes the server socket and reports
        CONNECT_FAILED with the errno, leaving the client descriptor open and Python's again.
        ``prefix`` (at most bufsize bytes) is sent to the server before anything from the client.
        Timeouts are in seconds (None or 0: none).  ``tag`` comes back with the ended record.
        ``waited``: seconds since the client was accepted (the queue included), for its session times,
        folded at the end into the server's and the backend's blocks (see ``times``).
        """
        cdef NewPair np
        cdef int best
        cdef char *prefix_copy = NULL
        if not self.shared.running:
            raise RuntimeError("pump is not running")
        if prefix:
            if len(prefix) > self.shared.bufsize:
                raise ValueError("prefix larger than the buffer size")
            # A buffer like any other (bufsize bytes), so that it goes back to the pool once sent.
            prefix_copy = <char *>malloc(self.shared.bufsize)
            if prefix_copy == NULL:
                raise MemoryError()
            memcpy(prefix_copy, <char *>prefix, len(prefix))
        best = self._least_loaded()
        memset(&np, 0, sizeof(NewPair))
        np.dialed_ms = monotonic_ms()
        np.accepted_ms = np.dialed_ms - min(<uint64_t>(max(waited, 0.0) * 1000.0), np.dialed_ms)
        np.backend_block = backend_block
        np.client_fd = client_fd
        np.server_fd = server_fd
        set_timeouts(&np.timeouts, client_timeout, server_timeout, client_fin_timeout, server_fin_timeout,
                     connect_timeout)
        np.frontend_block = frontend_block
        np.server_block = server_block
        np.tag = tag
        np.lane = -1
        np.log_end = 0  # a stack struct: every field the worker reads is set here
        np.connecting = connecting
        np.prefix = prefix_copy
        np.prefix_len = len(prefix) if prefix else 0
        if not hand_over(&self.workers[best], &np):
            free(prefix_copy)
            raise MemoryError()
        return best

    def detach(self, tags):
        """Let go of the established pairs of ``tags`` (lanes' too), each at a clean point between two
        turns of its worker: a list of ``DetachedPair``, whose descriptors are open and the caller's.
        A pair's bytes in flight come along in it (nothing is half-written); the pump's books drop it
        as if it had ended, with no report.  Pairs still connecting, unknown or ended are left out."""
        cdef list wanted = [tag for tag in tags if tag]
        cdef uint32_t n = len(wanted), i, k
        cdef int index
        cdef DetachRequest *requests
        cdef Detached *d
        cdef list result = []
        if n == 0 or not self.shared.running:
            return result
        requests = <DetachRequest *>calloc(self.nworkers, sizeof(DetachRequest))
        if requests == NULL:
            raise MemoryError()
        try:
            for index in range(self.nworkers):
                requests[index].tags = <uint64_t *>malloc(n * sizeof(uint64_t))
                requests[index].out = <Detached *>calloc(n, sizeof(Detached))
                if requests[index].tags == NULL or requests[index].out == NULL:
                    raise MemoryError()
                for i in range(n):
                    requests[index].tags[i] = wanted[i]
                requests[index].ntags = n
            for index in range(self.nworkers):
                command(&self.workers[index], ask_detach, &requests[index])
            # The workers answer within a turn; a stopped worker never does (nothing then moves).
            deadline = time.monotonic() + 5.0
            for index in range(self.nworkers):
                while not fp_atomic_acquire_int(&requests[index].done):
                    if time.monotonic() > deadline:
                        raise RuntimeError("a pump worker did not answer a detach")
                    time.sleep(0.0002)
            for index in range(self.nworkers):
                for k in range(requests[index].out_len):
                    d = &requests[index].out[k]
                    result.append(DetachedPair(
                        d.tag, d.client_fd, d.server_fd, d.frontend_block, d.backend_block, d.server_block,
                        PyBytes_FromStringAndSize(<char *>d.peer, 28) if d.lane >= 0 else b"",
                        (d.timeouts.client, d.timeouts.server, d.timeouts.client_fin, d.timeouts.server_fin,
                         d.timeouts.connect), d.client_idle_ms, d.server_idle_ms, d.age_ms, d.queue_ms,
                        d.connect_ms, d.bytes_in, d.bytes_out, bool(d.flags & CARRIED_IN_EOF),
                        bool(d.flags & CARRIED_IN_SHUT), bool(d.flags & CARRIED_OUT_EOF),
                        bool(d.flags & CARRIED_OUT_SHUT),
                        PyBytes_FromStringAndSize(d.pending_in, d.pending_in_len) if d.pending_in else b"",
                        PyBytes_FromStringAndSize(d.pending_out, d.pending_out_len) if d.pending_out else b""))
        finally:
            for index in range(self.nworkers):
                # A request a worker has not answered stays its own (only a stopped worker; it is freed
                # with nothing else): freeing it here would let it write into freed memory.
                if requests[index].ntags and not fp_atomic_acquire_int(&requests[index].done):
                    continue
                for k in range(requests[index].out_len):
                    free(requests[index].out[k].pending_in)
                    free(requests[index].out[k].pending_out)
                free(requests[index].tags)
                free(requests[index].out)
            free(requests)
        return result

    def adopt(self, pair, *, unsigned long long tag=0):
        """Take a pair another pump detached (a ``DetachedPair`` whose descriptors and blocks are this
        pump's): pumped from where it stood, its bytes in flight first, its half-closes, byte counts,
        idle times and age as they were; ``tag`` names it from now on.  The worker that took it."""
        cdef NewPair np
        cdef int best
        cdef bytes pending_in = pair.pending_in, pending_out = pair.pending_out
        cdef uint64_t now = monotonic_ms()
        if not self.shared.running:
            raise RuntimeError("pump is not running")
        memset(&np, 0, sizeof(NewPair))
        np.prefix = copy_in_flight(pending_in, self.shared.bufsize)
        np.pending_out = copy_in_flight(pending_out, self.shared.bufsize)
        if (pending_in and np.prefix == NULL) or (pending_out and np.pending_out == NULL):
            free(np.prefix)
            free(np.pending_out)
            raise MemoryError()
        np.prefix_len = len(pending_in)
        np.pending_out_len = len(pending_out)
        best = self._least_loaded()
        np.client_fd = pair.client_fd
        np.server_fd = pair.server_fd
        np.timeouts.client, np.timeouts.server, np.timeouts.client_fin, np.timeouts.server_fin, \
            np.timeouts.connect = pair.timeouts_ms
        np.frontend_block = pair.frontend_block
        np.server_block = pair.server_block
        np.backend_block = pair.backend_block
        np.tag = tag
        np.lane = -1
        np.accepted_ms = now - min(<uint64_t>pair.age_ms, now)
        np.dialed_ms = min(np.accepted_ms + <uint64_t>pair.queue_ms, now)
        np.adopted = 1
        np.carried_flags = ((CARRIED_IN_EOF if pair.in_eof else 0) | (CARRIED_IN_SHUT if pair.in_shut else 0)
                            | (CARRIED_OUT_EOF if pair.out_eof else 0)
                            | (CARRIED_OUT_SHUT if pair.out_shut else 0))
        np.bytes_in = pair.bytes_in
        np.bytes_out = pair.bytes_out
        np.client_idle_ms = pair.client_idle_ms
        np.server_idle_ms = pair.server_idle_ms
        np.connect_ms = pair.connect_ms
        if not hand_over(&self.workers[best], &np):
            free(np.prefix)
            free(np.pending_out)
            raise MemoryError()
        return best

    cdef int _least_loaded(self):
        """The worker a new pair goes to: the least loaded; ties go round robin."""
        cdef int i, k, best = -1, best_active = 0, active
        for i in range(self.nworkers):
            k = (self._next_worker + i) % self.nworkers
            active = fp_atomic_load_int(&self.workers[k].active)
            if best < 0 or active < best_active:
                best = k
                best_active = active
        self._next_worker = (best + 1) % self.nworkers
        return best

    def cut(self):
        """End every established pair now (reason SHUTDOWN); the pump keeps running."""
        if self.shared.running:
            request_all(&self.shared, True, False, -1, 0)

    def cut_pair(self, unsigned long long tag):
        """End the pair of ``tag`` (reason SHUTDOWN), wherever it is; nothing if there is none."""
        if self.shared.running and tag:
            request_all(&self.shared, False, False, -1, tag)

    def cut_server(self, int block):
        """End every pair of the server counted in ``block`` (reason SERVER_DOWN), in every worker."""
        if self.shared.running and block >= 0:
            request_all(&self.shared, False, False, block, 0)

    def stop(self):
        """End every pair, stop the workers and report what ended.  Idempotent."""
        if self._stopped:
            return
        self._stopped = True
        self.shared.running = 0  # from now on, lane changes apply at once (no worker to take them)
        if self._started:
            request_all(&self.shared, True, True, -1, 0)
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

    def pairs(self):
        """Every pair now, as ``PairInfo`` records, read live under each worker's lock (as
        ``connections``): for ``show sess``, never on the data path."""
        cdef int i
        cdef uint32_t slot
        cdef Worker *w
        cdef Pair *p
        cdef uint64_t now = monotonic_ms()
        cdef int64_t client_left, server_left
        result = []
        for i in range(self.nworkers):
            w = &self.workers[i]
            pthread_mutex_lock(&w.lock)
            try:
                for slot in range(w.high):
                    p = &w.pairs[slot]
                    if not p.active:
                        continue
                    client_left, server_left = pair_expiries(p, now)
                    result.append(PairInfo(
                        p.tag, i, p.frontend_block, p.backend_block, p.server_block, p.client.fd,
                        p.server.fd, p.c2s.bytes, p.s2c.bytes, bool(p.connecting),
                        elapsed_ms(now, p.accepted_ms), client_left, server_left,
                        p.c2s.buf_len + p.c2s.pipe_len, p.s2c.buf_len + p.s2c.pipe_len,
                        PyBytes_FromStringAndSize(<char *>p.peer, 28) if p.lane >= 0 else b""))
            finally:
                pthread_mutex_unlock(&w.lock)
        return result

    def times(self, int block):
        """The block's session times, a tuple indexed by fastproxy.pump.Time (sums and maxima in
        milliseconds, as HAProxy keeps them)."""
        if not 0 <= block < self.shared.counter_blocks:
            raise IndexError(block)
        cdef uint32_t *base = &self.shared.times[block * TM_FIELDS]
        cdef int i
        return tuple([fp_atomic_load_u32(&base[i]) for i in range(<int>TM_FIELDS)])

    def clear_times(self, int block):
        """Start the block's session times over (``clear counters all``, a block reused)."""
        if not 0 <= block < self.shared.counter_blocks:
            raise IndexError(block)
        cdef uint32_t *base = &self.shared.times[block * TM_FIELDS]
        cdef int i
        for i in range(<int>TM_FIELDS):
            fp_atomic_store_u32(&base[i], 0)

    def drain_ended(self):
        """Report what ended since the last call, each kind to its callback; returns how many.

        ``on_pair_ended(tag, reason, bytes_in, bytes_out)``: a pair Python handed over ended.
        ``on_connect_failed(tag, error, client_fd)``: its connect failed; the client is Python's again.
        ``on_lane_hand_back(frontend_block, server_block, client_fd, error)``: a client a lane could
        not place (its connect failed, ``server_block``; or no server to pick, -1), Python's now.
        ``on_lane_ended(frontend_block, server_block, reason, bytes_in, bytes_out, peer, duration_ms,
        connect_ms)``: a lane's pair ended, for the log line the lane does not write itself (``peer``:
        the client's raw sockaddr).  Lanes' other pairs are not reported one by one (``lanes.ended``).
        """
        cdef uint64_t value
        cdef Ended *records
        cdef Ended *r
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
            for i in range(n):
                r = &records[i]
                if r.kind == REC_PAIR_ENDED:
                    if self._on_pair_ended is not None:
                        self._on_pair_ended(r.tag, r.reason, r.bytes_in, r.bytes_out)
                elif r.kind == REC_CONNECT_FAILED:
                    if self._on_connect_failed is not None:
                        self._on_connect_failed(r.tag, r.error, r.client_fd)
                elif r.kind == REC_LANE_HAND_BACK:
                    if self._on_lane_hand_back is not None:
                        self._on_lane_hand_back(r.frontend_block, r.server_block, r.client_fd, r.error)
                    else:
                        close(r.client_fd)  # nobody to take it: the client's loss only
                elif self._on_lane_ended is not None:
                    self._on_lane_ended(r.frontend_block, r.server_block, r.reason, r.bytes_in, r.bytes_out,
                                        PyBytes_FromStringAndSize(<char *>r.peer, 28), r.duration_ms,
                                        r.connect_ms)
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

    def stick_table(self, spec):
        """A stick table (a ``config.model.StickTable`` storing conn_cur, conn_cnt and conn_rate at
        most, keyed by ip or ipv6) kept here, where lanes track clients in it without Python: a
        ``sticktables.PumpStickTable``, which the Python path, the runtime API and the exporter use
        as any other."""
        from fastproxy.sticktables import PumpStickTable
        return PumpStickTable(spec, SourceCounters)

    def add_counter(self, int block, int field, long long delta):
        """Add ``delta`` (may be negative) to one counter: for what Python counts itself."""
        if not 0 <= block < self.shared.counter_blocks or not 0 <= field < CNT_FIELDS:
            raise IndexError((block, field))
        cdef uint64_t *slot = &self.shared.counters[block * CNT_FIELDS + field]
        if delta >= 0:
            fp_atomic_add(slot, <uint64_t>delta)
        else:
            fp_atomic_sub(slot, <uint64_t>(-delta))

    def __dealloc__(self):
        cdef int i, j
        cdef uint32_t k
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
        if self.lane_copies != NULL:
            for j in range(self.nworkers):
                for i in range(MAX_LANES):  # lanes never added are zeroed: free(NULL) is nothing
                    lane = &self.lane_copies[j * MAX_LANES + i]
                    free(lane.servers)
                    if j == 0:
                        free(lane.log_sinks)  # the copies share the first one's
                        free(lane.log_program)
                        free(lane.pick_current)
                        if lane.pick_lock != NULL:
                            pthread_mutex_destroy(lane.pick_lock)
                            free(lane.pick_lock)
                    free(lane.map)
                    free(lane.pending_map)
                    free(lane.table_servers)
                    free(lane.pending_table_servers)
                    free(lane.pending_servers)
                    if j == 0:
                        for k in range(lane.nrules):
                            free(lane.rules[k].networks)
                        free(lane.rules)
            free(self.lane_copies)
        if self.shared.notify_fd >= 0:
            close(self.shared.notify_fd)
        free(self.shared.counters)
        free(self.shared.times)
        free(self.shared.ended)


cdef class Lanes:
    """The compiled pump's lanes (``Pump.lanes``): listeners whose connections every worker accepts,
    balances and dials itself, with no Python per connection, and the books Python reads of them.

    A lane is added with a ``fastproxy.pump.LaneSpec``, reweighed or given new picks as its backend
    changes, and removed before its listener is closed.  Its clients count against ``maxconn``
    together with those Python declares with ``open_delta``.  What a lane cannot do goes back to
    Python through the pump's ``on_lane_hand_back``; lines it does not log itself through
    ``on_lane_ended``.
    """

    def __cinit__(self, Pump pump):
        self.pump = pump
        self.count = 0
        self._tables = {}
        self._server_counts = {}
        self._capacities = {}
        self._stick_tables = []

    def add(self, spec):
        """Start accepting on ``spec.listen_fd`` (a ``LaneSpec``); returns the lane's index.

        ``spec.servers`` is a sequence of ``(raw_sockaddr, counter_block, weight)``.  ``spec.hashing``
        None picks by smooth weighted round robin over the weights; ``"map"`` or ``"table"`` hashes
        the client's address instead, on what ``set_picks`` gives.  The listener must stay open until
        ``remove`` returns.
        """
        cdef Pump pump = self.pump
        cdef Lane *lane
        cdef Lane *copy
        cdef LaneChange change
        cdef uint32_t i
        cdef int j, k
        cdef bytes address
        if not pump.shared.running:
            raise RuntimeError("pump is not running")
        if self.count >= MAX_LANES:
            raise RuntimeError(f"at most {MAX_LANES} lanes")
        servers = list(spec.servers)
        client_tcp = spec.client_tcp
        server_tcp = spec.server_tcp
        log_sinks = spec.log_sinks
        timeouts = spec.timeouts
        lane = &pump.lane_copies[self.count]
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
        lane.fd = spec.listen_fd
        lane.frontend_block = spec.frontend_block
        lane.backend_block = spec.backend_block
        set_timeouts(&lane.timeouts, timeouts.client, timeouts.server, timeouts.client_fin,
                     timeouts.server_fin, timeouts.connect)
        # client_tcp None: the listener carries the options and accepted sockets inherit them.
        lane.tune_clients = client_tcp is not None
        for i in range(4):
            lane.client_tcp[i] = client_tcp[i] if client_tcp is not None else 0
            lane.server_tcp[i] = server_tcp[i]
        lane.maxconn = spec.maxconn
        lane.disabled = spec.disabled  # before any worker polls it (the copies below take it too)
        lane.hash_kind = {None: LANE_WRR, "map": LANE_MAP, "table": LANE_TABLE}[spec.hashing]
        lane.hash_seed = spec.hash_seed
        lane.log_ends = spec.log_ends
        if (spec.log_ends or spec.log_connect) and log_sinks:
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
            lane.log_dontlognull = spec.log_dontlognull
            lane.log_connect = spec.log_connect
            lane.log_pid = os.getpid()
            name = spec.log_frontend.encode()[:63]
            memcpy(lane.log_frontend, <char *>name, len(name))
            for i, server_name in enumerate(spec.log_servers or ()):
                if i < lane.nservers:
                    name = server_name.encode()[:95]
                    memcpy(lane.servers[i].log_name, <char *>name, len(name))
            if spec.log_ends:
                program = spec.log_program or b""
                lane.log_program = <uint8_t *>malloc(max(len(program), 1))
                if lane.log_program == NULL:
                    free(lane.servers)
                    free(lane.log_sinks)
                    lane.servers, lane.log_sinks = NULL, NULL
                    raise MemoryError()
                memcpy(lane.log_program, <char *>program, len(program))
                lane.log_program_len = len(program)
                lane.log_needs = spec.log_needs
        rules = list(spec.rules)
        if rules:
            lane.rules = <LaneRule *>calloc(len(rules), sizeof(LaneRule))
            if lane.rules == NULL:
                free(lane.servers)
                free(lane.log_sinks)
                free(lane.log_program)
                lane.servers, lane.log_sinks, lane.log_program = NULL, NULL, NULL
                raise MemoryError()
            for i, rule in enumerate(rules):
                lane.rules[i].kind = {"track": RULE_TRACK, "reject": RULE_REJECT, "accept": RULE_ACCEPT}[rule.kind]
                lane.rules[i].counter = rule.counter
                lane.rules[i].scope = {"sc": SCOPE_TRACKED, "src": SCOPE_SOURCE, "address": SCOPE_ADDRESS,
                                       "always": SCOPE_ALWAYS}[rule.scope]
                lane.rules[i].field = SOURCE_FIELDS.index(rule.data) if rule.data else 0
                lane.rules[i].negate = rule.negate
                lane.rules[i].low = rule.low
                lane.rules[i].high = rule.high
                if rule.table is not None:
                    lane.rules[i].table = (<SourceCounters?>rule.table).table
                    self._stick_tables.append(rule.table)
                lane.nrules = i + 1  # what the rules hold is freed with the lane from here on
                if rule.networks:
                    lane.rules[i].networks = <uint8_t *>malloc(17 * len(rule.networks))
                    if lane.rules[i].networks == NULL:
                        raise MemoryError()
                    for k, (network, prefix) in enumerate(rule.networks):
                        memcpy(lane.rules[i].networks + 17 * k, <char *>network, 16)
                        lane.rules[i].networks[17 * k + 16] = prefix
                    lane.rules[i].nnetworks = len(rule.networks)
        if pump.nworkers > 1 and lane.hash_kind == LANE_WRR:
            # Room for servers added at run time (``set_servers``): the positions are shared, so they
            # are not reallocated under the workers.
            lane.pick_current = <int64_t *>calloc(lane.nservers + LANE_SPARE_SERVERS, sizeof(int64_t))
            lane.pick_lock = <pthread_mutex_t *>malloc(sizeof(pthread_mutex_t))
            if lane.pick_current == NULL or lane.pick_lock == NULL:
                free(lane.pick_current)
                free(lane.pick_lock)
                lane.pick_current, lane.pick_lock = NULL, NULL
                raise MemoryError()
            pthread_mutex_init(lane.pick_lock, NULL)
        lane.open_count = &lane.open
        lane.state = LANE_NEW
        # Every worker accepts on the lane, with a copy of its own (its round robin, its pause state);
        # the count of open clients is the first copy's, shared.
        for k in range(1, pump.nworkers):
            copy = &pump.lane_copies[k * MAX_LANES + self.count]
            memcpy(copy, lane, sizeof(Lane))
            copy.servers = <LaneServer *>calloc(max(lane.nservers, 1), sizeof(LaneServer))
            if copy.servers == NULL:
                for j in range(1, k):
                    free(pump.lane_copies[j * MAX_LANES + self.count].servers)
                    pump.lane_copies[j * MAX_LANES + self.count].servers = NULL
                free(lane.servers)
                lane.servers = NULL
                raise MemoryError()
            memcpy(copy.servers, lane.servers, max(lane.nservers, 1) * sizeof(LaneServer))
        change.index = self.count
        self._server_counts[self.count] = len(servers)
        self._capacities[self.count] = len(servers) + LANE_SPARE_SERVERS
        self.count += 1
        command_all(&pump.shared, lanes_grown, &change)
        return self.count - 1

    def remove(self, int index):
        """Stop accepting on the lane; once this returns, the pump no longer touches its listener."""
        cdef Pump pump = self.pump
        cdef Lane *lane
        cdef LaneChange change
        cdef int k
        if not 0 <= index < <int>self.count:
            raise IndexError(index)
        change.index = index
        change.running = pump.shared.running
        command_all(&pump.shared, lane_removal, &change)
        deadline = time.monotonic() + 5.0
        for k in range(pump.nworkers):
            lane = &pump.workers[k].lanes[index]
            while fp_atomic_acquire_int(&lane.state) != LANE_OFF:
                if time.monotonic() > deadline:
                    raise RuntimeError("the pump did not let go of a lane")
                time.sleep(0.0002)

    def set_weights(self, int index, weights):
        """New effective weights for the lane's servers (0: out of picks), taken by the next accept."""
        cdef Pump pump = self.pump
        cdef LaneChange change
        cdef int32_t *values
        cdef uint32_t i
        if not 0 <= index < <int>self.count:
            raise IndexError(index)
        weights = list(weights)
        if len(weights) != self._server_counts[index]:
            raise ValueError("one weight per server of the lane")
        values = <int32_t *>malloc(max(len(weights), 1) * sizeof(int32_t))
        if values == NULL:
            raise MemoryError()
        try:
            for i in range(len(weights)):
                values[i] = weights[i]
            change.index = index
            change.running = pump.shared.running
            change.weights = values
            command_all(&pump.shared, lane_reweigh, &change)
        finally:
            free(values)

    def set_servers(self, int index, servers, log_servers=()):
        """A new server list for the lane, as ``LaneSpec.servers`` (``(raw_sockaddr, counter_block,
        weight)`` in balancer order) with their log names: servers added, deleted, or at a new
        address.  New connections use it from the workers' next wake-up; picks and weights given
        after this call are the new list's (a hashing lane needs new picks with it)."""
        cdef Pump pump = self.pump
        cdef LaneChange change
        cdef LaneServer *array
        cdef uint32_t i
        cdef int k
        cdef bytes address, name
        if not 0 <= index < <int>self.count:
            raise IndexError(index)
        servers = list(servers)
        log_servers = list(log_servers)
        if pump.lane_copies[index].pick_current != NULL and len(servers) > self._capacities[index]:
            raise ValueError(f"a lane has room for {self._capacities[index]} servers")
        for address, _, _ in servers:
            if len(address) > 28:
                raise ValueError("a raw sockaddr is at most 28 bytes")
        for k in range(pump.nworkers):
            # Each worker frees the array it replaces: every copy gets one of its own.
            array = <LaneServer *>calloc(max(len(servers), 1), sizeof(LaneServer))
            if array == NULL:
                raise MemoryError()
            for i, (address, block, weight) in enumerate(servers):
                memcpy(array[i].addr, <char *>address, len(address))
                array[i].addrlen = len(address)
                array[i].family = address[0] | (address[1] << 8)
                array[i].block = block
                array[i].weight = array[i].pending_weight = weight
                if i < len(log_servers):
                    name = log_servers[i].encode()[:95]
                    memcpy(array[i].log_name, <char *>name, len(name))
            change.index = index
            change.running = pump.shared.running
            change.servers = array
            change.nservers = len(servers)
            command(&pump.workers[k], lane_reserve, &change)
        self._server_counts[index] = len(servers)

    def set_picks(self, int index, server_map=None, table=None, table_servers=None):
        """What a hashing lane picks on: HAProxy's map (a list of server indexes, ``hash % len``), or a
        ring ``Table`` with the lane server index of each of its servers.  None: no server (the lane
        gives its clients to Python)."""
        cdef Pump pump = self.pump
        cdef LaneChange change
        cdef int32_t *new_map = NULL
        cdef int32_t *new_servers = NULL
        cdef Table new_table = table
        cdef uint32_t i, nservers
        cdef int k
        if not 0 <= index < <int>self.count:
            raise IndexError(index)
        nservers = self._server_counts[index]
        if server_map:
            for i in range(len(server_map)):
                if not 0 <= server_map[i] < nservers:
                    raise ValueError("a map names the lane's servers by index")
        if new_table is not None:
            # A worker may read the previous table until it takes this one (within a wake-up);
            # changes come at the pace of health checks and operators, so a few kept suffice.
            kept = self._tables.setdefault(index, [])
            kept.append(new_table)
            if len(kept) > 4:
                del kept[:len(kept) - 4]
        for k in range(pump.nworkers):
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
            change.index = index
            change.running = pump.shared.running
            change.map = new_map
            change.map_len = len(server_map) if server_map else 0
            change.table = <void *>new_table if new_table is not None else NULL
            change.table_servers = new_servers
            command(&pump.workers[k], lane_repick, &change)

    def set_enabled(self, int index, bint enabled):
        """``enable|disable frontend``: a disabled lane accepts nobody (its clients wait in the
        backlog) until enabled again; its pairs go on."""
        cdef Pump pump = self.pump
        cdef int k
        if not 0 <= index < <int>self.count:
            raise IndexError(index)
        for k in range(pump.nworkers):
            # A byte each worker reads at its next accept or resume check (within LANE_RECHECK_MS).
            pump.workers[k].lanes[index].disabled = not enabled
        if enabled and pump.shared.running:
            for k in range(pump.nworkers):  # each worker looks at its paused lanes once woken
                command(&pump.workers[k], lanes_recheck, NULL)

    def set_maxconn(self, int index, int maxconn):
        """``set maxconn frontend``: the lane's own limit of open clients (0: none), from its next
        accept; a lane paused at its former limit resumes if the new one has room."""
        cdef Pump pump = self.pump
        cdef int k
        if not 0 <= index < <int>self.count:
            raise IndexError(index)
        for k in range(pump.nworkers):
            pump.workers[k].lanes[index].maxconn = max(maxconn, 0)  # an int each worker reads
        if pump.shared.running:
            for k in range(pump.nworkers):
                command(&pump.workers[k], lanes_recheck, NULL)

    def open_clients(self, int index=-1) -> int:
        """Clients of one lane (or of every lane) open now."""
        cdef Lane *copies = self.pump.lane_copies
        cdef uint32_t i
        cdef int total = 0
        if index >= 0:
            if index >= <int>self.count:
                raise IndexError(index)
            return fp_atomic_load_int(&copies[index].open)
        for i in range(self.count):
            total += fp_atomic_load_int(&copies[i].open)
        return total

    def ended(self):
        """Pairs made by lanes that ended, as a tuple indexed by EndReason."""
        cdef Shared *sh = &self.pump.shared
        cdef int i
        return tuple([fp_atomic_load(&sh.lane_ended[i]) for i in range(END_REASONS)])

    @property
    def accept_errors(self) -> int:
        """Accepts of lanes that failed for lack of descriptors or memory (each followed by a rest)."""
        return fp_atomic_load(&self.pump.shared.accept_errors)

    @property
    def maxconn(self) -> int:
        """The global connection limit lanes respect (0: none); Python's own clients count against it
        through ``open_delta``."""
        return self.pump.shared.maxconn

    @maxconn.setter
    def maxconn(self, int value):
        self.pump.shared.maxconn = value

    @property
    def open_total(self) -> int:
        """Client connections open now: the lanes' and those Python declared with ``open_delta``."""
        return fp_atomic_load_int(&self.pump.shared.open_total)

    def open_delta(self, int delta):
        """Python opened (+1) or closed (-1) a client connection of its own."""
        fp_atomic_add_int(&self.pump.shared.open_total, delta)


SOURCE_FIELDS = ("conn_cur", "conn_cnt", "conn_rate")  # SourceField's order


cdef tuple source_entry(SourceTable *t, int32_t i, uint64_t now):
    """An entry as SourceCounters gives it (with the table's lock held)."""
    cdef SourceEntry *e = &t.entries[i]
    cdef uint64_t left = 0
    if t.expire_ms and e.expire_ms > now:
        left = e.expire_ms - now
    return (e.conn_cur, e.conn_cnt, source_read(t, i, FIELD_CONN_RATE, now), e.use, left, <size_t>e)


cdef int32_t source_lookup(SourceTable *t, bytes key, bint create, uint64_t now) except -2:
    """The entry of a Python key (with the table's lock held): found, or made with ``create``."""
    if len(key) != 16:
        raise ValueError("a key is 16 bytes (an IPv6 address)")
    if create:
        return source_get(t, <const uint8_t *><char *>key, now)
    source_purge(t, now)
    return source_find(t, <const uint8_t *><char *>key)


cdef class SourceCounters:
    """A stick table the pump keeps (a SourceTable, dataplane/sticktable.pxi): the connection counters
    of client addresses, which the lanes' workers track at accept and Python reads and changes here,
    each call under the table's lock.  Keys are the 16 bytes of an IPv6 address (an IPv4 one as
    ::ffff:a.b.c.d); fields are named by ``SOURCE_FIELDS``.  An entry reads as ``(conn_cur, conn_cnt,
    conn_rate, use, expires_in_ms, address)``.  ``sticktables.PumpStickTable`` is the StickTable over
    it."""

    def __cinit__(self, uint32_t size, uint64_t expire_ms, uint64_t period_ms, bint nopurge, bint ipv6,
                  stored):
        cdef uint32_t buckets = 1
        cdef SourceTable *t
        if size < 1:
            raise ValueError("a table holds at least one entry")
        while buckets < size:
            buckets <<= 1
        t = self.table = <SourceTable *>calloc(1, sizeof(SourceTable))
        if t == NULL:
            raise MemoryError()
        t.entries = <SourceEntry *>calloc(size, sizeof(SourceEntry))
        t.buckets = <int32_t *>malloc(buckets * sizeof(int32_t))
        if t.entries == NULL or t.buckets == NULL:
            raise MemoryError()
        memset(t.buckets, 0xFF, buckets * sizeof(int32_t))  # every bucket -1: empty
        pthread_mutex_init(&t.lock, NULL)
        t.bucket_mask = buckets - 1
        t.size = size
        t.free_list = t.oldest = t.newest = -1
        t.expire_ms = expire_ms
        t.period_ms = max(period_ms, 1)
        t.nopurge = nopurge
        t.ipv6 = ipv6
        for name in stored:
            t.stored |= 1 << SOURCE_FIELDS.index(name)

    def __dealloc__(self):
        if self.table != NULL:
            pthread_mutex_destroy(&self.table.lock)
            free(self.table.entries)
            free(self.table.buckets)
            free(self.table)

    @property
    def size(self) -> int:
        return self.table.size

    @property
    def used(self) -> int:
        """Entries now, expired ones gone first."""
        cdef SourceTable *t = self.table
        cdef uint32_t used
        pthread_mutex_lock(&t.lock)
        source_purge(t, monotonic_ms())
        used = t.used
        pthread_mutex_unlock(&t.lock)
        return used

    @property
    def bytes_per_entry(self) -> float:
        """What the table takes per entry at its size: the entry and its share of the buckets."""
        return sizeof(SourceEntry) + <double>((self.table.bucket_mask + 1) * sizeof(int32_t)) / self.table.size

    def lookup(self, bytes key, bint create=False):
        """The key's entry, or None; with ``create``, made when absent (None: the table is full and
        may not evict)."""
        cdef SourceTable *t = self.table
        cdef uint64_t now = monotonic_ms()
        cdef int32_t i
        pthread_mutex_lock(&t.lock)
        try:
            i = source_lookup(t, key, create, now)
            return source_entry(t, i, now) if i >= 0 else None
        finally:
            pthread_mutex_unlock(&t.lock)

    def entries(self):
        """Every entry now, as ``(key, entry)``."""
        cdef SourceTable *t = self.table
        cdef uint64_t now = monotonic_ms()
        cdef int32_t i
        result = []
        pthread_mutex_lock(&t.lock)
        try:
            source_purge(t, now)
            i = t.oldest
            while i >= 0:
                result.append((PyBytes_FromStringAndSize(<char *>t.entries[i].key, 16), source_entry(t, i, now)))
                i = t.entries[i].newer
        finally:
            pthread_mutex_unlock(&t.lock)
        return result

    def track(self, bytes key) -> bool:
        """``track-sc<n>`` on the Python path, as the lanes do it (``source_track``)."""
        if len(key) != 16:
            raise ValueError("a key is 16 bytes (an IPv6 address)")
        return source_track(self.table, <const uint8_t *><char *>key, monotonic_ms())

    def untrack(self, bytes key):
        """The connection that tracked ``key`` ended."""
        if len(key) != 16:
            raise ValueError("a key is 16 bytes (an IPv6 address)")
        source_untrack(self.table, <const uint8_t *><char *>key, monotonic_ms())

    def change(self, bytes key, str how, int field=0, long long value=0):
        """Change the key's entry, if it is there: ``touch`` it, ``hold`` or ``release`` it (one
        connection more or less tracks it; a release touches it), ``add`` ``value`` to a field or
        ``set`` it (a rate set starts a new period with nothing before, as ``set table``).  Whether the
        entry was there; ``remove`` forgets it unless a connection tracks it."""
        cdef SourceTable *t = self.table
        cdef uint64_t now = monotonic_ms()
        cdef int32_t i
        cdef SourceEntry *e
        pthread_mutex_lock(&t.lock)
        try:
            i = source_lookup(t, key, False, now)
            if i < 0:
                return False
            e = &t.entries[i]
            if how == "touch":
                source_touch(t, i, now)
            elif how == "hold":
                e.use += 1
            elif how == "release":
                if e.use:
                    e.use -= 1
                source_touch(t, i, now)
            elif how == "add":
                source_add(t, i, field, value, now)
            elif how == "set":
                if field == FIELD_CONN_CUR:
                    e.conn_cur = <uint32_t>value
                elif field == FIELD_CONN_CNT:
                    e.conn_cnt = <uint32_t>value
                else:
                    e.rate_start_ms = now
                    e.rate_current = <uint32_t>value
                    e.rate_previous = 0
            elif how == "remove":
                if e.use:
                    return False
                source_delete(t, i)
            else:
                raise ValueError(how)
            return True
        finally:
            pthread_mutex_unlock(&t.lock)
