"""``aggregator.cli_console.echo``: what the commands print goes out word for word, and safe."""

from __future__ import annotations

import contextlib
import json
import os
import pty
import subprocess
import sys
from pathlib import Path
from typing import Any

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


# The real command, in a process of its own: what a terminal, a pipe or a locale does to the
# output only shows there (CliRunner replaces the streams).
FEED = """<?xml version="1.0" encoding="utf-8"?>
<rss version="2.0"><channel><title>Café — news</title><link>https://cafe.example/</link>
<item><title>Crème brûlée at the summit</title><link>https://cafe.example/1</link>
<guid>https://cafe.example/1</guid><description>Déjà vu.</description></item>
</channel></rss>
"""


def _config(tmp_path: Path) -> Path:
    (tmp_path / "cafe.xml").write_text(FEED, encoding="utf-8")
    config = tmp_path / "feeds.yaml"
    config.write_text("feeds:\n  - url: cafe.xml\n    title: Café — news\n", encoding="utf-8")
    return config


def _aggregator(
    config: Path, *args: str, env: dict[str, str] | None = None, **kwargs: Any
) -> subprocess.CompletedProcess[bytes]:
    kwargs.setdefault("stdout", subprocess.PIPE)
    kwargs.setdefault("stderr", subprocess.PIPE)
    return subprocess.run(
        [sys.executable, "-m", "aggregator", "--config", str(config), *args],
        env={**os.environ, **(env or {})},
        timeout=120,
        check=False,
        **kwargs,
    )


def _on_a_terminal(
    config: Path, *args: str, stream: str = "stderr", env: dict[str, str] | None = None
) -> tuple[subprocess.CompletedProcess[bytes], bytes]:
    """The command with ``stream`` (stderr or stdout) a terminal, and what it showed there."""
    leader, follower = pty.openpty()
    try:
        done = _aggregator(config, *args, env=env, **{stream: follower})
        os.close(follower)
        shown = b""
        with contextlib.suppress(OSError):  # EIO: the terminal has no writer left
            while chunk := os.read(leader, 65536):
                shown += chunk
    finally:
        os.close(leader)
    return done, shown


def test_poll_on_a_terminal_draws_its_progress_bar(tmp_path: Path) -> None:
    # stderr a terminal: the progress bar is drawn on it (it once died on the lazy console).
    done, shown = _on_a_terminal(_config(tmp_path), "poll")
    assert b"1 feed polled" in shown, shown
    assert b"Error" not in shown
    assert done.returncode == 0
    assert shown.rfind(b"\x1b[?25h") > shown.rfind(b"\x1b[?25l")  # the cursor is shown again


def test_the_progress_bar_shows_a_feed_url_word_for_word(tmp_path: Path) -> None:
    config = _config(tmp_path)
    (tmp_path / "cafe.xml").rename(tmp_path / "[red]cafe.xml")
    config.write_text('feeds:\n  - url: "[red]cafe.xml"\n', encoding="utf-8")
    done, shown = _on_a_terminal(config, "poll")
    assert done.returncode == 0, shown
    assert b"polling [red]cafe.xml" in shown


@pytest.mark.parametrize(
    "args", [("status",), ("status", "--format", "json"), ("config", "check"), ("--version",)]
)
def test_a_reader_that_stops_early_is_not_a_failure(tmp_path: Path, args: tuple[str, ...]) -> None:
    # `aggregator status | head -1`: exit 1 would say that feeds failed.
    config = _config(tmp_path)
    assert _aggregator(config, "poll").returncode == 0  # else status says there is no data yet
    reader, writer = os.pipe()
    os.close(reader)
    try:
        done = _aggregator(config, *args, stdout=writer)
    finally:
        os.close(writer)
    assert (done.returncode, done.stderr) == (0, b"")


ASCII_LOCALE = {"LC_ALL": "C", "LANG": "C", "PYTHONCOERCECLOCALE": "0", "PYTHONUTF8": "0"}


