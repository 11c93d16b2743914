"""ONNX export of medimg's networks and an onnxruntime backend for the sliding window.

:func:`export_onnx` writes a network (:func:`medimg.networks.build_network` of a
:class:`~medimg.networks.NetworkConfig`) as ONNX with dynamic batch and spatial dimensions,
atomically, and checks it with ``onnx.checker``. :class:`OnnxNetwork` runs such a file with
onnxruntime behind the contract of the torch network inside
:func:`~medimg.inference.iter_slabs` (a torch batch in, logits as a torch tensor out), so the
same windows, Gaussian stitching, mirroring and way back to the source grid apply unchanged.

Exporter choice (torch 2.13.0, onnx 1.23, onnxscript 0.7): the TorchScript-based exporter
(``dynamo=False``, opset 17), deprecated since torch 2.9 but the better of the two here.
Measured on the segmentation UNet, DynUNet, SegResNet, ResNet-18 and DenseNet-121: it exports
each in 0.5-1.7 s with logits within 1e-5 of torch at the traced size and at twice it;
``dynamo=True`` took 6.5-50 s for the same networks, printed its progress on stdout, and failed
on MONAI's ResNet-18 (``torch.export`` could not trace it with dynamic spatial sizes).
"""

from __future__ import annotations

import copy
import logging
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import torch

from medimg.errors import ConfigError

if TYPE_CHECKING:
    import onnxruntime

__all__ = [
    "INPUT_NAME",
    "OPSET",
    "OUTPUT_NAME",
    "OnnxNetwork",
    "export_onnx",
    "onnx_providers",
    "onnx_session",
]

logger = logging.getLogger(__name__)

INPUT_NAME: Final = "image"
"""The exported graph's input: ``(B, C, *spatial)`` float32."""
OUTPUT_NAME: Final = "logits"
"""The exported graph's output: ``(B, K, *spatial)`` (segmentation) or ``(B, K)`` float32."""
OPSET: Final = 17
_AXES: Final = ("x", "y", "z")


def _sample_shape(
    in_channels: int, spatial_dims: int, size: Sequence[int] | None
) -> tuple[int, ...]:
    if spatial_dims not in (2, 3):
        raise ConfigError(f"spatial_dims must be 2 or 3, got {spatial_dims}")
    if in_channels < 1:
        raise ConfigError(f"in_channels must be >= 1, got {in_channels}")
    spatial = tuple(size) if size is not None else (64,) * spatial_dims
    if len(spatial) != spatial_dims or min(spatial) < 1:
        raise ConfigError(
            f"sample_size_vox must be {spatial_dims} positive integers, got {tuple(spatial)}"
        )
    return (1, in_channels, *spatial)


def export_onnx(
    module: torch.nn.Module,
    *,
    in_channels: int,
    spatial_dims: int,
    path: Path,
    sample_size_vox: Sequence[int] | None = None,
    overwrite: bool = False,
) -> Path:
    """Write ``module`` as ONNX with dynamic batch and spatial sizes; return ``path``.

    The network is copied to the CPU in float32 and evaluation mode (DynUNet's deep-supervision
    heads are training-mode outputs, so only the inference output is exported); ``module``
    itself is not changed. The graph is traced once on a zero sample, written to a temporary
    name beside ``path``, checked with ``onnx.checker.check_model(full_check=True)`` and renamed.

    Parameters
    ----------
    module : torch.nn.Module
        A medimg network: segmentation ``(B, C, *roi) -> (B, K, *roi)`` or classification
        ``(B, C, *size) -> (B, K)``.
    in_channels, spatial_dims : int
        Image channels; 2 or 3 spatial axes.
    path : Path
        Output file (conventionally ``.onnx``).
    sample_size_vox : sequence of int, optional
        Spatial size of the sample traced (the network's window is the natural choice); 64
        voxels per axis when omitted, which every network of :mod:`medimg.networks` accepts.
    overwrite : bool
        Replace an existing file.

    Returns
    -------
    Path
        ``path``. Input ``"image"``, output ``"logits"``; axis 0 is ``batch`` and the spatial
        axes ``x``, ``y``, ``z`` are dynamic (the output's too, for segmentation).

    Raises
    ------
    ConfigError
        For channels or dimensions that are not those of the network, or a network the exporter
        cannot express (the message names the network class).
    OutputExistsError
        When ``path`` exists and ``overwrite`` is false.
    """
    import onnx

    from medimg.io.writing import atomic_path

    shape = _sample_shape(in_channels, spatial_dims, sample_size_vox)
    net = copy.deepcopy(module).to(device="cpu", dtype=torch.float32).eval()
    sample = torch.zeros(shape, dtype=torch.float32)
    with torch.no_grad():
        try:
            out = net(sample)
        except RuntimeError as exc:
            raise ConfigError(
                f"{type(module).__name__} must accept a {shape} float32 batch "
                f"(in_channels={in_channels}, spatial_dims={spatial_dims}): {exc}"
            ) from exc
    dense = isinstance(out, torch.Tensor) and out.ndim == 2 + spatial_dims
    if not isinstance(out, torch.Tensor) or out.ndim not in (2, 2 + spatial_dims):
        raise ConfigError(
            f"{type(module).__name__} must return one logits tensor (B, K) or (B, K, *spatial) "
            "to be exported to ONNX"
        )
    spatial = {i + 2: _AXES[i] for i in range(spatial_dims)}
    axes = {
        INPUT_NAME: {0: "batch", **spatial},
        OUTPUT_NAME: {0: "batch", **(spatial if dense else {})},
    }
    with atomic_path(path, overwrite=overwrite) as tmp:
        _trace(net, sample, tmp, axes)
        onnx.checker.check_model(str(tmp), full_check=True)
    logger.info("%s exported to %s (opset %d)", type(module).__name__, path, OPSET)
    return Path(path)


