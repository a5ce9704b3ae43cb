"""``aggregator.cli_console.echo``: what the commands print goes out word for word, and safe."""

from __future__ import annotations

import pytest

from aggregator.cli_console import echo


def test_a_message_is_printed_word_for_word(capsys: pytest.CaptureFixture[str]) -> None:
    message = "feeds.yaml:3: https://example.org/news/:fire:/[b]feed[/b].xml: not found"
    echo(message, err=True)
    assert capsys.readouterr().err == message + "\n"


def test_control_characters_from_servers_are_shown_not_obeyed(capsys: pytest.CaptureFixture[str]) -> None:
    # An escape sequence would recolour or clear the terminal; a carriage return would let
    # the rest of the line cover what came before.  Newlines and tabs stay as they are.
    echo("error at https://example.org/\x1b[2J\rall fine\x07\n\tnext line\x85")
    shown = capsys.readouterr().out
    assert shown == "error at https://example.org/\\x1b[2J\\x0dall fine\\x07\n\tnext line\\x85\n"
