"""Edits that reach other parts of feeds.yaml: a feed's URL as a newsletter lists it under
``feeds:``, and a block list edited item by item (its comments and layout kept).

Both through ``aggregator feeds …`` and through ``ConfigDocument``, the API the web editor
(``/admin/``) calls; each with the exact text of the file after the edit.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from aggregator import cli
from aggregator.config import load_config
from aggregator.configedit import ConfigDocument, EditError, FeedInUseError

ROUNDUP = Path(__file__).resolve().parent.parent / "seeds" / "roundup.feed.json"

REFERENCED = """\
feeds:
  - url: seeds/roundup.feed.json   # the local sample
    title: Roundup
  - url: https://wire.example.com/rss.xml
newsletters:
  - name: daily
    title: Daily
    feeds: [seeds/roundup.feed.json, https://wire.example.com/rss.xml]  # both
  - name: weekly
    title: Weekly
    feeds:
      - "seeds/roundup.feed.json"   # quoted, on purpose
"""

RENAMED = """\
feeds:
  - url: https://new.example/feed.json   # the local sample
    title: Roundup
  - url: https://wire.example.com/rss.xml
newsletters:
  - name: daily
    title: Daily
    feeds: ['https://new.example/feed.json', https://wire.example.com/rss.xml]  # both
  - name: weekly
    title: Weekly
    feeds:
      - "https://new.example/feed.json"   # quoted, on purpose
"""

SUBSCRIBERS = """\
feeds:
  - url: https://wire.example.com/rss.xml
    topics:
      - World      # wires
      - Economy
      # - Sport    (too many)
      - Culture    # weekends only

newsletters:
  - name: daily
    title: Daily
    subscribers:
      - reader@example.com   # Rita
      - bob@example.com      # Bob, VIP
      # - old@example.com   (left in March)
      - carol@example.com

# the end
"""


def run(config: Path, *args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli.app, ["--config", str(config), *args])
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout, result.stderr


def write(tmp_path: Path, text: str) -> Path:
    (tmp_path / "seeds").mkdir(exist_ok=True)
    (tmp_path / "seeds" / "roundup.feed.json").write_bytes(ROUNDUP.read_bytes())
    path = tmp_path / "feeds.yaml"
    path.write_text(text, encoding="utf-8")
    load_config(path)  # the file each test starts from is valid
    return path


# -- a newsletter's feeds: follow the feed's URL --------------------------------------------


def test_cli_set_url_updates_every_newsletter_reference(tmp_path: Path) -> None:
    path = write(tmp_path, REFERENCED)
    code, out, err = run(path, "feeds", "set", "seeds/roundup.feed.json", "url=https://new.example/feed.json")
    assert (code, err) == (0, "")
    assert path.read_text(encoding="utf-8") == RENAMED
    assert out.splitlines() == [
        "feeds.yaml:2: url=https://new.example/feed.json",
        "also updated in newsletter 'daily' (feeds.yaml:8)",
        "also updated in newsletter 'weekly' (feeds.yaml:12)",
    ]
    loaded = load_config(path)
    assert [n.feeds for n in loaded.config.newsletters] == [
        ("https://new.example/feed.json", "https://wire.example.com/rss.xml"),
        ("https://new.example/feed.json",),
    ]


def test_api_set_url_updates_references_and_says_where(tmp_path: Path) -> None:
    path = write(tmp_path, REFERENCED)
    document = ConfigDocument.read(path)
    document.set_feed("Roundup", {"url": "https://new.example/feed.json"})
    document.save()
    assert path.read_text(encoding="utf-8") == RENAMED
    assert [str(r) for r in document.updated_references] == [
        "newsletter 'daily' (feeds.yaml:8)",
        "newsletter 'weekly' (feeds.yaml:12)",
    ]


def test_set_url_shared_through_an_anchor_is_updated_once(tmp_path: Path) -> None:
    text = REFERENCED.replace(
        '    feeds:\n      - "seeds/roundup.feed.json"   # quoted, on purpose\n',
        "    feeds: &mine\n      - seeds/roundup.feed.json\n  - name: monthly\n    title: Monthly\n"
        "    feeds: *mine\n",
    )
    path = write(tmp_path, text)
    document = ConfigDocument.read(path)
    document.set_feed("seeds/roundup.feed.json", {"url": "https://new.example/feed.json"})
    document.save()
    assert [n.feeds for n in load_config(path).config.newsletters] == [
        ("https://new.example/feed.json", "https://wire.example.com/rss.xml"),
        ("https://new.example/feed.json",),
        ("https://new.example/feed.json",),
    ]
    assert [str(r) for r in document.updated_references] == [
        "newsletter 'daily' (feeds.yaml:8)",
        "newsletter 'weekly' (feeds.yaml:12)",
        "newsletter 'monthly' (feeds.yaml:12)",  # the alias: the list it names is on line 12
    ]


def test_set_url_leaves_an_aligned_comment_in_its_column(tmp_path: Path) -> None:
    text = (
        "feeds:\n"
        "  - url: seeds/roundup.feed.json           # sample\n"
        "    title: Roundup                         # shown\n"
        "newsletters:\n"
        "  - name: daily\n"
        "    title: Daily\n"
        "    feeds:\n"
        "      - seeds/roundup.feed.json  # the only one\n"
    )
    path = write(tmp_path, text)
    code, out, _ = run(path, "feeds", "set", "Roundup", "url=https://new.example/f.json")
    assert code == 0, out
    assert path.read_text(encoding="utf-8") == (
        "feeds:\n"
        "  - url: https://new.example/f.json        # sample\n"
        "    title: Roundup                         # shown\n"
        "newsletters:\n"
        "  - name: daily\n"
        "    title: Daily\n"
        "    feeds:\n"
        "      - https://new.example/f.json  # the only one\n"
    )
    assert out.splitlines()[1:] == ["also updated in newsletter 'daily' (feeds.yaml:8)"]


def test_cli_remove_referenced_feed_is_refused_with_each_line(tmp_path: Path) -> None:
    path = write(tmp_path, REFERENCED)
    code, out, err = run(path, "feeds", "remove", "seeds/roundup.feed.json")
    assert code == 2
    assert out == ""
    assert err == (
        "feeds.yaml: cannot remove seeds/roundup.feed.json: newsletters 'daily' (feeds.yaml:8) "
        "and 'weekly' (feeds.yaml:12, its only feed) list it under 'feeds:'; take it out of "
        "those lists first, then remove the feed (a newsletter with an empty 'feeds:' gets "
        "every feed: where it is the only one, list another feed there, or remove the newsletter)\n"
    )
    assert path.read_text(encoding="utf-8") == REFERENCED


def test_api_remove_referenced_feed_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, REFERENCED)
    document = ConfigDocument.read(path)
    with pytest.raises(FeedInUseError, match=r"'daily' \(feeds.yaml:8\)") as refused:
        document.remove_feed("Roundup")
    assert isinstance(refused.value, EditError)  # the web shows it as any refused edit
    assert [(r.newsletter, r.where, r.only) for r in refused.value.references] == [
        ("daily", "feeds.yaml:8", False),
        ("weekly", "feeds.yaml:12", True),
    ]
    with pytest.raises(FeedInUseError) as refused:  # listed with another: no note about "every feed"
        document.remove_feed("https://wire.example.com/rss.xml")
    assert str(refused.value) == (
        "feeds.yaml: cannot remove https://wire.example.com/rss.xml: newsletter 'daily' "
        "(feeds.yaml:8) lists it under 'feeds:'; take it out of that list first, then remove the feed"
    )
    document.save()  # nothing was changed
    assert path.read_text(encoding="utf-8") == REFERENCED


def test_remove_unreferenced_feed_still_works(tmp_path: Path) -> None:
    text = REFERENCED.replace(", https://wire.example.com/rss.xml]", "]")
    path = write(tmp_path, text)
    code, out, _ = run(path, "feeds", "remove", "https://wire.example.com/rss.xml")
    assert code == 0, out
    assert "https://wire.example.com/rss.xml" not in path.read_text(encoding="utf-8")


# -- block lists are edited item by item ------------------------------------------------------


def test_api_add_subscriber_keeps_block_list_and_comments(tmp_path: Path) -> None:
    path = write(tmp_path, SUBSCRIBERS)
    document = ConfigDocument.read(path)
    document.set_newsletter(
        "daily",
        {"subscribers": ("reader@example.com", "bob@example.com", "carol@example.com", "dave@example.com")},
    )
    document.save()
    assert path.read_text(encoding="utf-8") == SUBSCRIBERS.replace(
        "      - carol@example.com\n", "      - carol@example.com\n      - dave@example.com\n"
    )


def test_api_remove_subscribers_keeps_full_line_comments(tmp_path: Path) -> None:
    path = write(tmp_path, SUBSCRIBERS)
    document = ConfigDocument.read(path)
    # bob's own comment goes with him; the line about old@ between the items stays.
    document.set_newsletter("daily", {"subscribers": ("reader@example.com", "carol@example.com")})
    document.save()
    assert path.read_text(encoding="utf-8") == SUBSCRIBERS.replace(
        "      - bob@example.com      # Bob, VIP\n", ""
    )


def test_api_remove_last_and_first_subscriber(tmp_path: Path) -> None:
    path = write(tmp_path, SUBSCRIBERS)
    document = ConfigDocument.read(path)
    document.set_newsletter("daily", {"subscribers": ("bob@example.com",)})
    document.save()
    assert path.read_text(encoding="utf-8") == SUBSCRIBERS.replace(
        "      - reader@example.com   # Rita\n", ""
    ).replace("      - carol@example.com\n", "")


def test_api_reorder_keeps_each_items_comment(tmp_path: Path) -> None:
    path = write(tmp_path, SUBSCRIBERS)
    document = ConfigDocument.read(path)
    document.set_newsletter(
        "daily", {"subscribers": ("carol@example.com", "eve@example.com", "reader@example.com")}
    )
    document.save()
    assert path.read_text(encoding="utf-8") == SUBSCRIBERS.replace(
        "      - reader@example.com   # Rita\n"
        "      - bob@example.com      # Bob, VIP\n"
        "      # - old@example.com   (left in March)\n"
        "      - carol@example.com\n",
        "      - carol@example.com\n"
        "      - eve@example.com\n"
        "      # - old@example.com   (left in March)\n"
        "      - reader@example.com   # Rita\n",
    )


def test_cli_set_topics_keeps_block_list_and_comments(tmp_path: Path) -> None:
    path = write(tmp_path, SUBSCRIBERS)
    code, out, err = run(
        path, "feeds", "set", "https://wire.example.com/rss.xml", "topics=World,Economy,Politics"
    )
    assert (code, err) == (0, ""), out
    assert out == "feeds.yaml:2: topics=World,Economy,Politics\n"
    # Culture goes with its comment; Politics comes right after Economy, the item before it.
    assert path.read_text(encoding="utf-8") == SUBSCRIBERS.replace(
        "      - Economy\n      # - Sport    (too many)\n      - Culture    # weekends only\n",
        "      - Economy\n      - Politics\n      # - Sport    (too many)\n",
    )


def test_flow_list_stays_flow_and_keeps_quoting(tmp_path: Path) -> None:
    text = SUBSCRIBERS.replace(
        "    subscribers:\n      - reader@example.com   # Rita\n      - bob@example.com      # Bob, VIP\n"
        "      # - old@example.com   (left in March)\n      - carol@example.com\n",
        "    subscribers: ['reader@example.com', bob@example.com]   # two\n",
    )
    path = write(tmp_path, text)
    document = ConfigDocument.read(path)
    document.set_newsletter("daily", {"subscribers": ("reader@example.com", "dave@example.com")})
    document.save()
    # The comment keeps its column (ruamel's way; the list grew by one character).
    assert path.read_text(encoding="utf-8") == text.replace(
        "['reader@example.com', bob@example.com]   # two", "['reader@example.com', dave@example.com]  # two"
    )


TOPICS = """\
feeds:
  - url: https://a.example/feed.xml
    topics:   # which ones
      - World      # w
      - Economy

      - Sport      # s
    title: A
newsletters: []
"""


@pytest.mark.parametrize(
    ("topics", "expected"),
    [
        # The first item goes with its comment; no gap opens under "topics:".
        (("Economy", "Sport"), TOPICS.replace("      - World      # w\n", "")),
        # The blank line between items stays once, between the items left.
        (("World", "Sport"), TOPICS.replace("      - Economy\n", "")),
        # All replaced: the lines after the list stay after it, no blank line left over.
        (
            ("X", "Y"),
            TOPICS.replace(
                "      - World      # w\n      - Economy\n\n      - Sport      # s\n",
                "      - X\n      - Y\n",
            ),
        ),
        # The same list: the same text.
        (("World", "Economy", "Sport"), TOPICS),
    ],
)
def test_api_block_list_edits(tmp_path: Path, topics: tuple[str, ...], expected: str) -> None:
    path = write(tmp_path, TOPICS)
    document = ConfigDocument.read(path)
    document.set_feed("A", {"topics": topics})
    document.save()
    assert path.read_text(encoding="utf-8") == expected
