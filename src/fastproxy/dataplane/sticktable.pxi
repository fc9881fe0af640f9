# Included by _pump.pyx: the stick tables the pump keeps itself, and the lanes' tcp-request connection
# rules over them (a flood rejected at accept, without Python).
#
# A SourceTable (declared in _pump.pxd) holds the connection counters of client addresses, as
# fastproxy.sticktables.StickTable holds them for the Python path, by the same rules (HAProxy's
# stick_table.c): an entry expires ``expire`` after it was last touched unless a connection tracks it;
# a full table evicts its least recently touched untracked entries, size / 256 + 1 at once, or with
# ``nopurge`` refuses the new key; conn_rate is HAProxy's freq_ctr over its period (rate.FreqCounter).
# Each table has one lock, taken by the workers at accept and at the end of a tracked client, and by
# Python (SourceCounters, the runtime API, the Python path's fetches): one table, never two copies.
# Entries live in one array allocated at the table's size (calloc: pages are resident once touched),
# chained in a power-of-two hash of buckets and in a doubly linked list by touch order.

cdef inline uint64_t source_hash(const uint8_t *key) noexcept nogil:
    return xxh64(<const unsigned char *>key, 16, 0)


cdef bint client_key(const uint8_t *address, uint8_t *key) noexcept nogil:
    """A raw client sockaddr as a key: its address as IPv6, IPv4 mapped (::ffff:a.b.c.d, as HAProxy
    casts an address to an ipv6 key); False for another family."""
    cdef uint16_t family = address[0] | (address[1] << 8)
    if family == AF_INET:
        memset(key, 0, 10)
        key[10] = 0xFF
        key[11] = 0xFF
        memcpy(key + 12, address + 4, 4)
        return True
    if family != AF_INET6:
        return False
    memcpy(key, address + 8, 16)
    return True


cdef inline bint table_takes(SourceTable *t, const uint8_t *key) noexcept nogil:
    """Whether the client has a key in the table: always in ``type ipv6``; in ``type ip`` unless its
    address is IPv6 and not IPv4-mapped (HAProxy cannot cast it)."""
    return t.ipv6 or is_v4_mapped(key)


cdef bint address_within(const uint8_t *key, const uint8_t *networks, uint32_t count) noexcept nogil:
    """Whether the address is in one of the networks (17 bytes each: address, prefix length)."""
    cdef uint32_t k
    cdef const uint8_t *network
    cdef uint8_t bits, whole, rest
    for k in range(count):
        network = networks + 17 * k
        bits = network[16]
        whole = bits >> 3
        rest = bits & 7
        if memcmp(key, network, whole) != 0:
            continue
        if rest and ((key[whole] ^ network[whole]) & (<uint8_t>(0xFF << (8 - rest)))):
            continue
        return True
    return False


cdef int32_t source_find(SourceTable *t, const uint8_t *key) noexcept nogil:
    cdef int32_t i = t.buckets[source_hash(key) & t.bucket_mask]
    while i >= 0:
        if memcmp(t.entries[i].key, key, 16) == 0:
            return i
        i = t.entries[i].chain
    return -1


cdef void source_unlink_order(SourceTable *t, int32_t i) noexcept nogil:
    cdef SourceEntry *e = &t.entries[i]
    if e.older >= 0:
        t.entries[e.older].newer = e.newer
    else:
        t.oldest = e.newer
    if e.newer >= 0:
        t.entries[e.newer].older = e.older
    else:
        t.newest = e.older
    e.older = e.newer = -1


cdef void source_link_newest(SourceTable *t, int32_t i) noexcept nogil:
    cdef SourceEntry *e = &t.entries[i]
    e.older = t.newest
    e.newer = -1
    if t.newest >= 0:
        t.entries[t.newest].newer = i
    else:
        t.oldest = i
    t.newest = i


cdef void source_delete(SourceTable *t, int32_t i) noexcept nogil:
    cdef int32_t *link = &t.buckets[source_hash(t.entries[i].key) & t.bucket_mask]
    while link[0] != i:
        link = &t.entries[link[0]].chain
    link[0] = t.entries[i].chain
    source_unlink_order(t, i)
    t.entries[i].chain = t.free_list
    t.free_list = i
    t.used -= 1


