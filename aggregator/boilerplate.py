"""Strip the boilerplate that syndicated copies add or drop, before texts are compared.

In: the plain text of an entry's body (``Entry.text``).  Out: the same text without the
sentences that say nothing about the article: copyright lines, newsletter sign-ups and
paywall notices, "This article was first published by X", "The post X appeared first on
Y", "Read more", republishing footers, agency credits ("(Reuters) -", "— AP",
"Reporting by …; Editing by …").

Why: two copies of one article differ mostly in exactly these lines, and two different
articles from one outlet share mostly these lines.  Left in, the first pair looks less
alike than it is and the second looks more alike, so near-duplicate detection would both
miss copies and merge articles that share only a footer.

The rules are deliberately narrow (whole sentences that match a known phrase, and credit
tokens in known positions): removing a real sentence by mistake costs more than keeping a
boilerplate one, which the similarity thresholds tolerate.  Each rule names the words it
needs, so a sentence is only searched with the rules whose words it contains: words like
"read" or "members" are common in news, and searching every sentence with every rule
would cost more than the rest of near-duplicate detection.  Pure functions, no I/O.

A feed's own boilerplate (its footer, "Thank you for reading via RSS …", "Comments", its
sign-off) has no known phrasing, so no rule can name it; it is learned from the feed's
entries instead: what repeats in a large share of them is the feed's, not the article's
(``FEED_BOILERPLATE_SHARE`` of its entries and at least ``FEED_BOILERPLATE_MIN`` of them, so
that a small feed is not emptied).  ``aggregator.dedupe`` learns it as shingles from the
signatures it keeps; story grouping learns it as the sentences at the start of the texts
(``opening_keys``, ``learn_feed_sentences``, ``without_sentences``), which is all of a text
its vectors read.
"""

from __future__ import annotations

import functools
import math
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from collections.abc import Set as AbstractSet

__all__ = [
    "FEED_BOILERPLATE_MIN",
    "FEED_BOILERPLATE_SHARE",
    "OPENING_CHARS",
    "TRIGGER_WORDS",
    "learn_feed_sentences",
    "may_have_boilerplate",
    "opening_keys",
    "opening_sentences",
    "strip_boilerplate",
    "without_sentences",
]

# A feed's boilerplate is what at least this share of its entries repeat, and at least this
# many of them.  Half: a footer is in nearly every post, and no sentence of news prose is in
# half of a feed's articles; three: two posts alike are not yet a pattern.
FEED_BOILERPLATE_SHARE = 0.5
FEED_BOILERPLATE_MIN = 3
# How much of a text's start ``opening_sentences`` reads: story vectors read its first 60
# words (~400 characters), and this leaves room for a sign-on before them.
OPENING_CHARS = 1000


def _rule(needs: str, hints: str, pattern: str) -> tuple[frozenset[str], tuple[str, ...], re.Pattern[str]]:
    return frozenset(needs.split()), tuple(hints.split("|")), re.compile(pattern, re.IGNORECASE | re.VERBOSE)


