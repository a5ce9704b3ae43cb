"""Near-duplicate detection: each stage, each case that must stay apart, the copy kept,
re-rooting, pins, the stored index, and order-independence (Hypothesis)."""

from __future__ import annotations

import hashlib
import itertools
import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aggregator import boilerplate
from aggregator.boilerplate import strip_boilerplate
from aggregator.dedupe import (
    DedupeSettings,
    DuplicateIndex,
    MatchStage,
    Signature,
    Verdict,
    find_duplicates,
    normalize_title,
    sign_entry,
)
from aggregator.types import Entry, StoredEntry

T0 = datetime(2025, 8, 15, 6, 0, tzinfo=UTC)
ROOT = Path(__file__).resolve().parent.parent

RATES = [
    "The central bank raised its main interest rate by a quarter of a percentage point on Thursday, "
    "the third increase this year, saying that inflation in services was proving harder to bring down "
    "than it had expected in the spring.",
    "Governor Elena Marsh told reporters that the committee had voted seven to two for the move, with "
    "the two dissenting members preferring to wait for the September figures on wages before acting again.",
    "Mortgage lenders said they would pass the increase on to borrowers within days. Banks that had "
    "already priced in a rise said fixed rates would change little, but variable rates would climb at once.",
    "Economists were divided on what comes next. Some expect a pause in the autumn as the labour market "
    "cools, while others point to the stubborn rise in rents and insurance premiums as reasons to go on.",
    "The currency rose against the dollar after the announcement and government bond yields edged higher, "
    "as traders pared their bets on a cut before the end of the year.",
]
# Another outlet's article about the same decision: same event, same names, different text.
RATES_OTHER = [
    "Borrowing costs went up again on Thursday after the central bank lifted its key rate for the third "
    "time this year, to the highest level since 2008.",
    "Elena Marsh, the governor, said services inflation was the main worry. Two of the nine committee "
    "members voted against the decision and wanted to see the September wage data first.",
    "Homeowners on variable mortgages will feel the change first. Lenders said fixed deals had already "
    "moved in anticipation and were unlikely to rise much further this month.",
    "The decision lifted the currency and pushed up yields on government bonds, as markets scaled back "
    "expectations of a cut before Christmas.",
]
HARBOUR = [
    "Work on the new harbour wall in Port Ellis will start in October, the council confirmed on Monday, "
    "after two years of delays caused by a dispute over who should pay for the repairs.",
    "The old wall was damaged in the storms of the winter before last, when waves flooded the fish market "
    "and forced the lifeboat station to move its boat to a temporary mooring along the coast.",
    "Fishing crews welcomed the news but said the work must not close the harbour during the herring "
    "season. The council said one berth would stay open throughout and the work would take eighteen months.",
]
# An opinion piece that quotes two paragraphs of RATES inside its own text.
QUOTING = [
    "Every time the central bank moves, the same argument starts again in this column's inbox: whose side "
    "is the bank on, the saver's or the borrower's? This week gave both camps plenty to write about.",
    RATES[1],
    RATES[2],
    "What the statement does not say is how long households can absorb another rise. Our readers in "
    "rented flats have written to us about rent increases far larger than anything in the official figures.",
    "The bank would say that rents are exactly why it is acting. Perhaps. But a policy that makes the cost "
    "of housing worse in the short run, in order to cure it in the long run, needs a better explanation.",
    "We will keep reading your letters, and we will put your questions to the governor when she appears "
    "before the committee of members of parliament next month, as she does every quarter.",
]
LETTERS_MONDAY = [
    "Sir, your report on the closure of the library in Hallam Street missed the point. The building is "
    "not just a place to borrow books; for many older residents it is the only warm room they visit all day.",
    "The council says the service will move online. Many of the people who use the library most have no "
    "computer at home, and the bus to the central library now runs only twice an hour.",
]
LETTERS_WEDNESDAY = [
    "Sir, the new cycle lane on the river road is a welcome change, but whoever designed the junction at "
    "the bridge has never ridden a bicycle there during the morning rush with lorries turning left.",
    "A simple change to the timing of the lights would make it safe. I have written to the council twice "
    "and received two polite replies that promise nothing and fix nothing.",
]
FOOTER = [
    "© 2025 Harbour Times Ltd. All rights reserved. Sign up for our free morning newsletter to get the "
    "day's news from the coast in your inbox. This article was first published by The Harbour Times.",
]