cdef void source_touch(SourceTable *t, int32_t i, uint64_t now) noexcept nogil:
    """Used now: its expiry starts again, and it is the last one to evict."""
    if t.expire_ms:
        t.entries[i].expire_ms = now + t.expire_ms
    if t.newest != i:
        source_unlink_order(t, i)
        source_link_newest(t, i)


cdef void source_purge(SourceTable *t, uint64_t now) noexcept nogil:
    """Expired entries go, oldest first; a tracked one goes to the end (it expires once released)."""
    cdef uint32_t n
    cdef int32_t i
    if not t.expire_ms:
        return
    for n in range(t.used):
        i = t.oldest
        if i < 0 or t.entries[i].expire_ms > now:
            return
        if t.entries[i].use:
            source_unlink_order(t, i)
            source_link_newest(t, i)
        else:
            source_delete(t, i)


cdef bint source_make_room(SourceTable *t) noexcept nogil:
    cdef uint32_t batch
    cdef int32_t i, next_i
    if t.used < t.size:
        return True
    if t.nopurge:
        return False
    batch = (t.size >> 8) + 1
    i = t.oldest
    while i >= 0 and batch:
        next_i = t.entries[i].newer
        if not t.entries[i].use:
            source_delete(t, i)
            batch -= 1
        i = next_i
    return t.used < t.size


cdef int32_t source_get(SourceTable *t, const uint8_t *key, uint64_t now) noexcept nogil:
    """The key's entry, created when absent (HAProxy's stktable_get_entry); -1 when the table is full
    and may not evict.  Expired entries are gone first."""
    cdef int32_t i
    cdef SourceEntry *e
    cdef uint32_t bucket
    source_purge(t, now)
    i = source_find(t, key)
    if i >= 0 or not source_make_room(t):
        return i
    if t.free_list >= 0:
        i = t.free_list
        t.free_list = t.entries[i].chain
    else:
        i = <int32_t>t.high
        t.high += 1
    e = &t.entries[i]
    memset(e, 0, sizeof(SourceEntry))
    memcpy(e.key, key, 16)
    e.rate_start_ms = now
    bucket = source_hash(key) & t.bucket_mask
    e.chain = t.buckets[bucket]
    t.buckets[bucket] = i
    e.older = e.newer = -1
    source_link_newest(t, i)
    t.used += 1
    source_touch(t, i, now)
    return i


cdef void source_rotate(SourceEntry *e, uint64_t now, uint64_t period) noexcept nogil:
    """freq_ctr's rotation, as rate.FreqCounter's: past one period the current count becomes the
    previous one; past two, the window starts afresh."""
    cdef uint64_t elapsed = now - e.rate_start_ms if now > e.rate_start_ms else 0
    if elapsed < period:
        return
    if elapsed < 2 * period:
        e.rate_previous = e.rate_current
        e.rate_start_ms += period
    else:
        e.rate_previous = 0
        e.rate_start_ms = now
    e.rate_current = 0


