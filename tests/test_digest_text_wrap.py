"""The plain-text part of a digest is wrapped for mail clients that show it as it is.

Real parts: a local feed file, a real SQLite store, the outbox and archive on disk, and the
``aggregator`` command in-process (typer's runner); the email is read back from the outbox.
"""

from __future__ import annotations

import email
import re
from email import policy
from email.message import EmailMessage
from pathlib import Path
from xml.sax.saxutils import escape

import pytest

from aggregator import digest
from tests.test_digest import _story, issue_of
from tests.test_digest_linked_copy import invoke, write_config
from tests.test_newsletters import TEST_KEY

LONG_TITLES = [
    "Parliament passes the long-awaited coastal flood defence bill after a night of amendments, "
    "walkouts and a last-minute compromise on who pays for the sea walls in the smaller harbour towns",
    "Researchers publish the first complete map of the seabed under the Ross Ice Shelf, "
    "showing channels where warm water reaches the grounding line far sooner than the models said",
    "Short one",
]
LONG_URLS = [
    "https://coastal-dispatch.example/politics/2025/08/17/parliament-passes-long-awaited-coastal-"
    "flood-defence-bill-after-night-of-amendments",
    "https://science-desk.example/environment/2025/08/17/first-complete-map-of-the-seabed-under-"
    "the-ross-ice-shelf?section=polar&page=2",
    "https://short.example/a",
]
DESCRIPTIONS = [
    "The bill, which has been debated for more than three years, sets out how the cost of new sea "
    "walls, pumping stations and managed retreat will be shared between the national government and "
    "the councils of the smaller harbour towns along the east coast.",
    "Sonar surveys from an autonomous submarine found a network of deep channels beneath the shelf; "
    "oceanographers say warm circumpolar water could reach the ice far sooner than expected.",
    "A brief note.",
]
OUTLET = "The Coastal Dispatch and Harbour Towns Evening Chronicle (Regional Edition)"


def long_feed() -> str:
    items = "".join(
        f"<item><title>{title}</title><link>{escape(url)}</link><guid>{escape(url)}</guid>"
        f"<description>{description}</description></item>"
        for title, url, description in zip(LONG_TITLES, LONG_URLS, DESCRIPTIONS, strict=True)
    )
    return (
        '<?xml version="1.0" encoding="utf-8"?>\n<rss version="2.0"><channel><title>Long</title>'
        f"<link>https://coastal-dispatch.example/</link>{items}</channel></rss>\n"
    )


def too_long(text: str) -> list[str]:
    """The lines of ``text`` over 78 characters, but for those that are one URL alone."""
    return [
        line for line in text.splitlines() if len(line) > 78 and not re.fullmatch(r"\s*https?://\S+", line)
    ]


def flat(text: str) -> str:
    return " ".join(text.split())


def plain_part(eml: Path) -> str:
    message = email.message_from_bytes(eml.read_bytes(), policy=policy.default)
    assert isinstance(message, EmailMessage)
    part = message.get_body(preferencelist=("plain",))
    assert part is not None
    return str(part.get_content())


def test_the_plain_text_of_a_digest_is_wrapped_and_keeps_every_title_and_link_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AGGREGATOR_SECRET_KEY", TEST_KEY)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "long.xml").write_text(long_feed(), encoding="utf-8")
    config = write_config(tmp_path, [("long.xml", OUTLET)])
    invoke(config, "poll")
    invoke(config, "digest", "daily", "--send")
    [archived] = sorted((tmp_path / "newsletters" / "archive" / "daily").glob("*.txt"))
    [eml] = sorted((tmp_path / "newsletters" / "outbox").glob("*.eml"))
    for text in (archived.read_text(encoding="utf-8"), plain_part(eml)):
        assert too_long(text) == []
        for title in LONG_TITLES:
            assert title in flat(text)
        for url in LONG_URLS:
            assert url in text.split()  # whole, never cut at a line end
        assert "/unsubscribe" in text
    # The archived page is what it was: only the plain text is wrapped.
    html = archived.with_suffix(".html").read_text(encoding="utf-8")
    assert LONG_TITLES[0] in html


def test_wrapping_keeps_the_hanging_indent_and_isolates_right_to_left_text_on_each_line() -> None:
    headline = "الرئيس يلتقي بالوفد الزائر في العاصمة لبحث اتفاق التجارة الجديد بين البلدين والتعاون الإقليمي"
    story = _story("s1", headline, ("Outlet A", "Outlet B"), "World")
    rendered = digest.render_digest(issue_of((story,)), archive_url="https://x.example/archive/0001.html")
    lines = rendered.text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("* "))
    block = lines[start : lines.index("", start)]
    assert too_long(rendered.text) == []
    assert len(block) > 3  # the headline took more than one line
    assert all(line.startswith("  ") for line in block[1:])
    headline_lines = [line for line in block if "\u2068" in line or "\u2069" in line]
    assert len(headline_lines) >= 2
    for line in headline_lines:  # each line a paragraph: its isolate closed on it
        assert line.count("\u2068") == line.count("\u2069") == 1
    assert headline in flat(rendered.text.replace("\u2068", "").replace("\u2069", ""))
