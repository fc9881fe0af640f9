# Included by _pump.pyx: lanes, listeners whose connections the pump accepts, balances and dials
# itself (no Python per connection), with the lane's books and the commands that change a lane.

# --- lanes: accepting, balancing and dialing in the pump ----------------------------------------------
#
# A lane is a listener whose frontend needs no Python per connection (lanes.lane_backend decides
# which: no rules but the flood defence sticktable.pxi runs, no hooks, queues, rate limits or PROXY
# headers; round robin, or a hash of the source).
# Every worker polls it, on a copy of its own (EPOLLEXCLUSIVE wakes one per connection): it accepts a batch,
# tunes each client, runs its tcp-request connection rules (a rejected client is reset at once), picks a
# server (smooth weighted round robin over the weights Python sets, 0 for a server out of picks, or the
# client's address hashed on the map or ring table Python sets), starts
# the connect and registers the pair on the least loaded worker, all without the GIL.  Its log lines
# are written here (lanelog.pxi) or reported to Python in one record per pair.  What needs Python goes
# back to it with the client descriptor (on_lane_hand_back): a refused connect (retries, redispatch),
# no server to pick (backups, <NOSRV>).  Limits (the lane's maxconn, the global one over lanes and
# Python) are kept with atomic counts; a lane at a limit stops being polled, and the kernel backlog
# holds the clients, as HAProxy does.

cdef inline bint lane_full(Shared *sh, Lane *lane) noexcept nogil:
    if lane.disabled:  # as full: paused, its clients wait in the backlog (HAProxy's paused listener)
        return True
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


cdef void lane_pair_ended(Worker *w, Pair *p, int reason) noexcept nogil:
    """A pair the lane made ended (its sockets are closed): Python is not told of each, the books are
    kept here; a lane that logs through Python gets one record for the line."""
    cdef Lane *lane = &w.lanes[p.lane]
    lane_closed(w, lane, p.frontend_block)
    lane_untrack(lane, p.peer, p.tracked, w.now_ms)
    fp_atomic_add(&w.shared.lane_ended[reason], 1)
    if p.log_end and not lane.nlog_sinks:
        push_record(w.shared, REC_LANE_ENDED, p.tag, reason, 0, p.c2s.bytes, p.s2c.bytes,
                    p.frontend_block, p.server_block, -1, p, w.now_ms)


cdef LaneServer *lane_pick(Lane *lane) noexcept nogil:
    """Smooth weighted round robin (nginx's): every weighted server gains its weight, the richest is
    picked and pays the total.  Over a cycle, each server gets exactly its weight's share; with several
    workers the positions are shared (under the lane's pick lock), so the cycle is the lane's, not each
    worker's."""
    cdef int64_t *current
    cdef int64_t total = 0
    cdef int32_t best = -1
    cdef uint32_t i
    if lane.pick_lock != NULL:
        pthread_mutex_lock(lane.pick_lock)
    for i in range(lane.nservers):
        if lane.servers[i].weight <= 0:
            continue
        current = &lane.pick_current[i] if lane.pick_current != NULL else &lane.servers[i].current
        current[0] += lane.servers[i].weight
        total += lane.servers[i].weight
        if best < 0 or current[0] > pick_position(lane, best):
            best = i
    if best >= 0:
        if lane.pick_current != NULL:
            lane.pick_current[best] -= total
        else:
            lane.servers[best].current -= total
    if lane.pick_lock != NULL:
        pthread_mutex_unlock(lane.pick_lock)
    return &lane.servers[best] if best >= 0 else NULL


cdef inline int64_t pick_position(Lane *lane, int32_t i) noexcept nogil:
    return lane.pick_current[i] if lane.pick_current != NULL else lane.servers[i].current


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
                         int error, const uint8_t *peer, uint8_t tracked) noexcept nogil:
    # Python takes the client without its stick counters: they let go of it here (its retries and
    # redispatch are not counted in conn_cur meanwhile).
    lane_closed(w, lane, lane.frontend_block)
    lane_untrack(lane, peer, tracked, w.now_ms)
    push_record(w.shared, REC_LANE_HAND_BACK, tag, END_CONNECT_FAILED, error, 0, 0, lane.frontend_block,
                server_block, fd, NULL, 0)


