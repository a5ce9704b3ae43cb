"""Build the bundled sample feeds and their labels from the article texts in ``seeds/articles/``.

In: the article texts (first line the title, then one paragraph a line) and the table of
entries below, which says which outlet carries which article, where, when and with what
changes.  Out: four feed files in ``seeds/`` (RSS 2.0, Atom 1.0, RSS 1.0/RDF, JSON Feed 1.1)
and ``tests/seed_labels.json``, the ground truth that dedupe and story tests compare against.

The feed files are committed; this script is how they were made, so that a change to the
sample data is a change to one table rather than hand edits to four formats that drift apart.
It uses the standard library only and its output is deterministic (no clock, no randomness).

    .venv/bin/python seeds/make_feeds.py          # rewrite the feeds and the labels
    .venv/bin/python seeds/make_feeds.py --check  # exit 1 if the committed files are stale
"""

from __future__ import annotations

import argparse
import html
import json
import re
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from email.utils import format_datetime
from pathlib import Path
from xml.sax.saxutils import escape, quoteattr

SEEDS = Path(__file__).resolve().parent
ARTICLES = SEEDS / "articles"
PROJECT = SEEDS.parent
LABELS = PROJECT / "tests" / "seed_labels.json"

SOURCE = "seed articles provided with the project brief (news analysis of the US–Russia summit in Alaska)"
FICTION = (
    "The outlets, their desks and every URL are fictional and use the reserved .example TLD. "
    "Entries marked written_for_sample_data were written for the sample data, not taken from the seeds."
)

# Feed paths exactly as feeds.yaml lists them (relative to the project root).
LEDGER = "seeds/northern-ledger.rss.xml"
MERIDIAN = "seeds/meridian-wire.atom.xml"
COASTAL = "seeds/coastal-dispatch.rdf"
ROUNDUP = "seeds/roundup.feed.json"

STORIES = {
    "alaska-summit": "The Trump–Putin summit in Alaska, 15 August 2025: previews, analysis and follow-up",
    "rubio-lavrov-malaysia": (
        "US–Russia relations after the Rubio–Lavrov meeting in Malaysia (July 2025), amid the war in Ukraine"
    ),
    "briefing-2025-08-11": "Northern Ledger Morning briefing, 11 August: UN General Assembly, consular work",
    "briefing-2025-08-13": "Northern Ledger Morning briefing, 13 August: Arctic shipping, treaties",
    "explainer-arctic-council": "Coastal Dispatch explainer: what the Arctic Council is",
    "explainer-joint-statement": "Coastal Dispatch explainer: what a joint statement after a summit is",
}

VARIATIONS = {
    "tracking-params": "the copy's link carries tracking parameters (utm_*, fbclid)",
    "same-canonical-url": "the copy's link is the original's URL once tracking parameters are removed",
    "same-url": "the copy's link is exactly the original's URL",
    "different-url": "the copy lives at another URL, on the syndicating outlet's own site",
    "retitled": "new headline, same body",
    "summary-only": "only the first paragraphs, as a summary/description, and no full content",
    "trailing-line": "an extra line appended at the end (credit line or newsletter sign-up)",
    "plain-text": "the body is plain text (JSON Feed content_text) where the original is HTML",
    "typographic-edit": "a small typographic change in the body (quotes or dashes)",
    "different-date": "published hours to a day after the original",
}


# --- article texts ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Block:
    """One block of an article body: a paragraph, a subheading or a list item."""

    kind: str  # "p", "h2", "h3" or "li"
    text: str


@dataclass(frozen=True, slots=True)
class Article:
    key: str  # the text file's stem, e.g. "000"
    title: str
    blocks: tuple[Block, ...]
    written: bool  # the whole text was written for the sample data rather than taken from the seeds
    title_written: bool  # the seed text had no title line, so the headline was written for the sample data


_QUESTION_WORDS = ("Why ", "What ", "Is ", "How ", "Who ", "Will ", "Can ", "Does ")