cdef uint32_t source_read(SourceTable *t, int32_t i, int field, uint64_t now) noexcept nogil:
    """A counter of the entry; conn_rate as HAProxy reads a period's rate: the current count plus the
    previous one's share still inside the sliding window, whole events."""
    cdef SourceEntry *e = &t.entries[i]
    cdef uint64_t elapsed
    if field == FIELD_CONN_CUR:
        return e.conn_cur
    if field == FIELD_CONN_CNT:
        return e.conn_cnt
    source_rotate(e, now, t.period_ms)
    elapsed = now - e.rate_start_ms if now > e.rate_start_ms else 0
    return e.rate_current + <uint32_t>((<uint64_t>e.rate_previous * (t.period_ms - elapsed)) // t.period_ms)


cdef void source_add(SourceTable *t, int32_t i, int field, int64_t count, uint64_t now) noexcept nogil:
    cdef SourceEntry *e = &t.entries[i]
    if field == FIELD_CONN_CUR:
        e.conn_cur = <uint32_t>(e.conn_cur + count)
    elif field == FIELD_CONN_CNT:
        e.conn_cnt = <uint32_t>(e.conn_cnt + count)
    else:
        source_rotate(e, now, t.period_ms)
        e.rate_current = <uint32_t>(e.rate_current + count)


cdef bint source_track(SourceTable *t, const uint8_t *key, uint64_t now) noexcept nogil:
    """``track-sc<n>``: one more connection on the key's entry (created if need be): conn_cur, conn_cnt
    and conn_rate count it, it is held until ``source_untrack``.  False when the table refused it."""
    cdef int32_t i
    pthread_mutex_lock(&t.lock)
    i = source_get(t, key, now)
    if i >= 0:
        t.entries[i].use += 1
        source_add(t, i, FIELD_CONN_CUR, 1, now)
        source_add(t, i, FIELD_CONN_CNT, 1, now)
        source_add(t, i, FIELD_CONN_RATE, 1, now)
        source_touch(t, i, now)
    pthread_mutex_unlock(&t.lock)
    return i >= 0


cdef void source_untrack(SourceTable *t, const uint8_t *key, uint64_t now) noexcept nogil:
    """The connection that tracked the key ended: one less conn_cur, released and touched."""
    cdef int32_t i
    pthread_mutex_lock(&t.lock)
    i = source_find(t, key)
    if i >= 0:
        if t.entries[i].conn_cur:
            t.entries[i].conn_cur -= 1
        if t.entries[i].use:
            t.entries[i].use -= 1
        source_touch(t, i, now)
    pthread_mutex_unlock(&t.lock)


# --- the lane's rules ------------------------------------------------------------------------------------

cdef bint rule_matches(LaneRule *rule, const uint8_t *key, bint has_key, uint8_t tracked,
                       uint64_t now) noexcept nogil:
    """Whether an accept or reject rule's test holds, negated for ``unless``/'!'.  A fetch without a
    value (the counter not tracked, the data not stored) fails the ACL, as HAProxy's; ``src_*`` of a
    key the table does not hold reads 0 (tracking.Tracker.fetch)."""
    cdef SourceTable *t = rule.table
    cdef int32_t i
    cdef int64_t value = 0
    cdef bint found = False
    if rule.scope == SCOPE_ALWAYS:
        return not rule.negate
    if rule.scope == SCOPE_ADDRESS:
        return (has_key and address_within(key, rule.networks, rule.nnetworks)) != rule.negate
    if has_key and table_takes(t, key) and (rule.scope == SCOPE_SOURCE or tracked & (1 << rule.counter)):
        pthread_mutex_lock(&t.lock)
        source_purge(t, now)
        i = source_find(t, key)
        if i < 0:
            found = rule.scope == SCOPE_SOURCE
        elif t.stored & (1 << rule.field):
            value = source_read(t, i, rule.field, now)
            found = True
        pthread_mutex_unlock(&t.lock)
    return (found and rule.low <= value <= rule.high) != rule.negate


cdef bint lane_rules_accept(Lane *lane, const uint8_t *address, uint8_t *tracked,
                            uint64_t now) noexcept nogil:
    """Run the lane's tcp-request connection rules for a new client: track what they track (the bits
    of ``tracked``), and say whether it is accepted.  A rejected client tracked nothing in the end:
    its connection is over (HAProxy counts it in conn_cnt and conn_rate, and conn_cur goes down)."""
    cdef uint32_t n
    cdef LaneRule *rule
    cdef uint8_t key[16]
    cdef bint has_key = client_key(address, key)
    tracked[0] = 0
    for n in range(lane.nrules):
        rule = &lane.rules[n]
        if rule.kind == RULE_TRACK:
            if (not tracked[0] & (1 << rule.counter) and has_key and table_takes(rule.table, key)
                    and source_track(rule.table, key, now)):
                tracked[0] |= 1 << rule.counter
        elif not rule_matches(rule, key, has_key, tracked[0], now):
            continue
        elif rule.kind == RULE_ACCEPT:
            return True
        else:
            lane_untrack(lane, address, tracked[0], now)
            tracked[0] = 0
            return False
    return True


cdef void lane_untrack(Lane *lane, const uint8_t *address, uint8_t tracked, uint64_t now) noexcept nogil:
    """A client the lane tracked is closed (or handed to Python): its entries are one connection lighter."""
    cdef uint32_t n
    cdef LaneRule *rule
    cdef uint8_t key[16]
    if not tracked or not client_key(address, key):
        return
    for n in range(lane.nrules):
        rule = &lane.rules[n]
        if rule.kind == RULE_TRACK and tracked & (1 << rule.counter):
            tracked &= ~(1 << rule.counter)
            source_untrack(rule.table, key, now)
