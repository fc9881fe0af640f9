"""fastproxy's exceptions: one tree, classified by what went wrong rather than by message text."""

from __future__ import annotations

from typing import Optional, Sequence


class FastproxyError(Exception):
    """Base of every exception fastproxy raises on purpose."""


class ConfigError(FastproxyError):
    """A configuration that cannot run.

    One instance describes either one problem (``file``, ``line``, ``keyword`` and ``message`` set) or
    several (``errors`` holds one ConfigError per problem, in file order), so that a reader can report
    every error of a file at once, as ``haproxy -c`` does.
    """

    def __init__(
        self,
        message: str,
        *,
        file: Optional[str] = None,
        line: Optional[int] = None,
        keyword: Optional[str] = None,
        errors: Sequence["ConfigError"] = (),
    ) -> None:
        self.message = message
        self.file = file
        self.line = line
        self.keyword = keyword
        self.errors: list[ConfigError] = list(errors) or [self]
        super().__init__(str(self))

    def __str__(self) -> str:
        if len(self.errors) > 1 or self.errors[0] is not self:
            return "\n".join(e._one_line() for e in self.errors)
        return self._one_line()

    def _one_line(self) -> str:
        where = ""
        if self.file is not None:
            where = f"{self.file}:{self.line}: " if self.line else f"{self.file}: "
        keyword = f"'{self.keyword}': " if self.keyword else ""
        return f"{where}{keyword}{self.message}"


class ProxyError(FastproxyError):
    """A runtime failure on one connection; ``kind`` classifies it."""

    def __init__(self, kind: str, message: str) -> None:
        self.kind = kind
        super().__init__(message)


class UpstreamConnectError(ProxyError):
    """The upstream could not be dialled: refused, unreachable or timed out (``kind`` says which)."""


class NoServerAvailable(ProxyError):
    """The backend has no server that can take a connection."""


class QueueTimeout(ProxyError):
    """The connection waited in a queue for a server slot longer than ``timeout queue`` (HAProxy: sQ)."""
