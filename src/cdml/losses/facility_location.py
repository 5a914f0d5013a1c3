"""Facility-location structured clustering loss (Song et al., CVPR 2017)."""

from __future__ import annotations

from functools import cached_property
from types import SimpleNamespace
from typing import NamedTuple

import numpy as np
import torch
from lightning.pytorch.callbacks import Callback
from torch import Tensor

from cdml.tuning.knob import Knob

from ._base import MetricLoss
from ._host import reads_are_free
from ._inputs import check_hyperparameter
from ._pairwise import distances
from ._registry import register_method
from ._schedules import MarginDecay
from .clustering_scores import (
    AVERAGES,
    SCORES,
    ContingencyStats,
    MarginSums,
    expected_mutual_information_terms,
    margin_sums,
    scores_from_stats,
)

# Objectives closer than this fraction of (the largest column sum of D + gamma), a bound on
# their size, are ties: values equal in exact arithmetic differ in their last bits.
_TIE_TOLERANCE = 1e-9
# How a move changes the counts of the cell it leaves, the cell it joins and the row it leaves.
_LEAVE_JOIN_LEAVE = np.array([[-1], [1], [-1]])


@register_method("facility")
class FacilityLocationLoss(MetricLoss):
    """Structured clustering loss with loss-augmented inference (Song et al., CVPR 2017).

    With ``D`` the Euclidean distances of the batch, ``K`` its number of distinct labels and
    ``gamma = margin_multiplier``::

        F(S)     = - sum_i min_{s in S} D[i, s]                   (facility score of medoids S)
        F~       = sum_c max_{m in class c} (- sum_{i in c} D[i, m])          (oracle score)
        Delta(S) = 1 - max(0, score(labels, g(S)))
        loss     = max(0, F(S*) + gamma * Delta(S*) - F~)

    where ``g(S)`` sends each point to its nearest medoid (ties: the medoid first in ``S``) and
    each medoid to its own cluster, and ``S*`` approximately maximises ``F(S) + gamma Delta(S)``:
    greedily (K times add the point that maximises it, ties to the lowest index), then
    ``pam_iters`` sweeps of refinement (for each cluster ``k`` of the assignment computed at the
    start of the sweep, in order, replace ``S_k`` by the member ``m`` maximising
    ``- sum_{i in cluster k} D[i, m] + gamma Delta(S with S_k := m)``, ties to the lowest
    index). Objectives within ``1e-9 * (max_j sum_i D[i, j] + gamma)`` of the best count as
    ties. A sweep that changes nothing ends the refinement early, since the following sweeps
    would repeat it. ``S*`` and ``Delta`` are constants: the gradient flows through the
    distances in ``F(S*)`` and ``F~``. Embeddings are used as given (normalise them first, as
    the paper does).

    All candidates of a step are scored at once on the embeddings' device, in float64, through
    the points each would move (see :class:`_MedoidSearch`). On an accelerator nothing is read
    on the host but the labels, where they are given: pass them on the host, as data loaders
    give them, and the loss never waits for the device.

    Args:
        margin_multiplier: ``gamma >= 0`` at the start of training (set the attribute to
            change it).
        margin_decay: in training, ``margin_multiplier`` is ``initial * margin_decay **
            epoch`` (the paper's 0.94; 1 keeps it constant).
        pam_iters: refinement sweeps, 0 to disable.
        margin_type: clustering score of the margin: ``"nmi"``, ``"ami"``, ``"ari"`` or
            ``"vmeasure"``, equal to scikit-learn's functions.
        nmi_average: normaliser of ``"nmi"``: ``"geometric"`` (the paper's ``MI / sqrt(H1 H2)``),
            ``"arithmetic"``, ``"min"`` or ``"max"``.
        ami_average: normaliser of ``"ami"``, the same choices: default ``"arithmetic"``
            (scikit-learn's since 0.22); ``"max"`` was its default when the paper appeared.

    Shapes: ``embeddings (n, d)``, ``labels (n,)`` -> scalar. After each call the attributes
    ``last_medoids`` ``(K,)`` int64 (batch indices, in selection order),
    ``last_predicted_score`` ``F(S*)``, ``last_oracle_score`` ``F~`` and
    ``last_clustering_score`` ``max(0, score(labels, g(S*)))`` hold detached tensors for
    logging; :attr:`statistics` gathers the three scores by name.
    """

    # The classes are counted where the labels are: on the host, as loaders give them, this
    # costs an accelerator nothing.
    labels_where_given = True
    search_space = {
        "margin_multiplier": Knob(0.1, 10.0, log=True),
        "margin_decay": Knob(0.8, 1.0),
    }

    def __init__(
        self,
        margin_multiplier: float = 1.0,
        pam_iters: int = 5,
        margin_type: str = "nmi",
        nmi_average: str = "geometric",
        margin_decay: float = 0.94,
        ami_average: str = "arithmetic",
    ) -> None:
        super().__init__()
        if isinstance(pam_iters, bool) or not isinstance(pam_iters, int) or pam_iters < 0:
            raise ValueError(f"pam_iters must be an integer >= 0, got {pam_iters!r}")
        if margin_type not in SCORES:
            raise ValueError(f"margin_type must be one of {SCORES}, got {margin_type!r}")
        for name, average in (("nmi_average", nmi_average), ("ami_average", ami_average)):
            if average not in AVERAGES:
                raise ValueError(f"{name} must be one of {AVERAGES}, got {average!r}")
        self.margin_multiplier = check_hyperparameter("margin_multiplier", margin_multiplier, 0)
        self.margin_decay = check_hyperparameter("margin_decay", margin_decay, 0)
        self.pam_iters = pam_iters
        self.margin_type = margin_type
        self.nmi_average = nmi_average
        self.ami_average = ami_average
        self.last_medoids: Tensor | None = None
        self.last_predicted_score: Tensor | None = None
        self.last_oracle_score: Tensor | None = None
        self.last_clustering_score: Tensor | None = None

    @property
    def statistics(self) -> dict[str, Tensor]:
        """The scores of the last call: ``predicted_score``, ``oracle_score`` and
        ``clustering_score`` (e.g. the NMI of the chosen clustering); empty before any call."""
        if self.last_clustering_score is None:
            return {}
        return {
            "predicted_score": self.last_predicted_score,
            "oracle_score": self.last_oracle_score,
            "clustering_score": self.last_clustering_score,
        }

    def callbacks(self) -> list[Callback]:
        return [MarginDecay(self, self.margin_decay)]

    def extra_repr(self) -> str:
        return (
            f"margin_multiplier={self.margin_multiplier}, pam_iters={self.pam_iters}, "
            f"margin_type={self.margin_type!r}, nmi_average={self.nmi_average!r}, "
            f"margin_decay={self.margin_decay}, ami_average={self.ami_average!r}"
        )

    def compute(self, embeddings: Tensor, labels: Tensor) -> Tensor:
        dist = distances(embeddings)
        with torch.no_grad():
            classes, n_classes, largest_class = _class_structure(labels)
            classes = classes.to(dist.device, non_blocking=True)
            average = {"nmi": self.nmi_average, "ami": self.ami_average}.get(
                self.margin_type, "arithmetic"
            )
            scorer = _MarginScorer(classes, n_classes, largest_class, self.margin_type, average)
            # Inference in float64, where objectives equal in exact arithmetic differ by far
            # less than the tie tolerance.
            detached = dist.detach().double()
            search = _MedoidSearch(detached, self.margin_multiplier, scorer, symmetric=True)
            medoids = search.refine(search.greedy(n_classes), self.pam_iters)
            score = scorer.score(_assign(search.columns(medoids), medoids), n_classes)
            exemplars = _oracle_medoids(detached, classes, n_classes)
        predicted = -dist.index_select(1, medoids).min(1).values.sum()
        oracle = -dist.gather(1, exemplars[classes][:, None]).sum()
        score = score.to(dist.dtype)
        self.last_medoids = medoids
        self.last_predicted_score = predicted.detach()
        self.last_oracle_score = oracle.detach()
        self.last_clustering_score = score
        return torch.relu(predicted + self.margin_multiplier * (1 - score) - oracle)


