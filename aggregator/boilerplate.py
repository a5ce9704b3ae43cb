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

__all__ = ["strip_boilerplate"]

# Cheap pre-check: the lower-cased text must contain one of these for any rule below to
# apply.  Most bodies contain none, and a few substring searches cost far less than the
# sentence split and regular expressions that follow.
_TRIGGERS = (
    "©",
    "copyright",
    "rights reserved",
    "published",
    "appeared first",
    "newsletter",
    "subscri",
    "sign up",
    "sign-up",
    "read more",
    "continue reading",
    "read the full",
    "click here",
    "follow us",
    "reuters",
    "(ap)",
    "ap)",
    "— ap",
    "- ap",
    "– ap",
    "associated press",
    "afp",
    "reporting by",
    "editing by",
    "contributed to this report",
    "advertisement",
    "share this",
    "log in",
)

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


def strip_boilerplate(text: str) -> str:
    """``text`` without boilerplate sentences and agency credits; paragraphs stay on their lines."""
    lowered = text.lower()
    if not any(trigger in lowered for trigger in _TRIGGERS):
        return text
    text = _CREDIT.sub(" ", text)
    kept_lines = []
    for line in text.splitlines():
        if not line.strip():
            continue
        sentences = [s for s in _SENTENCE_END.split(line) if s and s.strip()]
        kept = [s for s in sentences if not _SENTENCE.search(s)]
        if kept:
            kept_lines.append(" ".join(kept) if len(kept) != len(sentences) else line)
    return "\n".join(kept_lines)