# (words a sentence must all contain, lower-case phrases one of which it must contain,
#  pattern that makes the whole sentence boilerplate).  The words and phrases are cheap
# filters; only a sentence that passes both is searched with the pattern.
_RULES = (
    _rule("copyright", "copyright", r"\bcopyright\b\s*(?:©|\(c\)|\d{4})"),
    _rule("rights reserved", "rights reserved", r"\ball\ rights\ reserved\b"),
    _rule(
        "published",
        "first published|originally published|was published|been published|is published"
        "|was posted|is posted|been posted",
        r"""\b(?:this|the)\ (?:article|story|post|piece|report)\ (?:was|is|has\ been)
            \ (?:first\ |originally\ )?(?:published|posted)\b
          | \b(?:first|originally)\ published\ (?:by|on|in|at)\b""",
    ),
    _rule(
        "republished",
        "republished",
        r"\b(?:was|been)\ republished\b|\brepublished\ (?:with\ permission|under\ a)\b",
    ),
    _rule("appeared first", "appeared first", r"\bappeared\ first\ on\b"),
    _rule(
        "newsletter",
        "newsletter",
        r"\b(?:sign\ up|sign-up|subscribe|get)\b.{0,60}\bnewsletter\b|\bnewsletter\b.{0,40}\bsign",
    ),
    _rule("newsletters", "newsletters", r"\b(?:sign\ up|sign-up|subscribe)\b.{0,60}\bnewsletters\b"),
    _rule("inbox", "inbox", r"\b(?:newsletter|briefing|news)\b.{0,40}\binbox\b"),
    _rule(
        "subscribe",
        "subscribe",
        r"\bsubscribe\ (?:now\ |today\ )?(?:to\ (?:continue|keep)\ reading|for\ full\ access|to\ read)",
    ),
    _rule(
        "subscribers",
        "subscribers",
        r"\b(?:available|reserved|open)\ (?:only\ )?(?:to|for)\ (?:paying\ )?subscribers\b",
    ),
    _rule("members only", "members only", r"\b(?:for|to)\ members\ only\b"),
    _rule("subscriber", "already a subscriber", r"\balready\ a\ subscriber\b"),
    _rule("already member", "already a member", r"\balready\ a\ member\b"),
    _rule("limit", "reached your", r"\byou\ have\ reached\ your\ (?:free\ )?(?:article|story)\ limit"),
    _rule("read more", "read more", r"^\W*read\ more\b"),
    _rule("continue reading", "continue reading", r"^\W*continue\ reading\b"),
    _rule("read full", "read the full", r"^\W*read\ the\ full\ (?:article|story)\b"),
    _rule("click", "click here", r"^\W*click\ here\b"),
    _rule("follow us", "follow us on", r"^\W*follow\ us\ on\b"),
    _rule("share this", "share this", r"^\W*share\ this\ (?:article|story)\b"),
    _rule("advertisement", "advertisement", r"^\W*advertisement\W*$"),
    _rule("editing", "editing by", r"\breporting\ by\b.{0,120}\bediting\ by\b"),
    _rule("reporting by", "reporting by", r"^\W*(?:additional\ )?reporting\ by\b"),
    _rule("contributed", "contributed to this report", r"\bcontributed\ to\ this\ report\b"),
    _rule(
        "republish",
        "republish",
        r"\byou\ (?:may|can|are\ free\ to)\ republish\b|\brepublish\ this\ (?:article|story)\b",
    ),
    _rule("become", "become a", r"\bbecome\ a\ (?:member|subscriber|supporter|patron)\b"),
    _rule("support our", "support our", r"\bsupport\ our\ (?:journalism|reporting|work)\b"),
    _rule("reader supported", "reader-supported", r"\breader-supported\b"),
    _rule("reader funded", "reader-funded", r"\breader-funded\b"),
    _rule("spot", "if you", r"\bif\ you\ (?:spot|see|notice)\ an?\ (?:error|mistake|typo)\b"),
    _rule("reply email", "reply to this email", r"\breply\ to\ this\ email\b"),
)

# Agency credits inside a sentence: a dateline's "(Reuters) -" or a closing "— AP".
_AGENCY_WORDS = frozenset(
    [
        "reuters",
        "ap",
        "afp",
        "associated",
        "press",
        "agence",
        "france",
        "bloomberg",
        "dpa",
        "upi",
        "pa",
        "aap",
        "ansa",
        "efe",
    ]
)
_AGENCIES = r"(?:Reuters|AP|AFP|Associated\ Press|Agence\ France-Presse|Bloomberg|dpa|UPI|PA|AAP|ANSA|EFE)"
_DATELINE_CREDIT = re.compile(rf"\(\s*{_AGENCIES}\s*\)\s*[-–—:]?\s*", re.VERBOSE)  # LONDON (Reuters) -
_CLOSING_CREDIT = re.compile(rf"[-–—]\s*{_AGENCIES}\s*$", re.VERBOSE)  # … said on Monday. — AP

#: Every word some rule needs.  A text containing none of them (nor "©") has nothing to strip.
TRIGGER_WORDS: frozenset[str] = frozenset().union(*(needs for needs, _, _ in _RULES), _AGENCY_WORDS)

_WORD = re.compile(r"\w+")
# Sentence boundaries: end punctuation (with an optional closing quote or bracket) and
# spaces.  Good enough for prose; boilerplate is rarely subtle prose.
_SENTENCE_END = re.compile(r"(?<=[.!?…])[\"'”’)\]]?\s+")


def may_have_boilerplate(words: AbstractSet[str]) -> bool:
    """Whether a text with these lower-cased words (its trigger words are enough) could
    have anything to strip; "©" is checked by ``strip_boilerplate`` itself."""
    return any(needs <= words for needs, _, _ in _RULES) or not _AGENCY_WORDS.isdisjoint(words)