def _class_structure(labels: Tensor) -> tuple[Tensor, int, int]:
    """``(n,)`` labels -> class index of each sample ``(n,)`` int64 (on the labels' device),
    the number of classes and the size of the largest, read on the host."""
    _, classes, sizes = torch.unique(labels, return_inverse=True, return_counts=True)
    return classes, len(sizes), int(sizes.max())


class _MedoidSearch:
    """Loss-augmented inference over the points of ``dist`` ``(n, n)`` (float64): the greedy
    (Algorithm 1) and the swap refinement (Algorithm 2) of :class:`FacilityLocationLoss`,
    maximising ``F(S) + gamma Delta(S)`` (``F(S)`` alone without a scorer or when
    ``gamma = 0``).

    Each step scores all its candidates at once through the points they would move: candidate
    ``c`` of a greedy step moves the points closer to it than to their nearest medoid, a
    rare pair after the first steps. Where reading values is free (the CPU) these pairs are
    compacted and a refinement sweep stops at its first unchanged step; elsewhere every pair is
    kept with a weight of 0 or 1 and the loops run their full length, so nothing is read on the
    host and the medoids are the same. ``symmetric``: ``dist`` equals its transpose exactly,
    so its rows serve as its columns.
    """

    def __init__(
        self, dist: Tensor, gamma: float, scorer: _MarginScorer | None, symmetric: bool = False
    ) -> None:
        self.dist = dist
        self.gamma = gamma
        self.scorer = scorer if gamma > 0 else None
        self.tie = _TIE_TOLERANCE * (dist.sum(0).max() + gamma)
        self.reads = reads_are_free(dist)
        self.points = torch.arange(len(dist), device=dist.device)
        # dist's columns as rows, which are gathered several times faster
        self.transposed = dist if symmetric else dist.T.contiguous()

    def greedy(self, k: int) -> Tensor:
        """Algorithm 1: ``k`` greedy additions -> medoids ``(k,)`` in selection order."""
        if self.reads:
            return self._greedy_on_host(k)
        dist, points = self.dist, self.points
        n = len(dist)
        cluster = torch.zeros(n, dtype=torch.long, device=dist.device)
        best = self._first_best(self._first_objective(cluster))
        medoids = [best]
        chosen = torch.zeros(n, dtype=torch.bool, device=dist.device).index_fill_(0, best, True)
        nearest = dist.index_select(1, best).squeeze(1)
        # Pairs (point i, candidate c), i != c, by candidate: c takes i if dist[i, c] <
        # nearest[i]. (By candidate, the scorer's buffers are read and written in order.)
        cand = points.repeat_interleave(n - 1)
        point = torch.arange(n - 1, device=dist.device).repeat(n)
        point += point >= cand
        pair_dist = dist.flatten().index_select(0, point * n + cand)
        for step in range(1, k):
            near = nearest.index_select(0, point)
            takes = (pair_dist < near).long()
            # F(S + c) = -sum_i nearest_i + sum_i max(0, nearest_i - dist[i, c]).
            gain = (near - pair_dist) * takes
            objective = (nearest - dist.diagonal()).clamp_min(0).index_add_(0, cand, gain)
            objective = (objective - nearest.sum()).masked_fill(chosen, -torch.inf)
            if self.scorer is not None:
                # candidate c moves the points it takes, and itself, to the new cluster
                moves = _Moves(
                    torch.cat((cand, points)),
                    torch.cat((point, points)),
                    torch.cat((takes, torch.ones_like(cluster))),
                )
                scores = self.scorer(cluster, step + 1, moves, into=torch.full_like(cluster, step))
                objective = objective + self.gamma * (1 - scores)
            best = self._first_best(objective)
            medoids.append(best)
            chosen.index_fill_(0, best, True)
            taken = torch.zeros_like(cluster).index_add_(0, point, (cand == best) * takes) > 0
            taken.index_fill_(0, best, True)
            cluster = cluster.masked_fill(taken, step)
            nearest = torch.where(taken, dist.index_select(1, best).squeeze(1), nearest)
        return torch.cat(medoids)

    def _greedy_on_host(self, k: int) -> Tensor:
        """:meth:`greedy` where reading is free, in NumPy, whose operations cost a few
        microseconds less than torch's on arrays of a few thousand.

        The pairs are compacted as ``nearest`` falls. A candidate's margin is computed from the
        changes its moves make to the sums over the cells and rows of the contingency table;
        these hold from one step to the next until the candidate moves a point of a cluster
        that the step changes, so only such candidates are computed again (and only if they
        are within ``gamma``, all the margin can add, of the best facility score)."""
        dist = self.dist.numpy()
        n = len(dist)
        tie = float(self.tie)
        cluster = np.zeros(n, dtype=np.int64)
        best = _first_best_on_host(self._first_objective(torch.from_numpy(cluster)).numpy(), tie)
        medoids = [best]
        chosen = np.zeros(n, dtype=bool)
        chosen[best] = True
        nearest = dist[:, best].copy()
        takes = dist < nearest[:, None]
        np.fill_diagonal(takes, False)
        cand, point = np.nonzero(takes.T)  # by candidate, as on the device
        pair_dist = dist[point, cand]
        if self.scorer is not None:
            changes = np.zeros((len(self.scorer.tables), 2, n))
            stale = np.ones(n, dtype=bool)  # the candidates whose changes are out of date
        for step in range(1, k):
            keep = np.flatnonzero(pair_dist < nearest[point])
            point, cand, pair_dist = point.take(keep), cand.take(keep), pair_dist.take(keep)
            objective = np.maximum(nearest - dist.diagonal(), 0) - nearest.sum()
            objective += np.bincount(cand, nearest[point] - pair_dist, minlength=n)
            objective[chosen] = -np.inf
            if self.scorer is not None:
                contenders = objective >= objective.max() - self.gamma - tie
                again = contenders & stale
                moving = again[cand]
                selves = np.flatnonzero(again)
                changes[..., selves] = self.scorer.new_cluster_changes(
                    cluster,
                    step,
                    np.concatenate((cand[moving], selves)),
                    np.concatenate((point[moving], selves)),
                )[..., selves]
                stale[selves] = False
                scores = self.scorer.new_cluster_scores(cluster, step, changes)
                objective = np.where(contenders, objective + self.gamma * (1 - scores), -np.inf)
            best = _first_best_on_host(objective, tie)
            medoids.append(best)
            chosen[best] = True
            first, last = np.searchsorted(cand, (best, best + 1))
            taken = np.append(point[first:last], best)
            if self.scorer is not None:
                changed = np.zeros(step, dtype=bool)
                changed[cluster[taken]] = True
                changed = changed[cluster]
                stale |= changed
                stale[cand[changed[point]]] = True
            cluster[taken] = step
            nearest[taken] = dist[taken, best]
        return torch.tensor(medoids)

    def columns(self, index: Tensor) -> Tensor:
        """``dist[:, index]`` ``(n, len(index))``, contiguous."""
        return self.transposed.index_select(0, index).T.contiguous()

    def _first_objective(self, cluster: Tensor) -> Tensor:
        """``(n,)`` each point's objective as the first medoid, which takes every point: one
        cluster, one score."""
        objective = -self.dist.sum(0)
        if self.scorer is not None:
            objective += self.gamma * (1 - self.scorer.score(cluster, 1))
        return objective

    def refine(self, medoids: Tensor, sweeps: int) -> Tensor:
        """Algorithm 2: up to ``sweeps`` sweeps of medoid swaps -> medoids ``(k,)``.

        The steps of a sweep are sequential, but one that keeps its medoid leaves ``S`` as it
        was: so all remaining steps are evaluated at once, the first that changes its medoid
        is applied, and the evaluation resumes after it. A sweep that changes nothing ends the
        refinement, since the following sweeps would repeat it.
        """
        k = len(medoids)
        positions = torch.arange(k, device=medoids.device)
        for _ in range(sweeps):
            clusters = _assign(self.columns(medoids), medoids)
            # -sum_{clusters[i] = clusters[m]} D[i, m], the facility score of each candidate
            within = self.dist.new_zeros(k, len(self.dist)).index_add_(0, clusters, self.dist)
            facility = -within.gather(0, clusters[None, :]).squeeze(0)
            contenders = None if self.scorer is None else self._contenders(facility, clusters)
            before = medoids
            first = torch.zeros((), dtype=torch.long, device=medoids.device)
            for _ in range(k):  # a step changes at most one medoid, each at most once
                best = self._best_swaps(medoids, clusters, facility, contenders, first)
                changed = (best != medoids) & (positions >= first)
                if self.reads and not changed.any():
                    break
                at = torch.where(changed.any(), changed.byte().argmax(), k)
                medoids = torch.where(positions == at, best, medoids)
                first = at + 1
            if self.reads and torch.equal(medoids, before):
                break
        return medoids

    def _best_swaps(
        self,
        medoids: Tensor,
        clusters: Tensor,
        facility: Tensor,
        contenders: Tensor | None,
        first: Tensor,
    ) -> Tensor:
        """One refinement step for every candidate of the clusters from ``first`` on, each for
        its own cluster -> ``(k,)`` the best candidate of each cluster (ties: the lowest
        index; ``n`` for the clusters before ``first``).

        Candidate ``m`` of cluster ``t = clusters[m]`` is scored by ``facility[m] + gamma
        Delta(S with S_t := m)``, ``facility[m] = - sum_{clusters[i] = t} D[i, m]``; only the
        ``contenders`` (None: all) can win.
        """
        dist, points = self.dist, self.points
        n, k = len(dist), len(medoids)
        at_medoids = self.columns(medoids)
        current = at_medoids.argmin(1).index_copy_(0, medoids, torch.arange(k, device=dist.device))
        own = at_medoids.gather(1, current[:, None])
        second = at_medoids.scatter(1, current[:, None], torch.inf).argmin(1, keepdim=True)
        second_dist = at_medoids.gather(1, second)
        objective = facility
        active = clusters >= first
        if contenders is not None:
            active &= contenders
        if self.scorer is not None:
            # Only the active candidates are scored where reading is free: columns ``cols``.
            cols = active.nonzero().squeeze(1) if self.reads else points
            at_cols = self.columns(cols)
            target = clusters.index_select(0, cols)[None, :]
            # Candidate m takes the points (not medoids) closer to it than to their own medoid
            # (ties: an own medoid after S_t in S), and itself; the points of its cluster that
            # it does not take leave for their nearest other medoid (ties: the first in S).
            within = current[:, None] == target
            itself = points[:, None] == cols
            medoid = torch.zeros(n, dtype=torch.bool, device=dist.device)
            medoid.index_fill_(0, medoids, True)
            joins = (
                ~within
                & ~medoid[:, None]
                & ((at_cols < own) | (at_cols == own) & (current[:, None] > target))
            )
            joins |= itself & ~within
            leaves = (
                within
                & ~itself
                & ((at_cols > second_dist) | (at_cols == second_dist) & (second < target))
            )
            scored = active.index_select(0, cols)
            joining = self._pairs(joins & scored, cols)
            leaving = self._pairs(leaves & scored, cols)
            scores = self.scorer(
                current, k, joining, into=clusters, leaving=leaving, leave_to=second.squeeze(1)
            )
            objective = objective + self.gamma * (1 - scores)
        objective = objective.masked_fill(~active, -torch.inf)
        top = objective.new_full((k,), -torch.inf).scatter_reduce(0, clusters, objective, "amax")
        winner = active & (objective >= top.index_select(0, clusters) - self.tie)
        return torch.full_like(medoids, n).scatter_reduce(
            0, clusters, torch.where(winner, points, n), "amin"
        )

    def _pairs(self, mask: Tensor, cols: Tensor) -> _Moves:
        """``(n, c)`` bool ``[i, j]``: candidate ``cols[j]`` moves point ``i`` -> the moves, in
        the order of ``mask``'s elements. Where reading is free only the moves are kept; else
        every pair, weighted 0 or 1."""
        if self.reads:
            point, col = mask.nonzero().unbind(1)
            return _Moves(cols.index_select(0, col), point, None)
        n, c = mask.shape
        return _Moves(cols.repeat(n), self.points.repeat_interleave(c), mask.flatten().long())

    def _contenders(self, facility: Tensor, group: Tensor) -> Tensor | None:
        """``(n,)`` bool: the candidates that can win their ``group`` ``(n,)`` (a cluster of
        ``[0, n)``), where reading is free (None: all).

        The margin adds at most ``gamma`` to a candidate's facility score: one more than
        ``gamma`` below the best of its group cannot reach, or tie, the best objective.
        """
        if not self.reads:
            return None
        top = facility.new_full((len(facility),), -torch.inf)
        top = top.scatter_reduce(0, group, facility, "amax")
        return facility >= top.index_select(0, group) - self.gamma - self.tie

    def _first_best(self, objective: Tensor) -> Tensor:
        """``(1,)`` the lowest index whose objective ties with the largest."""
        return (objective >= objective.max() - self.tie).byte().argmax().view(1)


