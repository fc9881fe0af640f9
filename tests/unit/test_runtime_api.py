"""The runtime API's protocol as HAProxy 2.6's cli.c speaks it, sans-IO (``runtime_api.CliSession``):
requests cut on newlines and unescaped semicolons, one request per connection unless ``prompt``,
levels lowered by ``operator``/``user``, HAProxy's texts for what is refused or unknown, and what
bad input does.  The answers compared with the real haproxy live in tests/test_stats_socket.py."""

from __future__ import annotations

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from fastproxy.runtime_api import (ADMIN, OPERATOR, USER, CliSession, find_command, split_request,
                                   usage_message)
from fastproxy.runtime_commands import COMMANDS

from ..support import cli_requests


def session(level: int = ADMIN) -> CliSession:
    return CliSession(COMMANDS, level)


def test_one_request_is_answered_then_the_connection_ends():
    s = session()
    assert s.receive(b"show cli level\n") == b"admin\n\n"
    assert s.closed


def test_requests_sent_together_are_all_answered():
    s = session()
    assert s.receive(b"show cli level\nshow cli level\n") == b"admin\n\nadmin\n\n"
    assert s.closed


def test_semicolons_separate_requests_and_a_backslash_escapes_one():
    assert session().receive(b"operator; show cli level; user; show cli level\n") == \
        b"\noperator\n\n\nuser\n\n"
    answer = session().receive(b"show\\;cli level\n")
    assert answer.startswith(b"Unknown command, but maybe one of the following ones is a better match:\n"
                             b"  show cli level ")


def test_crlf_tabs_and_repeated_blanks_are_accepted():
    assert session().receive(b"show\tcli   level\r\n") == b"admin\n\n"


def test_prompt_makes_the_session_interactive_until_quit():
    s = session()
    assert s.receive(b"prompt\n") == b"\n> "
    assert s.receive(b"show cli level\n") == b"admin\n\n> "
    assert not s.closed
    assert s.receive(b"quit\nshow cli level\n") == b""
    assert s.closed


def test_a_level_can_be_lowered_never_raised():
    s = session(USER)
    assert s.receive(b"operator\n") == b"Permission denied\n\n"
    s = session(ADMIN)
    assert s.receive(b"user; operator; show cli level\n") == b"\nPermission denied\n\nuser\n\n"


def test_operator_dash_answers_without_the_empty_line():
    assert session().receive(b"operator -;show cli level\n") == b"operator\n\n"


@pytest.mark.parametrize("request_", [b"set weight be/s1 10", b"set server be/s1 state drain",
                                      b"disable server be/s1", b"enable health be/s1",
                                      b"shutdown sessions server be/s1", b"clear counters all"])
def test_changes_need_level_admin(request_):
    assert session(OPERATOR).receive(request_ + b"\n") == b"Permission denied\n\n"


def test_clear_counters_needs_level_operator():
    assert session(USER).receive(b"clear counters\n") == b"Permission denied\n\n"


def test_an_unknown_request_gets_the_closest_commands():
    answer = session().receive(b"show stats\n").decode()
    assert answer == (
        "Unknown command, but maybe one of the following ones is a better match:\n"
        "  show stat [desc|json|no-maint|typed|up]*: report counters for each proxy and server\n"
        "  help [<command>]                        : list matching or all commands\n"
        "  prompt                                  : toggle interactive mode with prompt\n"
        "  quit                                    : disconnect\n\n")


def test_an_empty_request_gets_every_command():
    answer = session().receive(b"\n").decode()
    assert answer.startswith("Unknown command. Please enter one of the following commands only:\n"
                             "  add server <bk>/<srv>  ")
    assert answer.endswith("  quit                                    : disconnect\n\n")


def test_help_lists_every_command_sorted_by_usage():
    lines = session(USER).receive(b"help\n").decode().splitlines()
    assert lines[0] == "The following commands are valid at this level:"
    listed = lines[1:-4]
    assert listed == sorted(listed) and len(listed) == sum(1 for c in COMMANDS if c.usage)
    assert lines[-4:-1] == ["  help [<command>]                        : list matching or all commands",
                            "  prompt                                  : toggle interactive mode with prompt",
                            "  quit                                    : disconnect"]


def test_help_with_words_lists_the_commands_they_start():
    lines = session().receive(b"help show\n").decode().splitlines()[1:-4]
    assert lines and all(line.startswith("  show ") for line in lines)


def test_an_incomplete_request_waits_and_is_dropped_at_the_end():
    s = session()
    assert s.receive(b"show cli") == b""
    assert not s.closed
    assert s.end_of_input() == b"" and s.closed


def test_a_request_longer_than_a_buffer_ends_the_session_unanswered():
    s = session()
    assert s.receive(b"a" * (1 << 20)) == b""
    assert s.closed


def test_binary_garbage_is_an_unknown_command():
    s = session()
    answer = s.receive(bytes(range(1, 10)) + b"\xff\xfe\n")
    assert answer.startswith(b"Unknown command") and s.closed


@pytest.mark.parametrize("line, words", [
    (b"show  stat\t1", ["show", "stat", "1"]),
    (b"a\\ b c", ["a b", "c"]),
    (b"a\\\\b", ["a\\b"]),
    (b"show\x00 cli level", ["show", "cli", "level"]),  # a NUL ends a word...
    (b"show \x00cli level", ["show"]),  # ... and the request when it follows a blank
    (b"  ", []),
])
def test_words_are_cut_as_cli_c_cuts_them(line, words):
    assert split_request(line) == words


def test_set_timeout_cli_sets_the_idle_timeout_of_the_session():
    s = session()
    s.receive(b"prompt\n")
    assert s.receive(b"set timeout cli 30\n") == b"\n> " and s.timeout == 30
    assert s.receive(b"set timeout cli 0\n") == b"Invalid timeout value.\n\n> "
    assert s.receive(b"set timeout foo\n") == b"'set timeout' only supports 'cli'.\n\n> "


def test_usage_lists_at_most_five_close_commands_within_two_and_a_half_times_the_best():
    answer = usage_message(COMMANDS, ["get", "wieght"])
    assert answer.splitlines()[1].startswith("  get weight <bk>/<srv>")


# --- garbage ------------------------------------------------------------------------------------------
# Live, on a real process, with every command's real handler: tests/integration/test_garbage_on_the_ports.py.

@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=2000))
def test_any_bytes_split_into_words_without_raising(data):
    words = split_request(data)
    assert len(words) <= 64 and all(isinstance(word, str) for word in words)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=1500).filter(lambda data: data.count(b"\n") < 20))
def test_an_interactive_session_answers_each_garbage_request_with_the_usage_text_and_goes_on(data):
    requests = cli_requests(data + b" \n")
    assume(all(find_command(COMMANDS, split_request(request)) is None for request in requests))
    s = session()
    assert s.receive(b"prompt\n") == b"\n> "
    answer = s.receive(data + b" \n")
    assert not s.closed
    assert answer.count(b"Unknown command") == len(requests)
    assert answer.endswith(b"  quit                                    : disconnect\n\n> ")
    assert s.receive(b"show cli level\n") == b"admin\n\n> "



@pytest.mark.parametrize("request_", [b"_counters", b"_addcounters {}", b"_addedservers", b"_prepared",
                                      b"_loadstate /etc/passwd"])
def test_the_masters_own_requests_are_unknown_commands_off_its_link(request_):
    # A reload's requests (master.py) come on the master-worker link only; HAProxy has none of them.
    assert session().receive(request_ + b"\n").startswith(b"Unknown command")
