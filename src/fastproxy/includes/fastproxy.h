/* The C helpers of fastproxy's sockets, in one place for both users: the data plane (_pump.pyx, through
 * `cdef extern from "fastproxy.h"` in includes/system.pxd, as uvloop's includes/compat.h) and the cffi
 * bindings Python calls (_linux_build.py compiles fastproxy._linux_cffi with `#include "fastproxy.h"`).
 * Everything is static inline: each extension gets its own copy, no symbol is exported, and the compiler
 * folds the helpers into their callers.  Nothing here takes the GIL or touches Python.
 */
#ifndef FASTPROXY_H
#define FASTPROXY_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE  /* accept4 */
#endif
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <unistd.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <netinet/tcp.h>

#define FP_SOCKADDR_SIZE 28  /* a sockaddr_in6; a sockaddr_in fits too */

/* --- atomics ---------------------------------------------------------------------------------------- */

/* Counters are bumped by pump threads and read by Python at any time: relaxed atomics are enough,
   nobody orders other memory on them. */
static inline void fp_atomic_add(uint64_t *p, uint64_t v) { __atomic_fetch_add(p, v, __ATOMIC_RELAXED); }
static inline void fp_atomic_sub(uint64_t *p, uint64_t v) { __atomic_fetch_sub(p, v, __ATOMIC_RELAXED); }
static inline uint64_t fp_atomic_load(uint64_t *p) { return __atomic_load_n(p, __ATOMIC_RELAXED); }
static inline int fp_atomic_add_int(int *p, int v) { return __atomic_add_fetch(p, v, __ATOMIC_RELAXED); }
static inline int fp_atomic_load_int(int *p) { return __atomic_load_n(p, __ATOMIC_RELAXED); }
/* A lane's state is handed between Python and a worker: release/acquire, so that what the worker did
   before saying LANE_OFF (letting go of the listener) is seen by the Python that reads it. */
static inline void fp_atomic_store_int(int *p, int v) { __atomic_store_n(p, v, __ATOMIC_RELEASE); }
static inline int fp_atomic_acquire_int(int *p) { return __atomic_load_n(p, __ATOMIC_ACQUIRE); }

/* Session times (HAProxy's qtime/ctime/ttime) as HAProxy keeps them: 32-bit sliding sums and maxima
   that several pump threads fold into at once, so each update is a compare-and-swap loop. */
static inline uint32_t fp_atomic_load_u32(uint32_t *p) { return __atomic_load_n(p, __ATOMIC_RELAXED); }
static inline uint32_t fp_atomic_add_u32(uint32_t *p, uint32_t v)
{
    return __atomic_add_fetch(p, v, __ATOMIC_RELAXED);
}
static inline void fp_atomic_store_u32(uint32_t *p, uint32_t v) { __atomic_store_n(p, v, __ATOMIC_RELAXED); }
static inline void fp_atomic_max_u32(uint32_t *p, uint32_t v)
{
    uint32_t old = __atomic_load_n(p, __ATOMIC_RELAXED);
    while (old < v && !__atomic_compare_exchange_n(p, &old, v, 1, __ATOMIC_RELAXED, __ATOMIC_RELAXED))
        ;
}
/* freq_ctr.h's swrate_add_dynamic(): the sum over a window of n samples loses its average share and
   gains v; with n == 0 (fewer samples than the window so far) it only gains v. */
static inline void fp_swrate_add(uint32_t *sum, uint32_t n, uint32_t v)
{
    uint32_t old = __atomic_load_n(sum, __ATOMIC_RELAXED), new_sum;
    do {
        new_sum = old - (n ? (old + n - 1) / n : 0) + v;
    } while (!__atomic_compare_exchange_n(sum, &old, new_sum, 1, __ATOMIC_RELAXED, __ATOMIC_RELAXED));
}

/* --- socket options --------------------------------------------------------------------------------- */

/* Every per-connection option in one call (one crossing from Python instead of six).  A negative
   nodelay or keepalive leaves that option as it is (inherited from the listener); idle, interval and
   count apply only with keepalive on, and only when positive. */
