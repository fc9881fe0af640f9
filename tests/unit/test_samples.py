"""Layer-4 samples (``fastproxy.samples``): one table of fetches and converters for ACLs, ``balance hash``
and the reader, sans-IO."""

from __future__ import annotations

import pytest

from fastproxy import samples
from fastproxy.acl import ConnInfo
from fastproxy.balance import PickKey
from fastproxy.config import parse_text
from fastproxy.config.model import Sample
from fastproxy.errors import ConfigError


def test_an_expression_is_a_fetch_and_its_converters():
    assert samples.parse("req.ssl_sni,lower,upper") == Sample("req.ssl_sni", ("lower", "upper"))
    assert str(Sample("req.ssl_sni", ("lower",))) == "req.ssl_sni,lower"


@pytest.mark.parametrize("text, message", [
    ("hdr(host)", "fetch method 'hdr(host)' is not supported by fastproxy"),
    ("req.ssl_sni,base64", "converter 'base64' is not supported by fastproxy (only 'lower', 'upper', "
                           "'hex', 'bytes', 'length', 'ipmask', 'set-var', 'unset-var')"),
    ("src,lower", "converter 'lower' applies to strings, and 'src' is not one"),
    ("a(b", "cannot parse the criterion 'a(b'"),
])
def test_what_fastproxy_cannot_evaluate_is_a_sample_error(text, message):
    with pytest.raises(samples.SampleError, match=message.replace("(", r"\(").replace(")", r"\)")):
        samples.parse(text)


def test_the_same_sample_reads_an_acl_connection_and_a_balancer_key():
    read = samples.reader(Sample("req_ssl_sni", ("upper",)))
    assert read(ConnInfo("10.0.0.1", 1, "10.0.0.2", 2, sni="a.example")) == "A.EXAMPLE"
    assert read(PickKey(src="10.0.0.1", sni="b.example")) == "B.EXAMPLE"
    assert read(PickKey()) is None  # no SNI: no value, the converters are not applied
    assert samples.reader(Sample("dst_port"))(PickKey(dst_port=443)) == 443
    assert samples.reader(Sample("always_true"))(PickKey()) is True


def test_only_the_layer_4_address_and_sni_samples_can_be_hashed():
    assert samples.HASHABLE == {"src", "dst", "src_port", "dst_port", "req.ssl_sni", "req_ssl_sni",
                                "req.rdp_cookie", "req_rdp_cookie", "rdp_cookie"}
    with pytest.raises(samples.SampleError, match="fastproxy hashes on the layer-4 samples"):
        samples.check_hashable(Sample("req.ssl_hello_type"))


def test_a_converter_balance_hash_cannot_apply_is_an_error_on_its_line():
    with pytest.raises(ConfigError) as info:
        parse_text("backend be\n balance hash src,lower\n server s 127.0.0.1:1\n", filename="t.cfg")
    (error,) = info.value.errors
    assert (error.file, error.line, error.keyword) == ("t.cfg", 2, "balance")
    assert error.message == ("'balance hash src,lower': converter 'lower' applies to strings, and 'src' is "
                             "not one")
