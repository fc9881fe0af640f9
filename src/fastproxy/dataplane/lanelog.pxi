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
        if sink.length and <uint32_t>m > sink.length - 1:
            m = sink.length - 1
        line[m] = 10  # as HAProxy, every message ends with a line feed, within the sink's length
        if sink.stream:
            write(sink.fd, line, m + 1)
        else:
            send(sink.fd, line, m + 1, MSG_DONTWAIT | MSG_NOSIGNAL)  # a full buffer drops it, as HAProxy


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


# --- log-format: the program logformat.lane_program compiles, run for each ended pair ----------------

# The opcodes (logformat.Alias below FRONTEND) and options (logformat.QUOTE, HEXA, ESCAPE).
cdef enum:
    LF_TEXT = 0
    LF_CLIENT_IP = 1
    LF_CLIENT_PORT = 2
    LF_FRONTEND_IP = 3
    LF_FRONTEND_PORT = 4
    LF_BACKEND_IP = 5
    LF_BACKEND_PORT = 6
    LF_SERVER_IP = 7
    LF_SERVER_PORT = 8
    LF_DATE = 9
    LF_DATE_GMT = 10
    LF_DATE_LOCAL = 11
    LF_TIMESTAMP = 12
    LF_MS = 13
    LF_SERVER = 14
    LF_BYTES = 15
    LF_BYTES_UP = 16
    LF_TC = 17
    LF_TT = 18
    LF_TD = 19
    LF_TU = 20
    LF_TERMSTATE = 21
    LF_TERMSTATE_CK = 22
    LF_ACTCONN = 23
    LF_FECONN = 24
    LF_BECONN = 25
    LF_SRVCONN = 26
    LF_QUOTE = 1
    LF_HEXA = 2
    LF_ESCAPE = 4


# What one line is made of (addresses: raw sockaddrs, family 0 where there is none).
cdef struct LogValues:
    uint8_t client[28]
    uint8_t frontend[28]
    uint8_t backend[28]
    uint8_t server[28]
    uint64_t accepted_ms    # wall clock, epoch milliseconds
    int64_t connect_ms      # -1: no server connection established
    int64_t total_ms
    uint64_t bytes_in
    uint64_t bytes_out
    const char *termination
    const char *server_name
    int64_t active
    int64_t frontend_current
    int64_t backend_current
    int64_t server_current


cdef struct LogOut:
    char *buf
    size_t len
    size_t size             # the line never grows past size - 1 bytes: the rest is cut, as HAProxy cuts


cdef inline void out_bytes(LogOut *o, const char *text, size_t n) noexcept nogil:
    if o.len + n >= o.size:
        n = o.size - 1 - o.len
    memcpy(o.buf + o.len, text, n)
    o.len += n


cdef inline void out_char(LogOut *o, char c) noexcept nogil:
    if o.len + 1 < o.size:
        o.buf[o.len] = c
        o.len += 1


cdef void out_text(LogOut *o, const char *text, uint8_t options) noexcept nogil:
    """HAProxy's lf_text: ``-`` for nothing (``""`` quoted), ``"`` ``\`` ``]`` escaped with +E."""
    cdef size_t i = 0
    if options & LF_QUOTE:
        out_char(o, 34)
    if text == NULL or text[0] == 0:
        if not options & LF_QUOTE:
            out_char(o, 45)
    elif options & LF_ESCAPE:
        while text[i] != 0:
            if text[i] == 34 or text[i] == 92 or text[i] == 93:
                out_char(o, 92)
            out_char(o, text[i])
            i += 1
    else:
        out_bytes(o, text, strlen(text))
    if options & LF_QUOTE:
        out_char(o, 34)


cdef void out_format(LogOut *o, const char *fmt, long long value) noexcept nogil:
    cdef char number[32]
    cdef int n = snprintf(number, sizeof(number), fmt, value)
    if n > 0:
        out_bytes(o, number, <size_t>n)


cdef inline void out_number(LogOut *o, uint8_t options, const char *hexa, const char *decimal,
                            long long value) noexcept nogil:
    if options & LF_HEXA:
        out_format(o, hexa, value)
    else:
        out_format(o, decimal, value)


