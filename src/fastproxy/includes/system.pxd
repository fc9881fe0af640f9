# C declarations of the Linux interfaces the data plane sits on, kept apart from the logic (uvloop's
# includes/ habit).  Everything here is callable without the GIL.

from libc.stdint cimport uint32_t, uint64_t


cdef extern from "<sys/epoll.h>" nogil:
    ctypedef union epoll_data_t:
        void *ptr
        int fd
        uint32_t u32
        uint64_t u64

    struct epoll_event:
        uint32_t events
        epoll_data_t data

    int epoll_create1(int flags)
    int epoll_ctl(int epfd, int op, int fd, epoll_event *event)
    int epoll_wait(int epfd, epoll_event *events, int maxevents, int timeout)

    enum:
        EPOLLIN
        EPOLLOUT
        EPOLLRDHUP
        EPOLLERR
        EPOLLHUP
        EPOLLET
        EPOLLEXCLUSIVE
        EPOLL_CTL_ADD
        EPOLL_CTL_DEL
        EPOLL_CTL_MOD
        EPOLL_CLOEXEC


cdef extern from "<sys/eventfd.h>" nogil:
    int eventfd(unsigned int initval, int flags)
    enum:
        EFD_NONBLOCK
        EFD_CLOEXEC


cdef extern from "<fcntl.h>" nogil:
    ssize_t splice(int fd_in, void *off_in, int fd_out, void *off_out, size_t length, unsigned int flags)
    int fcntl(int fd, int cmd, ...)
    enum:
        SPLICE_F_MOVE
        SPLICE_F_NONBLOCK
        F_SETPIPE_SZ
        F_GETPIPE_SZ
        O_NONBLOCK
        O_CLOEXEC


cdef extern from "<unistd.h>" nogil:
    int pipe2(int pipefd[2], int flags)
    int close(int fd)
    ssize_t read(int fd, void *buf, size_t count)
    ssize_t write(int fd, const void *buf, size_t count)


cdef extern from "<sys/socket.h>" nogil:
    ctypedef unsigned int socklen_t
    int getsockopt(int sockfd, int level, int optname, void *optval, socklen_t *optlen)
    ssize_t recv(int sockfd, void *buf, size_t length, int flags)
    ssize_t send(int sockfd, const void *buf, size_t length, int flags)
    int shutdown(int sockfd, int how)
    int setsockopt(int sockfd, int level, int optname, const void *optval, unsigned int optlen)
    struct linger:
        int l_onoff
        int l_linger
    enum:
        AF_INET
        AF_INET6
        SHUT_WR
        SHUT_RDWR
        SOL_SOCKET
        SO_LINGER
        SO_ERROR
        MSG_NOSIGNAL
        MSG_DONTWAIT


cdef extern from "<stdlib.h>" nogil:
    int posix_memalign(void **memptr, size_t alignment, size_t size)


cdef extern from "<time.h>" nogil:
    ctypedef long time_t
    struct timespec:
        time_t tv_sec
        long tv_nsec
    int clock_gettime(int clk_id, timespec *tp)
    enum:
        CLOCK_MONOTONIC
        CLOCK_MONOTONIC_COARSE
        CLOCK_REALTIME
    struct tm:
        int tm_sec
        int tm_min
        int tm_hour
        int tm_mday
        int tm_mon
        int tm_year
    tm *localtime_r(const time_t *timep, tm *result)


cdef extern from *:
    """
    #include <sys/socket.h>
    static inline int fp_getsockname(int fd, unsigned char *addr, socklen_t *len) {
        return getsockname(fd, (struct sockaddr *)addr, len);
    }
    """
    int fp_getsockname(int fd, unsigned char *addr, socklen_t *length) nogil


cdef extern from "<arpa/inet.h>" nogil:
    const char *inet_ntop(int af, const void *src, char *dst, socklen_t size)


cdef extern from "<stdio.h>" nogil:
    int snprintf(char *buf, size_t size, const char *fmt, ...)


