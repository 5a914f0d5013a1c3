"""MOM: mined tuples against a dense literal construction, their geometry on two concentric
rings, bounded memory, and the triplet loss against a literal loop."""

import re
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from cdml.losses.mom import MOMTripletLoss, manifold_tuples


def neighbours_literal(points, i, k):
    """The ``k`` nearest other points of ``i`` by Euclidean distance, ties by index."""
    distances = [(float(np.linalg.norm(points[i] - points[j])), j) for j in range(len(points))]
    return [j for _, j in sorted(distances) if j != i][:k]


def tuples_literal(features, k, graph_k, alpha=0.99, power=3.0):
    """``manifold_tuples`` written out densely in float64: the ``graph_k``-NN affinities
    ``max(0, cos)^power`` averaged with their transpose, ``S = D^-1/2 A D^-1/2``, the exact
    solution of ``(I - alpha S) r = e_i`` per point, and the ordered set differences of the
    ``k`` manifold and ``k`` Euclidean neighbours (``-1`` padding)."""
    points = features.double().numpy()
    points = points / np.linalg.norm(points, axis=1, keepdims=True)
    n = len(points)
    w = np.zeros((n, n))
    for i in range(n):
        for j in neighbours_literal(points, i, graph_k):
            w[i, j] = max(0.0, float(points[i] @ points[j])) ** power
    a = (w + w.T) / 2
    scale = 1 / np.sqrt(a.sum(1))
    s = scale[:, None] * a * scale[None, :]
    system = np.eye(n) - alpha * s
    positives = np.full((n, k), -1)
    negatives = np.full((n, k), -1)
    for i in range(n):
        ranks = np.linalg.solve(system, np.eye(n)[i])
        manifold = [j for j in sorted(range(n), key=lambda j: -ranks[j]) if j != i][:k]
        euclidean = neighbours_literal(points, i, k)
        kept = [j for j in manifold if j not in euclidean]
        positives[i, : len(kept)] = kept
        kept = [j for j in euclidean if j not in manifold]
        negatives[i, : len(kept)] = kept
    return positives, negatives


def clustered_features(n, d, seed):
    generator = torch.Generator().manual_seed(seed)
    centres = 3 * torch.randn(4, d, generator=generator)
    return centres[torch.arange(n) % 4] + torch.randn(n, d, generator=generator)


@pytest.mark.parametrize("seed", range(3))
def test_manifold_tuples_equal_the_dense_literal_construction(seed):
    features = clustered_features(90, 6, seed)
    anchors, positives, negatives = manifold_tuples(features, k=8, graph_k=5, iterations=200)
    assert torch.equal(anchors, torch.arange(90))
    expected_positives, expected_negatives = tuples_literal(features, k=8, graph_k=5)
    assert positives.dtype == negatives.dtype == torch.int64
    np.testing.assert_array_equal(positives.numpy(), expected_positives)
    np.testing.assert_array_equal(negatives.numpy(), expected_negatives)


def concentric_rings(per_ring, seed, radii=(1.0, 1.2), height=3.0, noise=0.005):
    """Two concentric circles lifted to ``z = height`` (the features are L2-normalised, which
    keeps the circles apart): neighbours along a circle are manifold neighbours, the other
    circle is close in Euclidean distance."""
    rng = np.random.default_rng(seed)
    angles = rng.uniform(0, 2 * np.pi, (2, per_ring))
    rings = [
        np.stack([r * np.cos(a), r * np.sin(a), np.full(per_ring, height)], 1)
        for r, a in zip(radii, angles, strict=True)
    ]
    points = np.concatenate(rings) + rng.normal(0, noise, (2 * per_ring, 3))
    return torch.tensor(points, dtype=torch.float32), np.repeat([0, 1], per_ring)


