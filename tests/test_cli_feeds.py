"""``aggregator feeds …`` against a real loopback feed server: every command leaves feeds.yaml
as a person would (golden files), and every refusal leaves it untouched."""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from aggregator import cli
from aggregator.cli_feeds import feeds_app
from aggregator.opml import parse_opml
from tests.feedserver import HTML_PAGE, FeedServer

if not any(group.name == "feeds" for group in cli.app.registered_groups):
    cli.app.add_typer(feeds_app, name="feeds")  # until aggregator/cli.py registers it

GOLDEN = Path(__file__).parent / "golden" / "config"
OPML_DIR = Path(__file__).parent / "opml"
UPDATE = os.environ.get("AGGREGATOR_UPDATE_GOLDEN") == "1"

TWO_FEEDS_PAGE = b"""<!doctype html><html><head><title>Two feeds</title>
<link rel="alternate" type="application/rss+xml" title="Posts" href="/feed.xml">
<link rel="alternate" type="application/atom+xml" title="Comments" href="/atom.xml">
</head><body>hello</body></html>"""


def run(config: Path, *args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli.app, ["--config", str(config), *args])
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout, result.stderr


def config_from(tmp_path: Path, name: str) -> Path:
    path = tmp_path / "feeds.yaml"
    shutil.copyfile(GOLDEN / name, path)
    return path


CLI_CASES: dict[str, tuple[str, list[str]]] = {
    "cli_add": ("base.yaml", ["feeds", "add", "{server}/feed.xml", "--topic", "local", "--interval", "30m"]),
    "cli_add_from_page": ("empty.yaml", ["feeds", "add", "{server}/page.html"]),
    "cli_remove_by_title": ("base.yaml", ["feeds", "remove", "The Local Paper"]),
    "cli_remove_by_url": ("base.yaml", ["feeds", "remove", "https://wire.example.com/rss.xml"]),
    "cli_set": (
        "base.yaml",
        [
            "feeds",
            "set",
            "https://blog.example.net/index.xml",
            "enabled=true",
            "interval=2h",
            "topics=politics",
        ],
    ),
    "cli_set_unset_title": ("base.yaml", ["feeds", "set", "Example Wire", "title="]),
    "cli_import": ("base.yaml", ["feeds", "import", str(OPML_DIR / "feedly.opml")]),
}


@pytest.mark.parametrize("name", sorted(CLI_CASES))
def test_command_leaves_feeds_yaml_as_a_person_would(
    tmp_path: Path, feed_server: FeedServer, name: str
) -> None:
    before, args = CLI_CASES[name]
    path = config_from(tmp_path, before)
    code, _, stderr = run(path, *(a.replace("{server}", feed_server.base_url) for a in args))
    assert code == 0, stderr
    actual = path.read_text(encoding="utf-8").replace(feed_server.base_url, "{server}")
    golden = GOLDEN / f"{name}.after.yaml"
    if UPDATE:
        golden.write_text(actual, encoding="utf-8")
    assert actual == golden.read_text(encoding="utf-8")


def test_add_fetches_the_feed_once_and_says_where_it_went(tmp_path: Path, feed_server: FeedServer) -> None:
    path = config_from(tmp_path, "base.yaml")
    code, stdout, _ = run(path, "feeds", "add", feed_server.url("/atom.xml"), "--title", "Mine")
    assert code == 0
    assert (
        stdout.strip() == f"feeds.yaml:23: added {feed_server.url('/atom.xml')} (Mine, atom10, 1 entry)"
    )  # the title written, not the feed's own ("Loopback Atom"), which --title replaced
    assert feed_server.count("/atom.xml") == 1
    assert "title: Mine" in path.read_text()