def stored(
    entry_id: str,
    text: str | list[str],
    *,
    feed: str = "https://a.example/feed",
    title: str = "Central bank raises rates again",
    url: str | None = None,
    guid: str | None = None,
    published: datetime | None = T0,
    first_seen: datetime | None = None,
    full: bool = True,
) -> StoredEntry:
    body = "\n".join(text) if isinstance(text, list) else text
    link = url or f"https://{feed.split('/')[2]}/news/{entry_id}"
    entry = Entry(
        guid=guid or link,
        url=link,
        canonical_url=link,
        title=title,
        published=published,
        content_html="<p>…</p>" if full else "",
        summary_html="" if full else "<p>…</p>",
        text=body,
    )
    seen = first_seen or (published or T0) + timedelta(minutes=5)
    return StoredEntry(id=entry_id, feed_url=feed, entry=entry, first_seen=seen, last_updated=seen)


def run(*batches: list[StoredEntry], dedupe: DedupeSettings | None = None) -> DuplicateIndex:
    index = DuplicateIndex(dedupe)
    for batch in batches:
        find_duplicates(batch, index)
    return index


def verdicts(entries: list[StoredEntry], dedupe: DedupeSettings | None = None) -> dict[str, Verdict]:
    result = find_duplicates(entries, DuplicateIndex(dedupe))
    return {v.entry_id: v for v in result.verdicts}


def together(index: DuplicateIndex, a: str, b: str) -> bool:
    return (index.duplicate_of(a) or a) == (index.duplicate_of(b) or b)


# ---------------------------------------------------------------------------- boilerplate


def test_boilerplate_strips_credits_footers_and_signups() -> None:
    text = (
        "LONDON (Reuters) - The central bank raised rates on Thursday. It said inflation was sticky.\n"
        "Reporting by Jane Doe; Editing by John Smith.\n"
        "This article was first published by The Example Times. Sign up for our Morning newsletter here.\n"
        "© 2025 Example Media. All rights reserved.\n"
        "The post Rates rise again appeared first on Example News.\n"
        "Read more: https://example.com/rates"
    )
    assert " ".join(strip_boilerplate(text).split()) == (
        "LONDON The central bank raised rates on Thursday. It said inflation was sticky."
    )
    assert (
        strip_boilerplate("Prices rose 3%, officials said. — AP").strip() == "Prices rose 3%, officials said."
    )


def test_boilerplate_keeps_sentences_that_only_mention_the_words() -> None:
    text = (
        "The report, published on Monday, found that members of the committee read more than 400 letters.\n"
        "She said she would follow the advice and sign the treaty."
    )
    assert strip_boilerplate(text) == text


_LINES = [
    "The central bank raised rates on Thursday.",
    "Members of the committee read more than 400 letters.",
    "Read more: https://example.com/rates",
    "Sign up for our Morning newsletter here.",
    "© 2025 Example Media. All rights reserved.",
    "LONDON (Reuters) - Prices rose 3%. — AP",
    "She will share this view, she said. Share this article",
    "Press officers in France said the AP story was wrong.",
    "",
    "   ",
    "Reporting by Jane Doe; Editing by John Smith.",
]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(_LINES), max_size=8).map("\n".join))
def test_boilerplate_is_what_each_line_alone_loses(text: str) -> None:
    # The whole-text filters only skip work: the result is each line cleaned on its own.
    lines = [line for line in text.splitlines() if line.strip()]
    cleaned = [boilerplate._clean_line(line) for line in lines]
    changed = any(new is not old for new, old in zip(cleaned, lines, strict=True))
    expected = "\n".join(line for line in cleaned if line) if changed else text
    assert strip_boilerplate(text) == expected


