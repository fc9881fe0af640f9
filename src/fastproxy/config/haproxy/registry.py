"""The keyword registry: how keyword families register their handlers and post-parse checks.

Each family module (``global_``, ``proxy``, ``binds``, ``servers``, ``options``, ``tcpcheck``) registers
its proxy keywords with ``@_keyword(name, caps, in_defaults, missing_cap, hint)`` (HAProxy's
``cfg_kw_list``: the capabilities a keyword applies to, whether ``defaults`` may hold it, what HAProxy
does where it does not apply), and the checks to run on each proxy once the files are read with
``@_post_check(FE | BE)`` (HAProxy's ``REGISTER_POST_PROXY_CHECK``).  The tables of what HAProxy knows
but fastproxy skips live here too.  The reader (``reader.py``) looks keywords up; this module calls
nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..model import Global

if TYPE_CHECKING:
    from .reader import _Line, _Proxy, _Reader

FE, BE = 1, 2  # a proxy's capabilities: its frontend half, its backend half
_FE_TIMEOUTS = ("client", "client_fin")
_BE_TIMEOUTS = ("connect", "server", "tunnel", "server_fin", "queue", "check")

GlobalHandler = Callable[["_Line", Global, list[str]], None]
ProxyHandler = Callable[["_Line", "_Proxy", list[str]], None]


@dataclass(frozen=True)
class _Keyword:
    handler: ProxyHandler
    caps: int = FE | BE  # the proxy capabilities it applies to; elsewhere it is ignored with a warning
    in_defaults: str = "yes"  # "yes" | "no" | "named" (only in named defaults sections)
    missing_cap: str = "warn"  # "warn" | "error": what HAProxy does where it does not apply
    hint: str = ""


PROXY_KEYWORDS: dict[str, _Keyword] = {}


def _keyword(name: str, caps: int = FE | BE, in_defaults: str = "yes", missing_cap: str = "warn",
             hint: str = "") -> Callable[[ProxyHandler], ProxyHandler]:
    def register(handler: ProxyHandler) -> ProxyHandler:
        PROXY_KEYWORDS[name] = _Keyword(handler, caps, in_defaults, missing_cap, hint)
        return handler
    return register


PostCheck = Callable[["_Reader", "_Proxy"], None]
POST_CHECKS: dict[int, list[PostCheck]] = {FE: [], BE: []}


def _post_check(half: int) -> Callable[[PostCheck], PostCheck]:
    """Register a check of every proxy with that half (FE or BE), run once all files are read and the
    half is built: it reports through the reader (``reader.error``, ``reader.warn``)."""
    def register(check: PostCheck) -> PostCheck:
        POST_CHECKS[half].append(check)
        return check
    return register


def _names(text: str) -> frozenset[str]:
    """A table of keywords written as blank-separated words."""
    return frozenset(text.split())


# Proxy keywords HAProxy 2.6 knows that fastproxy ignores with a warning (the proxy still runs).
PROXY_IGNORED = _names("""
    bind-process capture compression cookie declare dynamic-cookie-key email-alert errorfile errorfiles
    errorloc errorloc302 errorloc303 external-check filter force-persist grace http-after-response
    http-check http-error http-request http-response http-reuse http-send-name-header ignore-persist
    load-server-state-from-file log-format log-format-sd log-tag max-keep-alive-queue
    max-session-srv-conns monitor monitor-uri persist redirect retry-on server-state-file-name source
    stats stick stick-table tcp-response unique-id-format unique-id-header use-fcgi-app
    use-server
""")

# Sections HAProxy knows that fastproxy skips (their content is not read).
IGNORED_SECTIONS = _names("""
    userlist peers resolvers mailers program http-errors ring cache fcgi-app
""")
PROXY_SECTIONS = ("defaults", "frontend", "backend", "listen")
_SKIPPED = "<skipped>"