cdef void out_ip(LogOut *o, const uint8_t *address, uint8_t options) noexcept nogil:
    cdef char host[64]
    cdef uint16_t family = address[0] | (address[1] << 8)
    cdef int i
    if family != AF_INET and family != AF_INET6:
        out_text(o, NULL, options)
    elif options & LF_HEXA:
        if family == AF_INET:
            for i in range(4):
                out_format(o, b"%02llX", address[4 + i])
        else:
            for i in range(16):
                out_format(o, b"%02llX", address[8 + i])
    else:
        format_address(address, host, sizeof(host))
        out_text(o, host, options)


cdef void out_port(LogOut *o, const uint8_t *address, uint8_t options) noexcept nogil:
    cdef uint16_t family = address[0] | (address[1] << 8)
    if family != AF_INET and family != AF_INET6:
        out_text(o, NULL, options)
    else:
        out_number(o, options, b"%04llX", b"%lld", (address[2] << 8) | address[3])


cdef void out_date(LogOut *o, const tm *when) noexcept nogil:
    cdef char text[40]
    cdef int n = snprintf(text, sizeof(text), b"%02d/%s/%04d:%02d:%02d:%02d", when.tm_mday,
                          MONTHS[when.tm_mon], when.tm_year + 1900, when.tm_hour, when.tm_min, when.tm_sec)
    if n > 0:
        out_bytes(o, text, <size_t>n)


