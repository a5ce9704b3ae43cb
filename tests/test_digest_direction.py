"""A digest in a right-to-left language (``lang: ar``, he, fa, ur…) is laid out right to left.

Before, ``newsletters/digest.mjml`` said ``dir="ltr"`` whatever the language, and MJML wrote
``direction:ltr`` on every section and column and ``text-align:left`` on every block of
text: an Arabic digest read as ``<html lang="ar" dir="ltr">`` with its headlines on the
left.  Now the direction follows the language; the blocks of fixed English words (the
dateline, "also in: … first reported …", the footer, "+N more stories") stay left to right
inside it, or they read in the wrong order; and a left-to-right digest is byte for byte what
it was (the golden files).

Real parts: the bundled seed feeds through a real cycle into real SQLite, the archive page
written by ``newsletters.write_archive``, MJML, and Debian's Chromium for what a reader sees.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from aggregator import digest, newsletters
from aggregator.config import LoadedConfig
from aggregator.digest import DigestArticle, DigestIssue, DigestStory, render_digest, text_direction
from aggregator.store import Store
from tests.test_newsletters import GOLDEN, NOW, cycled  # noqa: F401 -- cycled is a fixture


@pytest.mark.parametrize(
    ("lang", "direction"),
    [
        ("ar", "rtl"),
        ("ar-EG", "rtl"),
        ("AR_eg", "rtl"),
        ("he", "rtl"),
        ("iw", "rtl"),
        ("fa-IR", "rtl"),
        ("ur", "rtl"),
        ("ckb", "rtl"),
        ("dv", "rtl"),
        ("ps", "rtl"),
        ("yi", "rtl"),
        ("ug", "rtl"),
        ("ha-Arab", "rtl"),  # Hausa is usually Latin; in Ajami, right to left
        ("ku-Arab-IQ", "rtl"),
        ("und-Hebr", "rtl"),
        ("ff-Adlm", "rtl"),
        ("sd-Deva", "ltr"),  # Sindhi is usually Arabic; in Devanagari, left to right
        ("ku", "ltr"),
        ("ha", "ltr"),
        ("en", "ltr"),
        ("en-GB", "ltr"),
        ("pt-BR", "ltr"),
        ("zh-Hant", "ltr"),
        ("en-x-arab", "ltr"),  # a private-use subtag is no script
        ("", "ltr"),
    ],
)
def test_the_direction_follows_the_language_and_its_script(lang: str, direction: str) -> None:
    assert text_direction(lang) == direction


def archive_page(loaded: LoadedConfig, store: Store, lang: str) -> str:
    """The seed issue's archive page (what the email shows, without a personal token) in ``lang``."""
    record = store.latest_issue("daily")
    assert record is not None
    issue = replace(digest.issue_from_json(record.snapshot), lang=lang)
    page = newsletters.write_archive(loaded, store, newsletters.find_newsletter(loaded, "daily"), issue)
    return page.read_text(encoding="utf-8")


# Everything a right-to-left digest changes in the seed issue's page, from the golden file.
RTL_CHANGES = (
    ('lang="en" dir="ltr"', 'lang="ar" dir="rtl"'),  # <html> and the body's <div>
    ("direction:ltr", "direction:rtl"),  # sections and columns
    ('<td align="left"', '<td align="right"'),  # blocks of text
    ("line-height:1.5;text-align:left;", "line-height:1.5;text-align:right;"),
    ('<div class="m" style=', '<div class="m" dir="ltr" style='),  # dateline, meta lines
    ("You receive ", '<div dir="ltr">You receive '),  # the footer
    (">Unsubscribe</a>", ">Unsubscribe</a></div>"),
)


def test_an_arabic_digest_is_right_to_left_and_an_english_one_is_unchanged(
    cycled: tuple[LoadedConfig, Store],  # noqa: F811 -- the fixture
) -> None:
    loaded, store = cycled
    golden = (GOLDEN / "seed-digest.html").read_text(encoding="utf-8")
    assert archive_page(loaded, store, "en") == golden  # byte for byte

    arabic = archive_page(loaded, store, "ar")

    assert arabic.startswith('<!doctype html><html lang="ar" dir="rtl" ')
    assert "direction:ltr" not in arabic
    # Only MJML's column wrapper keeps text-align:left; it holds no text (font-size:0).
    assert arabic.count("text-align:left") == arabic.count(
        'mj-column-per-100" style="font-size:0px;text-align:left'
    )
    assert 'align="left"' not in arabic
    expected = golden
    for before, after in RTL_CHANGES:
        assert before in expected, before
        expected = expected.replace(before, after)
    assert arabic == expected


