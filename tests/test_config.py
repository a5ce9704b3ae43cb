"""feeds.yaml: defaults, every problem reported with its line, hints a person can act on."""

from __future__ import annotations

import re
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from aggregator.cli import app
from aggregator.config import check_config, load_config, parse_duration, parse_size
from aggregator.errors import ConfigError


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "feeds.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def problems_of(path: Path) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_config(path)
    return [str(p) for p in info.value.problems]


def test_minimal_config_gets_sound_defaults(tmp_path: Path) -> None:
    loaded = load_config(write(tmp_path, "feeds:\n  - url: https://example.com/feed.xml\n"))
    config = loaded.config
    assert config.newsletters == ()
    assert config.polling.interval == timedelta(hours=1)
    assert config.polling.max_response_size == 10 * 1024 * 1024
    assert loaded.database_url == f"sqlite:///{tmp_path / 'data' / 'aggregator.sqlite'}"
    assert loaded.feed_lines == {"https://example.com/feed.xml": 2}


def test_relative_paths_resolve_against_the_config_folder(tmp_path: Path) -> None:
    loaded = load_config(write(tmp_path, "feeds:\n  - url: seeds/a.xml\n  - url: https://x.example/f\n"))
    assert loaded.feed_location("seeds/a.xml") == (tmp_path / "seeds" / "a.xml").as_uri()
    assert loaded.feed_location("https://x.example/f") == "https://x.example/f"


