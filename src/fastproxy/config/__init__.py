"""Configuration: the model (``model``), its semantic checks (``validate``) and the HAProxy-format reader
(``haproxy``).

``load(paths)`` reads ``haproxy -f``-style files and directories, ``parse_text(text)`` a string; both
return the one ``Config`` model the engine runs and raise ``ConfigError`` listing every error found.
The reader is imported on first use, so that the runtime modules importing ``config.model`` (and the
reader importing them back, ``acl`` and ``samples``) never meet half-initialised.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .model import Backend, Bind, Config, Frontend, Global, Server, Timeouts, Warning_  # noqa: F401

if TYPE_CHECKING:
    from .haproxy import load, parse_size, parse_text, parse_time  # noqa: F401

_READER = ("load", "parse_size", "parse_text", "parse_time")


def __getattr__(name: str) -> Any:
    if name in _READER:
        from . import haproxy

        return getattr(haproxy, name)
    raise AttributeError(f"module 'fastproxy.config' has no attribute {name!r}")
