"""atheris target: the runtime API's protocol and commands (``runtime_api.CliSession`` over
``runtime_commands.COMMANDS``), acting on a running engine's real operations.

Property: whatever the bytes, ``receive`` answers without raising (an exception would end the client's
connection unanswered), in interactive mode each complete request gets its answer, and a new session
is still answered afterwards.
"""

import sys

import atheris

with atheris.instrument_imports(include=["fastproxy"]):
    from fastproxy.runtime_api import ADMIN, CliSession
    from fastproxy.runtime_commands import COMMANDS

    from live import LiveEngine

LIVE = LiveEngine()


async def _exchange(data: bytes) -> None:
    session = CliSession(COMMANDS, ADMIN, LIVE.operations)
    session.receive(b"prompt\n")
    session.receive(data)
    session.receive(b"\n")
    fresh = CliSession(COMMANDS, ADMIN, LIVE.operations)
    answer = fresh.receive(b"show cli level\n")
    if answer != b"admin\n\n":
        raise AssertionError(f"a new session is answered {answer!r}")


def test_one_input(data: bytes) -> None:
    LIVE.loop.run_until_complete(_exchange(data))


if __name__ == "__main__":
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()