def _classify(line: str) -> Block:
    # The seed texts lost their markup; subheadings survive as short lines without a full
    # stop, FAQ questions as short questions, and list items as "- " lines.
    if line.startswith("- "):
        return Block("li", line[2:])
    if len(line) <= 90 and not line.endswith((".", "!", ":")) and not line.startswith(("Q: ", "A: ")):
        question = line.endswith("?") and line.startswith(_QUESTION_WORDS)
        return Block("h3" if question else "h2", line)
    return Block("p", line)


def load_article(
    key: str, *, title: str | None = None, drop: Sequence[str] = (), written: bool = False
) -> Article:
    """Read ``articles/KEY.txt``.  ``title`` is for a text whose first line is not a title;
    ``drop`` lists lines left out of the body (bylines, image credits)."""
    lines = [line.strip() for line in (ARTICLES / f"{key}.txt").read_text(encoding="utf-8").splitlines()]
    lines = [line for line in lines if line]
    title_written = title is not None
    if title is None:
        title, lines = lines[0], lines[1:]
    missing = [line for line in drop if line not in lines]
    if missing:
        raise ValueError(f"articles/{key}.txt: lines to drop not found: {missing}")
    blocks = tuple(_classify(line) for line in lines if line not in drop)
    return Article(key, title, blocks, written, title_written)


ARTICLE_000 = load_article("000")
ARTICLE_001 = load_article("001")
ARTICLE_002 = load_article("002")
ARTICLE_003 = load_article("003", drop=["By Emily Wilson"])  # the byline becomes the entry's author
# 004 has no title line in the seeds, and ends with an image credit for an image we do not have.
ARTICLE_004 = load_article(
    "004",
    title="After Alaska: Who Gained From the Trump–Putin Summit",
    drop=["image source from:energyintel"],
)
BRIEFING_1 = load_article("briefing-2025-08-11", written=True)
BRIEFING_2 = load_article("briefing-2025-08-13", written=True)
EXPLAINER_1 = load_article("explainer-arctic-council", written=True)
EXPLAINER_2 = load_article("explainer-joint-statement", written=True)


# --- entries ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Item:
    """One entry in one feed, plus its label."""

    feed: str
    guid: str
    link: str
    title: str
    article: Article
    published: datetime
    blocks: tuple[Block, ...]
    story: str
    authors: tuple[str, ...]
    categories: tuple[str, ...]
    updated: datetime | None = None
    summary_only: bool = False
    plain_text: bool = False
    copy_of: Item | None = None
    variations: tuple[str, ...] = ()
    note: str = ""

    @property
    def key(self) -> dict[str, str]:
        return {"feed": self.feed, "guid": self.guid}


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def _first_paragraphs(blocks: Sequence[Block], count: int) -> tuple[Block, ...]:
    return tuple(b for b in blocks if b.kind == "p")[:count]


def _edit_first(blocks: Sequence[Block], old: str, new: str) -> tuple[Block, ...]:
    """Replace ``old`` by ``new`` in the first block that contains it: a copy-desk touch-up."""
    for index, block in enumerate(blocks):
        if old in block.text:
            edited = replace(block, text=block.text.replace(old, new))
            return (*blocks[:index], edited, *blocks[index + 1 :])
    raise ValueError(f"text to edit not found: {old!r}")


def syndicate(
    original: Item,
    *,
    feed: str,
    guid: str,
    link: str,
    published: str,
    variations: Sequence[str],
    note: str,
    title: str | None = None,
    edit: Callable[[tuple[Block, ...]], tuple[Block, ...]] | None = None,
    trailing: str | None = None,
    summary_only: bool = False,
    plain_text: bool = False,
    categories: Sequence[str] | None = None,
) -> Item:
    """A near-identical copy of ``original`` carried by another outlet."""
    blocks = original.blocks
    if edit is not None:
        blocks = edit(blocks)
    if trailing is not None:
        blocks = (*blocks, Block("p", trailing))
    if summary_only:
        blocks = _first_paragraphs(blocks, 2)
    return Item(
        feed=feed,
        guid=guid,
        link=link,
        title=title or original.title,
        article=original.article,
        published=utc(published),
        blocks=blocks,
        story=original.story,
        authors=original.authors,
        categories=tuple(categories if categories is not None else original.categories),
        summary_only=summary_only,
        plain_text=plain_text,
        copy_of=original,
        variations=tuple(variations),
        note=note,
    )


