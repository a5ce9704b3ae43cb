"""Stories → topics: the configured ones first, then automatic ones named by their key terms.

In: the ``Story`` records from ``group_stories``, the ``StoredEntry`` records they were
built from, the configured ``TopicRule`` list and optionally each feed's configured topics.
Out: the same stories with ``topics`` filled in.  Pure and deterministic.

- A configured topic holds every story one of whose entries has one of its keywords (a word
  or phrase, case-insensitive, matched on whole words) in its title or text, or comes from a
  feed configured with that topic.  A story can be in several configured topics.
- Then every story may get one automatic topic: stories are clustered again, much more
  coarsely (average link over TF-IDF vectors of their members' titles and leads), and each
  group of at least ``min_stories`` stories is named after its 2–3 strongest shared terms,
  e.g. "Samsung / Galaxy / Android".  These names follow the news and change with it;
  newsletters that must stay put should select configured topics.
"""

from __future__ import annotations

import dataclasses
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.cluster.hierarchy import fcluster, linkage
from scipy.spatial.distance import squareform
from sklearn.feature_extraction.text import TfidfVectorizer

from aggregator.stories import Story, entry_text, tokens_with_forms
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
) -> tuple[Story, ...]:
    """Return ``stories`` (same order) with ``topics``: configured names in rule order, then automatic.

    ``feed_topics`` maps a feed URL (as in ``StoredEntry.feed_url``) to the topics configured
    for that feed; its topic names are added like keyword matches.
    """
    by_id = {s.id: s for s in entries}
    patterns = [(rule.name, keyword_pattern(rule.keywords)) for rule in rules]
    configured_names = [rule.name for rule in rules]
    feed_topics = feed_topics or {}

    topics: list[list[str]] = []
    for story in stories:
        members = [by_id[i] for i in story.entry_ids if i in by_id]
        names: list[str] = []
        for name, pattern in patterns:
            if pattern is not None and any(
                pattern.search(f"{m.entry.title}\n{m.entry.text}") for m in members
            ):
                names.append(name)
        for member in members:
            names.extend(feed_topics.get(member.feed_url, ()))
        order = {name: index for index, name in enumerate(configured_names)}
        unique = sorted(set(names), key=lambda name: (order.get(name, len(order)), name))
        topics.append(unique)

    if settings.automatic and len(stories) >= settings.min_stories:
        taken = set(configured_names) | {name for names in topics for name in names}
        for index, name in _automatic_topics(stories, by_id, settings, taken, topics).items():
            topics[index].append(name)

    return tuple(
        dataclasses.replace(story, topics=tuple(names)) for story, names in zip(stories, topics, strict=True)
    )


def _automatic_topics(
    stories: Sequence[Story],
    by_id: Mapping[str, StoredEntry],
    settings: TopicSettings,
    taken: set[str],
    configured: Sequence[Sequence[str]],
) -> dict[int, str]:
    """Story index → automatic topic name, for the stories in a group big enough to name."""
    # One document per story: each distinct member text once, so that a story with fifty
    # syndicated copies does not outweigh one with five original reports.
    docs: list[list[str]] = []
    forms: dict[str, Counter[str]] = {}
    for story in stories:
        texts = sorted(
            {entry_text(by_id[i].entry, settings.lead_words) for i in story.entry_ids if i in by_id}
        )
        doc: list[str] = []
        for text in texts:
            for token, form in tokens_with_forms(text):
                doc.append(token)
                # Not setdefault(token, Counter()): that builds a Counter per token.
                counts = forms.get(token)
                if counts is None:
                    counts = forms[token] = Counter()
                counts[form] += 1
        docs.append(doc)
    if sum(1 for doc in docs if doc) < settings.min_stories:
        return {}
    tfidf = TfidfVectorizer(analyzer=_identity, sublinear_tf=True, dtype=np.float32)
    matrix = tfidf.fit_transform(docs)
    terms = tfidf.get_feature_names_out()
    similarity = (matrix @ matrix.T).toarray()
    distance = np.clip(1.0 - similarity, 0.0, 1.0)
    np.fill_diagonal(distance, 0.0)
    distance = (distance + distance.T) / 2
    labels = fcluster(
        linkage(squareform(distance, checks=False).astype(np.float64), method="average"),
        t=1.0 - settings.threshold,
        criterion="distance",
    )
    groups: dict[int, list[int]] = {}
    for index, label in enumerate(labels):
        if docs[index]:
            groups.setdefault(int(label), []).append(index)

    result: dict[int, str] = {}
    for members in sorted(groups.values(), key=lambda g: g[0]):
        if len(members) < settings.min_stories:
            continue
        # Stories that already share a configured topic need no second name for it.
        if set.intersection(*(set(configured[i]) for i in members)):
            continue
        name = _name(matrix, members, terms, forms, settings)
        if not name or name in taken:
            continue
        taken.add(name)
        for index in members:
            result[index] = name
    return result


def _name(
    matrix: Any,
    members: Sequence[int],
    terms: Any,
    forms: Mapping[str, Counter[str]],
    settings: TopicSettings,
) -> str:
    """The group's strongest shared terms, as people write them; "" when they share too little.

    A term counts as shared when at least two stories and half of the group use it: a
    name must say what the stories have in common, not what the biggest one is about.
    """
    block = matrix[list(members)]
    weight = np.asarray(block.sum(axis=0)).ravel()
    shared = np.asarray((block > 0).sum(axis=0)).ravel()
    common = [i for i in np.flatnonzero(weight) if shared[i] >= 2 and shared[i] * 2 >= len(members)]
    if len(common) < settings.min_shared_terms:
        return ""
    order = sorted(common, key=lambda i: (-round(float(weight[i]), 6), terms[i]))
    words = [forms[terms[i]].most_common(1)[0][0] for i in order[: settings.terms]]
    return " / ".join(words)


def _identity(tokens: list[str]) -> list[str]:
    return tokens
