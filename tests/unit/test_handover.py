"""How a worker finds the master's listening sockets: the keys of binds, the ``--inherit`` arguments,
and ``master-worker`` read from ``global``."""

from __future__ import annotations

import pytest

from fastproxy.config import model, parse_text
from fastproxy.errors import ConfigError
from fastproxy.handover import bind_key, parse_inherited


def test_a_key_names_an_address_as_the_listener_binds_it():
    assert bind_key(model.Bind("127.0.0.1", 80)) == "@127.0.0.1:80"
    # "*", "" and 0.0.0.0 are one address, so one socket.
    everywhere = bind_key(model.Bind("0.0.0.0", 80))
    assert bind_key(model.Bind("*", 80)) == bind_key(model.Bind("", 80)) == everywhere
    assert bind_key(model.Bind("::1", 8080)) == "@[::1]:8080"
    assert bind_key(model.Bind("", 80, family="ipv6")) == "ipv6@[::]:80"
    assert bind_key(model.Bind("127.0.0.1", 80, family="ipv4")) != bind_key(model.Bind("127.0.0.1", 80))


def test_inherit_arguments_give_the_descriptor_of_each_key():
    assert parse_inherited(["5=@127.0.0.1:80", "7=ipv6@[::]:443"]) == {"@127.0.0.1:80": 5, "ipv6@[::]:443": 7}


def test_master_worker_in_global():
    assert parse_text("global\n    master-worker\n").global_.master_worker
    assert not parse_text("global\n    nbthread 1\n").global_.master_worker
    cfg = parse_text("global\n    master-worker no-exit-on-failure\n")
    assert cfg.global_.master_worker and "no-exit-on-failure" in str(cfg.warnings[0])
    with pytest.raises(ConfigError, match="only takes 'no-exit-on-failure'"):
        parse_text("global\n    master-worker sometimes\n")


def test_the_systemd_unit_runs_the_master_and_reloads_it_with_sigusr2():
    import shlex
    from pathlib import Path

    from fastproxy.cli import build_parser

    unit = (Path(__file__).resolve().parents[2] / "contrib" / "fastproxy.service").read_text()
    settings = [line.split("=", 1) for line in unit.splitlines() if "=" in line and not line.startswith("#")]
    values = {key: value for key, value in settings if key != "ExecReload"}
    assert values["Type"] == "notify" and values["KillMode"] == "mixed"
    assert [value for key, value in settings if key == "ExecReload"][-1] == "/bin/kill -USR2 $MAINPID"
    start = shlex.split(values["ExecStart"])
    args = build_parser().parse_args(start[1:])
    assert args.command == "run" and args.master_worker and args.files == ["$CONFIG"]
    assert build_parser().parse_args(shlex.split(values["ExecStartPre"])[1:]).command == "check"