def original(
    article: Article,
    *,
    feed: str,
    guid: str,
    link: str,
    published: str,
    story: str,
    authors: Sequence[str],
    categories: Sequence[str],
    updated: str | None = None,
    note: str = "",
) -> Item:
    return Item(
        feed=feed,
        guid=guid,
        link=link,
        title=article.title,
        article=article,
        published=utc(published),
        updated=utc(updated) if updated else None,
        blocks=article.blocks,
        story=story,
        authors=tuple(authors),
        categories=tuple(categories),
        note=note,
    )


# The originals.  The summit was on Friday 15 August 2025; every date is before the test
# suite's fixed clock (2025-08-18 12:00 UTC) so that a run "now" sees all of them.

L_000 = original(
    ARTICLE_000,
    feed=LEDGER,
    guid="https://northern-ledger.example/world/2025/08/16/the-chill-in-anchorage-trump-putin-summit",
    link="https://northern-ledger.example/world/2025/08/16/the-chill-in-anchorage-trump-putin-summit",
    published="2025-08-16T07:30:00",
    story="alaska-summit",
    authors=["Northern Ledger foreign desk"],
    categories=["World", "US-Russia relations", "Alaska summit"],
    note=(
        "Headline and framing are about the August 2025 Trump–Putin summit, but the body is muddled: "
        "it describes a 2021 Anchorage meeting (Blinken and Lavrov, the Biden administration). "
        "Kept verbatim as seed text; labelled with the summit it is headlined as."
    ),
)
L_003 = original(
    ARTICLE_003,
    feed=LEDGER,
    guid="https://northern-ledger.example/world/2025/08/05/us-russia-relations-ukraine-war-diplomacy",
    link="https://northern-ledger.example/world/2025/08/05/us-russia-relations-ukraine-war-diplomacy",
    published="2025-08-05T09:00:00",
    story="rubio-lavrov-malaysia",
    authors=["Emily Wilson"],
    categories=["World", "US-Russia relations", "Ukraine"],
    note=(
        "Not about the Alaska summit: its news peg is the Rubio–Lavrov meeting in Malaysia (July 2025). "
        "The seed's byline line 'By Emily Wilson' is the entry's author rather than body text."
    ),
)
M_002 = original(
    ARTICLE_002,
    feed=MERIDIAN,
    guid="tag:meridian-wire.example,2025-08-14:world/putin-trump-alaska-talks",
    link="https://meridian-wire.example/2025/08/14/putin-trump-talks-alaska",
    published="2025-08-14T10:00:00",
    story="alaska-summit",
    authors=["Meridian Wire staff"],
    categories=["Russia", "United States", "Alaska summit", "Analysis"],
    note="Preview written before the summit.",
)
M_004 = original(
    ARTICLE_004,
    feed=MERIDIAN,
    guid="tag:meridian-wire.example,2025-08-17:world/alaska-summit-winners-and-losers",
    link="https://meridian-wire.example/2025/08/17/alaska-summit-winners-and-losers",
    published="2025-08-17T06:00:00",
    updated="2025-08-17T08:20:00",
    story="alaska-summit",
    authors=["Meridian Wire staff"],
    categories=["Russia", "United States", "Ukraine", "Alaska summit"],
    note=(
        "The seed text has no title line; the headline was written for the sample data. "
        "The seed's closing image credit ('image source from:energyintel') is left out."
    ),
)
C_001 = original(
    ARTICLE_001,
    feed=COASTAL,
    guid="https://coastal-dispatch.example/world/2025/08/17/shifting-sands-us-russia-relations-second-summit",
    link="https://coastal-dispatch.example/world/2025/08/17/shifting-sands-us-russia-relations-second-summit",
    published="2025-08-17T18:00:00",
    story="alaska-summit",
    authors=["Coastal Dispatch world desk"],
    categories=["World", "US-Russia relations", "Alaska summit"],
    note=(
        "Framed around the agreed follow-up meeting, with the Alaska meeting as its precedent; "
        "its timeline is muddled (it speaks of the 2024 election as still ahead)."
    ),
)

