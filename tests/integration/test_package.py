"""The package as a user gets it: build an sdist and a wheel, install the wheel into a fresh virtual
environment, and proxy a real connection through its ``fastproxy run``."""

from __future__ import annotations

import os
import pathlib
import shutil
import signal
import socket
import subprocess
import sys
import venv

import pytest

from ..support import EchoThread, echo_listen, exchange_line, free_port, wait_listening


ROOT = pathlib.Path(__file__).resolve().parents[2]


# The build compiles both extensions and the cffi bindings (about 50 s of CPU, in an isolated build
# environment pip fills first): on a 2-core machine shared with other runs, 3 to 6 times that of wall
# time, past pytest-timeout's 300 s default.
@pytest.mark.timeout(900)
def test_built_wheel_installs_and_proxies(tmp_path):
    if not (ROOT / "pyproject.toml").exists():
        raise AssertionError("the tests must run from a source checkout to build the package")
    source = tmp_path / "src"
    # Build from a copy of the tracked tree, never from a developer's build leftovers.
    files = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    for name in files.split():
        target = source / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if (ROOT / name).exists():
            shutil.copy2(ROOT / name, target)
    dist = tmp_path / "dist"
    # What a user builds: with the extensions, whatever this test run asked of the tests' imports.
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "FASTPROXY_NO_EXTENSIONS")}
    subprocess.run([sys.executable, "-m", "build", "--outdir", str(dist), str(source)], check=True,
                   capture_output=True, timeout=600, env=env)
    wheels = list(dist.glob("fastproxy-*.whl"))
    assert len(wheels) == 1 and list(dist.glob("fastproxy-*.tar.gz"))
    assert "-cp3" in wheels[0].name  # a platform wheel: the extensions are in it

    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    python = env_dir / "bin" / "python"
    # Dependencies (uvloop, cffi) come from the interpreter running the tests, a virtual environment or
    # not: its site directories go in a .pth (``system_site_packages`` would see the base interpreter's,
    # without what an active venv installed).  The venv's own site-packages, where the wheel goes, stays
    # first on the path.
    purelib = "import sysconfig; print(sysconfig.get_paths()['purelib'])"
    inner_site = subprocess.run([str(python), "-c", purelib], capture_output=True, text=True,
                                check=True).stdout.strip()
    outer_sites = [p for p in sys.path if p.endswith(("site-packages", "dist-packages")) and os.path.isdir(p)]
    pathlib.Path(inner_site, "outer-environment.pth").write_text("".join(p + "\n" for p in outer_sites))
    subprocess.run([str(python), "-m", "pip", "install", "-q", "--no-deps", "--force-reinstall",
                    str(wheels[0])], check=True, timeout=300)
    version = subprocess.run([str(env_dir / "bin" / "fastproxy"), "version"], env=env, capture_output=True,
                             text=True, check=True, cwd=tmp_path).stdout
    assert "cython data plane" in version

    # A file on a port of its own (the embedded default's 8080 is shared by every run on the machine).
    backend, address = EchoThread(), ("127.0.0.1", free_port())
    cfg = tmp_path / "haproxy.cfg"
    cfg.write_text(echo_listen(address[1], backend.port))
    proc = subprocess.Popen([str(env_dir / "bin" / "fastproxy"), "run", "-f", str(cfg)], env=env,
                            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        wait_listening(address, proc)
        with socket.create_connection(address, timeout=5) as sock:
            assert exchange_line(sock, b"from the wheel\n") == b"from the wheel\n"
    finally:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=15) == 0
        backend.close()