# ---------------------------------------------------------------------------- stage 1: url, guid


def test_same_canonical_url_across_feeds_is_one_article() -> None:
    url = "https://a.example/2025/08/15/rates"
    v = verdicts(
        [
            stored("a", RATES, url=url),
            stored("b", RATES[:2], feed="https://b.example/rss", url=url, title="Rates up", full=False),
        ]
    )
    assert v["b"].duplicate_of == "a"
    assert v["b"].stage is MatchStage.URL
    assert v["a"].duplicate_of is None


def test_a_site_root_link_is_not_evidence() -> None:
    # Some feeds link every item to their home page.
    v = verdicts(
        [
            stored("a", RATES, url="https://a.example/", title="One"),
            stored("b", HARBOUR, url="https://a.example/", title="Two"),
        ]
    )
    assert v["b"].duplicate_of is None


def test_same_url_with_disagreeing_bodies_stays_apart() -> None:
    # A newsletter feed whose items all link to one "read online" page.
    url = "https://a.example/newsletter/latest"
    v = verdicts([stored("a", RATES, url=url, title="One"), stored("b", HARBOUR, url=url, title="Two")])
    assert v["b"].duplicate_of is None


def test_items_of_one_feed_sharing_a_link_without_bodies_stay_apart() -> None:
    # Podcast episodes that link to the show's page, release notes to changelog#v1.1: with no
    # body to compare, one shared link is no evidence that they are one article.
    show, changelog = "https://pod.example/show", "https://app.example/changelog"
    index = run(
        [
            stored("ep1", "", url=show, guid="ep-1", title="Episode 1: the summit"),
            stored(
                "ep2",
                "",
                url=show,
                guid="ep-2",
                title="Episode 2: the talks",
                published=T0 + timedelta(days=7),
            ),
            stored("v10", "", url=changelog, guid="v1.0", title="Version 1.0 released today"),
            stored("v11", "", url=changelog, guid="v1.1", title="Version 1.1 fixes the sync"),
        ]
    )
    assert not together(index, "ep1", "ep2")
    assert not together(index, "v10", "v11")


def test_same_global_guid_across_feeds_matches_but_sequence_numbers_do_not() -> None:
    guid = "tag:wire.example,2025-08-15:rates"
    v = verdicts(
        [
            stored("a", RATES, guid=guid),
            stored("b", RATES, feed="https://b.example/rss", guid=guid, title="Rates: the third rise"),
        ]
    )
    assert v["b"].stage in (MatchStage.GUID, MatchStage.CONTENT)
    assert v["b"].duplicate_of == "a"
    v = verdicts(
        [
            stored("a", RATES, guid="1234", title="Rates"),
            stored("b", HARBOUR, feed="https://b.example/rss", guid="1234", title="Harbour"),
        ]
    )
    assert v["b"].duplicate_of is None


# ---------------------------------------------------------------------------- stage 2: title


def test_same_title_within_the_window_with_a_summary() -> None:
    # The summary is a different paragraph than the article's opening: only the title links them.
    index = run(
        [
            stored("full", RATES),
            stored(
                "teaser",
                "The bank's third rise this year. Lenders react; economists split on what comes next.",
                feed="https://b.example/rss",
                published=T0 + timedelta(hours=5),
                full=False,
            ),
        ]
    )
    assert index.duplicate_of("teaser") == "full"


def test_same_title_outside_the_window_stays_apart() -> None:
    index = run(
        [
            stored("a", "Short note.", title="Harbour wall work to start in October"),
            stored(
                "b",
                "Short note.",
                feed="https://b.example/rss",
                title="Harbour wall work to start in October",
                published=T0 + timedelta(days=4),
            ),
        ]
    )
    assert not together(index, "a", "b")