def _trace(net: torch.nn.Module, sample: torch.Tensor, out: Path, axes: dict[str, Any]) -> None:
    from torch.jit._trace import TracerWarning

    with warnings.catch_warnings():
        # The tracer warns about Python branches on tensor values in MONAI's blocks (shape
        # checks that hold for every window) and that instance norms export with input
        # statistics, which is what they compute in evaluation mode too.
        warnings.filterwarnings("ignore", category=TracerWarning)
        # The exporter and its internals are deprecated since torch 2.9 in favour of
        # dynamo=True, chosen all the same (module docstring): torch is pinned, and a test
        # exports every network family. The block runs torch's code only.
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.filterwarnings("ignore", message=".*instance_norm.*", category=UserWarning)
        try:
            torch.onnx.export(
                net, (sample,), str(out), dynamo=False, opset_version=OPSET,
                input_names=[INPUT_NAME], output_names=[OUTPUT_NAME], dynamic_axes=axes,
            )  # fmt: skip
        except (RuntimeError, torch.onnx.errors.OnnxExporterError) as exc:
            raise ConfigError(
                f"{type(net).__name__} cannot be exported to ONNX (opset {OPSET}): {exc}; "
                "use --backend torch"
            ) from exc


def onnx_providers(device: str) -> list[str]:
    """The onnxruntime execution providers for a medimg device name, CUDA first when used.

    ``"auto"``: CUDA when onnxruntime has its CUDA provider and torch sees a GPU, else CPU;
    ``"cpu"``: CPU; ``"cuda"``/``"cuda:N"``: CUDA (then CPU for operators CUDA lacks).

    Raises
    ------
    ConfigError
        When CUDA is asked for and this onnxruntime has no CUDA provider.
    """
    import onnxruntime

    cuda = "CUDAExecutionProvider" in onnxruntime.get_available_providers()
    if device.startswith("cuda"):
        if not cuda:
            raise ConfigError(
                f"device {device!r} needs onnxruntime's CUDAExecutionProvider, got only "
                f"{', '.join(onnxruntime.get_available_providers())}; use --device cpu or "
                "install onnxruntime-gpu"
            )
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    if device == "auto" and cuda and torch.cuda.is_available():
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


def onnx_session(
    model: Path | bytes, *, device: str = "cpu", threads: int | None = None
) -> onnxruntime.InferenceSession:
    """An onnxruntime session of an ONNX file or its bytes, all graph optimisations on.

    ``threads``: intra-op threads; ``None`` uses ``torch.get_num_threads()``, the count torch's
    CPU kernels use in this process (medimg's inference planner sets no thread count of its
    own), so both backends compute with the same cores.
    """
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads or torch.get_num_threads()
    options.inter_op_num_threads = 1
    options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3  # errors only: its warnings go to stderr, not to logging
    source = model if isinstance(model, bytes) else str(model)
    return onnxruntime.InferenceSession(source, options, providers=onnx_providers(device))


class OnnxNetwork(torch.nn.Module):
    """An onnxruntime session behind the contract of a medimg torch network.

    ``forward`` takes a float batch ``(B, C, *spatial)`` on any device and returns the logits
    as a float32 torch tensor on that device, so :func:`~medimg.inference.iter_slabs` (and
    classification's batches) run it as they run the torch network. On PyTorch's ``meta``
    device (the inference planner's probe) it returns an empty output of the right shape
    without running anything; the planner then counts the output, not onnxruntime's own
    buffers. It has no weights of torch's: one empty parameter lets callers that ask a
    network for its device (``next(model.parameters()).device``) get one.

    Parameters
    ----------
    session : onnxruntime.InferenceSession
        From :func:`onnx_session`, of a graph :func:`export_onnx` wrote.
    out_channels : int
        Output channels ``K``.
    dense : bool
        Segmentation (output keeps the spatial axes) or classification (``(B, K)``).
    """

    def __init__(self, session: onnxruntime.InferenceSession, *, out_channels: int, dense: bool):
        super().__init__()
        self.session = session
        self.out_channels = out_channels
        self.dense = dense
        self.anchor = torch.nn.Parameter(torch.empty(0), requires_grad=False)
        self._input = session.get_inputs()[0].name
        self._output = session.get_outputs()[0].name

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Logits of ``images`` (see the class docstring)."""
        shape = (images.shape[0], self.out_channels, *(images.shape[2:] if self.dense else ()))
        if images.device.type == "meta":
            return torch.empty(shape, device="meta")
        array = images.detach().to("cpu", torch.float32).contiguous().numpy()
        (logits,) = self.session.run([self._output], {self._input: array})
        out = torch.from_numpy(logits)
        if tuple(out.shape) != shape:
            raise ConfigError(
                f"ONNX network output must be {shape} for input {tuple(images.shape)}, got "
                f"{tuple(out.shape)}; export it again from the model (medimg model export-onnx)"
            )
        return out.to(images.device)

    def extra_repr(self) -> str:
        """Providers and output channels, for ``print(model)``."""
        return f"providers={self.session.get_providers()}, out_channels={self.out_channels}"
