"""End to end through the ``aggregator`` command: a real loopback server, a real SQLite file.

What a person sees (exit codes, ``status --format json``, ``export``) when a feed that used to
work starts misbehaving, and that nothing already stored is lost or changed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from rich.console import Console
from typer.testing import CliRunner

import aggregator.cli
from aggregator import parsepool, pipeline, service
from aggregator import store as store_module
from aggregator.cli import app
from aggregator.config import load_config
from aggregator.errors import DatabaseUnavailable
from aggregator.runlock import run_lock
from aggregator.store import Store, entry_id
from aggregator.types import DuplicateEvidence, Entry, FeedState, FeedStatus, PollOutcome
from aggregator.urls import without_password
from tests.feedserver import FeedServer

FEEDS = Path(__file__).parent / "feeds"
GOOD_RSS = (FEEDS / "rss20.xml").read_bytes()


def cli(config: Path, *args: str) -> Any:
    return CliRunner().invoke(app, ["--config", str(config), *args], catch_exceptions=False)


def write_config(tmp_path: Path, urls: list[str], polling: str = "") -> Path:
    lines = ["feeds:"] + [f"  - url: {u}" for u in urls] + ["newsletters: []"]
    if polling:
        lines.append("polling:\n" + polling)
    config = tmp_path / "feeds.yaml"
    config.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return config


def status_of(config: Path) -> dict[str, dict[str, Any]]:
    result = cli(config, "status", "--format", "json")
    assert result.exit_code == 0, result.output
    return {row["url"]: row for row in json.loads(result.stdout)}


def export_of(config: Path) -> list[dict[str, Any]]:
    result = cli(config, "export", "--format", "jsonl")
    assert result.exit_code == 0, result.output
    return [json.loads(line) for line in result.stdout.splitlines()]


def serve_instead(server: FeedServer, path: str, other: str) -> None:
    """Make ``path`` behave like the server's built-in misbehaviour ``other`` from now on."""
    server.resources.pop(path, None)
    if other == "/missing":  # unknown paths are 404
        return
    if other in server.redirects:
        server.redirects[path] = server.redirects[other]
    else:
        server._specials[path] = server._specials[other]


# (what the feed turns into, how to make it so, words the user must see in the error)
MISBEHAVIOURS = [
    ("404", lambda s: serve_instead(s, "/f", "/missing"), ["404", "feeds.yaml"]),
    ("410", lambda s: serve_instead(s, "/f", "/gone"), ["410", "remove it from feeds.yaml"]),
    ("500", lambda s: serve_instead(s, "/f", "/error"), ["500"]),
    ("429", lambda s: serve_instead(s, "/f", "/rate-limited"), ["429"]),
    ("redirect loop", lambda s: serve_instead(s, "/f", "/redirect-loop"), ["redirect"]),
    ("gzip bomb", lambda s: serve_instead(s, "/f", "/gzip-bomb"), ["larger than"]),
    ("endless body", lambda s: serve_instead(s, "/f", "/endless"), ["larger than"]),
    ("slow trickle", lambda s: serve_instead(s, "/f", "/trickle"), ["timed out"]),
    ("hang up", lambda s: serve_instead(s, "/f", "/hang-up"), ["/f"]),
    (
        "html page",
        lambda s: s.add_feed("/f", (FEEDS / "html_page.html").read_bytes(), content_type="text/html"),
        ["HTML page", "advertises"],
    ),
    ("not xml at all", lambda s: s.add_feed("/f", b"\x00\x01garbage{{{"), ["not a feed"]),
]


@pytest.mark.parametrize(("name", "break_feed", "words"), MISBEHAVIOURS, ids=[m[0] for m in MISBEHAVIOURS])
def test_a_feed_that_breaks_keeps_what_was_stored(
    tmp_path: Path, feed_server: FeedServer, name: str, break_feed: Any, words: list[str]
) -> None:
    feed_server.add_feed("/f", GOOD_RSS)
    url = feed_server.url("/f")
    config = write_config(
        tmp_path,
        [url, feed_server.url("/atom.xml")],
        polling="  timeout: 1s\n  read_timeout: 1s\n  max_response_size: 2MiB",
    )
    first = cli(config, "poll")
    assert first.exit_code == 0, first.output
    before = export_of(config)
    assert {e["feed"] for e in before} == {url, feed_server.url("/atom.xml")}

    break_feed(feed_server)
    second = cli(config, "poll")

    assert second.exit_code == 1, second.output  # some feeds failed
    row = status_of(config)[url]
    assert row["status"] == ("retired" if name == "410" else "error")
    for word in words:
        assert word in row["error"] or word in second.stderr, (word, row["error"], second.stderr)
    assert f"feeds.yaml:2: {url}:" in second.stderr  # names the line to look at
    assert row["entries"] == sum(1 for e in before if e["feed"] == url)
    assert export_of(config) == before  # nothing already stored changed
    assert status_of(config)[feed_server.url("/atom.xml")]["status"] == "not_modified"


