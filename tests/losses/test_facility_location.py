import pytest
import torch
import torch.nn.functional as F

from cdml.losses import FacilityLocationLoss, as_on_accelerator

from .reference_facility import facility_location_reference

KINDS = ["nmi", "ami", "ari", "vmeasure"]


def _batch(n: int, n_classes: int, seed: int, dtype=torch.float64):
    generator = torch.Generator().manual_seed(seed)
    embeddings = F.normalize(torch.randn(n, 8, generator=generator, dtype=torch.float64), dim=1)
    labels = torch.randint(0, n_classes, (n,), generator=generator)
    return embeddings.to(dtype), labels


def _check_against_reference(embeddings, labels, rel=1e-9, **kwargs):
    loss = FacilityLocationLoss(**kwargs)
    value = loss(embeddings, labels)
    reference = facility_location_reference(embeddings.double().numpy(), labels.numpy(), **kwargs)
    assert loss.last_medoids.tolist() == reference.medoids
    assert value.item() == pytest.approx(reference.loss, rel=rel, abs=1e-12)
    assert loss.last_predicted_score.item() == pytest.approx(reference.predicted_score, rel=rel)
    assert loss.last_oracle_score.item() == pytest.approx(reference.oracle_score, rel=rel)
    assert loss.last_clustering_score.item() == pytest.approx(
        reference.clustering_score, rel=rel, abs=1e-12
    )


@pytest.mark.parametrize("margin_type", KINDS)
@pytest.mark.parametrize("pam_iters", [0, 5])
@pytest.mark.parametrize(
    ("n", "n_classes", "margin_multiplier", "seed"),
    [(16, 4, 0.1, 0), (24, 12, 10.0, 1), (32, 8, 1.0, 2)],
)
def test_equals_literal_reference(margin_type, pam_iters, n, n_classes, margin_multiplier, seed):
    embeddings, labels = _batch(n, n_classes, seed)
    _check_against_reference(
        embeddings,
        labels,
        margin_multiplier=margin_multiplier,
        pam_iters=pam_iters,
        margin_type=margin_type,
    )


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("average", ["max", "geometric"])
def test_ami_margin_takes_its_normalisation(average, seed):
    embeddings, labels = _batch(48, 4, seed)
    _check_against_reference(
        embeddings, labels, margin_multiplier=8.0, margin_type="ami", ami_average=average
    )


