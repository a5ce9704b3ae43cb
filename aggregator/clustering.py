"""Cosine similarities of many short texts, and average-link clusters cut at a threshold, fast.

In: matrices with one L2-normalized row per item (scipy sparse, e.g. TF-IDF, or a numpy
array, e.g. embeddings).  Out: dense blocks of dot products (``CosineIndex``) and groups of
item indexes (``average_link``).  Pure; used by ``aggregator.stories`` and ``aggregator.topics``.

What makes this cheaper than a dense n × n similarity matrix and one big linkage: average
link merges two groups only when their mean similarity reaches the threshold, so at least
one pair across them reaches it.  Every cluster therefore lies inside one connected
component of the graph whose edges are the pairs reaching the threshold, and the merges
inside one component do not depend on the others.  Clustering each component on its own
gives exactly the clusters of one linkage over everything, at the cost of the largest
component squared instead of the whole set squared; the pairs themselves are found block
by block, so memory stays flat.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from scipy import sparse
from scipy.cluster.hierarchy import fcluster, linkage
from scipy.sparse.csgraph import connected_components
from scipy.spatial.distance import squareform

# A matrix with one L2-normalized row per item: scipy sparse or a numpy array.
Matrix = Any

# Pairs whose similarity is within this of the threshold count as edges: float rounding
# must never split a component that one linkage over everything would have joined.
EDGE_MARGIN = 1e-4
# Dense blocks are computed this many cells at a time, so memory stays flat.
BLOCK_CELLS = 8_000_000


def as_rows(matrix: Matrix) -> Matrix:
    """``matrix`` as CSR float32 (sparse) or a C-ordered float32 array (dense)."""
    if sparse.issparse(matrix):
        rows = sparse.csr_matrix(matrix, dtype=np.float32)
        rows.sum_duplicates()
        return rows
    return np.ascontiguousarray(np.asarray(matrix, dtype=np.float32))


def take_rows(matrix: Matrix, rows: Any) -> Matrix:
    return matrix[np.asarray(rows, dtype=np.intp)]


def row_dots(left: Matrix, right: Matrix) -> Any:
    """The dot product of each row of ``left`` with the same row of ``right`` (float64)."""
    if sparse.issparse(left):
        return np.asarray(left.multiply(right).sum(axis=1), dtype=np.float64).ravel()
    return np.einsum("ij,ij->i", np.asarray(left, dtype=np.float64), np.asarray(right, dtype=np.float64))


def pair_dots(matrix: Matrix) -> Callable[[Any, Any], Any]:
    """``pairs`` for ``average_link``: dot products of rows of ``matrix``."""
    return lambda first, second: row_dots(take_rows(matrix, first), take_rows(matrix, second))


def chunks(count: int, width: int) -> list[tuple[int, int]]:
    """Row ranges such that each range × ``width`` cells stays under ``BLOCK_CELLS``."""
    step = max(1, BLOCK_CELLS // max(width, 1))
    return [(start, min(start + step, count)) for start in range(0, count, step)]


class CosineIndex:
    """Dot products of any rows (in the same column space) with the rows of one matrix."""

    def __init__(self, matrix: Matrix) -> None:
        self.matrix = as_rows(matrix)
        self.count = self.matrix.shape[0]
        # Transposed once, not on every product.
        self.transposed = self.matrix.T.tocsr() if sparse.issparse(self.matrix) else self.matrix.T

    def dots(self, rows: Matrix) -> Any:
        """A dense float32 block: ``rows`` × this index's rows."""
        rows = as_rows(rows)
        product = rows @ self.transposed
        return np.asarray(product.toarray() if sparse.issparse(product) else product, dtype=np.float32)


def top_per_row(rows: Any, columns: Any, values: Any, k: int) -> Any:
    """A mask keeping each row's ``k`` largest values (ties: the smaller column)."""
    order = np.lexsort((columns, -values, rows))
    sorted_rows = rows[order]
    first = np.searchsorted(sorted_rows, sorted_rows, side="left")
    keep = np.zeros(len(rows), dtype=bool)
    keep[order[(np.arange(len(order)) - first) < k]] = True
    return keep


def average_link(
    count: int,
    edges: tuple[Any, Any],
    threshold: float,
    pairs: Callable[[Any, Any], Any],
    block: Callable[[Any], Any],
) -> list[list[int]]:
    """Average-link clusters of ``count`` items cut where the mean similarity falls below ``threshold``.

    ``edges`` are index pairs holding every pair whose similarity reaches ``threshold`` (more
    pairs only cost time).  ``pairs(first, second)`` returns the similarities of the pairs
    (first[i], second[i]); ``block(members)`` the dense similarity matrix among the given
    items (its diagonal is ignored), for components too big to go pair by pair.  Groups come
    out as sorted index lists ordered by their first member.
    """
    if count == 0:
        return []
    rows, columns = edges
    graph = sparse.csr_matrix((np.ones(len(rows), dtype=np.int8), (rows, columns)), shape=(count, count))
    _number, component = connected_components(graph, directed=False)
    return cluster_parts(split_by_label(component), threshold, pairs, block)


