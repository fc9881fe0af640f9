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
int fp_tune_socket(int fd, int nodelay, int keepalive, int idle, int interval, int count);
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

/* Every per-connection option in one call: one crossing from Python instead of five. */
static int fp_tune_socket(int fd, int nodelay, int keepalive, int idle, int interval, int count)
{
    int rc = 0;
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
