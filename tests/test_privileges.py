"""``global`` identity settings (``fastproxy.privileges``): what a configuration asks for, and what
cannot be done.  Dropping privileges itself needs root and is left to the CLI tests' subprocesses."""

from __future__ import annotations

import os
import pwd

import pytest

from fastproxy.config import model
from fastproxy.errors import FastproxyError
from fastproxy.privileges import Identity, PrivilegeError, drop, identity_of


def test_a_user_that_does_not_exist_is_a_privilege_error_in_the_error_tree():
    with pytest.raises(PrivilegeError, match="no user named 'no-such-user-here'") as info:
        identity_of(model.Global(user="no-such-user-here"))
    assert isinstance(info.value, FastproxyError)


def test_user_names_are_resolved_to_their_ids():
    root = pwd.getpwuid(0).pw_name
    assert identity_of(model.Global(user=root)) == Identity(uid=0, gid=None, chroot=None)


def test_nothing_asked_changes_nothing():
    identity = identity_of(model.Global())
    assert not identity.changes_anything
    before = (os.geteuid(), os.getegid(), os.getcwd())
    drop(identity)  # a no-op, whoever runs it
    assert (os.geteuid(), os.getegid(), os.getcwd()) == before
