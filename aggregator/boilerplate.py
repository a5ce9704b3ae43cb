"""Strip the boilerplate that syndicated copies add or drop, before texts are compared.

In: the plain text of an entry's body (``Entry.text``).  Out: the same text without the
sentences that say nothing about the article: copyright lines, newsletter sign-ups and
paywall notices, "This article was first published by X", "The post X appeared first on
Y", "Read more", agency credits ("(Reuters) -", "— AP", "Reporting by …; Editing by …").

Why: two copies of one article differ mostly in exactly these lines, and two different
articles from one outlet share mostly these lines.  Left in, the first pair looks less
alike than it is and the second looks more alike, so near-duplicate detection would both
miss copies and merge articles that share only a footer.

The rules are deliberately narrow (whole sentences that match a known phrase, and credit
tokens in known positions): removing a real sentence by mistake costs more than keeping a
boilerplate one, which the similarity thresholds tolerate.  Pure functions, no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

__all__ = ["strip_boilerplate"]

# Cheap pre-check: one of these words (or "©") must occur for any rule below to apply.
# Most bodies contain none, and a set look-up per word costs far less than the sentence
# split and regular expressions that follow.
_TRIGGER_STRINGS = [
    "copyright",
    "reserved",
    "published",
    "republished",
    "republish",
    "appeared",
    "newsletter",
    "newsletters",
    "subscribe",
    "subscribers",
    "subscriber",
    "subscription",
    "member",
    "members",
    "sign",
    "read",
    "reading",
    "click",
    "follow",
    "share",
    "advertisement",
    "reporting",
    "contributed",
    "reached",
    "become",
    "support",
    "supported",
    "reply",
    "spot",
    "reuters",
    "ap",
    "afp",
    "associated",
    "bloomberg",
    "dpa",
    "upi",
    "pa",
    "aap",
    "ansa",
    "efe",
]
# Both forms: callers may hand over words as str or as UTF-8 bytes.
_TRIGGER_WORDS: frozenset[str | bytes] = frozenset(
    [*_TRIGGER_STRINGS, *(w.encode() for w in _TRIGGER_STRINGS)]
)
_WORD = re.compile(r"\w+")

# A sentence that is boilerplate as a whole when it matches (searched, case-insensitive).
_SENTENCE = re.compile(
    r"""
      ©
    | \bcopyright\b\s*(?:©|\(c\)|\d{4})
    | \ball\ rights\ reserved\b
    | \b(?:this|the)\ (?:article|story|post|piece|report)\ (?:was|is|has\ been)\ (?:first\ |originally\ )?
        (?:published|republished|posted)\b
    | \b(?:first|originally)\ published\ (?:by|on|in|at)\b
    | \bappeared\ first\ on\b
    | \brepublished\ (?:with\ permission|under\ a\ creative\ commons)
    | \b(?:sign\ up|sign-up|subscribe)\b.{0,60}\bnewsletters?\b
    | \bnewsletters?\b.{0,40}\b(?:sign\ up|sign-up|subscribe)\b
    | \bget\ (?:our|the)\b.{0,40}\b(?:newsletter|briefing)\b.{0,40}\b(?:inbox|email)
    | \bsubscribe\ (?:now\ |today\ )?(?:to\ (?:continue|keep)\ reading|for\ full\ access|to\ read)
    | \b(?:only\ )?(?:available|for)\ (?:to\ )?(?:paying\ )?(?:subscribers|members)\ only\b
    | \bthis\ (?:article|content|story)\ is\ (?:only\ )?(?:available|reserved)\ (?:to|for)
        \ (?:subscribers|members)
    | \balready\ a\ (?:subscriber|member)\b
    | \byou\ have\ reached\ your\ (?:free\ )?(?:article|story)\ limit
    | ^\s*(?:read\ more|continue\ reading|read\ the\ full\ (?:article|story))\b
    | ^\s*click\ here\ to\b
    | ^\s*follow\ us\ on\b
    | ^\s*share\ this\ (?:article|story)\b
    | ^\s*advertisement\s*$
    | \breporting\ by\b.{0,120}\bediting\ by\b
    | ^\s*\(?(?:additional\ )?reporting\ by\b
    | \bcontributed\ to\ this\ report\b
    | \byou\ (?:may|can|are\ free\ to)\ republish\b
    | \brepublish\ this\ (?:article|story)\b
    | \bbecome\ a\ (?:member|subscriber|supporter|patron)\b
    | \bsupport\ (?:our|independent)\ (?:journalism|reporting|work)\b
    | \breader-(?:supported|funded)\b
    | \bif\ you\ (?:spot|see|notice)\ an?\ (?:error|mistake|typo)\b
    | \breply\ to\ this\ (?:email|newsletter)\b
    """,
    re.IGNORECASE | re.VERBOSE,
)

# Agency credits inside a sentence: a dateline's "(Reuters) -" or a closing "— AP".
_AGENCIES = r"(?:Reuters|AP|AFP|Associated\ Press|Agence\ France-Presse|Bloomberg|dpa|UPI|PA|AAP|ANSA|EFE)"
_CREDIT = re.compile(
    rf"""
      \(\s*{_AGENCIES}\s*\)\s*[-–—:]?\s*   # LONDON (Reuters) -
    | \s*[-–—]\s*{_AGENCIES}\s*$           # … said on Monday. — AP
    """,
    re.VERBOSE | re.MULTILINE,
)

# Sentence boundaries: end punctuation (with an optional closing quote or bracket) and
# spaces, or a line break.  Good enough for prose; boilerplate is rarely subtle prose.
_SENTENCE_END = re.compile(r"(?<=[.!?…])[\"'”’)\]]?\s+|\n+")


def strip_boilerplate(text: str, words: Iterable[str | bytes] | None = None) -> str:
    """``text`` without boilerplate sentences and agency credits; paragraphs stay on their lines.

    ``words`` are the text's lower-cased words (str or UTF-8 bytes) when the caller has them (saves
    splitting the text twice).  A text with nothing to strip is returned as is (the same
    object), so a caller can tell whether to split the result again.
    """
    if "©" not in text and _TRIGGER_WORDS.isdisjoint(_WORD.findall(text.lower()) if words is None else words):
        return text
    text = _CREDIT.sub(" ", text)
    kept_lines = []
    for line in text.splitlines():
        if not line.strip():
            continue
        sentences = [s for s in _SENTENCE_END.split(line) if s and s.strip()]
        kept = [s for s in sentences if not _is_boilerplate(s)]
        if kept:
            kept_lines.append(" ".join(kept) if len(kept) != len(sentences) else line)
    return "\n".join(kept_lines)


def _is_boilerplate(sentence: str) -> bool:
    # The regular expression is slow on long sentences (~30 µs); the word check is not.
    if "©" not in sentence and _TRIGGER_WORDS.isdisjoint(_WORD.findall(sentence.lower())):
        return False
    return _SENTENCE.search(sentence) is not None
