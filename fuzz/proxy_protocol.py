"""atheris target: the PROXY protocol decoder (``fastproxy.proxyproto.parse``).

Property: it never raises and always returns a status; a header it accepts takes no more bytes than it
was given, and what follows the header does not change how the header reads.
"""

import sys

import atheris

with atheris.instrument_imports(include=["fastproxy"]):
    from fastproxy.proxyproto import ProxyStatus, parse


def test_one_input(data: bytes) -> None:
    result = parse(data)
    if result.status not in ProxyStatus:
        raise AssertionError(f"no status: {result!r}")
    if result.status is ProxyStatus.OK:
        if not 0 < result.length <= len(data):
            raise AssertionError(f"a header of {result.length} bytes in {len(data)}")
        if parse(data[:result.length] + b"\r\nmore bytes") != result:
            raise AssertionError("the bytes after the header changed how it reads")


if __name__ == "__main__":
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()
