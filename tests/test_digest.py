"""The digest stage: which stories an issue holds, and what its HTML and text look like."""

from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
import zipfile
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import mjml
import pytest

from aggregator import digest, mail
from aggregator.digest import DigestIssue, DigestStory, render_digest, select_stories
from aggregator.snapshot import build_snapshot
from aggregator.types import Entry, StoredEntry
from tests.conftest import PROJECT_ROOT

NOW = datetime(2025, 8, 18, 12, 0, tzinfo=UTC)
START = NOW - timedelta(days=1)
TITLES = {"https://a.example/feed": "Outlet A", "https://b.example/feed": "Outlet B"}


@dataclass(frozen=True)
class Story:
    """A stored story as the snapshot reads it (``store.StoredStory`` has the same fields)."""

    id: str
    label: str
    topics: tuple[str, ...]
    updated: datetime = NOW - timedelta(hours=1)
    entry_ids: tuple[str, ...] = ()


def stored(
    eid: str,
    title: str,
    *,
    feed: str = "https://a.example/feed",
    url: str | None = None,
    seen: datetime = NOW - timedelta(hours=1),
    duplicate_of: str | None = None,
    story: str | None = None,
    text: str = "Body text of the article.",
    topics: tuple[str, ...] = (),
) -> StoredEntry:
    entry = Entry(
        guid=eid,
        url=url if url is not None else f"https://news.example/{eid}",
        canonical_url=None,
        title=title,
        published=seen - timedelta(minutes=30),
        text=text,
    )
    return StoredEntry(
        id=eid,
        feed_url=feed,
        entry=entry,
        first_seen=seen,
        last_updated=seen,
        duplicate_of=duplicate_of,
        story=story,
        topics=topics,
    )


def issue_of(stories: tuple[DigestStory, ...], number: int = 1) -> DigestIssue:
    return DigestIssue(
        newsletter="daily",
        title="The Daily Digest",
        number=number,
        window_start=START,
        window_end=NOW,
        frozen_at=NOW,
        timezone="Europe/London",
        lang="en",
        stories=stories,
    )


def select(
    entries: list[StoredEntry], stories: list[Story] | None = None, **kwargs: object
) -> tuple[DigestStory, ...]:
    snapshot = build_snapshot(entries, TITLES, NOW, stories or [])
    return select_stories(
        snapshot,
        window_start=START,
        window_end=NOW,
        **kwargs,  # type: ignore[arg-type]
    )


def test_without_stories_a_kept_entry_is_a_story_and_its_copies_are_other_outlets() -> None:
    entries = [
        stored("e1", "Summit ends"),
        stored("e2", "Summit ends", feed="https://b.example/feed", duplicate_of="e1"),
        stored("e3", "Markets rally", feed="https://b.example/feed"),
    ]
    chosen = select(entries)
    assert [s.headline for s in chosen] == ["Summit ends", "Markets rally"]
    assert chosen[0].outlets == ("Outlet A", "Outlet B")
    assert chosen[0].url == "https://news.example/e1"


def test_stories_use_their_label_and_topics_and_count_every_outlet() -> None:
    entries = [
        stored("e1", "Leaders meet in Alaska", story="s1"),
        stored("e2", "Alaska summit: leaders meet", feed="https://b.example/feed", story="s1"),
    ]
    chosen = select(entries, [Story("s1", "Alaska summit: leaders meet", ("Diplomacy",))])
    assert len(chosen) == 1
    assert chosen[0].headline == "Alaska summit: leaders meet"
    assert chosen[0].url == "https://news.example/e2"  # the copy whose headline is the label
    assert chosen[0].outlets == ("Outlet B", "Outlet A")
    assert chosen[0].section == "Diplomacy"


