"""The settings of sliding-window inference: :class:`InferenceConfig`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from medimg.errors import ConfigError

__all__ = ["InferenceConfig", "OutputKind", "Precision"]

OutputKind = Literal["labels", "probabilities", "logits"]
Precision = Literal["float32", "bfloat16", "float16", "auto"]

_OUTPUTS = ("labels", "probabilities", "logits")
_PRECISIONS = ("float32", "bfloat16", "float16", "auto")


@dataclass(frozen=True, kw_only=True)
class InferenceConfig:
    """How :func:`~medimg.inference.predict_volume` runs a network over a volume.

    Attributes
    ----------
    roi_size_vox : tuple of 3 int
        Window size in voxels along X, Y, Z.
    overlap : float
        Fraction of a window shared with its neighbour along each axis, in ``[0, 1)``
        (nnU-Net and MONAI: 0.5).
    sigma_scale : float
        Gaussian weighting: sigma as a fraction of the window size (nnU-Net: 1/8).
    batch_size : int or None
        Windows per forward pass; ``None`` lets the planner choose: 2 on the CPU (fastest in
        our measurements), the largest of 8, 4, 2, 1 that fits free memory on CUDA, always
        within ``memory_budget_bytes``.
    mirror_axes : tuple of int
        Spatial axes (0 = X, 1 = Y, 2 = Z) for mirror test-time augmentation: every subset of
        them is flipped, predicted and flipped back, and the logits averaged (2**k passes).
    output : {"labels", "probabilities", "logits"}
        ``"labels"``: argmax as uint8 (X, Y, Z); ``"probabilities"``: softmax of the averaged
        logits, float32 (K, X, Y, Z); ``"logits"``: the averaged logits.
    precision : {"float32", "bfloat16", "float16", "auto"}
        Autocast dtype of the network. ``"auto"``: bfloat16 only where it is native (CUDA
        with bf16, or a CPU with AVX512-BF16 or AMX) and, measured by a calibration on a few
        of the image's windows (cached per machine and weights), its argmax agrees with
        float32's on at least 99.9% of voxels and it runs faster; float32 otherwise. Stitching
        is float32.
    device : str
        ``"auto"`` (CUDA when available, else CPU), or any torch device string.
    memory_budget_bytes : int or None
        Peak memory the planner must stay under (host memory for CPU placement, device memory
        for CUDA); ``None``: no limit beyond the default choices.
    channels_last : bool
        Run the network in ``torch.channels_last_3d`` (much faster oneDNN paths on CPU).
    fast_layers : bool
        On the CPU in float32, swap layers that PyTorch runs slowly for exact equivalents
        during the run: transposed convolutions with kernel 3, stride 2 and few output
        channels (MONAI's UNet up-sampling) become a convolution plus pixel shuffle,
        instance norms keep the channels-last layout, and kernel-1 convolutions of one input
        channel (a DynUNet's first residual projection) become a matrix product. The model is
        restored afterwards; results equal to float32 rounding.
    prefetch : bool
        Read and assemble the next windows in a background thread while the network runs.
    progress : bool
        Show a tqdm progress bar over the windows.
    calibrate : bool
        Time a few windows under each candidate batch size (unless ``batch_size`` is set),
        memory layout and layer form (``channels_last`` and ``fast_layers`` are then chosen
        by the measurement) and run with the fastest; the measurement is cached per machine
        and network shape under the user's cache folder. Always on for ``precision="auto"``
        where bfloat16 is native.
    """

    roi_size_vox: tuple[int, int, int] = (96, 96, 96)
    overlap: float = 0.5
    sigma_scale: float = 0.125
    batch_size: int | None = None
    mirror_axes: tuple[int, ...] = ()
    output: OutputKind = "labels"
    precision: Precision = "float32"
    device: str = "auto"
    memory_budget_bytes: int | None = None
    channels_last: bool = True
    fast_layers: bool = True
    prefetch: bool = True
    progress: bool = False
    calibrate: bool = False

    def __post_init__(self) -> None:
        roi = tuple(self.roi_size_vox)
        if len(roi) != 3 or any(not isinstance(r, int) or r < 1 for r in roi):
            raise ConfigError(
                f"roi_size_vox must be 3 positive integers (X, Y, Z), got {self.roi_size_vox}"
            )
        if not 0 <= self.overlap < 1:
            raise ConfigError(f"overlap must be >= 0 and < 1, got {self.overlap}")
        if not self.sigma_scale > 0:
            raise ConfigError(f"sigma_scale must be > 0, got {self.sigma_scale}")
        if self.batch_size is not None and self.batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1 or None, got {self.batch_size}")
        axes = tuple(self.mirror_axes)
        if any(a not in (0, 1, 2) for a in axes) or len(set(axes)) != len(axes):
            raise ConfigError(
                f"mirror_axes must be distinct spatial axes among 0, 1, 2, got {self.mirror_axes}"
            )
        if self.output not in _OUTPUTS:
            raise ConfigError(f"output must be one of {', '.join(_OUTPUTS)}, got {self.output!r}")
        if self.precision not in _PRECISIONS:
            raise ConfigError(
                f"precision must be one of {', '.join(_PRECISIONS)}, got {self.precision!r}"
            )
        if self.memory_budget_bytes is not None and self.memory_budget_bytes <= 0:
            raise ConfigError(
                f"memory_budget_bytes must be > 0 or None, got {self.memory_budget_bytes}"
            )
