"""Words of a configuration line, as HAProxy 2.6's ``parse_line`` (tools.c) splits them, and the
expansion of environment variables in addresses (tools.c ``env_expand``, which ``str2sa_range`` applies).

Quotes, backslash escapes and ``"${VAR}"`` expansion turn one raw line into its words; nothing here knows
what a keyword means.  ``_Invalid`` is the one exception every part of the reader raises for a problem on
the line being read: the reader adds the file, the line and the keyword.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Optional

MAX_WORDS = 64  # HAProxy's MAX_LINE_ARGS


class _Invalid(Exception):
    """A problem on the line being read; the reader adds the file, the line and the keyword."""

    def __init__(self, message: str, keyword: Optional[str] = None) -> None:
        super().__init__(message)
        self.message = message
        self.keyword = keyword


_ESCAPES = {" ": " ", "\\": "\\", "#": "#", "'": "'", '"': '"', "$": "$", "r": "\r", "n": "\n", "t": "\t"}
_VARIABLE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def split_words(line: str, environ: Mapping[str, str],
                pseudo: Optional[Mapping[str, str]] = None) -> list[str]:
    """Split one configuration line into words, as HAProxy 2.6's ``parse_line`` does.

    Blanks separate words and ``#`` starts a comment, except inside quotes or after a backslash.
    Single quotes keep everything literally.  Outside them, ``\\ \\\\ \\# \\' \\" \\$`` stand for the
    character, ``\\r \\n \\t \\xHH`` for the control character, and any other backslash stays as is.
    Inside double quotes only, ``$NAME`` and ``${NAME}`` expand from ``environ`` (unset: empty),
    ``${NAME-default}`` gives ``default`` (taken literally, up to the first ``}``) when ``NAME`` is not
    set at all (set but empty stays empty), ``"${NAME[*]}"`` expands to one word per blank-separated part
    of the value, and the pseudo-variables ``.FILE``, ``.LINE`` and ``.SECTION`` come from ``pseudo``.
    An empty word (``""``) ends the line's arguments, as it does for HAProxy's keyword parsers.
    """
    words: list[str] = []
    current: list[str] = []
    in_word = False
    quote: Optional[str] = None
    quote_column = 0
    # Leading white space goes first, CRs included (readcfgfile's isspace()); past it a CR ends the line
    # wherever it is, even within quotes (parse_line), so "a\rb" is an unmatched quote there too.
    i, n = len(line) - len(line.lstrip(" \t\n\v\f\r")), len(line)
    while i < n:
        c = line[i]
        if c == "\r":
            break
        if quote == "'":
            if c == "'":
                quote = None
            else:
                current.append(c)
            i += 1
            continue
        if quote is None and c in " \t\r\n":
            if in_word:
                words.append("".join(current))
                current, in_word = [], False
            i += 1
            continue
        if quote is None and c == "#":
            break
        in_word = True
        if c == "\\":
            following = line[i + 1:i + 2]
            if following in _ESCAPES:
                current.append(_ESCAPES[following])
                i += 2
            elif following == "x":
                digits = line[i + 2:i + 4]
                if not re.fullmatch(r"[0-9a-fA-F]{2}", digits):
                    raise _Invalid(f"truncated or invalid hexadecimal sequence at column {i + 1}")
                current.append(chr(int(digits, 16)))
                i += 4
            else:
                current.append("\\")
                i += 1
            continue
        if c in "'\"":
            if quote is None:
                quote, quote_column = c, i + 1
            elif quote == c:
                quote = None
            else:
                current.append(c)
            i += 1
            continue
        if c == "$" and quote == '"':
            i = _expand_variable(line, i, environ, pseudo or {}, words, current)
            continue
        current.append(c)
        i += 1
    if quote is not None:
        raise _Invalid(f"unmatched quote at column {quote_column}")
    if in_word:
        words.append("".join(current))
    if "" in words:
        words = words[:words.index("")]
    if len(words) > MAX_WORDS:
        raise _Invalid(f"too many words ({len(words)}): HAProxy takes at most {MAX_WORDS} on a line")
    return words


_PSEUDO_VARIABLES = (".FILE", ".LINE", ".SECTION")


def _expand_variable(line: str, i: int, environ: Mapping[str, str], pseudo: Mapping[str, str],
                     words: list[str], current: list[str]) -> int:
    """Expand the variable at ``line[i] == '$'`` into ``current`` (and ``words``); the next index."""
    braced = line[i + 1:i + 2] == "{"
    start = i + 2 if braced else i + 1
    name = next((p for p in _PSEUDO_VARIABLES if line.startswith(p, start)
                 and not _VARIABLE_CHARACTER.match(line, start + len(p))), None)
    if name is None:
        match = _VARIABLE.match(line, start)
        if not match:
            raise _Invalid(f"forbidden first char in environment variable name at column {start + 1}")
        name = match.group()
    end = start + len(name)
    split = False
    value: Optional[str] = pseudo.get(name, "") if name.startswith(".") else environ.get(name)
    if braced:
        if line.startswith("[*]", end):
            split, end = True, end + 3
        if line[end:end + 1] == "-":
            # HAProxy 2.6: a default for a variable that is not set at all, read up to the first '}'.
            close = line.find("}", end)
            if close < 0:
                raise _Invalid(f"unmatched brace in environment variable name at column {start}")
            if value is None:
                value = line[end + 1:close]
            end = close
        if line[end:end + 1] != "}":
            raise _Invalid(f"unmatched brace in environment variable name at column {start}")
        end += 1
    value = value or ""
    if not split:
        current.append(value)
        return end
    parts = value.split()
    for index, part in enumerate(parts):
        if index:
            words.append("".join(current))
            current.clear()
        current.append(part)
    return end


_VARIABLE_CHARACTER = re.compile(r"[A-Za-z0-9_]")
_ADDRESS_VARIABLE_NAME = re.compile(r"[A-Za-z0-9_]*")


def env_expand(text: str, environ: Mapping[str, str]) -> str:
    """Environment variables in an address, as HAProxy's ``env_expand`` reads them for ``str2sa_range``
    (so ``bind ${ADDR}:${PORT}`` works unquoted): ``$NAME`` or ``${NAME}``, unset ones empty.  No
    default values there: in ``${NAME-x}`` the ``-x}`` stays, as in HAProxy."""
    parts: list[str] = []
    i = 0
    while (dollar := text.find("$", i)) >= 0:
        parts.append(text[i:dollar])
        braced = text.startswith("{", dollar + 1)
        start = dollar + 2 if braced else dollar + 1
        end = _ADDRESS_VARIABLE_NAME.match(text, start).end()  # type: ignore[union-attr]
        parts.append(environ.get(text[start:end], ""))
        i = end + 1 if braced and text.startswith("}", end) else end
    parts.append(text[i:])
    return "".join(parts)