def test_window_excludes_stories_first_seen_before_it_even_if_they_grew() -> None:
    # Without ``copies`` (when each copy was first seen) no story can come back as updated.
    entries = [
        stored("old", "Old story", seen=START - timedelta(hours=2), story="s1"),
        stored("new-copy", "Old story, more", seen=NOW - timedelta(hours=1), story="s1"),
        stored("edge", "Seen exactly at the start", seen=START),
        stored("now", "Seen exactly now", seen=NOW),
        stored("future", "Seen after the window", seen=NOW + timedelta(seconds=1)),
    ]
    chosen = select(entries, [Story("s1", "Old story", ())])
    assert [s.headline for s in chosen] == ["Seen exactly now"]
    with_copies = select(entries, [Story("s1", "Old story", ())], copies={e.id: e for e in entries})
    assert [(s.headline, s.updated) for s in with_copies] == [
        ("Seen exactly now", False),
        ("Old story", True),
    ]
    assert [a.headline for a in with_copies[1].new_articles] == ["Old story, more"]


BEFORE = START - timedelta(hours=2)  # first seen before the window: reported in an earlier issue


def select_with_copies(entries: list[StoredEntry], **kwargs: object) -> tuple[DigestStory, ...]:
    return select(entries, [Story("s1", "Summit opens", ())], copies={e.id: e for e in entries}, **kwargs)


def test_an_article_joining_an_earlier_story_brings_it_back_marked_updated() -> None:
    entries = [
        stored("e1", "Summit opens", seen=BEFORE, story="s1"),
        stored("e2", "Summit ends without a deal", feed="https://b.example/feed", story="s1"),
        stored("e3", "Summit ends without a deal", duplicate_of="e2"),  # its syndicated copy
    ]
    [story] = select_with_copies(entries)
    assert (story.headline, story.url, story.updated) == ("Summit opens", "https://news.example/e1", True)
    assert story.outlets == ("Outlet A", "Outlet B")
    [article] = story.new_articles
    assert (article.outlet, article.headline, article.url) == (
        "Outlet B",
        "Summit ends without a deal",
        "https://news.example/e2",
    )
    assert article.time == NOW - timedelta(hours=1, minutes=30)
    issue = issue_of((story,))
    assert digest.issue_from_json(digest.issue_to_json(issue)) == issue
    rendered = render_digest(issue, archive_url="https://example.org/archive/daily/0002.html")
    assert "<strong>Updated</strong> · Outlet A · also in: Outlet B" in rendered.html
    assert 'New: <a href="https://news.example/e2"' in rendered.html
    assert "  Updated · Outlet A · also in: Outlet B · " in rendered.text
    assert "  New: Summit ends without a deal (Outlet B, 18 Aug 2025, 11:30 BST)\n" in rendered.text


def test_an_earlier_story_is_not_back_for_copies_of_what_it_already_had() -> None:
    syndicated = [  # another outlet carries the article already reported
        stored("e1", "Summit opens", seen=BEFORE, story="s1"),
        stored("e2", "Summit opens", feed="https://b.example/feed", duplicate_of="e1"),
    ]
    assert select_with_copies(syndicated) == ()
    fuller = [  # the full text of an article reported as a summary, kept in its place
        stored("e1", "Summit opens", seen=BEFORE, story="s1", duplicate_of="e2"),
        stored("e2", "Summit opens", feed="https://b.example/feed", story="s1"),
    ]
    assert select_with_copies(fuller) == ()
    unchanged = [stored("e1", "Summit opens", seen=BEFORE, story="s1")]
    assert select_with_copies(unchanged) == ()


def test_an_earlier_story_is_not_back_for_an_archive_or_another_feeds_article() -> None:
    entries = [
        stored("e1", "Summit opens", seen=BEFORE, story="s1"),
        stored("e2", "Summit ends", feed="https://b.example/feed", story="s1"),
    ]
    assert len(select_with_copies(entries)) == 1
    # Dated long before the window: a feed's archive, however recently it was first seen.
    assert select_with_copies(entries, reported_after=NOW) == ()
    # A newsletter of outlet A's feed only: outlet B's new article is not its news.
    assert select_with_copies(entries, feeds=("https://a.example/feed",)) == ()
    assert len(select_with_copies(entries, feeds=("https://b.example/feed",))) == 1


