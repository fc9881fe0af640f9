"""Variables (HAProxy's vars.c): ``set-var``, ``set-var-fmt``, ``unset-var`` and the ``var()`` fetch.

A variable's name starts with its scope, which says how long it lives (HAProxy 2.6, in TCP mode):

- ``proc.``: the whole process, shared by every connection; ``set-var`` in ``global`` sets one at
  start.  Every ``proc.`` name the configuration writes exists from the start, unset (so
  ``ifexists`` is always true for them, as the manual says).
- ``sess.``: the client connection, from its first rule on.
- ``txn.``: the stream, which in HAProxy only begins after the ``tcp-request connection`` and
  ``session`` rules: those rules cannot set one (nothing happens, as in HAProxy).
- ``req.`` and ``res.``: one store HAProxy hands from request to response processing: ``req.``
  variables live while the request is processed (content rules, ``use_backend``, the backend's
  rules) and are gone once the server answers (the log line no longer sees them); ``res.`` ones
  only exist during response processing, which fastproxy's rules never reach.
- ``check.``: a health check's; a client connection has none.  A check (``CheckVariables``) sees
  its own ``check.`` and ``sess.`` variables, both new at each check (HAProxy gives every check a
  session of its own), and the process's; it has no stream, so no ``txn.``, ``req.`` or ``res.``.

Values keep the type of the sample they were set from (``samples``' types: an address, an integer,
a string, bytes, a boolean); ``var(<name>[,<default>])`` gives the value, or the default as a string,
or nothing.  Sans-IO: plain data, one ``Variables`` per connection over one ``ProcessVariables``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Optional

__all__ = ["CONDITIONS", "SCOPES", "CheckVariables", "ProcessVariables", "VariableError", "VariableName",
           "Variables", "parse_name", "sample_type"]

SCOPES = ("proc", "sess", "txn", "req", "res", "check")
STREAM_SCOPES = frozenset({"txn", "req", "res"})  # not there before the stream begins
CONDITIONS = ("ifexists", "ifnotexists", "ifempty", "ifnotempty", "ifset", "ifnotset", "ifgt", "iflt")
_NAME = re.compile(r"[A-Za-z0-9_.]*")
UNSET = object()  # a proc variable the configuration names, never set (HAProxy's SMP_T_ANY)


class VariableError(ValueError):
    """A variable name or condition HAProxy refuses; the message is HAProxy's."""


@dataclass(frozen=True)
class VariableName:
    scope: str
    name: str

    def __str__(self) -> str:
        return f"{self.scope}.{self.name}"


def parse_name(text: str) -> VariableName:
    """``txn.backend`` -> ``VariableName("txn", "backend")``, checked as vars_hash_name() checks it."""
    if not text:
        raise VariableError("Empty variable name cannot be accepted")
    scope, dot, name = text.partition(".")
    if not dot or scope not in SCOPES or not name:
        raise VariableError(f"invalid variable name '{text}'. A variable name must be start by its scope. "
                            "The scope can be 'proc', 'sess', 'txn', 'req', 'res' or 'check'")
    valid = _NAME.match(name)
    assert valid is not None
    if valid.end() < len(name):
        raise VariableError(f"invalid syntax at char '{name[valid.end():]}'")
    return VariableName(scope, name)


def parse_conditions(words: list[str]) -> frozenset[str]:
    """The ``set-var(<name>,<cond>...)`` conditions, checked."""
    for word in words:
        if word not in CONDITIONS:
            raise VariableError(f'unknown condition "{word}"')
    return frozenset(words)


def sample_type(value: Any) -> str:
    """The type of a value without a known one (another variable's): as ``samples`` spells them."""
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, bytes):
        return "bin"
    return "str"


class ProcessVariables:
    """The ``proc.`` variables of one running configuration."""

    __slots__ = ("values",)

    def __init__(self, initial: Optional[dict[str, tuple[str, Any]]] = None) -> None:
        # name -> (type, value), or UNSET for a name the configuration writes, not set yet
        self.values: dict[str, Any] = dict(initial or {})


