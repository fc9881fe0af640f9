"""The variable store (``fastproxy.variables``): names, scopes and set-var's conditions as HAProxy's
vars.c has them."""

from __future__ import annotations

import pytest

from fastproxy.variables import ProcessVariables, VariableError, Variables, parse_conditions, parse_name


def test_names_start_with_their_scope():
    assert str(parse_name("txn.a.b_1")) == "txn.a.b_1"
    with pytest.raises(VariableError, match="must be start by its scope"):
        parse_name("foo")
    with pytest.raises(VariableError, match="invalid syntax at char '-b'"):
        parse_name("sess.a-b")
    with pytest.raises(VariableError, match='unknown condition "bogus"'):
        parse_conditions(["ifset", "bogus"])


def test_stream_scopes_are_not_there_before_the_stream():
    variables = Variables()
    for scope in ("txn", "req", "res"):
        assert not variables.set(parse_name(f"{scope}.x"), "int", 1, phase="session")
    assert variables.set(parse_name("sess.x"), "int", 1, phase="connection")
    assert variables.get(parse_name("sess.x")) == ("int", 1)


def test_request_variables_are_gone_once_the_response_starts():
    variables = Variables()
    assert variables.set(parse_name("req.x"), "str", "a")
    assert not variables.set(parse_name("res.x"), "str", "b")  # only during response processing
    variables.response_started()
    assert variables.get(parse_name("req.x")) is None
    assert variables.set(parse_name("res.x"), "str", "b")


def test_conditions():
    variables = Variables()
    name = parse_name("txn.n")
    assert not variables.set(name, "int", 1, frozenset({"ifexists"}))
    assert not variables.set(name, "int", 1, frozenset({"ifset"}))  # created unset, as var_set() does
    assert variables.set(name, "int", 1, frozenset({"ifexists", "ifnotset"}))
    assert not variables.set(name, "int", 2, frozenset({"ifnotexists"}))
    assert not variables.set(name, "int", 5, frozenset({"ifgt"}))  # 1 is not greater than 5
    assert variables.set(name, "int", 0, frozenset({"ifgt"}))
    assert not variables.set(name, "int", 7, frozenset({"ifempty"}))  # a scalar is never empty
    assert not variables.set(name, "str", "", frozenset({"ifnotempty"}))
    assert variables.get(name) == ("int", 0)
    variables.unset(name)
    assert variables.get(name) is None


def test_process_variables_are_shared_and_always_exist():
    proc = ProcessVariables({"n": ("int", 5)})
    first, second = Variables(proc), Variables(proc)
    assert first.set(parse_name("proc.n"), "int", 9)
    assert second.get(parse_name("proc.n")) == ("int", 9)
    assert second.set(parse_name("proc.new"), "int", 1, frozenset({"ifexists"}))  # known from the file
    second.unset(parse_name("proc.n"))
    assert first.get(parse_name("proc.n")) is None
