import pytest
import torch
from conftest import stored_scales

from resdepth import augment, models, scalings


@pytest.mark.parametrize("scaling", scalings.NAMED_SCALINGS + (0.2,))
def test_conv_tower_forward_equals_explicit_loop(scaling):
    torch.manual_seed(0)
    model = models.build_model("conv", (3, 8, 8), 10, 6, 4, scaling, stem_stride=2)
    if scaling == "skipinit":  # make the check non-trivial
        with torch.no_grad():
            model.tower.alpha.copy_(torch.linspace(0.1, 0.4, 4))
    lams = stored_scales(model, scaling, 4)
    model.double().eval()
    x = torch.randn(5, 3, 8, 8, dtype=torch.float64)
    h = model.stem(x)
    for lam, branch in zip(lams, model.tower.branches, strict=True):
        h = h + lam * branch(h)
    torch.testing.assert_close(model(x), model.head(h), rtol=1e-13, atol=1e-13)


@pytest.mark.parametrize("stride, side", [(1, 32), (2, 16), (4, 8), (8, 4)])
def test_stem_stride_sets_the_tower_resolution(stride, side):
    model = models.build_model("conv", (3, 32, 32), 10, 8, 2, "inv", stem_stride=stride)
    x = torch.randn(2, 3, 32, 32)
    h = model.stem(x)
    assert h.shape == (2, 8, side, side)
    assert model.tower(h).shape == h.shape
    assert model(x).shape == (2, 10)


def test_bn_branch_is_preactivation_and_others_are_plain():
    bn = models.conv_branch(4, batchnorm=True)
    plain = models.conv_branch(4)
    assert [type(m).__name__ for m in bn] == [
        "BatchNorm2d", "ReLU", "Conv2d", "BatchNorm2d", "ReLU", "Conv2d"
    ]  # fmt: skip
    assert [type(m).__name__ for m in plain] == ["Conv2d", "ReLU", "Conv2d"]


def test_conv_init_is_he_with_zero_biases():
    torch.manual_seed(0)
    model = models.build_model("conv", (3, 16, 16), 10, 64, 3, "one")
    conv = model.tower.branches[0][0]
    fan_in = 64 * 3 * 3
    assert conv.weight.std().item() == pytest.approx((2 / fan_in) ** 0.5, rel=0.05)
    assert torch.all(conv.bias == 0)


@pytest.mark.parametrize("bad", [{"stem_stride": 0}, {"stem_stride": 1.5}, {"stem_stride": 64}])
def test_bad_stem_stride_is_rejected(bad):
    with pytest.raises(ValueError, match="stem_stride"):
        models.build_model("conv", (3, 32, 32), 10, 8, 2, "inv", **bad)


def test_conv_needs_image_shaped_inputs():
    with pytest.raises(ValueError, match="C×H×W"):
        models.build_model("conv", (8, 8), 10, 8, 2, "inv")


def _batch(n=16):
    images = torch.randint(0, 256, (n, 3, 32, 32), generator=torch.Generator().manual_seed(1))
    return images.to(torch.uint8), torch.arange(n) % 10


def test_augmentation_keeps_shape_dtype_and_is_seeded():
    images, labels = _batch()
    out = augment.random_crop_flip(images, torch.Generator().manual_seed(7))
    again = augment.random_crop_flip(images, torch.Generator().manual_seed(7))
    other = augment.random_crop_flip(images, torch.Generator().manual_seed(8))
    assert out.shape == images.shape and out.dtype == torch.uint8
    torch.testing.assert_close(out, again)
    assert not torch.equal(out, other)
    assert torch.equal(labels, torch.arange(16) % 10)  # labels are not touched


def _crops_and_flips(image, padding=4):
    """All (dy, dx, flip) views a crop-and-flip of ``image`` may legally produce."""
    padded = torch.nn.functional.pad(image, (padding,) * 4)
    size = image.shape[-1]
    for dy in range(2 * padding + 1):
        for dx in range(2 * padding + 1):
            crop = padded[:, dy : dy + size, dx : dx + size]
            yield (dy, dx, False), crop
            yield (dy, dx, True), crop.flip(-1)


def test_each_augmented_image_is_a_crop_or_mirror_of_its_own_source():
    images, _ = _batch(8)
    out = augment.random_crop_flip(images, torch.Generator().manual_seed(3))
    used = set()
    for i in range(len(images)):
        matches = [view for view, crop in _crops_and_flips(images[i]) if torch.equal(out[i], crop)]
        assert matches, f"image {i} is not a crop/flip of its own source"
        used.update(matches)
    assert any(flip for _, _, flip in used) and any(not flip for _, _, flip in used)
    assert len({(dy, dx) for dy, dx, _ in used}) > 1  # the offsets really vary


def test_residual_stream_stays_float32_under_bf16_autocast():
    """With λ = 1/1000 a bf16 stream would round most of each branch's update away."""
    torch.manual_seed(0)
    model = models.build_model("conv", (3, 16, 16), 10, 8, 20, 0.001, stem_stride=2)
    x = torch.randn(4, 3, 16, 16)
    with torch.no_grad():
        h = model.stem(x)
        exact_update = model.tower(h) - h
        with torch.autocast("cpu", torch.bfloat16):
            h_bf16 = model.stem(x)
            update = model.tower(h_bf16) - h_bf16
    assert h_bf16.dtype == update.dtype == torch.float32
    error = (update - exact_update).norm() / exact_update.norm()
    assert error < 0.05  # bf16 branch arithmetic: ~0.005; a bf16 stream: ~0.8
