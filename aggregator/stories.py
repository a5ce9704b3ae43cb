"""Entries about the same event → stories, with stable ids and a readable label.

In: ``StoredEntry`` records (a recent window of them, duplicates included or not), the
story each entry had before (``previous``: entry id → story id), ``StorySettings`` and
``now``.  Out: a ``StoryGrouping``: every given entry's story id and the ``Story`` records
(id, label, member ids, first and last date).  Topics are added by
``aggregator.topics.assign_topics`` (hand it ``StoryGrouping.compared``, the entries as they
were compared).  Pure: no database, no clock.

How entries are grouped (a method measured on real news headlines, see bench/quality.py):

1. Duplicates (``duplicate_of`` set and the kept copy among the input) are left out of the
   vectors and follow their kept copy's story: a syndicated copy says nothing new, and ten
   copies of one text would drag a centroid towards it.
2. Each kept entry becomes a TF-IDF vector of its title and the lead of its body, its feed's
   boilerplate left out (``comparable_entries``: the sentences many of the feed's entries
   repeat, a footer, "Comments", and the words nearly all of them use, an alert's keyword;
   rare in the window, such words would weigh most and make every item of the feed one
   story).  Words that look like names (a corpus-level heuristic: how often the word is
   capitalized where capitalization carries meaning, i.e. not at a sentence start and not in
   a title-cased headline; numbers count as names) weigh more, because news stories are
   about who and what.
3. Headlines are short, so two articles about one event often share no word.  Each vector
   is therefore expanded with its nearest neighbours' vectors in the window (weighted by
   similarity): "Zebra buys Motorola unit" and "Motorola sells enterprise arm" meet through
   the articles that say both.  This took headline-only B-cubed F1 from 0.79 to 0.87.
4. Similarities fade with the time between two entries beyond a grace period (one news
   cycle), so that next month's Galaxy launch is not this month's.  Issues of a series (one
   feed, one title, different bodies: "Morning briefing") are never similar.
5. Average-link agglomerative clustering cut at ``threshold`` (the mean similarity two groups
   must reach to merge) gives the stories.  It is computed per connected component of the
   pairs that reach ``threshold`` (exactly the same clusters, see ``aggregator.clustering``),
   so its cost is that of the largest component, not of the window.  A member that only
   one shared word holds in its group is then split off (``_Window.hold_together``).  The
   window is the entries dated within ``settings.window`` of ``now`` and any entry never
   grouped before.
   When more than ``regroup_share`` of it has no story yet (a fresh store, the sample data
   on a fresh clone) the whole window is clustered.  Otherwise (a poll's worth of new
   entries) each new entry is compared with the existing stories by the same average link;
   the new entries, linked to the stories they reach and to each other, fall into parts,
   and each part (its new entries and the reached stories' entries) is clustered again on
   its own; the other stories stay as they are, and two old stories merge only through new
   entries that reach both.  A poll then costs the new entries' tokens, the window's
   vectors (each text's term counts are remembered), new × window similarities (only the
   pairs that can matter, see ``aggregator.clustering.CosineIndex.pairs_reaching``) and the
   clustering of the reached stories; it keeps batch quality (bench/quality.py).  Story
   ids are carried over by overlap with ``previous``: each old story id goes to the new
   group holding most of its entries, so ongoing stories keep their id.  A new group's id is derived from its
   earliest member's id, so the same input gives the same ids.  Entries may move between
   stories when later articles make the picture clearer; the id of a story that goes on
   does not change.

The vectorizer is a plain callable (``StorySettings.vectorizer``) so that an embedding model
can replace TF-IDF; the default thresholds are tuned for the lexical one.
"""

from __future__ import annotations

import functools
import hashlib
import math
import re
import sys
import unicodedata
from collections import Counter, OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, cast

import numpy as np
from scipy import sparse
from scipy.sparse.csgraph import connected_components
from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS
from sklearn.preprocessing import normalize

from aggregator.boilerplate import (
    FEED_BOILERPLATE_MIN,
    OPENING_CHARS,
    learn_feed_sentences,
    opening_keys,
    without_sentences,
)
from aggregator.clustering import (
    EDGE_MARGIN,
    CosineIndex,
    as_rows,
    average_link,
    cluster_block,
    gram_blocks,
    row_dots,
    row_gram_blocks,
    split_by_label,
    take_rows,
    threshold_edges,
    top_per_row,
)
from aggregator.types import Entry, StoredEntry

# A matrix with one L2-normalized row per entry: scipy sparse or a numpy array.
Matrix = Any
Vectorizer = Callable[[Sequence[Entry]], Matrix]

# A new entry's similarities with a story's members are looked up only down to this; the
# rest bound the mean (see ``_reached_stories``).
REACH_FLOOR = 0.1
# Parts of up to this many rows have their similarities faded all together, pair by pair.
SMALL_PART = 64
# Up to this many rows are clustered from one dense similarity matrix (64 MB of float32);
# more are cut into blocks (see ``aggregator.clustering``).
DENSE_ROWS = 4096

STORY_ID_PREFIX = "story-"

# Centrality scores (in [-1, 1]) this close are equal: float32 rounding moves them by well
# under 1e-6, and the most central headline of a real story leads the next by more than
# 1e-3 (the UCI day in bench/data).
LABEL_TIE = 1e-5


@dataclass(frozen=True, slots=True)
class Story:
    """A set of entries about one event.

    ``entry_ids`` lists every member (duplicates included) by date, then id.  ``label`` is
    the member headline closest to the story's centroid: the one that says it best (the
    earliest of equally close ones).
    """

    id: str
    label: str
    entry_ids: tuple[str, ...]
    first: datetime  # the earliest member's date
    last: datetime  # the latest member's date
    topics: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ComparedEntries:
    """Entries as grouping compared them (``comparable_entries``), kept with the grouping so
    that its topics (``aggregator.topics.assign_topics``) need not learn each feed's
    boilerplate again.  Held by whoever holds the grouping, and by nothing else."""

    entries: tuple[StoredEntry, ...]  # as given to ``comparable_entries``
    lead_words: int
    compared: tuple[Entry, ...]  # what it returned, in the same order

    @classmethod
    def of(cls, entries: Sequence[StoredEntry], lead_words: int = 60) -> ComparedEntries:
        """``entries`` as ``comparable_entries`` makes them comparable."""
        return cls(tuple(entries), lead_words, tuple(comparable_entries(entries, lead_words)))

    def reuse(self, entries: Sequence[StoredEntry], lead_words: int) -> list[Entry] | None:
        """``comparable_entries(entries, lead_words)`` when these are the very records (the
        same objects, in the same order) and the same lead; otherwise None."""
        if lead_words != self.lead_words or len(entries) != len(self.entries):
            return None
        if not all(a is b for a, b in zip(entries, self.entries, strict=True)):
            return None
        return list(self.compared)


@dataclass(frozen=True, slots=True)
class StoryGrouping:
    """What ``group_stories`` returns: each given entry's story, and the stories newest first."""

    assignments: Mapping[str, str]  # entry id → story id, for every entry given
    stories: tuple[Story, ...]  # by last date (newest first), then id
    # The entries as compared (feed boilerplate left out): pass it on to ``assign_topics``.
    compared: ComparedEntries = field(default=ComparedEntries((), 0, ()), compare=False, repr=False)


# What capitalization says about a token, see ``_tokens``.
_NAME, _WORD_, _UNSURE = 1, 0, -1

_WORD = re.compile(r"[^\W_]+(?:[’'.&\-][^\W_]+)*", re.UNICODE)
# A text as sentence ends (punctuation before a space, or a line break) and words.
_PIECE = re.compile(r"([.!?:;](?=\s)|\n)|(" + _WORD.pattern + ")")
_DIGIT = re.compile(r"\d")


def _tokens(text: str) -> list[tuple[str, int]]:
    """Words of ``text`` as (normalized token, ``_NAME`` / ``_WORD_`` / ``_UNSURE``) pairs.

    Capitalization only says "this is a name" where the writer did not have to
    capitalize: not at a sentence start, not in a title-cased headline.  Numbers
    ("7.4", "Q1", "35m") count as names: they pin down which report, which quarter.

    This and ``_words`` read one text word by word: they define the tokens, and the tests
    hold ``text_terms`` (which reads many texts at once, see ``_analyse``) to them.
    """
    return [(token, kind) for parts, kind in _words(text) for token, _written, _term, _form in parts]


