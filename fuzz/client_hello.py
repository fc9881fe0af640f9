"""atheris target: the ClientHello reader (``fastproxy.sni.parse_client_hello``).

Property: it never raises and always returns a status; INCOMPLETE asks for more bytes than it had, and
a hello read whole reads the same with more bytes after it.
"""

import sys

import atheris

with atheris.instrument_imports(include=["fastproxy"]):
    from fastproxy.sni import HelloStatus, parse_client_hello


def test_one_input(data: bytes) -> None:
    result = parse_client_hello(data)
    if result.status not in HelloStatus:
        raise AssertionError(f"no status: {result!r}")
    if result.status is HelloStatus.INCOMPLETE and result.needed and result.needed <= len(data):
        raise AssertionError(f"incomplete, yet it needs {result.needed} bytes of the {len(data)} it had")
    if result.status is HelloStatus.OK and parse_client_hello(data + b"\x17\x03\x03") != result:
        raise AssertionError("bytes after the hello changed how it reads")


if __name__ == "__main__":
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()