def test_a_relative_file_url_resolves_against_the_config_folder_too(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # `file:feeds/x.xml` worked only when run from the config's folder (under cron: $HOME).
    monkeypatch.chdir(tmp_path.parent)
    config = "feeds:\n  - url: file:feeds/x%20y.xml\n  - url: file:///srv/a.xml\n"
    loaded = load_config(write(tmp_path, config))
    assert loaded.feed_location("file:feeds/x%20y.xml") == (tmp_path / "feeds" / "x y.xml").as_uri()
    assert loaded.feed_location("file:///srv/a.xml") == "file:///srv/a.xml"


def test_every_problem_is_reported_at_once_with_line_and_hint(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "# my feeds\n"
        "feeds:\n"
        "  - url: https://example.com/a\n"
        "    intervall: 30m\n"
        "  - url: ftp://example.com/b\n"
        "  - url: https://example.com/c\n"
        "    interval: 3 parsecs\n"
        "polling:\n"
        "  concurrency: 0\n",
    )
    problems = problems_of(path)
    assert len(problems) == 4
    assert problems[0].endswith(
        "feeds.yaml:4:5: feeds[0].intervall: unknown key 'intervall' (did you mean 'interval'?)"
    )
    assert "feeds.yaml:5:5: feeds[1].url: not an http(s) or file URL" in problems[1]
    assert "feeds.yaml:7:5: feeds[2].interval: bad duration '3 parsecs'" in problems[2]
    assert "feeds.yaml:9:3: polling.concurrency:" in problems[3]


def test_missing_feeds_and_unknown_top_level_key(tmp_path: Path) -> None:
    problems = problems_of(write(tmp_path, "feed:\n  - url: https://example.com/a\n"))
    assert any("unknown key 'feed' (did you mean 'feeds'?)" in p for p in problems)
    assert any("missing required key 'feeds'" in p for p in problems)


def test_yaml_syntax_error_names_the_line(tmp_path: Path) -> None:
    problems = problems_of(write(tmp_path, "feeds:\n  - url: [unclosed\n"))
    assert len(problems) == 1
    assert "feeds.yaml:" in problems[0]
    assert "not valid YAML" in problems[0]


def test_a_tab_in_the_indentation_says_to_indent_with_spaces(tmp_path: Path) -> None:
    # The parser's own words ("cannot start any token") do not say what to change.
    [problem] = problems_of(write(tmp_path, "feeds:\n  - url: https://example.com/a\n\ttitle: x\n"))
    assert problem.startswith(f"{tmp_path / 'feeds.yaml'}:3:1: not valid YAML: ")
    assert problem.endswith("(indent with spaces: YAML does not allow tabs there)")


def test_newsletter_schedule_timezone_and_topic_are_checked(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "feeds:\n  - url: https://example.com/a\n    topics: [Diplomacy]\n"
        "newsletters:\n"
        "  - name: daily\n    title: Daily\n    schedule: '61 * * * *'\n    timezone: Mars/Base\n",
    )
    problems = problems_of(path)
    assert any("newsletters[0].schedule: bad cron expression" in p for p in problems)
    assert any("newsletters[0].timezone: unknown time zone 'Mars/Base'" in p for p in problems)

    path = write(
        tmp_path,
        "feeds:\n  - url: https://example.com/a\n    topics: [Diplomacy]\n"
        "newsletters:\n  - name: daily\n    title: Daily\n    topics: [Diplomcy]\n",
    )
    assert problems_of(path) == [
        f"{path}:7:14: newsletters[0].topics[0]: no topic named 'Diplomcy' (did you mean 'Diplomacy'?)"
    ]


def test_a_newsletter_naming_a_feed_not_listed_is_refused_with_what_to_write(tmp_path: Path) -> None:
    # Stories are matched by the feed's URL as listed: anything else would leave every issue
    # empty, silently, day after day.
    path = write(
        tmp_path,
        "feeds:\n  - url: seeds/ledger.xml\n    title: The Northern Ledger\n  - url: https://wire.example/feed\n"
        "newsletters:\n  - name: daily\n    title: Daily\n"
        "    feeds: [The Northern Ledger, ./seeds/ledger.xml, https://wire.example/fed, other.xml,"
        " seeds/ledger.xml]\n",
    )
    assert problems_of(path) == [
        f"{path}:8:13: newsletters[0].feeds[0]: no feed with URL 'The Northern Ledger'"
        " (write it as listed under 'feeds:': 'seeds/ledger.xml')",
        f"{path}:8:34: newsletters[0].feeds[1]: no feed with URL './seeds/ledger.xml'"
        " (write it as listed under 'feeds:': 'seeds/ledger.xml')",
        f"{path}:8:54: newsletters[0].feeds[2]: no feed with URL 'https://wire.example/fed'"
        " (did you mean 'https://wire.example/feed'? Else list the feed under 'feeds:', or take it out"
        " of this newsletter's feeds)",
        f"{path}:8:80: newsletters[0].feeds[3]: no feed with URL 'other.xml'"
        " (list the feed under 'feeds:', or take it out of this newsletter's feeds)",
    ]


def test_duplicate_feeds_are_refused(tmp_path: Path) -> None:
    path = write(tmp_path, "feeds:\n  - url: seeds/a.xml\n  - url: ./seeds/a.xml\n")
    [problem] = problems_of(path)
    assert (
        "feeds.yaml:3:5: feeds[1].url: duplicate feed './seeds/a.xml'"
        " (already listed as feeds[0]: 'seeds/a.xml')" in problem
    )


TOPICS_TWICE = (
    "feeds:\n  - url: https://wire.example/feed\n"
    "topics:\n"
    "  - name: Diplomacy\n    keywords: [summit]\n"
    "  - name: Arctic\n"
    "  - name: {again}\n    keywords: [treaty]\n"
)


@pytest.mark.parametrize("again", ["diplomacy", "DIPLOMACY"])
def test_a_topic_spelt_again_in_another_case_is_refused(tmp_path: Path, again: str) -> None:
    # It was taken as a second topic: a second label on every story and a second topic
    # feed (topics/diplomacy-2.atom) beside the first.
    path = write(tmp_path, TOPICS_TWICE.format(again=again))
    assert problems_of(path) == [
        f"{path}:7:5: topics[2].name: duplicate topic {again!r}"
        " (already listed as topics[0]: 'Diplomacy'; give it one entry with all its keywords)"
    ]


def test_a_topic_listed_twice_is_merged_with_a_warning(tmp_path: Path) -> None:
    # Its keywords are merged, as before (a feeds.yaml that ran keeps running), but it was
    # merged without a word.
    path = write(tmp_path, TOPICS_TWICE.format(again="Diplomacy"))
    code, stdout, stderr = _config_check(path)
    assert (code, stdout) == (0, f"{path}: ok, 1 warning(s)\n")
    assert stderr.splitlines() == [
        f"{path}:7:5: warning: topics[2].name: topic 'Diplomacy' is listed twice: its keywords are"
        " merged with those of topics[0] (give it one entry)"
    ]


@pytest.mark.parametrize(
    "other",
    [
        "https://Wire.Example/feed",
        "HTTPS://wire.example:443/feed",
        "https://wire.example/feed?utm_source=x#top",
    ],
)
def test_one_feed_spelt_two_ways_is_a_duplicate(tmp_path: Path, other: str) -> None:
    # Both were polled, and every entry stored twice under two feeds; `feeds add` refused
    # the second spelling already.
    path = write(tmp_path, f"feeds:\n  - url: https://wire.example/feed\n  - url: {other}\n")
    [problem] = problems_of(path)
    assert (
        f"feeds.yaml:3:5: feeds[1].url: duplicate feed {other!r}"
        " (already listed as feeds[0]: 'https://wire.example/feed')" in problem
    )


def test_check_reports_missing_local_files(tmp_path: Path) -> None:
    path = write(tmp_path, "feeds:\n  - url: seeds/missing.xml\n")
    [problem] = check_config(path)
    assert problem.line == 2
    assert "no such file" in problem.message


def test_missing_config_file(tmp_path: Path) -> None:
    problems = problems_of(tmp_path / "nope.yaml")
    assert problems == [f"{tmp_path / 'nope.yaml'}: file not found (pass --config PATH)"]


def test_a_folder_instead_of_the_file_says_which_file_to_give(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AGGREGATOR_CONFIG", raising=False)
    assert problems_of(tmp_path) == [f"{tmp_path}: a folder, not a feeds.yaml (pass --config PATH)"]
    inside = write(tmp_path, "feeds: []\n")
    assert problems_of(tmp_path) == [
        f"{tmp_path}: a folder, not a feeds.yaml (give the file: --config {inside})"
    ]
    assert [str(p) for p in check_config(tmp_path)] == problems_of(tmp_path)
    monkeypatch.setenv("AGGREGATOR_CONFIG", str(tmp_path))
    assert problems_of(tmp_path) == [
        f"{tmp_path}: a folder, not a feeds.yaml (the path is $AGGREGATOR_CONFIG: set it to {inside})"
    ]


def test_a_file_that_is_not_utf8_names_the_line_and_what_to_do(tmp_path: Path) -> None:
    # Saved as Latin-1 by an editor: the line to look at, not a byte offset into the file.
    path = tmp_path / "feeds.yaml"
    path.write_bytes(b"feeds:\n  - url: https://example.com/a\n    title: Caf\xe9\n")
    expected = f"{path}:3:15: not valid UTF-8 (byte 0xe9) (save the file as UTF-8)"
    assert problems_of(path) == [expected]
    checked = subprocess.run(
        [sys.executable, "-m", "aggregator", "--config", str(path), "config", "check"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert (checked.returncode, checked.stderr.splitlines()[0]) == (2, expected)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("90s", timedelta(seconds=90)),
        ("1h30m", timedelta(minutes=90)),
        ("2d", timedelta(days=2)),
        (45, timedelta(seconds=45)),
    ],
)
def test_durations(text: str | int, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize(
    "text", ["", "soon", "3 parsecs", "1h soon", "99999999999h", float("inf"), float("nan")]
)
def test_bad_durations(text: str | float) -> None:
    with pytest.raises(ValueError, match="bad duration"):
        parse_duration(text)


def test_sizes() -> None:
    assert parse_size("10MiB") == 10 * 1024 * 1024
    assert parse_size("500 KB") == 500_000
    with pytest.raises(ValueError, match="bad size"):
        parse_size("big")
    with pytest.raises(ValueError, match="too large"):
        parse_size("9" * 400 + " MiB")


@pytest.mark.parametrize(
    ("text", "words"),
    [
        (
            "feeds:\n  - url: https://a.example/f\n    interval: 99999999999h\n",
            "feeds.yaml:3:5: feeds[0].interval",
        ),
        ("feeds:\n  - url: https://a.example/f\n    interval: .inf\n", "feeds.yaml:3:5: feeds[0].interval"),
        ("feeds: &a [*a]\n", "an alias (*name) used inside its own anchor"),
        (
            'feeds:\n  - url: https://a.example/f\n    title: "a\\fb"\n',
            "feeds.yaml:3:5: feeds[0].title: a control",
        ),
        (
            'feeds:\n  - {url: https://a.example/f, topics: ["x\\ud800"]}\n',
            "topics[0]: half a surrogate pair",
        ),
        ("feeds: []\nx: " + "[" * 3000 + "]" * 3000 + "\n", "nested too deeply"),
    ],
)
def test_values_no_program_could_keep_are_problems_not_crashes(tmp_path: Path, text: str, words: str) -> None:
    (problem,) = problems_of(write(tmp_path, text))
    assert words in problem


def test_a_relative_sqlite_path_is_relative_to_the_config_file_not_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The README's own example; from cron or a service the working directory is elsewhere,
    # and a second, empty database appeared there.
    path = write(tmp_path, "feeds: []\nnewsletters: []\ndatabase: sqlite:///data/aggregator.sqlite\n")
    monkeypatch.chdir(tmp_path.parent)
    assert load_config(path).database_url == f"sqlite:///{tmp_path.resolve()}/data/aggregator.sqlite"
    absolute = write(tmp_path, "feeds: []\nnewsletters: []\ndatabase: sqlite:////srv/db.sqlite?timeout=5\n")
    assert load_config(absolute).database_url == "sqlite:////srv/db.sqlite?timeout=5"


def test_a_feed_url_or_newsletter_name_the_database_cannot_hold_is_a_config_problem(tmp_path: Path) -> None:
    long_url = "https://x.example/" + "a" * 1100
    path = write(
        tmp_path,
        f"feeds:\n  - url: {long_url}\nnewsletters:\n  - name: {'n' * 65}\n    title: T\n",
    )
    problems = problems_of(path)
    assert any("feeds[0].url: url longer than 1024 bytes" in p for p in problems), problems
    assert any("newsletters[0].name" in p and "at most 64 characters" in p for p in problems), problems


def test_a_base_url_must_be_an_absolute_http_url(tmp_path: Path) -> None:
    # Without a scheme every feed id and self link was relative ("news.example.com/feeds/feed.atom").
    path = write(
        tmp_path,
        "feeds: []\n"
        "newsletters:\n  - name: daily\n    title: Daily\n    base_url: /archive/\n"
        "output:\n  base_url: news.example.com/feeds\n",
    )
    example = "write where the site is served, e.g. https://news.example.com/feeds/"
    assert problems_of(path) == [
        f"{path}:5:5: newsletters[0].base_url: not an absolute http(s) URL with a host:"
        f" '/archive/'; {example}",
        f"{path}:7:3: output.base_url: not an absolute http(s) URL with a host:"
        f" 'news.example.com/feeds'; {example}",
    ]
    for good in ("https://news.example.com/feeds/", "http://localhost:8000"):
        path = write(tmp_path, f"feeds: []\noutput:\n  base_url: {good}\n")
        assert load_config(path).config.output.base_url == good


def test_a_missing_config_named_by_the_environment_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AGGREGATOR_CONFIG", str(tmp_path / "nope.yaml"))
    [problem] = problems_of(tmp_path / "nope.yaml")
    assert problem == (
        f"{tmp_path / 'nope.yaml'}: file not found "
        "(the path is $AGGREGATOR_CONFIG: set it to your feeds.yaml, or pass --config PATH)"
    )
    assert problems_of(tmp_path / "other.yaml") == [
        f"{tmp_path / 'other.yaml'}: file not found (pass --config PATH)"
    ]


def test_check_finds_a_local_file_whose_path_holds_a_space(tmp_path: Path) -> None:
    # The location is a file: URL ("my%20feeds"): read as a path, the file was never there.
    (tmp_path / "my feeds").mkdir()
    (tmp_path / "my feeds" / "a.xml").write_text("<rss/>", encoding="utf-8")
    assert check_config(write(tmp_path, "feeds:\n  - url: my feeds/a.xml\n")) == []


def test_a_polling_range_that_is_empty_is_refused_on_its_line(tmp_path: Path) -> None:
    # It passed `config check` and `aggregator poll` ended in a traceback (PollingPolicy).
    path = write(
        tmp_path,
        "feeds:\n  - url: https://example.com/a\npolling:\n  min_interval: 2h\n  max_interval: 1h\n",
    )
    assert problems_of(path) == [
        f"{path}:5:3: polling.max_interval: max_interval (1h) is shorter than min_interval (2h):"
        " make it at least as long, or lower min_interval"
    ]


def test_limits_that_would_fail_every_fetch_are_refused(tmp_path: Path) -> None:
    # timeout: 0s failed every feed; max_response_size: 0 ended `poll` in a traceback.
    path = write(
        tmp_path,
        "feeds:\n  - url: https://example.com/a\n"
        "polling:\n  timeout: 0s\n  connect_timeout: 0s\n  max_response_size: 0\n  interval: -5\n",
    )
    assert sorted(problems_of(path)) == [
        f"{path}:4:3: polling.timeout: must be more than 0, e.g. 10s",
        f"{path}:5:3: polling.connect_timeout: must be more than 0, e.g. 10s",
        f"{path}:6:3: polling.max_response_size: must be at least 1 byte, not 0; e.g. 10MiB",
        f"{path}:7:3: polling.interval: bad duration -5: a length of time cannot be negative",
    ]


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http://exa mple.org/feed.xml", "no usable host name in 'http://exa mple.org/feed.xml'"),
        ("https://example.org:99999/feed.xml", "bad port in 'https://example.org:99999/feed.xml'"),
        ("https://example.org:0/feed.xml", "bad port in 'https://example.org:0/feed.xml'"),
    ],
)
def test_a_url_no_fetch_can_use_is_refused_by_config_check(tmp_path: Path, url: str, message: str) -> None:
    # It was "ok", and every poll failed the feed (exit 1) with the same complaint.
    path = write(tmp_path, f"feeds:\n  - url: {url}\n")
    (problem,) = problems_of(path)
    assert problem.startswith(f"{path}:2:5: feeds[0].url: {message}")


def test_a_url_with_a_space_in_its_path_is_still_a_feed(tmp_path: Path) -> None:
    loaded = load_config(write(tmp_path, "feeds:\n  - url: https://example.org/my feed.xml\n"))
    assert loaded.config.feeds[0].url == "https://example.org/my feed.xml"


def test_addresses_that_no_message_can_carry_are_refused_on_their_line(tmp_path: Path) -> None:
    # A bad sender stopped every issue at send time ("1 to retry", run after run); a bad
    # subscriber logged a traceback on every run.
    path = write(
        tmp_path,
        "feeds:\n  - url: https://example.com/a\n"
        "newsletters:\n"
        "  - name: daily\n"
        "    title: Daily\n"
        "    sender: digest example\n"
        "    reply_to: editor@example.org\n"
        "    subscribers:\n"
        "      - ok@example.org\n"
        "      - reader@@example\n"
        "      - josé@example.org\n",
    )
    assert problems_of(path) == [
        f"{path}:6:5: newsletters[0].sender: bad address 'digest example': not an email address"
        " (name@example.org); write e.g. digest@example.org",
        f"{path}:10:9: newsletters[0].subscribers[1]: bad address 'reader@@example': not a valid email"
        " address (expected atom but found '@example'); fix it or take it out",
    ]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "feeds:\n",
            "1:1: feeds: expected a list (one '- ' line per item), got nothing (list each feed as"
            " '- url: https://example.org/feed.xml' on a line under 'feeds:')",
        ),
        (
            "feeds:\n  - seeds/a.xml\n",
            "2:5: feeds[0]: expected keys and values (key: value), got 'seeds/a.xml'"
            " (write the feed as '- url: seeds/a.xml')",
        ),
        (
            "feeds:\n  - url: seeds/a.xml\n  - url seeds/b.xml\n",
            "3:5: feeds[1]: expected keys and values (key: value), got 'url seeds/b.xml'"
            " (a ':' missing after 'url'? write 'url: seeds/b.xml')",
        ),
        (
            "feeds:\n  - url: seeds/a.xml\n    title The A\n    priority: 1\n",
            "3:5: not valid YAML: could not find expected ':'"
            " (a ':' missing after the key on this line? write 'key: value')",
        ),
        (
            "feeds:\n  - url seeds/a.xml\n    title: The A\n",
            "3:10: not valid YAML: mapping values are not allowed here"
            " (a ':' missing after the key on line 2? write 'key: value')",
        ),
        (
            "feeds:\n  - url: seeds/a.xml\n    title: A: the first\n",
            "3:13: not valid YAML: mapping values are not allowed here"
            " (a value with ': ' in it needs quotes: title: \"A: the first\")",
        ),
    ],
)
def test_a_missing_colon_or_a_bare_url_is_said_in_a_person_s_words(
    tmp_path: Path, text: str, expected: str
) -> None:
    # pydantic said "Input should be a valid dictionary or instance of FeedConfig"; the YAML
    # parser pointed at the line after the one missing its ':'.
    path = write(tmp_path, text)
    assert problems_of(path) == [f"{path}:{expected}"]