def _words(text: str) -> list[tuple[_Parts, int]]:
    """The content words of ``text`` in order: (their tokens, their kind), stop words left out."""
    out: list[tuple[_Parts, int]] = []
    title_case = _is_title_case(text)
    chunks = _CHUNKS
    # A word never spans white space, so the text is read chunk by chunk (split on white
    # space, as ``\s`` does), each chunk's pieces looked up: the same chunks come back in
    # every text.  A line break always ends a sentence.
    for line in text.split("\n"):
        first = True  # at the start of a sentence
        for chunk in line.split():
            pieces = chunks.get(chunk)
            if pieces is None:
                pieces = _chunk_pieces(chunk)
            for form in pieces:
                if form is None:
                    first = True
                    continue
                parts, fixed, capitalized = form
                if parts:
                    out.append((parts, _kind(fixed, capitalized, at_start=first or title_case)))
                first = False
    return out


def _kind(fixed: int | None, capitalized: bool, *, at_start: bool) -> int:
    """What capitalization says of a word (see ``_tokens``): its fixed kind (numbers are
    names), else nothing where the writer had to capitalize (``at_start``: a sentence's
    start, or anywhere in a title-cased text), else whether it is capitalized."""
    if fixed is not None:
        return fixed
    if at_start:
        return _UNSURE
    return _NAME if capitalized else _WORD_


def _chunk_pieces(chunk: str) -> tuple[_WordForm | None, ...]:
    """The pieces of a chunk of text between white space, remembered (see ``_pieces_of``)."""
    if len(_CHUNKS) > MAX_TERMS:
        _CHUNKS.clear()
    pieces = _CHUNKS[chunk] = _pieces_of(chunk)
    return pieces


def _pieces_of(chunk: str) -> tuple[_WordForm | None, ...]:
    """The pieces of a chunk of text between white space: words' forms, None for a sentence end."""
    # Followed by white space, as every chunk but a text's last is (where an end changes nothing).
    return tuple(
        None if end else _WORD_FORMS.get(word) or _word_form(word)
        for end, word in _PIECE.findall(chunk + " ")
    )


# What a word as written comes to, by the word: the same few thousand words make up most
# of every text, so each is looked at once.  Its parts: (token, part as written, their
# numbers in the process-wide term and form tables, see ``text_terms``).
_Parts = tuple[tuple[str, str, int, int], ...]
_WordForm = tuple[_Parts, int | None, bool]
_WORD_FORMS: dict[str, _WordForm] = {}
_CHUNKS: dict[str, tuple[_WordForm | None, ...]] = {}  # see ``_words``


def _word_form(word: str) -> _WordForm:
    """(its parts, its kind if fixed (numbers are names), whether it is capitalized)."""
    written = word.replace("’", "'")
    if written.lower().endswith("'s"):
        written = written[:-2]
    # "U.S." and "US" are one token; "7.4" stays as it is.
    has_digit = _DIGIT.search(written) is not None
    if not has_digit:
        written = written.replace(".", "")
    lower = written.lower()
    shouting = len(written) >= 2 and written.isupper()  # "US", "IT": names, not stop words
    form: _WordForm
    if not lower or (lower in ENGLISH_STOP_WORDS and not shouting):
        form = ((), None, False)
    else:
        pieces = (written,) if has_digit else tuple(written.split("-"))
        parts = []
        for piece in pieces:
            if len(piece) >= 2 or piece.isdigit():
                token = sys.intern(_stem(piece.lower()))
                as_written = sys.intern(piece)
                term = _number(token, _TERM_NUMBERS, _TERMS)
                parts.append((token, as_written, term, _number(as_written, _FORM_NUMBERS, _FORMS)))
        form = (tuple(parts), _NAME if has_digit else None, written[0].isupper())
    _WORD_FORMS[word] = form
    return form


def _is_title_case(text: str) -> bool:
    """Whether most content words start with a capital, as in "Twitter Shares Soar On Deal"."""
    # Read chunk by chunk (the text between white space): a word never spans white space, so
    # the words of the first 300 characters are those of its chunks, and the same chunks come
    # back in every text, each counted once.
    chunks = text[:300].split()
    found = list(map(_TITLE_CHUNKS.get, chunks))
    counts = (
        [_title_chunk(chunk) if n is None else n for chunk, n in zip(chunks, found, strict=True)]
        if None in found
        else cast(list[int], found)
    )
    capitalized, content = divmod(sum(counts), _TITLE_PACK)
    if content < 3:
        return True  # too short to tell: trust nothing
    return capitalized / content > 0.6


# A chunk's counts as one number, capitalized × _TITLE_PACK + content words, so that a text's
# are one sum; 300 characters hold far fewer than _TITLE_PACK words.
_TITLE_PACK = 1 << 16


def _title_chunk(chunk: str) -> int:
    """The packed (capitalized, content) word counts of one chunk (see ``_title_code``)."""
    if len(_TITLE_CHUNKS) > MAX_TERMS:
        _TITLE_CHUNKS.clear()
    codes = [_title_code(word) for word in _WORD.findall(chunk)]
    capitalized = codes.count(2)
    packed = _TITLE_CHUNKS[chunk] = capitalized * _TITLE_PACK + codes.count(1) + capitalized
    return packed


def _title_code(word: str) -> int:
    """0 for a stop word or one not starting with a letter, else 2 if capitalized, 1 if not."""
    if len(_TITLE_CODES) > MAX_TERMS:
        _TITLE_CODES.clear()
    code = _TITLE_CODES[word] = (
        0 if not word[0].isalpha() or word.lower() in ENGLISH_STOP_WORDS else 2 if word[0].isupper() else 1
    )
    return code


_TITLE_CHUNKS: dict[str, int] = {}
_TITLE_CODES: dict[str, int] = {}


def _stem(word: str) -> str:
    """Fold plurals ("profits" → "profit", "stories" → "story"); enough for headlines."""
    if len(word) > 4 and word.endswith("ies"):
        return word[:-3] + "y"
    if len(word) > 3 and word.endswith("s") and not word.endswith(("ss", "us", "is")):
        return word[:-1]
    return word


def entry_text(entry: Entry, lead_words: int = 60) -> str:
    """The text an entry is compared by: its title, then the first ``lead_words`` of its body.

    The lead is where news writing puts who, what and where; the rest of a long article
    wanders and would make every two articles look alike.
    """
    return _entry_text(entry.title, entry.text, lead_words)


# Every poll asks again for mostly the same entries' texts (a pure function, so remembered).
@functools.lru_cache(maxsize=32768)
def _entry_text(title: str, text: str, lead_words: int) -> str:
    # maxsplit: the first words without splitting a long article all the way.
    body = " ".join(text.split(maxsplit=lead_words)[:lead_words])
    title = unicodedata.normalize("NFKC", title).strip()
    return f"{title}\n{body}" if body else title


# Tokenizing is most of the cost of vectorizing, and every poll regroups mostly the same
# texts: the term counts of the last few thousand texts are remembered (a pure function of
# the text, so this changes no result).  Terms are numbered in one process-wide table so
# that a window's matrix is put together from these arrays without a Python loop over its
# tokens; columns are then ordered by the term itself, so no result depends on the table.
_TERM_NUMBERS: dict[str, int] = {}
_TERMS: list[str] = []
_FORM_NUMBERS: dict[str, int] = {}  # the same for words as written, for naming things
_FORMS: list[str] = []
# Past this many terms the table (and the words and texts numbered with it) is forgotten:
# a long-running process meets new names every day.
MAX_TERMS = 1_000_000


@dataclass(frozen=True, slots=True)
class TextTerms:
    """The distinct terms of one text (by process-wide number, ascending) and how each occurred."""

    terms: Any  # int64
    counts: Any  # float64: occurrences
    capitalized: Any  # float64: informative occurrences capitalized or numeric (see ``_tokens``)
    informative: Any  # float64: occurrences where capitalization is informative
    # How the terms were written, one row per (term, form) in order of first occurrence:
    # term number, form number, occurrences.
    forms: Any  # int64, shape (n, 3)