def test_new_stories_come_before_updated_ones_in_the_limit_and_the_subject() -> None:
    # An older story that three outlets now carry took a place of today's news when
    # max_stories was short, and named the issue in the subject ahead of every new story.
    entries = [
        stored("e1", "Summit opens", seen=BEFORE, story="s1"),
        stored("e2", "Summit ends without a deal", feed="https://b.example/feed", story="s1"),
        stored("e3", "Leaders fly home from the summit", feed="https://c.example/feed", story="s1"),
        stored("n1", "Rail strike called off", seen=NOW - timedelta(hours=1)),
        stored("n2", "Harbour bridge reopens", feed="https://b.example/feed", seen=NOW - timedelta(hours=2)),
    ]
    short = select_with_copies(entries, max_stories=2)
    assert sorted(s.headline for s in short) == ["Harbour bridge reopens", "Rail strike called off"]
    roomy = select_with_copies(entries, max_stories=3)
    [summit] = [s for s in roomy if s.updated]
    assert len(summit.outlets) == 3  # the most widely carried, and still after the new ones
    rendered = render_digest(issue_of(roomy), archive_url="https://example.org/archive/daily/0002.html")
    assert rendered.subject == "The Daily Digest: Rail strike called off (+2 more)"
    assert rendered.preheader.startswith("Harbour bridge reopens")
    only_updates = render_digest(
        issue_of((summit,)), archive_url="https://example.org/archive/daily/0002.html"
    )
    assert only_updates.subject == "The Daily Digest: Summit opens"  # with no new story, the update


def test_a_story_any_number_of_feeds_carried_or_reported_on_makes_no_huge_email() -> None:
    # A wire story carried by 40 feeds listed every outlet in every part; 12 reports joining
    # an older story listed all 12; a feed's 2 KB title was its outlet's name in full.
    # (An entry's authors are not in the digest at all: 500 of them add nothing.)
    many = [f"https://o{i:02d}.example/feed" for i in range(40)]
    lead = stored("w00", "Wire story", feed=many[0])
    lead = replace(lead, entry=replace(lead.entry, authors=tuple(f"Writer {i}" for i in range(500))))
    wire = [
        lead,
        *(stored(f"w{i:02d}", "Wire story", feed=many[i], duplicate_of="w00") for i in range(1, 40)),
    ]
    reports = [
        stored(
            f"r{i:02d}", f"Summit report {i}", feed=many[i], story="s1", seen=NOW - timedelta(minutes=60 - i)
        )
        for i in range(12)
    ]
    long_name = "Outlet B " + "x" * 2000
    reports.append(stored("rb", "Summit report B", feed="https://b.example/feed", story="s1"))
    entries = [stored("e1", "Summit opens", seen=BEFORE, story="s1"), *wire, *reports]
    titles = {**TITLES, "https://b.example/feed": long_name}
    snapshot = build_snapshot(entries, titles, NOW, [Story("s1", "Summit opens", ())])
    chosen = select_stories(snapshot, window_start=START, window_end=NOW, copies={e.id: e for e in entries})
    [wired] = [s for s in chosen if s.headline == "Wire story"]
    assert len(wired.outlets) == 40  # the issue keeps them all (they rank it); the rendering is cut
    rendered = render_digest(issue_of(chosen), archive_url="https://example.org/archive/daily/0002.html")
    shown = "o00.example · also in: o01.example, o02.example, o03.example, o04.example and 35 others · "
    [summit] = [s for s in chosen if s.updated]
    assert len(summit.new_articles) == 13
    # The plain text is wrapped: its lines are read as one.
    for part in (" ".join(rendered.text.split()), rendered.html):
        assert shown in part
        assert "o05.example," not in part
        assert part.count("New: ") == digest.NEW_ARTICLES_SHOWN
        assert "+8 more new articles" in part
        assert "Writer" not in part
        assert long_name not in part
    assert all(len(name) <= digest.OUTLET_CHARS + 1 for name in summit.outlets)
    assert len(rendered.html.encode()) < 20_000