def _config_check(path: Path) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, ["--config", str(path), "config", "check"])
    return result.exit_code, result.stdout, result.stderr


def test_an_interval_of_zero_is_refused_on_its_line(tmp_path: Path) -> None:
    # `interval: 0s` passed `config check` and the feed was polled every min_interval: neither
    # "never" nor "as often as possible", whichever the person meant.
    path = write(
        tmp_path,
        "feeds:\n  - url: https://example.com/a\n    interval: 0s\n"
        "  - url: https://example.com/b\n    interval: 0\npolling:\n  interval: 0m\n",
    )
    why = (
        "an interval of 0 would poll without a pause: write how long to wait between polls, e.g. 30m"
        " (to pause a feed, write 'enabled: false')"
    )
    assert problems_of(path) == [
        f"{path}:3:5: feeds[0].interval: {why}",
        f"{path}:5:5: feeds[1].interval: {why}",
        f"{path}:7:3: polling.interval: {why}",
    ]
    code, stdout, stderr = _config_check(path)
    assert (code, stdout) == (2, "")
    assert stderr.splitlines()[0] == f"{path}:3:5: feeds[0].interval: {why}"


def test_an_interval_polling_will_not_keep_is_a_warning_on_its_line(tmp_path: Path) -> None:
    # `interval: 1m` was silently polled every 5m (min_interval), `interval: 30d` every 7d.
    path = write(
        tmp_path,
        "feeds:\n"
        "  - url: https://example.com/a\n    interval: 1m\n"
        "  - url: https://example.com/b\n    interval: 30m\n"
        "  - url: https://example.com/c\n    interval: 30d\n"
        "newsletters: []\npolling:\n  interval: 90s\n",
    )
    code, stdout, stderr = _config_check(path)
    assert (code, stdout) == (0, f"{path}: ok, 3 warning(s)\n")
    assert stderr.splitlines() == [
        f"{path}:3:5: warning: feeds[0].interval: 1m is shorter than polling.min_interval (5m): this feed"
        " is polled every 5m instead (to poll this often, lower polling.min_interval; else write 5m)",
        f"{path}:7:5: warning: feeds[2].interval: 30d is longer than polling.max_interval (1w): this feed"
        " is polled every 1w instead (to wait this long, raise polling.max_interval; else write 1w)",
        f"{path}:10:3: warning: polling.interval: 90s is shorter than polling.min_interval (5m): feeds"
        " without an interval of their own are polled every 5m instead (to poll this often, lower"
        " polling.min_interval; else write 5m)",
    ]
    # Lowering the bound is the way to poll that often: then nothing is said.
    path.write_text(path.read_text().replace("30d", "1d") + "  min_interval: 1m\n", encoding="utf-8")
    assert _config_check(path) == (0, f"{path}: ok\n", "")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "feeds:\n  - url: seeds/a.xml\n      title: The A\n",
            "3:12: not valid YAML: mapping values are not allowed here"
            " (indented more than the line above it: line its key up with those on line 2)",
        ),
        (
            "feeds:\n  - url: seeds/a.xml\n   title: The A\n",
            "3:4: not valid YAML: expected <block end>, but found '<block mapping start>'"
            " (check the indentation: a key lines up with the other keys of its mapping,"
            " a '- ' with the other items of its list)",
        ),
        (
            "feeds:\n  - url: seeds/a.xml\n - url: seeds/b.xml\n",
            "3:2: not valid YAML: expected <block end>, but found '<block sequence start>'"
            " (check the indentation: a key lines up with the other keys of its mapping,"
            " a '- ' with the other items of its list)",
        ),
    ],
)
def test_a_line_indented_out_of_step_is_said_so(tmp_path: Path, text: str, expected: str) -> None:
    # The first said "a ':' missing after the key on line 2?" of a line that has its ':';
    # the others only the parser's words ("<block end>").
    path = write(tmp_path, text)
    assert problems_of(path) == [f"{path}:{expected}"]


