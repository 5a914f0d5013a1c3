"""Literal, slow implementation of the facility-location loss of METHODS.md section 1.

Loops over candidates and one scikit-learn call per candidate, as the original op did; the
tests and the benchmark compare the vectorised loss against it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn import metrics


@dataclass
class FacilityResult:
    loss: float
    medoids: list[int]
    predicted_score: float
    oracle_score: float
    clustering_score: float


def clustering_score(
    labels, assignment, margin_type: str, nmi_average: str, ami_average: str = "arithmetic"
) -> float:
    if margin_type == "nmi":
        score = metrics.normalized_mutual_info_score(labels, assignment, average_method=nmi_average)
    elif margin_type == "ami":
        score = metrics.adjusted_mutual_info_score(labels, assignment, average_method=ami_average)
    elif margin_type == "ari":
        score = metrics.adjusted_rand_score(labels, assignment)
    else:
        score = metrics.v_measure_score(labels, assignment)
    return max(0.0, score)


def assignment(dist: np.ndarray, medoids: list[int]) -> np.ndarray:
    result = np.zeros(len(dist), dtype=np.int64)
    for i in range(len(dist)):
        best = 0
        for k in range(1, len(medoids)):
            if dist[i, medoids[k]] < dist[i, medoids[best]]:
                best = k
        result[i] = best
    for k, medoid in enumerate(medoids):
        result[medoid] = k
    return result


def facility_score(dist: np.ndarray, medoids: list[int]) -> float:
    return -sum(min(dist[i, s] for s in medoids) for i in range(len(dist)))


def facility_location_reference(
    embeddings,
    labels,
    margin_multiplier: float = 1.0,
    pam_iters: int = 5,
    margin_type: str = "nmi",
    nmi_average: str = "geometric",
    ami_average: str = "arithmetic",
) -> FacilityResult:
    x = np.asarray(embeddings, dtype=np.float64)
    labels = np.asarray(labels)
    n = len(x)
    dist = np.sqrt(((x[:, None, :] - x[None, :, :]) ** 2).sum(-1))
    gamma = margin_multiplier

    # Objectives equal in exact arithmetic can differ in their last bits; values this close to
    # the best are ties, which go to the lowest index.
    tie = 1e-9 * (dist.sum(axis=0).max() + gamma)

    def first_best(values: dict[int, float]) -> int:
        top = max(values.values())
        return min(index for index, value in values.items() if value >= top - tie)

    def augmented(medoids):
        delta = 1 - clustering_score(
            labels, assignment(dist, medoids), margin_type, nmi_average, ami_average
        )
        return facility_score(dist, medoids) + gamma * delta

    medoids: list[int] = []
    for _ in range(len(set(labels.tolist()))):
        values = {}
        for candidate in range(n):
            if candidate not in medoids:
                values[candidate] = augmented(medoids + [candidate])
        medoids.append(first_best(values))

    for _ in range(pam_iters):
        clusters = assignment(dist, medoids)
        for k in range(len(medoids)):
            members = [j for j in range(n) if clusters[j] == k]
            values = {}
            for m in members:
                swapped = list(medoids)
                swapped[k] = m
                delta = 1 - clustering_score(
                    labels, assignment(dist, swapped), margin_type, nmi_average, ami_average
                )
                values[m] = -sum(dist[i, m] for i in members) + gamma * delta
            medoids[k] = first_best(values)

    oracle = 0.0
    for c in sorted(set(labels.tolist())):
        members = [i for i in range(n) if labels[i] == c]
        oracle += max(-sum(dist[i, m] for i in members) for m in members)

    score = clustering_score(
        labels, assignment(dist, medoids), margin_type, nmi_average, ami_average
    )
    predicted = facility_score(dist, medoids)
    loss = max(0.0, predicted + gamma * (1 - score) - oracle)
    return FacilityResult(loss, medoids, predicted, oracle, score)
