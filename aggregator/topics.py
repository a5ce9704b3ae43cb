"""Stories → topics: the configured ones first, then automatic ones named by their key terms.

In: the ``Story`` records from ``group_stories``, the ``StoredEntry`` records they were
built from, the configured ``TopicRule`` list and optionally each feed's configured topics.
Out: the same stories with ``topics`` filled in.  Pure and deterministic.

- A configured topic holds every story one of whose entries has one of its keywords (a word
  or phrase, case-insensitive, matched on whole words) in its title or text, or comes from a
  feed configured with that topic.  A story can be in several configured topics.
- Then every story may get one automatic topic: stories are clustered again, much more
  coarsely (average link over TF-IDF vectors of their members' titles and leads, each feed's
  boilerplate left out as for stories, see ``aggregator.stories.comparable_entries``, per
  connected component of the pairs that reach the threshold, see ``aggregator.clustering``),
  and each group of at least ``min_stories`` stories is named after its 2–3 strongest shared
  terms as its stories write them, e.g. "Samsung / Galaxy / Android".  These names follow
  the news and change with it; newsletters that must stay put should select configured topics.
  A story whose members did not change keeps the name it had (``kept``), and one that
  gained members keeps its name where no group is named now (``had``).
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import re
from collections import Counter, OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import sparse
from sklearn.preprocessing import normalize

from aggregator.clustering import EDGE_MARGIN, CosineIndex, average_link, row_gram_blocks, threshold_edges
from aggregator.stories import (
    ComparedEntries,
    Story,
    TextTerms,
    columns_of,
    comparable_entries,
    entry_text,
    term_name,
    term_table_epoch,
    text_terms,
    written_forms,
)
from aggregator.types import StoredEntry


@dataclass(frozen=True, slots=True)
class TopicRule:
    """A configured topic: stories mentioning any of ``keywords`` belong to it."""

    name: str
    keywords: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class TopicSettings:
    """How automatic topics are made; ``automatic=False`` keeps only the configured ones."""

    automatic: bool = True
    # Mean similarity two groups of stories must reach to share a topic (average link).
    threshold: float = 0.1
    min_stories: int = 2
    terms: int = 3  # at most this many terms name a topic
    # A group's stories must share at least this many terms: one common word ("life", "pay")
    # is a coincidence, two are a subject.
    min_shared_terms: int = 2
    lead_words: int = 60


def keyword_pattern(keywords: Sequence[str]) -> re.Pattern[str] | None:
    """One case-insensitive regex matching any keyword as whole words; spaces match any whitespace.

    ``(?<!\\w)``/``(?!\\w)`` rather than ``\\b`` so that keywords starting or ending with a
    symbol ("C++", ".NET") still match.
    """
    alternatives = sorted(
        {r"\s+".join(re.escape(word) for word in keyword.split()) for keyword in keywords if keyword.strip()},
        key=lambda text: (-len(text), text),
    )
    if not alternatives:
        return None
    return re.compile(r"(?<!\w)(?:" + "|".join(alternatives) + r")(?!\w)", re.IGNORECASE)


def assign_topics(
    stories: Sequence[Story],
    entries: Sequence[StoredEntry],
    rules: Sequence[TopicRule] = (),
    *,
    feed_topics: Mapping[str, Sequence[str]] | None = None,
    settings: TopicSettings = TopicSettings(),
    kept: Mapping[str, str | None] | None = None,
    had: Mapping[str, str] | None = None,
    compared: ComparedEntries | None = None,
) -> tuple[Story, ...]:
    """Return ``stories`` (same order) with ``topics``: configured names in rule order, then automatic.

    ``feed_topics`` maps a feed URL (as in ``StoredEntry.feed_url``) to the topics configured
    for that feed; its topic names are added like keyword matches.  ``kept`` maps the ids of
    stories whose members did not change to the automatic topic they had (or None): they
    keep it, and another story grouped with them takes it too.  The names follow the whole
    population of stories, which changes as entries enter and leave the story window; a
    story whose news did not change must not be renamed for that.  ``had`` maps the ids of
    other stories to the automatic topic they had: one that no group names now keeps it (the
    stories it shared it with may have left the window).  ``compared`` is the grouping's
    ``StoryGrouping.compared``: when ``entries`` are the records it grouped, the automatic
    topics read them as compared there instead of learning each feed's boilerplate again.
    """
    by_id = {s.id: s for s in entries}
    matcher = _Matcher.of(rules, feed_topics)
    configured_names = [rule.name for rule in rules]
    topics = [list(matcher.topics_of([by_id[i] for i in story.entry_ids if i in by_id])) for story in stories]
    kept_at = {index: kept[story.id] for index, story in enumerate(stories) if kept and story.id in kept}

    if settings.automatic:
        automatic: dict[int, str] = {}
        if len(stories) >= settings.min_stories:
            taken = set(configured_names) | {name for names in topics for name in names}
            taken |= {name for name in kept_at.values() if name is not None}
            automatic = _automatic_topics(
                stories, by_id, settings, taken, configured=topics, kept=kept_at, compared=compared
            )
        automatic.update({index: name for index, name in kept_at.items() if name is not None})
        for index, story in enumerate(stories):
            if index not in automatic and had and story.id in had:
                automatic[index] = had[story.id]
        for index, name in sorted(automatic.items()):
            if name not in topics[index]:
                topics[index].append(name)

    return tuple(
        dataclasses.replace(story, topics=tuple(names)) for story, names in zip(stories, topics, strict=True)
    )


def configured_topics(
    stories: Sequence[Sequence[StoredEntry]],
    rules: Sequence[TopicRule] = (),
    *,
    feed_topics: Mapping[str, Sequence[str]] | None = None,
) -> list[tuple[str, ...]]:
    """The configured topics of each story (given by its members), as ``assign_topics`` gives
    them, without the automatic one: for relabelling stored stories after feeds.yaml changed."""
    # Not remembered: a relabel reads every stored story once, and the cache would then hold
    # the texts of the last 65,536 of them instead of the ones the next polls ask about again.
    matcher = _Matcher.of(rules, feed_topics, remember=False)
    return [matcher.topics_of(members) for members in stories]


def configured_names(rules: Sequence[TopicRule], feed_topics: Mapping[str, Sequence[str]]) -> tuple[str, ...]:
    """Every configured topic name (of the rules, then the feeds'), each once."""
    return tuple(
        dict.fromkeys([*(rule.name for rule in rules), *(t for ts in feed_topics.values() for t in ts)])
    )


def topic_fingerprint(rules: Sequence[TopicRule], feed_topics: Mapping[str, Sequence[str]]) -> str:
    """A digest of everything that decides a story's configured topics: the rules in order,
    their keywords, and each feed's topics (feeds without any do not count)."""
    described = {
        "matching": _MATCHING_VERSION,
        "rules": [[rule.name, list(rule.keywords)] for rule in rules],
        "feeds": sorted([url, list(names)] for url, names in feed_topics.items() if names),
    }
    text = json.dumps(described, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


# Raised when how keywords match changes (``keyword_pattern``, ``_mentions``): stored stories
# are then relabelled as after an edit of their rules.
_MATCHING_VERSION = 1


@dataclass(frozen=True, slots=True)
class _Matcher:
    """The configured rules compiled once, for the stories of one call."""

    patterns: tuple[tuple[str, re.Pattern[str] | None], ...]
    feed_topics: Mapping[str, Sequence[str]]
    order: Mapping[str, int]
    mentions: Callable[[re.Pattern[str], str, str], bool]

    @classmethod
    def of(
        cls,
        rules: Sequence[TopicRule],
        feed_topics: Mapping[str, Sequence[str]] | None,
        *,
        remember: bool = True,
    ) -> _Matcher:
        return cls(
            tuple((rule.name, keyword_pattern(rule.keywords)) for rule in rules),
            feed_topics or {},
            {rule.name: index for index, rule in enumerate(rules)},
            _mentions if remember else _search,
        )

    def topics_of(self, members: Sequence[StoredEntry]) -> tuple[str, ...]:
        """Keyword matches and the members' feed topics, in rule order (others by name)."""
        names: list[str] = []
        for name, pattern in self.patterns:
            if pattern is not None and any(
                self.mentions(pattern, m.entry.title, m.entry.text) for m in members
            ):
                names.append(name)
        for member in members:
            names.extend(self.feed_topics.get(member.feed_url, ()))
        order = self.order
        return tuple(sorted(set(names), key=lambda name: (order.get(name, len(order)), name)))


def _search(pattern: re.Pattern[str], title: str, text: str) -> bool:
    return pattern.search(f"{title}\n{text}") is not None


# Every poll asks again about mostly the same texts (a pure function, so remembered).
_mentions = functools.lru_cache(maxsize=65536)(_search)


def _automatic_topics(
    stories: Sequence[Story],
    by_id: Mapping[str, StoredEntry],
    settings: TopicSettings,
    taken: set[str],
    *,
    configured: Sequence[Sequence[str]],
    kept: Mapping[int, str | None],
    compared: ComparedEntries | None = None,
) -> dict[int, str]:
    """Story index → automatic topic name, for the stories in a group big enough to name.

    The stories in ``kept`` (index → the name they keep, or None) are left out of the result;
    a group holding some takes their name, the most common of them, instead of one of its own."""
    # What a footer or an alert's keyword makes every story of a feed share is no topic.
    entries = list(by_id.values())
    reused = None if compared is None else compared.reuse(entries, settings.lead_words)
    as_compared = reused if reused is not None else comparable_entries(entries, settings.lead_words)
    compared_of = dict(zip(by_id, as_compared, strict=True))
    texts_of = [
        sorted({entry_text(compared_of[i], settings.lead_words) for i in story.entry_ids if i in by_id})
        for story in stories
    ]
    analysed = dict(zip(*_distinct(texts_of), strict=True))
    matrix, terms = _story_vectors(texts_of, analysed)
    has_terms = np.diff(matrix.indptr) > 0
    if int(has_terms.sum()) < settings.min_stories:
        return {}
    cosines = CosineIndex(matrix)
    edge_rows, edge_columns, _ = threshold_edges(cosines, matrix, settings.threshold - EDGE_MARGIN)

    candidates: list[list[int]] = []
    groups = average_link(
        len(stories), (edge_rows, edge_columns), settings.threshold, row_gram_blocks(matrix)
    )
    for group in groups:
        members = [story for story in group if has_terms[story]]
        if len(members) < settings.min_stories:
            continue
        # Stories that already share a configured topic need no second name for it.
        if set.intersection(*(set(configured[i]) for i in members)):
            continue
        candidates.append(members)
    named = [
        (members, chosen)
        for members, chosen in zip(
            candidates, _shared_terms(matrix, candidates, terms, settings), strict=True
        )
        if chosen
    ]
    # Each term as the stories most often write it ("Galaxy", "iPhone"); ties: the form seen first.
    forms = written_forms(
        [analysed[text] for texts in texts_of for text in texts], [t for _, chosen in named for t in chosen]
    )
    result: dict[int, str] = {}
    for members, chosen in named:
        inherited = _most_common([kept[story] for story in members if story in kept])
        name = inherited or " / ".join(forms.get(term, term) for term in chosen)
        if inherited is None and name in taken:
            continue
        taken.add(name)
        for story in members:
            if story not in kept:
                result[story] = name
    return result


def _most_common(names: Sequence[str | None]) -> str | None:
    """The name most stories have (ties: the one that sorts first), or None."""
    counts = Counter(name for name in names if name is not None)
    return min(counts, key=lambda name: (-counts[name], name)) if counts else None


def _distinct(texts_of: Sequence[Sequence[str]]) -> tuple[list[str], list[TextTerms]]:
    """Every text once, in order of appearance, with its term counts."""
    texts = list(dict.fromkeys(text for texts in texts_of for text in texts))
    return texts, text_terms(texts)


def _story_vectors(texts_of: Sequence[Sequence[str]], analysed: Mapping[str, TextTerms]) -> tuple[Any, Any]:
    """TF-IDF rows (sublinear tf, as ``TfidfVectorizer``), one per story, and each column's term number.

    One document per story: each distinct member text once, so that a story with fifty
    syndicated copies does not outweigh one with five original reports.
    """
    summed = [_summed_terms(texts, analysed) for texts in texts_of]
    while len(_SUMMED) > _SUMMED_MAX:
        _SUMMED.popitem(last=False)
    where = columns_of([terms for terms, _ in summed])
    story_counts = where.matrix(np.concatenate([counts for _, counts in summed] or [np.zeros(0)]))
    df = np.bincount(story_counts.indices, minlength=story_counts.shape[1])
    idf = np.log((1 + len(texts_of)) / (1 + df)) + 1.0
    story_counts.data = (np.log(story_counts.data) + 1.0) * idf[story_counts.indices]
    return normalize(story_counts).astype(np.float32), where.terms


# A story's summed term counts by its distinct texts: most stories are the same from one poll
# to the next (only those the new entries joined change), so each is summed once.  Bounded to
# a few polls' stories (a story's arrays are a few KB; the texts are shared with other caches).
_SUMMED: OrderedDict[tuple[str, ...], tuple[int, Any, Any]] = OrderedDict()
_SUMMED_MAX = 4096


def _summed_terms(texts: Sequence[str], analysed: Mapping[str, TextTerms]) -> tuple[Any, Any]:
    """(distinct term numbers ascending, their counts summed over ``texts``)."""
    key, epoch = tuple(texts), term_table_epoch()
    known = _SUMMED.get(key)
    if known is not None and known[0] == epoch:
        _SUMMED.move_to_end(key)
        return known[1], known[2]
    records = [analysed[text] for text in texts]
    terms: Any
    counts: Any
    if records:
        terms, which = np.unique(np.concatenate([r.terms for r in records]), return_inverse=True)
        counts = np.bincount(which.ravel(), weights=np.concatenate([r.counts for r in records]))
    else:
        terms, counts = np.zeros(0, dtype=np.int64), np.zeros(0)
    _SUMMED[key] = (epoch, terms, counts)
    return terms, counts


def _shared_terms(
    matrix: Any, groups: Sequence[Sequence[int]], terms: Any, settings: TopicSettings
) -> list[list[str]]:
    """Each group's strongest shared terms, strongest first; none when they share too little.

    A term counts as shared when at least two stories and half of the group use it: a
    name must say what the stories have in common, not what the biggest one is about.
    Ties go to the term that sorts first (columns are in term order).
    """
    if not groups:
        return []
    sizes = np.array([len(group) for group in groups])
    membership = sparse.csr_matrix(
        (
            np.ones(int(sizes.sum()), dtype=np.float32),
            (np.repeat(np.arange(len(groups)), sizes), np.concatenate(groups)),
        ),
        shape=(len(groups), matrix.shape[0]),
    )
    present = matrix.copy()
    present.data[:] = 1.0
    weight = sparse.csr_matrix(membership @ matrix)
    shared = sparse.csr_matrix(membership @ present)
    weight.sort_indices()
    shared.sort_indices()
    group = np.repeat(np.arange(len(groups)), np.diff(weight.indptr))
    common = (weight.data > 0) & (shared.data >= 2) & (shared.data * 2 >= sizes[group])
    group, column, strength = group[common], weight.indices[common], weight.data[common]
    rounded = np.array([round(value, 6) for value in strength.tolist()])
    order = np.lexsort((column, -rounded, group))
    counts = np.bincount(group, minlength=len(groups))
    chosen: list[list[str]] = [[] for _ in groups]
    for position in order.tolist():
        number = int(group[position])
        if counts[number] >= settings.min_shared_terms and len(chosen[number]) < settings.terms:
            chosen[number].append(term_name(int(terms[int(column[position])])))
    return chosen