def text_terms(texts: Sequence[str]) -> list[TextTerms]:
    """The term counts of each of ``texts`` (tokens as ``_tokens`` finds them), remembered for
    recent texts.  Records from one call share one term table (use them together only)."""
    if len(_TERMS) > MAX_TERMS or len(_FORMS) > MAX_TERMS:
        for table in (_TERM_NUMBERS, _TERMS, _FORM_NUMBERS, _FORMS, _WORD_FORMS, _CHUNKS):
            table.clear()
        _CHUNK_TABLE.clear()
        _TERM_ORDER.clear()
        _TABLE_EPOCH[0] += 1
        _ANALYSED.clear()
    analysed = _ANALYSED
    missing = [text for text in dict.fromkeys(texts) if text not in analysed]
    for start in range(0, len(missing), _ANALYSE_BATCH):
        batch = missing[start : start + _ANALYSE_BATCH]
        analysed.update(zip(batch, _analyse(batch), strict=True))
    found = []
    for text in texts:
        found.append(analysed[text])
        analysed.move_to_end(text)
    while len(analysed) > _ANALYSED_MAX:
        analysed.popitem(last=False)
    return found


# How many times the term table was forgotten: term numbers kept elsewhere are only
# valid within one epoch.
_TABLE_EPOCH = [0]


def term_table_epoch() -> int:
    """Changes whenever term numbers are reassigned (see ``MAX_TERMS``)."""
    return _TABLE_EPOCH[0]


_ANALYSED: OrderedDict[str, TextTerms] = OrderedDict()  # the most recently asked for last
_ANALYSED_MAX = 16384
_ANALYSE_BATCH = 2048


def _number(key: str, numbers: dict[str, int], keys: list[str]) -> int:
    number = numbers.get(key)
    if number is None:
        number = numbers[key] = len(keys)
        keys.append(key)
    return number


# What a chunk's words make the next chunk: a sentence's start or inside one (or, for a
# chunk with no words, nothing: the next is where this one was).  Also the row of each
# context's kinds in ``_ChunkTable.arrays``.
_AT_START, _INSIDE, _IN_TITLE_CASE, _AS_BEFORE = 0, 1, 2, -1


class _ChunkTable:
    """Every chunk of text (the text between white space) met so far, as ``_analyse`` reads it.

    A chunk is numbered once; its occurrences (term and form numbers, and their kind, see
    ``_tokens``, at a sentence's start, inside a sentence and in a title-cased text) are
    kept in columns, so that a batch of texts is turned into occurrences by indexing, with
    no Python code per word.  Built from ``_pieces_of``, so it tokenizes as ``_words`` does.
    """

    numbers: dict[str, int]
    _arrays: list[Any]  # first, length, then (per chunk); term, form, kinds (per occurrence)
    _pending: tuple[list[int], ...]  # the same for chunks numbered since, kinds flattened

    def __init__(self) -> None:
        self.clear()

    def clear(self) -> None:
        self.numbers = {}
        self._arrays = [np.zeros(0, dtype=np.int64) for _ in range(5)] + [np.zeros((3, 0), dtype=np.int64)]
        self._pending = ([], [], [], [], [], [], [], [])

    def number(self, chunk: str) -> int:
        known = self.numbers.get(chunk)  # a new chunk can come twice in one line
        if known is not None:
            return known
        pieces = _pieces_of(chunk)
        first, length, then, term, form, *kinds = self._pending
        start = len(self._arrays[3]) + len(term)
        for context, kind_column in enumerate(kinds):
            at_start, title_case = context != _INSIDE, context == _IN_TITLE_CASE
            for piece in pieces:  # as ``_words`` reads the pieces
                if piece is None:
                    at_start = True
                    continue
                parts, fixed, capitalized = piece
                kind = _kind(fixed, capitalized, at_start=at_start or title_case)
                kind_column.extend([kind] * len(parts))
                at_start = False
        for piece in pieces:
            if piece is not None:
                term.extend([t for _, _, t, _ in piece[0]])
                form.extend([f for _, _, _, f in piece[0]])
        first.append(start)
        length.append(len(self._arrays[3]) + len(term) - start)
        then.append(_AS_BEFORE if not pieces else _AT_START if pieces[-1] is None else _INSIDE)
        number = self.numbers[chunk] = len(self.numbers)
        return number

    def arrays(self) -> list[Any]:
        """[first, length, then, term, form, kinds (3 × occurrences)] of every chunk numbered."""
        pending = self._pending
        if pending[0]:
            new = [np.array(column, dtype=np.int64) for column in pending[:5]]
            new.append(np.array(pending[5:], dtype=np.int64).reshape(3, -1))
            self._arrays = [
                np.concatenate([old, more], axis=-1) for old, more in zip(self._arrays, new, strict=True)
            ]
            for column in pending:
                column.clear()
        return self._arrays


_CHUNK_TABLE = _ChunkTable()


