"""The reader core (HAProxy's cfgparse.c): files into sections, lines into keyword handlers, and the
sections, once read, into the ``Config`` model.

It splits each line (``lexer``), follows ``.if`` blocks (``conditions``), opens sections, folds
``defaults`` into the proxies that follow them or name them with ``from``, and hands each line to the
handler its section's table registers (``registry``; the families in ``global_``, ``proxy``, ``binds``,
``servers``, ``options``, ``tcpcheck``).  ``finish()`` runs the registered post-parse checks, builds the
model and runs on it the semantic checks an API-built model gets too (``config.validate``); every
problem is collected with its ``file:line`` and keyword.
"""

from __future__ import annotations

import copy
import dataclasses
import os
from collections.abc import Mapping, MutableMapping
from pathlib import Path
from typing import Optional

from ... import acl as acls
from ...errors import ConfigError
from .. import validate
from ..model import (
    Backend,
    Condition,
    Config,
    Frontend,
    Global,
    Location,
    StatsPage,
    Timeouts,
    Warning_,
)
# The keyword families register their keywords and post-parse checks when imported.
from . import binds as _binds, options as _options, proxy as _proxy, servers as _servers  # noqa: F401
from . import checks as _checks, sticks as _sticks, tcpcheck as _tcpcheck  # noqa: F401
from .httpstats import stats_page
from .conditions import MAX_NESTED_BLOCKS, _Block, _evaluate_condition
from .global_ import GLOBAL_IGNORED, GLOBAL_KEYWORDS, GLOBAL_NEGATABLE
from .lexer import _Invalid, split_words
from .registry import (
    _BE_TIMEOUTS,
    _FE_TIMEOUTS,
    _SKIPPED,
    BE,
    FE,
    IGNORED_SECTIONS,
    POST_CHECKS,
    PROXY_IGNORED,
    PROXY_KEYWORDS,
    PROXY_SECTIONS,
    _Line,
    _Proxy,
)
from .values import _check_name

_SECTION_KEYWORDS = frozenset({"global", *PROXY_SECTIONS, *IGNORED_SECTIONS})
# The rule sets HAProxy counts when it checks what a section may inherit from its defaults.
_RULE_KEYWORDS = frozenset({"tcp-request", "tcp-response", "http-request", "http-response",
                            "http-after-response"})