def test_recurring_title_with_different_bodies_stays_apart() -> None:
    index = run(
        [
            stored("mon", LETTERS_MONDAY, title="Letters to the editor"),
            stored("wed", LETTERS_WEDNESDAY, title="Letters to the editor", published=T0 + timedelta(days=2)),
        ]
    )
    assert not together(index, "mon", "wed")


def test_recurring_title_without_bodies_in_one_feed_stays_apart() -> None:
    index = run(
        [
            stored("mon", "", title="Morning briefing: what to watch today"),
            stored(
                "tue", "", title="Morning briefing: what to watch today", published=T0 + timedelta(days=1)
            ),
        ]
    )
    assert not together(index, "mon", "tue")


def test_title_normalization() -> None:
    assert normalize_title("BREAKING: Fed Raises Rates | Example News") == "fed raises rates"
    assert normalize_title("Fed raises rates!") == normalize_title("fed  raises   rates")


# ---------------------------------------------------------------------------- stage 3: content


def test_retitled_copy_at_another_url_is_near_identical() -> None:
    v = verdicts(
        [
            stored("a", RATES),
            stored("b", RATES, feed="https://b.example/rss", title="Third rise leaves borrowers paying more"),
        ]
    )
    assert v["b"].stage is MatchStage.CONTENT
    assert v["b"].jaccard == 1.0
    assert v["b"].describe() == "a near-identical copy of a (content: containment 1.00, jaccard 1.00)"


def test_summary_of_the_first_paragraphs_is_contained_in_its_original() -> None:
    v = verdicts(
        [
            stored("a", RATES),
            stored(
                "b",
                [*RATES[:2], "Read more…"],
                feed="https://b.example/rss",
                title="Bank lifts rates",
                full=False,
                published=T0 + timedelta(hours=2),
            ),
        ]
    )
    assert v["b"].duplicate_of == "a"
    assert v["b"].stage is MatchStage.CONTENT
    assert (v["b"].containment or 0) >= 0.9
    assert (v["b"].jaccard or 1) < 0.6


def test_copy_with_trailing_line_credit_and_small_edits() -> None:
    edited = [
        "WASHINGTON (AP) — " + RATES[0].replace("Thursday", "Thurs."),
        *RATES[1:],
        "Additional notes from our economics desk will follow in tomorrow's edition.",
        "Copyright 2025 The Associated Press. All rights reserved.",
    ]
    v = verdicts([stored("a", RATES), stored("b", edited, feed="https://b.example/rss", title="Rates up")])
    assert v["b"].duplicate_of == "a"
    assert v["b"].stage is MatchStage.CONTENT


def test_different_articles_about_the_same_event_stay_apart() -> None:
    index = run(
        [stored("a", RATES), stored("b", RATES_OTHER, feed="https://b.example/rss", title="Rates up")]
    )
    assert not together(index, "a", "b")


def test_an_article_quoting_two_paragraphs_of_another_stays_apart() -> None:
    index = run(
        [
            stored("a", RATES),
            stored("q", QUOTING, feed="https://b.example/rss", title="Whose side is the bank on?"),
        ]
    )
    assert not together(index, "a", "q")


def test_a_short_article_quoted_whole_inside_a_longer_one_stays_apart() -> None:
    # All of "short" is inside "long", but "long" does not begin where "short" does.
    short = stored("short", RATES[1:3], title="Committee split on rates")
    long = stored("long", QUOTING, feed="https://b.example/rss", title="Whose side is the bank on?")
    assert not together(run([short, long]), "short", "long")


def test_items_sharing_only_boilerplate_stay_apart() -> None:
    index = run(
        [
            stored("a", [HARBOUR[0], *FOOTER], title="Harbour wall work to start"),
            stored("b", [LETTERS_MONDAY[0], *FOOTER], title="Library closure letters"),
        ]
    )
    assert not together(index, "a", "b")


# ---------------------------------------------------------------------------- the copy kept