def test_add_a_page_with_several_feeds_needs_a_pick(tmp_path: Path, feed_server: FeedServer) -> None:
    feed_server.add_feed("/two.html", TWO_FEEDS_PAGE, content_type="text/html")
    path = config_from(tmp_path, "empty.yaml")
    before = path.read_bytes()
    code, _, stderr = run(path, "feeds", "add", feed_server.url("/two.html"))
    assert code == 2  # a usage error (choose with --pick), not a feed that failed (1)
    assert f"advertises 2 feeds; choose one with --pick N:\n  1) {feed_server.url('/feed.xml')}" in stderr
    assert f"  2) {feed_server.url('/atom.xml')}" in stderr
    assert path.read_bytes() == before

    code, _, stderr = run(path, "feeds", "add", feed_server.url("/two.html"), "--pick", "3")
    assert code == 2
    assert f"--pick 3: {feed_server.url('/two.html')} advertises 2 feeds:\n  1) " in stderr
    assert f"  2) {feed_server.url('/atom.xml')}" in stderr
    assert path.read_bytes() == before

    code, _, stderr = run(path, "feeds", "add", feed_server.url("/two.html"), "--pick", "2")
    assert code == 0, stderr
    assert f"{feed_server.url('/two.html')} advertises {feed_server.url('/atom.xml')}" in stderr
    assert f"url: {feed_server.url('/atom.xml')}" in path.read_text()


def test_add_follows_a_permanent_redirect(tmp_path: Path, feed_server: FeedServer) -> None:
    path = config_from(tmp_path, "empty.yaml")
    code, _, stderr = run(path, "feeds", "add", feed_server.url("/moved"))
    assert code == 0
    assert "moved permanently to" in stderr
    assert f"url: {feed_server.url('/feed.xml')}" in path.read_text()


@pytest.mark.parametrize(
    ("path_on_server", "message"),
    [
        ("/missing", "cannot subscribe to {url}: not found (HTTP 404) at {url}\n"),
        ("/no-feeds.html", "is an HTML page and advertises no feed"),
    ],
)
def test_add_refuses_what_is_not_a_feed(
    tmp_path: Path, feed_server: FeedServer, path_on_server: str, message: str
) -> None:
    feed_server.add_feed("/no-feeds.html", HTML_PAGE.replace(b"<link", b"<meta"), content_type="text/html")
    path = config_from(tmp_path, "base.yaml")
    before = path.read_bytes()
    url = feed_server.url(path_on_server)
    code, _, stderr = run(path, "feeds", "add", url)
    assert code == 1
    assert message.format(url=url) in stderr
    assert path.read_bytes() == before


def test_add_refuses_a_duplicate_without_fetching(tmp_path: Path, feed_server: FeedServer) -> None:
    path = config_from(tmp_path, "empty.yaml")
    assert run(path, "feeds", "add", feed_server.url("/feed.xml"))[0] == 0
    before = path.read_bytes()
    variant = feed_server.url("/feed.xml").replace("http://", "HTTP://") + "?utm_source=x"
    code, _, stderr = run(path, "feeds", "add", variant)
    assert code == 2
    assert f"feeds.yaml: already subscribed: {feed_server.url('/feed.xml')}" in stderr
    assert feed_server.count("/feed.xml") == 1
    assert path.read_bytes() == before


@pytest.mark.parametrize("command", ["add", "remove", "set"])
def test_text_that_is_no_url_is_refused_with_a_message(tmp_path: Path, command: str) -> None:
    path = config_from(tmp_path, "base.yaml")
    before = path.read_bytes()
    code, _, stderr = run(path, "feeds", command, "http://[x", *(["interval=1h"] if command == "set" else []))
    assert code == 2
    assert "not a valid feed URL: 'http://[x': Invalid IPv6 URL" in stderr
    assert path.read_bytes() == before


def test_add_refuses_a_page_advertising_a_feed_already_there(tmp_path: Path, feed_server: FeedServer) -> None:
    path = config_from(tmp_path, "empty.yaml")
    assert run(path, "feeds", "add", feed_server.url("/feed.xml"))[0] == 0
    code, _, stderr = run(path, "feeds", "add", feed_server.url("/page.html"))
    assert code == 2
    assert "already subscribed" in stderr


def test_add_checks_the_interval_before_fetching(tmp_path: Path, feed_server: FeedServer) -> None:
    path = config_from(tmp_path, "base.yaml")
    code, _, stderr = run(path, "feeds", "add", feed_server.url("/feed.xml"), "--interval", "soon")
    assert code == 2
    assert "--interval: bad duration 'soon'" in stderr
    assert feed_server.count("/feed.xml") == 0


