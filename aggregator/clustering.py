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

import functools
import itertools
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
# Columns at least this share of the rows have (and at least MIN_FREQUENT_DF rows) are the
# frequent ones ``CosineIndex.pairs_reaching`` bounds instead of multiplying (2% was the
# fastest of 1-10% on bench/dedupe.py windows, with 1.35x the true pairs as candidates).
FREQUENT_SHARE = 0.02
MIN_FREQUENT_DF = 8
# At most this many (the most frequent): the dense products over them stay small.
MAX_FREQUENT_COLUMNS = 128
# Columns in at least this share of the rows are frequent beyond that cap: the dense
# dimensions of sentence embeddings (stories.method embeddings: 384 of them, in every row),
# which as sparse columns made grouping the UCI day 20x slower.  No word is that common.
DENSE_COLUMN_SHARE = 0.5
# How much lower than the threshold a pair's float32 upper bound may be and the pair still
# be checked: float32 rounding of values near 1 is below 1e-6.
BOUND_SLACK = 1e-5
# Checking a candidate pair costs about F gathered floats (F frequent columns); a cell of
# one dense product about DENSE_CELL_COST * F flops plus a scan: past that many candidates
# per cell the dense product is cheaper.
DENSE_CELL_COST = 0.1


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


def gram(matrix: Matrix) -> Any:
    """The dot products of every two rows, dense float32.

    Sparse rows: their columns are numbered afresh first (transposing them as they are
    would build a row for every column of the whole vocabulary).
    """
    if not sparse.issparse(matrix):
        dense = np.asarray(matrix, dtype=np.float32)
        return dense @ dense.T
    rows = sparse.csr_matrix(matrix)
    used, columns = np.unique(rows.indices, return_inverse=True)
    compact = sparse.csr_matrix((rows.data, columns.ravel(), rows.indptr), shape=(rows.shape[0], len(used)))
    return np.asarray((compact @ compact.T.tocsr()).toarray(), dtype=np.float32)


def row_gram_blocks(matrix: Matrix) -> Callable[[Sequence[Any]], Sequence[Any]]:
    """``blocks`` for ``average_link``: dot products of rows of ``matrix``."""
    return lambda components: gram_blocks(
        take_rows(matrix, np.concatenate(components)), [len(members) for members in components]
    )


def gram_blocks(matrix: Matrix, sizes: Sequence[int]) -> list[Any]:
    """The dot products within each run of ``sizes`` consecutive rows, as dense float32 blocks.

    A small sparse run is made dense over only the columns it uses (numbered through a
    scratch table, no sort), so each block is one small BLAS product.
    """
    bounds = np.concatenate([[0], np.cumsum(sizes)]).astype(np.intp).tolist()
    blocks: list[Any] = []
    if sparse.issparse(matrix):
        rows = sparse.csr_matrix(matrix)
        indptr, indices, data = rows.indptr, rows.indices, rows.data
        slot = np.zeros(rows.shape[1], dtype=np.intp)
        for a, b in itertools.pairwise(bounds):
            low, high = int(indptr[a]), int(indptr[b])
            if (b - a) * (high - low) > BLOCK_CELLS // 8:
                blocks.append(gram(rows[a:b]))  # a big run: its product stays sparse until the end
                continue
            # One dense column per column the run uses: each nonzero finds its column's last
            # nonzero through the table, and those are numbered in order.  (A column per
            # nonzero, as before, made the product rows² × nonzeros: 2-3x the time.)
            columns = indices[low:high]
            slot[columns] = np.arange(high - low)
            representative = slot[columns]
            used = np.zeros(high - low, dtype=bool)
            used[representative] = True
            number = np.cumsum(used) - 1
            dense = np.zeros((b - a, int(used.sum())), dtype=np.float32)
            dense[np.repeat(np.arange(b - a), np.diff(indptr[a : b + 1])), number[representative]] = data[
                low:high
            ]
            blocks.append(dense @ dense.T)
    else:
        dense = np.asarray(matrix, dtype=np.float32)
        blocks = [dense[a:b] @ dense[a:b].T for a, b in itertools.pairwise(bounds)]
    return blocks