def test_topic_and_feed_filters_and_the_story_limit() -> None:
    entries = [stored(f"e{i}", f"Story {i}", topics=("Tech",) if i % 2 else ("Sport",)) for i in range(10)]
    assert {s.section for s in select(entries, topics=("Tech",))} == {"Tech"}
    assert len(select(entries, topics=("Tech",))) == 5
    assert select(entries, feeds=("https://b.example/feed",)) == ()
    assert len(select(entries, max_stories=3)) == 3


def test_hostile_strings_are_cleaned_and_bad_links_dropped(caplog: pytest.LogCaptureFixture) -> None:
    entries = [
        stored("e1", "Evil\u202e title\x00 <script>alert(1)</script>\u2028 & co"),
        stored("e2", "No link", url="javascript:alert(1)"),
    ]
    with caplog.at_level(logging.WARNING):
        chosen = select(entries)
    assert [s.headline for s in chosen] == ["Evil title <script>alert(1)</script> & co"]
    assert "none of its entries has an http(s) link" in caplog.text
    rendered = render_digest(issue_of(chosen), archive_url="https://example.org/archive/daily/0001.html")
    assert "<script>" not in rendered.html
    assert "Evil title &lt;script&gt;alert(1)&lt;/script&gt; &amp; co" in rendered.html
    assert "Evil title <script>alert(1)</script> & co" in rendered.text


def test_rendered_issue_has_what_mail_clients_need() -> None:
    chosen = select([stored(f"e{i}", f"Headline number {i}", topics=("World",)) for i in range(5)])
    rendered = render_digest(issue_of(chosen), archive_url="https://example.org/archive/daily/0001.html")
    html = rendered.html
    assert html.startswith("<!doctype html>")
    assert '<html lang="en"' in html
    assert 'name="color-scheme" content="light dark"' in html
    assert "prefers-color-scheme: dark" in html
    assert "googleapis" not in html  # fonts={}
    for i in range(5):
        assert f"Headline number {i}" in html
        assert f"Headline number {i}" in rendered.text
    assert rendered.preheader.startswith("Headline number")
    assert rendered.preheader in html
    for href in re.findall(r'href="([^"]*)"', html):
        assert href.startswith(("https://", "http://")), href
    for img in re.findall(r"<img [^>]*>", html):
        assert 'alt="' in img
    assert digest.UNSUBSCRIBE_MARK in html
    assert digest.UNSUBSCRIBE_MARK in rendered.text
    assert rendered.subject == "The Daily Digest: Headline number 0 (+4 more)"
    # Every link is styled inline: mjml-python does not inline <mj-style inline>.
    assert all("style=" in a for a in re.findall(r"<a [^>]*>", html))


def test_large_issue_stays_under_gmail_clipping_and_links_the_rest() -> None:
    entries = [
        stored(
            f"e{i:03d}",
            f"A long enough headline about event {i} " * 2,
            text="Lorem ipsum dolor sit amet. " * 30,
        )
        for i in range(300)
    ]
    chosen = select(entries, max_stories=300)
    rendered = render_digest(issue_of(chosen), archive_url="https://example.org/archive/daily/0001.html")
    assert len(rendered.html.encode()) <= digest.MAX_HTML_BYTES - digest.PER_RECIPIENT_MARGIN
    assert rendered.omitted > 0
    assert rendered.shown + rendered.omitted == 300
    assert f"+{rendered.omitted} more stories in the web archive" in rendered.html
    assert f"+{rendered.omitted} more in the web archive: https://example.org/" in rendered.text
    assert rendered.text.count("\n* ") == rendered.shown
    per_story = len(rendered.html.encode()) / rendered.shown
    assert per_story < 1200  # the compact layout