class Variables:
    """The variables one client connection sees: its own scopes over the process's."""

    __slots__ = ("proc", "sess", "txn", "reqres", "reqres_scope")

    def __init__(self, proc: Optional[ProcessVariables] = None) -> None:
        self.proc = proc if proc is not None else ProcessVariables()
        self.sess: dict[str, tuple[str, Any]] = {}
        self.txn: dict[str, tuple[str, Any]] = {}
        self.reqres: dict[str, tuple[str, Any]] = {}
        self.reqres_scope = "req"  # HAProxy's vars_reqres: the request's, then the response's

    def _store(self, scope: str, phase: str) -> Optional[dict[str, Any]]:
        """Where a scope's variables are for a rule of ``phase`` (None: not there, get_vars() fails)."""
        if scope == "proc":
            return self.proc.values
        if scope == "sess":
            return self.sess
        if scope in STREAM_SCOPES and phase in ("connection", "session"):
            return None
        if scope == "txn":
            return self.txn
        if scope in ("req", "res"):
            return self.reqres if scope == self.reqres_scope else None
        return None  # check.: a health check's only

    def get(self, variable: VariableName, phase: str = "content") -> Optional[tuple[str, Any]]:
        """(type, value), or None when it is not set."""
        store = self._store(variable.scope, phase)
        found = store.get(variable.name) if store is not None else None
        return None if found is None or found is UNSET else found

    def set(self, variable: VariableName, kind: str, value: Any, conditions: frozenset[str] = frozenset(),
            phase: str = "content") -> bool:
        """var_set(): store ``value`` of type ``kind`` unless a condition says no; whether it did."""
        store = self._store(variable.scope, phase)
        if store is None:
            return False
        exists = variable.name in store or variable.scope == "proc"  # proc names exist from the start
        if ("ifnotexists" in conditions and exists) or ("ifexists" in conditions and not exists):
            return False
        if not exists:  # created, unset, whatever the conditions below say (as var_set() does)
            store[variable.name] = UNSET
        previous = store.get(variable.name)
        is_set = previous is not None and previous is not UNSET
        held = previous if is_set else None
        if ("ifset" in conditions and not is_set) or ("ifnotset" in conditions and is_set):
            return False
        if kind in ("str", "bin"):
            if ("ifempty" in conditions and value) or ("ifnotempty" in conditions and not value):
                return False
        elif "ifempty" in conditions:
            return False  # a scalar is never empty
        if kind == "int" and held is not None and held[0] == "int":
            if "ifgt" in conditions and not held[1] > value:
                return False
            if "iflt" in conditions and not held[1] < value:
                return False
        store[variable.name] = (kind, value)
        return True

    def unset(self, variable: VariableName, phase: str = "content") -> None:
        """var_unset(): gone (a ``proc.`` variable stays known, unset)."""
        store = self._store(variable.scope, phase)
        if store is None or variable.name not in store:
            return
        if variable.scope == "proc":
            store[variable.name] = UNSET
        else:
            del store[variable.name]

    def response_started(self) -> None:
        """The server's side began (HAProxy prunes the request's variables for the response's)."""
        self.reqres.clear()
        self.reqres_scope = "res"


class CheckVariables(Variables):
    """The variables of one health check: ``check.`` and ``sess.`` of its own, the process's ``proc.``."""

    __slots__ = ("check",)

    def __init__(self, proc: Optional[ProcessVariables] = None) -> None:
        super().__init__(proc)
        self.check: dict[str, tuple[str, Any]] = {}

    def _store(self, scope: str, phase: str) -> Optional[dict[str, Any]]:
        if scope == "check":
            return self.check
        if scope in ("proc", "sess"):
            return super()._store(scope, phase)
        return None  # no stream in a check: no txn., req. or res.