def test_an_interval_of_zero_is_refused_before_fetching(tmp_path: Path, feed_server: FeedServer) -> None:
    # Was fetched, then refused on saving (or, before config refused it, polled every 5m).
    path = config_from(tmp_path, "base.yaml")
    before = path.read_bytes()
    code, _, stderr = run(path, "feeds", "add", feed_server.url("/feed.xml"), "--interval", "0s")
    assert code == 2
    assert stderr.startswith("--interval: an interval of 0 would poll without a pause:")
    assert feed_server.count("/feed.xml") == 0
    assert path.read_bytes() == before


def test_an_interval_polling_will_not_keep_is_saved_with_a_warning(
    tmp_path: Path, feed_server: FeedServer
) -> None:
    # `feeds set X interval=1m` said nothing, and the feed was polled every 5m.
    path = config_from(tmp_path, "base.yaml")
    code, stdout, stderr = run(path, "feeds", "set", "Example Wire", "interval=1m")
    assert (code, stdout) == (0, "feeds.yaml:7: interval=1m\n")
    assert stderr == (
        f"{path}:10:5: warning: feeds[0].interval: 1m is shorter than polling.min_interval (5m): this feed"
        " is polled every 5m instead (to poll this often, lower polling.min_interval; else write 5m)\n"
    )
    assert "    interval: 1m\n" in path.read_text()
    code, stdout, stderr = run(path, "feeds", "add", feed_server.url("/feed.xml"), "--interval", "2m")
    assert code == 0
    assert stderr.startswith(f"{path}:26:5: warning: feeds[3].interval: 2m is shorter than")
    assert path.read_text().splitlines()[25] == "    interval: 2m"
    assert run(path, "feeds", "set", "Example Wire", "interval=")[1:] == ("feeds.yaml:7: interval=\n", "")


def test_remove_and_set_name_what_they_cannot_find(tmp_path: Path) -> None:
    path = config_from(tmp_path, "base.yaml")
    before = path.read_bytes()
    code, _, stderr = run(path, "feeds", "remove", "Nope")
    assert (code, stderr.strip()) == (2, "feeds.yaml: no feed with the URL or title 'Nope'")
    code, _, stderr = run(path, "feeds", "set", "Example Wire", "intervall=1h")
    assert code == 2
    # The likely key, as `config check` says it, rather than every key there is.
    assert "cannot set 'intervall' on a feed: did you mean 'interval'?" in stderr
    assert "url, title" not in stderr
    code, _, stderr = run(path, "feeds", "set", "Example Wire", "colour=red")
    assert code == 2
    assert (
        "cannot set 'colour' on a feed: valid keys: url, title, topics, interval, priority, enabled" in stderr
    )
    code, _, stderr = run(path, "feeds", "set", "Example Wire", "interval=3 parsecs")
    assert code == 2
    assert "not saved: feeds.yaml would be invalid: feeds[0].interval: bad duration '3 parsecs'" in stderr
    assert path.read_bytes() == before


def test_remove_says_the_stored_entries_stay(tmp_path: Path) -> None:
    path = config_from(tmp_path, "base.yaml")
    code, stdout, _ = run(path, "feeds", "remove", "Example Wire")
    assert code == 0
    assert stdout.strip() == (
        "feeds.yaml: removed https://wire.example.com/rss.xml; its entries stay in the database, "
        "out of the outputs and digests until the feed is added back"
    )


def test_an_invalid_file_is_not_edited(tmp_path: Path) -> None:
    path = tmp_path / "feeds.yaml"
    path.write_text("feeds:\n  - url: https://a.example/f\n    intervall: 1h\n")
    code, _, stderr = run(path, "feeds", "remove", "https://a.example/f")
    assert code == 2
    assert "feeds.yaml:3:5: feeds[0].intervall: unknown key 'intervall' (did you mean 'interval'?)" in stderr
    assert "fix them first" in stderr


