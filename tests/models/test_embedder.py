import pytest
import timm
import torch
from torch import nn

from cdml.models import EmbeddingModel

TINY = "test_efficientnet"  # timm's small test network


def batch_norms(model):
    return [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]


@pytest.fixture(scope="module")
def pretrained_model():
    return EmbeddingModel(embedding_size=32)


def test_forward_gives_unit_norm_embeddings(pretrained_model):
    images = torch.rand(4, 3, 64, 64)
    with torch.no_grad():
        embeddings = pretrained_model.eval()(images)
    assert embeddings.shape == (4, 32)
    torch.testing.assert_close(embeddings.norm(dim=1), torch.ones(4))


def test_forward_is_head_of_features(pretrained_model):
    images = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        features = pretrained_model.eval().features(images)
        embeddings = pretrained_model(images)
    assert features.shape == (2, pretrained_model.backbone.num_features) == (2, 1280)
    torch.testing.assert_close(embeddings, pretrained_model.head(features))


def test_the_model_runs_channels_last_and_embeds_as_the_default_layout(pretrained_model):
    model = pretrained_model.eval()
    convolutions = [m.weight for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert all(w.is_contiguous(memory_format=torch.channels_last) for w in convolutions)
    images = torch.rand(3, 3, 64, 64)
    reference = EmbeddingModel(embedding_size=32).eval().to(memory_format=torch.contiguous_format)
    reference.load_state_dict(model.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(model(images), reference.head(reference.backbone(images)))


@pytest.mark.parametrize("backbone", [TINY, "test_resnet", "mobilenetv3_small_050"])
def test_embedding_of_feature_maps_equals_forward(backbone):
    model = EmbeddingModel(backbone, embedding_size=8, pretrained=False).eval()
    images = torch.rand(3, 3, 48, 48)
    with torch.no_grad():
        maps = model.feature_maps(images)
        assert maps.ndim == 4 and maps.shape[:2] == (3, model.backbone.num_features)
        torch.testing.assert_close(model.embed_feature_maps(maps), model(images))


def test_data_config_is_the_backbone_weights_normalisation(pretrained_model):
    assert pretrained_model.data_config["mean"] == (0.5, 0.5, 0.5)
    random_model = EmbeddingModel(TINY, pretrained=False)
    assert random_model.data_config["mean"] == pytest.approx((0.485, 0.456, 0.406))


def test_freeze_bn_keeps_running_statistics_through_training():
    model = EmbeddingModel(TINY, embedding_size=8, pretrained=False, freeze_bn=True)
    model.train()
    assert model.training and model.head.training
    norms = batch_norms(model)
    assert norms and not any(bn.training for bn in norms)
    before = [bn.running_mean.clone() for bn in norms]
    model(torch.rand(4, 3, 32, 32) * 5).sum().backward()
    for bn, mean in zip(norms, before, strict=True):
        torch.testing.assert_close(bn.running_mean, mean, rtol=0, atol=0)
    # The affine parameters still learn.
    assert norms[0].weight.grad is not None and norms[0].weight.grad.abs().sum() > 0
    model.eval().train()
    assert not any(bn.training for bn in batch_norms(model))


def test_without_freeze_bn_running_statistics_move():
    model = EmbeddingModel(TINY, embedding_size=8, pretrained=False)
    norms = batch_norms(model)
    assert all(bn.training for bn in norms)
    before = norms[0].running_mean.clone()
    model(torch.rand(4, 3, 32, 32) * 5)
    assert not torch.equal(norms[0].running_mean, before)


def test_param_groups_split_backbone_and_head():
    model = EmbeddingModel(TINY, embedding_size=8, pretrained=False)
    model.backbone.conv_stem.weight.requires_grad_(False)
    groups = model.param_groups(backbone_lr=1e-4, head_lr=1e-3, weight_decay=5e-4)
    assert [g["name"] for g in groups] == ["backbone", "head"]
    assert [g["lr"] for g in groups] == [1e-4, 1e-3]
    assert all(g["weight_decay"] == 5e-4 for g in groups)
    grouped = [id(p) for g in groups for p in g["params"]]
    trainable = [id(p) for p in model.parameters() if p.requires_grad]
    assert sorted(grouped) == sorted(trainable)
    assert {id(p) for p in groups[1]["params"]} == {id(p) for p in model.head.parameters()}
    optimizer = torch.optim.SGD(groups, lr=1.0)
    assert [g["lr"] for g in optimizer.param_groups] == [1e-4, 1e-3]


def test_layer_decay_slows_the_layers_nearest_the_input():
    model = EmbeddingModel(TINY, embedding_size=8, pretrained=False)
    model.backbone.conv_stem.weight.requires_grad_(False)
    groups = model.param_groups(backbone_lr=1e-2, head_lr=1e-3, weight_decay=5e-4, layer_decay=0.5)
    *layers, head = groups
    assert [g["name"] for g in layers] == [f"backbone.{i}" for i in range(len(layers))]
    assert len(layers) > 2 and head["name"] == "head" and head["lr"] == 1e-3
    rates = [g["lr"] for g in layers]
    assert rates[-1] == 1e-2  # the last layer group learns at the backbone's rate
    assert rates == pytest.approx([1e-2 * 0.5 ** (len(layers) - 1 - i) for i in range(len(layers))])
    assert all(g["weight_decay"] == 5e-4 for g in groups)
    grouped = [id(p) for g in groups for p in g["params"]]
    trainable = [id(p) for p in model.parameters() if p.requires_grad]
    assert sorted(grouped) == sorted(trainable)
    # the stem's batch norm is in the first (slowest) group, the last stage's conv in the last
    assert any(p is model.backbone.bn1.weight for p in layers[0]["params"])
    assert any(p is model.backbone.conv_head.weight for p in layers[-1]["params"])


def test_weights_file_reaches_the_backbone(tmp_path):
    source = timm.create_model(TINY, pretrained=False, num_classes=0)
    path = tmp_path / "tiny.pth"
    torch.save(source.state_dict(), path)
    model = EmbeddingModel(TINY, embedding_size=8, weights=path)
    torch.testing.assert_close(model.backbone.conv_stem.weight, source.conv_stem.weight)


def test_pretrained_other_backbone_without_weights_is_rejected():
    with pytest.raises(ValueError, match="weights"):
        EmbeddingModel(TINY)


def test_bad_embedding_size():
    with pytest.raises(ValueError, match="embedding_size"):
        EmbeddingModel(TINY, embedding_size=0, pretrained=False)
