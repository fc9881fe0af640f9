"""Fixtures shared by the suite: both implementations of every extension, and a loop runner.

Like aio-libs' test suites, each test that touches the data plane runs once per implementation
(``pump_class``), so the compiled pump and its pure-Python twin cannot drift.  A compiled module that
fails to import makes its tests fail, not skip, unless FASTPROXY_NO_EXTENSIONS asks for Python only.
"""

from __future__ import annotations

import asyncio
import os
import resource

import pytest
import uvloop

from fastproxy import pump as pump_module
from fastproxy._impl import NO_EXTENSIONS

IMPLEMENTATIONS = ["python"] if NO_EXTENSIONS else ["cython", "python"]


@pytest.fixture(params=IMPLEMENTATIONS)
def pump_class(request):
    if request.param == "python":
        return pump_module.PyPump
    if pump_module.CPump is None:
        pytest.fail("the compiled pump (fastproxy._pump) is not importable")
    return pump_module.CPump


@pytest.fixture(params=IMPLEMENTATIONS)
def implementation_env(request):
    """Environment for a subprocess running one implementation."""
    env = dict(os.environ)
    if request.param == "python":
        env["FASTPROXY_NO_EXTENSIONS"] = "1"
    else:
        env.pop("FASTPROXY_NO_EXTENSIONS", None)
    env["FASTPROXY_EXPECT_IMPLEMENTATION"] = request.param
    return env


def run(coro, timeout: float = 120.0):
    """Run a coroutine on a fresh uvloop loop, bounded in time."""
    async def bounded():
        return await asyncio.wait_for(coro, timeout)
    return uvloop.run(bounded())


@pytest.fixture(scope="session", autouse=True)
def enough_descriptors():
    """Thousands of concurrent connections need more than the default descriptor limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 65536
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, want), max(hard, want)))
    except (ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    yield