def test_a_story_mjml_rejects_is_dropped_and_the_issue_survives(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    chosen = select([stored("good", "Good story"), stored("bad", "Bad story")])
    original = digest._story_html

    def broken(story: DigestStory, timezone: str) -> str:
        html = original(story, timezone)
        return html + "<" if story.headline == "Bad story" else html

    monkeypatch.setattr(digest, "_story_html", broken)
    with caplog.at_level(logging.WARNING):
        rendered = render_digest(issue_of(chosen), archive_url="https://example.org/a.html")
    assert rendered.dropped == tuple(s.id for s in chosen if s.headline == "Bad story")
    assert "Good story" in rendered.html
    assert "Bad story" not in rendered.html
    assert "story dropped: 'Bad story'" in caplog.text


def test_a_noncharacter_or_a_huge_title_costs_no_story_its_place() -> None:
    # MJML refuses U+FFFE: the story was dropped.  A 95 KB title filled the size budget alone,
    # and the email went out with no story in it.
    titles = {"https://a.example/feed": "Outlet\ufffe A", "https://b.example/feed": "Outlet B"}
    entries = [
        stored("odd", "Talks \ufdd0resume\U0001ffff in Geneva"),
        stored("huge", "Leaders meet " + "again and again " * 6000, feed="https://b.example/feed"),
    ]
    chosen = select_stories(build_snapshot(entries, titles, NOW, []), window_start=START, window_end=NOW)
    rendered = render_digest(issue_of(chosen), archive_url="https://example.org/archive/daily/0001.html")
    assert (rendered.shown, rendered.omitted, rendered.dropped) == (2, 0, ())
    assert "Talks resume in Geneva" in rendered.text
    assert "Outlet A" in rendered.text
    [huge] = [s for s in chosen if "Geneva" not in s.headline]
    assert len(huge.headline) <= digest.HEADLINE_CHARS + 1
    assert huge.headline.endswith("…")


def test_snapshot_round_trips_through_json() -> None:
    chosen = select([stored("e1", "Héadline ✓", story="s1")], [Story("s1", "Héadline ✓", ("Wörld",))])
    issue = issue_of(chosen, number=7)
    assert digest.issue_from_json(digest.issue_to_json(issue)) == issue


def test_the_issue_shows_each_story_as_the_snapshot_does() -> None:
    entries = [
        stored("e1", "Talks  in\nAlaska", story="s1", topics=("Diplomacy",)),
        stored("e2", "Talks in Alaska", feed="https://b.example/feed", duplicate_of="e1", story="s1"),
    ]
    snapshot = build_snapshot(entries, TITLES, NOW, [Story("s1", "Talks in Alaska", ("Diplomacy",))])
    [story] = snapshot.stories
    [shown] = select_stories(snapshot, window_start=START, window_end=NOW)
    # The id, headline, link and outlets an output feed gives the same story.
    assert shown.id == story.id
    assert shown.id.startswith("urn:uuid:")
    assert (
        (shown.headline, shown.url)
        == (story.headline, story.url)
        == ("Talks in Alaska", "https://news.example/e1")
    )
    assert shown.outlets == story.outlets == ("Outlet A", "Outlet B")
    assert shown.time == story.published


def test_a_story_whose_kept_copy_has_no_link_is_led_by_a_copy_that_has_one() -> None:
    entries = [
        stored("e1", "Summit ends", url="javascript:alert(1)"),
        stored("e2", "Summit ends", feed="https://b.example/feed", duplicate_of="e1"),
    ]
    [chosen] = select(entries)
    assert chosen.url == "https://news.example/e2"
    assert chosen.outlets == ("Outlet B", "Outlet A")


def test_an_issue_frozen_before_the_shared_snapshot_still_renders() -> None:
    # Issue JSON as stored by earlier versions (story keys as ids): a resumed issue must render.
    frozen = (
        '{"frozen_at": "2025-08-18T12:00:00+00:00", "lang": "en", "newsletter": "daily", "number": 3, '
        '"stories": [{"excerpt": "Body.", "headline": "Old story", "id": "e1", "outlets": ["Outlet A"], '
        '"section": "More stories", "time": "2025-08-18T10:30:00+00:00", "topics": [], '
        '"url": "https://news.example/e1"}], "timezone": "Europe/London", "title": "The Daily Digest", '
        '"window_end": "2025-08-18T12:00:00+00:00", "window_start": "2025-08-17T12:00:00+00:00"}'
    )
    issue = digest.issue_from_json(frozen)
    assert digest.issue_to_json(issue) == frozen
    rendered = render_digest(issue, archive_url="https://example.org/archive/daily/0003.html")
    assert "Old story" in rendered.text
    assert rendered.shown == 1


def test_mjml_python_facts_we_rely_on() -> None:
    # The unrelated PyPI package "mjml" installs a module of the same name.
    assert callable(mjml.mjml2html)
    with pytest.raises(ValueError, match="unable to parse"):
        mjml.mjml2html("<mjml><mj-body><mj-text>a < b</mj-text></mj-body></mjml>", fonts={})
    # mjml-python 1.4.2 does NOT inline <mj-style inline="inline">: the templates style
    # elements inline themselves.  If this starts failing, inlining works: simplify them.
    html = mjml.mjml2html(
        '<mjml><mj-head><mj-style inline="inline">.x { color: #123456; }</mj-style></mj-head>'
        '<mj-body><mj-section><mj-column><mj-text><p class="x">p</p></mj-text>'
        "</mj-column></mj-section></mj-body></mjml>",
        fonts={},
    )
    assert '<p class="x">' in html


# What the footer's unsubscribe link was rendered with until it became random: anyone could
# read it in the source and put it in a feed.
OLD_FIXED_MARK = "https://unsubscribe.invalid/UNSUBSCRIBE-TOKEN"


def test_a_feed_cannot_make_the_digest_carry_a_readers_unsubscribe_token() -> None:
    lure = f"https://evil.example/r?u={OLD_FIXED_MARK}"
    chosen = select([stored("e1", f"Read {OLD_FIXED_MARK}", url=lure, text=f"See {OLD_FIXED_MARK}")])
    rendered = render_digest(issue_of(chosen), archive_url="https://example.org/archive/daily/0001.html")
    spec = mail.MessageSpec(
        sender="digest@example.org",
        sender_name="The Daily Digest",
        reply_to=None,
        subject=rendered.subject,
        html=rendered.html,
        text=rendered.text,
        date="Mon, 18 Aug 2025 12:00:00 +0000",
        list_id="The Daily Digest <daily.example.org>",
    )
    reader = mail.Recipient(
        address="reader@example.com",
        message_id="<daily.1.abc@example.org>",
        unsubscribe_url="https://example.org/unsubscribe/READERS-OWN-TOKEN",
        unsubscribe_mailto="mailto:digest@example.org?subject=unsubscribe%20READERS-OWN-TOKEN",
    )
    msg = mail.build_message(spec, reader)
    text, html = (part.get_payload(decode=True).decode() for part in msg.iter_parts())
    assert lure in html  # the story's link is as the feed gave it ...
    assert html.count("READERS-OWN-TOKEN") == 1  # ... and the token is in the footer only
    assert text.count("READERS-OWN-TOKEN") == 1


def test_the_unsubscribe_placeholder_differs_in_every_process() -> None:
    code = "from aggregator import digest; print(digest.UNSUBSCRIBE_MARK)"
    marks = {
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
        for _ in range(2)
    }
    assert len(marks) == 2
    assert OLD_FIXED_MARK not in marks


def test_an_installed_copy_carries_the_digest_templates(tmp_path: Path) -> None:
    # The templates live in newsletters/, outside the package directory: a wheel without them
    # polled and stored, then failed at every digest.
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path),
         "."],
        cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert built.returncode == 0, built.stderr
    [wheel] = tmp_path.glob("aggregator-*.whl")
    installed = tmp_path / "site"
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(installed)
    script = (
        "from aggregator import digest; import datetime as d;"
        "issue = digest.DigestIssue('daily', 'Daily', 1, None, d.datetime(2025, 8, 18, tzinfo=d.UTC),"
        " d.datetime(2025, 8, 18, tzinfo=d.UTC), 'UTC', 'en', ());"
        "print(digest.TEMPLATES); print(len(digest.render_digest(issue, archive_url='https://x.example/1').html))"
    )
    rendered = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(installed)},
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert rendered.returncode == 0, rendered.stderr
    where, size = rendered.stdout.split()
    assert str(installed) in where
    assert int(size) > 1000


