from __future__ import annotations

import itertools

import nibabel as nib
import numpy as np
import pytest
import torch
from monai.inferers import sliding_window_inference

from medimg.errors import ConfigError
from medimg.inference import InferenceConfig, iter_slabs, predict_volume
from medimg.io import load_volume, save_volume
from tests.inference.conftest import conv_net, identity_net


def _monai(net: torch.nn.Module, image: np.ndarray, roi: tuple[int, ...], overlap: float):
    with torch.no_grad():
        out = sliding_window_inference(
            torch.from_numpy(image)[None],
            roi,
            2,
            net,
            overlap=overlap,
            mode="gaussian",
            sigma_scale=0.125,
        )
    return out[0].numpy()


def test_identity_model_returns_its_input_at_every_voxel() -> None:
    # Known answer: class k's logit is k * x, so the Gaussian-weighted average of overlapping
    # windows is k * x again at every voxel -- any shift or drift of a window would show.
    x, y, z = np.meshgrid(np.arange(37), np.arange(29), np.arange(23), indexing="ij")
    position = (x + 40 * y + 1600 * z).astype(np.float32)[None]
    cfg = InferenceConfig(roi_size_vox=(16, 12, 10), output="logits", batch_size=3)
    out = predict_volume(identity_net(3), position, cfg)
    assert out.shape == (3, 37, 29, 23)
    np.testing.assert_allclose(out[1], position[0], rtol=1e-6)
    np.testing.assert_allclose(out[2], 2 * position[0], rtol=1e-6)
    assert np.all(out[0] == 0)


@pytest.mark.parametrize(
    ("roi", "overlap"),
    [((16, 16, 16), 0.5), ((12, 20, 8), 0.25), ((48, 16, 30), 0.5), ((8, 8, 8), 0.7)],
)
def test_agrees_with_monai_gaussian_sliding_window(image, roi, overlap) -> None:
    net = conv_net()
    cfg = InferenceConfig(roi_size_vox=roi, overlap=overlap, output="logits", batch_size=4)
    ours = predict_volume(net, image, cfg)
    ref = _monai(net, image, roi, overlap)
    assert ours.shape == ref.shape == (3, 37, 29, 23)
    np.testing.assert_allclose(ours, ref, atol=1e-5, rtol=1e-5)


def test_volume_smaller_than_window_is_padded_like_monai() -> None:
    small = np.random.default_rng(1).normal(size=(1, 5, 7, 3)).astype(np.float32)
    net = conv_net()
    ours = predict_volume(net, small, InferenceConfig(roi_size_vox=(16, 8, 6), output="logits"))
    ref = _monai(net, small, (16, 8, 6), 0.5)
    assert ours.shape == (3, 5, 7, 3)
    np.testing.assert_allclose(ours, ref, atol=1e-5)
    labels = predict_volume(net, small, InferenceConfig(roi_size_vox=(16, 8, 6)))
    assert labels.shape == (5, 7, 3)
    assert labels.dtype == np.uint8


def test_labels_are_argmax_of_probabilities(image) -> None:
    net = conv_net(n_classes=4)
    roi = (16, 16, 16)
    probs = predict_volume(net, image, InferenceConfig(roi_size_vox=roi, output="probabilities"))
    logits = predict_volume(net, image, InferenceConfig(roi_size_vox=roi, output="logits"))
    labels = predict_volume(net, image, InferenceConfig(roi_size_vox=roi, output="labels"))
    assert probs.dtype == np.float32
    np.testing.assert_allclose(probs.sum(axis=0), 1.0, atol=1e-5)
    np.testing.assert_allclose(probs, torch.softmax(torch.from_numpy(logits), 0).numpy(), atol=1e-6)
    np.testing.assert_array_equal(labels, probs.argmax(axis=0))
    assert len(np.unique(labels)) > 1  # the comparison is not between constant maps


def test_mirror_tta_is_the_mean_of_flipped_predictions() -> None:
    # One window covering the volume: TTA per window is then TTA of the whole volume.
    vol = np.random.default_rng(2).normal(size=(1, 12, 10, 8)).astype(np.float32)
    net = conv_net()
    cfg = InferenceConfig(roi_size_vox=(12, 10, 8), output="logits", mirror_axes=(0, 2))
    ours = predict_volume(net, vol, cfg)
    x = torch.from_numpy(vol)[None]
    expected = []
    with torch.no_grad():
        for k in range(3):
            for axes in itertools.combinations((2, 4), k):
                flipped = x.flip(axes) if axes else x
                out = net(flipped)
                expected.append(out.flip(axes) if axes else out)
    mean = torch.stack(expected).mean(0)[0].numpy()
    np.testing.assert_allclose(ours, mean, atol=1e-5)
    plain = predict_volume(net, vol, InferenceConfig(roi_size_vox=(12, 10, 8), output="logits"))
    assert np.abs(plain - mean).max() > 1e-2  # the network is not flip-equivariant


def test_batch_size_and_prefetch_do_not_change_the_result(image) -> None:
    net = conv_net()
    base = InferenceConfig(roi_size_vox=(16, 16, 16), output="logits", batch_size=1)
    ref = predict_volume(net, image, base)
    for batch, prefetch, cl in [(5, True, True), (7, False, False)]:
        cfg = InferenceConfig(
            roi_size_vox=(16, 16, 16),
            output="logits",
            batch_size=batch,
            prefetch=prefetch,
            channels_last=cl,
        )
        np.testing.assert_allclose(predict_volume(net, image, cfg), ref, atol=1e-5, rtol=1e-5)


