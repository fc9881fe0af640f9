"""``.if`` / ``.elif`` conditions (HAProxy's cfgcond.c): predicates, integers and ``! && || ( )``.

Evaluated over the environment the reader keeps (``setenv`` and friends change it while reading); the
reader owns the block structure and which lines are skipped.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from .lexer import _Invalid
from .values import decimal

HAPROXY_VERSION = (2, 6, 12)  # the HAProxy whose grammar this reader follows (for .if version_atleast())


MAX_NESTED_BLOCKS = 100  # HAProxy's MAXNESTEDCONDS: the 100th '.if' open at once is refused
MAX_RECURSION = 1024  # HAProxy's MAX_CFG_RECURSION: the levels an expression may take (see below)


def _evaluate_condition(text: str, environ: Mapping[str, str]) -> bool:
    """HAProxy 2.6's ``.if`` expressions (cfgcond.c): predicates, integers, ``! && || ( )``.

    ``text`` is the directive's words joined by spaces, as HAProxy passes them, so quotes are already
    gone: ``streq("a b","a b")`` arrives as ``streq(a b,a b)``.  Predicate arguments end at ``,`` or
    ``)`` and keep their blanks, as HAProxy's ``make_arg_list`` reads them.
    """
    if not text:
        return False  # an empty condition is false
    parser = _ConditionParser(text, environ)
    try:
        result = parser.expression(MAX_RECURSION)
    except RecursionError:  # not reached within MAX_RECURSION (two frames a parenthesis): a safety net
        raise _Invalid(f"unparsable conditional expression '{text}' (nested too deeply)") from None
    parser.skip_blanks()
    if parser.position < len(text):
        raise _Invalid(f"unexpected character '{text[parser.position]}' at the end of conditional "
                       f"expression '{text}'")
    return result


_INTEGER = re.compile(r"[ \t]*[+-]?(0[xX][0-9a-fA-F]+|0[0-7]*|[1-9][0-9]*)")
_PREDICATE_ARITY = {"defined": 1, "feature": 1, "streq": 2, "strneq": 2, "version_atleast": 1,
                    "version_before": 1}


class _ConditionParser:
    """One condition, as cfgcond.c reads it: an OR of ANDs of (negated) terms.

    cfgcond.c recurses on each ``||``, each ``&&`` and each parenthesis, one level of ``maxdepth``
    each (three for a parenthesis: expression, sub-expression, term), and refuses an expression once
    ``MAX_RECURSION`` levels are spent.  The same levels are counted here, but ``&&`` and ``||`` are
    loops and only a parenthesis recurses (two Python frames), so a long chain or the deepest nesting
    HAProxy accepts (about 340 parentheses) stays well within Python's recursion limit."""

    def __init__(self, text: str, environ: Mapping[str, str]) -> None:
        self.text, self.environ, self.position = text, environ, 0

    def skip_blanks(self) -> None:
        while self.position < len(self.text) and self.text[self.position] in " \t":
            self.position += 1

    def at_end(self) -> bool:
        self.skip_blanks()
        return self.position >= len(self.text)

    def expression(self, depth: int) -> bool:
        """``a && b || c``: every term is read (and checked) even when the result is already known."""
        value = False
        while True:  # one sub-expression (an AND of terms) a turn, as cfg_parse_cond_expr's recursion
            if depth <= 0 and not self.at_end():
                raise _Invalid(f"unparsable conditional expression '{self.text[self.position:]}'")
            sub_depth, conjunction = depth - 1, True
            while True:  # as cfg_parse_cond_and's recursion
                if sub_depth <= 0 and not self.at_end():
                    raise _Invalid(f"unparsable conditional sub-expression '{self.text[self.position:]}'")
                conjunction = self.term(sub_depth - 1) and conjunction
                self.skip_blanks()
                if not self.text.startswith("&&", self.position):
                    break
                self.position += 2
                self.skip_blanks()
                sub_depth -= 1
            value = conjunction or value
            if not self.text.startswith("||", self.position):
                return value
            self.position += 2
            self.skip_blanks()
            depth -= 1

    def term(self, depth: int) -> bool:
        self.skip_blanks()
        if self.position >= len(self.text):
            raise _Invalid(f"unparsable conditional expression '{self.text}'")
        if depth <= 0:
            raise _Invalid(f"unparsable conditional expression '{self.text[self.position:]}'")
        negated = False
        while self.text.startswith("!", self.position):
            negated = not negated
            self.position += 1
            self.skip_blanks()
        rest = self.text[self.position:]
        number = _INTEGER.match(rest)
        if number:
            # strtol(.., 0) then "!= 0": only whether a digit is not zero matters, so a number of any
            # length is read as HAProxy reads it (strtol saturates; Python's int() would refuse it).
            self.position += number.end()
            digits = number[1]
            nonzero = (digits[2:] if digits[:2] in ("0x", "0X") else digits).strip("0") != ""
            return nonzero != negated
        if rest.startswith("("):
            self.position += 1
            self.skip_blanks()
            value = self.expression(depth - 1)
            self.skip_blanks()
            if not self.text.startswith(")", self.position):
                raise _Invalid(f"expected ')' after conditional expression '{rest}'")
            self.position += 1
            return value != negated
        name = re.match(r"[^ (]*", rest)[0]  # type: ignore[index]
        if name not in _PREDICATE_ARITY:
            raise _Invalid(f"unparsable conditional expression '{rest}'")
        self.position += len(name)
        return _predicate(name, self.arguments(name), self.environ) != negated

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
    numbers = tuple(decimal(part) for part in re.findall(r"[0-9]+", text))
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