def test_list_shows_health_from_the_store(tmp_path: Path, feed_server: FeedServer) -> None:
    path = config_from(tmp_path, "empty.yaml")
    assert run(path, "feeds", "add", feed_server.url("/feed.xml"), "--topic", "news")[0] == 0
    assert run(path, "feeds", "add", feed_server.url("/gone"))[0] == 1  # refused: 410
    code, stdout, _ = run(path, "feeds", "list", "--format", "json")
    assert code == 0
    assert not (tmp_path / "data").exists()  # listing does not create a database
    (row,) = json.loads(stdout)
    assert row["status"] == "never"
    assert row["topics"] == ["news"]

    assert run(path, "poll")[0] == 0
    code, stdout, _ = run(path, "feeds", "list", "--format", "json")
    (row,) = json.loads(stdout)
    assert (row["status"], row["entries"], row["title"]) == ("ok", 1, "Loopback News")
    assert row["last_fetch"] is not None

    code, stdout, _ = run(path, "feeds", "list")
    assert code == 0
    assert "Loopback News" in stdout
    assert "1 feed in feeds.yaml" in stdout


def test_list_shows_health_in_a_folder_whose_name_holds_a_percent_sign(
    tmp_path: Path, feed_server: FeedServer
) -> None:
    # The database URL's path is escaped ("100%25"): the check for an existing database
    # read the escaped text as a path, found nothing, and listed no health at all.
    folder = tmp_path / "100%"
    folder.mkdir()
    path = folder / "feeds.yaml"
    path.write_text(f"feeds:\n  - url: {feed_server.url('/feed.xml')}\nnewsletters: []\n")
    assert run(path, "poll")[0] == 0
    code, stdout, _ = run(path, "feeds", "list", "--format", "json")
    (row,) = json.loads(stdout)
    assert (code, row["status"], row["entries"]) == (0, "ok", 1)


def test_list_names_an_untitled_feed_by_its_own_title(tmp_path: Path, feed_server: FeedServer) -> None:
    # feeds.yaml promises that a feed without a `title` is called by its own title.
    path = config_from(tmp_path, "empty.yaml")
    path.write_text(
        path.read_text().replace("feeds: []", f"feeds: [{{url: '{feed_server.url('/feed.xml')}'}}]")
    )
    assert run(path, "poll")[0] == 0

    code, stdout, _ = run(path, "feeds", "list", "--format", "json")
    (row,) = json.loads(stdout)
    assert (row["title"], row["known_title"]) == (None, "Loopback News")
    code, stdout, _ = run(path, "feeds", "list")
    assert code == 0
    assert "Loopback News" in stdout


def test_import_twice_adds_nothing_and_reports_it(tmp_path: Path) -> None:
    path = config_from(tmp_path, "base.yaml")
    opml = str(OPML_DIR / "freshrss.opml")
    code, stdout, stderr = run(path, "feeds", "import", opml)
    assert code == 0
    assert stdout.strip() == "feeds.yaml: 2 feeds added, 0 already present, 1 skipped"
    assert "skipped: outline 'Local scraper': not an http(s) feed URL" in stderr
    after_first = path.read_bytes()
    code, stdout, _ = run(path, "feeds", "import", opml)
    assert stdout.strip() == "feeds.yaml: 0 feeds added, 2 already present, 1 skipped"
    assert path.read_bytes() == after_first


def test_import_of_a_malformed_file_changes_nothing(tmp_path: Path) -> None:
    path = config_from(tmp_path, "base.yaml")
    before = path.read_bytes()
    bad = tmp_path / "bad.opml"
    bad.write_bytes((OPML_DIR / "feedly.opml").read_bytes()[:-40])
    code, _, stderr = run(path, "feeds", "import", str(bad))
    assert code == 2
    assert "not well-formed XML" in stderr
    assert "nothing was imported" in stderr
    assert path.read_bytes() == before


def test_export_opml_imports_back_to_the_same_feeds(tmp_path: Path) -> None:
    path = config_from(tmp_path, "base.yaml")
    code, stdout, _ = run(path, "feeds", "export", "--opml")
    assert code == 0
    subscriptions = parse_opml(stdout.encode(), "export.opml").subscriptions
    assert [(s.url, s.topics) for s in subscriptions] == [
        ("https://wire.example.com/rss.xml", ()),
        ("https://paper.example.org/feed.atom", ("local", "politics")),
        ("https://blog.example.net/index.xml", ()),
    ]
    (tmp_path / "other").mkdir()
    other = config_from(tmp_path / "other", "base.yaml")
    exported = tmp_path / "export.opml"
    exported.write_text(stdout)
    assert run(other, "feeds", "import", str(exported))[1].strip() == (
        "feeds.yaml: 0 feeds added, 3 already present, 0 skipped"
    )


