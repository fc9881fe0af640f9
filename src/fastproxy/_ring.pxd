# The C-level surface of the consistent-hash ring, so that other extensions (the pump) can cimport it
# and look servers up without a Python call per connection:
#
#     from fastproxy._ring cimport HashRing, Table, xxh64
#
#     cdef Table table = ring.table          # one reference, taken with the GIL held
#     with nogil:
#         h = table.key_hash(data, length)
#         index = table.server_of(h)         # -1: no server with a positive weight
#     name = table.names[index]
#
# A Table is immutable: the ring swaps in a new one on every change (one reference assignment under
# the GIL), and an old one stays valid for as long as someone holds a reference to it.  So a caller
# that keeps its Table reference may look up without the GIL while another thread changes the ring.

cimport cython
from libc.stdint cimport int32_t, uint32_t, uint64_t


cdef enum Algorithm:
    KETAMA = 0
    MAGLEV = 1


# One point of a ketama ring: where it sits on the 64-bit circle and whose it is.
cdef packed struct Point:
    uint64_t position
    uint32_t server


# One bucket of a ketama ring's index (the buckets split the circle by the top bits of a position):
# the first point at or after the bucket's start, copied here so that most lookups read nothing else.
cdef struct Bucket:
    uint64_t first_position  # UINT64_MAX past the last point of the circle
    uint32_t start           # that point's index (npoints past the last point)
    uint32_t first_server    # that point's server (past the last point: the first one's, the circle wraps)


# One key of a batch lookup: in, its bytes (``data``, ``length``) or, with ``length`` -1, its hash
# already computed in ``hash``; out, ``hash`` and the ``server`` index (-1 on an empty table).
cdef struct KeyRef:
    const unsigned char *data
    Py_ssize_t length
    uint64_t hash
    int32_t server


# XXH64 of ``length`` bytes at ``data`` (the published XXH64 specification).
cdef uint64_t xxh64(const unsigned char *data, size_t length, uint64_t seed) noexcept nogil


@cython.final
cdef class Table:
    # Servers in table order (sorted by name), with their weights; index = position in ``names``.
    cdef readonly tuple names
    cdef readonly int algorithm
    cdef readonly uint64_t seed
    cdef uint32_t count
    cdef uint32_t *weights
    cdef uint64_t *cumulative   # sum of the weights of the servers before each one (bounded loads)
    cdef uint64_t total_weight
    # ketama: the sorted points, and the index of buckets of the top ``64 - shift`` bits (the points
    # of bucket b are ``index[b].start .. index[b + 1].start``): no bisection, one cache line or two.
    cdef Point *points
    cdef size_t npoints
    cdef Bucket *index
    cdef int shift
    # maglev: the lookup table, ``size`` server indexes (a key goes to entry ((h >> 32) * size) >> 32).
    cdef uint32_t *entries
    cdef uint32_t size

    cdef uint64_t key_hash(self, const unsigned char *data, size_t length) noexcept nogil
    # Where the walk for hash ``h`` starts (a point or entry index), or -1 on an empty table.
    cdef Py_ssize_t start(self, uint64_t h) noexcept nogil
    cdef uint32_t server_at(self, size_t position) noexcept nogil
    cdef size_t length(self) noexcept nogil
    # The server index for hash ``h``, or -1 when no server has a positive weight.
    cdef int32_t server_of(self, uint64_t h) noexcept nogil
    # Consistent hashing with bounded loads (HAProxy's hash-balance-factor): the first server along
    # the walk whose ``loads[index]`` is under its share of ``(in_flight + 1) * factor / 100``.
    cdef int32_t server_of_bounded(self, uint64_t h, const uint32_t *loads, uint64_t in_flight,
                                   uint32_t factor) noexcept nogil
    # Look a batch up (``table.lookup_batch(keys, n)``); needs no GIL.
    cdef void lookup_batch(self, KeyRef *keys, size_t n) noexcept nogil
    cdef bint eligible(self, uint32_t server, const uint32_t *loads, uint64_t in_flight,
                       uint32_t factor) noexcept nogil


cdef class HashRing:
    cdef readonly Table table
    cdef readonly str algorithm
    cdef readonly uint32_t points_per_weight
    cdef readonly uint32_t table_size
    cdef readonly uint64_t seed
    cdef dict _weights
    cdef object _lock

    cdef Table _build(self, dict weights)