def test_a_feed_whose_entries_the_database_refuses_fails_alone(
    tmp_path: Path, feed_server: FeedServer
) -> None:
    feed_server.add_feed("/f", GOOD_RSS)
    refused, other = feed_server.url("/f"), feed_server.url("/atom.xml")
    config = write_config(tmp_path, [refused, other])
    database = load_config(config).database_url
    Store.open(database).close()  # the schema, so that the database can be told to refuse
    with sqlite3.connect(database.removeprefix("sqlite:///")) as conn:
        conn.execute(
            "CREATE TRIGGER refuse BEFORE INSERT ON entries WHEN NEW.feed_url = ?"
            " BEGIN SELECT RAISE(ABORT, 'refused on purpose'); END".replace("?", f"'{refused}'")
        )

    first = cli(config, "poll")
    assert first.exit_code == 1, first.output  # one feed failed; the poll went on
    rows = status_of(config)
    assert rows[refused]["status"] == "error"
    assert "its entries could not be stored" in rows[refused]["error"]
    assert "refused on purpose" in rows[refused]["error"]
    assert f"feeds.yaml:2: {refused}:" in first.stderr
    assert (rows[other]["status"], rows[other]["entries"] > 0) == ("ok", True)

    with sqlite3.connect(database.removeprefix("sqlite:///")) as conn:
        conn.execute("DROP TRIGGER refuse")
    second = cli(config, "poll")  # fetched in full again (no validators kept), stored this time
    assert second.exit_code == 0, second.output
    rows = status_of(config)
    assert (rows[refused]["status"], rows[refused]["entries"] > 0) == ("ok", True)


def test_run_once_says_which_file_publishing_failed_on_and_keeps_what_it_polled(
    tmp_path: Path, feed_server: FeedServer
) -> None:
    config = write_config(tmp_path, [feed_server.url("/atom.xml")])
    (tmp_path / "public").write_text("a file where the output folder should be")
    result = cli(config, "run", "--once")
    assert result.exit_code == 1
    public = tmp_path / "public"
    assert (
        f"error: writing the output feeds: cannot write {public / 'feed.atom'} ({public} is a file,"
        " not a folder): the polled entries are stored ("
    ) in result.stderr
    assert "Traceback" not in result.stderr
    assert export_of(config)  # what was polled is stored


def test_seed_feeds_run_once_then_nothing_is_stored_twice(tmp_path: Path) -> None:
    config = write_config(tmp_path, [str(FEEDS / "rss20.xml"), str(FEEDS / "jsonfeed11.json")])
    first = cli(config, "run", "--once")
    assert first.exit_code == 0, first.output
    entries = export_of(config)
    assert len(entries) > 0
    again = cli(config, "poll")
    assert again.exit_code == 0
    assert "0 new" in again.stderr
    assert export_of(config) == entries


def test_status_json_has_the_contract_keys(tmp_path: Path, feed_server: FeedServer) -> None:
    config = write_config(tmp_path, [feed_server.url("/feed.xml"), feed_server.url("/never-polled")])
    rows = status_of(config)  # before any poll: every configured feed, status never
    assert [r["status"] for r in rows.values()] == ["never", "never"]
    cli(config, "poll")
    rows = status_of(config)
    ok = rows[feed_server.url("/feed.xml")]
    assert ok["status"] == "ok"
    assert ok["error"] is None
    assert ok["entries"] > 0
    assert ok["last_fetch"] is not None
    assert ok["next_check"] is not None
    broken = rows[feed_server.url("/never-polled")]
    assert broken["status"] == "error"
    assert "404" in broken["error"]


