"""Deterministic generator of realistic RSS 2.0 / Atom feeds for benchmarks.

Copied from the shared reference harness (/work/shared/bench/feedgen.py, the one that
measured lemon24's ``reader`` on this machine) so the project's benchmark runs from a fresh
clone; the feeds it makes are the project's test material.  Changes: types and lint only,
the output is byte-for-byte the same for the same (seed, feed_id, version).

Stdlib only.  Every feed is a pure function of (seed, feed_id, version):

* 20-50 items per feed, each with ~1-3 KB of HTML (paragraphs, links,
  emphasis, lists, images, quotes, code, entities, non-ASCII text).
* Formats by feed_id % 5: 0,1 -> RSS 2.0 (escaped HTML in <description>),
  2 -> RSS 2.0 "WordPress style" (summary + CDATA <content:encoded>,
  dc:creator, categories), 3,4 -> Atom 1.0 (summary + content type="html").
* About 12% of items are syndicated copies of a shared "story pool" with
  small variations (title prefix/suffix, tracking params on the link,
  an extra sentence), so a dedupe stage has near-identical stories to find.
* ``version`` > 0 shifts the window: version v shows v new items on top and
  drops the v oldest, so a bumped feed has exactly v new entries.
"""

from __future__ import annotations

import hashlib
import random
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any
from xml.sax.saxutils import escape

# A word list reads better as prose than as 300 quoted strings.
WORDS = (  # noqa: SIM905
    "the of and to in a is that for it as was with be by on not he this are or "
    "his from at which but have an they you were her she there one all we their "
    "been has when who will more no if out so said what up its about into than "
    "them can only other new some could time these two may then do first any my "
    "now such like our over man me even most made after also did many before "
    "must through back years where much your way well down should because each "
    "just those people how too little state good very make world still own see "
    "men work long get here between both life being under never day same another "
    "know while last might us great old year off come since against go came right "
    "used take three system network release update security kernel database "
    "server client library python feed parser memory latency throughput cache "
    "policy election market climate energy research science study report council "
    "budget museum festival league season transfer player coach recipe garden "
    "travel startup funding product launch review analysis interview opinion "
    "community open source developer browser performance benchmark storage "
    "protocol standard compiler runtime async thread process queue index query"
).split()

NAMES = (
    "Ana Popescu",
    "John Smith",
    "Maria García",
    "Chen Wei",
    "Olga Ivanova",
    "Kwame Mensah",
    "Aiko Tanaka",
    "Liam O'Brien",
    "Zoë Dubois",
    "Raj Patel",
    "Sofia Rossi",
    "Mehmet Yılmaz",
    "Emma Müller",
    "Lucas Silva",
    "Nora Berg",
)

TOPICS = (
    "Technology",
    "Politics",
    "Science",
    "Sports",
    "Culture",
    "Business",
    "Health",
    "Travel",
    "Food",
    "Open Source",
    "Security",
    "Climate",
)

SITE_WORDS = (
    "daily",
    "tech",
    "news",
    "post",
    "journal",
    "blog",
    "weekly",
    "times",
    "herald",
    "notes",
    "digest",
    "review",
    "chronicle",
    "gazette",
    "dispatch",
)

EPOCH = datetime(2025, 1, 1, tzinfo=UTC)
POOL_SHARE = 0.12


def _rng(*parts: object) -> random.Random:
    h = hashlib.blake2b(repr(parts).encode(), digest_size=8).digest()
    return random.Random(int.from_bytes(h, "big"))


def _sentence(r: random.Random, lo: int = 8, hi: int = 22) -> str:
    words = r.choices(WORDS, k=r.randint(lo, hi))
    words[0] = words[0].capitalize()
    return " ".join(words) + r.choice((".", ".", ".", "?", "!"))


def _title(r: random.Random) -> str:
    words = r.choices(WORDS, k=r.randint(4, 11))
    title = " ".join(w.capitalize() if i == 0 or r.random() < 0.3 else w for i, w in enumerate(words))
    extra = r.random()
    if extra < 0.1:
        title += " — “analysis”"
    elif extra < 0.2:
        title = "Q&A: " + title
    elif extra < 0.25:
        title += " (café édition)"
    return title


def _inline(r: random.Random, site: str) -> str:
    s = _sentence(r)
    roll = r.random()
    words = s.split(" ")
    if len(words) > 4:
        i = r.randrange(1, len(words) - 2)
        if roll < 0.35:
            href = f"https://{site}/p/{r.randrange(10**6)}?ref=feed&amp;src=rss"
            words[i] = f'<a href="{href}">{words[i]} {words[i + 1]}</a>'
            del words[i + 1]
        elif roll < 0.55:
            words[i] = f"<em>{words[i]}</em>"
        elif roll < 0.7:
            words[i] = f"<strong>{words[i]}</strong>"
        elif roll < 0.78:
            words[i] = f"<code>{words[i]}()</code>"
        elif roll < 0.85:
            words[i] = words[i] + " &amp; " + r.choice(WORDS) + "&#8217;s"
    return " ".join(words)


