# Included by _pump.pyx: the limits and tokens every part of the data plane shares, the clock, and the
# counter blocks' atomic bumps.

cdef enum:
    MAX_EVENTS = 256
    MAX_LANES = 64
    LANE_BUDGET = 64        # accepts per readiness of a lane before pairs get their turn
    LANE_REST_MS = 100      # how long a lane rests after EMFILE/ENFILE
    LANE_RECHECK_MS = 20    # how often paused lanes look again at the limits
    READ_BUDGET = 16        # reads per direction per turn before other pairs get theirs
    POOL_KEEP = 64          # free buffers and pipes a worker keeps for reuse
    INITIAL_SLOTS = 256
    LANE_SPARE_SERVERS = 1024  # servers a lane's shared round robin has room for beyond its first ones

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
    # The precise clock (vDSO, no syscall): the coarse one moves by jiffies (4 ms at HZ=250), which
    # would show as timeouts late by as much.
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return <uint64_t>ts.tv_sec * 1000 + <uint64_t>(ts.tv_nsec // 1000000)


cdef inline void count(Shared *sh, int32_t block, int field, uint64_t value) noexcept nogil:
    if 0 <= block < sh.counter_blocks:
        fp_atomic_add(&sh.counters[block * CNT_FIELDS + field], value)


cdef inline void count_sub(Shared *sh, int32_t block, int field, uint64_t value) noexcept nogil:
    if 0 <= block < sh.counter_blocks:
        fp_atomic_sub(&sh.counters[block * CNT_FIELDS + field], value)


cdef inline uint32_t elapsed_ms(uint64_t now, uint64_t since) noexcept nogil:
    """Milliseconds from ``since`` to ``now`` (0 if another worker's clock was a tick ahead)."""
    if now <= since:
        return 0
    return <uint32_t>(now - since) if now - since < 0xFFFFFFFFULL else 0xFFFFFFFFU


cdef void fold_times(Shared *sh, int32_t block, uint32_t queue, uint32_t connect,
                     uint32_t total) noexcept nogil:
    """Fold one ended pair's session times into a block's, as HAProxy's stream_update_time_stats():
    the sums add without decay until the block has seen more than TIME_WINDOW pairs, then each
    sample replaces its average share (swrate_add_dynamic); maxima keep the largest."""
    cdef uint32_t *t
    cdef uint32_t seen, window
    if not 0 <= block < sh.counter_blocks:
        return
    t = &sh.times[block * TM_FIELDS]
    seen = fp_atomic_load_u32(&t[TM_SAMPLES])
    if seen <= TIME_WINDOW:
        seen = fp_atomic_add_u32(&t[TM_SAMPLES], 1)
    window = TIME_WINDOW if seen > TIME_WINDOW else 0
    fp_swrate_add(&t[TM_QUEUE_SUM], window, queue)
    fp_swrate_add(&t[TM_CONNECT_SUM], window, connect)
    fp_swrate_add(&t[TM_TOTAL_SUM], window, total)
    fp_atomic_max_u32(&t[TM_QUEUE_MAX], queue)
    fp_atomic_max_u32(&t[TM_CONNECT_MAX], connect)
    fp_atomic_max_u32(&t[TM_TOTAL_MAX], total)