def chunks(count: int, width: int) -> list[tuple[int, int]]:
    """Row ranges such that each range × ``width`` cells stays under ``BLOCK_CELLS``."""
    step = max(1, BLOCK_CELLS // max(width, 1))
    return [(start, min(start + step, count)) for start in range(0, count, step)]


class CosineIndex:
    """Dot products of any rows (in the same column space) with the rows of one matrix.

    ``pairs_reaching`` finds the pairs whose dot product reaches a threshold without
    computing the others: the frequent columns (words most texts share) make almost every
    product nonzero, but they carry little weight.  A dot product is its rare-column part
    plus its frequent-column part, and the latter is at most the product of the two rows'
    frequent-column norms (Cauchy–Schwarz), so only pairs whose rare parts come close to
    the threshold, or whose frequent norms alone could reach it, are looked at.  On a
    5,000-entry window of bench/dedupe.py: 0.18 s → 0.02 s for 4,000 rows × 5,000.
    """

    def __init__(self, matrix: Matrix) -> None:
        self.matrix = as_rows(matrix)
        self.count = self.matrix.shape[0]
        if not sparse.issparse(self.matrix):
            return
        df = np.bincount(self.matrix.indices, minlength=self.matrix.shape[1])
        by_df = np.argsort(-df, kind="stable")[:MAX_FREQUENT_COLUMNS]
        common = by_df[df[by_df] >= max(MIN_FREQUENT_DF, FREQUENT_SHARE * self.count)]
        dense = np.flatnonzero(df >= max(MIN_FREQUENT_DF, DENSE_COLUMN_SHARE * self.count))
        self.frequent = np.union1d(common, dense)
        self.position = np.full(self.matrix.shape[1], -1, dtype=np.intp)
        self.position[self.frequent] = np.arange(len(self.frequent))
        rare, self.head, self.norms = self._split(self.matrix)
        self.rare_transposed = rare.T.tocsr()
        self.norms32 = self.norms.astype(np.float32)
        self.by_norm = np.argsort(-self.norms, kind="stable")

    def _split(self, rows: Any) -> tuple[Any, Any, Any]:
        """``rows`` as (CSR of the rare columns, dense frequent columns, norms of the latter)."""
        position = self.position[rows.indices]
        frequent = position >= 0
        row_of = np.repeat(np.arange(rows.shape[0]), np.diff(rows.indptr))
        head = np.zeros((rows.shape[0], len(self.frequent)), dtype=np.float32)
        head[row_of[frequent], position[frequent]] = rows.data[frequent]
        indptr = np.zeros(rows.shape[0] + 1, dtype=np.int64)
        np.cumsum(np.bincount(row_of[~frequent], minlength=rows.shape[0]), out=indptr[1:])
        rare = sparse.csr_matrix((rows.data[~frequent], rows.indices[~frequent], indptr), shape=rows.shape)
        return rare, head, np.sqrt(np.einsum("ij,ij->i", head, head, dtype=np.float64))

    @functools.cached_property
    def transposed(self) -> Matrix:
        """The matrix transposed, made once on first use (``pairs_reaching`` on sparse rows
        never needs it: it multiplies by the rare columns only)."""
        return self.matrix.T.tocsr() if sparse.issparse(self.matrix) else self.matrix.T

    def dots(self, rows: Matrix) -> Any:
        """A dense float32 block: ``rows`` × this index's rows."""
        rows = as_rows(rows)
        product = rows @ self.transposed
        return np.asarray(product.toarray() if sparse.issparse(product) else product, dtype=np.float32)

    def pairs_reaching(self, rows: Matrix, least: float) -> tuple[Any, Any, Any]:
        """Every (row of ``rows``, row of the index, dot product) whose dot product is ≥ ``least``."""
        rows = as_rows(rows)
        found: list[tuple[Any, Any, Any]] = []
        if not sparse.issparse(self.matrix) or not sparse.issparse(rows) or least <= 0:
            for start, stop in chunks(rows.shape[0], self.count):
                block = self.dots(take_rows(rows, np.arange(start, stop)))
                r, c = np.nonzero(block >= least)
                found.append((r + start, c, block[r, c]))
            return _joined(found)
        rare, head, norms = self._split(rows)
        norms32 = norms.astype(np.float32)
        for start, stop in chunks(rows.shape[0], self.count // 8 + 1):
            # Pairs whose frequent parts alone may reach ``least`` (not in the rare product
            # when they share no rare column): all of them, by the sorted norms.
            reach = np.searchsorted(
                -self.norms[self.by_norm], -least / np.maximum(norms[start:stop], 1e-12), "right"
            )
            product = sparse.csr_matrix(rare[start:stop] @ self.rare_transposed)
            c, values = product.indices, product.data
            r = np.repeat(np.arange(stop - start), np.diff(product.indptr))
            # The bound in float32 (half the memory traffic of float64 over these millions of
            # pairs), loosened by far more than its rounding: a pair kept needlessly is checked
            # exactly below, while one dropped wrongly would be lost.
            bound = norms32[start:stop][r]
            bound *= self.norms32[c]
            bound += values
            candidate = bound >= least - BOUND_SLACK
            cells = (stop - start) * self.count
            frequent = max(len(self.frequent), 1)
            if (int(candidate.sum()) + int(reach.sum())) > cells * (DENSE_CELL_COST + 1 / frequent):
                # The bounds prune too little here (frequent words carry much of these rows):
                # the frequent columns as one dense product, the rare ones added.
                block = head[start:stop] @ self.head.T
                block[r, c] += values
                r, c = np.nonzero(block >= least)
                found.append((r + start, c, block[r, c]))
                continue
            extra_r = np.repeat(np.arange(stop - start), reach)
            extra_c = self.by_norm[np.arange(len(extra_r)) - np.repeat(np.cumsum(reach) - reach, reach)]
            r, c, values = r[candidate], c[candidate], values[candidate]
            if len(extra_r):
                keys = r * self.count + c
                extra = ~np.isin(extra_r * self.count + extra_c, keys)
                r = np.concatenate([r, extra_r[extra]])
                c = np.concatenate([c, extra_c[extra]])
                values = np.concatenate([values, np.zeros(int(extra.sum()), dtype=np.float32)])
            values = values + np.einsum("ij,ij->i", head[start + r], self.head[c])
            keep = values >= least
            found.append((r[keep] + start, c[keep], values[keep].astype(np.float32)))
        return _joined(found)


def _joined(parts: Sequence[tuple[Any, Any, Any]]) -> tuple[Any, Any, Any]:
    if not parts:
        return (np.zeros(0, dtype=np.intp), np.zeros(0, dtype=np.intp), np.zeros(0, dtype=np.float32))
    return (
        np.concatenate([p[0] for p in parts]).astype(np.intp),
        np.concatenate([p[1] for p in parts]).astype(np.intp),
        np.concatenate([p[2] for p in parts]).astype(np.float32),
    )


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
    blocks: Callable[[Sequence[Any]], Sequence[Any]],
) -> list[list[int]]:
    """Average-link clusters of ``count`` items cut where the mean similarity falls below ``threshold``.

    ``edges`` are index pairs holding every pair whose similarity reaches ``threshold`` (more
    pairs only cost time).  ``blocks(memberships)`` returns, for each array of item indexes,
    the dense similarity matrix among those items (diagonals are ignored); it is asked once,
    for every component of more than one item.  Groups come out as sorted index lists
    ordered by their first member.
    """
    if count == 0:
        return []
    rows, columns = edges
    graph = sparse.csr_matrix((np.ones(len(rows), dtype=np.int8), (rows, columns)), shape=(count, count))
    _number, component = connected_components(graph, directed=False)
    components = split_by_label(component)
    groups: list[list[int]] = [[int(members[0])] for members in components if len(members) == 1]
    several = [members for members in components if len(members) > 1]
    for members, block in zip(several, blocks(several) if several else [], strict=True):
        groups.extend([int(members[i]) for i in group] for group in _one_linkage(block, threshold))
    groups.sort(key=lambda group: group[0])
    return groups


def cluster_block(similarity: Any, threshold: float) -> list[list[int]]:
    """Average-link clusters of the items of a dense similarity matrix (diagonal ignored).

    Big blocks are cut into the connected components of their pairs that reach the
    threshold first (the same clusters, see the module docstring).
    """
    count = len(similarity)
    if count > SPLIT_BLOCK:
        rows, columns = np.nonzero(np.triu(similarity >= threshold - EDGE_MARGIN, 1))
        return average_link(
            count,
            (rows, columns),
            threshold,
            lambda components: [similarity[np.ix_(m, m)] for m in components],
        )
    return _one_linkage(similarity, threshold)


def _one_linkage(similarity: Any, threshold: float) -> list[list[int]]:
    """Average-link clusters of all the items of a dense similarity matrix, in one tree."""
    if len(similarity) <= SMALL_BLOCK:
        return _small_average_link(similarity, threshold)
    labels = _linkage_labels(similarity, threshold)
    return sorted((group.tolist() for group in split_by_label(labels)), key=lambda group: group[0])


def split_by_label(labels: Any) -> list[Any]:
    """Index arrays of the items sharing each label, each ascending."""
    order = np.argsort(labels, kind="stable")
    return np.split(order, np.flatnonzero(np.diff(labels[order])) + 1)


# Up to this many items, average link is run here (the cost of calling scipy is most of it);
# blocks of more than SPLIT_BLOCK are cut into components first.
SMALL_BLOCK = 24
SPLIT_BLOCK = 512


def _small_average_link(similarity: Any, threshold: float) -> list[list[int]]:
    """Average link on a few items: merge the closest pair while its mean distance is within the cut.

    Average link is reducible, so merging the globally closest pair each time gives the
    same tree as scipy's nearest-neighbour chain, and the same flat clusters at the cut.
    """
    if len(similarity) <= 1:
        return [[0]] if len(similarity) else []
    distance = _distances(similarity)
    limit = 1.0 - threshold
    # Every pair within the cut: every mean is, so all merge; none: nothing merges.
    off_diagonal = distance[~np.eye(len(distance), dtype=bool)]
    if off_diagonal.max() <= limit:
        return [list(range(len(distance)))]
    if off_diagonal.min() > limit:
        return [[i] for i in range(len(distance))]
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
    r, c, values = index.pairs_reaching(rows, least)
    if upper:
        keep = r < c
        r, c, values = r[keep], c[keep], values[keep]
    if weigh is not None:
        values = weigh(r, c, values)
        keep = values >= least
        r, c, values = r[keep], c[keep], values[keep]
    return r, c, values