def _story(sid: str, headline: str, outlets: tuple[str, ...], section: str, hours: int = 1) -> DigestStory:
    return DigestStory(
        id=sid,
        headline=headline,
        url=f"https://news.example/{sid}",
        outlets=outlets,
        time=NOW - timedelta(hours=hours),
        excerpt="Lorem ipsum dolor sit amet. " * 8,
        topics=(section,) if section != digest.OTHER_SECTION else (),
        section=section,
    )


def test_an_email_too_big_for_every_story_keeps_the_most_carried_and_names_it_first() -> None:
    # The cut followed the display order (biggest section first, "More stories" last): the
    # story eight outlets carried went to the archive, and the subject named a gadget review.
    tech = tuple(_story(f"t{i:03d}", f"Gadget review number {i}", ("Outlet A",), "Tech") for i in range(150))
    summit = _story(
        "big", "Leaders meet in Alaska", tuple(f"Outlet {c}" for c in "ABCDEFGH"), digest.OTHER_SECTION, 5
    )
    rendered = render_digest(
        issue_of((*tech, summit)), archive_url="https://example.org/archive/daily/0001.html"
    )
    assert rendered.omitted > 0
    assert "Leaders meet in Alaska" in rendered.html
    assert "* Leaders meet in Alaska" in rendered.text
    assert rendered.subject.startswith("The Daily Digest: Leaders meet in Alaska (+150 more)")


