"""``.if`` / ``.elif`` conditions (HAProxy's cfgcond.c): predicates, integers and ``! && || ( )``.

Evaluated over the environment the reader keeps (``setenv`` and friends change it while reading); the
reader owns the block structure and which lines are skipped.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from .lexer import _Invalid

HAPROXY_VERSION = (2, 6)  # the HAProxy whose grammar this reader follows (for .if version_atleast())


def _evaluate_condition(text: str, environ: Mapping[str, str]) -> bool:
    """HAProxy 2.6's ``.if`` expressions: predicates, integers, ``! && || ( )``."""
    tokens = re.findall(r"\s*(\|\||&&|!|\(|\)|[A-Za-z_]+\([^)]*\)|[^\s()!&|]+)", text)
    if "".join(t.strip() for t in tokens) != re.sub(r"\s+", "", text):
        raise _Invalid(f"cannot parse the condition '{text}'")
    position = 0

    def term() -> bool:
        nonlocal position
        if position >= len(tokens):
            raise _Invalid(f"missing term in the condition '{text}'")
        token = tokens[position].strip()
        position += 1
        if token == "!":
            return not term()
        if token == "(":
            value = expression()
            if position >= len(tokens) or tokens[position].strip() != ")":
                raise _Invalid(f"missing ')' in the condition '{text}'")
            position += 1
            return value
        call = re.fullmatch(r"([A-Za-z_]+)\(([^)]*)\)", token)
        if call:
            return _predicate(call[1], [a.strip() for a in call[2].split(",")] if call[2] else [], environ)
        if re.fullmatch(r"-?[0-9]+", token):
            return int(token) != 0
        raise _Invalid(f"unparsable term '{token}' in the condition '{text}'")

    def conjunction() -> bool:
        nonlocal position
        value = term()
        while position < len(tokens) and tokens[position].strip() == "&&":
            position += 1
            value = term() and value
        return value

    def expression() -> bool:
        nonlocal position
        value = conjunction()
        while position < len(tokens) and tokens[position].strip() == "||":
            position += 1
            value = conjunction() or value
        return value

    if not tokens:
        return False
    result = expression()
    if position != len(tokens):
        raise _Invalid(f"unexpected '{tokens[position].strip()}' in the condition '{text}'")
    return result


@dataclass
class _Block:
    """One ``.if`` block being read."""

    active: bool  # the lines of its current branch are read
    taken: bool  # a branch was chosen (or none can be): the later ones are skipped
    seen_else: bool = False


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"[0-9]+", text))


def _predicate(name: str, args: list[str], environ: Mapping[str, str]) -> bool:
    def unquote(text: str) -> str:
        return text[1:-1] if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"" else text

    args = [unquote(arg) for arg in args]
    if name == "defined" and len(args) == 1:
        return args[0] in environ
    if name == "feature" and len(args) == 1:
        return False  # fastproxy is not built with HAProxy's optional features
    if name in ("streq", "strneq") and len(args) == 2:
        return (args[0] == args[1]) == (name == "streq")
    if name == "version_atleast" and len(args) == 1:
        return HAPROXY_VERSION >= _version(args[0])
    if name == "version_before" and len(args) == 1:
        return HAPROXY_VERSION < _version(args[0])
    raise _Invalid(f"unknown or misused predicate '{name}({', '.join(args)})'")