def test_config_check_names_the_duplicates_and_missing_files_with_the_other_problems(tmp_path: Path) -> None:
    # With an unknown key and an empty polling range in the file, the duplicate feed, the
    # missing local file, the duplicate newsletter and its unknown topic and feed went unsaid:
    # the person fixed the two, ran it again, and only then heard of the rest.
    path = write(
        tmp_path,
        "feeds:\n"
        "  - url: https://wire.example/feed\n"
        "    titel: Wire\n"
        "  - url: https://Wire.Example/feed\n"
        "  - url: seeds/missing.xml\n"
        "    topics: [Diplomacy]\n"
        "newsletters:\n"
        "  - name: daily\n"
        "    title: Daily\n"
        "    topics: [Diplomcy]\n"
        "    feeds: [https://wire.example/fed]\n"
        "  - name: daily\n"
        "    title: Again\n"
        "polling:\n"
        "  min_interval: 1h\n"
        "  max_interval: 30m\n",
    )
    code, stdout, stderr = _config_check(path)
    assert (code, stdout) == (2, "")
    assert stderr.splitlines() == [
        f"{path}:3:5: feeds[0].titel: unknown key 'titel' (did you mean 'title'?)",
        f"{path}:4:5: feeds[1].url: duplicate feed 'https://Wire.Example/feed'"
        " (already listed as feeds[0]: 'https://wire.example/feed')",
        f"{path}:5:5: feeds[2].url: no such file: {tmp_path / 'seeds' / 'missing.xml'}"
        " (fix the path or remove the feed)",
        f"{path}:10:14: newsletters[0].topics[0]: no topic named 'Diplomcy' (did you mean 'Diplomacy'?)",
        f"{path}:11:13: newsletters[0].feeds[0]: no feed with URL 'https://wire.example/fed'"
        " (did you mean 'https://wire.example/feed'? Else list the feed under 'feeds:', or take it out"
        " of this newsletter's feeds)",
        f"{path}:12:5: newsletters[1].name: duplicate newsletter 'daily'",
        f"{path}:16:3: polling.max_interval: max_interval (30m) is shorter than min_interval (1h):"
        " make it at least as long, or lower min_interval",
        f"7 problem(s) in {path}",
    ]


