# Included by _pump.pyx: the queue of ended records towards Python (Shared.ended under ended_lock,
# announced on notify_fd when it stops being empty), read by Pump.drain_ended.

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
