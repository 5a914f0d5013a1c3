import pytest
import torch

from cdml.models.cluster_head import ClusterHead
from cdml.models.decoder import ReconstructionDecoder, centroid_feature_maps


def test_cluster_head_gives_probabilities_of_normalised_logits():
    head = ClusterHead(embedding_size=8, num_clusters=5).eval()
    embeddings = torch.randn(6, 8)
    probs = head(embeddings)
    assert probs.shape == (6, 5)
    torch.testing.assert_close(probs.sum(1), torch.ones(6))
    logits = torch.nn.functional.normalize(head.layers(embeddings), dim=1)
    torch.testing.assert_close(probs, torch.softmax(logits, 1))
    # Unit-norm logits bound how confident an assignment can be.
    assert probs.max() / probs.min() <= torch.e**2 + 1e-4
    with pytest.raises(ValueError, match="num_clusters"):
        ClusterHead(8, 1)


@pytest.mark.parametrize(
    ("feature_size", "image_size"), [((7, 7), 224), ((1, 1), 32), ((2, 2), 64), ((3, 3), 100)]
)
def test_decoder_reaches_the_image_size(feature_size, image_size):
    decoder = ReconstructionDecoder(24, feature_size, image_size, width=4)
    images = decoder(torch.randn(2, 24, *feature_size))
    assert images.shape == (2, 3, image_size, image_size)
    assert images.min() > 0 and images.max() < 1


def test_centroid_maps_are_member_means():
    maps = torch.randn(7, 3, 2, 2, requires_grad=True)
    assignments = torch.tensor([0, 2, 2, 0, 3, 2, 0])
    centroids = centroid_feature_maps(maps, assignments, num_clusters=5)
    for cluster in range(5):
        members = [i for i in range(7) if assignments[i] == cluster]
        expected = maps[members].mean(0) if members else torch.zeros(3, 2, 2)
        torch.testing.assert_close(centroids[cluster], expected)
    centroids.sum().backward()
    torch.testing.assert_close(maps.grad[1], torch.full((3, 2, 2), 1 / 3))
    with pytest.raises(ValueError, match="assignments"):
        centroid_feature_maps(maps, assignments[:3], 5)