def _analyse(texts: Sequence[str]) -> list[TextTerms]:
    """``TextTerms`` of each of ``texts``: each text as the numbers of its chunks (the same
    chunks come back in every text), then its words found and counted for all texts at once."""
    table = _CHUNK_TABLE
    if len(table.numbers) > MAX_TERMS:
        table.clear()
    known = table.numbers.get
    chunks: list[int] = []
    line_starts: list[int] = []
    chunk_counts: list[int] = []
    title_case: list[bool] = []
    for text in texts:
        before = len(chunks)
        for line in text.split("\n"):  # a line break always ends a sentence
            found = list(map(known, line.split()))
            numbers = (
                [table.number(c) if n is None else n for c, n in zip(line.split(), found, strict=True)]
                if None in found
                else cast(list[int], found)
            )
            if numbers:
                line_starts.append(len(chunks))
                chunks.extend(numbers)
        chunk_counts.append(len(chunks) - before)
        title_case.append(_is_title_case(text))
    first, length, then, term_of, form_of, kinds = table.arrays()
    chunk = np.array(chunks, dtype=np.int64)
    # Each chunk's context: what the nearest chunk before it on its line made it (a line's
    # first chunk starts a sentence); every chunk of a title-cased text is read as such.
    made = np.full(len(chunk), _AS_BEFORE, dtype=np.int64)
    made[1:] = then[chunk[:-1]]
    made[line_starts] = _AT_START
    set_at = np.where(made != _AS_BEFORE, np.arange(len(chunk)), 0)
    context = made[np.maximum.accumulate(set_at)] if len(chunk) else made
    chunk_owner = np.repeat(np.arange(len(texts), dtype=np.int64), chunk_counts)
    context[np.asarray(title_case, dtype=bool)[chunk_owner]] = _IN_TITLE_CASE

    sizes = length[chunk]
    ends = np.cumsum(sizes)
    occurrence = np.repeat(first[chunk] - (ends - sizes), sizes) + np.arange(
        int(ends[-1]) if len(ends) else 0
    )
    term = term_of[occurrence]
    form = form_of[occurrence]
    kind = kinds[np.repeat(context, sizes), occurrence]
    owner = np.repeat(chunk_owner, sizes)

    # Each text's distinct terms, ascending: (text, term) pairs in sorted order.
    span = len(_TERMS) + 1
    pairs, which = np.unique(owner * span + term, return_inverse=True)
    which = which.ravel()
    counts = np.bincount(which, minlength=len(pairs)).astype(np.float64)
    informative = kind != _UNSURE
    capitalized = np.bincount(which, weights=informative & (kind == _NAME), minlength=len(pairs))
    informed = np.bincount(which, weights=informative, minlength=len(pairs))
    term_bounds = np.searchsorted(pairs // span, np.arange(len(texts) + 1))

    # Each text's (term, form) rows in order of first occurrence, with their counts: the
    # (text, term, form) triples numbered through their (text, term) pair.
    _, first_seen, occurrences = np.unique(
        which * (len(_FORMS) + 1) + form, return_index=True, return_counts=True
    )
    by_position = np.argsort(first_seen)  # the texts' stretches are in text order
    first_seen = first_seen[by_position]
    rows = np.stack([term[first_seen], form[first_seen], occurrences[by_position]], axis=1)
    form_bounds = np.searchsorted(owner[first_seen], np.arange(len(texts) + 1))

    return [
        TextTerms(
            pairs[term_bounds[i] : term_bounds[i + 1]] % span,
            counts[term_bounds[i] : term_bounds[i + 1]],
            capitalized[term_bounds[i] : term_bounds[i + 1]],
            informed[term_bounds[i] : term_bounds[i + 1]],
            rows[form_bounds[i] : form_bounds[i + 1]],
        )
        for i in range(len(texts))
    ]


def written_forms(texts: Sequence[TextTerms], terms: Sequence[str]) -> dict[str, str]:
    """How ``texts`` most often write each of ``terms`` (e.g. "galaxy" → "Galaxy").

    Ties go to the form seen first (texts in the order given, words in text order).
    """
    wanted = [_TERM_NUMBERS[term] for term in set(terms) if term in _TERM_NUMBERS]
    rows = np.concatenate([t.forms for t in texts] or [np.zeros((0, 3), dtype=np.int64)])
    rows = rows[np.isin(rows[:, 0], wanted)]
    if not len(rows):
        return {}
    pairs, first, which = np.unique(
        rows[:, 0] * (len(_FORMS) + 1) + rows[:, 1], return_index=True, return_inverse=True
    )
    totals = np.bincount(which.ravel(), weights=rows[:, 2])
    term, form = np.divmod(pairs, len(_FORMS) + 1)
    order = np.lexsort((first, -totals, term))
    best = order[np.r_[0, np.flatnonzero(np.diff(term[order])) + 1]]
    return {_TERMS[int(term[i])]: _FORMS[int(form[i])] for i in best.tolist()}


class _TermOrder:
    """Every numbered term's place in alphabetical order, brought up to date as terms are numbered.

    Columns are in term order (so that ties between terms and the order in which products
    add up do not depend on which texts came first); sorting every poll's tens of thousands
    of term strings again cost more than the rest of ``term_columns``.  Only the terms
    numbered since the last call are sorted and merged in.
    """

    def __init__(self) -> None:
        self.clear()

    def clear(self) -> None:
        self.names = np.zeros(0, dtype=object)  # every term, ascending
        self.numbers = np.zeros(0, dtype=np.int64)  # the term number of each of ``names``
        self.rank = np.zeros(0, dtype=np.int64)  # term number → place in ``names``

    def ranks(self) -> Any:
        """Term number → alphabetical place, for every term numbered so far."""
        known = len(self.rank)
        if known < len(_TERMS):
            new = sorted(range(known, len(_TERMS)), key=_TERMS.__getitem__)
            new_names = np.empty(len(new), dtype=object)
            new_names[:] = [_TERMS[number] for number in new]
            at = np.searchsorted(self.names, new_names)  # terms are distinct: no ties
            self.names = np.insert(self.names, at, new_names)
            self.numbers = np.insert(self.numbers, at, new)
            self.rank = np.empty(len(_TERMS), dtype=np.int64)
            self.rank[self.numbers] = np.arange(len(_TERMS))
        return self.rank


_TERM_ORDER = _TermOrder()


def term_name(number: int) -> str:
    """The term a ``TextTerms``/``TermColumns`` term number stands for."""
    return _TERMS[number]


@dataclass(frozen=True, slots=True)
class TermColumns:
    """Where the terms of several texts go in a matrix: one row per text, one column per term."""

    indptr: Any  # row starts, as in CSR
    columns: Any  # the column of each (text, term) pair, texts' arrays concatenated
    terms: Any  # int64: the term number of each column; columns are in term order

    @property
    def names(self) -> list[str]:
        """The term of each column."""
        return [_TERMS[number] for number in self.terms.tolist()]

    def matrix(self, values: Any) -> Any:
        """CSR float64 with ``values`` (one per (text, term) pair) at their places."""
        matrix = sparse.csr_matrix(
            (values, self.columns, self.indptr), shape=(len(self.indptr) - 1, len(self.terms))
        )
        matrix.has_sorted_indices = False
        matrix.sort_indices()
        return matrix

    def totals(self, values: Any) -> Any:
        """The sum of ``values`` per column."""
        return np.bincount(self.columns, weights=values, minlength=len(self.terms))


def term_columns(texts: Sequence[TextTerms]) -> TermColumns:
    return columns_of([t.terms for t in texts])


def columns_of(term_arrays: Sequence[Any]) -> TermColumns:
    """``TermColumns`` of rows given as arrays of distinct term numbers (as ``TextTerms.terms``)."""
    lengths = np.array([len(terms) for terms in term_arrays], dtype=np.int64)
    indptr = np.zeros(len(term_arrays) + 1, dtype=np.int64)
    np.cumsum(lengths, out=indptr[1:])
    if not indptr[-1]:
        return TermColumns(indptr, np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64))
    numbers = np.concatenate(term_arrays)
    # Term numbers are small integers: a table from number to column, no sort of all of them.
    seen = np.zeros(len(_TERMS), dtype=bool)
    seen[numbers] = True
    present = np.flatnonzero(seen)
    in_order = present[np.argsort(_TERM_ORDER.ranks()[present])]
    column = np.empty(len(_TERMS), dtype=np.int64)
    column[in_order] = np.arange(len(in_order))
    return TermColumns(indptr, column[numbers], in_order)


def vectorize_lexical(entries: Sequence[Entry], *, entity_boost: float = 0.5, lead_words: int = 60) -> Matrix:
    """TF-IDF rows (sublinear tf, English stop words, plural folding), names weighted up.

    The TF-IDF is scikit-learn's ``TfidfVectorizer(sublinear_tf=True)``: tf ``1 + ln(count)``,
    idf ``1 + ln((1 + n) / (1 + df))``, rows L2-normalized.  Each token's weight is then
    multiplied by ``1 + entity_boost * r`` where ``r`` is the share of its informative
    occurrences (see ``_tokens``) that were capitalized or numeric; tokens never seen in an
    informative position get ``r = 0.5``.  Rows are L2-normalized again.
    """
    texts = text_terms([entry_text(e, lead_words) for e in entries])
    where = term_columns(texts)
    if not len(where.terms):
        return sparse.csr_matrix((len(entries), 1), dtype=np.float32)
    counts = np.concatenate([t.counts for t in texts])
    capitalized = where.totals(np.concatenate([t.capitalized for t in texts]))
    informative = where.totals(np.concatenate([t.informative for t in texts]))
    df = np.bincount(where.columns, minlength=len(where.terms))
    idf = np.log((1 + len(texts)) / (1 + df)) + 1.0
    share = np.divide(capitalized, informative, out=np.full(len(df), 0.5), where=informative > 0)
    tfidf = where.matrix((np.log(counts) + 1.0) * idf[where.columns])
    tfidf = normalize(tfidf)
    tfidf.data *= (1.0 + entity_boost * share)[tfidf.indices]
    return normalize(tfidf).astype(np.float32)


# A term in at least this share of a feed's entries, and in at least this many, is the feed's
# (a Google Alert's keyword, the words of a footer in another wording each time), not the
# story's, when the feed has most of the entries that use it: a common word ("said") is in
# most entries of most feeds, and weighs little anyway.  Stricter than sentences
# (``aggregator.boilerplate``): a word recurs for good reasons, a whole sentence rarely does.
# A handful of entries that all name one event are that event's coverage (a small feed's
# window during an eruption), so it takes ten.
FEED_TERM_SHARE = 0.8
FEED_TERM_MIN = 10


def comparable_entries(entries: Sequence[StoredEntry], lead_words: int = 60) -> list[Entry]:
    """Each entry as grouping compares it: without its feed's boilerplate (same order).

    A feed's boilerplate is learned from its entries among ``entries``: the sentences of the
    body's opening that many of them repeat (``aggregator.boilerplate.learn_feed_sentences``:
    a footer, "Comments", a sign-off), then the terms of the title and lead that nearly all
    of them use and other feeds hardly do (``FEED_TERM_SHARE``, ``FEED_TERM_MIN``): the
    keyword of an alert feed.  An entry of a feed with neither is returned as it is; another
    gets its opening without those sentences, and its title and first ``lead_words`` words
    without those terms.  Deterministic: what is learned does not depend on the order of
    ``entries``.  Cost: a pass over each text's opening and its term counts, both remembered;
    a cycle asks once (``StoryGrouping.compared`` carries the result to the topics).
    """
    compared = [stored.entry for stored in entries]
    by_feed: dict[str, list[int]] = {}
    for position, stored in enumerate(entries):
        by_feed.setdefault(stored.feed_url, []).append(position)
    for positions in by_feed.values():
        if len(positions) >= FEED_BOILERPLATE_MIN:
            _drop_feed_sentences(compared, positions)
    big = [positions for positions in by_feed.values() if len(positions) >= FEED_TERM_MIN]
    if big:
        _drop_feed_terms(compared, big, lead_words)
    return compared