class _Moves(NamedTuple):
    """Points that candidates move to another cluster: ``(P,)`` each."""

    cand: Tensor  # the candidate (an index of the batch) making the move
    point: Tensor  # the point moved
    weight: Tensor | None  # 1 for a move, 0 for a pair that is none; None: all moves


def _first_best_on_host(objective: np.ndarray, tie: float) -> int:
    """The lowest index whose objective ties with the largest."""
    return int(np.argmax(objective >= objective.max() - tie))


def _assign(at_medoids: Tensor, medoids: Tensor) -> Tensor:
    """``g(S)`` from the distances to the medoids ``(n, k)``: ``(n,)`` position in ``medoids``
    of each point's nearest medoid (first among ties), every medoid in its own cluster."""
    positions = torch.arange(len(medoids), device=medoids.device)
    return at_medoids.argmin(1).index_copy_(0, medoids, positions)


def _oracle_medoids(dist: Tensor, classes: Tensor, n_classes: int) -> Tensor:
    """``(K,)`` the member of each class with the least summed distance to its class."""
    within = dist.new_zeros(n_classes, len(dist)).index_add_(0, classes, dist)
    members = classes[None, :] == torch.arange(n_classes, device=dist.device)[:, None]
    return within.masked_fill(~members, torch.inf).argmin(1)


