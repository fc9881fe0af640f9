"""Configuration: the model (``model``) and the HAProxy-format reader (``haproxy``)."""

from .model import Backend, Bind, Config, Frontend, Global, Server, Timeouts  # noqa: F401