def test_full_text_is_kept_over_an_earlier_summary_and_the_group_is_re_rooted() -> None:
    index = DuplicateIndex()
    summary = stored("s", RATES[:2], feed="https://b.example/rss", title="Bank lifts rates", full=False)
    copy = stored(
        "c",
        RATES[:2],
        feed="https://c.example/rss",
        title="Rates",
        full=False,
        published=T0 + timedelta(hours=1),
    )
    first = find_duplicates([summary, copy], index)
    assert {v.entry_id: v.duplicate_of for v in first.verdicts} == {"s": None, "c": "s"}

    later = find_duplicates([stored("full", RATES, published=T0 + timedelta(hours=3))], index)
    changed = {v.entry_id: v.duplicate_of for v in later.verdicts}
    assert changed == {"full": None, "s": "full", "c": "full"}  # re-rooted: no chain through "s"


def test_earliest_date_then_feed_priority_then_id() -> None:
    a = stored("a", RATES, feed="https://a.example/rss", published=T0 + timedelta(hours=1))
    b = stored("b", RATES, feed="https://b.example/rss", published=T0)
    assert run([a, b]).duplicate_of("a") == "b"

    same_time = [replace(a, entry=replace(a.entry, published=T0), first_seen=b.first_seen), b]
    assert run(same_time).duplicate_of("b") == "a"  # the id breaks the tie
    prefer_b = DedupeSettings(feed_priority={"https://b.example/rss": 5})
    assert run(same_time, dedupe=prefer_b).duplicate_of("a") == "b"


def test_a_changed_entry_leaves_its_group() -> None:
    index = run([stored("a", RATES), stored("b", RATES, feed="https://b.example/rss", title="Rates up")])
    assert index.duplicate_of("b") == "a"
    result = find_duplicates([stored("a", HARBOUR, title="Harbour wall work to start")], index)
    assert {v.entry_id: v.duplicate_of for v in result.verdicts} == {"a": None, "b": None}
    assert index.groups() == []


# ---------------------------------------------------------------------------- pins


def test_pins_override_the_stages() -> None:
    entries = [
        stored("a", RATES),
        stored("b", RATES, feed="https://b.example/rss", title="Rates up"),
        stored("h", HARBOUR, title="Harbour wall work to start"),
    ]
    pinned = DedupeSettings(pin_apart=(("b", "a"),), pin_together=(("h", "a"),))
    index = run(entries, dedupe=pinned)
    assert not together(index, "a", "b")
    assert index.duplicate_of("h") == "a"
    v = verdicts(entries, dedupe=pinned)
    assert v["h"].stage is MatchStage.PINNED


def test_an_apart_pin_cuts_a_chain_through_a_third_entry() -> None:
    # b is a summary of a; c is a copy of b.  Pinning a and c apart must split the group.
    entries = [
        stored("a", RATES),
        stored("b", RATES[:2], feed="https://b.example/rss", title="Bank lifts rates", full=False),
        stored("c", RATES[:2], feed="https://c.example/rss", title="Rates", full=False),
    ]
    index = run(entries, dedupe=DedupeSettings(pin_apart=(("a", "c"),)))
    assert not together(index, "a", "c")


def test_pins_apply_to_stored_entries_on_the_next_run() -> None:
    entries = [stored("a", RATES), stored("b", RATES, feed="https://b.example/rss", title="Rates up")]
    result = find_duplicates(entries, DuplicateIndex())
    stored_state = {v.entry_id: v.duplicate_of for v in result.verdicts}
    index = DuplicateIndex.from_stored(
        result.signatures.items(), stored_state, DedupeSettings(pin_apart=(("a", "b"),))
    )
    changed = find_duplicates([], index)
    assert [(v.entry_id, v.duplicate_of) for v in changed.verdicts] == [("b", None)]


# ---------------------------------------------------------------------------- the stored index


def test_signature_bytes_round_trip() -> None:
    sig = sign_entry(stored("a", RATES))
    back = Signature.from_bytes(sig.to_bytes())
    assert back.to_bytes() == sig.to_bytes()
    assert (back.title, back.url, back.words) == (sig.title, sig.url, sig.words)
    with pytest.raises(ValueError, match="version"):
        Signature.from_bytes(b"AGD\x63" + sig.to_bytes()[4:])


