"""Facility-location structured clustering loss (Song et al., CVPR 2017)."""

from __future__ import annotations

import torch
from lightning.pytorch.callbacks import Callback
from torch import Tensor

from cdml.tuning.knob import Knob

from ._base import MetricLoss
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

    All candidates of a step are scored at once on the embeddings' device (their assignments,
    contingency tables and scores as tensors, in float64), so the greedy costs ``K`` steps of
    ``O(n^2)`` work. The steps of a refinement sweep are evaluated together too: a step that
    keeps its medoid leaves ``S`` unchanged, so only a change restarts the evaluation after
    it. The host synchronises once per call (to count the classes), then once per sweep and
    per refinement change.

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
            names, classes = torch.unique(labels, return_inverse=True)
            average = {"nmi": self.nmi_average, "ami": self.ami_average}.get(
                self.margin_type, "arithmetic"
            )
            scorer = _MarginScorer(classes, len(names), self.margin_type, average)
            # Inference in float64, where objectives equal in exact arithmetic differ by far
            # less than the tie tolerance.
            detached = dist.detach().double()
            tie = _TIE_TOLERANCE * (detached.sum(0).max() + self.margin_multiplier)
            medoids, score = self._greedy(detached, scorer, tie)
            medoids, score = self._refine(detached, medoids, score, scorer, tie)
            exemplars = _oracle_medoids(detached, classes, len(names))
        predicted = -dist.index_select(1, medoids).min(1).values.sum()
        oracle = -dist.gather(1, exemplars[classes][:, None]).sum()
        score = score.to(dist.dtype)
        self.last_medoids = medoids
        self.last_predicted_score = predicted.detach()
        self.last_oracle_score = oracle.detach()
        self.last_clustering_score = score
        return torch.relu(predicted + self.margin_multiplier * (1 - score) - oracle)

    def _greedy(self, dist: Tensor, scorer: _MarginScorer, tie: Tensor) -> tuple[Tensor, Tensor]:
        """Algorithm 1: ``K`` greedy additions -> medoids ``(K,)`` and their score ``()``."""
        n = len(dist)
        eye = torch.eye(n, dtype=torch.bool, device=dist.device)
        chosen = torch.zeros(n, dtype=torch.bool, device=dist.device)
        cluster = torch.zeros(n, dtype=torch.long, device=dist.device)
        nearest = torch.full((n,), torch.inf, dtype=dist.dtype, device=dist.device)
        medoids = []
        for step in range(scorer.n_classes):
            # moved[i, c]: adding candidate c takes point i (strictly closer; c itself always).
            moved = (dist < nearest[:, None]) | eye
            facility = -torch.minimum(dist, nearest[:, None]).sum(0)
            target = torch.full((n,), step, device=dist.device)
            scores = scorer(cluster, moved, target, step + 1)
            objective = facility + self.margin_multiplier * (1 - scores)
            objective = objective.masked_fill(chosen, -torch.inf)
            best = (objective >= objective.max() - tie).byte().argmax().view(1)
            medoids.append(best)
            chosen.index_fill_(0, best, True)
            taken = moved.index_select(1, best).squeeze(1)
            cluster = cluster.masked_fill(taken, step)
            nearest = torch.where(taken, dist.index_select(1, best).squeeze(1), nearest)
            score = scores.index_select(0, best)
        return torch.cat(medoids), score.squeeze(0)

    def _refine(
        self, dist: Tensor, medoids: Tensor, score: Tensor, scorer: _MarginScorer, tie: Tensor
    ) -> tuple[Tensor, Tensor]:
        """Algorithm 2: ``pam_iters`` sweeps of medoid swaps -> medoids and their score.

        The steps of a sweep are sequential, but one that keeps its medoid leaves ``S`` as it
        was: so all remaining steps are evaluated at once, the first that changes its medoid
        is applied, and the evaluation resumes after it.
        """
        k_count = len(medoids)
        positions = torch.arange(k_count, device=dist.device)
        for _ in range(self.pam_iters):
            clusters = _assign(dist, medoids)
            order = clusters.argsort(stable=True)  # cluster by cluster, ascending within
            offsets = [0, *torch.bincount(clusters, minlength=k_count).cumsum(0).tolist()]
            first, swapped = 0, False
            while first < k_count:
                candidates = order[offsets[first] :]
                best, best_scores = self._best_swaps(
                    dist, medoids, clusters, candidates, scorer, tie
                )
                changed = ((best != medoids) & (positions >= first)).nonzero().flatten().tolist()
                if not changed:
                    break
                first, swapped = changed[0], True
                medoids = medoids.index_copy(
                    0, positions[first : first + 1], best[first : first + 1]
                )
                score = best_scores[first]
                first += 1
            if not swapped:
                break
        return medoids, score

    def _best_swaps(
        self,
        dist: Tensor,
        medoids: Tensor,
        clusters: Tensor,
        candidates: Tensor,
        scorer: _MarginScorer,
        tie: Tensor,
    ) -> tuple[Tensor, Tensor]:
        """One refinement step for every candidate at once, each for its own cluster.

        Candidate ``m`` of cluster ``k = clusters[m]`` is scored by
        ``- sum_{clusters[i] = k} D[i, m] + gamma Delta(S with S_k := m)``.

        Returns:
            ``(K,)`` the best candidate of each cluster (ties: the lowest index; ``n`` for a
            cluster without candidates) and ``(K,)`` the score of its assignment.
        """
        n, k_count = len(dist), len(medoids)
        target = clusters.index_select(0, candidates)
        at_medoids = dist.index_select(1, medoids)
        current = _assign(dist, medoids)
        # The points of the swapped cluster that the candidate does not take go to their nearest
        # other medoid (ties: first in S); the other points compare it with their own.
        second = at_medoids.scatter(1, current[:, None], torch.inf).argmin(1)
        other = torch.where(current[:, None] == target, second[:, None], current[:, None])
        other_dist = at_medoids.gather(1, other)
        to_candidates = dist.index_select(1, candidates)
        moved = (to_candidates < other_dist) | (to_candidates == other_dist) & (other > target)
        moved |= torch.arange(n, device=dist.device)[:, None] == candidates
        # The other medoids stay in their own clusters whatever the distances.
        position = torch.full_like(current, -1).index_copy_(
            0, medoids, torch.arange(k_count, device=dist.device)
        )
        moved &= (position[:, None] < 0) | (position[:, None] == target)
        scores = scorer(current, moved, target, k_count, leave_to=second)
        within = (to_candidates * (clusters[:, None] == target)).sum(0)
        objective = -within + self.margin_multiplier * (1 - scores)
        top = objective.new_full((k_count,), -torch.inf).scatter_reduce(
            0, target, objective, "amax"
        )
        winner = objective >= top.index_select(0, target) - tie
        best = torch.full_like(medoids, n).scatter_reduce(
            0, target, torch.where(winner, candidates, n), "amin"
        )
        winner &= candidates == best.index_select(0, target)
        best_scores = scores.new_zeros(k_count).index_add_(
            0, target, torch.where(winner, scores, 0)
        )
        return best, best_scores


