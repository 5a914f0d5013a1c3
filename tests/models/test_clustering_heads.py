"""Cluster head, reconstruction decoder and centroid feature maps (METHODS.md section 4)."""

import math

import pytest
import timm
import torch

from cdml.models.cluster_head import ClusterHead
from cdml.models.decoder import ReconstructionDecoder, centroid_feature_maps


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def randomised_head(embedding_size, num_clusters, seed):
    """A double-precision head whose BatchNorm statistics and affine terms are not the
    identity, so the literal check below exercises them."""
    generator = torch.Generator().manual_seed(seed)
    head = ClusterHead(embedding_size, num_clusters).double()
    norm, linear = head.layers[0], head.layers[2]
    with torch.no_grad():
        norm.running_mean.copy_(torch.randn(embedding_size, generator=generator))
        norm.running_var.copy_(torch.rand(embedding_size, generator=generator) + 0.5)
        norm.weight.copy_(torch.randn(embedding_size, generator=generator))
        norm.bias.copy_(torch.randn(embedding_size, generator=generator))
        linear.weight.copy_(torch.randn(num_clusters, embedding_size, generator=generator))
        linear.bias.copy_(torch.randn(num_clusters, generator=generator))
    return head


def head_literal(head, x):
    """BatchNorm with running statistics, Linear, L2 normalisation, softmax; per element."""
    norm, linear = head.layers[0], head.layers[2]
    out = []
    for row in x.tolist():
        normed = [
            (v - norm.running_mean[j].item())
            / math.sqrt(norm.running_var[j].item() + norm.eps)
            * norm.weight[j].item()
            + norm.bias[j].item()
            for j, v in enumerate(row)
        ]
        logits = [
            sum(linear.weight[c, j].item() * normed[j] for j in range(len(normed)))
            + linear.bias[c].item()
            for c in range(linear.out_features)
        ]
        length = math.sqrt(sum(v * v for v in logits))
        exps = [math.exp(v / length) for v in logits]
        out.append([e / sum(exps) for e in exps])
    return torch.tensor(out, dtype=torch.float64)


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize(("d", "k"), [(8, 2), (16, 5), (128, 32)])
def test_cluster_head_equals_the_literal_layers(seed, d, k):
    head = randomised_head(d, k, seed).eval()
    x = torch.randn(6, d, generator=torch.Generator().manual_seed(seed + 10), dtype=torch.float64)
    probs = head(x)
    assert probs.shape == (6, k)
    torch.testing.assert_close(probs, head_literal(head, x), rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(probs.sum(1), torch.ones(6, dtype=torch.float64))
    # Unit-norm logits: no probability ratio within a row exceeds e^2.
    assert (probs.max(1).values / probs.min(1).values).max() <= math.e**2 * (1 + 1e-9)


def test_cluster_head_defaults_training_mode_and_gradients():
    head = ClusterHead()
    norm, dropout, linear = head.layers
    assert (norm.num_features, dropout.p, linear.in_features, linear.out_features) == (
        128,
        0.6,
        128,
        32,
    )
    x = torch.randn(16, 128, requires_grad=True)
    torch.manual_seed(0)
    first = head(x)
    second = head(x)
    assert not torch.allclose(first, second)  # dropout is active in training
    first.log().sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert all(p.grad is not None for p in head.parameters())
    # Without dropout, training mode normalises with the batch statistics.
    plain = ClusterHead(4, 3, dropout=0.0)
    y = torch.randn(10, 4)
    normed = (y - y.mean(0)) / torch.sqrt(y.var(0, unbiased=False) + plain.layers[0].eps)
    expected = torch.softmax(torch.nn.functional.normalize(plain.layers[2](normed), dim=1), 1)
    torch.testing.assert_close(plain(y), expected)


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"embedding_size": 0}, "embedding_size"),
        ({"num_clusters": 1}, "num_clusters"),
        ({"dropout": -0.1}, "dropout"),
        ({"dropout": 1.0}, "dropout"),
    ],
)
def test_cluster_head_validation(kwargs, name):
    with pytest.raises(ValueError, match=name):
        ClusterHead(**kwargs)