@pytest.mark.parametrize("seed", range(2))
def test_positives_lie_on_the_same_ring_beyond_the_euclidean_neighbours(seed):
    features, ring = concentric_rings(300, seed)
    k = 30
    _, positives, negatives = manifold_tuples(features, k=k, graph_k=6)
    assert positives.shape == negatives.shape == (600, k)
    has_positive = (positives >= 0).any(1)
    assert has_positive.all()
    points = F.normalize(features.double(), dim=1)
    rows = np.arange(600)
    for i in rows[seed::15]:
        p = positives[i][positives[i] >= 0].numpy()
        n = negatives[i][negatives[i] >= 0].numpy()
        euclidean = neighbours_literal(points.numpy(), i, k)
        assert (ring[p] == ring[i]).all()  # same manifold
        assert not set(p) & set(euclidean)  # not a Euclidean neighbour
        assert set(n) <= set(euclidean) and not set(n) & set(p)
        assert i not in set(p) | set(n)
        # Further from the anchor than every Euclidean neighbour.
        distance = (points[p] - points[i]).norm(dim=1)
        assert distance.min() >= (points[euclidean] - points[i]).norm(dim=1).max() - 1e-12
    # Negatives are mostly the other ring: close in the embedding, another manifold.
    valid = negatives >= 0
    other = ring[negatives.clamp(min=0).numpy()] != ring[:, None]
    assert other[valid.numpy()].mean() > 0.9
    # Padding comes last: a row's valid entries form a prefix.
    for tuples in (positives, negatives):
        mask = (tuples >= 0).int()
        assert torch.equal(mask, mask.sort(dim=1, descending=True, stable=True).values)


