# Included by _pump.pyx: the queue of ended records towards Python (Shared.ended under ended_lock,
# announced on notify_fd when it stops being empty), read by Pump.drain_ended.

cdef void push_record(Shared *sh, int kind, uint64_t tag, int reason, int error, uint64_t bytes_in,
                      uint64_t bytes_out, int32_t frontend_block, int32_t server_block,
                      int32_t client_fd, Pair *logged, uint64_t now_ms) noexcept nogil:
    """Queue one record of ``kind`` (RecordKind); ``logged``: the lane pair whose log fields it carries."""
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
    record.kind = kind
    record.tag = tag
    record.bytes_in = bytes_in
    record.bytes_out = bytes_out
    record.reason = reason
    record.error = error
    record.frontend_block = frontend_block
    record.server_block = server_block
    record.client_fd = client_fd
    if logged != NULL:
        memcpy(record.peer, logged.peer, 28)
        record.duration_ms = now_ms - logged.accepted_ms
        record.connect_ms = logged.connect_ms
    sh.ended_len += 1
    pthread_mutex_unlock(&sh.ended_lock)
    if was_empty:
        write(sh.notify_fd, &one, sizeof(one))


cdef inline void push_pair_record(Shared *sh, Pair *p, int kind, int reason, int error) noexcept nogil:
    """The record of a pair Python handed over (the client descriptor goes with a failed connect)."""
    push_record(sh, kind, p.tag, reason, error, p.c2s.bytes, p.s2c.bytes, p.frontend_block, p.server_block,
                p.client.fd if kind == REC_CONNECT_FAILED else -1, NULL, 0)