# Items written for the sample data, to exercise what dedupe must NOT merge.

L_BRIEFING_1 = original(
    BRIEFING_1,
    feed=LEDGER,
    guid="https://northern-ledger.example/briefing/2025/08/11/morning-briefing",
    link="https://northern-ledger.example/briefing/2025/08/11/morning-briefing",
    published="2025-08-11T05:45:00",
    story="briefing-2025-08-11",
    authors=["Northern Ledger foreign desk"],
    categories=["Morning briefing"],
    note="Written for the sample data. Recurring column: same title as the 13 August issue, different body.",
)
L_BRIEFING_2 = original(
    BRIEFING_2,
    feed=LEDGER,
    guid="https://northern-ledger.example/briefing/2025/08/13/morning-briefing",
    link="https://northern-ledger.example/briefing/2025/08/13/morning-briefing",
    published="2025-08-13T05:45:00",
    story="briefing-2025-08-13",
    authors=["Northern Ledger foreign desk"],
    categories=["Morning briefing"],
    note="Written for the sample data. Recurring column: same title as the 11 August issue, different body.",
)
C_EXPLAINER_1 = original(
    EXPLAINER_1,
    feed=COASTAL,
    guid="https://coastal-dispatch.example/explainers/2025/08/12/what-is-the-arctic-council",
    link="https://coastal-dispatch.example/explainers/2025/08/12/what-is-the-arctic-council",
    published="2025-08-12T15:00:00",
    story="explainer-arctic-council",
    authors=["Coastal Dispatch world desk"],
    categories=["Explainers", "Arctic"],
    note=(
        "Written for the sample data. Shares only its two-paragraph republishing footer "
        "(about half its words) with the other explainer."
    ),
)
C_EXPLAINER_2 = original(
    EXPLAINER_2,
    feed=COASTAL,
    guid="https://coastal-dispatch.example/explainers/2025/08/16/what-is-a-joint-statement",
    link="https://coastal-dispatch.example/explainers/2025/08/16/what-is-a-joint-statement",
    published="2025-08-16T15:00:00",
    story="explainer-joint-statement",
    authors=["Coastal Dispatch world desk"],
    categories=["Explainers", "Diplomacy"],
    note=(
        "Written for the sample data. Shares only its two-paragraph republishing footer "
        "(about half its words) with the other explainer. General background, not a report on the summit."
    ),
)

# Syndicated copies: each is the same article as its original with the changes named.

