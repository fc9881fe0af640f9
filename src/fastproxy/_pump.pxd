# The C-level surface of the data plane, so that other extensions can cimport it: what a pair, a
# worker and a lane are.  The code over them is _pump.pyx and the dataplane/*.pxi it includes.

from libc.stdint cimport int32_t, int64_t, uint8_t, uint16_t, uint32_t, uint64_t

from fastproxy.includes.system cimport pthread_mutex_t


# Why a pair ended; the same numbers as fastproxy.pump.EndReason.
cdef enum EndReason:
    END_CLOSED = 0          # both directions finished with a FIN
    END_CLIENT_RESET = 1    # the client reset (or failed); the server got a reset too
    END_SERVER_RESET = 2    # the server reset (or failed); the client got a reset too
    END_CLIENT_TIMEOUT = 3  # timeout client / client-fin / tunnel on the client side
    END_SERVER_TIMEOUT = 4  # timeout server / server-fin / tunnel on the server side
    END_ERROR = 5           # a local failure (registration, resources)
    END_SHUTDOWN = 6        # cut by the engine (stop after the grace period)
    END_CONNECT_FAILED = 7  # the upstream connect failed; the client descriptor goes back to Python
    END_SERVER_DOWN = 8     # cut because its server was marked down (on-marked-down shutdown-sessions)
    END_REASONS = 9
    MAX_CUT_SERVERS = 64    # server cuts one worker can have pending at once
    MAX_CUT_PAIRS = 64      # single pairs (``shutdown session``) one worker can have pending at once
    WHEEL_BUCKETS = 448     # a worker's timer wheel: 256 buckets of 1 ms, then 3 levels of 64


# Fields of one counter block (a frontend's or a server's); the same as fastproxy.pump.Counter.
cdef enum CounterField:
    CNT_BYTES_IN = 0        # client -> server
    CNT_BYTES_OUT = 1       # server -> client
    CNT_CONN_CUR = 2
    CNT_CONN_TOTAL = 3
    CNT_CONNECT_ERRORS = 4
    CNT_RESETS = 5
    CNT_TIMEOUTS = 6
    CNT_DENIED_CONN = 7     # clients a lane's ``tcp-request connection reject`` closed (show stat's dcon)
    CNT_FIELDS = 8          # 8 x 8 bytes: one block per 64-byte cache line (the counters are aligned)


# The session times of one block (a server's or a backend's), in milliseconds, as HAProxy keeps its
# qtime/ctime/ttime: sliding sums over the last TIME_WINDOW connections and maxima, folded at pair end.
# The same as fastproxy.pump.Time.
cdef enum:  # TimeField (anonymous: its names index arrays)
    TM_QUEUE_SUM = 0        # accept -> dial (the queue, for Python's pairs)
    TM_CONNECT_SUM = 1      # dial -> established
    TM_TOTAL_SUM = 2        # accept -> end
    TM_QUEUE_MAX = 3
    TM_CONNECT_MAX = 4
    TM_TOTAL_MAX = 5
    TM_SAMPLES = 6          # pairs folded so far, counted up to TIME_WINDOW + 1
    TM_FIELDS = 8           # 8 x 4 bytes: half a cache line
    TIME_WINDOW = 1024      # HAProxy's TIME_STATS_SAMPLES


# The timeouts of a pair, in milliseconds (0: none), as Python or a lane sets them.
cdef struct PairTimeouts:
    uint32_t client         # the client side idle (``timeout client``, or ``tunnel``)
    uint32_t server         # the server side idle (``timeout server``, or ``tunnel``)
    uint32_t client_fin     # replaces ``client`` once a direction is half-closed
    uint32_t server_fin     # replaces ``server`` once a direction is half-closed
    uint32_t connect        # while the upstream connect is in progress


# One direction of a pair: bytes read from src are written to dst, through at most one buffer
# (bytes the dst would not take yet) or one pipe (when splicing), never both.
cdef struct Direction:
    int src
    int dst
    char *buf
    uint32_t buf_off
    uint32_t buf_len
    int pipe_r
    int pipe_w
    uint32_t pipe_len
    uint8_t splicing
    uint8_t eof
    uint8_t shut
    uint8_t buf_own         # ``buf`` is an adopted pair's bytes in flight, larger than bufsize: freed, not pooled
    uint64_t bytes