class _MarginScorer:
    """Clipped clustering scores of the assignments proposed by many candidates at once.

    Each candidate moves a few points of a base assignment to other clusters. A score needs
    sums over the contingency table's cells and rows of ``x log x`` (``x^2`` for ``"ari"``;
    ``"ami"`` adds EMI terms by row size). A candidate changes them only in the cells and rows
    its moves touch, so a call costs ``O(n + P)`` for ``P`` moves: the count changes of each
    (candidate, cell) and (candidate, row) are gathered in a buffer of ``n (2n + 2K)`` numbers
    kept zero between calls. A cell is numbered by its first point in the base assignment,
    else by class (``n + class``: a cell of the cluster the candidate fills) or by its first
    point among those leaving for it (``n + K + point``).
    """

    def __init__(
        self, classes: Tensor, n_classes: int, largest_class: int, kind: str, average: str
    ) -> None:
        n = len(classes)
        device = classes.device
        self.classes = classes
        self.n_classes = n_classes
        self.kind = kind
        self.average = average
        self.points = torch.arange(n, device=device)
        self.ones = torch.ones(n, dtype=torch.float64, device=device)
        class_sizes = self.ones.new_zeros(n_classes).index_add_(0, classes, self.ones)
        self.total = class_sizes.sum()
        self.cols = margin_sums(class_sizes, 0)
        counts = torch.arange(n + 1, dtype=torch.float64, device=device)
        # Functions of a count, tabulated: the cells and rows sums of the first; for "ami" the
        # second is the EMI, a sum over clusters of a function of their size (the class sizes
        # being fixed).
        self.tables = [counts.square() if kind == "ari" else torch.xlogy(counts, counts)]
        if kind == "ami":
            self.tables.append(
                expected_mutual_information_terms(counts, class_sizes, self.total, largest_class)
            )
        self.width = 2 * n + n_classes
        self.row_keys = n * self.width  # rows after the cells
        self.changes = _GroupChanges(self.row_keys + n * n_classes, device)

    def score(self, assignment: Tensor, n_clusters: int) -> Tensor:
        """``()`` the clipped score of one ``(n,)`` assignment to ``n_clusters`` clusters."""
        cell_sums, row_sums = self._base(assignment, n_clusters)[-2:]
        return self._scores(cell_sums, row_sums, n_clusters).squeeze(0)

    def __call__(
        self,
        base: Tensor,
        n_clusters: int,
        joining: _Moves,
        into: Tensor,
        leaving: _Moves | None = None,
        leave_to: Tensor | None = None,
    ) -> Tensor:
        """Scores after each candidate's moves.

        Args:
            base: ``(n,)`` int64 cluster of each point, in ``[0, n_clusters)``.
            n_clusters: number of clusters; each must be non-empty after every change.
            joining: moves of points into the candidate's cluster ``into[cand]``.
            into: ``(n,)`` int64 cluster that each candidate fills.
            leaving: moves of points to ``leave_to[point]``, never their base cluster.
            leave_to: ``(n,)`` int64, with ``leaving``.

        Returns:
            ``(n,)`` float64 score of each candidate's assignment, clipped below at 0.
        """
        n, k = len(base), self.n_classes
        cell_of, cells, rows, cell_sums, row_sums = self._base(base, n_clusters)
        first_point = torch.full_like(cells, n).scatter_reduce_(0, cell_of, self.points, "amin")
        # Of each point: its cell's number and count, its row and the row's count.
        source = torch.stack(
            (
                first_point.index_select(0, cell_of),
                cells.index_select(0, cell_of),
                base,
                rows.index_select(0, base),
            )
        )
        moves = [(joining, into.index_select(0, joining.cand), n + self.classes)]
        if leaving is not None:
            leave_cell = leave_to * k + self.classes
            first_leaving = torch.full_like(first_point, n)
            first_leaving.scatter_reduce_(0, leave_cell, self.points, "amin")
            fallback = n + k + first_leaving.index_select(0, leave_cell)
            moves.append((leaving, leave_to.index_select(0, leaving.point), fallback))
        owners, keys, counts, deltas = [], [], [], []
        for move, destination, fallback in moves:
            point, cand = move.point, move.cand
            number, count, row, row_count = source.index_select(1, point)
            destination_cell = destination * k + self.classes.index_select(0, point)
            present = first_point.index_select(0, destination_cell)
            cell_key = cand * self.width
            row_key = cand * k + self.row_keys
            weight = torch.ones_like(point) if move.weight is None else move.weight
            owners += [cand, cand, cand + n, cand + n]
            keys += [
                cell_key + number,
                cell_key + torch.where(present < n, present, fallback.index_select(0, point)),
                row_key + row,
                row_key + destination,
            ]
            counts += [
                count,
                cells.index_select(0, destination_cell),
                row_count,
                rows.index_select(0, destination),
            ]
            deltas += [-weight, weight, -weight, weight]
        changes = self.changes(
            torch.cat(owners), torch.cat(keys), torch.cat(counts), torch.cat(deltas), self.tables
        )
        return self._scores(cell_sums + changes[:, :n], row_sums + changes[:, n:], n_clusters)

    def new_cluster_changes(
        self, base: np.ndarray, n_clusters: int, cand: np.ndarray, point: np.ndarray
    ) -> np.ndarray:
        """On the host: the changes of the sums over cells and rows when each candidate moves
        its points to a new cluster, for :meth:`new_cluster_scores`.

        Args:
            base: ``(n,)`` int64 cluster of each point, in ``[0, n_clusters)``, none emptied
                by the moves.
            n_clusters: number of clusters before the new one.
            cand, point: ``(P,)`` int64 each: candidate ``cand[j]`` moves ``point[j]``.

        Returns:
            ``(q, 2, n)`` float64: of each table, the change of each candidate's sum over
            cells, then over rows (meaningless for a candidate without moves).
        """
        n, k = len(base), self.n_classes
        classes, tables = self._host.classes, self._host.tables
        cell_of = base * k + classes
        cells = np.bincount(cell_of, minlength=n_clusters * k)
        rows = np.bincount(base, minlength=n_clusters)
        first_point = np.full(n_clusters * k, n)
        np.minimum.at(first_point, cell_of, np.arange(n))
        # Of each point, the three groups a move of it changes, and their counts before: the
        # cell it leaves (numbered by its first point), the cell it joins (by class) and the
        # row it leaves. With the candidate's number, each group's is below 3 n^2.
        groups = np.stack((first_point[cell_of], n * n + classes, 2 * n * n + base))
        counts = np.stack((cells[cell_of], np.zeros_like(base), rows[base]))
        keys = groups.take(point, axis=1) + n * cand  # (3, P)
        np.add.at(self._host.groups, keys, 1)
        moved = self._host.groups[keys]  # the points moved out of or into each group
        self._host.groups[keys] = 0
        before = counts.take(point, axis=1)
        after = before + moved * _LEAVE_JOIN_LEAVE
        new_row = np.bincount(cand, minlength=n)
        changes = np.empty((len(tables), 2, n))
        for table, change in zip(tables, changes, strict=True):
            # each move of a group carries its share of the group's change
            share = (table[after] - table[before]) / moved
            change[0] = np.bincount(cand, share[0] + share[1], minlength=n)
            change[1] = np.bincount(cand, share[2], minlength=n) + table[new_row]
        return changes

    def new_cluster_scores(
        self, base: np.ndarray, n_clusters: int, changes: np.ndarray
    ) -> np.ndarray:
        """On the host: ``(n,)`` float64 the score of each candidate's assignment, clipped
        below at 0, from ``base`` ``(n,)`` (``n_clusters`` clusters) and the ``(q, 2, n)``
        :meth:`new_cluster_changes` of its moves."""
        cells = np.bincount(base * self.n_classes + self._host.classes)
        rows = np.bincount(base)
        sums = np.array([[table[cells].sum(), table[rows].sum()] for table in self._host.tables])
        sums = sums[..., None] + changes
        return self._scores(sums[:, 0], sums[:, 1], n_clusters + 1)

    def _base(self, assignment: Tensor, n_clusters: int) -> tuple[Tensor, ...]:
        """The cell of each point ``(n,)``, the int64 counts of the cells ``(n_clusters K,)``
        and rows ``(n_clusters,)``, and the sums of each table over cells and rows ``(q, 1)``."""
        cell_of = assignment * self.n_classes + self.classes
        ones = torch.ones_like(assignment)
        cells = assignment.new_zeros(n_clusters * self.n_classes)
        cells.index_add_(0, cell_of, ones)
        rows = assignment.new_zeros(n_clusters).index_add_(0, assignment, ones)
        cell_sums, row_sums = (
            torch.stack([table.index_select(0, counts).sum() for table in self.tables])[:, None]
            for counts in (cells, rows)
        )
        return cell_of, cells, rows, cell_sums, row_sums

    def _scores(self, cell_sums: Tensor, row_sums: Tensor, n_clusters: int) -> Tensor:
        """Scores from the tables' sums over cells and rows ``(q, m)`` -> ``(m,)``: tensors,
        or NumPy arrays on the host."""
        on_host = isinstance(cell_sums, np.ndarray)
        total, cols = (self._host.total, self._host.cols) if on_host else (self.total, self.cols)
        zero = 0 * total
        first = (cell_sums[0], row_sums[0])
        xlogx, square = ((zero, zero), first) if self.kind == "ari" else (first, (zero, zero))
        stats = ContingencyStats(
            total=total,
            xlogx=xlogx[0],
            square=square[0],
            rows=MarginSums(xlogx[1], square[1], zero + n_clusters),
            cols=cols,
            emi=row_sums[1] if self.kind == "ami" else None,
        )
        scores = scores_from_stats(stats, self.kind, self.average)
        return np.maximum(scores, 0) if on_host else scores.clamp_min(0)

    @cached_property
    def _host(self) -> SimpleNamespace:
        """NumPy views of the constants, for :meth:`new_cluster_scores`, and its buffer of
        group counts, kept zero between calls."""
        n = len(self.classes)
        return SimpleNamespace(
            classes=self.classes.numpy(),
            tables=[table.numpy() for table in self.tables],
            total=self.total.numpy(),
            cols=MarginSums(*(value.numpy() for value in self.cols)),
            groups=np.zeros(3 * n * n, dtype=np.int64),
        )