def test_export_json(tmp_path: Path) -> None:
    code, stdout, _ = run(config_from(tmp_path, "base.yaml"), "feeds", "export")
    assert code == 0
    rows = json.loads(stdout)
    assert rows[1] == {
        "url": "https://paper.example.org/feed.atom",
        "title": "The Local Paper",
        "topics": ["local", "politics"],
        "interval": 21600,
        "priority": 0,
        "enabled": True,
    }


def test_every_feeds_command_has_help() -> None:
    for command in ("add", "remove", "list", "set", "import", "export"):
        result = CliRunner().invoke(cli.app, ["feeds", command, "--help"])
        assert result.exit_code == 0
        assert "Usage:" in result.stdout


def test_a_file_that_cannot_be_written_is_reported_and_left_as_it_was(tmp_path: Path) -> None:
    # A name so long that the temporary file beside it cannot be made (ENAMETOOLONG): a
    # real failure to write, as a full disk or a read-only folder would be.
    path = tmp_path / ("f" * 245 + ".yaml")
    shutil.copyfile(GOLDEN / "base.yaml", path)
    before = path.read_bytes()
    code, _, stderr = run(path, "feeds", "set", "https://wire.example.com/rss.xml", "interval=2h")
    assert code == 2
    assert "not saved: cannot write next to" in stderr
    assert "the file is unchanged" in stderr
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temporary file left


def test_a_file_nested_too_deeply_is_refused_by_every_command(tmp_path: Path) -> None:
    path = tmp_path / "feeds.yaml"
    path.write_text("feeds: []\nx: " + "[" * 400 + "]" * 400 + "\n")
    for command in (["list"], ["export"], ["remove", "https://a.example/f"]):
        code, _, stderr = run(path, "feeds", *command)
        assert code == 2, command
        assert "nested too deeply" in stderr


def test_import_skips_an_unusable_outline_and_imports_the_others(tmp_path: Path) -> None:
    path = config_from(tmp_path, "base.yaml")
    opml = tmp_path / "subs.opml"
    good = "".join(f'<outline text="Good {n}" xmlUrl="https://good{n}.example/feed"/>' for n in range(3))
    long_url = "https://long.example/" + "x" * 1100
    opml.write_text(
        f'<opml version="2.0"><head/><body>{good}'
        '<outline text="Caf&#x81; News" xmlUrl="https://cafe.example/feed"/>'
        f'<outline text="Long" xmlUrl="{long_url}"/></body></opml>'
    )
    code, stdout, stderr = run(path, "feeds", "import", str(opml))
    assert code == 0, stderr
    assert stdout.strip() == "feeds.yaml: 4 feeds added, 0 already present, 1 skipped"
    assert "skipped: outline 'Long': url longer than 1024 bytes" in stderr
    assert "title: Caf News" in path.read_text()


def test_a_tab_before_a_comment_is_edited_and_said(tmp_path: Path) -> None:
    path = tmp_path / "feeds.yaml"
    path.write_text("feeds:\n  - url: https://a.example/feed\t# my main feed\n")
    code, _, stderr = run(path, "feeds", "set", "https://a.example/feed", "interval=2h")
    assert code == 0, stderr
    assert path.read_text() == "feeds:\n  - url: https://a.example/feed # my main feed\n    interval: 2h\n"
    assert "feeds.yaml: the tab before the comment on line(s) 2 is written as spaces" in stderr


def test_removing_the_first_feed_writes_a_file_that_loads(tmp_path: Path) -> None:
    path = tmp_path / "feeds.yaml"
    path.write_text(
        "feeds:\n  - url: https://wire.example.com/rss.xml\n    title: Example Wire\n\n"
        "  # Local paper; slow, so poll less often.\n  - url: https://paper.example.org/feed.atom\n"
        "    interval: 6h\n"
    )
    code, _, stderr = run(path, "feeds", "remove", "Example Wire")
    assert code == 0, stderr
    assert path.read_text() == (
        "feeds:\n  # Local paper; slow, so poll less often.\n"
        "  - url: https://paper.example.org/feed.atom\n    interval: 6h\n"
    )
    assert run(path, "feeds", "list", "--format", "json")[0] == 0


