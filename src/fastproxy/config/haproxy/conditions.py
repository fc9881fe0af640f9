"""``.if`` / ``.elif`` conditions (HAProxy's cfgcond.c): predicates, integers and ``! && || ( )``.

Evaluated over the environment the reader keeps (``setenv`` and friends change it while reading); the
reader owns the block structure and which lines are skipped.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from .lexer import _Invalid

HAPROXY_VERSION = (2, 6, 12)  # the HAProxy whose grammar this reader follows (for .if version_atleast())


def _evaluate_condition(text: str, environ: Mapping[str, str]) -> bool:
    """HAProxy 2.6's ``.if`` expressions (cfgcond.c): predicates, integers, ``! && || ( )``.

    ``text`` is the directive's words joined by spaces, as HAProxy passes them, so quotes are already
    gone: ``streq("a b","a b")`` arrives as ``streq(a b,a b)``.  Predicate arguments end at ``,`` or
    ``)`` and keep their blanks, as HAProxy's ``make_arg_list`` reads them.
    """
    if not text:
        return False  # an empty condition is false
    parser = _ConditionParser(text, environ)
    result = parser.expression()
    parser.skip_blanks()
    if parser.position < len(text):
        raise _Invalid(f"unexpected character '{text[parser.position]}' at the end of conditional "
                       f"expression '{text}'")
    return result


_INTEGER = re.compile(r"[ \t]*[+-]?(0[xX][0-9a-fA-F]+|0[0-7]*|[1-9][0-9]*)")
_PREDICATE_ARITY = {"defined": 1, "feature": 1, "streq": 2, "strneq": 2, "version_atleast": 1,
                    "version_before": 1}


class _ConditionParser:
    """Recursive descent over one condition, as cfgcond.c: OR of ANDs of (negated) terms."""

    def __init__(self, text: str, environ: Mapping[str, str]) -> None:
        self.text, self.environ, self.position = text, environ, 0

    def skip_blanks(self) -> None:
        while self.position < len(self.text) and self.text[self.position] in " \t":
            self.position += 1

    def expression(self) -> bool:
        value = self.conjunction()
        self.skip_blanks()
        if self.text.startswith("||", self.position):
            self.position += 2
            self.skip_blanks()
            return self.expression() or value
        return value

    def conjunction(self) -> bool:
        value = self.term()
        self.skip_blanks()
        if self.text.startswith("&&", self.position):
            self.position += 2
            self.skip_blanks()
            return self.conjunction() and value
        return value

    def term(self) -> bool:
        self.skip_blanks()
        if self.position >= len(self.text):
            raise _Invalid(f"unparsable conditional expression '{self.text}'")
        negated = False
        while self.text.startswith("!", self.position):
            negated = not negated
            self.position += 1
            self.skip_blanks()
        return self.positive_term() != negated

    def positive_term(self) -> bool:
        rest = self.text[self.position:]
        number = _INTEGER.match(rest)
        if number:
            self.position += number.end()
            digits = number[1]  # strtol(.., 0): hexadecimal, octal or decimal
            base = 16 if digits[:2] in ("0x", "0X") else 8 if digits.startswith("0") else 10
            return int(digits[2:] if base == 16 else digits, base) != 0
        if rest.startswith("("):
            self.position += 1
            self.skip_blanks()
            value = self.expression()
            self.skip_blanks()
            if not self.text.startswith(")", self.position):
                raise _Invalid(f"expected ')' after conditional expression '{rest}'")
            self.position += 1
            return value
        name = re.match(r"[^ (]*", rest)[0]  # type: ignore[index]
        if name not in _PREDICATE_ARITY:
            raise _Invalid(f"unparsable conditional expression '{rest}'")
        self.position += len(name)
        return _predicate(name, self.arguments(name), self.environ)

    def arguments(self, name: str) -> list[str]:
        wanted = _PREDICATE_ARITY[name]
        args: list[str] = []
        if self.text.startswith("(", self.position):
            close = self.text.find(")", self.position)
            if close < 0:
                raise _Invalid(f"expected ')' before '{self.text[self.position + 1:]}' in argument "
                               f"{wanted} of predicate '{name}' used in conditional expression")
            args = self.text[self.position + 1:close].split(",")
            self.position = close + 1
        if len(args) < wanted:
            raise _Invalid(f"missing arguments (got {len(args)}/{wanted}), type 'string' expected in "
                           f"argument {len(args) + 1} of predicate '{name}' used in conditional expression")
        if len(args) > wanted:
            raise _Invalid(f"expected ')' before ',{','.join(args[wanted:])})' in argument {wanted} of "
                           f"predicate '{name}' used in conditional expression")
        return args


@dataclass
class _Block:
    """One ``.if`` block being read."""

    active: bool  # the lines of its current branch are read
    taken: bool  # a branch was chosen (or none can be): the later ones are skipped
    seen_else: bool = False


def _version(text: str) -> tuple[int, ...]:
    """A version's numbers, padded with zeros as HAProxy pads missing components."""
    numbers = tuple(int(part) for part in re.findall(r"[0-9]+", text))
    return (numbers + (0,) * len(HAPROXY_VERSION))[:max(len(numbers), len(HAPROXY_VERSION))]


def _predicate(name: str, args: list[str], environ: Mapping[str, str]) -> bool:
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
