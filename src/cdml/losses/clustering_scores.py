"""Clustering scores of many contingency tables at once, equal to scikit-learn's.

A contingency table ``t`` of shape ``(n_clusters, n_classes)`` counts the points of each
(cluster, class) pair. Every score here is a function of a few sums over the table, its row sums
``a`` (cluster sizes), its column sums ``b`` (class sizes) and its total ``N``
(:class:`ContingencyStats`), so tables can be scored from any layout of their cells (the
facility-location loss numbers them by sample rather than by (cluster, class)).

- ``nmi``: ``MI / average(H(a), H(b))`` with
  ``MI = (sum t log t - sum a log a - sum b log b + N log N) / N`` and
  ``H(a) = log N - sum a log a / N``; 1 when both sides have a single group, 0 when the
  mutual information is 0 (``sklearn.metrics.normalized_mutual_info_score``).
- ``ami``: ``(MI - EMI) / (average(H(a), H(b)) - EMI)`` with the expected mutual information
  of the permutation model (Vinh et al., JMLR 2010) (``adjusted_mutual_info_score``).
- ``ari``: the adjusted Rand index from the pair counts ``sum t^2``, ``sum a^2``, ``sum b^2``
  (``adjusted_rand_score``).
- ``vmeasure``: harmonic mean of homogeneity ``MI / H(b)`` and completeness ``MI / H(a)``
  (``v_measure_score``, beta = 1).

Everything is computed in float64: the counts are exact and the scores match scikit-learn to
about 1e-12.
"""

from __future__ import annotations

import math
from types import ModuleType
from typing import NamedTuple

import numpy as np
import scipy.special
import torch
from torch import Tensor

SCORES = ("nmi", "ami", "ari", "vmeasure")
AVERAGES = ("geometric", "arithmetic", "min", "max")
_EPS = torch.finfo(torch.float64).eps


class MarginSums(NamedTuple):
    """Sums over the row or column sums ``x`` of the tables, each of shape ``(m,)``."""

    xlogx: Tensor  # sum x log x (0 log 0 = 0)
    square: Tensor  # sum x^2
    nonzero: Tensor  # number of x > 0, the groups actually present


class ContingencyStats(NamedTuple):
    """What the scores need from ``m`` contingency tables, each field of shape ``(m,)``.

    Fields may also be 0-d tensors shared by all tables.
    """

    total: Tensor  # N
    xlogx: Tensor  # sum over cells of t log t
    square: Tensor  # sum over cells of t^2
    rows: MarginSums  # of the cluster sizes a
    cols: MarginSums  # of the class sizes b
    emi: Tensor | None = None  # expected mutual information, needed by "ami" only


def margin_sums(sizes: Tensor, dim: int) -> MarginSums:
    """:class:`MarginSums` of float64 group ``sizes`` along ``dim``."""
    return MarginSums(
        torch.xlogy(sizes, sizes).sum(dim),
        sizes.square().sum(dim),
        (sizes > 0).sum(dim).to(sizes.dtype),
    )


def expected_mutual_information_terms(
    row_sizes: Tensor, col_sizes: Tensor, total: Tensor, largest: int | None = None
) -> Tensor:
    """Contribution of each row to the expected mutual information of a contingency table.

    ``EMI = sum_i sum_j sum_{n_ij} (n_ij / N) log(N n_ij / (a_i b_j)) P(n_ij | a_i, b_j, N)``
    with the hypergeometric ``P`` and ``n_ij`` from ``max(1, a_i + b_j - N)`` to
    ``min(a_i, b_j)`` (as ``sklearn.metrics.cluster.expected_mutual_information``, which
    returns 0 for a single row or column; here such a table gives 0 up to rounding). Loops
    over ``n_ij`` up to the largest ``min(a_i, b_j)``: ``largest`` if given (any bound on it,
    such as the largest class), else read with one host synchronisation.

    Args:
        row_sizes: ``(..., R)`` row sums ``a`` (rows of size 0 contribute 0).
        col_sizes: ``(..., C)`` column sums ``b``.
        total: ``(...)`` table totals ``N``.

    Returns:
        ``(..., R)`` float64: the terms of row ``i`` summed over ``j`` and ``n_ij``.
    """
    a = row_sizes.to(torch.float64)[..., :, None]
    b = col_sizes.to(torch.float64)[..., None, :]
    n = total.to(torch.float64)[..., None, None]
    log_norm = (
        torch.lgamma(a + 1)
        + torch.lgamma(b + 1)
        + torch.lgamma(n - a + 1)
        + torch.lgamma(n - b + 1)
        - torch.lgamma(n + 1)
    )
    log_ab = torch.log(a) + torch.log(b)
    lower = torch.clamp(a + b - n, min=1)
    upper = torch.minimum(a, b)
    emi = torch.zeros_like(log_norm)
    if largest is None:
        largest = int(upper.max()) if upper.numel() else 0
    for count in range(1, largest + 1):
        log_probability = (
            log_norm
            - math.lgamma(count + 1)
            - torch.lgamma((a - count).clamp_min(0) + 1)
            - torch.lgamma((b - count).clamp_min(0) + 1)
            - torch.lgamma((n - a - b + count).clamp_min(0) + 1)
        )
        term = count / n * (torch.log(n * count) - log_ab) * torch.exp(log_probability)
        emi += torch.where((lower <= count) & (count <= upper), term, 0)
    return emi.sum(-1)


