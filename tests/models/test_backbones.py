import pytest
import timm
import torch
import torch.nn.functional as F
from matplotlib.cbook import get_sample_data
from PIL import Image
from timm.data import ImageNetInfo

from cdml.models import DEFAULT_BACKBONE, backbone_data_config, create_backbone
from cdml.models.backbones import (
    load_shipped_efficientnet_lite0,
    map_state_dict_by_order,
    shipped_efficientnet_lite0_path,
)

TINY = "test_efficientnet"  # timm's small test network, ~0.1M parameters

# Stride of the depthwise convolution of each of the 16 EfficientNet-Lite0 blocks
# (stages of 1, 2, 2, 3, 3, 4, 1 blocks with strides 1, 2, 2, 2, 1, 2, 1).
LITE0_BLOCK_STRIDES = [1, 2, 1, 2, 1, 2, 1, 1, 1, 1, 1, 2, 1, 1, 1, 1]


@pytest.fixture(scope="module")
def shipped():
    return torch.load(shipped_efficientnet_lite0_path(), map_location="cpu", weights_only=True)


@pytest.fixture(scope="module")
def pretrained_backbone():
    return create_backbone().eval()


def _tf_same_pad(x, kernel, stride):
    """TensorFlow "SAME" padding: output size ceil(size / stride), extra pixel at the end."""
    pads = []
    for size in (x.shape[3], x.shape[2]):  # F.pad wants the last dimension first
        out = -(-size // stride)
        total = max((out - 1) * stride + kernel - size, 0)
        pads += [total // 2, total - total // 2]
    return F.pad(x, pads)


def _bn(x, weights, prefix):
    return F.batch_norm(
        x,
        weights[f"{prefix}.running_mean"],
        weights[f"{prefix}.running_var"],
        weights[f"{prefix}.weight"],
        weights[f"{prefix}.bias"],
        training=False,
        eps=1e-3,
    )


def reference_lite0(weights, x):
    """EfficientNet-Lite0 written out from the efficientnet_pytorch key names: logits (B, 1000)."""
    x = _tf_same_pad(x, 3, 2)
    x = F.relu6(_bn(F.conv2d(x, weights["_conv_stem.weight"], stride=2), weights, "_bn0"))
    for i, stride in enumerate(LITE0_BLOCK_STRIDES):
        block = f"_blocks.{i}"
        block_input = x
        if f"{block}._expand_conv.weight" in weights:
            x = F.conv2d(x, weights[f"{block}._expand_conv.weight"])
            x = F.relu6(_bn(x, weights, f"{block}._bn0"))
        depthwise = weights[f"{block}._depthwise_conv.weight"]
        x = _tf_same_pad(x, depthwise.shape[-1], stride)
        x = F.conv2d(x, depthwise, stride=stride, groups=depthwise.shape[0])
        x = F.relu6(_bn(x, weights, f"{block}._bn1"))
        x = _bn(F.conv2d(x, weights[f"{block}._project_conv.weight"]), weights, f"{block}._bn2")
        if stride == 1 and x.shape == block_input.shape:
            x = x + block_input
    x = F.relu6(_bn(F.conv2d(x, weights["_conv_head.weight"]), weights, "_bn1"))
    return F.linear(x.mean(dim=(2, 3)), weights["_fc.weight"], weights["_fc.bias"])


def test_shipped_file_is_the_296_tensor_lite0_state_dict(shipped):
    assert len(shipped) == 296
    assert list(shipped)[-2:] == ["_fc.weight", "_fc.bias"]


@pytest.mark.parametrize("size", [(64, 64), (67, 45)])
def test_mapped_weights_compute_the_reference_network(shipped, size):
    # Same mapping function as create_backbone, but with the classifier kept.
    model = timm.create_model("tf_efficientnet_lite0", pretrained=False, num_classes=1000).eval()
    load_shipped_efficientnet_lite0(model)
    images = torch.randn(2, 3, *size, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        logits = model(images)
        expected = reference_lite0(shipped, images)
    torch.testing.assert_close(logits, expected, rtol=1e-4, atol=1e-4)


def test_pretrained_backbone_holds_shipped_tensors_at_the_right_keys(shipped, pretrained_backbone):
    state = pretrained_backbone.state_dict()
    assert "classifier.weight" not in state
    pairs = {
        "conv_stem.weight": "_conv_stem.weight",
        "bn1.running_mean": "_bn0.running_mean",
        "blocks.0.0.conv_dw.weight": "_blocks.0._depthwise_conv.weight",
        "blocks.1.0.conv_pw.weight": "_blocks.1._expand_conv.weight",
        "blocks.6.0.conv_pwl.weight": "_blocks.15._project_conv.weight",
        "blocks.6.0.bn3.running_var": "_blocks.15._bn2.running_var",
        "conv_head.weight": "_conv_head.weight",
        "bn2.running_var": "_bn1.running_var",
        "bn2.bias": "_bn1.bias",
    }
    for timm_key, shipped_key in pairs.items():
        torch.testing.assert_close(state[timm_key], shipped[shipped_key], rtol=0, atol=0)
    random = create_backbone(pretrained=False).state_dict()
    assert not torch.equal(random["conv_stem.weight"], state["conv_stem.weight"])
    assert not torch.equal(random["bn2.running_var"], state["bn2.running_var"])


def test_pretrained_backbone_classifies_a_photo_with_its_data_config():
    model = timm.create_model("tf_efficientnet_lite0", pretrained=False, num_classes=1000).eval()
    load_shipped_efficientnet_lite0(model)
    config = backbone_data_config(model)
    transform = timm.data.create_transform(**config)
    photo = Image.open(get_sample_data("grace_hopper.jpg", asfileobj=False)).convert("RGB")
    with torch.no_grad():
        top5 = model(transform(photo)[None]).topk(5).indices[0].tolist()
    names = [ImageNetInfo().index_to_description(i) for i in top5]
    assert "military uniform" in names, names


def test_default_backbone_gives_pooled_features(pretrained_backbone):
    assert DEFAULT_BACKBONE == "tf_efficientnet_lite0"
    with torch.no_grad():
        features = pretrained_backbone(torch.rand(3, 3, 64, 64))
    assert features.shape == (3, 1280)
    assert torch.isfinite(features).all()


def test_symmetric_padding_lite0_accepts_the_shipped_weights(shipped):
    model = create_backbone("efficientnet_lite0")
    torch.testing.assert_close(model.conv_head.weight, shipped["_conv_head.weight"])
    assert backbone_data_config(model)["mean"] == (0.5, 0.5, 0.5)


def test_data_config_follows_the_weights(pretrained_backbone):
    shipped_config = backbone_data_config(pretrained_backbone)
    assert shipped_config["mean"] == (0.5, 0.5, 0.5)
    assert shipped_config["std"] == (0.5, 0.5, 0.5)
    assert shipped_config["input_size"] == (3, 224, 224)
    # A randomly initialised timm model keeps timm's (ImageNet) normalisation.
    imagenet_config = backbone_data_config(create_backbone("efficientnet_lite0", pretrained=False))
    assert imagenet_config["mean"] == pytest.approx((0.485, 0.456, 0.406))


@pytest.mark.parametrize("saved_classes", [0, 10])
def test_weights_file_round_trip(tmp_path, saved_classes):
    source = timm.create_model(TINY, pretrained=False, num_classes=saved_classes)
    path = tmp_path / "backbone.pth"
    torch.save(source.state_dict(), path)
    model = create_backbone(TINY, pretrained=True, weights=path)
    assert model.num_classes == 0
    loaded = model.state_dict()
    for key, value in source.state_dict().items():
        if not key.startswith("classifier."):
            torch.testing.assert_close(loaded[key], value, rtol=0, atol=0)
    fresh = create_backbone(TINY, pretrained=False).state_dict()
    assert not torch.equal(fresh["conv_stem.weight"], loaded["conv_stem.weight"])


def test_weights_file_ignores_a_classifier_named_differently(tmp_path):
    source = timm.create_model("resnet10t", pretrained=False, num_classes=5)
    path = tmp_path / "resnet.pth"
    torch.save(source.state_dict(), path)
    model = create_backbone("resnet10t", weights=path)
    torch.testing.assert_close(model.conv1[0].weight, source.conv1[0].weight)


def test_pretrained_without_shipped_weights_asks_for_a_file():
    with pytest.raises(ValueError, match=r"'resnet10t'.*weights=PATH"):
        create_backbone("resnet10t", pretrained=True)


def test_unknown_backbone_name():
    for pretrained in (False, True):
        with pytest.raises(ValueError, match="'not_a_network' is not a timm model"):
            create_backbone("not_a_network", pretrained=pretrained)


def test_missing_weights_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="absent.pth"):
        create_backbone(TINY, weights=tmp_path / "absent.pth")


def test_weights_file_with_missing_tensors(tmp_path):
    state = timm.create_model(TINY, pretrained=False, num_classes=0).state_dict()
    del state["conv_stem.weight"]
    path = tmp_path / "partial.pth"
    torch.save(state, path)
    with pytest.raises(ValueError, match=r"partial\.pth.*missing.*conv_stem\.weight"):
        create_backbone(TINY, weights=path)


def test_weights_file_of_another_architecture(tmp_path):
    path = tmp_path / "other.pth"
    torch.save(timm.create_model("resnet10t", pretrained=False).state_dict(), path)
    with pytest.raises(ValueError, match=r"other\.pth"):
        create_backbone(TINY, weights=path)


def test_weights_file_with_wrong_shapes(tmp_path):
    state = timm.create_model(TINY, pretrained=False, num_classes=0).state_dict()
    state["conv_stem.weight"] = torch.zeros(1, 1, 1, 1)
    path = tmp_path / "shapes.pth"
    torch.save(state, path)
    with pytest.raises(ValueError, match=r"shapes\.pth.*wrong shape.*conv_stem\.weight"):
        create_backbone(TINY, weights=path)


@pytest.mark.parametrize("content", [b"not a torch file", None], ids=["garbage", "list-of-tensors"])
def test_weights_file_that_is_not_a_state_dict(tmp_path, content):
    path = tmp_path / "bad.pth"
    if content is None:
        torch.save([torch.zeros(2)], path)
    else:
        path.write_bytes(content)
    with pytest.raises(ValueError, match=r"bad\.pth"):
        create_backbone(TINY, weights=path)


def test_order_mapping_rejects_a_reordered_source(shipped):
    target = timm.create_model("tf_efficientnet_lite0", pretrained=False, num_classes=1000)
    keys = list(shipped)
    # Swap a BatchNorm's weight and bias: same shapes, so only the key names can tell.
    keys[1], keys[2] = keys[2], keys[1]
    reordered = {key: shipped[key] for key in keys}
    with pytest.raises(ValueError, match=r"lite0\.pth: tensor 1 '_bn0\.bias'"):
        map_state_dict_by_order(reordered, target.state_dict(), source_name="lite0.pth")


def test_order_mapping_rejects_a_count_mismatch(shipped):
    target = timm.create_model("tf_efficientnet_lite0", pretrained=False, num_classes=0)
    with pytest.raises(ValueError, match="296 tensors but the model expects 294"):
        map_state_dict_by_order(shipped, target.state_dict())


def test_order_mapping_rejects_shape_mismatch():
    source = {"a.weight": torch.zeros(3), "a.bias": torch.zeros(3)}
    target = {"b.weight": torch.zeros(3), "b.bias": torch.zeros(4)}
    with pytest.raises(ValueError, match=r"src: tensor 1 'a\.bias' \(3,\).*'b\.bias' \(4,\)"):
        map_state_dict_by_order(source, target, source_name="src")
    mapped = map_state_dict_by_order(source, {"b.weight": torch.ones(3), "b.bias": torch.ones(3)})
    assert list(mapped) == ["b.weight", "b.bias"]
    assert mapped["b.bias"] is source["a.bias"]