def test_a_broken_part_of_the_file_makes_no_guesses_about_the_rest(tmp_path: Path) -> None:
    # A topic or feed that is itself broken may be the one a newsletter names: it is reported
    # on its own line, and the newsletter is not told its topic or feed is unknown on a guess.
    # A min_interval that is no duration says so, and max_interval is not compared with 5m.
    path = write(
        tmp_path,
        "feeds:\n"
        "  - https://wire.example/feed\n"
        "topics:\n"
        "  - keywords: [summit]\n"
        "newsletters:\n"
        "  - name: daily\n"
        "    title: Daily\n"
        "    topics: [Diplomacy]\n"
        "    feeds: [https://wire.example/feed]\n"
        "polling:\n"
        "  min_interval: soon\n"
        "  max_interval: 1m\n",
    )
    assert [(p.line, p.location) for p in check_config(path)] == [
        (2, "feeds[0]"),
        (4, "topics[0].name"),
        (11, "polling.min_interval"),
    ]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (  # YAML keeps the last `url:` silently; ruamel refuses, with both values in full
            "feeds:\n  - url: https://a.example/f\n    title: A\n    url: https://b.example/f\n",
            "4:5: 'url' given twice in one mapping (first on line 2)"
            " (keep one of the two; another item of a list starts with its own '- ')",
        ),
        (  # ruamel's message carried the repr of every feed in both lists
            "feeds:\n  - url: https://a.example/f\nnewsletters: []\nfeeds:\n  - url: https://b.example/f\n",
            "4:1: 'feeds' given twice in one mapping (first on line 1)"
            " (keep one 'feeds:': put what is under the second one under the first)",
        ),
        (
            "feeds: []\nnewsletters:\n  - name: d\n    title: D\n    schedule: * * * * *\n",
            "5:16: not valid YAML: expected alphabetic or numeric character, but found ' '"
            " (a value starting with '*' needs quotes: schedule: \"* * * * *\")",
        ),
        (
            "feeds:\n  - url: https://a.example/f\n    title: @handle\n",
            "3:12: not valid YAML: found character '@' that cannot start any token"
            " (a value starting with '@' needs quotes: title: \"@handle\")",
        ),
        (  # the parser noticed at the end of the file
            'feeds:\n  - url: https://a.example/f\n    title: "Roundup\n  - url: https://b.example/f\n',
            "3:12: not valid YAML: found unexpected end of stream"
            " (a quote opened on this line is not closed: end the value with the same quote)",
        ),
        (
            "feeds:\n  - url: https://a.example/f\n    title:Roundup\n",
            "3:5: not valid YAML: could not find expected ':' (a space is needed after the ':':"
            " write 'title: Roundup')",
        ),
        (  # the hint was "write the feed as '- url: url:https://a.example/f'"
            "feeds:\n  - url:https://a.example/f\n",
            "2:5: feeds[0]: expected keys and values (key: value), got 'url:https://a.example/f'"
            " (a space is needed after the ':': write 'url: https://a.example/f')",
        ),
        (  # a traceback: YAML reads it as a date, month 13
            "feeds:\n  - url: https://a.example/f\n    title: 2024-13-45\n",
            "3:12: not valid YAML: '2024-13-45' reads as a date, but is none (month must be in 1..12)"
            ' (if it is text, put it in quotes: "2024-13-45")',
        ),
        (  # a traceback too
            "feeds:\n  - url: https://a.example/f\n    priority: !!int high\n",
            "3:15: not valid YAML: 'high' is not what its tag says (invalid literal for int() with base"
            " 10: 'high') (fix the value, or remove the tag (the '!!...' before it))",
        ),
        (  # "Input should be a valid string"
            "feeds:\n  - url: https://a.example/f\n    title: 1984\n",
            '3:5: feeds[0].title: expected text, got 1984 (put it in quotes: title: "1984")',
        ),
        (
            "feeds:\n  - url: https://a.example/f\n    title: 2024-01-01\n",
            "3:5: feeds[0].title: expected text, got the date 2024-01-01"
            ' (put it in quotes: title: "2024-01-01")',
        ),
        (
            "feeds:\n  - url:\n",
            "2:5: feeds[0].url: expected text, got nothing (write a value after 'url:', or remove the line)",
        ),
        (
            "feeds:\n  - url: !env FEED_URL\n",
            "2:5: feeds[0].url: expected text, got a value tagged !env"
            " (feeds.yaml reads no tags such as !env: write the value itself)",
        ),
        (  # "Input should be a valid boolean, unable to interpret input"
            "feeds:\n  - url: https://a.example/f\n    enabled: maybe\n",
            "3:5: feeds[0].enabled: expected true or false, got 'maybe'",
        ),
        (
            "feeds:\n  - url: https://a.example/f\nnewsletters:\n",
            "3:1: newsletters: expected a list (one '- ' line per item), got nothing"
            " (write its items on the lines below, each after '- ', or 'newsletters: []' for none)",
        ),
        (
            'feeds:\n  - url: "C:\\feeds\\daily.xml"\n',
            "2:20: not valid YAML: found unknown escape character 'd'"
            " (in double quotes '\\' starts an escape: use single quotes, or write '\\\\')",
        ),
        (
            "feeds:\n  - url: https://a.example/f\n---\nfeeds: []\n",
            "3:1: not valid YAML: but found another document"
            " (feeds.yaml holds one document: remove the '---' line, or merge what follows it into the rest)",
        ),
        (  # a traceback: the file name is longer than the system allows
            f"feeds:\n  - url: {'a' * 300}.xml\n",
            "2:5: feeds[0].url: not a path this system can open: file name too long"
            " (fix the path or remove the feed)",
        ),
    ],
)
def test_a_broken_feeds_yaml_is_said_on_its_line_with_what_to_write(
    tmp_path: Path, text: str, expected: str
) -> None:
    path = write(tmp_path, text)
    code, stdout, stderr = _config_check(path)
    assert (code, stdout) == (2, "")
    assert stderr.splitlines() == [f"{path}:{expected}", f"1 problem(s) in {path}"]