def test_a_file_with_another_hard_link_is_refused_with_what_to_do(tmp_path: Path) -> None:
    path = config_from(tmp_path, "base.yaml")
    os.link(path, tmp_path / "backup.yaml")
    before = path.read_bytes()
    code, _, stderr = run(path, "feeds", "set", "Example Wire", "interval=2h")
    assert code == 2
    assert f"not saved: {path} has 2 hard links" in stderr
    assert path.read_bytes() == before
    assert os.path.samefile(path, tmp_path / "backup.yaml")


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("", "empty url"),
        ("ftp://x/y", "not an http(s) or file URL, nor a path: 'ftp://x/y'"),
        ("http:///x", "URL without a host: 'http:///x'"),
        ("missing.xml", "no such file: {folder}/missing.xml"),
    ],
)
def test_add_refuses_what_config_check_refuses_before_fetching(
    tmp_path: Path, feed_server: FeedServer, url: str, message: str
) -> None:
    # Bad usage (2), worded as `config check` words it, not a feed that failed (1).
    path = config_from(tmp_path, "empty.yaml")
    before = path.read_bytes()
    code, _, stderr = run(path, "feeds", "add", url)
    assert code == 2, stderr
    assert message.format(folder=tmp_path) in stderr
    assert path.read_bytes() == before
    checked = tmp_path / "checked.yaml"
    checked.write_text(f"feeds:\n  - url: '{url}'\n", encoding="utf-8")
    assert message.format(folder=tmp_path) in run(checked, "config", "check")[2]


@pytest.mark.parametrize(("option", "value"), [("--title", "Wire\x1b[2J"), ("--topic", "Diplomacy\x00")])
def test_add_refuses_a_control_character_before_fetching(
    tmp_path: Path, feed_server: FeedServer, option: str, value: str
) -> None:
    path = config_from(tmp_path, "empty.yaml")
    before = path.read_bytes()
    code, _, stderr = run(path, "feeds", "add", feed_server.url("/atom.xml"), option, value)
    assert code == 2, stderr
    assert f"{option}: a control character" in stderr
    assert feed_server.count("/atom.xml") == 0  # refused before the feed was fetched
    assert path.read_bytes() == before


def test_set_refuses_a_url_that_is_no_file(tmp_path: Path) -> None:
    path = config_from(tmp_path, "base.yaml")
    before = path.read_bytes()
    code, _, stderr = run(path, "feeds", "set", "Example Wire", "url=missing.xml")
    assert code == 2, stderr
    assert f"no such file: {tmp_path}/missing.xml" in stderr
    assert path.read_bytes() == before


@pytest.mark.parametrize(
    "url", ["gopher://x.org/f", "ftp://x.org/f", "javascript:alert(1)", "feed://127.0.0.1:8080/f"]
)
def test_set_refuses_a_url_scheme_as_add_does(tmp_path: Path, url: str) -> None:
    # Not taken for a relative path ("no such file: …/gopher:/x.org/f"): refused as `feeds add`
    # and `config check` refuse it.
    path = config_from(tmp_path, "base.yaml")
    before = path.read_bytes()
    code, _, stderr = run(path, "feeds", "set", "Example Wire", f"url={url}")
    assert code == 2, stderr
    message = (
        f"not an http(s) or file URL, nor a path: {url!r}; give a feed's http(s) URL, a file: URL or a path"
    )
    assert stderr.strip() == message
    assert path.read_bytes() == before
    assert run(path, "feeds", "add", url)[:2] == (2, "")
    assert message in run(path, "feeds", "add", url)[2]


@pytest.mark.parametrize(
    "command",
    [
        ["list"],
        ["export"],
        ["add", "https://a.example/feed"],
        ["remove", "https://a.example/feed"],
        ["set", "https://a.example/feed", "interval=1h"],
        ["import", str(OPML_DIR / "feedly.opml")],
    ],
)
def test_a_missing_config_is_said_as_every_command_says_it(tmp_path: Path, command: list[str]) -> None:
    missing = tmp_path / "nope.yaml"
    code, _, stderr = run(missing, "feeds", *command)
    assert code == 2
    assert f"{missing}: file not found (pass --config PATH)" in stderr
    assert not missing.exists()


