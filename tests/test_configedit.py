"""Editing feeds.yaml: comments and layout survive, bad edits never reach the disk, and an
edit made on a file that changed since it was read is refused."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import threading
from collections.abc import Callable, Iterator
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
    NotReplaceableError,
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
    with pytest.raises(EditError, match=r"newsletter 'daily' \(feeds.yaml:7, its only feed\) lists it"):
        document.remove_feed("https://a.example/feed.xml")


# (first feed commented, the others commented, blank lines between, a comment on "feeds:")
LAYOUTS = [
    (first, others, blank, key)
    for first, others in [(False, True), (True, True), (False, False)]
    for blank in (False, True)
    for key in (False, True)
]


def _layout(first: bool, others: bool, blank: bool, key: bool) -> str:
    text = "feeds:" + ("  # my feeds" if key else "") + "\n"
    for n in range(3):
        if n and blank:
            text += "\n"
        if (n == 0 and first) or (n and others):
            text += f"  # about {n}\n"
        text += f"  - url: https://f{n}.example/feed\n    title: T{n}\n"
    return text + "\n# topics\ntopics:\n  - name: x\n"


@pytest.mark.parametrize("layout", LAYOUTS, ids=lambda layout: "-".join("ny"[flag] for flag in layout))
@pytest.mark.parametrize("add_after", [False, True], ids=["remove", "remove-add"])
def test_removing_the_first_feed_writes_yaml_that_keeps_the_other_comments(
    tmp_path: Path, layout: tuple[bool, bool, bool, bool], add_after: bool
) -> None:
    # With no comment above the first feed, one above the second and none on "feeds:", the
    # file written was "feeds:   -" (no YAML), the comment lost, and the command said done:
    # save() validated one dump of the tree and wrote a second, different one.  With a
    # comment on "feeds:", the comment above the first feed stayed when the feed went.
    text = _layout(*layout)
    path = tmp_path / "feeds.yaml"
    path.write_text(text)
    document = ConfigDocument.read(path)
    document.remove_feed("https://f0.example/feed")
    if add_after:
        document.add_feed("https://new.example/feed")
    document.save()
    written = path.read_text()
    feeds = [f.url for f in load_config(path).config.feeds]
    assert feeds == ["https://f1.example/feed", "https://f2.example/feed"] + (
        ["https://new.example/feed"] if add_after else []
    )
    comments = [line.strip() for line in text.splitlines() if "#" in line and "about 0" not in line]
    assert [line.strip() for line in written.splitlines() if "#" in line] == comments
    assert document.text() == written  # and a second dump is the same text
    assert ConfigDocument.read(path).text() == written


def test_removing_the_only_feed_keeps_the_comment_on_the_key(tmp_path: Path) -> None:
    path = tmp_path / "feeds.yaml"
    path.write_text("feeds:  # mine\n  - url: https://a.example/feed\n\n# topics\ntopics: []\n")
    document = ConfigDocument.read(path)
    document.remove_feed("https://a.example/feed")
    document.save()
    assert path.read_text() == "feeds: []  # mine\n\n# topics\ntopics: []\n"


def test_a_file_owned_by_someone_else_keeps_its_owner_and_group(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("only root can give a file to another user")
    path = copy_to(tmp_path, "base.yaml")
    os.chown(path, 1000, 1000)
    path.chmod(0o640)
    document = ConfigDocument.read(path)
    document.set_feed("Example Wire", {"interval": "2h"})
    document.save()
    status = path.stat()
    assert (status.st_uid, status.st_gid, status.st_mode & 0o777) == (1000, 1000, 0o640)
    assert "interval: 2h" in path.read_text()


def test_a_file_with_another_hard_link_is_not_replaced(tmp_path: Path) -> None:
    path = copy_to(tmp_path, "base.yaml")
    os.link(path, tmp_path / "backup.yaml")
    before = path.read_bytes()
    document = ConfigDocument.read(path)
    document.set_feed("Example Wire", {"interval": "2h"})
    with pytest.raises(NotReplaceableError, match=r"feeds\.yaml has 2 hard links: .* edit it by hand"):
        document.save()
    assert path.read_bytes() == before
    assert os.path.samefile(path, tmp_path / "backup.yaml")  # the link is not broken
    assert sorted(p.name for p in tmp_path.iterdir()) == ["backup.yaml", "feeds.yaml"]


@contextlib.contextmanager
def _as_user(uid: int) -> Iterator[None]:
    """Run the block as ``uid`` (real and effective) and come back to root after it: the saved
    user id stays root, which is what lets a process return."""
    os.setresuid(uid, uid, 0)
    try:
        yield
    finally:
        os.setresuid(0, 0, 0)


def test_a_read_only_file_is_not_replaced() -> None:
    # A rename replaces a file made read-only (chmod 444) as if it were not: the folder is
    # what is written.  Root may write any file, so as root the save is run as user 1000,
    # the owner of the file and of its folder (the rename would succeed).
    root = os.geteuid() == 0
    folder = Path(tempfile.mkdtemp(prefix="readonly-"))  # tmp_path is in a folder only root may enter
    try:
        folder.chmod(0o755)
        path = folder / "feeds.yaml"
        path.write_text("feeds:\n  - url: https://a.example/feed\n")
        before = path.read_bytes()
        path.chmod(0o444)
        if root:
            os.chown(folder, 1000, 1000)
            os.chown(path, 1000, 1000)
        document = ConfigDocument.read(path)
        document.set_feed("https://a.example/feed", {"interval": "2h"})
        with _as_user(1000) if root else contextlib.nullcontext(), pytest.raises(NotReplaceableError) as info:
            document.save()
        assert str(info.value) == (
            f"not saved: {path} is read-only: make it writable (chmod u+w {path}) and run the "
            "command again, or edit it by hand; the file is unchanged"
        )
        assert path.read_bytes() == before
        assert path.stat().st_mode & 0o777 == 0o444
        assert [p.name for p in folder.iterdir()] == ["feeds.yaml"]
    finally:
        shutil.rmtree(folder)


@pytest.mark.parametrize(
    ("head", "foot"),
    [
        ("# My feeds\n---\n", ""),
        ("---\n", ""),
        ("%YAML 1.2\n---\n", ""),
        ("# My feeds\n\n--- # the only document\n\n", ""),
        ("", "...\n"),
        ("---\n", "...\n# written by hand\n"),
    ],
)
def test_document_markers_and_what_is_above_them_are_kept(tmp_path: Path, head: str, foot: str) -> None:
    path = tmp_path / "feeds.yaml"
    body = "# the feeds\nfeeds:\n  - url: https://a.example/feed\n"
    path.write_text(head + body + foot)
    document = ConfigDocument.read(path)
    document.set_feed("https://a.example/feed", {"interval": "2h"})
    document.save()
    assert path.read_text() == head + body + "    interval: 2h\n" + foot
    assert document.line_of_feed(0) == head.count("\n") + 3
    load_config(path)


def test_a_key_other_feeds_merge_from_this_one_is_not_changed_behind_their_back(tmp_path: Path) -> None:
    path = tmp_path / "feeds.yaml"
    path.write_text(
        "feeds:\n"
        "  - &base\n    url: https://a.example/feed\n    interval: 2h\n"
        "  - <<: *base\n    url: https://b.example/feed\n"
        "  - <<: *base\n    url: https://c.example/feed\n"
        "  - <<: *base\n    url: https://d.example/feed\n    interval: 6h\n"
    )
    before = path.read_bytes()
    document = ConfigDocument.read(path)
    with pytest.raises(
        EditError,
        match=r"^feeds\.yaml:2: cannot set 'interval' here: feeds https://b\.example/feed, "
        r"https://c\.example/feed take it from this one through '<<: \*base' and would change too; "
        r"set it on each of them instead, or edit the anchor &base by hand$",
    ):
        document.set_feed("https://a.example/feed", {"interval": "30m"})
    with pytest.raises(EditError, match="cannot set 'title' here: feeds https://b"):  # a key new to all
        document.set_feed("https://a.example/feed", {"title": "A"})
    with pytest.raises(EditError, match="cannot set 'interval' here"):  # removing it changes them too
        document.set_feed("https://a.example/feed", {"interval": None})
    assert document.text().encode() == before
    # A feed that overrides the key itself is not affected; setting it on the others works.
    document.set_feed("https://b.example/feed", {"interval": "30m"})
    document.save()
    intervals = {f.url: f.interval for f in load_config(path).config.feeds}
    assert [str(intervals[f"https://{x}.example/feed"]) for x in "abcd"] == [
        "2:00:00",
        "0:30:00",
        "2:00:00",
        "6:00:00",
    ]


def test_a_tab_before_a_comment_is_read_and_written_as_spaces(tmp_path: Path) -> None:
    # Valid YAML the aggregator loads; ruamel's round-trip scanner refused it ("not valid YAML").
    path = tmp_path / "feeds.yaml"
    path.write_text("feeds:\n  - url: https://a.example/feed\t# my main feed\n  - url: https://b.example/f\n")
    document = ConfigDocument.read(path)
    document.set_feed("https://b.example/f", {"interval": "2h"})
    document.save()
    assert path.read_text() == (
        "feeds:\n  - url: https://a.example/feed # my main feed\n"
        "  - url: https://b.example/f\n    interval: 2h\n"
    )
    assert document.notes == [
        "feeds.yaml: the tab before the comment on line(s) 2 is written as spaces (the editor cannot keep it)"
    ]


def test_a_tab_before_a_comment_inside_a_quoted_title_is_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "feeds.yaml"
    # The first "\t#" is inside a quoted title: spaces there would change the title.
    path.write_text('feeds:\n  - url: https://a.example/feed\n    title: "A\t# B"\t# note\n')
    document = ConfigDocument.read(path)
    document.set_feed("https://a.example/feed", {"interval": "2h"})
    document.save()
    assert load_config(path).config.feeds[0].title == "A\t# B"
    assert document.notes == [
        "feeds.yaml: the tab before the comment on line(s) 3 is written as spaces (the editor cannot keep it)"
    ]


def test_one_crlf_line_does_not_turn_the_whole_file_to_crlf(tmp_path: Path) -> None:
    path = tmp_path / "feeds.yaml"
    path.write_bytes(b"# mine\nfeeds:\n  - url: https://a.example/f\r\n  - url: https://b.example/f\n")
    document = ConfigDocument.read(path)
    document.set_feed("https://b.example/f", {"interval": "2h"})
    document.save()
    assert path.read_bytes() == (
        b"# mine\nfeeds:\n  - url: https://a.example/f\n  - url: https://b.example/f\n    interval: 2h\n"
    )
