"""Build of the compiled parts: the Cython extensions and the cffi bindings of Linux syscalls.

Each extension has a pure-Python twin (see fastproxy/_impl.py), so a build where compilation is not
possible still yields a working package: set FASTPROXY_NO_EXTENSIONS=1 at build time to skip them.
"""

import os

from setuptools import Extension, setup

NO_EXTENSIONS = os.environ.get("FASTPROXY_NO_EXTENSIONS", "") not in ("", "0")
CFLAGS = ["-O3", "-fno-strict-aliasing"]

ext_modules = []
cffi_modules = []
if not NO_EXTENSIONS:
    from Cython.Build import cythonize

    sources = {
        "fastproxy._pump": "src/fastproxy/_pump.pyx",
        "fastproxy._ring": "src/fastproxy/_ring.pyx",
    }
    extensions = [
        # includes/fastproxy.h: the C helpers the pump shares with the cffi bindings.
        Extension(name, [path], extra_compile_args=CFLAGS, include_dirs=["src/fastproxy/includes"])
        for name, path in sources.items()
        if os.path.exists(path)
    ]
    ext_modules = cythonize(
        extensions,
        compiler_directives={"language_level": "3", "boundscheck": False, "wraparound": False},
        include_path=["src"],
    )
    cffi_modules = ["src/fastproxy/_linux_build.py:ffibuilder"]

setup(ext_modules=ext_modules, cffi_modules=cffi_modules)