cdef extern from "<pthread.h>" nogil:
    ctypedef struct pthread_mutex_t:
        pass
    int pthread_mutex_init(pthread_mutex_t *mutex, void *attr)
    int pthread_mutex_destroy(pthread_mutex_t *mutex)
    int pthread_mutex_lock(pthread_mutex_t *mutex)
    int pthread_mutex_unlock(pthread_mutex_t *mutex)


cdef extern from *:
    """
    /* Counters are bumped by pump threads and read by Python at any time: relaxed atomics are enough,
       nobody orders other memory on them. */
    static inline void fp_atomic_add(uint64_t *p, uint64_t v) { __atomic_fetch_add(p, v, __ATOMIC_RELAXED); }
    static inline void fp_atomic_sub(uint64_t *p, uint64_t v) { __atomic_fetch_sub(p, v, __ATOMIC_RELAXED); }
    static inline uint64_t fp_atomic_load(uint64_t *p) { return __atomic_load_n(p, __ATOMIC_RELAXED); }
    static inline int fp_atomic_add_int(int *p, int v) { return __atomic_add_fetch(p, v, __ATOMIC_RELAXED); }
    static inline int fp_atomic_load_int(int *p) { return __atomic_load_n(p, __ATOMIC_RELAXED); }
    """
    void fp_atomic_add(uint64_t *p, uint64_t v) nogil
    void fp_atomic_sub(uint64_t *p, uint64_t v) nogil
    uint64_t fp_atomic_load(uint64_t *p) nogil
    int fp_atomic_add_int(int *p, int v) nogil
    int fp_atomic_load_int(int *p) nogil


cdef extern from *:
    """
    #include <sys/socket.h>
    #include <netinet/in.h>
    #include <netinet/tcp.h>
    /* The options every proxied socket gets, as fastproxy._linux tunes them for the Python path:
       TCP_NODELAY, and keepalive with its idle/interval/count when set (tcp[0..3]). */
    static inline int fp_tune_tcp(int fd, const int *tcp) {
        int one = 1, rc = 0;
        rc |= setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        rc |= setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &tcp[0], sizeof(tcp[0]));
        if (tcp[0] > 0) {
            if (tcp[1] > 0) rc |= setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &tcp[1], sizeof(tcp[1]));
            if (tcp[2] > 0) rc |= setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &tcp[2], sizeof(tcp[2]));
            if (tcp[3] > 0) rc |= setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &tcp[3], sizeof(tcp[3]));
        }
        return rc;
    }
    static inline int fp_accept_nb(int fd) { return accept4(fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC); }
    static inline int fp_accept_addr(int fd, unsigned char *addr, socklen_t *len) {
        return accept4(fd, (struct sockaddr *)addr, len, SOCK_NONBLOCK | SOCK_CLOEXEC);
    }
    static inline int fp_socket_nb(int family) { return socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0); }
    static inline int fp_connect_raw(int fd, const unsigned char *addr, unsigned int len) {
        return connect(fd, (const struct sockaddr *)addr, (socklen_t)len);
    }
    static inline int fp_atomic_cas_int(int *p, int expected, int desired) {
        return __atomic_compare_exchange_n(p, &expected, desired, 0, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE);
    }
    static inline void fp_atomic_store_int(int *p, int v) { __atomic_store_n(p, v, __ATOMIC_RELEASE); }
    static inline int fp_atomic_acquire_int(int *p) { return __atomic_load_n(p, __ATOMIC_ACQUIRE); }
    """
    int fp_tune_tcp(int fd, const int *tcp) nogil
    int fp_accept_nb(int fd) nogil
    int fp_accept_addr(int fd, unsigned char *addr, socklen_t *length) nogil
    int fp_socket_nb(int family) nogil
    int fp_connect_raw(int fd, const unsigned char *addr, unsigned int length) nogil
    void fp_atomic_store_int(int *p, int v) nogil
    int fp_atomic_acquire_int(int *p) nogil


cdef extern from "<errno.h>" nogil:
    enum:
        EINPROGRESS
        EMFILE
        ENFILE
        ENOBUFS
        ENOMEM
        ECONNABORTED
        EHOSTUNREACH
