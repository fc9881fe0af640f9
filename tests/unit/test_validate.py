"""Semantic checks (``fastproxy.config.validate``): a configuration built through the Python API is
checked as a file is, with the same messages, and ``Engine.start`` refuses it before opening anything."""

from __future__ import annotations

import pytest

from fastproxy import Engine
from fastproxy.config import model, parse_text, validate
from fastproxy.errors import ConfigError


PROLOGUE = "defaults\n mode tcp\n timeout connect 1s\n timeout client 1s\n timeout server 1s\n"


def file_errors(text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_text(PROLOGUE + text, filename="t.cfg")
    return [e.message for e in info.value.errors]


def api_errors(config: model.Config) -> list[str]:
    with pytest.raises(ConfigError) as info:
        validate.check(config)
    return [e.message for e in info.value.errors]


def api_config(**frontend) -> model.Config:
    config = model.Config()
    config.backends["be"] = model.Backend("be", servers=[model.Server("s", "127.0.0.1", 1)])
    config.frontends["fe"] = model.Frontend("fe", binds=[model.Bind("127.0.0.1", 0)], **frontend)
    return config


def test_a_missing_backend_gets_the_same_message_from_the_api_as_from_a_file():
    text = "frontend fe\n bind 127.0.0.1:1\n default_backend nowhere\n use_backend gone\n"
    config = api_config(default_backend="nowhere", use_backends=[model.UseBackend("gone")])
    assert api_errors(config) == file_errors(text) == [
        "unable to find required default_backend: 'nowhere' (no backend or listen of that name)",
        "unable to find required use_backend: 'gone' (no backend or listen of that name)"]


def test_the_file_error_names_the_line_and_keyword_the_api_one_the_api():
    with pytest.raises(ConfigError) as info:
        parse_text(PROLOGUE + "frontend fe\n bind :1\n default_backend nowhere\n", filename="t.cfg")
    assert str(info.value) == ("t.cfg:8: 'default_backend': unable to find required default_backend: "
                               "'nowhere' (no backend or listen of that name)")
    with pytest.raises(ConfigError) as info:
        validate.check(api_config(default_backend="nowhere"))
    assert str(info.value) == ("<api>: 'default_backend': unable to find required default_backend: "
                               "'nowhere' (no backend or listen of that name)")


async def test_an_api_built_configuration_with_a_wrong_reference_fails_at_start_before_opening_anything():
    engine = Engine(api_config(default_backend="nowhere"))
    with pytest.raises(ConfigError, match="unable to find required default_backend: 'nowhere'"):
        await engine.start()
    assert engine.pump is None  # no pump, no listener: start stopped at the check


def test_conditions_must_name_acls_of_the_frontend_and_acls_must_compile():
    src = model.Acl("a", model.Sample("src"), ("10.0.0.0/8",))
    condition = model.Condition(negate=False, groups=(((False, "missing"),), ((True, src),)))
    bad = model.Acl("bad", model.Sample("src"), ("300.1.2.3",))
    config = api_config(acls={"bad": [bad]},
                        tcp_request_rules=[model.TcpRequestRule("connection", "reject", condition)])
    assert api_errors(config) == [
        "error detected while parsing ACL 'bad' : '300.1.2.3' is not a valid IPv4 or IPv6 address.",
        "no such ACL : 'missing'."]


@pytest.mark.parametrize("balance, message", [
    (model.Balance("uri"), "unknown balance algorithm 'uri' (expects one of roundrobin, static-rr, "
                           "leastconn, first, source, random, hash)"),
    (model.Balance("source", hash_type="chash"), "unknown hash-type 'chash' (expects one of map-based, "
                                                 "consistent, maglev)"),
    (model.Balance("hash"), "balance hash requires a sample expression."),
    (model.Balance("hash", sample=model.Sample("src", ("lower",))),
     "'balance hash src,lower': converter 'lower' applies to strings, and 'src' is not one"),
    (model.Balance("hash", sample=model.Sample("req.ssl_hello_type")),
     "'balance hash req.ssl_hello_type': fastproxy hashes on the layer-4 samples dst, dst_port, "
     "req.rdp_cookie, req.ssl_sni, src, src_port only"),
    (model.Balance("random", draws=0), "balance random : number of draws must be at least 1."),
    (model.Balance("source", hash_type="consistent", hash_balance_factor=50),
     "'hash-balance-factor' must be 0 or greater than 100."),
])
def test_balancing_settings_are_checked(balance, message):
    config = api_config(default_backend="be")
    config.backends["be"].balance = balance
    assert api_errors(config) == [message]


def test_a_checked_server_without_a_port_to_check_is_an_error_as_in_a_file():
    config = api_config(default_backend="be")
    config.backends["be"].servers = [model.Server("s", "127.0.0.1", 0, check=True),
                                     model.Server("t", "127.0.0.1", 0, check=True, check_port=80)]
    text = "backend be\n server s 127.0.0.1 check\n server t 127.0.0.1 check port 80\n"
    assert api_errors(config) == file_errors(text) == [
        "server 'be/s': has neither service port nor check port (add 'port <n>' for its checks)"]


def test_a_configuration_that_can_run_passes():
    validate.check(api_config(default_backend="be"))
    assert validate.problems(api_config(default_backend="be")) == []
