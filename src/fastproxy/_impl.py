"""Chooses between the compiled extensions and their pure-Python twins.

``FASTPROXY_NO_EXTENSIONS=1`` (any non-empty value but "0") forces the pure-Python implementations, in
the manner of aio-libs' ``MULTIDICT_NO_EXTENSIONS``; otherwise a compiled module that fails to import
falls back silently to its twin.  ``fastproxy.implementation()`` says which one runs.
"""

from __future__ import annotations

import importlib
import os
from types import ModuleType
from typing import Optional

NO_EXTENSIONS = os.environ.get("FASTPROXY_NO_EXTENSIONS", "") not in ("", "0")


def load_extension(name: str) -> Optional[ModuleType]:
    """Import ``fastproxy.<name>`` unless extensions are disabled or it is not built."""
    if NO_EXTENSIONS:
        return None
    try:
        return importlib.import_module(f"fastproxy.{name}")
    except ImportError:
        return None