def _drop_feed_sentences(compared: list[Entry], positions: Sequence[int]) -> None:
    """Leave out the sentences that one feed's entries (at ``positions``) repeat, in place."""
    openings = [opening_keys(compared[p].text) for p in positions]
    noise = learn_feed_sentences(openings)
    if noise:
        for position, keys in zip(positions, openings, strict=True):
            if not noise.isdisjoint(keys):
                entry = compared[position]
                compared[position] = replace(entry, text=without_sentences(entry.text, noise))


def _drop_feed_terms(compared: list[Entry], feeds: Sequence[Sequence[int]], lead_words: int) -> None:
    """Leave out the terms that are each feed's (entries at ``feeds``' positions), in place."""
    terms = [t.terms for t in text_terms([entry_text(entry, lead_words) for entry in compared])]
    users = np.bincount(np.concatenate(terms), minlength=len(_TERMS))  # entries using each term
    epoch = term_table_epoch()
    for positions in feeds:
        own, own_users = np.unique(np.concatenate([terms[p] for p in positions]), return_counts=True)
        need = max(FEED_TERM_MIN, math.ceil(FEED_TERM_SHARE * len(positions)))
        mine = (own_users >= need) & (2 * own_users >= users[own])
        if not mine.any():
            continue
        constant = frozenset(own[mine].tolist())
        for position in positions:
            entry = compared[position]
            compared[position] = replace(
                entry,
                title=_without_terms(entry.title, constant, None, epoch),
                text=_without_terms(entry.text[:OPENING_CHARS], constant, lead_words, epoch),
            )


@functools.lru_cache(maxsize=32768)
def _without_terms(text: str, terms: frozenset[int], limit: int | None, epoch: int) -> str:
    """``text`` (its first ``limit`` chunks that are kept, if given) without the chunks (the
    text between white space) whose words are all among ``terms`` (term numbers of table
    ``epoch``, see ``text_terms``); a sentence end such a chunk carried stays.  Remembered:
    a feed's texts and its terms come back every poll."""
    del epoch  # only part of the key: term numbers mean other terms after the table is reset
    lines = []
    left = limit
    for line in text.split("\n"):
        kept = []
        for chunk in line.split():
            if left is not None and left <= 0:
                break
            pieces = _CHUNKS.get(chunk)
            if pieces is None:
                pieces = _chunk_pieces(chunk)
            numbers = [term for form in pieces if form is not None for _, _, term, _ in form[0]]
            if numbers and all(number in terms for number in numbers):
                if pieces[-1] is None:
                    kept.append(chunk[-1])  # "Slack." leaves its full stop: a sentence ends there
                continue
            kept.append(chunk)
            left = None if left is None else left - 1
        lines.append(" ".join(kept))
        if left is not None and left <= 0:
            break
    return "\n".join(lines)


@dataclass(frozen=True, slots=True)
class StorySettings:
    """How entries are grouped.  The defaults were chosen on held-out halves of a day of news."""

    # Mean similarity two groups must reach to merge (average link); lower = broader stories.
    threshold: float = 0.15
    # Only entries dated within this much of ``now`` are regrouped; older ones keep their story.
    window: timedelta = timedelta(days=3)
    # Regroup at most this many (the newest) entries: a fresh store clusters all of them at once.
    max_entries: int = 5000
    # Neighbour expansion: each vector gains ``neighbor_weight`` × similarity × the vectors of
    # its ``neighbors`` most similar entries that reach ``neighbor_min_similarity``.
    neighbors: int = 15
    neighbor_weight: float = 0.5
    neighbor_min_similarity: float = 0.2
    # Similarity fades by half every ``half_life`` once two entries are ``grace`` apart.
    grace: timedelta = timedelta(hours=24)
    half_life: timedelta = timedelta(hours=48)
    # When more than this share of the window has no story yet (a fresh store, a first run
    # over an archive), the whole window is clustered again; otherwise only the new entries
    # and the stories they reach are (see ``group_stories``).
    regroup_share: float = 0.25
    # A member that shares only one word with the rest of its story (title and lead, its
    # feed's boilerplate left out) stays in it only if at least this many other members use
    # that word: one word in common ("file", "language") is a coincidence, unless the story
    # is about it.  0 turns the check off (see ``_Window.hold_together``).  Only with the
    # lexical vectorizer, whose similarity is shared words: an embedding joins one event
    # told in other words, which may share none.
    single_word_support: int = 5
    vectorizer: Vectorizer = field(default=vectorize_lexical)


def entry_time(stored: StoredEntry) -> datetime:
    """When an entry happened: its own date, but never later than when we first saw it.

    A date in the future is a feed's mistake; the date the feed gave is otherwise better
    than ours (a late poll should not move an article into the next news cycle).
    """
    date = stored.entry.date
    if date is None or date > stored.first_seen:
        return stored.first_seen
    return date


def story_id_for(entry_id: str, attempt: int = 0) -> str:
    """The id a new story gets from its earliest member: the same input, the same id."""
    key = entry_id if attempt == 0 else f"{entry_id}#{attempt}"
    return STORY_ID_PREFIX + hashlib.sha256(key.encode()).hexdigest()[:16]


def group_stories(
    entries: Sequence[StoredEntry],
    previous: Mapping[str, str] | None = None,
    settings: StorySettings = StorySettings(),
    *,
    now: datetime,
) -> StoryGrouping:
    """Group ``entries`` into stories, keeping the ids of the stories in ``previous``.

    ``previous`` maps entry ids to the story they were in before (default: each entry's own
    ``story`` field).  Entries dated outside ``settings.window`` of ``now`` that already have
    a story keep it; all others are (re)grouped, at most ``settings.max_entries`` of them
    (the newest; older ones beyond that keep their story or get one of their own).  Entries whose
    ``duplicate_of`` names another given entry join that entry's story.  Which entries are
    new (not in ``previous``) decides how much is regrouped, see the module docstring: with
    nothing new, every story stays as it was.
    """
    if previous is None:
        previous = {s.id: s.story for s in entries if s.story is not None}
    by_id = {s.id: s for s in entries}
    kept_of = {s.id: s.id if s.duplicate_of is None else _kept_copy(s.id, by_id) for s in entries}
    when = {s.id: entry_time(s) for s in entries}
    ordered = sorted(entries, key=lambda s: (when[s.id], s.id))
    kept = [s for s in ordered if kept_of[s.id] == s.id]

    # Recent entries are regrouped on every run; older ones keep their story, except those
    # never grouped (a first run over a feed's archive, the sample data on a fresh clone).
    in_window = [s for s in kept if now - when[s.id] <= settings.window or s.id not in previous]
    if len(in_window) > settings.max_entries:
        in_window = in_window[-settings.max_entries :]
    window_ids = {s.id for s in in_window}
    outside = [s for s in kept if s.id not in window_ids]

    as_compared = ComparedEntries.of(entries)
    compared = {s.id: entry for s, entry in zip(entries, as_compared.compared, strict=True)}
    window = _Window(in_window, settings, [compared[s.id] for s in in_window]) if in_window else None
    new_rows = [row for row, s in enumerate(in_window) if s.id not in previous]
    if window is None:
        groups: list[list[int]] = []
    elif len(new_rows) > settings.regroup_share * len(in_window):
        groups = window.cluster([np.arange(len(in_window))])
    else:
        groups = _regroup_around(window, previous, new_rows)

    # Ids that must not be handed to a new story: those still in use and those retired.
    taken = set(previous.values())
    assignments: dict[str, str] = {}
    for stored in outside:
        story = previous.get(stored.id) or _new_id(stored.id, taken)
        taken.add(story)
        assignments[stored.id] = story
    copies: dict[str, list[str]] = {}
    for stored in entries:
        if kept_of[stored.id] != stored.id:
            copies.setdefault(kept_of[stored.id], []).append(stored.id)
    carried = _carry_over(groups, in_window, previous, taken, copies)
    for group, story in zip(groups, carried, strict=True):
        for index in group:
            assignments[in_window[index].id] = story
    for stored in entries:
        assignments[stored.id] = assignments[kept_of[stored.id]]

    return StoryGrouping(
        assignments=assignments,
        stories=_build_stories(ordered, assignments, window, when),
        compared=as_compared,
    )


def _kept_copy(entry_id: str, by_id: Mapping[str, StoredEntry]) -> str:
    """Follow ``duplicate_of`` to the copy kept, among the given entries (cycles stop)."""
    seen = {entry_id}
    current = entry_id
    while True:
        target = by_id[current].duplicate_of
        if target is None or target not in by_id or target in seen:
            return current
        seen.add(target)
        current = target