@pytest.mark.parametrize(
    ("channels", "feature_size", "image_size"),
    [
        (1280, (7, 7), 224),  # EfficientNet-Lite0 at 224
        (2048, (1, 1), 32),  # ResNet-50 at 32
        (512, (2, 2), 64),
        (64, (3, 3), 100),  # 100 is not a power-of-two multiple of 3
        (96, (4, 3), 112),  # non-square map
        (32, (8, 8), 4),  # map larger than the image: no upsampling block
    ],
)
def test_decoder_reaches_the_image_size(channels, feature_size, image_size):
    decoder = ReconstructionDecoder(channels, feature_size, image_size, width=4)
    upsampling = [m for m in decoder.blocks if isinstance(m, torch.nn.Upsample)]
    assert len(upsampling) == max(0, math.ceil(math.log2(image_size / min(feature_size))))
    maps = torch.randn(2, channels, *feature_size, requires_grad=True)
    images = decoder(maps)
    assert images.shape == (2, 3, image_size, image_size)
    assert images.min() > 0 and images.max() < 1
    images.mean().backward()
    assert maps.grad is not None and maps.grad.abs().sum() > 0
    assert decoder.eval()(maps[:1].detach()).shape == (1, 3, image_size, image_size)


@pytest.fixture(scope="module")
def tiny_backbone():
    """timm's small test ResNet: a real backbone's last feature map, without weights."""
    return timm.create_model("test_resnet", pretrained=False, num_classes=0).eval()


@pytest.mark.parametrize("image_size", [224, 64, 100])
def test_decoder_inverts_a_timm_backbones_feature_map_size(tiny_backbone, image_size):
    images = torch.rand(2, 3, image_size, image_size)
    with torch.no_grad():
        maps = tiny_backbone.forward_features(images)
    decoder = ReconstructionDecoder(maps.shape[1], tuple(maps.shape[2:]), image_size, width=4)
    reconstruction = decoder(maps)
    assert reconstruction.shape == images.shape
    assert torch.isfinite(torch.nn.functional.mse_loss(reconstruction, images))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"in_channels": 0, "feature_size": (7, 7), "image_size": 224}, "in_channels=0"),
        ({"in_channels": 8, "feature_size": (0, 7), "image_size": 224}, "feature_size"),
        ({"in_channels": 8, "feature_size": (7, 7), "image_size": 0}, "image_size=0"),
        ({"in_channels": 8, "feature_size": (7, 7), "image_size": 224, "width": 0}, "width=0"),
    ],
)
def test_decoder_validation(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ReconstructionDecoder(**kwargs)


@pytest.mark.parametrize("seed", range(4))
def test_centroid_maps_equal_loop_means(seed):
    generator = torch.Generator().manual_seed(seed)
    k = 6
    maps = torch.randn(9, 4, 3, 2, generator=generator, dtype=torch.float64)
    assignments = torch.randint(k - 2, (9,), generator=generator)  # at least 2 empty clusters
    centroids = centroid_feature_maps(maps, assignments, k)
    assert centroids.shape == (k, 4, 3, 2) and centroids.dtype == torch.float64
    for cluster in range(k):
        members = [i for i in range(9) if assignments[i] == cluster]
        expected = torch.zeros(4, 3, 2, dtype=torch.float64)
        for i in members:
            expected += maps[i] / len(members)
        torch.testing.assert_close(centroids[cluster], expected, rtol=1e-12, atol=1e-12)


def test_centroid_maps_gradients_and_validation():
    maps = torch.randn(5, 2, 2, 2, dtype=torch.float64, requires_grad=True)
    assignments = torch.tensor([1, 0, 1, 3, 1])
    assert torch.autograd.gradcheck(lambda x: centroid_feature_maps(x, assignments, 4), (maps,))
    with pytest.raises(ValueError, match="assignments"):
        centroid_feature_maps(maps, assignments[:4], 4)
    with pytest.raises(ValueError, match="assignments"):
        centroid_feature_maps(maps, assignments[None], 4)