L_002_COPY = syndicate(
    M_002,
    feed=LEDGER,
    guid="https://northern-ledger.example/world/2025/08/14/putin-trump-talks-in-alaska-global-power",
    link="https://northern-ledger.example/world/2025/08/14/putin-trump-talks-in-alaska-global-power",
    published="2025-08-14T13:15:00",
    summary_only=True,
    categories=["World", "US-Russia relations", "Alaska summit"],
    variations=["summary-only", "different-url", "different-date"],
    note=(
        "Wire copy trimmed to its first two paragraphs (the subheading between them dropped), "
        "in <description> only, with no content:encoded."
    ),
)
L_004_COPY = syndicate(
    M_004,
    feed=LEDGER,
    guid="https://northern-ledger.example/world/2025/08/17/after-alaska-who-gained-from-the-summit",
    link="https://northern-ledger.example/world/2025/08/17/after-alaska-who-gained-from-the-summit",
    published="2025-08-17T11:00:00",
    trailing="This article was first published by Meridian Wire.",
    categories=["World", "US-Russia relations", "Alaska summit"],
    variations=["trailing-line", "different-url", "different-date"],
    note="Full wire copy with a credit line appended.",
)
C_002_COPY = syndicate(
    M_002,
    feed=COASTAL,
    guid="https://coastal-dispatch.example/world/2025/08/15/why-alaska-putin-trump-talks",
    link=(
        "https://coastal-dispatch.example/world/2025/08/15/why-alaska-putin-trump-talks"
        "?utm_source=rss&utm_medium=feed&utm_campaign=world"
    ),
    published="2025-08-15T06:30:00",
    title="Why Alaska? What the Putin–Trump Talks Could Mean for the World Order",
    edit=lambda blocks: _edit_first(
        blocks,
        "“the most urgent regional and international questions.”",
        '"the most urgent regional and international questions."',
    ),
    categories=["World", "US-Russia relations", "Alaska summit"],
    variations=["retitled", "different-url", "tracking-params", "typographic-edit", "different-date"],
    note=(
        "Retitled copy on Coastal Dispatch's own URL; the feed's <link> carries utm_* parameters while "
        "rdf:about is the clean URL. Curly quotes around one quotation became straight quotes."
    ),
)
R_002_COPY = syndicate(
    M_002,
    feed=ROUNDUP,
    guid="daily-roundup:2025-08-14:0007",
    link=(
        "https://meridian-wire.example/2025/08/14/putin-trump-talks-alaska"
        "?utm_source=daily-roundup&utm_medium=feed&utm_campaign=morning-roundup"
    ),
    published="2025-08-14T18:00:00",
    plain_text=True,
    variations=["tracking-params", "same-canonical-url", "plain-text", "different-date"],
    note="Plain-text copy (content_text, subheadings as their own lines) linking to the original with utm_*.",
)
R_000_COPY = syndicate(
    L_000,
    feed=ROUNDUP,
    guid="daily-roundup:2025-08-17:0003",
    link=(
        "https://northern-ledger.example/world/2025/08/16/the-chill-in-anchorage-trump-putin-summit"
        "?fbclid=IwAR2Zk8vQx1mB4nT7cYp0sLr3dEhWfGjK5uNa9oXi6qVz"
    ),
    published="2025-08-17T07:00:00",
    trailing="Get The Daily Roundup in your inbox every morning: sign up at https://daily-roundup.example/newsletter.",
    variations=["tracking-params", "same-canonical-url", "trailing-line", "different-date"],
    note="HTML copy linking to the original with an fbclid, with a newsletter sign-up line appended.",
)
R_001_COPY = syndicate(
    C_001,
    feed=ROUNDUP,
    guid="daily-roundup:2025-08-18:0002",
    link="https://coastal-dispatch.example/world/2025/08/17/shifting-sands-us-russia-relations-second-summit",
    published="2025-08-18T06:00:00",
    edit=lambda blocks: _edit_first(blocks, "second meeting – following", "second meeting - following"),
    variations=["same-url", "typographic-edit", "different-date"],
    note="HTML copy at exactly the original's URL; one en dash became a hyphen.",
)

ITEMS: tuple[Item, ...] = (
    L_000,
    L_003,
    L_002_COPY,
    L_004_COPY,
    L_BRIEFING_1,
    L_BRIEFING_2,
    M_002,
    M_004,
    C_001,
    C_002_COPY,
    C_EXPLAINER_1,
    C_EXPLAINER_2,
    R_002_COPY,
    R_000_COPY,
    R_001_COPY,
)

# Pairs that dedupe must keep apart, with why.  Different articles about the same event share a
# story but are not copies; a recurring column title or shared boilerplate is not duplication.
MUST_STAY_APART: tuple[tuple[Item, Item, str], ...] = (
    (L_BRIEFING_1, L_BRIEFING_2, "recurring column: same title, same header and sign-off, different body"),
    (C_EXPLAINER_1, C_EXPLAINER_2, "shared republishing footer only"),
    (M_002, C_001, "different articles about the same summit"),
    (L_000, M_004, "different articles about the same summit"),
    (L_000, C_001, "different articles about the same summit, both heavy on the Arctic"),
    (C_002_COPY, L_000, "a retitled copy of 002 and a different article about the same summit"),
)