class _Window:
    """The entries being grouped (by date, then id), their vectors, and how similar two of them are.

    The similarity of two entries is the cosine of their neighbour-expanded vectors, faded
    by the time between them, and 0 for two issues of a series.  Neighbours are looked for
    in the whole window.  Expanded vectors are made only for the rows that need them.
    """

    def __init__(
        self, entries: Sequence[StoredEntry], settings: StorySettings, compared: Sequence[Entry]
    ) -> None:
        self.entries = entries
        self.settings = settings
        self.compared = compared  # the entries as compared: feed boilerplate left out
        self._row_terms: list[Any] | None = None
        self.vectors = as_rows(settings.vectorizer(compared))
        self.index = CosineIndex(self.vectors)
        self.seconds = _seconds(entries)
        self.grace = settings.grace.total_seconds()
        self.half_life = max(settings.half_life.total_seconds(), 1.0)
        self.apart_rows, self.apart_columns = _series_pairs(entries)
        self.apart = np.sort(self.apart_rows * len(entries) + self.apart_columns)
        self.in_series = np.zeros(len(entries), dtype=bool)
        self.in_series[self.apart_rows] = True

    def weigh(self, rows: Any, columns: Any, values: Any) -> Any:
        """``values`` of the pairs (rows[i], columns[i]) faded by time, and 0 for series issues."""
        beyond = np.abs(self.seconds[rows] - self.seconds[columns]) - self.grace
        np.maximum(beyond, 0.0, out=beyond)
        faded = (values * np.exp2(-beyond / self.half_life)).astype(np.float32)
        if len(self.apart):
            faded[np.isin(rows * len(self.entries) + columns, self.apart)] = 0.0
        return faded

    def weigh_block(self, rows: Any, block: Any) -> Any:
        """``block`` (``rows`` × ``rows``, rows ascending) faded, series issues 0, diagonal 0: in place."""
        fade = _fade_between(self.seconds[rows], self.seconds[rows], self.grace, self.half_life)
        if fade is not None:
            block *= fade
        if len(self.apart) and self.in_series[rows].any():
            inside = np.isin(self.apart_rows, rows) & np.isin(self.apart_columns, rows)
            block[
                np.searchsorted(rows, self.apart_rows[inside]),
                np.searchsorted(rows, self.apart_columns[inside]),
            ] = 0.0
        np.fill_diagonal(block, 0.0)
        return block

    def _weigh_blocks(self, parts: Sequence[Any], blocks: Sequence[Any]) -> Sequence[Any]:
        """``weigh_block`` on each (part, block), in place; the many small ones in one pass."""
        small = [n for n, part in enumerate(parts) if len(part) <= SMALL_PART]
        if small:
            first = np.concatenate([np.repeat(parts[n], len(parts[n])) for n in small])
            second = np.concatenate([np.tile(parts[n], len(parts[n])) for n in small])
            weighed = self.weigh(first, second, np.concatenate([blocks[n].ravel() for n in small]))
            start = 0
            for n in small:
                block = blocks[n]
                block[:] = weighed[start : start + block.size].reshape(block.shape)
                np.fill_diagonal(block, 0.0)
                start += block.size
        for n, part in enumerate(parts):
            if len(part) > SMALL_PART:
                self.weigh_block(part, blocks[n])
        return blocks

    def neighbour_weights(self, rows: Any) -> Any:
        """CSR rows × window: ``neighbor_weight`` × similarity of each row's nearest neighbours.

        The nearest are the ``neighbors`` most similar other entries (faded, series apart)
        that reach ``neighbor_min_similarity``; fading only lowers a similarity, so only pairs
        whose plain cosine reaches it are looked at.
        """
        settings = self.settings
        count = len(self.entries)
        k = min(settings.neighbors, count - 1)
        empty = sparse.csr_matrix((len(rows), count), dtype=np.float32)
        if k <= 0 or settings.neighbor_weight <= 0 or not len(rows):
            return empty
        least = settings.neighbor_min_similarity
        r, c, values = self.index.pairs_reaching(take_rows(self.vectors, rows), least)
        values = self.weigh(rows[r], c, values)
        keep = (values >= least) & (rows[r] != c)
        r, c, values = r[keep], c[keep], values[keep]
        keep = top_per_row(r, c, values, k)
        return sparse.csr_matrix(
            (values[keep] * np.float32(settings.neighbor_weight), (r[keep], c[keep])),
            shape=(len(rows), count),
            dtype=np.float32,
        )

    def expanded(self, rows: Any, weights: Any) -> Matrix:
        """The rows' vectors plus their weighted neighbours' vectors, L2-normalized."""
        own = take_rows(self.vectors, rows)
        if not weights.nnz:
            return own
        mixed = own + weights @ self.vectors
        if sparse.issparse(mixed):
            return sparse.csr_matrix(normalize(sparse.csr_matrix(mixed)), dtype=np.float32)
        return np.ascontiguousarray(normalize(np.asarray(mixed)), dtype=np.float32)

    def cluster(self, parts: Sequence[Any], weights: Any = None) -> list[list[int]]:
        """Average-link groups within each of ``parts`` (arrays of ascending window row numbers).

        Each part is clustered on its own (groups never span two parts), exactly.
        ``weights``: the neighbour weights of all the parts' rows, in ascending row order,
        when already at hand.  Groups come out as sorted lists of row numbers.
        """
        if not parts:
            return []
        order = np.concatenate(parts)  # part after part, so that each part is a slice
        if weights is None:
            weights = self.neighbour_weights(order)
        else:
            weights = weights[np.searchsorted(np.sort(order), order)]
        vectors = self.expanded(order, weights)
        sizes = [len(part) for part in parts]
        bounds = np.concatenate([[0], np.cumsum(sizes)]).astype(np.intp)
        big = [n for n, size in enumerate(sizes) if size > DENSE_ROWS]
        if big:
            small = [n for n in range(len(parts)) if n not in big]
            small_parts = [parts[n] for n in small]
            keep = [np.arange(bounds[n], bounds[n + 1]) for n in small]
            small_vectors = take_rows(vectors, np.concatenate(keep)) if keep else None
        else:
            small_parts, small_vectors = list(parts), vectors
        blocks = (
            self._weigh_blocks(small_parts, gram_blocks(small_vectors, [len(part) for part in small_parts]))
            if small_parts
            else []
        )
        threshold = self.settings.threshold
        groups: list[list[int]] = []
        for part, block in zip(small_parts, blocks, strict=True):
            groups.extend([int(part[i]) for i in group] for group in cluster_block(block, threshold))
        for n in big:
            groups.extend(self._cluster_part(parts[n], vectors[bounds[n] : bounds[n + 1]]))
        return self.hold_together(groups)

    def hold_together(self, groups: Sequence[list[int]]) -> list[list[int]]:
        """``groups`` with each member that one shared word alone holds in its group split off.

        A member shares a word with its group when another member uses it too (its title and
        lead, feed boilerplate left out).  It stays when it shares two words or more, or one
        that at least ``single_word_support`` other members use.  Two posts that have only
        "file" in common are no story; a report that says only "Easter" is part of the
        Easter story that fifty others make.  Members split off become stories of their own,
        and the rest is checked again without them.  Measured on the labelled day (bench/
        quality.py): B-cubed F1 0.866 → 0.869, by precision (0.858 → 0.863).
        """
        support = self.settings.single_word_support
        if support <= 0 or self.settings.vectorizer is not vectorize_lexical:
            return list(groups)
        terms = self._terms()
        held = [list(group) for group in groups]
        while True:  # each pass checks every group at once; a split-off member changes its group
            loose = _loose_members(held, terms, support)
            if not loose:
                return held
            split = []
            for group in held:
                if loose.isdisjoint(group):
                    split.append(group)
                    continue
                split.extend([row] for row in group if row in loose)
                rest = [row for row in group if row not in loose]
                if rest:
                    split.append(rest)
            held = split

    def _terms(self) -> list[Any]:
        """Each row's distinct terms (its title and lead, as compared): the columns of its
        lexical vector, which has a weight for every term the text uses."""
        if self._row_terms is None:
            vectors = sparse.csr_matrix(self.vectors)
            self._row_terms = np.split(vectors.indices.astype(np.int64), vectors.indptr[1:-1])
        return self._row_terms

    def _cluster_part(self, rows: Any, vectors: Matrix) -> list[list[int]]:
        """Average-link groups of a big part (ascending row numbers), from its expanded vectors."""
        threshold = self.settings.threshold
        index = CosineIndex(vectors)
        edge_rows, edge_columns, _ = threshold_edges(
            index, vectors, threshold - EDGE_MARGIN, lambda r, c, v: self.weigh(rows[r], rows[c], v)
        )

        def blocks(components: Sequence[Any]) -> Sequence[Any]:
            products = row_gram_blocks(vectors)(components)
            return self._weigh_blocks([rows[members] for members in components], products)

        groups = average_link(len(rows), (edge_rows, edge_columns), threshold, blocks)
        return [[int(rows[i]) for i in group] for group in groups]