def updated_story() -> DigestStory:
    """A story back as updated, with more new articles than are shown (the "+N more" line)."""
    articles = tuple(
        DigestArticle("الجزيرة", f"تحديث رقم {n}", f"https://news.example/new-{n}", NOW)
        for n in range(digest.NEW_ARTICLES_SHOWN + 2)
    )
    return DigestStory(
        id="urn:uuid:00000000-0000-0000-0000-000000000001",
        headline="قمة ألاسكا: ما الذي اتفق عليه الطرفان",
        url="https://news.example/summit",
        outlets=("الجزيرة", "Meridian Wire"),
        time=NOW,
        excerpt="التقى الرئيسان في أنكوريج.",
        topics=("دبلوماسية",),
        section="دبلوماسية",
        updated=True,
        new_articles=articles,
    )


def test_the_new_articles_and_more_lines_stay_left_to_right_inside_an_arabic_digest() -> None:
    story = updated_story()
    issue = DigestIssue("daily", "النشرة اليومية", 3, None, NOW, NOW, "Asia/Riyadh", "ar", (story,))
    full = render_digest(issue, archive_url="https://news.example/archive/daily/0003.html")
    # So small that no story fits: the "+1 more story in the web archive →" link alone.
    cut = render_digest(issue, archive_url="https://news.example/archive/daily/0003.html", max_bytes=4000)

    assert '<div class="m" dir="ltr" style="color:#59636e;font-size:13px;margin:4px 0 0">' in full.html
    assert "<div>+2 more new articles</div>" in full.html  # inside that block
    assert cut.shown == 0
    assert '<a href="https://news.example/archive/daily/0003.html" dir="ltr" style=' in cut.html
    # The plain-text part has no direction to give: the same words as in English.
    english = render_digest(
        replace(issue, lang="en"), archive_url="https://news.example/archive/daily/0003.html"
    )
    assert full.text == english.text


LAYOUT_SCRIPT = """() => {
  const text = [...document.querySelectorAll("td.s > div")][1];  // the first section's text
  const box = text.getBoundingClientRect(), style = getComputedStyle(text);
  const headline = text.querySelector("a[dir=auto]").getBoundingClientRect();
  const dateline = document.querySelector("div.m");
  const words = document.createRange();
  words.selectNodeContents(dateline.firstChild);
  const rects = [...words.getClientRects()];
  return {
    direction: style.direction, align: style.textAlign,
    headlineFromRight: box.right - headline.right, headlineFromLeft: headline.left - box.left,
    datelineDirection: getComputedStyle(dateline).direction,
    datelineFromRight: text.getBoundingClientRect().right - rects[rects.length - 1].right,
    datelineFirstWord: document.caretRangeFromPoint(rects[0].left + 2, rects[0].top + 2).startOffset,
  };
}"""


def test_a_browser_lays_the_arabic_digest_out_from_the_right(
    cycled: tuple[LoadedConfig, Store],  # noqa: F811 -- the fixture
    browser: Any,
) -> None:
    loaded, store = cycled
    page = browser.new_page(viewport={"width": 700, "height": 900})
    layouts = {}
    for lang in ("en", "ar"):
        page.set_content(archive_page(loaded, store, lang))
        layouts[lang] = page.evaluate(LAYOUT_SCRIPT)
    english, arabic = layouts["en"], layouts["ar"]
    assert (english["direction"], english["align"]) == ("ltr", "left")
    assert english["headlineFromLeft"] < 1
    assert (arabic["direction"], arabic["align"]) == ("rtl", "right")
    assert arabic["headlineFromRight"] < 1  # on the right, where a right-to-left reader starts
    # The dateline is right-aligned, and reads "18 August 2025 · issue 1 · …" from its
    # left end: the day first, not "August 2025 · issue 1 · 6 stories 18".
    assert arabic["datelineDirection"] == "ltr"
    assert arabic["datelineFromRight"] < 1
    assert arabic["datelineFirstWord"] == 0