def _assign(dist: Tensor, medoids: Tensor) -> Tensor:
    """``g(S)``: ``(n,)`` position in ``medoids`` of each point's nearest medoid (first among
    ties), every medoid in its own cluster."""
    positions = torch.arange(len(medoids), device=dist.device)
    return dist.index_select(1, medoids).argmin(1).index_copy_(0, medoids, positions)


def _oracle_medoids(dist: Tensor, classes: Tensor, n_classes: int) -> Tensor:
    """``(K,)`` the member of each class with the least summed distance to its class."""
    members = classes[None, :] == torch.arange(n_classes, device=dist.device)[:, None]
    within = members.to(dist.dtype) @ dist
    return within.masked_fill(~members, torch.inf).argmin(1)


class _MarginScorer:
    """Clipped clustering scores of the assignments proposed by many candidates at once.

    Each candidate changes a base assignment in one cluster. The contingency tables of all
    candidates are built at once, their cells numbered by a point that lies in them, so that a
    call costs ``O(n m)`` for ``m`` candidates whatever the number of clusters.
    """

    def __init__(self, classes: Tensor, n_classes: int, kind: str, average: str) -> None:
        n = len(classes)
        self.classes = classes
        self.classes_twice = classes.repeat(2)
        self.n_classes = n_classes
        self.kind = kind
        self.average = average
        self.points = torch.arange(2 * n, device=classes.device)
        ones = torch.ones(n, dtype=torch.float64, device=classes.device)
        class_sizes = ones.new_zeros(n_classes).index_add_(0, classes, ones)
        self.total = class_sizes.sum()
        self.cols = margin_sums(class_sizes, 0)
        counts = torch.arange(n + 1, dtype=torch.float64, device=classes.device)
        self.xlogx = torch.xlogy(counts, counts)  # of every possible count
        # EMI is a sum over clusters of a function of the cluster size alone (the class sizes
        # being fixed): tabulate it for every possible size.
        self.emi_by_size = None
        if kind == "ami":
            self.emi_by_size = expected_mutual_information_terms(counts, class_sizes, self.total)

    def __call__(
        self,
        base: Tensor,
        moved: Tensor,
        target: Tensor,
        n_clusters: int,
        leave_to: Tensor | None = None,
    ) -> Tensor:
        """Scores after each candidate's change.

        Candidate ``c`` puts the points ``moved[:, c]`` in cluster ``target[c]``, sends the
        other points of that cluster to ``leave_to`` and leaves the rest in ``base``.

        Args:
            base: ``(n,)`` int64 cluster of each point, in ``[0, n_clusters)``.
            moved: ``(n, m)`` bool.
            target: ``(m,)`` int64 cluster of each candidate.
            n_clusters: number of clusters; each must be non-empty after every change (it
                holds its medoid).
            leave_to: ``(n,)`` int64 cluster of the points their cluster's candidate does not
                take, never their own; None when no such point exists.

        Returns:
            ``(m,)`` float64 scores of the labels against each resulting assignment, clipped
            below at 0.
        """
        n, m = moved.shape
        k = self.n_classes
        # Per candidate, which points enter the target cluster, stay in their base cluster or
        # depart to `leave_to` (counts up to n are exact in float32).
        entering = moved.to(torch.float32)
        staying = 1 - entering
        owners = base
        if leave_to is not None:
            departing = ((base[:, None] == target) & ~moved).to(torch.float32)
            staying -= departing
            owners = torch.cat((base, leave_to))
        # Cells (cluster, class) outside the target cluster are those of `base` and `leave_to`,
        # each numbered by the first point (of these n or 2n) that lies in it, so there are at
        # most 2n of them whatever the number of clusters. The target cluster's cells, which
        # the change empties of their base points, follow, one per class.
        keys = owners * k + self.classes_twice[: len(owners)]
        slots = len(keys)
        slot = torch.full((n_clusters * k,), slots, device=base.device)
        slot = slot.scatter_reduce_(0, keys, self.points[:slots], "amin").index_select(0, keys)
        cells = entering.new_zeros(slots + k, m)
        cells[:slots].index_add_(0, slot[:n], staying)
        cells[slots:].index_add_(0, self.classes, entering)
        rows = entering.new_zeros(n_clusters, m).index_add_(0, base, staying)
        rows.scatter_add_(0, target[None, :], entering.sum(0, keepdim=True))
        if leave_to is not None:
            cells[:slots].index_add_(0, slot[n:], departing)
            rows.index_add_(0, leave_to, departing)
        stats = ContingencyStats(
            total=self.total,
            xlogx=self._xlogx_sum(cells),
            square=_square_sum(cells),
            rows=MarginSums(
                self._xlogx_sum(rows), _square_sum(rows), torch.full_like(self.total, n_clusters)
            ),
            cols=self.cols,
            emi=None if self.emi_by_size is None else self.emi_by_size[rows.long()].sum(0),
        )
        return scores_from_stats(stats, self.kind, self.average).clamp_min(0)

    def _xlogx_sum(self, counts: Tensor) -> Tensor:
        """``(groups, m)`` float32 counts -> ``(m,)`` float64 sums of x log x, looked up."""
        return self.xlogx.index_select(0, counts.long().flatten()).view_as(counts).sum(0)


