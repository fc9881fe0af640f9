"""cffi build script for fastproxy._linux_cffi: the Linux calls the Python side needs.

Out-of-line API mode, compiled by setup.py, over the C helpers of includes/fastproxy.h (the same
source the data plane compiles).  When the compiled module is absent, fastproxy/_linux.py loads
``CDEF`` in ABI mode from the C library and does what the helpers do with the standard library.
"""

import os

import cffi  # type: ignore[import-untyped]

INCLUDES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "includes")

# What the ABI-mode fallback calls straight from the C library.
CDEF = """
int setsockopt(int sockfd, int level, int optname, const void *optval, unsigned int optlen);
int prctl(int option, ...);
"""

# The helpers of fastproxy.h that Python calls (compiled module only).
HELPERS_CDEF = """
#define FP_SOCKADDR_SIZE 28
int fp_accept_batch(int listen_fd, int max, int *fds, unsigned char *addrs, int nodelay, int keepalive,
                    int idle, int interval, int count);
int fp_dial(const unsigned char *addr, int addr_len, int nodelay, int keepalive, int idle, int interval,
            int count, int *in_progress);
int fp_tune_socket(int fd, int nonblocking, int nodelay, int keepalive, int idle, int interval, int count);
int fp_set_linger0(int fd);
"""

ffibuilder = cffi.FFI()
ffibuilder.cdef(CDEF + HELPERS_CDEF)
ffibuilder.set_source("fastproxy._linux_cffi", '#include <sys/prctl.h>\n#include "fastproxy.h"',
                      include_dirs=[INCLUDES])

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