# --- rendering ----------------------------------------------------------------------------------


def _inline_html(text: str) -> str:
    # The seeds keep two Markdown-style **bold** spans; a CMS would have emitted <strong>.
    return re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", html.escape(text, quote=False))


def _inline_text(text: str) -> str:
    return text.replace("**", "")


def body_html(blocks: Sequence[Block]) -> str:
    out: list[str] = []
    in_list = False
    for block in blocks:
        if block.kind == "li" and not in_list:
            out.append("<ul>")
            in_list = True
        elif block.kind != "li" and in_list:
            out.append("</ul>")
            in_list = False
        tag = block.kind
        out.append(f"<{tag}>{_inline_html(block.text)}</{tag}>")
    if in_list:
        out.append("</ul>")
    return "\n".join(out)


def body_text(blocks: Sequence[Block]) -> str:
    parts: list[str] = []
    for block in blocks:
        line = f"- {_inline_text(block.text)}" if block.kind == "li" else _inline_text(block.text)
        # List items stay on consecutive lines; everything else is separated by a blank line.
        if parts and block.kind == "li" and parts[-1].startswith("- "):
            parts[-1] += "\n" + line
        else:
            parts.append(line)
    return "\n\n".join(parts)


def teaser(item: Item) -> str:
    """The plain-text first paragraph, which originals carry as their summary."""
    return _inline_text(_first_paragraphs(item.blocks, 1)[0].text)


def _cdata(text: str) -> str:
    if "]]>" in text:
        raise ValueError("]]> inside CDATA")
    return f"<![CDATA[{text}]]>"


def _rfc822(moment: datetime) -> str:
    return format_datetime(moment, usegmt=True)


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def _feed_items(feed: str) -> list[Item]:
    return sorted((i for i in ITEMS if i.feed == feed), key=lambda i: i.published, reverse=True)


def _latest(items: Sequence[Item]) -> datetime:
    return max(i.updated or i.published for i in items)


def render_rss20(items: Sequence[Item]) -> str:
    out = [
        '<?xml version="1.0" encoding="utf-8"?>',
        '<rss version="2.0" xmlns:atom="http://www.w3.org/2005/Atom"'
        ' xmlns:content="http://purl.org/rss/1.0/modules/content/"'
        ' xmlns:dc="http://purl.org/dc/elements/1.1/">',
        "  <channel>",
        "    <title>The Northern Ledger: World</title>",
        "    <link>https://northern-ledger.example/world/</link>",
        '    <atom:link href="https://northern-ledger.example/feeds/world.rss.xml"'
        ' rel="self" type="application/rss+xml"/>',
        "    <description>World news and analysis from The Northern Ledger.</description>",
        "    <language>en-us</language>",
        "    <copyright>© 2025 The Northern Ledger</copyright>",
        "    <managingEditor>foreign-desk@northern-ledger.example"
        " (Northern Ledger foreign desk)</managingEditor>",
        "    <webMaster>feeds@northern-ledger.example (Northern Ledger feeds)</webMaster>",
        f"    <lastBuildDate>{_rfc822(_latest(items))}</lastBuildDate>",
        "    <generator>Ledger CMS 4.2</generator>",
        "    <docs>https://www.rssboard.org/rss-specification</docs>",
        "    <ttl>60</ttl>",
    ]
    for item in items:
        out += [
            "    <item>",
            f"      <title>{escape(item.title)}</title>",
            f"      <link>{escape(item.link)}</link>",
            f'      <guid isPermaLink="true">{escape(item.guid)}</guid>',
            *(f"      <dc:creator>{escape(a)}</dc:creator>" for a in item.authors),
            f"      <pubDate>{_rfc822(item.published)}</pubDate>",
            *(f"      <category>{escape(c)}</category>" for c in item.categories),
        ]
        if item.summary_only:
            # Entity-escaped HTML in <description>, the older RSS habit.
            out.append(f"      <description>{escape(body_html(item.blocks))}</description>")
        else:
            out.append(f"      <description>{escape(teaser(item))}</description>")
            out.append(f"      <content:encoded>{_cdata(body_html(item.blocks))}</content:encoded>")
        out.append("    </item>")
    out += ["  </channel>", "</rss>", ""]
    return "\n".join(out)