class _GroupChanges:
    """Changes of functions of counts over groups named by keys in ``[0, size)``, through a
    buffer kept zero between calls, so that a call costs its number of entries, not ``size``."""

    # Each entry adds its change plus this to its group: the sum then holds both the group's
    # net change (less than half of it in size) and its number of entries.
    _PACK = 2**24

    def __init__(self, size: int, device: torch.device) -> None:
        self.sums = torch.zeros(size, dtype=torch.long, device=device)

    def __call__(
        self, owner: Tensor, key: Tensor, count: Tensor, delta: Tensor, tables: list[Tensor]
    ) -> Tensor:
        """Per owner, ``sum over its groups of table[count + sum delta] - table[count]``.

        Args:
            owner: ``(E,)`` int64 owner of each entry, in ``[0, m)``, ``m = 2 (len(table) -
                1)`` (the candidates' cells, then their rows).
            key: ``(E,)`` int64 group of each entry (of its owner's).
            count: ``(E,)`` int64 count of the entry's group before the change.
            delta: ``(E,)`` int64 change each entry makes to its group's count.
            tables: ``q`` functions of a count, ``(n + 1,)`` float64 each.

        Returns:
            ``(q, m)`` float64.
        """
        self.sums.index_add_(0, key, delta + self._PACK)
        packed = self.sums.index_select(0, key)
        self.sums.index_fill_(0, key, 0)
        entries = (packed + self._PACK // 2) // self._PACK
        after = count + packed - entries * self._PACK
        share = (
            entries.double().reciprocal()
        )  # each entry of a group carries its share of the group's change
        m = 2 * (len(tables[0]) - 1)
        return torch.stack(
            [
                share.new_zeros(m).index_add_(
                    0, owner, (table.index_select(0, after) - table.index_select(0, count)) * share
                )
                for table in tables
            ]
        )


def facility_location_medoids(dist: Tensor, k: int, pam_iters: int = 5) -> Tensor:
    """``(k,)`` medoids of the points of ``dist`` ``(n, n)``: the loss's greedy facility
    location (Algorithm 1) and swap refinement (Algorithm 2) without a margin, which
    maximise ``-sum_i min_{j in S} dist[i, j]`` over sets ``S`` of ``k`` points (ties: the
    lowest index). Computed in float64 on ``dist``'s device."""
    if not 1 <= k <= len(dist):
        raise ValueError(f"k must lie in 1..{len(dist)} (the number of points), got {k}")
    search = _MedoidSearch(dist.double(), 0.0, None)
    return search.refine(search.greedy(k), pam_iters)
