"""What a file that sets no ``nbthread`` and no ``tune.*`` gets (issue 16): a pump thread per CPU of the
affinity mask, as HAProxy 2.6 runs one thread per CPU, and 1 MiB splice pipes; a file's own lines win."""

from __future__ import annotations

import os

from fastproxy.config import model
from fastproxy.pump import DEFAULT_PIPESIZE, default_pipesize, default_threads

from ..support import config, running, start_backend, echo


def test_default_threads_is_the_size_of_the_affinity_mask():
    assert default_threads() == len(os.sched_getaffinity(0))


def test_default_pipesize_is_one_mib_capped_by_the_system_limit():
    with open("/proc/sys/fs/pipe-max-size") as f:
        limit = int(f.read())
    assert DEFAULT_PIPESIZE == 1 << 20
    assert default_pipesize() == min(1 << 20, limit)


def test_an_unset_nbthread_stays_unset_in_the_model():
    assert model.Global().nbthread is None


async def test_an_unset_nbthread_runs_one_pump_thread_per_cpu(pump_class):
    backend, port = await start_backend(echo)
    async with running(config([port]), pump_class) as engine:
        compiled = pump_class.__name__ == "Pump"
        assert engine.pump_threads == (len(os.sched_getaffinity(0)) if compiled else 1)
    backend.close()


async def test_nbthread_in_the_file_wins(pump_class):
    backend, port = await start_backend(echo)
    async with running(config([port], global_={"nbthread": 1}), pump_class) as engine:
        assert engine.pump_threads == 1
    backend.close()