def _html_body(r: random.Random, site: str, target: int) -> str:
    parts: list[str] = []
    size = 0
    while size < target:
        roll = r.random()
        if roll < 0.62 or not parts:
            block = "<p>" + " ".join(_inline(r, site) for _ in range(r.randint(2, 5))) + "</p>"
        elif roll < 0.72:
            items = "".join(f"<li>{_inline(r, site)}</li>" for _ in range(r.randint(2, 5)))
            block = f"<ul>{items}</ul>"
        elif roll < 0.80:
            block = (
                f'<figure><img src="https://cdn.{site}/img/{r.randrange(10**8):08d}.jpg" '
                f'alt="{escape(_sentence(r, 3, 6))}" width="{r.choice((640, 800, 1200))}" '
                f'height="{r.choice((360, 450, 675))}" loading="lazy"/>'
                f"<figcaption>{_sentence(r, 4, 10)}</figcaption></figure>"
            )
        elif roll < 0.88:
            block = f"<blockquote><p>{_sentence(r)} {_sentence(r)}</p></blockquote>"
        elif roll < 0.94:
            code = "\n".join(
                f"    {r.choice(WORDS)} = {r.choice(WORDS)}({r.randrange(100)}) &lt; {r.randrange(1000)}"
                for _ in range(r.randint(2, 6))
            )
            block = f"<pre><code>{code}</code></pre>"
        else:
            block = f"<h3>{_title(r)}</h3>"
        parts.append(block)
        size += len(block)
    return "\n".join(parts)


def _story(seed: int, story_id: int) -> dict[str, Any]:
    r = _rng("story", seed, story_id)
    return {
        "title": _title(r),
        "html": _html_body(r, "wire.example.org", r.randint(1000, 3000)),
        "slug": f"story-{story_id}",
        "author": r.choice(NAMES),
    }