def strip_boilerplate(text: str, words: Iterable[str] | None = None) -> str:
    """``text`` without boilerplate sentences and agency credits; paragraphs stay on their lines.

    ``words`` are the text's lower-cased words (or just those of ``TRIGGER_WORDS`` among
    them) when the caller has them; they save a pass over the text.  A text with nothing
    to strip is returned as is (the same object), so a caller can tell whether anything
    changed.
    """
    present = set(_WORD.findall(text.lower()) if words is None else words)
    has_sign = "©" in text
    if not has_sign and not may_have_boilerplate(present):
        return text
    # Lines are looked at only for what the whole text could match: a rule whose words the
    # text has and one of whose phrases it contains, an agency credit, a "©".  Words like
    # "read" and "more" are in most texts, the phrase "read more" in few.
    lowered = text.lower()
    hints = tuple(
        hint for needs, rule_hints, _ in _RULES if needs <= present for hint in rule_hints if hint in lowered
    )
    every_line = has_sign or not _AGENCY_WORDS.isdisjoint(present)
    if not hints and not every_line:
        return text
    lines = text.splitlines()
    kept_lines = []
    changed = False
    for line in lines:
        if not line.strip():
            continue
        if every_line or any(hint in line.lower() for hint in hints):
            cleaned = _clean_line(line)
            changed = changed or cleaned is not line
        else:
            cleaned = line
        if cleaned:
            kept_lines.append(cleaned)
    return "\n".join(kept_lines) if changed else text


def _clean_line(line: str) -> str:
    """The line without boilerplate (the same object when there is none)."""
    lowered = line.lower()
    words = set(_WORD.findall(lowered))
    if not _AGENCY_WORDS.isdisjoint(words):
        credited = _CLOSING_CREDIT.sub("", _DATELINE_CREDIT.sub("", line))
        line = line if credited == line else credited
    if "©" not in line and not _may_match(lowered, words):
        return line
    sentences = [s for s in _SENTENCE_END.split(line) if s.strip()]
    kept = [s for s in sentences if not _is_boilerplate(s)]
    return line if len(kept) == len(sentences) else " ".join(kept)


def _may_match(lowered: str, words: AbstractSet[str]) -> bool:
    return any(needs <= words and any(h in lowered for h in hints) for needs, hints, _ in _RULES)


def _is_boilerplate(sentence: str) -> bool:
    if "©" in sentence:
        return True
    lowered = sentence.lower()
    words = set(_WORD.findall(lowered))
    return any(
        needs <= words and any(h in lowered for h in hints) and pattern.search(sentence)
        for needs, hints, pattern in _RULES
    )


def opening_sentences(text: str, limit: int = OPENING_CHARS) -> list[tuple[str, int]]:
    """The sentences of the text's first ``limit`` characters, line by line: (sentence as
    written, its key).  The last one may be cut short.

    A key is the hash of the sentence case-folded: it is only compared within one process
    (``hash`` of a string differs between processes), and keeping the keys rather than the
    sentences keeps the cache of ``opening_keys`` small.  (A feed's template writes its
    boilerplate with the same spaces each time.)
    """
    found = []
    for line in text[:limit].splitlines():
        for piece in _SENTENCE_END.split(line):
            sentence = piece.strip()
            if sentence:
                found.append((sentence, hash(sentence.casefold())))
    return found


def opening_keys(text: str) -> frozenset[int]:
    """The keys of the sentences of the text's opening (see ``opening_sentences``), remembered:
    every poll asks again about mostly the same texts."""
    return _opening_keys(text[:OPENING_CHARS])  # the cache keeps the opening, not the article


@functools.lru_cache(maxsize=32768)
def _opening_keys(opening: str) -> frozenset[int]:
    return frozenset(key for _, key in opening_sentences(opening))


def learn_feed_sentences(openings: Sequence[AbstractSet[int]]) -> frozenset[int]:
    """The keys of the sentences that are one feed's boilerplate, from its entries' openings
    (``opening_keys``, one per entry): those found in at least ``FEED_BOILERPLATE_SHARE`` of
    the entries and at least ``FEED_BOILERPLATE_MIN`` of them."""
    if len(openings) < FEED_BOILERPLATE_MIN:
        return frozenset()
    need = max(FEED_BOILERPLATE_MIN, math.ceil(FEED_BOILERPLATE_SHARE * len(openings)))
    counts = Counter(key for keys in openings for key in keys)
    return frozenset(key for key, count in counts.items() if count >= need)


def without_sentences(text: str, keys: AbstractSet[int]) -> str:
    """The text's opening (``opening_sentences``) without the sentences whose keys are given,
    one sentence a line."""
    return "\n".join(sentence for sentence, key in opening_sentences(text) if key not in keys)