# Readiness of one socket as epoll last told it (edge-triggered: kept until a call says EAGAIN).
cdef struct Side:
    int fd
    uint8_t readable
    uint8_t writable
    uint8_t hup
    uint8_t fin             # the peer's FIN is queued (EPOLLRDHUP without EPOLLERR): a short read reached it
    uint64_t seen_ms


# Laid out so that the timer wheel's fields fill what was padding: 240 bytes, as before them.
cdef struct Pair:
    uint8_t active
    uint8_t queued
    uint8_t connecting      # the upstream connect is still in progress
    uint8_t log_end         # a lane that logs (option tcplog) writes or reports its line at the end
    uint32_t timer_due      # the deadline it is filed for in its worker's timer wheel (low 32 bits, ms)
    Side client
    Side server
    Direction c2s
    Direction s2c
    PairTimeouts timeouts
    int32_t frontend_block
    int32_t server_block
    int32_t backend_block   # where its session times are folded too (-1: none)
    int32_t lane            # the lane that accepted the client, or -1 for a pair Python handed over
    int32_t timer_next      # the next pair of its wheel bucket (-1: none)
    uint64_t tag
    uint8_t peer[28]        # a lane's client, as a raw sockaddr (Python knows its own clients)
    int32_t timer_prev      # the previous pair of its wheel bucket (-1: it heads the bucket)
    # Session times (show stat's qtime/ctime/ttime, the log line's %Tc and %Tt), on the worker clock:
    uint64_t accepted_ms    # when the client was accepted
    uint64_t dialed_ms      # when the connect started
    uint32_t connect_ms     # how long the connect took
    uint16_t timer_bucket   # its bucket in the wheel, while filed
    uint8_t timer_filed     # filed in the wheel (dataplane/timers.pxi)
    uint8_t tracked         # the stick counters (bit n: track-sc<n>) its lane tracks for the client


# A pair handed over by Python, waiting for its worker to register it.
cdef struct NewPair:
    int client_fd
    int server_fd
    char *prefix            # bytes for the server before any of the client's (a PROXY header), or NULL
    uint32_t prefix_len
    uint8_t connecting
    PairTimeouts timeouts
    int32_t frontend_block
    int32_t server_block
    int32_t backend_block
    int32_t lane
    uint64_t tag
    uint8_t log_end
    uint8_t tracked
    uint8_t peer[28]
    uint64_t accepted_ms
    uint64_t dialed_ms
    # A pair another pump detached (``Pump.adopt``): already established, resumed where it stopped.
    uint8_t adopted
    uint8_t carried_flags   # CarriedFlag: the half-closes already seen and passed on
    char *pending_out       # bytes for the client before any of the server's, or NULL (``prefix``: the server's)
    uint32_t pending_out_len
    uint64_t bytes_in
    uint64_t bytes_out
    uint32_t client_idle_ms  # since each side was last active: its timeout goes on from there
    uint32_t server_idle_ms
    uint32_t connect_ms


# The half-closes of a detached pair: a FIN read (EOF) from a side, and passed on (SHUT) to the other.
cdef enum CarriedFlag:
    CARRIED_IN_EOF = 1      # the client's FIN was read
    CARRIED_IN_SHUT = 2     # and passed on to the server
    CARRIED_OUT_EOF = 4     # the server's FIN was read
    CARRIED_OUT_SHUT = 8    # and passed on to the client


# A pair a worker let go of (``Pump.detach``): its descriptors, still open, and all it takes to resume it.
cdef struct Detached:
    int client_fd
    int server_fd
    uint64_t tag
    int32_t frontend_block
    int32_t server_block
    int32_t backend_block
    int32_t lane
    uint8_t peer[28]
    PairTimeouts timeouts
    uint32_t client_idle_ms
    uint32_t server_idle_ms
    uint32_t age_ms
    uint32_t queue_ms
    uint32_t connect_ms
    uint64_t bytes_in
    uint64_t bytes_out
    uint8_t flags           # CarriedFlag
    char *pending_in        # read from the client, not yet written to the server (malloc'd), or NULL
    uint32_t pending_in_len
    char *pending_out
    uint32_t pending_out_len


# Python's request to a worker to detach the pairs of some tags (filled by the worker, ``done`` last).
cdef struct DetachRequest:
    uint64_t *tags
    uint32_t ntags
    Detached *out           # room for ntags
    uint32_t out_len
    int done