def test_rebuilt_index_matches_new_copies_and_changes_nothing_by_itself() -> None:
    first = find_duplicates([stored("a", RATES), stored("h", HARBOUR, title="Harbour")], DuplicateIndex())
    index = DuplicateIndex.from_stored(
        [*first.signatures.items(), ("old", b"AGD\x00junk")], {"a": None, "h": None}
    )
    assert index.stale_ids == ("old",)
    assert find_duplicates([], index).verdicts == ()
    result = find_duplicates([stored("b", RATES, feed="https://b.example/rss", title="Rates up")], index)
    assert {v.entry_id: v.duplicate_of for v in result.verdicts} == {"b": "a"}
    assert set(result.signatures) == {"b"}


def test_a_stored_group_whose_kept_copy_is_gone_is_settled_again() -> None:
    entries = [
        stored("a", RATES),
        stored("b", RATES, feed="https://b.example/rss", title="Rates up"),
        stored("c", RATES, feed="https://c.example/rss", title="Rates up again"),
    ]
    result = find_duplicates(entries, DuplicateIndex())
    signatures = {k: v for k, v in result.signatures.items() if k != "a"}  # "a" was deleted
    index = DuplicateIndex.from_stored(signatures.items(), {"b": "a", "c": "a"})
    changed = {v.entry_id: v.duplicate_of for v in find_duplicates([], index).verdicts}
    assert changed == {"b": None, "c": "b"}


# ---------------------------------------------------------------------------- properties

POOL = [
    stored("r-full", RATES, published=T0),
    stored(
        "r-copy", RATES, feed="https://b.example/rss", title="Rates up", published=T0 + timedelta(hours=1)
    ),
    stored("r-sum", RATES[:2], feed="https://c.example/rss", title="Bank lifts rates", full=False),
    stored(
        "r-sum2",
        RATES[:2],
        feed="https://d.example/rss",
        title="Lifted",
        full=False,
        published=T0 - timedelta(hours=1),
    ),
    stored(
        "r-url", RATES[:1], feed="https://e.example/rss", url="https://a.example/news/r-full", title="Rates"
    ),
    stored("r-other", RATES_OTHER, feed="https://b.example/rss", title="Central bank raises rates again"),
    stored("quote", QUOTING, feed="https://c.example/rss", title="Whose side is the bank on?"),
    stored("h", HARBOUR, title="Harbour wall work to start in October"),
    stored("h-title", "", feed="https://b.example/rss", title="Harbour wall work to start in October"),
    stored(
        "h-copy",
        [*HARBOUR, *FOOTER],
        feed="https://c.example/rss",
        title="Port Ellis wall",
        published=T0 + timedelta(hours=3),
    ),
    stored("l-mon", LETTERS_MONDAY, title="Letters to the editor"),
    stored("l-wed", LETTERS_WEDNESDAY, title="Letters to the editor", published=T0 + timedelta(days=2)),
]
PINS = DedupeSettings(pin_apart=(("r-sum2", "r-full"),), pin_together=(("l-mon", "h"),))


def final_state(index: DuplicateIndex, ids: list[str]) -> dict[str, str | None]:
    return {i: index.duplicate_of(i) for i in sorted(ids)}


@st.composite
def arrivals(draw: st.DrawFn) -> tuple[list[StoredEntry], list[int]]:
    entries = draw(st.permutations(POOL))
    cuts = draw(st.lists(st.integers(1, len(POOL) - 1), max_size=4, unique=True))
    return entries, sorted(cuts)


def in_batches(entries: list[StoredEntry], cuts: list[int]) -> list[list[StoredEntry]]:
    bounds = [0, *cuts, len(entries)]
    return [entries[a:b] for a, b in itertools.pairwise(bounds)]


REFERENCE = {s: final_state(run(POOL, dedupe=s), [e.id for e in POOL]) for s in (DedupeSettings(), PINS)}


