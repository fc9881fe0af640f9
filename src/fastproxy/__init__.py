"""fastproxy: a layer-4 (TCP) proxy and load balancer that reads HAProxy TCP-mode configurations.

The public API is small: the configuration model (``Config``, ``Frontend``, ``Backend``, ``Server``,
``Bind``, ``Timeouts``), the HAProxy-format reader (``load``, ``parse_text``), the ``Engine`` that runs a
configuration, and ``implementation()``.  The reader and the API build the same objects: one model.
"""

from __future__ import annotations

from typing import Any

from .errors import ConfigError, FastproxyError

__version__ = "0.1.0"

__all__ = [
    "Backend", "Bind", "Config", "ConfigError", "Engine", "FastproxyError", "Frontend", "Global", "Server",
    "Timeouts", "extensions", "implementation", "load", "parse_text", "__version__",
]

_LAZY = {
    "Backend": "config.model", "Bind": "config.model", "Config": "config.model",
    "Frontend": "config.model", "Global": "config.model", "Server": "config.model",
    "Timeouts": "config.model", "load": "config", "parse_text": "config", "Engine": "engine",
}


def __getattr__(name: str) -> Any:
    # Imported on first use, so that `fastproxy version` and the reader do not load the engine.
    if name in _LAZY:
        import importlib

        module = importlib.import_module(f"fastproxy.{_LAZY[name]}")
        return getattr(module, name)
    raise AttributeError(f"module 'fastproxy' has no attribute {name!r}")


def extensions() -> dict[str, str]:
    """Which implementation of each extension runs: ``{"pump": "cython", "ring": "python"}``."""
    from . import pump, ring

    return {"pump": "cython" if pump.COMPILED else "python", "ring": "cython" if ring.COMPILED else "python"}


def implementation() -> str:
    """``"cython"`` when the compiled extensions run, ``"python"`` when their pure-Python twins do, and
    ``"mixed"`` for a half-built install (``extensions()`` says which is which)."""
    kinds = set(extensions().values())
    return kinds.pop() if len(kinds) == 1 else "mixed"
