# Included by _pump.pyx: the log lines a lane writes itself (HAProxy's tcplog and "Connect from" lines,
# in rfc3164, raw or short framing, to connected UDP sockets or stdout/stderr), so that a logging
# frontend needs no Python per connection.  The same text as tcplog.py writes for Python's sessions
# (and logs.py frames): the tests hold the C formatters to tcplog.py byte for byte through
# _pump.tcplog_line / connect_line / termination_states.

cdef const char *MONTHS[12]
MONTHS[:] = [b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov", b"Dec"]
cdef const char *TERMINATIONS[END_REASONS]  # HAProxy's termination state by end reason, as tcplog.TERMINATION
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
    if format_connect(message, sizeof(message), host, port, local_host, local_port, lane.log_frontend) >= 0:
        send_log_line(lane, message)


cdef int format_connect(char *out, size_t size, const char *host, uint32_t port, const char *local_host,
                        uint32_t local_port, const char *frontend) noexcept nogil:
    """HAProxy's ``Connect from`` line, as tcplog.connect_line writes it."""
    return snprintf(out, size, b"Connect from %s:%u to %s:%u (%s/TCP)", host, port, local_host, local_port,
                    frontend)


cdef int format_tcplog(char *out, size_t size, const char *host, uint32_t port, uint64_t wall_ms,
                       const char *frontend, const char *server, uint32_t connect_ms, uint64_t elapsed_ms,
                       uint64_t bytes_out, const char *termination, int active, uint64_t frontend_current,
                       uint64_t backend_current, uint64_t server_current) noexcept nogil:
    """HAProxy's tcplog line into ``out``, as tcplog.tcplog_line writes it (``wall_ms``: the accept
    time, epoch milliseconds; ``server``: "backend/server").  The tests hold the two to the same bytes
    through ``_pump.tcplog_line``."""
    cdef time_t seconds = <time_t>(wall_ms // 1000)
    cdef tm accepted
    localtime_r(&seconds, &accepted)
    return snprintf(out, size,
                    b"%s:%u [%02d/%s/%04d:%02d:%02d:%02d.%03u] %s %s 0/%u/%llu %llu %s %d/%llu/%llu/%llu/0 0/0",
                    host, port, accepted.tm_mday, MONTHS[accepted.tm_mon], accepted.tm_year + 1900,
                    accepted.tm_hour, accepted.tm_min, accepted.tm_sec, <uint32_t>(wall_ms % 1000),
                    frontend, server, connect_ms, <unsigned long long>elapsed_ms,
                    <unsigned long long>bytes_out, termination, active,
                    <unsigned long long>frontend_current, <unsigned long long>backend_current,
                    <unsigned long long>server_current)


cdef void lane_log(Worker *w, Lane *lane, Pair *p, int reason) noexcept nogil:
    """HAProxy's tcplog line of a lane's pair, written to the lane's log sinks from here: no Python
    per connection."""
    cdef Shared *sh = w.shared
    cdef char message[768]
    cdef char host[64]
    cdef const char *server_name = b"-"
    cdef timespec now
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
    if format_tcplog(message, sizeof(message), host, port, wall_ms, lane.log_frontend, server_name,
                     p.connect_ms, elapsed_ms, p.s2c.bytes, TERMINATIONS[reason],
                     fp_atomic_load_int(&sh.open_total),
                     fp_atomic_load(&sh.counters[p.frontend_block * CNT_FIELDS + CNT_CONN_CUR]),
                     backend_current,
                     fp_atomic_load(&sh.counters[p.server_block * CNT_FIELDS + CNT_CONN_CUR])) >= 0:
        send_log_line(lane, message)
