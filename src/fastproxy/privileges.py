"""``chroot``, ``user``/``uid`` and ``group``/``gid`` from ``global``: applied once the listeners are bound,
as HAProxy does, so a proxy started as root binds privileged ports and then runs unprivileged.

Names are resolved before the chroot (the password and group files are outside it), the chroot comes
before giving up root (it needs root), and the group before the user (setgid needs root too).  A proxy
not started as root cannot change identity: asking it to is an error, as it is for HAProxy, unless it
already runs as the requested user and group.
"""

from __future__ import annotations

import grp
import os
import pwd
from dataclasses import dataclass
from typing import Optional

from .config import model
from .errors import FastproxyError


class PrivilegeError(FastproxyError):
    """The configuration asks for an identity or a chroot this process cannot take."""


@dataclass(frozen=True)
class Identity:
    uid: Optional[int]
    gid: Optional[int]
    chroot: Optional[str]

    @property
    def changes_anything(self) -> bool:
        return self.uid is not None or self.gid is not None or self.chroot is not None


def identity_of(g: model.Global) -> Identity:
    """The uid, gid and chroot ``g`` asks for; a name that does not exist is a PrivilegeError."""
    uid, gid = g.uid, g.gid
    if g.user is not None:
        try:
            uid = pwd.getpwnam(g.user).pw_uid
        except KeyError:
            raise PrivilegeError(f"global 'user': no user named '{g.user}'") from None
    if g.group is not None:
        try:
            gid = grp.getgrnam(g.group).gr_gid
        except KeyError:
            raise PrivilegeError(f"global 'group': no group named '{g.group}'") from None
    return Identity(uid, gid, g.chroot)


def drop(identity: Identity) -> None:
    """Enter the chroot and take the group and user of ``identity``, in that order."""
    if not identity.changes_anything:
        return
    root = os.geteuid() == 0
    if identity.chroot is not None:
        if not root:
            raise PrivilegeError(f"global 'chroot {identity.chroot}': needs to be started as root")
        try:
            os.chroot(identity.chroot)
            os.chdir("/")
        except OSError as exc:
            raise PrivilegeError(f"global 'chroot {identity.chroot}': {exc.strerror}") from None
    if identity.gid is not None and identity.gid != os.getegid():
        if not root:
            raise PrivilegeError(f"global 'group': cannot set gid {identity.gid} (not started as root)")
        os.setgroups([])  # no supplementary group of root's survives
        os.setgid(identity.gid)
    if identity.uid is not None and identity.uid != os.geteuid():
        if not root:
            raise PrivilegeError(f"global 'user': cannot set uid {identity.uid} (not started as root)")
        os.setuid(identity.uid)
