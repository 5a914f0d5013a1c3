"""Literal, slow implementations of the baselines (METHODS.md section 2) and of the Group
Loss (section 3), one sample or pair at a time, for the tests to compare against."""

from __future__ import annotations

import math

import numpy as np


def _squared(x: np.ndarray, i: int, j: int) -> float:
    return float(sum((x[i, f] - x[j, f]) ** 2 for f in range(x.shape[1])))


def triplet_semihard_reference(x, labels, margin: float = 1.0) -> float:
    x, labels = np.asarray(x, dtype=np.float64), list(labels)
    n = len(labels)
    terms = []
    for a in range(n):
        negatives = [k for k in range(n) if labels[k] != labels[a]]
        if not negatives:
            continue
        for p in range(n):
            if p == a or labels[p] != labels[a]:
                continue
            positive = _squared(x, a, p)
            distances = [_squared(x, a, k) for k in negatives]
            farther = [value for value in distances if value > positive]
            negative = min(farther) if farther else max(distances)
            terms.append(max(0.0, margin + positive - negative))
    return sum(terms) / len(terms) if terms else 0.0


def lifted_struct_reference(x, labels, margin: float = 1.0) -> float:
    x, labels = np.asarray(x, dtype=np.float64), list(labels)
    n = len(labels)

    def dist(i, j):
        return math.sqrt(_squared(x, i, j))

    total, pairs = 0.0, 0
    for i in range(n):
        for j in range(i + 1, n):
            if labels[i] != labels[j]:
                continue
            pairs += 1
            exps = [math.exp(margin - dist(i, k)) for k in range(n) if labels[k] != labels[i]]
            exps += [math.exp(margin - dist(j, k)) for k in range(n) if labels[k] != labels[j]]
            if exps:
                total += max(0.0, math.log(sum(exps)) + dist(i, j)) ** 2
    return total / (2 * pairs) if pairs else 0.0


def npairs_reference(x, labels, reg_lambda: float = 0.002) -> float:
    x, labels = np.asarray(x, dtype=np.float64), list(labels)
    members: dict[int, list[int]] = {}
    for i, label in enumerate(labels):
        members.setdefault(label, []).append(i)
    pairs = [(found[0], found[1]) for found in members.values() if len(found) >= 2]
    if not pairs:
        return 0.0
    anchors = [x[a] for a, _ in pairs]
    positives = [x[p] for _, p in pairs]
    anchor_labels = [labels[a] for a, _ in pairs]
    positive_labels = [labels[p] for _, p in pairs]
    cross_entropy = 0.0
    for r, anchor in enumerate(anchors):
        logits = [float(np.dot(anchor, positive)) for positive in positives]
        top = max(logits)
        log_norm = top + math.log(sum(math.exp(v - top) for v in logits))
        targets = [float(anchor_labels[r] == label) for label in positive_labels]
        cross_entropy -= sum(
            t / sum(targets) * (v - log_norm) for t, v in zip(targets, logits, strict=True)
        )
    cross_entropy /= len(pairs)
    mean_anchor = sum(float(np.dot(a, a)) for a in anchors) / len(pairs)
    mean_positive = sum(float(np.dot(p, p)) for p in positives) / len(pairs)
    return cross_entropy + 0.25 * reg_lambda * (mean_anchor + mean_positive)


def group_loss_reference(
    x, labels, weight, bias, temperature: float, num_anchors: int, num_iters: int
) -> float:
    x, labels = np.asarray(x, dtype=np.float64), list(labels)
    weight, bias = np.asarray(weight, dtype=np.float64), np.asarray(bias, dtype=np.float64)
    n, d = x.shape
    classes = len(bias)
    logits = [[float(np.dot(weight[c], x[i]) + bias[c]) for c in range(classes)] for i in range(n)]

    centred = [[x[i, f] - sum(x[i]) / d for f in range(d)] for i in range(n)]
    norms = [math.sqrt(sum(v * v for v in row)) for row in centred]
    similarity = [
        [
            max(0.0, sum(a * b for a, b in zip(centred[i], centred[j], strict=True)))
            / (norms[i] * norms[j])
            for j in range(n)
        ]
        for i in range(n)
    ]

    probs = []
    seen: dict[int, int] = {}
    for i in range(n):
        if seen.get(labels[i], 0) < num_anchors:
            probs.append([float(c == labels[i]) for c in range(classes)])
        else:
            exps = [math.exp(v / temperature) for v in logits[i]]
            probs.append([e / sum(exps) for e in exps])
        seen[labels[i]] = seen.get(labels[i], 0) + 1

    for _ in range(num_iters):
        support = [
            [sum(similarity[i][j] * probs[j][c] for j in range(n)) for c in range(classes)]
            for i in range(n)
        ]
        probs = [[probs[i][c] * support[i][c] for c in range(classes)] for i in range(n)]
        probs = [[p / sum(row) for p in row] for row in probs]

    propagation = -sum(math.log(probs[i][labels[i]] + 1e-12) for i in range(n)) / n
    cross_entropy = 0.0
    for i in range(n):
        log_norm = math.log(sum(math.exp(v) for v in logits[i]))
        cross_entropy -= (logits[i][labels[i]] - log_norm) / n
    return propagation + cross_entropy