def test_a_bom_and_windows_line_endings_are_read_as_any_other_file(tmp_path: Path) -> None:
    path = tmp_path / "feeds.yaml"
    path.write_bytes(b"\xef\xbb\xbffeeds:\r\n  - url: https://a.example/f\r\n    titel: A\r\n")
    code, _, stderr = _config_check(path)
    assert (code, stderr.splitlines()[0]) == (
        2,
        f"{path}:3:5: feeds[0].titel: unknown key 'titel' (did you mean 'title'?)",
    )
    path.write_bytes(path.read_bytes().replace(b"titel", b"title"))
    assert _config_check(path) == (0, f"{path}: ok\n", "")


def test_retention_keeps_180_days_by_default_null_keeps_everything(tmp_path: Path) -> None:
    feeds = "feeds:\n  - url: https://example.com/a\n"
    assert load_config(write(tmp_path, feeds)).config.retention.max_age == timedelta(days=180)
    kept = load_config(write(tmp_path, feeds + "retention:\n  max_age: null\n"))
    assert kept.config.retention.max_age is None
    two_weeks = load_config(write(tmp_path, feeds + "retention:\n  max_age: 2w\n"))
    assert two_weeks.config.retention.max_age == timedelta(days=14)


def test_a_retention_too_short_or_unreadable_is_refused_on_its_line(tmp_path: Path) -> None:
    # retention was an unknown key: there was no way to keep the database from growing forever.
    path = write(
        tmp_path,
        "feeds:\n  - url: https://example.com/a\nretention:\n  max_age: 3d\n",
    )
    assert problems_of(path) == [
        f"{path}:4:3: retention.max_age: 3d is shorter than 7 days: entries that recent are still"
        " news (dedupe compares new entries with them, and a digest takes articles up to a week"
        " old); write at least 7d, or null to keep everything"
    ]
    path = write(
        tmp_path,
        "feeds:\n  - url: https://example.com/a\nretention:\n  max_age: half a year\n  keep: all\n",
    )
    assert problems_of(path) == [
        f"{path}:4:3: retention.max_age: bad duration 'half a year': use a number and a unit"
        " (s, m, h, d, w), e.g. 30m or 1h30m",
        f"{path}:5:3: retention.keep: unknown key 'keep' (valid keys: max_age)",
    ]