static inline int fp_tune_socket(int fd, int nonblocking, int nodelay, int keepalive, int idle,
                                 int interval, int count)
{
    int rc = 0;
    if (nonblocking > 0) {
        int flags = fcntl(fd, F_GETFL);
        if (flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0)
            return -1;
    }
    if (nodelay >= 0)
        rc |= setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &nodelay, sizeof(nodelay));
    if (keepalive >= 0)
        rc |= setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &keepalive, sizeof(keepalive));
    if (keepalive > 0) {
        if (idle > 0)
            rc |= setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof(idle));
        if (interval > 0)
            rc |= setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &interval, sizeof(interval));
        if (count > 0)
            rc |= setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &count, sizeof(count));
    }
    return rc;
}

/* The options the data plane gives each socket of a lane: TCP_NODELAY, and keepalive with its
   idle/interval/count when set (tcp[0..3], as a Lane stores them). */
static inline int fp_tune_tcp(int fd, const int *tcp)
{
    return fp_tune_socket(fd, 0, 1, tcp[0], tcp[1], tcp[2], tcp[3]);
}

/* A close after this sends RST instead of FIN: how a reset is passed on. */
static inline int fp_set_linger0(int fd)
{
    struct linger lg = {1, 0};
    return setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
}

/* --- accept, socket, connect ------------------------------------------------------------------------ */

static inline int fp_accept_addr(int fd, unsigned char *addr, socklen_t *len)
{
    return accept4(fd, (struct sockaddr *)addr, len, SOCK_NONBLOCK | SOCK_CLOEXEC);
}

static inline int fp_socket_nb(int family)
{
    return socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
}

static inline int fp_connect_raw(int fd, const unsigned char *addr, unsigned int len)
{
    return connect(fd, (const struct sockaddr *)addr, (socklen_t)len);
}

static inline int fp_getsockname(int fd, unsigned char *addr, socklen_t *len)
{
    return getsockname(fd, (struct sockaddr *)addr, len);
}

/* Up to `max` connections of a listener in one crossing from Python: non-blocking, close-on-exec and
   tuned, their peer addresses left raw (FP_SOCKADDR_SIZE bytes each) for Python to decode only if it
   needs them.  Returns how many, or -errno when the first accept fails for another reason than
   EAGAIN. */
static inline int fp_accept_batch(int listen_fd, int max, int *fds, unsigned char *addrs, int nodelay,
                                  int keepalive, int idle, int interval, int count)
{
    int n = 0;
    while (n < max) {
        socklen_t len = FP_SOCKADDR_SIZE;
        int fd = fp_accept_addr(listen_fd, addrs + n * FP_SOCKADDR_SIZE, &len);
        if (fd < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == ECONNABORTED)
                return n;
            return n ? n : -errno;
        }
        if (fp_tune_socket(fd, 0, nodelay, keepalive, idle, interval, count) != 0) {
            close(fd);  /* already reset by the client: its loss only */
            continue;
        }
        fds[n++] = fd;
    }
    return n;
}

/* socket + options + non-blocking connect in one crossing.  Returns the descriptor (with
   *in_progress set when the connect is still under way) or -errno. */
static inline int fp_dial(const unsigned char *addr, int addr_len, int nodelay, int keepalive, int idle,
                          int interval, int count, int *in_progress)
{
    int fd = fp_socket_nb(((const struct sockaddr *)addr)->sa_family);
    int err;
    if (fd < 0)
        return -errno;
    if (fp_tune_socket(fd, 0, nodelay, keepalive, idle, interval, count) != 0) {
        err = errno;
        close(fd);
        return -err;
    }
    *in_progress = 0;
    if (fp_connect_raw(fd, addr, (unsigned int)addr_len) < 0) {
        if (errno != EINPROGRESS) {
            err = errno;
            close(fd);
            return -err;
        }
        *in_progress = 1;
    }
    return fd;
}

#endif /* FASTPROXY_H */