cdef void lane_accept(Worker *w, uint32_t index) noexcept nogil:
    cdef Lane *lane = &w.lanes[index]
    cdef Shared *sh = w.shared
    cdef LaneServer *server
    cdef NewPair np
    cdef int fd, server_fd, err
    cdef int budget = LANE_BUDGET
    cdef uint64_t tag
    cdef uint8_t connecting
    cdef Worker *target
    cdef uint8_t address[28]
    cdef uint8_t tracked = 0
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
        if lane.nrules and not lane_rules_accept(lane, address, &tracked, w.now_ms):
            # ``tcp-request connection reject``: closed at once with a reset, before it is a session
            # (HAProxy's no-linger close), counted in the frontend's denied connections.
            fp_set_linger0(fd)
            close(fd)
            count(sh, lane.frontend_block, CNT_DENIED_CONN, 1)
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
            lane_hand_back(w, lane, fd, tag, -1, EHOSTUNREACH, address, tracked)
            continue
        server_fd = fp_socket_nb(server.family)
        if server_fd < 0:
            lane_hand_back(w, lane, fd, tag, server.block, errno, address, tracked)
            continue
        fp_tune_tcp(server_fd, lane.server_tcp)
        connecting = 0
        if fp_connect_raw(server_fd, server.addr, server.addrlen) < 0:
            err = errno
            if err != EINPROGRESS:
                close(server_fd)
                lane_hand_back(w, lane, fd, tag, server.block, err, address, tracked)
                continue
            connecting = 1
        memset(&np, 0, sizeof(NewPair))
        np.client_fd = fd
        np.server_fd = server_fd
        np.connecting = connecting
        np.timeouts = lane.timeouts
        np.frontend_block = lane.frontend_block
        np.server_block = server.block
        np.backend_block = lane.backend_block
        np.lane = <int32_t>index
        np.tag = tag
        np.log_end = lane.log_ends
        np.tracked = tracked
        memcpy(np.peer, address, 28)  # for its log line and ``show sess``
        np.accepted_ms = np.dialed_ms = w.now_ms
        target = lightest_worker(w) if sh.nworkers > 1 else w
        if target != w and hand_over(target, &np):
            continue
        # Under the worker's lock, as for Python's pairs: connections() reads the pair table with it
        # held, and registering may grow (move) the table.  No room: closed, and out of the books.
        pthread_mutex_lock(&w.lock)
        register_pair(w, &np)
        pthread_mutex_unlock(&w.lock)


cdef Worker *lightest_worker(Worker *w) noexcept nogil:
    """The worker with the fewest pairs (taken or on their way), this one on a tie: the kernel wakes
    an idle worker for a new client, but a busy one may accept a burst alone."""
    cdef Worker *workers = <Worker *>w.shared.workers
    cdef Worker *best = w
    cdef int k, load
    cdef int own = fp_atomic_load_int(&w.active) + fp_atomic_load_int(&w.handed)
    cdef int best_load = own
    # A margin: handing over costs the other worker a wake-up, on a busy machine a wait for a CPU in
    # the new client's first round trip.  Within 1/16 of this worker's load (idle pairs of a flood
    # spread evenly cost nothing to keep), the client stays where the kernel woke it.
    cdef int margin = 1 + own // 16
    for k in range(w.shared.nworkers):
        load = fp_atomic_load_int(&workers[k].active) + fp_atomic_load_int(&workers[k].handed)
        if load + margin < best_load:
            best = &workers[k]
            best_load = load
    return best


# --- lane commands: Python's changes, taken by each worker ---------------------------------------------

cdef void take_lane_commands(Worker *w) noexcept nogil:
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
        if lane.servers_dirty:
            lane.servers_dirty = 0
            swap_servers(lane)
        if lane.weights_dirty:
            lane.weights_dirty = 0
            if lane.pick_lock != NULL:
                pthread_mutex_lock(lane.pick_lock)
            for k in range(lane.nservers):
                lane.servers[k].weight = lane.servers[k].pending_weight
                lane.servers[k].current = 0
                if lane.pick_current != NULL:
                    lane.pick_current[k] = 0
            if lane.pick_lock != NULL:
                pthread_mutex_unlock(lane.pick_lock)
        if lane.picks_dirty:
            lane.picks_dirty = 0
            swap_picks(lane)


