# C declarations of the Linux interfaces the data plane sits on, kept apart from the logic (uvloop's
# includes/ habit): declarations only, the bodies of fastproxy's own helpers are in fastproxy.h.
# Everything here is callable without the GIL.

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
        long tm_gmtoff
    tm *localtime_r(const time_t *timep, tm *result)
    tm *gmtime_r(const time_t *timep, tm *result)


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


cdef extern from "fastproxy.h" nogil:
    # The C helpers shared with the cffi bindings (includes/fastproxy.h); see their comments there.
    void fp_atomic_add(uint64_t *p, uint64_t v)
    void fp_atomic_sub(uint64_t *p, uint64_t v)
    uint64_t fp_atomic_load(uint64_t *p)
    int fp_atomic_add_int(int *p, int v)
    int fp_atomic_load_int(int *p)
    void fp_atomic_store_int(int *p, int v)
    int fp_atomic_acquire_int(int *p)
    uint32_t fp_atomic_load_u32(uint32_t *p)
    uint32_t fp_atomic_add_u32(uint32_t *p, uint32_t v)
    void fp_atomic_store_u32(uint32_t *p, uint32_t v)
    void fp_atomic_max_u32(uint32_t *p, uint32_t v)
    void fp_swrate_add(uint32_t *sum, uint32_t n, uint32_t v)
    int fp_tune_tcp(int fd, const int *tcp)
    int fp_set_linger0(int fd)
    int fp_accept_addr(int fd, unsigned char *addr, socklen_t *length)
    int fp_socket_nb(int family)
    int fp_connect_raw(int fd, const unsigned char *addr, unsigned int length)
    int fp_getsockname(int fd, unsigned char *addr, socklen_t *length)


cdef extern from "<errno.h>" nogil:
    enum:
        EINPROGRESS
        EMFILE
        ENFILE
        ENOBUFS
        ENOMEM
        ECONNABORTED
        EHOSTUNREACH
