"""Editing feeds.yaml: comments and layout survive, bad edits never reach the disk, and an
edit made on a file that changed since it was read is refused."""

from __future__ import annotations

import os
import shutil
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from aggregator.config import load_config
from aggregator.configedit import (
    ConfigDocument,
    ConflictError,
    DuplicateError,
    EditError,
    InvalidEditError,
    NotFoundError,
    parse_assignment,
    write_atomically,
)

GOLDEN = Path(__file__).parent / "golden" / "config"
UPDATE = os.environ.get("AGGREGATOR_UPDATE_GOLDEN") == "1"
PROJECT = Path(__file__).resolve().parent.parent


def check_golden(actual: str, name: str) -> None:
    expected_path = GOLDEN / f"{name}.after.yaml"
    if UPDATE:
        expected_path.write_text(actual, encoding="utf-8")
    assert actual == expected_path.read_text(encoding="utf-8")


def copy_to(tmp_path: Path, before: str) -> Path:
    path = tmp_path / "feeds.yaml"
    shutil.copyfile(GOLDEN / before, path)
    return path


Edit = Callable[[ConfigDocument], object]

CASES: dict[str, tuple[str, Edit]] = {
    "add_feed": (
        "base.yaml",
        lambda d: d.add_feed("https://new.example.com/feed", title="New", topics=["local"], interval="30m"),
    ),
    "add_feed_to_empty": ("empty.yaml", lambda d: d.add_feed("https://new.example.com/feed")),
    "remove_first_feed": ("base.yaml", lambda d: d.remove_feed("https://wire.example.com/rss.xml")),
    "remove_middle_feed": ("base.yaml", lambda d: d.remove_feed("The Local Paper")),
    "remove_last_feed": ("base.yaml", lambda d: d.remove_feed("https://blog.example.net/index.xml")),
    "set_feed_keys": (
        "base.yaml",
        lambda d: d.set_feed("Example Wire", {"title": "Wire", "interval": "15m", "priority": None}),
    ),
    "set_feed_topics_replacing_block_list": (
        "base.yaml",
        lambda d: d.set_feed("The Local Paper", {"topics": ("local",), "enabled": False}),
    ),
    "add_newsletter": (
        "base.yaml",
        lambda d: d.add_newsletter(
            {"name": "evening", "title": "Evening Digest", "schedule": "0 18 * * 1-5", "topics": ("local",)}
        ),
    ),
    "add_newsletter_to_empty": (
        "empty.yaml",
        lambda d: d.add_newsletter({"name": "weekly", "title": "Weekly", "schedule": "0 8 * * 1"}),
    ),
    "edit_newsletter": (
        "base.yaml",
        lambda d: d.set_newsletter("morning", {"title": "Good Morning", "max_stories": 10, "topics": None}),
    ),
    "remove_newsletter": ("base.yaml", lambda d: d.remove_newsletter("morning")),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_edit_keeps_comments_and_layout(tmp_path: Path, name: str) -> None:
    before, edit = CASES[name]
    path = copy_to(tmp_path, before)
    document = ConfigDocument.read(path)
    edit(document)
    document.save()
    check_golden(path.read_text(encoding="utf-8"), name)
    load_config(path)  # and the result is a valid config


@pytest.mark.parametrize("source", [GOLDEN / "base.yaml", GOLDEN / "empty.yaml", PROJECT / "feeds.yaml"])
def test_reading_and_writing_without_a_change_gives_the_same_bytes(source: Path) -> None:
    assert ConfigDocument(source, source.read_bytes()).text() == source.read_text(encoding="utf-8")


def test_indentation_of_the_file_is_kept(tmp_path: Path) -> None:
    path = tmp_path / "feeds.yaml"
    text = "feeds:\n- url: https://a.example/f\n  title: A\npolling:\n    interval: 2h\nnewsletters: []\n"
    path.write_text(text)
    document = ConfigDocument.read(path)
    document.add_feed("https://b.example/f")
    document.save()
    assert path.read_text() == text.replace("  title: A\n", "  title: A\n- url: https://b.example/f\n")


def test_crlf_line_ends_are_kept(tmp_path: Path) -> None:
    path = tmp_path / "feeds.yaml"
    path.write_bytes(b"# mine\r\nfeeds:\r\n  - url: https://a.example/f\r\n")
    document = ConfigDocument.read(path)
    document.set_feed("https://a.example/f", {"title": "A"})
    document.save()
    assert path.read_bytes() == b"# mine\r\nfeeds:\r\n  - url: https://a.example/f\r\n    title: A\r\n"


def test_duplicates_are_found_by_canonical_url(tmp_path: Path) -> None:
    document = ConfigDocument.read(copy_to(tmp_path, "base.yaml"))
    with pytest.raises(DuplicateError, match=r"already subscribed: https://wire\.example\.com/rss\.xml"):
        document.add_feed("HTTPS://Wire.Example.com:443/rss.xml?utm_source=newsletter")


def test_relative_paths_and_file_urls_are_the_same_feed(tmp_path: Path) -> None:
    path = tmp_path / "feeds.yaml"
    path.write_text("feeds:\n  - url: seeds/a.xml\n")
    document = ConfigDocument.read(path)
    with pytest.raises(DuplicateError):
        document.add_feed((tmp_path / "seeds" / "a.xml").as_uri())


def test_a_feed_is_found_by_url_or_title_and_ambiguity_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "feeds.yaml"
    path.write_text(
        "feeds:\n"
        "  - url: https://a.example/f\n    title: Same\n"
        "  - url: https://b.example/f\n    title: Same\n"
    )
    document = ConfigDocument.read(path)
    assert document.find_feed("https://b.example/f") == 1
    assert document.find_feed("https://B.example/f?utm_source=x") == 1  # canonically the same URL
    with pytest.raises(NotFoundError, match="several feeds are titled 'same'"):
        document.find_feed("same")
    with pytest.raises(NotFoundError, match="no feed with the URL or title 'nope'"):
        document.remove_feed("nope")


def test_an_edit_that_makes_the_file_invalid_is_not_written(tmp_path: Path) -> None:
    path = copy_to(tmp_path, "base.yaml")
    before = path.read_bytes()
    document = ConfigDocument.read(path)
    document.set_feed("Example Wire", {"interval": "3 parsecs"})
    with pytest.raises(InvalidEditError, match=r"feeds\[0\]\.interval: bad duration '3 parsecs'") as info:
        document.save()
    assert info.value.problems[0].location == "feeds[0].interval"
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["feeds.yaml"]  # no temporary file left


def test_a_newsletter_naming_an_unknown_topic_is_refused(tmp_path: Path) -> None:
    path = copy_to(tmp_path, "base.yaml")
    document = ConfigDocument.read(path)
    document.add_newsletter({"name": "x", "title": "X", "topics": ("politcs",)})
    with pytest.raises(InvalidEditError, match="no topic named 'politcs' \\(did you mean 'politics'\\?\\)"):
        document.save()


def test_unknown_keys_are_refused_before_anything_is_written(tmp_path: Path) -> None:
    document = ConfigDocument.read(copy_to(tmp_path, "base.yaml"))
    with pytest.raises(EditError, match="cannot set 'intervall' on a feed"):
        document.set_feed("Example Wire", {"intervall": "1h"})
    with pytest.raises(EditError, match="cannot set 'colour' on a newsletter"):
        document.set_newsletter("morning", {"colour": "red"})


def test_a_file_changed_on_disk_since_it_was_read_is_not_overwritten(tmp_path: Path) -> None:
    path = copy_to(tmp_path, "base.yaml")
    document = ConfigDocument.read(path)
    document.add_feed("https://new.example.com/feed")
    hand_edit = path.read_text().replace("concurrency: 8", "concurrency: 9")
    path.write_text(hand_edit)
    with pytest.raises(ConflictError, match="changed on disk since it was read"):
        document.save()
    assert path.read_text() == hand_edit


def test_two_concurrent_editors_never_lose_an_edit(tmp_path: Path) -> None:
    path = copy_to(tmp_path, "base.yaml")
    documents = [ConfigDocument.read(path) for _ in range(8)]
    for n, document in enumerate(documents):
        document.add_feed(f"https://n{n}.example.com/feed")
    outcomes: list[str] = []
    barrier = threading.Barrier(len(documents))

    def save(document: ConfigDocument) -> None:
        barrier.wait()
        try:
            document.save()
            outcomes.append("saved")
        except ConflictError:
            outcomes.append("refused")

    threads = [threading.Thread(target=save, args=(d,)) for d in documents]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == ["refused"] * 7 + ["saved"]
    added = [f.url for f in load_config(path).config.feeds if f.url.startswith("https://n")]
    assert len(added) == 1


def test_save_then_edit_again_uses_the_new_version(tmp_path: Path) -> None:
    path = copy_to(tmp_path, "base.yaml")
    document = ConfigDocument.read(path)
    document.add_feed("https://one.example/feed")
    document.save()
    document.add_feed("https://two.example/feed")
    document.save()
    assert [f.url for f in load_config(path).config.feeds][-2:] == [
        "https://one.example/feed",
        "https://two.example/feed",
    ]


def test_writes_keep_the_mode_and_follow_a_symlink(tmp_path: Path) -> None:
    real = tmp_path / "dotfiles" / "feeds.yaml"
    real.parent.mkdir()
    shutil.copyfile(GOLDEN / "base.yaml", real)
    real.chmod(0o600)
    link = tmp_path / "feeds.yaml"
    link.symlink_to(real)
    document = ConfigDocument.read(link)
    document.remove_feed("Example Wire")
    document.save()
    assert link.is_symlink()
    assert "Example Wire" not in real.read_text()
    assert real.stat().st_mode & 0o777 == 0o600
    assert sorted(p.name for p in real.parent.iterdir()) == ["feeds.yaml"]


def test_write_atomically_refuses_a_stale_version(tmp_path: Path) -> None:
    path = tmp_path / "f.yaml"
    path.write_text("a")
    with pytest.raises(ConflictError):
        write_atomically(path, b"b", expected_version="0" * 64)
    assert path.read_text() == "a"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("interval=30m", ("interval", "30m")),
        ("topics=world, tech", ("topics", ("world", "tech"))),
        ("priority=3", ("priority", 3)),
        ("enabled=no", ("enabled", False)),
        ("title=", ("title", None)),
        ("title=A = B", ("title", "A = B")),
    ],
)
def test_assignments_are_read_as_the_key_wants(text: str, expected: tuple[str, object]) -> None:
    assert parse_assignment(text) == expected