cdef void swap_servers(Lane *lane) noexcept nogil:
    """Take the server list Python set (its weights with it); the old array is freed here."""
    free(lane.servers)
    lane.servers = lane.pending_servers
    lane.nservers = lane.pending_nservers
    lane.pending_servers = NULL
    lane.pending_nservers = 0


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


# What the lane commands below get from the Python face (Lanes).
cdef struct LaneChange:
    uint32_t index
    uint8_t running         # the worker loops run: let them take the change (else it applies here)
    const int32_t *weights  # lane_reweigh: one per server
    LaneServer *servers     # lane_reserve: owned by the worker's copy from then on
    uint32_t nservers
    int32_t *map            # lane_repick: owned by the worker's copy from then on
    uint32_t map_len
    void *table
    int32_t *table_servers


cdef int lanes_recheck(Worker *w, void *arg) noexcept nogil:
    """Command: look again at the paused lanes (one was enabled)."""
    w.lanes_paused = 1
    return WAKE


cdef int lanes_grown(Worker *w, void *arg) noexcept nogil:
    """Command: the lane ``index`` was added to every worker's copies: poll it."""
    cdef LaneChange *change = <LaneChange *>arg
    w.nlanes = change.index + 1
    w.lane_commands = 1
    return WAKE


cdef int lane_removal(Worker *w, void *arg) noexcept nogil:
    """Command: stop polling the lane (LANE_OFF once the worker let go of its listener)."""
    cdef LaneChange *change = <LaneChange *>arg
    cdef Lane *lane = &w.lanes[change.index]
    if lane.state == LANE_NEW or not change.running:
        lane.state = LANE_OFF  # never polled, or no worker left to poll it
    elif lane.state == LANE_ON:
        lane.state = LANE_CLOSING
        w.lane_commands = 1
    return QUIET if lane.state == LANE_OFF else WAKE


cdef int lane_reweigh(Worker *w, void *arg) noexcept nogil:
    """Command: new effective weights for the lane's servers, taken by the worker's next accept."""
    cdef LaneChange *change = <LaneChange *>arg
    cdef Lane *lane = &w.lanes[change.index]
    cdef uint32_t i
    cdef LaneServer *servers = lane.servers
    cdef uint32_t nservers = lane.nservers
    if lane.pending_servers != NULL:  # a new list is on its way: the weights are its
        servers = lane.pending_servers
        nservers = lane.pending_nservers
    for i in range(nservers):
        servers[i].pending_weight = change.weights[i]
        if servers != lane.servers or not change.running:  # not in use yet: set it now
            servers[i].weight = change.weights[i]
    if not change.running:
        return QUIET
    lane.weights_dirty = 1
    w.lane_commands = 1
    return WAKE


cdef int lane_reserve(Worker *w, void *arg) noexcept nogil:
    """Command: a new server list for the lane (servers added, deleted or moved), taken by the
    worker's next wake-up; the array becomes the worker's."""
    cdef LaneChange *change = <LaneChange *>arg
    cdef Lane *lane = &w.lanes[change.index]
    free(lane.pending_servers)
    lane.pending_servers = change.servers
    lane.pending_nservers = change.nservers
    if not change.running:
        swap_servers(lane)
        return QUIET
    lane.servers_dirty = 1
    w.lane_commands = 1
    return WAKE


cdef int lane_repick(Worker *w, void *arg) noexcept nogil:
    """Command: a new map or ring table for a hashing lane (the arrays become the worker's)."""
    cdef LaneChange *change = <LaneChange *>arg
    cdef Lane *lane = &w.lanes[change.index]
    free(lane.pending_map)
    free(lane.pending_table_servers)
    lane.pending_map = change.map
    lane.pending_map_len = change.map_len
    lane.pending_table = change.table
    lane.pending_table_servers = change.table_servers
    if not change.running:
        swap_picks(lane)
        return QUIET
    lane.picks_dirty = 1
    w.lane_commands = 1
    return WAKE