def test_the_readmes_configuration_reference_is_a_valid_feeds_yaml(tmp_path: Path) -> None:
    # A reader copies it and edits: every key it shows must be one the loader takes.
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
    blocks = [b for b in re.findall(r"```yaml\n(.*?)```", readme, re.S) if b.lstrip().startswith("feeds:")]
    assert blocks, "the README has no feeds.yaml reference"
    for block in blocks:
        problems = check_config(write(tmp_path, block))
        # The files it names (a CA file, a DKIM key) are examples: only that they are not there may be said.
        assert [p for p in problems if not p.message.endswith(" does not exist")] == []


@pytest.mark.parametrize(
    ("char", "named"), [("\x1b", "U+001B (ESC)"), ("\x0c", "U+000C (FORM FEED)"), ("\x00", "U+0000 (NUL)")]
)
def test_a_character_yaml_forbids_is_said_on_its_line_not_a_traceback(
    tmp_path: Path, char: str, named: str
) -> None:
    # Pasted from a terminal: every command died with ruamel's ReaderError and a traceback.
    path = write(tmp_path, f'feeds:\n  - url: a.xml\n    title: "caf{char}"\nnewsletters: []\n')
    (problem,) = problems_of(path)
    assert f"{path}:3:16: character {named} is not allowed in YAML" in problem
    ran = CliRunner().invoke(app, ["--config", str(path), "status"])
    assert ran.exit_code == 2
    assert "Traceback" not in ran.output


