"""Configuration: the model (``model``) and the HAProxy-format reader (``haproxy``).

``load(paths)`` reads ``haproxy -f``-style files and directories, ``parse_text(text)`` a string; both
return the one ``Config`` model the engine runs and raise ``ConfigError`` listing every error found.
"""

from .haproxy import load, parse_size, parse_text, parse_time  # noqa: F401
from .model import Backend, Bind, Config, Frontend, Global, Server, Timeouts, Warning_  # noqa: F401
