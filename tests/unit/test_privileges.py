"""``global`` identity settings (``fastproxy.privileges``): what a configuration asks for, and what
cannot be done.  Dropping privileges itself needs root and is left to the CLI tests' subprocesses."""

from __future__ import annotations

import os
import pwd

import pytest

from fastproxy.config import model, parse_text
from fastproxy.errors import FastproxyError
from fastproxy.privileges import Identity, PrivilegeError, drop, identity_of


def test_a_user_that_does_not_exist_is_a_privilege_error_in_the_error_tree():
    with pytest.raises(PrivilegeError, match="no user named 'no-such-user-here'") as info:
        identity_of(model.Global(user="no-such-user-here"))
    assert isinstance(info.value, FastproxyError)


def test_user_names_are_resolved_to_their_ids():
    root = pwd.getpwuid(0).pw_name
    assert identity_of(model.Global(user=root)) == Identity(uid=0, gid=None, chroot=None)


def test_numeric_ids_are_taken_as_they_are_and_names_win_over_them():
    root = pwd.getpwuid(0).pw_name
    assert identity_of(model.Global(uid=1234, gid=5678)) == Identity(uid=1234, gid=5678, chroot=None)
    assert identity_of(model.Global(uid=1234, user=root)).uid == 0


def test_uid_and_gid_lines_set_the_typed_fields():
    config = parse_text("global\n uid 1234\n gid 5678\n")
    assert (config.global_.uid, config.global_.gid) == (1234, 5678)
    assert identity_of(config.global_) == Identity(uid=1234, gid=5678, chroot=None)


def test_nothing_asked_changes_nothing():
    identity = identity_of(model.Global())
    assert not identity.changes_anything
    before = (os.geteuid(), os.getegid(), os.getcwd())
    drop(identity)  # a no-op, whoever runs it
    assert (os.geteuid(), os.getegid(), os.getcwd()) == before