def test_a_newsletter_name_with_capitals_or_spaces_says_what_a_name_may_hold(tmp_path: Path) -> None:
    # pydantic's words were "String should match pattern '^[a-z0-9][a-z0-9_-]*$'".
    path = write(tmp_path, "feeds: []\nnewsletters:\n  - name: Daily News\n    title: Daily\n")
    (problem,) = problems_of(path)
    assert "'Daily News' is not a newsletter name: lower-case letters, digits, - and _" in problem
    assert "write name: daily-news" in problem
    assert "pattern" not in problem


def test_a_retention_max_age_without_a_unit_asks_for_one(tmp_path: Path) -> None:
    # A bare number is seconds everywhere else: `max_age: 180` was refused as "3m is shorter than 7 days".
    (problem,) = problems_of(write(tmp_path, "feeds: []\nnewsletters: []\nretention:\n  max_age: 180\n"))
    assert "180 has no unit: write 180d for days, or null to keep everything" in problem
    assert "3m" not in problem


@pytest.mark.parametrize(
    ("smtp", "port", "line"),
    [
        ("smtp:\n  host: 127.0.0.1\n  port: 99999\n", 99999, "4:3"),
        ("smtp:\n  host: 127.0.0.1\n  port: 0\n", 0, "4:3"),
        ("smtp: {host: 127.0.0.1, port: -25}\n", -25, "2:25"),
    ],
)
def test_an_smtp_port_out_of_range_is_refused_on_its_line(
    tmp_path: Path, smtp: str, port: int, line: str
) -> None:
    # It passed `config check`; the send then failed blaming the mail server or its host name.
    path = write(tmp_path, f"feeds: []\n{smtp}")
    expected = (
        f"{path}:{line}: smtp.port: bad port {port}: write a number from 1 to 65535,"
        " e.g. 587 (starttls) or 465 (tls)"
    )
    assert problems_of(path) == [expected]
    code, stdout, stderr = _config_check(path)
    assert (code, stdout) == (2, "")
    assert stderr.splitlines()[0] == expected


@pytest.mark.parametrize("value", ["0s", "0"])
def test_an_smtp_timeout_of_zero_is_refused_on_its_line(tmp_path: Path, value: str) -> None:
    # It passed `config check`; every send then failed with a traceback ("Non-blocking
    # socket (timeout=0) is not supported") that named no setting, retried forever.
    path = write(tmp_path, f"feeds: []\nsmtp:\n  host: mail.example\n  timeout: {value}\n")
    assert problems_of(path) == [f"{path}:4:3: smtp.timeout: must be more than 0, e.g. 10s"]