def test_a_locale_that_is_not_utf8_gets_utf8_not_a_traceback(tmp_path: Path) -> None:
    config = _config(tmp_path)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONIOENCODING", "LC_CTYPE")}
    env.update(ASCII_LOCALE)
    polled = _aggregator(config, "poll", env=env)
    assert polled.returncode == 0, polled.stderr
    rows = _aggregator(config, "status", "--format", "json", env=env)
    assert rows.returncode == 0, rows.stderr
    assert json.loads(rows.stdout.decode("utf-8"))[0]["title"] == "Café — news"
    exported = _aggregator(config, "export", env=env)
    assert exported.returncode == 0, exported.stderr
    assert json.loads(exported.stdout.decode("utf-8"))["title"] == "Crème brûlée at the summit"
    table = _aggregator(config, "status", env=env)
    assert table.returncode == 0, table.stderr
    assert "Café — news" in table.stdout.decode("utf-8")


@pytest.mark.parametrize("encoding", ["latin-1", "ascii"])
def test_json_output_in_an_encoding_the_user_chose_is_escaped_not_a_traceback(
    tmp_path: Path, encoding: str
) -> None:
    # PYTHONIOENCODING is the user's choice, and kept: the export ended in a
    # UnicodeEncodeError traceback (exit 1, "some feeds failed") at its first curly quote.
    config = _config(tmp_path)
    assert _aggregator(config, "poll").returncode == 0
    env = {**os.environ, "PYTHONIOENCODING": encoding}
    exported = _aggregator(config, "export", env=env)
    assert (exported.returncode, exported.stderr) == (0, b"")
    assert json.loads(exported.stdout.decode("ascii"))["title"] == "Crème brûlée at the summit"
    rows = _aggregator(config, "status", "--format", "json", env=env)
    assert (rows.returncode, rows.stderr) == (0, b"")
    assert json.loads(rows.stdout.decode("ascii"))[0]["title"] == "Café — news"
    listed = _aggregator(config, "feeds", "list", "--format", "json", env=env)
    assert (listed.returncode, listed.stderr) == (0, b"")
    assert json.loads(listed.stdout.decode("ascii"))[0]["title"] == "Café — news"


def test_status_on_a_narrow_terminal_still_says_when_the_jobs_run(tmp_path: Path) -> None:
    config = _config(tmp_path)
    shown = _aggregator(config, "status", env={"COLUMNS": "40"})
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.decode("utf-8").splitlines()
    assert lines[0] == "Café — news: never, 0 entries"
    assert any(line.startswith("poll: ") for line in lines), lines


def test_a_terminal_in_a_locale_that_is_not_utf8_gets_escapes_not_a_traceback(tmp_path: Path) -> None:
    # A terminal shows its locale's encoding: UTF-8 bytes there would be mojibake.
    config = _config(tmp_path)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONIOENCODING", "LC_CTYPE")}
    env.update(ASCII_LOCALE)
    assert _aggregator(config, "poll", env=env).returncode == 0
    done, shown = _on_a_terminal(config, "status", "--format", "json", stream="stdout", env=env)
    assert done.returncode == 0, done.stderr
    # JSON's own escapes, so that what a terminal shows is JSON still.
    assert b"Caf\\u00e9 \\u2014 news" in shown, shown
    assert "Café".encode() not in shown


def test_the_progress_bar_never_shows_a_feeds_password(tmp_path: Path) -> None:
    config = tmp_path / "feeds.yaml"
    # Port 9 (discard) is closed here: the feed fails, and its outcome still passes the bar.
    config.write_text("feeds:\n  - url: http://reader:s3cret-word@127.0.0.1:9/f.xml\n", encoding="utf-8")
    done, shown = _on_a_terminal(config, "poll")
    assert done.returncode == 1, shown
    assert b"127.0.0.1:9/f.xml" in shown
    assert b"s3cret-word" not in shown