@pytest.mark.parametrize(
    "command", [["feeds", "list"], ["feeds", "remove", "x"], ["status"], ["config", "check"]]
)
def test_a_missing_config_named_by_the_environment_says_so(tmp_path: Path, command: list[str]) -> None:
    missing = tmp_path / "nope.yaml"
    result = CliRunner().invoke(cli.app, command, env={"AGGREGATOR_CONFIG": str(missing)})
    assert result.exit_code == 2
    assert f"{missing}: file not found (the path is $AGGREGATOR_CONFIG" in result.stderr


@pytest.mark.parametrize(
    "command",
    [
        ["feeds", "list"],
        ["feeds", "export"],
        ["feeds", "add", "https://a.example/feed"],
        ["feeds", "remove", "https://a.example/feed"],
        ["feeds", "set", "https://a.example/feed", "interval=1h"],
        ["feeds", "import", str(OPML_DIR / "feedly.opml")],
        ["status"],
        ["poll"],
        ["config", "check"],
    ],
)
def test_a_folder_given_as_the_config_is_said_as_every_command_says_it(
    tmp_path: Path, command: list[str]
) -> None:
    # Was "cannot read: [Errno 21] Is a directory" (or "cannot read DIR: Is a directory").
    folder = tmp_path / "site"
    folder.mkdir()
    code, _, stderr = run(folder, *command)
    assert code == 2
    assert f"{folder}: a folder, not a feeds.yaml (pass --config PATH)" in stderr
    assert "Errno" not in stderr
    (folder / "feeds.yaml").write_text("feeds: []\n", encoding="utf-8")
    code, _, stderr = run(folder, *command)
    assert code == 2
    assert f"{folder}: a folder, not a feeds.yaml (give the file: --config {folder / 'feeds.yaml'})" in stderr
    assert (folder / "feeds.yaml").read_text(encoding="utf-8") == "feeds: []\n"