def contingency_stats(tables: Tensor, with_emi: bool = False) -> ContingencyStats:
    """``(m, R, C)`` contingency tables -> their :class:`ContingencyStats` (EMI if asked)."""
    counts = tables.to(torch.float64)
    rows, cols = counts.sum(2), counts.sum(1)
    total = rows.sum(1)
    cells = counts.flatten(1)
    return ContingencyStats(
        total=total,
        xlogx=torch.xlogy(cells, cells).sum(1),
        square=cells.square().sum(1),
        rows=margin_sums(rows, 1),
        cols=margin_sums(cols, 1),
        emi=expected_mutual_information_terms(rows, cols, total).sum(1) if with_emi else None,
    )


def _average(h_rows: Tensor, h_cols: Tensor, method: str, xp: ModuleType) -> Tensor:
    if method == "geometric":
        return xp.sqrt(h_rows * h_cols)
    if method == "arithmetic":
        return (h_rows + h_cols) / 2
    if method == "min":
        return xp.minimum(h_rows, h_cols)
    return xp.maximum(h_rows, h_cols)


def scores_from_stats(stats: ContingencyStats, kind: str, average: str = "arithmetic") -> Tensor:
    """The clustering score ``kind`` of tables summarised by ``stats`` -> ``(m,)`` float64.

    ``average`` is the normaliser of ``nmi`` and ``ami`` (scikit-learn's ``average_method``).
    Not clipped: ``ami`` and ``ari`` can be negative. The fields may be NumPy arrays instead
    of tensors (all of them), and the scores then are too: the same arithmetic, without
    torch's cost per operation where the tables are few.
    """
    xp = np if isinstance(stats.total, np.ndarray) else torch
    n = stats.total
    n_log_n = (scipy.special if xp is np else torch).xlogy(n, n)
    # Both sides with at most one group: a perfect match, as in scikit-learn.
    trivial = (stats.rows.nonzero <= 1) & (stats.cols.nonzero <= 1)
    # With a single group on either side the mutual information is exactly 0.
    split = (stats.rows.nonzero > 1) & (stats.cols.nonzero > 1)
    mutual_info = (stats.xlogx - stats.rows.xlogx - stats.cols.xlogx + n_log_n) / n
    mutual_info = xp.where(split, xp.clip(mutual_info, 0, None), 0)
    h_rows = (n_log_n - stats.rows.xlogx) / n
    h_cols = (n_log_n - stats.cols.xlogx) / n
    if kind == "nmi":
        normaliser = xp.clip(_average(h_rows, h_cols, average, xp), _EPS, None)
        score = xp.where(mutual_info > 0, mutual_info / normaliser, 0)
    elif kind == "ami":
        if stats.emi is None:
            raise ValueError("stats.emi is required for kind='ami'")
        emi = xp.where(split, stats.emi, 0)
        denominator = _average(h_rows, h_cols, average, xp) - emi
        # scikit-learn keeps the sign of a vanishing denominator
        denominator = xp.where(
            denominator < 0, xp.clip(denominator, None, -_EPS), xp.clip(denominator, _EPS, None)
        )
        score = (mutual_info - emi) / denominator
    elif kind == "ari":
        same_both = stats.square - n
        same_cluster_only = stats.rows.square - stats.square
        same_class_only = stats.cols.square - stats.square
        different_both = n * n - same_cluster_only - same_class_only - stats.square
        numerator = 2 * (same_both * different_both - same_class_only * same_cluster_only)
        denominator = (same_both + same_class_only) * (same_class_only + different_both) + (
            same_both + same_cluster_only
        ) * (same_cluster_only + different_both)
        agree = (same_cluster_only == 0) & (same_class_only == 0)
        score = xp.where(agree, 1, numerator / xp.where(agree, 1, denominator))
    elif kind == "vmeasure":
        homogeneity = xp.where(stats.cols.nonzero > 1, mutual_info / xp.clip(h_cols, _EPS, None), 1)
        completeness = xp.where(
            stats.rows.nonzero > 1, mutual_info / xp.clip(h_rows, _EPS, None), 1
        )
        both = homogeneity + completeness
        score = xp.where(both > 0, 2 * homogeneity * completeness / xp.clip(both, _EPS, None), 0)
    else:
        raise ValueError(f"kind must be one of {SCORES}, got {kind!r}")
    return xp.where(trivial, 1, score)


def clustering_score(tables: Tensor, kind: str = "nmi", average: str = "arithmetic") -> Tensor:
    """Score a batch of contingency tables as scikit-learn scores a pair of labellings.

    Args:
        tables: ``(m, n_clusters, n_classes)`` non-negative integer counts (any dtype).
        kind: one of ``"nmi"``, ``"ami"``, ``"ari"``, ``"vmeasure"``.
        average: normaliser of ``nmi`` / ``ami``: ``"geometric"``, ``"arithmetic"``
            (scikit-learn's default), ``"min"`` or ``"max"``.

    Returns:
        ``(m,)`` float64 scores on the tables' device.
    """
    if kind not in SCORES:
        raise ValueError(f"kind must be one of {SCORES}, got {kind!r}")
    if average not in AVERAGES:
        raise ValueError(f"average must be one of {AVERAGES}, got {average!r}")
    if not isinstance(tables, Tensor) or tables.ndim != 3:
        raise ValueError("tables must be a tensor of shape (m, n_clusters, n_classes)")
    counts = tables.to(torch.float64)
    if not torch.equal(counts, counts.round().clamp_min(0)):
        raise ValueError("tables must hold non-negative integer counts")
    return scores_from_stats(contingency_stats(counts, with_emi=kind == "ami"), kind, average)
