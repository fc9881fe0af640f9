"""cffi build script for fastproxy._linux_cffi: the Linux calls the Python side needs.

Out-of-line API mode, compiled by setup.py.  The same declarations are used in ABI mode by
fastproxy/_linux.py when the compiled module is absent, so the C helpers below (which exist only in
the compiled module) each have a Python equivalent there.
"""

import cffi

CDEF = """
ssize_t splice(int fd_in, void *off_in, int fd_out, void *off_out, size_t len, unsigned int flags);
int pipe2(int pipefd[2], int flags);
int fcntl(int fd, int cmd, ...);
int setsockopt(int sockfd, int level, int optname, const void *optval, unsigned int optlen);
int close(int fd);
"""

HELPERS_CDEF = """
#define FP_SOCKADDR_SIZE 28
int fp_accept_batch(int listen_fd, int max, int *fds, unsigned char *addrs, int nodelay, int keepalive,
                    int idle, int interval, int count);
int fp_dial(const unsigned char *addr, int addr_len, int nodelay, int keepalive, int idle, int interval,
            int count, int *in_progress);
int fp_tune_socket(int fd, int nonblocking, int nodelay, int keepalive, int idle, int interval, int count);
int fp_set_linger0(int fd);
int fp_pipe_max_size(void);
"""

HELPERS_SOURCE = r"""
#define _GNU_SOURCE
#include <fcntl.h>
#include <unistd.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <errno.h>

/* Every per-connection option in one call: one crossing from Python instead of six. */
static int fp_tune_socket(int fd, int nonblocking, int nodelay, int keepalive, int idle, int interval,
                          int count)
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

#define FP_SOCKADDR_SIZE 28  /* a sockaddr_in6; a sockaddr_in fits too */

static int fp_tune_options(int fd, int nodelay, int keepalive, int idle, int interval, int count)
{
    return fp_tune_socket(fd, 0, nodelay, keepalive, idle, interval, count);
}

/* Up to `max` connections of a listener in one crossing from Python: non-blocking, close-on-exec and
   tuned, their peer addresses left raw (FP_SOCKADDR_SIZE bytes each) for Python to decode only if it
   needs them.  Returns how many, or -errno when the first accept fails for another reason than
   EAGAIN. */
static int fp_accept_batch(int listen_fd, int max, int *fds, unsigned char *addrs, int nodelay,
                           int keepalive, int idle, int interval, int count)
{
    int n = 0;
    while (n < max) {
        socklen_t len = FP_SOCKADDR_SIZE;
        struct sockaddr *addr = (struct sockaddr *)(addrs + n * FP_SOCKADDR_SIZE);
        int fd = accept4(listen_fd, addr, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == ECONNABORTED)
                return n;
            return n ? n : -errno;
        }
        if (fp_tune_options(fd, nodelay, keepalive, idle, interval, count) != 0) {
            close(fd);  /* already reset by the client: its loss only */
            continue;
        }
        fds[n++] = fd;
    }
    return n;
}

/* socket + options + non-blocking connect in one crossing.  Returns the descriptor (with
   *in_progress set when the connect is still under way) or -errno. */
static int fp_dial(const unsigned char *addr, int addr_len, int nodelay, int keepalive, int idle,
                   int interval, int count, int *in_progress)
{
    const struct sockaddr *sa = (const struct sockaddr *)addr;
    int fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int err;
    if (fd < 0)
        return -errno;
    if (fp_tune_options(fd, nodelay, keepalive, idle, interval, count) != 0) {
        err = errno;
        close(fd);
        return -err;
    }
    *in_progress = 0;
    if (connect(fd, sa, (socklen_t)addr_len) < 0) {
        if (errno != EINPROGRESS) {
            err = errno;
            close(fd);
            return -err;
        }
        *in_progress = 1;
    }
    return fd;
}

/* A close after this sends RST instead of FIN: how a reset is passed on. */
static int fp_set_linger0(int fd)
{
    struct linger lg = {1, 0};
    return setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
}

static int fp_pipe_max_size(void)
{
    int size = 0;
    FILE *f = fopen("/proc/sys/fs/pipe-max-size", "r");
    if (f == NULL)
        return -1;
    if (fscanf(f, "%d", &size) != 1)
        size = -1;
    fclose(f);
    return size;
}
"""

ffibuilder = cffi.FFI()
ffibuilder.cdef(CDEF + HELPERS_CDEF)
ffibuilder.set_source(
    "fastproxy._linux_cffi",
    "#define _GNU_SOURCE\n#include <fcntl.h>\n" + HELPERS_SOURCE,
)

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
