"""Every field of the configuration model is acted on by the runtime, or is on a commented list of what
is only recorded.

A field the reader fills and nothing outside ``config/`` reads is a keyword read and then silently
dropped (``bind ... maxconn`` and ``hash-type ... <function>`` were).  Reads are found by type with mypy
(``tests/unit/mypy_model_reads.py``), not by name: ``server.maxconn`` is no read of ``Bind.maxconn``.
"""

from __future__ import annotations

import dataclasses
import inspect
import os
import subprocess
import sys
from pathlib import Path

import pytest

from fastproxy.config import model

import mypy  # noqa: F401  (the model's readers are found with mypy: in the test extra)

SOURCE = Path(__file__).resolve().parents[2] / "src" / "fastproxy"
PLUGIN = Path(__file__).resolve().parent / "mypy_model_reads.py"

# Fields nothing outside config/ reads, and why that is right.  Fields of type Location (where a
# setting came from, for messages) are not listed: they are never settings.  A field leaving this list
# because something now reads it must leave the list too (the second test says so).
RECORDED_ONLY = {
    "Global.external_check": "checked by the reader: 'option external-check' requires it (HAProxy's error)",
    "Acl.name": "ACLs are looked up by their key in Frontend.acls; the name is for messages",
    "Backend.options": "values recorded and not acted on (splice-*, description, "
                       "redispatch-interval, which the reader warns about)",
    "Frontend.options": "values recorded and not acted on (splice-*, description)",
    "Balance.hash_function": "warned by the reader: fastproxy hashes with XXH64",
    "Bind.maxconn": "warned by the reader: the frontend's and the global maxconn apply",
    "Global.log_targets": "'log global' copies them into the proxies' log_targets, which the runtime reads",
    "Global.reuseport": "the reader copies it into every Bind.reuseport, which server.open_listener reads",
    "Global.bind_tls": "the reader folds it into every Bind.tls (TlsOptions.over), which tls.BindTls reads",
    "Global.server_tls": "the reader folds it into every Server.tls, which tls.ServerTls reads",
    "Global.crt_base": "the reader joins it to relative crt names, which the TLS contexts load",
    "Global.ca_base": "the reader joins it to relative ca-file names, which the TLS contexts load",
    "StickTable.peers": "warned by the reader: fastproxy does not synchronise tables with peers",
    "Warning_.keyword": "the reader's output, printed through str(warning)",
    "Warning_.message": "the reader's output, printed through str(warning)",
}


def model_fields() -> list[str]:
    return [f"{name}.{field.name}"
            for name, cls in inspect.getmembers(model, inspect.isclass)
            if dataclasses.is_dataclass(cls) and cls.__module__ == model.__name__
            for field in dataclasses.fields(cls) if "Location" not in str(field.type)]


@pytest.fixture(scope="module")
def runtime_reads(tmp_path_factory) -> set[str]:
    """The model fields read in src/fastproxy outside config/ (mypy over the whole source tree)."""
    if not SOURCE.is_dir():
        raise AssertionError("the tests must run from a source checkout to read the sources")
    tmp = tmp_path_factory.mktemp("mypy")
    reads, ini = tmp / "reads.txt", tmp / "mypy.ini"
    reads.touch()
    ini.write_text(f"[mypy]\nplugins = {PLUGIN}\ncheck_untyped_defs = True\nignore_missing_imports = True\n")
    # A fresh cache: mypy skips the modules it has cached, and their reads with them.
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--config-file", str(ini), "--cache-dir", str(tmp / "cache"),
         "--no-error-summary", str(SOURCE)],
        cwd=SOURCE.parents[1], env={**os.environ, "FASTPROXY_MODEL_READS": str(reads)},
        capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode in (0, 1), result.stdout + result.stderr  # 1: type errors, not our business
    config = str(SOURCE / "config")
    found = set()
    for line in reads.read_text().splitlines():
        field, path = line.split(" ", 1)
        if not str((SOURCE.parents[1] / path).resolve()).startswith(config):
            found.add(field)
    assert "Server.weight" in found, "the plugin recorded nothing: is mypy's attribute hook still called?"
    return found


def test_every_model_field_is_read_by_the_runtime_or_listed_as_recorded_only(runtime_reads):
    unread = [field for field in model_fields() if field not in runtime_reads and field not in RECORDED_ONLY]
    assert not unread, ("read by no runtime module and not in RECORDED_ONLY: act on them, or warn in the "
                        f"reader and list them with the reason: {unread}")


def test_the_recorded_only_list_names_fields_the_runtime_indeed_does_not_read(runtime_reads):
    fields = set(model_fields())
    assert not set(RECORDED_ONLY) - fields, "listed fields that are not model fields"
    assert not set(RECORDED_ONLY) & runtime_reads, "listed fields the runtime reads now: unlist them"