def test_status_table_shows_a_feeds_own_title_word_for_word(
    tmp_path: Path, feed_server: FeedServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A feed names itself: rich markup in its title must not style the table or make a
    # link to somewhere else in a person's terminal, nor an emoji code become a picture.
    title = "[link=https://evil.example/]Your Bank[/link] :fire: [b]News[/b]"
    feed_server.add_feed("/named.xml", GOOD_RSS.replace(b"Harbour  &amp; Hill   News", title.encode()))
    config = write_config(tmp_path, [feed_server.url("/named.xml")])
    assert cli(config, "poll").exit_code == 0
    # Wide enough that the title is not folded, whatever width an earlier test left.
    monkeypatch.setattr(aggregator.cli, "out", Console(width=250, soft_wrap=True))
    shown = CliRunner().invoke(app, ["--config", str(config), "status"])
    assert shown.exit_code == 0, shown.output
    assert title in shown.stdout


def test_conditional_get_and_304_cost_no_parse(tmp_path: Path, feed_server: FeedServer) -> None:
    config = write_config(tmp_path, [feed_server.url("/feed.xml")])
    assert cli(config, "poll").exit_code == 0
    assert cli(config, "poll").exit_code == 0
    second = feed_server.last("/feed.xml")
    assert second.headers.get("if-none-match") == '"feed-v1"'
    assert status_of(config)[feed_server.url("/feed.xml")]["status"] == "not_modified"


def test_a_slow_database_write_does_not_hold_back_the_next_fetch(
    tmp_path: Path, feed_server: FeedServer
) -> None:
    # One request at a time, two feeds that answer 304.  The first one's new state goes to
    # a write that waits until the server has seen the second feed's request: that comes
    # only if the first feed gave its request slot back before its state was stored.
    feed_server.add_feed("/second.xml", GOOD_RSS, etag='"second-v1"')
    urls = [feed_server.url("/feed.xml"), feed_server.url("/second.xml")]
    config = write_config(tmp_path, urls, polling="  concurrency: 1\n  per_host: 1")
    assert cli(config, "poll").exit_code == 0  # now both have validators
    loaded = load_config(config)
    store = Store.open(loaded.database_url)
    save_polls = store.save_polls
    waits: list[bool] = []

    def save_once_the_second_feed_is_requested(*args: Any, **kwargs: Any) -> Any:
        if not waits:
            deadline = time.monotonic() + 5
            while feed_server.count("/second.xml") < 2 and time.monotonic() < deadline:
                time.sleep(0.01)
            waits.append(feed_server.count("/second.xml") == 2)
        return save_polls(*args, **kwargs)

    store.save_polls = save_once_the_second_feed_is_requested  # type: ignore[method-assign]
    try:
        summary = asyncio.run(pipeline.poll_feeds(loaded, store, datetime.now(UTC)))
    finally:
        store.close()
    assert [o.status for o in summary.outcomes] == [FeedStatus.NOT_MODIFIED] * 2
    assert waits == [True]
    assert status_of(config)[urls[0]]["status"] == "not_modified"  # and the held write landed


def test_hostile_feeds_are_stored_sanitized(tmp_path: Path, feed_server: FeedServer) -> None:
    feed_server.add_feed("/xss", (FEEDS / "xss.xml").read_bytes())
    feed_server.add_feed("/xxe", (FEEDS / "external_entity.xml").read_bytes())
    feed_server.add_feed("/cp1251", (FEEDS / "windows1251.xml").read_bytes())
    feed_server.add_feed("/latin1", (FEEDS / "latin1.xml").read_bytes(), content_type="application/rss+xml")
    feed_server.add_feed("/laughs", (FEEDS / "billion_laughs.xml").read_bytes())
    paths = ("/xss", "/xxe", "/cp1251", "/latin1", "/laughs", "/big-feed.xml")
    config = write_config(tmp_path, [feed_server.url(p) for p in paths])
    result = cli(config, "poll")
    assert result.exit_code == 0, result.output
    assert {row["status"] for row in status_of(config).values()} == {"ok"}
    exported = export_of(config)
    titles = {e["title"] for e in exported}
    assert "Привет, мир!" in titles
    assert "Crème brûlée © ½" in titles
    laughs = [e for e in exported if e["feed"] == feed_server.url("/laughs")]
    assert len(laughs) == 1
    assert "lollol" not in json.dumps(laughs)  # the entities were never expanded
    assert status_of(config)[feed_server.url("/big-feed.xml")]["entries"] > 0  # 5 MB is within the cap
    dump = json.dumps(exported)
    assert "root:" not in dump  # /etc/passwd was never read
    assert "<script" not in dump


def test_bad_config_exits_2_and_names_the_line(tmp_path: Path) -> None:
    config = tmp_path / "feeds.yaml"
    config.write_text("feeds:\n  - url: gopher://old.example/\nnewsletters: []\n", encoding="utf-8")
    result = cli(config, "poll")
    assert result.exit_code == 2
    assert "feeds.yaml:2:5: feeds[0].url: not an http(s) or file URL" in result.stderr
    check = cli(config, "config", "check")
    assert check.exit_code == 2
    assert "feeds.yaml:2:5" in check.stderr


def test_permanent_redirect_is_adopted_and_the_user_told_which_line(
    tmp_path: Path, feed_server: FeedServer
) -> None:
    config = write_config(tmp_path, [feed_server.url("/feed.xml"), feed_server.url("/moved")])
    notices = [cli(config, "poll").stderr for _ in range(3)]
    assert "moved permanently" not in notices[0]
    assert f"feeds.yaml:3: {feed_server.url('/moved')} has moved permanently to" in notices[2]
    cli(config, "poll")
    assert feed_server.count("/moved") == 3  # from the fourth poll on, the new address is used


def copy_bundled_sample(tmp_path: Path) -> Path:
    """The project's own feeds.yaml and seeds/, copied so that nothing in the checkout is written."""
    root = Path(__file__).resolve().parent.parent
    shutil.copytree(root / "seeds", tmp_path / "seeds")
    shutil.copy(root / "feeds.yaml", tmp_path / "feeds.yaml")
    return tmp_path / "feeds.yaml"


def test_bundled_sample_run_once_collapses_every_copy_and_groups_the_summit(tmp_path: Path) -> None:
    config = copy_bundled_sample(tmp_path)
    result = cli(config, "run", "--once")
    assert result.exit_code == 0, result.output
    exported = {(e["feed"], e["guid"]): e for e in export_of(config)}
    labels = json.loads((Path(__file__).parent / "seed_labels.json").read_text(encoding="utf-8"))
    assert len(exported) == len(labels["entries"])

    def kept_id(label: dict[str, Any]) -> str:
        entry = exported[(label["feed"], label["guid"])]
        return entry["duplicate_of"] or entry["id"]

    by_article: dict[str, set[str]] = {}
    for label in labels["entries"]:
        by_article.setdefault(label["article"], set()).add(kept_id(label))
    # every copy collapsed: one kept entry per article ...
    assert all(len(kept) == 1 for kept in by_article.values()), by_article
    # ... and no two different articles merged
    kept_of_articles = [next(iter(k)) for k in by_article.values()]
    assert len(set(kept_of_articles)) == len(kept_of_articles)
    for a, b in labels["must_stay_apart"]:
        assert kept_id(a) != kept_id(b) or a == b

    by_story: dict[str, set[str]] = {}
    for label in labels["entries"]:
        by_story.setdefault(label["story"], set()).add(exported[(label["feed"], label["guid"])]["story"])
    assert len(by_story["alaska-summit"]) == 1  # every Alaska-summit piece, from every outlet, is one story
    summit = next(iter(by_story["alaska-summit"]))
    others = {s for name, ids in by_story.items() if name != "alaska-summit" for s in ids}
    assert summit not in others

    # a second run changes nothing
    assert cli(config, "run", "--once").exit_code == 0
    assert {(e["feed"], e["guid"]): e for e in export_of(config)} == exported


def test_explain_says_why_and_a_pin_in_feeds_yaml_takes_effect(tmp_path: Path) -> None:
    config = copy_bundled_sample(tmp_path)
    assert cli(config, "run", "--once").exit_code == 0
    labels = json.loads((Path(__file__).parent / "seed_labels.json").read_text(encoding="utf-8"))
    exported = {(e["feed"], e["guid"]): e for e in export_of(config)}
    retitled = next(label for label in labels["entries"] if "retitled" in label["variations"])
    copy = exported[(retitled["feed"], retitled["guid"])]
    original = exported[(retitled["copy_of"]["feed"], retitled["copy_of"]["guid"])]
    assert copy["duplicate_of"] == original["id"]

    explained = cli(config, "explain", copy["id"])
    assert explained.exit_code == 0
    assert f"a copy: a near-identical copy of {original['id']} (content: containment" in explained.stdout
    assert f"- [{copy['id']}, {original['id']}]" in explained.stdout  # how to pin them apart
    kept = cli(config, "explain", original["id"])
    assert "kept: not a copy of another entry" in kept.stdout
    assert copy["id"] in kept.stdout  # listed among the copies
    assert cli(config, "explain", "0123456789abcdef").exit_code == 2

    text = config.read_text(encoding="utf-8")
    config.write_text(
        text + f"dedupe:\n  pin_apart:\n    - [{copy['id']}, {original['id']}]\n", encoding="utf-8"
    )
    assert cli(config, "run", "--once").exit_code == 0
    after = {e["id"]: e for e in export_of(config)}
    assert after[copy["id"]]["duplicate_of"] is None
    assert after[original["id"]]["duplicate_of"] is None


def test_a_feed_that_edits_one_entry_updates_that_entry_alone(
    tmp_path: Path, feed_server: FeedServer
) -> None:
    # Enough feeds for the parse worker processes, which skip cleaning what is stored already.
    paths = [f"/many/{i}" for i in range(20)]
    for path in paths:
        feed_server.add_feed(path, GOOD_RSS.replace(b"example", f"feed{path[6:]}.example".encode()))
    config = write_config(tmp_path, [feed_server.url(p) for p in paths])
    assert cli(config, "poll").exit_code == 0
    before = {e["id"]: e for e in export_of(config)}

    edited_feed = feed_server.url(paths[3])
    feed_server.add_feed(
        paths[3],
        GOOD_RSS.replace(b"example", b"feed3.example").replace(
            b"Market day moved", b"Market day moved to Friday"
        ),
    )
    second = cli(config, "poll", "--json")
    assert second.exit_code == 0, second.output
    summary = json.loads(second.stdout.strip().splitlines()[-1])
    assert (summary["new"], summary["updated"], summary["failed"]) == (0, 1, 0)

    after = {e["id"]: e for e in export_of(config)}
    changed = [i for i in after if after[i] != before[i]]
    assert [(after[i]["feed"], after[i]["title"]) for i in changed] == [
        (edited_feed, "Market day moved to Friday")
    ]
    third = cli(config, "poll", "--json")  # the same bytes again: nothing to do
    assert json.loads(third.stdout.strip().splitlines()[-1])["updated"] == 0


def test_the_console_script_prints_everything_and_exits_with_the_commands_code(tmp_path: Path) -> None:
    # ``aggregator.__main__`` skips the interpreter's last garbage collection: what the
    # command printed and its exit code must still come out whole.
    config = write_config(tmp_path, [str(FEEDS / "rss20.xml")])
    argv = [sys.executable, "-m", "aggregator", "--config", str(config)]
    polled = subprocess.run(
        [*argv, "poll", "--json"], capture_output=True, text=True, timeout=120, check=False
    )
    assert polled.returncode == 0, polled.stderr
    assert json.loads(polled.stdout.strip().splitlines()[-1])["failed"] == 0
    assert "polled in" in polled.stderr
    missing = subprocess.run(
        [*argv, "export", "--format", "nope"], capture_output=True, text=True, timeout=60, check=False
    )
    assert missing.returncode == 2


def test_poll_prints_plain_lines_to_a_pipe_and_leaves_rich_unimported(
    tmp_path: Path, feed_server: FeedServer
) -> None:
    # People grep these lines, so they come out as they are: rich would have turned the
    # ":fire:" in this URL into an emoji.  And a poll from cron or a script need not import
    # rich at all (tables and progress bars are for terminals).
    url = feed_server.url("/news/:fire:/feed.xml")  # not served: 404
    config = write_config(tmp_path, [feed_server.url("/feed.xml"), url])
    code = (
        "import sys; from aggregator import cli; sys.argv[0] = 'aggregator'\n"
        "try:\n    cli.main()\nexcept SystemExit:\n    pass\n"
        "print(sorted(name for name in sys.modules if name.split('.')[0] == 'rich'))"
    )
    argv = [sys.executable, "-c", code, "--config", str(config), "poll"]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    assert f"feeds.yaml:3: {url}: " in done.stderr
    assert "404" in done.stderr
    assert "2 feeds polled in " in done.stderr
    assert done.stdout.splitlines()[-1] == "[]"


def test_poll_leaves_the_feeds_commands_unimported_and_help_still_lists_them(tmp_path: Path) -> None:
    # In a process of its own: tests/test_cli_feeds.py registers the feeds commands on import.
    config = write_config(tmp_path, [])
    code = (
        "import sys; from aggregator import cli; sys.argv[0] = 'aggregator'\n"
        "try:\n    cli.main()\nexcept SystemExit:\n    pass\n"
        "print('imported' if 'aggregator.cli_feeds' in sys.modules else 'not imported')"
    )

    def run(*args: str) -> str:
        argv = [sys.executable, "-c", code, "--config", str(config), *args]
        env = {**os.environ, "COLUMNS": "100"}
        return subprocess.run(argv, capture_output=True, text=True, timeout=60, env=env, check=False).stdout

    assert run("poll", "--json").splitlines()[-1] == "not imported"
    listed = run("--help")
    assert re.search(r"feeds +Add, remove, change, list, import \(OPML\)", listed)
    assert listed.splitlines()[-1] == "imported"
    assert "Usage: aggregator feeds add [OPTIONS]" in run("feeds", "add", "--help")


SUMMIT = "Leaders met in Anchorage on Friday for talks that ended without a ceasefire agreement."
THEN, NOW = datetime(2025, 8, 1, tzinfo=UTC), datetime(2025, 8, 10, tzinfo=UTC)  # 9 days: past the window


def summit_article(guid: str, when: datetime) -> Entry:
    """The same syndicated article as each outlet carries it."""
    url = f"https://x.example/{guid}"
    return Entry(guid=guid, url=url, canonical_url=url, title="Leaders meet in Alaska", published=when,
                 content_html=f"<p>{SUMMIT}</p>", text=SUMMIT)  # fmt: skip


def polled_ok(url: str, when: datetime) -> FeedState:
    return FeedState(url=url, status=FeedStatus.OK, last_fetch=when, next_check=when + timedelta(hours=1))


def store_copy(store: Store, copy: str, original: str) -> None:
    store.save_duplicates([DuplicateEvidence(copy, original, stage="content", score=1.0, matched=original)])


def test_a_copy_arriving_after_its_original_left_the_story_window_joins_its_story(tmp_path: Path) -> None:
    # The story stage regroups only the last few days; a syndicated copy that turns up a week
    # after its original was grouped must not start a story of its own in `export`.
    wire, ledger = "https://wire.example/feed.xml", "https://ledger.example/rss"
    loaded = load_config(write_config(tmp_path, [wire, ledger]))
    with Store.open(loaded.database_url) as store:
        store.save_poll(polled_ok(wire, THEN), [summit_article("original", THEN)], THEN)
        assert pipeline.group_into_stories(loaded.config, store, THEN) == 1
        original, copy = entry_id(wire, "original"), entry_id(ledger, "copy")
        [first] = store.get_entries([original])
        assert first.story is not None

        store.save_poll(polled_ok(ledger, NOW), [summit_article("copy", NOW)], NOW)
        store_copy(store, copy, original)
        pipeline.group_into_stories(loaded.config, store, NOW)
        stored = {e.id: e.story for e in store.get_entries([original, copy])}
    assert stored == {original: first.story, copy: first.story}
    assert {row["story"] for row in export_of(write_config(tmp_path, [wire, ledger]))} == {first.story}


def test_an_original_arriving_after_its_copy_left_the_story_window_joins_the_copys_story(
    tmp_path: Path,
) -> None:
    # The wire's feed was down for a week: its original turns up long after a paper's copy
    # was grouped (and sent).  It must not start a story of its own, which a digest would
    # send again as news.
    wire, paper = "https://wire.example/feed.xml", "https://paper.example/rss"
    loaded = load_config(write_config(tmp_path, [wire, paper]))
    with Store.open(loaded.database_url) as store:
        store.save_poll(polled_ok(paper, THEN), [summit_article("copy", THEN)], THEN)
        pipeline.group_into_stories(loaded.config, store, THEN)
        copy, original = entry_id(paper, "copy"), entry_id(wire, "original")
        [grouped] = store.get_entries([copy])

        store.save_poll(polled_ok(wire, NOW), [summit_article("original", NOW)], NOW)
        store_copy(store, copy, original)
        pipeline.group_into_stories(loaded.config, store, NOW)
        stored = {e.id: e.story for e in store.get_entries([original, copy])}
    assert stored == {original: grouped.story, copy: grouped.story}


def test_a_feed_the_parser_chokes_on_fails_alone_even_in_a_small_poll(
    tmp_path: Path, feed_server: FeedServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # An <author> of 40,000 letters takes feedparser's e-mail search seconds (quadratic); a
    # poll of two feeds parsed in the main process waited for it with everything else.
    monkeypatch.setattr(parsepool, "PARSE_TIMEOUT_S", 1.0)
    hostile = GOOD_RSS.replace(b"<item>", b"<item><author>" + b"a" * 40_000 + b"@x</author>", 1)
    feed_server.add_feed("/good.xml", GOOD_RSS)
    feed_server.add_feed("/hostile.xml", hostile)
    config = write_config(tmp_path, [feed_server.url("/good.xml"), feed_server.url("/hostile.xml")])
    loaded = load_config(config)
    with Store.open(loaded.database_url) as store:
        summary = asyncio.run(pipeline.poll_feeds(loaded, store, datetime.now(UTC)))
    outcome = {o.url: o for o in summary.outcomes}
    assert outcome[feed_server.url("/good.xml")].status is FeedStatus.OK
    failed = outcome[feed_server.url("/hostile.xml")]
    assert failed.status is FeedStatus.ERROR
    assert "parser gave up after 1 s" in (failed.error or "")


def test_a_database_that_fails_mid_command_gets_one_error_line_and_exit_2(
    tmp_path: Path, feed_server: FeedServer
) -> None:
    feed_server.add_feed("/good.xml", GOOD_RSS)
    config = write_config(tmp_path, [feed_server.url("/good.xml")])
    assert cli(config, "poll").exit_code == 0
    database = Path(load_config(config).database_url.removeprefix("sqlite:///"))
    with sqlite3.connect(database) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        [(root,)] = conn.execute("SELECT rootpage FROM sqlite_master WHERE name = 'entries'").fetchall()
        [(page_size,)] = conn.execute("PRAGMA page_size").fetchall()
    data = bytearray(database.read_bytes())
    start = (root - 1) * page_size  # the entries table's root page: the store opens, reading fails
    data[start + 8 : start + page_size] = b"\xa5" * (page_size - 8)
    database.write_bytes(bytes(data))
    result = subprocess.run(
        [sys.executable, "-m", "aggregator", "--config", str(config), "export"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith("error: ")
    assert "malformed" in result.stderr


def test_an_export_to_a_full_disk_says_so(tmp_path: Path) -> None:
    config = copy_bundled_sample(tmp_path)
    assert cli(config, "poll").exit_code == 0
    with open("/dev/full", "w") as full:  # a device that is always full
        result = subprocess.run(
            [sys.executable, "-m", "aggregator", "--config", str(config), "export"],
            stdout=full, stderr=subprocess.PIPE, text=True, timeout=60, check=False,
        )  # fmt: skip
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "error: writing the export: No space left on device" in result.stderr


def test_a_poll_stopped_midway_records_no_failure_for_the_feeds_in_flight(
    tmp_path: Path, feed_server: FeedServer
) -> None:
    # Ctrl-C (or a stop signal) during a poll: the client and the parsers closed under the
    # fetches still running, and each was stored as failed and backed off.
    feed_server.add_feed("/fast.xml", GOOD_RSS)
    slow = [feed_server.url(f"/slow?delay=3&n={n}") for n in range(12)]
    loaded = load_config(write_config(tmp_path, [feed_server.url("/fast.xml"), *slow]))

    async def stopped_poll(store: Store) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(pipeline.poll_feeds(loaded, store, datetime.now(UTC)), timeout=1.0)
        await asyncio.sleep(0.5)  # anything left running would go on now

    with Store.open(loaded.database_url) as store:
        asyncio.run(stopped_poll(store))
        states = {s.url: s for s in store.feed_states([f.url for f in loaded.config.feeds])}
    assert states[feed_server.url("/fast.xml")].status is FeedStatus.OK
    assert {states[url].status for url in slow} == {FeedStatus.NEVER}
    assert all(states[url].error_count == 0 for url in slow)


def test_a_feed_without_a_configured_title_shows_its_own_as_it_changes(
    tmp_path: Path, feed_server: FeedServer
) -> None:
    url = feed_server.url("/news.xml")
    feed_server.add_feed("/news.xml", GOOD_RSS)
    config = write_config(tmp_path, [url])
    config.write_text(config.read_text().replace(f"url: {url}", f"url: {url}\n    title: My Custom Name"))
    assert cli(config, "poll").exit_code == 0
    assert status_of(config)[url]["title"] == "My Custom Name"
    # The title removed from feeds.yaml, and the feed renamed: its own new name is shown.
    write_config(tmp_path, [url])
    feed_server.add_feed(
        "/news.xml",
        GOOD_RSS.replace(b"<title>Harbour  &amp; Hill   News</title>", b"<title>Harbour Times</title>", 1),
    )
    assert cli(config, "poll").exit_code == 0
    assert status_of(config)[url]["title"] == "Harbour Times"


def test_run_once_is_refused_while_another_scheduler_holds_the_database(tmp_path: Path) -> None:
    # A cycle from cron that overlaps the previous one (or a running `aggregator run`) would
    # poll and send at the same time as it.
    config = copy_bundled_sample(tmp_path)
    with run_lock(load_config(config).database_url):
        refused = cli(config, "run", "--once")
    assert refused.exit_code == 3
    assert "another scheduler is already running" in refused.output
    assert cli(config, "run", "--once").exit_code == 0


def test_a_small_poll_where_every_feed_answers_304_starts_no_parser_process(
    tmp_path: Path, feed_server: FeedServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    feed_server.add_feed("/news.xml", GOOD_RSS, etag='"v1"')
    config = write_config(tmp_path, [feed_server.url("/news.xml")])
    assert cli(config, "poll").exit_code == 0
    started: list[object] = []
    real_start = parsepool._Worker.start

    async def counted() -> object:
        started.append(None)
        return await real_start()

    monkeypatch.setattr(parsepool._Worker, "start", staticmethod(counted))
    assert cli(config, "poll").exit_code == 0  # 304: nothing to parse
    assert started == []
    feed_server.add_feed("/news.xml", GOOD_RSS.replace(b"Ferry", b"Bus"), etag='"v2"')
    assert cli(config, "poll").exit_code == 0  # a body: one worker parses it
    assert len(started) == 1


def test_no_output_or_log_line_shows_the_password_of_a_feed_url(
    feed_server: FeedServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # The fetch's error was masked, but the CLI's line, the scheduler's log and the moved
    # notice printed the feed URL as configured, password and all.
    failing = feed_server.url("/error").replace("//", "//reader:it's-s3cret@")
    moved = feed_server.url("/moved").replace("//", "//reader:it's-s3cret@")
    config = write_config(tmp_path, [failing, moved])
    for _ in range(3):  # a permanent redirect is followed once it was seen three times
        result = cli(config, "poll")
    service._log_outcome(load_config(config), PollOutcome(failing, FeedStatus.ERROR, error="x"))
    shown = result.output + "".join(r.getMessage() + str(getattr(r, "fields", "")) for r in caplog.records)
    assert "reader:***@" in result.output
    assert "s3cret" not in shown


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        ("http://u:p@h/x", "http://u:***@h/x"),
        ("at http://reader:it's@127.0.0.1:8/error: no", "at http://reader:***@127.0.0.1:8/error: no"),
        ("not a valid URL: 'http://reader:p#w0rd@h/f'", "not a valid URL: 'http://reader:***@h/f'"),
        ("https://token@h/f and http://x/y@z", "https://***@h/f and http://x/y@z"),
        ("a@b.example wrote", "a@b.example wrote"),
    ],
)
def test_every_password_in_a_url_is_masked_whatever_it_holds(text: str, masked: str) -> None:
    assert without_password(text) == masked


def test_status_shows_configured_titles_before_the_first_poll_and_fits_a_narrow_terminal(
    tmp_path: Path, feed_server: FeedServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The titles came only from the store (null until a poll), and at 24 columns every cell
    # of the table folded to nothing.
    config = tmp_path / "feeds.yaml"
    config.write_text(
        f"feeds:\n  - url: {feed_server.url('/feed.xml')}\n    title: Harbour Daily\nnewsletters: []\n"
    )
    assert [r["title"] for r in status_of(config).values()] == ["Harbour Daily"]
    monkeypatch.setattr(aggregator.cli, "out", Console(width=24, soft_wrap=True))
    shown = CliRunner().invoke(app, ["--config", str(config), "status"])
    assert shown.exit_code == 0, shown.output
    assert "Harbour Daily: never, 0 entries" in shown.stdout


def test_a_project_folder_with_query_characters_keeps_its_database_inside(tmp_path: Path) -> None:
    # "sqlite:///…/proj?a/data/x": SQLAlchemy read "?a/…" as a query, and "%41" as "A".
    for name in ("proj?a", "proj%41b", "proj#c"):
        folder = tmp_path / name
        folder.mkdir()
        config = folder / "feeds.yaml"
        config.write_text("feeds: []\nnewsletters: []\n")
        loaded = load_config(config)
        with Store.open(loaded.database_url):
            pass
        assert (folder / "data" / "aggregator.sqlite").is_file(), name
    assert sorted(p.name for p in tmp_path.iterdir()) == ["proj#c", "proj%41b", "proj?a"]


def test_a_project_folder_whose_name_is_not_utf8_works(tmp_path: Path) -> None:
    # Naming the database for messages raised UnicodeEncodeError before it was opened:
    # every command ended in a traceback with exit 1.
    folder = Path(os.fsdecode(bytes(tmp_path) + b"/bad\xffdir"))
    with Store.open(f"sqlite:///{folder}/x.sqlite") as store:
        assert "bad" in store.url
        store.url.encode("utf-8")  # printable
    assert (folder / "x.sqlite").is_file()


def test_a_database_locked_during_a_poll_is_exit_2_not_a_feed_failure(
    tmp_path: Path, feed_server: FeedServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The store now says when the database itself failed (DatabaseUnavailable): the poll
    # stops with exit 2.  Before, a lock that ended between the entries' write and the
    # feed's error state recorded "its entries could not be stored: database is locked"
    # against the feed, backed it off and exited 1, which says the feed is at fault.
    config = write_config(tmp_path, [feed_server.url("/feed.xml")])
    url = load_config(config).database_url
    with Store.open(url):
        pass
    monkeypatch.setattr(store_module, "SQLITE_BUSY_TIMEOUT_S", 0.2)
    holder = sqlite3.connect(sa.make_url(url).database or "", isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # another process writing, for longer than the timeout
    try:
        with Store.open(url) as store, pytest.raises(DatabaseUnavailable, match="database is locked"):
            store.save_poll(FeedState(url=feed_server.url("/feed.xml")), [], datetime.now(UTC))
        result = CliRunner().invoke(app, ["--config", str(config), "poll"])
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert result.exit_code == 2, result.output
    assert "database is locked" in result.output
    assert status_of(config)[feed_server.url("/feed.xml")]["status"] == "never"  # not the feed's fault


def test_export_into_a_reader_that_stops_early_ends_quietly(tmp_path: Path) -> None:
    # `aggregator export | head -1` said "error: writing the export: Broken pipe" and exited 2.
    config = write_config(tmp_path, ["https://example.org/feed.xml"])
    entries = [
        Entry(
            guid=f"g{i}", url=f"https://example.org/{i}", canonical_url=None, title=f"Entry {i} " + "x" * 200
        )
        for i in range(3000)
    ]
    with Store.open(load_config(config).database_url) as store:
        store.save_poll(
            FeedState(url="https://example.org/feed.xml", status=FeedStatus.OK), entries, datetime.now(UTC)
        )
    export = subprocess.Popen(
        [sys.executable, "-m", "aggregator", "--config", str(config), "export"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert export.stdout is not None
    assert export.stdout.readline().startswith(b'{"id": ')
    export.stdout.close()  # as head does after its line
    _, err = export.communicate(timeout=60)
    assert export.returncode == 0, err
    assert err == b""


def test_parser_processes_that_cannot_run_fail_no_feed(
    tmp_path: Path, feed_server: FeedServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A worker that starts but exits at once (its imports fail: the package half upgraded
    # under a running cron poll, a broken install): every feed was recorded as failed
    # ("parser process died (exit status 1)"), counted as an error and backed off, and a
    # new interpreter was started for each one.  The feeds parse in the main process instead.
    monkeypatch.setattr(parsepool, "_BOOT", "import aggregator.no_such_module")
    feed_server.add_feed("/a.xml", GOOD_RSS)
    loaded = load_config(write_config(tmp_path, [feed_server.url("/a.xml"), feed_server.url("/atom.xml")]))
    with Store.open(loaded.database_url) as store:
        summary = asyncio.run(pipeline.poll_feeds(loaded, store, datetime.now(UTC)))
    assert [(o.status, o.error) for o in summary.outcomes] == [(FeedStatus.OK, None)] * 2


def _duplicates(config: Path) -> dict[tuple[str, str], str | None]:
    return {(e["feed"], e["guid"]): e["duplicate_of"] for e in export_of(config)}


def test_a_cycle_that_fails_while_recording_copies_collapses_them_on_the_next_run(tmp_path: Path) -> None:
    # The signatures were committed before the verdicts: a cycle stopped between the two (a
    # database locked past its timeout, a kill) left the copies signed but never compared,
    # and no later run looked at them again: they stayed in the outputs for good.
    clean = copy_bundled_sample(tmp_path / "clean")
    assert cli(clean, "run", "--once").exit_code == 0
    expected = _duplicates(clean)
    assert any(expected.values())

    config = copy_bundled_sample(tmp_path / "failing")
    assert cli(config, "poll").exit_code == 0
    database = Path(load_config(config).database_url.removeprefix("sqlite:///"))
    with sqlite3.connect(database) as conn:  # the write of the verdicts fails, as on a locked disk
        conn.execute(
            "CREATE TRIGGER fail_verdicts BEFORE UPDATE OF duplicate_of ON entries"
            " BEGIN SELECT RAISE(ABORT, 'disk I/O error'); END"
        )
    failed = cli(config, "run", "--once")
    assert failed.exit_code == 2, failed.output
    with sqlite3.connect(database) as conn:
        conn.execute("DROP TRIGGER fail_verdicts")

    again = cli(config, "run", "--once")
    assert again.exit_code == 0, again.output
    assert _duplicates(config) == expected
