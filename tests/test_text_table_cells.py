"""The plain text of a table keeps its cells apart.

The stored text (excerpts in the digest email, its plain-text part, the archive) ran adjacent
cells together: ``Arsenal2Chelsea1``.  Through ``parse_feed`` on a real RSS document.
"""

from __future__ import annotations

from aggregator.parse import _text_of, parse_feed, sanitize_html

TABLE = (
    "<p>Results:</p><table><tr><td>Arsenal</td><td>2</td><td>Chelsea</td><td>1</td></tr>"
    "<tr><td>Leeds</td><td>0</td><td>Everton</td><td>3</td></tr></table>"
)


def rss(description: str) -> bytes:
    return (
        '<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel><title>Scores</title>'
        "<item><title>Saturday</title><link>https://scores.example/1</link>"
        f"<description><![CDATA[{description}]]></description></item></channel></rss>"
    ).encode()


def test_table_cells_are_separated_by_a_space_in_the_stored_text() -> None:
    for fast in (True, False):
        feed = parse_feed(
            rss(TABLE), {"content-type": "application/rss+xml"}, "https://scores.example/rss", fast=fast
        )
        assert feed.entries[0].text == "Results:\nArsenal 2 Chelsea 1\nLeeds 0 Everton 3", fast


def test_header_cells_too_and_no_space_is_added_inside_a_word() -> None:
    base = "https://x.example/"
    table = "<table><tr><th>Name</th><th>Age</th></tr><tr><td>Ann<td>41</table>"  # end tags left out
    assert _text_of(sanitize_html(table, base)) == "Name Age\nAnn 41"
    assert _text_of(sanitize_html("<table><tr><th>Name</th><td>Ann</td></tr></table>", base)) == "Name Ann"
    assert _text_of(sanitize_html("<p>al<b>so</b> <i>x</i>y</p>", base)) == "also xy"