def test_reference_groups_are_the_expected_ones() -> None:
    ref = REFERENCE[DedupeSettings()]
    rates = {"r-full", "r-copy", "r-sum", "r-sum2", "r-url"}
    assert {i for i, k in ref.items() if (k or i) == "r-full"} == rates
    assert {i for i, k in ref.items() if (k or i) == "h"} == {"h", "h-title", "h-copy"}
    for alone in ("r-other", "quote", "l-mon", "l-wed"):
        assert ref[alone] is None
        assert alone not in ref.values()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(arrivals(), st.sampled_from([DedupeSettings(), PINS]))
def test_groups_and_kept_copies_do_not_depend_on_arrival_order(
    plan: tuple[list[StoredEntry], list[int]], dedupe: DedupeSettings
) -> None:
    entries, cuts = plan
    index = DuplicateIndex(dedupe)
    reported: dict[str, str | None] = {}
    for batch in in_batches(entries, cuts):
        result = find_duplicates(batch, index)
        for v in result.verdicts:
            reported[v.entry_id] = v.duplicate_of
            assert v.duplicate_of != v.entry_id  # never a duplicate of itself
            if v.duplicate_of is not None:
                assert index.duplicate_of(v.duplicate_of) is None  # no chains
    state = final_state(index, [e.id for e in POOL])
    assert state == REFERENCE[dedupe]
    assert reported == state  # the verdicts reported add up to the final state

    again = find_duplicates(entries, index)  # idempotent: nothing changes
    assert final_state(index, [e.id for e in POOL]) == state
    assert all(v.duplicate_of == state[v.entry_id] for v in again.verdicts)

    rebuilt = DuplicateIndex.from_stored([(e.id, sign_entry(e).to_bytes()) for e in entries], state, dedupe)
    assert find_duplicates([], rebuilt).verdicts == ()


# ---------------------------------------------------------------------------- the seed feeds


def _seed_entries() -> tuple[list[StoredEntry], dict[tuple[str, str], str], dict[str, object]]:
    labels_path = ROOT / "tests" / "seed_labels.json"
    parse = pytest.importorskip("aggregator.parse")
    if not labels_path.exists():
        pytest.skip("tests/seed_labels.json is not there yet")
    labels = json.loads(labels_path.read_text())
    entries: list[StoredEntry] = []
    ids: dict[tuple[str, str], str] = {}
    for feed in sorted({e["feed"] for e in labels["entries"]}):
        path = ROOT / feed
        content_type = "application/feed+json" if feed.endswith(".json") else "application/xml"
        parsed = parse.parse_feed(path.read_bytes(), {"content-type": content_type}, path.as_uri())
        for entry in parsed.entries:
            entry_id = hashlib.sha256(f"{feed}\n{entry.guid}".encode()).hexdigest()[:16]
            seen = entry.date or T0
            entries.append(StoredEntry(entry_id, feed, entry, seen, seen))
            ids[(feed, entry.guid)] = entry_id
    return entries, ids, labels


def test_seed_feeds_collapse_every_labelled_copy_and_nothing_else() -> None:
    entries, ids, labels = _seed_entries()
    index = run(entries)
    entries_labels = labels["entries"]
    assert isinstance(entries_labels, list)
    for item in entries_labels:
        me = ids[(item["feed"], item["guid"])]
        if item["copy_of"]:
            original = ids[(item["copy_of"]["feed"], item["copy_of"]["guid"])]
            assert together(index, me, original), f"{item['feed']} {item['title']!r}: copy not collapsed"
    # No two different articles in one group.
    article = {ids[(i["feed"], i["guid"])]: i["article"] for i in entries_labels}
    for group in index.groups():
        assert len({article[m] for m in group}) == 1, group
    pairs = labels["must_stay_apart"]
    assert isinstance(pairs, list)
    for a, b in pairs:
        assert not together(index, ids[(a["feed"], a["guid"])], ids[(b["feed"], b["guid"])])