def cluster_parts(
    parts: Sequence[Any],
    threshold: float,
    pairs: Callable[[Any, Any], Any],
    block: Callable[[Any], Any],
) -> list[list[int]]:
    """Average-link clusters within each of ``parts`` (index arrays); no cluster spans two parts.

    Most parts are a handful of items: their pairs' similarities are asked for all at once.
    """
    groups: list[list[int]] = []
    small = [part for part in parts if 1 < len(part) <= SMALL_BLOCK]
    first: list[Any] = []
    second: list[Any] = []
    for part in small:
        upper_rows, upper_columns = np.triu_indices(len(part), 1)
        first.append(part[upper_rows])
        second.append(part[upper_columns])
    values = pairs(np.concatenate(first), np.concatenate(second)) if small else np.zeros(0)
    start = 0
    for part in small:
        size = len(part)
        upper_rows, upper_columns = np.triu_indices(size, 1)
        similarity = np.zeros((size, size), dtype=np.float32)
        similarity[upper_rows, upper_columns] = values[start : start + len(upper_rows)]
        similarity[upper_columns, upper_rows] = similarity[upper_rows, upper_columns]
        start += len(upper_rows)
        groups.extend([int(part[i]) for i in group] for group in _small_average_link(similarity, threshold))
    for part in parts:
        if len(part) == 1:
            groups.append([int(part[0])])
        elif len(part) > SMALL_BLOCK:
            labels = _linkage_labels(block(part), threshold)
            groups.extend(sorted(int(i) for i in part[members]) for members in split_by_label(labels))
    groups.sort(key=lambda group: group[0])
    return groups


def split_by_label(labels: Any) -> list[Any]:
    """Index arrays of the items sharing each label, each ascending."""
    order = np.argsort(labels, kind="stable")
    return np.split(order, np.flatnonzero(np.diff(labels[order])) + 1)


# Up to this many items, average link is run here (the cost of calling scipy is most of it).
SMALL_BLOCK = 24


def _small_average_link(similarity: Any, threshold: float) -> list[list[int]]:
    """Average link on a few items: merge the closest pair while its mean distance is within the cut.

    Average link is reducible, so merging the globally closest pair each time gives the
    same tree as scipy's nearest-neighbour chain, and the same flat clusters at the cut.
    """
    distance = _distances(similarity)
    limit = 1.0 - threshold
    totals = distance.tolist()  # summed distances between clusters, by cluster
    members = [[i] for i in range(len(totals))]
    alive = list(range(len(totals)))
    while len(alive) > 1:
        best, pair = math.inf, (0, 0)
        for position, a in enumerate(alive):
            row, size = totals[a], len(members[a])
            for b in alive[position + 1 :]:
                mean = row[b] / (size * len(members[b]))
                if mean < best:
                    best, pair = mean, (a, b)
        if best > limit:
            break
        a, b = pair
        for c in alive:
            totals[a][c] += totals[b][c]
            totals[c][a] = totals[a][c]
        members[a].extend(members[b])
        alive.remove(b)
    return sorted((sorted(members[a]) for a in alive), key=lambda group: group[0])


def _distances(similarity: Any) -> Any:
    distance = np.clip(1.0 - np.asarray(similarity, dtype=np.float32), 0.0, 2.0)
    np.fill_diagonal(distance, 0.0)
    return ((distance + distance.T) / 2).astype(np.float64)  # float error must not make it asymmetric


def _linkage_labels(similarity: Any, threshold: float) -> Any:
    tree = linkage(squareform(_distances(similarity), checks=False), method="average")
    return fcluster(tree, t=1.0 - threshold, criterion="distance")


def threshold_edges(
    index: CosineIndex,
    rows: Matrix,
    least: float,
    weigh: Callable[[Any, Any, Any], Any] | None = None,
    *,
    upper: bool = True,
) -> tuple[Any, Any, Any]:
    """Pairs (row of ``rows``, row of ``index``) whose dot product, weighed, reaches ``least``.

    ``weigh(row_numbers, column_numbers, values)`` may only lower values (time fading, pairs
    kept apart).  With ``upper`` only pairs with row < column are returned (``rows`` being the
    index's own rows).
    """
    found_rows: list[Any] = []
    found_columns: list[Any] = []
    found_values: list[Any] = []
    for start, stop in chunks(rows.shape[0], index.count):
        block = index.dots(take_rows(rows, np.arange(start, stop)))
        r, c = np.nonzero(block >= least)
        values = block[r, c]
        r = r + start
        if upper:
            keep = r < c
            r, c, values = r[keep], c[keep], values[keep]
        if weigh is not None:
            values = weigh(r, c, values)
            keep = values >= least
            r, c, values = r[keep], c[keep], values[keep]
        found_rows.append(r)
        found_columns.append(c)
        found_values.append(values)
    return (
        np.concatenate(found_rows) if found_rows else np.zeros(0, dtype=np.intp),
        np.concatenate(found_columns) if found_columns else np.zeros(0, dtype=np.intp),
        np.concatenate(found_values) if found_values else np.zeros(0, dtype=np.float32),
    )