@pytest.mark.parametrize("margin_type", KINDS)
def test_equals_literal_reference_at_64(margin_type):
    embeddings, labels = _batch(64, 16, 3)
    _check_against_reference(embeddings, labels, margin_multiplier=3.0, margin_type=margin_type)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("margin_type", "n", "pam_iters", "margin_multiplier", "seed"),
    [
        *[(kind, 128, 5, 1.0, 4) for kind in KINDS],
        *[(kind, 128, 0, 0.1, 5) for kind in KINDS],
        ("ami", 192, 5, 10.0, 6),
        ("vmeasure", 192, 5, 0.5, 7),
        ("nmi", 256, 5, 2.0, 8),
        ("ari", 256, 5, 5.0, 9),
    ],
)
def test_equals_literal_reference_on_large_batches(
    margin_type, n, pam_iters, margin_multiplier, seed
):
    embeddings, labels = _batch(n, n // 4, seed)
    _check_against_reference(
        embeddings,
        labels,
        margin_multiplier=margin_multiplier,
        pam_iters=pam_iters,
        margin_type=margin_type,
    )


@pytest.mark.parametrize("seed", range(3))
def test_float32_equals_reference(seed):
    embeddings, labels = _batch(48, 12, seed, torch.float32)
    _check_against_reference(embeddings, labels, rel=1e-5, margin_multiplier=1.0)


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("margin_multiplier", [0.0, 1.0])
def test_ties_go_to_the_lowest_index(seed, margin_multiplier):
    # Integer points on a line: equal distances and equal objectives everywhere.
    generator = torch.Generator().manual_seed(seed)
    embeddings = torch.randint(0, 5, (20, 1), generator=generator).double()
    labels = torch.randint(0, 6, (20,), generator=generator)
    _check_against_reference(
        embeddings, labels, margin_multiplier=margin_multiplier, margin_type=KINDS[seed % 4]
    )


def test_tie_examples():
    # Two points, one class: both are the best single medoid; the first wins.
    loss = FacilityLocationLoss(margin_multiplier=0.0)
    loss(torch.tensor([[0.0], [2.0]], dtype=torch.float64), torch.tensor([0, 0]))
    assert loss.last_medoids.tolist() == [0]
    # Points 0, 1, 3, 4 on a line: the greedy ties 1 with 3 (first step), then 3 with 4; the
    # refinement ties 0 with 1 and 3 with 4.
    embeddings = torch.tensor([[0.0], [1.0], [3.0], [4.0]], dtype=torch.float64)
    labels = torch.tensor([0, 0, 1, 1])
    greedy = FacilityLocationLoss(margin_multiplier=0.0, pam_iters=0)
    greedy(embeddings, labels)
    assert greedy.last_medoids.tolist() == [1, 2]
    loss(embeddings, labels)
    assert loss.last_medoids.tolist() == [0, 2]


def test_one_class_batch_gives_zero():
    embeddings, _ = _batch(12, 1, 0)
    loss = FacilityLocationLoss(margin_multiplier=5.0, margin_type="ami")
    assert loss(embeddings, torch.full((12,), 7)).item() == pytest.approx(0.0, abs=1e-12)
    assert loss.last_clustering_score.item() == 1.0
    assert len(loss.last_medoids) == 1


@pytest.mark.parametrize("margin_type", KINDS)
def test_all_distinct_labels_give_zero(margin_type):
    embeddings, _ = _batch(10, 1, 1)
    loss = FacilityLocationLoss(margin_multiplier=2.0, margin_type=margin_type)
    assert loss(embeddings, torch.arange(10)).item() == pytest.approx(0.0, abs=1e-12)
    assert sorted(loss.last_medoids.tolist()) == list(range(10))


@pytest.mark.parametrize("labels", [[0, 0], [0, 1]])
def test_two_samples_equal_reference(labels):
    embeddings, _ = _batch(2, 1, 2)
    _check_against_reference(embeddings, torch.tensor(labels), margin_multiplier=1.0)


def test_logged_values_make_up_the_loss():
    embeddings, labels = _batch(40, 10, 4, torch.float32)
    embeddings.requires_grad_()
    loss = FacilityLocationLoss(margin_multiplier=2.0)
    value = loss(embeddings, labels)
    assert loss.last_medoids.dtype == torch.int64
    assert loss.last_medoids.shape == (len(labels.unique()),)
    for logged in (loss.last_predicted_score, loss.last_oracle_score, loss.last_clustering_score):
        assert not logged.requires_grad and logged.dtype == torch.float32
    expected = torch.relu(
        loss.last_predicted_score + 2.0 * (1 - loss.last_clustering_score) - loss.last_oracle_score
    )
    assert value.item() == pytest.approx(expected.item(), rel=1e-6)
    assert loss.statistics == {
        "predicted_score": loss.last_predicted_score,
        "oracle_score": loss.last_oracle_score,
        "clustering_score": loss.last_clustering_score,
    }


def test_statistics_are_empty_before_the_first_call():
    assert FacilityLocationLoss().statistics == {}


def test_runs_without_scikit_learn(monkeypatch):
    import sklearn.metrics

    def forbidden(*args, **kwargs):
        raise AssertionError("scikit-learn called inside the loss")

    for name in (
        "normalized_mutual_info_score",
        "adjusted_mutual_info_score",
        "adjusted_rand_score",
        "v_measure_score",
    ):
        monkeypatch.setattr(sklearn.metrics, name, forbidden)
    embeddings, labels = _batch(32, 8, 5)
    for margin_type in KINDS:
        assert torch.isfinite(FacilityLocationLoss(margin_type=margin_type)(embeddings, labels))


def test_gradient_flows_and_is_finite_with_duplicates():
    embeddings, labels = _batch(16, 4, 6)
    embeddings[5] = embeddings[3]  # a zero distance off the diagonal
    embeddings.requires_grad_()
    FacilityLocationLoss(margin_multiplier=10.0)(embeddings, labels).backward()
    assert torch.isfinite(embeddings.grad).all()
    assert embeddings.grad.abs().sum() > 0


def test_gradcheck():
    embeddings, labels = _batch(10, 3, 7)
    embeddings.requires_grad_()
    loss = FacilityLocationLoss(margin_multiplier=10.0)
    assert loss(embeddings, labels) > 0
    assert torch.autograd.gradcheck(lambda x: loss(x, labels), (embeddings,))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"margin_multiplier": -1.0}, "margin_multiplier"),
        ({"margin_multiplier": float("nan")}, "margin_multiplier"),
        ({"pam_iters": -1}, "pam_iters"),
        ({"pam_iters": 1.5}, "pam_iters"),
        ({"margin_type": "f1"}, "margin_type"),
        ({"nmi_average": "median"}, "nmi_average"),
        ({"ami_average": "median"}, "ami_average"),
    ],
)
def test_bad_hyperparameters_raise(kwargs, message):
    with pytest.raises(ValueError, match=message):
        FacilityLocationLoss(**kwargs)


@pytest.mark.parametrize("margin_type", KINDS)
@pytest.mark.parametrize(
    ("n", "n_classes", "seed"), [(24, 6, 0), (40, 10, 1), (64, 32, 2), (128, 32, 3)]
)
def test_the_accelerator_search_finds_the_same_medoids(margin_type, n, n_classes, seed):
    # Without reads: no compaction, no pruning, loops of full length.
    embeddings, labels = _batch(n, n_classes, seed)
    loss = FacilityLocationLoss(margin_multiplier=2.0, margin_type=margin_type)
    value = loss(embeddings, labels)
    medoids = loss.last_medoids
    with as_on_accelerator():
        assert loss(embeddings, labels).item() == pytest.approx(value.item(), rel=1e-12)
    assert torch.equal(loss.last_medoids, medoids)


@pytest.mark.parametrize("seed", range(8))
def test_the_accelerator_search_breaks_ties_the_same_way(seed):
    # Integer points on a line, many more than classes: equal objectives at every step.
    generator = torch.Generator().manual_seed(seed)
    embeddings = torch.randint(0, 6, (48, 1), generator=generator).double()
    labels = torch.randint(0, 12, (48,), generator=generator)
    loss = FacilityLocationLoss(margin_multiplier=[0.0, 1.0][seed % 2], margin_type=KINDS[seed % 4])
    value = loss(embeddings, labels)
    medoids = loss.last_medoids
    with as_on_accelerator():
        assert loss(embeddings, labels).item() == pytest.approx(value.item(), rel=1e-12, abs=1e-12)
    assert torch.equal(loss.last_medoids, medoids)
