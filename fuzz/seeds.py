"""Seed corpora for the targets that have none in the repository: real PROXY headers, real TLS
ClientHellos, every runtime API command, real requests to the stats page.  ``python3 fuzz/seeds.py``
writes them into fuzz/corpus/<target>/ (the configuration reader's seeds are tests/configs)."""

from __future__ import annotations

import base64
import hashlib
import pathlib
import ssl

from fastproxy.proxyproto import encode_v1, encode_v1_unknown, encode_v2
from fastproxy.runtime_commands import COMMANDS

CORPUS = pathlib.Path(__file__).parent / "corpus"


def client_hello(server_name: str) -> bytes:
    """The first flight of Python's TLS client, as it arrives on the wire."""
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    context.set_alpn_protocols(["h2", "http/1.1"])
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    client = context.wrap_bio(incoming, outgoing, server_hostname=server_name)
    try:
        client.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return outgoing.read()


def seeds() -> dict[str, list[bytes]]:
    auth = b"Authorization: Basic " + base64.b64encode(b"admin:secret") + b"\r\n"
    form = b"s=s1&b=be&action=maint"
    return {
        "proxy": [encode_v1(("192.0.2.1", 56324), ("192.0.2.2", 443)), encode_v1(("::1", 1), ("::2", 2)),
                  encode_v1_unknown(), encode_v2(("192.0.2.1", 1), ("192.0.2.2", 2), tlvs=[(1, b"h2")]),
                  encode_v2(("::1", 1), ("::2", 2)), encode_v2(command="LOCAL")],
        "hello": [client_hello("fuzz.example"), client_hello(".".join(["a" * 60] * 4))],
        "cli": [(" ".join(command.words) + suffix).encode() for command in COMMANDS
                for suffix in ("\n", " be/s1 1\n", " be\n")] + [b"prompt\nshow stat\nshow info json\n"],
        "http": [b"GET /stats;csv HTTP/1.1\r\nHost: x\r\n" + auth + b"\r\n",
                 b"GET /stats HTTP/1.1\r\nHost: x\r\n\r\n", b"GET /healthz HTTP/1.0\r\n\r\n",
                 b"POST /stats HTTP/1.1\r\nHost: x\r\n" + auth + b"Content-Length: %d\r\n\r\n%s" % (
                     len(form), form),
                 b"GET /stats;json;up;norefresh?scope=be HTTP/1.1\r\nHost: x\r\n" + auth + b"\r\n"],
    }


if __name__ == "__main__":
    for target, inputs in seeds().items():
        directory = CORPUS / target
        directory.mkdir(parents=True, exist_ok=True)
        for data in inputs:
            (directory / hashlib.sha1(data).hexdigest()).write_bytes(data)
        print(f"{directory}: {len(inputs)} seeds")
