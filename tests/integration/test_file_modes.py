"""Files the proxy creates get fixed modes whatever the umask it inherits: the pidfile 0644 (HAProxy's
mode), a stats socket's UNIX socket the ``mode`` its line sets and the owner its ``user``/``uid``/
``group``/``gid`` name.  Checked on real processes started with umask 000 (a root shell's careless
``umask 0`` would otherwise make a world-writable pidfile), single-process and master-worker, beside the
real haproxy (``-W``: it writes a pidfile in master-worker or daemon mode only) on the same lines.
"""

from __future__ import annotations

import grp
import os
import pwd
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from ..support import free_port, start_fastproxy, stop, wait_for

HAPROXY = shutil.which("haproxy")
NOBODY = pwd.getpwnam("nobody")
NOGROUP = grp.getgrgid(NOBODY.pw_gid)

CONFIG = """\
global
    pidfile {directory}/proxy.pid
    stats socket {directory}/owned.sock level admin mode 640 user nobody group {group}
    stats socket {directory}/numeric.sock level operator mode 604 uid 4242 gid 4343
    stats socket {directory}/plain.sock level user
defaults
    mode tcp
    timeout connect 2s
    timeout client 10s
    timeout server 10s
listen echo
    bind 127.0.0.1:{port}
    server s1 127.0.0.1:{backend}
"""
FILES = ("proxy.pid", "owned.sock", "numeric.sock", "plain.sock")


def write_config(directory: Path) -> Path:
    directory.mkdir()
    path = directory / "haproxy.cfg"
    path.write_text(CONFIG.format(directory=directory, group=NOGROUP.gr_name, port=free_port(),
                                  backend=free_port()))
    return path


def modes(directory: Path) -> dict[str, tuple[int, int, int]]:
    """Each file's permission bits and owner, once they all exist."""
    wait_for(lambda: all((directory / name).exists() for name in FILES), what="files written")
    found = {}
    for name in FILES:
        info = (directory / name).stat()
        found[name] = (stat.S_IMODE(info.st_mode), info.st_uid, info.st_gid)
    return found


EXPECTED = {
    "proxy.pid": (0o644, os.getuid(), os.getgid()),
    "owned.sock": (0o640, NOBODY.pw_uid, NOGROUP.gr_gid),
    "numeric.sock": (0o604, 4242, 4343),
    "plain.sock": (0o777, os.getuid(), os.getgid()),  # no mode: what bind() gives under umask 000
}


@pytest.mark.skipif(os.geteuid() != 0, reason="giving a socket to another user needs root")
@pytest.mark.parametrize("master_worker", [False, True], ids=["single", "master-worker"])
def test_the_pidfile_and_the_stats_sockets_get_their_modes_and_owners_under_umask_000(
        implementation_env, tmp_path, master_worker):
    directory = tmp_path / "fastproxy"
    cfg = write_config(directory)
    proc = start_fastproxy(["run", *(["-W"] if master_worker else []), "-f", str(cfg)], implementation_env,
                           umask=0)
    try:
        assert modes(directory) == EXPECTED
        pidfile = directory / "proxy.pid"
        assert wait_for(pidfile.read_text, what="the pid written") == f"{proc.pid}\n"
    finally:
        stop(proc)
    assert proc.returncode == 0


@pytest.mark.skipif(os.geteuid() != 0, reason="giving a socket to another user needs root")
@pytest.mark.skipif(HAPROXY is None, reason="haproxy is not installed")
def test_haproxy_gives_the_same_files_the_same_modes_and_owners_under_umask_000(tmp_path):
    directory = tmp_path / "haproxy"
    cfg = write_config(directory)
    proc = subprocess.Popen([HAPROXY, "-W", "-db", "-f", str(cfg)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, umask=0)
    try:
        assert modes(directory) == EXPECTED
    finally:
        stop(proc)


def test_an_existing_pidfile_is_rewritten_with_mode_0644(tmp_path):
    from fastproxy.lifecycle import write_pidfile
    path = tmp_path / "old.pid"
    path.write_text("123456789\n")
    path.chmod(0o666)
    old = os.umask(0o077)
    try:
        write_pidfile(str(path))
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644 and path.read_text() == f"{os.getpid()}\n"