class FeedSpec:
    """Static description of one feed (independent of version)."""

    def __init__(self, seed: int, feed_id: int, n_feeds: int) -> None:
        r = _rng("feed", seed, feed_id)
        self.seed = seed
        self.feed_id = feed_id
        self.kind = ("rss", "rss", "rss-wp", "atom", "atom")[feed_id % 5]
        w1, w2 = r.choice(WORDS), r.choice(SITE_WORDS)
        self.site = f"{w1}{w2}{feed_id}.example.com"
        self.title = f"{w1.capitalize()} {w2.capitalize()} #{feed_id}"
        self.n_items = r.randint(20, 50)
        self.interval = timedelta(minutes=r.choice((17, 45, 90, 240, 720)))
        self.topics = r.sample(TOPICS, 3)
        self.pool_size = max(50, n_feeds // 4)

    def item(self, k: int) -> dict[str, Any]:
        r = _rng("item", self.seed, self.feed_id, k)
        published = EPOCH + self.interval * k
        if r.random() < POOL_SHARE:
            story_id = r.randrange(self.pool_size)
            st = _story(self.seed, story_id)
            title = st["title"]
            v = r.random()
            if v < 0.3:
                title = title + " | " + self.title
            elif v < 0.5:
                title = "Update: " + title
            elif v < 0.6:
                title = title.upper()
            html = st["html"]
            if r.random() < 0.5:
                html = html + f"\n<p>{_sentence(r)} (via {self.title})</p>"
            link = f"https://{self.site}/syndicated/{st['slug']}?utm_source=rss&amp;utm_medium=feed&amp;utm_campaign={self.feed_id}"
            author = st["author"]
        else:
            title = _title(r)
            html = _html_body(r, self.site, r.randint(1000, 3000))
            link = f"https://{self.site}/{published:%Y/%m/%d}/post-{k}"
            author = r.choice(NAMES)
        summary_words = r.choices(WORDS, k=r.randint(25, 45))
        return {
            "k": k,
            "title": title,
            "html": html,
            "summary": " ".join(summary_words).capitalize() + "…",
            "link": link,
            "guid": f"https://{self.site}/?p={self.feed_id * 100000 + k}",
            "author": author,
            "published": published,
            "categories": r.sample(self.topics, r.randint(1, 2)),
        }

    def window(self, version: int) -> range:
        newest = self.n_items - 1 + version
        return range(newest, newest - self.n_items, -1)

    def newest_date(self, version: int) -> datetime:
        return EPOCH + self.interval * (self.n_items - 1 + version)

    def etag(self, version: int) -> str:
        h = hashlib.blake2b(f"{self.seed}/{self.feed_id}/{version}".encode(), digest_size=10)
        return '"' + h.hexdigest() + '"'

    def content_type(self) -> str:
        return (
            "application/atom+xml; charset=utf-8"
            if self.kind == "atom"
            else "application/rss+xml; charset=utf-8"
        )

    def render(self, version: int, self_url: str = "") -> bytes:
        items = [self.item(k) for k in self.window(version)]
        if self.kind == "atom":
            return _render_atom(self, items, version, self_url).encode("utf-8")
        return _render_rss(self, items, version, self_url).encode("utf-8")


def _cdata(s: str) -> str:
    return "<![CDATA[" + s.replace("]]>", "]]]]><![CDATA[>") + "]]>"


def _render_rss(spec: FeedSpec, items: list[dict[str, Any]], version: int, self_url: str) -> str:
    wp = spec.kind == "rss-wp"
    out = ['<?xml version="1.0" encoding="UTF-8"?>\n']
    if wp:
        out.append(
            '<rss version="2.0" xmlns:content="http://purl.org/rss/1.0/modules/content/" '
            'xmlns:dc="http://purl.org/dc/elements/1.1/" xmlns:atom="http://www.w3.org/2005/Atom" '
            'xmlns:sy="http://purl.org/rss/1.0/modules/syndication/">\n'
        )
    else:
        out.append('<rss version="2.0" xmlns:atom="http://www.w3.org/2005/Atom">\n')
    out.append("<channel>\n")
    out.append(f"<title>{escape(spec.title)}</title>\n")
    out.append(f"<link>https://{spec.site}/</link>\n")
    if self_url:
        out.append(f'<atom:link href="{escape(self_url)}" rel="self" type="application/rss+xml"/>\n')
    out.append(
        f"<description>Posts about {escape(', '.join(spec.topics))} from {escape(spec.title)}</description>\n"
    )
    out.append("<language>en-us</language>\n")
    out.append(f"<lastBuildDate>{format_datetime(spec.newest_date(version), usegmt=True)}</lastBuildDate>\n")
    out.append("<generator>feedgen-bench 1.0</generator>\n")
    if wp:
        out.append("<sy:updatePeriod>hourly</sy:updatePeriod><sy:updateFrequency>1</sy:updateFrequency>\n")
    for it in items:
        out.append("<item>\n")
        out.append(f"<title>{escape(it['title'])}</title>\n")
        out.append(f"<link>{it['link']}</link>\n")
        if it["k"] % 7 == 3 and not wp:
            pass  # some RSS items carry no guid: readers fall back to the link
        else:
            out.append(f'<guid isPermaLink="false">{it["guid"]}</guid>\n')
        out.append(f"<pubDate>{format_datetime(it['published'], usegmt=True)}</pubDate>\n")
        for c in it["categories"]:
            out.append(f"<category>{escape(c)}</category>\n")
        if wp:
            out.append(f"<dc:creator>{_cdata(it['author'])}</dc:creator>\n")
            out.append(f"<description>{_cdata(it['summary'])}</description>\n")
            out.append(f"<content:encoded>{_cdata(it['html'])}</content:encoded>\n")
        else:
            out.append(f"<author>noreply@{spec.site} ({escape(it['author'])})</author>\n")
            if it["k"] % 2:
                out.append(f"<description>{escape(it['html'])}</description>\n")
            else:
                out.append(f"<description>{_cdata(it['html'])}</description>\n")
        out.append("</item>\n")
    out.append("</channel>\n</rss>\n")
    return "".join(out)


def _iso(dt: datetime) -> str:
    return dt.strftime("%Y-%m-%dT%H:%M:%SZ")


def _render_atom(spec: FeedSpec, items: list[dict[str, Any]], version: int, self_url: str) -> str:
    out = [
        '<?xml version="1.0" encoding="utf-8"?>\n<feed xmlns="http://www.w3.org/2005/Atom" xml:lang="en">\n'
    ]
    out.append(f"<title>{escape(spec.title)}</title>\n")
    out.append(f"<subtitle>Posts about {escape(', '.join(spec.topics))}</subtitle>\n")
    out.append(f'<link href="https://{spec.site}/" rel="alternate" type="text/html"/>\n')
    if self_url:
        out.append(f'<link href="{escape(self_url)}" rel="self" type="application/atom+xml"/>\n')
    out.append(f"<id>tag:{spec.site},2025:feed</id>\n")
    out.append(f"<updated>{_iso(spec.newest_date(version))}</updated>\n")
    out.append('<generator uri="https://example.com/feedgen" version="1.0">feedgen-bench</generator>\n')
    for it in items:
        out.append("<entry>\n")
        out.append(f'<title type="html">{escape(it["title"])}</title>\n')
        out.append(f'<link href="{it["link"]}" rel="alternate" type="text/html"/>\n')
        out.append(f"<id>tag:{spec.site},2025:post-{it['k']}</id>\n")
        out.append(f"<published>{_iso(it['published'])}</published>\n")
        out.append(f"<updated>{_iso(it['published'] + timedelta(minutes=5))}</updated>\n")
        out.append(f"<author><name>{escape(it['author'])}</name></author>\n")
        for c in it["categories"]:
            out.append(f'<category term="{escape(c)}"/>\n')
        out.append(f'<summary type="text">{escape(it["summary"])}</summary>\n')
        out.append(f'<content type="html" xml:base="https://{spec.site}/">{escape(it["html"])}</content>\n')
        out.append("</entry>\n")
    out.append("</feed>\n")
    return "".join(out)


if __name__ == "__main__":  # quick look: python feedgen.py [feed_id]
    import sys

    fid = int(sys.argv[1]) if len(sys.argv) > 1 else 0
    sys.stdout.write(FeedSpec(1, fid, 200).render(0, f"http://127.0.0.1/feeds/{fid}.xml").decode())