def _square_sum(counts: Tensor) -> Tensor:
    """``(groups, m)`` float32 counts -> ``(m,)`` float64 sums of x^2 (exact below 2^24)."""
    return counts.square().sum(0).double()


def facility_location_medoids(dist: Tensor, k: int, pam_iters: int = 5) -> Tensor:
    """``(k,)`` medoids of the points of ``dist`` ``(n, n)``: the loss's greedy facility
    location (Algorithm 1) and swap refinement (Algorithm 2) without a margin, which
    maximise ``-sum_i min_{j in S} dist[i, j]`` over sets ``S`` of ``k`` points (ties: the
    lowest index). Computed in float64 on ``dist``'s device."""
    if not 1 <= k <= len(dist):
        raise ValueError(f"k must lie in 1..{len(dist)} (the number of points), got {k}")
    search = FacilityLocationLoss(margin_multiplier=0.0, pam_iters=pam_iters)
    dist = dist.double()
    # Without a margin the clustering score drops out of the objective: any classes will do.
    classes = torch.zeros(len(dist), dtype=torch.long, device=dist.device)
    scorer = _MarginScorer(classes, k, "nmi", "arithmetic")
    tie = _TIE_TOLERANCE * dist.sum(0).max()
    medoids, score = search._greedy(dist, scorer, tie)
    return search._refine(dist, medoids, score, scorer, tie)[0]