def render_atom10(items: Sequence[Item]) -> str:
    out = [
        '<?xml version="1.0" encoding="utf-8"?>',
        '<feed xmlns="http://www.w3.org/2005/Atom" xml:lang="en">',
        "  <title>Meridian Wire: World</title>",
        "  <subtitle>Wire copy and analysis for publishers and readers.</subtitle>",
        "  <id>tag:meridian-wire.example,2025:feeds/world</id>",
        '  <link rel="alternate" type="text/html" href="https://meridian-wire.example/world/"/>',
        '  <link rel="self" type="application/atom+xml" href="https://meridian-wire.example/feeds/world.atom"/>',
        f"  <updated>{_iso(_latest(items))}</updated>",
        "  <author>",
        "    <name>Meridian Wire</name>",
        "    <uri>https://meridian-wire.example/</uri>",
        "    <email>desk@meridian-wire.example</email>",
        "  </author>",
        '  <generator uri="https://meridian-wire.example/about/feeds" version="2.1">'
        "Meridian Feeds</generator>",
        "  <rights>© 2025 Meridian Wire. Licensed to subscribing publishers.</rights>",
    ]
    for item in items:
        out += [
            "  <entry>",
            f"    <title>{escape(item.title)}</title>",
            f'    <link rel="alternate" type="text/html" href={quoteattr(item.link)}/>',
            f"    <id>{escape(item.guid)}</id>",
            f"    <published>{_iso(item.published)}</published>",
            f"    <updated>{_iso(item.updated or item.published)}</updated>",
            *(f"    <author><name>{escape(a)}</name></author>" for a in item.authors),
            *(f"    <category term={quoteattr(c)}/>" for c in item.categories),
            f'    <summary type="text">{escape(teaser(item))}</summary>',
            f'    <content type="html">{escape(body_html(item.blocks))}</content>',
            "  </entry>",
        ]
    out += ["</feed>", ""]
    return "\n".join(out)


def render_rss10(items: Sequence[Item]) -> str:
    # RSS 1.0 items have no guid: rdf:about is their identity.  Dates are dc:date only, which
    # feedparser reports as "updated" with no "published".
    out = [
        '<?xml version="1.0" encoding="utf-8"?>',
        "<rdf:RDF",
        '  xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"',
        '  xmlns="http://purl.org/rss/1.0/"',
        '  xmlns:dc="http://purl.org/dc/elements/1.1/"',
        '  xmlns:content="http://purl.org/rss/1.0/modules/content/"',
        '  xmlns:syn="http://purl.org/rss/1.0/modules/syndication/">',
        '  <channel rdf:about="https://coastal-dispatch.example/world/index.rdf">',
        "    <title>Coastal Dispatch: World</title>",
        "    <link>https://coastal-dispatch.example/world/</link>",
        "    <description>World coverage and explainers from Coastal Dispatch,"
        " an independent newsroom.</description>",
        "    <dc:language>en</dc:language>",
        "    <dc:publisher>Coastal Dispatch</dc:publisher>",
        "    <dc:creator>Coastal Dispatch world desk</dc:creator>",
        "    <dc:rights>© 2025 Coastal Dispatch</dc:rights>",
        f"    <dc:date>{_iso(_latest(items))}</dc:date>",
        "    <syn:updatePeriod>hourly</syn:updatePeriod>",
        "    <syn:updateFrequency>2</syn:updateFrequency>",
        "    <items>",
        "      <rdf:Seq>",
        *(f"        <rdf:li rdf:resource={quoteattr(i.guid)}/>" for i in items),
        "      </rdf:Seq>",
        "    </items>",
        "  </channel>",
    ]
    for item in items:
        out += [
            f"  <item rdf:about={quoteattr(item.guid)}>",
            f"    <title>{escape(item.title)}</title>",
            f"    <link>{escape(item.link)}</link>",
            f"    <description>{escape(teaser(item))}</description>",
            f"    <content:encoded>{escape(body_html(item.blocks))}</content:encoded>",
            *(f"    <dc:creator>{escape(a)}</dc:creator>" for a in item.authors),
            *(f"    <dc:subject>{escape(c)}</dc:subject>" for c in item.categories),
            f"    <dc:date>{_iso(item.published)}</dc:date>",
            "  </item>",
        ]
    out += ["</rdf:RDF>", ""]
    return "\n".join(out)