def test_feeds_list_on_a_narrow_terminal_prints_a_line_per_feed(tmp_path: Path) -> None:
    # Seven columns in forty: every cell folded to two characters.
    config = _config(tmp_path)
    config.write_text(
        "feeds:\n  - url: cafe.xml\n    title: Café — news\n    topics: [food, politics]\n"
        "    interval: 30m\n  - url: https://example.org/feed.xml\n    enabled: false\n",
        encoding="utf-8",
    )
    assert _aggregator(config, "poll").returncode == 0
    shown = _aggregator(config, "feeds", "list", env={"COLUMNS": "40"})
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.decode("utf-8").splitlines()
    assert lines[0] == "2 feeds in feeds.yaml"
    assert lines[1].startswith("feeds.yaml:2: Café — news: ok, 1 entry, every 30m, last fetch 20")
    assert lines[2:4] == ["  cafe.xml", "  topics: food, politics"]
    assert lines[4:] == ["feeds.yaml:6: https://example.org/feed.xml: disabled, 0 entries, every default"]


@pytest.mark.parametrize(
    ("columns", "headers", "shown"),
    [
        ("60", ["line", "feed", "status", "last fetch"], ["topics: food, politics", "every 30m", "1 entry"]),
        ("70", ["line", "feed", "status", "last fetch"], ["topics: food, politics", "every 30m", "1 entry"]),
        ("120", ["line", "feed", "topics", "every", "status", "entries", "last fetch"], ["food, politics"]),
    ],
)
def test_feeds_list_is_readable_from_60_columns_up(
    tmp_path: Path, columns: str, headers: list[str], shown: list[str]
) -> None:
    # From 60 to 79 columns the seven columns folded every word: "entri" / "es",
    # "last" / "fetch", "Café —" / "news", a URL five characters a line.
    config = _config(tmp_path)
    config.write_text(
        "feeds:\n  - url: cafe.xml\n    title: Café — news\n    topics: [food, politics]\n"
        "    interval: 30m\n  - url: https://example.org/eu/feed.xml\n    enabled: false\n",
        encoding="utf-8",
    )
    assert _aggregator(config, "poll").returncode == 0
    listed = _aggregator(config, "feeds", "list", env={"COLUMNS": columns})
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.decode("utf-8").splitlines()
    assert max(len(line) for line in lines) <= int(columns)
    header = next(line for line in lines if "feed" in line and "line" in line)
    assert [word.strip() for word in header.strip("┃ ").split("┃")] == headers
    for text in ("Café — news", "disabled", *shown):  # each on one line, not folded
        assert any(text in line for line in lines), (text, lines)
    if int(columns) >= 70:  # room for a URL of 30 characters on one line
        assert any("https://example.org/eu/feed.xml" in line for line in lines), lines


@pytest.mark.parametrize(
    ("columns", "headers"),
    [
        ("60", ["feed", "status", "last fetch", "next check"]),
        ("70", ["feed", "status", "last fetch", "next check"]),
        ("120", ["feed", "status", "last fetch", "HTTP", "entries", "errors", "next check"]),
    ],
)
def test_status_is_readable_from_60_columns_up(tmp_path: Path, columns: str, headers: list[str]) -> None:
    # From 60 to 79 columns: "entri" / "es", "last" / "fetch", "Café —" / "news".
    config = _config(tmp_path)
    assert _aggregator(config, "poll").returncode == 0
    shown = _aggregator(config, "status", env={"COLUMNS": columns})
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.decode("utf-8").splitlines()
    assert max(len(line) for line in lines) <= int(columns)
    header = next(line for line in lines if "feed" in line and "status" in line)
    assert [word.strip() for word in header.strip("┃ ").split("┃")] == headers
    for text in ("Café — news", "1 entry" if int(columns) < 100 else "│ 1 ", "newsletter-retries"):
        assert any(text in line for line in lines), (text, lines)


@pytest.mark.parametrize("reader_stays", [True, False])
def test_only_a_stdout_whose_reader_left_counts_as_a_reader_gone(reader_stays: bool) -> None:
    # A BrokenPipeError from a socket (an SMTP server hanging up) is a failure to report,
    # not `| head` having had enough: the CLI tells them apart by looking at stdout.
    code = (
        "import sys, time; from aggregator.cli import _stdout_closed; time.sleep(0.3); "
        "sys.stderr.write(str(_stdout_closed()))"
    )
    with subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    ) as child:
        assert child.stdout is not None
        assert child.stderr is not None
        if not reader_stays:
            child.stdout.close()
        said = child.stderr.read().decode()
        child.wait(timeout=60)
    assert said == str(not reader_stays)
