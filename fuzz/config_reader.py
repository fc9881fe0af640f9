"""atheris target: the configuration reader (``fastproxy.config``).

Property: ``parse_text`` returns a Config or raises ConfigError whose every error names the file and a
line, never anything else; libFuzzer's ``-timeout`` bounds the time an input may take.  Seed it with the
corpus in tests/configs (see README.md).
"""

import sys

import atheris

with atheris.instrument_imports(include=["fastproxy"]):
    from fastproxy.config import parse_text
    from fastproxy.errors import ConfigError


def test_one_input(data: bytes) -> None:
    text = data.decode("utf-8", "surrogateescape")
    try:
        parse_text(text, "fuzzed.cfg", environ={"HOME": "/root"})
    except ConfigError as exc:
        lines = text.count("\n") + 1
        for error in exc.errors:
            if error.file != "fuzzed.cfg" or not error.line or not 1 <= error.line <= lines + 1:
                raise AssertionError(f"an error without its file and line: {error!r}") from None


if __name__ == "__main__":
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()