def test_manifold_tuples_memory_stays_below_one_dense_matrix():
    """N = 5000 points: the peak resident memory added by the mining (measured in a fresh
    process) stays well below that of one dense N x N float32 matrix (100 MB)."""
    script = textwrap.dedent(
        """
        import resource
        import torch
        from cdml.losses.mom import manifold_tuples

        torch.set_num_threads(1)
        manifold_tuples(torch.randn(300, 32), k=10, graph_k=10, chunk=64)  # warm-up
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        features = torch.randn(5000, 32, generator=torch.Generator().manual_seed(0))
        _, positives, _ = manifold_tuples(features, k=10, graph_k=10, iterations=3, chunk=64)
        assert positives.shape == (5000, 10)
        print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024)
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=True
    )
    added_megabytes = float(result.stdout.split()[-1])
    assert added_megabytes < 5000 * 5000 * 4 / 2**20


@pytest.mark.parametrize(
    ("features", "kwargs", "message"),
    [
        (torch.randn(40), {}, r"features must have shape \(N, D\)"),
        (torch.randn(40, 3), {"k": 40, "graph_k": 5}, "N > k"),
        (torch.randn(40, 3), {"k": 5, "graph_k": 40}, "graph_k"),
        (torch.randn(40, 3), {"k": 5, "graph_k": 5, "alpha": 1.0}, "alpha"),
        (torch.randn(40, 3), {"k": 5, "graph_k": 5, "alpha": 0.0}, "alpha"),
        (torch.randn(40, 3), {"k": 5, "graph_k": 5, "max_anchors": 0}, "max_anchors"),
    ],
)
def test_manifold_tuples_reject_bad_arguments(features, kwargs, message):
    with pytest.raises(ValueError, match=message):
        manifold_tuples(features, **kwargs)


def test_bounded_anchors_are_the_graph_modes_and_keep_their_tuples():
    features = clustered_features(200, 6, 0)
    every, positives, negatives = manifold_tuples(features, k=8, graph_k=5, iterations=200)
    anchors, some_positives, some_negatives = manifold_tuples(
        features, k=8, graph_k=5, iterations=200, max_anchors=30
    )
    assert len(anchors) == 30 and torch.equal(anchors, anchors.unique())
    # An anchor's tuples do not depend on which other points are anchors.
    assert torch.equal(some_positives, positives[anchors])
    assert torch.equal(some_negatives, negatives[anchors])
    # The modes of the degree (the random walk's stationary distribution) come first.
    points = F.normalize(features.double(), dim=1).numpy()
    graph = [neighbours_literal(points, i, 5) for i in range(200)]
    w = np.zeros((200, 200))
    for i in range(200):
        for j in graph[i]:
            w[i, j] = max(0.0, float(points[i] @ points[j])) ** 3
    degree = ((w + w.T) / 2).sum(1)
    modes = [i for i in range(200) if degree[i] > max(degree[j] for j in graph[i])]
    ranked = sorted(modes, key=lambda i: -degree[i])
    expected = ranked[:30] if len(ranked) >= 30 else ranked
    assert set(expected) <= set(anchors.tolist())


def triplet_literal(anchors, positives, negatives, margin):
    losses = []
    for a, p, n in zip(anchors, positives, negatives, strict=True):
        d_ap = sum((x - y) ** 2 for x, y in zip(a, p, strict=True)) ** 0.5
        d_an = sum((x - y) ** 2 for x, y in zip(a, n, strict=True)) ** 0.5
        losses.append(max(0.0, d_ap - d_an + margin))
    return sum(losses) / len(losses)


def unit_rows(n, d, seed):
    return F.normalize(torch.randn(n, d, generator=torch.Generator().manual_seed(seed)), dim=1)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("margin", [0.05, 0.2, 0.5, 1.0])
def test_mom_triplet_loss_equals_the_literal_hinge(seed, margin):
    a, p, n = (unit_rows(7, 5, 3 * seed + j) for j in range(3))
    expected = triplet_literal(a.tolist(), p.tolist(), n.tolist(), margin)
    value = MOMTripletLoss(margin)(a, p, n)
    assert value.dtype == torch.float32
    assert value.item() == pytest.approx(expected, rel=1e-5, abs=1e-5)


def test_mom_triplet_loss_with_zero_margin():
    a, p, n = (unit_rows(5, 3, j) for j in range(3))
    expected = triplet_literal(a.tolist(), p.tolist(), n.tolist(), 0.0)
    assert MOMTripletLoss(0.0)(a, p, n).item() == pytest.approx(expected, rel=1e-5, abs=1e-5)


def test_mom_triplet_loss_gradients():
    a, p, n = (unit_rows(6, 4, j).requires_grad_() for j in range(3))
    MOMTripletLoss(0.5)(a, p, n).backward()
    # Autograd of the hinge written per triplet.
    a2, p2, n2 = (x.detach().clone().requires_grad_() for x in (a, p, n))
    terms = [
        torch.clamp((a2[i] - p2[i]).norm() - (a2[i] - n2[i]).norm() + 0.5, min=0) for i in range(6)
    ]
    (sum(terms) / 6).backward()
    for ours, reference in ((a, a2), (p, p2), (n, n2)):
        torch.testing.assert_close(ours.grad, reference.grad, rtol=1e-4, atol=1e-5)
    # Triplets already satisfied by the margin contribute nothing.
    far = -a.detach()
    easy = MOMTripletLoss(0.1)(a.detach(), a.detach(), far)
    assert easy.item() == 0


def test_mom_triplet_loss_validation():
    a = unit_rows(4, 3, 0)
    with pytest.raises(ValueError, match="margin"):
        MOMTripletLoss(-0.1)
    with pytest.raises(ValueError, match="same"):
        MOMTripletLoss()(a, a, a[:3])
    with pytest.raises(ValueError, match="same"):
        MOMTripletLoss()(a[0], a[0], a[0])
    assert MOMTripletLoss().margin == 0.5


def test_an_epoch_goes_over_the_bounded_anchors_and_resumes_from_old_checkpoints():
    from cdml.losses import mom

    points = torch.randn(300, 8, generator=torch.Generator().manual_seed(0))
    objective = mom.MOMObjective(k=10, graph_k=5, max_anchors=40)
    assert objective.images_per_epoch(300) == 40 and objective.images_per_epoch(30) == 30
    pairing = objective.pairing(lambda rows: points, 300, report=lambda line: None)
    assert len(pairing.images) == 40 and len(pairing.positives) == 300
    rows = np.setdiff1d(np.arange(300), pairing.images)
    assert (pairing.positives[rows] == -1).all()  # only anchors have tuples
    restored = mom.MOMObjective(k=10, graph_k=5, max_anchors=40)
    restored.set_extra_state(objective.get_extra_state())
    again = restored.pairing(lambda rows: pytest.fail("mined twice"), 300)
    np.testing.assert_array_equal(again.images, pairing.images)
    np.testing.assert_array_equal(again.negatives, pairing.negatives)
    # Tuples saved when every image was an anchor.
    old = mom.MOMObjective(k=10, graph_k=5)
    old.set_extra_state({"positives": torch.zeros(300, 10, dtype=torch.long),
                         "negatives": torch.ones(300, 10, dtype=torch.long)})  # fmt: skip
    assert old.pairing(lambda rows: points, 300).images is None
    for bad in (0, 2.5, "10", True):
        with pytest.raises(ValueError, match="max_anchors"):
            mom.MOMObjective(max_anchors=bad)


def test_mining_reports_its_progress_and_stops_when_asked(monkeypatch, capsys):
    from cdml import progress
    from cdml.losses import mom

    monkeypatch.setattr(progress, "REPORT_SECONDS", 0.001)
    points = torch.randn(3000, 8, generator=torch.Generator().manual_seed(0))
    objective = mom.MOMObjective(k=10, graph_k=5, chunk=100, max_anchors=None)
    lines = []
    pairing = objective.pairing(lambda rows: points, 3000, report=lines.append)
    assert len(pairing.positives) == 3000
    assert re.search(r"MOM: mining anchors: [\d,]+ of 3,000 \(\d+ s, about \d+ s left\)",
                     capsys.readouterr().err)  # fmt: skip
    assert lines[-1].startswith("MOM: mined 3,000 anchors in")
    calls = iter([False, True])
    with pytest.raises(InterruptedError, match="stopped"):
        mom.MOMObjective(k=10, graph_k=5, chunk=100).pairing(
            lambda rows: points, 3000, report=lines.append, stop=lambda: next(calls)
        )


def test_the_graph_of_a_large_set_is_a_fixed_sample_mapped_back_to_its_images():
    from cdml.losses import mom

    points = torch.randn(300, 8, generator=torch.Generator().manual_seed(0))
    objective = mom.MOMObjective(k=10, graph_k=5, max_images=120, max_anchors=40)
    sample = objective.graph_images(300)
    assert len(sample) == 120 and (sample.diff() > 0).all()
    np.testing.assert_array_equal(sample, mom.MOMObjective(max_images=120).graph_images(300))
    asked = []
    pairing = objective.pairing(lambda rows: asked.append(rows) or points[rows], 300)
    (rows,) = asked
    np.testing.assert_array_equal(rows, sample)  # features of the sample only
    assert objective.images_per_epoch(300) == 40 and len(pairing.images) == 40
    # The tuples are those of the sample's own mining, in training-image indices.
    anchors, positives, negatives = mom.manifold_tuples(points[sample], k=10, graph_k=5,
                                                        max_anchors=40)  # fmt: skip
    np.testing.assert_array_equal(pairing.images, sample[anchors])
    for mined, expected in ((pairing.positives, positives), (pairing.negatives, negatives)):
        got = torch.from_numpy(mined[sample[anchors]])
        np.testing.assert_array_equal(got, torch.where(expected < 0, -1, sample[expected]))
    assert mom.MOMObjective(max_images=300).graph_images(300) is None
    for bad in (0, 2.5, "10", True, 50):
        with pytest.raises(ValueError, match="max_images"):
            mom.MOMObjective(max_images=bad)