cdef size_t format_log(char *buf, size_t size, const uint8_t *program, uint32_t length,
                       const LogValues *v) noexcept nogil:
    """Run a lane's log-format program over one pair's values into ``buf``; returns the length (the
    text is not NUL-terminated).  logformat.render is the Python twin: the tests hold the two to the
    same bytes through ``_pump.format_log``."""
    cdef LogOut o
    cdef uint32_t at = 0, n
    cdef uint8_t op, options
    cdef time_t seconds = <time_t>(v.accepted_ms // 1000)
    cdef tm when
    cdef long offset
    cdef int64_t data
    o.buf, o.len, o.size = buf, 0, size
    if size == 0:
        return 0
    while at + 4 <= length:
        op, options = program[at], program[at + 1]
        n = program[at + 2] | (program[at + 3] << 8)
        at += 4
        if op == LF_TEXT:
            if at + n > length:
                break
            out_bytes(&o, <const char *>&program[at], n)
            at += n
        elif op == LF_CLIENT_IP:
            out_ip(&o, v.client, options)
        elif op == LF_CLIENT_PORT:
            out_port(&o, v.client, options)
        elif op == LF_FRONTEND_IP:
            out_ip(&o, v.frontend, options)
        elif op == LF_FRONTEND_PORT:
            out_port(&o, v.frontend, options)
        elif op == LF_BACKEND_IP:
            out_ip(&o, v.backend, options)
        elif op == LF_BACKEND_PORT:
            out_port(&o, v.backend, options)
        elif op == LF_SERVER_IP:
            out_ip(&o, v.server, options)
        elif op == LF_SERVER_PORT:
            out_port(&o, v.server, options)
        elif op == LF_DATE:
            localtime_r(&seconds, &when)
            out_date(&o, &when)
            out_format(&o, b".%03lld", v.accepted_ms % 1000)
        elif op == LF_DATE_GMT:
            gmtime_r(&seconds, &when)
            out_date(&o, &when)
            out_bytes(&o, b" +0000", 6)
        elif op == LF_DATE_LOCAL:
            localtime_r(&seconds, &when)
            out_date(&o, &when)
            offset = when.tm_gmtoff // 60
            out_char(&o, 32)
            out_char(&o, 45 if offset < 0 else 43)
            if offset < 0:
                offset = -offset
            out_format(&o, b"%02lld", offset // 60)
            out_format(&o, b"%02lld", offset % 60)
        elif op == LF_TIMESTAMP:
            out_number(&o, options, b"%04llX", b"%lld", v.accepted_ms // 1000)
        elif op == LF_MS:
            out_number(&o, options, b"%02llX", b"%03lld", v.accepted_ms % 1000)
        elif op == LF_SERVER:
            if v.server_name != NULL:
                out_text(&o, v.server_name, options)
            else:
                out_text(&o, b"<NOSRV>", options)
        elif op == LF_BYTES:
            out_format(&o, b"%llu", v.bytes_out)
        elif op == LF_BYTES_UP:
            out_format(&o, b"%llu", v.bytes_in)
        elif op == LF_TC:
            out_format(&o, b"%lld", v.connect_ms)
        elif op == LF_TT or op == LF_TU:
            out_format(&o, b"%lld", v.total_ms)
        elif op == LF_TD:
            data = v.total_ms - v.connect_ms if v.connect_ms >= 0 else -1  # no queue, no handshake on a lane
            out_format(&o, b"%lld", data)
        elif op == LF_TERMSTATE or op == LF_TERMSTATE_CK:
            out_bytes(&o, v.termination, 2)
            if op == LF_TERMSTATE_CK:
                out_bytes(&o, b"--", 2)
        elif op == LF_ACTCONN:
            out_format(&o, b"%lld", v.active)
        elif op == LF_FECONN:
            out_format(&o, b"%lld", v.frontend_current)
        elif op == LF_BECONN:
            out_format(&o, b"%lld", v.backend_current)
        elif op == LF_SRVCONN:
            out_format(&o, b"%lld", v.server_current)
    return o.len


cdef void lane_log(Worker *w, Lane *lane, Pair *p, int reason) noexcept nogil:
    """The log line of a lane's pair (its log-format, tcplog's by default), written to the lane's log
    sinks from here, before the pair's counts drop: no Python per connection."""
    cdef Shared *sh = w.shared
    cdef char message[1024]
    cdef timespec now
    cdef LogValues v
    cdef socklen_t length
    cdef uint32_t i
    cdef size_t n
    if lane.log_dontlognull and p.c2s.bytes == 0:
        return
    memset(&v, 0, sizeof(LogValues))
    memcpy(v.client, p.peer, 28)
    length = 28
    if lane.log_needs & LOG_NEEDS_FRONTEND and fp_getsockname(p.client.fd, v.frontend, &length) != 0:
        v.frontend[0] = v.frontend[1] = 0
    length = 28
    if lane.log_needs & LOG_NEEDS_BACKEND and fp_getsockname(p.server.fd, v.backend, &length) != 0:
        v.backend[0] = v.backend[1] = 0
    for i in range(lane.nservers):
        if lane.servers[i].block == p.server_block:
            v.server_name = lane.servers[i].log_name
            memcpy(v.server, lane.servers[i].addr, lane.servers[i].addrlen)
        v.backend_current += fp_atomic_load(&sh.counters[lane.servers[i].block * CNT_FIELDS + CNT_CONN_CUR])
    v.total_ms = w.now_ms - p.accepted_ms
    v.connect_ms = p.connect_ms
    clock_gettime(CLOCK_REALTIME, &now)
    v.accepted_ms = <uint64_t>now.tv_sec * 1000 + <uint64_t>now.tv_nsec // 1000000 - <uint64_t>v.total_ms
    v.bytes_in, v.bytes_out = p.c2s.bytes, p.s2c.bytes
    v.termination = TERMINATIONS[reason]
    v.active = fp_atomic_load_int(&sh.open_total)
    v.frontend_current = fp_atomic_load(&sh.counters[p.frontend_block * CNT_FIELDS + CNT_CONN_CUR])
    v.server_current = fp_atomic_load(&sh.counters[p.server_block * CNT_FIELDS + CNT_CONN_CUR])
    # As HAProxy's line: the session still counts for the process and the frontend, its server
    # connection no longer does for the server and the backend.
    if v.server_current > 0:
        v.server_current -= 1
    if v.backend_current > 0:
        v.backend_current -= 1
    n = format_log(message, sizeof(message) - 1, lane.log_program, lane.log_program_len, &v)
    message[n] = 0
    send_log_line(lane, message)