def test_right_to_left_outlets_and_headlines_are_isolated_from_the_words_around_them() -> None:
    # "الجزيرة · 18 Aug" read as "18 · الجزيرة Aug": the day moved in front of the outlet.
    story = _story("ar", "قمة ألاسكا", ("الجزيرة", "Outlet B"), digest.OTHER_SECTION)
    rendered = render_digest(issue_of((story,)), archive_url="https://example.org/archive/daily/0001.html")
    assert "<bdi>الجزيرة</bdi> · also in: Outlet B · " in rendered.html
    assert "* \u2068قمة ألاسكا\u2069" in rendered.text
    assert "  \u2068الجزيرة\u2069 · also in: Outlet B · " in rendered.text
    plain = render_digest(
        issue_of((_story("en", "Leaders meet", ("Outlet A",), "X"),)), archive_url="https://e.x/a"
    )
    assert "\u2068" not in plain.text  # left-to-right text is left as it was
    assert "<bdi>" not in plain.html


def test_a_headline_of_invisible_characters_shows_its_link_instead() -> None:
    entries = [stored("ghost", "\u200b\u2060\u3164", url="https://news.example/ghost")]
    [story] = select(entries)
    assert story.headline == "https://news.example/ghost"
    [kept] = select([stored("zw", "Zero\u200bwidth\u00adtitle")])
    assert kept.headline == "Zerowidthtitle"