# What an Ended record tells Python, each kind to its own callback (Pump.drain_ended).
cdef enum RecordKind:
    REC_PAIR_ENDED = 0      # a pair Python handed over ended: on_pair_ended
    REC_CONNECT_FAILED = 1  # its connect failed, the client is Python's again: on_connect_failed
    REC_LANE_HAND_BACK = 2  # a client a lane could not place, Python's from now on: on_lane_hand_back
    REC_LANE_ENDED = 3      # a lane's pair ended, for its log line: on_lane_ended


# Something that ended, waiting for Python to hear of it.
cdef struct Ended:
    uint8_t kind            # RecordKind
    uint64_t tag
    uint64_t bytes_in
    uint64_t bytes_out
    int32_t reason
    int32_t error           # errno of a failed connect
    int32_t frontend_block
    int32_t server_block
    int32_t client_fd       # REC_CONNECT_FAILED, REC_LANE_HAND_BACK: the client, now Python's
    uint8_t peer[28]        # REC_LANE_ENDED: what the log line needs
    uint64_t duration_ms
    uint32_t connect_ms


cdef enum LaneState:
    LANE_FREE = 0
    LANE_NEW = 1            # added by Python, not yet polled
    LANE_ON = 2             # polled by every worker (each on its copy of the lane)
    LANE_CLOSING = 3        # Python asks the worker to stop polling it
    LANE_OFF = 4            # no longer polled: Python may close the listener


cdef enum LaneHash:
    LANE_WRR = 0            # smooth weighted round robin (roundrobin, static-rr)
    LANE_MAP = 1            # source, hash-type map-based
    LANE_TABLE = 2          # source, hash-type consistent or maglev


# Where a lane writes its tcplog lines itself: a connected datagram socket, or stdout/stderr.
cdef struct LogSink:
    int fd
    uint8_t stream          # write() a line with its newline (stdout/stderr), not send() a datagram
    uint8_t format          # 0: rfc3164, 1: raw, 2: short
    uint32_t length         # at most this many bytes (``len``)
    char pri[8]             # "<PRI>" of rfc3164, "<severity>" of short


# The addresses a lane's log-format reads besides the client's: one getsockname() per line each.
cdef enum LogNeeds:
    LOG_NEEDS_FRONTEND = 1  # %fi %fp
    LOG_NEEDS_BACKEND = 2   # %bi %bp


# A stick table the pump keeps itself (dataplane/sticktable.pxi), for the lanes that track clients in
# it: one per table, shared by every worker under its lock (HAProxy 2.6 has one lock per table too).
# Entries hold the connection counters of one client address; those no connection tracks expire and,
# when the table is full, the least recently touched go first (or nothing goes: ``nopurge``).
cdef struct SourceEntry:
    uint8_t key[16]         # the client's address as IPv6 (an IPv4 one mapped: ::ffff:a.b.c.d)
    uint64_t expire_ms      # when it expires while nobody tracks it (0: never)
    uint64_t rate_start_ms  # conn_rate (HAProxy's freq_ctr): when the current period began
    uint32_t rate_current   # connections in the current period
    uint32_t rate_previous  # connections in the period before
    uint32_t conn_cur
    uint32_t conn_cnt
    uint32_t use            # connections tracking it now: it neither expires nor is evicted
    int32_t chain           # the next entry of its hash bucket, or of the free list (-1: none)
    int32_t older           # the touch order, least recently touched first (-1: none)
    int32_t newer


cdef struct SourceTable:
    pthread_mutex_t lock
    SourceEntry *entries    # ``size`` of them, calloc'ed: pages are only resident once used
    int32_t *buckets        # heads of the hash chains (-1: empty)
    uint32_t bucket_mask
    uint32_t size
    uint32_t used
    uint32_t high           # entries[0..high) were handed out at least once
    int32_t free_list
    int32_t oldest
    int32_t newest
    uint64_t expire_ms      # 0: entries never expire
    uint64_t period_ms      # of conn_rate
    uint8_t nopurge
    uint8_t ipv6            # ``type ipv6``; else ``type ip``: an IPv6 client not IPv4-mapped has no key
    uint8_t stored          # the data it stores, bits by SourceField (others read as absent)


cdef enum SourceField:
    FIELD_CONN_CUR = 0
    FIELD_CONN_CNT = 1
    FIELD_CONN_RATE = 2