@pytest.mark.parametrize("columns", ["40", "120"])
def test_feeds_list_never_shows_a_feeds_password(tmp_path: Path, columns: str) -> None:
    config = tmp_path / "feeds.yaml"
    config.write_text("feeds:\n  - url: https://reader:s3cret-word@feeds.example/f.xml\n", encoding="utf-8")
    done = subprocess.run(
        [sys.executable, "-m", "aggregator", "--config", str(config), "feeds", "list"],
        env={**os.environ, "COLUMNS": columns},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "feeds.example" in done.stdout
    assert "s3cret-word" not in done.stdout


def test_add_takes_a_pasted_url_with_spaces_around_it(tmp_path: Path, feed_server: FeedServer) -> None:
    # feeds.yaml keeps a url stripped; the fetch took it as typed, and said "no usable host name".
    path = config_from(tmp_path, "empty.yaml")
    code, stdout, stderr = run(path, "feeds", "add", f" {feed_server.url('/feed.xml')} ")
    assert (code, stderr) == (0, "")
    assert f"added {feed_server.url('/feed.xml')} (" in stdout
    assert f"url: {feed_server.url('/feed.xml')}\n" in path.read_text()


def test_add_refuses_a_host_with_a_space_as_bad_usage_without_fetching(tmp_path: Path) -> None:
    path = config_from(tmp_path, "base.yaml")
    before = path.read_bytes()
    code, _, stderr = run(path, "feeds", "add", "http://exa mple.org/feed.xml")
    assert code == 2  # was 1, "some feeds failed", after trying to fetch it
    assert "no usable host name in 'http://exa mple.org/feed.xml'" in stderr
    assert path.read_bytes() == before


@contextlib.contextmanager
def _as_user(uid: int) -> Iterator[None]:
    """Run the block as ``uid`` and come back to root after it (root may read any file)."""
    os.setresuid(uid, uid, 0)
    try:
        yield
    finally:
        os.setresuid(0, 0, 0)


def _unreadable(folder: Path, why: str) -> tuple[Path, str]:
    """A feeds.yaml in ``folder`` that cannot be read for ``why``, and the first line of what
    every command says about it."""
    path = folder / "feeds.yaml"
    if why == "not UTF-8":
        path.write_bytes(b"feeds:\n  - url: https://a.example/feed\n    title: Caf\xe9\n")
        return path, f"{path}:3:15: not valid UTF-8 (byte 0xe9) (save the file as UTF-8)"
    if why == "a symlink loop":
        path.symlink_to(path)
        return (
            path,
            f"{path}: cannot read: too many levels of symbolic links (check the path, or pass --config PATH)",
        )
    path.write_text("feeds:\n  - url: https://a.example/feed\n", encoding="utf-8")
    path.chmod(0o200)
    user = pwd.getpwuid(NOBODY if os.geteuid() == 0 else os.geteuid()).pw_name
    return path, (
        f"{path}: permission denied (user {user!r} may not read it, or not enter a folder above it: "
        "give that user read access (chmod, chgrp), or run the command as the file's owner)"
    )


NOBODY = 65534


@pytest.mark.parametrize("why", ["permission denied", "not UTF-8", "a symlink loop"])
@pytest.mark.parametrize(
    "command",
    [
        ["feeds", "list"],
        ["feeds", "export", "--opml"],
        ["feeds", "add", "https://b.example/feed"],
        ["feeds", "remove", "https://a.example/feed"],
        ["feeds", "set", "https://a.example/feed", "interval=1h"],
        ["feeds", "import", str(OPML_DIR / "feedly.opml")],
        ["poll"],
        ["config", "check"],
    ],
)
def test_a_config_that_cannot_be_read_is_said_alike_by_every_command(why: str, command: list[str]) -> None:
    # Was "cannot read: [Errno 13] Permission denied: '…'" from load_config, "cannot read
    # PATH: Permission denied" from the feeds commands and click's own boxed "is not
    # readable"; "cannot edit PATH: not UTF-8 text: 'utf-8' codec can't decode byte 0xe9 in
    # position 56" from the feeds commands where every other command named the line.
    folder = Path(tempfile.mkdtemp(prefix="unreadable-"))  # tmp_path: a folder only root may enter
    # The OPML to import, where the other user may read it (the checkout may be in a folder
    # only root may enter, as a fresh clone in `mktemp -d` is): only feeds.yaml is unreadable.
    readable = Path(tempfile.mkdtemp(prefix="readable-"))
    try:
        folder.chmod(0o755)
        readable.chmod(0o755)
        opml = str(shutil.copy(OPML_DIR / "feedly.opml", readable / "feedly.opml"))
        command = [opml if arg == str(OPML_DIR / "feedly.opml") else arg for arg in command]
        path, said = _unreadable(folder, why)
        as_nobody = why == "permission denied" and os.geteuid() == 0
        with _as_user(NOBODY) if as_nobody else contextlib.nullcontext():
            code, _, stderr = run(path, *command)
        assert (code, stderr.splitlines()[0]) == (2, said), stderr
        assert stderr.splitlines()[1].startswith(f"1 problem(s) in {path}")
        assert sorted(p.name for p in folder.iterdir()) == ["feeds.yaml"]  # nothing made beside it
    finally:
        shutil.rmtree(folder)
        shutil.rmtree(readable)


@pytest.mark.parametrize(
    ("text", "said"),
    [
        (
            "feeds:\n  - url: https://a.example/feed\n   title: A\n",
            ":3:4: not valid YAML: expected <block end>, but found '<block mapping start>'"
            " (check the indentation: a key lines up with the other keys of its mapping,"
            " a '- ' with the other items of its list)",
        ),
        ("- https://a.example/feed\n", ":1:1: expected a mapping with a 'feeds:' list"),
    ],
)
@pytest.mark.parametrize("command", [["list"], ["remove", "https://a.example/feed"]])
def test_a_file_that_is_no_config_is_said_as_config_check_says_it(
    tmp_path: Path, text: str, said: str, command: list[str]
) -> None:
    # Was the editor's "cannot edit PATH: not valid YAML: while parsing a block collection
    # in "<unicode string>", line 2, column 3: …" over seven lines, for `feeds list` too.
    path = tmp_path / "feeds.yaml"
    path.write_text(text, encoding="utf-8")
    code, _, stderr = run(path, "feeds", *command)
    checked = run(path, "config", "check")
    assert (code, checked[0]) == (2, 2)
    assert stderr.splitlines()[0] == checked[2].splitlines()[0] == f"{path}{said}"
    assert "cannot edit" not in stderr
    assert path.read_text(encoding="utf-8") == text