@pytest.mark.parametrize("text", ["interval", "=3", "priority=high", "enabled=maybe"])
def test_bad_assignments_say_what_is_expected(text: str) -> None:
    with pytest.raises(EditError):
        parse_assignment(text)


def test_topics_that_look_like_yaml_syntax_are_written_so_they_read_back(tmp_path: Path) -> None:
    # In a flow list ruamel wrote these plain: [?Misc] reads back as a mapping, [a:b] and [: )]
    # not at all, so the edit was refused (one OPML folder named "?Misc" failed a whole import).
    path = tmp_path / "feeds.yaml"
    shutil.copyfile(GOLDEN / "base.yaml", path)
    topics = ("?Misc", "a:b", ": )", "plain")
    document = ConfigDocument.read(path)
    document.set_feed("https://wire.example.com/rss.xml", {"topics": topics})
    document.add_feed("https://new.example/feed", topics=topics)
    document.save()
    feeds = {f.url: f.topics for f in load_config(path).config.feeds}
    assert feeds["https://wire.example.com/rss.xml"] == topics
    assert feeds["https://new.example/feed"] == topics


def test_a_key_taken_from_a_yaml_merge_is_overridden_but_never_silently_kept(tmp_path: Path) -> None:
    path = tmp_path / "feeds.yaml"
    path.write_text(
        "feeds:\n"
        "  - url: https://a.example/feed\n"
        "    topics: &common [politics]\n"
        "  - url: https://b.example/feed\n"
        "    <<: {topics: *common}\n"
        "newsletters: []\n",
        encoding="utf-8",
    )
    before = path.read_bytes()
    document = ConfigDocument.read(path)
    # Removing it would leave the merged value in force while reporting success.
    with pytest.raises(
        EditError, match=r"feeds.yaml:4: cannot remove 'topics': its value comes from a '<<:' merge"
    ):
        document.set_feed("https://b.example/feed", {"topics": None})
    assert path.read_bytes() == before

    document.set_feed("https://b.example/feed", {"topics": ["economy"]})
    document.save()
    feeds = load_config(path).config.feeds
    assert [f.topics for f in feeds] == [("politics",), ("economy",)]


def test_removing_a_feed_a_newsletter_names_says_to_take_it_out_there_too(tmp_path: Path) -> None:
    path = tmp_path / "feeds.yaml"
    path.write_text(
        "feeds:\n  - url: https://a.example/feed.xml\n  - url: https://b.example/feed.xml\n"
        "newsletters:\n  - name: daily\n    title: Daily\n    feeds: [https://a.example/feed.xml]\n",
        encoding="utf-8",
    )
    document = ConfigDocument.read(path)
    document.remove_feed("https://a.example/feed.xml")
    with pytest.raises(InvalidEditError, match=r"or take it out of this newsletter's feeds"):
        document.save()