def _regroup_around(window: _Window, previous: Mapping[str, str], new_rows: Sequence[int]) -> list[list[int]]:
    """Groups of row numbers: the stories the new rows reach, clustered again with them.

    Rows not in ``new_rows`` have a story in ``previous``.  Each new row is compared with
    every existing story as average link would (the mean, over the story's members, of the
    similarity of its neighbour-expanded vector with theirs, time-faded, series issues
    apart).  The new rows, linked to the stories they reach and to the new rows they reach,
    fall into connected parts; each part (its new rows and the reached stories' rows) is
    clustered again on its own, and the stories no new row reaches stay as they are.  Two
    old stories thus merge only through new entries that reach both.  Joining new rows to
    frozen stories instead was measured too: B-cubed F1 0.83–0.85 against 0.866, because
    early mistakes can then never be mended.  Cost: new × window dot products, and the
    clustering of each part.
    """
    entries = window.entries
    new = np.asarray(new_rows, dtype=np.intp)
    is_new = np.zeros(len(entries), dtype=bool)
    is_new[new] = True
    old = np.flatnonzero(~is_new)
    story_ids = sorted({previous[entries[row].id] for row in old.tolist()})
    number = {story: n for n, story in enumerate(story_ids)}
    story_of = np.full(len(entries), -1, dtype=np.intp)
    story_of[old] = [number[previous[entries[row].id]] for row in old.tolist()]

    new_weights = window.neighbour_weights(new)
    expanded = window.expanded(new, new_weights)
    reach_new, reach_story = _reached_stories(window, new, expanded, story_of)
    link_a, link_b, _ = threshold_edges(
        CosineIndex(expanded),
        expanded,
        window.settings.threshold - EDGE_MARGIN,
        lambda r, c, v: window.weigh(new[r], new[c], v),
    )
    # Nodes: the new rows (0 … m-1), then the stories (m …).
    m = len(new)
    graph = sparse.csr_matrix(
        (
            np.ones(len(reach_new) + len(link_a), dtype=np.int8),
            (np.concatenate([reach_new, link_a]), np.concatenate([m + reach_story, link_b])),
        ),
        shape=(m + len(story_ids), m + len(story_ids)),
    )
    _count, part_of_node = connected_components(graph, directed=False)
    part_of_row = np.full(len(entries), -1, dtype=np.intp)
    part_of_row[new] = part_of_node[:m]
    reached = np.zeros(len(story_ids), dtype=bool)
    reached[reach_story] = True
    in_reached = old[reached[story_of[old]]]
    part_of_row[in_reached] = part_of_node[m + story_of[in_reached]]

    groups: list[list[int]] = [[] for _ in story_ids]
    for row in old[~reached[story_of[old]]].tolist():
        groups[story_of[row]].append(row)
    groups = [group for group in groups if group]
    again = np.flatnonzero(part_of_row >= 0)
    if len(again):
        parts = [again[members] for members in split_by_label(part_of_row[again])]
        # Neighbour weights of the new rows are at hand; the reached stories' rows need theirs.
        others = again[~is_new[again]]
        weights = sparse.vstack([new_weights, window.neighbour_weights(others)]).tocsr()
        order = np.argsort(np.concatenate([new, others]), kind="stable")
        groups.extend(window.cluster(parts, weights[order]))
    # Ordered by earliest member, as ``average_link`` orders them, for the id carry-over.
    return sorted(groups, key=lambda g: g[0])


def _loose_members(groups: Sequence[Sequence[int]], terms: Sequence[Any], support: int) -> set[int]:
    """The members (window rows) of ``groups`` that share fewer than two words with the rest of
    their group, unless the one word they share is used by at least ``support`` others."""
    rows = [row for group in groups if len(group) > 1 for row in group]
    if not rows:
        return set()
    group_of = np.concatenate(
        [np.full(len(g), n, dtype=np.int64) for n, g in enumerate(groups) if len(g) > 1]
    )
    own = [terms[row] for row in rows]
    sizes = np.array([len(t) for t in own], dtype=np.int64)
    occurrence_row = np.repeat(np.arange(len(rows)), sizes)
    word = np.concatenate(own).astype(np.int64)
    # How many members of its group use each (group, word) pair.
    _pairs, which, users = np.unique(
        group_of[occurrence_row] * (int(word.max(initial=0)) + 1) + word,
        return_inverse=True,
        return_counts=True,
    )
    others = users[which.ravel()] - 1
    shared = others > 0
    shared_words = np.bincount(occurrence_row, weights=shared, minlength=len(rows))
    # With exactly one shared word, the sum over shared words is that word's other users.
    one_word_users = np.bincount(occurrence_row, weights=others * shared, minlength=len(rows))
    loose = (shared_words < 2) & ~((shared_words == 1) & (one_word_users >= support))
    return {rows[i] for i in np.flatnonzero(loose).tolist()}


def _reached_stories(window: _Window, new: Any, expanded: Matrix, story_of: Any) -> tuple[Any, Any]:
    """(new row position, story number) pairs whose mean similarity reaches the threshold.

    ``expanded``: the new rows' neighbour-expanded vectors.  The similarities that reach
    ``REACH_FLOOR`` are found (``CosineIndex.pairs_reaching``); every other member of a
    story is below it, which bounds each mean from both sides.  Only the (new row, story)
    pairs these bounds leave undecided are computed member by member.
    """
    none = (np.zeros(0, dtype=np.intp), np.zeros(0, dtype=np.intp))
    stories = int(story_of.max()) + 1
    if not len(new) or stories <= 0:
        return none
    threshold = window.settings.threshold
    floor = min(REACH_FLOOR, threshold - EDGE_MARGIN)
    new_r, columns, values = window.index.pairs_reaching(expanded, floor)
    old = story_of[columns] >= 0
    new_r, columns, values = (
        new_r[old],
        columns[old],
        window.weigh(new[new_r[old]], columns[old], values[old]),
    )
    pairs, which = np.unique(new_r * stories + story_of[columns], return_inverse=True)
    if not len(pairs):
        return none
    pair_new, pair_story = np.divmod(pairs, stories)
    sizes = np.bincount(story_of[story_of >= 0], minlength=stories)[pair_story]
    known = np.bincount(which.ravel(), weights=values, minlength=len(pairs))
    counted = np.bincount(which.ravel(), minlength=len(pairs))
    low = known / sizes
    high = (known + (sizes - counted) * floor) / sizes
    keep = low >= threshold
    undecided = np.flatnonzero(~keep & (high >= threshold))
    if len(undecided):
        means = _mean_similarity(
            window, new, expanded, story_of, pair_new=pair_new[undecided], pair_story=pair_story[undecided]
        )
        keep[undecided] = means >= threshold
    return pair_new[keep], pair_story[keep]


def _mean_similarity(
    window: _Window, new: Any, expanded: Matrix, story_of: Any, *, pair_new: Any, pair_story: Any
) -> Any:
    """The mean similarity of each (new row position, story number) pair, member by member."""
    stories = int(story_of.max()) + 1
    by_story = np.argsort(story_of, kind="stable")
    by_story = by_story[story_of[by_story] >= 0]
    starts = np.searchsorted(story_of[by_story], np.arange(stories + 1))
    sizes = starts[pair_story + 1] - starts[pair_story]
    pair_of = np.repeat(np.arange(len(pair_new)), sizes)
    offsets = np.arange(len(pair_of)) - np.repeat(np.cumsum(sizes) - sizes, sizes)
    members = by_story[starts[pair_story][pair_of] + offsets]
    rows_new = pair_new[pair_of]
    similarity = row_dots(take_rows(expanded, rows_new), take_rows(window.vectors, members))
    similarity = window.weigh(new[rows_new], members, similarity)
    return np.bincount(pair_of, weights=similarity, minlength=len(pair_new)) / sizes


