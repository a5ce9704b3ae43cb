"""OPML outlines that look like feeds but cannot be imported (no xmlUrl, an empty one, a
relative one) are reported as skipped, each with its line in the OPML file and why, and
counted: a person's subscriptions never vanish without a word."""

from __future__ import annotations

import shutil
from pathlib import Path

from typer.testing import CliRunner

from aggregator import cli
from aggregator.opml import parse_opml

GOLDEN = Path(__file__).parent / "golden" / "config"

# Line numbers matter here: each outline is on the line its comment says.
SUBSCRIPTIONS = """<?xml version="1.0" encoding="UTF-8"?>
<opml version="2.0"><head><title>Mine</title></head><body>
  <outline text="Tech">
    <outline type="rss" text="Good" xmlUrl="https://good.example/feed"/>
    <outline type="rss" text="NoUrl" htmlUrl="http://site.example/"/>
    <outline type="rss" text="Empty" xmlUrl=""/>
  </outline>
  <outline text="Folder only">
    <outline text="Inner folder">
      <outline type="atom" text="Relative" xmlUrl="/feeds/rel.xml"/>
    </outline>
  </outline>
  <outline type="rss"
           text="Bare"/>
  <outline text="An empty folder"/>
</body></opml>
"""
FEED_LIKE_OUTLINES = 5  # Good, NoUrl, Empty, Relative, Bare: the folders are no feeds


def skipped_reasons(source: str) -> tuple[str, ...]:
    return (
        "outline 'NoUrl': no xmlUrl: nothing to poll; its htmlUrl is http://site.example/"
        f" — try `aggregator feeds add http://site.example/` to find its feed ({source}:5)",
        f"outline 'Empty': empty xmlUrl: nothing to poll ({source}:6)",
        f"outline 'Relative': not an http(s) feed URL: '/feeds/rel.xml' ({source}:10)",
        f"outline 'Bare': no xmlUrl: nothing to poll ({source}:13)",
    )


def test_every_feed_outline_left_out_is_skipped_with_its_line_and_why() -> None:
    document = parse_opml(SUBSCRIPTIONS.encode(), "subs.opml")
    assert [(s.url, s.title, s.topics) for s in document.subscriptions] == [
        ("https://good.example/feed", "Good", ("Tech",))
    ]
    assert document.skipped == skipped_reasons("subs.opml")
    assert len(document.subscriptions) + len(document.skipped) == FEED_LIKE_OUTLINES


def test_an_outline_with_an_odd_htmlurl_gets_no_command_to_paste() -> None:
    data = b"""<opml version="2.0"><body>
<outline type="rss" text="Script" htmlUrl="javascript:alert(1)"/>
<outline type="rss" text="Query" htmlUrl="https://q.example/?a=1&amp;b=2"/>
</body></opml>"""
    assert parse_opml(data, "x.opml").skipped == (
        "outline 'Script': no xmlUrl: nothing to poll (x.opml:2)",
        "outline 'Query': no xmlUrl: nothing to poll; its htmlUrl is https://q.example/?a=1&b=2"
        " — try `aggregator feeds add 'https://q.example/?a=1&b=2'` to find its feed (x.opml:3)",
    )


def test_feeds_import_prints_each_skipped_outline_and_counts_it(tmp_path: Path) -> None:
    config = tmp_path / "feeds.yaml"
    shutil.copyfile(GOLDEN / "base.yaml", config)
    opml = tmp_path / "subs.opml"
    opml.write_text(SUBSCRIPTIONS, encoding="utf-8")

    for added, present in ((1, 0), (0, 1)):  # the second import: the good one is present
        result = CliRunner().invoke(cli.app, ["--config", str(config), "feeds", "import", str(opml)])
        assert result.exit_code == 0, result.stderr
        skipped = skipped_reasons(str(opml))
        assert result.stderr.splitlines() == [f"skipped: {reason}" for reason in skipped]
        assert result.stdout.strip() == (
            f"feeds.yaml: {added} feeds added, {present} already present, {len(skipped)} skipped"
        )
        assert added + present + len(skipped) == FEED_LIKE_OUTLINES
