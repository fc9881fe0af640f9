"""The fleet's keys: a server's JSON as etcd holds it, read strictly (sans-IO)."""

from __future__ import annotations

import pytest

from fastproxy.fleet import FleetError, Member, backend_prefix, instances_prefix, parse_endpoint


def test_a_member_round_trips_through_its_json():
    member = Member("web-1", "10.0.0.7", 8080, weight=3, state="drain")
    assert Member.from_json("web-1", member.to_json()) == member
    assert Member.from_json("v6", b'{"address": "::1", "port": 80}') == Member("v6", "::1", 80, 1, "ready")


@pytest.mark.parametrize(("value", "message"), [
    (b"not json", "not JSON"),
    (b"[1]", "a JSON object is expected"),
    (b'{"address": "10.0.0.1"}', "'address' and 'port' are required"),
    (b'{"address": "web", "port": 80}', "the address is an IPv4 or IPv6 address"),
    (b'{"address": "10.0.0.1", "port": 0}', "the port is an integer from 1 to 65535"),
    (b'{"address": "10.0.0.1", "port": "80"}', "the port is an integer from 1 to 65535"),
    (b'{"address": "10.0.0.1", "port": 80, "weight": 257}', "the weight is an integer from 0 to 256"),
    (b'{"address": "10.0.0.1", "port": 80, "state": "up"}', "the state is one of ready, drain, maint"),
    (b'{"address": "10.0.0.1", "port": 80, "wieght": 2}', "unknown fields wieght"),
])
def test_a_bad_member_is_refused_with_what_is_wrong(value, message):
    with pytest.raises(FleetError, match=message):
        Member.from_json("s1", value)


def test_names_are_words_without_slashes():
    with pytest.raises(FleetError, match="a server name"):
        Member("a/b", "10.0.0.1", 80)


def test_keys_and_endpoints():
    assert backend_prefix("/fastproxy/", "app") == "/fastproxy/backends/app/"
    assert instances_prefix("/x/") == "/x/instances/"
    assert parse_endpoint("http://127.0.0.1:2379") == ("127.0.0.1", 2379)
    assert parse_endpoint("etcd.local") == ("etcd.local", 2379)
    assert parse_endpoint("[::1]:2380") == ("::1", 2380)
    with pytest.raises(FleetError, match="HOST:PORT"):
        parse_endpoint("127.0.0.1:http")