# A lane's ``tcp-request connection`` rules, as lanes.lane_rules compiles them, run in order at accept.
cdef enum LaneRuleKind:
    RULE_TRACK = 0          # track-sc<counter> src [table <t>]
    RULE_REJECT = 1         # reject if its test holds: a value within [low, high], an address within
    #                         networks (``negate``: unless, or '!')
    RULE_ACCEPT = 2         # accept if its test holds: the rules after it do not run


cdef enum LaneRuleScope:
    SCOPE_TRACKED = 0       # sc<counter>_*: the entry the counter tracks (none: the fetch fails)
    SCOPE_SOURCE = 1        # src_*: the client's entry in ``table``, looked up (none: 0)
    SCOPE_ADDRESS = 2       # src: the client's address within one of ``networks``
    SCOPE_ALWAYS = 3        # no condition


cdef struct LaneRule:
    uint8_t kind            # LaneRuleKind
    uint8_t counter
    uint8_t scope           # LaneRuleScope
    uint8_t field           # SourceField
    uint8_t negate
    SourceTable *table
    int64_t low
    int64_t high
    uint8_t *networks       # SCOPE_ADDRESS: 17 bytes each, an IPv6 address (IPv4 mapped), its prefix
    uint32_t nnetworks


# A server a lane can dial, in the lane's smooth weighted round robin.
cdef struct LaneServer:
    uint8_t addr[28]        # a raw sockaddr_in or sockaddr_in6
    uint32_t addrlen
    int family
    int32_t block           # its counter block
    int32_t weight          # effective weight; 0: out of picks
    int32_t pending_weight  # set by Python under the worker lock, applied by the worker
    int64_t current         # smooth weighted round robin state
    char log_name[96]       # the server's name, for the lane's own log lines (%s)


# A listener whose connections the pump accepts, balances and dials itself (no Python per connection).
cdef struct Lane:
    int fd
    int *open_count         # clients of the lane open now, over every worker (the first copy's ``open``)
    int state               # LaneState
    uint8_t paused          # not polled: at a connection limit, or resting after EMFILE
    uint8_t disabled        # ``disable frontend``: not polled until enabled again (set by Python)
    uint8_t weights_dirty
    uint64_t resume_at_ms   # after EMFILE/ENFILE: when to try again
    int32_t frontend_block
    int32_t backend_block   # where the session times of its pairs are folded too
    PairTimeouts timeouts   # of the pairs it makes
    uint8_t tune_clients    # set client_tcp on each client (else the listener's options are inherited)
    uint8_t log_ends        # report each pair that ends to Python, for its log line (option tcplog)
    LogSink *log_sinks      # or write the lines here (shared by the workers' copies; worker 0's frees)
    uint32_t nlog_sinks
    uint8_t log_dontlognull
    uint8_t log_connect     # HAProxy's "Connect from" line at each accept (``log`` without tcplog)
    int log_pid
    char log_frontend[64]
    uint8_t *log_program    # the log-format as logformat.lane_program compiles it (shared like log_sinks)
    uint32_t log_program_len
    uint8_t log_needs       # LogNeeds: the addresses the format reads (a getsockname each)
    int client_tcp[4]       # keepalive, idle, interval, count
    int server_tcp[4]
    int open                # clients of this lane open now (atomic)
    int maxconn             # 0: no limit of its own
    LaneServer *servers
    uint32_t nservers
    # With several workers, one round robin for all of them, as HAProxy's threads share one: the
    # positions (one per server) and their lock, the first copy's, shared by the others; NULL with one.
    int64_t *pick_current
    pthread_mutex_t *pick_lock
    # How the lane picks: smooth weighted round robin, or the client address hashed on HAProxy's map
    # (hash % length, ``map`` of server indexes) or on a ring's table (``table``: a fastproxy._ring
    # Table the Pump holds a reference to; ``table_servers``: table index -> lane server index).
    int hash_kind           # LaneHash
    uint64_t hash_seed
    int32_t *map
    uint32_t map_len
    void *table
    int32_t *table_servers
    # Set by Python under the worker lock, swapped in by the worker (which frees what it replaces):
    uint8_t picks_dirty
    int32_t *pending_map
    uint32_t pending_map_len
    void *pending_table
    int32_t *pending_table_servers
    uint8_t servers_dirty   # a new server list (``Lanes.set_servers``), taken before weights and picks
    LaneServer *pending_servers
    uint32_t pending_nservers
    LaneRule *rules         # its tcp-request connection rules (shared by the copies; the first frees)
    uint32_t nrules