class _Reader:
    """Reads files one after the other into one configuration; ``finish()`` builds the Config."""

    def __init__(self, environ: Optional[Mapping[str, str]] = None) -> None:
        self.environ: MutableMapping[str, str] = dict(os.environ if environ is None else environ)
        self.errors: list[ConfigError] = []
        self.warnings: list[Warning_] = []
        self.global_ = Global()
        self.proxies: list[_Proxy] = []
        self.defaults = _Proxy(kind="defaults", name="", location=Location())
        self.named_defaults: dict[str, list[_Proxy]] = {}
        self.files: list[str] = []
        self.base_directory = Path(".")

    # --- messages ---

    def error(self, location: Location, keyword: Optional[str], message: str) -> None:
        self.errors.append(ConfigError(message, file=location.file, line=location.line or None,
                                       keyword=keyword or None))

    def warn(self, location: Location, keyword: Optional[str], message: str) -> None:
        self.warnings.append(Warning_(location, keyword or "", message))

    # --- input ---

    def read_file(self, path: str) -> None:
        try:
            # newline="": only LF ends a line, as HAProxy's fgets() reads it (a lone CR is a blank).
            with open(path, encoding="utf-8", errors="surrogateescape", newline="") as f:
                text = f.read()
        except OSError as exc:
            self.error(Location(path, 0), None, f"cannot open configuration file: {exc.strerror}")
            return
        last_line = text.rsplit("\n", 1)[-1]
        if last_line:
            # A file cut short (a full disk, a copy interrupted) must not run half-read: HAProxy 2.6
            # refuses it, and so do we (strings given to parse_text are not files, and need no LF).
            self.error(Location(path, text.count("\n") + 1), None, "Missing LF on last line, file might "
                       f"have been truncated at position {len(last_line) + 1}.")
            text = text[:len(text) - len(last_line)]
        self.read_text(text, path)

    def read_text(self, text: str, filename: str) -> None:
        self.files.append(filename)
        section: Optional[object] = None  # Global, _Proxy, a skipped section's name, or None
        section_label = ""  # what ${.SECTION} expands to: the section's name, or its kind
        blocks: list[_Block] = []  # the .if blocks open at this line
        lines = text.split("\n")  # only "\n" ends a line, as for HAProxy (not "\f", "\x85"...)
        for number, raw in enumerate(lines, start=1):
            raw = raw.removesuffix("\r")
            if "\0" in raw:
                self.error(Location(filename, number), None, "NUL character in the line")
                continue
            pseudo = {".FILE": filename, ".LINE": str(number), ".SECTION": section_label}
            try:
                words = split_words(raw, self.environ, pseudo)
            except _Invalid as exc:
                self.error(Location(filename, number), raw.split(None, 1)[0], exc.message)
                continue
            if not words:
                continue
            location = Location(filename, number)
            if words[0].startswith("."):
                if not self._directive(location, words, blocks):
                    return  # HAProxy's ERR_ABORT: nothing more of this file is read
                continue
            if blocks and not blocks[-1].active:
                continue
            line = _Line(self, filename, number, words)
            if words[0] in _SECTION_KEYWORDS:
                section_label = words[1] if len(words) > 1 and words[1] != "from" else words[0]
            try:
                section = self._line(line, section)
            except _Invalid as exc:
                self.error(location, exc.keyword or line.keyword, exc.message)
                if words[0] in PROXY_SECTIONS:
                    section = _SKIPPED  # a section with a broken header: its body is not read
        if blocks:
            last = len(text.rstrip("\n").split("\n"))
            self.error(Location(filename, last), ".if", "non-terminated '.if' block (missing '.endif' at "
                       "end of file)")

    def _directive(self, location: Location, words: list[str], blocks: list[_Block]) -> bool:
        """``.if/.elif/.else/.endif`` and ``.diag/.notice/.warning/.alert``, as HAProxy 2.6 reads them;
        False when the file must not be read further.

        A block is active only if the blocks around it are (a block opened in a skipped region never
        is), so the innermost one says whether a line is read: one look per line at any depth."""
        name, text = words[0], " ".join(words[1:])
        active = not blocks or blocks[-1].active
        try:
            if name in (".else", ".endif") and text:
                self.error(location, name, f"Unexpected argument '{words[1]}' for '{name}'.")
            if name == ".if" and len(blocks) + 1 >= MAX_NESTED_BLOCKS:
                # Counted in skipped regions too, and fatal to the rest of the file, as in HAProxy.
                self.error(location, name, f"too many nested '.if', max is {MAX_NESTED_BLOCKS}.")
                return False
            if name == ".if":
                # In a skipped region the condition is not evaluated and no branch is ever taken.
                blocks.append(_Block(active=False, taken=True))  # what stays if the condition is wrong
                chosen = active and _evaluate_condition(text, self.environ)
                blocks[-1] = _Block(active=chosen, taken=chosen or not active)
            elif name in (".elif", ".else"):
                if not blocks or blocks[-1].seen_else:
                    blocks.append(_Block(active=active, taken=True, seen_else=True))  # its .endif closes it
                    raise _Invalid(f"lone '{name}' with no matching '.if'.")
                block = blocks[-1]
                chosen = not block.taken and (name == ".else" or _evaluate_condition(text, self.environ))
                block.active, block.taken = chosen, block.taken or chosen
                block.seen_else = name == ".else"
            elif name == ".endif":
                if not blocks:
                    raise _Invalid("lone '.endif' with no matching '.if'.")
                blocks.pop()
            elif not active:
                pass  # other directives in a skipped block are not read, as in HAProxy
            elif name == ".warning":
                self.warn(location, name, text)
            elif name == ".alert":
                self.error(location, name, text)
            elif name not in (".diag", ".notice"):
                raise _Invalid(f"unknown directive '{name}'")
        except _Invalid as exc:
            self.error(location, name, exc.message)
        return True

    def read_patterns(self, path: str) -> list[str]:
        """An ACL pattern file (``-f``): one pattern per line, blank lines and ``#`` comments skipped."""
        if not os.path.isfile(path):
            raise acls.AclError(f"failed to open pattern file <{path}> (not a regular file)")
        try:
            with open(path, encoding="utf-8", errors="surrogateescape") as f:
                lines = f.read().splitlines()
        except OSError as exc:
            raise acls.AclError(f"failed to open pattern file <{path}> ({exc.strerror})") from None
        return [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]

    def condition(self, line: _Line, proxy: _Proxy, words: list[str]) -> Condition:
        try:
            return acls.parse_condition(words, proxy.acls, read_patterns=self.read_patterns,
                                        location=line.location)
        except acls.AclError as exc:
            raise _Invalid(f"error detected while parsing the '{words[0]}' condition : {exc}") from None

    # --- sections ---

    def _line(self, line: _Line, section: Optional[object]) -> Optional[object]:
        keyword, args = line.words[0], line.words[1:]
        if keyword == "global":
            if args:
                self.error(line.location, keyword, f"'global' cannot handle unexpected argument '{args[0]}'.")
            return self.global_
        if keyword in PROXY_SECTIONS:
            return self._open_proxy(line, keyword, args)
        if keyword in IGNORED_SECTIONS:
            line.warn(f"'{keyword}' sections are not supported by fastproxy; this section is skipped")
            return keyword
        if section is None:
            raise _Invalid(f"unknown keyword '{keyword}' out of section")
        if isinstance(section, str):
            return section  # inside a skipped section
        if isinstance(section, Global):
            self._global_line(line, section, keyword, args)
        else:
            assert isinstance(section, _Proxy)
            self._proxy_line(line, section, keyword, args)
        return section

    def _global_line(self, line: _Line, g: Global, keyword: str, args: list[str]) -> None:
        if keyword in ("no", "default"):
            if args[:1] == ["log"] and keyword == "no":
                if len(args) > 1:
                    raise _Invalid("log : 'no log' does not expect arguments", "log")
                g.log_targets = []
            elif args[:1] == ["insecure-fork-wanted"] and keyword == "no":
                g.insecure_fork_wanted = False
            elif args[:1] and args[0] in GLOBAL_NEGATABLE:
                line.warn("not supported by fastproxy; ignored", args[0])
            else:
                raise _Invalid("negation/default currently supported only for options, log, busy-polling, "
                               "set-dumpable, strict-limits, insecure-fork-wanted and numa-cpu-mapping.")
            return
        handler = GLOBAL_KEYWORDS.get(keyword)
        if handler is not None:
            handler(line, g, args)
        elif keyword in GLOBAL_IGNORED:
            line.warn("not supported by fastproxy; ignored")
        else:
            raise _Invalid(f"unknown keyword '{keyword}' in 'global' section")

    def _open_proxy(self, line: _Line, kind: str, args: list[str]) -> Optional[_Proxy]:
        name = ""
        if args and not (kind == "defaults" and args[0] == "from"):
            name, args = args[0], args[1:]
        elif kind != "defaults":
            raise _Invalid(f"'{kind}' expects an <id> argument")
        if name and kind != "defaults":  # HAProxy does not check the names of defaults sections
            _check_name(kind, name)
        parent = self.defaults
        if kind == "defaults" and args and args[0] != "from":
            line.warn(f"extra argument '{args[0]}' ignored (HAProxy ignores it too)")
            args = []
        if args:
            if args[0] != "from" or len(args) != 2:
                if kind in ("frontend", "listen"):
                    raise _Invalid("please use the 'bind' keyword for listening addresses.")
                raise _Invalid(f"'{kind}' expects 'from <defaults name>' after the name (got "
                               f"'{' '.join(args)}')")
            # Errors from here on still read the section's body, to report its errors too.
            candidates = self.named_defaults.get(args[1], [])
            if not candidates:
                self.error(line.location, kind, f"defaults section '{args[1]}' not found for {kind} "
                           f"'{name}'.")
            elif len(candidates) > 1:
                self.error(line.location, kind, f"ambiguous defaults section name '{args[1]}' referenced "
                           f"by {kind} '{name}' exists at least at {candidates[0].location} and "
                           f"{candidates[1].location}.")
            parent = candidates[0] if candidates else self.defaults
        elif kind == "defaults":
            parent = _Proxy(kind="defaults", name="", location=Location())  # a new defaults resets all
        if parent.name and (parent.used_implicitly if args else parent.referenced):
            line.warn(f"defaults section '{parent.name}' (declared at {parent.location}) is both "
                      "referenced with 'from' and implicitly used by the proxies that follow it; HAProxy "
                      "flags this mix as ambiguous (add a last defaults section, or always use 'from')")
        if args:
            parent.referenced = True
        else:
            parent.used_implicitly = True
        if parent.rule_keywords:
            self._inherit_rules(line, kind, parent)
        proxy = parent.derive(kind, name, line.location)
        if kind == "defaults":
            self.defaults = proxy
            if name:
                self.named_defaults.setdefault(name, []).append(proxy)
            return proxy
        for other in self.proxies:
            if other.name == name and (other.caps & proxy.caps):
                self.error(line.location, kind, f"{kind} '{name}' has the same name as {other.kind} "
                           f"'{name}' declared at {other.location}.")
                return proxy  # read, but not kept
        self.proxies.append(proxy)
        return proxy

    def _inherit_rules(self, line: _Line, kind: str, parent: _Proxy) -> None:
        """HAProxy 2.6's checks on inheriting from a defaults section that holds TCP/HTTP rules: the
        rules run in the proxy that inherits them, so they must make sense in exactly one kind."""
        where = f"(defaults section at {parent.location})"
        message = None
        if kind == "defaults":
            message = ("a defaults section cannot inherit from a defaults section defining TCP/HTTP rules "
                       f"{where}.")
        elif kind == "listen":
            message = "a listen section cannot inherit from a defaults section defining TCP/HTTP rules."
        elif kind == "backend" and parent.rule_keywords & {"tcp-request connection", "tcp-request session"}:
            message = ("a backend section cannot inherit from a defaults section defining "
                       f"'tcp-request connection' or 'tcp-request session' rules {where}.")
        else:
            parent.inherited_by |= FE if kind == "frontend" else BE
            if parent.inherited_by == FE | BE:
                message = ("frontends and backends cannot inherit from the same defaults section if it "
                           f"defines TCP/HTTP rules {where}.")
        if message:
            self.error(line.location, kind, message)

    def _proxy_line(self, line: _Line, proxy: _Proxy, keyword: str, args: list[str]) -> None:
        if proxy.is_defaults and keyword in _RULE_KEYWORDS and args[:1] != ["inspect-delay"]:
            proxy.rule_keywords.add(f"{keyword} {args[0]}" if args else keyword)
        spec = PROXY_KEYWORDS.get(keyword)
        if spec is None:
            if keyword in PROXY_IGNORED:
                line.warn("not supported by fastproxy; ignored")
                return
            raise _Invalid(f"unknown keyword '{keyword}' in '{proxy.kind}' section")
        if proxy.is_defaults:
            if spec.in_defaults == "no":
                raise _Invalid(f"'{keyword}' not allowed in 'defaults' section.")
            if spec.in_defaults == "named" and not proxy.name:
                raise _Invalid(f"'{keyword}' not allowed in anonymous 'defaults' section.")
        elif not proxy.caps & spec.caps:
            other = "frontend" if spec.caps == FE else "backend"
            message = f"'{keyword}' {{}} because {proxy.describe()} has no {other} capability.{spec.hint}"
            if spec.missing_cap == "error":
                raise _Invalid(message.format("not allowed"))
            line.warn(message.format("ignored"))
            spec.handler(line, copy.deepcopy(proxy), args)  # HAProxy still checks the arguments
            return
        spec.handler(line, proxy, args)

    # --- the model ---

    def finish(self) -> Config:
        frontends: dict[str, Frontend] = {}
        backends: dict[str, Backend] = {}
        for proxy in self.proxies:
            if proxy.caps & BE:
                backends[proxy.name] = self._backend(proxy)
        for proxy in self.proxies:
            if proxy.caps & FE:
                frontend = self._frontend(proxy)
                if frontend is not None:
                    frontends[proxy.name] = frontend
        self._check_modes(frontends, backends)
        for frontend in frontends.values():
            for bind in frontend.binds:
                bind.reuseport = self.global_.reuseport
                bind.tls = bind.tls.over(self.global_.bind_tls)  # as HAProxy applies them, at init
        for backend in backends.values():
            for server in backend.servers:
                server.tls = server.tls.over(self.global_.server_tls)
        tables = {proxy.name: proxy.stick_table for proxy in self.proxies if proxy.stick_table is not None}
        config = Config(global_=self.global_, frontends=frontends, backends=backends, stick_tables=tables,
                        warnings=self.warnings, files=tuple(self.files))
        self.errors += validate.problems(config)
        order = {name: index for index, name in enumerate(self.files)}
        self.errors.sort(key=lambda e: (order.get(e.file or "", -1), e.line or 0))
        if self.errors:
            count = len(self.errors)
            raise ConfigError(f"{count} error{'s' if count > 1 else ''} in the configuration",
                              errors=self.errors)
        return config

    def _backend(self, proxy: _Proxy) -> Backend:
        timeouts = Timeouts(**{name: getattr(proxy.timeouts, name) for name in _BE_TIMEOUTS})
        servers = proxy.servers
        if proxy.dispatch is not None:
            if proxy.balance_set:
                self.warn(proxy.dispatch.location, "dispatch", f"dispatch address of proxy '{proxy.name}' "
                          "will be ignored in balance mode.")
            else:  # without 'balance', HAProxy sends every connection to the dispatch address
                if servers:
                    self.warn(proxy.dispatch.location, "dispatch", f"{proxy.describe()} sends every "
                              "connection to its dispatch address, as HAProxy does without 'balance': its "
                              "servers take no traffic")
                servers = [proxy.dispatch]
        elif proxy.options.get("transparent") and not servers:
            self.error(proxy.location, proxy.kind, f"{proxy.describe()} has 'option transparent' and no "
                       "server: HAProxy then connects to the client's original destination, which "
                       "fastproxy does not do")
        if proxy.disabled:
            self.warn(proxy.location, proxy.kind, f"{proxy.describe()} is disabled: its servers take "
                      "no traffic")
            servers = [dataclasses.replace(server, disabled=True) for server in servers]
        if proxy.kind == "backend" and not (proxy.timeouts.connect and proxy.timeouts.server):
            self._missing_timeouts(proxy)
        self._post_checks(BE, proxy)
        rules = _checks.check_rules(proxy)
        return Backend(name=proxy.name, servers=servers, mode=proxy.mode, balance=proxy.balance,
                       timeouts=timeouts, retries=proxy.retries, redispatch=proxy.redispatch,
                       retry_on_conn_failure=proxy.retry_on_conn_failure, source=proxy.source,
                       server_keepalive=proxy.server_keepalive, fullconn=proxy.fullconn,
                       load_server_state=proxy.load_server_state,
                       server_state_file_name=proxy.server_state_file_name,
                       id=proxy.id, options=dict(proxy.options), location=proxy.location,
                       allbackups=proxy.allbackups,
                       tcp_check=proxy.tcp_check, tcp_check_rules=rules, check_kind=proxy.check_kind,
                       external_command=proxy.external_command, external_path=proxy.external_path,
                       http_send_state=proxy.http_send_state,
                       http_disable_on_404=proxy.http_disable_on_404,
                       log_health_checks=proxy.log_health_checks,
                       log_targets=list(proxy.log_targets), acls=proxy.acls,
                       tcp_request_rules=[r for r in proxy.tcp_request_rules if r.phase == "content"],
                       inspect_delay=proxy.inspect_delay, stick_rules=list(proxy.stick_rules),
                       persist=proxy.persist, persist_rules=list(proxy.persist_rules),
                       persist_rdp_cookie=proxy.persist_rdp_cookie, use_servers=list(proxy.use_servers))

    def _post_checks(self, half: int, proxy: _Proxy) -> None:
        for check in POST_CHECKS[half]:
            check(self, proxy)

    def _missing_timeouts(self, proxy: _Proxy) -> None:
        self.warn(proxy.location, proxy.kind, f"missing timeouts for {proxy.describe()}: set 'client', "
                  "'connect' and 'server' (unset timeouts never expire)")

    def _frontend(self, proxy: _Proxy) -> Optional[Frontend]:
        if proxy.disabled:
            self.warn(proxy.location, proxy.kind, f"{proxy.describe()} is disabled: it does not listen")
            return None
        default_backend = proxy.default_backend
        if proxy.kind == "listen":
            if default_backend is None:
                default_backend = proxy.name
            elif proxy.servers:
                self.warn(proxy.default_backend_location or proxy.location, "default_backend",
                          f"In proxy '{proxy.name}', the 'default_backend' rule always has precedence "
                          "over the servers, which will never be used.")
        if not proxy.binds:
            self.warn(proxy.location, proxy.kind, f"{proxy.describe()} has no 'bind' directive: it does "
                      "not listen.")
        elif not (proxy.timeouts.client and (proxy.kind != "listen" or
                                             (proxy.timeouts.connect and proxy.timeouts.server))):
            self._missing_timeouts(proxy)
        binds = [dataclasses.replace(bind, backlog=bind.backlog or proxy.backlog) for bind in proxy.binds]
        timeouts = Timeouts(**{name: getattr(proxy.timeouts, name) for name in _FE_TIMEOUTS})
        self._post_checks(FE, proxy)
        stats = None
        if proxy.mode == "http":
            stats = stats_page(self, proxy) or StatsPage(location=proxy.location)  # else: 503 everywhere
        return Frontend(
            name=proxy.name, binds=binds, mode=proxy.mode, default_backend=default_backend,
            use_backends=list(proxy.use_backends), acls=proxy.acls,
            tcp_request_rules=list(proxy.tcp_request_rules),
            inspect_delay=proxy.inspect_delay, timeouts=timeouts, maxconn=proxy.maxconn,
            rate_limit_sessions=proxy.rate_limit_sessions, client_keepalive=proxy.client_keepalive,
            log=bool(proxy.log_targets), tcplog=proxy.tcplog, log_format=proxy.log_format,
            unique_id_format=proxy.unique_id_format, log_format_sd=proxy.log_format_sd,
            dontlognull=proxy.dontlognull, request_captures=tuple(proxy.request_captures),
            response_captures=tuple(proxy.response_captures),
            id=proxy.id, options=dict(proxy.options), location=proxy.location,
            log_targets=list(proxy.log_targets), default_backend_location=proxy.default_backend_location,
            stats=stats)

    def _check_modes(self, frontends: Mapping[str, Frontend], backends: Mapping[str, Backend]) -> None:
        """``mode http`` is an error on any proxy that carries traffic, fastproxy being layer 4 only; a
        ``mode http`` frontend that only serves statistics (no servers, no other backend) is served by
        the stats listener, and a ``mode http`` proxy that carries nothing is a warning."""
        used: set[str] = set()
        for frontend in frontends.values():
            if frontend.binds:
                names = {use.backend for use in frontend.use_backends}
                if frontend.default_backend:
                    names.add(frontend.default_backend)
                if frontend.mode == "http":
                    names.discard(frontend.name)  # a ``listen stats``: its own backend half, no server
                used |= names
        for proxy in self.proxies:
            if proxy.mode != "http":
                continue
            own = frontends.get(proxy.name) if proxy.caps & FE else None
            listens = own is not None and bool(own.binds)
            routes = listens and bool({use.backend for use in proxy.use_backends} |
                                      {proxy.default_backend} - {None, proxy.name})
            carries = routes or (proxy.caps & BE and (proxy.name in used or (listens and proxy.servers)))
            location = proxy.mode_location or proxy.location
            if carries:
                self.error(location, "mode", f"{proxy.describe()} is in 'mode http': fastproxy is a "
                           "layer-4 proxy and carries 'mode tcp' traffic only (a 'mode http' proxy may "
                           "only serve statistics: 'stats', 'monitor-uri', the Prometheus exporter)")
            elif not listens:
                self.warn(location, "mode", f"{proxy.describe()} is in 'mode http' but carries no traffic")