def test_slabs_cover_z_once_in_order(image) -> None:
    cfg = InferenceConfig(roi_size_vox=(16, 16, 8))
    slabs = list(iter_slabs(conv_net(), image, cfg))
    starts = [s.z_start for s in slabs]
    assert starts == sorted(starts)
    assert starts[0] == 0
    assert sum(s.depth for s in slabs) == 23
    assert all(s.depth <= 4 for s in slabs)  # one step between rows of 8-voxel windows
    assert all(s.data.shape[:2] == (37, 29) for s in slabs)


def test_memmap_and_nifti_inputs_match_in_memory(image, tmp_path) -> None:
    net = conv_net()
    cfg = InferenceConfig(roi_size_vox=(16, 16, 16), output="probabilities")
    ref = predict_volume(net, image, cfg)
    mm = np.memmap(tmp_path / "img.dat", dtype=np.float32, mode="w+", shape=image.shape)
    mm[:] = image
    mm.flush()
    ro = np.memmap(tmp_path / "img.dat", dtype=np.float32, mode="r", shape=image.shape)
    np.testing.assert_array_equal(predict_volume(net, ro, cfg), ref)
    path = save_volume(image, tmp_path / "img.nii", like=np.diag([1.0, 2.0, 3.0, 1.0]))
    np.testing.assert_array_equal(predict_volume(net, path, cfg), ref)
    np.testing.assert_array_equal(predict_volume(net, nib.load(path), cfg), ref)
    np.testing.assert_array_equal(predict_volume(net, load_volume(path), cfg), ref)
    np.testing.assert_array_equal(predict_volume(net, torch.from_numpy(image), cfg), ref)


def test_model_mode_is_restored(image) -> None:
    net = conv_net().train()
    predict_volume(net, image, InferenceConfig(roi_size_vox=(16, 16, 16)))
    assert net.training


def test_bfloat16_agrees_with_float32_on_a_small_case(image) -> None:
    net = conv_net()
    f32 = predict_volume(net, image, InferenceConfig(roi_size_vox=(16, 16, 16), output="logits"))
    cfg = InferenceConfig(roi_size_vox=(16, 16, 16), output="logits", precision="bfloat16")
    bf16 = predict_volume(net, image, cfg)
    assert bf16.dtype == np.float32
    # bfloat16 keeps 8 bits of mantissa: about 0.4% relative per operation.
    assert np.abs(bf16 - f32).max() < 0.05 * np.abs(f32).max()
    assert (bf16.argmax(0) == f32.argmax(0)).mean() > 0.95


def test_wrong_input_dims_raise(image) -> None:
    with pytest.raises(ConfigError, match=r"image must be channel-first \(C, X, Y, Z\) with 4"):
        predict_volume(conv_net(), image[0], InferenceConfig(roi_size_vox=(8, 8, 8)))


def test_model_that_changes_the_window_shape_raises(image) -> None:
    net = torch.nn.Conv3d(1, 2, 3)  # no padding: the output is 2 voxels smaller per axis
    with pytest.raises(ConfigError, match=r"model output must be \(B, K, 8, 8, 8\)"):
        predict_volume(net, image, InferenceConfig(roi_size_vox=(8, 8, 8)))


def test_slabs_are_ordinary_tensors_and_no_mode_leaks(image) -> None:
    cfg = InferenceConfig(roi_size_vox=(16, 16, 16), precision="bfloat16")
    for slab in iter_slabs(conv_net(), image, cfg):
        assert not torch.is_inference_mode_enabled()
        assert not torch.is_autocast_enabled("cpu")
        assert not slab.data.is_inference()
        assert torch.is_grad_enabled()


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("precision", ["float32", "float16", "bfloat16"])
def test_cuda_matches_cpu(image, precision) -> None:
    net = conv_net()
    cpu = predict_volume(
        net, image, InferenceConfig(roi_size_vox=(16,) * 3, output="logits", device="cpu")
    )
    cfg = InferenceConfig(
        roi_size_vox=(16,) * 3, output="logits", device="cuda", precision=precision
    )
    gpu = predict_volume(net, image, cfg)
    tol = 1e-4 if precision == "float32" else 0.05 * np.abs(cpu).max()
    np.testing.assert_allclose(gpu, cpu, atol=tol, rtol=1e-4)


def test_monai_unet_with_fast_layers_agrees_with_monai() -> None:
    # MONAI's UNet has the layers medimg swaps on the CPU (transposed convolutions to few
    # channels, instance norms): the stitched logits still equal MONAI's sliding window.
    from monai.networks.nets import UNet

    torch.manual_seed(0)
    net = UNet(3, 1, 3, (4, 8, 16), (2, 2), num_res_units=1).eval()
    vol = np.random.default_rng(3).normal(size=(1, 37, 29, 23)).astype(np.float32)
    cfg = InferenceConfig(roi_size_vox=(16, 16, 16), output="logits", batch_size=3)
    ours = predict_volume(net, vol, cfg)
    ref = _monai(net, vol, (16, 16, 16), 0.5)
    np.testing.assert_allclose(ours, ref, atol=1e-4, rtol=1e-4)
    plain = predict_volume(net, vol, InferenceConfig(**{**cfg.__dict__, "fast_layers": False}))
    np.testing.assert_allclose(ours, plain, atol=1e-4, rtol=1e-4)
