"""Average-link clustering per component, and the TF-IDF rows stories are compared by.

The shortcuts in ``aggregator.clustering`` (clustering each connected component of the
pairs that reach the threshold on its own, a small average link written out for a handful
of items, products block by block) must give exactly what one scipy linkage over
everything gives; the TF-IDF built from remembered term counts must be scikit-learn's.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import sparse
from scipy.cluster.hierarchy import fcluster, linkage
from scipy.spatial.distance import squareform
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.preprocessing import normalize

from aggregator import stories
from aggregator.clustering import CosineIndex, average_link, cluster_block, row_gram_blocks, threshold_edges
from aggregator.stories import _tokens, entry_text, text_terms, vectorize_lexical
from aggregator.types import Entry


def scipy_groups(rows: Any, threshold: float) -> list[list[int]]:
    """One average-link tree over every item, cut at ``threshold``: the reference."""
    if rows.shape[0] == 1:
        return [[0]]
    similarity = (rows @ rows.T).toarray().astype(np.float32)
    distance = np.clip(1.0 - similarity, 0.0, 2.0)
    np.fill_diagonal(distance, 0.0)
    distance = (distance + distance.T) / 2
    labels = fcluster(
        linkage(squareform(distance, checks=False).astype(np.float64), method="average"),
        t=1.0 - threshold,
        criterion="distance",
    )
    groups: dict[int, list[int]] = {}
    for index, label in enumerate(labels):
        groups.setdefault(int(label), []).append(index)
    return sorted(groups.values(), key=lambda g: g[0])


def groups_by_component(rows: Any, threshold: float) -> list[list[int]]:
    index = CosineIndex(rows)
    edge_rows, edge_columns, _ = threshold_edges(index, rows, threshold - 1e-4)

    return average_link(rows.shape[0], (edge_rows, edge_columns), threshold, row_gram_blocks(rows))


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    count=st.integers(1, 70),
    threshold=st.floats(0.05, 0.6),
    topics=st.integers(1, 12),
)
def test_clustering_by_component_is_one_linkage_over_everything(
    seed: int, count: int, threshold: float, topics: int
) -> None:
    # Sparse nonnegative rows drawn around a few topics, as TF-IDF rows of news are.
    rng = np.random.default_rng(seed)
    centres = rng.random((topics, 40)) ** 4
    rows = centres[rng.integers(0, topics, count)] * rng.random((count, 40))
    rows[rng.random(rows.shape) < 0.6] = 0.0
    rows[:, 0] += 1e-3  # no empty row
    matrix = sparse.csr_matrix(normalize(rows).astype(np.float32))

    assert groups_by_component(matrix, threshold) == scipy_groups(matrix, threshold)


def test_big_components_go_through_scipy_and_agree() -> None:
    # 60 near-copies: one component bigger than the small path takes.
    rng = np.random.default_rng(1)
    base = rng.random(30)
    rows = sparse.csr_matrix(normalize(base + 0.3 * rng.random((60, 30))).astype(np.float32))
    assert groups_by_component(rows, 0.97) == scipy_groups(rows, 0.97)


def test_cosines_block_by_block_match_the_dense_product() -> None:
    rng = np.random.default_rng(2)
    dense = rng.random((50, 20)) * (rng.random((50, 20)) < 0.3)
    rows = sparse.csr_matrix(normalize(dense).astype(np.float32))
    expected = (rows @ rows.T).toarray()

    assert np.allclose(CosineIndex(rows).dots(rows[:7]), expected[:7], atol=1e-6)
    assert np.allclose(CosineIndex(rows.toarray()).dots(rows.toarray()[:7]), expected[:7], atol=1e-6)
    pair_rows, pair_columns, values = threshold_edges(CosineIndex(rows), rows, 0.5)
    assert set(zip(pair_rows.tolist(), pair_columns.tolist(), strict=True)) == {
        (i, j) for i in range(50) for j in range(i + 1, 50) if expected[i, j] >= 0.5
    }
    assert np.allclose(values, expected[pair_rows, pair_columns], atol=1e-6)


HEADLINES = [
    "Volcano erupts in Iceland, flights grounded across Europe",
    "Iceland's Reykjanes volcano erupts again, ash reaches Europe",
    "Central bank raises interest rates to fight inflation",
    "Samsung Galaxy S5 sales start strong in the U.S.",
    "US stocks rise 7.4% as Q1 profits beat forecasts",
    "Airlines cancel hundreds of flights as Iceland volcano erupts",
]


@pytest.mark.parametrize("boost", [0.0, 0.5])
def test_story_vectors_are_scikit_learns_tfidf_with_names_weighted_up(boost: float) -> None:
    entries = [
        Entry(guid=str(n), url=None, canonical_url=None, title=title, text=f"Reported on day {n}. {title}.")
        for n, title in enumerate(HEADLINES)
    ]
    docs = [_tokens(entry_text(e)) for e in entries]
    tfidf = TfidfVectorizer(analyzer=lambda doc: [token for token, _ in doc], sublinear_tf=True)
    expected = tfidf.fit_transform(docs)
    if boost:
        capitalized: dict[str, int] = {}
        informative: dict[str, int] = {}
        for doc in docs:
            for token, kind in doc:
                if kind >= 0:
                    informative[token] = informative.get(token, 0) + 1
                    capitalized[token] = capitalized.get(token, 0) + kind
        weights = [
            1 + boost * (capitalized[t] / informative[t] if informative.get(t) else 0.5)
            for t in tfidf.get_feature_names_out()
        ]
        expected = normalize(expected @ sparse.diags(weights))

    actual = vectorize_lexical(entries, entity_boost=boost)

    assert actual.shape == expected.shape
    assert np.allclose(actual.toarray(), expected.toarray(), atol=1e-6)


# Words that exercise the tokenizer: names, stop words, numbers, hyphens, possessives,
# "U.S."-style abbreviations, sentence ends, and characters that are no word at all.
_PIECES = [
    "Putin",
    "putin",
    "Trump's",
    "the",
    "The",
    "and",
    "U.S.",
    "US",
    "it",
    "IT",
    "7.4%",
    "Q1",
    "summit.",
    "summit,",
    "cease-fire",
    "Cease-Fire",
    "talks?",
    "said:",
    "—",
    "(AP)",
    "café",
    "Anchorage;",
    "x",
    "2025",
    "Talks",
    "talks",
    "of",
    "On",
    "ceasefire!",
    "’s",
    "-",
    "...",
]


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.lists(st.lists(st.sampled_from(_PIECES), max_size=12), max_size=4).map(
            lambda lines: "\n".join(" ".join(words) for words in lines)
        ),
        min_size=1,
        max_size=6,
    )
)
def test_term_counts_of_a_batch_are_those_of_each_text_token_by_token(texts: list[str]) -> None:
    # ``text_terms`` counts a whole batch at once from remembered chunks; the reference
    # counts each text's tokens one by one, as ``_words`` reads them.
    for text, found in zip(texts, text_terms(texts), strict=True):
        counts: dict[str, list[int]] = {}
        forms: dict[tuple[str, str], int] = {}
        for parts, kind in stories._words(text):
            for token, written, _term, _form in parts:
                tally = counts.setdefault(token, [0, 0, 0])
                tally[0] += 1
                if kind != stories._UNSURE:
                    tally[1] += kind
                    tally[2] += 1
                forms[(token, written)] = forms.get((token, written), 0) + 1
        names = [stories._TERMS[t] for t in found.terms.tolist()]
        assert names == sorted(counts, key=lambda token: stories._TERM_NUMBERS[token])
        assert [
            [a, b, c] for a, b, c in zip(found.counts, found.capitalized, found.informative, strict=True)
        ] == [counts[name] for name in names]
        assert [(stories._TERMS[t], stories._FORMS[f], n) for t, f, n in found.forms.tolist()] == [
            (token, written, n) for (token, written), n in forms.items()
        ]


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.lists(st.sampled_from(_PIECES), max_size=12).map(" ".join), min_size=1, max_size=4),
    st.integers(0, 3),
)
def test_term_columns_are_in_term_order_while_new_terms_keep_coming(texts: list[str], fresh: int) -> None:
    # New terms are numbered after the ones seen before (here: made-up words, new to the
    # table), and the column order must still be the terms' own order.
    made_up = [f"zz{n}{len(stories._TERMS)}qq aa{n}{len(stories._TERMS)}" for n in range(fresh)]
    records = text_terms(texts) + text_terms(made_up)
    columns = stories.term_columns(records)
    expected = sorted({stories._TERMS[t] for record in records for t in record.terms.tolist()})
    assert columns.names == expected
    for record, start in zip(records, columns.indptr, strict=False):
        where = columns.columns[start : start + len(record.terms)]
        assert [expected[c] for c in where.tolist()] == [stories._TERMS[t] for t in record.terms.tolist()]


@settings(max_examples=150, deadline=None)
@given(
    # Any white space between pieces, and often past 300 characters, where a word is cut.
    st.lists(
        st.tuples(st.sampled_from(_PIECES), st.sampled_from([" ", "\n", "\t", "\u00a0", "  "])), max_size=80
    ).map(lambda pairs: "".join(piece + space for piece, space in pairs))
)
def test_title_case_is_most_content_words_capitalized(text: str) -> None:
    words = [
        w
        for w in stories._WORD.findall(text[:300])
        if w[0].isalpha() and w.lower() not in stories.ENGLISH_STOP_WORDS
    ]
    expected = len(words) < 3 or sum(w[0].isupper() for w in words) / len(words) > 0.6
    assert stories._is_title_case(text) == expected


def test_a_block_bigger_than_the_split_size_is_cut_into_components_and_agrees() -> None:
    # 800 items: 650 around two close centres (one component over the split size, two
    # clusters at the higher threshold) and 150 around a third.
    rng = np.random.default_rng(3)
    centres = rng.random((3, 30)) ** 3
    centres[1] = centres[0] + 0.3 * rng.random(30)
    rows = centres[np.r_[rng.integers(0, 2, 650), np.full(150, 2)]] + 0.15 * rng.random((800, 30))
    matrix = sparse.csr_matrix(normalize(rows).astype(np.float32))
    similarity = (matrix @ matrix.T).toarray()

    for threshold in (0.9, 0.97):
        assert cluster_block(similarity, threshold) == scipy_groups(matrix, threshold)


def news_like_rows(count: int, *, common_only_every: int) -> Any:
    """TF-IDF-like rows of news: words of one of 100 events plus Zipf-distributed common words,
    weighted by IDF, so that a few columns are in most rows (nearly every product is
    nonzero) but weigh little; every ``common_only_every``-th row has only common words."""
    rng = np.random.default_rng(4)
    vocabulary = 20000
    weights = 1 / np.arange(1, 1001) ** 1.05
    events = [rng.choice(np.arange(1000, vocabulary), size=60, replace=False) for _ in range(100)]
    rows, columns = [], []
    for row in range(count):
        words = rng.choice(1000, size=15, p=weights / weights.sum())
        if row % common_only_every:
            words = np.concatenate([words, rng.choice(events[rng.integers(0, 100)], size=15)])
        rows.extend([row] * len(words))
        columns.extend(words.tolist())
    counts = sparse.csr_matrix((np.ones(len(rows)), (rows, columns)), shape=(count, vocabulary))
    df = np.bincount(counts.indices, minlength=vocabulary)
    idf = np.log((1 + count) / (1 + df)) + 1
    return sparse.csr_matrix(normalize(counts @ sparse.diags(idf)).astype(np.float32))


@pytest.mark.parametrize("least", [0.05, 0.15, 0.3])
@pytest.mark.parametrize("common_only_every", [7, 1000])
def test_pairs_reaching_a_threshold_are_all_found_and_only_those(
    least: float, common_only_every: int
) -> None:
    matrix = news_like_rows(1000, common_only_every=common_only_every)
    expected = (matrix @ matrix.T).toarray()[:400]

    found_rows, found_columns, values = CosineIndex(matrix).pairs_reaching(matrix[:400], least)

    found = set(zip(found_rows.tolist(), found_columns.tolist(), strict=True))
    # Pairs within float rounding of the threshold may go either way.
    clear = np.abs(expected - least) > 1e-5
    assert {(i, j) for i, j in zip(*np.nonzero((expected >= least) & clear), strict=True)} <= found
    assert not found & {(i, j) for i, j in zip(*np.nonzero((expected < least) & clear), strict=True)}
    assert np.allclose(values, expected[found_rows, found_columns], atol=1e-5)
