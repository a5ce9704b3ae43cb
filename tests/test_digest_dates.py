"""The date beside a digest story's headline says what it is.

A story's date is when it was first reported (its earliest copy: the output feeds'
published date); its headline links the lead article, which may be another outlet's,
days later.  Beside other outlets the date is labelled "first reported", as the front page
labels it; a story one outlet carried shows its date alone.

Real parts: the feeds served by a real HTTP server on 127.0.0.1, a real SQLite store, the
outbox and archive on disk, and the ``aggregator`` command in-process (typer's runner).
"""

from __future__ import annotations

import email
import json
from email import policy
from email.message import EmailMessage
from pathlib import Path

import pytest
from typer.testing import CliRunner

from aggregator.cli import app
from tests.feedserver import FeedServer
from tests.test_newsletters import TEST_KEY

FULL_URL = "https://ledger.example/2025/08/17/arctic-summit-what-was-agreed"
FIRST_TAKE_URL = "https://wire.example/2025/08/14/arctic-summit-first-take"
ALONE_URL = "https://wire.example/2025/08/16/harbour-bridge-opens"
HEADLINE = "Arctic summit: what the leaders agreed in Anchorage"
PARAGRAPHS = (
    "The leaders of the eight Arctic states agreed in Anchorage on Thursday to reopen the"
    " scientific stations closed since the war began, and to share sea ice data again.",
    "Officials said the agreement was drafted over three weeks of talks in Reykjavik and"
    " Tromsø, and that the ministers would meet again in the spring to review it.",
    "Shipping companies welcomed the decision, saying the Northern Sea Route had become"
    " harder to plan for without the stations' forecasts of where the ice would break up.",
    "Environmental groups said the deal did not go far enough, because it set no limit on"
    " drilling in the waters the stations watch and left fishing quotas to another meeting.",
)


def rss(title: str, items: str) -> bytes:
    return (
        '<?xml version="1.0" encoding="utf-8"?>\n<rss version="2.0"><channel>'
        f"<title>{title}</title><link>https://{title.lower().replace(' ', '-')}.example/</link>"
        f"{items}</channel></rss>\n"
    ).encode()


def item(url: str, title: str, date: str, text: str) -> str:
    return (
        f"<item><title>{title}</title><link>{url}</link><guid>{url}</guid>"
        f"<pubDate>{date}</pubDate><description>{text}</description></item>"
    )


def write_config(folder: Path, feeds: list[tuple[str, str]]) -> Path:
    listed = "".join(f"  - url: {url}\n    title: {title}\n" for url, title in feeds)
    config = folder / "feeds.yaml"
    config.write_text(
        f"feeds:\n{listed}"
        "newsletters:\n"
        "  - name: daily\n"
        "    title: The Daily\n"
        '    schedule: "0 0 1 1 *"\n'  # never due by itself while the test runs
        "    timezone: Europe/London\n"
        "    sender: digest@example.com\n"
        "    subscribers: [reader@example.com]\n",
        encoding="utf-8",
    )
    return config


def invoke(config: Path, *args: str) -> str:
    result = CliRunner().invoke(app, ["--config", str(config), *args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def html_part(path: Path) -> str:
    message = email.message_from_bytes(path.read_bytes(), policy=policy.default)
    assert isinstance(message, EmailMessage)
    part = message.get_body(("html",))
    assert part is not None
    return str(part.get_content())


def text_part(path: Path) -> str:
    message = email.message_from_bytes(path.read_bytes(), policy=policy.default)
    assert isinstance(message, EmailMessage)
    part = message.get_body(("plain",))
    assert part is not None
    return str(part.get_content())


def under(text: str, url: str) -> str:
    """The plain text under the story linked to ``url`` (its meta line, then its excerpt),
    unwrapped into one line."""
    lines = text.splitlines()
    start = lines.index(f"  {url}") + 1
    end = lines.index("", start)
    return " ".join(line.strip() for line in lines[start:end])


def test_the_date_beside_a_story_from_two_outlets_says_it_is_the_first_report(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, feed_server: FeedServer
) -> None:
    monkeypatch.setenv("AGGREGATOR_SECRET_KEY", TEST_KEY)
    monkeypatch.chdir(tmp_path)
    # The wire moves a first take (the opening paragraph) on 14 Aug; the Ledger carries the
    # whole article on 17 Aug.  Dedupe keeps the full text, so the story links the Ledger's
    # article (17 Aug), while the story was first reported on 14 Aug.
    first_take = item(FIRST_TAKE_URL, HEADLINE, "Thu, 14 Aug 2025 10:00:00 GMT", PARAGRAPHS[0])
    alone = item(
        ALONE_URL,
        "Harbour bridge opens to traffic",
        "Sat, 16 Aug 2025 08:30:00 GMT",
        "The new harbour bridge opened to traffic this morning after four years of building work.",
    )
    full = item(FULL_URL, HEADLINE, "Sun, 17 Aug 2025 06:00:00 GMT", " ".join(PARAGRAPHS))
    feed_server.add_feed("/wire.xml", rss("Meridian Wire", first_take + alone))
    feed_server.add_feed("/ledger.xml", rss("The Northern Ledger", full))
    config = write_config(
        tmp_path,
        [
            (feed_server.url("/wire.xml"), "Meridian Wire"),
            (feed_server.url("/ledger.xml"), "The Northern Ledger"),
        ],
    )
    invoke(config, "run", "--once")
    invoke(config, "digest", "daily", "--send")

    # The output feed: one entry, linking the Ledger's article, published when first reported.
    feed = json.loads((tmp_path / "public" / "feed.json").read_text(encoding="utf-8"))
    [story] = [i for i in feed["items"] if i["title"] == HEADLINE]
    assert story["url"] == FULL_URL
    assert story["_aggregator"]["outlet"] == "The Northern Ledger"
    assert story["date_published"] == "2025-08-14T10:00:00Z"

    archive = tmp_path / "newsletters" / "archive" / "daily"
    [eml] = sorted((tmp_path / "newsletters" / "outbox").glob("daily-0001-*.eml"))
    first_reported = "first reported 14 Aug 2025, 11:00 BST"
    for text in (text_part(eml), (archive / "0001.txt").read_text(encoding="utf-8")):
        meta = f"The Northern Ledger · also in: Meridian Wire · {first_reported} "
        assert under(text, FULL_URL).startswith(meta + PARAGRAPHS[0][:20])
        # One outlet, one article: its own date, nothing to label.
        assert under(text, ALONE_URL).startswith("Meridian Wire · 16 Aug 2025, 09:30 BST The new")
    for page in (html_part(eml), (archive / "0001.html").read_text(encoding="utf-8")):
        assert f"The Northern Ledger · also in: Meridian Wire · {first_reported}</div>" in page
        assert ">Meridian Wire · 16 Aug 2025, 09:30 BST</div>" in page
        # No bare 14 Aug date beside the 17 Aug article's link.
        assert "Meridian Wire · 14 Aug" not in page
