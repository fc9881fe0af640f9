"""Fixtures shared by the suite: both implementations of every extension, and async tests on uvloop.

Like aio-libs' suites (multidict's ``MultidictImplementation``), each test that touches an extension
runs once per implementation through the ``implementation`` fixture (or ``pump_class``, ``ring_class``,
``implementation_env`` derived from it), so the compiled parts and their pure-Python twins cannot drift.
The compiled runs carry the ``c_extension`` marker; ``--implementation=python`` (or cython) runs one
half.  A compiled module that fails to import makes its tests fail, not skip, unless
FASTPROXY_NO_EXTENSIONS asks for Python only.

The sans-IO half of the suite lives in ``tests/unit`` and carries the ``unit`` marker (``pytest tests/unit``
or ``pytest -m unit``); ``tests/integration`` runs real sockets, processes and the engine.

A test written as ``async def`` runs on a fresh uvloop loop, bounded in time (``ASYNC_TIMEOUT``, or a
little less than pytest-timeout's ``@pytest.mark.timeout(N)`` where a test needs longer).
"""

from __future__ import annotations

import time

import asyncio
import dataclasses
import inspect
import os
import pathlib
import resource
from typing import Any, Optional

import pytest
import uvloop

from fastproxy import pump as pump_module
from fastproxy import ring as ring_module
from fastproxy._impl import NO_EXTENSIONS

ASYNC_TIMEOUT = 120.0  # seconds an async test may take, unless it says otherwise with @pytest.mark.timeout
ASYNC_MARGIN = 5.0  # seconds by which an async test's own bound precedes pytest-timeout's alarm
UNIT = pathlib.Path(__file__).parent / "unit"  # sans-IO tests: no socket, no engine started
c_extension = pytest.mark.c_extension


@dataclasses.dataclass(frozen=True)
class Implementation:
    """One implementation of the extensions, as the tests see it."""

    name: str  # "cython" or "python"

    @property
    def compiled(self) -> bool:
        return self.name == "cython"

    @property
    def pump_class(self) -> Any:
        if not self.compiled:
            return pump_module.PyPump
        if pump_module.CPump is None:
            pytest.fail("the compiled pump (fastproxy._pump) is not importable")
        return pump_module.CPump

    @property
    def ring_class(self) -> Any:
        if not self.compiled:
            return ring_module.PyHashRing
        if ring_module.CHashRing is None:
            pytest.fail("the compiled ring (fastproxy._ring) is not importable")
        return ring_module.CHashRing

    @property
    def env(self) -> dict[str, str]:
        """Environment for a subprocess running this implementation."""
        env = dict(os.environ)
        if self.compiled:
            env.pop("FASTPROXY_NO_EXTENSIONS", None)
        else:
            env["FASTPROXY_NO_EXTENSIONS"] = "1"
        env["FASTPROXY_EXPECT_IMPLEMENTATION"] = self.name
        return env


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--implementation", choices=("both", "cython", "python"), default="both",
                     help="which implementation of the extensions to test (default: both)")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "c_extension: the test runs the compiled extensions")
    config.addinivalue_line("markers", "unit: a sans-IO test of tests/unit (no socket, no engine started)")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if UNIT in item.path.parents:
            item.add_marker(pytest.mark.unit)
    items.sort(key=lambda item: UNIT not in item.path.parents)  # the fast half first (a stable sort)


def _implementations(config: pytest.Config) -> list[str]:
    chosen = config.getoption("--implementation")
    names = ["python"] if NO_EXTENSIONS else ["cython", "python"]
    return [name for name in names if chosen in ("both", name)]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "implementation" in metafunc.fixturenames:
        metafunc.parametrize("implementation", [
            pytest.param(Implementation(name), id=name, marks=(c_extension,) if name == "cython" else ())
            for name in _implementations(metafunc.config)], scope="module")


@pytest.fixture(scope="module")
def pump_class(implementation: Implementation) -> Any:
    return implementation.pump_class


@pytest.fixture(scope="module")
def ring_class(implementation: Implementation) -> Any:
    return implementation.ring_class


@pytest.fixture
def implementation_env(implementation: Implementation) -> dict[str, str]:
    return implementation.env  # a fresh copy of os.environ: a test may change it


def async_timeout(item: pytest.Item) -> float:
    """The bound of an async test: ``ASYNC_TIMEOUT``, or what its ``@pytest.mark.timeout(N)`` says.

    pytest-timeout's alarm for the same N counts from the test's setup and stops the process's main
    thread wherever it is; the asyncio bound cancels the test a little earlier, so that its ``finally``
    blocks and ``async with`` exits run (listeners closed, the engine stopped) before the next test."""
    marker = item.get_closest_marker("timeout")
    if marker is None:
        return ASYNC_TIMEOUT
    seconds = marker.args[0] if marker.args else marker.kwargs["timeout"]
    return max(float(seconds) - ASYNC_MARGIN, 1.0)


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> Optional[bool]:
    """Run ``async def`` tests on a fresh uvloop loop, bounded in time."""
    if not inspect.iscoroutinefunction(pyfuncitem.obj):
        return None
    names = pyfuncitem._fixtureinfo.argnames
    kwargs = {name: pyfuncitem.funcargs[name] for name in names}
    uvloop.run(asyncio.wait_for(pyfuncitem.obj(**kwargs), async_timeout(pyfuncitem)))
    return True


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


@pytest.fixture
def utc(monkeypatch):
    """The local time zone is UTC for the test (log lines stamp local time)."""
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()