cdef struct Shared:
    void *workers           # the pump's Worker array (lanes hand clients to the least loaded worker)
    int nworkers
    uint32_t bufsize
    uint32_t pipesize
    int maxpipes
    int pipes_in_use
    uint8_t splice_enabled
    uint64_t *counters
    uint32_t *times         # TM_FIELDS per counter block
    int32_t counter_blocks
    pthread_mutex_t ended_lock
    Ended *ended
    uint32_t ended_len
    uint32_t ended_cap
    int notify_fd
    uint8_t running         # the worker threads run: they take commands (else Python applies them)
    int open_total          # client connections open, lanes' and Python's (atomic)
    int maxconn             # global maxconn; 0: none
    uint64_t lane_ended[END_REASONS]  # pairs of lanes that ended, by EndReason (Python is not told of each)
    uint64_t accept_errors  # accepts of lanes that failed for lack of descriptors or memory


cdef struct Worker:
    int epfd
    int wake_fd
    Shared *shared
    pthread_mutex_t lock
    # Filled by Python under lock, taken by the worker:
    NewPair *incoming
    uint32_t incoming_len
    uint32_t incoming_cap
    uint8_t cut_requested
    uint8_t stop_requested
    int32_t cut_servers[MAX_CUT_SERVERS]  # server counter blocks whose pairs must end (SERVER_DOWN)
    uint32_t cut_servers_len
    uint64_t cut_pairs[MAX_CUT_PAIRS]     # tags of pairs that must end (SHUTDOWN)
    uint32_t cut_pairs_len
    DetachRequest *detach   # pairs to let go of (Pump.detach), or NULL
    # Owned by the worker thread alone:
    Pair *pairs
    uint32_t capacity
    uint32_t high
    int32_t *free_slots
    uint32_t free_len
    int32_t *ready
    uint32_t ready_len
    int32_t *ready_next
    int active
    int handed              # pairs other workers queued here and this one has not taken yet (atomic)
    char *scratch
    char **buf_pool
    uint32_t buf_pool_len
    int *pipe_pool
    uint32_t pipe_pool_len
    uint64_t now_ms
    # Its pairs' timeouts (dataplane/timers.pxi): bucket heads (pair slots, -1: empty), the next tick
    # to run, how many pairs are filed, and the earliest time the wheel has work (the epoll timeout).
    int32_t wheel[WHEEL_BUCKETS]
    uint64_t wheel_clock
    uint32_t timers
    uint64_t timer_next_ms
    uint32_t index          # which worker this is (in lane tags)
    uint8_t exclusive       # several workers poll the lanes' listeners: one is woken per connection
    Lane *lanes             # this worker's copy of the pump's lanes (every worker accepts on them)
    uint32_t nlanes
    uint8_t lane_commands   # set with the lock: lanes to register, remove or reweigh
    uint8_t lanes_paused
    uint64_t lane_seq


cdef class Pump


# The lane members of a Pump (Pump.lanes).
cdef class Lanes:
    cdef Pump pump
    cdef uint32_t count        # lanes added so far (indexes 0..count-1)
    cdef object _tables        # lane index -> the ring tables a lane may still read (kept alive here)
    cdef object _server_counts  # lane index -> how many servers Python last gave it
    cdef object _capacities    # lane index -> how many servers its shared round robin has room for
    cdef object _stick_tables  # the SourceCounters the lanes' rules point into (kept alive here)


# A stick table kept by the pump (SourceTable), as Python reads and changes it.
cdef class SourceCounters:
    cdef SourceTable *table


cdef class Pump:
    cdef Shared shared
    cdef Worker *workers
    cdef int nworkers
    cdef Lane *lane_copies     # MAX_LANES lanes per worker, each worker's copy of every lane
    cdef readonly Lanes lanes
    cdef object _threads
    cdef object _on_pair_ended
    cdef object _on_connect_failed
    cdef object _on_lane_hand_back
    cdef object _on_lane_ended
    cdef object _loop
    cdef bint _started
    cdef bint _stopped
    cdef int _next_worker

    cdef int _least_loaded(self)
