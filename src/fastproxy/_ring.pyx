# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""The consistent-hash ring, compiled: XXH64, ketama and Maglev tables, bounded loads.

The twin of ``PyHashRing`` in ``fastproxy/ring.py``, which documents the algorithms and is the
reference this module is tested against (same tables, same answers, same errors).  The hot paths
(hashing, table lookups, building) are C functions without the GIL; the Python methods are the thin
public edge.  ``_ring.pxd`` declares the C-level surface the pump cimports.
"""

cimport cython
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_Check, PyBytes_GET_SIZE
from cpython.list cimport PyList_New, PyList_SET_ITEM
from cpython.long cimport PyLong_Check
from cpython.ref cimport Py_INCREF
from cpython.unicode cimport PyUnicode_Check
from libc.stdint cimport int32_t, uint8_t, uint32_t, uint64_t
from libc.stdlib cimport calloc, free, malloc, qsort
from libc.string cimport memcpy, memset

import threading


cdef extern from "Python.h":
    const char *PyUnicode_AsUTF8AndSize(object text, Py_ssize_t *size) except NULL


cdef extern from *:
    """
    #include <stdint.h>
    #include <string.h>

    #define FP_P1 0x9E3779B185EBCA87ULL
    #define FP_P2 0xC2B2AE3D27D4EB4FULL
    #define FP_P3 0x165667B19E3779F9ULL
    #define FP_P4 0x85EBCA77C2B2AE63ULL
    #define FP_P5 0x27D4EB2F165667C5ULL

    /* XXH64 reads its input as little-endian words, whatever the machine. */
    static inline uint64_t fp_read64(const unsigned char *p) {
        uint64_t v;
        memcpy(&v, p, 8);
    #if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
        v = __builtin_bswap64(v);
    #endif
        return v;
    }

    static inline uint32_t fp_read32(const unsigned char *p) {
        uint32_t v;
        memcpy(&v, p, 4);
    #if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
        v = __builtin_bswap32(v);
    #endif
        return v;
    }

    /* HAProxy's chash_server_is_eligible(), in 128 bits so that no weight or load can overflow it. */
    static inline int fp_bounded_eligible(uint64_t load, uint64_t weight, uint64_t cumulative,
                                          uint64_t total, uint64_t in_flight, uint64_t factor) {
        unsigned __int128 slots_total = (((unsigned __int128)in_flight + 1) * factor + 99) / 100;
        unsigned __int128 per_weight = slots_total / total, remainder = slots_total % total;
        unsigned __int128 slots = (unsigned __int128)weight * per_weight
            + ((unsigned __int128)(cumulative + weight) * remainder) / total
            - ((unsigned __int128)cumulative * remainder) / total;
        if (slots == 0)
            slots = 1;
        return (unsigned __int128)load < slots;
    }
    """
    uint64_t FP_P1, FP_P2, FP_P3, FP_P4, FP_P5
    void fp_prefetch "__builtin_prefetch"(const void *address) noexcept nogil
    uint64_t fp_read64(const unsigned char *p) noexcept nogil
    uint32_t fp_read32(const unsigned char *p) noexcept nogil
    bint fp_bounded_eligible(uint64_t load, uint64_t weight, uint64_t cumulative, uint64_t total,
                             uint64_t in_flight, uint64_t factor) noexcept nogil


cdef extern from "<sys/mman.h>" nogil:
    int madvise(void *address, size_t length, int advice)
    int MADV_HUGEPAGE


cdef extern from "<stdlib.h>" nogil:
    int posix_memalign(void **pointer, size_t alignment, size_t size)


cdef uint32_t EMPTY = 0xFFFFFFFF  # a Maglev entry not filled yet

cdef enum:
    HUGE_PAGE = 2 << 20
    SMALL_BUCKET = 32  # insertion sort up to this many points, qsort above
    TOP_BITS = 10  # first-level buckets of the ketama sort: 1024 write streams stay in cache
    BATCH_GROUP = 16  # keys whose memory accesses a batch lookup overlaps
    # The ketama index has 2**(floor(log2(points)) + 2) buckets, at most 2**22: most buckets then hold
    # no point or one, and a lookup reads its bucket alone (the memory buys ~15 ns a key in a batch).
    BUCKET_BITS_EXTRA = 2
    BUCKET_BITS_MAX = 22


# --- XXH64 ----------------------------------------------------------------------------------------

cdef inline uint64_t _rotl(uint64_t x, int r) noexcept nogil:
    return (x << r) | (x >> (64 - r))


cdef inline uint64_t _round(uint64_t acc, uint64_t lane) noexcept nogil:
    acc += lane * FP_P2
    return _rotl(acc, 31) * FP_P1


cdef inline uint64_t _merge(uint64_t acc, uint64_t value) noexcept nogil:
    acc ^= _round(0, value)
    return acc * FP_P1 + FP_P4


cdef inline uint64_t _avalanche(uint64_t h) noexcept nogil:
    h ^= h >> 33
    h *= FP_P2
    h ^= h >> 29
    h *= FP_P3
    h ^= h >> 32
    return h


cdef uint64_t xxh64(const unsigned char *data, size_t length, uint64_t seed) noexcept nogil:
    cdef const unsigned char *p = data
    cdef const unsigned char *end = data + length
    cdef const unsigned char *limit
    cdef uint64_t v1, v2, v3, v4, h
    if length >= 32:
        limit = end - 32
        v1 = seed + FP_P1 + FP_P2
        v2 = seed + FP_P2
        v3 = seed
        v4 = seed - FP_P1
        while p <= limit:
            v1 = _round(v1, fp_read64(p))
            v2 = _round(v2, fp_read64(p + 8))
            v3 = _round(v3, fp_read64(p + 16))
            v4 = _round(v4, fp_read64(p + 24))
            p += 32
        h = _rotl(v1, 1) + _rotl(v2, 7) + _rotl(v3, 12) + _rotl(v4, 18)
        h = _merge(h, v1)
        h = _merge(h, v2)
        h = _merge(h, v3)
        h = _merge(h, v4)
    else:
        h = seed + FP_P5
    h += <uint64_t>length
    while p + 8 <= end:
        h ^= _round(0, fp_read64(p))
        h = _rotl(h, 27) * FP_P1 + FP_P4
        p += 8
    if p + 4 <= end:
        h ^= <uint64_t>fp_read32(p) * FP_P1
        h = _rotl(h, 23) * FP_P2 + FP_P3
        p += 4
    while p < end:
        h ^= <uint64_t>p[0] * FP_P5
        h = _rotl(h, 11) * FP_P1
        p += 1
    return _avalanche(h)


cdef inline uint64_t _xxh64_u64(uint64_t value, uint64_t seed) noexcept nogil:
    """XXH64 of the 8 little-endian bytes of ``value``."""
    cdef uint64_t h = seed + FP_P5 + 8
    h ^= _round(0, value)
    return _avalanche(_rotl(h, 27) * FP_P1 + FP_P4)


def xxh64_digest(data, uint64_t seed=0):
    """XXH64 of a bytes-like object with ``seed``."""
    cdef bytes buffer = data if PyBytes_Check(data) else bytes(data)
    return xxh64(<const unsigned char *>PyBytes_AS_STRING(buffer), PyBytes_GET_SIZE(buffer), seed)


# --- keys -----------------------------------------------------------------------------------------

# What both twins share (validation, messages, the exception): fastproxy._ring_common, imported once.
from fastproxy import _ring_common as _common


cdef object _empty():
    return _common._empty()


cdef uint64_t _int_bits(object key) except? 0:
    try:
        return <uint64_t>key
    except OverflowError:
        return <uint64_t>(_common._int_bits(key))


cdef uint64_t _key_hash(object key, uint64_t seed) except? 0:
    """The hash of a key: bytes as they are, str as UTF-8, int as 8 little-endian bytes."""
    cdef Py_ssize_t length
    cdef const char *data
    cdef bytes converted
    if PyBytes_Check(key):
        return xxh64(<const unsigned char *>PyBytes_AS_STRING(key), PyBytes_GET_SIZE(key), seed)
    if PyUnicode_Check(key):
        data = PyUnicode_AsUTF8AndSize(key, &length)
        return xxh64(<const unsigned char *>data, length, seed)
    if PyLong_Check(key):
        return _xxh64_u64(_int_bits(key), seed)
    converted = _common._key_bytes(key)
    return xxh64(<const unsigned char *>PyBytes_AS_STRING(converted), PyBytes_GET_SIZE(converted), seed)


# --- building -------------------------------------------------------------------------------------

cdef void *_alloc_table(size_t size) noexcept nogil:
    """Memory for a large table, on huge pages where the kernel allows them: a lookup is one or two
    random accesses, and with 4 KiB pages each would also miss the TLB (twice as dear in a VM)."""
    cdef void *memory = NULL
    cdef size_t rounded
    if size < HUGE_PAGE:
        return malloc(size)
    rounded = (size + HUGE_PAGE - 1) & ~(HUGE_PAGE - 1)
    if posix_memalign(&memory, HUGE_PAGE, rounded) != 0:
        return NULL
    madvise(memory, rounded, MADV_HUGEPAGE)
    return memory


cdef inline bint _point_less(const Point *a, const Point *b) noexcept nogil:
    return a.position < b.position or (a.position == b.position and a.server < b.server)


cdef int _compare_points(const void *a, const void *b) noexcept nogil:
    if _point_less(<const Point *>a, <const Point *>b):
        return -1
    if _point_less(<const Point *>b, <const Point *>a):
        return 1
    return 0


cdef void _sort_points(Point *points, size_t count) noexcept nogil:
    cdef size_t i, j
    cdef Point point
    if count > SMALL_BUCKET:
        qsort(points, count, sizeof(Point), _compare_points)
        return
    for i in range(1, count):
        point = points[i]
        j = i
        while j > 0 and _point_less(&point, &points[j - 1]):
            points[j] = points[j - 1]
            j -= 1
        points[j] = point


cdef int _fill_ketama(Point *points, size_t total, uint32_t *buckets, int bits, uint32_t count,
                      const uint32_t *weights, const uint64_t *bases, uint32_t per_weight) noexcept nogil:
    """Hash every point into ``points``, sorted, and leave in ``buckets`` where each bucket of the top
    ``bits`` bits starts.  A two-level counting sort that stays in cache and needs no second array of
    points: the points are hashed twice, to count then to place them by their top ``TOP_BITS`` bits
    (1024 write streams); then each of those ranges is copied aside and counting-sorted back on the
    remaining bucket bits, and each bucket (a few points) insertion-sorted.  0, or -1 when out of
    memory."""
    cdef int shift = 64 - bits
    cdef int top = bits if bits < TOP_BITS else TOP_BITS
    cdef int sub = bits - top
    cdef size_t ntop = (<size_t>1) << top, nsub = (<size_t>1) << sub
    cdef uint32_t *ranges = <uint32_t *>calloc(ntop + 1, sizeof(uint32_t))
    cdef uint32_t *cursor = <uint32_t *>malloc(ntop * sizeof(uint32_t))
    cdef Point *scratch = NULL
    cdef size_t k, a, b, base, start, end, widest = 0
    cdef uint32_t run, size
    cdef uint64_t j, n, position
    cdef uint32_t server
    if ranges == NULL or cursor == NULL:
        free(ranges)
        free(cursor)
        return -1
    for server in range(count):
        n = <uint64_t>weights[server] * per_weight
        for j in range(n):
            ranges[(_xxh64_u64(j, bases[server]) >> (64 - top)) + 1] += 1
    for a in range(1, ntop + 1):
        if ranges[a] > widest:
            widest = ranges[a]
        ranges[a] += ranges[a - 1]
    memcpy(cursor, ranges, ntop * sizeof(uint32_t))
    for server in range(count):
        n = <uint64_t>weights[server] * per_weight
        for j in range(n):
            position = _xxh64_u64(j, bases[server])
            a = position >> (64 - top)
            points[cursor[a]].position = position
            points[cursor[a]].server = server
            cursor[a] += 1
    free(cursor)
    scratch = <Point *>malloc((widest or 1) * sizeof(Point))
    if scratch == NULL:
        free(ranges)
        return -1
    for a in range(ntop):
        start = ranges[a]
        end = ranges[a + 1]
        base = a << sub
        memcpy(scratch, points + start, (end - start) * sizeof(Point))
        memset(buckets + base, 0, nsub * sizeof(uint32_t))
        for k in range(end - start):
            buckets[scratch[k].position >> shift] += 1
        run = start
        for b in range(base, base + nsub):
            size = buckets[b]
            buckets[b] = run
            run += size
        for k in range(end - start):
            b = scratch[k].position >> shift
            points[buckets[b]] = scratch[k]
            buckets[b] += 1
        # Each cursor ended at the start of the next bucket: shift them back to the starts.
        for b in range(base + nsub - 1, base, -1):
            buckets[b] = buckets[b - 1]
        buckets[base] = start
        for b in range(base, base + nsub):
            size = (buckets[b + 1] if b + 1 < base + nsub else end) - buckets[b]
            if size > 1:
                _sort_points(points + buckets[b], size)
    buckets[ntop << sub] = total
    free(scratch)
    free(ranges)
    return 0


cdef void _fill_index(Bucket *index, const uint32_t *starts, size_t nbuckets, const Point *points,
                      size_t npoints) noexcept nogil:
    cdef size_t b
    for b in range(nbuckets + 1):
        index[b].start = starts[b]
        if starts[b] < npoints:
            index[b].first_position = points[starts[b]].position
            index[b].first_server = points[starts[b]].server
        else:
            index[b].first_position = 0xFFFFFFFFFFFFFFFF
            index[b].first_server = points[0].server


cdef int _fill_maglev(uint32_t *entries, uint32_t size, uint32_t count, const uint32_t *weights,
                      const uint64_t *first, const uint64_t *second) noexcept nogil:
    """Maglev's population, by preference walks round 2**32 (uint32_t arithmetic wraps there),
    weighted as Envoy does (see ring._fill_maglev).  0, or -1 when out of memory."""
    cdef uint32_t *live = <uint32_t *>malloc(count * sizeof(uint32_t))
    cdef uint32_t *cursor = <uint32_t *>malloc(count * sizeof(uint32_t))
    cdef uint32_t *skip = <uint32_t *>malloc(count * sizeof(uint32_t))
    cdef uint64_t *target = <uint64_t *>malloc(count * sizeof(uint64_t))
    cdef uint8_t *probing = <uint8_t *>calloc(max(count, 1), sizeof(uint8_t))
    cdef uint32_t nlive = 0, server, k, largest = 0, x, step, i, steps
    cdef uint64_t filled = 0, iteration = 1
    if live == NULL or cursor == NULL or skip == NULL or target == NULL or probing == NULL:
        free(live)
        free(cursor)
        free(skip)
        free(target)
        free(probing)
        return -1
    for server in range(count):
        if weights[server]:
            live[nlive] = server
            cursor[nlive] = <uint32_t>first[server]
            skip[nlive] = <uint32_t>second[server] | 1
            if weights[server] > largest:
                largest = weights[server]
            nlive += 1
    for k in range(nlive):
        target[k] = largest // 2
    memset(entries, 0xFF, size * sizeof(uint32_t))
    while filled < size:
        for k in range(nlive):
            server = live[k]
            if iteration * weights[server] < target[k]:
                continue
            target[k] += largest
            x = cursor[k]
            step = skip[k]
            if not probing[k]:
                steps = 0
                while entries[(<uint64_t>x * size) >> 32] != EMPTY:
                    x += step
                    steps += 1
                    if steps == size:  # see ring._fill_maglev: this walk probes in order from now on
                        probing[k] = 1
                        break
            if probing[k]:
                i = <uint32_t>((<uint64_t>x * size) >> 32)
                while entries[i] != EMPTY:
                    i = i + 1 if i + 1 < size else 0
                entries[i] = server
                cursor[k] = entry_start((i + 1) % size, size)
            else:
                entries[(<uint64_t>x * size) >> 32] = server
                cursor[k] = x + step
            filled += 1
            if filled == size:
                break
        iteration += 1
    free(live)
    free(cursor)
    free(skip)
    free(target)
    free(probing)
    return 0


cdef inline uint32_t entry_start(uint32_t entry, uint32_t size) noexcept nogil:
    """The first walk position that lands on ``entry``: ceil(entry * 2**32 / size)."""
    return <uint32_t>(((<uint64_t>entry << 32) + size - 1) // size)


# --- the table ------------------------------------------------------------------------------------

@cython.final
cdef class Table:
    """One immutable snapshot of a ring (see _ring.pxd): servers in name order and what maps to them."""

    def __dealloc__(self):
        free(self.weights)
        free(self.cumulative)
        free(self.points)
        free(self.index)
        free(self.entries)

    cdef uint64_t key_hash(self, const unsigned char *data, size_t length) noexcept nogil:
        return xxh64(data, length, self.seed)

    cdef size_t length(self) noexcept nogil:
        if self.algorithm == KETAMA:
            return self.npoints
        return self.size if self.entries != NULL else 0

    cdef Py_ssize_t start(self, uint64_t h) noexcept nogil:
        cdef size_t i, end
        cdef const Bucket *bucket
        if self.algorithm == KETAMA:
            if self.npoints == 0:
                return -1
            bucket = &self.index[h >> self.shift]
            i = bucket.start
            end = bucket[1].start
            while i < end and self.points[i].position < h:
                i += 1
            return 0 if i == self.npoints else <Py_ssize_t>i
        if self.entries == NULL:
            return -1
        return <Py_ssize_t>(((h >> 32) * self.size) >> 32)

    cdef uint32_t server_at(self, size_t position) noexcept nogil:
        if self.algorithm == KETAMA:
            return self.points[position].server
        return self.entries[position]

    cdef int32_t server_of(self, uint64_t h) noexcept nogil:
        # What start() and server_at() would say, reading the index alone unless the key falls
        # past the first point of a bucket that has two or more.
        cdef size_t i, end
        cdef bint after
        cdef const Bucket *bucket
        if self.algorithm == KETAMA:
            if self.npoints == 0:
                return -1
            bucket = &self.index[h >> self.shift]
            after = h > bucket.first_position
            end = bucket[1].start
            if after & (end - bucket.start > 1):  # rare: past the first of several points
                i = bucket.start + 1
                while i < end and self.points[i].position < h:
                    i += 1
                if i < end:
                    return <int32_t>self.points[i].server
            # Branch-free (a conditional move) for the common case of a bucket of 0 or 1 point.
            return <int32_t>(bucket[1].first_server if after else bucket.first_server)
        if self.entries == NULL:
            return -1
        return <int32_t>self.entries[((h >> 32) * self.size) >> 32]

    cdef void lookup_batch(self, KeyRef *keys, size_t n) noexcept nogil:
        # By groups: hash the group's keys and prefetch their buckets (or entries), then look them
        # up, so that the cache misses of a group overlap instead of following one another.
        cdef size_t group = 0, i, end
        cdef uint64_t h
        while group < n:
            end = group + BATCH_GROUP if group + BATCH_GROUP < n else n
            for i in range(group, end):
                if keys[i].length >= 0:
                    keys[i].hash = xxh64(keys[i].data, keys[i].length, self.seed)
                h = keys[i].hash
                if self.algorithm == KETAMA:
                    if self.npoints:
                        fp_prefetch(&self.index[h >> self.shift])
                elif self.entries != NULL:
                    fp_prefetch(&self.entries[((h >> 32) * self.size) >> 32])
            for i in range(group, end):
                keys[i].server = self.server_of(keys[i].hash)
            group = end

    cdef bint eligible(self, uint32_t server, const uint32_t *loads, uint64_t in_flight,
                       uint32_t factor) noexcept nogil:
        return fp_bounded_eligible(loads[server], self.weights[server], self.cumulative[server],
                                   self.total_weight, in_flight, factor)

    cdef int32_t server_of_bounded(self, uint64_t h, const uint32_t *loads, uint64_t in_flight,
                                   uint32_t factor) noexcept nogil:
        cdef Py_ssize_t start = self.start(h)
        cdef size_t length = self.length(), position, k
        cdef uint32_t server
        if start < 0:
            return -1
        position = start
        for k in range(length):
            server = self.server_at(position)
            if self.eligible(server, loads, in_flight, factor):
                return <int32_t>server
            position += 1
            if position == length:
                position = 0
        # Maglev may leave a light server without an entry: give it its chance before giving up.
        for server in range(self.count):
            if self.weights[server] and self.eligible(server, loads, in_flight, factor):
                return <int32_t>server
        return <int32_t>self.server_at(start)


def _walk(Table table, uint64_t h):
    """Every server of positive weight once, in the order the walk from ``h`` meets them."""
    cdef Py_ssize_t start = table.start(h)
    cdef size_t length = table.length(), k, position
    cdef uint32_t server, remaining = 0
    if start < 0:
        return
    seen = bytearray(table.count)
    for server in range(table.count):
        if table.weights[server]:
            remaining += 1
    for k in range(length):
        position = start + k
        if position >= length:
            position -= length
        server = table.server_at(position)
        if not seen[server]:
            seen[server] = 1
            yield table.names[server]
            remaining -= 1
            if remaining == 0:
                return
    for server in range(table.count):
        if table.weights[server] and not seen[server]:
            yield table.names[server]


# --- the ring -------------------------------------------------------------------------------------

cdef class HashRing:
    """A weighted consistent-hash ring of named servers (the compiled implementation).

    ``HashRing(weights, algorithm="ketama" | "maglev", *, points_per_weight=160, table_size=65537,
    seed=0)``; see ``fastproxy.ring`` for the algorithms and their guarantees.
    """

    def __cinit__(self):
        # An empty table until __init__ builds one, so that no method ever reads a missing table.
        self.table = Table.__new__(Table)
        self.table.names = ()
        self.algorithm = "ketama"
        self._weights = {}
        self._lock = threading.Lock()

    def __init__(self, weights, algorithm="ketama", *, points_per_weight=160, table_size=65537,
                 seed=0):
        _common._check_options(algorithm, points_per_weight, table_size, seed)
        weights = dict(weights)
        for name, weight in weights.items():
            _common._check_weight(name, weight)
        _common._check_points(weights, algorithm, points_per_weight)
        self.algorithm = algorithm
        self.points_per_weight = points_per_weight
        self.table_size = table_size
        self.seed = seed
        self._weights = weights
        self.table = self._build(weights)

    # --- lookups ---

    def key_hash(self, key):
        """The 64-bit hash a key is looked up by: XXH64 of its bytes with the ring's seed."""
        return _key_hash(key, self.seed)

    def lookup(self, key):
        """The server for ``key``; EmptyRingError when no server has a positive weight."""
        cdef Table table = self.table
        cdef int32_t server = table.server_of(_key_hash(key, table.seed))
        if server < 0:
            raise _empty()
        return table.names[server]

    def lookup_hash(self, uint64_t h):
        """The server for a precomputed 64-bit hash (as ``key_hash`` returns)."""
        cdef Table table = self.table
        cdef int32_t server = table.server_of(h)
        if server < 0:
            raise _empty()
        return table.names[server]

    def lookup_many(self, keys):
        """The server of each key, in order; the GIL is released over large batches."""
        cdef Table table = self.table
        cdef tuple batch = tuple(keys)  # holds the keys (and their UTF-8) while the GIL is released
        cdef Py_ssize_t n = len(batch), i
        cdef KeyRef *refs
        cdef const char *data
        cdef bytes converted
        cdef list result
        cdef list keep = None
        if n == 0:
            return []
        if table.total_weight == 0:
            raise _empty()
        refs = <KeyRef *>malloc(n * sizeof(KeyRef))
        if refs == NULL:
            raise MemoryError()
        try:
            for i in range(n):
                key = batch[i]
                if PyBytes_Check(key):
                    refs[i].data = <const unsigned char *>PyBytes_AS_STRING(key)
                    refs[i].length = PyBytes_GET_SIZE(key)
                elif PyUnicode_Check(key):
                    data = PyUnicode_AsUTF8AndSize(key, &refs[i].length)
                    refs[i].data = <const unsigned char *>data
                elif PyLong_Check(key):
                    refs[i].length = -1
                    refs[i].hash = _xxh64_u64(_int_bits(key), table.seed)
                else:
                    converted = _common._key_bytes(key)
                    if keep is None:
                        keep = []
                    keep.append(converted)
                    refs[i].data = <const unsigned char *>PyBytes_AS_STRING(converted)
                    refs[i].length = PyBytes_GET_SIZE(converted)
            if n >= 256:
                with nogil:
                    table.lookup_batch(refs, n)
            else:
                table.lookup_batch(refs, n)
            result = PyList_New(n)
            for i in range(n):
                name = table.names[refs[i].server]
                Py_INCREF(name)
                PyList_SET_ITEM(result, i, name)
            return result
        finally:
            free(refs)

    def lookup_bounded(self, key, loads, factor=125):
        """The server for ``key`` under bounded loads: the first one along the key's walk whose load
        (``loads[name]``, missing names count 0) is under its weighted share of ``factor`` percent of
        the in-flight total plus this one (HAProxy's ``hash-balance-factor``)."""
        _common._check_factor(factor)
        cdef Table table = self.table
        cdef list values = _common._load_list(table.names, loads)
        cdef uint64_t h = _key_hash(key, table.seed)
        cdef uint32_t *array = <uint32_t *>malloc((table.count or 1) * sizeof(uint32_t))
        cdef uint64_t in_flight = 0
        cdef uint32_t server
        cdef int32_t found
        if array == NULL:
            raise MemoryError()
        try:
            for server in range(table.count):
                array[server] = values[server]
                in_flight += array[server]
            found = table.server_of_bounded(h, array, in_flight, factor)
        finally:
            free(array)
        if found < 0:
            raise _empty()
        return table.names[found]

    def walk(self, key):
        """Every server of positive weight once, in the order the ring offers them to ``key``: the
        key's server first, then those the key would move to as servers before them go away."""
        cdef Table table = self.table
        if table.total_weight == 0:
            raise _empty()
        return _walk(table, _key_hash(key, table.seed))

    def shares(self):
        """The fraction of the hash space each server owns (of the circle for ketama, of the table
        entries for maglev)."""
        cdef Table table = self.table
        owned = [0] * table.count
        cdef size_t k
        cdef uint64_t previous
        if table.algorithm == KETAMA:
            if table.npoints:
                previous = table.points[table.npoints - 1].position
                for k in range(table.npoints):
                    owned[table.points[k].server] += <uint64_t>(table.points[k].position - previous)
                    previous = table.points[k].position
                if table.npoints == 1:
                    owned[table.points[0].server] = 1 << 64
            scale = float(1 << 64)
        else:
            if table.entries != NULL:
                for k in range(table.size):
                    owned[table.entries[k]] += 1
            scale = float(table.size)
        return {name: count / scale for name, count in zip(table.names, owned)}

    def digest(self):
        """XXH64 of the table itself (``fastproxy.ring.table_bytes``, the same bytes as the twin's):
        equal on two rings exactly when they route every key alike."""
        cdef Table table = self.table
        cdef bytes body = b""
        # Point is a packed (le64, le32) and entries le32 on the little-endian machines fastproxy runs
        # on, so the table's memory is already table_bytes' body.
        if table.algorithm == KETAMA and table.npoints:
            body = (<char *>table.points)[:table.npoints * sizeof(Point)]
        elif table.algorithm == MAGLEV and table.entries != NULL:
            body = (<char *>table.entries)[:table.size * sizeof(uint32_t)]
        head = _common.table_head(table.names, [table.weights[i] for i in range(table.count)], self.algorithm)
        return xxh64_digest(head + body)

    # --- membership ---

    @property
    def weights(self):
        return dict(self._weights)

    def add(self, name, weight=1):
        """Add a server, or change its weight if it is already in the ring."""
        _common._check_weight(name, weight)
        with self._lock:
            weights = dict(self._weights)
            weights[name] = weight
            _common._check_points(weights, self.algorithm, self.points_per_weight)
            table = self._build(weights)
            self._weights, self.table = weights, table

    def remove(self, name):
        """Take a server out of the ring; KeyError if it is not in it."""
        with self._lock:
            weights = dict(self._weights)
            del weights[name]
            table = self._build(weights)
            self._weights, self.table = weights, table

    def __len__(self):
        return len(self._weights)

    def __iter__(self):
        return iter(self.table.names)

    def __contains__(self, name):
        return name in self._weights

    def __repr__(self):
        return (f"<{type(self).__name__} {self.algorithm} servers={len(self)} "
                f"weight={self.table.total_weight} seed={self.seed}>")

    # --- building ---

    cdef Table _build(self, dict weights):
        cdef tuple names = tuple(sorted(weights))
        cdef uint32_t count = len(names), server
        cdef Table table = Table.__new__(Table)
        cdef uint64_t *first = NULL
        cdef uint64_t *second = NULL
        cdef uint32_t *starts = NULL
        cdef uint64_t total = 0, total_points = 0
        cdef uint32_t per_weight = self.points_per_weight, size = self.table_size
        cdef bytes encoded
        cdef int bits = 0, status = 0
        table.names = names
        table.algorithm = KETAMA if self.algorithm == "ketama" else MAGLEV
        table.seed = self.seed
        table.count = count
        table.weights = <uint32_t *>malloc((count or 1) * sizeof(uint32_t))
        table.cumulative = <uint64_t *>malloc((count or 1) * sizeof(uint64_t))
        first = <uint64_t *>malloc((count or 1) * sizeof(uint64_t))
        second = <uint64_t *>malloc((count or 1) * sizeof(uint64_t))
        try:
            if table.weights == NULL or table.cumulative == NULL or first == NULL or second == NULL:
                raise MemoryError()
            for server in range(count):
                encoded = (<str>names[server]).encode("utf-8")
                table.weights[server] = weights[names[server]]
                table.cumulative[server] = total
                total += table.weights[server]
                first[server] = xxh64(<const unsigned char *>PyBytes_AS_STRING(encoded),
                                      PyBytes_GET_SIZE(encoded), self.seed)
                second[server] = xxh64(<const unsigned char *>PyBytes_AS_STRING(encoded),
                                       PyBytes_GET_SIZE(encoded), first[server])
            table.total_weight = total
            if table.algorithm == KETAMA:
                total_points = total * per_weight
                if total_points:
                    while (total_points >> (bits + 1)) > 0:
                        bits += 1
                    bits = min(max(bits + BUCKET_BITS_EXTRA, 1), BUCKET_BITS_MAX)
                    table.shift = 64 - bits
                    table.npoints = total_points
                    table.points = <Point *>_alloc_table(total_points * sizeof(Point))
                    table.index = <Bucket *>_alloc_table(((<size_t>1 << bits) + 1) * sizeof(Bucket))
                    starts = <uint32_t *>malloc(((<size_t>1 << bits) + 1) * sizeof(uint32_t))
                    if table.points == NULL or table.index == NULL or starts == NULL:
                        raise MemoryError()
                    with nogil:
                        status = _fill_ketama(table.points, total_points, starts, bits, count,
                                              table.weights, first, per_weight)
                        if status == 0:
                            _fill_index(table.index, starts, <size_t>1 << bits, table.points, total_points)
            else:
                table.size = size
                if total:
                    table.entries = <uint32_t *>_alloc_table(size * sizeof(uint32_t))
                    if table.entries == NULL:
                        raise MemoryError()
                    with nogil:
                        status = _fill_maglev(table.entries, size, count, table.weights, first, second)
            if status < 0:
                raise MemoryError()
        finally:
            free(first)
            free(second)
            free(starts)
        return table