def render_json11(items: Sequence[Item]) -> str:
    feed: dict[str, object] = {
        "version": "https://jsonfeed.org/version/1.1",
        "title": "The Daily Roundup",
        "home_page_url": "https://daily-roundup.example/",
        "feed_url": "https://daily-roundup.example/feed.json",
        "description": "The day's diplomacy reading, picked from around the web.",
        "language": "en",
        "authors": [{"name": "The Daily Roundup editors", "url": "https://daily-roundup.example/about"}],
        "items": [],
    }
    entries: list[dict[str, object]] = []
    for item in items:
        entry: dict[str, object] = {"id": item.guid, "url": item.link, "title": item.title}
        if item.plain_text:
            entry["content_text"] = body_text(item.blocks)
        else:
            entry["content_html"] = body_html(item.blocks)
        entry["summary"] = teaser(item)
        entry["date_published"] = _iso(item.published)
        entry["authors"] = [{"name": a} for a in item.authors]
        entry["tags"] = list(item.categories)
        entries.append(entry)
    feed["items"] = entries
    return json.dumps(feed, ensure_ascii=False, indent=2) + "\n"


RENDERERS: dict[str, Callable[[Sequence[Item]], str]] = {
    LEDGER: render_rss20,
    MERIDIAN: render_atom10,
    COASTAL: render_rss10,
    ROUNDUP: render_json11,
}


def render_labels() -> str:
    entries = []
    for item in sorted(ITEMS, key=lambda i: (i.feed, i.published)):
        entries.append(
            {
                "feed": item.feed,
                "guid": item.guid,
                "link": item.link,
                "title": item.title,
                "published": _iso(item.published),
                "article": item.article.key,
                "written_for_sample_data": item.article.written,
                "title_written_for_sample_data": item.title != item.article.title
                or item.article.title_written,
                "copy_of": item.copy_of.key if item.copy_of else None,
                "variations": list(item.variations),
                "has_full_text": not item.summary_only,
                "story": item.story,
                "note": item.note,
            }
        )
    labels = {
        "source": SOURCE,
        "fiction": FICTION,
        "generated_by": "seeds/make_feeds.py",
        "variations": VARIATIONS,
        "stories": STORIES,
        "entries": entries,
        "must_stay_apart": [[a.key, b.key] for a, b, _ in MUST_STAY_APART],
        "must_stay_apart_reasons": [why for _, _, why in MUST_STAY_APART],
    }
    return json.dumps(labels, ensure_ascii=False, indent=2) + "\n"


def render_all() -> dict[Path, str]:
    """Every output file and its content, keyed by absolute path."""
    files = {PROJECT / feed: render(_feed_items(feed)) for feed, render in RENDERERS.items()}
    files[LABELS] = render_labels()
    return files


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--check", action="store_true", help="only report files that are out of date")
    args = parser.parse_args(argv)
    stale = []
    for path, content in render_all().items():
        current = path.read_text(encoding="utf-8") if path.exists() else None
        if current == content:
            continue
        stale.append(path)
        if not args.check:
            path.write_text(content, encoding="utf-8")
    for path in stale:
        verb = "out of date" if args.check else "wrote"
        print(f"{path.relative_to(PROJECT)}: {verb}")
    return 1 if args.check and stale else 0


if __name__ == "__main__":
    sys.exit(main())
