"""Device selection and mixed precision."""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

from medimg.errors import ConfigError

if TYPE_CHECKING:
    import torch

__all__ = ["autocast", "select_device"]


def select_device(name: str = "auto") -> torch.device:
    """The device to train or predict on: ``"auto"`` picks CUDA when available, else CPU.

    Raises
    ------
    ConfigError
        When ``name`` is not a device, or names CUDA on a machine without it.

    Examples
    --------
    >>> select_device("cpu")
    device(type='cpu')
    """
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(
            f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {name!r}"
        ) from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {name!r} asked for, but CUDA is not available; use 'cpu'")
    if device.type not in ("cpu", "cuda"):
        raise ConfigError(f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {name!r}")
    return device


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager[object]:
    """Autocast context for ``precision`` on ``device`` (a no-op for ``"fp32"``).

    ``bf16`` works on CPU and CUDA; ``fp16`` only on CUDA (with a gradient scaler, which
    :func:`medimg.training.fit` adds).

    Raises
    ------
    ConfigError
        For ``fp16`` on the CPU, or an unknown precision.
    """
    import torch

    if precision == "fp32":
        return contextlib.nullcontext()
    dtypes = {"bf16": torch.bfloat16, "fp16": torch.float16}
    if precision not in dtypes:
        raise ConfigError(f"precision must be one of fp32, bf16, fp16, got {precision!r}")
    if precision == "fp16" and device.type != "cuda":
        raise ConfigError(f"precision 'fp16' needs a CUDA device, got {device.type!r}; use 'bf16'")
    return torch.autocast(device_type=device.type, dtype=dtypes[precision])
