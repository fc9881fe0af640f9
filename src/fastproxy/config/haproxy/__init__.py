"""The HAProxy configuration reader: TCP-mode ``haproxy.cfg`` files into the one ``Config`` model.

It reads what HAProxy 2.6 reads, the way it reads it: words split as HAProxy's ``parse_line`` does
(quotes, backslash escapes, ``"${VAR}"``, ``"${VAR-default}"``, ``"${VAR[*]}"`` and the ``${.FILE}``,
``${.LINE}``, ``${.SECTION}`` pseudo-variables; ``$VAR`` and ``${VAR}`` unquoted in addresses, as
``str2sa_range`` expands them), ``.if``/``.endif`` blocks, a file without a final line feed refused,
then one section at a time with a table of keyword handlers per section kind.  ``defaults`` sections
are folded into the proxies that follow them (or name them with ``from``), so the model holds
effective values; a ``listen`` becomes a frontend and a backend of the same name.

Every problem is collected with its ``file:line`` and keyword: errors end in one ``ConfigError`` that
carries them all, warnings go to ``Config.warnings``.  Keywords HAProxy knows but fastproxy does not
implement are warnings (the rest runs); unknown keywords, bad values and dangling references are
errors, as are the few HAProxy features that would silently route differently if ignored.

The reader does no network I/O: host names in ``bind`` and ``server`` lines are kept as written and
resolved by the engine when it starts (HAProxy resolves them while parsing).  The only files it
opens are the configuration files themselves and ACL pattern files (``-f``).

Where it deliberately differs from HAProxy 2.6 (``tests/unit/test_config.py`` checks the corpus against
``haproxy -c`` and lists each case): numbers are checked (HAProxy's ``atoi`` reads ``weight x`` as 0)
and sizes take ``k``/``m``/``g``; ``hash-type maglev`` is ours; ``mode http``, UNIX sockets,
``transparent`` binds, servers at the client's destination address (no address, ``0.0.0.0``), port
offsets, dynamic ``use_backend`` and criteria other than the layer-4 ones are errors rather than
silently routing differently (so is ``observe layer7``, which needs HTTP); ``tcp-check`` rules built
from log-format strings or check variables are skipped with a warning, and their regular expressions are
Python's; user/group names, host names in ACLs and the arguments of keywords fastproxy ignores (``stick-
table``, ``capture``, skipped sections...) are not checked.
A server without a port gets port 0: the engine uses the client's destination port.

The package follows HAProxy's own split: ``lexer`` (tools.c ``parse_line``), ``values`` (times, sizes,
addresses: ``str2sa_range``), ``conditions`` (cfgcond.c), ``registry`` (keyword tables and post-parse
checks), ``reader`` (cfgparse.c: sections, ``defaults``, building the model) and one module per keyword
family: ``global_`` (cfgparse-global.c), ``proxy`` (cfgparse-listen.c), ``binds``, ``servers``
(server.c), ``options``, ``tcpcheck`` (tcpcheck.c's ``tcp-check`` rules) and ``checks`` (the check
kinds tcpcheck.c builds from rules: ``option httpchk`` and ``http-check``).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from typing import Optional

from ...errors import ConfigError
from ..model import Config
from .lexer import split_words
from .reader import _Reader
from .values import parse_size, parse_time

__all__ = ["load", "parse_size", "parse_text", "parse_time", "split_words"]


def _expand_paths(paths: Iterable[str]) -> list[str]:
    files: list[str] = []
    for path in paths:
        if os.path.isdir(path):
            # As HAProxy: regular files named *.cfg, hidden ones skipped, in lexical order.
            entries = sorted(entry for entry in os.listdir(path) if entry.endswith(".cfg")
                             and not entry.startswith(".") and os.path.isfile(os.path.join(path, entry)))
            files += [os.path.join(path, entry) for entry in entries]
        else:
            files.append(path)
    return files


def load(paths: Sequence[str], *, environ: Optional[Mapping[str, str]] = None) -> Config:
    """Read HAProxy configuration files and directories, in order, into one Config.

    A directory stands for its ``*.cfg`` files in alphabetical order, as with ``haproxy -f``.  Raises
    ``ConfigError`` carrying every error found; warnings are in ``Config.warnings``.  ``environ``
    replaces ``os.environ`` for ``"${VAR}"`` expansion.
    """
    if isinstance(paths, (str, os.PathLike)):
        paths = [os.fspath(paths)]
    reader = _Reader(environ)
    files = _expand_paths([os.fspath(p) for p in paths])
    if not files:
        raise ConfigError("no configuration file to read")
    for path in files:
        reader.read_file(path)
    return reader.finish()


def parse_text(text: str, filename: str = "<string>", *,
               environ: Optional[Mapping[str, str]] = None) -> Config:
    """Read a configuration from a string, as ``load`` reads a file."""
    reader = _Reader(environ)
    reader.read_text(text, filename)
    return reader.finish()