def _series_pairs(entries: Sequence[StoredEntry]) -> tuple[Any, Any]:
    """Index pairs of entries that are issues of a series: one feed, one title, different bodies.

    "Morning briefing", "Letters to the editor", "This week in science": a feed that reuses
    a headline for different text is running a series, and its issues are not one story
    however alike their titles and boilerplate are.  Headline-only entries are left alone:
    without a body nothing says the two are not the same report.
    """
    series: dict[tuple[str, str], list[int]] = {}
    for index, stored in enumerate(entries):
        text = stored.entry.text
        if text and not text.isspace():  # not text.strip(): that copies every body
            series.setdefault((stored.feed_url, _series_title(stored.entry.title)), []).append(index)
    rows: list[int] = []
    cols: list[int] = []
    for members in series.values():
        if len(members) < 2:
            continue
        leads = {a: _lead(entries[a]) for a in members}
        for a in members:
            for b in members:
                if a != b and leads[a] != leads[b]:
                    rows.append(a)
                    cols.append(b)
    return (np.array(rows, dtype=np.int64), np.array(cols, dtype=np.int64))


@functools.lru_cache(maxsize=32768)
def _series_title(title: str) -> str:
    return " ".join(_WORD.findall(title.casefold()))


def _lead(stored: StoredEntry) -> list[str]:
    return stored.entry.text.split(maxsplit=60)[:60]


def _seconds(entries: Sequence[StoredEntry]) -> Any:
    return np.array([entry_time(s).timestamp() for s in entries], dtype=np.float64)


def _fade_between(rows: Any, columns: Any, grace: float, half_life: float) -> Any:
    """Time-fading factors between two arrays of times (seconds), or None when all are within grace."""
    low = min(rows.min(), columns.min())
    if max(rows.max(), columns.max()) - low <= grace:
        return None
    # In half-lives since the earliest entry, float32: blocks of these are big allocations.
    row_half_lives = ((rows - low) / half_life).astype(np.float32)
    column_half_lives = ((columns - low) / half_life).astype(np.float32)
    beyond = np.abs(row_half_lives[:, None] - column_half_lives[None, :])
    beyond -= np.float32(grace / half_life)
    np.maximum(beyond, 0.0, out=beyond)
    np.negative(beyond, out=beyond)
    return np.exp2(beyond, out=beyond)


def _new_id(entry_id: str, taken: set[str]) -> str:
    attempt = 0
    while (candidate := story_id_for(entry_id, attempt)) in taken:
        attempt += 1
    return candidate


def _carry_over(
    groups: Sequence[Sequence[int]],
    entries: Sequence[StoredEntry],
    previous: Mapping[str, str],
    taken: set[str],
    copies: Mapping[str, Sequence[str]],
) -> list[str]:
    """One story id per group: an old id by largest overlap (one group per id), else a new one.

    Greedy by overlap size is what people expect: the group holding most of a story's
    entries *is* that story.  Ties go to the smaller id and the earlier group, so the
    outcome does not depend on dictionary order.  A kept entry counts with its ``copies``
    (kept id -> copy ids): when the original of a story arrives after a copy of it, the copy
    steps back and the original, new and in no story yet, takes over; the story keeps its id.
    """
    overlaps: Counter[tuple[str, int]] = Counter()
    for number, group in enumerate(groups):
        for index in group:
            kept = entries[index].id
            for member in (kept, *copies.get(kept, ())):
                old = previous.get(member)
                if old is not None:
                    overlaps[(old, number)] += 1
    chosen: dict[int, str] = {}
    used: set[str] = set()
    for (old, number), _count in sorted(
        overlaps.items(), key=lambda item: (-item[1], item[0][0], item[0][1])
    ):
        if number not in chosen and old not in used:
            chosen[number] = old
            used.add(old)
    result = []
    for number, group in enumerate(groups):
        story = chosen.get(number)
        if story is None:
            story = _new_id(entries[group[0]].id, taken)  # groups list members earliest first
            taken.add(story)
        result.append(story)
    return result


def _build_stories(
    entries: Sequence[StoredEntry],
    assignments: Mapping[str, str],
    window: _Window | None,
    when: Mapping[str, datetime],
) -> tuple[Story, ...]:
    """The ``Story`` records (``entries`` by ``when``, each entry's ``entry_time``, then id), newest first."""
    members: dict[str, list[StoredEntry]] = {}
    for stored in entries:
        members.setdefault(assignments[stored.id], []).append(stored)
    labels = _labels(window, assignments) if window is not None else {}
    stories = [
        Story(
            id=story_id,
            label=labels.get(story_id) or _clean_title(group[0].entry.title),
            entry_ids=tuple(s.id for s in group),
            first=when[group[0].id],
            last=when[group[-1].id],
        )
        for story_id, group in members.items()
    ]
    stories.sort(key=lambda s: (-s.last.timestamp(), s.id))
    return tuple(stories)


def _labels(window: _Window, assignments: Mapping[str, str]) -> dict[str, str]:
    """Story id → its most central member headline among the window's rows.

    Central: closest to the centroid of the story's rows.  Empty titles never label a story;
    among equals the earliest wins (rows are in date order), see ``_central_rows``.
    """
    entries = window.entries
    story_ids = sorted({assignments[s.id] for s in entries})
    number = {story: n for n, story in enumerate(story_ids)}
    story_of = np.array([number[assignments[s.id]] for s in entries], dtype=np.intp)
    membership = sparse.csr_matrix(
        (np.ones(len(entries)), (story_of, np.arange(len(entries)))), shape=(len(story_ids), len(entries))
    )
    sizes = np.asarray(membership.sum(axis=1)).ravel()
    centroids = sparse.diags(1.0 / sizes) @ (membership @ window.vectors)
    if sparse.issparse(centroids):
        centroids = sparse.csr_matrix(centroids, dtype=np.float32)
    scores = row_dots(window.vectors, take_rows(centroids, story_of)).astype(np.float32)
    titled = np.array([bool(s.entry.title.strip()) for s in entries])
    best = _central_rows(story_of, scores, titled)
    return {story_ids[story_of[row]]: _clean_title(entries[row].entry.title) for row in best.tolist()}


def _central_rows(story_of: Any, scores: Any, titled: Any) -> Any:
    """Each story's label row (stories in number order): the earliest of its titled rows
    (all its rows if none is titled) whose score is within ``LABEL_TIE`` of the best.

    Scores equal but for float rounding are a tie: both members of a two-member story score
    (1 + cos) / 2, and which float32 sum came out a unit in the last place higher changed
    with the word weights, i.e. with every unrelated article added to the window, swapping
    the story's label (and so the lead ``snapshot`` shows, and its updated time) run after run.
    """
    stories = int(story_of.max()) + 1 if len(story_of) else 0
    any_titled = np.zeros(stories, dtype=bool)
    np.logical_or.at(any_titled, story_of, titled)
    eligible = titled == any_titled[story_of]
    top = np.full(stories, -np.inf)
    np.maximum.at(top, story_of[eligible], scores[eligible])
    near_top = np.flatnonzero(eligible & (scores >= top[story_of] - LABEL_TIE))
    _stories, first = np.unique(story_of[near_top], return_index=True)  # rows ascend: the earliest
    return near_top[first]


def _clean_title(title: str) -> str:
    return " ".join(title.split()) or "(untitled)"


def bcubed(predicted: Mapping[str, str], gold: Mapping[str, str]) -> tuple[float, float, float]:
    """B-cubed precision, recall and F1 of a clustering against gold labels (same keys).

    Per item: the share of its predicted cluster that shares its gold cluster (precision),
    and the share of its gold cluster that shares its predicted cluster (recall), averaged.
    Lives here so that the benchmark and the tests measure the same thing.
    """
    items = [key for key in gold if key in predicted]
    if not items:
        return (math.nan, math.nan, math.nan)
    predicted_sizes = Counter(predicted[k] for k in items)
    gold_sizes = Counter(gold[k] for k in items)
    both = Counter((predicted[k], gold[k]) for k in items)
    precision = sum(both[(predicted[k], gold[k])] / predicted_sizes[predicted[k]] for k in items) / len(items)
    recall = sum(both[(predicted[k], gold[k])] / gold_sizes[gold[k]] for k in items) / len(items)
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return (precision, recall, f1)
