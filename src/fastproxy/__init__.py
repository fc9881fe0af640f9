"""fastproxy: a layer-4 (TCP) proxy and load balancer that reads HAProxy TCP-mode configurations.

The public API is small: the configuration model, the engine that runs it, and ``implementation()``.
"""

from __future__ import annotations

from .errors import ConfigError, FastproxyError

__version__ = "0.1.0"

__all__ = ["ConfigError", "FastproxyError", "implementation", "__version__"]


def implementation() -> str:
    """``"cython"`` when the compiled data plane runs, ``"python"`` when its pure-Python twin does."""
    from . import pump

    return "cython" if pump.COMPILED else "python"
